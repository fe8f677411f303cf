//! The start-up trigger: an agent restarted in the middle of a hold (or started late) finds
//! its instance already waiting in `Terminating:Wait` and resumes, completing by instance id
//! without waiting for a message. It also learns the group's termination hook once, so that
//! the IMDS trigger's first heartbeat needs no extra call.

use super::retry::{self, Quiet, Say};
use super::{fmt_d, Ctx, Event, Source};
use crate::lifecycle::CallError;
use crate::message::LifecycleAction;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long the start-up check keeps trying while Auto Scaling cannot be asked (throttling,
/// 5xx, network): the other triggers cover a termination meanwhile, but the hook learnt here
/// saves the IMDS trigger a call at the scale-in.
const TRY_FOR: Duration = Duration::from_secs(600);

pub(crate) async fn run(ctx: Arc<Ctx>, events: mpsc::Sender<Event>) {
    let me = ctx.instance_id.as_str();
    let started = Instant::now();
    let mut delays = retry::backoff(Duration::from_secs(1), Duration::from_secs(30));
    let mut quiet = Quiet::default();
    let (inst, hook) = loop {
        if ctx.stopping() {
            return;
        }
        let asked = async {
            let inst = ctx.lifecycle.instance_state(me).await?;
            let Some(inst) = inst else {
                return Ok(None);
            };
            let (hook, _) = ctx.lifecycle.terminating_hook(&inst.group).await?;
            Ok(Some((inst, hook)))
        };
        match asked.await {
            Ok(Some(found)) => break found,
            Ok(None) => {
                tracing::warn!(
                    "instance {me} is in no Auto Scaling group (yet): nothing to hold until it joins one"
                );
                return;
            }
            Err(CallError::Transient(e)) if started.elapsed() < TRY_FOR => {
                let wait = delays.next().unwrap_or(Duration::from_secs(30));
                match quiet.failed(Instant::now()) {
                    Say::First => tracing::warn!(
                        "start-up check: cannot ask Auto Scaling about this instance ({e}); trying again in {}",
                        fmt_d(wait)
                    ),
                    Say::Summary { attempts, for_ } => tracing::warn!(
                        "start-up check: {attempts} failed asks in {}, last: {e}; trying again in {}",
                        fmt_d(for_),
                        fmt_d(wait)
                    ),
                    Say::Nothing => {}
                }
                ctx.pause(wait).await;
                // Another trigger holds it meanwhile: nothing left to resume.
                if ctx.holding.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(e) => {
                // Nothing could be held: say so now, not at the scale-in.
                tracing::error!("{e}");
                return;
            }
        }
    };
    if !inst.waits_to_terminate() {
        tracing::info!(
            "start-up check: instance {me} is {} in group {}, whose termination hook is {hook}",
            inst.state,
            inst.group
        );
        return;
    }
    tracing::info!(
        instance = %me, hook = %hook, group = %inst.group,
        "instance already waits in Terminating:Wait: resuming the hold"
    );
    let action = LifecycleAction {
        instance_id: me.to_string(),
        group: inst.group,
        hook,
        token: None,
        destination: None,
    };
    let _ = events
        .send(Event::Terminating {
            action,
            source: Source::Resume,
            message: None,
        })
        .await;
}
