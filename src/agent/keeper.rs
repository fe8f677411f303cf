//! The keeper keeps a held action alive: a heartbeat every HeartbeatTimeout / 2, and the
//! action's messages invisible in short extensions.
//!
//! A heartbeat resets the hook's timer to *now + HeartbeatTimeout*, so the real deadline is
//! the last *successful* heartbeat plus the timeout. When one fails (after the SDK's own
//! retries), waiting for the next scheduled beat would land at or past that deadline: one
//! brief outage would end the hold. So a failed renewal is retried with backoff inside the
//! window that is left ([`Renewer`]), and the log says how close it came. A message's
//! visibility gets the same care: if it lapsed, other agents would see it again.

use super::retry::{bounded, Quiet, Say};
use super::{fmt_d, Ctx, HeldMessage};
use crate::lifecycle::{CallError, HookTiming};
use crate::message::LifecycleAction;
use backon::{BackoffBuilder, ExponentialBuilder};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The schedule of one renewal (heartbeat or visibility): every `period` while it works;
/// after a failure, again soon, with backoff, always leaving room for several tries before
/// `last_ok + window` (minus a margin) passes.
pub(crate) struct Renewer {
    period: Duration,
    window: Duration,
    last_ok: Instant,
    next: Instant,
    failures: u32,
    backoff: Box<dyn Iterator<Item = Duration> + Send + Sync>,
    /// Once the window has closed, nothing is urgent any more: retries wait seconds, and
    /// more each time (a renewal failing for a whole hold must not add load to an API that
    /// the whole account shares).
    late: Box<dyn Iterator<Item = Duration> + Send + Sync>,
}

/// Retries once the window has closed: 2 s, growing to 30 s, jittered.
const LATE_MIN: Duration = Duration::from_secs(2);
const LATE_MAX: Duration = Duration::from_secs(30);

/// What a failed renewal means for the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retry {
    /// Time until the next try.
    pub delay: Duration,
    /// Time left before the window closes (zero when it has).
    pub left: Duration,
}

impl Renewer {
    /// `last_ok`: when the thing was last renewed (the window runs from there).
    pub fn new(period: Duration, window: Duration, last_ok: Instant) -> Self {
        Renewer {
            period,
            window,
            last_ok,
            next: last_ok + period,
            failures: 0,
            backoff: Box::new(fresh_backoff()),
            late: Box::new(super::retry::backoff(LATE_MIN, LATE_MAX)),
        }
    }

    /// New timing (the hook was read): the next renewal comes no later than the new period
    /// after the last one that landed.
    pub fn retime(&mut self, period: Duration, window: Duration) {
        self.period = period;
        self.window = window;
        if self.failures == 0 {
            self.next = self.next.min(self.last_ok + period);
        }
    }

    /// How long one call may take: what is left of the window (at least 3 s, at most
    /// 60 s); once the window has closed, 30 s.
    pub fn call_bound(&self, now: Instant) -> Duration {
        let left = self.deadline().saturating_duration_since(now);
        if left.is_zero() {
            LATE_MAX
        } else {
            left.clamp(Duration::from_secs(3), Duration::from_secs(60))
        }
    }

    pub fn next_at(&self) -> Instant {
        self.next
    }

    /// Try now, out of schedule (e.g. a message just adopted).
    pub fn due_now(&mut self, now: Instant) {
        self.next = now;
    }

    pub fn last_ok(&self) -> Instant {
        self.last_ok
    }

    pub fn deadline(&self) -> Instant {
        self.last_ok + self.window
    }

    /// Kept back from the window for the call itself to land.
    fn margin(&self) -> Duration {
        (self.window / 10).clamp(Duration::from_millis(500), Duration::from_secs(5))
    }

    /// Records a success; returns the number of failures it ended and the time that was
    /// left before the window would have closed.
    pub fn succeeded(&mut self, now: Instant) -> Option<(u32, Duration)> {
        let recovered = (self.failures > 0).then(|| {
            (
                self.failures,
                self.deadline().saturating_duration_since(now),
            )
        });
        self.failures = 0;
        self.backoff = Box::new(fresh_backoff());
        self.late = Box::new(super::retry::backoff(LATE_MIN, LATE_MAX));
        self.last_ok = now;
        self.next = now + self.period;
        recovered
    }

