//! Vector's on-disk state, built as Vector writes it, read by `drainhook backlog` and
//! `check`: `checkpoints.json` version 1 with both fingerprint kinds
//! (vector:lib/file-source-common/src/checkpointer.rs:20-42, its serialization test at
//! :494-529), a leftover `checkpoints.new.json`, gzip files, the configuration in YAML and
//! TOML, and what `check` says of each acknowledgement and buffer setup.
//!
//! The checksums below were computed by an implementation of CRC-64/ECMA-182 independent
//! of drainhook's (the simulator's table, tests/sim/vector_sim.py, itself checked against
//! the catalogue's check value 0x6c40df5f0b497347).

mod common;

use common::drainhook;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

/// CRC-64/ECMA-182 of `hello world\n`.
const HELLO: u64 = 11_908_805_321_237_624_401;
/// CRC-64/ECMA-182 of `2026-01-01T00:00:00Z app started\n`.
const STARTED: u64 = 1_508_450_385_548_403_066;

struct Setup {
    _t: tempfile::TempDir,
    dir: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_path_buf();
        fs::create_dir_all(dir.join("logs")).unwrap();
        fs::create_dir_all(dir.join("data/app")).unwrap();
        Setup { _t: t, dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn write(&self, rel: &str, content: &[u8]) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        p
    }

    /// A YAML config: source `app` on `logs/*.log*`, data in `data/`, `fingerprint` and the
    /// sink's extra lines as given.
    fn config(&self, fingerprint: &str, sink: &str) -> PathBuf {
        self.write(
            "vector.yaml",
            format!(
                "data_dir: {data}\nsources:\n  app:\n    type: file\n    include: [\"{logs}/*.log*\"]\n{fingerprint}\nsinks:\n  store:\n    type: aws_s3\n    inputs: [app]\n    bucket: logs\n{sink}\n",
                data = self.path("data").display(),
                logs = self.path("logs").display(),
            )
            .as_bytes(),
        )
    }

