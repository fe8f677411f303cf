#![no_main]
//! filebeat's disk queue: the input's first 28 bytes as `state.dat`, the rest as the newest
//! segment `1.seg` (walked, count 0) beside a finished `0.seg`, then the same rest grown by
//! one byte and looked at again (an incremental refresh). Nothing may panic.
use drainhook::diskqueue::DiskQueue;
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let d = common::scratch().join("diskqueue");
    if std::fs::create_dir_all(&d).is_err() {
        return;
    }
    let (state, seg) = data.split_at(data.len().min(28));
    // A finished segment of two 13-byte frames (version 2, count 2).
    let mut zero = vec![2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0];
    for _ in 0..2 {
        zero.extend([13, 0, 0, 0, b'x', 0, 0, 0, 0, 13, 0, 0, 0]);
    }
    let written = std::fs::write(d.join("state.dat"), state).is_ok()
        && std::fs::write(d.join("0.seg"), &zero).is_ok()
        && std::fs::write(d.join("1.seg"), seg).is_ok();
    if !written {
        return;
    }
    if let Ok(mut q) = DiskQueue::open(&d) {
        let _ = q.pending().is_empty();
        let mut grown = seg.to_vec();
        grown.push(grown.last().copied().unwrap_or(0));
        if std::fs::write(d.join("1.seg"), &grown).is_ok() {
            let _ = q.refresh();
            let _ = (q.pending(), q.acked_bytes());
        }
    }
});
