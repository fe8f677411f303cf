//! `drainhook drain` against the filebeat simulator while it ships real files.

mod common;

use common::*;
use std::fs;
use std::process::Stdio;
use std::time::Duration;

/// Writes with rotation while the simulator ships, drains, and checks that nothing was
/// left behind: drain returned only after the last ack plus the settle period, and every
/// byte written is acked in the registry.
fn drain_while_shipping(sim_args: &[&str]) {
    let t = tempfile::tempdir().unwrap();
    let logs = t.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let data = t.path().join("data");
    // The first lines exist before filebeat starts, as on a running instance.
    let first = write_logs(&logs.join("app.log"), &["--total", "2000"]);
    // Rotated names are in the glob, as in a real config: a file rotated twice between
    // two scans would otherwise never be seen, by filebeat or by the simulator.
    let glob = logs.join("app.log*");
    let sim = Sim::ship(&data, sim_args, &[&glob]);
    sim.wait_registry(&data);
    let writer = spawn_writer(
        &logs.join("app.log"),
        &[
            "--rate",
            "150000",
            "--duration",
            "1.5",
            "--rotate-every",
            "60000",
        ],
    );
    let out = drainhook()
        .args(["drain", "--settle", "2s", "--timeout", "60s", "--registry"])
        .arg(&data)
        .output()
        .unwrap();
    let ended = now_epoch();
    assert!(out.status.success(), "drain failed: {}", stderr(&out));
    let written = first + writer_bytes(writer);
    let b = backlog_json(&data);
    assert_eq!(b["pending_bytes"], 0, "{b}\n{}", stderr(&out));
    assert_eq!(
        acked_bytes(&data),
        written,
        "every byte written is acked: {b}"
    );
    assert!(
        ended >= sim.last_ack() + 2.0,
        "drain ended {:.3}s after the last ack, before the settle period",
        ended - sim.last_ack()
    );
    assert!(stderr(&out).contains("drained"), "{}", stderr(&out));
}

#[test]
fn memlog_filestream_with_rotation_and_checkpoints_during_the_drain() {
    drain_while_shipping(&[
        "--format",
        "memlog",
        "--rate",
        "120000",
        "--checkpoint-bytes",
        "3000",
    ]);
}

#[test]
fn memlog_log_input() {
    drain_while_shipping(&["--format", "memlog", "--input", "log", "--rate", "120000"]);
}

#[test]
fn memlog_fingerprint_identity() {
    drain_while_shipping(&[
        "--format",
        "memlog",
        "--identity",
        "fingerprint",
        "--rate",
        "120000",
    ]);
}

#[test]
fn array_file_of_filebeat_5_and_6() {
    drain_while_shipping(&["--format", "array5", "--rate", "120000"]);
}

#[test]
fn data_json_of_filebeat_7_0_to_7_8() {
    drain_while_shipping(&["--format", "array7", "--rate", "120000"]);
}

/// filebeat keeps pace with a writer, so every look at the registry shows it caught up,
/// yet it is still shipping: the drain must wait for a settle period of quiet after the
/// last ack, not return one settle period after the first moment it saw everything shipped.
#[test]
fn shipping_during_the_settle_period_starts_it_again() {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("app.log");
    fs::write(&log, "x".repeat(199) + "\n").unwrap();
    let m = fs::metadata(&log).unwrap();
    let data = t.path().join("data");
    fs::create_dir_all(&data).unwrap();
    // A 5.x/6.x registry file, replaced by write-then-rename as filebeat does.
    let ack = |offset: u64| {
        let entry = format!(
            r#"[{{"source":"{}","offset":{offset},"timestamp":"2026-11-30T10:00:00Z","ttl":-1,"type":"log","FileStateOS":{{"inode":{},"device":{}}}}}]"#,
            log.display(),
            m.ino(),
            m.dev()
        );
        fs::write(data.join("registry.new"), entry).unwrap();
        fs::rename(data.join("registry.new"), data.join("registry")).unwrap();
    };
    ack(200);
    let drain = drainhook()
        .args(["drain", "--settle", "2s", "--timeout", "60s", "--registry"])
        .arg(&data)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // For 3 s, a line every 0.3 s, acked at once (between two of the drain's looks).
    let mut size = 200;
    let mut last_ack = now_epoch();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        let mut f = fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[b'y'; 99]).unwrap();
        f.write_all(b"\n").unwrap();
        drop(f);
        size += 100;
        // Taken before the rename: the drain may see the new registry the moment it lands.
        last_ack = now_epoch();
        ack(size);
    }
    let out = drain.wait_with_output().unwrap();
    let ended = now_epoch();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        ended >= last_ack + 2.0,
        "the drain returned {:.2}s after the last ack, inside the 2 s settle period: {}",
        ended - last_ack,
        stderr(&out)
    );
}

