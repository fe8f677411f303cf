//! Fluent Bit: its tail inputs' offsets, its chunks, and its drop counters.
//!
//! The tail input's DB ([`taildb`]) advances when lines are *read into a chunk*, not when an
//! output has them (fluent/fluent-bit#2846), so an offset at the end of its file proves only
//! "read". Delivered means three things at once:
//! 1. every offset is at its file's size (the file matched by inode, rotated ones included);
//! 2. no chunk is left: the `*.flb` files under `storage.path/<input>/` for filesystem
//!    storage ([`chunks`]: the header's content length, not the preallocated file's size),
//!    and the HTTP server's `/api/v1/storage` ([`api`]), which is rebuilt every 5 s: it must
//!    show no chunk in two reads at least one refresh apart, the first made once the offsets
//!    were at the end, so that it describes the chunks those lines went into;
//! 3. no drop counted: `/api/v2/metrics`' `dropped_records_total` and
//!    `retries_failed_total` of every output, compared with their values when the drain
//!    began. A drop is reported as lost ([`Lost`]), never hidden behind "drained".
//!
//! Without the HTTP server, drops cannot be seen (a chunk dropped after its retries is
//! deleted like a delivered one), and memory chunks cannot be seen at all: "drained" is then
//! not exact, `check` says why, and the drain falls back to "offsets at the end (and no
//! chunk file left), then quiet for the settle".
//!
//! Where the Fluent Bit is: the config of a running `fluent-bit` process (`-c`), else
//! `--fluent-bit-config` (default `/etc/fluent-bit/fluent-bit.conf`, else `fluent-bit.yaml`
//! beside it).

pub mod api;
pub mod chunks;
pub mod config;
pub mod taildb;

use super::{Detected, Look, Shipper, ShipperError, Spec};
use crate::backlog::{
    human_bytes, open_files, plural, FileBacklog, Lost, ProcScan, QueueBacklog, SourceBacklog,
};
use api::{Counters, Endpoint, StorageView};
use config::{FluentBitConfig, Storage};
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// Fluent Bit's process name (`/proc/<pid>/comm`).
pub const PROCESS: &str = "fluent-bit";

/// How often Fluent Bit rebuilds `/api/v1/storage` (src/flb_storage.c:381-384: 5000 ms). Its
/// own period, not a setting: drainhook never assumes a shorter one.
pub const STORAGE_REFRESH: Duration = Duration::from_secs(5);
/// Slack for a refresh that runs late on a busy event loop.
pub const REFRESH_SLACK: Duration = Duration::from_secs(1);
/// The HTTP answers are reused for this long: the DB may change hundreds of times a second,
/// and each change wakes the drain; the metrics are rebuilt once a second anyway.
const HTTP_REUSE: Duration = Duration::from_millis(500);

/// One Fluent Bit, from its configuration.
pub struct FluentBit {
    config: FluentBitConfig,
    procs: ProcScan,
    endpoint: Option<Endpoint>,
    /// The drop counters when the hold began (taken at the first look after `begin`, which
    /// the agent makes before its pre-drain commands).
    baseline: Option<Counters>,
    /// The last HTTP answers and when they were read.
    cached: Option<(Instant, Http)>,
    /// Since when every offset has been at the end, at which sum of offsets, and the first
    /// storage read since then that showed no chunk.
    at_end: Option<AtEnd>,
    /// Fluent Bit's counters went down during the drain (it restarted).
    restarted: bool,
}

#[derive(Debug, Clone, Copy)]
struct AtEnd {
    offsets: u64,
    /// When the offsets were first seen there.
    since: Instant,
    /// When the first storage read made since then that showed no chunk was made.
    first_empty_read: Option<Instant>,
}

/// What the HTTP server said at one look.
#[derive(Debug, Clone)]
struct Http {
    metrics: Counters,
    /// `None`: `/api/v1/storage` answers 404 (`storage.metrics off`, or a Fluent Bit before 2.0).
    storage: Option<StorageView>,
}

impl FluentBit {
    pub fn new(config: FluentBitConfig, procs: ProcScan) -> Self {
        let endpoint = config
            .service
            .http_server
            .then(|| Endpoint::new(&config.service.http_listen, config.service.http_port));
        FluentBit {
            config,
            procs,
            endpoint,
            baseline: None,
            cached: None,
            at_end: None,
            restarted: false,
        }
    }

