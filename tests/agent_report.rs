//! The agent's drain report, end to end, with filebeat's disk queue: the registry is acked
//! when a line is written to the queue, long before the output has it. The agent holds the
//! instance until the output delivered every byte, writes the report line, waits (still
//! holding) until the same filebeat delivered that line too, and only then completes with
//! CONTINUE. Run through `make test`, which starts the emulator.

#[path = "common/aws.rs"]
mod aws;
mod common;

use aws::*;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[tokio::test]
async fn with_the_disk_queue_every_byte_and_the_report_line_are_delivered_before_continue() {
    let g = group("report", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let logs = t.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    // In a directory the agent creates (0700), as on a fresh instance without the installer.
    let report = t.path().join("drainhook").join("drain.log");
    let delivered = t.path().join("delivered.log");
    let data = t.path().join("data");
    let written = write_logs(
        &logs.join("app.log"),
        &["--rate", "10000000", "--total", "100000"],
    );
    // The output delivers far slower than the registry acks: ~10 s of queue at scale-in.
    let sim = Sim::ship(
        &data,
        &[
            "--queue",
            "disk",
            "--rate",
            "1000000",
            "--output-rate",
            "20000",
            "--segment-size",
            "20000",
            "--output",
            delivered.to_str().unwrap(),
        ],
        &[&logs.join("app.log*"), &report],
    );
    sim.wait_registry(&data);
    let agent = Agent::launch_env(
        &me,
        &data,
        &[],
        &[("DRAINHOOK_REPORT_FILE", report.to_str().unwrap())],
    );
    agent.wait_in_service().await;
    g.scale_in(&me).await;
    g.wait_gone(&me, Duration::from_secs(90)).await;

    let out = fs::read_to_string(&delivered).unwrap();
    let (reports, app): (Vec<&str>, Vec<&str>) = out
        .lines()
        .partition(|l| l.starts_with(r#"{"event":"drainhook.drain""#));
    let app_bytes: u64 = app.iter().map(|l| l.len() as u64 + 1).sum();
    assert_eq!(
        app_bytes, written,
        "the output delivered every byte written before the instance went"
    );
    assert_eq!(reports.len(), 1, "one report line delivered: {out:.300}");
    let r: serde_json::Value = serde_json::from_str(reports[0]).unwrap();
    assert_eq!(r["outcome"], "drained", "{r}");
    assert_eq!(r["result"], "CONTINUE", "{r}");
    assert_eq!(r["drained"], true, "{r}");
    assert_eq!(r["pending_bytes"], 0, "{r}");
    assert_eq!(r["lost_bytes"], 0, "{r}");
    assert_eq!(r["queued_bytes"], 0, "{r}");
    assert_eq!(r["instance"], me.as_str(), "{r}");
    assert_eq!(r["group"], g.name.as_str(), "{r}");
    assert_eq!(r["hook"], g.hook.as_str(), "{r}");
    assert_eq!(r["trigger"], "imds", "{r}");
    assert_eq!(r["shippers"], serde_json::json!(["filebeat"]), "{r}");

    let logs = agent.logs();
    let delivered_at = logs
        .find("drain report delivered by filebeat")
        .unwrap_or_else(|| panic!("the agent says the report was delivered: {logs}"));
    let completed_at = logs
        .find("completed lifecycle action with CONTINUE")
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        delivered_at < completed_at,
        "the report's delivery is waited for before the complete: {logs}"
    );
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&report), 0o600, "only root reads the report");
    assert_eq!(mode(report.parent().unwrap()), 0o700);
    drop(sim);
}
