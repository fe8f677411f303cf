//! Waiting until every log shipper has delivered every byte: the drain engine.
//!
//! The sources come from [`shipper::detect`]; the engine knows nothing of their formats. The
//! wait wakes on their state's writes (inotify on each source's directories) and on a
//! short tick that notices log files growing. "Drained" must hold for the settle
//! period (filebeat's 1 s registry flush plus its 10 s scan interval by default)
//! before we believe it: a file appended just before the end is seen by filebeat
//! only at its next scan. Any shipping meanwhile starts the period again, even when
//! every look showed filebeat caught up (a writer it keeps pace with is still writing).

use crate::backlog::{human_bytes, plural, Backlog};
use crate::duration;
use crate::shipper::{self, Shipper, ShipperError, Spec};
use inotify::{Inotify, WatchMask};
use std::collections::HashSet;
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
    /// Which shippers to wait for, and where they are.
    pub spec: Spec,
    /// Give up after this long.
    pub timeout: Duration,
    /// How long "drained" must hold before it is believed.
    pub settle: Duration,
    /// How often a progress line is logged.
    pub progress_interval: Duration,
    /// How often files are re-measured without a registry write (and the polling
    /// period where inotify is not available).
    pub tick: Duration,
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
    pub fn new(spec: Spec) -> Self {
        DrainOptions {
            spec,
            timeout: DEFAULT_TIMEOUT,
            settle: DEFAULT_SETTLE,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            tick: Duration::from_millis(500),
            drained_marker: Some(PathBuf::from(DEFAULT_DRAINED_MARKER)),
        }
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Everything delivered, and that held for the settle period.
    Drained,
    /// The timeout passed first.
    TimedOut,
    /// The caller asked to stop (SIGTERM, SIGINT, the agent's shutdown).
    Interrupted,
}

/// What a drain found: how it ended, and the backlog at its first and last look (the drain
/// report tells from them what was delivered meanwhile).
#[derive(Debug)]
pub struct Outcome {
    pub ended: Ended,
    pub first: Backlog,
    pub backlog: Backlog,
    /// From the start of the drain to its end.
    pub waited: Duration,
    /// Returned at once: nothing pending, and the agent's marker says it already drained
    /// (and reported) this termination.
    pub by_marker: bool,
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
            return format!(
                "all {} delivered; settling",
                plural(b.files().count(), "file")
            );
        }
        let mut s = format!(
            "{} left in {}",
            human_bytes(b.pending_bytes()),
            plural(b.waiting().count(), "file")
        );
        let queued: u64 = b
            .sources
            .iter()
            .filter_map(|s| s.queue.as_ref())
            .map(|q| q.bytes)
            .sum();
        if queued > 0 {
            s += &format!(" ({} of it in queues)", human_bytes(queued));
        }
        let other: Vec<String> = b
            .sources
            .iter()
            .flat_map(|src| {
                src.waiting
                    .iter()
                    .map(move |w| format!("{}: {w}", src.owner))
            })
            .collect();
        if !other.is_empty() {
            s += &format!("; waiting for {}", other.join(", "));
        }
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

/// Looks at every source once: the backlog of all of them, or the first error.
pub async fn look_all(sources: &mut [Box<dyn Shipper>]) -> Result<Backlog, ShipperError> {
    let mut b = Backlog::default();
    for s in sources.iter_mut() {
        b.sources.push(s.look().await?);
    }
    Ok(b)
}

/// The shippers of one drain, found and begun: drops are counted, and the drain report's
/// deliveries measured, from their first look on. The agent opens them when a hold begins,
/// before its pre-drain commands, so that what happens during those commands counts too.
pub struct Sources {
    shippers: Vec<Box<dyn Shipper>>,
    /// The first look that succeeded.
    first: Option<Backlog>,
}

impl Sources {
    /// Finds the shippers (logging what detection noted) and begins following them.
    pub fn open(spec: &Spec) -> Result<Sources, ShipperError> {
        let detected = shipper::detect(spec)?;
        for n in &detected.notes {
            tracing::info!("{n}");
        }
        let mut shippers = detected.sources;
        for s in shippers.iter_mut() {
            s.begin();
        }
        Ok(Sources {
            shippers,
            first: None,
        })
    }

    /// The first look that succeeded, if one did.
    pub fn first(&self) -> Option<&Backlog> {
        self.first.as_ref()
    }

    /// Looks at every shipper once; the first look that succeeds is kept as the start.
    pub async fn look(&mut self) -> Result<Backlog, ShipperError> {
        let b = look_all(&mut self.shippers).await?;
        if self.first.is_none() {
            self.first = Some(b.clone());
        }
        Ok(b)
    }
}

