//! The drain report: one JSON line per hold (and per shutdown fallback's drain), appended to
//! a file that the log shipper ships like any other log. So the log store, not the journal
//! of an instance that no longer exists, shows which terminations drained and what any lost.
//!
//! The line is written when the drain has ended, and the agent then waits (bounded by what
//! is left of the hold) until a shipper has delivered the line itself, before it completes
//! the lifecycle action.

use crate::backlog::{human_bytes, Backlog, FileBacklog, State};
use crate::drain::look_all;
use crate::shipper::{self, Spec};
use serde::Serialize;
use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Where the report is appended by default.
pub const DEFAULT_REPORT_FILE: &str = "/var/log/drainhook/drain.log";

/// How a hold (or a fallback drain) ended, as the report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Everything delivered; the action completed with CONTINUE.
    Drained,
    /// The drain's time ran out with bytes still pending; completed with --on-timeout.
    DrainTimeout,
    /// The lifecycle action ended (expired, or completed elsewhere) before the drain did.
    ActionLost,
    /// A Spot interruption: drained for what was left of the two-minute warning.
    Spot,
    /// The agent was stopped (SIGTERM) in the middle: the action is left to a restarted agent
    /// or to the hook's timeout.
    Stopped,
    /// The shutdown fallback's drain (a shutdown no lifecycle hook announced).
    Shutdown,
}

impl Ending {
    /// The name the report gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Drained => "drained",
            Ending::DrainTimeout => "drain_timeout",
            Ending::ActionLost => "action_lost",
            Ending::Spot => "spot",
            Ending::Stopped => "stopped",
            Ending::Shutdown => "shutdown",
        }
    }
}

/// One file in the report: what was delivered of it during the drain, and what was left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportFile {
    pub path: Option<PathBuf>,
    pub shipped_bytes: u64,
    pub pending_bytes: u64,
    pub state: State,
}

/// The report line. Field names are the interface queries in the log store rely on.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `drainhook.drain`: how to find these lines in the log store.
    pub event: &'static str,
    pub host: String,
    pub instance: Option<String>,
    pub group: Option<String>,
    pub hook: Option<String>,
    /// What noticed the termination: `imds`, `queue`, `startup`, `spot`, `shutdown`.
    pub trigger: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub ended: String,
    pub seconds: f64,
    pub outcome: Ending,
    /// The lifecycle result sent (`CONTINUE`, `ABANDON`), if any.
    pub result: Option<String>,
    /// Every file's delivered and pending bytes. `drained` is true only when nothing was
    /// left and nothing was lost.
    pub drained: bool,
    pub shipped_bytes: u64,
    pub pending_bytes: u64,
    /// Bytes a shipper dropped during the hold, its pre-drain commands included (done, not
    /// delivered).
    pub lost_bytes: u64,
    /// What the queues still held at the end (part of `pending_bytes`).
    pub queued_bytes: u64,
    /// The shippers drained: `filebeat`, `Elastic Agent component filestream-default`, ...
    pub shippers: Vec<String>,
    pub files: Vec<ReportFile>,
    pub version: &'static str,
}

/// What the report says about the drain itself.
pub struct Drained<'a> {
    pub first: Option<&'a Backlog>,
    pub last: Option<&'a Backlog>,
}

impl Report {
    /// A report of a drain that went from `first` to `last` (either may be missing when the
    /// state could never be read).
    pub fn new(
        outcome: Ending,
        trigger: impl Into<String>,
        started: SystemTime,
        ended: SystemTime,
        d: Drained<'_>,
    ) -> Self {
        let files = d.last.map(|l| file_changes(d.first, l)).unwrap_or_default();
        let pending_bytes = d.last.map_or(0, Backlog::pending_bytes);
        let lost_bytes = d.last.map_or(0, Backlog::lost_bytes);
        Report {
            event: "drainhook.drain",
            host: hostname(),
            instance: None,
            group: None,
            hook: None,
            trigger: trigger.into(),
            started: crate::utc::format_rfc3339(started),
            ended: crate::utc::format_rfc3339(ended),
            seconds: ended
                .duration_since(started)
                .unwrap_or_default()
                .as_secs_f64(),
            outcome,
            result: None,
            drained: d.last.is_some_and(Backlog::is_drained) && lost_bytes == 0,
            shipped_bytes: files.iter().map(|f| f.shipped_bytes).sum(),
            pending_bytes,
            lost_bytes,
            queued_bytes: d.last.map_or(0, |l| {
                l.sources
                    .iter()
                    .filter_map(|s| s.queue.as_ref())
                    .map(|q| q.bytes)
                    .sum()
            }),
            shippers: d
                .last
                .or(d.first)
                .map(|b| b.sources.iter().map(|s| s.owner.clone()).collect())
                .unwrap_or_default(),
            files,
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// The line, with its newline.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"event":"drainhook.drain","error":"cannot serialize the report: {e}"}}"#)
        });
        s.push('\n');
        s
    }
}

