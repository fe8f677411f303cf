//! The CloudWatch agent's on-disk state, as its source writes it (aws/amazon-cloudwatch-agent
//! v1.300071.0: `internal/state/range.go` MarshalText, `range_test.go:182-194,332-346`,
//! `manager_test.go:96,109`; the old format of `tailersrc.go` before v1.300057.0), its
//! translated TOML and its JSON, and what drainhook makes of them.

use drainhook::backlog::{Backlog, State};
use drainhook::drain::look_all;
use drainhook::shipper::cloudwatch::state;
use drainhook::shipper::{self, Kind, Shipper, Spec};
use proptest::prelude::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// An agent install dir (`etc/`, `logs/state/`, `logs/amazon-cloudwatch-agent.log`) and a dir
/// of log files, in a scratch tree.
struct Install {
    _t: tempfile::TempDir,
    dir: PathBuf,
    logs: PathBuf,
}

/// The TOML as `config-translator` writes it for these globs (`totomlconfig` test data).
fn toml_for(globs: &[String], outputs_extra: &str) -> String {
    let mut s = String::from(
        "[agent]\n  logfile = \"/opt/aws/amazon-cloudwatch-agent/logs/amazon-cloudwatch-agent.log\"\n\n[inputs]\n\n  [[inputs.logfile]]\n    destination = \"cloudwatchlogs\"\n    file_state_folder = \"/opt/aws/amazon-cloudwatch-agent/logs/state\"\n",
    );
    for g in globs {
        s += &format!(
            "\n    [[inputs.logfile.file_config]]\n      file_path = \"{g}\"\n      from_beginning = true\n      log_group_name = \"app\"\n      log_stream_name = \"i-1\"\n      pipe = false\n      retention_in_days = -1\n      timezone = \"UTC\"\n"
        );
    }
    s += &format!("\n[outputs]\n\n  [[outputs.cloudwatchlogs]]\n    force_flush_interval = \"5s\"\n{outputs_extra}");
    s
}

impl Install {
    fn new() -> Install {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("amazon-cloudwatch-agent");
        let logs = t.path().join("logs");
        fs::create_dir_all(dir.join("etc")).unwrap();
        fs::create_dir_all(dir.join("logs/state")).unwrap();
        fs::create_dir_all(&logs).unwrap();
        fs::write(dir.join("logs/amazon-cloudwatch-agent.log"), "I! started\n").unwrap();
        Install { _t: t, dir, logs }
    }

    fn toml(&self, globs: &[&str], outputs_extra: &str) -> &Self {
        let globs: Vec<String> = globs
            .iter()
            .map(|g| self.logs.join(g).display().to_string())
            .collect();
        fs::write(
            self.dir.join("etc/amazon-cloudwatch-agent.toml"),
            toml_for(&globs, outputs_extra),
        )
        .unwrap();
        self
    }

    fn log_file(&self, name: &str, bytes: usize) -> PathBuf {
        let p = self.logs.join(name);
        let line =
            "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz01234567\n";
        let mut body = line.repeat(bytes / line.len() + 1).into_bytes();
        body.truncate(bytes);
        fs::write(&p, body).unwrap();
        p
    }

    /// Writes the state of `file` as the agent does: named after the path, no newline at the end.
    fn state(&self, file: &Path, text: &str) {
        let name = state::escape(&file.display().to_string());
        fs::write(self.dir.join("logs/state").join(name), text).unwrap();
    }

    fn agent_log(&self, line: &str) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("logs/amazon-cloudwatch-agent.log"))
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }

    fn spec(&self) -> Spec {
        Spec {
            only: vec![Kind::Cloudwatch],
            cloudwatch_agent_dir: self.dir.clone(),
            proc_root: PathBuf::from("/nonexistent-proc"),
            ..Spec::default()
        }
    }

    fn sources(&self) -> Vec<Box<dyn Shipper>> {
        shipper::detect(&self.spec()).unwrap().sources
    }
}

async fn look(sources: &mut [Box<dyn Shipper>]) -> Backlog {
    look_all(sources).await.unwrap()
}

fn one(b: &Backlog, path: &Path) -> (u64, u64, State) {
    let f = b
        .files()
        .find(|f| f.source.as_deref() == Some(path))
        .unwrap_or_else(|| panic!("{} not tracked: {b:?}", path.display()));
    (f.offset, f.pending, f.state)
}