    /// The directories of the tail inputs' filesystem chunks.
    fn chunk_dirs(&self) -> Vec<PathBuf> {
        let Some(sp) = &self.config.service.storage_path else {
            return Vec::new();
        };
        self.config
            .tails
            .iter()
            .filter(|t| t.storage == Storage::Filesystem)
            .map(|t| sp.join(&t.instance))
            .collect()
    }

    /// The inputs whose chunks in `/api/v1/storage` hold tailed lines: the tail inputs, the
    /// emitters of filters that re-emit them, and `storage_backlog` (chunks of an earlier run).
    fn counts_for(&self, name: &str) -> bool {
        self.config.tails.iter().any(|t| t.reported_name() == name)
            || self.config.emitters.iter().any(|e| e == name)
            || name.starts_with("storage_backlog")
    }

    /// Why "drained" cannot be exact with this configuration.
    fn inexact(&self, storage_missing: bool) -> Vec<String> {
        let mut v = Vec::new();
        let memory: Vec<String> = self
            .config
            .tails
            .iter()
            .filter(|t| t.storage == Storage::Memory)
            .map(|t| t.reported_name().to_string())
            .collect();
        if self.endpoint.is_none() {
            if !memory.is_empty() {
                v.push(format!(
                    "the HTTP server is off and {} keep{} chunks in memory (storage.type memory): nothing outside Fluent Bit shows the lines read but not delivered. Set HTTP_Server On in [SERVICE] (storage.metrics is on by default)",
                    memory.join(", "),
                    if memory.len() == 1 { "s its" } else { " their" }
                ));
            } else {
                v.push("the HTTP server is off: a chunk dropped after its last retry is deleted like a delivered one, and only /api/v2/metrics counts drops. Set HTTP_Server On in [SERVICE]".into());
            }
        } else if storage_missing && !memory.is_empty() {
            v.push(format!(
                "/api/v1/storage is not served (storage.metrics off, or Fluent Bit older than 2.0): the memory chunks of {} cannot be seen. Set storage.metrics on in [SERVICE]",
                memory.join(", ")
            ));
        }
        for t in self.config.tails.iter().filter(|t| t.db.is_none()) {
            v.push(format!(
                "tail input {} (Path {}) has no DB: its offsets live only in Fluent Bit's memory. Set DB",
                t.reported_name(),
                t.path
            ));
        }
        if self.restarted {
            v.push("Fluent Bit restarted during the drain (its counters started again): drops before the restart are not counted".into());
        }
        v
    }

    /// The HTTP server's answers, read again when the last ones are older than
    /// [`HTTP_REUSE`]. An error names the URL.
    async fn http(&mut self) -> Result<Option<Http>, ShipperError> {
        let Some(ep) = self.endpoint.clone() else {
            return Ok(None);
        };
        if let Some((at, h)) = &self.cached {
            if at.elapsed() < HTTP_REUSE {
                return Ok(Some(h.clone()));
            }
        }
        let endpoint_error = |path: &str, reason: String| ShipperError::Endpoint {
            url: ep.url(path),
            reason,
        };
        let (status, body) = ep
            .get("/api/v2/metrics")
            .await
            .map_err(|r| endpoint_error("/api/v2/metrics", r))?;
        if status != 200 {
            return Err(endpoint_error(
                "/api/v2/metrics",
                format!("HTTP {status} (metrics are served once Fluent Bit has run a second)"),
            ));
        }
        let text = String::from_utf8_lossy(&body);
        let metrics =
            api::parse_metrics(&text).map_err(|r| endpoint_error("/api/v2/metrics", r))?;
        let storage = if self.config.service.storage_metrics {
            let (status, body) = ep
                .get("/api/v1/storage")
                .await
                .map_err(|r| endpoint_error("/api/v1/storage", r))?;
            match status {
                200 => Some(
                    api::parse_storage(&body).map_err(|r| endpoint_error("/api/v1/storage", r))?,
                ),
                404 => None,
                s => return Err(endpoint_error("/api/v1/storage", format!("HTTP {s}"))),
            }
        } else {
            None
        };
        let h = Http { metrics, storage };
        self.cached = Some((Instant::now(), h.clone()));
        Ok(Some(h))
    }

