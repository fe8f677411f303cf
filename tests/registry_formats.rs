//! The registry reader and the backlog against every on-disk format and shape,
//! including the shapes of beats' own memlog test data. At each shape the binary's
//! `backlog --json` must say what the library computes: with `DRAINHOOK_TEST_BIN` naming
//! another build (the aarch64 one under qemu-user, `make test-aarch64`), that build reads
//! every format as this one does.

mod common;

use drainhook::backlog::{self, fingerprint, ProcScan, State};
use drainhook::registry::{locate, Format, Registry};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn log_file(dir: &Path, name: &str, body: &[u8]) -> (PathBuf, u64, u64) {
    let p = dir.join(name);
    fs::write(&p, body).unwrap();
    let m = fs::metadata(&p).unwrap();
    (p, m.ino(), m.dev())
}

fn log_value(src: &Path, ino: u64, dev: u64, offset: u64) -> String {
    format!(
        r#"{{"offset":{offset},"ttl":-1,"prev_id":"","source":"{}","timestamp":[2061883432564,1685451872],"type":"log","FileStateOS":{{"inode":{ino},"device":{dev}}},"identifier_name":"native","id":"native::{ino}-{dev}"}}"#,
        src.display()
    )
}

fn set_op(id: u64, key: &str, value: &str) -> String {
    format!("{{\"op\":\"set\",\"id\":{id}}}\n{{\"k\":\"{key}\",\"v\":{value}}}\n")
}

fn memlog_dir(root: &Path) -> PathBuf {
    let d = root.join("registry").join("filebeat");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("meta.json"), r#"{"version":"1"}"#).unwrap();
    d
}

fn offsets(reg: &Registry) -> Vec<(String, u64)> {
    reg.entries()
        .iter()
        .map(|e| (e.key.clone(), e.offset))
        .collect()
}

/// Opens the registry under `dir` and checks that the binary's `backlog --json` there says
/// what the library computes from it.
fn open_and_compare(dir: &Path) -> Registry {
    let reg = Registry::open(dir).unwrap();
    cli_agrees(dir, &reg);
    reg
}

fn cli_agrees(dir: &Path, reg: &Registry) {
    let lib = serde_json::to_value(backlog::compute(reg, &ProcScan::default())).unwrap();
    let cli = common::backlog_json(dir);
    // The binary's JSON is the aggregate over every shipper found; here there is one source,
    // this registry, and its entry must be what the library computes.
    let sources = cli["sources"]
        .as_array()
        .expect("backlog --json has sources");
    assert_eq!(sources.len(), 1, "one source expected: {cli}");
    assert_eq!(
        sources[0],
        lib,
        "`drainhook backlog --json` disagrees with the library on {}",
        dir.display()
    );
    assert_eq!(cli["pending_bytes"], lib["pending_bytes"], "{cli}");
    assert_eq!(cli["files"], lib["files"], "{cli}");
}

fn own_comm() -> ProcScan {
    ProcScan {
        process_name: fs::read_to_string("/proc/self/comm")
            .unwrap()
            .trim_end()
            .to_string(),
        ..ProcScan::default()
    }
}

#[test]
fn locates_every_layout_from_any_starting_point() {
    let t = tmp();
    // 5.x/6.x: data dir with a `registry` file.
    let old = t.path().join("old");
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join("registry"), "[]").unwrap();
    // the beat's own meta.json (its uuid) sits beside the 5.x/6.x registry file
    fs::write(
        old.join("meta.json"),
        r#"{"uuid":"1c0e6a5e-2d7c-4f5a-8f7e-3a1b2c3d4e5f"}"#,
    )
    .unwrap();
    assert_eq!(locate(&old).unwrap().format, Format::Array);
    assert_eq!(locate(&old.join("registry")).unwrap().format, Format::Array);
    // 7.0-7.8: data.json
    let seven = t.path().join("seven");
    fs::create_dir_all(seven.join("registry/filebeat")).unwrap();
    fs::write(seven.join("registry/filebeat/data.json"), "[]").unwrap();
    fs::write(
        seven.join("registry/filebeat/meta.json"),
        r#"{"version":"0"}"#,
    )
    .unwrap();
    for p in [
        seven.clone(),
        seven.join("registry"),
        seven.join("registry/filebeat"),
    ] {
        assert_eq!(
            locate(&p).unwrap().format,
            Format::DataJson,
            "{}",
            p.display()
        );
    }
    // memlog
    let new = t.path().join("new");
    let d = memlog_dir(&new);
    fs::write(d.join("log.json"), "").unwrap();
    fs::write(d.join("12.json"), "[]").unwrap();
    for p in [
        new.clone(),
        new.join("registry"),
        d.clone(),
        d.join("log.json"),
        d.join("12.json"),
    ] {
        let loc = locate(&p).unwrap();
        assert_eq!((loc.format, loc.path.clone()), (Format::Memlog, d.clone()));
    }
}

