//! Exit codes shared by the commands, and the signals that end them.

use crate::backlog::{human_bytes, Backlog};

pub const ERROR: u8 = 1;
pub const TIMEOUT: u8 = 2;
pub const INTERRUPTED: u8 = 3;

/// Resolves with the signal's name on SIGTERM or SIGINT.
pub async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; SIGTERM will kill without a report");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
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
