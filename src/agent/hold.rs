//! Hold → drain → complete: the one path every trigger's action runs through.
//!
//! The first heartbeat says whether the action is still alive. Then the [`keeper`] keeps it
//! alive while the pre-drain commands run and the drain waits for every log shipper; the
//! drain report is written and, still held, the agent waits for a shipper to deliver it;
//! the action is completed with CONTINUE (drained) or `--on-timeout`, retried until the
//! action's own deadline; and only then are its messages deleted.

use super::keeper::{self, Messages, Renewer};
use super::retry;
use super::{fmt_d, Ctx, HeldMessage, Source};
use crate::backlog::{human_bytes, plural, Backlog};
use crate::drain::{self, DrainOptions, Ended};
use crate::exit;
use crate::lifecycle::{CallError, HookTiming};
use crate::message::LifecycleAction;
use crate::report::{self, Drained, Ending, Report};
use crate::sdnotify;
use backon::{BackoffBuilder, ExponentialBuilder};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// How a hold ended, for the coordinator.
pub(crate) struct End {
    pub finished_at: SystemTime,
    /// The action is over (completed, or found gone). Not so when the agent was stopped in
    /// the middle: a late copy of its notice is then still a live action's, never deleted.
    pub over: bool,
    /// The action was already gone at the first heartbeat: never held.
    pub gone_at_start: bool,
}

/// `messages`: the action's messages so far; the coordinator adds those that arrive later
/// and wakes `adopted`. `after_own`: this agent finished an action for the instance moments
/// ago (a gone action then means a late copy of its notice, not a lost drain).
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    action: LifecycleAction,
    source: Source,
    after_own: bool,
    messages: Messages,
    adopted: Arc<Notify>,
) -> End {
    let gone_at_start = std::sync::atomic::AtomicBool::new(false);
    let over = hold(
        &ctx,
        &action,
        source,
        after_own,
        &messages,
        adopted,
        &gone_at_start,
    )
    .await;
    if over {
        forget_action_start(&ctx, &action.instance_id);
    }
    End {
        finished_at: SystemTime::now(),
        over,
        gone_at_start: gone_at_start.into_inner(),
    }
}

/// One hold of one action: what its steps share.
struct Hold<'a> {
    ctx: &'a Arc<Ctx>,
    action: &'a LifecycleAction,
    source: Source,
    messages: &'a Messages,
    started: Instant,
    started_at: SystemTime,
    /// How long the action had already lived when this hold began (a restart, a late notice).
    already: Duration,
    /// The hold's budget: --max-hold and the hook's global timeout, from the action's start.
    budget: Duration,
    hold_until: Instant,
}

