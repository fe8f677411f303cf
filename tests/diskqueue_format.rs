//! The disk queue reader against filebeat's on-disk format, written as beats' writer writes
//! it (tests/diskqueue/writer.rs): one segment, several, empty queues as filebeat leaves
//! them, compressed and encrypted segments, torn and empty `state.dat`, corrupt segments,
//! frames being written, incremental refreshes, headers of versions 0 to 2.

mod common;
#[path = "diskqueue/writer.rs"]
mod writer;

use drainhook::diskqueue::{
    DiskQueue, Position, QueueError, QueuePending, OPTION_COMPRESSION, OPTION_ENCRYPTION,
};
use proptest::prelude::*;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};
use writer::{frames, header_size, state_v0, state_v1, total, Queue};

fn queue() -> (tempfile::TempDir, Queue) {
    let t = tempfile::tempdir().unwrap();
    let q = Queue::new(&t.path().join("diskqueue"));
    (t, q)
}

fn look(dir: &Path) -> QueuePending {
    DiskQueue::open(dir).unwrap().pending()
}

fn counts(p: &QueuePending) -> (u64, u64, usize) {
    (p.events, p.bytes, p.segments)
}

#[test]
fn one_segment_counted_from_the_position() {
    let (_t, q) = queue();
    let f = frames(2, 0, 5, 200);
    // The segment being written: its header says 0 frames, so the frames are walked.
    q.write_segment(0, 2, 0, 0, &f);
    let acked = total(&f[..2]);
    q.write_state(&state_v1(0, 12 + acked, 2));
    let p = look(&q.dir);
    assert_eq!(counts(&p), (3, total(&f[2..]), 1));
    assert_eq!(
        p.position,
        Some(Position {
            segment: 0,
            byte_index: 12 + acked,
            frame_index: Some(2)
        })
    );
    assert!(!p.incomplete && !p.is_empty(), "{p:?}");
}

#[test]
fn several_segments_with_the_position_in_the_middle_one() {
    let (_t, q) = queue();
    let (f3, f4, f5) = (
        frames(2, 0, 4, 100),
        frames(2, 4, 6, 300),
        frames(2, 10, 3, 50),
    );
    // 3 and 4 are finished (the writer wrote their counts when it moved on); 5 is written.
    q.write_segment(3, 2, 4, 0, &f3);
    q.write_segment(4, 2, 6, 0, &f4);
    q.write_segment(5, 2, 0, 0, &f5);
    // The output is in segment 4, two frames in; segment 3 is acknowledged but not yet
    // deleted (the deleter runs after state.dat is written).
    q.write_state(&state_v1(4, 12 + total(&f4[..2]), 2));
    let p = look(&q.dir);
    assert_eq!(
        counts(&p),
        (4 + 3, total(&f4[2..]) + total(&f5), 2),
        "{p:?}"
    );

    // The position at the end of segment 4 (its last frame acknowledged): segment 5 is left.
    q.write_state(&state_v1(4, 12 + total(&f4), 6));
    assert_eq!(counts(&look(&q.dir)), (3, total(&f5), 1));
    // Into segment 5 and past segment 4, which is then deleted.
    q.write_state(&state_v1(5, 12 + total(&f5[..1]), 1));
    q.remove_segment(3);
    q.remove_segment(4);
    assert_eq!(counts(&look(&q.dir)), (2, total(&f5[1..]), 1));
}

#[test]
fn an_empty_queue_as_filebeat_leaves_it() {
    // state.dat at the end of the newest segment, which a running filebeat keeps.
    let (_t, q) = queue();
    let (f0, f1) = (frames(2, 0, 3, 120), frames(2, 3, 2, 80));
    q.write_segment(0, 2, 3, 0, &f0);
    q.write_segment(1, 2, 0, 0, &f1);
    q.write_state(&state_v1(1, 12 + total(&f1), 2));
    let p = look(&q.dir);
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(counts(&p), (0, 0, 0));

    // The position's segment newer than every segment file.
    let (_t, q) = queue();
    q.write_segment(6, 2, 3, 0, &frames(2, 0, 3, 40));
    q.write_state(&state_v1(7, 12 + 64, 1));
    assert!(look(&q.dir).is_empty());

    // No segments and no state.dat: a queue filebeat created and never wrote to.
    let (_t, q) = queue();
    let p = look(&q.dir);
    assert!(p.is_empty() && p.position.is_none(), "{p:?}");

    // A segment just created: its header, no frame yet, nothing acknowledged.
    let (_t, q) = queue();
    q.write_segment(0, 2, 0, 0, &[]);
    q.empty_state();
    assert!(look(&q.dir).is_empty());
}

