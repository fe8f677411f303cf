//! The shutdown fallback and the deployment files: systemd units, the SysV script in a
//! scratch root, the installer, and the IAM policy against the calls the code makes.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// `Key=value` lines of a unit file (a key given twice keeps both values).
fn unit(name: &str) -> BTreeMap<String, Vec<String>> {
    let text = fs::read_to_string(repo(&format!("systemd/{name}"))).unwrap();
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            if !k.starts_with('#') && !k.starts_with('[') {
                m.entry(k.trim().into()).or_default().push(v.trim().into());
            }
        }
    }
    m
}

fn words(u: &BTreeMap<String, Vec<String>>, key: &str) -> Vec<String> {
    u.get(key)
        .map(|vs| {
            vs.iter()
                .flat_map(|v| v.split_whitespace().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_fallback_stops_before_filebeat_and_outlasts_its_drain() {
    let u = unit("drainhook-shutdown.service");
    let after = words(&u, "After");
    // systemd stops units in reverse start order: After= filebeat means stopped before it.
    for shipper in [
        "filebeat.service",
        "elastic-agent.service",
        "amazon-cloudwatch-agent.service",
        "fluent-bit.service",
        "vector.service",
    ] {
        assert!(after.contains(&shipper.to_string()), "{shipper}: {after:?}");
    }
    assert!(
        after.contains(&"network-online.target".to_string()),
        "{after:?}"
    );
    assert_eq!(u["Type"], vec!["oneshot"]);
    assert_eq!(u["RemainAfterExit"], vec!["yes"]);
    let stop = &u["ExecStop"][0];
    let args: Vec<&str> = stop.split_whitespace().collect();
    assert_eq!(&args[1..3], ["drain", "--timeout"], "{stop}");
    let drain = drainhook::duration::parse(args[3]).unwrap();
    let stop_timeout =
        drainhook::duration::parse(&u["TimeoutStopSec"][0].replace("min", "m")).unwrap();
    assert!(
        stop_timeout > drain,
        "TimeoutStopSec {stop_timeout:?} must exceed the drain's {drain:?}"
    );

    let agent = unit("drainhook.service");
    assert_eq!(agent["Type"], vec!["notify"]);
    assert_eq!(agent["Restart"], vec!["on-failure"]);
    assert!(words(&agent, "After").contains(&"network-online.target".to_string()));
    assert!(agent["ExecStart"][0].contains("/etc/drainhook/drainhook.toml"));
}

#[test]
fn systemd_analyze_verifies_both_units() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("systemd-analyze is needed (apt-get install systemd; .ci/run installs it)");
    }
    let t = tempfile::tempdir().unwrap();
    for name in ["drainhook.service", "drainhook-shutdown.service"] {
        let text = fs::read_to_string(repo(&format!("systemd/{name}")))
            .unwrap()
            .replace("/usr/local/bin/drainhook", env!("CARGO_BIN_EXE_drainhook"));
        fs::write(t.path().join(name), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(t.path().join("drainhook.service"))
        .arg(t.path().join("drainhook-shutdown.service"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// What `systemd-analyze security --offline=true` rates a unit of `systemd/` (its "Overall
/// exposure level", 0 to 10: lower is more confined).
fn exposure(name: &str) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(repo(&format!("systemd/{name}")))
        .output()
        .expect("systemd-analyze is needed (apt-get install systemd; .ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("no exposure level for {name}: {text}{}", stderr(&out)));
    line.rsplit(':')
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn systemd_analyze_security_rates_both_units_within_their_bars() {
    let agent = exposure("drainhook.service");
    let fallback = exposure("drainhook-shutdown.service");
    eprintln!("systemd-analyze security --offline=true: drainhook.service {agent:.1}, drainhook-shutdown.service {fallback:.1}");
    assert!(
        agent <= 4.0,
        "drainhook.service is rated {agent}, above 4.0"
    );
    assert!(
        fallback <= 3.0,
        "drainhook-shutdown.service is rated {fallback}, above 3.0"
    );
}

#[test]
fn the_units_write_their_own_directories_alone_and_the_marker_outlives_them() {
    for name in ["drainhook.service", "drainhook-shutdown.service"] {
        let u = unit(name);
        // Read-only everywhere but the directories systemd makes for the unit.
        assert_eq!(u["ProtectSystem"], vec!["strict"], "{name}");
        assert!(!u.contains_key("ReadWritePaths"), "{name}: {u:?}");
        assert_eq!(u["RuntimeDirectory"], vec!["drainhook"], "{name}");
        assert_eq!(u["LogsDirectory"], vec!["drainhook"], "{name}");
        assert_eq!(u["RuntimeDirectoryMode"], vec!["0700"], "{name}");
        assert_eq!(u["LogsDirectoryMode"], vec!["0700"], "{name}");
        assert_eq!(u["UMask"], vec!["0077"], "{name}");
        // Both units share /run/drainhook: neither may remove it when it stops, or the
        // fallback would not find the agent's marker.
        assert_eq!(u["RuntimeDirectoryPreserve"], vec!["yes"], "{name}");
    }
    // The agent's marker is where the unit lets it write.
    assert_eq!(
        Path::new(drainhook::drain::DEFAULT_DRAINED_MARKER).parent(),
        Some(Path::new("/run/drainhook"))
    );
    // Only the agent talks to AWS; the fallback reaches loopback alone, and no local socket.
    let fallback = unit("drainhook-shutdown.service");
    assert_eq!(fallback["IPAddressDeny"], vec!["any"]);
    assert_eq!(fallback["IPAddressAllow"], vec!["localhost"]);
    assert_eq!(
        words(&fallback, "RestrictAddressFamilies"),
        ["AF_INET", "AF_INET6"]
    );
    assert_eq!(
        words(&unit("drainhook.service"), "RestrictAddressFamilies"),
        ["AF_UNIX", "AF_INET", "AF_INET6"]
    );
}

#[test]
fn the_syscall_filter_is_one_old_systemd_ignores_rather_than_kills_on() {
    // systemd < 239 (Amazon Linux 2: 219) does not know @system-service; as the first entry
    // of an allow list it would leave only execve and exit allowed: SIGSYS at start.
    for name in ["drainhook.service", "drainhook-shutdown.service"] {
        for filter in &unit(name)["SystemCallFilter"] {
            assert!(filter.starts_with('~'), "{name}: an allow list: {filter}");
        }
    }
}

/// `setpriv --bounding-set` for a unit's `CapabilityBoundingSet=` words, less `without`.
fn bounding_set(caps: &[String], without: &str) -> String {
    let mut set = "-all".to_string();
    for c in caps.iter().filter(|c| c.as_str() != without) {
        set += &format!(",+{}", c.trim_start_matches("CAP_").to_lowercase());
    }
    set
}

/// `drainhook backlog --json` run as root with only `caps` in its bounding set, as the
/// units run it: `(state, pending)` of the registry's one file.
fn backlog_with(caps: &str, data: &Path) -> (String, u64) {
    let out = Command::new("setpriv")
        .arg(format!("--bounding-set={caps}"))
        .args(["--inh-caps=-all", "--no-new-privs"])
        .arg(env!("CARGO_BIN_EXE_drainhook"))
        .args(["backlog", "--json", "--registry"])
        .arg(data)
        .output()
        .expect("setpriv (util-linux) is needed");
    assert!(out.status.success(), "{caps}: {}", stderr(&out));
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &b["files"][0];
    (
        f["state"].as_str().unwrap().to_string(),
        f["pending"].as_u64().unwrap(),
    )
}

#[test]
fn the_units_two_capabilities_are_what_reading_the_logs_needs() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: dropping capabilities from root needs root (CI runs as root)");
        return;
    }
    let caps = words(&unit("drainhook.service"), "CapabilityBoundingSet");
    assert_eq!(
        caps,
        words(&unit("drainhook-shutdown.service"), "CapabilityBoundingSet")
    );
    assert_eq!(caps, ["CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"]);
    let t = tempfile::tempdir().unwrap();

    // A log in a directory only its owner (uid 4242) may enter, with bytes pending that the
    // shipper does not hold open (shipped to its end, then written to while it was down).
    let (closed, sim, written) = shipping(&t.path().join("closed"), 30_000, &[]);
    let t0 = Instant::now();
    while acked_bytes(&closed) < written && t0.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(sim);
    let logs = t.path().join("closed/logs");
    let more = write_logs(
        &logs.join("app.log"),
        &["--rate", "10000000", "--total", "1000"],
    );
    std::os::unix::fs::chown(&logs, Some(4242), Some(4242)).unwrap();
    fs::set_permissions(&logs, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();

    // A log deleted while the shipper (root, every capability) still reads it.
    let (deleted, _sim, _) = shipping(
        &t.path().join("deleted"),
        200_000,
        &["--rate", "2000", "--close-inactive", "120"],
    );
    fs::remove_file(t.path().join("deleted/logs/app.log")).unwrap();

    let unit_caps = bounding_set(&caps, "");
    let (state, pending) = backlog_with(&unit_caps, &closed);
    assert_eq!((state.as_str(), pending), ("pending", more));
    let (state, pending) = backlog_with(&unit_caps, &deleted);
    assert!(state == "pending" && pending > 0, "{state} {pending}");
    // Each is needed: without it the file looks gone, and a drain would not wait for it.
    let (state, _) = backlog_with(&bounding_set(&caps, "CAP_DAC_READ_SEARCH"), &closed);
    assert_eq!(state, "gone", "without CAP_DAC_READ_SEARCH");
    let (state, _) = backlog_with(&bounding_set(&caps, "CAP_SYS_PTRACE"), &deleted);
    assert_eq!(state, "gone", "without CAP_SYS_PTRACE");
}

fn sysv(root: &Path, action: &str, data: &Path) -> (i32, String, std::time::Duration) {
    let t = Instant::now();
    let out = Command::new("sh")
        .arg(repo("systemd/sysvinit/drainhook"))
        .arg(action)
        .env("DRAINHOOK_BIN", env!("CARGO_BIN_EXE_drainhook"))
        .env("DRAINHOOK_LOCK_DIR", root.join("var/lock/subsys"))
        .env("DRAINHOOK_REGISTRY", data)
        .env("DRAINHOOK_TEST_ROOT", root)
        .env(
            "DRAINHOOK_REPORT_FILE",
            root.join("var/log/drainhook/drain.log"),
        )
        .env("DRAINHOOK_DRAIN_TIMEOUT", "60s")
        .env("DRAINHOOK_SETTLE", "1s")
        .env(
            "DRAINHOOK_DRAINED_MARKER",
            root.join("run/drainhook/drained"),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
    (out.status.code().unwrap_or(-1), text, t.elapsed())
}

#[test]
fn the_sysv_script_arms_at_start_and_drains_at_stop() {
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 60_000, &["--rate", "20000"]);
    let lock = t.path().join("var/lock/subsys/drainhook");

    let (code, text, _) = sysv(t.path(), "status", &data);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("stopped"), "{text}");
    let (code, _, _) = sysv(t.path(), "start", &data);
    assert_eq!(code, 0);
    assert!(
        lock.exists(),
        "start must create the lock, or rc never calls stop at shutdown"
    );
    let (code, text, _) = sysv(t.path(), "status", &data);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("armed"), "{text}");

    // The report file as the installer leaves it: there, but no input ships it here.
    let report = t.path().join("var/log/drainhook/drain.log");
    fs::create_dir_all(report.parent().unwrap()).unwrap();
    fs::write(&report, "").unwrap();
    let (code, text, took) = sysv(t.path(), "stop", &data);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("drained"), "{text}");
    // The console names the report where the drain wrote it (the script itself names none:
    // report_file may be set in drainhook.toml, which only the drain reads).
    assert!(
        text.contains(&format!("drain report written to {}", report.display())),
        "{text}"
    );
    let acked = acked_bytes(&data);
    assert_eq!(
        acked, written,
        "stop returned before everything was shipped ({took:?})"
    );
    assert!(!lock.exists(), "stop removes the lock");
    let line = fs::read_to_string(&report).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one report line");
    assert_eq!(
        (v["outcome"].as_str(), v["drained"].as_bool()),
        (Some("shutdown"), Some(true)),
        "{line}"
    );
    assert!(
        text.contains("not shipped: no log shipper tracks it"),
        "the report nobody ships is said: {text}"
    );
}

#[test]
fn the_sysv_script_drains_without_core_dumps_with_umask_077_and_the_units_capabilities() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let seen = t.path().join("seen");
    // Stands in for the binary: notes what it was started with.
    let bin = t.path().join("drainhook");
    fs::write(
        &bin,
        format!(
            "#!/bin/sh\n{{ grep -E '^(CapBnd|NoNewPrivs):' /proc/self/status; echo core $(ulimit -c); echo umask $(umask); }} > {}\n",
            seen.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    // Started as rc may start it: core dumps allowed where the hard limit lets them be.
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -c unlimited 2>/dev/null; exec sh \"$0\" stop")
        .arg(repo("systemd/sysvinit/drainhook"))
        .env("DRAINHOOK_BIN", &bin)
        .env("DRAINHOOK_LOCK_DIR", t.path().join("lock"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = fs::read_to_string(&seen).unwrap();
    let field = |k: &str| {
        seen.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("core"), "0", "{seen}");
    assert_eq!(field("umask"), "0077", "{seen}");
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Root can drop capabilities (setpriv): the units' two, CAP_DAC_READ_SEARCH (bit 2)
        // and CAP_SYS_PTRACE (bit 19), and no new privileges.
        assert_eq!(
            words(&unit("drainhook.service"), "CapabilityBoundingSet"),
            ["CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"]
        );
        assert_eq!(
            field("CapBnd:"),
            format!("{:016x}", (1u64 << 2) | (1 << 19)),
            "{seen}"
        );
        assert_eq!(field("NoNewPrivs:"), "1", "{seen}");
    }
}

/// `drainhook agent --config <cfg>`: its exit code and stderr. The file holds a valid config
/// that the agent rejects once read (no trigger), so that reading it is visible.
fn agent_with_config(cfg: &Path) -> (Option<i32>, String) {
    let out = drainhook()
        .args(["agent", "--config"])
        .arg(cfg)
        .env_remove("DRAINHOOK_QUEUE_URL")
        .env_remove("DRAINHOOK_IMDS_TRIGGER")
        .output()
        .unwrap();
    (out.status.code(), stderr(&out))
}

#[test]
fn the_agent_refuses_a_config_file_anyone_but_root_can_change() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("etc-drainhook");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = dir.join("drainhook.toml");
    fs::write(&cfg, "imds_trigger = false\n").unwrap();
    let chmod = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    chmod(&cfg, 0o644);

    // Accepted: read (and then rejected for what it says).
    let (code, err) = agent_with_config(&cfg);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no trigger"), "{err}");

    // The file writable by everyone: refused before it is read, naming the file and the fix.
    chmod(&cfg, 0o666);
    let (code, err) = agent_with_config(&cfg);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("refusing to start")
            && err.contains(&format!("config file {}", cfg.display()))
            && err.contains(&format!("Fix: chmod go-w {}", cfg.display())),
        "{err}"
    );
    assert!(!err.contains("no trigger"), "it was read: {err}");
    chmod(&cfg, 0o644);

    // Its directory writable by the group.
    chmod(&dir, 0o775);
    let (code, err) = agent_with_config(&cfg);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("its directory {} is writable", dir.display()))
            && err.contains(&format!("Fix: chmod go-w {}", dir.display())),
        "{err}"
    );
    chmod(&dir, 0o755);

    // Owned by another user (only root can give a file away; CI runs as root).
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&cfg, Some(4242), Some(4242)).unwrap();
        let (code, err) = agent_with_config(&cfg);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "config file {} is owned by uid 4242, not root",
                cfg.display()
            )) && err.contains(&format!("Fix: chown root:root {}", cfg.display())),
            "{err}"
        );
    }
}