/// What the drain's end asks of the hold.
enum Outcome {
    /// The agent is stopping: the action is left alive for a restarted agent.
    Release(String),
    /// The action ended elsewhere mid-drain.
    Lost(String),
    /// Complete the action with this result.
    Complete(Ending, &'static str),
}

/// The steps, in order: the first heartbeat (is the action alive?), the keeper, the hook's
/// timing, the pre-drain commands, the drain, the report (and its delivery), the complete.
/// True when the action is over.
async fn hold(
    ctx: &Arc<Ctx>,
    action: &LifecycleAction,
    source: Source,
    after_own: bool,
    messages: &Messages,
    adopted: Arc<Notify>,
    gone_at_start: &std::sync::atomic::AtomicBool,
) -> bool {
    // The hook is read anew at every hold (by the keeper: its timing now, not as cached when
    // the agent started). Until it answers, the hold assumes the shortest HeartbeatTimeout
    // AWS allows: heartbeats then come often enough whatever the real timeout is.
    let timing = HookTiming::assumed();
    let mut h = Hold::begin(ctx, action, source, messages, &timing);
    let Some(heartbeat) = h.first_heartbeat(&timing, after_own, gone_at_start).await else {
        return true;
    };
    sdnotify::status(&format!("holding {} for the drain", action.instance_id));

    let (gone_tx, gone) = watch::channel(false);
    let keeper = keeper::spawn(
        ctx.clone(),
        action.clone(),
        heartbeat,
        timing,
        messages.clone(),
        adopted,
        gone_tx,
    );
    let sources = open_sources(ctx).await;
    h.read_timing(&keeper).await;
    h.pre_drain(&gone).await;
    let run = h.drain(&gone, sources).await;
    let (ending, result) = match h.outcome(&run) {
        Outcome::Release(pending) => {
            keeper.task.abort();
            h.release(&run, &pending).await;
            return false;
        }
        Outcome::Lost(pending) => {
            keeper.task.abort();
            h.lost(&run, &pending).await;
            return true;
        }
        Outcome::Complete(ending, result) => (ending, result),
    };
    h.report_delivered(&run, ending, result, &gone).await;
    // Heartbeats stop with the work; the action lives until the last one's timeout, and
    // the complete is retried until then.
    keeper.task.abort();
    let last_beat = *keeper.last_beat.borrow();
    let action_deadline = last_beat + keeper.timing.borrow().heartbeat_timeout;
    complete(ctx, action, result, h.started, action_deadline).await;
    finish_messages(ctx, messages).await;
    true
}

impl<'a> Hold<'a> {
    fn begin(
        ctx: &'a Arc<Ctx>,
        action: &'a LifecycleAction,
        source: Source,
        messages: &'a Messages,
        timing: &HookTiming,
    ) -> Self {
        let started = Instant::now();
        let started_at = SystemTime::now();
        // --max-hold and the hook's global timeout count from the action's start when it can
        // be known (its notice's SentTimestamp, or the start this agent recorded before a
        // restart).
        let action_began = action_start(ctx, &action.instance_id, messages, started_at);
        let mut h = Hold {
            ctx,
            action,
            source,
            messages,
            started,
            started_at,
            already: started_at.duration_since(action_began).unwrap_or_default(),
            budget: Duration::ZERO,
            hold_until: started,
        };
        h.retime(timing);
        h
    }

    fn retime(&mut self, timing: &HookTiming) {
        self.budget = self
            .ctx
            .cfg
            .max_hold
            .min(timing.global_timeout)
            .saturating_sub(self.already);
        self.hold_until = self.started + self.budget;
    }

    /// The first heartbeat also tells whether the action is still alive: `None` when it is
    /// not (its messages are then done with). A failure is retried by the keeper.
    async fn first_heartbeat(
        &self,
        timing: &HookTiming,
        after_own: bool,
        gone_at_start: &std::sync::atomic::AtomicBool,
    ) -> Option<Renewer> {
        let (ctx, action) = (self.ctx, self.action);
        let interval = keeper::interval(ctx, timing);
        let mut heartbeat = Renewer::new(interval, timing.heartbeat_timeout, self.started);
        let first = retry::bounded(
            "RecordLifecycleActionHeartbeat",
            Duration::from_secs(10),
            ctx.lifecycle.heartbeat(action),
        )
        .await;
        match first {
            Err(CallError::Gone(m)) => {
                gone_at_start.store(true, std::sync::atomic::Ordering::Relaxed);
                if after_own {
                    tracing::info!(
                        instance = %action.instance_id,
                        "no active lifecycle action ({m}): a late copy of the notice of the action this agent just completed; deleted"
                    );
                } else {
                    tracing::warn!(
                        instance = %action.instance_id,
                        "lifecycle action already completed or expired before this agent could hold it ({m}): instance {} lost its drain unless another agent completed it",
                        action.instance_id
                    );
                }
                finish_messages(ctx, self.messages).await;
                return None;
            }
            Err(e) => {
                let r = heartbeat.failed(Instant::now());
                tracing::warn!(
                    "first heartbeat failed: {e}; retrying in {} ({} left before the hook expires at the latest)",
                    fmt_d(r.delay),
                    fmt_d(r.left)
                );
            }
            Ok(()) => {
                heartbeat.succeeded(Instant::now());
                tracing::info!(
                    "holding instance {} (first heartbeat sent; the hook's timing is read now, heartbeat every {} meanwhile; hold at most {}{}; noticed by {})",
                    action.instance_id,
                    fmt_d(interval),
                    fmt_d(self.budget),
                    if self.already >= Duration::from_secs(1) {
                        format!(" more, the action began {} ago", fmt_d(self.already))
                    } else {
                        String::new()
                    },
                    self.source
                );
            }
        }
        Some(heartbeat)
    }