#[test]
fn a_compressed_or_encrypted_segment_is_counted_by_its_header_or_not_judged() {
    let (_t, q) = queue();
    // A finished compressed segment: its header's count is the only thing readable; the
    // rest is an LZ4 frame stream (magic 0x184D2204) that drainhook does not decode.
    let mut lz4 = vec![0x04, 0x22, 0x4d, 0x18, 0x64, 0x40, 0xa7];
    lz4.extend([0x5a; 300]);
    let mut seg = writer::header(2, 5, OPTION_COMPRESSION);
    seg.extend(&lz4);
    fs::write(q.seg_path(0), &seg).unwrap();
    // Byte indexes count frames before compression: 2 frames of 100 bytes acknowledged.
    q.write_state(&state_v1(0, 12 + 200, 2));
    let p = look(&q.dir);
    assert_eq!((p.events, p.segments), (3, 1), "{p:?}");
    assert!(p.bytes > 0 && !p.incomplete, "{p:?}");
    // Every frame acknowledged: nothing pending, although the byte index (logical) is past
    // the compressed file's end.
    q.write_state(&state_v1(0, 12 + 500, 5));
    assert!(look(&q.dir).is_empty());

    // The compressed segment being written (count 0) with data: cannot be judged.
    let mut open = writer::header(2, 0, OPTION_COMPRESSION);
    open.extend(&lz4);
    fs::write(q.seg_path(1), &open).unwrap();
    let p = look(&q.dir);
    assert!(p.incomplete && !p.is_empty(), "{p:?}");
    let why = p.reason.unwrap();
    assert!(why.contains("1.seg") && why.contains("compressed"), "{why}");
    // Once filebeat finishes it (writes its count), it is counted.
    q.finish(1, 4);
    let p = look(&q.dir);
    assert_eq!((p.events, p.incomplete), (4, false), "{p:?}");

    // An encrypted segment just created: header and 16-byte IV, no frame yet.
    let (_t, q) = queue();
    let mut enc = writer::header(2, 0, OPTION_ENCRYPTION);
    enc.extend([7u8; 16]);
    fs::write(q.seg_path(0), &enc).unwrap();
    assert!(look(&q.dir).is_empty());
    enc.extend([9u8; 40]);
    fs::write(q.seg_path(0), &enc).unwrap();
    let p = look(&q.dir);
    assert!(p.incomplete && p.reason.unwrap().contains("encrypted"));
}

#[test]
fn a_torn_state_dat_means_every_frame_is_pending() {
    let (_t, q) = queue();
    let f = frames(2, 0, 4, 100);
    q.write_segment(0, 2, 0, 0, &f);
    let full = state_v1(0, 12 + total(&f), 4);
    q.write_state(&full);
    assert!(look(&q.dir).is_empty());
    for cut in 1..full.len() {
        fs::write(q.dir.join("state.dat"), &full[..cut]).unwrap();
        let p = look(&q.dir);
        assert_eq!(counts(&p), (4, total(&f), 1), "cut at {cut}: {p:?}");
        assert!(p.position.is_none());
    }
}

#[test]
fn an_empty_or_missing_state_dat_means_every_frame_is_pending() {
    let (_t, q) = queue();
    let (f0, f1) = (frames(2, 0, 3, 100), frames(2, 3, 2, 100));
    q.write_segment(0, 2, 3, 0, &f0);
    q.write_segment(1, 2, 0, 0, &f1);
    assert_eq!(counts(&look(&q.dir)), (5, total(&f0) + total(&f1), 2));
    q.empty_state();
    let p = look(&q.dir);
    assert_eq!(counts(&p), (5, total(&f0) + total(&f1), 2));
    assert!(!p.is_empty());
}