/// Each file of `last`, with what was delivered of it since `first` (a file new since then
/// counts from 0; a file truncated meanwhile counts what was delivered after the truncation).
/// A file is the same in both looks when the same shipper source reports it with the same
/// identity ([`file_identity`]), so a file rotated to a new name during the hold counts only
/// what was delivered of it meanwhile.
fn file_changes(first: Option<&Backlog>, last: &Backlog) -> Vec<ReportFile> {
    let before: HashMap<(&str, FileIdentity<'_>), u64> = first
        .map(|b| {
            owned_files(b)
                .map(|(owner, f)| ((owner, file_identity(f)), f.offset))
                .collect()
        })
        .unwrap_or_default();
    owned_files(last)
        .filter(|(_, f)| f.state != State::Unmanaged)
        .map(|(owner, f)| {
            let was = before.get(&(owner, file_identity(f))).copied().unwrap_or(0);
            let shipped = if f.offset >= was {
                f.offset - was
            } else {
                f.offset
            };
            ReportFile {
                path: f.found_at.clone().or_else(|| f.source.clone()),
                shipped_bytes: shipped,
                pending_bytes: f.pending,
                state: f.state,
            }
        })
        .collect()
}

/// Every file of a backlog, with the source (its owner) that reports it.
fn owned_files(b: &Backlog) -> impl Iterator<Item = (&str, &FileBacklog)> {
    b.sources
        .iter()
        .flat_map(|s| s.files.iter().map(move |f| (s.owner.as_str(), f)))
}

/// Which file a row is, across two looks.
#[derive(Debug, PartialEq, Eq, Hash)]
enum FileIdentity<'a> {
    /// Device and inode, where the shipper knows the inode (the device may be unknown): a
    /// rotated file keeps them under its new name, as the shippers themselves follow it.
    Inode(Option<u64>, u64),
    /// The path, where the shipper keys its state by path alone.
    Path(Option<&'a Path>),
}

fn file_identity(f: &FileBacklog) -> FileIdentity<'_> {
    match f.inode {
        Some(ino) => FileIdentity::Inode(f.device, ino),
        None => FileIdentity::Path(f.source.as_deref()),
    }
}

/// The host's name, from uname (the hardened units hide /proc/sys).
fn hostname() -> String {
    // SAFETY: uname fills the zeroed struct it is given; each field is NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return String::new();
        }
        std::ffi::CStr::from_ptr(u.nodename.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// Appends the line to `path`, creating the file (0600) and its directory (0700): it holds
/// the instance's names and is read by the shipper, which runs as root.
pub fn append(path: &Path, report: &Report) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(report.to_line().as_bytes())?;
    f.sync_data()
}

/// Appends the line to `path` and says so in the log, with the path and the line's figures;
/// false, and a warning naming the path, when it cannot.
pub fn write(path: &Path, r: &Report) -> bool {
    match append(path, r) {
        Ok(()) => {
            tracing::info!(
                "drain report written to {}: {}, {} delivered, {} pending, {} lost",
                path.display(),
                r.outcome.as_str(),
                human_bytes(r.shipped_bytes),
                human_bytes(r.pending_bytes),
                human_bytes(r.lost_bytes)
            );
            true
        }
        Err(e) => {
            tracing::warn!("cannot write the drain report {}: {e}", path.display());
            false
        }
    }
}

/// How waiting for the report's own delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A shipper acknowledged the file to its end, and its queue is empty.
    Delivered { by: String, after: Duration },
    /// No shipper tracks the file (no input for it), so nobody will ship it.
    NotTracked,
    /// Tracked, but not delivered in the time there was.
    TimedOut { pending: u64 },
    /// The caller asked to stop.
    Stopped,
    /// The shippers' state could not be read.
    Unreadable(String),
}

/// How long a shipper may take to notice a file appended to (filebeat's 10 s scan, its 1 s
/// registry flush, and a margin).
pub const NOTICE_WITHIN: Duration = Duration::from_secs(16);

