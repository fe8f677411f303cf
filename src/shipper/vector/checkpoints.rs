//! A `file` source's checkpoints: `<data_dir>/<source id>/checkpoints.json`.
//!
//! Format version 1 (vector:lib/file-source-common/src/checkpointer.rs:20-42):
//! `{"version":"1","checkpoints":[{"fingerprint":{"first_lines_checksum":N} or
//! {"dev_inode":[dev,ino]},"position":BYTES,"modified":"RFC 3339"}]}`. Vector writes it
//! every `glob_minimum_cooldown_ms` when it changed, to `checkpoints.new.json` (fsync) then
//! renamed over `checkpoints.json` (checkpointer.rs:188-227). At start it prefers a leftover
//! `checkpoints.new.json`, the state of a process interrupted between the two
//! (checkpointer.rs:232-272); so does this reader. While Vector writes, that file may be
//! half written: it then does not parse, and `checkpoints.json`, the newest complete state,
//! is read instead.

use super::fingerprint::Fingerprint;
use crate::shipper::ShipperError;
use serde::Deserialize;
use std::io;
use std::path::{Path, PathBuf};

pub const FILE: &str = "checkpoints.json";
pub const TMP_FILE: &str = "checkpoints.new.json";

/// The positions a source has checkpointed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoints {
    /// The file read (`checkpoints.json` when none exists yet).
    pub file: PathBuf,
    /// No checkpoint file exists yet: Vector has not checkpointed anything for the source.
    pub absent: bool,
    pub entries: Vec<Checkpoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub fingerprint: Fingerprint,
    /// Bytes of the file done (read, or delivered with acknowledgements): the end of the
    /// last line.
    pub position: u64,
}

#[derive(Deserialize)]
#[serde(tag = "version")]
enum State {
    #[serde(rename = "1")]
    V1 { checkpoints: Vec<RawCheckpoint> },
}

#[derive(Deserialize)]
struct RawCheckpoint {
    fingerprint: RawFingerprint,
    position: u64,
}

/// `FileFingerprint` as serde writes it (fingerprinter.rs:55-61), with the kinds older
/// versions wrote.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawFingerprint {
    #[serde(alias = "first_line_checksum")]
    FirstLinesChecksum(u64),
    DevInode(u64, u64),
    Checksum(u64),
    Unknown(u64),
}

impl From<RawFingerprint> for Fingerprint {
    fn from(f: RawFingerprint) -> Self {
        match f {
            RawFingerprint::FirstLinesChecksum(c) => Fingerprint::FirstLinesChecksum(c),
            RawFingerprint::DevInode(d, i) => Fingerprint::DevInode(d, i),
            RawFingerprint::Checksum(c) | RawFingerprint::Unknown(c) => Fingerprint::Legacy(c),
        }
    }
}

/// Parses one checkpoint file's text.
pub fn parse(file: &Path, text: &[u8]) -> Result<Vec<Checkpoint>, ShipperError> {
    let bad = |reason: String| ShipperError::State {
        path: file.to_path_buf(),
        reason,
    };
    match serde_json::from_slice::<State>(text) {
        Ok(State::V1 { checkpoints }) => Ok(checkpoints
            .into_iter()
            .map(|c| Checkpoint {
                fingerprint: c.fingerprint.into(),
                position: c.position,
            })
            .collect()),
        Err(e) => {
            let version = serde_json::from_slice::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("version").cloned());
            Err(bad(match version {
                Some(v) if v != "1" => format!(
                    "checkpoint format version {v}, which drainhook does not know (it reads version \"1\")"
                ),
                _ => format!("not Vector's checkpoint format: {e}"),
            }))
        }
    }
}

