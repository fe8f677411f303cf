//! The CloudWatch agent's stand-in (tests/sim/cloudwatch_sim.py) for the integration tests.
#![allow(dead_code)]

use crate::common::drainhook;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn cw_sim_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sim/cloudwatch_sim.py")
}

/// The stand-in agent shipping `globs` (one collect_list entry each) from its install dir
/// `dir` to the log store `output`; killed when dropped.
pub struct CwSim {
    pub child: Child,
    pub dir: PathBuf,
    pub output: PathBuf,
}

impl CwSim {
    pub fn ship(dir: &Path, output: &Path, args: &[&str], globs: &[&Path]) -> CwSim {
        let child = Command::new("python3")
            .arg(cw_sim_script())
            .arg("ship")
            .arg("--agent-dir")
            .arg(dir)
            .arg("--output")
            .arg(output)
            .args(args)
            .args(globs)
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs the CloudWatch agent stand-in");
        let sim = CwSim {
            child,
            dir: dir.to_path_buf(),
            output: output.to_path_buf(),
        };
        let t = Instant::now();
        while !dir.join("etc/amazon-cloudwatch-agent.toml").exists() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the stand-in wrote no config"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sim
    }

    /// Bytes its output delivered so far.
    pub fn delivered(&self) -> u64 {
        std::fs::metadata(&self.output).map_or(0, |m| m.len())
    }

    /// The agent's log, as the stand-in wrote it.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/amazon-cloudwatch-agent.log"))
            .unwrap_or_default()
    }

    /// The drainhook flags that find it.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--shipper".into(),
            "cloudwatch".into(),
            "--cloudwatch-agent-dir".into(),
            self.dir.display().to_string(),
        ]
    }

    /// `drainhook backlog --json` of it.
    pub fn backlog(&self) -> serde_json::Value {
        let out = drainhook()
            .args(["backlog", "--json"])
            .args(self.flags())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for CwSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
