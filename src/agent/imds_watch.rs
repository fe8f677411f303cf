//! The IMDS trigger: IMDSv2 `autoscaling/target-lifecycle-state`, asked once a second.
//!
//! When it turns `Terminated` (or `Warmed:Terminated`), this instance is being terminated:
//! the group and the waiting action come from `DescribeAutoScalingInstances`, the hook from
//! `DescribeLifecycleHooks` (IMDS gives neither, nor a token: the action is completed by
//! instance id). No queue is needed, so this scales to any fleet.
//!
//! On a Spot instance the same watcher reads `spot/instance-action` on every fifth tick,
//! so IMDS sees at most one request a second either way.
//!
//! Whether IMDS answers is published on a watch channel: the queue listener uses it to
//! decide how long to leave other instances' messages hidden.

use super::fmt_d;
use super::retry::{Quiet, Say};
use super::{Ctx, Event, Source};
use crate::imds::{ImdsClient, ImdsLookupError};
use crate::lifecycle::{CallError, WaitingError};
use crate::utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

/// How often IMDS is asked.
pub const TICK: Duration = Duration::from_secs(1);

/// On a Spot instance, one tick in this many asks for `spot/instance-action` instead.
const SPOT_EVERY: u64 = 5;

/// Consecutive failed looks after which IMDS counts as not working.
const FAILURES_UNTIL_DOWN: u32 = 3;

/// After `Terminated`, how long Auto Scaling may keep answering that the instance is not in
/// `Terminating:Wait` (or that the group has no hook) before the agent concludes there is no
/// action to hold. Only definite answers count: a call that fails (throttling, 5xx, network)
/// says nothing, and is retried as long as the action can be alive.
const RESOLVE_FOR: Duration = Duration::from_secs(30);

/// How far the first ask after `Terminated` is spread: a scale-in flips many instances in the
/// same second, and their agents must not all ask Auto Scaling (account-wide rate) at once.
const FIRST_ASK_JITTER: Duration = Duration::from_secs(2);

/// Retries of a failed ask: jittered, from 1 s up to 10 s between asks.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// The longest HeartbeatTimeout AWS allows: without a heartbeat no action lives longer after
/// its start, so failed asks stop there.
const LONGEST_ACTION: Duration = Duration::from_secs(7200);

pub(crate) async fn run(ctx: Arc<Ctx>, events: mpsc::Sender<Event>, imds_ok: watch::Sender<bool>) {
    let imds = ImdsClient::for_watching();
    let mut w = Watcher {
        ctx: &ctx,
        events,
        imds_ok,
        spot: None,
        last_state: None,
        terminating_since: None,
        resolved: false,
        resolving: Resolving::default(),
        failures: 0,
        last_error: None,
        said_404: false,
        spot_said: false,
    };
    w.spot = w.is_spot(&imds).await;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = ctx.until_shutdown() => break,
            _ = tick.tick() => {}
        }
        n += 1;
        if w.spot != Some(false) && n.is_multiple_of(SPOT_EVERY) {
            w.check_spot(&imds).await;
        } else {
            w.check_state(&imds).await;
        }
    }
}

struct Watcher<'a> {
    ctx: &'a Ctx,
    events: mpsc::Sender<Event>,
    imds_ok: watch::Sender<bool>,
    /// `Some(true)` on a Spot instance, `Some(false)` on-demand, `None` not known (checked).
    spot: Option<bool>,
    last_state: Option<String>,
    /// When the state turned `Terminated`.
    terminating_since: Option<Instant>,
    /// The termination was handed to the coordinator (or given up on).
    resolved: bool,
    /// The asks since `Terminated`.
    resolving: Resolving,
    failures: u32,
    last_error: Option<String>,
    said_404: bool,
    spot_said: bool,
}

