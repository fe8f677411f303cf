//! The Amazon CloudWatch agent (`logfile` input → `cloudwatchlogs` output): what its state
//! files say is done, and what its log says it dropped.
//!
//! The agent keeps one state file per tailed file ([`state`]). An event's byte range is
//! handed to that file's state after `PutLogEvents` succeeded for its batch, and, since
//! v1.300059.0, also after the batch was dropped (`sender.go:86,94,107,125,134`); the state is
//! saved every 100 ms when it changed (`internal/state/manager.go:15,120-128`). So a file is
//! done when its done ranges cover it to its size, and whether "done" was "delivered" is read
//! from the agent's log ([`agentlog`]) from the moment the hold began (before the pre-drain
//! commands; for `drainhook drain`, its start).
//!
//! Files are matched to state by path: the state file is named after the path
//! (`state.go:61-75`) and its second line repeats it. A rotated file (renamed or deleted under
//! the agent) loses its state: at the end of the old file the agent deletes the state file,
//! reads what was left and queues it (`tail.go:460-477`, `manager.go:129-134`); the ranges of
//! those last batches are enqueued to a stopped manager and never written. What the state
//! did not show done by then is proven only by a later batch of the same log stream: the
//! agent sends one batch of a stream at a time, in order, when `logs.concurrency` is at most 1
//! (`cloudwatchlogs.go:161-169`, `pusher/queue.go:128-181`), so a newer file's state moving
//! proves every batch queued before it done.

pub mod agentlog;
pub mod config;
pub mod files;
pub mod state;

use super::{Detected, Look, Shipper, ShipperError, Spec};
use crate::backlog::{
    human_bytes, open_files, plural, FileBacklog, Lost, ProcScan, SourceBacklog, State,
};
use agentlog::{AgentLog, Drop};
use config::AgentConfig;
use state::{Format, StateError, StateFile};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The agent's process name: `amazon-cloudwatch-agent`, cut to 15 bytes by the kernel
/// (`start-amazon-cloudwatch-agent` execs the agent binary, `path.go:57-70`).
pub const PROCESS_NAME: &str = "amazon-cloudwat";

/// PutLogEvents' request limit (`pusher/batch.go:23`): the most one dropped batch can hold,
/// as the agent counts it (larger events are truncated to fit).
pub const MAX_BATCH_BYTES: u64 = 1024 * 1024;

/// A torn state file is read again this many times within a look before the look gives up
/// on it (and says the state is being written).
const TORN_RETRIES: usize = 3;

/// One tailed file as last seen: the inode at its path that the state there belongs to.
#[derive(Debug, Clone)]
struct Generation {
    /// Its `collect_list` entry.
    config: usize,
    ino: u64,
    dev: u64,
    size: u64,
    /// Done bytes and ranges from the state attributed to it (none yet: empty).
    ranges: Vec<(u64, u64)>,
    /// The state file's text, to tell a rewrite from the same state.
    text: Option<Vec<u8>>,
}

/// A file whose state the agent deleted (rotated or removed) before showing it done.
#[derive(Debug, Clone)]
struct Orphan {
    source: PathBuf,
    ino: u64,
    dev: u64,
    size: u64,
    done: u64,
    config: usize,
    /// Done bytes of the files of the same stream when its state went: any more proves it.
    watermark: HashMap<PathBuf, u64>,
    proven: bool,
}

/// The CloudWatch agent on this instance.
pub struct CloudwatchAgent {
    dir: PathBuf,
    config: AgentConfig,
    procs: ProcScan,
    /// Followed from the drain's start ([`Shipper::begin`]).
    log: Option<AgentLog>,
    log_error: Option<String>,
    drops: Vec<Drop>,
    /// Done bytes per config entry at the drain's first look, for the lost-bytes bound.
    baseline: Option<BTreeMap<usize, u64>>,
    paths: HashMap<PathBuf, Generation>,
    orphans: Vec<Orphan>,
    /// State files once seen in the range format: read as the old format later, they are cut.
    range_seen: HashMap<PathBuf, bool>,
}

