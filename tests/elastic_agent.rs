//! filebeat under Elastic Agent: every component's registry of the running agent is found by
//! default (8.6+ `run/<component>/` and <= 8.5 `run/<output>/filebeat--<version>/`), the
//! drain waits for all of them, and a home an upgrade left behind is ignored. The layouts
//! are built under a scratch root (`DRAINHOOK_TEST_ROOT`, a prefix only tests use), with the
//! filebeat simulator writing each component's registry.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An install tree with the agent's link pointing at `current` (a home name).
struct Install {
    root: tempfile::TempDir,
}

impl Install {
    fn new(current: &str) -> Install {
        let root = tempfile::tempdir().unwrap();
        let top = root.path().join("opt/Elastic/Agent");
        let home = top.join("data").join(current);
        fs::create_dir_all(&home).unwrap();
        fs::write(home.join("elastic-agent"), "").unwrap();
        std::os::unix::fs::symlink(
            format!("data/{current}/elastic-agent"),
            top.join("elastic-agent"),
        )
        .unwrap();
        Install { root }
    }

    fn home(&self, name: &str) -> PathBuf {
        self.root.path().join("opt/Elastic/Agent/data").join(name)
    }

    fn drainhook(&self) -> std::process::Command {
        let mut c = drainhook();
        c.env("DRAINHOOK_TEST_ROOT", self.root.path());
        c
    }
}

/// A log of `bytes` in `dir`, shipped into `data` by the simulator at `rate`.
fn component(dir: &Path, data: &Path, bytes: u64, rate: &str, extra: &[&str]) -> (Sim, u64) {
    fs::create_dir_all(dir).unwrap();
    let log = dir.join("app.log");
    let written = write_logs(&log, &["--rate", "10000000", "--total", &bytes.to_string()]);
    let mut args = vec!["--rate", rate];
    args.extend_from_slice(extra);
    let sim = Sim::ship(data, &args, &[&log]);
    sim.wait_registry(data);
    (sim, written)
}

/// A registry that will never be shipped: what an upgrade leaves in the old home.
fn stale_registry(data: &Path, logs: &Path) {
    fs::create_dir_all(logs).unwrap();
    let log = logs.join("old.log");
    fs::write(&log, "a line the old agent never shipped\n").unwrap();
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(&log).unwrap();
    let d = data.join("registry/filebeat");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("meta.json"), r#"{"version":"1"}"#).unwrap();
    fs::write(
        d.join("log.json"),
        format!(
            "{{\"op\":\"set\",\"id\":1}}\n{{\"k\":\"filestream::old::native::{ino}-{dev}\",\"v\":{{\"ttl\":-1,\"cursor\":{{\"offset\":3}},\"meta\":{{\"source\":\"{}\",\"identifier_name\":\"native\"}}}}}}\n",
            log.display(),
            ino = m.ino(),
            dev = m.dev()
        ),
    )
    .unwrap();
}

fn owners(v: &serde_json::Value) -> Vec<String> {
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["owner"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_running_agent_s_components_are_all_drained_and_an_old_home_is_ignored() {
    let ea = Install::new("elastic-agent-8.15.1-bbbbbb");
    let home = ea.home("elastic-agent-8.15.1-bbbbbb");
    let old = ea.home("elastic-agent-8.5.3-aaaaaa");
    stale_registry(
        &old.join("run/default/filebeat--8.5.3"),
        &ea.root.path().join("old-logs"),
    );
    let logs = ea.root.path().join("logs");
    let (_fast, w1) = component(
        &logs.join("a"),
        &home.join("run/filestream-default"),
        60_000,
        "200000",
        &[],
    );
    let (_slow, w2) = component(
        &logs.join("b"),
        &home.join("run/log-default"),
        60_000,
        "20000",
        &["--input", "log"],
    );

    let out = ea.drainhook().args(["backlog", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        owners(&v),
        [
            "Elastic Agent component filestream-default",
            "Elastic Agent component log-default"
        ],
        "both components of the running agent, not the old home"
    );
    assert!(
        stderr(&out).contains("elastic-agent-8.5.3-aaaaaa") && stderr(&out).contains("upgrade"),
        "the ignored home is said: {}",
        stderr(&out)
    );

    let t = Instant::now();
    let out = ea
        .drainhook()
        .args(["drain", "--settle", "1s", "--timeout", "60s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The slow component ships 60 kB at 20 kB/s: the drain waited for it.
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    let acked = |data: &Path| -> u64 {
        let out = drainhook()
            .args(["backlog", "--json", "--registry"])
            .arg(data)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["offset"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(acked(&home.join("run/filestream-default")), w1);
    assert_eq!(acked(&home.join("run/log-default")), w2);

    let out = ea.drainhook().arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("filebeat (Elastic Agent component filestream-default)")
            && text.contains("filebeat (Elastic Agent component log-default)")
            && text.contains("an exact drain is possible"),
        "{text}"
    );
}

#[test]
fn the_8_5_layout_is_found_with_one_filebeat_per_output() {
    let ea = Install::new("elastic-agent-abcdef");
    let home = ea.home("elastic-agent-abcdef");
    let logs = ea.root.path().join("logs");
    let (_a, _) = component(
        &logs.join("a"),
        &home.join("run/default/filebeat--8.5.3"),
        20_000,
        "1000000",
        &[],
    );
    let (_m, _) = component(
        &logs.join("m"),
        &home.join("run/monitoring/filebeat--8.5.3"),
        20_000,
        "1000000",
        &[],
    );
    let out = ea.drainhook().args(["backlog", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        owners(&v),
        [
            "Elastic Agent component default/filebeat--8.5.3",
            "Elastic Agent component monitoring/filebeat--8.5.3"
        ]
    );
}

#[test]
fn several_registries_are_each_reported_and_all_waited_for() {
    let t = tempfile::tempdir().unwrap();
    let (d1, _s1, w1) = shipping(&t.path().join("one"), 30_000, &["--rate", "300000"]);
    let (d2, _s2, w2) = shipping(&t.path().join("two"), 30_000, &["--rate", "15000"]);
    let out = drainhook()
        .args(["drain", "--settle", "1s", "--timeout", "60s", "--registry"])
        .arg(&d1)
        .arg("--registry")
        .arg(&d2)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!((acked_bytes(&d1), acked_bytes(&d2)), (w1, w2));
    let out = drainhook()
        .args(["backlog", "--registry"])
        .arg(&d1)
        .arg("--registry")
        .arg(&d2)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.matches("filebeat: ").count() == 2 && text.contains("all 2 sources:"),
        "{text}"
    );
}