#[test]
fn an_unknown_state_dat_version_is_an_error_naming_the_file() {
    let (_t, q) = queue();
    q.write_segment(0, 2, 0, 0, &frames(2, 0, 2, 50));
    let mut s = state_v1(0, 12, 0);
    s[0] = 2;
    q.write_state(&s);
    let e = DiskQueue::open(&q.dir).unwrap_err();
    assert!(matches!(
        e,
        QueueError::UnsupportedVersion { version: 2, .. }
    ));
    let msg = e.to_string();
    assert!(
        msg.contains(&*q.dir.join("state.dat").to_string_lossy()),
        "{msg}"
    );
}

#[test]
fn a_corrupt_segment_is_an_error_naming_the_file() {
    let (_t, q) = queue();
    let f = frames(1, 0, 3, 100);
    let mut seg = writer::segment(1, 0, 0, &f);
    // The middle frame's trailing size no longer matches its leading size.
    let at = 8 + f[0].len() + f[1].len() - 4;
    seg[at] ^= 0x40;
    fs::write(q.seg_path(4), &seg).unwrap();
    q.write_state(&state_v1(4, 0, 0));
    let msg = DiskQueue::open(&q.dir).unwrap_err().to_string();
    assert!(
        msg.contains("4.seg") && msg.contains(&format!("byte {}", 8 + f[0].len())),
        "{msg}"
    );

    // A frame size that cannot be (no larger than its own framing).
    let mut seg = writer::segment(1, 0, 0, &f);
    seg[8..12].copy_from_slice(&12u32.to_le_bytes());
    fs::write(q.seg_path(4), &seg).unwrap();
    assert!(DiskQueue::open(&q.dir)
        .unwrap_err()
        .to_string()
        .contains("frame size 12"));

    // A segment of a version drainhook does not know.
    fs::write(q.seg_path(4), writer::segment(3, 0, 0, &f)).unwrap();
    let e = DiskQueue::open(&q.dir).unwrap_err();
    assert!(matches!(
        e,
        QueueError::UnsupportedVersion { version: 3, .. }
    ));
    assert!(e.to_string().contains("4.seg"));
}