/// A tracked file in one look.
struct Tracked {
    path: PathBuf,
    config: usize,
}

impl CloudwatchAgent {
    pub fn new(dir: PathBuf, config: AgentConfig, procs: ProcScan) -> Self {
        CloudwatchAgent {
            dir,
            config,
            procs,
            log: None,
            log_error: None,
            drops: Vec::new(),
            baseline: None,
            paths: HashMap::new(),
            orphans: Vec::new(),
            range_seen: HashMap::new(),
        }
    }

    /// Why "drained" cannot be exact with this configuration.
    fn inexact(&self) -> Vec<String> {
        let c = &self.config;
        let mut v = Vec::new();
        if c.concurrency > 1 {
            v.push(format!(
                "logs.concurrency is {}: a file's batches are sent {} at a time and complete out of order; its state keeps at most {} ranges (max_persist_state) and merges the two oldest, with the gap between them, when there are more, and a rotated file's last batches are not proven by the next file's. Exact with logs.concurrency 1 (the default)",
                c.concurrency, c.concurrency, c.max_persist_state.max(1)
            ));
        }
        // Before a drain follows it (check, backlog): can it be opened at all?
        let unreadable = self
            .log_error
            .clone()
            .or_else(|| match (&c.agent_log, &self.log) {
                (Some(p), None) => match fs::File::open(p) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Some(e.to_string()),
                    _ => None,
                },
                _ => None,
            });
        match (&c.agent_log, &unreadable) {
            (None, _) => v.push(
                "the agent logs to its console (agent.logfile is \"\"): a dropped batch advances the state as a delivered one does, and only the agent's log says which it was".into(),
            ),
            (Some(p), Some(e)) => v.push(format!(
                "the agent's log {} cannot be read ({e}): a dropped batch advances the state as a delivered one does, and only that log says which it was",
                p.display()
            )),
            _ => {}
        }
        for f in c.files.iter().filter(|f| f.pipe) {
            v.push(format!(
                "{} is a named pipe: what the agent read of it is on no disk",
                f.file_path
            ));
        }
        v
    }

    /// The files the agent tails now, each with its config entry.
    fn tracked(&self, open: &[PathBuf]) -> Vec<Tracked> {
        let mut out: Vec<Tracked> = Vec::new();
        for (i, fc) in self.config.files.iter().enumerate() {
            if fc.pipe {
                continue;
            }
            let all = files::matches(fc, &self.config.state_dir);
            let held: Vec<files::Match> = all
                .iter()
                .filter(|m| open.contains(&m.path))
                .cloned()
                .collect();
            let mut chosen = files::tailed(fc, all);
            // Older matches the agent still holds open are still tailed.
            for m in held {
                if !chosen.iter().any(|c| c.path == m.path) {
                    chosen.push(m);
                }
            }
            for m in chosen {
                if !out.iter().any(|t| t.path == m.path) {
                    out.push(Tracked {
                        path: m.path,
                        config: i,
                    });
                }
            }
        }
        out
    }

    /// The state file of `path`: none, or its text and what it says. A cut read is read
    /// again; still cut after that, it is `Ok(Err(why))` (the look says the state is being
    /// written). One that cannot be read, or is no state file, is an error naming it.
    #[allow(clippy::type_complexity)]
    fn read_state(
        &mut self,
        path: &Path,
    ) -> Result<Result<Option<(Vec<u8>, StateFile)>, String>, ShipperError> {
        let name = state::escape(&path.to_string_lossy());
        let file = self.config.state_dir.join(&name);
        let mut last = String::new();
        for _ in 0..TORN_RETRIES {
            let text = match fs::read(&file) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(None)),
                Err(e) => {
                    return Err(ShipperError::Io {
                        path: file,
                        source: e,
                    })
                }
            };
            match state::parse(&name, &text) {
                Ok(s) => {
                    let was_ranges = self.range_seen.get(path).copied().unwrap_or(false);
                    if s.format == Format::Offset && was_ranges && s.max > 0 {
                        last = "the range line is missing from a range-format state".into();
                        continue;
                    }
                    if s.format == Format::Ranges {
                        self.range_seen.insert(path.to_path_buf(), true);
                    }
                    return Ok(Ok(Some((text, s))));
                }
                Err(StateError::Torn(r)) => last = r,
                Err(StateError::Invalid(reason)) => {
                    return Err(ShipperError::State { path: file, reason })
                }
            }
        }
        Ok(Err(format!(
            "state file {} is being written ({last})",
            file.display()
        )))
    }

    fn look_now(&mut self) -> Result<SourceBacklog, ShipperError> {
        let mut waiting = Vec::new();
        let mut incomplete = false;
        self.read_log();
        let open_list = open_files(&self.procs);
        let open: Vec<PathBuf> = open_list.iter().map(|o| o.target.clone()).collect();
        let tracked = self.tracked(&open);
        let mut rows: Vec<FileBacklog> = Vec::new();
        let mut done_by_config: BTreeMap<usize, u64> = BTreeMap::new();
        let mut formats = Vec::new();
        // Paths seen before that are no longer tracked (rotated away, deleted) are looked at
        // too: their state goes to the file now at the path, or their last bytes are orphaned.
        let mut paths: Vec<(PathBuf, usize)> =
            tracked.iter().map(|t| (t.path.clone(), t.config)).collect();
        let mut gone: Vec<PathBuf> = self
            .paths
            .keys()
            .filter(|p| !paths.iter().any(|(q, _)| q == *p))
            .cloned()
            .collect();
        gone.sort();
        for p in gone {
            let config = self.paths[&p].config;
            paths.push((p, config));
        }
        for (path, config) in paths {
            let st = match self.read_state(&path)? {
                Ok(s) => s,
                Err(e) => {
                    incomplete = true;
                    waiting.push(e);
                    continue;
                }
            };
            // ("0\npath" is also what a range-format agent writes with no range left.)
            if let Some((_, s)) = st.as_ref().filter(|(_, s)| s.max > 0) {
                formats.push(s.format);
            }
            let now = fs::metadata(&path).ok().filter(|m| m.is_file());
            let is_tracked = tracked.iter().any(|t| t.path == path);
            let prev = self.paths.get(&path).cloned();
            let same = |g: &Generation| {
                now.as_ref()
                    .is_some_and(|m| m.ino() == g.ino && m.dev() == g.dev)
            };
            match prev {
                Some(old) if !same(&old) => {
                    // The file at the path is another one, or none: the old one was rotated.
                    let found = find_inode(&path, old.ino, old.dev, &open_list);
                    let old_size = found.as_ref().map_or(old.size, |f| f.1);
                    let owns = match &st {
                        None => false,
                        Some((text, s)) => {
                            old.text.as_deref() == Some(text.as_slice())
                                || (s.max >= old.ranges.last().map_or(0, |r| r.1)
                                    && s.max <= old_size)
                        }
                    };
                    if let (true, Some((text, s))) = (owns, st.clone()) {
                        // The agent has not noticed yet: the state is still the old file's.
                        let cov = s.coverage(old_size);
                        rows.push(row(
                            &path,
                            old.ino,
                            old.dev,
                            &s.ranges,
                            found.clone(),
                            old_size,
                        ));
                        *done_by_config.entry(config).or_default() += cov.done;
                        self.paths.insert(
                            path.clone(),
                            Generation {
                                size: old_size,
                                ranges: s.ranges.clone(),
                                text: Some(text),
                                ..old
                            },
                        );
                        if let (Some(m), true) = (&now, is_tracked) {
                            rows.push(row(
                                &path,
                                m.ino(),
                                m.dev(),
                                &[],
                                Some((path.clone(), m.len())),
                                m.len(),
                            ));
                        }
                        continue;
                    }
                    // The old file's state is gone (or the new file's replaced it).
                    let done = state::coverage(&old.ranges, old_size).done;
                    self.paths.remove(&path);
                    if done < old_size {
                        let watermark = self.watermark(config);
                        self.orphans.push(Orphan {
                            source: path.clone(),
                            ino: old.ino,
                            dev: old.dev,
                            size: old_size,
                            done,
                            config,
                            watermark,
                            proven: false,
                        });
                    }
                    if !is_tracked {
                        continue;
                    }
                }
                _ => {}
            }
            let Some(m) = now.filter(|_| is_tracked) else {
                self.paths.remove(&path);
                continue;
            };
            let (text, ranges) = match &st {
                Some((t, s)) => (Some(t.clone()), s.ranges.clone()),
                None => (None, Vec::new()),
            };
            let cov = state::coverage(&ranges, m.len());
            *done_by_config.entry(config).or_default() += cov.done;
            if cov.gaps > 0 && !cov.truncated {
                waiting.push(format!(
                    "{}: {} in the state (bytes of batches not done yet, between done ones)",
                    path.display(),
                    plural(cov.gaps, "gap")
                ));
            }
            rows.push(row(
                &path,
                m.ino(),
                m.dev(),
                &ranges,
                Some((path.clone(), m.len())),
                m.len(),
            ));
            self.paths.insert(
                path.clone(),
                Generation {
                    config,
                    ino: m.ino(),
                    dev: m.dev(),
                    size: m.len(),
                    ranges,
                    text,
                },
            );
        }
        // Orphans: proven once a file of the same stream shows more done than when the
        // orphan's state went.
        let now_done = self.done_per_file();
        for o in &mut self.orphans {
            if !o.proven {
                let progressed = now_done.iter().any(|(p, &(cfg, d))| {
                    cfg == o.config && d > o.watermark.get(p).copied().unwrap_or(0)
                });
                o.proven = progressed;
            }
            let found = find_inode(&o.source, o.ino, o.dev, &open_list);
            let mut r = FileBacklog::measure(
                Some(o.source.clone()),
                Some(o.ino),
                Some(o.dev),
                if o.proven { o.size } else { o.done },
                Some((
                    found.clone().map_or_else(|| o.source.clone(), |f| f.0),
                    o.size,
                )),
            );
            if found.is_none() {
                r.found_at = None;
            }
            *done_by_config.entry(o.config).or_default() += r.offset;
            if !o.proven {
                waiting.push(format!(
                    "{} (rotated{}): {} not shown done when the agent deleted its state; proven when the agent delivers a later batch of the same log stream",
                    o.source.display(),
                    r.found_at.as_ref().map(|p| format!(" to {}", p.display())).unwrap_or_default(),
                    human_bytes(o.size - o.done)
                ));
            }
            rows.push(r);
        }
        let baseline = self
            .baseline
            .get_or_insert_with(|| done_by_config.clone())
            .clone();
        let format = if formats.contains(&Format::Offset) {
            "offset (before v1.300057.0)"
        } else if formats.is_empty() {
            "no state file yet"
        } else {
            "ranges"
        };
        let progress: u64 = done_by_config.values().sum();
        let mut b = SourceBacklog::of_files(
            "cloudwatch-agent",
            "CloudWatch agent",
            self.config.state_dir.clone(),
            format,
            rows,
        );
        b.progress = progress;
        b.incomplete = incomplete;
        b.waiting = waiting;
        b.inexact = self.inexact();
        b.lost = self.lost(&baseline, &done_by_config);
        b.proof = format!(
            "state files' done ranges ({}, saved after PutLogEvents succeeded or the batch was dropped) and the drop lines of the agent's log ({})",
            self.config.state_dir.display(),
            self.config
                .agent_log
                .as_deref()
                .map_or_else(|| "none: it logs to its console".into(), |p| p.display().to_string())
        );
        Ok(b)
    }

    /// Done bytes of every file followed now, with its config entry.
    fn done_per_file(&self) -> HashMap<PathBuf, (usize, u64)> {
        self.paths
            .iter()
            .map(|(p, g)| {
                (
                    p.clone(),
                    (g.config, state::coverage(&g.ranges, g.size).done),
                )
            })
            .collect()
    }

    fn watermark(&self, config: usize) -> HashMap<PathBuf, u64> {
        self.done_per_file()
            .into_iter()
            .filter(|(_, (c, _))| *c == config)
            .map(|(p, (_, d))| (p, d))
            .collect()
    }

    /// Reads what the agent logged since the last look (only during a drain).
    fn read_log(&mut self) {
        let Some(log) = &mut self.log else { return };
        match log.read_new() {
            Ok(new) => {
                for d in &new {
                    tracing::error!(
                        "the CloudWatch agent dropped data during the drain (its state shows it done, but it was not delivered): {}",
                        d.line
                    );
                }
                self.drops.extend(new);
                self.log_error = None;
            }
            Err(e) => {
                let msg = format!("{e}");
                if self.log_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(
                        "cannot read the CloudWatch agent's log {}: {e}",
                        log.path().display()
                    );
                }
                self.log_error = Some(msg);
            }
        }
    }

    /// What the drops found so far amount to.
    fn lost(&self, baseline: &BTreeMap<usize, u64>, now: &BTreeMap<usize, u64>) -> Option<Lost> {
        if self.drops.is_empty() {
            return None;
        }
        let batches = self.drops.iter().filter(|d| d.kind.is_batch()).count();
        let events = self.drops.len() - batches;
        // Which config entries' files the dropped data came from: by the log group the line
        // names (placeholders not resolved in a JSON config match anything).
        let mut configs: Vec<usize> = Vec::new();
        for d in &self.drops {
            let hits: Vec<usize> = self
                .config
                .files
                .iter()
                .enumerate()
                .filter(|(_, fc)| {
                    d.target.as_deref().is_none_or(|t| {
                        fc.group.is_empty()
                            || fc.group.contains('{')
                            || t.starts_with(&format!("{}/", fc.group))
                    })
                })
                .map(|(i, _)| i)
                .collect();
            configs.extend(if hits.is_empty() {
                (0..self.config.files.len()).collect()
            } else {
                hits
            });
        }
        configs.sort_unstable();
        configs.dedup();
        let advanced: u64 = configs
            .iter()
            .map(|c| {
                now.get(c)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(baseline.get(c).copied().unwrap_or(0))
            })
            .sum();
        let cap = (batches + events) as u64 * MAX_BATCH_BYTES;
        let (bytes, how) = if advanced > 0 {
            (
                advanced.min(cap),
                format!(
                    "{} is an upper bound: what the state of their files advanced during the drain, at most 1 MiB (PutLogEvents' request limit) per batch",
                    human_bytes(advanced.min(cap))
                ),
            )
        } else {
            (
                cap,
                format!(
                    "no state advanced for them: {} counts 1 MiB (PutLogEvents' request limit) per batch",
                    human_bytes(cap)
                ),
            )
        };
        let mut targets: Vec<&str> = self
            .drops
            .iter()
            .filter_map(|d| d.target.as_deref())
            .collect();
        targets.sort_unstable();
        targets.dedup();
        let mut what = plural(batches, "batch").replace("batchs", "batches") + " dropped";
        if events > 0 {
            what += &format!(" and {} discarded", plural(events, "event"));
        }
        let log = self
            .log
            .as_ref()
            .map(|l| l.path().display().to_string())
            .unwrap_or_default();
        Some(Lost {
            bytes,
            evidence: format!(
                "{what} by the agent{} ({log}); its log does not say how many bytes: {how}",
                if targets.is_empty() {
                    String::new()
                } else {
                    format!(" for {}", targets.join(", "))
                }
            ),
        })
    }
}

