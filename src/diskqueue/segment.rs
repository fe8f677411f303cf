//! One `<id>.seg` file: its header and how many frames (and frame bytes) it holds.
//!
//! beats' `segments.go`: a header of `u32 version` (v0, 4 bytes), `+ u32 frameCount` (v1,
//! 8 bytes) or `+ u32 options` (v2, 12 bytes), then frames `u32 size | payload | u32 crc |
//! u32 size` where size counts the whole frame (payload + 12). The count is 0 while the
//! segment is written and filled in when the writer moves to the next segment or stops, so
//! a segment whose header says 0 is walked frame by frame (only the two size fields of each
//! frame are read), and the walk is remembered: the next look continues where it stopped.
//! A v2 segment with the compression or encryption option holds an LZ4 and/or AES-CTR
//! stream after its header (and a 16-byte IV when encrypted): its frames cannot be walked,
//! only its header's count tells how many it holds.

use super::{io_err, QueueError};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// beats' `ENABLE_ENCRYPTION`: an AES-128-CTR stream (with its 16-byte IV) after the header.
pub const OPTION_ENCRYPTION: u32 = 0x1;
/// beats' `ENABLE_COMPRESSION`: an LZ4 frame stream after the header.
pub const OPTION_COMPRESSION: u32 = 0x2;
/// beats' `ENABLE_PROTOBUF`: frames hold protobuf, not CBOR (same framing).
pub const OPTION_PROTOBUF: u32 = 0x4;
/// The newest segment version filebeat writes (beats' `currentSegmentVersion`).
pub const NEWEST_VERSION: u32 = 2;
/// A frame's size field, checksum and repeated size (beats' `frameMetadataSize`).
pub const FRAME_METADATA: u64 = 12;
const IV_SIZE: u64 = 16;
/// How much of a segment one read brings in while walking frames.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub version: u32,
    /// Frames in the segment once it is finished; 0 while it is written (and always in v0).
    pub count: u32,
    pub options: u32,
}

impl Header {
    /// The header's size on disk: 4, 8 or 12 bytes by version.
    pub fn size(&self) -> u64 {
        match self.version {
            0 => 4,
            1 => 8,
            _ => 12,
        }
    }

    /// Compressed or encrypted: the frames are inside a stream and cannot be walked.
    pub fn opaque(&self) -> bool {
        self.options & (OPTION_COMPRESSION | OPTION_ENCRYPTION) != 0
    }

    /// Where the segment's data stream starts (after the IV when encrypted).
    fn data_start(&self) -> u64 {
        self.size()
            + if self.options & OPTION_ENCRYPTION != 0 {
                IV_SIZE
            } else {
                0
            }
    }
}

/// How the segment's frames were counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Count {
    /// The file is shorter than its header: just created, the header not yet written.
    NoHeader,
    /// From the header's frame count (a finished segment); bytes from the file's size.
    Header,
    /// By walking the frames; `end` is the offset just after the last whole frame.
    Walked { end: u64 },
    /// Compressed or encrypted with a count of 0: the frames cannot be counted.
    Opaque,
}

/// What a walk left after the last whole frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tail {
    /// The last whole frame ends the file.
    Clean,
    /// A frame cut off by the end of the file: being written (or torn by a crash).
    Partial { at: u64 },
}

#[derive(Debug)]
pub(super) struct Segment {
    pub id: u64,
    pub path: PathBuf,
    /// The file's inode: a different one under the same name is a different segment.
    pub ino: u64,
    pub header: Option<Header>,
    /// File size at the last look.
    pub size: u64,
    pub count: Count,
    /// Whole frames counted.
    pub frames: u64,
    pub tail: Tail,
    /// Nothing more will be written to it: its header has a count, or a newer segment
    /// exists (filebeat finishes a segment before it creates the next). It is not looked
    /// at again.
    pub finished: bool,
}

impl Segment {
    /// Reads the header of `<dir>/<id>.seg` and counts its frames. None: the file is gone
    /// (deleted between listing and opening).
    pub fn load(id: u64, path: PathBuf) -> Result<Option<Segment>, QueueError> {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let meta = file.metadata().map_err(io_err(&path))?;
        let mut seg = Segment {
            id,
            ino: meta.ino(),
            header: None,
            size: meta.len(),
            count: Count::NoHeader,
            frames: 0,
            tail: Tail::Clean,
            finished: false,
            path,
        };
        seg.read_header(&file)?;
        seg.count_frames(&file)?;
        Ok(Some(seg))
    }

