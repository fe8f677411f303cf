//! The lifecycle agent: event → hold → drain → complete.
//!
//! It long-polls the hook's queue. A termination of its own instance is held (heartbeats,
//! message kept invisible in short extensions), drained, completed, and only then is the
//! message deleted. Other instances' messages are released at once (visibility 0), never
//! deleted: the queue is shared by the whole group.

use crate::backlog::{human_bytes, plural, ProcScan};
use crate::config::AgentConfig;
use crate::drain::{self, DrainOptions, Outcome};
use crate::lifecycle::{CallError, HookTiming, Lifecycle};
use crate::message::{self, LifecycleAction, Notice};
use crate::{duration, exit, imds::ImdsClient, sdnotify};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::Message;
use backon::{BackoffBuilder, ExponentialBuilder};
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Shown after `drainhook agent --help`.
pub const AGENT_HELP: &str = "\
Every option can also be set in /etc/drainhook/drainhook.toml (same name with '_', e.g.
queue_url = \"https://sqs…\", max_hold = \"1h\", pre_drain = [\"systemctl stop app\"]) or in
DRAINHOOK_<NAME> variables. Flags win over variables, variables over the file. Standard AWS
variables (AWS_REGION, AWS_ENDPOINT_URL, credentials, AWS_MAX_ATTEMPTS) work as the SDK defines.

Exit codes: 0 stopped by SIGTERM/SIGINT (a drain in progress is released to a restarted
agent, not completed), 1 configuration or identity error.";

/// Time kept back from the hold budget to complete the action before the hook expires.
const COMPLETE_MARGIN: Duration = Duration::from_secs(10);

struct Agent {
    cfg: AgentConfig,
    instance_id: String,
    sqs: aws_sdk_sqs::Client,
    lifecycle: Lifecycle,
    /// Becomes true on SIGTERM/SIGINT.
    shutdown: watch::Receiver<bool>,
}

/// How handling one termination ended.
enum Handled {
    /// Completed (or found already completed): the message may be deleted.
    Done,
    /// Shutdown mid-hold: the message is released for a restarted agent.
    ShutDown,
}

pub async fn run(cfg: AgentConfig) -> Result<ExitCode, String> {
    let (tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        let name = exit::wait_for_signal().await;
        tracing::info!("{name} received: stopping");
        sdnotify::stopping();
        let _ = tx.send(true);
    });
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = &cfg.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    let mut sdk = loader.load().await;
    let imds = ImdsClient::new();
    if sdk.region().is_none() {
        let region = imds.fetch_region().await.map_err(|e| e.to_string())?;
        sdk = sdk
            .into_builder()
            .region(aws_config::Region::new(region))
            .build();
    }
    let instance_id = match &cfg.instance_id {
        Some(id) => id.clone(),
        None => imds.fetch_instance_id().await.map_err(|e| e.to_string())?,
    };
    let agent = Agent {
        // Long polls are silent for 20 s by design; the stalled-stream monitor would wake
        // the idle agent dozens of times a second to watch them.
        sqs: aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .stalled_stream_protection(
                    aws_sdk_sqs::config::StalledStreamProtectionConfig::disabled(),
                )
                .build(),
        ),
        lifecycle: Lifecycle::new(aws_sdk_autoscaling::Client::new(&sdk)),
        instance_id,
        cfg,
        shutdown,
    };
    tracing::info!(
        instance = %agent.instance_id,
        region = %sdk.region().map(|r| r.to_string()).unwrap_or_default(),
        queue = %agent.cfg.queue_url,
        registry = %agent.cfg.registry.display(),
        "drainhook agent started"
    );
    sdnotify::ready(&format!("idle, listening on {}", agent.cfg.queue_url));
    agent.resume().await;
    agent.listen().await;
    Ok(ExitCode::SUCCESS)
}