/// Waits until a shipper has delivered `path` to its end (the report line included), until
/// `until`, or until `stop` resolves. A file no shipper tracks is [`Delivery::NotTracked`]:
/// at once when it `existed` before this line (a shipper with an input for it would track it
/// already), else after [`NOTICE_WITHIN`] (time for a shipper to notice a new file).
pub async fn wait_delivered<S: Future<Output = ()>>(
    spec: &Spec,
    path: &Path,
    existed: bool,
    until: Instant,
    stop: S,
) -> Delivery {
    let started = Instant::now();
    let Ok(meta) = fs::metadata(path) else {
        return Delivery::NotTracked;
    };
    let (ino, dev) = (meta.ino(), meta.dev());
    let mut sources = match shipper::detect(spec) {
        Ok(d) => d.sources,
        Err(e) => return Delivery::Unreadable(e.to_string()),
    };
    tokio::pin!(stop);
    let mut pending = meta.len();
    loop {
        let error = match look_all(&mut sources).await {
            Ok(b) => {
                let tracking = b.sources.iter().find_map(|s| {
                    s.files
                        .iter()
                        .find(|f| f.inode == Some(ino) && f.device.is_none_or(|d| d == dev))
                        .map(|f| (s, f))
                });
                match tracking {
                    Some((s, f)) if f.state == State::Shipped && s.is_drained() => {
                        return Delivery::Delivered {
                            by: s.owner.clone(),
                            after: started.elapsed(),
                        }
                    }
                    Some((s, f)) => {
                        pending = f.pending + s.queue.as_ref().map_or(0, |q| q.bytes);
                    }
                    None if existed || started.elapsed() >= NOTICE_WITHIN => {
                        return Delivery::NotTracked
                    }
                    None => {}
                }
                None
            }
            Err(e) => Some(e.to_string()),
        };
        if Instant::now() >= until {
            return match error {
                Some(e) => Delivery::Unreadable(e),
                None => Delivery::TimedOut { pending },
            };
        }
        let wake = (Instant::now() + Duration::from_millis(200)).min(until);
        tokio::select! {
            _ = &mut stop => return Delivery::Stopped,
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// Logs what [`wait_delivered`] found, in words an operator can act on.
pub fn log_delivery(path: &Path, d: &Delivery) {
    match d {
        Delivery::Delivered { by, after } => tracing::info!(
            "drain report delivered by {by} after {}",
            crate::duration::format(*after)
        ),
        Delivery::NotTracked => tracing::warn!(
            "the drain report {} is not shipped: no log shipper tracks it; add an input for it (see the README, \"The drain report\")",
            path.display()
        ),
        Delivery::TimedOut { pending } => tracing::warn!(
            "the drain report {} was not delivered in time ({pending} bytes of it still pending)",
            path.display()
        ),
        Delivery::Stopped => {}
        Delivery::Unreadable(e) => {
            tracing::warn!("cannot tell whether the drain report was delivered: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_is_said_in_the_journal_as_in_the_report() {
        for e in [
            Ending::Drained,
            Ending::DrainTimeout,
            Ending::ActionLost,
            Ending::Spot,
            Ending::Stopped,
            Ending::Shutdown,
        ] {
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
    }
    use crate::backlog::SourceBacklog;

    fn file(path: &str, offset: u64, size: u64) -> FileBacklog {
        FileBacklog {
            source: Some(PathBuf::from(path)),
            inode: Some(path.len() as u64),
            device: Some(1),
            offset,
            size: Some(size),
            pending: size - offset,
            state: if offset == size {
                State::Shipped
            } else {
                State::Pending
            },
            found_at: None,
        }
    }

    fn backlog(files: Vec<FileBacklog>) -> Backlog {
        Backlog {
            sources: vec![SourceBacklog::of_files(
                "filebeat",
                "filebeat",
                PathBuf::from("/var/lib/filebeat/registry/filebeat"),
                "memlog",
                files,
            )],
        }
    }

    #[test]
    fn a_file_rotated_during_the_hold_counts_only_what_was_delivered_meanwhile() {
        let first = backlog(vec![file("/var/log/app.log", 300, 1000)]);
        // Renamed to app.log.1 (same device and inode), and a new app.log begun.
        let mut rotated = file("/var/log/app.log.1", 1000, 1000);
        rotated.inode = first.sources[0].files[0].inode;
        let mut fresh = file("/var/log/app.log", 40, 40);
        fresh.inode = Some(99);
        let last = backlog(vec![rotated, fresh]);
        let t0 = SystemTime::UNIX_EPOCH;
        let r = Report::new(
            Ending::Drained,
            "imds",
            t0,
            t0,
            Drained {
                first: Some(&first),
                last: Some(&last),
            },
        );
        assert_eq!(r.shipped_bytes, 700 + 40, "{:?}", r.files);
    }

    #[test]
    fn a_report_counts_what_was_delivered_during_the_drain_and_what_was_left() {
        let first = backlog(vec![
            file("/var/log/a.log", 100, 500),
            file("/var/log/bb.log", 0, 50),
        ]);
        let last = backlog(vec![
            file("/var/log/a.log", 500, 700),
            file("/var/log/bb.log", 50, 50),
            file("/var/log/ccc.log", 10, 10),
        ]);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let r = Report::new(
            Ending::DrainTimeout,
            "imds",
            t0,
            t0 + Duration::from_secs(90),
            Drained {
                first: Some(&first),
                last: Some(&last),
            },
        );
        assert_eq!(r.shipped_bytes, 400 + 50 + 10);
        assert_eq!(r.pending_bytes, 200);
        assert!(!r.drained);
        let line = r.to_line();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "drainhook.drain");
        assert_eq!(v["outcome"], "drain_timeout");
        assert_eq!(v["started"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["seconds"], 90.0);
        assert_eq!(v["files"][0]["pending_bytes"], 200);
        assert_eq!(v["shippers"][0], "filebeat");
    }

    #[test]
    fn the_report_file_is_private_and_appended_to() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("log/drainhook/drain.log");
        let b = backlog(vec![file("/var/log/a.log", 5, 5)]);
        let now = SystemTime::now();
        let r = Report::new(
            Ending::Drained,
            "queue",
            now,
            now,
            Drained {
                first: Some(&b),
                last: Some(&b),
            },
        );
        assert!(r.drained);
        append(&path, &r).unwrap();
        append(&path, &r).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }
}
