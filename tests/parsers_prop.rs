//! Property tests over everything the agent reads from outside: queue messages, durations,
//! the config file, and filebeat's registry damaged in the ways disks and crashes damage it.
//! (`make fuzz` runs coverage-guided fuzzers over the same parsers on nightly.)

use drainhook::backlog::{self, ProcScan};
use drainhook::config::{AgentArgs, FileConfig};
use drainhook::registry::Registry;
use proptest::prelude::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const BODIES: &[&str] = &[
    r#"{"Origin":"AutoScalingGroup","LifecycleHookName":"h","Destination":"EC2","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","AutoScalingGroupName":"g","EC2InstanceId":"i-03a2b505b266b2eaa","LifecycleActionToken":"451ac51f"}"#,
    r#"{"Type":"Notification","Message":"{\"AutoScalingGroupName\":\"g\",\"LifecycleTransition\":\"autoscaling:EC2_INSTANCE_TERMINATING\",\"EC2InstanceId\":\"i-4c87e963\",\"LifecycleHookName\":\"h\"}"}"#,
    r#"{"version":"0","detail-type":"EC2 Instance-terminate Lifecycle Action","source":"aws.autoscaling","detail":{"AutoScalingGroupName":"g","LifecycleHookName":"h","EC2InstanceId":"i-0abc","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING"}}"#,
    r#"{"detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","detail":{"instance-id":"i-1","instance-action":"terminate"}}"#,
    r#"{"AutoScalingGroupName":"g","Event":"autoscaling:TEST_NOTIFICATION"}"#,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_message_body_is_classified_never_panicked_on(body in ".{0,300}") {
        let n = drainhook::message::parse(&body);
        let _ = n.instance_id();
    }

    #[test]
    fn damaged_real_bodies_are_classified(which in 0..BODIES.len(), cut in 0usize..400, at in 0usize..400, c in any::<char>()) {
        let b = BODIES[which];
        let cut = b.char_indices().map(|(i, _)| i).chain([b.len()]).nth(cut % (b.chars().count() + 1)).unwrap_or(0);
        let _ = drainhook::message::parse(&b[..cut]);
        let mut chars: Vec<char> = b.chars().collect();
        let i = at % chars.len();
        chars[i] = c;
        let _ = drainhook::message::parse(&chars.into_iter().collect::<String>());
    }

    #[test]
    fn any_duration_text_parses_or_is_an_error(s in "[0-9a-zA-Z. ]{0,12}") {
        if let Ok(d) = drainhook::duration::parse(&s) {
            let _ = drainhook::duration::format(d);
        }
    }

    #[test]
    fn any_config_file_is_a_config_or_an_error(text in "[a-z_ =\"\\[\\],0-9.\\n#]{0,200}") {
        let _ = toml::from_str::<FileConfig>(&text);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("drainhook.toml");
        fs::write(&p, &text).unwrap();
        let _ = AgentArgs { config: Some(p), ..AgentArgs::default() }.resolve();
    }
}

// ---------------------------------------------------------------- a damaged registry

/// Three log files of 200 000 bytes (sparse) and a memlog history of 12 operations whose
/// offsets only grow and stay below 10 000: every state along the history, the last one
/// included, has bytes pending, and no single digit changed makes an offset reach a size.
struct History {
    _dir: tempfile::TempDir,
    data: PathBuf,
    log: Vec<u8>,
}

fn history() -> History {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let mut keys = Vec::new();
    for i in 0..3 {
        let p = logs.join(format!("app{i}.log"));
        fs::File::create(&p).unwrap().set_len(200_000).unwrap();
        let m = fs::metadata(&p).unwrap();
        keys.push((
            format!("filestream::app::native::{}-{}", m.ino(), m.dev()),
            p,
        ));
    }
    let mut log = Vec::new();
    for id in 1..=12u64 {
        let (key, path) = &keys[(id % 3) as usize];
        let offset = 700 * id;
        log.extend_from_slice(
            format!(
                "{{\"op\":\"set\",\"id\":{id}}}\n{{\"k\":\"{key}\",\"v\":{{\"cursor\":{{\"offset\":{offset}}},\"meta\":{{\"source\":\"{}\",\"identifier_name\":\"native\"}},\"ttl\":-1,\"updated\":[1,2]}}}}\n",
                path.display()
            )
            .as_bytes(),
        );
    }
    let data = dir.path().join("data");
    fs::create_dir_all(data.join("registry/filebeat")).unwrap();
    fs::write(
        data.join("registry/filebeat/meta.json"),
        r#"{"version":"1"}"#,
    )
    .unwrap();
    History {
        _dir: dir,
        data,
        log,
    }
}

