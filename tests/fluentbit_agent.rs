//! `drainhook agent` end to end with Fluent Bit (its stand-in, tests/sim/fluentbit_sim.py) as
//! the shipper, on the local AWS emulator: the instance is held until the stand-in's output
//! has delivered every byte written, rotated files included, then completed with CONTINUE.
//! Run through `make test`, which starts the emulator.

#[path = "common/aws.rs"]
mod aws;
mod common;
#[path = "common/fluentbit.rs"]
mod fluentbit;

use aws::*;
use common::*;
use fluentbit::*;
use std::time::Duration;

#[tokio::test]
async fn scale_in_is_held_until_fluent_bit_s_output_has_every_byte() {
    let g = group("fluentbit", 2, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let logs = t.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Written while the instance scales in, rotated by rename twice on the way.
    let writer = spawn_writer(
        &logs.join("app.log"),
        &[
            "--rate",
            "40000",
            "--duration",
            "3",
            "--rotate-every",
            "50000",
        ],
    );
    // `Path app.log`, as Fluent Bit is configured for renamed rotation: it follows a rotated
    // file through its open descriptor until Rotate_Wait (a Path that matched `app.log.1`
    // would read it again once let go).
    let sim = FluentBitSim::start(
        t.path(),
        &["--storage-type", "filesystem", "--rate", "30000"],
        &[&logs.join("app.log")],
    );
    let flags = sim.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = Agent::start(&g, &me, &t.path().join("agent"), &flags);
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    g.scale_in(&me).await;
    agent
        .wait_log("termination notice received", Duration::from_secs(30))
        .await;
    let written = writer_bytes(writer);
    g.wait_gone(&me, Duration::from_secs(60)).await;
    let delivered = sim.delivered();
    let logs = agent.logs();
    assert_eq!(
        delivered, written,
        "bytes written == bytes delivered by the output before the instance went\n{logs}"
    );
    assert!(
        logs.contains("completed lifecycle action with CONTINUE"),
        "{logs}"
    );
    let action = &emulator_stats()["actions"][&me];
    assert_eq!(action["result"], "CONTINUE", "{action}");
}

/// Fluent Bit drops a chunk while the pre-drain commands run (here the command itself writes
/// the lines, so they come after the hold began): the drop is counted from the hold's start,
/// so the agent says LOST and the drain report carries the bytes, never a clean "drained".
/// (Counted from the drain's first look, after the commands, the drop went unseen.)
#[tokio::test]
async fn a_drop_during_the_pre_drain_commands_is_reported_lost() {
    let g = group("fbdrop", 2, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let logs = t.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let app = logs.join("app.log");
    std::fs::write(&app, "").unwrap();
    // The first chunk fails at once and is dropped after one retry, 2 s later.
    let sim = FluentBitSim::start(
        t.path(),
        &[
            "--storage-type",
            "filesystem",
            "--drop-chunks",
            "1",
            "--retry-limit",
            "1",
            "--retry-wait",
            "2",
        ],
        &[&app],
    );
    let pre_drain = format!(
        "for i in $(seq 200); do echo \"line $i, written by the pre-drain command\"; done >> {}; sleep 7",
        app.display()
    );
    let mut flags = sim.flags();
    flags.extend(["--pre-drain".into(), pre_drain]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = Agent::start(&g, &me, &t.path().join("agent"), &flags);
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    g.scale_in(&me).await;
    g.wait_gone(&me, Duration::from_secs(60)).await;
    let logs = agent.logs();
    let written = std::fs::metadata(&app).unwrap().len();
    assert!(written > 0, "the pre-drain command wrote the lines\n{logs}");
    assert!(
        sim.delivered() < written,
        "the stand-in dropped the chunk\n{logs}"
    );
    assert!(
        logs.contains("LOST during the drain") && logs.contains("records dropped by output"),
        "the drop during the pre-drain command is reported lost\n{logs}"
    );
    let report = std::fs::read_to_string(t.path().join("agent").with_extension("report.log"))
        .expect("the drain report");
    let line: serde_json::Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    assert!(line["lost_bytes"].as_u64().unwrap() > 0, "{line}");
    assert_eq!(line["drained"], false, "{line}");
}
