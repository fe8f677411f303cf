//! Exit codes shared by the commands, and the signals that end them.

use crate::backlog::{human_bytes, Backlog};

pub const ERROR: u8 = 1;
pub const TIMEOUT: u8 = 2;
pub const INTERRUPTED: u8 = 3;
/// Nothing left to wait for, but a shipper dropped data during the drain.
pub const LOST: u8 = 4;

/// Resolves with the signal's name on SIGTERM or SIGINT.
pub async fn wait_for_signal() -> &'static str {
    catch_signals().await
}

/// Catches SIGTERM and SIGINT from the moment it is called (inside the runtime), not from
/// the future's first poll: a signal that comes while the caller still works before its
/// first await is reported, not the default action's silent death. The future resolves with
/// the signal's name.
pub fn catch_signals() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::warn!("cannot install signal handlers; SIGTERM will kill without a report");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}

/// `a.log (1.2 MB, pending), disk queue /var/lib/filebeat/diskqueue (3 events, 1.1 kB)`:
/// what a drain still waits for, at most 10 named.
pub fn describe_waiting(b: &Backlog) -> String {
    let files = b.waiting().map(|f| {
        let name = f
            .source
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "?".into());
        format!("{name} ({}, {})", human_bytes(f.pending), f.state.as_str())
    });
    let queues = b
        .sources
        .iter()
        .filter_map(|s| s.queue.as_ref())
        .filter(|q| q.events > 0 || q.bytes > 0)
        .map(|q| {
            let at = q
                .path
                .as_deref()
                .map(|p| format!(" {}", p.display()))
                .unwrap_or_default();
            format!(
                "{} queue{at} ({} {}, {})",
                q.kind,
                q.events,
                q.unit,
                human_bytes(q.bytes)
            )
        });
    let other = b
        .sources
        .iter()
        .flat_map(|s| s.waiting.iter().map(move |w| format!("{}: {w}", s.owner)));
    let waiting: Vec<String> = files.chain(queues).chain(other).collect();
    if waiting.is_empty() {
        return "nothing (not settled yet)".into();
    }
    let more = waiting.len().saturating_sub(10);
    let mut s = waiting.into_iter().take(10).collect::<Vec<_>>().join(", ");
    if more > 0 {
        s += &format!(" and {more} more");
    }
    s
}

/// `cloudwatch-agent: 1.2 kB (2 'request dropped' lines in its log)`: what was lost, by whom.
pub fn describe_lost(b: &Backlog) -> String {
    b.sources
        .iter()
        .filter_map(|s| s.lost.as_ref().map(|l| (s, l)))
        .map(|(s, l)| format!("{}: {} ({})", s.owner, human_bytes(l.bytes), l.evidence))
        .collect::<Vec<_>>()
        .join(", ")
}