/// Reads the checkpoints in `dir` (`<data_dir>/<source id>`).
pub fn read(dir: &Path) -> Result<Checkpoints, ShipperError> {
    let tmp = dir.join(TMP_FILE);
    match std::fs::read(&tmp) {
        Ok(text) => {
            if let Ok(entries) = parse(&tmp, &text) {
                return Ok(Checkpoints {
                    file: tmp,
                    absent: false,
                    entries,
                });
            }
            // Half written: the rename has not happened, checkpoints.json is complete.
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(ShipperError::Io { path: tmp, source }),
    }
    let file = dir.join(FILE);
    match std::fs::read(&file) {
        Ok(text) => Ok(Checkpoints {
            entries: parse(&file, &text)?,
            file,
            absent: false,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Checkpoints {
            file,
            absent: true,
            entries: Vec::new(),
        }),
        Err(source) => Err(ShipperError::Io { path: file, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_fingerprint_kinds_and_the_old_names_parse() {
        // checkpointer.rs:535-555 (Vector's own deserialization test).
        let text = br#"
{
  "version": "1",
  "checkpoints": [
    { "fingerprint": { "dev_inode": [ 1, 2 ] }, "position": 1234, "modified": "2021-07-12T18:19:11.769003Z" },
    { "fingerprint": { "first_line_checksum": 1234 }, "position": 1234, "modified": "2021-07-12T18:19:11.769003Z" },
    { "fingerprint": { "first_lines_checksum": 78910 }, "position": 1234, "modified": "2021-07-12T18:19:11.769003Z" },
    { "fingerprint": { "checksum": 5 }, "position": 9, "modified": "2021-07-12T18:19:11Z" }
  ]
}"#;
        let got = parse(Path::new("c.json"), text).unwrap();
        let fps: Vec<Fingerprint> = got.iter().map(|c| c.fingerprint).collect();
        assert_eq!(
            fps,
            vec![
                Fingerprint::DevInode(1, 2),
                Fingerprint::FirstLinesChecksum(1234),
                Fingerprint::FirstLinesChecksum(78910),
                Fingerprint::Legacy(5),
            ]
        );
        assert_eq!(got[0].position, 1234);
    }

    #[test]
    fn a_checksum_above_2_pow_53_keeps_every_bit() {
        let text = br#"{"version":"1","checkpoints":[{"fingerprint":{"first_lines_checksum":18446744073709551615},"position":7,"modified":"2026-01-01T00:00:00.123456789Z"}]}"#;
        assert_eq!(
            parse(Path::new("c.json"), text).unwrap()[0].fingerprint,
            Fingerprint::FirstLinesChecksum(u64::MAX)
        );
    }

    #[test]
    fn bad_files_are_errors_that_name_the_file_and_the_version() {
        let p = Path::new("/var/lib/vector/app/checkpoints.json");
        for (text, want) in [
            (&br#"{"version":"2","checkpoints":[]}"#[..], "version \"2\""),
            (
                b"{\"version\":\"1\",\"checkpoi",
                "not Vector's checkpoint format",
            ),
            (b"", "not Vector's checkpoint format"),
            (
                br#"{"version":"1","checkpoints":[{"fingerprint":{"inode":3},"position":1}]}"#,
                "not Vector's checkpoint format",
            ),
        ] {
            let e = parse(p, text).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains(&p.display().to_string()),
                "{e}"
            );
        }
    }

    #[test]
    fn a_leftover_new_file_is_preferred_and_a_half_written_one_ignored() {
        let t = tempfile::tempdir().unwrap();
        let none = read(t.path()).unwrap();
        assert!(none.absent && none.entries.is_empty());
        let one = |pos: u64| {
            format!(
                r#"{{"version":"1","checkpoints":[{{"fingerprint":{{"dev_inode":[1,2]}},"position":{pos},"modified":"2026-01-01T00:00:00Z"}}]}}"#
            )
        };
        std::fs::write(t.path().join(FILE), one(10)).unwrap();
        assert_eq!(read(t.path()).unwrap().entries[0].position, 10);
        std::fs::write(t.path().join(TMP_FILE), one(20)).unwrap();
        let c = read(t.path()).unwrap();
        assert_eq!(
            (c.entries[0].position, c.file.ends_with(TMP_FILE)),
            (20, true)
        );
        std::fs::write(t.path().join(TMP_FILE), &one(30)[..40]).unwrap();
        let c = read(t.path()).unwrap();
        assert_eq!((c.entries[0].position, c.file.ends_with(FILE)), (10, true));
        std::fs::write(t.path().join(FILE), "{").unwrap();
        assert!(read(t.path()).is_err());
    }
}
