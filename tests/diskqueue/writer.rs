//! Writes filebeat's disk queue as beats' writer does (shared by tests/diskqueue_format.rs
//! and benches/diskqueue.rs through `#[path]`).
//!
//! - A segment header: `u32 version` (v0), `+ u32 frameCount` (v1), `+ u32 options` (v2),
//!   little-endian; the count is 0 until the writer moves on to the next segment, which
//!   writes the count in place at byte 4 (`segmentWriter.UpdateCount`).
//! - A frame: `u32 size | payload | u32 crc32 | u32 size`, size = payload + 12, the CRC
//!   (IEEE) over the size as u32 little-endian and then the payload (beats' `checksum.go`).
//! - `state.dat`: `u32 1 | u64 segmentID | u64 byteIndex | u64 frameIndex`, rewritten in
//!   place without truncating (v0: no frameIndex).
//!
//! Payloads are small CBOR maps `{"message": "<text>"}` (v1/v2) or JSON (v0): the reader
//! never looks at them, but they have the shape filebeat's events have on disk.
#![allow(dead_code)]

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The header's size by version.
pub fn header_size(version: u32) -> u64 {
    match version {
        0 => 4,
        1 => 8,
        _ => 12,
    }
}

pub fn header(version: u32, count: u32, options: u32) -> Vec<u8> {
    let mut h = version.to_le_bytes().to_vec();
    if version >= 1 {
        h.extend(count.to_le_bytes());
    }
    if version >= 2 {
        h.extend(options.to_le_bytes());
    }
    h
}

/// An event's payload of about `len` bytes: CBOR for v1/v2, JSON for v0.
pub fn payload(version: u32, seq: u64, len: usize) -> Vec<u8> {
    let text = format!("{seq:08} {}", "x".repeat(len.saturating_sub(20)));
    if version == 0 {
        return format!("{{\"message\":\"{text}\"}}").into_bytes();
    }
    let mut p = vec![0xa1, 0x67];
    p.extend(b"message");
    let n = text.len();
    if n < 24 {
        p.push(0x60 | n as u8);
    } else if n < 256 {
        p.extend([0x78, n as u8]);
    } else {
        p.push(0x79);
        p.extend((n as u16).to_be_bytes());
    }
    p.extend(text.as_bytes());
    p
}

pub fn frame(payload: &[u8]) -> Vec<u8> {
    let size = (payload.len() + 12) as u32;
    let mut digest = CRC32.digest();
    digest.update(&size.to_le_bytes());
    digest.update(payload);
    let mut f = size.to_le_bytes().to_vec();
    f.extend(payload);
    f.extend(digest.finalize().to_le_bytes());
    f.extend(size.to_le_bytes());
    f
}

/// `n` frames of about `len` payload bytes, numbered from `first`.
pub fn frames(version: u32, first: u64, n: usize, len: usize) -> Vec<Vec<u8>> {
    (0..n as u64)
        .map(|i| frame(&payload(version, first + i, len)))
        .collect()
}

pub fn segment(version: u32, count: u32, options: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut s = header(version, count, options);
    for f in frames {
        s.extend(f);
    }
    s
}

pub fn state_v1(segment: u64, byte_index: u64, frame_index: u64) -> Vec<u8> {
    let mut b = 1u32.to_le_bytes().to_vec();
    b.extend(segment.to_le_bytes());
    b.extend(byte_index.to_le_bytes());
    b.extend(frame_index.to_le_bytes());
    b
}

pub fn state_v0(segment: u64, byte_index: u64) -> Vec<u8> {
    let mut b = 0u32.to_le_bytes().to_vec();
    b.extend(segment.to_le_bytes());
    b.extend(byte_index.to_le_bytes());
    b
}

/// A queue directory written the way filebeat writes it.
pub struct Queue {
    pub dir: PathBuf,
}

impl Queue {
    pub fn new(dir: &Path) -> Queue {
        fs::create_dir_all(dir).unwrap();
        Queue {
            dir: dir.to_path_buf(),
        }
    }

    pub fn seg_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.seg"))
    }

    /// Creates (truncating) `<id>.seg` with a header and frames.
    pub fn write_segment(&self, id: u64, version: u32, count: u32, options: u32, f: &[Vec<u8>]) {
        fs::write(self.seg_path(id), segment(version, count, options, f)).unwrap();
    }

    /// Appends raw bytes (whole frames, or part of one) to `<id>.seg`.
    pub fn append(&self, id: u64, bytes: &[u8]) {
        use std::io::Write;
        let mut f = OpenOptions::new()
            .append(true)
            .open(self.seg_path(id))
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    /// Writes the frame count into the header in place, as the writer does when it moves on.
    pub fn finish(&self, id: u64, count: u32) {
        let f = OpenOptions::new()
            .write(true)
            .open(self.seg_path(id))
            .unwrap();
        f.write_all_at(&count.to_le_bytes(), 4).unwrap();
    }

    /// Rewrites state.dat in place from byte 0 without truncating, as filebeat does.
    pub fn write_state(&self, bytes: &[u8]) {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join("state.dat"))
            .unwrap();
        f.write_all_at(bytes, 0).unwrap();
    }

    /// An empty state.dat, as filebeat leaves it before the output's first ack.
    pub fn empty_state(&self) {
        fs::write(self.dir.join("state.dat"), b"").unwrap();
    }

    pub fn remove_segment(&self, id: u64) {
        fs::remove_file(self.seg_path(id)).unwrap();
    }
}

pub fn total(frames: &[Vec<u8>]) -> u64 {
    frames.iter().map(|f| f.len() as u64).sum()
}