/// Waits for every source to show everything delivered (see [`Outcome`]): [`Sources::open`],
/// then [`drain_sources`].
pub async fn drain<S, P>(opts: &DrainOptions, stop: S, progress: P) -> Result<Outcome, ShipperError>
where
    S: Future<Output = ()>,
    P: FnMut(&Progress<'_>),
{
    let mut sources = Sources::open(&opts.spec)?;
    drain_sources(opts, &mut sources, stop, progress).await
}

/// Waits for `sources` to show everything delivered (see [`Outcome`], whose `first` is the
/// sources' first look, perhaps made before this drain).
///
/// `stop` ends the wait early; `progress` is called at `progress_interval`. A source that
/// cannot be read at the start is an error; later, a read that fails is retried and never
/// counts as drained.
pub async fn drain_sources<S, P>(
    opts: &DrainOptions,
    sources: &mut Sources,
    stop: S,
    mut progress: P,
) -> Result<Outcome, ShipperError>
where
    S: Future<Output = ()>,
    P: FnMut(&Progress<'_>),
{
    let started = Instant::now();
    let deadline = started + opts.timeout;
    let mut backlog = sources.look().await?;
    let first = sources.first.clone().unwrap_or_else(|| backlog.clone());
    let mut watch = match Watch::new() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "inotify unavailable ({e}); polling every {}",
                duration::format(opts.tick)
            );
            None
        }
    };
    watch_sources(&mut watch, &sources.shippers);
    let inexact = backlog.inexact();
    if !inexact.is_empty() {
        tracing::warn!(
            "\"drained\" cannot be exact here ({}): waiting for every file to be read to its end and {} of quiet instead",
            inexact.join("; "),
            duration::format(opts.settle)
        );
    }
    if let Some(marker) = opts.drained_marker.as_deref().filter(|m| m.exists()) {
        if backlog.is_drained() {
            tracing::info!(
                "nothing pending and the agent already drained for this termination ({}): done",
                marker.display()
            );
            return Ok(Outcome {
                ended: Ended::Drained,
                first,
                backlog,
                waited: started.elapsed(),
                by_marker: true,
            });
        }
    }
    let mut drained_since = backlog.is_drained().then(Instant::now);
    let mut shipped = activity(&backlog);
    let mut last_report = (Instant::now(), backlog.progress());
    let mut next_report = Instant::now() + opts.progress_interval;
    let mut last_error: Option<String> = None;
    tokio::pin!(stop);

    loop {
        let now = Instant::now();
        if let Some(since) = drained_since {
            if now >= since + opts.settle {
                return Ok(Outcome {
                    ended: Ended::Drained,
                    first,
                    backlog,
                    waited: now - started,
                    by_marker: false,
                });
            }
        }
        if now >= deadline {
            return Ok(Outcome {
                ended: Ended::TimedOut,
                first,
                backlog,
                waited: now - started,
                by_marker: false,
            });
        }
        if now >= next_report {
            let (t0, acked0) = last_report;
            let dt = (now - t0).as_secs_f64();
            let acked = backlog.progress();
            let rate = (dt > 0.0).then(|| acked.saturating_sub(acked0) as f64 / dt);
            let eta = rate
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(backlog.pending_bytes() as f64 / r));
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
            _ = &mut stop => return Ok(Outcome {
                ended: Ended::Interrupted,
                first,
                backlog,
                waited: started.elapsed(),
                by_marker: false,
            }),
            r = changed(&mut watch) => {
                if let Err(e) = r {
                    tracing::warn!("inotify failed ({e}); polling the registry from now on");
                    watch = None;
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        match sources.look().await {
            Ok(b) => {
                if last_error.take().is_some() {
                    tracing::info!("every shipper's state is readable again");
                }
                backlog = b;
                watch_sources(&mut watch, &sources.shippers);
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
                    tracing::warn!("cannot read a shipper's state, will retry: {msg}");
                }
                last_error = Some(msg);
            }
        }
    }
}

/// What changes when a shipper delivers: its progress, and the files it tracks.
fn activity(backlog: &Backlog) -> (u64, usize) {
    (backlog.progress(), backlog.files().count())
}

/// Adds a watch for every directory the sources name now (a queue or a registry may appear
/// after the drain began).
fn watch_sources(watch: &mut Option<Watch>, sources: &[Box<dyn Shipper>]) {
    let Some(w) = watch else { return };
    for dir in sources.iter().flat_map(|s| s.watch_dirs()) {
        if let Err(e) = w.add(&dir) {
            tracing::debug!(dir = %dir.display(), "cannot watch: {e}; the tick notices changes there");
        }
    }
}

async fn changed(watch: &mut Option<Watch>) -> io::Result<()> {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

/// inotify on the sources' directories, readable from tokio.
struct Watch {
    fd: AsyncFd<Inotify>,
    buf: Vec<u8>,
    dirs: HashSet<PathBuf>,
}

impl Watch {
    fn new() -> io::Result<Watch> {
        let inotify = Inotify::init()?;
        // SAFETY: `Inotify` owns its descriptor until it is dropped, which happens only
        // with the AsyncFd, and `as_raw_fd` always returns that same descriptor.
        let fd = unsafe { AsyncFd::register_with_interest(inotify, Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Watch {
            fd,
            buf: vec![0; 4096],
            dirs: HashSet::new(),
        })
    }

    /// Watches `dir` too (once).
    fn add(&mut self, dir: &Path) -> io::Result<()> {
        if self.dirs.contains(dir) {
            return Ok(());
        }
        self.fd.get_ref().watches().add(
            dir,
            WatchMask::MODIFY
                | WatchMask::CLOSE_WRITE
                | WatchMask::MOVED_TO
                | WatchMask::CREATE
                | WatchMask::DELETE,
        )?;
        self.dirs.insert(dir.to_path_buf());
        Ok(())
    }

    /// Returns when something changed in the directory (events are consumed, not inspected).
    async fn changed(&mut self) -> io::Result<()> {
        let Watch { fd, buf, .. } = self;
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