    /// The hook's read is normally one quick call: the drain's budget waits for it a moment
    /// (its global timeout may be shorter than --max-hold). If it fails, the keeper goes on
    /// trying, and the budget is --max-hold's.
    async fn read_timing(&mut self, keeper: &keeper::KeeperHandle) {
        let mut read = keeper.timing.clone();
        if tokio::time::timeout(Duration::from_secs(3), read.changed())
            .await
            .is_ok_and(|r| r.is_ok())
        {
            let timing = *read.borrow();
            self.retime(&timing);
            let interval = keeper::interval(self.ctx, &timing);
            if interval >= timing.heartbeat_timeout {
                tracing::warn!(
                    "heartbeat interval {} is not shorter than the hook's HeartbeatTimeout {}: the hook may expire first",
                    fmt_d(interval),
                    fmt_d(timing.heartbeat_timeout)
                );
            }
        }
    }

    /// The configured pre-drain commands, in order, each bounded; skipped once the agent
    /// stops or the action is gone.
    async fn pre_drain(&self, gone: &watch::Receiver<bool>) {
        for cmd in &self.ctx.cfg.pre_drain {
            if self.ctx.stopping() || *gone.borrow() {
                break;
            }
            run_pre_drain(cmd, self.ctx.cfg.pre_drain_timeout).await;
        }
    }

    /// Waits for every shipper, within --drain-timeout and what is left of the hold; stopped
    /// early by the agent's shutdown or the action's end.
    async fn drain(
        &self,
        gone: &watch::Receiver<bool>,
        sources: Option<drain::Sources>,
    ) -> DrainRun {
        let ctx = self.ctx;
        let left = self.hold_until.saturating_duration_since(Instant::now());
        let timeout = ctx.cfg.drain_timeout.map_or(left, |t| t.min(left));
        let stop = || {
            let mut gone = gone.clone();
            async move {
                tokio::select! {
                    _ = ctx.until_shutdown() => Stop::Shutdown,
                    _ = gone.wait_for(|g| *g) => Stop::Gone,
                }
            }
        };
        drain_for(
            ctx,
            &self.action.instance_id,
            Instant::now() + timeout,
            stop,
            sources,
        )
        .await
    }

    fn outcome(&self, run: &DrainRun) -> Outcome {
        match &run.end {
            DrainEnd::Stopped(Stop::Shutdown, pending) => Outcome::Release(pending.clone()),
            DrainEnd::Stopped(Stop::Gone, pending) => Outcome::Lost(pending.clone()),
            DrainEnd::Drained => {
                drain::write_drained_marker(&self.ctx.cfg.drained_marker);
                Outcome::Complete(Ending::Drained, "CONTINUE")
            }
            DrainEnd::TimedOut(pending) => {
                let result = self.ctx.cfg.on_timeout.result();
                tracing::warn!(
                    "drain did not finish in time ({pending} still pending): completing with {result}"
                );
                Outcome::Complete(Ending::DrainTimeout, result)
            }
        }
    }

    /// The drain report of this hold, from the drain's first and last look.
    fn report(&self, run: &DrainRun, ending: Ending, result: Option<&str>) -> Report {
        let mut r = Report::new(
            ending,
            self.source.report_name(),
            self.started_at,
            SystemTime::now(),
            Drained {
                first: run.first.as_ref(),
                last: run.last.as_ref(),
            },
        );
        r.instance = Some(self.action.instance_id.clone());
        r.group = Some(self.action.group.clone());
        r.hook = Some(self.action.hook.clone());
        r.result = result.map(String::from);
        r
    }

