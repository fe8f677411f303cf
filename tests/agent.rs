//! `drainhook agent` end to end: a real local AWS emulator (moto with our lifecycle
//! extension, reached through AWS_ENDPOINT_URL), a local IMDSv2 server and the filebeat
//! simulator. Run through `make test`, which starts the emulator.

mod common;

use common::*;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- IMDSv2 stand-in

/// A local IMDSv2: `PUT /latest/api/token` gives a token; GETs need it (401 without).
fn imds_server(instance_id: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let id = instance_id.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut token = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("x-aws-ec2-metadata-token:") {
                    token = Some(v.trim().to_string());
                }
            }
            let mut parts = request.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, body) = match (method, path) {
                ("PUT", "/latest/api/token") => ("200 OK", "imds-token".to_string()),
                (_, _) if token.as_deref() != Some("imds-token") => {
                    ("401 Unauthorized", String::new())
                }
                ("GET", "/latest/meta-data/instance-id") => ("200 OK", id.clone()),
                ("GET", "/latest/meta-data/placement/region") => ("200 OK", "us-east-1".into()),
                _ => ("404 Not Found", String::new()),
            };
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/")
}

// ---------------------------------------------------------------- AWS set-up

fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL")
        .expect("the agent tests need an AWS endpoint: run them with `make test`, which starts the emulator")
}

async fn sdk() -> aws_config::SdkConfig {
    let _ = endpoint();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

struct Group {
    name: String,
    hook: String,
    queue_url: String,
    instances: Vec<String>,
    asg: aws_sdk_autoscaling::Client,
    sqs: aws_sdk_sqs::Client,
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}", n % 1_000_000_000_000)
}

async fn group(prefix: &str, instances: i32, heartbeat_timeout: i32) -> Group {
    let cfg = sdk().await;
    let asg = aws_sdk_autoscaling::Client::new(&cfg);
    let sqs = aws_sdk_sqs::Client::new(&cfg);
    let name = unique(prefix);
    let queue_url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    asg.create_launch_configuration()
        .launch_configuration_name(&name)
        .image_id("ami-12c6146b")
        .instance_type("t2.micro")
        .send()
        .await
        .unwrap();
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .launch_configuration_name(&name)
        .min_size(0)
        .max_size(5)
        .desired_capacity(instances)
        .availability_zones("us-east-1a")
        .send()
        .await
        .unwrap();
    asg.put_lifecycle_hook()
        .auto_scaling_group_name(&name)
        .lifecycle_hook_name("drain")
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .notification_target_arn(arn)
        .role_arn("arn:aws:iam::123456789012:role/drainhook-hook")
        .heartbeat_timeout(heartbeat_timeout)
        .default_result("CONTINUE")
        .send()
        .await
        .unwrap();
    let g = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&name)
        .send()
        .await
        .unwrap();
    let instances = g.auto_scaling_groups()[0]
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    Group {
        name,
        hook: "drain".into(),
        queue_url,
        instances,
        asg,
        sqs,
    }
}

impl Group {
    /// Scale in so that `victim` (and only it) is chosen: the others are protected.
    async fn scale_in(&self, victim: &str) {
        let others: Vec<String> = self
            .instances
            .iter()
            .filter(|i| *i != victim)
            .cloned()
            .collect();
        if !others.is_empty() {
            self.asg
                .set_instance_protection()
                .auto_scaling_group_name(&self.name)
                .set_instance_ids(Some(others))
                .protected_from_scale_in(true)
                .send()
                .await
                .unwrap();
        }
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(&self.name)
            .desired_capacity(self.instances.len() as i32 - 1)
            .send()
            .await
            .unwrap();
    }

    async fn state(&self, instance: &str) -> Option<String> {
        let out = self
            .asg
            .describe_auto_scaling_instances()
            .instance_ids(instance)
            .send()
            .await
            .unwrap();
        out.auto_scaling_instances()
            .first()
            .and_then(|i| i.lifecycle_state().map(str::to_string))
    }

    async fn wait_gone(&self, instance: &str, within: Duration) -> Instant {
        let t = Instant::now();
        while t.elapsed() < within {
            if self.state(instance).await.is_none() {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{instance} still in the group after {within:?}: {:?}",
            self.state(instance).await
        );
    }

    /// Messages in the queue, visible or not.
    async fn messages_in_queue(&self) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attrs = out.attributes.unwrap_or_default();
        let n = |k: A| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        n(A::ApproximateNumberOfMessages) + n(A::ApproximateNumberOfMessagesNotVisible)
    }

