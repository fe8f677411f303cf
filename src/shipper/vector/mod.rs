//! Vector: what each `file` source's checkpoints say, matched to the files by fingerprint.
//!
//! A source's `<data_dir>/<id>/checkpoints.json` ([`checkpoints`]) holds a position per
//! fingerprint and no paths. Each look globs the source's `include` patterns (less
//! `exclude`) as Vector does, computes every file's fingerprint ([`fingerprint`]) and
//! judges position against size; a file without a checkpoint is pending from its start.
//! Outside the patterns, files renamed away or deleted while Vector still reads them are
//! found among the open files of the `vector` process in the patterns' directories, and
//! files renamed away that Vector already closed are found beside the patterns by their
//! fingerprint, when a checkpoint names them or when an earlier look saw them pending.
//! (With acknowledgements a file's first checkpoint appears when its first line is
//! delivered: a file renamed out of the patterns, read to its end and closed before that,
//! and never seen by this drain, cannot be seen. Patterns that match the rotated names too,
//! `app.log*`, close that gap.)
//!
//! What a position means depends on the configuration ([`config`]): with end-to-end
//! acknowledgements it moves when every sink fed by the source has delivered the line
//! (src/sources/file.rs:571-596,655-663), so position == size proves delivery; without them
//! it moves when the line is read (file.rs:664-666), and with a disk buffer when the line
//! is written to the buffer. Those setups cannot be judged exactly: `check` says so, and
//! the drain waits for every position to reach its file's end and then for the settle
//! period of quiet.

pub mod checkpoints;
pub mod config;
pub mod fingerprint;

use super::{Detected, Look, Shipper, ShipperError, Spec, DEFAULT_VECTOR_CONFIG};
use crate::backlog::{open_files, FileBacklog, ProcScan, SourceBacklog};
use config::FileSource;
use fingerprint::{Fingerprint, Strategy};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Vector's process name (`/proc/<pid>/comm`).
pub const PROCESS: &str = "vector";

/// One `file` source of a Vector.
pub struct Vector {
    source: FileSource,
    procs: ProcScan,
    /// Fingerprints computed at earlier looks, by (device, inode).
    known: HashMap<(u64, u64), Known>,
    /// Files listed as pending without a checkpoint at the last look: still waited for if
    /// they leave the patterns before their first line is delivered.
    awaited: HashSet<Fingerprint>,
    /// Decompressed bytes this look may still count (see [`GZIP_BUDGET`]).
    gzip_budget: u64,
    /// Gzip files whose decompressed size is still being counted.
    measuring: Vec<String>,
    /// The files identified at this look (their fingerprints are kept for the next).
    touched: HashSet<(u64, u64)>,
}

/// Decompressed bytes counted per look: a look must not hold the agent's runtime for long,
/// so a large gzip file is measured over several looks (the drain is not over meanwhile).
const GZIP_BUDGET: u64 = 64 << 20;

/// A file's fingerprint as computed, and what it was computed from.
struct Known {
    len: u64,
    modified: Option<SystemTime>,
    fingerprint: Option<Fingerprint>,
    gzip: Option<Gzip>,
}

/// A gzip file's decompressed size (Vector's positions count decompressed bytes).
enum Gzip {
    Measured(u64),
    Measuring {
        reader: Box<dyn std::io::Read + Send>,
        so_far: u64,
    },
}

/// A file a checkpoint may belong to.
struct Candidate {
    /// Where it is, for people (an open file's link target when found through /proc).
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Bytes Vector reads from it: its size, or its decompressed size for gzip.
    size: u64,
    modified: Option<SystemTime>,
    fingerprint: Fingerprint,
}

impl Vector {
    pub fn new(source: FileSource, procs: ProcScan) -> Self {
        Vector {
            source,
            procs,
            known: HashMap::new(),
            awaited: HashSet::new(),
            gzip_budget: GZIP_BUDGET,
            measuring: Vec::new(),
            touched: HashSet::new(),
        }
    }

    fn owner(&self) -> String {
        format!("vector source {}", self.source.id)
    }

