//! Draining Vector, with the stand-in (tests/sim/vector_sim.py) writing checkpoints.json
//! with Vector's timing: without end-to-end acknowledgements a checkpoint moves when a line
//! is read, so it reaches the end of the file while the sink still holds lines (drainhook
//! says the drain cannot be exact, and a drain that trusted it would lose them); with them
//! it moves when the sink delivered the line, and the drain waits for delivery. Both
//! fingerprint kinds, through rotations out of the source's patterns.

mod common;
#[path = "common/vector.rs"]
mod vector;

use common::{spawn_writer, write_logs, writer_bytes};
use std::time::{Duration, Instant};
use vector::VectorSim;

/// `<dir>/logs/app.log` holding `bytes` already written.
fn written_log(dir: &std::path::Path, bytes: u64) -> (std::path::PathBuf, u64) {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let written = write_logs(
        &logs.join("app.log"),
        &["--rate", "10000000", "--total", &bytes.to_string()],
    );
    (logs, written)
}

#[test]
fn without_acknowledgements_the_checkpoint_reaches_the_end_before_the_sink_delivers() {
    let t = tempfile::tempdir().unwrap();
    let (logs, written) = written_log(t.path(), 60_000);
    // A sink slower than the source reads: 10 kB/s, behind a buffer that holds it all.
    let sim = VectorSim::ship(
        t.path(),
        &["--rate", "10000", "--buffer-events", "1000"],
        &[&logs.join("app.log*")],
    );
    let t0 = Instant::now();
    loop {
        let b = sim.backlog();
        if b["drained"] == true {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "never at the end: {b:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every position at its file's end, and yet the sink has not delivered everything.
    let delivered = sim.delivered();
    assert!(
        delivered < written,
        "the checkpoint reached the end with {delivered} of {written} bytes delivered"
    );

    // check says so, and exits non-zero.
    let out = sim.drainhook(&["check"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("CANNOT BE EXACT") && text.contains("end-to-end acknowledgements are off"),
        "{text}"
    );

    // The drain falls back to "positions at the end, then quiet for the settle", and says so:
    // with a settle shorter than the sink's backlog, it ends while lines are undelivered.
    let out = sim
        .drainhook(&["drain", "--settle", "500ms", "--timeout", "30s"])
        .output()
        .unwrap();
    let delivered = sim.delivered();
    let err = common::stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("cannot be exact"), "{err}");
    assert!(
        delivered < written,
        "the fallback drain ended with {delivered} of {written} bytes delivered"
    );
}

#[test]
fn with_acknowledgements_the_drain_waits_until_the_sink_delivered_every_line() {
    let t = tempfile::tempdir().unwrap();
    let (logs, written) = written_log(t.path(), 60_000);
    let sim = VectorSim::ship(
        t.path(),
        &["--acks", "--rate", "20000", "--buffer-events", "1000"],
        &[&logs.join("app.log*")],
    );
    let out = sim.drainhook(&["check"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let t0 = Instant::now();
    let out = sim
        .drainhook(&["drain", "--settle", "500ms", "--timeout", "60s"])
        .output()
        .unwrap();
    let delivered = sim.delivered();
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(
        delivered,
        written,
        "drained after {:?} with {delivered} of {written} bytes delivered",
        t0.elapsed()
    );
    assert!(!common::stderr(&out).contains("cannot be exact"));
}

/// Rotations by rename out of the source's one pattern (`app.log`), both fingerprint kinds,
/// and a last rotation before the drain: every byte is in files outside the pattern, found
/// by their fingerprint among Vector's open files and beside the pattern. The sink is
/// slower than the writer, so the drain must wait seconds for it.
#[test]
fn both_fingerprint_kinds_follow_rotated_files_until_they_are_delivered() {
    for kind in ["checksum", "device_and_inode"] {
        let t = tempfile::tempdir().unwrap();
        let logs = t.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        // Vector runs first; the application then writes 100 kB at 50 kB/s, rotating by
        // rename every 30 kB, and the sink delivers 25 kB/s.
        let sim = VectorSim::ship(
            t.path(),
            &[
                "--acks",
                "--rate",
                "25000",
                "--fingerprint",
                kind,
                "--cooldown-ms",
                "200",
            ],
            &[&logs.join("app.log")],
        );
        let writer = spawn_writer(
            &logs.join("app.log"),
            &[
                "--rate",
                "50000",
                "--total",
                "100000",
                "--duration",
                "10",
                "--rotate-every",
                "30000",
                "--keep",
                "9",
            ],
        );
        let written = writer_bytes(writer);
        std::fs::rename(logs.join("app.log"), logs.join("app.log.0")).unwrap();
        let b = sim.backlog();
        assert!(
            b["files"].as_array().unwrap().len() >= 2 && b["drained"] == false,
            "{kind}: the rotated files are tracked: {b:#}"
        );
        let out = sim
            .drainhook(&["drain", "--settle", "1s", "--timeout", "60s"])
            .output()
            .unwrap();
        let delivered = sim.delivered();
        assert!(out.status.success(), "{kind}: {}", common::stderr(&out));
        assert_eq!(delivered, written, "{kind}: {}", common::stderr(&out));
    }
}

/// With acknowledgements a file gets its first checkpoint when its first line is delivered.
/// One renamed out of the pattern after Vector read it to its end, while the sink is down,
/// has none: the drain, which saw it in the pattern, finds it again by its fingerprint and
/// waits for the sink to come back and deliver it.
#[test]
fn a_file_renamed_away_before_its_first_line_is_delivered_is_still_waited_for() {
    let t = tempfile::tempdir().unwrap();
    let (logs, written) = written_log(t.path(), 30_000);
    let down = t.path().join("sink-down");
    std::fs::write(&down, "").unwrap();
    let sim = VectorSim::ship(
        t.path(),
        &[
            "--acks",
            "--buffer-events",
            "5000",
            "--cooldown-ms",
            "200",
            "--pause-file",
            down.to_str().unwrap(),
        ],
        &[&logs.join("app.log")],
    );
    let drain = sim
        .drainhook(&["drain", "--settle", "1s", "--timeout", "60s"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The drain has seen app.log; Vector reads it to its end; then it is rotated away.
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::rename(logs.join("app.log"), logs.join("app.log.1")).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sim.delivered(), 0, "the sink is down");
    std::fs::remove_file(&down).unwrap();
    let out = drain.wait_with_output().unwrap();
    let delivered = sim.delivered();
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(delivered, written, "{}", common::stderr(&out));
}
