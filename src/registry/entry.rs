//! One registry entry: which file, how far filebeat has shipped it, and how it is identified.

use serde::Deserialize;
use std::path::PathBuf;

/// How filebeat identifies the file behind an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// inode and device (`native`, the default up to 8.x).
    Native,
    /// the path alone (`path`).
    Path,
    /// inode plus the content of a marker file (`inode_marker`); the device is not recorded.
    InodeMarker,
    /// sha256 of the file's first 1024 bytes, hex (`fingerprint`, the default in 9.x).
    Fingerprint(String),
}

/// A registry entry, whatever the format or input type it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The registry key (synthesised as `<source>::<inode>-<device>` for the array formats).
    pub key: String,
    /// The path filebeat last saw the file at.
    pub source: Option<PathBuf>,
    /// Bytes acknowledged by the output.
    pub offset: u64,
    pub inode: Option<u64>,
    pub device: Option<u64>,
    /// `-1` never expires, `-2` loaded at start-up and owned by no input, `0` removed, `> 0` ns.
    pub ttl: i64,
    pub identity: Identity,
}

/// The fields drainhook reads from a stored value; everything else is ignored.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct RawValue {
    /// Only in memlog checkpoints: the entry's key.
    #[serde(rename = "_key")]
    pub key: Option<String>,
    source: Option<String>,
    offset: Option<u64>,
    ttl: Option<i64>,
    #[serde(rename = "FileStateOS")]
    file_state_os: Option<RawOs>,
    identifier_name: Option<String>,
    cursor: Option<RawCursor>,
    meta: Option<RawMeta>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawOs {
    inode: Option<u64>,
    device: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawCursor {
    offset: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawMeta {
    source: Option<String>,
    identifier_name: Option<String>,
}

/// Splits `filestream::<input id>::<identity>::<value>` into identity name and value.
fn filestream_identity<'a>(key: &'a str, hint: Option<&str>) -> Option<(&'a str, &'a str)> {
    let rest = key.strip_prefix("filestream::")?;
    let names = ["native", "path", "inode_marker", "fingerprint"];
    // Prefer the identifier the value names; the input id itself may contain "::".
    let order: Vec<&str> = match hint {
        Some(h) => std::iter::once(h).chain(names).collect(),
        None => names.to_vec(),
    };
    for name in order {
        let needle = format!("::{name}::");
        if let Some(i) = rest.find(&needle) {
            return Some((&rest[i + 2..i + 2 + name.len()], &rest[i + needle.len()..]));
        }
    }
    None
}

/// Parses `<inode>-<device>` (native) or `<inode>-<marker>` (inode_marker).
fn split_osid(s: &str) -> (Option<u64>, Option<&str>) {
    match s.split_once('-') {
        Some((a, b)) => (a.parse().ok(), Some(b)),
        None => (s.parse().ok(), None),
    }
}

impl Entry {
    pub(crate) fn from_raw(key: String, raw: RawValue) -> Entry {
        let meta = raw.meta.unwrap_or_default();
        let source = raw.source.or(meta.source).map(PathBuf::from);
        let ident_name = raw.identifier_name.or(meta.identifier_name);
        let os = raw.file_state_os.unwrap_or_default();
        let mut inode = os.inode;
        let mut device = os.device;
        let mut identity = match ident_name.as_deref() {
            Some("path") => Identity::Path,
            Some("inode_marker") => Identity::InodeMarker,
            _ => Identity::Native,
        };
        // filestream keeps the identity only in the key; `cursor: null` means nothing acked.
        let offset = raw
            .offset
            .or_else(|| raw.cursor.and_then(|c| c.offset))
            .unwrap_or(0);
        if let Some((name, value)) = filestream_identity(&key, ident_name.as_deref()) {
            match name {
                "native" => {
                    let (i, d) = split_osid(value);
                    inode = inode.or(i);
                    device = device.or(d.and_then(|d| d.parse().ok()));
                    identity = Identity::Native;
                }
                "inode_marker" => {
                    inode = inode.or(split_osid(value).0);
                    identity = Identity::InodeMarker;
                }
                "fingerprint" => identity = Identity::Fingerprint(value.to_ascii_lowercase()),
                _ => identity = Identity::Path,
            }
        }
        Entry {
            key,
            source,
            offset,
            inode,
            device,
            ttl: raw.ttl.unwrap_or(-1),
            identity,
        }
    }

    /// Builds the entry of an array-format element, which has no key of its own.
    pub(crate) fn from_array(raw: RawValue) -> Entry {
        let os = raw.file_state_os.as_ref();
        let key = format!(
            "{}::{}-{}",
            raw.source.as_deref().unwrap_or(""),
            os.and_then(|o| o.inode).unwrap_or(0),
            os.and_then(|o| o.device).unwrap_or(0)
        );
        Entry::from_raw(key, raw)
    }

    /// `ttl == 0`: filebeat marked the state for removal; it is not listed.
    pub fn is_removed(&self) -> bool {
        self.ttl == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(key: &str, json: &str) -> Entry {
        Entry::from_raw(key.into(), serde_json::from_str(json).unwrap())
    }

    #[test]
    fn log_input_value() {
        let e = parse(
            "filebeat::logs::native::18375024-2051",
            r#"{"offset":4,"ttl":-1,"prev_id":"","source":"/tmp/filebeat/2.log","timestamp":[2061883432564,1685451872],"type":"log","FileStateOS":{"inode":18375024,"device":2051},"identifier_name":"native","id":"native::18375024-2051"}"#,
        );
        assert_eq!(e.offset, 4);
        assert_eq!(e.inode, Some(18375024));
        assert_eq!(e.device, Some(2051));
        assert_eq!(
            e.source.as_deref(),
            Some(std::path::Path::new("/tmp/filebeat/2.log"))
        );
        assert_eq!(e.identity, Identity::Native);
    }

    #[test]
    fn filestream_native_takes_inode_and_device_from_the_key() {
        let e = parse(
            "filestream::my-log-file::native::1040242-66305",
            r#"{"ttl":1800000000000,"updated":[507500968,1701686520],"cursor":{"offset":914},"meta":{"source":"/tmp/bar.log","identifier_name":"native"}}"#,
        );
        assert_eq!(
            (e.inode, e.device, e.offset),
            (Some(1040242), Some(66305), 914)
        );
        assert_eq!(e.ttl, 1_800_000_000_000);
    }

    #[test]
    fn filestream_fingerprint_with_null_cursor_is_offset_zero() {
        let e = parse(
            "filestream::ai::fingerprint::688797F8b82fa9513d36f6ad50aaa486f3cf46c1bc67952f7b1e094b7823a99f",
            r#"{"ttl":-1,"updated":[281470681743360,18446744011573954816],"cursor":null,"meta":{"source":"/tmp/flog.log","identifier_name":"fingerprint"}}"#,
        );
        assert_eq!(e.offset, 0);
        assert_eq!(
            e.identity,
            Identity::Fingerprint(
                "688797f8b82fa9513d36f6ad50aaa486f3cf46c1bc67952f7b1e094b7823a99f".into()
            )
        );
        assert_eq!(e.inode, None);
    }

    #[test]
    fn filestream_path_and_inode_marker() {
        let e = parse(
            "filestream::in::with::colons::path::/var/log/a::b.log",
            r#"{"cursor":{"offset":7,"eof":true},"meta":{"source":"/var/log/a::b.log","identifier_name":"path"}}"#,
        );
        assert_eq!(e.identity, Identity::Path);
        assert_eq!(e.offset, 7);
        let e = parse(
            "filestream::in::inode_marker::5551-mark",
            r#"{"cursor":{"offset":1},"meta":{"source":"/x","identifier_name":"inode_marker"}}"#,
        );
        assert_eq!(
            (e.identity, e.inode, e.device),
            (Identity::InodeMarker, Some(5551), None)
        );
    }
}
