//! One look at filebeat's disk queue (`refresh` + `pending`) with 10 frames appended since
//! the last look, at a 1 GiB queue (ten finished segments of 100 MiB and the one being
//! written, 24 MiB) and at a 10 MB one (a single segment being written). 100 MiB is the
//! segment size of beats' `DefaultSettings`; from filebeat.yml it is `max_size / 10`. The
//! output is down in both: every frame is pending.
//!
//! Run: `cargo bench --bench diskqueue`. Figures are in the README.

#[path = "../tests/diskqueue/writer.rs"]
mod writer;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use drainhook::diskqueue::DiskQueue;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use writer::Queue;

const SEGMENT: u64 = 100 << 20;
const PAYLOAD: usize = 500;

/// Writes `bytes` of frames into segments of at most `SEGMENT` bytes; all but the last are
/// finished (count in the header). Returns the newest segment's id and the next sequence.
fn build(dir: &Path, bytes: u64) -> (Queue, u64, u64) {
    let q = Queue::new(dir);
    let frame = writer::frame(&writer::payload(2, 0, PAYLOAD));
    let (mut id, mut seq, mut written) = (0u64, 0u64, 0u64);
    loop {
        let left = bytes - written;
        let seg_bytes = left.min(SEGMENT - 12);
        let n = seg_bytes / frame.len() as u64;
        let last = left <= SEGMENT;
        let count = if last { 0 } else { n as u32 };
        let mut w = BufWriter::new(File::create(q.seg_path(id)).unwrap());
        w.write_all(&writer::header(2, count, 0)).unwrap();
        for _ in 0..n {
            w.write_all(&frame).unwrap();
        }
        // On disk before the measurement, as a queue that waited behind a slow output is:
        // a gigabyte of dirty pages being written back would weigh on the looks.
        w.into_inner().unwrap().sync_all().unwrap();
        seq += n;
        written += n * frame.len() as u64 + 12;
        if last {
            break;
        }
        id += 1;
    }
    q.empty_state(); // the output has acknowledged nothing
    (q, id, seq)
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    // Both queues are built (and on disk) before either is measured.
    let queues: Vec<_> = [("10 MB queue", 10_000_000u64), ("1 GB queue", 1 << 30)]
        .into_iter()
        .map(|(name, bytes)| (name, build(&tmp.path().join(name.replace(' ', "_")), bytes)))
        .collect();
    let mut g = c.benchmark_group("disk queue look, 10 frames appended");
    for (name, (q, newest, mut seq)) in queues {
        let mut dq = DiskQueue::open(&q.dir).unwrap();
        let before = dq.pending();
        assert!(before.events > 0 && !before.incomplete, "{before:?}");
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let frames = writer::frames(2, seq, 10, PAYLOAD);
                    seq += 10;
                    q.append(newest, &frames.concat());
                },
                |()| {
                    dq.refresh().unwrap();
                    dq.pending()
                },
                BatchSize::PerIteration,
            )
        });
        let after = dq.pending();
        assert!(after.events > before.events && !after.incomplete);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
