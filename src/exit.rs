//! Exit codes shared by the commands, and the signals that end them.

use crate::backlog::{human_bytes, Backlog};

pub const ERROR: u8 = 1;
pub const TIMEOUT: u8 = 2;
pub const INTERRUPTED: u8 = 3;

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

/// `a.log (1.2 MB), b.log (3 B)`: the files a drain still waits for, at most 10 named.
pub fn describe_waiting(b: &Backlog) -> String {
    let waiting: Vec<String> = b
        .waiting()
        .map(|f| {
            let name = f
                .source
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "?".into());
            format!("{name} ({}, {})", human_bytes(f.pending), f.state.as_str())
        })
        .collect();
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
