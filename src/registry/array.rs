//! The JSON-array registry of filebeat 5.x – 7.8 (`registry` file or `data.json`).
//!
//! filebeat writes the whole array to `<file>.new` and renames it over the file, so
//! a reader never sees half an array, but the file it opened may be replaced while
//! it reads. We read through one descriptor and then check that the path still
//! names the inode we read; if not, we read again.

use super::entry::{Entry, RawValue};
use super::{io_err, RegistryError};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const ATTEMPTS: u32 = 5;

pub(super) fn read(path: &Path) -> Result<Vec<Entry>, RegistryError> {
    for _ in 0..ATTEMPTS {
        let mut f = fs::File::open(path).map_err(io_err(path))?;
        let opened = f.metadata().map_err(io_err(path))?;
        let mut buf = Vec::with_capacity(opened.len() as usize);
        f.read_to_end(&mut buf).map_err(io_err(path))?;
        let now = fs::metadata(path).map_err(io_err(path))?;
        if now.ino() != opened.ino() || now.dev() != opened.dev() {
            continue; // replaced while we read: read the new one
        }
        return parse(path, &buf);
    }
    Err(RegistryError::Unstable {
        path: path.to_path_buf(),
        attempts: ATTEMPTS,
    })
}

pub(super) fn parse(path: &Path, buf: &[u8]) -> Result<Vec<Entry>, RegistryError> {
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Err(RegistryError::Malformed {
            path: path.to_path_buf(),
            at: "byte 0".into(),
            reason: "the file is empty; filebeat always writes a JSON array".into(),
        });
    }
    let raw: Vec<RawValue> = serde_json::from_slice(buf).map_err(|e| json_error(path, &e))?;
    Ok(raw
        .into_iter()
        .map(Entry::from_array)
        .filter(|e| !e.is_removed())
        .collect())
}

pub(crate) fn json_error(path: &Path, e: &serde_json::Error) -> RegistryError {
    RegistryError::Malformed {
        path: path.to_path_buf(),
        at: format!("line {}, column {}", e.line(), e.column()),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn reads_the_5x_sample() {
        let s = br#"[{"source":"/var/log/secure","offset":66761,"FileStateOS":{"inode":33902214,"device":64768},"timestamp":"2018-01-26T09:32:02.897700038Z","ttl":-1},{"source":"/var/log/messages","offset":380928,"FileStateOS":{"inode":33902213,"device":64768},"timestamp":"2018-01-26T09:48:54.403567457Z","ttl":-1}]"#;
        let e = parse(Path::new("r"), s).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].offset, 380928);
        assert_eq!(e[1].inode, Some(33902213));
        assert_eq!(e[1].device, Some(64768));
    }

    #[test]
    fn reads_the_6x_sample_and_drops_ttl_zero() {
        let s = br#"[{"source":"/var/log/apache2/access.log","offset":6,"timestamp":"2018-07-27T10:22:51.512147311Z","ttl":-1,"type":"log","meta":null,"FileStateOS":{"inode":22352675,"device":51713}},{"source":"/gone","offset":1,"ttl":0,"FileStateOS":{"inode":1,"device":1}}]"#;
        let e = parse(Path::new("r"), s).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].source,
            Some(PathBuf::from("/var/log/apache2/access.log"))
        );
    }

    #[test]
    fn malformed_array_names_file_and_line() {
        let err = parse(
            Path::new("/x/registry"),
            b"[{\"source\":\"a\",\n\"offset\":}]",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/x/registry"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let err = parse(Path::new("/x/registry"), b"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty"), "{err}");
    }
}
