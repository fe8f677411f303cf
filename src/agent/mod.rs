//! The lifecycle agent: trigger → hold → drain → complete.
//!
//! Three triggers notice that this instance is being terminated, and each produces a
//! [`LifecycleAction`] (with a token when it came from a message):
//! - `imds_watch`: IMDS `autoscaling/target-lifecycle-state` turns `Terminated` (no queue
//!   needed; the default);
//! - `queue`: the hook's SQS queue, when one is configured (an agent without IMDS also
//!   asks Auto Scaling about itself when another instance's notice arrives, so it need not
//!   find its own message among everyone's first);
//! - `resume`: at start-up, the instance already waits in `Terminating:Wait`.
//!
//! They all send to one coordinator (`coordinate`), which runs the one `hold` for the
//! action, or hands a message that arrives later to the hold already running, so a second
//! trigger never means a second hold or a second complete. Spot interruption notices start a
//! best-effort drain (`spot`): no hook can extend those two minutes.

mod hold;
mod imds_watch;
mod keeper;
mod queue;
mod resume;
mod retry;
mod spot;

use crate::config::AgentConfig;
use crate::lifecycle::Lifecycle;
use crate::message::LifecycleAction;
use crate::{duration, exit, imds::ImdsClient, sdnotify};
use aws_config::timeout::TimeoutConfig;
use std::fmt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

/// Shown after `drainhook agent --help`.
pub const AGENT_HELP: &str = "\
Triggers: IMDS autoscaling/target-lifecycle-state (on by default; needs no queue and no SQS
permission) and, with --queue-url, the hook's SQS queue. Whichever notices first starts the
one hold; the other's notice joins it.

Every option can also be set in /etc/drainhook/drainhook.toml (same name with '_', e.g.
queue_url = \"https://sqs…\", max_hold = \"1h\", pre_drain = [\"systemctl stop app\"]) or in
DRAINHOOK_<NAME> variables. Flags win over variables, variables over the file. Standard AWS
variables (AWS_REGION, AWS_ENDPOINT_URL, credentials, AWS_MAX_ATTEMPTS) work as the SDK defines.

Exit codes: 0 stopped by SIGTERM/SIGINT (a drain in progress is released to a restarted
agent, not completed), 1 configuration or identity error.";

/// Which trigger noticed a termination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Imds,
    Queue,
    /// Another instance's notice on the queue prompted a look at this instance's own state.
    QueueSelfCheck,
    Resume,
}

impl Source {
    /// The trigger's name in the drain report.
    pub(crate) fn report_name(self) -> &'static str {
        match self {
            Source::Imds => "imds",
            Source::Queue | Source::QueueSelfCheck => "queue",
            Source::Resume => "startup",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Imds => "IMDS target-lifecycle-state",
            Source::Queue => "queue message",
            Source::QueueSelfCheck => "Auto Scaling, asked on another instance's queue notice",
            Source::Resume => "start-up check",
        })
    }
}

/// A message of the hook's queue that belongs to this instance's action: kept invisible
/// while the action is held and deleted once it is finished.
#[derive(Debug, Clone)]
pub(crate) struct HeldMessage {
    pub id: String,
    pub receipt: String,
    /// When SQS received it (`SentTimestamp`).
    pub sent_at: Option<SystemTime>,
}

/// What a trigger tells the coordinator.
#[derive(Debug)]
pub(crate) enum Event {
    /// This instance's termination action.
    Terminating {
        action: LifecycleAction,
        source: Source,
        message: Option<HeldMessage>,
    },
    /// A Spot interruption notice for this instance.
    Spot {
        action: String,
        /// When the interruption happens, if the notice says.
        at: Option<SystemTime>,
        source: Source,
    },
}

/// What every part of the agent shares.
pub(crate) struct Ctx {
    pub cfg: AgentConfig,
    pub instance_id: String,
    pub lifecycle: Lifecycle,
    pub queue: Option<queue::QueueClient>,
    /// Becomes true on SIGTERM/SIGINT.
    pub shutdown: watch::Receiver<bool>,
    /// The running hold has its message: the queue listener has nothing left to find and
    /// stops polling until the hold ends, adding no load to the shared queue meanwhile.
    pub message_held: AtomicBool,
    /// A hold runs: the queue listener need not ask Auto Scaling about this instance.
    pub holding: AtomicBool,
}

