//! The tail input's SQLite DB, read-only: its `in_tail_files` rows (plugins/in_tail/tail_sql.h:
//! `id`, `name`, `offset`, `inode`, `created`, `rotated`, `offset_marker`,
//! `offset_marker_size`).
//!
//! When a row changes (plugins/in_tail/tail_db.c, tail_file.c):
//! - `offset` is written right after the lines read were appended to a chunk
//!   (tail_file.c:2099-2126, `update_resumable_offset_state`), not when the output has them;
//!   it stops before a last line without its newline (tail_file.h:137-154);
//! - on rotation the row keeps its inode, takes the new name and `rotated=1`
//!   (tail_db.c `flb_tail_db_file_rotate`, tail_file.c:2457-2470); it is deleted when Fluent
//!   Bit lets go of the file after `Rotate_Wait`, or when the file is deleted
//!   (tail_file.c:1784-1795, 2510-2524).
//!
//! Fluent Bit opens it with `journal_mode=WAL` by default (`DB.journal_mode`), so the newest
//! rows may sit in `<db>-wal`, indexed by `<db>-shm`. drainhook may not write beside it
//! (`ProtectSystem=strict`), and SQLite reads such a database read-only as follows (SQLite's
//! "WAL mode on read-only media", since 3.22): while Fluent Bit runs, `-wal` and `-shm` exist,
//! and a read-only connection reads both (it builds its own index of the WAL when the `-shm`
//! is not writable). When Fluent Bit has stopped, it has checkpointed and removed both, but
//! the file still says WAL, and SQLite cannot open it without creating a `-shm`: then the
//! database (and a `-wal`, if one was left) is copied into a private directory and read there,
//! after checking that nothing changed while it was copied.

