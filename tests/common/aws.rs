//! AWS-side helpers for the agent tests: a group with a terminating hook and its queue on the
//! emulator (reached through AWS_ENDPOINT_URL only), the agent process and its log.
#![allow(dead_code)]

use crate::common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- the emulator's own routes

/// One HTTP/1.1 request to a loopback URL; returns the status and the body.
pub fn http(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn json(status_body: (u16, String), what: &str) -> serde_json::Value {
    let (status, body) = status_body;
    assert_eq!(status, 200, "{what}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"))
}

/// The emulator's IMDSv2 stand-in for `instance`: its own loopback listener, whose
/// `target-lifecycle-state` follows the emulator's state of the instance.
pub fn imds_endpoint(instance: &str) -> String {
    let v = json(
        http(
            "GET",
            &format!("{}/_drainhook/imds/{instance}", endpoint()),
            None,
        ),
        "IMDS stand-in",
    );
    v["endpoint"].as_str().unwrap().to_string()
}

/// Sets the IMDS stand-in of `instance`: `life_cycle`, `spot_action`, `fault`,
/// `target_lifecycle_404`.
pub fn imds_control(instance: &str, settings: serde_json::Value) -> serde_json::Value {
    json(
        http(
            "POST",
            &format!("{}/_drainhook/imds/{instance}", endpoint()),
            Some(&settings.to_string()),
        ),
        "IMDS stand-in control",
    )
}

/// What the emulator recorded: requests by agent label, lifecycle actions, deletions.
pub fn emulator_stats() -> serde_json::Value {
    json(
        http("GET", &format!("{}/_drainhook/stats", endpoint()), None),
        "emulator stats",
    )
}

/// Requests agent `label` made to `service` (`sqs`, `autoscaling`), all actions summed.
pub fn requests_by(label: &str, service: &str) -> u64 {
    let stats = emulator_stats();
    let mut n = 0;
    if let Some(by_label) = stats["requests"][label][service].as_object() {
        n += by_label.values().filter_map(|v| v.as_u64()).sum::<u64>();
    }
    n
}

// ---------------------------------------------------------------- AWS set-up

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL")
        .expect("the agent tests need an AWS endpoint: run them with `make test`, which starts the emulator")
}

pub async fn sdk() -> aws_config::SdkConfig {
    let _ = endpoint();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

pub struct Group {
    pub name: String,
    pub hook: String,
    pub queue_url: String,
    pub instances: Vec<String>,
    pub asg: aws_sdk_autoscaling::Client,
    pub sqs: aws_sdk_sqs::Client,
}

pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}", n % 1_000_000_000_000)
}

pub async fn group(prefix: &str, instances: i32, heartbeat_timeout: i32) -> Group {
    group_with(prefix, instances, heartbeat_timeout, "CONTINUE").await
}

/// A group whose hook ends an expired action with `default_result` (ABANDON makes an
/// expiry visible: the agent itself only ever completes with CONTINUE when drained).
pub async fn group_with(
    prefix: &str,
    instances: i32,
    heartbeat_timeout: i32,
    default_result: &str,
) -> Group {
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
        .default_result(default_result)
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
    pub async fn scale_in(&self, victim: &str) {
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

    pub async fn state(&self, instance: &str) -> Option<String> {
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

    pub async fn wait_gone(&self, instance: &str, within: Duration) -> Instant {
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
    pub async fn messages_in_queue(&self) -> u64 {
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

    pub async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// Receives visible messages' bodies (and makes them visible again at once).
    pub async fn peek(&self) -> Vec<String> {
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

pub struct Agent {
    pub child: Child,
    pub log: PathBuf,
}

impl Agent {
    /// The agent for `instance` with both triggers: the emulator's IMDS and the group's queue.
    pub fn start(g: &Group, instance: &str, data: &Path, extra: &[&str]) -> Agent {
        let mut args = vec!["--queue-url", g.queue_url.as_str()];
        args.extend_from_slice(extra);
        Agent::launch(instance, data, &args)
    }

    /// The agent with `args` (no queue unless they name one), its IMDS the emulator's
    /// stand-in for `instance`, its requests labelled `instance` in the emulator's stats.
    pub fn launch(instance: &str, data: &Path, args: &[&str]) -> Agent {
        Agent::launch_env(instance, data, args, &[])
    }

    /// [`Agent::launch`] with extra environment (e.g. `AWS_ENDPOINT_URL` of a proxy).
    pub fn launch_env(instance: &str, data: &Path, args: &[&str], env: &[(&str, &str)]) -> Agent {
        let log = data.with_extension(format!("agent-{}.log", unique("run")));
        let mut c = drainhook();
        c.args(["agent", "--settle", "1s"])
            .args(["--visibility-timeout", "4s", "--idle-pause", "200ms"])
            .arg("--registry")
            .arg(data)
            .arg("--drained-marker")
            .arg(data.with_extension("drained"))
            .args(args)
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_endpoint(instance))
            .env_remove("AWS_EC2_METADATA_DISABLED")
            .env("AWS_SDK_UA_APP_ID", instance)
            .env("DRAINHOOK_CONFIG", data.with_extension("absent.toml"))
            // Never the machine's report; an empty one that no simulator tracks unless a
            // test names another: the hold then learns at once that nobody ships it.
            .env("DRAINHOOK_REPORT_FILE", data.with_extension("report.log"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        // the config file named by DRAINHOOK_CONFIG must exist: an empty one
        fs::write(data.with_extension("absent.toml"), "").unwrap();
        let _ = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.with_extension("report.log"));
        Agent {
            child: c.spawn().unwrap(),
            log,
        }
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_log(&self, needle: &str, within: Duration) {
        let t = Instant::now();
        while t.elapsed() < within {
            if self.logs().contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("agent never logged {needle:?}; log:\n{}", self.logs());
    }

    /// Waits until the agent watches IMDS and has seen its instance in service.
    pub async fn wait_in_service(&self) {
        self.wait_log(
            "IMDS: target lifecycle state InService",
            Duration::from_secs(30),
        )
        .await;
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
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
pub async fn start_and_scale_in(g: &Group, me: &str, data: &Path, until: &str) -> Agent {
    let agent = Agent::start(g, me, data, &[]);
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    g.scale_in(me).await;
    agent.wait_log(until, Duration::from_secs(30)).await;
    agent
}