#[test]
fn segments_below_the_position_are_not_read() {
    // Acknowledged segments wait for filebeat's deleter; whatever is in them, nothing of
    // theirs is pending, and they are not read (a broken one is filebeat's to delete).
    let (_t, q) = queue();
    let f = frames(2, 0, 3, 100);
    fs::write(q.seg_path(1), writer::segment(9, 0, 0, &f)).unwrap();
    q.write_segment(2, 2, 0, 0, &f);
    q.write_state(&state_v1(2, 12 + total(&f[..1]), 1));
    let mut dq = DiskQueue::open(&q.dir).unwrap();
    assert_eq!(counts(&dq.pending()), (2, total(&f[1..]), 1));
    // The same segment is an error once the position (a state.dat emptied) covers it.
    q.empty_state();
    let e = dq.refresh().unwrap_err();
    assert!(
        matches!(e, QueueError::UnsupportedVersion { version: 9, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("1.seg"));
}

#[test]
fn a_frame_being_written_is_never_empty() {
    let (_t, q) = queue();
    let f = frames(2, 0, 3, 500);
    q.write_segment(0, 2, 0, 0, &f[..2]);
    q.write_state(&state_v1(0, 12 + total(&f[..2]), 2));
    let mut dq = DiskQueue::open(&q.dir).unwrap();
    assert!(dq.pending().is_empty());
    // The third frame lands in pieces: every cut is a write in progress, never empty.
    for cut in 1..f[2].len() {
        fs::write(
            q.seg_path(0),
            [writer::segment(2, 0, 0, &f[..2]), f[2][..cut].to_vec()].concat(),
        )
        .unwrap();
        dq.refresh().unwrap();
        let p = dq.pending();
        assert!(p.incomplete && !p.is_empty(), "cut at {cut}: {p:?}");
        assert!(p.reason.as_deref().unwrap().contains("being written"));
    }
    q.append(0, &f[2][f[2].len() - 1..]);
    dq.refresh().unwrap();
    assert_eq!(counts(&dq.pending()), (1, f[2].len() as u64, 1));
    assert!(!dq.pending().incomplete);

    // A header being written.
    fs::write(q.seg_path(1), &writer::header(2, 0, 0)[..6]).unwrap();
    dq.refresh().unwrap();
    assert!(dq.pending().incomplete);
}

#[test]
fn refresh_follows_appends_acks_new_and_deleted_segments_incrementally() {
    let (_t, q) = queue();
    let f = frames(2, 0, 40, 100);
    q.write_segment(0, 2, 0, 0, &f[..10]);
    q.empty_state();
    let mut dq = DiskQueue::open(&q.dir).unwrap();
    assert_eq!(counts(&dq.pending()), (10, total(&f[..10]), 1));

    // The walk is remembered: break a frame already walked; a reader that walked the
    // whole segment again would now fail.
    let file = fs::OpenOptions::new()
        .write(true)
        .open(q.seg_path(0))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[0, 0, 0, 0], 12).unwrap();
    for frame in &f[10..15] {
        q.append(0, frame);
    }
    dq.refresh().unwrap();
    assert_eq!(counts(&dq.pending()), (15, total(&f[..15]), 1));
    assert!(
        DiskQueue::open(&q.dir).is_err(),
        "a fresh reader walks the segment from its start"
    );
    std::os::unix::fs::FileExt::write_all_at(&file, &f[0][..4], 12).unwrap();

    // The output acknowledges 6 frames.
    q.write_state(&state_v1(0, 12 + total(&f[..6]), 6));
    dq.refresh().unwrap();
    assert_eq!(counts(&dq.pending()), (9, total(&f[6..15]), 1));
    assert_eq!(dq.acked_bytes(), total(&f[..6]));

    // The writer moves on: it writes segment 0's count, then creates segment 1.
    q.finish(0, 15);
    q.write_segment(1, 2, 0, 0, &f[15..20]);
    dq.refresh().unwrap();
    assert_eq!(counts(&dq.pending()), (14, total(&f[6..20]), 2));

    // The output reaches segment 1; segment 0 is deleted.
    q.write_state(&state_v1(1, 12 + total(&f[15..17]), 2));
    q.remove_segment(0);
    dq.refresh().unwrap();
    assert_eq!(counts(&dq.pending()), (3, total(&f[17..20]), 1));
    assert_eq!(dq.acked_bytes(), total(&f[..17]));

    // Everything acknowledged.
    q.write_state(&state_v1(1, 12 + total(&f[15..20]), 5));
    dq.refresh().unwrap();
    assert!(dq.pending().is_empty());
    assert_eq!(dq.acked_bytes(), total(&f[..20]));
}

#[test]
fn headers_of_versions_0_1_and_2() {
    for version in [0u32, 1, 2] {
        let (_t, q) = queue();
        let f = frames(version, 0, 5, 150);
        let count = if version == 0 { 0 } else { 5 };
        q.write_segment(0, version, count, 0, &f);
        let h = header_size(version);
        // byteIndex 0 is the first frame, whatever the header's size.
        q.write_state(&state_v1(0, 0, 0));
        assert_eq!(counts(&look(&q.dir)), (5, total(&f), 1), "v{version}");
        q.write_state(&state_v1(0, h + total(&f[..3]), 3));
        assert_eq!(counts(&look(&q.dir)), (2, total(&f[3..]), 1), "v{version}");
        q.write_state(&state_v1(0, h + total(&f), 5));
        assert!(look(&q.dir).is_empty(), "v{version}");
    }
}

#[test]
fn a_version_0_state_dat_is_placed_by_walking_to_its_byte_index() {
    let (_t, q) = queue();
    let f = frames(0, 0, 6, 90);
    q.write_segment(0, 0, 0, 0, &f);
    fs::write(q.dir.join("state.dat"), state_v0(0, 4 + total(&f[..4]))).unwrap();
    let mut dq = DiskQueue::open(&q.dir).unwrap();
    assert_eq!(counts(&dq.pending()), (2, total(&f[4..]), 1));
    assert_eq!(dq.pending().position.unwrap().frame_index, None);
    fs::write(q.dir.join("state.dat"), state_v0(0, 4 + total(&f))).unwrap();
    dq.refresh().unwrap();
    assert!(dq.pending().is_empty());
}

#[test]
fn a_restarted_filebeat_that_keeps_counting_into_the_next_segment() {
    // beats before elastic/beats#50534: after a restart with segment 3 fully acknowledged,
    // the acks of the new segment 4's frames are added to the old position (segment 3's
    // end) until segment 5 begins.
    let (_t, q) = queue();
    let (f3, f4) = (frames(2, 0, 3, 100), frames(2, 3, 4, 100));
    q.write_segment(3, 2, 3, 0, &f3);
    q.write_segment(4, 2, 0, 0, &f4);
    q.write_state(&state_v1(3, 12 + total(&f3) + total(&f4[..1]), 4));
    let p = look(&q.dir);
    assert_eq!(counts(&p), (3, total(&f4[1..]), 1), "{p:?}");
    assert!(!p.incomplete, "{p:?}");
    q.write_state(&state_v1(3, 12 + total(&f3) + total(&f4), 7));
    assert!(look(&q.dir).is_empty());
}

#[test]
fn a_position_ahead_of_the_segments_is_not_trusted() {
    let (_t, q) = queue();
    let f = frames(2, 0, 3, 100);
    q.write_segment(0, 2, 0, 0, &f);
    // Five frames acknowledged in a segment that holds three: not a state filebeat writes
    // over these segments (a segment was replaced under it).
    q.write_state(&state_v1(0, 12 + 500, 5));
    let p = look(&q.dir);
    assert!(p.incomplete && !p.is_empty(), "{p:?}");
}

#[test]
fn a_walked_segment_shorter_than_the_position_does_not_pass_acks_on() {
    // Segment 0 (version 0, walked: no count) lost its frames, or was replaced, under a
    // position two frames in. Carrying those two acknowledgements on into segment 1 (as is
    // right for a restarted filebeat's finished segment) would call its two frames sent.
    let (_t, q) = queue();
    let (f0, f1) = (frames(0, 0, 4, 50), frames(0, 4, 2, 50));
    q.write_segment(0, 0, 0, 0, &[]);
    q.write_segment(1, 0, 0, 0, &f1);
    q.write_state(&state_v1(0, 4 + total(&f0[..2]), 2));
    let p = look(&q.dir);
    assert!(p.incomplete && !p.is_empty(), "{p:?}");
}

#[test]
fn a_missing_queue_directory() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("diskqueue");
    let e = DiskQueue::open(&dir).unwrap_err().to_string();
    assert!(e.contains(&*dir.to_string_lossy()), "{e}");
    assert!(DiskQueue::open_if_exists(&dir).unwrap().is_none());
    fs::create_dir(&dir).unwrap();
    assert!(DiskQueue::open_if_exists(&dir).unwrap().is_some());
}

