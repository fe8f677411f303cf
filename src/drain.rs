//! Waiting until filebeat has shipped every byte: the drain engine.
//!
//! The wait wakes on registry writes (inotify on the registry's directory) and on a
//! short tick that notices log files growing. "Drained" must hold for the settle
//! period (filebeat's 1 s registry flush plus its 10 s scan interval by default)
//! before we believe it: a file appended just before the end is seen by filebeat
//! only at its next scan. Any shipping meanwhile starts the period again, even when
//! every look showed filebeat caught up (a writer it keeps pace with is still writing).

use crate::backlog::{self, human_bytes, plural, Backlog, ProcScan};
use crate::duration;
use crate::registry::{Registry, RegistryError};
use inotify::{Inotify, WatchMask};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

/// settle default: filebeat's `registry.flush` (1 s) plus its `check_interval` (10 s).
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(11);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// How a drain is run.
#[derive(Debug, Clone)]
pub struct DrainOptions {
    /// Registry path (data dir, registry file/dir or registry/filebeat dir).
    pub registry: PathBuf,
    /// Give up after this long.
    pub timeout: Duration,
    /// How long "drained" must hold before it is believed.
    pub settle: Duration,
    /// How often a progress line is logged.
    pub progress_interval: Duration,
    /// How often files are re-measured without a registry write (and the polling
    /// period where inotify is not available).
    pub tick: Duration,
    /// Where filebeat's open files are looked for.
    pub procs: ProcScan,
    /// Written by the agent after it drained and completed a termination (see
    /// [`DEFAULT_DRAINED_MARKER`]). When it exists and nothing is pending at the start, the
    /// drain returns at once instead of waiting for the settle period again.
    pub drained_marker: Option<PathBuf>,
}

/// Where the agent leaves its "already drained" marker. It lives under /run, which is
/// emptied at every boot, so a marker never outlives the shutdown it was written for: the
/// shutdown fallback that runs right after the agent's drain need not wait a second time.
pub const DEFAULT_DRAINED_MARKER: &str = "/run/drainhook/drained";

/// Leaves the marker that lets a following `drain` return at once. Only root reads and
/// writes it: the directory is made 0700 and the file 0600 (under systemd the unit's
/// `RuntimeDirectory=` has made `/run/drainhook` 0700 already).
pub fn write_drained_marker(path: &Path) {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let written = path
        .parent()
        .map_or(Ok(()), |dir| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
        })
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
        })
        .and_then(|mut f| f.write_all(b"drained by the drainhook agent\n"));
    if let Err(e) = written {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

impl DrainOptions {
    pub fn new(registry: PathBuf) -> Self {
        DrainOptions {
            registry,
            timeout: DEFAULT_TIMEOUT,
            settle: DEFAULT_SETTLE,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            tick: Duration::from_millis(500),
            procs: ProcScan::default(),
            drained_marker: Some(PathBuf::from(DEFAULT_DRAINED_MARKER)),
        }
    }
}

/// How a drain ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every tracked file shipped, and that held for the settle period.
    Drained { backlog: Backlog, waited: Duration },
    /// The timeout passed first.
    TimedOut { backlog: Backlog },
    /// The caller asked to stop (SIGTERM, SIGINT, the agent's shutdown).
    Interrupted { backlog: Backlog },
}

/// A progress report, given to the caller's callback.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub backlog: &'a Backlog,
    /// Bytes acknowledged per second since the last report.
    pub rate: Option<f64>,
    /// Estimated time left at that rate.
    pub eta: Option<Duration>,
    /// Drained, and waiting for the settle period to pass.
    pub settling: bool,
}

impl Progress<'_> {
    /// One line for logs and `systemctl status`.
    pub fn summary(&self) -> String {
        let b = self.backlog;
        if self.settling {
            return format!("all {} shipped; settling", plural(b.files.len(), "file"));
        }
        let mut s = format!(
            "{} left in {}",
            human_bytes(b.pending_bytes),
            plural(b.waiting().count(), "file")
        );
        if let Some(r) = self.rate {
            s += &format!(", shipping {}/s", human_bytes(r as u64));
        }
        match self.eta {
            Some(eta) => s += &format!(", about {} left", duration::format(eta)),
            None if self.rate.is_some() => s += ", no progress",
            None => {}
        }
        s
    }
}

