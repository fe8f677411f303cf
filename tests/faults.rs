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

// ------------------------------------------------------------------ issue 17: under pressure

/// The agent's log lines that contain `needle`.
fn log_lines(agent: &Agent, needle: &str) -> usize {
    agent.logs().lines().filter(|l| l.contains(needle)).count()
}

/// The hits of the proxy's rule number `i`.
fn rule_hits(proxy: &Proxy, i: usize) -> u64 {
    proxy.hits()[i]["hits"].as_u64().unwrap_or(0)
}

/// (Re)puts a termination hook on the group, notifying the group's queue.
async fn put_hook(g: &Group, name: &str, heartbeat_timeout: i32, default_result: &str) {
    let arn = g
        .sqs
        .get_queue_attributes()
        .queue_url(&g.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    g.asg
        .put_lifecycle_hook()
        .auto_scaling_group_name(&g.name)
        .lifecycle_hook_name(name)
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .notification_target_arn(arn)
        .role_arn("arn:aws:iam::123456789012:role/drainhook-hook")
        .heartbeat_timeout(heartbeat_timeout)
        .default_result(default_result)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn describe_instances_throttled_for_45s_after_the_imds_flip() {
    // Finding 1. IMDS alone (the default), HeartbeatTimeout 90 s: DescribeAutoScalingInstances
    // answers Throttling for 45 s from the moment IMDS says Terminated. About 60 s of
    // shipping are still pending at the flip.
    let g = group_with("thr45", 1, 90, "ABANDON").await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 120_000, &["--rate", "2000"]);
    let proxy = Proxy::start();
    let agent = proxy.agent(&me, &data, &[]);
    agent.wait_in_service().await;
    proxy.rules(serde_json::json!([{
        "service": "autoscaling", "action": "DescribeAutoScalingInstances", "mode": "throttle",
        "start": epoch_in(0.0), "end": epoch_in(45.0)
    }]));
    let flip = now_epoch();
    g.scale_in(&me).await;
    g.wait_gone(&me, Duration::from_secs(130)).await;
    assert!(rule_hits(&proxy, 0) >= 3, "{}", proxy.hits());
    assert_completed_by_itself(&me, &data, written, &agent);
    let first = emulator_stats()["actions"][&me]["heartbeats"][0][0]
        .as_f64()
        .unwrap();
    assert!(first - flip >= 44.0, "held only once Auto Scaling answered");
    assert!(
        agent.logs().contains("Auto Scaling answered after"),
        "{}",
        agent.logs()
    );
}

#[tokio::test]
async fn the_hooks_heartbeat_timeout_lowered_after_the_agent_started() {
    // Finding 2, case one: the agent learns the hook at start-up (HeartbeatTimeout 3600 s);
    // then an operator lowers it to 30 s (AWS's shortest), without restarting the agent.
    // The drain takes about 50 s.
    let g = group_with("lowered", 1, 3600, "ABANDON").await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 100_000, &["--rate", "2000"]);
    let agent = Agent::launch(&me, &data, &[]);
    agent
        .wait_log("whose termination hook is drain", Duration::from_secs(30))
        .await;
    agent.wait_in_service().await;
    put_hook(&g, "drain", 30, "ABANDON").await;
    g.scale_in(&me).await;
    g.wait_gone(&me, Duration::from_secs(120)).await;
    assert_completed_by_itself(&me, &data, written, &agent);
}

#[tokio::test]
async fn describe_lifecycle_hooks_failing_at_the_holds_start() {
    // Finding 2, case two: DescribeLifecycleHooks fails (HTTP 500) from the agent's start
    // until 40 s into the hold, so the hook's timing is never known when the hold begins.
    // HeartbeatTimeout 30 s, the queue as the trigger, a drain of about 50 s.
    let g = group_with("dlhfail", 1, 30, "ABANDON").await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 100_000, &["--rate", "2000"]);
    let proxy = Proxy::start();
    proxy.rules(serde_json::json!([{
        "service": "autoscaling", "action": "DescribeLifecycleHooks", "mode": "500",
        "start": 0, "end": epoch_in(600.0)
    }]));
    let agent = proxy.agent(
        &me,
        &data,
        &["--queue-url", &g.queue_url, "--imds-trigger", "false"],
    );
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    g.scale_in(&me).await;
    agent
        .wait_log("this instance is terminating", Duration::from_secs(30))
        .await;
    proxy.rules(serde_json::json!([{
        "service": "autoscaling", "action": "DescribeLifecycleHooks", "mode": "500",
        "start": 0, "end": epoch_in(40.0)
    }]));
    g.wait_gone(&me, Duration::from_secs(120)).await;
    assert_completed_by_itself(&me, &data, written, &agent);
}

