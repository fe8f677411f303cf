//! filebeat: what its registry acknowledges, and what its disk queue still holds.
//!
//! With the memory queue (the default) a registry offset advances when the output has the
//! events, so offset == size means delivered. With `queue.disk` the registry advances when
//! events are written to the queue's segment files; the queue's own position (`state.dat`)
//! then says what the output has not acknowledged yet ([`crate::diskqueue`]). A
//! `diskqueue/` beside the registry is read whether or not a config says `queue.disk`: the
//! config may be elsewhere or absent, and a leftover queue still holds events.
//!
//! Where the filebeats are: the registries the operator names (`--registry`), or else every
//! one found: the filebeat that `filebeat.yml` describes, running filebeat processes (their
//! `--path.data`), and each component of a running Elastic Agent ([`elastic_agent`]).

pub mod config;
pub mod elastic_agent;

use super::{Detected, Look, Shipper, ShipperError, Spec};
use crate::backlog::{self, ProcScan, QueueBacklog, SourceBacklog};
use crate::diskqueue::DiskQueue;
use crate::registry::{self, Format, Registry};
use config::{FilebeatConfig, PathFlags, QueueConfig};
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// One filebeat: its registry, and its queue where it has one on disk.
pub struct Filebeat {
    /// `filebeat`, or `Elastic Agent component filestream-default`.
    owner: String,
    /// Where the registry was said to be (data dir, registry dir or file).
    registry_path: PathBuf,
    /// filebeat's data dir, where a leftover `diskqueue/` (or `spool.dat`) would be.
    data: Option<PathBuf>,
    /// The disk queue's directory, when the config names one.
    queue_dir: Option<PathBuf>,
    /// A `queue.spool` file: not readable, so "drained" cannot be exact.
    spool: Option<PathBuf>,
    procs: ProcScan,
    registry: Option<Registry>,
    queue: Option<DiskQueue>,
    /// The last registry warning said, so each is logged once.
    warned: Option<String>,
}

impl Filebeat {
    /// A filebeat whose registry is at `registry_path` (its data dir, its `registry` file
    /// or directory, or `registry/filebeat`).
    pub fn new(owner: impl Into<String>, registry_path: PathBuf, procs: ProcScan) -> Self {
        Filebeat {
            owner: owner.into(),
            data: data_dir_of(&registry_path),
            registry_path,
            queue_dir: None,
            spool: None,
            procs,
            registry: None,
            queue: None,
            warned: None,
        }
    }

    /// The filebeat a config file describes.
    pub fn from_config(c: &FilebeatConfig, procs: ProcScan) -> Self {
        let mut f = Filebeat::new("filebeat", c.registry.clone(), procs);
        f.data = Some(c.data.clone());
        match &c.queue {
            QueueConfig::Memory => {}
            QueueConfig::Disk { path } => f.queue_dir = Some(path.clone()),
            QueueConfig::Spool { path } => f.spool = Some(path.clone()),
        }
        f
    }

    /// Where the disk queue is (configured, or the default beside the registry).
    fn queue_dir(&self) -> Option<PathBuf> {
        self.queue_dir
            .clone()
            .or_else(|| self.data.as_ref().map(|d| d.join("diskqueue")))
    }

    /// Why "drained" cannot be exact for this filebeat.
    fn inexact(&self) -> Vec<String> {
        let spool = self.spool.clone().or_else(|| {
            self.data
                .as_ref()
                .map(|d| d.join("spool.dat"))
                .filter(|p| p.exists())
        });
        spool
            .map(|p| {
                format!(
                    "queue.spool ({}): filebeat 7.x's beta spool file acknowledges the registry on write and drainhook cannot read it; \"drained\" then only means every file was written to the spool. Use queue.disk or the memory queue",
                    p.display()
                )
            })
            .into_iter()
            .collect()
    }

    fn look_now(&mut self) -> Result<SourceBacklog, ShipperError> {
        let reg = match &mut self.registry {
            Some(r) => {
                r.refresh()?;
                r
            }
            None => self.registry.insert(Registry::open(&self.registry_path)?),
        };
        let warning = reg.warning().map(String::from);
        if warning.is_some() && warning != self.warned {
            tracing::warn!("{}", warning.as_deref().unwrap_or_default());
        }
        self.warned = warning;
        let mut b = backlog::compute(reg, &self.procs);
        b.owner.clone_from(&self.owner);
        // After the registry: filebeat acks the registry only once the queue's write is
        // synced, so what the registry shows acked is already in the segments read next.
        if self.queue.is_none() {
            if let Some(dir) = self.queue_dir() {
                self.queue = DiskQueue::open_if_exists(&dir)?;
            }
        }
        if let Some(q) = &mut self.queue {
            q.refresh()?;
            let p = q.pending();
            if p.incomplete {
                b.incomplete = true;
                b.waiting.push(format!(
                    "the disk queue cannot be judged from this look: {}",
                    p.reason.as_deref().unwrap_or("a write is under way")
                ));
            }
            b = b.with_queue(
                QueueBacklog {
                    kind: "disk",
                    path: Some(q.dir().to_path_buf()),
                    events: p.events,
                    unit: "events",
                    bytes: p.bytes,
                },
                q.acked_bytes(),
            );
        }
        b.inexact = self.inexact();
        b.proof = match &self.queue {
            Some(_) => "registry offsets (acknowledged when written to the disk queue) and the disk queue's state.dat (acknowledged by the output)",
            None => "registry offsets (acknowledged by the output: memory queue)",
        }
        .into();
        Ok(b)
    }
}