/// Every file and link under `root`, with its content or target.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.insert(rel, format!("-> {}", fs::read_link(&p).unwrap().display()));
            } else if ft.is_dir() {
                out.insert(rel + "/", String::new());
                stack.push(p);
            } else {
                out.insert(rel, format!("{} bytes", fs::metadata(&p).unwrap().len()));
            }
        }
    }
    out
}

fn install(root: &Path, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(repo("infra/install.sh"))
        .args(args)
        .env("DRAINHOOK_ROOT", root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh {args:?}: {}",
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_installer_is_idempotent_and_uninstall_leaves_nothing() {
    let cfg = tempfile::NamedTempFile::new().unwrap();
    fs::write(cfg.path(), "queue_url = \"https://sqs.example/q\"\n").unwrap();
    let bin = env!("CARGO_BIN_EXE_drainhook");
    let cfg_path = cfg.path().to_str().unwrap();
    for init in ["sysv", "systemd"] {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let args = ["--binary", bin, "--config", cfg_path, "--init", init];
        install(root, &args);
        let first = tree(root);
        let again = install(root, &args);
        assert_eq!(tree(root), first, "{init}: a second run changed the tree");
        assert!(
            !again.contains("installed /"),
            "{init}: a second run copied again: {again}"
        );
        assert!(first.contains_key("usr/local/bin/drainhook"));
        assert!(first.contains_key("etc/drainhook/drainhook.toml"));
        if init == "sysv" {
            // filebeat's own script says `chkconfig: 2345 98 02`: ours must stop first.
            let filebeat_stop = 2;
            for lvl in [0, 6] {
                let k: Vec<&String> = first
                    .keys()
                    .filter(|k| k.starts_with(&format!("etc/rc.d/rc{lvl}.d/K")))
                    .collect();
                assert_eq!(k.len(), 1, "rc{lvl}.d: {first:?}");
                let n: u32 = k[0].rsplit('/').next().unwrap()[1..3].parse().unwrap();
                assert!(
                    n < filebeat_stop,
                    "K{n:02} must be lower than filebeat's K{filebeat_stop:02}"
                );
            }
            assert!(
                first.contains_key("etc/rc.d/rc3.d/S99drainhook"),
                "{first:?}"
            );
            assert!(first.contains_key("etc/rc.d/init.d/drainhook"));
        } else {
            for u in ["drainhook.service", "drainhook-shutdown.service"] {
                assert!(first.contains_key(&format!("etc/systemd/system/{u}")));
                assert!(
                    first.contains_key(&format!("etc/systemd/system/multi-user.target.wants/{u}"))
                );
            }
        }
        install(root, &["--uninstall"]);
        assert_eq!(
            tree(root),
            BTreeMap::new(),
            "{init}: uninstall left files behind"
        );
    }
}

/// The operation names of the two services the agent talks to (from the SDK crates).
const SQS_OPS: &[&str] = &[
    "add_permission",
    "cancel_message_move_task",
    "change_message_visibility",
    "change_message_visibility_batch",
    "create_queue",
    "delete_message",
    "delete_message_batch",
    "delete_queue",
    "get_queue_attributes",
    "get_queue_url",
    "list_dead_letter_source_queues",
    "list_message_move_tasks",
    "list_queue_tags",
    "list_queues",
    "purge_queue",
    "receive_message",
    "remove_permission",
    "send_message",
    "send_message_batch",
    "set_queue_attributes",
    "start_message_move_task",
    "tag_queue",
    "untag_queue",
];
const ASG_OPS: &[&str] = &[
    "attach_instances",
    "complete_lifecycle_action",
    "create_auto_scaling_group",
    "create_launch_configuration",
    "create_or_update_tags",
    "delete_auto_scaling_group",
    "delete_lifecycle_hook",
    "describe_auto_scaling_groups",
    "describe_auto_scaling_instances",
    "describe_lifecycle_hooks",
    "describe_scaling_activities",
    "detach_instances",
    "enter_standby",
    "exit_standby",
    "put_lifecycle_hook",
    "record_lifecycle_action_heartbeat",
    "set_desired_capacity",
    "set_instance_health",
    "set_instance_protection",
    "terminate_instance_in_auto_scaling_group",
    "update_auto_scaling_group",
];

fn pascal(op: &str) -> String {
    op.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Every `.rs` file under `dir`, read.
fn rust_sources(dir: &Path) -> String {
    let mut code = String::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            code += &rust_sources(&p);
        } else if p.extension().is_some_and(|x| x == "rs") {
            code += &fs::read_to_string(&p).unwrap();
        }
    }
    code
}

/// The IAM action an SDK call needs: batch calls are authorised by their single form.
fn iam_action(prefix: &str, op: &str) -> String {
    format!("{prefix}:{}", pascal(op.trim_end_matches("_batch")))
}

/// The actions Auto Scaling authorizes on every resource only: the Service Authorization
/// Reference for Amazon EC2 Auto Scaling lists no resource type for them
/// (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2autoscaling.html).
const NO_RESOURCE_LEVEL: &[&str] = &[
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLifecycleHooks",
];

/// The one resource an action of the policy files may name.
fn scoped_resource(action: &str) -> &'static str {
    match action {
        a if NO_RESOURCE_LEVEL.contains(&a) => "*",
        "autoscaling:CompleteLifecycleAction" | "autoscaling:RecordLifecycleActionHeartbeat" => {
            "arn:aws:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/REPLACE_WITH_GROUP_NAME"
        }
        "sqs:SendMessage" => "arn:aws:sqs:*:*:REPLACE_WITH_QUEUE_NAME-dlq",
        a if a.starts_with("sqs:") => "arn:aws:sqs:*:*:REPLACE_WITH_QUEUE_NAME",
        a => panic!("no resource scope known for {a}: add it here and to the policies"),
    }
}