    async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// Receives visible messages' bodies (and makes them visible again at once).
    async fn peek(&self) -> Vec<String> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let mut bodies = Vec::new();
        for m in out.messages.unwrap_or_default() {
            self.sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
            bodies.push(m.body.unwrap_or_default());
        }
        bodies
    }
}

// ---------------------------------------------------------------- agent and logs

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(g: &Group, instance: &str, data: &Path, extra: &[&str]) -> Agent {
        let log = data.with_extension(format!("agent-{}.log", unique("run")));
        let mut c = drainhook();
        c.args(["agent", "--queue-url", &g.queue_url, "--settle", "1s"])
            .args(["--visibility-timeout", "4s", "--idle-pause", "200ms"])
            .arg("--registry")
            .arg(data)
            .arg("--drained-marker")
            .arg(data.with_extension("drained"))
            .args(extra)
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_server(instance))
            .env_remove("AWS_EC2_METADATA_DISABLED")
            .env("DRAINHOOK_CONFIG", data.with_extension("absent.toml"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        // the config file named by DRAINHOOK_CONFIG must exist: an empty one
        fs::write(data.with_extension("absent.toml"), "").unwrap();
        Agent {
            child: c.spawn().unwrap(),
            log,
        }
    }

    fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_log(&self, needle: &str, within: Duration) {
        let t = Instant::now();
        while t.elapsed() < within {
            if self.logs().contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("agent never logged {needle:?}; log:\n{}", self.logs());
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the agent for `me`, scales the group in on `me` once the agent listens, and
/// waits for the agent to log `until`.
async fn start_and_scale_in(g: &Group, me: &str, data: &Path, until: &str) -> Agent {
    let agent = Agent::start(g, me, data, &[]);
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    g.scale_in(me).await;
    agent.wait_log(until, Duration::from_secs(30)).await;
    agent
}

// ---------------------------------------------------------------- scenarios

#[tokio::test]
async fn scale_in_is_held_until_the_last_byte_is_acked_then_completed() {
    let g = group("scalein", 2, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, sim, written) = shipping(t.path(), 150_000, &["--rate", "50000"]);
    let agent = Agent::start(&g, &me, &data, &[]);
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    g.scale_in(&me).await;
    assert_eq!(g.state(&me).await.as_deref(), Some("Terminating:Wait"));
    agent
        .wait_log("termination notice received", Duration::from_secs(30))
        .await;
    g.wait_gone(&me, Duration::from_secs(60)).await;
    let gone_at = now_epoch();
    assert!(
        gone_at >= sim.last_ack() + 1.0,
        "completed {:.2}s after the last ack, before the settle period",
        gone_at - sim.last_ack()
    );
    assert_eq!(
        acked_bytes(&data),
        written,
        "every byte was shipped before the instance went"
    );
    let logs = agent.logs();
    assert!(logs.contains("heartbeat"), "{logs}");
    assert!(
        logs.contains("completed lifecycle action with CONTINUE"),
        "{logs}"
    );
    // the shutdown fallback that follows returns at once
    assert!(
        data.with_extension("drained").exists(),
        "the agent leaves its drained marker"
    );
    let t0 = Instant::now();
    let out = drainhook()
        .args(["drain", "--settle", "30s", "--registry"])
        .arg(&data)
        .env("DRAINHOOK_DRAINED_MARKER", data.with_extension("drained"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the fallback waited {:?}",
        t0.elapsed()
    );
    assert!(stderr(&out).contains("already drained"), "{}", stderr(&out));
    // the other instance is untouched and the message is gone
    assert_eq!(g.state(&g.instances[1]).await.as_deref(), Some("InService"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(g.messages_in_queue().await, 0);
}

#[tokio::test]
async fn a_drain_longer_than_several_heartbeat_timeouts_keeps_the_instance() {
    let g = group("longdrain", 1, 2).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 80_000, &["--rate", "10000"]);
    let agent = start_and_scale_in(&g, &me, &data, "holding instance").await;
    // 3 heartbeat timeouts later the instance is still held
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        g.state(&me).await.as_deref(),
        Some("Terminating:Wait"),
        "{}",
        agent.logs()
    );
    g.wait_gone(&me, Duration::from_secs(60)).await;
    assert_eq!(acked_bytes(&data), written);
    let logs = agent.logs();
    assert!(logs.matches("heartbeat sent").count() >= 3, "{logs}");
    assert!(logs.contains("with CONTINUE"), "{logs}");
}

#[tokio::test]
async fn other_instances_messages_stay_visible_to_others() {
    let g = group("foreign", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    // a drain of several seconds, so the agent is busy holding its own instance
    let (data, _sim, _) = shipping(t.path(), 100_000, &["--rate", "20000"]);
    let foreign = r#"{"LifecycleHookName":"drain","AccountId":"123456789012","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","AutoScalingGroupName":"other","Service":"AWS Auto Scaling","EC2InstanceId":"i-0someoneelse","LifecycleActionToken":"t-1"}"#;
    let agent = Agent::start(&g, &me, &data, &[]);
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Our own notice, then another instance's, while the agent long-polls.
    g.scale_in(&me).await;
    g.send(foreign).await;
    agent.wait_log("draining:", Duration::from_secs(30)).await;
    // While the agent holds its own instance, the other message is visible to others.
    let mut seen = false;
    for _ in 0..2 {
        if g.peek().await.iter().any(|b| b.contains("i-0someoneelse")) {
            seen = true;
            break;
        }
    }
    assert!(
        seen,
        "the foreign message disappeared or stayed invisible; agent log:\n{}",
        agent.logs()
    );
    assert_eq!(
        g.state(&me).await.as_deref(),
        Some("Terminating:Wait"),
        "still draining"
    );
    g.wait_gone(&me, Duration::from_secs(60)).await;
    // ... and after the agent finished its own, it is still in the queue.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(g.messages_in_queue().await >= 1, "{}", agent.logs());
    assert!(
        !agent.logs().contains("i-0someoneelse"),
        "never handled as ours"
    );
}

#[tokio::test]
async fn the_test_notification_is_deleted() {
    let g = group("testnote", 1, 60).await;
    let me = g.instances[0].clone();
    assert_eq!(
        g.messages_in_queue().await,
        1,
        "PutLifecycleHook sent a test notification"
    );
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, _) = shipping(t.path(), 1000, &["--rate", "1000000"]);
    let agent = Agent::start(&g, &me, &data, &[]);
    agent
        .wait_log("test notification: deleted", Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(g.messages_in_queue().await, 0);

    // A Spot warning for this instance cannot be held: it is said and deleted.
    g.send(&format!(
        r#"{{"version":"0","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","detail":{{"instance-id":"{me}","instance-action":"terminate"}}}}"#
    ))
    .await;
    agent
        .wait_log("spot interruption (terminate)", Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(g.messages_in_queue().await, 0);
}

#[tokio::test]
async fn a_malformed_body_is_kept_and_the_agent_keeps_serving() {
    let g = group("malformed", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, _) = shipping(t.path(), 1000, &["--rate", "1000000"]);
    let dlq = g
        .sqs
        .create_queue()
        .queue_name(format!("{}-dlq", g.name))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let agent = Agent::start(&g, &me, &data, &[]);
    agent
        .wait_log("test notification: deleted", Duration::from_secs(30))
        .await;
    g.send("this is { not json").await;
    agent
        .wait_log("left in the queue", Duration::from_secs(30))
        .await;
    assert_eq!(
        g.messages_in_queue().await,
        1,
        "the malformed message is kept"
    );
    // still serving: a termination for this instance is handled
    g.scale_in(&me).await;
    g.wait_gone(&me, Duration::from_secs(60)).await;
    drop(agent);

    // with a dead-letter queue the agent moves it there
    let agent = Agent::start(&g, &me, &data, &["--dead-letter-queue-url", &dlq]);
    agent
        .wait_log("moved to the dead-letter queue", Duration::from_secs(30))
        .await;
    let moved = g
        .sqs
        .receive_message()
        .queue_url(&dlq)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    assert_eq!(moved.messages()[0].body(), Some("this is { not json"));
}

#[tokio::test]
async fn an_action_completed_elsewhere_is_handled_without_a_retry_storm() {
    let g = group("elsewhere", 1, 60).await;
    let me = g.instances[0].clone();
    g.scale_in(&me).await;
    g.asg
        .complete_lifecycle_action()
        .auto_scaling_group_name(&g.name)
        .lifecycle_hook_name(&g.hook)
        .instance_id(&me)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .unwrap();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, _) = shipping(t.path(), 1000, &["--rate", "1000000"]);
    let agent = Agent::start(&g, &me, &data, &[]);
    agent
        .wait_log("already completed or expired", Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let logs = agent.logs();
    assert_eq!(
        logs.matches("already completed or expired").count(),
        1,
        "{logs}"
    );
    assert!(!logs.contains("retrying"), "{logs}");
    assert_eq!(g.messages_in_queue().await, 0, "{logs}");
}

#[tokio::test]
async fn an_agent_killed_mid_drain_resumes_after_restart() {
    let g = group("restart", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, sim, written) = shipping(t.path(), 120_000, &["--rate", "15000"]);
    let mut agent = Agent::start(&g, &me, &data, &[]);
    g.scale_in(&me).await;
    agent.wait_log("draining:", Duration::from_secs(30)).await;
    let status = agent.terminate();
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    assert!(agent.logs().contains("released"), "{}", agent.logs());
    assert_eq!(
        g.state(&me).await.as_deref(),
        Some("Terminating:Wait"),
        "not completed"
    );
    let agent = Agent::start(&g, &me, &data, &[]);
    agent
        .wait_log("resuming the hold", Duration::from_secs(30))
        .await;
    g.wait_gone(&me, Duration::from_secs(60)).await;
    assert!(now_epoch() >= sim.last_ack() + 1.0);
    assert_eq!(acked_bytes(&data), written);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(g.messages_in_queue().await, 0, "{}", agent.logs());
}

#[tokio::test]
async fn a_drain_timeout_completes_with_the_configured_result() {
    let g = group("timeout", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, _) = shipping(t.path(), 500_000, &["--rate", "1000"]);
    let agent = Agent::start(
        &g,
        &me,
        &data,
        &["--drain-timeout", "2s", "--on-timeout", "abandon"],
    );
    g.scale_in(&me).await;
    g.wait_gone(&me, Duration::from_secs(30)).await;
    let logs = agent.logs();
    assert!(logs.contains("did not finish in time"), "{logs}");
    assert!(logs.contains("completing with ABANDON"), "{logs}");
    assert!(
        logs.contains("completed lifecycle action with ABANDON"),
        "{logs}"
    );
}

/// Seconds since the epoch of a log line's RFC 3339 UTC stamp (`2026-11-24T01:08:25.548950Z`).
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let (date, time) = stamp.trim_end_matches('Z').split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let (y, m, day) = (d[0], d[1], d[2]);
    // days from civil (Howard Hinnant's algorithm)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let t: Vec<f64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    Some(days as f64 * 86400.0 + t[0] * 3600.0 + t[1] * 60.0 + t[2])
}

#[tokio::test]
#[ignore = "measurement: run with `make agent-latency`"]
async fn completion_latency_after_the_last_ack() {
    let mut samples = Vec::new();
    for run in 0..20 {
        let g = group("latency", 1, 60).await;
        let me = g.instances[0].clone();
        let t = tempfile::tempdir().unwrap();
        let (data, sim, _) = shipping(t.path(), 30_000, &["--rate", "60000"]);
        let agent = Agent::start(&g, &me, &data, &[]);
        agent
            .wait_log("drainhook agent started", Duration::from_secs(15))
            .await;
        g.scale_in(&me).await;
        g.wait_gone(&me, Duration::from_secs(60)).await;
        let logs = agent.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("completed lifecycle action"))
            .expect("completed");
        let latency = log_time(line).unwrap() - sim.last_ack() - 1.0;
        println!(
            "run {run:2}: CompleteLifecycleAction {:.0} ms after last ack + settle",
            latency * 1000.0
        );
        samples.push(latency);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "median over 20 runs: {:.0} ms (min {:.0}, max {:.0}) after last ack + settle",
        (samples[9] + samples[10]) / 2.0 * 1000.0,
        samples[0] * 1000.0,
        samples[19] * 1000.0
    );
}

#[tokio::test]
async fn an_unreadable_registry_holds_the_instance_until_it_can_be_read() {
    let g = group("noregistry", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data"); // filebeat has not written it yet
    let agent = start_and_scale_in(&g, &me, &data, "cannot read the registry").await;
    assert_eq!(
        g.state(&me).await.as_deref(),
        Some("Terminating:Wait"),
        "an unreadable registry is never \"drained\""
    );
    // filebeat starts and ships: the agent drains and completes
    let (data2, _sim, written) = shipping(t.path(), 20_000, &["--rate", "100000"]);
    assert_eq!(data2, data);
    g.wait_gone(&me, Duration::from_secs(60)).await;
    assert_eq!(acked_bytes(&data), written);
    let logs = agent.logs();
    assert!(
        logs.contains("completed lifecycle action with CONTINUE"),
        "{logs}"
    );
    assert_eq!(
        logs.matches("cannot read the registry").count(),
        1,
        "logged once: {logs}"
    );
}
