//! Shared helpers for the integration tests: the filebeat simulator and the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn sim_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sim/filebeat_sim.py")
}

/// The binary under test; `DRAINHOOK_TEST_BIN` names another build (to show that a scenario
/// fails on an older one).
pub fn drainhook() -> Command {
    let bin = std::env::var("DRAINHOOK_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_drainhook").to_string());
    let mut c = Command::new(bin);
    c.env_remove("RUST_LOG");
    // Never the machine's real marker: a demo or an agent run must not shorten a test's drain.
    c.env(
        "DRAINHOOK_DRAINED_MARKER",
        "/nonexistent-drainhook-test/marker",
    );
    // Nor the machine's own shippers: only what a test names (or puts under a root of its
    // own) is drained.
    c.env("DRAINHOOK_TEST_ROOT", "/nonexistent-drainhook-test/root");
    c
}

/// The simulator shipping files; killed when dropped.
pub struct Sim {
    pub child: Child,
    pub ack_log: PathBuf,
}

impl Sim {
    pub fn ship(data_dir: &Path, args: &[&str], globs: &[&Path]) -> Sim {
        let ack_log = data_dir.with_extension("acks");
        let mut c = Command::new("python3");
        c.arg(sim_script())
            .arg("ship")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--ack-log")
            .arg(&ack_log)
            .args(args)
            .args(globs)
            .stdin(Stdio::null());
        let child = c.spawn().expect("python3 runs the filebeat simulator");
        Sim { child, ack_log }
    }

    /// Wall-clock time (seconds since the epoch) of the simulator's last registry write.
    pub fn last_ack(&self) -> f64 {
        std::fs::read_to_string(&self.ack_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse::<f64>().ok())
            .fold(0.0, f64::max)
    }

    /// Waits until the registry exists (the simulator wrote it once).
    pub fn wait_registry(&self, data_dir: &Path) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if data_dir.join("registry").exists() && self.last_ack() > 0.0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "the simulator wrote no registry under {}",
            data_dir.display()
        );
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the simulator's writer to completion; returns the bytes it wrote.
pub fn write_logs(path: &Path, args: &[&str]) -> u64 {
    writer_bytes(spawn_writer(path, args))
}

/// Starts the writer in the background.
pub fn spawn_writer(path: &Path, args: &[&str]) -> Child {
    Command::new("python3")
        .arg(sim_script())
        .arg("write")
        .arg("--path")
        .arg(path)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn writer_bytes(child: Child) -> u64 {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the log writer failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["written"].as_u64().unwrap()
}

pub fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

pub fn backlog_json(data_dir: &Path) -> serde_json::Value {
    let out = drainhook()
        .args(["backlog", "--json", "--registry"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Bytes acknowledged in the registry, summed over every tracked file.
pub fn acked_bytes(data_dir: &Path) -> u64 {
    backlog_json(data_dir)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["offset"].as_u64().unwrap())
        .sum()
}

/// `app.log` in `<dir>/logs` holding `bytes` already written, and the simulator shipping
/// `logs/app.log*` into `<dir>/data` with `sim_args` (e.g. `["--rate", "20000"]`).
/// Returns the data dir, the simulator and the bytes written.
pub fn shipping(dir: &Path, bytes: u64, sim_args: &[&str]) -> (PathBuf, Sim, u64) {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let data = dir.join("data");
    let written = write_logs(
        &logs.join("app.log"),
        &["--rate", "10000000", "--total", &bytes.to_string()],
    );
    let sim = Sim::ship(&data, sim_args, &[&logs.join("app.log*")]);
    sim.wait_registry(&data);
    (data, sim, written)
}