/// The actions a policy file allows, each checked to be allowed on its own resource only:
/// the group, the queue, the dead-letter queue, or "*" where Auto Scaling has no
/// resource-level scope for it.
fn policy_actions(path: &str) -> std::collections::BTreeSet<String> {
    let policy: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(repo(path)).unwrap()).unwrap();
    let mut allowed = std::collections::BTreeSet::new();
    for st in policy["Statement"].as_array().unwrap() {
        assert_eq!(st["Effect"], "Allow");
        for a in st["Action"].as_array().unwrap() {
            let a = a.as_str().unwrap();
            assert_eq!(
                st["Resource"],
                scoped_resource(a),
                "{path}: {a} on {}",
                st["Resource"]
            );
            allowed.insert(a.to_string());
        }
    }
    allowed
}

#[test]
fn the_iam_policies_allow_exactly_the_calls_the_code_makes() {
    let code = rust_sources(&repo("src"));
    let mut called = std::collections::BTreeSet::new();
    for (prefix, ops) in [("sqs", SQS_OPS), ("autoscaling", ASG_OPS)] {
        for op in ops {
            if code.contains(&format!(".{op}()")) {
                called.insert(iam_action(prefix, op));
            }
        }
    }
    assert!(
        called.contains("sqs:ReceiveMessage")
            && called.contains("autoscaling:CompleteLifecycleAction"),
        "the scan found the agent's calls: {called:?}"
    );
    // With a queue: every call the agent can make.
    assert_eq!(
        policy_actions("infra/iam/drainhook-policy-queue.json"),
        called
    );
    // IMDS alone (the default): the same without any SQS call.
    let without_sqs: std::collections::BTreeSet<String> = called
        .iter()
        .filter(|a| !a.starts_with("sqs:"))
        .cloned()
        .collect();
    assert_eq!(
        policy_actions("infra/iam/drainhook-policy.json"),
        without_sqs
    );
}