#[test]
fn the_simulators_disk_queue_acks_the_registry_before_the_output_has_the_lines() {
    // tests/sim/filebeat_sim.py --queue disk: lines are harvested fast into the queue (and
    // acknowledged in the registry on the write), an output empties it at 30 kB/s.
    let t = tempfile::tempdir().unwrap();
    let delivered = t.path().join("delivered.log");
    let (data, _sim, written) = common::shipping(
        t.path(),
        30_000,
        &[
            "--queue",
            "disk",
            "--rate",
            "2000000",
            "--output-rate",
            "30000",
            "--segment-size",
            "16384",
            "--delivered-log",
            delivered.to_str().unwrap(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while common::acked_bytes(&data) < written {
        assert!(Instant::now() < deadline, "the registry never caught up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut dq = DiskQueue::open(&data.join("diskqueue")).unwrap();
    let at_ack = dq.pending();
    assert!(at_ack.events > 0 && !at_ack.is_empty(), "{at_ack:?}");
    let shipped = || fs::metadata(&delivered).map_or(0, |m| m.len());
    assert!(shipped() < written, "the output is the slow part");

    // Follow it while the output works: every look is readable, and "empty" is only ever
    // seen once the output has delivered every line.
    let mut segments_seen = 0;
    loop {
        dq.refresh().unwrap();
        let p = dq.pending();
        segments_seen = segments_seen.max(p.segments);
        if p.is_empty() {
            assert_eq!(shipped(), written, "empty before every line was delivered");
            break;
        }
        assert!(Instant::now() < deadline, "never emptied: {p:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(segments_seen > 1, "the queue spanned several segments");
    assert_eq!(dq.acked_bytes(), at_ack.bytes);
    let logs = t.path().join("logs/app.log");
    assert_eq!(fs::read(&delivered).unwrap(), fs::read(logs).unwrap());
}

// --- no truncation of a queue's files reads as empty while the whole queue is not ------

/// A queue of `sizes.len()` segments of the given frame counts (the last one being written,
/// the others finished), and a position `acked` frames into the queue.
#[derive(Debug, Clone)]
struct Shape {
    version: u32,
    first_id: u64,
    sizes: Vec<usize>,
    acked: usize,
    len: usize,
    /// Payload growth from one segment to the next (0: every frame the same size).
    step: usize,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        0u32..=2,
        0u64..4,
        prop::collection::vec(1usize..5, 1..4),
        any::<prop::sample::Index>(),
        1usize..60,
        prop_oneof![Just(0usize), 1usize..8],
    )
        .prop_map(|(version, first_id, sizes, at, len, step)| {
            let n: usize = sizes.iter().sum();
            Shape {
                version,
                first_id,
                acked: at.index(n), // at least one frame left
                sizes,
                len,
                step,
            }
        })
}

/// Writes the shape; returns each file's path and full bytes.
fn write_shape(q: &Queue, s: &Shape) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let h = header_size(s.version);
    let (mut seq, mut left) = (0u64, s.acked);
    let mut state = state_v1(s.first_id, 0, 0);
    let mut files = Vec::new();
    for (i, &n) in s.sizes.iter().enumerate() {
        let id = s.first_id + i as u64;
        let f = frames(s.version, seq, n, s.len + i * s.step);
        seq += n as u64;
        let last = i + 1 == s.sizes.len();
        let count = if last || s.version == 0 { 0 } else { n as u32 };
        let bytes = writer::segment(s.version, count, 0, &f);
        fs::write(q.seg_path(id), &bytes).unwrap();
        files.push((q.seg_path(id), bytes));
        if left > 0 && (left < n || last) {
            let k = left.min(n);
            state = state_v1(id, h + total(&f[..k]), k as u64);
            left = 0;
        } else if left >= n && !last {
            left -= n;
            state = state_v1(id + 1, 0, 0);
        }
    }
    q.write_state(&state);
    files.push((q.dir.join("state.dat"), state));
    files
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Every cut of any one file (a write caught half done, state.dat rewritten, ...) reads
    /// as not empty, or as an error, while the whole queue has pending frames. The one cut
    /// that may read empty is the newest segment cut right at the position: the queue as it
    /// was before the pending frames were written (state.dat is read before the segments,
    /// so that is never a view of now).
    #[test]
    fn no_cut_of_a_file_reads_as_empty(s in shape()) {
        let t = tempfile::tempdir().unwrap();
        let q = Queue::new(&t.path().join("diskqueue"));
        let files = write_shape(&q, &s);
        let full = look(&q.dir);
        prop_assert!(full.events > 0 && !full.is_empty(), "{:?} {:?}", s, full);
        let pos = full.position.unwrap();
        // byteIndex 0 is the first frame: right after the header.
        let pos_byte = if pos.byte_index == 0 { header_size(s.version) } else { pos.byte_index };
        let newest = files[files.len() - 2].0.clone();
        for (path, bytes) in &files {
            for cut in 0..bytes.len() {
                fs::write(path, &bytes[..cut]).unwrap();
                let seen = DiskQueue::open(&q.dir).map(|d| d.pending());
                if let Ok(p) = &seen {
                    let at_position = *path == newest
                        && newest == q.seg_path(pos.segment)
                        && cut as u64 == pos_byte;
                    prop_assert!(
                        !p.is_empty() || at_position,
                        "{:?}: {} cut at {}: {:?}", s, path.display(), cut, p
                    );
                }
            }
            fs::write(path, bytes).unwrap();
        }
    }
}
