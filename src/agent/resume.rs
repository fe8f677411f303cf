//! The start-up trigger: an agent restarted in the middle of a hold (or started late) finds
//! its instance already waiting in `Terminating:Wait` and resumes, completing by instance id
//! without waiting for a message. It also learns the group's termination hook once, so that
//! the IMDS trigger's first heartbeat needs no extra call.

use super::{Ctx, Event, Source};
use crate::message::LifecycleAction;
use std::sync::Arc;
use tokio::sync::mpsc;

pub(crate) async fn run(ctx: Arc<Ctx>, events: mpsc::Sender<Event>) {
    let me = ctx.instance_id.as_str();
    let inst = match ctx.lifecycle.instance_state(me).await {
        Ok(Some(inst)) => inst,
        Ok(None) => {
            tracing::warn!(
                "instance {me} is in no Auto Scaling group (yet): nothing to hold until it joins one"
            );
            return;
        }
        Err(e) => {
            tracing::warn!("cannot ask Auto Scaling about this instance: {e}");
            return;
        }
    };
    let hook = match ctx.lifecycle.terminating_hook(&inst.group).await {
        Ok((hook, _)) => hook,
        Err(e) => {
            // Nothing could be held: say so now, not at the scale-in.
            tracing::error!("{e}");
            return;
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
