//! The CloudWatch agent end to end: the local AWS emulator (run through `make test`), the
//! drainhook agent holding a terminating instance, and the agent's stand-in
//! (tests/sim/cloudwatch_sim.py) delivering batches to a log store file and writing its real
//! state files and log lines.

#[path = "common/aws.rs"]
mod aws;
mod common;
#[path = "common/cloudwatch.rs"]
mod cw;

use aws::*;
use common::*;
use cw::CwSim;
use std::time::Duration;

/// The application writes while the agent ships behind it and its log rotates (so the agent
/// deletes a rotated file's state before that file's last batches are delivered); the group
/// scales in. The instance goes only when every byte written is in the log store.
#[tokio::test]
async fn scale_in_is_held_until_the_cloudwatch_agent_delivered_every_line() {
    let g = group("cwscalein", 2, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let logs = t.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let app = logs.join("app.log");
    std::fs::write(&app, "").unwrap();
    let sim = CwSim::ship(
        &t.path().join("amazon-cloudwatch-agent"),
        &t.path().join("delivered.log"),
        &["--rate", "30000", "--batch-bytes", "8192"],
        &[&app],
    );
    let writer = spawn_writer(
        &app,
        &[
            "--rate",
            "40000",
            "--duration",
            "3.5",
            "--rotate-every",
            "60000",
            "--keep",
            "5",
        ],
    );
    let flags = sim.flags();
    let mut args: Vec<&str> = vec!["--queue-url", g.queue_url.as_str()];
    args.extend(flags.iter().map(String::as_str));
    let agent = Agent::launch(&me, &t.path().join("data"), &args);
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    g.scale_in(&me).await;
    agent
        .wait_log("holding instance", Duration::from_secs(30))
        .await;
    let written = writer_bytes(writer);
    g.wait_gone(&me, Duration::from_secs(60)).await;
    let delivered = sim.delivered();
    let logs_text = agent.logs();
    assert_eq!(
        delivered, written,
        "bytes written == bytes the output delivered before the instance went; agent log:\n{logs_text}\nstand-in's log:\n{}",
        sim.agent_log()
    );
    assert!(
        sim.agent_log().contains("Deleting state file"),
        "the log rotated under the stand-in: {}",
        sim.agent_log()
    );
    assert!(
        logs_text.contains("completed lifecycle action with CONTINUE"),
        "{logs_text}"
    );
    let action = &emulator_stats()["actions"][&me];
    assert_eq!(action["result"], "CONTINUE", "{action}");
    assert_eq!(action["completed_by"], me.as_str(), "{action}");
}

/// A batch the agent gives up on advances its state like a delivered one (v1.300059.0+): the
/// state says "done" for every file while the log store lacks that batch. The drain must say
/// LOST (exit 4, with what the agent's log showed), never "drained".
#[test]
fn a_dropped_batch_is_lost_bytes_never_drained() {
    let t = tempfile::tempdir().unwrap();
    let logs = t.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let app = logs.join("app.log");
    let written = write_logs(&app, &["--rate", "10000000", "--total", "60000"]);
    // The drain report is shipped too (its own collect_list entry), as the docs say to.
    let report = t.path().join("drain.log");
    std::fs::write(&report, "").unwrap();
    let sim = CwSim::ship(
        &t.path().join("amazon-cloudwatch-agent"),
        &t.path().join("delivered.log"),
        &[
            "--rate",
            "20000",
            "--batch-bytes",
            "10000",
            "--drop-batches",
            "3",
        ],
        &[&app, &report],
    );
    let out = drainhook()
        .args([
            "drain",
            "--settle",
            "1s",
            "--timeout",
            "60s",
            "--report",
            "--report-file",
        ])
        .arg(&report)
        .args(sim.flags())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "exit 4: lost\n{err}");
    assert!(err.contains("LOST"), "{err}");
    assert!(
        err.contains("request dropped"),
        "the agent's own line: {err}"
    );
    // What the state alone says (`backlog` judges the state; it follows no drain's log):
    // drained, while the log store misses a batch. A drain on the state alone would have
    // let these bytes go.
    let b = sim.backlog();
    assert_eq!(b["drained"], true, "{b}");
    assert!(
        b["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["state"] == "shipped"),
        "{b}"
    );
    let report_text = std::fs::read_to_string(&report).unwrap();
    assert!(
        err.contains("drain report delivered by CloudWatch agent"),
        "{err}"
    );
    let delivered = sim.delivered() - report_text.len() as u64;
    assert!(
        delivered < written,
        "the batch is not in the log store: {delivered} of {written}"
    );
    let line: serde_json::Value =
        serde_json::from_str(report_text.lines().last().unwrap()).unwrap();
    assert_eq!(line["drained"], false, "{line}");
    let lost = line["lost_bytes"].as_u64().unwrap();
    assert!(
        lost >= written - delivered,
        "the report counts at least the missing bytes: {lost} < {}",
        written - delivered
    );
}