/// The row of a file at `path` whose done ranges are `ranges`, found at `found` with `size`.
fn row(
    path: &Path,
    ino: u64,
    dev: u64,
    ranges: &[(u64, u64)],
    found: Option<(PathBuf, u64)>,
    size: u64,
) -> FileBacklog {
    let cov = state::coverage(ranges, size);
    let offset = if cov.truncated {
        ranges.last().map_or(0, |r| r.1)
    } else {
        cov.prefix
    };
    let mut r = FileBacklog::measure(
        Some(path.to_path_buf()),
        Some(ino),
        Some(dev),
        offset,
        found,
    );
    if !cov.truncated {
        r.pending = cov.pending;
        r.state = if cov.pending == 0 {
            State::Shipped
        } else {
            State::Pending
        };
    }
    r
}

/// Where a rotated-away inode is now: renamed beside its old path, or only open in the
/// agent (deleted).
fn find_inode(
    old: &Path,
    ino: u64,
    dev: u64,
    open: &[crate::backlog::OpenFile],
) -> Option<(PathBuf, u64)> {
    if let Some(dir) = old.parent() {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if let Ok(m) = e.metadata() {
                    if m.is_file() && m.ino() == ino && m.dev() == dev {
                        return Some((e.path(), m.len()));
                    }
                }
            }
        }
    }
    open.iter()
        .find(|o| o.meta.ino() == ino && o.meta.dev() == dev)
        .map(|o| (o.target.clone(), o.meta.len()))
}

