//! The log shippers a drain waits for, behind one interface.
//!
//! A [`Shipper`] is one source of bytes that are not delivered yet: a filebeat registry with
//! its queue (filebeat's own, or one component's of an Elastic Agent), and next to it other
//! shippers, each judged from its own proof of delivery. Each one says what it has not
//! delivered ([`SourceBacklog`]), which directories change when it makes progress (the drain
//! watches them with inotify), and why "drained" would not be exact for it.
//!
//! [`detect`] finds the shippers installed or running on the instance from a [`Spec`] (the
//! flags and the config file). Adding a shipper means a module here and a line in
//! [`detect`]: neither the drain's waiting nor the agent changes.

pub mod cloudwatch;
pub mod filebeat;
pub mod fluentbit;
pub mod vector;

use crate::backlog::{ProcScan, SourceBacklog};
use crate::registry::RegistryError;
use clap::ValueEnum;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// What [`Shipper::look`] returns.
pub type Look<'a> = Pin<Box<dyn Future<Output = Result<SourceBacklog, ShipperError>> + Send + 'a>>;

/// One source of pending bytes, followed over time.
pub trait Shipper: Send {
    /// For logs: `filebeat registry /var/lib/filebeat/registry/filebeat`.
    fn describe(&self) -> String;

    /// Directories whose changes mean the shipper made progress (or wrote its state).
    fn watch_dirs(&self) -> Vec<PathBuf>;

    /// Called once when the drain's sources are opened (the agent: when a hold begins, before
    /// its pre-drain commands; `drainhook drain`: at its start): what the shipper drops is
    /// counted from here.
    fn begin(&mut self) {}

    /// Reads the shipper's state as it is now (only what changed since the last look, where
    /// the format allows) and says what is not delivered yet.
    fn look(&mut self) -> Look<'_>;
}

/// The kinds of shipper drainhook knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// filebeat, alone or under Elastic Agent: registries and disk queue.
    Filebeat,
    /// The Amazon CloudWatch agent: its state files and the drop lines of its log.
    #[value(alias = "cloudwatch-agent")]
    #[serde(alias = "cloudwatch-agent")]
    Cloudwatch,
    /// Fluent Bit: its tail DBs, its chunks and its drop counters.
    FluentBit,
    /// Vector's `file` sources: their checkpoints.json.
    Vector,
}

impl Kind {
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Filebeat => "filebeat",
            Kind::Cloudwatch => "cloudwatch",
            Kind::FluentBit => "fluent-bit",
            Kind::Vector => "vector",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where to look for shippers: what the flags and the config file say, with the defaults of
/// the shippers' packages.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Which kinds to look for; empty: every kind.
    pub only: Vec<Kind>,
    /// filebeat registries given by the operator (data dirs or registry paths). Given, they
    /// replace filebeat's own discovery (its config, its running process, Elastic Agent).
    pub registries: Vec<PathBuf>,
    /// filebeat's config file; it is fine if it does not exist.
    pub filebeat_config: PathBuf,
    /// Elastic Agent's install directory (`/opt/Elastic/Agent`).
    pub elastic_agent_dir: PathBuf,
    /// Name of filebeat's process (`/proc/<pid>/comm`).
    pub filebeat_process: String,
    /// The CloudWatch agent's install directory (its `etc/` config and `logs/state/`).
    pub cloudwatch_agent_dir: PathBuf,
    /// Fluent Bit's config file (classic `.conf` or YAML).
    pub fluent_bit_config: PathBuf,
    /// Vector's config file (YAML or TOML).
    pub vector_config: PathBuf,
    /// Prefixed to every default location (tests point it at a scratch tree; `/` otherwise).
    pub root: PathBuf,
    /// `/proc`.
    pub proc_root: PathBuf,
}

pub const DEFAULT_FILEBEAT_CONFIG: &str = "/etc/filebeat/filebeat.yml";
pub const DEFAULT_ELASTIC_AGENT_DIR: &str = "/opt/Elastic/Agent";
pub const DEFAULT_CLOUDWATCH_AGENT_DIR: &str = "/opt/aws/amazon-cloudwatch-agent";
pub const DEFAULT_FLUENT_BIT_CONFIG: &str = "/etc/fluent-bit/fluent-bit.conf";
pub const DEFAULT_VECTOR_CONFIG: &str = "/etc/vector/vector.yaml";