    async fn look_now(&mut self) -> Result<SourceBacklog, ShipperError> {
        // The offsets first, then the chunks: a line read after the offsets were taken is
        // in a chunk (or in an offset seen at the next look), never in neither.
        let look_started = Instant::now();
        let mut dbs: Vec<PathBuf> = Vec::new();
        for db in self.config.tails.iter().filter_map(|t| t.db.clone()) {
            if !dbs.contains(&db) {
                dbs.push(db);
            }
        }
        let mut rows = Vec::new();
        for db in &dbs {
            rows.extend(taildb::read(db)?);
        }
        let mut seen = Seen::default();
        let files: Vec<FileBacklog> = rows
            .iter()
            .map(|r| measure(r, &self.procs, &mut seen))
            .collect();
        drop(seen);
        let disk = chunks::scan(&self.chunk_dirs());
        let http = self.http().await?;

        let state = match dbs.as_slice() {
            [one] => one.clone(),
            _ => self.config.file.clone(),
        };
        let mut b =
            SourceBacklog::of_files("fluent-bit", "fluent-bit", state, "in_tail_files", files);

        // Chunks: the HTTP view covers memory and filesystem alike; the files add their bytes
        // and are never stale.
        let http_chunks = http.as_ref().and_then(|h| h.storage.as_ref()).map(|s| {
            s.inputs
                .iter()
                .filter(|(n, _)| self.counts_for(n))
                .map(|(_, c)| *c)
                .sum::<u64>()
        });
        let events = http_chunks.unwrap_or(0).max(disk.count);
        let queue_path = self
            .config
            .service
            .storage_path
            .clone()
            .filter(|_| !self.chunk_dirs().is_empty());
        let delivered = http.as_ref().map_or(0, |h| h.metrics.delivered_bytes());
        b = b.with_queue(
            QueueBacklog {
                kind: "chunks",
                path: queue_path,
                events,
                unit: "chunks",
                bytes: disk.bytes,
            },
            delivered,
        );
        for p in &disk.unreadable {
            b.waiting.push(format!(
                "chunk {} has no readable header yet (being created, or damaged)",
                p.display()
            ));
        }

        // Drops since the drain began.
        if let Some(h) = &http {
            match &self.baseline {
                None => self.baseline = Some(h.metrics.clone()),
                Some(base) if h.metrics.restarted_since(base) => {
                    tracing::warn!(
                        "Fluent Bit's counters went down: it restarted during the drain; drops before the restart are not counted"
                    );
                    self.restarted = true;
                    self.baseline = Some(h.metrics.clone());
                }
                Some(_) => {}
            }
            if let Some(base) = &self.baseline {
                b.lost = lost(base, &h.metrics);
            }
        }

        // The storage view proves "no chunk" only when read twice, a refresh apart, both
        // times after every offset reached its end.
        let offsets_at_end = !b.files.iter().any(|f| f.state.blocks_drain());
        if offsets_at_end {
            let offsets = b.acked_bytes();
            if self.at_end.map(|a| a.offsets) != Some(offsets) {
                self.at_end = Some(AtEnd {
                    offsets,
                    since: look_started,
                    first_empty_read: None,
                });
            }
            // When the storage answer was read (it may be reused for a moment).
            let read_at = self.cached.as_ref().map(|(at, _)| *at);
            if let (Some(at), true) = (self.at_end.as_mut(), http_chunks.is_some()) {
                if events > 0 {
                    at.first_empty_read = None;
                } else if read_at.is_some_and(|r| r < at.since) && at.first_empty_read.is_none() {
                    // Read before the offsets reached the end: it may predate those lines.
                    b.waiting.push(
                        "/api/v1/storage was last read before the offsets reached the end: reading it again".into(),
                    );
                } else {
                    let first = *at
                        .first_empty_read
                        .get_or_insert_with(|| read_at.unwrap_or_else(Instant::now));
                    let wait = STORAGE_REFRESH + REFRESH_SLACK;
                    let since = first.elapsed();
                    if since < wait {
                        b.waiting.push(format!(
                            "/api/v1/storage shows no chunk; confirming after its next refresh (every {}s), {:.1}s from now",
                            STORAGE_REFRESH.as_secs(),
                            (wait - since).as_secs_f64()
                        ));
                    }
                }
            }
        } else {
            self.at_end = None;
        }

        b.inexact = self.inexact(http.as_ref().is_some_and(|h| h.storage.is_none()));
        b.proof = match (&self.endpoint, self.chunk_dirs().is_empty()) {
            (Some(_), false) => "tail DB offsets (advanced on read), no chunk file left under storage.path and none in /api/v1/storage (two reads a refresh apart), and no drop counted in /api/v2/metrics",
            (Some(_), true) => "tail DB offsets (advanced on read), no chunk in /api/v1/storage (two reads a refresh apart), and no drop counted in /api/v2/metrics",
            (None, false) => "tail DB offsets (advanced on read) and no chunk file left under storage.path; drops are not visible",
            (None, true) => "tail DB offsets only (they advance on read): nothing shows delivery",
        }
        .into();
        Ok(b)
    }
}

