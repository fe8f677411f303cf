//! How Vector's `file` source names a file: the fingerprint its checkpoints are keyed by.
//!
//! `checkpoints.json` holds no paths, so a checkpoint is matched to a file by computing the
//! file's fingerprint again, exactly as Vector does
//! (vector:lib/file-source-common/src/fingerprinter.rs:171-276, snapshot c3445d42):
//! - `checksum` (the default): CRC-64/ECMA-182 over the first `lines` lines (1 by default),
//!   each with its `\n`, after `ignored_header_bytes`, read into a buffer of
//!   `max_line_bytes`: if the buffer fills before the last newline, the checksum is over the
//!   full buffer. A file shorter than that is not fingerprinted, and Vector does not read
//!   it at all. A gzip file (magic `1f 8b`) is decompressed first. This is the algorithm
//!   since Vector 0.28 (vectordotdev/vector#15899).
//! - `device_and_inode`: the file's `st_dev` and `st_ino`
//!   (lib/file-source-common/src/metadata_ext.rs:86-93).

use flate2::read::MultiGzDecoder;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// fingerprinter.rs:21: `Crc::<u64>::new(&crc::CRC_64_ECMA_182)`.
const CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_ECMA_182);

/// vector_common::constants::GZIP_MAGIC.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// How the source's `fingerprint` setting names files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `strategy: checksum` with its `ignored_header_bytes` and `lines`, and the source's
    /// `max_line_bytes` (the size of the buffer the lines are read into).
    Checksum {
        ignored_header_bytes: u64,
        lines: u64,
        max_line_bytes: u64,
    },
    /// `strategy: device_and_inode`.
    DevInode,
}

/// A file's identity in `checkpoints.json` (`FileFingerprint`, fingerprinter.rs:55-61).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fingerprint {
    /// `{"first_lines_checksum": N}` (also written `first_line_checksum` before 0.28).
    FirstLinesChecksum(u64),
    /// `{"dev_inode": [dev, ino]}`.
    DevInode(u64, u64),
    /// `{"checksum": N}` or `{"unknown": N}`: kinds that Vector before 0.51 could still
    /// hold from a much older version (removed by vectordotdev/vector#23874). Nothing can
    /// be matched to them; a running Vector re-keys them when it sees their file again.
    Legacy(u64),
}

impl Strategy {
    /// The fingerprint of the file at `path` (with its metadata), `None` when Vector would
    /// not fingerprint it (too short for the checksum), or the error reading it.
    pub fn fingerprint(&self, path: &Path, meta: &Metadata) -> io::Result<Option<Fingerprint>> {
        match *self {
            Strategy::DevInode => Ok(Some(Fingerprint::DevInode(meta.dev(), meta.ino()))),
            Strategy::Checksum {
                ignored_header_bytes,
                lines,
                max_line_bytes,
            } => {
                let mut f = File::open(path)?;
                let mut magic = [0u8; 2];
                if read_full(&mut f, &mut magic)? < magic.len() {
                    return Ok(None); // Vector's compression check fails: UnexpectedEof
                }
                let f = File::open(path)?;
                let head = if magic == GZIP_MAGIC {
                    first_bytes(
                        MultiGzDecoder::new(io::BufReader::new(f)),
                        ignored_header_bytes,
                        max_line_bytes,
                    )?
                } else {
                    first_bytes(f, ignored_header_bytes, max_line_bytes)?
                };
                Ok(checksum_of_head(&head, lines, max_line_bytes)
                    .map(Fingerprint::FirstLinesChecksum))
            }
        }
    }
}

/// The checksum of the first `lines` lines of `head` (the bytes after the ignored header, at
/// most `max_line_bytes` of them), as `fingerprinter_read_until` delimits them: up to and
/// including the `lines`-th `\n` (`lines` 0 counts as 1), or the whole buffer when it is full
/// first; `None` when the data ends before either.
pub fn checksum_of_head(head: &[u8], lines: u64, max_line_bytes: u64) -> Option<u64> {
    let want = lines.max(1);
    let mut seen = 0;
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            seen += 1;
            if seen == want {
                return Some(CRC.checksum(&head[..=i]));
            }
        }
    }
    (head.len() as u64 >= max_line_bytes).then(|| CRC.checksum(head))
}