    fn proof(&self) -> String {
        let s = &self.source;
        if s.exact() {
            format!(
                "checkpoints.json positions, moved when every sink fed by the source ({}) has delivered the line (end-to-end acknowledgements, memory buffers)",
                s.sinks.iter().map(|k| k.id.as_str()).collect::<Vec<_>>().join(", ")
            )
        } else if s.acks.enabled {
            "checkpoints.json positions, moved when a line is written to a sink's disk buffer: not a proof of delivery".into()
        } else {
            "checkpoints.json positions, moved when Vector reads a line: not a proof of delivery"
                .into()
        }
    }

    /// The fingerprint (and size) of a file, computed again only when it may have changed;
    /// `None` when Vector would not read it, or while its decompressed size is counted.
    fn identify(&mut self, open_at: &Path, meta: &fs::Metadata) -> Option<(Fingerprint, u64)> {
        let key = (meta.dev(), meta.ino());
        let again = !self.touched.insert(key);
        let modified = meta.modified().ok();
        let stale = |k: &Known| {
            k.len > meta.len()
                || (k.fingerprint.is_none() && k.len != meta.len())
                || (k.gzip.is_some() && (k.len != meta.len() || k.modified != modified))
        };
        if self.known.get(&key).is_none_or(stale) {
            self.known.remove(&key);
            let k = compute(&self.source.strategy, open_at, meta)?;
            self.known.insert(key, k);
        }
        let k = self.known.get_mut(&key)?;
        let fingerprint = k.fingerprint?;
        let size = match &mut k.gzip {
            None => meta.len(),
            Some(Gzip::Measured(n)) => *n,
            Some(Gzip::Measuring { .. }) if again => return None,
            Some(Gzip::Measuring { reader, so_far }) => {
                let ask = self.gzip_budget;
                let n = match std::io::copy(
                    &mut std::io::Read::take(reader, ask),
                    &mut std::io::sink(),
                ) {
                    Ok(n) => n,
                    Err(_) => {
                        // Not a whole gzip file (still being written): not readable yet.
                        self.known.remove(&key);
                        return None;
                    }
                };
                self.gzip_budget -= n;
                *so_far += n;
                if ask > 0 && n < ask {
                    let total = *so_far;
                    k.gzip = Some(Gzip::Measured(total));
                    total
                } else {
                    self.measuring.push(format!(
                        "counting the decompressed size of {} ({} so far)",
                        open_at.display(),
                        crate::backlog::human_bytes(*so_far)
                    ));
                    return None;
                }
            }
        };
        Some((fingerprint, size))
    }

