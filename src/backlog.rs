//! What is left to ship: each registry entry matched to its file and compared with its size.
//!
//! An entry is matched by inode and device: at its `source` path first, then among the
//! other files of that directory (renamed by rotation), then among filebeat's open
//! descriptors under `/proc/<pid>/fd` (rotated away or deleted, still being read).

use crate::registry::{Entry, Identity, Registry};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The state of one tracked file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// offset == size: every byte was acknowledged.
    Shipped,
    /// offset < size: `size - offset` bytes are still to ship.
    Pending,
    /// offset > size: the file was truncated; filebeat reads it again from 0.
    Truncated,
    /// The file no longer exists and filebeat does not hold it open.
    Gone,
    /// ttl -2: loaded at start-up and owned by no input; nobody will ship it.
    Unmanaged,
}

impl State {
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Shipped => "shipped",
            State::Pending => "pending",
            State::Truncated => "truncated",
            State::Gone => "gone",
            State::Unmanaged => "unmanaged",
        }
    }

    /// Whether a drain waits for a file in this state.
    pub const fn blocks_drain(self) -> bool {
        matches!(self, State::Pending | State::Truncated)
    }
}

/// One registry entry and the file behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileBacklog {
    pub source: Option<PathBuf>,
    pub inode: Option<u64>,
    pub device: Option<u64>,
    pub offset: u64,
    /// The file's size now (absent when the file is gone).
    pub size: Option<u64>,
    pub pending: u64,
    pub state: State,
    /// Where the file was found when that is not `source` (rotated, or only open in filebeat).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found_at: Option<PathBuf>,
}

/// What a shipper holds between reading a file and delivering it: filebeat's disk queue,
/// Fluent Bit's chunks, Vector's disk buffer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueBacklog {
    /// `disk` (filebeat's `queue.disk`), `chunks` (Fluent Bit), `disk buffer` (Vector), ...
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Where it lives on disk (absent for what is only seen over HTTP).
    pub path: Option<PathBuf>,
    /// Events (frames, records, chunks: see `unit`) not yet acknowledged by the output.
    pub events: u64,
    /// What `events` counts: `events`, `chunks`, `records`.
    pub unit: &'static str,
    /// Their bytes on disk.
    pub bytes: u64,
}

/// Bytes a shipper gave up on during the drain (dropped batches, exhausted retries): done,
/// but not delivered. Never hidden behind "drained".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lost {
    pub bytes: u64,
    /// How it is known, for a person: "2 'request dropped' lines in the agent's log".
    pub evidence: String,
}

/// One source of pending bytes (a filebeat registry with its queue, a CloudWatch agent, ...):
/// its tracked files, what sits in its queue, and whether "drained" can be judged exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceBacklog {
    /// The shipper: `filebeat`, `cloudwatch-agent`, `fluent-bit`, `vector`.
    pub shipper: &'static str,
    /// Who runs it: `filebeat`, or `Elastic Agent component filestream-default`, ...
    pub owner: String,
    /// Where its state was read (registry, state directory, database).
    pub state: PathBuf,
    /// The state's format: `memlog`, `data.json`, `array`, ...
    pub format: &'static str,
    pub files: Vec<FileBacklog>,
    /// Bytes not yet delivered: the files' pending bytes plus the queue's.
    pub pending_bytes: u64,
    /// What sits between read and delivery, where the shipper has such a stage.
    pub queue: Option<QueueBacklog>,
    /// What the shipper dropped during this drain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<Lost>,
    /// Other reasons this source is not drained yet (a chunk count not yet confirmed, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<String>,
    /// Why "drained" cannot be exact for this source (empty: it is exact).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inexact: Vec<String>,
    /// What proves delivery for this source, in words (`drainhook check` prints it).
    #[serde(skip)]
    pub proof: String,
    /// The state could not be read to its end (see [`Registry::incomplete`]): what it shows
    /// may be older than the truth, so it never counts as drained.
    #[serde(skip)]
    pub incomplete: bool,
    /// A count that grows as the shipper delivers (acked offsets, queue bytes acked): the
    /// drain measures the shipping rate and notices activity with it.
    #[serde(skip)]
    pub progress: u64,
}

