//! `drainhook check`: what a drain would watch, and whether "drained" can be exact, judged
//! from filebeat's config (read under a scratch root, `DRAINHOOK_TEST_ROOT`) and its state.

mod common;

use common::*;
use std::fs;
use std::path::Path;

fn check(root: &Path) -> (Option<i32>, String) {
    let out = drainhook()
        .env("DRAINHOOK_TEST_ROOT", root)
        .arg("check")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out),
    )
}

/// filebeat.yml under `root` with `yaml`, and a registry shipped to the end in its data dir.
fn filebeat(root: &Path, yaml: &str, data: &str) -> Sim {
    fs::create_dir_all(root.join("etc/filebeat")).unwrap();
    fs::write(root.join("etc/filebeat/filebeat.yml"), yaml).unwrap();
    let logs = root.join("logs");
    fs::create_dir_all(&logs).unwrap();
    write_logs(
        &logs.join("app.log"),
        &["--rate", "10000000", "--total", "5000"],
    );
    let data = root.join(data.trim_start_matches('/'));
    let sim = Sim::ship(&data, &["--rate", "1000000"], &[&logs.join("app.log")]);
    sim.wait_registry(&data);
    sim
}

#[test]
fn the_memory_queue_can_be_judged_exactly() {
    let t = tempfile::tempdir().unwrap();
    let _sim = filebeat(t.path(), "filebeat.inputs: []\n", "/var/lib/filebeat");
    let (code, text) = check(t.path());
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("registry offsets (acknowledged by the output: memory queue)")
            && text.contains("app.log")
            && text.contains("verdict: an exact drain is possible"),
        "{text}"
    );
}

#[test]
fn the_spool_queue_is_named_as_something_that_cannot_be_judged() {
    let t = tempfile::tempdir().unwrap();
    let _sim = filebeat(
        t.path(),
        "queue.spool:\n  file:\n    size: 512MiB\npath.data: /srv/filebeat\n",
        "/srv/filebeat",
    );
    // The config names /srv/filebeat; under the scratch root that is <root>/srv/filebeat.
    let (code, text) = check(t.path());
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("queue.spool") && text.contains("CANNOT BE EXACT"),
        "{text}"
    );
}

#[test]
fn nothing_to_drain_is_an_error_that_says_where_it_looked() {
    let t = tempfile::tempdir().unwrap();
    let (code, text) = check(t.path());
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("no log shipper found") && text.contains("filebeat.yml"),
        "{text}"
    );
}

#[test]
fn a_config_that_does_not_parse_is_an_error_naming_it() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("etc/filebeat")).unwrap();
    fs::write(t.path().join("etc/filebeat/filebeat.yml"), "queue: [disk\n").unwrap();
    let (code, text) = check(t.path());
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("filebeat.yml") && text.contains("not YAML"),
        "{text}"
    );
}