    /// Stopping mid-drain: the action is not completed, its messages are given back.
    async fn release(&self, run: &DrainRun, pending: &str) {
        tracing::warn!(
            "stopping mid-drain with {pending} still pending: the action is not completed; a restarted agent resumes the hold, otherwise Auto Scaling goes on with the hook's DefaultResult at the heartbeat timeout"
        );
        report::write(
            &self.ctx.cfg.report_file,
            &self.report(run, Ending::Stopped, None),
        );
        release_messages(self.ctx, self.messages).await;
    }

    /// The action ended elsewhere before the drain did: what stayed unshipped is lost.
    async fn lost(&self, run: &DrainRun, pending: &str) {
        tracing::error!(
            instance = %self.action.instance_id,
            "LOST: the lifecycle action of instance {} ended before the drain finished (expired or completed elsewhere); {pending} were still unshipped and are lost with the instance",
            self.action.instance_id
        );
        report::write(
            &self.ctx.cfg.report_file,
            &self.report(run, Ending::ActionLost, None),
        );
        finish_messages(self.ctx, self.messages).await;
    }

    /// Writes the report line and, still held (the keeper runs), waits for a shipper to
    /// deliver it, bounded by REPORT_WAIT and what is left of the hold.
    async fn report_delivered(
        &self,
        run: &DrainRun,
        ending: Ending,
        result: &str,
        gone: &watch::Receiver<bool>,
    ) {
        let ctx = self.ctx;
        let existed = ctx.cfg.report_file.exists();
        if !report::write(
            &ctx.cfg.report_file,
            &self.report(run, ending, Some(result)),
        ) {
            return;
        }
        sdnotify::status(&format!(
            "holding {}: waiting for the drain report's delivery",
            self.action.instance_id
        ));
        let until = (Instant::now() + REPORT_WAIT).min(self.hold_until.max(Instant::now()));
        let stop = async {
            let mut gone = gone.clone();
            tokio::select! {
                _ = ctx.until_shutdown() => {}
                _ = gone.wait_for(|g| *g) => {}
            }
        };
        let d = report::wait_delivered(
            &ctx.cfg.shippers,
            &ctx.cfg.report_file,
            existed,
            until,
            stop,
        )
        .await;
        report::log_delivery(&ctx.cfg.report_file, &d);
    }
}

/// Where the agent records when it began holding an action, beside the drained marker (in
/// /run/drainhook by default): a restarted agent's `--max-hold` counts from there, so a crash
/// loop cannot hold the instance up to the hook's global timeout.
fn action_start_record(ctx: &Ctx, instance: &str) -> Option<std::path::PathBuf> {
    let dir = ctx.cfg.drained_marker.parent()?;
    let safe: String = instance
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    Some(dir.join(format!("hold-{safe}")))
}

/// A recorded start older than this is another action's (the longest an action can live).
const ACTION_LIFE_MAX: Duration = Duration::from_secs(48 * 3600);

/// When the action began, as best known: the earliest of its messages' `SentTimestamp`, the
/// start recorded by an earlier run of the agent, and now (recorded if nothing was).
fn action_start(ctx: &Ctx, instance: &str, messages: &Messages, now: SystemTime) -> SystemTime {
    let plausible =
        |t: SystemTime| t <= now && now.duration_since(t).is_ok_and(|d| d < ACTION_LIFE_MAX);
    let sent = keeper::earliest_sent(messages).filter(|t| plausible(*t));
    let path = action_start_record(ctx, instance);
    let recorded = path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs > 0.0)
        .and_then(|secs| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs_f64(secs)))
        .filter(|t| plausible(*t));
    if recorded.is_none() {
        if let Some(p) = &path {
            let secs = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            if let Err(e) = std::fs::write(p, format!("{secs:.3}\n")) {
                tracing::debug!("cannot record the hold's start in {}: {e}", p.display());
            }
        }
    }
    [sent, recorded]
        .into_iter()
        .flatten()
        .fold(now, |a, b| a.min(b))
}