/// How the registry reads with `log` as its log.json: `None` for an error, else whether it
/// is drained and the acked offsets.
fn read_with(data: &Path, log: &[u8]) -> Option<(bool, Vec<u64>)> {
    fs::write(data.join("registry/filebeat/log.json"), log).unwrap();
    let reg = Registry::open(data).ok()?;
    let b = backlog::compute(
        &reg,
        &ProcScan {
            proc_root: data.join("no-proc"),
            process_name: "filebeat".into(),
        },
    );
    let mut offsets: Vec<u64> = reg.entries().iter().map(|e| e.offset).collect();
    offsets.sort_unstable();
    Some((b.is_drained(), offsets))
}

/// The states the undamaged history passes through (after each whole operation).
fn valid_states(h: &History) -> Vec<Vec<u64>> {
    let lines: Vec<&[u8]> = h.log.split_inclusive(|&b| b == b'\n').collect();
    (0..=lines.len() / 2)
        .map(|n| {
            let prefix: Vec<u8> = lines[..2 * n].concat();
            read_with(&h.data, &prefix).map(|s| s.1).unwrap_or_default()
        })
        .collect()
}

/// Bytes of the document's structure: brackets, colons, commas and newlines outside string
/// literals, and the quotes themselves.
fn structural(log: &[u8]) -> Vec<bool> {
    let mut in_string = false;
    log.iter()
        .map(|&b| {
            if b == b'"' {
                in_string = !in_string;
                return true;
            }
            !in_string && matches!(b, b'{' | b'}' | b'[' | b']' | b':' | b',' | b'\n')
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn a_damaged_registry_reads_as_an_older_state_or_an_error_never_as_drained(
        kind in 0u8..3, pos in any::<usize>(), bit in 0u8..8, junk in "[ -~]{0,40}"
    ) {
        let h = history();
        let (drained, last) = read_with(&h.data, &h.log).expect("the undamaged registry reads");
        prop_assert!(!drained, "the undamaged history has bytes pending");
        let states = valid_states(&h);
        prop_assert_eq!(states.last(), Some(&last));
        let mut log = h.log.clone();
        match kind {
            // Truncated anywhere but to nothing at all: an empty log.json and no checkpoint is
            // exactly a fresh filebeat's registry, which tracks no file to wait for.
            0 => log.truncate(1 + pos % log.len()),
            1 => {
                // A bit flip where it breaks the document's structure or an operation line
                // (a flip inside a value that leaves valid JSON is another valid registry,
                // which no reader without checksums can tell: filebeat writes none).
                let shape = structural(&log);
                let candidates: Vec<usize> = (0..log.len())
                    .filter(|&i| shape[i] || line_of(&log, i).is_multiple_of(2))
                    .collect();
                let i = candidates[pos % candidates.len()];
                log[i] ^= 1 << bit;
            }
            _ => {
                let starts: Vec<usize> = std::iter::once(0)
                    .chain(log.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i + 1))
                    .collect();
                let at = starts[pos % starts.len()];
                let line = format!("{junk}\n");
                log.splice(at..at, line.bytes());
            }
        }
        match read_with(&h.data, &log) {
            None => {} // an error: the agent keeps holding
            Some((drained, offsets)) => {
                prop_assert!(!drained, "damage {kind} at {pos} read as drained");
                prop_assert!(states.contains(&offsets), "damage {kind} at {pos} read as a state the history never had: {offsets:?}");
            }
        }
    }
}

/// The 0-based line number of byte `i`.
fn line_of(log: &[u8], i: usize) -> usize {
    log[..i].iter().filter(|&&b| b == b'\n').count()
}