/// Skips `skip` bytes of `r`, then reads up to `max` bytes (fewer only at the end of data).
fn first_bytes(mut r: impl Read, skip: u64, max: u64) -> io::Result<Vec<u8>> {
    let skipped = io::copy(&mut (&mut r).take(skip), &mut io::sink())?;
    if skipped < skip {
        return Ok(Vec::new());
    }
    let mut head = Vec::new();
    r.take(max).read_to_end(&mut head)?;
    Ok(head)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether the file starts with gzip's magic bytes (Vector then reads it decompressed, and
/// its positions count decompressed bytes).
pub fn is_gzip(path: &Path) -> io::Result<bool> {
    let mut magic = [0u8; 2];
    let n = read_full(&mut File::open(path)?, &mut magic)?;
    Ok(n == 2 && magic == GZIP_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const DEFAULT: Strategy = Strategy::Checksum {
        ignored_header_bytes: 0,
        lines: 1,
        max_line_bytes: 102_400,
    };

    fn fp(s: Strategy, path: &Path) -> Option<Fingerprint> {
        s.fingerprint(path, &std::fs::metadata(path).unwrap())
            .unwrap()
    }

    #[test]
    fn the_crc_is_crc_64_ecma_182() {
        // The catalogue's check value for "123456789" (crc-catalog's CRC_64_ECMA_182).
        assert_eq!(CRC.checksum(b"123456789"), 0x6c40_df5f_0b49_7347);
    }

    #[test]
    fn the_checksum_covers_the_first_line_with_its_newline() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a.log");
        std::fs::write(&a, b"hello world\nthe next line\n").unwrap();
        assert_eq!(
            fp(DEFAULT, &a),
            Some(Fingerprint::FirstLinesChecksum(
                CRC.checksum(b"hello world\n")
            ))
        );
        // fingerprinter.rs's own test: two files with the same first line are one file.
        let b = t.path().join("b.log");
        std::fs::write(&b, b"hello world\n").unwrap();
        assert_eq!(fp(DEFAULT, &a), fp(DEFAULT, &b));
    }

    #[test]
    fn files_shorter_than_the_lines_are_not_fingerprinted() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a.log");
        for content in [&b""[..], b"x", b"missing newline char"] {
            std::fs::write(&p, content).unwrap();
            assert_eq!(fp(DEFAULT, &p), None, "{content:?}");
        }
        let two = Strategy::Checksum {
            ignored_header_bytes: 0,
            lines: 2,
            max_line_bytes: 1024,
        };
        std::fs::write(&p, b"one\n").unwrap();
        assert_eq!(fp(two, &p), None);
        std::fs::write(&p, b"one\ntwo\nthree\n").unwrap();
        assert_eq!(
            fp(two, &p),
            Some(Fingerprint::FirstLinesChecksum(CRC.checksum(b"one\ntwo\n")))
        );
    }

    #[test]
    fn a_long_first_line_is_cut_at_max_line_bytes_and_a_header_skipped() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a.log");
        let s = |ignored_header_bytes| Strategy::Checksum {
            ignored_header_bytes,
            lines: 1,
            max_line_bytes: 64,
        };
        // fingerprinter.rs's test: exactly max_line_length bytes without a newline is enough,
        // one byte fewer is not.
        std::fs::write(&p, vec![b'x'; 64]).unwrap();
        assert_eq!(
            fp(s(0), &p),
            Some(Fingerprint::FirstLinesChecksum(CRC.checksum(&[b'x'; 64])))
        );
        std::fs::write(&p, vec![b'x'; 63]).unwrap();
        assert_eq!(fp(s(0), &p), None);
        std::fs::write(&p, b"HEADER-line one\n").unwrap();
        assert_eq!(
            fp(s(7), &p),
            Some(Fingerprint::FirstLinesChecksum(CRC.checksum(b"line one\n")))
        );
        std::fs::write(&p, b"HEAD").unwrap();
        assert_eq!(fp(s(7), &p), None);
    }

    #[test]
    fn a_gzip_file_is_fingerprinted_decompressed() {
        let t = tempfile::tempdir().unwrap();
        let plain = t.path().join("a.log");
        let gz = t.path().join("a.log.1.gz");
        std::fs::write(&plain, b"hello world\nmore\n").unwrap();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"hello world\nmore\n").unwrap();
        std::fs::write(&gz, e.finish().unwrap()).unwrap();
        assert_eq!(fp(DEFAULT, &plain), fp(DEFAULT, &gz));
        assert!(is_gzip(&gz).unwrap() && !is_gzip(&plain).unwrap());
    }

    #[test]
    fn device_and_inode_come_from_the_file_s_metadata() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a.log");
        std::fs::write(&p, b"").unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(
            fp(Strategy::DevInode, &p),
            Some(Fingerprint::DevInode(m.dev(), m.ino()))
        );
    }
}
