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

/// The backlog of a whole registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backlog {
    pub format: &'static str,
    pub files: Vec<FileBacklog>,
    pub pending_bytes: u64,
    /// The registry could not be read to its end (see [`Registry::incomplete`]): what it
    /// shows may be older than the truth, so it never counts as drained. Not part of
    /// `--json` (its shape is an agreed interface; the registry's warning says why).
    #[serde(skip)]
    pub incomplete: bool,
}

impl Backlog {
    /// Every tracked file is shipped to its end (gone and unmanaged files are not waited for),
    /// read from an undamaged registry.
    pub fn is_drained(&self) -> bool {
        !self.incomplete && !self.files.iter().any(|f| f.state.blocks_drain())
    }

    /// The files a drain still waits for.
    pub fn waiting(&self) -> impl Iterator<Item = &FileBacklog> {
        self.files.iter().filter(|f| f.state.blocks_drain())
    }

    /// Sum of the acknowledged offsets, to measure the shipping rate.
    pub fn acked_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.offset).sum()
    }

    /// A table a person can read, with a total line.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let rows: Vec<[String; 6]> = self
            .files
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
        let waiting = self.waiting().count();
        let _ = writeln!(
            out,
            "total: {} files, {} pending in {} ({} bytes); {}",
            self.files.len(),
            human_bytes(self.pending_bytes),
            plural(waiting, "file"),
            self.pending_bytes,
            if self.is_drained() {
                "drained"
            } else if self.incomplete {
                "not drained (the registry was not read to its end: see the warning)"
            } else {
                "not drained"
            }
        );
        out
    }
}

pub(crate) fn plural(n: usize, word: &str) -> String {
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

/// Computes the backlog of the registry as it was last refreshed.
pub fn compute(registry: &Registry, procs: &ProcScan) -> Backlog {
    let mut seen = Seen::default();
    let mut files = Vec::new();
    for e in registry.entries() {
        files.push(assess(e, procs, &mut seen));
    }
    let pending_bytes = files.iter().map(|f| f.pending).sum();
    Backlog {
        format: registry.format().name(),
        files,
        pending_bytes,
        incomplete: registry.incomplete(),
    }
}

/// What one backlog computation has already looked at: filebeat's open files and the
/// directories searched for rotated files. A registry keeps many entries of files long
/// gone; each would otherwise list its directory again.
#[derive(Default)]
struct Seen {
    open_files: Option<Vec<OpenFile>>,
    dirs: std::collections::HashMap<PathBuf, Vec<(String, PathBuf, fs::Metadata)>>,
}

fn assess(e: &Entry, procs: &ProcScan, seen: &mut Seen) -> FileBacklog {
    let mut fb = FileBacklog {
        source: e.source.clone(),
        inode: e.inode,
        device: e.device,
        offset: e.offset,
        size: None,
        pending: 0,
        state: State::Gone,
        found_at: None,
    };
    if e.ttl == -2 {
        fb.state = State::Unmanaged;
        if let Some(f) = find(e, procs, seen) {
            fb.size = Some(f.size);
        }
        return fb;
    }
    let Some(found) = find(e, procs, seen) else {
        return fb;
    };
    if e.source.as_deref() != Some(found.path.as_path()) {
        fb.found_at = Some(found.path);
    }
    fb.size = Some(found.size);
    (fb.state, fb.pending) = match e.offset.cmp(&found.size) {
        std::cmp::Ordering::Equal => (State::Shipped, 0),
        std::cmp::Ordering::Less => (State::Pending, found.size - e.offset),
        std::cmp::Ordering::Greater => (State::Truncated, found.size),
    };
    fb
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

struct OpenFile {
    /// `/proc/<pid>/fd/<n>`: opening it reaches the file even when it was deleted.
    fd_path: PathBuf,
    /// What the link points to (for display; `… (deleted)` for a deleted file).
    target: PathBuf,
    meta: fs::Metadata,
}

/// The regular files the shipper processes hold open.
fn open_files(procs: &ProcScan) -> Vec<OpenFile> {
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
