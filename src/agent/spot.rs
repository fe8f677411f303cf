//! A Spot interruption: two minutes of warning that no lifecycle hook can extend, and no
//! action to complete. The agent runs the pre-drain commands and drains with what is left
//! of the two minutes, minus a margin, then says what stayed unshipped.

use super::hold::{drain_for, open_sources, run_pre_drain, DrainEnd, Stop};
use super::{fmt_d, Ctx, Source};
use crate::drain;
use crate::report::{self, Drained, Ending, Report};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Kept back from the interruption time: the instance is stopped at that moment, and the
/// last acks must reach the registry (and our log line the journal) before.
pub const SPOT_MARGIN: Duration = Duration::from_secs(10);

/// The warning AWS gives.
const SPOT_WARNING: Duration = Duration::from_secs(120);

pub(crate) async fn run(ctx: Arc<Ctx>, action: String, at: Option<SystemTime>, source: Source) {
    let left = at
        .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default())
        .unwrap_or(SPOT_WARNING)
        .saturating_sub(SPOT_MARGIN);
    let until = Instant::now() + left;
    let started_at = SystemTime::now();
    tracing::warn!(
        "spot interruption ({action}) for this instance, noticed by {source}: it cannot be held; draining for what is left of the warning ({})",
        fmt_d(left)
    );
    let sources = open_sources(&ctx).await;
    for cmd in &ctx.cfg.pre_drain {
        if ctx.stopping() || Instant::now() >= until {
            break;
        }
        let bound = ctx
            .cfg
            .pre_drain_timeout
            .min(until.saturating_duration_since(Instant::now()));
        run_pre_drain(cmd, bound).await;
    }
    let stop = || async {
        ctx.until_shutdown().await;
        Stop::Shutdown
    };
    let run = drain_for(&ctx, &ctx.instance_id, until, stop, sources).await;
    match &run.end {
        DrainEnd::Drained => {
            drain::write_drained_marker(&ctx.cfg.drained_marker);
            tracing::info!("spot interruption: everything shipped before the interruption");
        }
        DrainEnd::TimedOut(pending) => tracing::error!(
            "spot interruption: the warning ran out with {pending} unshipped; it is lost with the instance"
        ),
        DrainEnd::Stopped(_, pending) => tracing::warn!(
            "spot interruption: the agent is stopping with {pending} still unshipped (the shutdown fallback drains what it can)"
        ),
    }
    // The report says what the warning left unshipped; no time is left to wait for its
    // delivery (the shipper may still take it with the rest).
    let mut r = Report::new(
        Ending::Spot,
        "spot",
        started_at,
        SystemTime::now(),
        Drained {
            first: run.first.as_ref(),
            last: run.last.as_ref(),
        },
    );
    r.instance = Some(ctx.instance_id.clone());
    report::write(&ctx.cfg.report_file, &r);
}