/// Beside a filebeat, the installer adds an input for the drain report (created now, root's
/// alone) to filebeat's input directory, and prints `drainhook check`'s verdict on what it
/// finds; uninstalling removes the input and an empty report.
#[test]
fn the_installer_adds_filebeat_s_report_input_and_prints_check_s_verdict() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    fs::create_dir_all(root.join("etc/filebeat")).unwrap();
    fs::write(
        root.join("etc/filebeat/filebeat.yml"),
        "filebeat.config.inputs:\n  enabled: true\n  path: inputs.d/*.yml\n",
    )
    .unwrap();
    // filebeat at work on a log, its registry in the package's data dir.
    let logs = root.join("logs");
    fs::create_dir_all(&logs).unwrap();
    write_logs(
        &logs.join("app.log"),
        &["--rate", "10000000", "--total", "3000"],
    );
    let data = root.join("var/lib/filebeat");
    let sim = Sim::ship(&data, &["--rate", "1000000"], &[&logs.join("app.log")]);
    sim.wait_registry(&data);

    let bin = env!("CARGO_BIN_EXE_drainhook");
    let out = install(root, &["--binary", bin, "--init", "systemd"]);
    let input = root.join("etc/filebeat/inputs.d/drainhook-report.yml");
    let yaml = fs::read_to_string(&input).expect("the report's input");
    assert!(
        yaml.contains("- type: filestream") && yaml.contains("/var/log/drainhook/drain.log"),
        "{yaml}"
    );
    let report = root.join("var/log/drainhook/drain.log");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        (mode(&report), mode(report.parent().unwrap())),
        (0o600, 0o700)
    );
    assert!(
        out.contains("drainhook check:")
            && out.contains("app.log")
            && out.contains("verdict: an exact drain is possible"),
        "{out}"
    );
    assert!(
        !out.contains("NOTE: filebeat reads"),
        "inputs.d is enabled: {out}"
    );

    install(root, &["--uninstall"]);
    assert!(!input.exists() && !report.exists());
}