impl Shipper for Filebeat {
    fn describe(&self) -> String {
        format!("{} registry {}", self.owner, self.registry_path.display())
    }

    fn watch_dirs(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if let Some(r) = &self.registry {
            v.push(r.location().watch_dir());
        }
        match (&self.queue, self.queue_dir()) {
            (Some(q), _) => v.push(q.dir().to_path_buf()),
            // Not there yet: its parent tells when it appears.
            (None, Some(d)) => v.extend(d.parent().map(Path::to_path_buf)),
            (None, None) => {}
        }
        v
    }

    fn look(&mut self) -> Look<'_> {
        Box::pin(async move { self.look_now() })
    }
}

/// filebeat's data dir, from a registry path: the dir that holds `registry`.
fn data_dir_of(p: &Path) -> Option<PathBuf> {
    if p.join("registry").exists() {
        return Some(p.to_path_buf());
    }
    p.ancestors()
        .skip(1)
        .find(|a| a.join("registry").exists() && p.starts_with(a.join("registry")))
        .map(Path::to_path_buf)
}

/// Finds filebeat's registries (see the module's header) and adds one source for each.
pub fn detect(spec: &Spec, d: &mut Detected) -> Result<(), ShipperError> {
    let procs = spec.procs(&spec.filebeat_process);
    if !spec.registries.is_empty() {
        // The operator named them: exactly those, each with its queue; the config (if any)
        // tells where a configured queue is when it describes the same registry.
        let config = read_config_if_present(spec)?;
        for r in &spec.registries {
            let same = config.as_ref().filter(|c| same_registry(&c.registry, r));
            d.add(match same {
                Some(c) => Filebeat::from_config(c, procs.clone()),
                None => Filebeat::new("filebeat", r.clone(), procs.clone()),
            });
        }
        return Ok(());
    }
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut add = |d: &mut Detected, f: Filebeat, key: &Path| {
        let key = canonical_registry(key);
        if seen.insert(key) {
            d.add(f);
        }
    };

    // The Elastic Agent's components first: their filebeat processes are found below too.
    let tops = [
        spec.at_root(&spec.elastic_agent_dir),
        spec.at_root(Path::new(elastic_agent::PACKAGE_TOP)),
    ];
    let links = [
        tops[0].join("elastic-agent"),
        spec.at_root(Path::new(elastic_agent::PACKAGE_LINK)),
    ];
    d.looked.push(format!(
        "Elastic Agent under {} and {}",
        tops[0].display(),
        tops[1].display()
    ));
    let ea = elastic_agent::find(&tops, &links, &spec.proc_root);
    for c in &ea.components {
        let owner = format!("Elastic Agent component {}", c.id);
        add(
            d,
            Filebeat::new(owner, c.data.clone(), procs.clone()),
            &c.data.join("registry"),
        );
    }
    for h in &ea.stale_homes {
        d.notes.push(format!(
            "not waited for: {} holds registries of an Elastic Agent that is not the one running (left by an upgrade)",
            h.display()
        ));
    }

    // filebeat processes: their command line says where their data is. (Not under a test
    // root: this machine's processes are not in that tree.)
    let running = if spec.root == Path::new("/") {
        running_filebeats(&spec.proc_root, &spec.filebeat_process)
    } else {
        Vec::new()
    };
    for flags in running {
        let file = flags
            .config_file
            .clone()
            .unwrap_or_else(|| spec.at_root(&spec.filebeat_config));
        let c = match config::read(&file, &flags.paths) {
            Ok(c) => c,
            Err(ShipperError::Io { .. }) => {
                // No readable config: the defaults, with the command line's paths.
                config::parse(&file, "", &flags.paths)?
            }
            Err(e) => return Err(e),
        };
        add(d, Filebeat::from_config(&c, procs.clone()), &c.registry);
    }

    // The config file, for a filebeat that is not running now (starting, or stopped).
    let file = spec.at_root(&spec.filebeat_config);
    d.looked
        .push(format!("filebeat's config {}", file.display()));
    if let Some(mut c) = read_config_if_present(spec)? {
        if spec.root != Path::new("/") {
            c.data = spec.at_root(&c.data);
            c.registry = spec.at_root(&c.registry);
        }
        add(
            d,
            Filebeat::from_config(&c, procs.clone()),
            &c.registry.clone(),
        );
    } else {
        // No config: a package install's default data dir, if it has a registry.
        let data = spec.at_root(Path::new(config::PACKAGE_DATA_DIR));
        d.looked
            .push(format!("filebeat's data dir {}", data.display()));
        if data.join("registry").exists() {
            add(
                d,
                Filebeat::new("filebeat", data.clone(), procs.clone()),
                &data.join("registry"),
            );
        }
    }
    Ok(())
}

