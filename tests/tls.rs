//! The agent's AWS calls over TLS, as on EC2: the SDK's HTTPS client (rustls, aws-lc) through
//! a TLS front (`tests/dist/tls_front.py`, a CA and a certificate for 127.0.0.1 made with
//! openssl) to the emulator. The other agent tests speak plain HTTP to the emulator, so this
//! is where the TLS stack of a build is exercised: `make test-aarch64` runs it against the
//! aarch64 binary under qemu-user too. Run through `make test`, which starts the emulator.

#[path = "common/aws.rs"]
mod aws;
mod common;

use aws::*;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The TLS front, in front of the emulator; killed when dropped.
struct TlsFront {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl TlsFront {
    fn start() -> TlsFront {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dist/tls_front.py"))
            .args(["--upstream", &endpoint()])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the TLS front");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().trim_start_matches("listening on ").to_string();
        assert!(
            url.starts_with("https://127.0.0.1:"),
            "the TLS front did not start: {line:?}"
        );
        TlsFront { child, url, dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// One line per handshake the front completed (`TLSv1.3 TLS_AES_256_GCM_SHA384`) or
    /// `what` = "refused": one per handshake the client broke off.
    fn lines(&self, what: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join(what))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_agent_holds_and_completes_over_tls() {
    let front = TlsFront::start();
    let g = group("tls", 2, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, sim, written) = shipping(t.path(), 60_000, &["--rate", "30000"]);
    let ca = front.ca();
    let agent = Agent::launch_env(
        &me,
        &data,
        &[],
        &[
            ("AWS_ENDPOINT_URL", front.url.as_str()),
            ("SSL_CERT_FILE", ca.to_str().unwrap()),
        ],
    );
    agent.wait_in_service().await;
    agent
        .wait_log("start-up check", Duration::from_secs(30))
        .await;
    g.scale_in(&me).await;
    agent
        .wait_log("holding instance", Duration::from_secs(15))
        .await;
    g.wait_gone(&me, Duration::from_secs(60)).await;
    assert!(now_epoch() >= sim.last_ack() + 1.0);
    assert_eq!(acked_bytes(&data), written, "every byte shipped first");
    let action = &emulator_stats()["actions"][&me];
    assert_eq!(action["result"], "CONTINUE", "{action}");
    assert_eq!(action["completed_by"], me.as_str(), "{action}");
    let handshakes = front.lines("handshakes");
    println!("TLS handshakes with the agent: {handshakes:?}");
    assert!(
        !handshakes.is_empty(),
        "the agent's calls did not go through the TLS front"
    );
    assert!(
        front.lines("refused").is_empty(),
        "{:?}",
        front.lines("refused")
    );
}

/// The control: the same front, its CA not in the agent's trust store. The agent refuses
/// the certificate (so the test above did verify it) and says so; the emulator hears nothing.
#[tokio::test]
async fn an_untrusted_certificate_is_refused_and_said() {
    let front = TlsFront::start();
    let g = group("tlsbad", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, _) = shipping(t.path(), 1_000, &["--rate", "30000"]);
    // The machine's own trust store, which does not hold the front's CA.
    let agent = Agent::launch_env(&me, &data, &[], &[("AWS_ENDPOINT_URL", front.url.as_str())]);
    agent
        .wait_log(
            "cannot ask Auto Scaling about this instance",
            Duration::from_secs(60),
        )
        .await;
    let logs = agent.logs();
    let said = logs
        .lines()
        .find(|l| l.contains("cannot ask Auto Scaling"))
        .unwrap_or_default();
    println!("the agent said: {said}");
    assert!(said.contains("certificate"), "{logs}");
    assert!(!front.lines("refused").is_empty(), "no refused handshake");
    assert!(front.lines("handshakes").is_empty());
    assert_eq!(requests_by(&me, "autoscaling"), 0);
}