impl Watcher<'_> {
    async fn is_spot(&self, imds: &ImdsClient) -> Option<bool> {
        match imds.fetch_instance_life_cycle().await {
            Ok(Some(kind)) => Some(kind == "spot"),
            _ => None,
        }
    }

    fn down(&mut self, what: String) {
        self.failures += 1;
        if self.failures >= FAILURES_UNTIL_DOWN {
            self.imds_ok
                .send_if_modified(|ok| std::mem::replace(ok, false));
        }
        if self.last_error.as_deref() != Some(what.as_str()) {
            tracing::warn!(
                "IMDS trigger: {what}; still watching{}",
                if self.ctx.queue.is_some() {
                    " (the queue covers meanwhile)"
                } else {
                    ""
                }
            );
            self.last_error = Some(what);
        }
    }

    async fn check_state(&mut self, imds: &ImdsClient) {
        let state = match imds.fetch_target_lifecycle_state().await {
            Ok(Some(s)) => s,
            Ok(None) => {
                self.imds_ok
                    .send_if_modified(|ok| std::mem::replace(ok, false));
                if !self.said_404 {
                    self.said_404 = true;
                    let then = if self.ctx.queue.is_some() {
                        "terminations are learnt from the queue alone"
                    } else {
                        "WITHOUT A QUEUE THIS AGENT CANNOT LEARN OF ITS TERMINATION: configure queue_url, or put the instance in an Auto Scaling group; only the shutdown fallback drains meanwhile"
                    };
                    tracing::error!(
                        "IMDS has no autoscaling/target-lifecycle-state for this instance (404: not in an Auto Scaling group, or a group AWS does not publish it for); {then}. Still watching."
                    );
                }
                return;
            }
            Err(e) => {
                self.down(describe(&e));
                return;
            }
        };
        if self.last_error.take().is_some() || self.said_404 {
            tracing::info!("IMDS trigger: IMDS answers again (target lifecycle state {state})");
            self.said_404 = false;
        }
        self.failures = 0;
        self.imds_ok
            .send_if_modified(|ok| !std::mem::replace(ok, true));
        if self.last_state.as_deref() != Some(state.as_str()) {
            tracing::info!("IMDS: target lifecycle state {state}");
            self.last_state = Some(state.clone());
        }
        if state == "Terminated" || state == "Warmed:Terminated" {
            let since = *self.terminating_since.get_or_insert_with(|| {
                self.resolving = Resolving {
                    next_ask: Instant::now() + super::retry::jitter(FIRST_ASK_JITTER),
                    ..Resolving::default()
                };
                Instant::now()
            });
            if !self.resolved && Instant::now() >= self.resolving.next_ask {
                self.resolve(since).await;
            }
        } else {
            // Back in service (a root-volume replacement, a cancelled termination): the next
            // `Terminated` is a new action.
            self.terminating_since = None;
            self.resolved = false;
        }
    }

    /// Finds the action to hold and hands it to the coordinator. A definite answer ends the
    /// search (the action; or, for [`RESOLVE_FOR`], "not waiting" or "no hook"); a failed call
    /// never does: it is asked again with jittered backoff while the action can be alive.
    async fn resolve(&mut self, since: Instant) {
        let answer = self
            .ctx
            .lifecycle
            .waiting_action(&self.ctx.instance_id)
            .await;
        let now = Instant::now();
        let r = &mut self.resolving;
        let definite_for = |r: &mut Resolving| now - *r.definite_since.get_or_insert(now);
        match answer {
            Ok(action) => {
                self.resolved = true;
                if let Some((n, d)) = r.quiet.succeeded(now) {
                    tracing::info!(
                        "IMDS trigger: Auto Scaling answered after {n} failed {} over {}: holding",
                        if n == 1 { "ask" } else { "asks" },
                        fmt_d(d)
                    );
                }
                let _ = self
                    .events
                    .send(Event::Terminating {
                        action,
                        source: Source::Imds,
                        message: None,
                    })
                    .await;
            }
            Err(WaitingError::Call(CallError::Transient(e))) => {
                r.definite_since = None;
                let wait = r.delays.next().unwrap_or(RETRY_MAX);
                r.next_ask = now + wait;
                let trying = now - since;
                // The action began about when IMDS turned: without a heartbeat it lives
                // HeartbeatTimeout from then (the cached one, if this agent read it; the
                // estimate says which).
                let window = match self.ctx.lifecycle.any_cached_timing() {
                    Some(t) => {
                        let left = t.heartbeat_timeout.saturating_sub(trying);
                        format!(
                            "about {} of the hook's window left (HeartbeatTimeout {} as last read)",
                            fmt_d(left),
                            fmt_d(t.heartbeat_timeout)
                        )
                    }
                    None => "the hook's window is not known yet (HeartbeatTimeout unread)".into(),
                };
                if trying >= LONGEST_ACTION {
                    self.resolved = true;
                    tracing::error!(
                        "IMDS says this instance is being terminated, but for {} Auto Scaling could not be asked ({} attempts; last: {e}): no lifecycle action can still be alive; giving up, the shutdown fallback drains what it can",
                        fmt_d(trying),
                        r.quiet.attempts() + 1
                    );
                    return;
                }
                match r.quiet.failed(now) {
                    Say::First => tracing::warn!(
                        "IMDS says Terminated; finding the lifecycle action failed ({e}); trying again in {} (trying for {}; {window})",
                        fmt_d(wait),
                        fmt_d(trying)
                    ),
                    Say::Summary { attempts, .. } => tracing::warn!(
                        "IMDS says Terminated; still cannot find the lifecycle action: {attempts} failed asks in {}, last: {e}; trying again in {} ({window})",
                        fmt_d(trying),
                        fmt_d(wait)
                    ),
                    Say::Nothing => {}
                }
            }
            Err(e) => {
                // A definite answer: not (yet) in Terminating:Wait, or no hook to hold for.
                // Auto Scaling may lag IMDS by a moment: believed once it lasts.
                r.quiet.succeeded(now);
                r.delays = Resolving::fresh_delays();
                r.next_ask = now + TICK;
                if definite_for(r) >= RESOLVE_FOR {
                    self.resolved = true;
                    tracing::warn!(
                        "IMDS says this instance is being terminated, but for {} Auto Scaling answered: {e}; no lifecycle action to hold (does the group have a termination hook?); the shutdown fallback drains what it can",
                        fmt_d(RESOLVE_FOR)
                    );
                }
            }
        }
    }

    async fn check_spot(&mut self, imds: &ImdsClient) {
        match imds.fetch_spot_instance_action().await {
            Ok(Some(notice)) if !self.spot_said => {
                self.spot_said = true;
                let at = utc::parse_rfc3339(&notice.time);
                tracing::warn!(
                    "IMDS: spot interruption notice: {} at {}",
                    notice.action,
                    notice.time
                );
                let _ = self
                    .events
                    .send(Event::Spot {
                        action: notice.action,
                        at,
                        source: Source::Imds,
                    })
                    .await;
            }
            Ok(Some(_)) => {}
            Ok(None) => self.spot_said = false,
            Err(e) => self.down(describe(&e)),
        }
    }
}