/// Waits for the registry to show every tracked file shipped (see [`Outcome`]).
///
/// `stop` ends the wait early; `progress` is called at `progress_interval`.
pub async fn drain<S, P>(
    opts: &DrainOptions,
    stop: S,
    mut progress: P,
) -> Result<Outcome, RegistryError>
where
    S: Future<Output = ()>,
    P: FnMut(&Progress<'_>),
{
    let started = Instant::now();
    let deadline = started + opts.timeout;
    let mut registry = Registry::open(&opts.registry)?;
    let watch_dir = registry.location().watch_dir();
    let mut watch = match Watch::new(&watch_dir) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                dir = %watch_dir.display(),
                "inotify unavailable ({e}); polling the registry every {}",
                duration::format(opts.tick)
            );
            None
        }
    };
    if let Some(w) = registry.warning() {
        tracing::warn!("{w}");
    }
    let mut backlog = backlog::compute(&registry, &opts.procs);
    if let Some(marker) = opts.drained_marker.as_deref().filter(|m| m.exists()) {
        if backlog.is_drained() {
            tracing::info!(
                "nothing pending and the agent already drained for this termination ({}): done",
                marker.display()
            );
            return Ok(Outcome::Drained {
                backlog,
                waited: started.elapsed(),
            });
        }
    }
    let mut drained_since = backlog.is_drained().then(Instant::now);
    let mut shipped = activity(&backlog);
    let mut last_report = (Instant::now(), backlog.acked_bytes());
    let mut next_report = Instant::now() + opts.progress_interval;
    let mut last_error: Option<String> = None;
    tokio::pin!(stop);

    loop {
        let now = Instant::now();
        if let Some(since) = drained_since {
            if now >= since + opts.settle {
                return Ok(Outcome::Drained {
                    backlog,
                    waited: now - started,
                });
            }
        }
        if now >= deadline {
            return Ok(Outcome::TimedOut { backlog });
        }
        if now >= next_report {
            let (t0, acked0) = last_report;
            let dt = (now - t0).as_secs_f64();
            let acked = backlog.acked_bytes();
            let rate = (dt > 0.0).then(|| acked.saturating_sub(acked0) as f64 / dt);
            let eta = rate
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(backlog.pending_bytes as f64 / r));
            progress(&Progress {
                backlog: &backlog,
                rate,
                eta,
                settling: drained_since.is_some(),
            });
            last_report = (now, acked);
            next_report = now + opts.progress_interval;
        }
        let mut wake = (now + opts.tick).min(deadline).min(next_report);
        if let Some(since) = drained_since {
            wake = wake.min(since + opts.settle);
        }
        tokio::select! {
            _ = &mut stop => return Ok(Outcome::Interrupted { backlog }),
            r = changed(&mut watch) => {
                if let Err(e) = r {
                    tracing::warn!("inotify failed ({e}); polling the registry from now on");
                    watch = None;
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        match registry.refresh() {
            Ok(()) => {
                if last_error.take().is_some() {
                    tracing::info!("registry readable again");
                }
                backlog = backlog::compute(&registry, &opts.procs);
                let now_shipped = activity(&backlog);
                if !backlog.is_drained() {
                    drained_since = None;
                } else if now_shipped != shipped {
                    // filebeat shipped (or found a file) since the last look, though every
                    // look showed it caught up: the writer is still at work, so the settle
                    // period starts again. It measures quiet, not one instant of catching up.
                    drained_since = Some(Instant::now());
                } else {
                    drained_since.get_or_insert_with(Instant::now);
                }
                shipped = now_shipped;
            }
            Err(e) => {
                // Never "drained" on a read we could not make sense of.
                drained_since = None;
                let msg = e.to_string();
                if last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!("cannot read the registry, will retry: {msg}");
                }
                last_error = Some(msg);
            }
        }
    }
}

/// What changes when filebeat ships: the acked bytes, and the files it tracks.
fn activity(backlog: &Backlog) -> (u64, usize) {
    (backlog.acked_bytes(), backlog.files.len())
}

async fn changed(watch: &mut Option<Watch>) -> io::Result<()> {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

/// inotify on one directory, readable from tokio.
struct Watch {
    fd: AsyncFd<Inotify>,
    buf: Vec<u8>,
}

impl Watch {
    fn new(dir: &Path) -> io::Result<Watch> {
        let inotify = Inotify::init()?;
        inotify.watches().add(
            dir,
            WatchMask::MODIFY
                | WatchMask::CLOSE_WRITE
                | WatchMask::MOVED_TO
                | WatchMask::CREATE
                | WatchMask::DELETE,
        )?;
        // SAFETY: `Inotify` owns its descriptor until it is dropped, which happens only
        // with the AsyncFd, and `as_raw_fd` always returns that same descriptor.
        let fd = unsafe { AsyncFd::register_with_interest(inotify, Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Watch {
            fd,
            buf: vec![0; 4096],
        })
    }

    /// Returns when something changed in the directory (events are consumed, not inspected).
    async fn changed(&mut self) -> io::Result<()> {
        let Watch { fd, buf } = self;
        loop {
            let mut guard = fd.readable_mut().await?;
            match guard.get_inner_mut().read_events(buf) {
                Ok(events) => {
                    if events.count() > 0 {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_marker_and_its_directory_are_for_root_alone() {
        let t = tempfile::tempdir().unwrap();
        let marker = t.path().join("run/drainhook/drained");
        write_drained_marker(&marker);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(marker.parent().unwrap()), 0o700);
        assert_eq!(mode(&marker), 0o600);
        assert!(std::fs::read_to_string(&marker)
            .unwrap()
            .contains("drained"));
    }
}