impl Ctx {
    pub fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub async fn until_shutdown(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Sleeps, or returns early on shutdown.
    pub async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = self.until_shutdown() => {}
            _ = tokio::time::sleep(d) => {}
        }
    }

    /// The `systemctl status` line while nothing is held.
    pub fn idle_status(&self) -> String {
        let imds = self.cfg.imds_trigger.then_some("watching IMDS");
        let queue = self
            .cfg
            .queue_url
            .as_deref()
            .map(|q| format!("listening on {q}"));
        let parts: Vec<String> = imds.map(String::from).into_iter().chain(queue).collect();
        format!("idle, {}", parts.join(" and "))
    }
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
    let off_ec2 = "; off EC2, pass --instance-id and --region";
    if sdk.region().is_none() {
        let region = imds
            .fetch_region()
            .await
            .map_err(|e| format!("{e}{off_ec2}"))?;
        sdk = sdk
            .into_builder()
            .region(aws_config::Region::new(region))
            .build();
    }
    let instance_id = match &cfg.instance_id {
        Some(id) => id.clone(),
        None => imds
            .fetch_instance_id()
            .await
            .map_err(|e| format!("{e}{off_ec2}"))?,
    };
    // Every call is bounded: a hung connection must not eat the heartbeat window.
    let asg_conf = aws_sdk_autoscaling::config::Builder::from(&sdk)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .build(),
        )
        .build();
    let queue = cfg
        .queue_url
        .as_ref()
        .map(|url| queue::QueueClient::new(&sdk, url.clone()));
    let ctx = Arc::new(Ctx {
        lifecycle: Lifecycle::new(
            aws_sdk_autoscaling::Client::from_conf(asg_conf),
            cfg.hook_name.clone(),
        ),
        instance_id,
        queue,
        cfg,
        shutdown,
        message_held: AtomicBool::new(false),
        holding: AtomicBool::new(false),
    });
    tracing::info!(
        instance = %ctx.instance_id,
        region = %sdk.region().map(|r| r.to_string()).unwrap_or_default(),
        imds_trigger = ctx.cfg.imds_trigger,
        queue = %ctx.cfg.queue_url.as_deref().unwrap_or("none"),
        "drainhook agent started"
    );
    log_check(&ctx.cfg.shippers).await;
    sdnotify::ready(&ctx.idle_status());

    let (events_tx, events) = mpsc::channel(64);
    let (imds_ok_tx, imds_ok) = watch::channel(false);
    let mut triggers = vec![tokio::spawn(resume::run(ctx.clone(), events_tx.clone()))];
    if ctx.cfg.imds_trigger {
        triggers.push(tokio::spawn(imds_watch::run(
            ctx.clone(),
            events_tx.clone(),
            imds_ok_tx,
        )));
    }
    if ctx.queue.is_some() {
        triggers.push(tokio::spawn(queue::listen(
            ctx.clone(),
            events_tx.clone(),
            imds_ok,
        )));
    }
    drop(events_tx);
    coordinate(ctx, events).await;
    for t in triggers {
        let _ = t.await;
    }
    tracing::info!("agent stopped");
    Ok(ExitCode::SUCCESS)
}

/// Logs what a drain would watch and whether it can be exact (what `drainhook check` says),
/// so the journal tells at start-up, not at the first scale-in.
async fn log_check(spec: &crate::shipper::Spec) {
    let v = crate::check::check(spec).await;
    for n in &v.notes {
        tracing::info!("{n}");
    }
    if let Some(b) = &v.backlog {
        for s in &b.sources {
            tracing::info!("will drain {}", s.title());
        }
    }
    match v.exit_code() {
        0 => tracing::info!("check: {}", v.summary()),
        _ => tracing::warn!("check: {}", v.summary()),
    }
}

