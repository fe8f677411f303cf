//! filebeat's registry on disk: find it, detect its format and read its entries.
//!
//! Three on-disk formats exist (see docs/shippers/filebeat.md, "Registry formats"):
//! - 5.x/6.x: one file holding a JSON array, replaced by write-then-rename;
//! - 7.0–7.8: the same array in `registry/filebeat/data.json`;
//! - 7.9–9.x: memlog, a checkpoint `<txid>.json` plus an operation log `log.json`.
//!
//! [`Registry::refresh`] re-reads what changed since the last call. For memlog
//! that is only the bytes appended to `log.json`, so following a busy registry
//! costs work proportional to what filebeat wrote, not to the registry's size.

mod array;
mod entry;
mod memlog;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use entry::{Entry, Identity};
use memlog::Memlog;

/// The on-disk format of a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// filebeat 5.x / 6.x: `<data>/registry` is a file holding a JSON array.
    Array,
    /// filebeat 7.0 – 7.8: `<data>/registry/filebeat/data.json`, the same array.
    DataJson,
    /// filebeat 7.9 – 9.x: `<data>/registry/filebeat/` checkpoint + `log.json`.
    Memlog,
}

impl Format {
    /// The short name used in `backlog --json` and in logs.
    pub const fn name(self) -> &'static str {
        match self {
            Format::Array => "array",
            Format::DataJson => "data.json",
            Format::Memlog => "memlog",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Format::Array => "array file (filebeat 5.x/6.x)",
            Format::DataJson => "data.json (filebeat 7.0-7.8)",
            Format::Memlog => "memlog (filebeat 7.9-9.x)",
        };
        f.write_str(what)
    }
}

/// Everything that can go wrong while reading a registry. Each variant names the file.
#[derive(Debug)]
pub enum RegistryError {
    /// A file or directory could not be read.
    Io { path: PathBuf, source: io::Error },
    /// Nothing at the given path looks like a filebeat registry.
    NotFound { path: PathBuf, looked_for: String },
    /// A registry of a backend drainhook cannot read (bbolt, otel_file_storage, …).
    UnsupportedBackend { path: PathBuf, found: String },
    /// A file is not what its format says it must be.
    Malformed {
        path: PathBuf,
        /// Where in the file: "line 3, column 7", "byte 120", …
        at: String,
        reason: String,
    },
    /// The registry kept changing under the reader; no consistent view was had.
    Unstable { path: PathBuf, attempts: u32 },
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            RegistryError::NotFound { path, looked_for } => write!(
                f,
                "no filebeat registry at {} (looked for {looked_for})",
                path.display()
            ),
            RegistryError::UnsupportedBackend { path, found } => write!(
                f,
                "unsupported filebeat registry backend at {}: found {found}; drainhook reads \
                 the default memlog backend and the older JSON formats only",
                path.display()
            ),
            RegistryError::Malformed { path, at, reason } => {
                write!(
                    f,
                    "malformed registry file {} at {at}: {reason}",
                    path.display()
                )
            }
            RegistryError::Unstable { path, attempts } => write!(
                f,
                "registry {} changed during each of {attempts} read attempts; no consistent view",
                path.display()
            ),
        }
    }
}

impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RegistryError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a registry lives and in which format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub format: Format,
    /// The array file (Array, DataJson) or the memlog directory.
    pub path: PathBuf,
}

impl Location {
    /// The directory whose changes signal a registry write (what `drain` watches).
    pub fn watch_dir(&self) -> PathBuf {
        match self.format {
            Format::Memlog => self.path.clone(),
            // Written by rename over the file: watch its directory.
            Format::Array | Format::DataJson => self
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
        }
    }
}

/// The default registry location of a package install.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/filebeat";

/// Finds the registry from any of: the data dir (`/var/lib/filebeat`), the `registry`
/// file or directory, the `registry/filebeat` directory or a file inside it.
pub fn locate(path: &Path) -> Result<Location, RegistryError> {
    locate_within(path, 4)
}