#[tokio::test]
async fn the_range_format_as_the_agent_writes_it() {
    let i = Install::new();
    i.toml(&["app.log"], "");
    let app = i.log_file("app.log", 5000);
    let mut s = i.sources();
    // singleRangeTracker.MarshalText: max, path, 0-max (range_test.go:185-187)
    i.state(&app, &format!("4000\n{}\n0-4000", app.display()));
    let b = look(&mut s).await;
    assert_eq!(one(&b, &app), (4000, 1000, State::Pending));
    assert_eq!(b.sources[0].format, "ranges");
    assert!(!b.is_drained());
    i.state(&app, &format!("5000\n{}\n0-5000", app.display()));
    let b = look(&mut s).await;
    assert_eq!(one(&b, &app), (5000, 0, State::Shipped));
    assert!(b.is_drained(), "{}", b.to_table());
}

#[tokio::test]
async fn the_old_format_offset_then_path() {
    let i = Install::new();
    i.toml(&["app.log"], "");
    let app = i.log_file("app.log", 2760);
    let mut s = i.sources();
    // manager_test.go:96: "2760\nvalid.log"
    i.state(&app, &format!("2000\n{}", app.display()));
    let b = look(&mut s).await;
    assert_eq!(one(&b, &app), (2000, 760, State::Pending));
    assert_eq!(b.sources[0].format, "offset (before v1.300057.0)");
    i.state(&app, &format!("2760\n{}", app.display()));
    assert!(look(&mut s).await.is_drained());
}

#[tokio::test]
async fn gaps_are_pending_and_concurrency_is_not_exact() {
    let i = Install::new();
    i.toml(&["app.log"], "    concurrency = 4\n");
    let app = i.log_file("app.log", 2760);
    let mut s = i.sources();
    // manager_test.go:109: ranges with gaps (logs.concurrency > 1)
    i.state(
        &app,
        &format!("2760\n{}\n100-1056,1640-2760", app.display()),
    );
    let b = look(&mut s).await;
    let (offset, pending, st) = one(&b, &app);
    assert_eq!(
        (offset, pending, st),
        (0, 100 + (1640 - 1056), State::Pending)
    );
    assert!(
        b.sources[0].waiting.iter().any(|w| w.contains("2 gaps")),
        "{:?}",
        b.sources[0].waiting
    );
    let inexact = b.inexact();
    assert!(
        inexact
            .iter()
            .any(|r| r.contains("logs.concurrency is 4") && r.contains("max_persist_state")),
        "{inexact:?}"
    );
    i.state(&app, &format!("2760\n{}\n0-2760", app.display()));
    assert!(look(&mut s).await.is_drained());
}

#[tokio::test]
async fn no_state_yet_is_the_whole_file_and_truncation_is_read_again() {
    let i = Install::new();
    i.toml(&["*.log"], "");
    let app = i.log_file("app.log", 300);
    let mut s = i.sources();
    let b = look(&mut s).await;
    assert_eq!(
        one(&b, &app),
        (0, 300, State::Pending),
        "from_beginning: the agent reads it all"
    );
    assert_eq!(b.sources[0].format, "no state file yet");
    i.state(&app, &format!("900\n{}\n0-900", app.display()));
    let b = look(&mut s).await;
    assert_eq!(one(&b, &app), (900, 300, State::Truncated));
}

#[tokio::test]
async fn a_state_being_written_is_never_drained_and_garbage_is_an_error_naming_it() {
    let i = Install::new();
    i.toml(&["app.log"], "");
    let app = i.log_file("app.log", 100);
    let mut s = i.sources();
    for cut in [
        "".to_string(),
        "100".into(),
        format!("100\n{}\n0-", app.display()),
        format!("100\n{}\n0-1", app.display()),
    ] {
        i.state(&app, &cut);
        let b = look(&mut s).await;
        assert!(!b.is_drained(), "{cut:?}: {}", b.to_table());
        assert!(b.sources[0].incomplete);
        assert!(
            b.sources[0]
                .waiting
                .iter()
                .any(|w| w.contains("being written")),
            "{:?}",
            b.sources[0].waiting
        );
    }
    // not a state file: an error that names it (the drain retries and says so)
    i.state(&app, &format!("100\n{}\nnot-a-range,0-100", app.display()));
    let e = look_all(&mut s).await.unwrap_err().to_string();
    let name = state::escape(&app.display().to_string());
    assert!(e.contains(&name) && e.contains("not-a-range"), "{e}");
}