    /// Brings the count up to date. Only a segment still being written can change: a
    /// finished one is left alone, and one that is not the `newest` any more is looked at
    /// a last time and then marked finished. Returns false when the file is gone or is no
    /// longer the one we counted (the caller loads it again).
    pub fn update(&mut self, newest: bool) -> Result<bool, QueueError> {
        if self.finished {
            return Ok(true);
        }
        let current = self.update_once()?;
        if current && !newest {
            self.finished = true;
        }
        Ok(current)
    }

    fn update_once(&mut self) -> Result<bool, QueueError> {
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&self.path)(e)),
        };
        if meta.ino() != self.ino || meta.len() < self.size {
            return Ok(false); // replaced or truncated: not the file we counted
        }
        let grown = meta.len() > self.size;
        let recheck_header = matches!(self.count, Count::NoHeader | Count::Opaque);
        if !grown && !recheck_header {
            return Ok(true);
        }
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&self.path)(e)),
        };
        let meta = file.metadata().map_err(io_err(&self.path))?;
        if meta.ino() != self.ino || meta.len() < self.size {
            return Ok(false);
        }
        self.size = meta.len();
        if recheck_header {
            self.read_header(&file)?;
        }
        self.count_frames(&file)?;
        Ok(true)
    }

    /// Bytes of frames (payload and framing) in the segment. For a compressed or encrypted
    /// segment, the bytes of its stream on disk.
    pub fn frame_bytes(&self) -> u64 {
        match (self.count, self.header) {
            (Count::Walked { end }, Some(h)) => end.saturating_sub(h.size()),
            (Count::Header | Count::Opaque, Some(h)) => self.size.saturating_sub(h.data_start()),
            _ => 0,
        }
    }

    /// A compressed or encrypted segment whose header says 0 frames but which holds data.
    pub fn uncountable(&self) -> bool {
        self.count == Count::Opaque && self.header.is_some_and(|h| self.size > h.data_start())
    }

    fn read_header(&mut self, file: &File) -> Result<(), QueueError> {
        let mut b = [0u8; 12];
        let n = read_at_most(file, &mut b, 0).map_err(io_err(&self.path))?;
        let b = &b[..n];
        self.header = None;
        self.count = Count::NoHeader;
        let Some(version) = super::state::le_u32(b, 0) else {
            return Ok(());
        };
        if version > NEWEST_VERSION {
            return Err(QueueError::UnsupportedVersion {
                path: self.path.clone(),
                version,
                newest: NEWEST_VERSION,
            });
        }
        let mut h = Header {
            version,
            count: 0,
            options: 0,
        };
        if (n as u64) < h.size() {
            return Ok(()); // the header is being written
        }
        if version >= 1 {
            h.count = super::state::le_u32(b, 4).unwrap_or(0);
        }
        if version >= 2 {
            h.options = super::state::le_u32(b, 8).unwrap_or(0);
        }
        self.header = Some(h);
        Ok(())
    }

    /// Counts frames by the header when it has a count, else by walking from where the
    /// last walk stopped.
    fn count_frames(&mut self, file: &File) -> Result<(), QueueError> {
        let Some(h) = self.header else {
            self.count = Count::NoHeader;
            return Ok(());
        };
        if h.count > 0 && (h.opaque() || !matches!(self.count, Count::Walked { .. })) {
            // Finished. (A segment we walked keeps its walked count: the same frames, and
            // exact where a torn tail makes the two differ.)
            self.count = Count::Header;
            self.frames = u64::from(h.count);
            self.tail = Tail::Clean;
            self.finished = true;
            return Ok(());
        }
        if h.opaque() {
            self.count = Count::Opaque;
            self.frames = 0;
            return Ok(());
        }
        let from = match self.count {
            Count::Walked { end } => end,
            _ => {
                self.frames = 0;
                h.size()
            }
        };
        let walk = walk_frames(file, &self.path, from, self.size, u64::MAX)?;
        self.frames += walk.frames;
        self.count = Count::Walked { end: walk.end };
        self.tail = if walk.end < self.size {
            Tail::Partial { at: walk.end }
        } else {
            Tail::Clean
        };
        Ok(())
    }
}