#[test]
fn unknown_backends_and_missing_registries_are_named() {
    let t = tmp();
    let d = t.path().join("registry/filebeat");
    fs::create_dir_all(&d).unwrap();
    let mut page = vec![0u8; 4096];
    page[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
    fs::write(d.join("filebeat.db"), &page).unwrap();
    let err = Registry::open(t.path()).err().unwrap().to_string();
    assert!(
        err.contains("bbolt") && err.contains("filebeat.db"),
        "{err}"
    );

    let looped = t.path().join("loop");
    fs::create_dir_all(&looped).unwrap();
    std::os::unix::fs::symlink(&looped, looped.join("registry")).unwrap();
    let err = Registry::open(&looped).err().unwrap().to_string();
    assert!(err.contains("loop"), "{err}");

    let err = Registry::open(&t.path().join("nope"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn memlog_log_only_checkpoint_only_and_both() {
    let t = tmp();
    let d = memlog_dir(t.path());
    // log only
    fs::write(
        d.join("log.json"),
        set_op(1, "a", r#"{"offset":1,"ttl":-1,"source":"/a"}"#)
            + &set_op(2, "b", r#"{"offset":2,"ttl":-1,"source":"/b"}"#)
            + &set_op(3, "a", r#"{"offset":5,"ttl":-1,"source":"/a"}"#),
    )
    .unwrap();
    let reg = open_and_compare(t.path());
    assert_eq!(offsets(&reg), vec![("a".into(), 5), ("b".into(), 2)]);

    // checkpoint only
    fs::remove_file(d.join("log.json")).unwrap();
    fs::write(
        d.join("4.json"),
        "[{\"_key\":\"a\",\"offset\":7,\"ttl\":-1,\"source\":\"/a\"},\n{\"_key\":\"c\",\"offset\":9,\"ttl\":-1}\n]",
    )
    .unwrap();
    let reg = open_and_compare(t.path());
    assert_eq!(offsets(&reg), vec![("a".into(), 7), ("c".into(), 9)]);

    // checkpoint + log: ops <= txid are old and ignored, the rest apply in order
    fs::write(
        d.join("log.json"),
        set_op(4, "a", r#"{"offset":100,"ttl":-1}"#)
            + &set_op(5, "a", r#"{"offset":8,"ttl":-1}"#)
            + "{\"op\":\"remove\",\"id\":6}\n{\"k\":\"c\"}\n",
    )
    .unwrap();
    let reg = open_and_compare(t.path());
    assert_eq!(offsets(&reg), vec![("a".into(), 8)]);
}

#[test]
fn memlog_newest_of_several_checkpoints_wins_and_uppercase_kv_is_read() {
    let t = tmp();
    let d = memlog_dir(t.path());
    fs::write(d.join("3.json"), r#"[{"_key":"old","offset":1}]"#).unwrap();
    fs::write(d.join("12.json"), r#"[{"_key":"new","offset":2}]"#).unwrap();
    fs::write(d.join("active.dat"), d.join("12.json").to_str().unwrap()).unwrap();
    fs::write(
        d.join("log.json"),
        "{\"op\":\"set\",\"id\":13}\n{\"K\":\"new\",\"V\":{\"offset\":3}}\n",
    )
    .unwrap();
    let reg = open_and_compare(t.path());
    assert_eq!(offsets(&reg), vec![("new".into(), 3)]);
}

#[test]
fn memlog_stops_at_incomplete_op_torn_line_and_wrong_id() {
    let t = tmp();
    let d = memlog_dir(t.path());
    let good = set_op(1, "a", r#"{"offset":1}"#);
    let cases = [
        // incomplete op: an action with no data line yet
        (good.clone() + "{\"op\":\"set\",\"id\":2}\n", 1, false),
        // torn last line (no newline): normal while filebeat writes
        (
            good.clone() + "{\"op\":\"set\",\"id\":2}\n{\"k\":\"a\",\"v\":{\"off",
            1,
            false,
        ),
        // a wrong id: the rest is not valid
        (good.clone() + &set_op(3, "a", r#"{"offset":9}"#), 1, true),
        // an unparsable line in the middle: stop there
        (
            good.clone() + "garbage\n" + &set_op(2, "a", r#"{"offset":9}"#),
            1,
            true,
        ),
    ];
    for (body, want, warned) in cases {
        fs::write(d.join("log.json"), &body).unwrap();
        let reg = open_and_compare(t.path());
        assert_eq!(offsets(&reg), vec![("a".into(), want)], "{body}");
        assert_eq!(reg.warning().is_some(), warned, "{body}");
    }
}

#[test]
fn memlog_unreadable_is_an_error_not_an_empty_registry() {
    let t = tmp();
    let d = memlog_dir(t.path());
    fs::write(d.join("log.json"), "this is not json\n").unwrap();
    let err = Registry::open(t.path()).err().unwrap().to_string();
    assert!(err.contains("log.json") && err.contains("line 1"), "{err}");

    fs::write(d.join("log.json"), "").unwrap();
    fs::write(d.join("7.json"), "[{\"_key\":\"a\",\n\"offset\": }]").unwrap();
    let err = Registry::open(t.path()).err().unwrap().to_string();
    assert!(err.contains("7.json") && err.contains("line 2"), "{err}");
}

#[test]
fn memlog_follows_appends_and_a_checkpoint_truncation() {
    let t = tmp();
    let d = memlog_dir(t.path());
    let log = d.join("log.json");
    fs::write(&log, set_op(1, "a", r#"{"offset":1}"#)).unwrap();
    let mut reg = Registry::open(t.path()).unwrap();
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    // half an op, then the rest
    f.write_all(b"{\"op\":\"set\",\"id\":2}\n{\"k\":\"a\",")
        .unwrap();
    reg.refresh().unwrap();
    assert_eq!(offsets(&reg), vec![("a".into(), 1)]);
    f.write_all(b"\"v\":{\"offset\":2}}\n").unwrap();
    reg.refresh().unwrap();
    assert_eq!(offsets(&reg), vec![("a".into(), 2)]);

    // checkpoint: 3.json appears, log.json is truncated and grows again past our position
    fs::write(d.join("3.json"), r#"[{"_key":"a","offset":3}]"#).unwrap();
    f.set_len(0).unwrap();
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(
        (set_op(4, "a", r#"{"offset":4}"#)
            + &set_op(5, "b", r#"{"offset":50}"#)
            + &set_op(6, "a", r#"{"offset":6}"#))
            .as_bytes(),
    )
    .unwrap();
    reg.refresh().unwrap();
    assert_eq!(offsets(&reg), vec![("a".into(), 6), ("b".into(), 50)]);
    assert!(reg.warning().is_none());
}

#[test]
fn array_formats_are_read_and_reread_after_rename() {
    let t = tmp();
    let (src, ino, dev) = log_file(t.path(), "app.log", b"0123456789");
    let reg_path = t.path().join("registry");
    let write = |offset: u64| {
        let new = t.path().join("registry.new");
        fs::write(&new, format!("[{}]", log_value(&src, ino, dev, offset))).unwrap();
        fs::rename(&new, &reg_path).unwrap();
    };
    write(4);
    let mut reg = open_and_compare(t.path());
    assert_eq!(reg.format(), Format::Array);
    let b = backlog::compute(&reg, &ProcScan::default());
    assert_eq!((b.pending_bytes, b.files[0].state), (6, State::Pending));
    write(10);
    reg.refresh().unwrap();
    cli_agrees(t.path(), &reg);
    let b = backlog::compute(&reg, &ProcScan::default());
    assert!(b.is_drained());
    assert_eq!(b.files[0].state, State::Shipped);
}

#[test]
fn every_state_of_the_backlog() {
    let t = tmp();
    let logs = t.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let (shipped, i1, d1) = log_file(&logs, "shipped.log", b"abcd\n");
    let (pending, i2, d2) = log_file(&logs, "pending.log", b"abcdefgh\n");
    let (trunc, i3, d3) = log_file(&logs, "trunc.log", b"ab\n");
    let (unman, i4, d4) = log_file(&logs, "unmanaged.log", b"abcdef\n");
    let gone = logs.join("gone.log");
    let d = memlog_dir(t.path());
    let unmanaged_value = log_value(&unman, i4, d4, 1).replace("\"ttl\":-1", "\"ttl\":-2");
    let removed_value = log_value(&shipped, i1, d1, 0).replace("\"ttl\":-1", "\"ttl\":0");
    fs::write(
        d.join("log.json"),
        set_op(1, "1", &log_value(&shipped, i1, d1, 5))
            + &set_op(2, "2", &log_value(&pending, i2, d2, 3))
            + &set_op(3, "3", &log_value(&trunc, i3, d3, 100))
            + &set_op(4, "4", &log_value(&gone, 999_999_999, 1, 10))
            + &set_op(5, "5", &unmanaged_value)
            + &set_op(6, "6", &removed_value),
    )
    .unwrap();
    let reg = open_and_compare(t.path());
    let b = backlog::compute(&reg, &ProcScan::default());
    let states: Vec<(State, u64)> = b.files.iter().map(|f| (f.state, f.pending)).collect();
    assert_eq!(
        states,
        vec![
            (State::Shipped, 0),
            (State::Pending, 6),
            (State::Truncated, 3),
            (State::Gone, 0),
            (State::Unmanaged, 0),
        ]
    );
    assert_eq!(b.pending_bytes, 9);
    assert!(!b.is_drained());
    let json = serde_json::to_value(&b).unwrap();
    assert_eq!(json["format"], "memlog");
    assert_eq!(json["files"][2]["state"], "truncated");
    assert_eq!(json["files"][0]["inode"], i1);
    assert_eq!(json["files"][0]["device"], d1);
}

#[test]
fn rotated_files_are_found_by_inode_and_reused_inodes_are_not() {
    let t = tmp();
    let (src, ino, dev) = log_file(t.path(), "app.log", b"line one\nline two\n");
    let d = memlog_dir(t.path());
    fs::write(
        d.join("log.json"),
        set_op(1, "k", &log_value(&src, ino, dev, 9)),
    )
    .unwrap();
    // rotation: app.log -> app.log.1, a new app.log
    fs::rename(&src, t.path().join("app.log.1")).unwrap();
    fs::write(&src, b"new\n").unwrap();
    let reg = open_and_compare(t.path());
    let b = backlog::compute(&reg, &ProcScan::default());
    assert_eq!(b.files[0].state, State::Pending);
    assert_eq!(b.files[0].pending, 9);
    assert_eq!(
        b.files[0].found_at.as_deref(),
        Some(t.path().join("app.log.1").as_path())
    );

    // the same inode under an unrelated name is not the entry's file
    fs::rename(t.path().join("app.log.1"), t.path().join("other.txt")).unwrap();
    let b = backlog::compute(&reg, &ProcScan::default());
    assert_eq!(b.files[0].state, State::Gone);
}

#[test]
fn deleted_files_still_open_in_the_shipper_are_found_through_proc() {
    let t = tmp();
    let (src, ino, dev) = log_file(t.path(), "app.log", b"0123456789\n");
    let d = memlog_dir(t.path());
    fs::write(
        d.join("log.json"),
        set_op(1, "k", &log_value(&src, ino, dev, 4)),
    )
    .unwrap();
    let held = fs::File::open(&src).unwrap(); // this test process plays filebeat
    fs::remove_file(&src).unwrap();
    let reg = open_and_compare(t.path());
    let b = backlog::compute(&reg, &own_comm());
    assert_eq!((b.files[0].state, b.files[0].pending), (State::Pending, 7));
    drop(held);
    let b = backlog::compute(&reg, &own_comm());
    assert_eq!(b.files[0].state, State::Gone);
}

#[test]
fn filestream_identities_match_their_files() {
    let t = tmp();
    let body: Vec<u8> = (0..2000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (big, ino, dev) = log_file(t.path(), "big.log", &body);
    let (small, _, _) = log_file(t.path(), "small.log", b"short\n");
    let fp = fingerprint(&big).unwrap();
    assert!(
        fingerprint(&small).is_none(),
        "files under 1024 bytes have no fingerprint"
    );
    let d = memlog_dir(t.path());
    let fs_value = |src: &Path, ident: &str, offset: &str| {
        format!(
            r#"{{"ttl":1800000000000,"updated":[1,2],"cursor":{offset},"meta":{{"source":"{}","identifier_name":"{ident}"}}}}"#,
            src.display()
        )
    };
    fs::write(
        d.join("log.json"),
        set_op(
            1,
            &format!("filestream::in::native::{ino}-{dev}"),
            &fs_value(&big, "native", r#"{"offset":2000}"#),
        ) + &set_op(
            2,
            &format!("filestream::in::fingerprint::{fp}"),
            &fs_value(&big, "fingerprint", "null"),
        ) + &set_op(
            3,
            &format!("filestream::in::path::{}", big.display()),
            &fs_value(&big, "path", r#"{"offset":1500,"eof":false}"#),
        ),
    )
    .unwrap();
    // rotate by rename: native and fingerprint follow the file, path does not
    fs::rename(&big, t.path().join("big.log.1")).unwrap();
    let reg = open_and_compare(t.path());
    let b = backlog::compute(&reg, &ProcScan::default());
    let by_key: Vec<(State, u64)> = b.files.iter().map(|f| (f.state, f.pending)).collect();
    // keys sort as: fingerprint, native, path
    assert_eq!(
        by_key,
        vec![
            (State::Pending, 2000),
            (State::Shipped, 0),
            (State::Gone, 0)
        ]
    );
    // small.log has no entry under fingerprint: nothing waits for it
    assert_eq!(b.files.len(), 3);
}

/// A reader that catches filebeat mid-write sees a prefix of the file. Every prefix of a
/// valid memlog log must read as an older state (never a later or invented one), and every
/// prefix of a checkpoint or an array file must be an error, never a panic nor "nothing".
#[test]
fn every_torn_prefix_reads_as_an_older_state_or_an_error() {
    let t = tmp();
    let d = memlog_dir(t.path());
    let ops: Vec<String> = (1..=6)
        .map(|i| {
            set_op(
                i,
                if i % 2 == 0 { "a" } else { "b" },
                &format!(r#"{{"offset":{}}}"#, i * 10),
            )
        })
        .collect();
    let full = ops.concat();
    // The state after the first n complete operations.
    let state_after = |n: usize| -> Vec<(String, u64)> {
        let mut m = std::collections::BTreeMap::new();
        for i in 1..=n as u64 {
            m.insert(if i % 2 == 0 { "a" } else { "b" }.to_string(), i * 10);
        }
        m.into_iter().collect()
    };
    let mut boundaries = vec![0];
    for o in &ops {
        boundaries.push(boundaries.last().unwrap() + o.len());
    }
    for cut in 0..=full.len() {
        fs::write(d.join("log.json"), &full[..cut]).unwrap();
        let complete = boundaries.iter().filter(|&&b| b <= cut).count() - 1;
        match Registry::open(t.path()) {
            Ok(reg) => assert_eq!(offsets(&reg), state_after(complete), "cut at byte {cut}"),
            Err(e) => panic!("a torn log.json (cut at {cut}) is normal, not an error: {e}"),
        }
    }

    let checkpoint =
        "[{\"_key\":\"a\",\"offset\":7,\"ttl\":-1},\n{\"_key\":\"b\",\"offset\":9,\"ttl\":-1}\n]";
    fs::write(d.join("log.json"), "").unwrap();
    for cut in 0..checkpoint.len() {
        fs::write(d.join("5.json"), &checkpoint[..cut]).unwrap();
        let err = Registry::open(t.path()).err();
        assert!(
            err.is_some(),
            "a checkpoint cut at {cut} must not read as a state"
        );
        assert!(err.unwrap().to_string().contains("5.json"));
    }
    fs::remove_file(d.join("5.json")).unwrap();

    let array = br#"[{"source":"/a","offset":1,"FileStateOS":{"inode":1,"device":2},"ttl":-1}]"#;
    let old = t.path().join("old");
    fs::create_dir_all(&old).unwrap();
    for cut in 0..array.len() {
        fs::write(old.join("registry"), &array[..cut]).unwrap();
        assert!(
            Registry::open(&old).is_err(),
            "an array cut at {cut} must be an error"
        );
    }
}