#[tokio::test]
async fn the_json_a_fetch_config_leaves_is_read_without_a_toml() {
    let i = Install::new();
    let app = i.log_file("app.log", 100);
    fs::create_dir_all(i.dir.join("etc/amazon-cloudwatch-agent.d")).unwrap();
    // what `amazon-cloudwatch-agent-ctl -a fetch-config -c file:/x/config.json` leaves
    fs::write(
        i.dir.join("etc/amazon-cloudwatch-agent.d/file_config.json"),
        format!(
            r#"{{"agent":{{"run_as_user":"root"}},"logs":{{"logs_collected":{{"files":{{"collect_list":[{{"file_path":"{}","log_group_name":"app","log_stream_name":"{{instance_id}}"}}]}}}}}}}}"#,
            app.display()
        ),
    )
    .unwrap();
    // a fetch-config in progress: not what the agent runs with
    fs::write(
        i.dir
            .join("etc/amazon-cloudwatch-agent.d/file_next.json.tmp"),
        "{",
    )
    .unwrap();
    let mut s = i.sources();
    i.state(&app, &format!("100\n{}\n0-100", app.display()));
    assert!(look(&mut s).await.is_drained());
    // a TOML (the agent started) is what it runs with from then on
    i.toml(&["other.log"], "");
    let other = i.log_file("other.log", 10);
    let b = look(&mut shipper::detect(&i.spec()).unwrap().sources).await;
    assert_eq!(one(&b, &other), (0, 10, State::Pending));
    assert!(b
        .files()
        .all(|f| f.source.as_deref() != Some(app.as_path())));
}

#[tokio::test]
async fn only_the_newest_match_is_tailed() {
    let i = Install::new();
    i.toml(&["app.log*"], "");
    let old = i.log_file("app.log.1", 100);
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(t)
        .unwrap();
    let app = i.log_file("app.log", 50);
    let b = look(&mut i.sources()).await;
    assert_eq!(b.files().count(), 1, "{}", b.to_table());
    assert_eq!(one(&b, &app), (0, 50, State::Pending));
}

#[tokio::test]
async fn drops_in_the_agent_s_log_during_the_drain_are_lost_bytes() {
    let i = Install::new();
    i.toml(&["app.log"], "");
    let app = i.log_file("app.log", 3000);
    // before the drain: not this drain's loss
    i.agent_log("2026-08-07T10:00:00Z E! [outputs.cloudwatchlogs] All 5 retries to app/i-1 failed for PutLogEvents, request dropped.");
    let mut s = i.sources();
    for src in s.iter_mut() {
        src.begin();
    }
    i.state(&app, &format!("1000\n{}\n0-1000", app.display()));
    let b = look(&mut s).await;
    assert_eq!(b.lost_bytes(), 0);
    // a batch is dropped: the state moves on (v1.300059.0+), the log says so
    i.agent_log("2026-08-07T10:00:05Z W! [outputs.cloudwatchlogs] Retried 4 time, going to sleep 1s before retrying.");
    i.agent_log("2026-08-07T10:00:06Z E! [outputs.cloudwatchlogs] All 5 retries to app/i-1 failed for PutLogEvents, request dropped.");
    i.state(&app, &format!("3000\n{}\n0-3000", app.display()));
    let b = look(&mut s).await;
    assert!(
        b.files().all(|f| f.state == State::Shipped),
        "the state says done"
    );
    let lost = b.sources[0].lost.as_ref().expect("the drop is reported");
    assert_eq!(
        lost.bytes, 2000,
        "bounded by what the state advanced during the drain"
    );
    assert!(
        lost.evidence.contains("1 batch dropped")
            && lost.evidence.contains("app/i-1")
            && lost.evidence.contains("upper bound"),
        "{}",
        lost.evidence
    );
    assert!(b.to_table().contains("LOST: 2.0 kB"), "{}", b.to_table());
    let json = serde_json::to_value(&b).unwrap();
    assert_eq!(json["lost_bytes"], 2000);
}