impl SourceBacklog {
    /// A source with these files and nothing else, in the shipper's terms.
    pub fn of_files(
        shipper: &'static str,
        owner: impl Into<String>,
        state: PathBuf,
        format: &'static str,
        files: Vec<FileBacklog>,
    ) -> Self {
        let pending_bytes = files.iter().map(|f| f.pending).sum();
        let progress = files.iter().map(|f| f.offset).sum();
        SourceBacklog {
            shipper,
            owner: owner.into(),
            state,
            format,
            files,
            pending_bytes,
            queue: None,
            lost: None,
            waiting: Vec::new(),
            inexact: Vec::new(),
            proof: String::new(),
            incomplete: false,
            progress,
        }
    }

    /// Adds a queue: its bytes count as pending, its acknowledged bytes as progress.
    pub fn with_queue(mut self, queue: QueueBacklog, acked: u64) -> Self {
        self.pending_bytes += queue.bytes;
        self.progress += acked;
        self.queue = Some(queue);
        self
    }

    /// Every tracked file is shipped to its end (gone and unmanaged files are not waited
    /// for), the queue is empty and nothing else is awaited, read from an undamaged state.
    pub fn is_drained(&self) -> bool {
        !self.incomplete
            && self.waiting.is_empty()
            && self
                .queue
                .as_ref()
                .is_none_or(|q| q.events == 0 && q.bytes == 0)
            && !self.files.iter().any(|f| f.state.blocks_drain())
    }

    /// The files a drain still waits for.
    pub fn waiting(&self) -> impl Iterator<Item = &FileBacklog> {
        self.files.iter().filter(|f| f.state.blocks_drain())
    }

    /// Sum of the acknowledged offsets, to measure the shipping rate.
    pub fn acked_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.offset).sum()
    }

    /// `filebeat registry /var/lib/filebeat/registry/filebeat (memlog)`: the source's title.
    pub fn title(&self) -> String {
        let who = if self.owner == self.shipper {
            self.shipper.to_string()
        } else {
            format!("{} ({})", self.shipper, self.owner)
        };
        format!("{who}: {} ({})", self.state.display(), self.format)
    }

    /// The file table, the queue's line and this source's total line.
    pub fn to_table(&self) -> String {
        let mut out = file_table(&self.files);
        if let Some(q) = &self.queue {
            let _ = writeln!(out, "{}", queue_line(q));
        }
        if let Some(l) = &self.lost {
            let _ = writeln!(out, "LOST: {} ({})", human_bytes(l.bytes), l.evidence);
        }
        for w in &self.waiting {
            let _ = writeln!(out, "waiting: {w}");
        }
        let line = total_line(
            self.files.len(),
            self.waiting().count(),
            self.pending_bytes,
            self.queue.as_ref().is_some_and(|q| q.bytes > 0),
            self.is_drained(),
            self.incomplete,
        );
        let _ = writeln!(out, "{line}");
        out
    }
}

/// `disk queue /var/lib/filebeat/diskqueue: 1204 events, 542.3 kB not yet acknowledged by the output`
pub fn queue_line(q: &QueueBacklog) -> String {
    let at = q
        .path
        .as_deref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default();
    format!(
        "{} queue{at}: {}, {} not yet acknowledged by the output",
        q.kind,
        plural(q.events as usize, q.unit.trim_end_matches('s')),
        human_bytes(q.bytes)
    )
}