/// What was dropped since `base`, as far as Fluent Bit counts it.
fn lost(base: &Counters, now: &Counters) -> Option<Lost> {
    let delta = |m: &std::collections::BTreeMap<String, u64>,
                 b: &std::collections::BTreeMap<String, u64>,
                 k: &str| {
        m.get(k)
            .copied()
            .unwrap_or(0)
            .saturating_sub(b.get(k).copied().unwrap_or(0))
    };
    let mut records = 0;
    let mut estimated = 0u64;
    let mut parts = Vec::new();
    for out in now.dropped_records.keys() {
        let r = delta(&now.dropped_records, &base.dropped_records, out);
        if r == 0 {
            continue;
        }
        records += r;
        let failed = delta(&now.retries_failed, &base.retries_failed, out);
        let (pr, pb) = (
            now.proc_records.get(out).copied().unwrap_or(0),
            now.proc_bytes.get(out).copied().unwrap_or(0),
        );
        estimated += r * pb.checked_div(pr).unwrap_or(1).max(1);
        let dropped = format!("{} dropped by output {out}", plural(r as usize, "record"));
        parts.push(if failed > 0 {
            format!(
                "{dropped} ({} abandoned after its last retry)",
                plural(failed as usize, "chunk")
            )
        } else {
            dropped
        });
    }
    if records == 0 {
        return None;
    }
    let drop_bytes = now
        .drop_bytes
        .map(|n| n.saturating_sub(base.drop_bytes.unwrap_or(0)))
        .filter(|n| *n > 0);
    let (bytes, how) = match drop_bytes {
        Some(n) => (n, "encoded record bytes as Fluent Bit counts them (routing_logs_drop_bytes_total)".to_string()),
        None => (
            estimated,
            "estimated from each output's delivered bytes per record: this Fluent Bit does not count dropped bytes".to_string(),
        ),
    };
    Some(Lost {
        bytes,
        evidence: format!(
            "/api/v2/metrics: {}; {} {how}",
            parts.join(", "),
            human_bytes(bytes)
        ),
    })
}

impl Shipper for FluentBit {
    fn describe(&self) -> String {
        format!("fluent-bit config {}", self.config.file.display())
    }

    /// The chunk directories: a chunk deleted is a delivery. Not the DB's directory: its
    /// offsets advance on read, the 0.5 s tick notices them, and SQLite opens `<db>-wal` for
    /// writing even on a read-only connection, so each look's own close would wake the next.
    fn watch_dirs(&self) -> Vec<PathBuf> {
        let mut v: BTreeSet<PathBuf> = BTreeSet::new();
        for d in self.chunk_dirs() {
            match (d.is_dir(), d.parent()) {
                (true, _) => {
                    v.insert(d);
                }
                (false, Some(p)) if p.is_dir() => {
                    v.insert(p.to_path_buf());
                }
                _ => {}
            }
        }
        v.into_iter().collect()
    }

    fn begin(&mut self) {
        // The counters are read again at the first look: drops are counted from now.
        self.baseline = None;
        self.cached = None;
        self.at_end = None;
        self.restarted = false;
    }

    fn look(&mut self) -> Look<'_> {
        Box::pin(self.look_now())
    }
}

/// What one look already listed: Fluent Bit's open files and the directories searched.
#[derive(Default)]
struct Seen {
    open: Option<Vec<crate::backlog::OpenFile>>,
    dirs: HashMap<PathBuf, Vec<(String, PathBuf, fs::Metadata)>>,
}

/// A row matched to its file by inode: at its name, then renamed in the same directory (a
/// name continuing its name's stem), then among Fluent Bit's open files (rotated away or
/// deleted, still being read). The DB keeps no device: the inode alone.
fn measure(r: &taildb::Row, procs: &ProcScan, seen: &mut Seen) -> FileBacklog {
    let found = find(r, procs, seen);
    FileBacklog::measure(Some(r.name.clone()), Some(r.inode), None, r.offset, found)
}

