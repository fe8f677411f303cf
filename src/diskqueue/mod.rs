//! filebeat's disk queue (`queue.disk`): how much of it the output has not acknowledged.
//!
//! With the disk queue, filebeat acknowledges events to the registry as soon as they are
//! written to the queue's segment files, not when the output has them (beats'
//! `writer_loop.go`), so a drained registry says nothing about the queue. The queue is a
//! directory (`${path.data}/diskqueue`, or `queue.disk.path`) of `<id>.seg` segments and a
//! `state.dat` holding the position of the oldest frame the output has not acknowledged
//! (see docs/shippers/filebeat.md, "The disk queue"). Pending is every frame from that
//! position to the end of the newest segment, counted as filebeat counts it at start-up
//! (`queue.go`): the frames of the segments from the position's on, less the position's frame
//! index.
//!
//! Only headers, frame sizes and the position are read, never events. [`DiskQueue::refresh`]
//! costs O(new frames + segments changed): finished segments are counted once (by their
//! header), the segment being written is walked frame by frame from where the last walk
//! stopped. A view that could be torn (a frame or `state.dat` being written, a segment
//! whose frames cannot be counted) is reported `incomplete`, never empty.

mod segment;
mod state;

use segment::{Count, Segment, Tail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use segment::{
    FRAME_METADATA, NEWEST_VERSION as NEWEST_SEGMENT_VERSION, OPTION_COMPRESSION,
    OPTION_ENCRYPTION, OPTION_PROTOBUF,
};
pub use state::Position;
use state::StateFile;

/// The queue directory's name under filebeat's `path.data` (beats' `config.go`).
pub const DIR_NAME: &str = "diskqueue";
/// The position file's name in the queue directory.
pub const STATE_FILE: &str = "state.dat";

/// How many times a look is retried when `state.dat` changes while it is taken.
const ATTEMPTS: u32 = 5;

/// Everything that can go wrong while reading a disk queue. Each variant names the file.
#[derive(Debug)]
pub enum QueueError {
    /// A file or directory could not be read (a missing queue directory is one).
    Io { path: PathBuf, source: io::Error },
    /// A file is not what the disk queue's format says it must be.
    Malformed {
        path: PathBuf,
        /// Where in the file: "byte 120", …
        at: String,
        reason: String,
    },
    /// A segment or `state.dat` of a version newer than drainhook knows.
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        /// The newest version drainhook reads in that file.
        newest: u32,
    },
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            QueueError::Malformed { path, at, reason } => write!(
                f,
                "malformed disk queue file {} at {at}: {reason}",
                path.display()
            ),
            QueueError::UnsupportedVersion {
                path,
                version,
                newest,
            } => write!(
                f,
                "unsupported disk queue file {}: version {version}; drainhook reads versions \
                 0 to {newest} of this file, so it cannot tell what the queue still holds",
                path.display()
            ),
        }
    }
}

impl std::error::Error for QueueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QueueError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the queue holds that the output has not acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueuePending {
    /// Frames (one event each) not yet acknowledged.
    pub events: u64,
    /// Their bytes in the segment files (payload plus 12 bytes of framing each). For a
    /// compressed or encrypted segment, where frames cannot be measured, its share of the
    /// stream on disk.
    pub bytes: u64,
    /// Segment files holding pending frames.
    pub segments: usize,
    /// The position read from `state.dat`; None when it is missing, empty or torn, which
    /// filebeat reads as the oldest segment's first frame (so every frame is pending).
    pub position: Option<Position>,
    /// The view may be short of what filebeat holds: never "empty" from it (the drain waits
    /// and reads again). See `reason`.
    pub incomplete: bool,
    /// Why the view is incomplete, or a note about a part filebeat itself will not send.
    pub reason: Option<String>,
}

impl QueuePending {
    /// Nothing left to send, and the view can be trusted for that.
    pub fn is_empty(&self) -> bool {
        self.events == 0 && self.bytes == 0 && !self.incomplete
    }

    fn note(&mut self, incomplete: bool, why: String) {
        self.incomplete |= incomplete;
        match &mut self.reason {
            Some(r) => {
                r.push_str("; ");
                r.push_str(&why);
            }
            None => self.reason = Some(why),
        }
    }
}