fn read_config_if_present(spec: &Spec) -> Result<Option<FilebeatConfig>, ShipperError> {
    let file = spec.at_root(&spec.filebeat_config);
    if !file.exists() {
        return Ok(None);
    }
    config::read(&file, &PathFlags::default()).map(Some)
}

/// The registry directory a path leads to, canonical, to tell two ways of naming it apart.
fn canonical_registry(p: &Path) -> PathBuf {
    let located = registry::locate(p)
        .map(|l| match l.format {
            Format::Memlog => l.path,
            _ => l.path.parent().map(Path::to_path_buf).unwrap_or(l.path),
        })
        .unwrap_or_else(|_| p.to_path_buf());
    fs::canonicalize(&located).unwrap_or(located)
}

fn same_registry(a: &Path, b: &Path) -> bool {
    canonical_registry(a) == canonical_registry(b)
}

/// What a running filebeat's command line says.
struct RunningFlags {
    paths: PathFlags,
    config_file: Option<PathBuf>,
}

/// filebeat processes other than an Elastic Agent's components (found with the agent).
fn running_filebeats(proc_root: &Path, name: &str) -> Vec<RunningFlags> {
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
        if !fs::read_to_string(p.path().join("comm")).is_ok_and(|c| c.trim_end() == name) {
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
        let flags = parse_cmdline(&args);
        // Only a command line that says where the data is: otherwise the config file (below)
        // describes this filebeat as well as its command line would.
        let says_where = flags.paths.data.is_some() || flags.paths.home.is_some();
        let under_agent = args.iter().any(|a| a.contains("/elastic-agent-"));
        if says_where && !under_agent {
            out.push(flags);
        }
    }
    out
}

/// `--path.data X`, `--path.data=X`, `-E path.data=X`, `-c FILE` (relative to path.config).
fn parse_cmdline(args: &[String]) -> RunningFlags {
    let mut paths = PathFlags::default();
    let mut config = None;
    let mut it = args.iter().skip(1).peekable();
    while let Some(a) = it.next() {
        let a = a.trim_start_matches('-');
        let (key, value) = match a.split_once('=') {
            Some((k, v)) if k != "E" => (k.to_string(), Some(v.to_string())),
            _ => (a.to_string(), None),
        };
        let mut value = || value.clone().or_else(|| it.next().cloned());
        match key.as_str() {
            "path.data" => paths.data = value().map(PathBuf::from),
            "path.home" => paths.home = value().map(PathBuf::from),
            "path.config" => paths.config = value().map(PathBuf::from),
            "c" => config = value().map(PathBuf::from),
            "E" => {
                if let Some((k, v)) = value().as_deref().and_then(|s| s.split_once('=')) {
                    match k {
                        "path.data" => paths.data = Some(PathBuf::from(v)),
                        "path.home" => paths.home = Some(PathBuf::from(v)),
                        "path.config" => paths.config = Some(PathBuf::from(v)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let config_file = config.map(|c| {
        if c.is_absolute() {
            c
        } else {
            paths
                .config
                .clone()
                .or_else(|| paths.home.clone())
                .unwrap_or_default()
                .join(c)
        }
    });
    let config_file = config_file.or_else(|| paths_config_default(&paths));
    RunningFlags { paths, config_file }
}

fn paths_config_default(p: &PathFlags) -> Option<PathBuf> {
    p.config
        .as_ref()
        .or(p.home.as_ref())
        .map(|d| d.join("filebeat.yml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_package_filebeat_s_command_line() {
        let f = parse_cmdline(&args(
            "/usr/share/filebeat/bin/filebeat --environment systemd -c /etc/filebeat/filebeat.yml --path.home /usr/share/filebeat --path.config /etc/filebeat --path.data /var/lib/filebeat --path.logs /var/log/filebeat",
        ));
        assert_eq!(
            f.paths.data.as_deref(),
            Some(Path::new("/var/lib/filebeat"))
        );
        assert_eq!(
            f.config_file.as_deref(),
            Some(Path::new("/etc/filebeat/filebeat.yml"))
        );
        let f = parse_cmdline(&args(
            "filebeat -e -E path.data=/srv/fb --path.home=/opt/fb",
        ));
        assert_eq!(f.paths.data.as_deref(), Some(Path::new("/srv/fb")));
        assert_eq!(
            f.config_file.as_deref(),
            Some(Path::new("/opt/fb/filebeat.yml"))
        );
    }

    #[test]
    fn the_data_dir_is_found_from_any_registry_path() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        fs::create_dir_all(data.join("registry/filebeat")).unwrap();
        for p in [
            data.clone(),
            data.join("registry"),
            data.join("registry/filebeat"),
        ] {
            assert_eq!(
                data_dir_of(&p).as_deref(),
                Some(data.as_path()),
                "{}",
                p.display()
            );
        }
    }
}