#[test]
fn a_deleted_file_still_open_in_filebeat_is_waited_for() {
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(
        t.path(),
        60_000,
        &["--rate", "20000", "--close-inactive", "30"],
    );
    let log = t.path().join("logs/app.log");
    fs::remove_file(&log).unwrap();
    let out = drainhook()
        .args([
            "drain",
            "--settle",
            "500ms",
            "--timeout",
            "60s",
            "--registry",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // the drain waited for the deleted file's last byte
    let acked = acked_bytes(&data);
    assert_eq!(acked, written);
}

#[test]
fn timeout_exits_2_and_names_what_is_pending() {
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, _) = shipping(t.path(), 500_000, &["--rate", "10000"]);
    let out = drainhook()
        .args(["drain", "--timeout", "1s", "--registry"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("timed out") && err.contains("app.log"),
        "{err}"
    );
}

/// SIGTERM once drain says it waits (not after a fixed delay: a slow start, as under
/// qemu-user, once let the signal come before drain caught it, and it died unreported).
#[test]
fn sigterm_exits_3_and_says_what_was_pending() {
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, _) = shipping(t.path(), 500_000, &["--rate", "10000"]);
    let mut child = drainhook()
        .args(["drain", "--registry"])
        .arg(&data)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("waiting for every log shipper") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut err, &mut line).unwrap() == 0 {
            break;
        }
        said += &line;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    std::io::Read::read_to_string(&mut err, &mut said).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{said}");
    assert!(
        said.contains("SIGTERM") && said.contains("app.log"),
        "{said}"
    );
}

