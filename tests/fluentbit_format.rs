//! Fluent Bit's state as drainhook reads it, built from Fluent Bit's sources: a tail DB made
//! with the real schema and statements (plugins/in_tail/tail_sql.h) in WAL mode, chunk files
//! in chunkio's layout (lib/chunkio/include/chunkio/cio_file_st.h), configs in both formats;
//! the read-only case of the hardened unit (the DB's directory mounted read-only); and, with
//! the stand-in (tests/sim/fluentbit_sim.py), that a drain waits for delivery and not for the
//! offsets, which advance on read.

mod common;
#[path = "common/fluentbit.rs"]
mod fluentbit;

use common::*;
use fluentbit::*;
use proptest::prelude::*;
use rusqlite::Connection;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

// tail_sql.h, verbatim.
const SQL_CREATE_FILES: &str = "CREATE TABLE IF NOT EXISTS in_tail_files (  id      INTEGER PRIMARY KEY,  name    TEXT NOT NULL,  offset  INTEGER,  inode   INTEGER,  created INTEGER,  rotated INTEGER DEFAULT 0,  offset_marker INTEGER DEFAULT 0,  offset_marker_size INTEGER DEFAULT 0);";
const SQL_INSERT_FILE: &str = "INSERT INTO in_tail_files   (name, offset, inode, created, offset_marker, offset_marker_size)  VALUES (@name, @offset, @inode, @created, @offset_marker, @offset_marker_size);";
const SQL_ROTATE_FILE: &str = "UPDATE in_tail_files set name=@name,rotated=1 WHERE id=@id;";
const SQL_UPDATE_OFFSET: &str = "UPDATE in_tail_files set offset=@offset, offset_marker=@offset_marker, offset_marker_size=@offset_marker_size WHERE id=@id;";

/// A DB as Fluent Bit opens it (tail_db.c:flb_tail_db_open: the table, `PRAGMA
/// journal_mode=WAL`, the default `DB.journal_mode`), left open like a running Fluent Bit.
fn open_db(path: &Path) -> Connection {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = Connection::open(path).unwrap();
    c.execute_batch(SQL_CREATE_FILES).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode=WAL;", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    c
}

fn insert(c: &Connection, name: &Path, inode: u64, offset: u64) -> i64 {
    c.execute(
        SQL_INSERT_FILE,
        rusqlite::params![name.to_str().unwrap(), offset as i64, inode as i64, 0, 0, 0],
    )
    .unwrap();
    c.last_insert_rowid()
}

fn set_offset(c: &Connection, id: i64, offset: u64) {
    c.execute(
        SQL_UPDATE_OFFSET,
        rusqlite::params![offset as i64, 0, 0, id],
    )
    .unwrap();
}

fn write_file(p: &Path, n: usize) -> u64 {
    fs::write(p, "x".repeat(n - 1) + "\n").unwrap();
    fs::metadata(p).unwrap().ino()
}

/// A chunk file: header, metadata `F1 77 <type> 00 <tag>` (flb_input_chunk.c:1734-1770), then
/// `content` bytes of records, preallocated as chunkio does.
fn write_chunk(dir: &Path, name: &str, content: usize) {
    fs::create_dir_all(dir).unwrap();
    let meta = b"\xf1\x77\x00\x00tail.0";
    let mut b = vec![0xC1, 0x00];
    b.extend([0u8; 8]);
    b.extend((content as u32).to_be_bytes());
    b.extend([0u8; 8]);
    b.extend((meta.len() as u16).to_be_bytes());
    b.extend(meta);
    b.extend(std::iter::repeat_n(0x92u8, content));
    b.resize(262_144, 0);
    fs::write(dir.join(name), b).unwrap();
}

/// Files in every state a tail DB can leave them in, and the DB, open, describing them.
struct Fixture {
    _t: tempfile::TempDir,
    dir: PathBuf,
    db: PathBuf,
    conn: Option<Connection>,
}