#[tokio::test]
async fn sqs_hanging_for_40s_during_the_hold() {
    // Finding 3: every SQS call hangs (no answer) for 40 s from the start of the hold;
    // HeartbeatTimeout 30 s; the queue as the trigger, so the hold keeps its message's
    // visibility as well as the hook's heartbeats. The drain takes about 50 s.
    let g = group_with("sqshang", 1, 30, "ABANDON").await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 100_000, &["--rate", "2000"]);
    let proxy = Proxy::start();
    let agent = proxy.agent(
        &me,
        &data,
        &["--queue-url", &g.queue_url, "--imds-trigger", "false"],
    );
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    g.scale_in(&me).await;
    agent
        .wait_log("holding instance", Duration::from_secs(30))
        .await;
    proxy.rules(serde_json::json!([{
        "service": "sqs", "action": "*", "mode": "hang",
        "start": epoch_in(0.0), "end": epoch_in(40.0)
    }]));
    g.wait_gone(&me, Duration::from_secs(120)).await;
    assert!(rule_hits(&proxy, 0) >= 1, "{}", proxy.hits());
    assert_completed_by_itself(&me, &data, written, &agent);
}

#[tokio::test]
async fn a_second_termination_hooks_notice_on_the_queue() {
    // Finding 5: the group has two termination hooks notifying the same queue: drainhook's
    // ("drain", named with --hook-name) and another tool's ("audit"). Each has its own
    // action and notice. The agent holds and completes its own, and leaves the other's
    // notice alone: not held, not completed, not deleted.
    let g = group_with("twohooks", 1, 30, "ABANDON").await;
    put_hook(&g, "audit", 300, "ABANDON").await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 40_000, &["--rate", "2000"]);
    let agent = Agent::launch(
        &me,
        &data,
        &[
            "--queue-url",
            &g.queue_url,
            "--imds-trigger",
            "false",
            "--hook-name",
            "drain",
        ],
    );
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    g.scale_in(&me).await;
    // drainhook's own action ends (the instance stays for the audit hook's).
    let t0 = Instant::now();
    let mine = loop {
        let a = emulator_stats()["actions"][&me].clone();
        if !a["result"].is_null() || t0.elapsed() > Duration::from_secs(90) {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (mine["result"].as_str(), mine["completed_by"].as_str()),
        (Some("CONTINUE"), Some(me.as_str())),
        "{mine}\n{}",
        agent.logs()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let audit = emulator_stats()["actions"][format!("{me}/audit")].clone();
    assert!(
        audit["result"].is_null() && audit["heartbeats"].as_array().is_some_and(|h| h.is_empty()),
        "the audit hook's action is not the agent's: {audit}\n{}",
        agent.logs()
    );
    assert_eq!(
        g.messages_in_queue().await,
        1,
        "the audit hook's notice is still in the queue, its own message deleted\n{}",
        agent.logs()
    );
    // The other tool finishes its action: the instance leaves.
    g.asg
        .complete_lifecycle_action()
        .auto_scaling_group_name(&g.name)
        .lifecycle_hook_name("audit")
        .instance_id(&me)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .unwrap();
    g.wait_gone(&me, Duration::from_secs(30)).await;
    assert_completed_by_itself(&me, &data, written, &agent);
}

#[tokio::test]
async fn a_visibility_renewal_failing_for_the_whole_hold_stays_quiet() {
    // Finding 4's bar: ChangeMessageVisibility fails (HTTP 500) for the whole hold, about
    // 75 s of drain. The renewal logs fewer than 100 lines and makes fewer than 2 calls a
    // second (HTTP requests, the SDK's own retries included); the hold is not disturbed.
    let g = group_with("visfail", 1, 30, "ABANDON").await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 150_000, &["--rate", "2000"]);
    let proxy = Proxy::start();
    proxy.rules(serde_json::json!([{
        "service": "sqs", "action": "ChangeMessageVisibility", "mode": "500"
    }]));
    let agent = proxy.agent(
        &me,
        &data,
        &["--queue-url", &g.queue_url, "--imds-trigger", "false"],
    );
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    g.scale_in(&me).await;
    agent
        .wait_log("holding instance", Duration::from_secs(30))
        .await;
    let held = Instant::now();
    let calls0 = rule_hits(&proxy, 0);
    g.wait_gone(&me, Duration::from_secs(150)).await;
    let hold = held.elapsed().as_secs_f64();
    let calls = rule_hits(&proxy, 0) - calls0;
    let lines = log_lines(&agent, "ChangeMessageVisibility");
    eprintln!(
        "renewal failing for the whole hold: {hold:.0} s, {calls} ChangeMessageVisibility requests ({:.2}/s), {lines} log lines",
        calls as f64 / hold
    );
    assert!(hold >= 40.0, "the hold lasted {hold:.0} s");
    assert!(lines < 100, "{lines} log lines\n{}", agent.logs());
    assert!(
        (calls as f64) < 2.0 * hold,
        "{calls} calls in {hold:.0} s\n{}",
        agent.logs()
    );
    assert_completed_by_itself(&me, &data, written, &agent);
}