/// The hold that is running.
struct Running {
    action: LifecycleAction,
    /// The tokens of the messages that joined the hold (an action held from IMDS has none
    /// of its own): a later copy of one of them is the same action.
    tokens: Vec<String>,
    messages: keeper::Messages,
    adopted: Arc<Notify>,
    task: JoinHandle<hold::End>,
    /// The first tokenless trigger (IMDS, start-up, self-check) that joined the hold.
    tokenless: Option<(LifecycleAction, Source)>,
}

/// The last action this agent finished, so that its late messages are known for what
/// they are (and deleted) rather than taken for a new termination.
struct Finished {
    action: LifecycleAction,
    tokens: Vec<String>,
    at: SystemTime,
}

/// One hold at a time: starts it for the first trigger, hands later messages to it.
async fn coordinate(ctx: Arc<Ctx>, mut events: mpsc::Receiver<Event>) {
    let mut c = Coordinator {
        ctx,
        running: None,
        finished: None,
        spot: None,
    };
    loop {
        let hold_end = async {
            match c.running.as_mut() {
                Some(r) => Some((&mut r.task).await.ok()),
                None => std::future::pending().await,
            }
        };
        let step = tokio::select! {
            end = hold_end => Step::HoldEnded(end.flatten()),
            ev = events.recv() => Step::Event(ev),
        };
        match step {
            Step::HoldEnded(end) => {
                if let Some((action, source)) = c.hold_ended(end) {
                    c.terminating(action, source, None).await;
                }
            }
            Step::Event(None) => break,
            Step::Event(Some(Event::Terminating {
                action,
                source,
                message,
            })) => c.terminating(action, source, message).await,
            Step::Event(Some(Event::Spot { action, at, source })) => c.spot(action, at, source),
        }
    }
    // The triggers have stopped (shutdown): let the running hold release what it holds.
    if let Some(r) = c.running {
        let _ = r.task.await;
    }
    if let Some(t) = c.spot {
        let _ = t.await;
    }
}

enum Step {
    HoldEnded(Option<hold::End>),
    Event(Option<Event>),
}

struct Coordinator {
    ctx: Arc<Ctx>,
    running: Option<Running>,
    finished: Option<Finished>,
    spot: Option<JoinHandle<()>>,
}

impl Coordinator {
    /// Returns a tokenless trigger to look at again: one that joined a hold whose action
    /// (a message's, by token) turned out gone at its first heartbeat. That message was a
    /// stale copy; the instance's live action may be another, and no trigger says it twice.
    fn hold_ended(&mut self, end: Option<hold::End>) -> Option<(LifecycleAction, Source)> {
        let r = self.running.take()?;
        self.ctx.message_held.store(false, Ordering::Relaxed);
        self.ctx.holding.store(false, Ordering::Relaxed);
        sdnotify::status(&self.ctx.idle_status());
        let end = end.filter(|e| e.over)?;
        self.finished = Some(Finished {
            action: r.action.clone(),
            tokens: r.tokens,
            at: end.finished_at,
        });
        if end.gone_at_start && r.action.token.is_some() {
            return r.tokenless;
        }
        None
    }