    /// The files the source's patterns match now, each with its fingerprint.
    fn globbed(&mut self) -> Result<Vec<Candidate>, ShipperError> {
        let bad = |reason: String| ShipperError::Config {
            path: self.source.defined_in.clone(),
            reason,
        };
        let exclude = self
            .source
            .exclude
            .iter()
            .map(|p| {
                glob::Pattern::new(p).map_err(|e| {
                    bad(format!(
                        "source {}: exclude pattern {p}: {e}",
                        self.source.id
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut paths = Vec::new();
        let mut seen = HashSet::new();
        for pattern in &self.source.include {
            // As Vector's Glob paths provider (lib/file-source/src/paths_provider.rs:75-98):
            // default match options, unreadable entries skipped, then `exclude` applied to
            // the path's text.
            let found = glob::glob_with(pattern, glob::MatchOptions::default()).map_err(|e| {
                bad(format!(
                    "source {}: include pattern {pattern}: {e}",
                    self.source.id
                ))
            })?;
            for p in found.flatten() {
                let text = p.to_string_lossy();
                if exclude.iter().any(|x| x.matches(&text)) || !seen.insert(p.clone()) {
                    continue;
                }
                paths.push(p);
            }
        }
        let mut out = Vec::new();
        for p in paths {
            let Ok(meta) = fs::metadata(&p) else { continue };
            if meta.is_dir() {
                continue;
            }
            if let Some((fingerprint, size)) = self.identify(&p, &meta) {
                out.push(Candidate {
                    path: p,
                    dev: meta.dev(),
                    ino: meta.ino(),
                    size,
                    modified: meta.modified().ok(),
                    fingerprint,
                });
            }
        }
        Ok(out)
    }

    /// The directories of the include patterns (their directory part globbed), each with the
    /// literal start of the pattern's file name (`app` for `app.log*`, empty for `*.log`).
    fn pattern_dirs(&self) -> Vec<(PathBuf, String)> {
        let mut dirs: Vec<(PathBuf, String)> = Vec::new();
        for pattern in &self.source.include {
            let p = Path::new(pattern);
            let (Some(parent), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str()))
            else {
                continue;
            };
            let prefix: String = name
                .chars()
                .take_while(|c| !matches!(c, '*' | '?' | '[' | '{' | '.'))
                .collect();
            let Ok(found) = glob::glob(&parent.to_string_lossy()) else {
                continue;
            };
            for d in found.flatten().filter(|d| d.is_dir()) {
                if !dirs.iter().any(|(x, pre)| *x == d && *pre == prefix) {
                    dirs.push((d, prefix.clone()));
                }
            }
        }
        dirs
    }

    /// Files beside the patterns' matches whose names continue a pattern's literal start
    /// (`app.log` → `app.log.1`, `app-2026-01-01.log`), not among `except`: a file renamed
    /// out of the patterns, which Vector reads through its descriptor to its end and then
    /// closes (file_server.rs:357-374) while its last lines may not be delivered yet.
    fn renamed_away(
        &mut self,
        dirs: &[(PathBuf, String)],
        except: &HashSet<(u64, u64)>,
    ) -> Vec<Candidate> {
        let mut out = Vec::new();
        for (dir, prefix) in dirs {
            let Ok(rd) = fs::read_dir(dir) else { continue };
            for e in rd.flatten() {
                if !e
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(prefix.as_str()))
                {
                    continue;
                }
                let p = e.path();
                let Ok(meta) = fs::metadata(&p) else { continue };
                self.consider(&p, p.clone(), &meta, except, &mut out);
            }
        }
        out
    }

    /// Files the `vector` process holds open, in the patterns' directories under a name that
    /// continues a pattern's (a deleted file Vector still reads shows as `app.log.1
    /// (deleted)`), not among `except`. Other files it holds (a file sink's output, whose
    /// first line is a copy of a log's, its disk buffer) are never a source's.
    fn held_open(
        &mut self,
        dirs: &[(PathBuf, String)],
        except: &HashSet<(u64, u64)>,
    ) -> Vec<Candidate> {
        let mut out = Vec::new();
        for o in open_files(&self.procs) {
            let shown = o.target.to_string_lossy();
            let at = Path::new(shown.strip_suffix(" (deleted)").unwrap_or(&shown));
            let beside = dirs.iter().any(|(d, prefix)| {
                at.parent() == Some(d.as_path())
                    && at
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix.as_str()))
            });
            if beside {
                self.consider(&o.fd_path, o.target.clone(), &o.meta, except, &mut out);
            }
        }
        out
    }

    /// Adds the file (read at `open_at`, shown as `path`) to `out` with its fingerprint,
    /// unless it is among `except` or already there.
    fn consider(
        &mut self,
        open_at: &Path,
        path: PathBuf,
        meta: &fs::Metadata,
        except: &HashSet<(u64, u64)>,
        out: &mut Vec<Candidate>,
    ) {
        let key = (meta.dev(), meta.ino());
        if !meta.is_file() || except.contains(&key) || out.iter().any(|c| (c.dev, c.ino) == key) {
            return;
        }
        if let Some((fingerprint, size)) = self.identify(open_at, meta) {
            out.push(Candidate {
                path,
                dev: key.0,
                ino: key.1,
                size,
                modified: meta.modified().ok(),
                fingerprint,
            });
        }
    }

    fn look_now(&mut self) -> Result<SourceBacklog, ShipperError> {
        let cps = checkpoints::read(&self.source.state_dir)?;
        self.gzip_budget = GZIP_BUDGET;
        self.measuring.clear();
        self.touched.clear();
        let globbed = self.globbed()?;
        let live: HashSet<(u64, u64)> = globbed.iter().map(|c| (c.dev, c.ino)).collect();

        // One file per fingerprint: of several, Vector watches the most recently modified
        // (lib/file-source/src/file_server.rs:211-229).
        let mut by_fp: HashMap<Fingerprint, Candidate> = HashMap::new();
        for c in globbed {
            match by_fp.get(&c.fingerprint) {
                Some(old) if old.modified >= c.modified => {}
                _ => {
                    by_fp.insert(c.fingerprint, c);
                }
            }
        }
        // Outside the patterns: what Vector holds open beside them (renamed or deleted, and
        // still read), and, when a checkpoint or a file awaited since an earlier look is
        // still not found, files renamed beside them.
        let dirs = self.pattern_dirs();
        let mut beside: HashMap<Fingerprint, Candidate> = HashMap::new();
        let mut seen = live.clone();
        for c in self.held_open(&dirs, &live) {
            seen.insert((c.dev, c.ino));
            beside.entry(c.fingerprint).or_insert(c);
        }
        let found = |fp: &Fingerprint, beside: &HashMap<Fingerprint, Candidate>| {
            by_fp.contains_key(fp) || beside.contains_key(fp)
        };
        let missing = cps
            .entries
            .iter()
            .map(|c| c.fingerprint)
            .filter(|fp| !matches!(fp, Fingerprint::Legacy(_)))
            .chain(self.awaited.iter().copied())
            .any(|fp| !found(&fp, &beside));
        if missing {
            for c in self.renamed_away(&dirs, &seen) {
                beside.entry(c.fingerprint).or_insert(c);
            }
        }
        // Forget the fingerprints of files no longer seen.
        let touched = &self.touched;
        self.known.retain(|k, _| touched.contains(k));

        let mut files = Vec::new();
        let checkpointed: HashSet<Fingerprint> =
            cps.entries.iter().map(|c| c.fingerprint).collect();
        for c in &cps.entries {
            let found = by_fp
                .get(&c.fingerprint)
                .or_else(|| beside.get(&c.fingerprint));
            files.push(match found {
                Some(f) => FileBacklog::measure(
                    Some(f.path.clone()),
                    Some(f.ino),
                    Some(f.dev),
                    c.position,
                    Some((f.path.clone(), f.size)),
                ),
                None => {
                    let (dev, ino) = match c.fingerprint {
                        Fingerprint::DevInode(d, i) => (Some(d), Some(i)),
                        _ => (None, None),
                    };
                    FileBacklog::measure(None, ino, dev, c.position, None)
                }
            });
        }

        // Files without a checkpoint yet: in the patterns, held open by Vector, or awaited
        // since an earlier look (with acknowledgements a file gets its first checkpoint when
        // its first line is delivered: one renamed out of the patterns and read to its end
        // before that is found again by its fingerprint beside them).
        let vector_started = if self.source.read_from_end {
            started(&self.procs)
        } else {
            None
        };
        let now = SystemTime::now();
        let mut awaited = HashSet::new();
        let unchecked = by_fp.values().chain(beside.values().filter(|c| {
            !by_fp.contains_key(&c.fingerprint)
                && (self.awaited.contains(&c.fingerprint) || held_by_vector(c, &seen, &live))
        }));
        for c in unchecked.filter(|c| !checkpointed.contains(&c.fingerprint)) {
            if !self.read_from_start(c, vector_started, now) {
                continue;
            }
            awaited.insert(c.fingerprint);
            files.push(FileBacklog::measure(
                Some(c.path.clone()),
                Some(c.ino),
                Some(c.dev),
                0,
                Some((c.path.clone(), c.size)),
            ));
        }
        self.awaited = awaited;
        files.sort_by(|a, b| (a.source.is_none(), &a.source).cmp(&(b.source.is_none(), &b.source)));

        let mut b = SourceBacklog::of_files(
            "vector",
            self.owner(),
            cps.file.clone(),
            if cps.absent { "none yet" } else { "json v1" },
            files,
        );
        b.inexact = self.source.inexact();
        b.proof = self.proof();
        b.waiting = std::mem::take(&mut self.measuring);
        Ok(b)
    }

    /// Whether Vector reads a file it has no checkpoint for from its beginning (its bytes
    /// are then all pending), rather than from its end (nothing pending): files not modified
    /// for `ignore_older_secs` start at their end (lib/file-source/src/file_watcher/mod.rs:
    /// 94-153), and so, with `read_from: end`, do files that were there when Vector started
    /// and have not changed since (files found later are read from the beginning:
    /// file_server.rs:446-453).
    fn read_from_start(
        &self,
        c: &Candidate,
        vector_started: Option<SystemTime>,
        now: SystemTime,
    ) -> bool {
        let Some(modified) = c.modified else {
            return true;
        };
        if let Some(secs) = self.source.ignore_older_secs {
            if now.duration_since(modified).unwrap_or_default() > Duration::from_secs(secs) {
                return false;
            }
        }
        match (self.source.read_from_end, vector_started) {
            (true, Some(start)) => modified > start,
            _ => true,
        }
    }
}

/// Whether a candidate found outside the patterns came from Vector's open files (those found
/// beside the patterns only by name are not known to be Vector's).
fn held_by_vector(c: &Candidate, seen: &HashSet<(u64, u64)>, live: &HashSet<(u64, u64)>) -> bool {
    let key = (c.dev, c.ino);
    seen.contains(&key) && !live.contains(&key)
}

fn compute(strategy: &Strategy, open_at: &Path, meta: &fs::Metadata) -> Option<Known> {
    let gzip = if fingerprint::is_gzip(open_at).unwrap_or(false) {
        let f = fs::File::open(open_at).ok()?;
        Some(Gzip::Measuring {
            reader: Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
                f,
            ))),
            so_far: 0,
        })
    } else {
        None
    };
    let fingerprint = strategy.fingerprint(open_at, meta).ok()?;
    Some(Known {
        len: meta.len(),
        modified: meta.modified().ok(),
        fingerprint,
        gzip,
    })
}