fn forget_action_start(ctx: &Ctx, instance: &str) {
    if let Some(p) = action_start_record(ctx, instance) {
        let _ = std::fs::remove_file(p);
    }
}

/// Why a drain was stopped before it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Shutdown,
    /// The lifecycle action ended elsewhere.
    Gone,
}

/// How long the hold waits, at most, for the drain report's own delivery (a shipper's scan,
/// its registry flush, the output's round trip), and never past the hold's budget.
const REPORT_WAIT: Duration = Duration::from_secs(60);

/// A drain's end, with the backlogs of its first and last look (for the drain report;
/// missing when the shippers' state could never be read).
pub(crate) struct DrainRun {
    pub end: DrainEnd,
    pub first: Option<Backlog>,
    pub last: Option<Backlog>,
}

/// How a drain ended, for the hold and the spot drain.
pub(crate) enum DrainEnd {
    Drained,
    /// Pending bytes, said for a human.
    TimedOut(String),
    Stopped(Stop, String),
}

/// Finds the shippers and looks at them once, when a hold (or a Spot drain) begins and
/// before its pre-drain commands run: drops are counted, and the report's deliveries
/// measured, from here. `None` when no shipper can be found or read yet: the drain then tries
/// again and counts from its own first look that succeeds.
pub(crate) async fn open_sources(ctx: &Ctx) -> Option<drain::Sources> {
    let mut sources = match drain::Sources::open(&ctx.cfg.shippers) {
        Ok(s) => s,
        Err(e) => {
            // The drain says it, and retries.
            tracing::debug!("shippers not opened before the pre-drain commands: {e}");
            return None;
        }
    };
    if let Err(e) = sources.look().await {
        tracing::debug!("shippers not read before the pre-drain commands: {e}");
    }
    Some(sources)
}