/// One queue directory, followed over time.
#[derive(Debug)]
pub struct DiskQueue {
    dir: PathBuf,
    state_path: PathBuf,
    segments: BTreeMap<u64, Segment>,
    pending: QueuePending,
    /// Frame bytes of segments gone (deleted or replaced) since open, and of those below the
    /// position, which are never read (for the shipping rate).
    gone_bytes: u64,
    /// Bytes acknowledged as of open (seen minus pending), the rate's zero.
    acked_base: Option<u64>,
    acked_bytes: u64,
    /// For a version-0 state.dat (no frame index): the frames before a byte index, walked
    /// once and kept, (segment, inode, byte index, frames).
    v0_cursor: Option<V0Cursor>,
    /// Segments below the position when first listed, never read: (inode, bytes counted).
    below: BTreeMap<u64, (u64, u64)>,
}

impl DiskQueue {
    /// Opens the queue directory `dir` and reads it once. A missing directory is an error
    /// (`QueueError::Io`, NotFound); [`DiskQueue::open_if_exists`] is for callers that read a
    /// queue only where one exists.
    pub fn open(dir: &Path) -> Result<DiskQueue, QueueError> {
        let meta = fs::metadata(dir).map_err(io_err(dir))?;
        if !meta.is_dir() {
            return Err(QueueError::Io {
                path: dir.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let mut q = DiskQueue {
            dir: dir.to_path_buf(),
            state_path: dir.join(STATE_FILE),
            segments: BTreeMap::new(),
            pending: QueuePending::default(),
            gone_bytes: 0,
            acked_base: None,
            acked_bytes: 0,
            v0_cursor: None,
            below: BTreeMap::new(),
        };
        q.refresh()?;
        Ok(q)
    }

    /// Opens the queue at `dir` if that directory exists; Ok(None) if it does not.
    pub fn open_if_exists(dir: &Path) -> Result<Option<DiskQueue>, QueueError> {
        match DiskQueue::open(dir) {
            Ok(q) => Ok(Some(q)),
            Err(QueueError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The queue directory: what to watch (inotify) for segment and `state.dat` writes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the last look found pending.
    pub fn pending(&self) -> QueuePending {
        self.pending.clone()
    }

    /// Frame bytes seen acknowledged since open (never decreases): for a shipping rate.
    pub fn acked_bytes(&self) -> u64 {
        self.acked_bytes
    }

    /// Re-reads what changed: `state.dat` (twice, around the segments, so that a rewrite
    /// caught half done is noticed), the directory listing, and the frames appended to the
    /// segment being written.
    pub fn refresh(&mut self) -> Result<(), QueueError> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let (before, raw_before) = state::read(&self.state_path)?;
            self.refresh_segments(before.position().map_or(0, |p| p.segment))?;
            let (_, raw_after) = state::read(&self.state_path)?;
            if raw_before == raw_after {
                let pending = self.compute(&before)?;
                self.account(&pending);
                self.pending = pending;
                return Ok(());
            }
            last = Some(before);
        }
        // state.dat kept changing: what the last reading says, but never empty from it.
        let mut pending = self.compute(&last.unwrap_or(StateFile::Missing))?;
        pending.note(
            true,
            format!(
                "{} changed during each of {ATTEMPTS} reads (the output is acknowledging)",
                self.state_path.display()
            ),
        );
        self.pending = pending;
        Ok(())
    }

    /// Follows the directory: new segments are loaded, gone ones dropped, the others
    /// updated (which only touches the segment still being written). Segments below `from`
    /// (the position's segment: acknowledged, waiting for filebeat's deleter) are not read;
    /// only their size is taken once, for the shipping rate.
    fn refresh_segments(&mut self, from: u64) -> Result<(), QueueError> {
        let listed = self.list_segments()?;
        let gone: Vec<u64> = self
            .segments
            .keys()
            .filter(|id| !listed.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(seg) = self.segments.remove(&id) {
                self.gone_bytes += seg.frame_bytes();
            }
        }
        self.below
            .retain(|id, (ino, _)| listed.get(id) == Some(ino));
        let newest = listed.keys().next_back().copied();
        for (&id, &ino) in &listed {
            let is_newest = Some(id) == newest;
            let current = match self.segments.get_mut(&id) {
                Some(seg) if seg.ino == ino => seg.update(is_newest)?,
                _ => false,
            };
            if current {
                continue;
            }
            if let Some(old) = self.segments.remove(&id) {
                self.gone_bytes += old.frame_bytes();
            }
            let path = self.dir.join(format!("{id}.seg"));
            if id < from {
                if !self.below.contains_key(&id) {
                    let bytes = fs::metadata(&path).map_or(0, |m| m.len().saturating_sub(12));
                    self.gone_bytes += bytes;
                    self.below.insert(id, (ino, bytes));
                }
                continue;
            }
            if let Some((_, bytes)) = self.below.remove(&id) {
                self.gone_bytes -= bytes; // counted again from its frames now
            }
            if let Some(mut seg) = Segment::load(id, path)? {
                if !is_newest {
                    seg.finished = true;
                }
                self.segments.insert(id, seg);
            }
        }
        Ok(())
    }

    /// `<id>.seg` files by id, with their inode (from the listing: no stat per file).
    fn list_segments(&self) -> Result<BTreeMap<u64, u64>, QueueError> {
        use std::os::unix::fs::DirEntryExt;
        let mut out = BTreeMap::new();
        for e in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let e = e.map_err(io_err(&self.dir))?;
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(segment::segment_id) else {
                continue;
            };
            // beats lists the same way (a file name, not a type); a directory named like a
            // segment is not one.
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            out.insert(id, e.ino());
        }
        Ok(out)
    }

    /// What is pending from the position in `state` over the segments read.
    fn compute(&mut self, state: &StateFile) -> Result<QueuePending, QueueError> {
        let position = state.position();
        let mut p = QueuePending {
            position,
            ..QueuePending::default()
        };
        // Which segments count, and how much of the first one is acknowledged.
        let (from, acked) = match position {
            // No position: filebeat starts from the oldest segment's first frame.
            None => (0, Acked::default()),
            Some(pos) => match self.segments.get(&pos.segment) {
                Some(seg) => (pos.segment, acked_in(seg, pos, &mut self.v0_cursor)?),
                // The position's segment is gone (or never was): the frames of the segments
                // after it are all pending (filebeat advances to the first of them), and
                // those before it are acknowledged.
                None => (pos.segment.saturating_add(1), Acked::default()),
            },
        };
        let newest = self.segments.keys().next_back().copied();
        let mut carry = acked;
        let mut overrun = Acked::default();
        let mut uncountable = false;
        for (i, seg) in self.segments.range(from..).map(|(_, s)| s).enumerate() {
            let (frames, bytes) = (seg.frames, seg.frame_bytes());
            // The acknowledged frames are the first ones from the position on. beats before
            // elastic/beats#50534 (2026) keeps counting into the next segment after a
            // restart without moving the position's segment, so what is left over after the
            // position's segment carries on into the following ones.
            let f = carry.frames.min(frames);
            carry.frames -= f;
            let events = frames - f;
            let opaque_bytes = if seg.header.is_some_and(|h| h.opaque()) {
                // A compressed or encrypted stream: byte indexes count the frames before
                // encoding, so only frames compare; its bytes are shared out by frames.
                carry.bytes = 0;
                Some(share(bytes, events, frames))
            } else {
                None
            };
            let pending_bytes = opaque_bytes.unwrap_or_else(|| {
                let b = carry.bytes.min(bytes);
                carry.bytes -= b;
                bytes - b
            });
            if i == 0 {
                if carry.frames == 0 && carry.bytes <= carry.slack {
                    carry.bytes = 0;
                } else if carry.frames > 0 && seg.count != Count::Header {
                    // Only a finished segment counted by its header (as a restarted
                    // filebeat's is) carries acknowledgements on: past a walked one's last
                    // frame, the position does not fit the segment.
                    overrun = carry;
                    carry = Acked::default();
                }
            }
            p.events += events;
            p.bytes += pending_bytes;
            if events > 0 || pending_bytes > 0 {
                p.segments += 1;
            }
            uncountable |= seg.uncountable();
            check_segment(seg, Some(seg.id) == newest, &mut p);
        }
        let over = (carry.frames + overrun.frames, carry.bytes + overrun.bytes);
        if over != (0, 0) && !uncountable {
            p.note(
                true,
                format!(
                    "{} says more is acknowledged than the segments hold ({} frames, {} bytes \
                     over): read while it changed, or left from segments that were rewritten",
                    self.state_path.display(),
                    over.0,
                    over.1
                ),
            );
        }
        if position.is_some() && p.events == 0 && p.bytes > 0 {
            p.note(
                true,
                format!(
                    "{}: the position's frame index says every frame is acknowledged but its \
                     byte index leaves {} bytes",
                    self.state_path.display(),
                    p.bytes
                ),
            );
        }
        Ok(p)
    }

    /// Updates the acknowledged-bytes counter from a consistent look.
    fn account(&mut self, p: &QueuePending) {
        let seen = self.gone_bytes
            + self
                .segments
                .values()
                .map(Segment::frame_bytes)
                .sum::<u64>();
        let acked = seen.saturating_sub(p.bytes);
        let base = *self.acked_base.get_or_insert(acked);
        self.acked_bytes = self.acked_bytes.max(acked.saturating_sub(base));
    }
}

/// Notes what makes a segment's count unsure: a header or frame being written in the newest
/// segment, a compressed or encrypted segment still being written, a torn tail that
/// filebeat skips.
fn check_segment(seg: &Segment, newest: bool, p: &mut QueuePending) {
    let path = seg.path.display();
    if seg.count == Count::NoHeader && newest {
        p.note(
            true,
            format!(
                "{path}: the segment is being created ({} bytes, no whole header yet)",
                seg.size
            ),
        );
    }
    if seg.uncountable() {
        let what = if seg
            .header
            .is_some_and(|h| h.options & OPTION_COMPRESSION != 0)
        {
            "compressed"
        } else {
            "encrypted"
        };
        p.note(
            true,
            format!(
                "{path}: a {what} segment whose header says 0 frames (still being written): its \
                 frames cannot be counted from outside filebeat, so drainhook cannot tell when \
                 the output has them"
            ),
        );
    }
    if let Tail::Partial { at } = seg.tail {
        if newest {
            p.note(
                true,
                format!("{path}: a frame is being written at byte {at}"),
            );
        } else {
            p.note(
                false,
                format!(
                    "{path}: ends in a torn frame at byte {at} ({} bytes), which filebeat skips",
                    seg.size - at
                ),
            );
        }
    }
}

/// The frames and bytes of `seg` before `pos`.
fn acked_in(
    seg: &Segment,
    pos: Position,
    v0_cursor: &mut Option<V0Cursor>,
) -> Result<Acked, QueueError> {
    let Some(h) = seg.header else {
        return Ok(Acked::default());
    };
    // byteIndex 0 is the first frame, whatever the header's size; and filebeat resets the
    // byte index of a position without a frame index to 0 at start-up (queue.go).
    if pos.byte_index == 0 || pos.frame_index == Some(0) {
        return Ok(Acked::default());
    }
    // beats 8.4+ reckons every header of version 1 or more as 12 bytes (its headerSize()),
    // 4 more than a version-1 header is: a byte index it writes there runs 4 bytes over.
    let slack = if h.version == 1 { 4 } else { 0 };
    let frames = match pos.frame_index {
        Some(f) => f,
        None => frames_before(seg, pos.byte_index, v0_cursor)?,
    };
    Ok(Acked {
        frames,
        bytes: pos.byte_index.saturating_sub(h.size()),
        slack,
    })
}

/// Where a walk for a version-0 state.dat stopped: (segment id, inode, byte, frames before).
type V0Cursor = (u64, u64, u64, u64);

/// For a version-0 state.dat (no frame index): how many whole frames of `seg` end at or
/// before `byte`, walked from the segment's first frame, or from the last such walk when the
/// position moved forward in the same segment.
fn frames_before(
    seg: &Segment,
    byte: u64,
    cursor: &mut Option<V0Cursor>,
) -> Result<u64, QueueError> {
    let Some(h) = seg.header else { return Ok(0) };
    if h.opaque() {
        return Ok(0); // cannot walk: every frame counts as pending
    }
    let (mut from, mut frames) = (h.size(), 0);
    if let Some((s, ino, b, f)) = *cursor {
        if s == seg.id && ino == seg.ino && b <= byte {
            (from, frames) = (b, f);
        }
    }
    let file = match fs::File::open(&seg.path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(&seg.path)(e)),
    };
    let walk = segment::walk_frames(&file, &seg.path, from, seg.size, byte)?;
    frames += walk.frames;
    *cursor = Some((seg.id, seg.ino, walk.end, frames));
    Ok(frames)
}

/// `bytes * part / whole` (all of `bytes` when `whole` is 0).
fn share(bytes: u64, part: u64, whole: u64) -> u64 {
    (u128::from(bytes) * u128::from(part))
        .checked_div(u128::from(whole))
        .map_or(bytes, |b| b as u64)
}

/// The frames and bytes before the position in its segment.
#[derive(Debug, Default, Clone, Copy)]
struct Acked {
    frames: u64,
    bytes: u64,
    /// Bytes the byte index may run over (see `acked_in`).
    slack: u64,
}