    /// Records a failure and schedules the next try inside the window that is left.
    pub fn failed(&mut self, now: Instant) -> Retry {
        self.failures += 1;
        let left = self.deadline().saturating_duration_since(now);
        if left.is_zero() {
            let delay = self.late.next().unwrap_or(LATE_MAX);
            self.next = now + delay;
            return Retry { delay, left };
        }
        let usable = left.saturating_sub(self.margin());
        let step = self.backoff.next().unwrap_or(self.period);
        // At least three more tries fit in what is left; never sooner than 200 ms, never
        // later than the regular period.
        let delay = step
            .min(usable / 3)
            .max(Duration::from_millis(200))
            .min(self.period);
        self.next = now + delay;
        Retry { delay, left }
    }
}

fn fresh_backoff() -> impl Iterator<Item = Duration> + Send + Sync {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}

/// The messages of the held action: id → latest receipt handle (SQS may deliver one message
/// twice; only the newest receipt is sure to work).
pub(crate) type Messages = Arc<Mutex<BTreeMap<String, HeldMessage>>>;

pub(crate) fn add_message(messages: &Messages, m: HeldMessage) {
    if let Ok(mut map) = messages.lock() {
        map.insert(m.id.clone(), m);
    }
}

/// When the earliest of the held messages was sent (`SentTimestamp`).
pub(crate) fn earliest_sent(messages: &Messages) -> Option<std::time::SystemTime> {
    messages
        .lock()
        .ok()?
        .values()
        .filter_map(|m| m.sent_at)
        .min()
}

pub(crate) fn take_messages(messages: &Messages) -> Vec<HeldMessage> {
    messages
        .lock()
        .map(|mut m| std::mem::take(&mut *m).into_values().collect())
        .unwrap_or_default()
}

/// The keeper's view for the hold: when the last heartbeat landed, and the hook's timing
/// as last read.
pub(crate) struct KeeperHandle {
    pub task: tokio::task::JoinHandle<()>,
    pub last_beat: watch::Receiver<Instant>,
    pub timing: watch::Receiver<HookTiming>,
}

/// The heartbeat interval for a hook's timing: `--heartbeat-interval`, else half the
/// HeartbeatTimeout.
pub(crate) fn interval(ctx: &Ctx, timing: &HookTiming) -> Duration {
    ctx.cfg
        .heartbeat_interval
        .unwrap_or(timing.heartbeat_timeout / 2)
        .max(Duration::from_secs(1))
}

/// Keeps the action alive until aborted, in three independent tasks, so that one slow
/// service never delays the other's renewal: the heartbeats, the messages' visibility, and
/// the reading of the hook (its timing as it is now, not as cached: the heartbeats follow
/// it; `timing` is what the hold assumed meanwhile). Every call is bounded by the window that
/// is left. Sends `true` on `gone` when a heartbeat says the action no longer exists.
pub(crate) fn spawn(
    ctx: Arc<Ctx>,
    action: LifecycleAction,
    heartbeat: Renewer,
    timing: HookTiming,
    messages: Messages,
    adopted: Arc<Notify>,
    gone: watch::Sender<bool>,
) -> KeeperHandle {
    let (beat_tx, last_beat) = watch::channel(heartbeat.last_ok());
    let (timing_tx, timing_rx) = watch::channel(timing);
    let mut set = JoinSet::new();
    set.spawn(heartbeats(
        ctx.clone(),
        action.clone(),
        heartbeat,
        timing_rx.clone(),
        beat_tx,
        gone,
    ));
    set.spawn(visibility(ctx.clone(), messages, adopted));
    set.spawn(read_hook(ctx, action, timing_tx));
    // Aborting this task drops the set, which aborts all three.
    let task = tokio::spawn(async move { while set.join_next().await.is_some() {} });
    KeeperHandle {
        task,
        last_beat,
        timing: timing_rx,
    }
}