#[test]
fn an_unreadable_registry_exits_1_with_the_file_named() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("registry/filebeat");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("meta.json"), r#"{"version":"1"}"#).unwrap();
    fs::write(d.join("log.json"), "{not json\n").unwrap();
    for cmd in ["drain", "backlog"] {
        let out = drainhook()
            .args([cmd, "--registry"])
            .arg(t.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = stderr(&out);
        assert!(
            err.contains("log.json") && err.contains("line 1"),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn backlog_table_reads_well() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("a.log");
    fs::write(&log, "0123456789\n").unwrap();
    let m = fs::metadata(&log).unwrap();
    use std::os::unix::fs::MetadataExt;
    fs::write(
        t.path().join("registry"),
        format!(
            r#"[{{"source":"{}","offset":4,"FileStateOS":{{"inode":{},"device":{}}},"ttl":-1}}]"#,
            log.display(),
            m.ino(),
            m.dev()
        ),
    )
    .unwrap();
    let out = drainhook()
        .args(["backlog", "--registry"])
        .arg(t.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = s.lines().collect();
    assert!(
        lines[0].starts_with("filebeat: ") && lines[0].ends_with("/registry (array)"),
        "the source and its format come first: {s}"
    );
    assert!(
        lines[1].starts_with("PATH") && lines[1].contains("PENDING"),
        "{s}"
    );
    assert!(
        lines[2].contains("a.log") && lines[2].contains(" 7  pending"),
        "{s}"
    );
    assert!(
        lines[3].starts_with("total: 1 files") && lines[3].contains("not drained"),
        "{s}"
    );
}

#[test]
fn the_simulator_ships_at_its_average_rate_whatever_the_line_length() {
    // 4000 B/s is 80 bytes per 20 ms tick, less than one 100-byte line: the budget must
    // carry over, or nothing ever ships.
    let t = tempfile::tempdir().unwrap();
    let logs = t.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let written = write_logs(
        &logs.join("app.log"),
        &[
            "--rate",
            "10000000",
            "--total",
            "40000",
            "--line-size",
            "100",
        ],
    );
    assert!(written >= 40_000);
    let data = t.path().join("data");
    let sim = Sim::ship(
        &data,
        &["--rate", "4000", "--flush", "0.2"],
        &[&logs.join("app.log")],
    );
    sim.wait_registry(&data);
    let t0 = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let acked = acked_bytes(&data);
    let rate = acked as f64 / t0.elapsed().as_secs_f64();
    assert!(
        (2500.0..5500.0).contains(&rate),
        "shipped {acked} bytes in 3 s: {rate:.0} B/s, not about 4000"
    );
}

/// filebeat's disk queue acks the registry on the write to the queue: the registry says
/// everything is acknowledged long before the output has it. The drain waits for the
/// queue's own position, and returns only once the output delivered every byte.
#[test]
fn with_the_disk_queue_the_drain_waits_for_the_output_not_the_registry() {
    let t = tempfile::tempdir().unwrap();
    let delivered = t.path().join("delivered.log");
    let (data, sim, written) = shipping(
        t.path(),
        60_000,
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
    );
    // The registry is acked to the end (the old drainhook's "drained") while the output has
    // only a part: what a termination at this moment would lose.
    let t0 = std::time::Instant::now();
    while acked_bytes(&data) < written {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the registry never caught up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let at_registry_end = fs::metadata(&delivered).map_or(0, |m| m.len());
    assert!(
        at_registry_end < written / 2,
        "the registry is acked while the output delivered {at_registry_end} of {written} bytes"
    );
    let b = backlog_json(&data);
    let q = &b["sources"][0]["queue"];
    assert_eq!(q["type"], "disk", "{b}");
    assert!(
        q["events"].as_u64().unwrap() > 0 && b["pending_bytes"].as_u64().unwrap() > 0,
        "{b}"
    );
    assert_eq!(b["drained"], false, "{b}");
    let table = drainhook()
        .args(["backlog", "--registry"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("disk queue ")
            && text.contains("not yet acknowledged by the output")
            && text.contains("; not drained"),
        "{text}"
    );

    let out = drainhook()
        .args(["drain", "--settle", "1s", "--timeout", "60s", "--registry"])
        .arg(&data)
        .output()
        .unwrap();
    let at_drained = fs::metadata(&delivered).unwrap().len();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        at_drained, written,
        "when the drain says drained, the output has every byte written"
    );
    assert_eq!(fs::read(&delivered).unwrap().len() as u64, written);
    drop(sim);
}

/// The shutdown fallback runs `drainhook drain` without shipper flags: it reads the agent's
/// config file for them (and for settle and report_file), so it drains what the agent
/// drains; a file that anyone but root can change is refused, as the agent refuses it.
#[test]
fn drain_and_backlog_read_the_agent_s_config_file_and_refuse_one_others_can_change() {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |p: &std::path::Path, m: u32| {
        fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap()
    };
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 30_000, &["--rate", "200000"]);
    let etc = t.path().join("etc");
    fs::create_dir(&etc).unwrap();
    chmod(&etc, 0o755);
    let report = t.path().join("drain.log");
    // Existing and tracked by no shipper: the drain does not wait for its delivery.
    fs::write(&report, "").unwrap();
    let cfg = etc.join("drainhook.toml");
    fs::write(
        &cfg,
        format!(
            "shipper = [\"filebeat\"]\nregistry = \"{}\"\nsettle = \"1s\"\nreport_file = \"{}\"\npre_drain = [\"systemctl stop app\"]\n",
            data.display(),
            report.display()
        ),
    )
    .unwrap();
    chmod(&cfg, 0o644);

    let out = drainhook()
        .args(["backlog", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["files"].as_array().map(Vec::len), Some(1), "{b}");

    let out = drainhook()
        .args(["drain", "--timeout", "60s", "--report", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("settle 1s"), "settle from the file: {err}");
    assert_eq!(acked_bytes(&data), written, "{err}");
    let line: serde_json::Value =
        serde_json::from_str(fs::read_to_string(&report).unwrap().trim()).unwrap();
    assert_eq!(line["outcome"], "shutdown", "{line}");
    assert_eq!(line["pending_bytes"], 0, "{line}");

    // Writable by everyone: refused before it is read, naming the file and the fix.
    chmod(&cfg, 0o666);
    for cmd in [&["drain", "--timeout", "5s"][..], &["backlog"], &["check"]] {
        let out = drainhook()
            .args(cmd)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {err}");
        assert!(
            err.contains(&format!("config file {}", cfg.display()))
                && err.contains(&format!("Fix: chmod go-w {}", cfg.display())),
            "{cmd:?}: {err}"
        );
    }

    // A named file that does not exist is an error.
    let out = drainhook()
        .args(["backlog", "--config"])
        .arg(t.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));
}
