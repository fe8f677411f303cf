//! The Fluent Bit stand-in (tests/sim/fluentbit_sim.py) for the integration tests: started
//! on files, it writes the config Fluent Bit would run with, and drainhook is pointed at it.
#![allow(dead_code)]

use crate::common::drainhook;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn sim_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sim/fluentbit_sim.py")
}

/// The stand-in shipping files; killed when dropped.
pub struct FluentBitSim {
    pub child: Child,
    pub dir: PathBuf,
    /// The config it wrote (classic `.conf`, or `.yaml`).
    pub config: PathBuf,
    pub db: PathBuf,
    pub storage: PathBuf,
    /// Its output's log store: every delivered line, in order.
    pub output: PathBuf,
}

impl FluentBitSim {
    /// Starts it in `dir` (its DB in `dir/db`, chunks under `dir/storage`) with `args`
    /// (`--storage-type filesystem`, `--no-http`, `--rate 30000`, ...), tailing `globs`, and
    /// waits until it wrote its config.
    pub fn start(dir: &Path, args: &[&str], globs: &[&Path]) -> FluentBitSim {
        let yaml = args.contains(&"yaml");
        let config = dir.join(if yaml {
            "fluent-bit.yaml"
        } else {
            "fluent-bit.conf"
        });
        let db = dir.join("db").join("tail.db");
        let storage = dir.join("storage");
        let output = dir.join("delivered.log");
        let child = Command::new("python3")
            .arg(sim_script())
            .arg("ship")
            .arg("--config")
            .arg(&config)
            .arg("--db")
            .arg(&db)
            .arg("--storage-path")
            .arg(&storage)
            .arg("--output")
            .arg(&output)
            .args(args)
            .args(globs)
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs the Fluent Bit stand-in");
        let t = Instant::now();
        while !config.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the stand-in wrote no config"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        FluentBitSim {
            child,
            dir: dir.to_path_buf(),
            config,
            db,
            storage,
            output,
        }
    }

    /// drainhook's flags for it.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--shipper".into(),
            "fluent-bit".into(),
            "--fluent-bit-config".into(),
            self.config.display().to_string(),
        ]
    }

    /// Bytes its output delivered so far.
    pub fn delivered(&self) -> u64 {
        std::fs::metadata(&self.output).map_or(0, |m| m.len())
    }

    /// Stops it as SIGTERM does (it closes its DB: checkpointed, `-wal` and `-shm` removed).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// `drainhook <cmd> <flags> <extra>`.
    pub fn run(&self, cmd: &str, extra: &[&str]) -> Output {
        drainhook()
            .arg(cmd)
            .args(self.flags())
            .args(extra)
            .output()
            .unwrap()
    }

    /// `backlog --json`, which must succeed.
    pub fn backlog(&self) -> serde_json::Value {
        let out = self.run("backlog", &["--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Waits until the DB has a row at the end of every file (read, not delivered).
    pub fn wait_read_to_the_end(&self, within: Duration) -> serde_json::Value {
        let t = Instant::now();
        loop {
            let out = self.run("backlog", &["--json"]);
            if out.status.success() {
                let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                let files = b["files"].as_array().cloned().unwrap_or_default();
                if !files.is_empty() && files.iter().all(|f| f["state"] != "pending") {
                    return b;
                }
            }
            assert!(
                t.elapsed() < within,
                "never read to the end: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for FluentBitSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
