//! What every retrying loop of the agent shares: jittered backoff, calls bounded by the time
//! that is left, and failure logging that stays quiet when a failure lasts.
//!
//! Auto Scaling's API rate is account-wide: a fleet's agents that all retry at a fixed pace
//! in the same second throttle each other (and every other user of the account). So every
//! retry here is jittered, grows, and past the point where it is urgent, waits seconds.

use super::fmt_d;
use crate::lifecycle::CallError;
use backon::{BackoffBuilder, ExponentialBuilder};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;
use tokio::time::Instant;

/// A jittered exponential backoff from `min` to `max` (each delay between the step and twice
/// it, never above `max`), without end.
pub(crate) fn backoff(
    min: Duration,
    max: Duration,
) -> impl Iterator<Item = Duration> + Send + Sync {
    let b = ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build();
    b.map(move |d| d.min(max))
}

/// A uniformly random duration in `[0, max)`: spreads a fleet's first asks over `max`.
pub(crate) fn jitter(max: Duration) -> Duration {
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let frac = (r >> 11) as f64 / (1u64 << 53) as f64;
    max.mul_f64(frac)
}

/// One call, bounded by `bound`: a hung connection becomes a transient error at the bound,
/// never a wait that eats another renewal's window.
pub(crate) async fn bounded<T, F>(what: &str, bound: Duration, call: F) -> Result<T, CallError>
where
    F: Future<Output = Result<T, CallError>>,
{
    match tokio::time::timeout(bound, call).await {
        Ok(r) => r,
        Err(_) => Err(CallError::Transient(format!(
            "{what}: no answer within {}",
            fmt_d(bound)
        ))),
    }
}

/// Logs a lasting failure sparingly: the first failure at once, then a summary (how many
/// attempts, for how long, the last error) at growing intervals: 10 s, 20 s, 40 s, … up to
/// 5 min. An hour of failures is about 16 lines.
pub(crate) struct Quiet {
    since: Option<Instant>,
    attempts: u64,
    next_say: Option<Instant>,
    every: Duration,
}

const FIRST_SUMMARY: Duration = Duration::from_secs(10);
const MAX_SUMMARY: Duration = Duration::from_secs(300);

impl Default for Quiet {
    fn default() -> Self {
        Quiet {
            since: None,
            attempts: 0,
            next_say: None,
            every: FIRST_SUMMARY,
        }
    }
}

/// What [`Quiet::failed`] says to log, if anything.
pub(crate) enum Say {
    /// The first failure of a run.
    First,
    /// A summary: attempts so far and for how long.
    Summary {
        attempts: u64,
        for_: Duration,
    },
    Nothing,
}

impl Quiet {
    pub fn failed(&mut self, now: Instant) -> Say {
        self.attempts += 1;
        let since = *self.since.get_or_insert(now);
        match self.next_say {
            None => {
                self.next_say = Some(now + self.every);
                Say::First
            }
            Some(at) if now >= at => {
                self.every = (self.every * 2).min(MAX_SUMMARY);
                self.next_say = Some(now + self.every);
                Say::Summary {
                    attempts: self.attempts,
                    for_: now - since,
                }
            }
            Some(_) => Say::Nothing,
        }
    }

    /// Ends a run of failures; returns how many attempts failed and for how long.
    pub fn succeeded(&mut self, now: Instant) -> Option<(u64, Duration)> {
        let out = self.since.map(|s| (self.attempts, now - s));
        *self = Quiet::default();
        out
    }

    pub fn attempts(&self) -> u64 {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_of_failures_every_200ms_logs_a_few_lines() {
        let start = Instant::now();
        let mut q = Quiet::default();
        let mut lines = 0;
        for i in 0..(3600 * 5) {
            let now = start + Duration::from_millis(200 * i);
            if !matches!(q.failed(now), Say::Nothing) {
                lines += 1;
            }
        }
        assert!(lines < 25, "{lines}");
        let (n, d) = q.succeeded(start + Duration::from_secs(3600)).unwrap();
        assert_eq!((n, d), (18000, Duration::from_secs(3600)));
    }

    #[test]
    fn jitter_and_backoff_stay_in_bounds() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_secs(2)) < Duration::from_secs(2));
        }
        let ds: Vec<_> = backoff(Duration::from_secs(1), Duration::from_secs(10))
            .take(10)
            .collect();
        assert!(ds.iter().all(|d| *d <= Duration::from_secs(10)), "{ds:?}");
        assert!(ds[0] >= Duration::from_secs(1), "{ds:?}");
        assert!(ds[9] >= Duration::from_secs(5), "{ds:?}");
    }
}
