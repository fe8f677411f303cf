//! `drainhook agent` end to end with Vector: the emulator (moto with our lifecycle
//! extension, through AWS_ENDPOINT_URL), its IMDSv2 stand-in, and the Vector stand-in
//! (tests/sim/vector_sim.py) with end-to-end acknowledgements, whose sink is slower than
//! the logs were written. The instance goes only when the sink has delivered every byte.
//! Run through `make test`, which starts the emulator.

#[path = "common/aws.rs"]
mod aws;
mod common;
#[path = "common/vector.rs"]
mod vector;

use aws::*;
use common::*;
use std::time::Duration;
use vector::VectorSim;

/// The sink's lines that are the application's (not the drain report's).
fn app_bytes_delivered(sim: &VectorSim) -> u64 {
    std::fs::read(&sim.output)
        .unwrap_or_default()
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !String::from_utf8_lossy(l).contains("\"event\":\"drainhook.drain\""))
        .map(|l| l.len() as u64)
        .sum()
}

#[tokio::test]
async fn vector_scale_in_is_held_until_the_sink_delivered_every_line_then_completed() {
    let g = group("vector", 2, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let logs = t.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let written = write_logs(
        &logs.join("app.log"),
        &["--rate", "10000000", "--total", "150000"],
    );
    // The drain report is a log the shipper tails like any other.
    let report = t.path().join("report/drain.log");
    std::fs::create_dir_all(report.parent().unwrap()).unwrap();
    std::fs::write(&report, "").unwrap();
    let sim = VectorSim::ship(
        t.path(),
        &["--acks", "--rate", "50000", "--cooldown-ms", "500"],
        &[&logs.join("app.log*"), &report],
    );
    let data = t.path().join("agent");
    let agent = Agent::launch_env(
        &me,
        &data,
        &[
            "--queue-url",
            &g.queue_url,
            "--shipper",
            "vector",
            "--vector-config",
            sim.config.to_str().unwrap(),
            "--report-file",
            report.to_str().unwrap(),
        ],
        &[("DRAINHOOK_TEST_ROOT", "/")],
    );
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    g.scale_in(&me).await;
    agent
        .wait_log("termination notice received", Duration::from_secs(30))
        .await;
    assert!(
        app_bytes_delivered(&sim) < written,
        "the sink was still behind when the hold began"
    );
    g.wait_gone(&me, Duration::from_secs(60)).await;
    let delivered = app_bytes_delivered(&sim);
    let logs = agent.logs();
    assert_eq!(
        delivered, written,
        "every byte delivered before the instance went; agent log:\n{logs}"
    );
    assert!(
        logs.contains("completed lifecycle action with CONTINUE"),
        "{logs}"
    );
    assert!(!logs.contains("cannot be exact"), "{logs}");
    let action = &emulator_stats()["actions"][&me];
    assert_eq!(action["result"], "CONTINUE", "{action}");
}