/// When the oldest running `vector` process started (`/proc/<pid>/stat` field 22, in clock
/// ticks after `btime` of `/proc/stat`; Linux's USER_HZ is 100).
fn started(procs: &ProcScan) -> Option<SystemTime> {
    let btime: u64 = fs::read_to_string(procs.proc_root.join("stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    let mut oldest: Option<u64> = None;
    for p in fs::read_dir(&procs.proc_root).ok()?.flatten() {
        if !p
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        if !fs::read_to_string(p.path().join("comm"))
            .is_ok_and(|c| c.trim_end() == procs.process_name)
        {
            continue;
        }
        let Ok(stat) = fs::read_to_string(p.path().join("stat")) else {
            continue;
        };
        // The fields after the command name, which is in parentheses and may hold spaces.
        let ticks = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(19))
            .and_then(|t| t.parse::<u64>().ok());
        if let Some(t) = ticks {
            oldest = Some(oldest.map_or(t, |o| o.min(t)));
        }
    }
    let ticks = oldest?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(btime) + Duration::from_millis(ticks * 10))
}

impl Shipper for Vector {
    fn describe(&self) -> String {
        format!("{} ({})", self.owner(), self.source.state_dir.display())
    }

    fn watch_dirs(&self) -> Vec<PathBuf> {
        let dir = &self.source.state_dir;
        if dir.is_dir() {
            vec![dir.clone()]
        } else {
            // Not created yet: its parent tells when it appears.
            dir.parent()
                .filter(|p| p.is_dir())
                .map(Path::to_path_buf)
                .into_iter()
                .collect()
        }
    }