fn fixture() -> Fixture {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_path_buf();
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).unwrap();
    let db = dir.join("db").join("tail.db");
    let c = open_db(&db);
    // read to its end
    let a = write_file(&logs.join("a.log"), 1000);
    let id = insert(&c, &logs.join("a.log"), a, 0);
    set_offset(&c, id, 1000);
    // renamed after Fluent Bit last wrote its row: found by inode beside its name
    let b = write_file(&logs.join("b.log"), 500);
    let id = insert(&c, &logs.join("b.log"), b, 0);
    set_offset(&c, id, 200);
    fs::rename(logs.join("b.log"), logs.join("b.log.1")).unwrap();
    // rotated: the row took the new name and rotated=1
    let r = write_file(&logs.join("c.log"), 300);
    let id = insert(&c, &logs.join("c.log"), r, 300);
    fs::rename(logs.join("c.log"), logs.join("c.log.1")).unwrap();
    c.execute(
        SQL_ROTATE_FILE,
        rusqlite::params![logs.join("c.log.1").to_str().unwrap(), id],
    )
    .unwrap();
    // gone
    insert(&c, &logs.join("gone.log"), 999_999_999, 10);
    // truncated below its offset
    let tr = write_file(&logs.join("t.log"), 100);
    let id = insert(&c, &logs.join("t.log"), tr, 0);
    set_offset(&c, id, 500);
    Fixture {
        _t: t,
        dir,
        db,
        conn: Some(c),
    }
}

fn classic_config(f: &Fixture, service: &str, storage_type: &str) -> PathBuf {
    let p = f.dir.join("fluent-bit.conf");
    fs::write(
        &p,
        format!(
            "[SERVICE]\n    Flush 1\n{service}    storage.path {}\n\n[INPUT]\n    Name cpu\n\n[INPUT]\n    Name         tail\n    Path         {}/logs/*.log\n    DB           {}\n    storage.type {storage_type}\n\n[OUTPUT]\n    Name  null\n    Match *\n",
            f.dir.join("storage").display(),
            f.dir.display(),
            f.db.display()
        ),
    )
    .unwrap();
    p
}

fn yaml_config(f: &Fixture) -> PathBuf {
    let p = f.dir.join("fluent-bit.yaml");
    fs::write(
        &p,
        format!(
            "service:\n  flush: 1\n  storage.path: {}\npipeline:\n  inputs:\n    - name: cpu\n    - name: tail\n      path: {}/logs/*.log\n      db: {}\n      storage.type: filesystem\n  outputs:\n    - name: 'null'\n      match: '*'\n",
            f.dir.join("storage").display(),
            f.dir.display(),
            f.db.display()
        ),
    )
    .unwrap();
    p
}

fn run(cmd: &str, config: &Path, extra: &[&str]) -> std::process::Output {
    drainhook()
        .args([cmd, "--shipper", "fluent-bit", "--fluent-bit-config"])
        .arg(config)
        .args(extra)
        .output()
        .unwrap()
}