/// Runs the drain until `until`, or until `stop` resolves, over `sources` if they were
/// opened already (else found now). An unreadable registry is never "drained": the error is
/// logged once and the read retried every 5 s, on the same sources, so drops are still
/// counted from their first look.
pub(crate) async fn drain_for<F, Fut>(
    ctx: &Ctx,
    instance: &str,
    until: Instant,
    stop: F,
    mut sources: Option<drain::Sources>,
) -> DrainRun
where
    F: Fn() -> Fut,
    Fut: Future<Output = Stop>,
{
    let opts = DrainOptions {
        timeout: until.saturating_duration_since(Instant::now()),
        settle: ctx.cfg.settle,
        // The agent itself always waits the settle period out.
        drained_marker: None,
        ..DrainOptions::new(ctx.cfg.shippers.clone())
    };
    tracing::info!(
        instance = %instance,
        "draining: waiting for every log shipper to deliver everything (timeout {}, settle {})",
        fmt_d(opts.timeout),
        fmt_d(ctx.cfg.settle)
    );
    let mut reported_error = None;
    loop {
        let mut why = None;
        let opts = DrainOptions {
            timeout: until.saturating_duration_since(Instant::now()),
            ..opts.clone()
        };
        let progress = |p: &drain::Progress<'_>| {
            let s = p.summary();
            tracing::info!("drain progress: {s}");
            sdnotify::status(&format!("draining: {s}"));
        };
        let opened = match sources.take() {
            Some(s) => Ok(s),
            None => drain::Sources::open(&opts.spec),
        };
        let outcome = match opened {
            Ok(s) => {
                let stopper = async {
                    why = Some(stop().await);
                };
                drain::drain_sources(&opts, sources.insert(s), stopper, progress).await
            }
            Err(e) => Err(e),
        };
        let o = match outcome {
            Ok(o) => o,
            Err(e) => {
                // Filebeat may be starting, or a human may fix it in time.
                let msg = e.to_string();
                if reported_error.as_deref() != Some(msg.as_str()) {
                    tracing::error!("drain cannot read the shippers' state, retrying every 5s until the drain times out: {msg}");
                    sdnotify::status(&format!("draining: state unreadable: {msg}"));
                }
                reported_error = Some(msg);
                let left = until.saturating_duration_since(Instant::now());
                let first = sources.as_ref().and_then(|s| s.first().cloned());
                let unknown = |end| DrainRun {
                    end,
                    first,
                    last: None,
                };
                if left.is_zero() {
                    return unknown(DrainEnd::TimedOut(
                        "an unknown amount (the shippers' state is unreadable)".into(),
                    ));
                }
                tokio::select! {
                    s = stop() => return unknown(DrainEnd::Stopped(s, "an unknown amount".into())),
                    _ = tokio::time::sleep(left.min(Duration::from_secs(5))) => {}
                }
                continue;
            }
        };
        let end = match o.ended {
            Ended::Drained => {
                if o.backlog.inexact().is_empty() {
                    tracing::info!(
                        "drained: {} delivered to their end after {}",
                        plural(o.backlog.files().count(), "file"),
                        fmt_d(o.waited)
                    );
                } else {
                    tracing::warn!(
                        "drained as far as can be judged: {} read to their end and quiet after {}; not exact: {}",
                        plural(o.backlog.files().count(), "file"),
                        fmt_d(o.waited),
                        o.backlog.inexact().join("; ")
                    );
                }
                if o.backlog.lost_bytes() > 0 {
                    tracing::error!(
                        "LOST during the drain: {} dropped by the shipper ({})",
                        human_bytes(o.backlog.lost_bytes()),
                        exit::describe_lost(&o.backlog)
                    );
                }
                DrainEnd::Drained
            }
            Ended::TimedOut => DrainEnd::TimedOut(pending(&o.backlog)),
            Ended::Interrupted => {
                DrainEnd::Stopped(why.unwrap_or(Stop::Shutdown), pending(&o.backlog))
            }
        };
        return DrainRun {
            end,
            first: Some(o.first),
            last: Some(o.backlog),
        };
    }
}

fn pending(b: &Backlog) -> String {
    if b.pending_bytes() == 0 {
        return "nothing".into();
    }
    format!(
        "{} ({})",
        human_bytes(b.pending_bytes()),
        exit::describe_waiting(b)
    )
}

