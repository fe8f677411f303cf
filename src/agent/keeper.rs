//! The keeper keeps a held action alive: a heartbeat every HeartbeatTimeout / 2, and the
//! action's messages invisible in short extensions.
//!
//! A heartbeat resets the hook's timer to *now + HeartbeatTimeout*, so the real deadline is
//! the last *successful* heartbeat plus the timeout. When one fails (after the SDK's own
//! retries), waiting for the next scheduled beat would land at or past that deadline: one
//! brief outage would end the hold. So a failed renewal is retried with backoff inside the
//! window that is left ([`Renewer`]), and the log says how close it came. A message's
//! visibility gets the same care: if it lapsed, other agents would see it again.

use super::{fmt_d, Ctx, HeldMessage};
use crate::lifecycle::CallError;
use crate::message::LifecycleAction;
use backon::{BackoffBuilder, ExponentialBuilder};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
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
    backoff: Box<dyn Iterator<Item = Duration> + Send>,
}

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
        self.last_ok = now;
        self.next = now + self.period;
        recovered
    }

    /// Records a failure and schedules the next try inside the window that is left.
    pub fn failed(&mut self, now: Instant) -> Retry {
        self.failures += 1;
        let left = self.deadline().saturating_duration_since(now);
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

fn fresh_backoff() -> impl Iterator<Item = Duration> + Send {
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

pub(crate) fn take_messages(messages: &Messages) -> Vec<HeldMessage> {
    messages
        .lock()
        .map(|mut m| std::mem::take(&mut *m).into_values().collect())
        .unwrap_or_default()
}

/// The keeper's view for the hold: when the last heartbeat landed.
pub(crate) struct KeeperHandle {
    pub task: tokio::task::JoinHandle<()>,
    pub last_beat: watch::Receiver<Instant>,
}

/// Heartbeats and visibility extensions until aborted; sends `true` on `gone` when a
/// heartbeat says the action no longer exists.
pub(crate) fn spawn(
    ctx: Arc<Ctx>,
    action: LifecycleAction,
    heartbeat: Renewer,
    messages: Messages,
    adopted: Arc<Notify>,
    gone: watch::Sender<bool>,
) -> KeeperHandle {
    let (beat_tx, last_beat) = watch::channel(heartbeat.last_ok());
    let task = tokio::spawn(async move {
        let mut hb = heartbeat;
        let vis = ctx.cfg.visibility_timeout;
        let mut visibility = Renewer::new(vis / 2, vis, Instant::now());
        // Messages already held were received moments ago: extend them right away, so
        // their visibility is ours, whatever the receive asked for.
        visibility.due_now(Instant::now());
        loop {
            let has_messages = messages.lock().map(|m| !m.is_empty()).unwrap_or(false);
            let wake = if has_messages {
                hb.next_at().min(visibility.next_at())
            } else {
                hb.next_at()
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = adopted.notified() => {
                    visibility.due_now(Instant::now());
                    continue;
                }
            }
            let now = Instant::now();
            if has_messages && now >= visibility.next_at() {
                extend_visibility(&ctx, &messages, &mut visibility).await;
            }
            if now >= hb.next_at() {
                match ctx.lifecycle.heartbeat(&action).await {
                    Ok(()) => {
                        let now = Instant::now();
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
                        let r = hb.failed(Instant::now());
                        if r.left.is_zero() {
                            tracing::error!(
                                "heartbeat failed: {e}; the hook has probably expired already (last heartbeat {} ago); retrying in {}",
                                fmt_d(hb.last_ok().elapsed()),
                                fmt_d(r.delay)
                            );
                        } else {
                            tracing::warn!(
                                "heartbeat failed: {e}; retrying in {} ({} left before the hook expires)",
                                fmt_d(r.delay),
                                fmt_d(r.left)
                            );
                        }
                    }
                }
            }
        }
    });
    KeeperHandle { task, last_beat }
}

async fn extend_visibility(ctx: &Ctx, messages: &Messages, r: &mut Renewer) {
    let Some(queue) = &ctx.queue else {
        return;
    };
    let held: Vec<HeldMessage> = messages
        .lock()
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    let secs = ctx.cfg.visibility_timeout.as_secs() as i32;
    let mut failed = None;
    for m in &held {
        if let Err(e) = queue.change_visibility(&m.receipt, secs).await {
            failed = Some(e);
        }
    }
    let now = Instant::now();
    match failed {
        None => {
            if let Some((n, left)) = r.succeeded(now) {
                tracing::warn!(
                    "message visibility extended again after {n} failed attempts ({} were left)",
                    fmt_d(left)
                );
            }
        }
        Some(e) => {
            let retry = r.failed(now);
            tracing::warn!(
                "ChangeMessageVisibility failed: {e}; retrying in {} ({} left before the message is visible to other agents)",
                fmt_d(retry.delay),
                fmt_d(retry.left)
            );
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
