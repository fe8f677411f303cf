//! TEMPORARY STUB: replaced by the real reader from the `diskqueue` branch before merge.
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub segment: u64,
    pub byte_index: u64,
    pub frame_index: u64,
}

#[derive(Debug, Clone, Default)]
pub struct QueuePending {
    pub events: u64,
    pub bytes: u64,
    pub segments: usize,
    pub position: Option<Position>,
    pub incomplete: bool,
}

#[derive(Debug)]
pub enum QueueError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
        }
    }
}
impl std::error::Error for QueueError {}

pub struct DiskQueue {
    dir: PathBuf,
}

impl DiskQueue {
    pub fn open(dir: &Path) -> Result<DiskQueue, QueueError> {
        Ok(DiskQueue {
            dir: dir.to_path_buf(),
        })
    }
    pub fn refresh(&mut self) -> Result<(), QueueError> {
        Ok(())
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn pending(&self) -> QueuePending {
        QueuePending::default()
    }
    pub fn acked_bytes(&self) -> u64 {
        0
    }
}
