//! AWS-side helpers for the agent tests: a group with a terminating hook and its queue on the
//! emulator (reached through AWS_ENDPOINT_URL only), the agent process and its log.
#![allow(dead_code)]

use crate::common::*;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- IMDSv2 stand-in

/// A local IMDSv2: `PUT /latest/api/token` gives a token; GETs need it (401 without).
pub fn imds_server(instance_id: &str) -> String {
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
    pub fn start(g: &Group, instance: &str, data: &Path, extra: &[&str]) -> Agent {
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