/// `depth` bounds the walk (data dir → registry → filebeat), so that a link loop is an
/// error, not an endless recursion.
fn locate_within(path: &Path, depth: u8) -> Result<Location, RegistryError> {
    if depth == 0 {
        return Err(RegistryError::NotFound {
            path: path.to_path_buf(),
            looked_for: "a registry within 3 levels (is there a link loop?)".into(),
        });
    }
    let locate = |p: &Path| locate_within(p, depth - 1);
    let meta = fs::metadata(path).map_err(io_err(path))?;
    if meta.is_file() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // A file of a 7.x+ store names its directory. (The data dir's own `meta.json`, the
        // beat's uuid, sits beside a 5.x/6.x `registry` file: not a reason to go up.)
        let checkpoint = name
            .strip_suffix(".json")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let in_store = checkpoint || ["log.json", "active.dat", "data.json"].contains(&name);
        if let (true, Some(parent)) = (in_store, path.parent()) {
            return locate(parent);
        }
        return Ok(Location {
            format: Format::Array,
            path: path.to_path_buf(),
        });
    }
    // A data dir holds `registry`; a 7.x+ registry dir holds `filebeat`.
    for child in ["registry", "filebeat"] {
        let p = path.join(child);
        if p.exists() {
            return locate(&p);
        }
    }
    let has = |n: &str| path.join(n).is_file();
    let checkpoints = memlog::list_checkpoints(path)?;
    if has("log.json") || has("active.dat") || !checkpoints.is_empty() {
        return Ok(Location {
            format: Format::Memlog,
            path: path.to_path_buf(),
        });
    }
    if has("data.json") {
        return Ok(Location {
            format: Format::DataJson,
            path: path.join("data.json"),
        });
    }
    if has("meta.json") {
        // A memlog store that filebeat created but has not written to yet.
        let version = fs::read_to_string(path.join("meta.json")).unwrap_or_default();
        if version.contains("\"1\"") {
            return Ok(Location {
                format: Format::Memlog,
                path: path.to_path_buf(),
            });
        }
    }
    if let Some(found) = detect_unsupported(path) {
        return Err(RegistryError::UnsupportedBackend {
            path: path.to_path_buf(),
            found,
        });
    }
    Err(RegistryError::NotFound {
        path: path.to_path_buf(),
        looked_for: "registry, registry/filebeat/{log.json,<txid>.json,data.json}".into(),
    })
}

/// Names what a directory holds when it is a registry of a backend we do not read.
fn detect_unsupported(dir: &Path) -> Option<String> {
    let entries = fs::read_dir(dir).ok()?;
    let mut names = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_file() && is_bbolt(&p) {
            return Some(format!("a bbolt database ({name})"));
        }
        if name.contains("otel") || name.contains("file_storage") {
            return Some(format!("an otel_file_storage directory ({name})"));
        }
        names.push(name);
    }
    if names.is_empty() {
        return None;
    }
    names.sort();
    Some(format!("unrecognised files [{}]", names.join(", ")))
}

/// bbolt's meta page carries the magic 0xED0CDAED right after the 16-byte page header.
fn is_bbolt(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 20];
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    f.read_exact(&mut head).is_ok() && head[16..20] == 0xED0C_DAEDu32.to_le_bytes()
}

/// A registry followed over time.
pub struct Registry {
    location: Location,
    reader: Reader,
}

enum Reader {
    Array(Vec<Entry>),
    Memlog(Box<Memlog>),
}

impl Registry {
    /// Locates the registry at `path` and reads it once.
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let location = locate(path)?;
        let mut reg = Registry {
            reader: match location.format {
                Format::Memlog => Reader::Memlog(Box::new(Memlog::new(&location.path))),
                _ => Reader::Array(Vec::new()),
            },
            location,
        };
        reg.refresh()?;
        Ok(reg)
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    pub fn format(&self) -> Format {
        self.location.format
    }

    /// Brings the view up to date with what is on disk now.
    pub fn refresh(&mut self) -> Result<(), RegistryError> {
        match &mut self.reader {
            Reader::Array(entries) => *entries = array::read(&self.location.path)?,
            Reader::Memlog(m) => m.refresh()?,
        }
        Ok(())
    }

    /// The live entries, in a stable order (by key).
    pub fn entries(&self) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = match &self.reader {
            Reader::Array(entries) => entries.iter().collect(),
            Reader::Memlog(m) => m.entries().collect(),
        };
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// A note about the operation log that a person should know (replay stopped early).
    pub fn warning(&self) -> Option<&str> {
        match &self.reader {
            Reader::Memlog(m) => m.warning(),
            Reader::Array(_) => None,
        }
    }

    /// The state read may be older than filebeat's: replay stopped at a whole line it could
    /// not apply (a corrupt line, an id gap: until filebeat's next checkpoint rewrites the
    /// log), or the log ends in an operation still being written. A file added by what was
    /// not read could be missing, so such a state is good enough to look at, never to call
    /// "drained" from. (A write under way completes at once; the drain reads again then.)
    pub fn incomplete(&self) -> bool {
        match &self.reader {
            Reader::Memlog(m) => m.incomplete(),
            Reader::Array(_) => false,
        }
    }
}