fn backlog_of(config: &Path) -> serde_json::Value {
    let out = run("backlog", config, &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn by_source<'a>(b: &'a serde_json::Value, suffix: &str) -> &'a serde_json::Value {
    b["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["source"].as_str().unwrap().ends_with(suffix))
        .unwrap_or_else(|| panic!("no {suffix} in {b}"))
}

fn assert_fixture_read(b: &serde_json::Value) {
    assert_eq!(by_source(b, "/a.log")["state"], "shipped", "{b}");
    let bl = by_source(b, "/b.log");
    assert_eq!(bl["state"], "pending", "{b}");
    assert_eq!(bl["pending"], 300, "{b}");
    assert!(
        bl["found_at"].as_str().unwrap().ends_with("/b.log.1"),
        "{b}"
    );
    assert_eq!(by_source(b, "/c.log.1")["state"], "shipped", "{b}");
    assert_eq!(by_source(b, "/gone.log")["state"], "gone", "{b}");
    let t = by_source(b, "/t.log");
    assert_eq!(
        (t["state"].as_str(), t["pending"].as_u64()),
        (Some("truncated"), Some(100)),
        "{b}"
    );
}

#[test]
fn a_tail_db_with_the_real_schema_and_chunk_files_are_read() {
    let f = fixture();
    write_chunk(
        &f.dir.join("storage").join("tail.1"),
        "4242-1700000000.12345678.flb",
        4242,
    );
    write_chunk(
        &f.dir.join("storage").join("tail.1"),
        "4242-1700000001.12345678.flb",
        58,
    );
    // another input's chunks are not the tail input's
    write_chunk(
        &f.dir.join("storage").join("cpu.0"),
        "4242-1700000000.1.flb",
        999,
    );
    for config in [classic_config(&f, "", "filesystem"), yaml_config(&f)] {
        let b = backlog_of(&config);
        assert_fixture_read(&b);
        let s = &b["sources"][0];
        assert_eq!(s["shipper"], "fluent-bit", "{b}");
        assert_eq!(s["queue"]["type"], "chunks", "{b}");
        assert_eq!(s["queue"]["events"], 2, "{b}");
        assert_eq!(s["queue"]["bytes"], 4300, "{b}");
        assert_eq!(b["pending_bytes"], 300 + 100 + 4300, "{b}");
        assert_eq!(b["drained"], false, "{b}");
    }
}

#[test]
fn without_the_http_server_check_says_drained_cannot_be_exact() {
    let f = fixture();
    let out = run("check", &classic_config(&f, "", "memory"), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}{}", stderr(&out));
    assert!(text.contains("CANNOT BE EXACT"), "{text}");
    assert!(
        text.contains("HTTP server is off") && text.contains("memory"),
        "{text}"
    );
    // filesystem storage shows the chunks, but not the drops
    let out = run("check", &classic_config(&f, "", "filesystem"), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("dropped after its last retry"), "{text}");
}

#[test]
fn an_unreachable_http_server_is_an_error_never_drained() {
    let f = fixture();
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = classic_config(
        &f,
        &format!("    HTTP_Server On\n    HTTP_Listen 127.0.0.1\n    HTTP_Port {port}\n"),
        "filesystem",
    );
    let out = run("check", &config, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        all.contains(&format!("127.0.0.1:{port}/api/v2/metrics")),
        "{all}"
    );
}

#[test]
fn a_bad_config_or_db_is_an_error_naming_the_file() {
    let f = fixture();
    let config = f.dir.join("bad.conf");
    fs::write(
        &config,
        "[SERVICE]\n    HTTP_Server perhaps\n[INPUT]\n    Name tail\n    Path /x\n",
    )
    .unwrap();
    let out = run("backlog", &config, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("bad.conf") && stderr(&out).contains("HTTP_Server"),
        "{}",
        stderr(&out)
    );
    let config = classic_config(&f, "", "filesystem");
    drop(f.conn);
    fs::write(
        &f.db,
        b"not a database at all, just some bytes long enough to have a header",
    )
    .unwrap();
    let out = run("backlog", &config, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("tail.db"), "{}", stderr(&out));
}

/// Runs `drainhook backlog --json` with the DB's directory mounted read-only, as under
/// `ProtectSystem=strict`; also returns the directory's listing before and after.
fn backlog_read_only(
    config: &Path,
    db_dir: &Path,
) -> (serde_json::Value, Vec<String>, Vec<String>) {
    let listing = || {
        let mut v: Vec<String> = fs::read_dir(db_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = listing();
    let bin = std::env::var("DRAINHOOK_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_drainhook").to_string());
    let script = format!(
        "mount --bind '{d}' '{d}' && mount -o remount,ro,bind '{d}' '{d}' && touch '{d}/probe' 2>/dev/null && echo WRITABLE >&2; exec '{bin}' backlog --json --shipper fluent-bit --fluent-bit-config '{c}'",
        d = db_dir.display(),
        c = config.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env("DRAINHOOK_TEST_ROOT", "/nonexistent-drainhook-test/root")
        .env_remove("RUST_LOG")
        .output()
        .expect("unshare runs (the tests run as root, as CI does)");
    assert!(
        out.status.success() && !stderr(&out).contains("WRITABLE"),
        "under a read-only mount: {}",
        stderr(&out)
    );
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        before,
        listing(),
    )
}

#[test]
fn read_only_while_fluent_bit_holds_the_db_the_wal_is_read() {
    let f = fixture();
    let c = f.conn.as_ref().unwrap();
    // The newest offsets live in the WAL only (no checkpoint since).
    c.execute_batch("PRAGMA wal_autocheckpoint=0;").unwrap();
    let id: i64 = c
        .query_row(
            "SELECT id FROM in_tail_files WHERE name LIKE '%/b.log'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    set_offset(c, id, 450);
    assert!(f.db.with_extension("db-shm").exists() && f.db.with_extension("db-wal").exists());
    let config = classic_config(&f, "", "filesystem");
    let (b, before, after) = backlog_read_only(&config, f.db.parent().unwrap());
    assert_eq!(by_source(&b, "/b.log")["offset"], 450, "{b}");
    assert_eq!(by_source(&b, "/b.log")["pending"], 50, "{b}");
    assert_eq!(before, after, "nothing written beside the DB");
}

#[test]
fn read_only_after_fluent_bit_closed_the_db_a_private_copy_is_read() {
    let mut f = fixture();
    drop(f.conn.take()); // closed: checkpointed, -wal and -shm removed, header still WAL
    assert!(!f.db.with_extension("db-shm").exists());
    let config = classic_config(&f, "", "filesystem");
    let (b, before, after) = backlog_read_only(&config, f.db.parent().unwrap());
    assert_fixture_read(&b);
    assert_eq!(before, after, "nothing written beside the DB");
    // and without the read-only mount, nothing is written beside it either
    let b = backlog_of(&config);
    assert_fixture_read(&b);
    let mut now: Vec<String> = fs::read_dir(f.db.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    now.sort();
    assert_eq!(now, before);
}

// ---------------------------------------------------------------- with the stand-in

/// `logs/app.log` holding `bytes`, and the stand-in tailing `logs/app.log*` with `args`.
fn shipping_fb(dir: &Path, bytes: u64, args: &[&str]) -> (FluentBitSim, u64) {
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).unwrap();
    let written = write_logs(
        &logs.join("app.log"),
        &["--rate", "10000000", "--total", &bytes.to_string()],
    );
    let sim = FluentBitSim::start(dir, args, &[&logs.join("app.log*")]);
    (sim, written)
}

/// The offsets reach the end long before the output has the lines: at that moment the
/// drain must not be over, and when it is, the output has every byte.
fn drain_waits_for_delivery(args: &[&str]) {
    let t = tempfile::tempdir().unwrap();
    let (sim, written) = shipping_fb(t.path(), 150_000, args);
    let mut drain = drainhook()
        .args(["drain", "--settle", "1s", "--timeout", "60s"])
        .args(sim.flags())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = sim.wait_read_to_the_end(Duration::from_secs(10));
    let delivered_then = sim.delivered();
    assert!(
        delivered_then < written,
        "the test needs the output behind: {delivered_then} of {written} delivered when the offsets reached the end"
    );
    assert_eq!(
        b["drained"], false,
        "every offset at its end, chunks undelivered: {b}"
    );
    assert!(
        drain.try_wait().unwrap().is_none(),
        "the drain ended with {delivered_then} of {written} bytes delivered: {written} - {delivered_then} would have been lost"
    );
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = drain.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the drain never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let delivered = sim.delivered();
    let mut err = String::new();
    std::io::Read::read_to_string(drain.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(
        delivered, written,
        "drained before the output had everything: {err}"
    );
}

#[test]
fn the_drain_waits_for_chunk_files_not_offsets() {
    drain_waits_for_delivery(&["--storage-type", "filesystem", "--rate", "40000"]);
}

#[test]
fn the_drain_waits_for_memory_chunks_seen_over_http_through_a_stale_storage_view() {
    // Memory chunks are seen only in /api/v1/storage, rebuilt every 5 s: the view the drain
    // first reads was built before the lines were read, and says "no chunk".
    drain_waits_for_delivery(&[
        "--storage-type",
        "memory",
        "--rate",
        "40000",
        "--config-format",
        "yaml",
    ]);
}

#[test]
fn dropped_chunks_are_reported_lost_never_drained() {
    let t = tempfile::tempdir().unwrap();
    let (sim, written) = shipping_fb(
        t.path(),
        60_000,
        &[
            "--storage-type",
            "filesystem",
            "--rate",
            "200000",
            "--drop-chunks",
            "1",
            "--retry-wait",
            "1",
        ],
    );
    let out = drainhook()
        .args(["drain", "--settle", "1s", "--timeout", "60s"])
        .args(sim.flags())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(sim.delivered() < written, "the stand-in dropped a chunk");
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("LOST") && err.contains("records dropped by output http.0"),
        "{err}"
    );
}

#[test]
fn without_the_http_server_on_memory_storage_the_drain_falls_back_and_says_so() {
    let t = tempfile::tempdir().unwrap();
    let (sim, written) = shipping_fb(
        t.path(),
        20_000,
        &["--no-http", "--storage-type", "memory", "--rate", "1000000"],
    );
    sim.wait_read_to_the_end(Duration::from_secs(10));
    let out = drainhook()
        .args(["drain", "--settle", "1s", "--timeout", "30s"])
        .args(sim.flags())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("cannot be exact") && err.contains("HTTP server is off"),
        "the drain says why it falls back: {err}"
    );
    assert!(err.contains("of quiet instead"), "{err}");
    // (the stand-in delivers at once here, so nothing is lost: the fallback's risk is when it
    // does not, which is what `check` warns of)
    let t0 = Instant::now();
    while sim.delivered() < written && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sim.delivered(), written);
}

#[test]
fn with_db_locking_the_offsets_are_still_read() {
    // `DB.locking true` keeps the DB locked exclusively, its WAL index in Fluent Bit's own
    // memory (no -shm): the DB and its -wal are read from a private copy.
    let t = tempfile::tempdir().unwrap();
    let (sim, written) = shipping_fb(t.path(), 10_000, &["--db-locking"]);
    let b = sim.wait_read_to_the_end(Duration::from_secs(10));
    assert!(
        !sim.db.with_extension("db-shm").exists(),
        "exclusive locking keeps no -shm"
    );
    assert_eq!(b["files"][0]["offset"], written, "{b}");
}

// ---------------------------------------------------------------- never a panic

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_classic_or_yaml_config_is_parsed_or_refused(text in "(\\[[A-Z]{0,8}\\]?\n|    [A-Za-z_.]{0,12} [^\n]{0,20}\n|@[A-Z]{0,8} [^\n]{0,20}\n|[^\n]{0,30}\n){0,12}") {
        let _ = drainhook::shipper::fluentbit::config::parse_text(Path::new("/f.conf"), &text);
        let _ = drainhook::shipper::fluentbit::config::parse_text(Path::new("/f.yaml"), &text);
    }

    #[test]
    fn any_metrics_page_is_read_or_refused(text in "([0-9TZ:.-]{0,30} (fluentbit_output_dropped_records_total|fluentbit_output_retries_failed_total|fluentbit_routing_logs_drop_bytes_total|x)(\\{[a-z]{0,5}=\"[^\"]{0,8}\"\\}){0,1} = [-0-9e.+a-z]{0,10}\n|[^\n]{0,40}\n){0,8}") {
        let _ = drainhook::shipper::fluentbit::api::parse_metrics(&text);
    }

    #[test]
    fn any_storage_answer_is_read_or_refused(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = drainhook::shipper::fluentbit::api::parse_storage(&body);
    }

    #[test]
    fn any_chunk_header_is_read_or_refused(head in proptest::collection::vec(any::<u8>(), 0..40), size in any::<u64>()) {
        let _ = drainhook::shipper::fluentbit::chunks::content_length(&head, size);
    }
}
