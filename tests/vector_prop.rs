//! Property tests over what drainhook reads of Vector's: checkpoints.json as Vector writes
//! it, damaged; Vector configs (YAML, TOML, JSON) of any shape; and the checksum of a file's
//! first lines over any bytes. Nothing panics; a real checkpoint file always parses to what
//! it holds; damage is a clear error or a state that still says what it says.

use drainhook::shipper::vector::checkpoints;
use drainhook::shipper::vector::config::{parse_text, topology};
use drainhook::shipper::vector::fingerprint::{checksum_of_head, Fingerprint};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn fingerprint() -> impl Strategy<Value = Fingerprint> {
    prop_oneof![
        any::<u64>().prop_map(Fingerprint::FirstLinesChecksum),
        (any::<u64>(), any::<u64>()).prop_map(|(d, i)| Fingerprint::DevInode(d, i)),
    ]
}

/// The text Vector's serde writes (lib/file-source-common/src/checkpointer.rs:20-42).
fn vector_writes(entries: &[(Fingerprint, u64)], nanos: u32) -> String {
    let list: Vec<String> = entries
        .iter()
        .map(|(f, p)| {
            let fp = match f {
                Fingerprint::FirstLinesChecksum(c) => format!(r#"{{"first_lines_checksum":{c}}}"#),
                Fingerprint::DevInode(d, i) => format!(r#"{{"dev_inode":[{d},{i}]}}"#),
                Fingerprint::Legacy(c) => format!(r#"{{"checksum":{c}}}"#),
            };
            format!(
                r#"{{"fingerprint":{fp},"position":{p},"modified":"2026-08-21T10:11:12.{nanos:09}Z"}}"#
            )
        })
        .collect();
    format!(r#"{{"version":"1","checkpoints":[{}]}}"#, list.join(","))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn a_real_checkpoint_file_parses_to_what_it_holds(
        entries in prop::collection::vec((fingerprint(), any::<u64>()), 0..20),
        nanos in 0u32..1_000_000_000,
    ) {
        let text = vector_writes(&entries, nanos);
        let got = checkpoints::parse(Path::new("checkpoints.json"), text.as_bytes()).unwrap();
        let got: Vec<(Fingerprint, u64)> = got.iter().map(|c| (c.fingerprint, c.position)).collect();
        prop_assert_eq!(got, entries);
    }

    #[test]
    fn a_damaged_checkpoint_file_is_an_error_naming_it_or_a_state(
        entries in prop::collection::vec((fingerprint(), any::<u64>()), 1..8),
        cut in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let text = vector_writes(&entries, 5).into_bytes();
        let p = Path::new("/var/lib/vector/app/checkpoints.json");
        for damaged in [text[..cut.index(text.len())].to_vec(), {
            let mut t = text.clone();
            t[at.index(text.len())] = byte;
            t
        }] {
            if let Err(e) = checkpoints::parse(p, &damaged) {
                prop_assert!(e.to_string().contains("/var/lib/vector/app/checkpoints.json"));
            }
        }
    }

    #[test]
    fn any_bytes_as_checkpoints_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = checkpoints::parse(Path::new("c.json"), &bytes);
    }

    #[test]
    fn any_config_text_is_a_topology_or_an_error(
        text in "[a-z_:\\[\\]{}, \\n\"=.0-9/*-]{0,300}",
        ext in prop::sample::select(vec!["yaml", "toml", "json"]),
    ) {
        let file = PathBuf::from(format!("/etc/vector/vector.{ext}"));
        if let Ok(v) = parse_text(&file, &text) {
            let _ = topology(&[(file, v)]);
        }
    }

    #[test]
    fn a_real_config_with_values_of_any_type_is_judged_or_an_error(
        include in prop::sample::select(vec!["[/l/*.log]", "/l/a.log", "[]", "7", "{a: 1}", "[1, 2]", "null"]),
        acks in prop::sample::select(vec!["true", "false", "{enabled: true}", "{enabled: 3}", "[]", "maybe", "null"]),
        buffer in prop::sample::select(vec!["{type: disk}", "[{type: memory}, {type: disk}]", "{type: 3}", "7", "[]", "null"]),
        inputs in prop::sample::select(vec!["[app]", "[\"a*\"]", "app", "[route.x]", "[\"[\"]", "7", "null"]),
        fingerprint in prop::sample::select(vec!["{strategy: checksum, lines: 2}", "{strategy: device_and_inode}", "{lines: -1}", "{strategy: x}", "3", "null"]),
    ) {
        let text = format!(
            "sources:\n  app:\n    type: file\n    include: {include}\n    fingerprint: {fingerprint}\n    acknowledgements: {acks}\ntransforms:\n  route:\n    type: route\n    inputs: {inputs}\nsinks:\n  out:\n    type: console\n    inputs: {inputs}\n    acknowledgements: {acks}\n    buffer: {buffer}\n"
        );
        let file = PathBuf::from("vector.yaml");
        let v = parse_text(&file, &text).unwrap();
        match topology(&[(file, v)]) {
            Ok(c) => for s in c.sources { let _ = s.inexact(); },
            Err(e) => prop_assert!(e.to_string().contains("vector.yaml"), "{}", e),
        }
    }

    #[test]
    fn the_checksum_covers_whole_lines_or_a_full_buffer(
        head in prop::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..200),
        lines in 0u64..5,
        max in 0u64..200,
    ) {
        let head = &head[..head.len().min(max as usize)];
        let with = checksum_of_head(head, lines, max);
        let newlines = head.iter().filter(|&&b| b == b'\n').count() as u64;
        let enough = newlines >= lines.max(1) || head.len() as u64 >= max;
        prop_assert_eq!(with.is_some(), enough);
    }
}
