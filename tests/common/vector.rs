//! The Vector stand-in (tests/sim/vector_sim.py) for the integration tests: a `file` source
//! with its checkpoints.json, one sink delivering to a file (the log store), and the Vector
//! config describing them, which drainhook reads.
#![allow(dead_code)]

use crate::common::drainhook;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn vector_sim_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sim/vector_sim.py")
}

/// The stand-in shipping `globs`; killed when dropped.
pub struct VectorSim {
    pub child: Child,
    /// The Vector config it wrote (`<dir>/vector.yaml`).
    pub config: PathBuf,
    /// Its `data_dir`.
    pub data: PathBuf,
    /// What its sink delivered, line by line.
    pub output: PathBuf,
    pub source_id: String,
}

impl VectorSim {
    /// Starts the stand-in under `dir` with `args` (`--acks`, `--rate 20000`, ...).
    pub fn ship(dir: &Path, args: &[&str], globs: &[&Path]) -> VectorSim {
        let config = dir.join("vector.yaml");
        let data = dir.join("vector-data");
        let output = dir.join("delivered.log");
        let child = Command::new("python3")
            .arg(vector_sim_script())
            .arg("ship")
            .arg("--data-dir")
            .arg(&data)
            .arg("--output")
            .arg(&output)
            .arg("--write-config")
            .arg(&config)
            .args(args)
            .args(globs)
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs the Vector stand-in");
        let sim = VectorSim {
            child,
            config,
            data,
            output,
            source_id: "app_logs".into(),
        };
        sim.wait_started();
        sim
    }

    /// Waits until it wrote its config and its first checkpoints.
    fn wait_started(&self) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if self.config.exists() && self.checkpoints().exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "the Vector stand-in wrote no checkpoints under {}",
            self.data.display()
        );
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.data.join(&self.source_id).join("checkpoints.json")
    }

    /// Bytes its sink delivered so far.
    pub fn delivered(&self) -> u64 {
        std::fs::metadata(&self.output).map_or(0, |m| m.len())
    }

    /// `drainhook <args> --shipper vector --vector-config <its config>`.
    pub fn drainhook(&self, args: &[&str]) -> Command {
        let mut c = drainhook();
        c.args(args)
            .args(["--shipper", "vector", "--vector-config"])
            .arg(&self.config)
            .env("DRAINHOOK_TEST_ROOT", "/");
        c
    }

    /// `backlog --json` of its source.
    pub fn backlog(&self) -> serde_json::Value {
        let out = self.drainhook(&["backlog", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for VectorSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