use crate::shipper::ShipperError;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One row of `in_tail_files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: i64,
    /// The file's name when Fluent Bit last wrote the row (its new name after a rotation).
    pub name: PathBuf,
    /// Bytes read into chunks.
    pub offset: u64,
    pub inode: u64,
    /// Fluent Bit saw the file rotated away and still reads it until `Rotate_Wait` ends.
    pub rotated: bool,
}

/// How long a read waits for Fluent Bit's write lock (it holds it for one statement).
const BUSY_TIMEOUT: Duration = Duration::from_millis(200);

/// Reads every row of `db`.
pub fn read(db: &Path) -> Result<Vec<Row>, ShipperError> {
    if !db.exists() {
        return Err(ShipperError::State {
            path: db.to_path_buf(),
            reason: "does not exist (Fluent Bit creates it when its tail input starts)".into(),
        });
    }
    // A WAL database with no `-shm` is one no process has open: SQLite could not read it in
    // place without creating the `-shm` (and it would create an empty `-wal` trying).
    if says_wal(db) && !sidecar(db, "-shm").exists() {
        return read_private_copy(db).map_err(|why| state(db, why));
    }
    match read_in_place(db) {
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::CannotOpen) => {
            read_private_copy(db).map_err(|why| state(db, why))
        }
        r => r.map_err(|e| state(db, describe(&e))),
    }
}

/// The header's read and write versions (bytes 18 and 19) are 2 in WAL mode (SQLite's file
/// format, section 1.3).
fn says_wal(db: &Path) -> bool {
    let mut head = [0u8; 20];
    fs::File::open(db)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| head[18] == 2 || head[19] == 2)
}

fn state(db: &Path, reason: String) -> ShipperError {
    ShipperError::State {
        path: db.to_path_buf(),
        reason,
    }
}

fn describe(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => format!(
            "{e}: Fluent Bit holds it locked (`DB.locking true` keeps it locked while Fluent Bit runs, and nothing else can read the offsets then: remove DB.locking)"
        ),
        Some(ErrorCode::NotADatabase) => format!("{e}: not a SQLite database"),
        _ => e.to_string(),
    }
}

/// `mode=ro` and `readonly_shm=1`: SQLite opens the `-shm` read-only and never creates it,
/// exactly as it must under `ProtectSystem=strict` (where opening it for writing fails), so
/// a look behaves the same in both places and writes nothing beside the DB.
fn open_read_only(db: &Path) -> rusqlite::Result<Connection> {
    let mut uri = String::from("file:");
    for ch in db.to_string_lossy().chars() {
        match ch {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=ro&readonly_shm=1");
    let c = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(BUSY_TIMEOUT)?;
    Ok(c)
}

fn read_in_place(db: &Path) -> rusqlite::Result<Vec<Row>> {
    rows(&open_read_only(db)?)
}

fn rows(c: &Connection) -> rusqlite::Result<Vec<Row>> {
    let mut st = c.prepare("SELECT id, name, offset, inode, rotated FROM in_tail_files")?;
    let it = st.query_map([], |r| {
        let offset: Option<i64> = r.get(2)?;
        let inode: Option<i64> = r.get(3)?;
        let rotated: Option<i64> = r.get(4)?;
        Ok(Row {
            id: r.get(0)?,
            name: PathBuf::from(r.get::<_, String>(1)?),
            // Written from off_t and uint64 (tail_db.c:277-281): never negative in practice.
            offset: offset.unwrap_or(0).max(0) as u64,
            inode: inode.unwrap_or(0) as u64,
            rotated: rotated.unwrap_or(0) != 0,
        })
    })?;
    it.collect()
}

/// What identifies a file's content for the copy check.
fn stamp(p: &Path) -> Option<(u64, u64, i64, i64)> {
    fs::metadata(p)
        .ok()
        .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

static COPIES: AtomicU64 = AtomicU64::new(0);

/// Copies the DB (and its `-wal`) into a private directory (the process's temporary
/// directory: systemd's PrivateTmp under the hardened unit) and reads the copy.
fn read_private_copy(db: &Path) -> Result<Vec<Row>, String> {
    let wal = sidecar(db, "-wal");
    let shm = sidecar(db, "-shm");
    let before = (stamp(db), stamp(&wal), shm.exists());
    let dir = std::env::temp_dir().join(format!(
        "drainhook-fluentbit-{}-{}",
        std::process::id(),
        COPIES.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).map_err(|e| {
        format!(
            "cannot be opened read-only in place, and no private copy could be made in {}: {e}",
            dir.display()
        )
    })?;
    let result = (|| {
        let copy = dir.join("tail.db");
        fs::copy(db, &copy).map_err(|e| format!("cannot copy it: {e}"))?;
        if wal.exists() {
            fs::copy(&wal, sidecar(&copy, "-wal"))
                .map_err(|e| format!("cannot copy its -wal: {e}"))?;
        }
        let after = (stamp(db), stamp(&wal), shm.exists());
        if before != after {
            return Err("changed while it was copied (read again at the next look)".to_string());
        }
        let c = Connection::open_with_flags(
            &copy,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| e.to_string())?;
        rows(&c).map_err(|e| describe(&e))
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}

fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema as Fluent Bit creates it (tail_sql.h SQL_CREATE_FILES) and its pragmas.
    pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS in_tail_files (  id      INTEGER PRIMARY KEY,  name    TEXT NOT NULL,  offset  INTEGER,  inode   INTEGER,  created INTEGER,  rotated INTEGER DEFAULT 0,  offset_marker INTEGER DEFAULT 0,  offset_marker_size INTEGER DEFAULT 0);";

    #[test]
    fn rows_are_read_from_the_wal_while_the_writer_holds_it() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("tail.db");
        let w = Connection::open(&db).unwrap();
        w.execute_batch(SCHEMA).unwrap();
        let mode: String = w
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        w.execute(
            "INSERT INTO in_tail_files (name, offset, inode, created) VALUES ('/var/log/a.log', 10, 42, 0)",
            [],
        )
        .unwrap();
        w.execute("UPDATE in_tail_files SET offset=77 WHERE id=1", [])
            .unwrap();
        assert!(sidecar(&db, "-wal").exists());
        let r = read(&db).unwrap();
        assert_eq!(
            r,
            vec![Row {
                id: 1,
                name: "/var/log/a.log".into(),
                offset: 77,
                inode: 42,
                rotated: false
            }]
        );
    }

    #[test]
    fn not_a_database_is_an_error_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("tail.db");
        fs::write(&db, vec![7u8; 8192]).unwrap();
        let e = read(&db).unwrap_err().to_string();
        assert!(e.contains("tail.db") && e.contains("not a"), "{e}");
        let e = read(&d.path().join("absent.db")).unwrap_err().to_string();
        assert!(
            e.contains("absent.db") && e.contains("does not exist"),
            "{e}"
        );
    }

    #[test]
    fn a_database_without_the_table_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("tail.db");
        Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE other (x INTEGER);")
            .unwrap();
        let e = read(&db).unwrap_err().to_string();
        assert!(e.contains("in_tail_files"), "{e}");
    }
}
