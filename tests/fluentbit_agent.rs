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