#[tokio::test]
async fn a_rotated_file_s_last_bytes_wait_for_a_later_batch_of_its_stream() {
    let i = Install::new();
    i.toml(&["app.log"], "");
    let app = i.log_file("app.log", 1000);
    let mut s = i.sources();
    i.state(&app, &format!("600\n{}\n0-600", app.display()));
    assert_eq!(one(&look(&mut s).await, &app), (600, 400, State::Pending));
    // rotated: renamed, a new app.log started; the agent has not noticed yet
    fs::rename(&app, i.logs.join("app.log.1")).unwrap();
    i.log_file("app.log", 80);
    let b = look(&mut s).await;
    assert_eq!(b.files().count(), 2, "{}", b.to_table());
    assert!(!b.is_drained());
    // the agent reaches the old file's end, deletes its state (manager.go:129-134) and
    // queues the last 400 bytes; the ranges of those batches are never written
    fs::remove_file(
        i.dir
            .join("logs/state")
            .join(state::escape(&app.display().to_string())),
    )
    .unwrap();
    let b = look(&mut s).await;
    let rotated = b
        .files()
        .find(|f| f.found_at.as_deref() == Some(i.logs.join("app.log.1").as_path()))
        .expect("the rotated file is still waited for");
    assert_eq!((rotated.offset, rotated.pending), (600, 400));
    assert!(
        b.sources[0]
            .waiting
            .iter()
            .any(|w| w.contains("rotated") && w.contains("later batch")),
        "{:?}",
        b.sources[0].waiting
    );
    assert!(!b.is_drained());
    // the new file's first batch is done: batches of a stream go in order, so the old
    // file's were done before it
    i.state(&app, &format!("80\n{}\n0-80", app.display()));
    let b = look(&mut s).await;
    assert!(b.is_drained(), "{}", b.to_table());
}

#[test]
fn check_names_what_cannot_be_exact() {
    let i = Install::new();
    i.toml(&["app.log"], "    concurrency = 2\n");
    let t = fs::read_to_string(i.dir.join("etc/amazon-cloudwatch-agent.toml")).unwrap();
    let console = t.replace(
        "logfile = \"/opt/aws/amazon-cloudwatch-agent/logs/amazon-cloudwatch-agent.log\"",
        "logfile = \"\"",
    );
    assert_ne!(t, console);
    fs::write(i.dir.join("etc/amazon-cloudwatch-agent.toml"), console).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drainhook"))
        .args(["check", "--shipper", "cloudwatch", "--cloudwatch-agent-dir"])
        .arg(&i.dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("logs.concurrency is 2"), "{text}");
    assert!(text.contains("logs to its console"), "{text}");
    assert!(text.contains("CANNOT BE EXACT"), "{text}");
}

#[test]
fn an_unreadable_config_is_an_error_naming_it() {
    let i = Install::new();
    fs::write(
        i.dir.join("etc/amazon-cloudwatch-agent.toml"),
        "[[inputs.logfile]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drainhook"))
        .args([
            "backlog",
            "--shipper",
            "cloudwatch",
            "--cloudwatch-agent-dir",
        ])
        .arg(&i.dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("amazon-cloudwatch-agent.toml"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Any bytes are a state, a cut state or an error; never a panic.
    #[test]
    fn any_text_is_classified(text in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = state::parse("_var_log_app.log", &text);
    }

    /// A state file read while the agent rewrites it (any prefix of its text) is read as
    /// being written, or as no more done than the whole file says: never as more.
    #[test]
    fn a_cut_state_never_shows_more_done(
        ranges in proptest::collection::vec((0u64..500, 1u64..500), 1..5),
        cut in 0usize..200,
        size in 0u64..3000,
    ) {
        let mut at = 0;
        let mut rs = Vec::new();
        for (gap, len) in ranges {
            rs.push(format!("{}-{}", at + gap, at + gap + len));
            at += gap + len;
        }
        let text = format!("{at}\n/var/log/app.log\n{}", rs.join(","));
        let whole = state::parse("_var_log_app.log", text.as_bytes()).unwrap().coverage(size);
        let part = &text.as_bytes()[..cut.min(text.len())];
        // Cut right after the path line it reads as the old format, `[0, max)`: the shipper
        // tells the two apart by having seen this file's range line. (With the default single
        // range, `0-max`, the two say the same; more ranges, or one not from 0, exist only
        // with logs.concurrency > 1, which `check` already says is not exact.)
        let at_path_end = part.ends_with(b"/var/log/app.log");
        if let (Ok(s), false) = (state::parse("_var_log_app.log", part), at_path_end) {
            let c = s.coverage(size);
            prop_assert!(c.done <= whole.done || whole.truncated, "{part:?}");
        }
    }
}
