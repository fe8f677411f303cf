//! `state.dat`: the position of the oldest frame the output has not acknowledged.
//!
//! Little-endian `u32 version | u64 segmentID | u64 byteIndex | u64 frameIndex` (version 1,
//! 28 bytes; version 0 has no frameIndex, 20 bytes), beats' `state_file.go`. filebeat opens
//! it once with `O_WRONLY|O_CREATE` and rewrites it in place (seek to 0, four writes, no
//! truncate): a new queue's file is empty until the output's first ack, and a reader can
//! catch a rewrite half done. filebeat itself reads an empty or short file as "no
//! position" (the oldest segment's first frame) and rejects a version above its own.

use super::{io_err, QueueError};
use serde::Serialize;
use std::fs;
use std::io;
use std::path::Path;

/// Where the output stands: the oldest frame it has not acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    /// The segment holding that frame (`<segment>.seg`).
    pub segment: u64,
    /// The frame's byte offset in the segment file, header included; 0 means the segment's
    /// first frame whatever its header size.
    pub byte_index: u64,
    /// How many frames of the segment come before it (version 1); None in a version-0 file.
    pub frame_index: Option<u64>,
}

/// What `state.dat` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StateFile {
    /// No state.dat: a queue filebeat has not opened yet (or one left without it).
    Missing,
    /// Zero bytes: filebeat created it and the output has acknowledged nothing yet.
    Empty,
    /// Shorter than its version needs: a rewrite caught half done.
    Torn {
        len: usize,
    },
    Position(Position),
}

impl StateFile {
    pub(super) fn position(&self) -> Option<Position> {
        match self {
            StateFile::Position(p) => Some(*p),
            _ => None,
        }
    }
}

/// The newest version filebeat writes (beats' `currentStateFileVersion`).
const NEWEST_VERSION: u32 = 1;

/// Reads the file's bytes (kept for comparing two reads) and what they say.
pub(super) fn read(path: &Path) -> Result<(StateFile, Vec<u8>), QueueError> {
    match fs::read(path) {
        Ok(bytes) => Ok((parse(path, &bytes)?, bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((StateFile::Missing, Vec::new())),
        Err(e) => Err(io_err(path)(e)),
    }
}

pub(super) fn parse(path: &Path, b: &[u8]) -> Result<StateFile, QueueError> {
    if b.is_empty() {
        return Ok(StateFile::Empty);
    }
    let Some(version) = le_u32(b, 0) else {
        return Ok(StateFile::Torn { len: b.len() });
    };
    if version > NEWEST_VERSION {
        return Err(QueueError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
            newest: NEWEST_VERSION,
        });
    }
    let (Some(segment), Some(byte_index)) = (le_u64(b, 4), le_u64(b, 12)) else {
        return Ok(StateFile::Torn { len: b.len() });
    };
    let frame_index = if version >= 1 {
        match le_u64(b, 20) {
            Some(f) => Some(f),
            None => return Ok(StateFile::Torn { len: b.len() }),
        }
    } else {
        None
    };
    // Bytes past the position (none that filebeat writes) are ignored, as filebeat does.
    Ok(StateFile::Position(Position {
        segment,
        byte_index,
        frame_index,
    }))
}

pub(super) fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(seg: u64, byte: u64, frame: u64) -> Vec<u8> {
        let mut b = 1u32.to_le_bytes().to_vec();
        b.extend(seg.to_le_bytes());
        b.extend(byte.to_le_bytes());
        b.extend(frame.to_le_bytes());
        b
    }

    #[test]
    fn reads_every_shape() {
        let p = Path::new("/q/state.dat");
        assert_eq!(parse(p, &[]).unwrap(), StateFile::Empty);
        let full = v1(3, 663, 3);
        assert_eq!(
            parse(p, &full).unwrap(),
            StateFile::Position(Position {
                segment: 3,
                byte_index: 663,
                frame_index: Some(3)
            })
        );
        for cut in 1..full.len() {
            assert_eq!(
                parse(p, &full[..cut]).unwrap(),
                StateFile::Torn { len: cut },
                "{cut}"
            );
        }
        // Version 0: no frameIndex.
        let mut v0 = 0u32.to_le_bytes().to_vec();
        v0.extend(7u64.to_le_bytes());
        v0.extend(120u64.to_le_bytes());
        assert_eq!(
            parse(p, &v0).unwrap().position(),
            Some(Position {
                segment: 7,
                byte_index: 120,
                frame_index: None
            })
        );
        let mut v2 = full.clone();
        v2[0] = 2;
        let e = parse(p, &v2).unwrap_err().to_string();
        assert!(e.contains("/q/state.dat") && e.contains("version 2"), "{e}");
    }
}