impl Agent {
    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    async fn until_shutdown(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// After a restart: if this instance already waits in Terminating:Wait, finish the job
    /// now, completing by instance id, without waiting for the message to come back.
    async fn resume(&self) {
        match self.lifecycle.waiting_action(&self.instance_id).await {
            Ok(Some(action)) => {
                tracing::info!(
                    instance = %action.instance_id, hook = %action.hook, group = %action.group,
                    "instance already waits in Terminating:Wait: resuming the hold"
                );
                let _ = self.handle(action, None).await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot check whether this instance is terminating: {e}"),
        }
    }

    async fn listen(&self) {
        let mut errors = retry_delays(Duration::from_secs(60));
        while !self.stopping() {
            let recv = self
                .sqs
                .receive_message()
                .queue_url(&self.cfg.queue_url)
                .wait_time_seconds(20)
                .max_number_of_messages(10)
                .visibility_timeout(self.cfg.visibility_timeout.as_secs() as i32);
            let out = tokio::select! {
                _ = self.until_shutdown() => break,
                r = recv.send() => r,
            };
            let messages = match out {
                Ok(o) => {
                    errors = retry_delays(Duration::from_secs(60));
                    o.messages.unwrap_or_default()
                }
                Err(e) => {
                    let wait = errors.next().unwrap_or(Duration::from_secs(60));
                    tracing::warn!(
                        "ReceiveMessage failed, retrying in {}: {}",
                        duration::format(wait),
                        DisplayErrorContext(&e)
                    );
                    self.pause(wait).await;
                    continue;
                }
            };
            // Our own termination may hold us for an hour: first give the batch's other
            // messages back (or handle them), so other instances' agents are not delayed.
            let mut batch: Vec<(Message, Notice)> = messages
                .into_iter()
                .map(|m| {
                    let notice = message::parse(m.body().unwrap_or(""));
                    (m, notice)
                })
                .collect();
            batch.sort_by_key(|(_, n)| self.is_own_termination(n));
            let mut only_foreign = !batch.is_empty();
            for (m, notice) in batch {
                if self.stopping() {
                    // Not looked at: give it back at once.
                    self.release(&m).await;
                    continue;
                }
                only_foreign &= self.dispatch(m, notice).await;
            }
            if only_foreign {
                // The queue is shared: don't spin on other instances' messages.
                self.pause(self.cfg.idle_pause).await;
            }
        }
        tracing::info!("agent stopped");
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = self.until_shutdown() => {}
            _ = tokio::time::sleep(d) => {}
        }
    }

    fn is_own_termination(&self, n: &Notice) -> bool {
        matches!(n, Notice::Terminating(a) if a.instance_id == self.instance_id)
    }

    /// Handles one message; returns whether it was another instance's.
    async fn dispatch(&self, m: Message, notice: Notice) -> bool {
        let id = m.message_id().unwrap_or("?").to_string();
        match notice {
            Notice::Terminating(action) if action.instance_id == self.instance_id => {
                tracing::info!(
                    message_id = %id, instance = %action.instance_id, hook = %action.hook,
                    group = %action.group,
                    "termination notice received for this instance"
                );
                match self.handle(action, Some(&m)).await {
                    Handled::Done => self.delete(&m).await,
                    Handled::ShutDown => self.release(&m).await,
                }
                false
            }
            Notice::Test { group } => {
                tracing::info!(message_id = %id, group = %group, "test notification: deleted");
                self.delete(&m).await;
                false
            }
            Notice::SpotInterruption {
                instance_id,
                action,
            } if instance_id == self.instance_id => {
                // Two minutes' warning that no lifecycle hook can extend: there is nothing to
                // hold. The shutdown fallback (drainhook-shutdown.service) drains at shutdown.
                tracing::warn!(
                    message_id = %id,
                    "spot interruption ({action}) for this instance: it cannot be held; the shutdown fallback will drain what it can"
                );
                self.delete(&m).await;
                false
            }
            Notice::Malformed { reason } | Notice::Unknown { reason } => {
                self.reject(&m, &id, &reason).await;
                false
            }
            other => {
                let inst = other.instance_id().unwrap_or("?");
                tracing::debug!(message_id = %id, instance = %inst, "another instance's message: released");
                self.release(&m).await;
                true
            }
        }
    }

    /// A message we cannot handle is never just deleted: moved to the dead-letter queue
    /// when one is configured, else left for the queue's retention.
    async fn reject(&self, m: &Message, id: &str, reason: &str) {
        let Some(dlq) = &self.cfg.dead_letter_queue_url else {
            tracing::warn!(message_id = %id, "cannot handle message ({reason}); left in the queue (no dead-letter queue configured)");
            return;
        };
        let sent = self
            .sqs
            .send_message()
            .queue_url(dlq)
            .message_body(m.body().unwrap_or(""))
            .send()
            .await;
        match sent {
            Ok(_) => {
                tracing::warn!(message_id = %id, "cannot handle message ({reason}); moved to the dead-letter queue");
                self.delete(m).await;
            }
            Err(e) => tracing::warn!(
                message_id = %id,
                "cannot handle message ({reason}); moving it to the dead-letter queue failed, left in the queue: {}",
                DisplayErrorContext(&e)
            ),
        }
    }

    async fn delete(&self, m: &Message) {
        let Some(receipt) = m.receipt_handle() else {
            return;
        };
        if let Err(e) = self
            .sqs
            .delete_message()
            .queue_url(&self.cfg.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            tracing::warn!("DeleteMessage failed: {}", DisplayErrorContext(&e));
        }
    }

    async fn release(&self, m: &Message) {
        self.set_visibility(m, 0).await;
    }

    async fn set_visibility(&self, m: &Message, secs: i32) {
        if let Some(receipt) = m.receipt_handle() {
            change_visibility(&self.sqs, &self.cfg.queue_url, receipt, secs).await;
        }
    }

    /// Hold, drain, complete.
    async fn handle(&self, action: LifecycleAction, msg: Option<&Message>) -> Handled {
        let started = Instant::now();
        let timing = match self
            .lifecycle
            .hook_timing(&action.group, &action.hook)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("cannot read the hook's timeouts, assuming AWS defaults: {e}");
                HookTiming::default_timing()
            }
        };
        // Never hold past --max-hold nor the hook's global timeout.
        let budget = self.cfg.max_hold.min(timing.global_timeout);
        let hold_until = started + budget;
        let interval = self
            .cfg
            .heartbeat_interval
            .unwrap_or(timing.heartbeat_timeout / 2)
            .max(Duration::from_secs(1));
        if interval >= timing.heartbeat_timeout {
            tracing::warn!(
                "heartbeat interval {} is not shorter than the hook's HeartbeatTimeout {}: the hook may expire first",
                duration::format(interval),
                duration::format(timing.heartbeat_timeout)
            );
        }
        // The first heartbeat also tells whether the action is still alive.
        match self.lifecycle.heartbeat(&action).await {
            Err(CallError::Gone(m)) => {
                tracing::info!(
                    "lifecycle action already completed or expired ({m}): nothing to do"
                );
                return Handled::Done;
            }
            Err(e) => tracing::warn!("heartbeat failed (will retry on schedule): {e}"),
            Ok(()) => tracing::info!(
                "holding instance {} (heartbeat every {}, next due in {}; hold at most {})",
                action.instance_id,
                duration::format(interval),
                duration::format(interval),
                duration::format(budget)
            ),
        }

