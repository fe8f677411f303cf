//! The agent against AWS faults: a fault-injecting proxy (`tests/faults/proxy.py`) sits
//! between the agent (its AWS_ENDPOINT_URL) and the emulator, and answers HTTP 500,
//! throttling in AWS's own error shapes, connection resets or latency, per API action and
//! time window. Every scenario asserts that every byte written was shipped and that the
//! agent itself completed the action with CONTINUE. Run through `make test`.

#[path = "common/aws.rs"]
mod aws;
mod common;

use aws::*;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The proxy, in front of the emulator; killed when dropped.
struct Proxy {
    child: Child,
    url: String,
}

impl Proxy {
    fn start() -> Proxy {
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/proxy.py"))
            .args(["--upstream", &endpoint()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the fault proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().trim_start_matches("listening on ").to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        Proxy { child, url }
    }

    /// Replaces the rules; returns them with their hit counts.
    fn rules(&self, rules: serde_json::Value) -> serde_json::Value {
        let (status, body) = http(
            "POST",
            &format!("{}/_faults", self.url),
            Some(&rules.to_string()),
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn hits(&self) -> serde_json::Value {
        let (_, body) = http("GET", &format!("{}/_faults", self.url), None);
        serde_json::from_str(&body).unwrap()
    }

    /// An agent whose AWS calls all go through the proxy.
    fn agent(&self, me: &str, data: &Path, args: &[&str]) -> Agent {
        Agent::launch_env(me, data, args, &[("AWS_ENDPOINT_URL", &self.url)])
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn epoch_in(d: f64) -> f64 {
    now_epoch() + d
}

/// Waits for the first heartbeat of `me`'s action, as the emulator recorded it.
async fn first_heartbeat(me: &str, within: Duration) -> f64 {
    let t = Instant::now();
    while t.elapsed() < within {
        if let Some(hb) = emulator_stats()["actions"][me]["heartbeats"][0][0].as_f64() {
            return hb;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no heartbeat for {me}");
}

/// The bars every scenario shares: nothing lost, and the agent itself completed with CONTINUE.
fn assert_completed_by_itself(me: &str, data: &Path, written: u64, agent: &Agent) {
    let action = emulator_stats()["actions"][me].clone();
    assert_eq!(
        (action["result"].as_str(), action["completed_by"].as_str()),
        (Some("CONTINUE"), Some(me)),
        "the agent itself completed with CONTINUE: {action}\n{}",
        agent.logs()
    );
    assert_eq!(acked_bytes(data), written, "every byte shipped");
}

#[tokio::test]
async fn a_heartbeat_outage_ending_with_a_fifth_of_the_timeout_to_spare_does_not_end_the_hold() {
    // HeartbeatTimeout 20 s: beats every 10 s. Every heartbeat fails from 8 s to 16 s after
    // the first one, covering the beat at 10 s and leaving 4 s (20 %) before the hook would
    // expire (with ABANDON, so an expiry shows). The drain takes about 30 s.
    let g = group_with("hbout", 1, 20, "ABANDON").await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 150_000, &["--rate", "5000"]);
    let proxy = Proxy::start();
    let agent = proxy.agent(&me, &data, &["--queue-url", &g.queue_url]);
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    g.scale_in(&me).await;
    let t0 = first_heartbeat(&me, Duration::from_secs(15)).await;
    proxy.rules(serde_json::json!([{
        "service": "autoscaling", "action": "RecordLifecycleActionHeartbeat", "mode": "500",
        "start": t0 + 8.0, "end": t0 + 16.0
    }]));
    g.wait_gone(&me, Duration::from_secs(90)).await;
    assert!(
        proxy.hits()[0]["hits"].as_u64().unwrap_or(0) >= 1,
        "the outage hit a heartbeat: {}",
        proxy.hits()
    );
    assert_completed_by_itself(&me, &data, written, &agent);
    assert!(
        agent.logs().contains("heartbeat recovered after"),
        "{}",
        agent.logs()
    );
}

#[tokio::test]
async fn thirty_percent_of_all_calls_throttled_throughout() {
    let g = group_with("throttle", 1, 30, "ABANDON").await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 60_000, &["--rate", "20000"]);
    let proxy = Proxy::start();
    proxy.rules(serde_json::json!([{"service": "*", "action": "*", "mode": "throttle", "probability": 0.3}]));
    let agent = proxy.agent(&me, &data, &["--queue-url", &g.queue_url]);
    agent.wait_in_service().await;
    g.scale_in(&me).await;
    g.wait_gone(&me, Duration::from_secs(90)).await;
    assert!(
        proxy.hits()[0]["hits"].as_u64().unwrap_or(0) >= 1,
        "{}",
        proxy.hits()
    );
    assert_completed_by_itself(&me, &data, written, &agent);
}

#[tokio::test]
async fn sqs_unreachable_for_a_minute_while_idle_then_a_scale_in() {
    let g = group_with("sqsdown", 1, 60, "ABANDON").await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 20_000, &["--rate", "100000"]);
    let proxy = Proxy::start();
    // The queue as the only trigger: it must recover by itself.
    let agent = proxy.agent(
        &me,
        &data,
        &["--queue-url", &g.queue_url, "--imds-trigger", "false"],
    );
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    proxy.rules(serde_json::json!([{
        "service": "sqs", "action": "*", "mode": "reset", "start": 0, "end": epoch_in(60.0)
    }]));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        agent.logs().contains("ReceiveMessage failed"),
        "{}",
        agent.logs()
    );
    g.scale_in(&me).await;
    g.wait_gone(&me, Duration::from_secs(60)).await;
    assert_completed_by_itself(&me, &data, written, &agent);
}

#[tokio::test]
async fn complete_lifecycle_action_fails_five_times_then_works() {
    let g = group_with("completefail", 1, 30, "ABANDON").await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 20_000, &["--rate", "100000"]);
    let proxy = Proxy::start();
    proxy.rules(serde_json::json!([{
        "service": "autoscaling", "action": "CompleteLifecycleAction", "mode": "500", "count": 5
    }]));
    let agent = proxy.agent(&me, &data, &[]);
    agent.wait_in_service().await;
    g.scale_in(&me).await;
    g.wait_gone(&me, Duration::from_secs(60)).await;
    assert_eq!(proxy.hits()[0]["hits"], 5, "{}", proxy.hits());
    assert_completed_by_itself(&me, &data, written, &agent);
}

#[tokio::test]
async fn three_seconds_of_latency_on_every_call_during_the_drain() {
    let g = group_with("latency", 1, 30, "ABANDON").await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 100_000, &["--rate", "5000"]);
    let proxy = Proxy::start();
    let agent = proxy.agent(&me, &data, &["--queue-url", &g.queue_url]);
    agent.wait_in_service().await;
    g.scale_in(&me).await;
    agent
        .wait_log("holding instance", Duration::from_secs(15))
        .await;
    proxy.rules(
        serde_json::json!([{"service": "*", "action": "*", "mode": "latency", "seconds": 3}]),
    );
    g.wait_gone(&me, Duration::from_secs(90)).await;
    assert!(
        proxy.hits()[0]["hits"].as_u64().unwrap_or(0) >= 3,
        "{}",
        proxy.hits()
    );
    assert_completed_by_itself(&me, &data, written, &agent);
}