fn find(r: &taildb::Row, procs: &ProcScan, seen: &mut Seen) -> Option<(PathBuf, u64)> {
    if let Ok(m) = fs::metadata(&r.name) {
        if m.is_file() && m.ino() == r.inode {
            return Some((r.name.clone(), m.len()));
        }
    }
    if let (Some(dir), Some(base)) = (r.name.parent(), r.name.file_name().and_then(|b| b.to_str()))
    {
        let stem = base.split('.').next().unwrap_or(base).to_string();
        let listing = seen.dirs.entry(dir.to_path_buf()).or_insert_with(|| {
            fs::read_dir(dir)
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|e| {
                            let n = e.file_name().to_str()?.to_string();
                            let p = e.path();
                            let m = fs::metadata(&p).ok()?;
                            Some((n, p, m))
                        })
                        .collect()
                })
                .unwrap_or_default()
        });
        if !stem.is_empty() {
            if let Some((_, p, m)) = listing.iter().find(|(n, _, m)| {
                n != base && n.starts_with(&stem) && m.is_file() && m.ino() == r.inode
            }) {
                return Some((p.clone(), m.len()));
            }
        }
    }
    let open = seen.open.get_or_insert_with(|| open_files(procs));
    open.iter()
        .find(|o| o.meta.is_file() && o.meta.ino() == r.inode)
        .map(|o| (o.target.clone(), o.meta.len()))
}

/// The config a running Fluent Bit was started with (`-c FILE`, `--config=FILE`).
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
        let Ok(raw) = fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let mut it = args.iter().skip(1);
        while let Some(a) = it.next() {
            let file = match a.as_str() {
                "-c" | "--config" => it.next().cloned(),
                s => s.strip_prefix("--config=").map(str::to_string),
            };
            if let Some(f) = file {
                let f = PathBuf::from(f);
                // A relative -c is relative to its working directory.
                let f = if f.is_absolute() {
                    f
                } else {
                    fs::read_link(p.path().join("cwd"))
                        .unwrap_or_default()
                        .join(f)
                };
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        }
    }
    out
}

/// Finds Fluent Bit's configuration (see the module's header) and adds a source for it.
pub fn detect(spec: &Spec, d: &mut Detected) -> Result<(), ShipperError> {
    let procs = spec.procs(PROCESS);
    let mut files: Vec<PathBuf> = if spec.root == Path::new("/") {
        running_configs(&spec.proc_root)
    } else {
        Vec::new()
    };
    // A config the operator named is used as it is, with the paths it names; the default
    // one is looked for under the test root (with its paths under the root too).
    let default = spec.fluent_bit_config == Path::new(super::DEFAULT_FLUENT_BIT_CONFIG);
    let root = if default && files.is_empty() {
        spec.root.clone()
    } else {
        PathBuf::from("/")
    };
    if files.is_empty() {
        let conf = if default {
            spec.at_root(&spec.fluent_bit_config)
        } else {
            spec.fluent_bit_config.clone()
        };
        let yaml = conf.with_file_name("fluent-bit.yaml");
        d.looked
            .push(format!("Fluent Bit's config {}", conf.display()));
        if conf.exists() {
            files.push(conf);
        } else if yaml.exists() && default {
            files.push(yaml);
        }
    }
    for f in files {
        let c = config::read(&f, &root)?;
        if c.tails.is_empty() {
            d.notes.push(format!(
                "not waited for: Fluent Bit's config {} has no tail input",
                f.display()
            ));
            continue;
        }
        d.add(FluentBit::new(c, procs.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(dropped: u64, failed: u64, drop_bytes: Option<u64>) -> Counters {
        let mut c = Counters::default();
        c.dropped_records.insert("http.0".into(), dropped);
        c.retries_failed.insert("http.0".into(), failed);
        c.proc_records.insert("http.0".into(), 100);
        c.proc_bytes.insert("http.0".into(), 10_000);
        c.drop_bytes = drop_bytes;
        c
    }

    #[test]
    fn drops_since_the_start_are_lost_bytes() {
        assert_eq!(lost(&counters(5, 1, None), &counters(5, 1, None)), None);
        let l = lost(&counters(5, 1, Some(500)), &counters(15, 2, Some(1500))).unwrap();
        assert_eq!(l.bytes, 1000);
        assert!(
            l.evidence.contains("10 records dropped by output http.0"),
            "{}",
            l.evidence
        );
        assert!(
            l.evidence
                .contains("(1 chunk abandoned after its last retry)"),
            "{}",
            l.evidence
        );
        // Without the router's byte counter: estimated, and said so.
        let l = lost(&counters(0, 0, None), &counters(10, 0, None)).unwrap();
        assert_eq!(l.bytes, 1000);
        assert!(l.evidence.contains("estimated"), "{}", l.evidence);
    }

    #[test]
    fn a_restart_is_noticed() {
        assert!(counters(1, 0, None).restarted_since(&counters(5, 0, None)));
        assert!(!counters(5, 0, None).restarted_since(&counters(5, 0, None)));
    }
}