/// The IMDS trigger's asks after `Terminated`.
struct Resolving {
    next_ask: Instant,
    delays: Box<dyn Iterator<Item = Duration> + Send + Sync>,
    quiet: Quiet,
    /// Since when Auto Scaling answers definitely that there is nothing to hold.
    definite_since: Option<Instant>,
}

impl Resolving {
    fn fresh_delays() -> Box<dyn Iterator<Item = Duration> + Send + Sync> {
        Box::new(super::retry::backoff(RETRY_MIN, RETRY_MAX))
    }
}

impl Default for Resolving {
    fn default() -> Self {
        Resolving {
            next_ask: Instant::now(),
            delays: Resolving::fresh_delays(),
            quiet: Quiet::default(),
            definite_since: None,
        }
    }
}

/// A coarse description, stable across attempts, so a lasting failure is logged once.
fn describe(e: &ImdsLookupError) -> String {
    use aws_config::imds::client::error::ImdsError;
    match e {
        ImdsLookupError::Request { path, source } => match &**source {
            ImdsError::ErrorResponse(r) => format!(
                "IMDS answered HTTP {} for {path}",
                r.response().status().as_u16()
            ),
            ImdsError::FailedToLoadToken(_) => {
                "IMDS gives no session token (PUT /latest/api/token failed)".into()
            }
            _ => format!("IMDS does not answer for {path}"),
        },
        ImdsLookupError::Unexpected { .. } => e.to_string(),
    }
}