/// CompleteLifecycleAction, retried with backoff until it lands, the action is gone, or
/// its own deadline (the last heartbeat plus HeartbeatTimeout) has passed.
async fn complete(
    ctx: &Ctx,
    action: &LifecycleAction,
    result: &str,
    started: Instant,
    deadline: Instant,
) {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        match ctx.lifecycle.complete(action, result).await {
            Ok(()) => {
                tracing::info!(
                    instance = %action.instance_id,
                    "completed lifecycle action with {result} after holding {}",
                    fmt_d(started.elapsed())
                );
                return;
            }
            Err(CallError::Gone(m)) => {
                tracing::warn!(
                    "completing: the lifecycle action is already completed or expired ({m}): counts as done"
                );
                return;
            }
            Err(e) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let wait = delays
                    .next()
                    .unwrap_or(Duration::from_secs(30))
                    .min(left / 2);
                if left.is_zero() || wait.is_zero() {
                    tracing::error!(
                        "giving up completing the lifecycle action: its deadline has passed, the hook's DefaultResult ends it: {e}"
                    );
                    return;
                }
                tracing::warn!(
                    "CompleteLifecycleAction failed, retrying in {} ({} left before the action expires): {e}",
                    fmt_d(wait),
                    fmt_d(left)
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Deletes the action's messages (done with it), including those adopted meanwhile.
async fn finish_messages(ctx: &Ctx, messages: &Messages) {
    let Some(q) = &ctx.queue else {
        return;
    };
    for m in keeper::take_messages(messages) {
        q.delete(&m.receipt).await;
        tracing::debug!(message_id = %m.id, "message of the finished action deleted");
    }
}

/// Gives the action's messages back at once (shutdown mid-hold: a restarted agent resumes).
async fn release_messages(ctx: &Ctx, messages: &Messages) {
    for m in keeper::take_messages(messages) {
        release_message(ctx, &m).await;
    }
}

/// Makes one of this instance's messages visible again (visibility 0) for a restarted agent.
pub(crate) async fn release_message(ctx: &Ctx, m: &HeldMessage) {
    let Some(q) = &ctx.queue else {
        return;
    };
    if let Err(e) = q.change_visibility(&m.receipt, 0).await {
        tracing::warn!(message_id = %m.id, "releasing the message failed (it returns when its visibility ends): {e}");
    } else {
        tracing::info!(message_id = %m.id, "message released for a restarted agent");
    }
}

/// Runs one pre-drain command, bounded; its failure is logged, not fatal: the drain runs anyway.
/// A failure that looks like a permission error says where to allow the command more: the
/// unit's sandbox allows the agent what it needs itself, which may be less than the command.
pub(crate) async fn run_pre_drain(cmd: &str, bound: Duration) {
    tracing::info!("pre-drain: running {cmd:?} (at most {})", fmt_d(bound));
    match pre_drain(cmd, bound).await {
        PreDrain::Done { said } => {
            if !said.is_empty() {
                tracing::info!("pre-drain: {cmd:?} said: {said}");
            }
            tracing::info!("pre-drain: {cmd:?} done");
        }
        PreDrain::Failed { status, said } if permission_error(status.code(), &said) => {
            tracing::warn!(
                "pre-drain: {cmd:?} failed with a permission error ({status}: {said}): see the drop-in in the README (/etc/systemd/system/drainhook.service.d/) to allow it what the agent's sandbox does not; draining anyway"
            )
        }
        PreDrain::Failed { status, said } => tracing::warn!(
            "pre-drain: {cmd:?} failed ({status}){}{said}; draining anyway",
            if said.is_empty() { "" } else { ": " }
        ),
        PreDrain::CannotRun(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!(
                "pre-drain: cannot run {cmd:?}: {e}: a permission error: see the drop-in in the README (/etc/systemd/system/drainhook.service.d/); draining anyway"
            )
        }
        PreDrain::CannotRun(e) => {
            tracing::warn!("pre-drain: cannot run {cmd:?}: {e}; draining anyway")
        }
        PreDrain::TimedOut => tracing::warn!(
            "pre-drain: {cmd:?} still running after {}; killed, draining anyway",
            fmt_d(bound)
        ),
    }
}

/// How a pre-drain command ended; `said` is the end of its stderr, one line.
#[derive(Debug)]
enum PreDrain {
    Done {
        said: String,
    },
    Failed {
        status: std::process::ExitStatus,
        said: String,
    },
    CannotRun(std::io::Error),
    TimedOut,
}

/// How much of a command's stderr is kept for the log (its end).
const SAID_MAX: usize = 2000;

async fn pre_drain(cmd: &str, bound: Duration) -> PreDrain {
    use tokio::io::AsyncReadExt;
    let mut child = match tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return PreDrain::CannotRun(e),
    };
    let mut pipe = child.stderr.take();
    let mut said = Vec::new();
    let mut chunk = [0u8; 1024];
    let waited = tokio::time::timeout(bound, async {
        loop {
            tokio::select! {
                status = child.wait() => break status,
                n = read_some(&mut pipe, &mut chunk) => match n {
                    Some(n) => keep_tail(&mut said, &chunk[..n]),
                    None => pipe = None,
                },
            }
        }
    })
    .await;
    // What it wrote just before it exited; a process it left behind may hold the pipe open,
    // so this is bounded too.
    if let Some(p) = pipe.as_mut() {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(100), p.read_to_end(&mut rest)).await;
        keep_tail(&mut said, &rest);
    }
    let said = String::from_utf8_lossy(&said)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    match waited {
        Ok(Ok(status)) if status.success() => PreDrain::Done { said },
        Ok(Ok(status)) => PreDrain::Failed { status, said },
        Ok(Err(e)) => PreDrain::CannotRun(e),
        Err(_) => PreDrain::TimedOut,
    }
}

/// One read from the command's stderr; `None` at its end (and pending for ever after).
async fn read_some(
    pipe: &mut Option<tokio::process::ChildStderr>,
    chunk: &mut [u8],
) -> Option<usize> {
    use tokio::io::AsyncReadExt;
    match pipe {
        Some(p) => match p.read(chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

fn keep_tail(said: &mut Vec<u8>, more: &[u8]) {
    said.extend_from_slice(more);
    if said.len() > SAID_MAX {
        said.drain(..said.len() - SAID_MAX);
    }
}

/// Whether a failed command's exit code or stderr says it was not allowed: `sh`'s 126 (found,
/// not executable), EACCES, EPERM (a capability or a system call the sandbox withholds),
/// EROFS (`ProtectSystem=strict`), or systemd's and polkit's refusals.
fn permission_error(code: Option<i32>, said: &str) -> bool {
    let said = said.to_ascii_lowercase();
    code == Some(126)
        || [
            "permission denied",
            "operation not permitted",
            "read-only file system",
            "access denied",
            "interactive authentication required",
        ]
        .iter()
        .any(|p| said.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn a_command_refused_by_the_sandbox_is_a_permission_error() {
        // What `touch` says under ProtectSystem=strict, and systemctl without CAP_SYS_ADMIN.
        for cmd in [
            "echo \"touch: cannot touch '/var/app/down': Read-only file system\" >&2; exit 1",
            "echo 'Failed to stop myapp.service: Access denied' >&2; exit 1",
            "echo 'kill: (1234) - Operation not permitted' >&2; exit 1",
        ] {
            let PreDrain::Failed { status, said } = pre_drain(cmd, BOUND).await else {
                panic!("{cmd}: not a failure");
            };
            assert!(permission_error(status.code(), &said), "{cmd}: {said}");
        }
        // A script that is not executable: sh says 126.
        let t = tempfile::tempdir().unwrap();
        let script = t.path().join("stop-app");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let PreDrain::Failed { status, said } = pre_drain(script.to_str().unwrap(), BOUND).await
        else {
            panic!("a script without x bit ran");
        };
        assert_eq!(status.code(), Some(126), "{said}");
        assert!(permission_error(status.code(), &said), "{said}");
    }

    #[tokio::test]
    async fn other_failures_and_successes_are_not() {
        let PreDrain::Failed { status, said } =
            pre_drain("echo 'myapp: not running' >&2; exit 3", BOUND).await
        else {
            panic!("not a failure");
        };
        assert_eq!(said, "myapp: not running");
        assert!(!permission_error(status.code(), &said));
        let PreDrain::Done { said } = pre_drain("echo stopped >&2; echo out", BOUND).await else {
            panic!("not done");
        };
        assert_eq!(said, "stopped");
    }

    #[tokio::test]
    async fn a_process_left_behind_holding_stderr_does_not_hold_the_drain() {
        // Its exit is what counts, as before stderr was read: not the pipe's end.
        let out = pre_drain("sleep 10 & echo started >&2", Duration::from_secs(5)).await;
        assert!(
            matches!(&out, PreDrain::Done { said } if said == "started"),
            "{out:?}"
        );
        assert!(matches!(
            pre_drain("sleep 30", Duration::from_millis(300)).await,
            PreDrain::TimedOut
        ));
    }
}
