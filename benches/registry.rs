//! Registry read costs: a full read of a large memlog registry, and the cost of noticing
//! one appended operation, beside the seed's way (re-read everything on each poll).
//!
//! Run: `cargo bench --bench registry`. Figures are in the README.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use drainhook::registry::Registry;
use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

fn op(id: u64, entry: u64, offset: u64) -> String {
    let ino = 1_000_000 + entry;
    format!(
        "{{\"op\":\"set\",\"id\":{id}}}\n{{\"k\":\"filestream::app::native::{ino}-66305\",\"v\":{{\"ttl\":1800000000000,\"updated\":[507500968,1701686520],\"cursor\":{{\"offset\":{offset}}},\"meta\":{{\"source\":\"/var/log/app/file-{entry}.log\",\"identifier_name\":\"native\"}}}}}}\n"
    )
}

/// A memlog registry with `entries` keys and a log.json of about `log_bytes`.
fn build(root: &Path, entries: u64, log_bytes: u64) -> (PathBuf, u64) {
    let d = root.join("registry/filebeat");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("meta.json"), r#"{"version":"1"}"#).unwrap();
    let mut w = BufWriter::new(fs::File::create(d.join("log.json")).unwrap());
    let (mut id, mut written) = (0u64, 0u64);
    while written < log_bytes {
        id += 1;
        let line = op(id, id % entries, id * 100);
        written += line.len() as u64;
        w.write_all(line.as_bytes()).unwrap();
    }
    w.flush().unwrap();
    (d, id)
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let sizes = [
        ("1k entries, 1 MB log", 1_000, 1 << 20),
        ("20k entries, 50 MB log", 20_000, 50 << 20),
    ];
    let mut full = c.benchmark_group("full read");
    full.sample_size(10);
    for (name, entries, bytes) in sizes {
        let root = tmp.path().join(name.replace(' ', "_"));
        build(&root, entries, bytes);
        full.throughput(Throughput::Bytes(bytes));
        full.bench_function(name, |b| b.iter(|| Registry::open(&root).unwrap()));
    }
    full.finish();

    let mut inc = c.benchmark_group("notice one appended op");
    for (name, entries, bytes) in sizes {
        let root = tmp.path().join(format!("inc_{}", name.replace(' ', "_")));
        let (dir, last) = build(&root, entries, bytes);
        let mut reg = Registry::open(&root).unwrap();
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.join("log.json"))
            .unwrap();
        let mut id = last;
        inc.bench_function(format!("incremental, {name}"), |b| {
            b.iter_batched(
                || {
                    id += 1;
                    log.write_all(op(id, 7, id * 100).as_bytes()).unwrap();
                },
                |()| reg.refresh().unwrap(),
                BatchSize::PerIteration,
            )
        });
        if entries == 20_000 {
            // The seed's way: re-read and re-parse everything on each poll. A fresh registry
            // of the same size: the incremental run above grew its own log.
            let root = tmp.path().join("seed_way");
            let (dir, last) = build(&root, entries, bytes);
            let mut log = OpenOptions::new()
                .append(true)
                .open(dir.join("log.json"))
                .unwrap();
            let mut id = last;
            inc.sample_size(10);
            inc.bench_function(format!("full re-read, {name}"), |b| {
                b.iter_batched(
                    || {
                        id += 1;
                        log.write_all(op(id, 7, id * 100).as_bytes()).unwrap();
                    },
                    |()| Registry::open(&root).unwrap(),
                    BatchSize::PerIteration,
                )
            });
        }
    }
    inc.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