impl Shipper for CloudwatchAgent {
    fn describe(&self) -> String {
        format!(
            "CloudWatch agent {} (config {})",
            self.dir.display(),
            self.config.describe()
        )
    }

    fn watch_dirs(&self) -> Vec<PathBuf> {
        let mut v = vec![self.config.state_dir.clone()];
        if let Some(d) = self.config.agent_log.as_deref().and_then(Path::parent) {
            if d != self.config.state_dir {
                v.push(d.to_path_buf());
            }
        }
        v
    }

    fn begin(&mut self) {
        self.drops.clear();
        self.baseline = None;
        self.log_error = None;
        self.log = None;
        if let Some(p) = self.config.agent_log.clone() {
            match AgentLog::at_end(&p) {
                Ok(l) => self.log = Some(l),
                Err(e) => {
                    tracing::warn!(
                        "cannot follow the CloudWatch agent's log {}: {e}",
                        p.display()
                    );
                    self.log_error = Some(e.to_string());
                }
            }
        }
    }

    fn look(&mut self) -> Look<'_> {
        Box::pin(async move { self.look_now() })
    }
}

/// Finds the CloudWatch agent: its install directory with a configuration that tails files.
pub fn detect(spec: &Spec, d: &mut Detected) -> Result<(), ShipperError> {
    // The default install dir is moved under a test root; a dir the operator named is not.
    let dir = if spec.cloudwatch_agent_dir == Path::new(super::DEFAULT_CLOUDWATCH_AGENT_DIR) {
        spec.at_root(&spec.cloudwatch_agent_dir)
    } else {
        spec.cloudwatch_agent_dir.clone()
    };
    d.looked
        .push(format!("the CloudWatch agent under {}", dir.display()));
    let Some(config) = config::read(&dir)? else {
        if dir.join("logs/state").is_dir() {
            d.notes.push(format!(
                "the CloudWatch agent at {} has state files but no configuration ({} or {}): not waited for",
                dir.display(),
                config::TOML,
                config::JSON
            ));
        }
        return Ok(());
    };
    if config.files.is_empty() {
        d.notes.push(format!(
            "the CloudWatch agent's configuration {} tails no log file (logs.logs_collected.files): not waited for",
            config.describe()
        ));
        return Ok(());
    }
    d.add(CloudwatchAgent::new(dir, config, spec.procs(PROCESS_NAME)));
    Ok(())
}