async fn heartbeats(
    ctx: Arc<Ctx>,
    action: LifecycleAction,
    mut hb: Renewer,
    mut timing: watch::Receiver<HookTiming>,
    beat_tx: watch::Sender<Instant>,
    gone: watch::Sender<bool>,
) {
    let mut quiet = Quiet::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(hb.next_at()) => {}
            Ok(()) = timing.changed() => {
                let t = *timing.borrow_and_update();
                hb.retime(interval(&ctx, &t), t.heartbeat_timeout);
                continue;
            }
        }
        let bound = hb.call_bound(Instant::now());
        match bounded(
            "RecordLifecycleActionHeartbeat",
            bound,
            ctx.lifecycle.heartbeat(&action),
        )
        .await
        {
            Ok(()) => {
                let now = Instant::now();
                quiet.succeeded(now);
                match hb.succeeded(now) {
                    Some((n, left)) => tracing::warn!(
                        "heartbeat recovered after {n} failed {}: {} were left before the hook would have expired",
                        if n == 1 { "attempt" } else { "attempts" },
                        fmt_d(left)
                    ),
                    None => tracing::info!(
                        "heartbeat sent (next due in {})",
                        fmt_d(hb.next_at() - now)
                    ),
                }
                let _ = beat_tx.send(now);
            }
            Err(CallError::Gone(m)) => {
                tracing::warn!("heartbeat: {m}; no more heartbeats");
                let _ = gone.send(true);
                return;
            }
            Err(e) => {
                let now = Instant::now();
                let r = hb.failed(now);
                match quiet.failed(now) {
                    Say::Nothing => {}
                    say => {
                        let so_far = match say {
                            Say::Summary { attempts, for_ } => {
                                format!(" ({attempts} failed attempts in {})", fmt_d(for_))
                            }
                            _ => String::new(),
                        };
                        if r.left.is_zero() {
                            tracing::error!(
                                "heartbeat failed{so_far}: {e}; the hook has probably expired already (last heartbeat {} ago); retrying in {}",
                                fmt_d(hb.last_ok().elapsed()),
                                fmt_d(r.delay)
                            );
                        } else {
                            tracing::warn!(
                                "heartbeat failed{so_far}: {e}; retrying in {} ({} left before the hook expires)",
                                fmt_d(r.delay),
                                fmt_d(r.left)
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The messages' visibility, renewed every half visibility timeout (extended at once when
/// one is adopted: it was received moments ago, with the receive's own visibility).
async fn visibility(ctx: Arc<Ctx>, messages: Messages, adopted: Arc<Notify>) {
    let Some(queue) = &ctx.queue else {
        return;
    };
    let vis = ctx.cfg.visibility_timeout;
    let mut r = Renewer::new(vis / 2, vis, Instant::now());
    r.due_now(Instant::now());
    let mut quiet = Quiet::default();
    loop {
        let has_messages = messages.lock().map(|m| !m.is_empty()).unwrap_or(false);
        tokio::select! {
            _ = tokio::time::sleep_until(r.next_at()), if has_messages => {}
            _ = adopted.notified() => {
                r.due_now(Instant::now());
                continue;
            }
        }
        let held: Vec<HeldMessage> = messages
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        let secs = vis.as_secs() as i32;
        let mut failed = None;
        for m in &held {
            let bound = r.call_bound(Instant::now());
            let call = async {
                queue
                    .change_visibility(&m.receipt, secs)
                    .await
                    .map_err(CallError::Transient)
            };
            if let Err(e) = bounded("ChangeMessageVisibility", bound, call).await {
                failed = Some(e);
            }
        }
        let now = Instant::now();
        match failed {
            None => {
                quiet.succeeded(now);
                if let Some((n, left)) = r.succeeded(now) {
                    tracing::warn!(
                        "message visibility extended again after {n} failed attempts ({} were left)",
                        fmt_d(left)
                    );
                }
            }
            Some(e) => {
                let retry = r.failed(now);
                let so_far = match quiet.failed(now) {
                    Say::Nothing => continue,
                    Say::First => String::new(),
                    Say::Summary { attempts, for_ } => {
                        format!(" ({attempts} failed attempts in {})", fmt_d(for_))
                    }
                };
                tracing::warn!(
                    "ChangeMessageVisibility failed{so_far}: {e}; retrying in {} ({} left before the message is visible to other agents)",
                    fmt_d(retry.delay),
                    fmt_d(retry.left)
                );
            }
        }
    }
}

/// Reads the hook once at the start of the hold (retried with backoff until it answers):
/// its timing replaces what the hold assumed; a hook that is gone (removed or renamed) is
/// said, and the heartbeats go on under the action's own name: Auto Scaling says whether the
/// action still lives.
async fn read_hook(ctx: Arc<Ctx>, action: LifecycleAction, timing_tx: watch::Sender<HookTiming>) {
    let mut delays = super::retry::backoff(Duration::from_secs(1), Duration::from_secs(30));
    let mut quiet = Quiet::default();
    let was = *timing_tx.borrow();
    loop {
        let read = bounded(
            "DescribeLifecycleHooks",
            Duration::from_secs(20),
            ctx.lifecycle.read_hook(&action.group, &action.hook),
        )
        .await;
        let now = Instant::now();
        match read {
            Ok(Ok(t)) => {
                if let Some((n, d)) = quiet.succeeded(now) {
                    tracing::info!(
                        "hook {} read after {n} failed attempts over {}",
                        action.hook,
                        fmt_d(d)
                    );
                }
                if t.heartbeat_timeout != was.heartbeat_timeout {
                    tracing::info!(
                        "hook {}: HeartbeatTimeout {} (the hold assumed {} until read): heartbeat every {}",
                        action.hook,
                        fmt_d(t.heartbeat_timeout),
                        fmt_d(was.heartbeat_timeout),
                        fmt_d(interval(&ctx, &t))
                    );
                }
                let _ = timing_tx.send(t);
                return;
            }
            Ok(Err(has)) => {
                tracing::warn!(
                    "the group {} has no termination hook {} any more (removed or renamed? it has: {has}); heartbeats go on under the action's name, and Auto Scaling says whether the action still lives",
                    action.group,
                    action.hook
                );
                return;
            }
            Err(e) => {
                let wait = delays.next().unwrap_or(Duration::from_secs(30));
                match quiet.failed(now) {
                    Say::Nothing => {}
                    Say::First => tracing::warn!(
                        "cannot read the hook's timeouts ({e}): assuming the shortest HeartbeatTimeout AWS allows ({}) until it is read; trying again in {}",
                        fmt_d(was.heartbeat_timeout),
                        fmt_d(wait)
                    ),
                    Say::Summary { attempts, for_ } => tracing::warn!(
                        "still cannot read the hook's timeouts: {attempts} failed attempts in {}, last: {e}; trying again in {}",
                        fmt_d(for_),
                        fmt_d(wait)
                    ),
                }
                ctx.pause(wait).await;
                if ctx.stopping() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays a renewal schedule against an outage `[from, to)` (seconds after the start),
    /// each failing call taking `call` seconds (the SDK's own retries), a successful one
    /// 0.1 s; returns whether the window ever closed.
    fn window_closed(period: u64, window: u64, from: f64, to: f64, call: f64, run: f64) -> bool {
        let start = Instant::now();
        let at = |s: f64| start + Duration::from_secs_f64(s);
        let mut r = Renewer::new(
            Duration::from_secs(period),
            Duration::from_secs(window),
            start,
        );
        loop {
            let t = r.next_at().duration_since(start).as_secs_f64();
            if t > run {
                return false;
            }
            let failing = (from..to).contains(&t);
            let done = t + if failing { call } else { 0.1 };
            if !failing && done > r.deadline().duration_since(start).as_secs_f64() {
                return true;
            }
            if failing {
                r.failed(at(done));
            } else {
                r.succeeded(at(done));
            }
        }
    }

    #[test]
    fn an_outage_that_ends_before_the_deadline_does_not_end_the_hold() {
        // The case: HeartbeatTimeout 20 s, beats every 10 s, every heartbeat fails
        // from 8 s to 16 s (4 s, 20 %, to spare), each failing call taking 3 s (SDK retries).
        assert!(!window_closed(10, 20, 8.0, 16.0, 3.0, 120.0));
        // The same outage shape at the shipped 300 s timeout, 10 s long.
        assert!(!window_closed(150, 300, 145.0, 240.0, 3.0, 900.0));
        // Outages starting anywhere in the cycle and ending with 20 % of the timeout to
        // spare after the last heartbeat that landed before them.
        for start in 0..40 {
            let from = start as f64 / 2.0;
            let last_ok = ((from / 10.0).ceil() - 1.0).max(0.0) * 10.0;
            let to = last_ok + 16.0;
            assert!(
                !window_closed(10, 20, from, to, 3.0, 100.0),
                "outage {from}..{to}"
            );
        }
    }

    #[test]
    fn an_outage_longer_than_the_window_is_noticed() {
        assert!(window_closed(10, 20, 5.0, 60.0, 1.0, 120.0));
    }

    #[test]
    fn retries_after_a_failure_come_sooner_than_the_next_period_and_back_off() {
        let start = Instant::now();
        let mut r = Renewer::new(Duration::from_secs(150), Duration::from_secs(300), start);
        let t1 = start + Duration::from_secs(150);
        let first = r.failed(t1);
        assert!(first.delay < Duration::from_secs(5), "{first:?}");
        assert_eq!(first.left, Duration::from_secs(150));
        let mut last = first.delay;
        let mut grew = false;
        for _ in 0..6 {
            let d = r.failed(t1).delay;
            grew |= d > last;
            last = d;
        }
        assert!(grew, "the delay backs off");
        assert!(
            last <= Duration::from_secs(50),
            "leaves room for three tries: {last:?}"
        );
        let (n, left) = r.succeeded(t1).expect("a recovery is reported");
        assert_eq!((n, left), (7, Duration::from_secs(150)));
        assert_eq!(r.next_at(), t1 + Duration::from_secs(150));
    }
}