    /// `checkpoints.json` as Vector's serde writes it: compact, one object per checkpoint.
    fn checkpoints(&self, name: &str, entries: &[(String, u64)]) {
        let list: Vec<String> = entries
            .iter()
            .map(|(fp, pos)| {
                format!(
                    r#"{{"fingerprint":{fp},"position":{pos},"modified":"2026-08-21T10:11:12.123456789Z"}}"#
                )
            })
            .collect();
        self.write(
            &format!("data/app/{name}"),
            format!(r#"{{"version":"1","checkpoints":[{}]}}"#, list.join(",")).as_bytes(),
        );
    }

    fn run(&self, args: &[&str]) -> Output {
        drainhook()
            .args(args)
            .args(["--shipper", "vector", "--vector-config"])
            .arg(self.path("vector.yaml"))
            .env("DRAINHOOK_TEST_ROOT", "/")
            .output()
            .unwrap()
    }

    fn backlog(&self) -> serde_json::Value {
        let out = self.run(&["backlog", "--json"]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn checksum(c: u64) -> String {
    format!(r#"{{"first_lines_checksum":{c}}}"#)
}

/// The file entry whose `source` ends with `name` (or whose source is null, for `-`).
fn file<'a>(b: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    b["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| match f["source"].as_str() {
            Some(s) => s.ends_with(name),
            None => name == "-",
        })
        .unwrap_or_else(|| panic!("no file {name} in {b:#}"))
}

const ACKS: &str = "    acknowledgements:\n      enabled: true";

#[test]
fn checksum_checkpoints_are_matched_to_files_by_their_first_line() {
    let s = Setup::new();
    s.config("", ACKS);
    let a = s.write("logs/a.log", b"hello world\nsecond line\n");
    s.write(
        "logs/b.log",
        b"2026-01-01T00:00:00Z app started\n2026-01-01T00:00:01Z serving\n",
    );
    s.write("logs/c.log", b"a file Vector has not checkpointed\n");
    s.write("logs/short.log", b"no newline yet");
    s.checkpoints(
        "checkpoints.json",
        &[
            (checksum(HELLO), 24),
            (checksum(STARTED), 33),
            (checksum(42), 100),
        ],
    );
    let b = s.backlog();
    let ino = fs::metadata(&a).unwrap().ino();
    let fa = file(&b, "a.log");
    assert_eq!(
        (
            fa["offset"].as_u64(),
            fa["state"].as_str(),
            fa["inode"].as_u64()
        ),
        (Some(24), Some("shipped"), Some(ino)),
        "{b:#}"
    );
    let fb = file(&b, "b.log");
    assert_eq!(
        (
            fb["offset"].as_u64(),
            fb["pending"].as_u64(),
            fb["state"].as_str()
        ),
        (Some(33), Some(29), Some("pending"))
    );
    // No checkpoint yet: every byte is pending (Vector reads it from the beginning).
    let fc = file(&b, "c.log");
    assert_eq!(
        (fc["offset"].as_u64(), fc["pending"].as_u64()),
        (Some(0), Some(35))
    );
    // A checkpoint whose file is gone is not waited for; a file shorter than one line is
    // not read by Vector at all.
    assert_eq!(file(&b, "-")["state"], "gone");
    assert!(!b.to_string().contains("short.log"), "{b:#}");
    assert_eq!(b["pending_bytes"], 29 + 35);
    assert_eq!(b["drained"], false);
    assert_eq!(b["sources"][0]["shipper"], "vector");
    assert_eq!(b["sources"][0]["owner"], "vector source app");
}

#[test]
fn device_and_inode_checkpoints_follow_a_file_through_a_rename() {
    let s = Setup::new();
    s.config("    fingerprint:\n      strategy: device_and_inode", ACKS);
    let a = s.write("logs/app.log", b"one\ntwo\nthree\n");
    let m = fs::metadata(&a).unwrap();
    s.checkpoints(
        "checkpoints.json",
        &[(format!(r#"{{"dev_inode":[{},{}]}}"#, m.dev(), m.ino()), 8)],
    );
    fs::rename(&a, s.path("logs/app.log.1")).unwrap();
    let b = s.backlog();
    let f = file(&b, "app.log.1");
    assert_eq!(
        (
            f["offset"].as_u64(),
            f["pending"].as_u64(),
            f["device"].as_u64()
        ),
        (Some(8), Some(6), Some(m.dev()))
    );
    // A new file under the old name: same first line, another inode, its own identity.
    s.write("logs/app.log", b"one\n");
    let b = s.backlog();
    assert_eq!(file(&b, "app.log")["pending"], 4);
    assert_eq!(b["pending_bytes"], 10);
}

#[test]
fn a_leftover_checkpoints_new_json_is_read_first_as_vector_does_at_start() {
    let s = Setup::new();
    s.config("", ACKS);
    s.write("logs/a.log", b"hello world\nsecond line\n");
    s.checkpoints("checkpoints.json", &[(checksum(HELLO), 12)]);
    s.checkpoints("checkpoints.new.json", &[(checksum(HELLO), 24)]);
    let b = s.backlog();
    assert_eq!(b["drained"], true, "{b:#}");
    assert!(b["sources"][0]["state"]
        .as_str()
        .unwrap()
        .ends_with("checkpoints.new.json"));
    // Half written (Vector is writing it): the complete checkpoints.json is read.
    s.write(
        "data/app/checkpoints.new.json",
        br#"{"version":"1","checkp"#,
    );
    let b = s.backlog();
    assert_eq!(file(&b, "a.log")["offset"], 12, "{b:#}");
}

#[test]
fn a_gzip_file_counts_its_decompressed_bytes() {
    use std::io::Write;
    let s = Setup::new();
    s.config("", ACKS);
    let text = b"hello world\nthe rest of a rotated file\n";
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text).unwrap();
    s.write("logs/old.log.1.gz", &e.finish().unwrap());
    s.checkpoints("checkpoints.json", &[(checksum(HELLO), 12)]);
    let b = s.backlog();
    let f = file(&b, "old.log.1.gz");
    assert_eq!(
        (f["size"].as_u64(), f["pending"].as_u64()),
        (Some(text.len() as u64), Some(text.len() as u64 - 12)),
        "{b:#}"
    );
}

/// A gzip file too large to decompress within one look (64 MiB a look, so the agent's runtime
/// is never held for long) is counted over several: meanwhile the source is not drained.
#[test]
fn a_large_gzip_file_is_measured_over_several_looks() {
    use std::io::Write;
    let s = Setup::new();
    s.config("", ACKS);
    let line = b"hello world\n";
    let total = 70u64 << 20; // 70 MiB, a multiple of the line's 12 bytes rounded down below
    let lines = total / line.len() as u64;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let block = line.repeat(4096);
    for _ in 0..lines / 4096 {
        e.write_all(&block).unwrap();
    }
    let size = lines / 4096 * 4096 * line.len() as u64;
    s.write("logs/big.log.1.gz", &e.finish().unwrap());
    s.checkpoints("checkpoints.json", &[(checksum(HELLO), size)]);
    let b = s.backlog();
    assert_eq!(b["drained"], false, "{b:#}");
    let waiting = b["sources"][0]["waiting"].to_string();
    assert!(
        waiting.contains("counting the decompressed size of"),
        "{b:#}"
    );
    let out = s.run(&["drain", "--settle", "500ms", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn check_is_exact_only_with_acknowledgements_and_no_disk_buffer() {
    let s = Setup::new();
    s.write("logs/a.log", b"hello world\n");
    s.checkpoints("checkpoints.json", &[(checksum(HELLO), 12)]);
    let verdict = |sink: &str| {
        s.config("", sink);
        let out = s.run(&["check"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = verdict(ACKS);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("an exact drain is possible"), "{text}");
    assert!(
        text.contains("delivery proven by: checkpoints.json positions, moved when every sink"),
        "{text}"
    );

    let (code, text) = verdict("");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("CANNOT BE EXACT") && text.contains("end-to-end acknowledgements are off"),
        "{text}"
    );

    let (code, text) = verdict(&format!(
        "{ACKS}\n    buffer:\n      type: disk\n      max_size: 268435488"
    ));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("sink store has a disk buffer"), "{text}");

    // Acknowledgements on globally, a transform in between: exact.
    s.write(
        "vector.yaml",
        format!(
            "data_dir: {}\nacknowledgements: true\nsources:\n  app: {{type: file, include: [\"{}/*.log\"]}}\ntransforms:\n  parse: {{type: remap, inputs: [app], source: '.'}}\nsinks:\n  store: {{type: http, inputs: [parse], uri: 'http://x'}}\n",
            s.path("data").display(),
            s.path("logs").display()
        )
        .as_bytes(),
    );
    let out = s.run(&["check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn an_unreadable_state_or_config_is_an_error_that_names_the_file() {
    let s = Setup::new();
    s.config("", ACKS);
    s.write("logs/a.log", b"hello world\n");
    let cp = s.write(
        "data/app/checkpoints.json",
        br#"{"version":"2","checkpoints":[]}"#,
    );
    for args in [&["backlog"][..], &["check"], &["drain", "--timeout", "2s"]] {
        let out = s.run(args);
        let err = format!(
            "{}{}",
            common::stderr(&out),
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&cp.display().to_string()) && err.contains("version \"2\""),
            "{args:?}: {err}"
        );
    }
    s.write("vector.yaml", b"sources: [oops");
    let out = s.run(&["backlog"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("vector.yaml"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn the_default_config_is_found_under_the_root_toml_beside_the_yaml() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let put = |rel: &str, content: &[u8]| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
    };
    // No data_dir: Vector's default /var/lib/vector.
    put(
        "etc/vector/vector.toml",
        b"[sources.web]\ntype = \"file\"\ninclude = [\"/var/log/web/*.log\"]\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"web\"]\nencoding.codec = \"text\"\nacknowledgements.enabled = true\n",
    );
    put("var/log/web/access.log", b"hello world\nGET /\n");
    put(
        "var/lib/vector/web/checkpoints.json",
        format!(
            r#"{{"version":"1","checkpoints":[{{"fingerprint":{},"position":12,"modified":"2026-08-21T10:11:12Z"}}]}}"#,
            checksum(HELLO)
        )
        .as_bytes(),
    );
    let out = drainhook()
        .args(["backlog", "--json", "--shipper", "vector"])
        .env("DRAINHOOK_TEST_ROOT", root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(file(&b, "access.log")["pending"], 6, "{b:#}");
    assert_eq!(
        Path::new(b["sources"][0]["state"].as_str().unwrap()),
        root.join("var/lib/vector/web/checkpoints.json")
    );
    // Nothing there: nothing found, and the error says where it looked.
    let out = drainhook()
        .args(["check", "--shipper", "vector"])
        .env("DRAINHOOK_TEST_ROOT", root.join("empty"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = format!(
        "{}{}",
        common::stderr(&out),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(text.contains("etc/vector/vector.yaml"), "{text}");
}