/// `total: 2 files, 55.0 kB pending in 1 file (55000 bytes); not drained`, and where a
/// queue holds some: `... pending in 1 file and the queues (...)`.
fn total_line(
    files: usize,
    waiting: usize,
    pending: u64,
    queued: bool,
    drained: bool,
    incomplete: bool,
) -> String {
    let queues = if queued { " and the queues" } else { "" };
    format!(
        "total: {files} files, {} pending in {}{queues} ({pending} bytes); {}",
        human_bytes(pending),
        plural(waiting, "file"),
        if drained {
            "drained"
        } else if incomplete {
            "not drained (the state was not read to its end: see the warning)"
        } else {
            "not drained"
        }
    )
}

/// The table of tracked files a person reads.
fn file_table(files: &[FileBacklog]) -> String {
    let mut out = String::new();
    let rows: Vec<[String; 6]> = files
        .iter()
        .map(|f| {
            let mut path = f
                .source
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "-".into());
            if let Some(at) = &f.found_at {
                let _ = write!(path, " (now {})", at.display());
            }
            [
                path,
                f.inode.map_or("-".into(), |i| i.to_string()),
                f.offset.to_string(),
                f.size.map_or("-".into(), |s| s.to_string()),
                f.pending.to_string(),
                f.state.as_str().to_string(),
            ]
        })
        .collect();
    let head = ["PATH", "INODE", "OFFSET", "SIZE", "PENDING", "STATE"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: [&str; 6], out: &mut String| {
        let _ = writeln!(
            out,
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        );
    };
    line(head, &mut out);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]], &mut out);
    }
    out
}

/// What every source on the instance still has to deliver: what `backlog` prints and the
/// drain waits on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Backlog {
    pub sources: Vec<SourceBacklog>,
}

impl Backlog {
    /// Every source is drained (and there is at least one).
    pub fn is_drained(&self) -> bool {
        !self.sources.is_empty() && self.sources.iter().all(SourceBacklog::is_drained)
    }

    /// Bytes not yet delivered, over every source (files and queues).
    pub fn pending_bytes(&self) -> u64 {
        self.sources.iter().map(|s| s.pending_bytes).sum()
    }

    /// Bytes the shippers dropped during this drain.
    pub fn lost_bytes(&self) -> u64 {
        self.sources
            .iter()
            .filter_map(|s| s.lost.as_ref())
            .map(|l| l.bytes)
            .sum()
    }

    /// Every tracked file of every source.
    pub fn files(&self) -> impl Iterator<Item = &FileBacklog> {
        self.sources.iter().flat_map(|s| s.files.iter())
    }

    /// The files a drain still waits for.
    pub fn waiting(&self) -> impl Iterator<Item = &FileBacklog> {
        self.sources.iter().flat_map(SourceBacklog::waiting)
    }

    /// Something grows whenever a shipper delivers: for the rate, and for the drain's
    /// "nothing more shipped" during the settle period.
    pub fn progress(&self) -> u64 {
        self.sources.iter().map(|s| s.progress).sum()
    }

    /// Why "drained" is not exact, source by source (`filebeat: ...`).
    pub fn inexact(&self) -> Vec<String> {
        self.sources
            .iter()
            .flat_map(|s| s.inexact.iter().map(move |r| format!("{}: {r}", s.owner)))
            .collect()
    }

    /// Each source's section (its title, files, queue and total); with several sources, a
    /// line over all of them.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.sources.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(out, "{}", s.title());
            out += &s.to_table();
            for r in &s.inexact {
                let _ = writeln!(out, "not exact: {r}");
            }
        }
        if self.sources.len() > 1 {
            let line = total_line(
                self.files().count(),
                self.waiting().count(),
                self.pending_bytes(),
                self.sources
                    .iter()
                    .any(|s| s.queue.as_ref().is_some_and(|q| q.bytes > 0)),
                self.is_drained(),
                false,
            );
            let _ = writeln!(
                out,
                "\n{}",
                line.replacen("total:", &format!("all {} sources:", self.sources.len()), 1)
            );
        }
        out
    }
}