impl Default for Spec {
    fn default() -> Self {
        Spec {
            only: Vec::new(),
            registries: Vec::new(),
            filebeat_config: PathBuf::from(DEFAULT_FILEBEAT_CONFIG),
            elastic_agent_dir: PathBuf::from(DEFAULT_ELASTIC_AGENT_DIR),
            filebeat_process: "filebeat".into(),
            cloudwatch_agent_dir: PathBuf::from(DEFAULT_CLOUDWATCH_AGENT_DIR),
            fluent_bit_config: PathBuf::from(DEFAULT_FLUENT_BIT_CONFIG),
            vector_config: PathBuf::from(DEFAULT_VECTOR_CONFIG),
            root: PathBuf::from("/"),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

impl Spec {
    /// Whether shippers of this kind are looked for.
    pub fn wants(&self, k: Kind) -> bool {
        self.only.is_empty() || self.only.contains(&k)
    }

    /// A location under the test root (`/etc/x` → `<root>/etc/x`; unchanged without one).
    /// Callers use it for the shippers' default locations and for paths a config file names,
    /// so that a test tree stands for a whole machine.
    pub fn at_root(&self, p: &Path) -> PathBuf {
        match p.strip_prefix("/") {
            Ok(rel) if self.root != Path::new("/") => self.root.join(rel),
            _ => p.to_path_buf(),
        }
    }

    /// Where filebeat's open files are looked for.
    pub fn procs(&self, process_name: &str) -> ProcScan {
        ProcScan {
            proc_root: self.proc_root.clone(),
            process_name: process_name.to_string(),
        }
    }
}

/// The shippers found on the instance.
#[derive(Default)]
pub struct Detected {
    pub sources: Vec<Box<dyn Shipper>>,
    /// What was found but is not waited for, and why (a stale Elastic Agent home, ...).
    pub notes: Vec<String>,
    /// Where detection looked, for the error when nothing is found.
    pub looked: Vec<String>,
}

impl Detected {
    pub fn add(&mut self, s: impl Shipper + 'static) {
        self.sources.push(Box::new(s));
    }
}

/// Finds every shipper the spec asks for. Nothing found is an error that says where it
/// looked; so is a configuration that cannot be read.
pub fn detect(spec: &Spec) -> Result<Detected, ShipperError> {
    let mut d = Detected::default();
    if spec.wants(Kind::Filebeat) {
        filebeat::detect(spec, &mut d)?;
    }
    if spec.wants(Kind::Cloudwatch) {
        cloudwatch::detect(spec, &mut d)?;
    }
    if spec.wants(Kind::FluentBit) {
        fluentbit::detect(spec, &mut d)?;
    }
    if spec.wants(Kind::Vector) {
        vector::detect(spec, &mut d)?;
    }
    if d.sources.is_empty() {
        return Err(ShipperError::NothingFound { looked: d.looked });
    }
    Ok(d)
}

/// Why a shipper's state or configuration could not be read. Each variant names the file.
#[derive(Debug)]
pub enum ShipperError {
    /// filebeat's registry.
    Registry(RegistryError),
    /// filebeat's disk queue.
    Queue(crate::diskqueue::QueueError),
    /// A file or directory could not be read.
    Io { path: PathBuf, source: io::Error },
    /// A configuration file that does not parse or says something impossible.
    Config { path: PathBuf, reason: String },
    /// A state file or database that is not what its format says.
    State { path: PathBuf, reason: String },
    /// A local endpoint of the shipper (Fluent Bit's HTTP server, ...) did not answer.
    Endpoint { url: String, reason: String },
    /// No shipper anywhere drainhook looked.
    NothingFound { looked: Vec<String> },
}

impl fmt::Display for ShipperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShipperError::Registry(e) => e.fmt(f),
            ShipperError::Queue(e) => e.fmt(f),
            ShipperError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ShipperError::Config { path, reason } => {
                write!(f, "config file {}: {reason}", path.display())
            }
            ShipperError::State { path, reason } => {
                write!(f, "state {}: {reason}", path.display())
            }
            ShipperError::Endpoint { url, reason } => write!(f, "{url}: {reason}"),
            ShipperError::NothingFound { looked } => write!(
                f,
                "no log shipper found (looked for {}); name one with --registry or --shipper",
                looked.join("; ")
            ),
        }
    }
}

impl std::error::Error for ShipperError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShipperError::Registry(e) => Some(e),
            ShipperError::Queue(e) => Some(e),
            ShipperError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<RegistryError> for ShipperError {
    fn from(e: RegistryError) -> Self {
        ShipperError::Registry(e)
    }
}

impl From<crate::diskqueue::QueueError> for ShipperError {
    fn from(e: crate::diskqueue::QueueError) -> Self {
        ShipperError::Queue(e)
    }
}