/// Where a walk over frames ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Walk {
    /// Whole frames passed.
    pub frames: u64,
    /// The offset after the last frame passed.
    pub end: u64,
}

/// Walks frames from `from` (a frame boundary) towards `size`, passing only frames that
/// end at or before `limit`. Each frame's leading size must be more than the 12 bytes of
/// framing and equal its trailing size (what beats' own scan checks); a frame that runs
/// past `size` ends the walk (written, or torn, at the end of the file).
pub(super) fn walk_frames(
    file: &File,
    path: &Path,
    from: u64,
    size: u64,
    limit: u64,
) -> Result<Walk, QueueError> {
    let mut r = Chunks {
        file,
        path,
        buf: Vec::new(),
        at: 0,
    };
    let mut w = Walk {
        frames: 0,
        end: from,
    };
    while w.end.saturating_add(4) <= size {
        let Some(lead) = r.u32_at(w.end, size)? else {
            break; // the file shrank under us: stop at what was whole
        };
        let len = u64::from(lead);
        if len <= FRAME_METADATA {
            return Err(QueueError::Malformed {
                path: path.to_path_buf(),
                at: format!("byte {}", w.end),
                reason: format!(
                    "frame size {lead}: a frame is its payload plus {FRAME_METADATA} bytes of framing"
                ),
            });
        }
        let frame_end = w.end + len;
        if frame_end > size || frame_end > limit {
            break;
        }
        let Some(trail) = r.u32_at(frame_end - 4, size)? else {
            break;
        };
        if trail != lead {
            return Err(QueueError::Malformed {
                path: path.to_path_buf(),
                at: format!("byte {}", w.end),
                reason: format!(
                    "the frame's size is {lead} at its start but {trail} at its end (byte {})",
                    frame_end - 4
                ),
            });
        }
        w.frames += 1;
        w.end = frame_end;
    }
    Ok(w)
}

/// Reads little-endian u32s from a file through a buffer of `CHUNK` bytes, so that walking
/// small frames costs one read per chunk rather than two per frame.
struct Chunks<'a> {
    file: &'a File,
    path: &'a Path,
    buf: Vec<u8>,
    at: u64,
}

impl Chunks<'_> {
    fn u32_at(&mut self, off: u64, size: u64) -> Result<Option<u32>, QueueError> {
        let end = self.at + self.buf.len() as u64;
        if off < self.at || off + 4 > end {
            let want = (size - off).min(CHUNK as u64) as usize;
            self.buf.resize(want.max(4), 0);
            let n = read_at_most(self.file, &mut self.buf, off).map_err(io_err(self.path))?;
            self.buf.truncate(n);
            self.at = off;
            if n < 4 {
                return Ok(None);
            }
        }
        let i = (off - self.at) as usize;
        Ok(super::state::le_u32(&self.buf, i))
    }
}

/// Fills `buf` from `off` as far as the file goes; returns the bytes read.
fn read_at_most(file: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], off + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Parses a segment file name as beats does: `<decimal u64>.seg`, the suffix in any case.
pub(super) fn segment_id(name: &str) -> Option<u64> {
    let (stem, ext) = name.split_once('.')?;
    if ext.contains('.') || !ext.eq_ignore_ascii_case("seg") {
        return None;
    }
    // Go's ParseUint takes digits only (Rust's parse would take a leading '+').
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_beats_reads_them() {
        assert_eq!(segment_id("0.seg"), Some(0));
        assert_eq!(segment_id("42.SEG"), Some(42));
        assert_eq!(segment_id("18446744073709551615.seg"), Some(u64::MAX));
        for bad in [
            "state.dat",
            "1.seg.tmp",
            "x.seg",
            ".seg",
            "-1.seg",
            "+1.seg",
            "1.segs",
            "1",
            "18446744073709551616.seg",
        ] {
            assert_eq!(segment_id(bad), None, "{bad}");
        }
    }
}