/// `backlog --json`: the first source's `format`, every file, the total pending bytes, the
/// verdict, and each source in full.
impl Serialize for Backlog {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("format", &self.sources.first().map(|s| s.format))?;
        m.serialize_entry("files", &self.files().collect::<Vec<_>>())?;
        m.serialize_entry("pending_bytes", &self.pending_bytes())?;
        m.serialize_entry("lost_bytes", &self.lost_bytes())?;
        m.serialize_entry("drained", &self.is_drained())?;
        m.serialize_entry("sources", &self.sources)?;
        m.end()
    }
}

pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `12.3 MB`, `512 B`: sizes for people (powers of 1000, as `du --si`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Where to look for filebeat's open files.
#[derive(Debug, Clone)]
pub struct ProcScan {
    /// `/proc` (tests may point it elsewhere).
    pub proc_root: PathBuf,
    /// The process name (`/proc/<pid>/comm`) of the shipper.
    pub process_name: String,
}

impl Default for ProcScan {
    fn default() -> Self {
        ProcScan {
            proc_root: PathBuf::from("/proc"),
            process_name: "filebeat".into(),
        }
    }
}

/// A file found for an entry.
struct Found {
    path: PathBuf,
    size: u64,
}

/// Computes the backlog of a filebeat registry as it was last refreshed.
pub fn compute(registry: &Registry, procs: &ProcScan) -> SourceBacklog {
    let mut seen = Seen::default();
    let mut files = Vec::new();
    for e in registry.entries() {
        files.push(assess(e, procs, &mut seen));
    }
    let mut b = SourceBacklog::of_files(
        "filebeat",
        "filebeat",
        registry.location().path.clone(),
        registry.format().name(),
        files,
    );
    b.incomplete = registry.incomplete();
    b
}

/// What one backlog computation has already looked at: filebeat's open files and the
/// directories searched for rotated files. A registry keeps many entries of files long
/// gone; each would otherwise list its directory again.
#[derive(Default)]
struct Seen {
    open_files: Option<Vec<OpenFile>>,
    dirs: std::collections::HashMap<PathBuf, Vec<(String, PathBuf, fs::Metadata)>>,
}

impl FileBacklog {
    /// A tracked file whose delivered (or acknowledged) offset is `offset`, found at `found`
    /// with its size now (`None`: gone). Shipped at offset == size, pending below, truncated
    /// above (the shipper reads it again from 0).
    pub fn measure(
        source: Option<PathBuf>,
        inode: Option<u64>,
        device: Option<u64>,
        offset: u64,
        found: Option<(PathBuf, u64)>,
    ) -> Self {
        let mut fb = FileBacklog {
            source,
            inode,
            device,
            offset,
            size: None,
            pending: 0,
            state: State::Gone,
            found_at: None,
        };
        let Some((path, size)) = found else {
            return fb;
        };
        if fb.source.as_deref() != Some(path.as_path()) {
            fb.found_at = Some(path);
        }
        fb.size = Some(size);
        (fb.state, fb.pending) = match offset.cmp(&size) {
            std::cmp::Ordering::Equal => (State::Shipped, 0),
            std::cmp::Ordering::Less => (State::Pending, size - offset),
            std::cmp::Ordering::Greater => (State::Truncated, size),
        };
        fb
    }
}

fn assess(e: &Entry, procs: &ProcScan, seen: &mut Seen) -> FileBacklog {
    let found = find(e, procs, seen).map(|f| (f.path, f.size));
    if e.ttl == -2 {
        let size = found.map(|(_, size)| size);
        let mut fb = FileBacklog::measure(e.source.clone(), e.inode, e.device, e.offset, None);
        fb.state = State::Unmanaged;
        fb.size = size;
        return fb;
    }
    FileBacklog::measure(e.source.clone(), e.inode, e.device, e.offset, found)
}

/// Does this file carry the entry's identity?
fn matches(e: &Entry, meta: &fs::Metadata, path: &Path) -> bool {
    if !meta.is_file() {
        return false;
    }
    match &e.identity {
        Identity::Path => true,
        Identity::Fingerprint(want) => fingerprint(path).as_deref() == Some(want.as_str()),
        Identity::Native | Identity::InodeMarker => {
            e.inode == Some(meta.ino()) && e.device.is_none_or(|d| d == meta.dev())
        }
    }
}

fn find(e: &Entry, procs: &ProcScan, seen: &mut Seen) -> Option<Found> {
    if let Some(src) = &e.source {
        if let Ok(meta) = fs::metadata(src) {
            if matches(e, &meta, src) {
                return Some(Found {
                    path: src.clone(),
                    size: meta.len(),
                });
            }
        }
        if e.identity == Identity::Path {
            return None; // a path identity has nothing else to match on
        }
        if let Some(found) = find_rotated(e, src, &mut seen.dirs) {
            return Some(found);
        }
    }
    let open = seen.open_files.get_or_insert_with(|| open_files(procs));
    open.iter().find_map(|o| {
        let hit = match &e.identity {
            Identity::Fingerprint(want) => {
                o.meta.is_file() && fingerprint(&o.fd_path).as_deref() == Some(want.as_str())
            }
            _ => matches(e, &o.meta, &o.fd_path),
        };
        hit.then(|| Found {
            path: o.target.clone(),
            size: o.meta.len(),
        })
    })
}

/// Looks for the file renamed by rotation in the source's directory. Inode numbers are
/// reused, so only names that continue the source's name (`app.log` → `app.log.1`,
/// `app-2024-01-01.log`) count; an unrelated file that got the inode is not the entry's.
fn find_rotated(
    e: &Entry,
    src: &Path,
    dirs: &mut std::collections::HashMap<PathBuf, Vec<(String, PathBuf, fs::Metadata)>>,
) -> Option<Found> {
    let dir = src.parent()?;
    let base = src.file_name()?.to_str()?;
    let stem = base.split('.').next().unwrap_or(base);
    if stem.is_empty() {
        return None;
    }
    let listing = dirs.entry(dir.to_path_buf()).or_insert_with(|| {
        let Ok(rd) = fs::read_dir(dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|d| {
                let name = d.file_name().to_str()?.to_string();
                let p = d.path();
                let meta = fs::metadata(&p).ok()?;
                Some((name, p, meta))
            })
            .collect()
    });
    listing
        .iter()
        .filter(|(name, _, _)| name != base && name.starts_with(stem))
        .find(|(_, p, meta)| matches(e, meta, p))
        .map(|(_, p, meta)| Found {
            path: p.clone(),
            size: meta.len(),
        })
}

/// sha256 of the first 1024 bytes, as filestream's `fingerprint` identity computes it.
/// Files shorter than 1024 bytes have no fingerprint (filebeat ignores them).
pub fn fingerprint(path: &Path) -> Option<String> {
    let mut buf = [0u8; 1024];
    fs::File::open(path).ok()?.read_exact(&mut buf).ok()?;
    let digest = Sha256::digest(buf);
    let mut s = String::with_capacity(64);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    Some(s)
}

/// A regular file a shipper process holds open.
pub struct OpenFile {
    /// `/proc/<pid>/fd/<n>`: opening it reaches the file even when it was deleted.
    pub fd_path: PathBuf,
    /// What the link points to (for display; `… (deleted)` for a deleted file).
    pub target: PathBuf,
    pub meta: fs::Metadata,
}

/// The regular files the shipper processes hold open: where a file rotated away or deleted,
/// but still being read, is found.
pub fn open_files(procs: &ProcScan) -> Vec<OpenFile> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(&procs.proc_root) else {
        return out;
    };
    for p in rd.flatten() {
        let name = p.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let comm = fs::read_to_string(p.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != procs.process_name {
            continue;
        }
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let fd_path = fd.path();
            if let Ok(meta) = fs::metadata(&fd_path) {
                if meta.is_file() {
                    let target = fs::read_link(&fd_path).unwrap_or_else(|_| fd_path.clone());
                    out.push(OpenFile {
                        fd_path,
                        target,
                        meta,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(12_300_000), "12.3 MB");
    }
}