        let (gone_tx, gone_rx) = watch::channel(false);
        let keeper = self.spawn_keeper(&action, msg, interval, gone_tx);
        let outcome = self.hold_and_drain(&action, hold_until, gone_rx).await;
        keeper.abort(); // stop heartbeating the moment the work ends

        let result = match outcome {
            HoldOutcome::ShutDown(pending) => {
                tracing::warn!(
                    "stopping mid-drain with {pending} still pending: the message is released for a restarted agent; the action is not completed"
                );
                return Handled::ShutDown;
            }
            HoldOutcome::Gone => {
                tracing::info!("lifecycle action ended elsewhere (completed or expired) during the drain: done");
                return Handled::Done;
            }
            HoldOutcome::Drained => {
                drain::write_drained_marker(&self.cfg.drained_marker);
                "CONTINUE"
            }
            HoldOutcome::TimedOut(pending) => {
                tracing::warn!(
                    "drain did not finish in time ({pending} still pending): completing with {}",
                    self.cfg.on_timeout.result()
                );
                self.cfg.on_timeout.result()
            }
        };
        self.complete(&action, result, started, hold_until + COMPLETE_MARGIN)
            .await;
        sdnotify::status(&format!("idle, listening on {}", self.cfg.queue_url));
        if action.destination.as_deref() == Some("AutoScalingGroup") {
            tracing::info!("root volume replacement: the instance comes back; still listening");
        }
        Handled::Done
    }

    /// Heartbeats on schedule and keeps the message invisible in short extensions.
    fn spawn_keeper(
        &self,
        action: &LifecycleAction,
        msg: Option<&Message>,
        interval: Duration,
        gone: watch::Sender<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let lifecycle = self.lifecycle.clone();
        let action = action.clone();
        let sqs = self.sqs.clone();
        let queue = self.cfg.queue_url.clone();
        let receipt = msg.and_then(|m| m.receipt_handle().map(str::to_string));
        let vis = self.cfg.visibility_timeout;
        tokio::spawn(async move {
            let mut next_beat = Instant::now() + interval;
            let mut next_vis = Instant::now() + vis / 2;
            loop {
                let wake = if receipt.is_some() {
                    next_beat.min(next_vis)
                } else {
                    next_beat
                };
                tokio::time::sleep_until(wake).await;
                let now = Instant::now();
                if let Some(r) = receipt.as_deref().filter(|_| now >= next_vis) {
                    change_visibility(&sqs, &queue, r, vis.as_secs() as i32).await;
                    next_vis = now + vis / 2;
                }
                if now >= next_beat {
                    next_beat = now + interval;
                    match lifecycle.heartbeat(&action).await {
                        Ok(()) => tracing::info!(
                            "heartbeat sent (next due in {})",
                            duration::format(interval)
                        ),
                        Err(CallError::Gone(m)) => {
                            tracing::info!("heartbeat: {m}; no more heartbeats");
                            let _ = gone.send(true);
                            return;
                        }
                        Err(e) => tracing::warn!("heartbeat failed, retrying at the next one: {e}"),
                    }
                }
            }
        })
    }

    async fn hold_and_drain(
        &self,
        action: &LifecycleAction,
        hold_until: Instant,
        mut gone: watch::Receiver<bool>,
    ) -> HoldOutcome {
        for cmd in &self.cfg.pre_drain {
            if self.stopping() {
                break;
            }
            run_pre_drain(cmd, self.cfg.pre_drain_timeout).await;
        }
        let left = hold_until.saturating_duration_since(Instant::now());
        let timeout = self.cfg.drain_timeout.map_or(left, |t| t.min(left));
        let opts = DrainOptions {
            timeout,
            settle: self.cfg.settle,
            procs: ProcScan {
                process_name: self.cfg.filebeat_process.clone(),
                ..ProcScan::default()
            },
            // The agent itself always waits the settle period out.
            drained_marker: None,
            ..DrainOptions::new(self.cfg.registry.clone())
        };
        tracing::info!(
            instance = %action.instance_id,
            "draining: waiting for filebeat to ship everything (timeout {}, settle {})",
            duration::format(timeout),
            duration::format(self.cfg.settle)
        );
        let drain_until = Instant::now() + opts.timeout;
        let mut reported_error = None;
        loop {
            let mut stop_reason = StopReason::None;
            let stop = async {
                tokio::select! {
                    _ = self.until_shutdown() => stop_reason = StopReason::Shutdown,
                    _ = gone.wait_for(|g| *g) => stop_reason = StopReason::Gone,
                }
            };
            let opts = DrainOptions {
                timeout: drain_until.saturating_duration_since(Instant::now()),
                ..opts.clone()
            };
            let outcome = drain::drain(&opts, stop, |p| {
                let s = p.summary();
                tracing::info!("drain progress: {s}");
                sdnotify::status(&format!("draining: {s}"));
            })
            .await;
            return match outcome {
                Ok(Outcome::Drained { backlog, waited }) => {
                    tracing::info!(
                        "drained: {} shipped to the end after {}",
                        plural(backlog.files.len(), "file"),
                        duration::format(waited)
                    );
                    HoldOutcome::Drained
                }
                Ok(Outcome::TimedOut { backlog }) => {
                    HoldOutcome::TimedOut(human_bytes(backlog.pending_bytes))
                }
                Ok(Outcome::Interrupted { backlog }) => match stop_reason {
                    StopReason::Gone => HoldOutcome::Gone,
                    _ => HoldOutcome::ShutDown(human_bytes(backlog.pending_bytes)),
                },
                Err(e) => {
                    // An unreadable registry never counts as drained. Keep the instance and
                    // try again: filebeat may be starting, or a human may fix it in time.
                    let msg = e.to_string();
                    if reported_error.as_deref() != Some(msg.as_str()) {
                        tracing::error!("drain cannot read the registry, retrying every 5s until the drain times out: {msg}");
                        sdnotify::status(&format!("draining: registry unreadable: {msg}"));
                    }
                    reported_error = Some(msg);
                    let left = drain_until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return HoldOutcome::TimedOut("unknown (registry unreadable)".into());
                    }
                    tokio::select! {
                        _ = self.until_shutdown() => return HoldOutcome::ShutDown("unknown".into()),
                        _ = gone.wait_for(|g| *g) => return HoldOutcome::Gone,
                        _ = tokio::time::sleep(left.min(Duration::from_secs(5))) => {}
                    }
                    continue;
                }
            };
        }
    }

    /// CompleteLifecycleAction, retried with backoff until it lands or the action is gone.
    async fn complete(
        &self,
        action: &LifecycleAction,
        result: &str,
        started: Instant,
        give_up: Instant,
    ) {
        let mut delays = retry_delays(Duration::from_secs(30));
        loop {
            match self.lifecycle.complete(action, result).await {
                Ok(()) => {
                    tracing::info!(
                        instance = %action.instance_id,
                        "completed lifecycle action with {result} after holding {}",
                        duration::format(started.elapsed())
                    );
                    return;
                }
                Err(CallError::Gone(m)) => {
                    tracing::info!(
                        "lifecycle action already completed or expired ({m}): counts as done"
                    );
                    return;
                }
                Err(e) => {
                    let wait = delays.next().unwrap_or(Duration::from_secs(30));
                    if Instant::now() + wait > give_up {
                        tracing::error!("giving up completing the lifecycle action (the hook's own timeout will end it): {e}");
                        return;
                    }
                    tracing::warn!(
                        "CompleteLifecycleAction failed, retrying in {}: {e}",
                        duration::format(wait)
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// ChangeMessageVisibility: 0 releases a message, more extends the hold on it. A failure
/// is logged; the message simply comes back when its current visibility ends.
async fn change_visibility(sqs: &aws_sdk_sqs::Client, queue: &str, receipt: &str, secs: i32) {
    if let Err(e) = sqs
        .change_message_visibility()
        .queue_url(queue)
        .receipt_handle(receipt)
        .visibility_timeout(secs)
        .send()
        .await
    {
        tracing::warn!(
            "ChangeMessageVisibility ({secs}s) failed: {}",
            DisplayErrorContext(&e)
        );
    }
}

/// Delays for our own retry loops (the SDK already retried each call): exponential from
/// 1 s up to `max`, with jitter, without end.
fn retry_delays(max: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

enum StopReason {
    None,
    Shutdown,
    Gone,
}

enum HoldOutcome {
    Drained,
    TimedOut(String),
    ShutDown(String),
    Gone,
}

/// Runs one pre-drain command, bounded; its failure is logged, not fatal: the drain runs anyway.
async fn run_pre_drain(cmd: &str, bound: Duration) {
    tracing::info!(
        "pre-drain: running {cmd:?} (at most {})",
        duration::format(bound)
    );
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(bound, child).await {
        Ok(Ok(s)) if s.success() => tracing::info!("pre-drain: {cmd:?} done"),
        Ok(Ok(s)) => tracing::warn!("pre-drain: {cmd:?} failed ({s}); draining anyway"),
        Ok(Err(e)) => tracing::warn!("pre-drain: cannot run {cmd:?}: {e}; draining anyway"),
        Err(_) => tracing::warn!(
            "pre-drain: {cmd:?} still running after {}; killed, draining anyway",
            duration::format(bound)
        ),
    }
}
