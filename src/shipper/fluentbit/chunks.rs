//! Fluent Bit's filesystem chunks: `storage.path/<input instance>/<pid>-<sec>.<nsec>.flb`
//! (src/flb_storage.c:583-601 names the stream after the input instance;
//! src/flb_input_chunk.c:715-726 the file), one per chunk, deleted when every output it is
//! routed to has it (or dropped it).
//!
//! The layout (lib/chunkio/include/chunkio/cio_file_st.h): bytes 0-1 `0xC1 0x00`, 2-5 CRC32
//! of the content, 6-9 CRC32 of the padding, 10-13 the content length (big-endian), 14-21
//! padding, 22-23 the metadata length (big-endian), then the metadata and the records. The
//! file is preallocated (`FLB_INPUT_CHUNK_SIZE`), so its size says nothing: the header's
//! content length does. A content length of 0 over a first content byte that is not 0 comes
//! from an older chunkio that did not write it: the length is then the file's size less the
//! header and metadata (`cio_file_st_get_content_len`).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The header's size (`CIO_FILE_HEADER_MIN`).
pub const HEADER: usize = 24;

/// The chunks found in some streams' directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunks {
    pub count: u64,
    /// Their records' bytes (content length).
    pub bytes: u64,
    /// Chunk files whose header is not (yet) readable: being created, or damaged.
    pub unreadable: Vec<PathBuf>,
}

/// The content length a chunk's first bytes say, given the file's size; `None` when they
/// are not a chunk header.
pub fn content_length(head: &[u8], size: u64) -> Option<u64> {
    if head.len() < HEADER || head[0] != 0xC1 || head[1] != 0x00 {
        return None;
    }
    let len = u32::from_be_bytes([head[10], head[11], head[12], head[13]]) as u64;
    let meta = u16::from_be_bytes([head[22], head[23]]) as u64;
    let content_at = HEADER as u64 + meta;
    if len == 0 && size > content_at {
        // An older chunkio's file: infer unless the content starts with 0 (trimmed to nothing).
        if head.get(content_at as usize).is_some_and(|b| *b != 0) {
            return Some(size - content_at);
        }
    }
    Some(len)
}

/// Reads one chunk file's header.
fn measure(path: &Path) -> Option<u64> {
    let mut f = fs::File::open(path).ok()?;
    let size = f.metadata().ok()?.len();
    let mut head = vec![0u8; HEADER + 2];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    head.truncate(n);
    // The first content byte is only needed for the old-chunkio case, and only when the
    // metadata is empty (else it is further on): read it there.
    if head.len() >= HEADER {
        let meta = u16::from_be_bytes([head[22], head[23]]) as usize;
        if meta > 0 {
            head.truncate(HEADER);
            let mut rest = vec![0u8; meta + 1];
            let mut m = 0;
            while m < rest.len() {
                match f.read(&mut rest[m..]) {
                    Ok(0) => break,
                    Ok(k) => m += k,
                    Err(_) => return None,
                }
            }
            head.extend_from_slice(&rest[..m]);
        }
    }
    content_length(&head, size)
}

/// Counts the `*.flb` files in each of `dirs` (a directory that does not exist holds none).
pub fn scan(dirs: &[PathBuf]) -> Chunks {
    let mut c = Chunks::default();
    for d in dirs {
        let Ok(rd) = fs::read_dir(d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("flb") {
                continue;
            }
            // Deleted between the listing and the read: delivered meanwhile.
            if !p.exists() {
                continue;
            }
            c.count += 1;
            match measure(&p) {
                Some(len) => c.bytes += len,
                None if p.exists() => c.unreadable.push(p),
                None => c.count -= 1,
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, meta: &[u8]) -> Vec<u8> {
        let mut h = vec![0xC1, 0x00];
        h.extend([0u8; 8]);
        h.extend(len.to_be_bytes());
        h.extend([0u8; 8]);
        h.extend((meta.len() as u16).to_be_bytes());
        h.extend(meta);
        h
    }

    #[test]
    fn content_length_comes_from_the_header_not_the_size() {
        let h = header(1234, b"\xf1\x77\x00\x00app");
        assert_eq!(content_length(&h, 262_144), Some(1234));
    }

    #[test]
    fn an_old_chunkio_file_without_a_length_is_inferred() {
        let mut h = header(0, b"");
        h.push(0x92);
        assert_eq!(content_length(&h, 1000), Some(1000 - 24));
        let mut h = header(0, b"");
        h.push(0x00);
        assert_eq!(content_length(&h, 1000), Some(0));
    }

    #[test]
    fn not_a_chunk() {
        assert_eq!(content_length(&[0u8; 30], 30), None);
        assert_eq!(content_length(&[0xC1, 0x00, 1], 3), None);
    }

    #[test]
    fn scan_counts_chunks_and_their_bytes() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("tail.0");
        fs::create_dir(&s).unwrap();
        let mut a = header(100, b"\xf1\x77\x00\x00tag");
        a.resize(262_144, 0);
        fs::write(s.join("1-1.1.flb"), &a).unwrap();
        let mut b = header(50, b"");
        b.resize(262_144, 0);
        fs::write(s.join("1-1.2.flb"), &b).unwrap();
        fs::write(s.join("1-1.3.flb"), b"").unwrap();
        fs::write(s.join("notes.txt"), b"x").unwrap();
        let c = scan(&[s.clone(), d.path().join("absent")]);
        assert_eq!(c.count, 3);
        assert_eq!(c.bytes, 150);
        assert_eq!(c.unreadable, vec![s.join("1-1.3.flb")]);
    }
}