    async fn terminating(
        &mut self,
        action: LifecycleAction,
        source: Source,
        message: Option<HeldMessage>,
    ) {
        if action.instance_id != self.ctx.instance_id {
            return;
        }
        if self.ctx.stopping() {
            // A notice that arrives as the agent stops: its action is not finished here, so
            // the message goes back for a restarted agent, and no new hold starts.
            if let Some(m) = &message {
                hold::release_message(&self.ctx, m).await;
            }
            return;
        }
        if let Some(r) = self.running.as_mut() {
            if message.is_some() && r.action.group == action.group && r.action.hook != action.hook {
                // Another termination hook's notice (the listener filters them; this is the
                // hook renamed while it waited): never part of this hold, never deleted by it.
                tracing::warn!(
                    hook = %action.hook,
                    "a notice for hook {} while holding the action of hook {}: left alone",
                    action.hook,
                    r.action.hook
                );
                return;
            }
            if message.is_some() {
                self.ctx.message_held.store(true, Ordering::Relaxed);
            }
            if message.is_none() && r.tokenless.is_none() {
                r.tokenless = Some((action.clone(), source));
            }
            r.tokens.extend(action.token);
            join_running(r, source, message);
            return;
        }
        if let Some(f) = &self.finished {
            match &message {
                Some(m) if belongs_to(f, &action, m) => {
                    tracing::info!(
                        message_id = %m.id, instance = %action.instance_id,
                        "the message belongs to the lifecycle action this agent already finished: deleted"
                    );
                    if let Some(q) = &self.ctx.queue {
                        q.delete(&m.receipt).await;
                    }
                    return;
                }
                _ => {}
            }
        }
        // A notice that is not provably the finished action's, arriving soon after it: if its
        // action turns out to be gone, it was most likely a late copy, not a lost drain.
        let after_own = self.finished.as_ref().is_some_and(|f| {
            f.action.instance_id == action.instance_id
                && SystemTime::now()
                    .duration_since(f.at)
                    .is_ok_and(|d| d < LATE_COPY_WINDOW)
        });
        if after_own && action.token.is_none() {
            // Auto Scaling's state may lag this agent's own complete by a moment, or the
            // hold that just ended was started by a stale copy of a notice while this is a
            // new action: never dropped, the hold's first heartbeat (by instance id) asks.
            tracing::info!(
                instance = %action.instance_id, hook = %action.hook, group = %action.group,
                "this instance is terminating (noticed by {source}) soon after a hold that ended: holding it if Auto Scaling says its action is alive"
            );
        } else {
            tracing::info!(
                instance = %action.instance_id, hook = %action.hook, group = %action.group,
                "this instance is terminating (noticed by {source}): holding it"
            );
        }
        self.ctx.holding.store(true, Ordering::Relaxed);
        let messages = keeper::Messages::default();
        if let Some(m) = message {
            keeper::add_message(&messages, m);
            self.ctx.message_held.store(true, Ordering::Relaxed);
        }
        let adopted = Arc::new(Notify::new());
        let task = tokio::spawn(hold::run(
            self.ctx.clone(),
            action.clone(),
            source,
            after_own,
            messages.clone(),
            adopted.clone(),
        ));
        self.running = Some(Running {
            tokens: action.token.iter().cloned().collect(),
            action,
            messages,
            adopted,
            task,
            tokenless: None,
        });
    }

    fn spot(&mut self, action: String, at: Option<SystemTime>, source: Source) {
        if self.spot.as_ref().is_some_and(|t| !t.is_finished()) {
            tracing::debug!("spot notice from {source}: a spot drain already runs");
            return;
        }
        self.spot = Some(tokio::spawn(spot::run(
            self.ctx.clone(),
            action,
            at,
            source,
        )));
    }
}

fn join_running(r: &Running, source: Source, message: Option<HeldMessage>) {
    match message {
        Some(m) => {
            tracing::info!(
                message_id = %m.id,
                "the {source} belongs to the lifecycle action already held: kept until the action is finished, then deleted"
            );
            keeper::add_message(&r.messages, m);
            r.adopted.notify_one();
        }
        None => tracing::debug!("{source}: the action is already held"),
    }
}

/// How long after finishing an action a notice whose action is gone counts as a late copy.
const LATE_COPY_WINDOW: Duration = Duration::from_secs(600);

/// Whether a message is about the action this agent finished: a token seen during that
/// hold, or sent before the action was finished.
fn belongs_to(f: &Finished, action: &LifecycleAction, m: &HeldMessage) -> bool {
    if f.action.instance_id != action.instance_id {
        return false;
    }
    match &action.token {
        Some(t) if f.tokens.contains(t) => true,
        _ => m.sent_at.is_some_and(|sent| sent <= f.at),
    }
}

/// `1h` style, for log lines.
pub(crate) fn fmt_d(d: Duration) -> String {
    duration::format(d)
}
