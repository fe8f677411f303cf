//! The memlog registry of filebeat 7.9 – 9.x: the newest checkpoint `<txid>.json`
//! plus the operations appended to `log.json` since.
//!
//! Replay follows filebeat's own `loadLogFile`: operations with `id <= txid` are old,
//! the next must be `txid + 1` and each one after rises by exactly 1; at a gap or a
//! line that does not parse, the rest of the log is not valid.
//!
//! We keep our position in `log.json` and read only what was appended since. A
//! checkpoint renames a new `<txid>.json` into place *before* it truncates
//! `log.json`, so listing the checkpoints before and after reading the log tells us
//! whether the log we read belongs to the checkpoint we hold; if not, we start again
//! from the new checkpoint.

use super::array::json_error;
use super::entry::{Entry, RawValue};
use super::{io_err, RegistryError};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const ATTEMPTS: u32 = 10;

#[derive(Deserialize)]
struct Action<'a> {
    op: &'a str,
    id: u64,
}

#[derive(Deserialize)]
struct Data {
    #[serde(alias = "K")]
    k: String,
    #[serde(alias = "V", default)]
    v: Option<RawValue>,
}

/// Lists `<digits>.json` checkpoints, oldest first.
pub(super) fn list_checkpoints(dir: &Path) -> Result<Vec<(u64, PathBuf)>, RegistryError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(io_err(dir))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name
            .strip_suffix(".json")
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((id, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Why replay stopped before the end of `log.json`.
#[derive(Debug, Clone)]
struct Stop {
    line: u64,
    reason: String,
}

pub(super) struct Memlog {
    dir: PathBuf,
    log_path: PathBuf,
    entries: HashMap<String, Entry>,
    /// txid of the checkpoint loaded (0: none).
    txid: u64,
    checkpoint: Option<PathBuf>,
    /// Last operation id applied.
    last_id: u64,
    /// Bytes of log.json consumed (always at a line boundary).
    pos: u64,
    /// Lines of log.json consumed.
    line: u64,
    /// inode/device of the log.json we read, to notice a replaced file.
    log_id: Option<(u64, u64)>,
    /// An action line whose data line has not been read yet.
    pending_op: Option<(bool, u64)>,
    stop: Option<Stop>,
    /// log.json ends in a line still being written.
    partial: bool,
    warning: Option<String>,
    loaded: bool,
}

enum Step {
    Done,
    /// The log does not continue what we hold: start again from the checkpoint.
    Reload,
}

impl Memlog {
    pub(super) fn new(dir: &Path) -> Memlog {
        Memlog {
            dir: dir.to_path_buf(),
            log_path: dir.join("log.json"),
            entries: HashMap::new(),
            txid: 0,
            checkpoint: None,
            last_id: 0,
            pos: 0,
            line: 0,
            log_id: None,
            pending_op: None,
            stop: None,
            partial: false,
            warning: None,
            loaded: false,
        }
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().filter(|e| !e.is_removed())
    }

    pub(super) fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    pub(super) fn incomplete(&self) -> bool {
        self.stop.is_some() || self.partial || self.pending_op.is_some()
    }

    pub(super) fn refresh(&mut self) -> Result<(), RegistryError> {
        for _ in 0..ATTEMPTS {
            let before = list_checkpoints(&self.dir)?;
            let newest = before.last().cloned();
            if !self.loaded || newest.as_ref().map(|c| c.0) != self.checkpoint_txid() {
                self.load_checkpoint(newest)?;
            }
            let step = self.follow_log()?;
            let after = list_checkpoints(&self.dir)?;
            if after.last().map(|c| c.0) != self.checkpoint_txid() {
                // A checkpoint landed while we read: what we read may be a truncated log.
                self.loaded = false;
                continue;
            }
            match step {
                Step::Done => {
                    self.warning = self.stop.as_ref().map(|s| {
                        format!(
                            "{}: replay stopped at line {} ({}); later operations are ignored, as filebeat does, and until filebeat's next checkpoint rewrites the log this registry never counts as drained",
                            self.log_path.display(),
                            s.line,
                            s.reason
                        )
                    });
                    return Ok(());
                }
                Step::Reload => self.loaded = false,
            }
        }
        Err(RegistryError::Unstable {
            path: self.dir.clone(),
            attempts: ATTEMPTS,
        })
    }

    fn checkpoint_txid(&self) -> Option<u64> {
        self.checkpoint.as_ref().map(|_| self.txid)
    }

    fn load_checkpoint(&mut self, newest: Option<(u64, PathBuf)>) -> Result<(), RegistryError> {
        self.entries.clear();
        self.pos = 0;
        self.line = 0;
        self.log_id = None;
        self.pending_op = None;
        self.stop = None;
        self.partial = false;
        match newest {
            None => {
                self.txid = 0;
                self.checkpoint = None;
            }
            Some((txid, path)) => {
                let buf = match fs::read(&path) {
                    Ok(b) => b,
                    // Deleted by a newer checkpoint between listing and reading.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        self.loaded = false;
                        self.txid = txid;
                        self.checkpoint = Some(path);
                        return Ok(());
                    }
                    Err(e) => return Err(io_err(&path)(e)),
                };
                let raw: Vec<RawValue> =
                    serde_json::from_slice(&buf).map_err(|e| json_error(&path, &e))?;
                for mut r in raw {
                    if let Some(key) = r.key.take() {
                        self.entries.insert(key.clone(), Entry::from_raw(key, r));
                    }
                }
                self.txid = txid;
                self.checkpoint = Some(path);
            }
        }
        self.last_id = self.txid;
        self.loaded = true;
        Ok(())
    }

    /// Reads what was appended to log.json since the last call.
    fn follow_log(&mut self) -> Result<Step, RegistryError> {
        if !self.loaded {
            return Ok(Step::Reload);
        }
        let mut f = match fs::File::open(&self.log_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // No log yet (or none since the checkpoint): the checkpoint is the state.
                return Ok(if self.pos == 0 {
                    Step::Done
                } else {
                    Step::Reload
                });
            }
            Err(e) => return Err(io_err(&self.log_path)(e)),
        };
        let meta = f.metadata().map_err(io_err(&self.log_path))?;
        let id = (meta.ino(), meta.dev());
        if self.log_id.is_some_and(|old| old != id) || meta.len() < self.pos {
            return Ok(Step::Reload); // replaced or truncated under us
        }
        self.log_id = Some(id);
        if self.stop.is_some() || meta.len() == self.pos {
            self.partial = meta.len() > self.pos;
            return Ok(Step::Done);
        }
        f.seek(SeekFrom::Start(self.pos))
            .map_err(io_err(&self.log_path))?;
        let mut buf = Vec::with_capacity((meta.len() - self.pos) as usize);
        f.take(meta.len() - self.pos)
            .read_to_end(&mut buf)
            .map_err(io_err(&self.log_path))?;
        let step = self.apply(&buf);
        self.partial = meta.len() > self.pos;
        step
    }

    fn apply(&mut self, buf: &[u8]) -> Result<Step, RegistryError> {
        let mut start = 0;
        while let Some(nl) = memchr(b'\n', &buf[start..]) {
            let line = &buf[start..start + nl];
            let next = start + nl + 1;
            let line_no = self.line + 1;
            let ok = if line.iter().all(u8::is_ascii_whitespace) {
                Ok(())
            } else {
                self.apply_line(line, line_no)
            };
            match ok {
                Ok(()) => {}
                Err(LineError::Gap(reason)) => {
                    // After a checkpoint we may have read the new log against the old
                    // checkpoint; the caller re-lists checkpoints and reloads if so.
                    self.stop = Some(Stop {
                        line: line_no,
                        reason,
                    });
                    return Ok(Step::Done);
                }
                Err(LineError::Bad(reason)) => {
                    if line_no == 1 && self.checkpoint.is_none() {
                        return Err(RegistryError::Malformed {
                            path: self.log_path.clone(),
                            at: "line 1".into(),
                            reason: format!("{reason}, and there is no checkpoint to fall back on"),
                        });
                    }
                    self.stop = Some(Stop {
                        line: line_no,
                        reason,
                    });
                    return Ok(Step::Done);
                }
            }
            self.line = line_no;
            self.pos += next as u64 - start as u64;
            start = next;
        }
        // A partial last line is normal (appends are not synced): leave it for next time.
        Ok(Step::Done)
    }

    fn apply_line(&mut self, line: &[u8], line_no: u64) -> Result<(), LineError> {
        match self.pending_op.take() {
            None => {
                let act: Action = serde_json::from_slice(line)
                    .map_err(|e| LineError::Bad(format!("not an operation: {e}")))?;
                let set = match act.op {
                    "set" => true,
                    "remove" => false,
                    other => return Err(LineError::Bad(format!("unknown operation {other:?}"))),
                };
                if act.id > self.txid && act.id != self.last_id + 1 {
                    return Err(LineError::Gap(format!(
                        "operation id {} does not follow {}",
                        act.id, self.last_id
                    )));
                }
                self.pending_op = Some((set, act.id));
                Ok(())
            }
            Some((set, id)) => {
                let data: Data = serde_json::from_slice(line).map_err(|e| {
                    LineError::Bad(format!("data of operation {id} (line {line_no}): {e}"))
                })?;
                if id <= self.txid {
                    return Ok(()); // older than the checkpoint: already in it
                }
                self.last_id = id;
                if set {
                    let v = data.v.unwrap_or_default();
                    self.entries
                        .insert(data.k.clone(), Entry::from_raw(data.k, v));
                } else {
                    self.entries.remove(&data.k);
                }
                Ok(())
            }
        }
    }
}

enum LineError {
    Gap(String),
    Bad(String),
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}