    fn look(&mut self) -> Look<'_> {
        Box::pin(async move { self.look_now() })
    }
}

/// Finds Vector's configuration and adds one source per `file` source it defines.
///
/// The config is `--vector-config` (a file or a directory) when given; otherwise what a
/// running `vector` process was started with (`--config`, `--config-dir`, ... or their
/// `VECTOR_CONFIG*` variables), else `/etc/vector/vector.yaml`, else `vector.toml` beside it.
pub fn detect(spec: &Spec, d: &mut Detected) -> Result<(), ShipperError> {
    let procs = spec.procs(PROCESS);
    let default = Path::new(DEFAULT_VECTOR_CONFIG);
    let mut paths = Vec::new();
    if spec.vector_config != default {
        paths.push(spec.at_root(&spec.vector_config));
    } else {
        if spec.root == Path::new("/") {
            paths = running_configs(&spec.proc_root);
        }
        if paths.is_empty() {
            let yaml = spec.at_root(default);
            let toml = yaml.with_extension("toml");
            paths.push(if !yaml.exists() && toml.exists() {
                toml
            } else {
                yaml
            });
        }
    }
    d.looked.push(format!(
        "Vector's config {}",
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    paths.retain(|p| p.exists());
    if paths.is_empty() {
        return Ok(());
    }
    let mut files = Vec::new();
    for p in &paths {
        files.extend(config::files_of(p)?);
    }
    let cfg = config::read(&files)?;
    if cfg.sources.is_empty() {
        d.notes.push(format!(
            "Vector's config ({}) has no file source: nothing of Vector's to wait for",
            files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for mut s in cfg.sources {
        if spec.root != Path::new("/") {
            let under = |p: &str| spec.at_root(Path::new(p)).to_string_lossy().into_owned();
            s.include = s.include.iter().map(|p| under(p)).collect();
            s.exclude = s.exclude.iter().map(|p| under(p)).collect();
            s.state_dir = spec.at_root(&s.state_dir);
        }
        d.add(Vector::new(s, procs.clone()));
    }
    Ok(())
}

/// The config paths of running `vector` processes: their command line's `-c`/`--config`,
/// `--config-toml`, `--config-yaml`, `--config-json`, `-C`/`--config-dir` (comma-separated,
/// wildcards allowed, relative to the process's directory), or else the same settings'
/// variables (`VECTOR_CONFIG`, ...).
fn running_configs(proc_root: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in rd.flatten() {
        if !p
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        if !fs::read_to_string(p.path().join("comm")).is_ok_and(|c| c.trim_end() == PROCESS) {
            continue;
        }
        let split = |raw: Vec<u8>| -> Vec<String> {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        };
        let args = split(fs::read(p.path().join("cmdline")).unwrap_or_default());
        let env = split(fs::read(p.path().join("environ")).unwrap_or_default());
        let cwd = fs::read_link(p.path().join("cwd")).unwrap_or_else(|_| PathBuf::from("/"));
        for v in config_args(&args, &env) {
            let v = if Path::new(&v).is_absolute() {
                v
            } else {
                cwd.join(v).to_string_lossy().into_owned()
            };
            match glob::glob(&v) {
                Ok(found) => out.extend(found.flatten()),
                Err(_) => out.push(PathBuf::from(v)),
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The config paths a Vector command line (or, without any there, its environment) names
/// (src/cli.rs:68-117).
fn config_args(args: &[String], env: &[String]) -> Vec<String> {
    const LONG: [&str; 5] = [
        "--config",
        "--config-toml",
        "--config-yaml",
        "--config-json",
        "--config-dir",
    ];
    let mut out = Vec::new();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let value = if let Some((_, v)) = a.split_once('=').filter(|(k, _)| LONG.contains(k)) {
            Some(v.to_string())
        } else if LONG.contains(&a.as_str()) || a == "-c" || a == "-C" {
            it.next().cloned()
        } else {
            // `-c/etc/vector/x.yaml`
            a.strip_prefix("-c")
                .or_else(|| a.strip_prefix("-C"))
                .filter(|v| !v.is_empty() && !a.starts_with("--"))
                .map(String::from)
        };
        out.extend(
            value
                .into_iter()
                .flat_map(|v| v.split(',').map(String::from).collect::<Vec<_>>()),
        );
    }
    if out.is_empty() {
        for e in env {
            if let Some((k, v)) = e.split_once('=') {
                if matches!(
                    k,
                    "VECTOR_CONFIG"
                        | "VECTOR_CONFIG_DIR"
                        | "VECTOR_CONFIG_TOML"
                        | "VECTOR_CONFIG_YAML"
                        | "VECTOR_CONFIG_JSON"
                ) {
                    out.extend(v.split(',').filter(|s| !s.is_empty()).map(String::from));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn config_paths_from_a_vector_command_line_or_its_environment() {
        assert_eq!(
            config_args(&args("/usr/bin/vector --config /etc/vector/a.yaml,/etc/vector/b.toml -C /etc/vector/conf.d"), &[]),
            vec!["/etc/vector/a.yaml", "/etc/vector/b.toml", "/etc/vector/conf.d"]
        );
        assert_eq!(
            config_args(
                &args("vector -c/srv/v.toml --config-yaml=/srv/x.yaml --threads 2"),
                &[]
            ),
            vec!["/srv/v.toml", "/srv/x.yaml"]
        );
        assert_eq!(
            config_args(
                &args("/usr/bin/vector"),
                &args("HOME=/root VECTOR_CONFIG=/opt/v.yaml")
            ),
            vec!["/opt/v.yaml"]
        );
        assert!(config_args(&args("/usr/bin/vector"), &[]).is_empty());
    }
}
