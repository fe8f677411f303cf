//! What a drain needs from Vector's configuration: its `file` sources (`include`, `exclude`,
//! where their checkpoints are, how they fingerprint files) and whether a checkpoint proves
//! delivery for each: end-to-end acknowledgements on, and no disk buffer in between.
//!
//! Vector reads YAML, TOML and JSON, from one or several files (`--config`, `--config-dir`)
//! merged into one topology; so does this module. The facts, from vectordotdev/vector at
//! c3445d42:
//! - The checkpoints of source `<id>` are in `<data_dir>/<id>/`, `data_dir` being the
//!   source's own or the global one, `/var/lib/vector/` by default (src/sources/file.rs:400-403,
//!   lib/vector-core/src/config/global_options.rs:203-244, lib/vector-core/src/lib.rs:59-61).
//! - A source acknowledges (and checkpoints on delivery) when
//!   `source.acknowledgements ?? global.acknowledgements ?? (some sink it feeds, through any
//!   transforms, has acknowledgements ?? global)` is true: src/config/source.rs:202-215
//!   (`do_acknowledgements`: the source's deprecated setting, then the global one, then what
//!   the sinks propagated) and src/config/mod.rs:214-256 (`propagate_acknowledgements`). The
//!   setting is a bool or `{enabled: bool}` (lib/vector-core/src/serde.rs:21-54).
//! - A sink's `inputs` are glob patterns over component ids and `id.port` outputs
//!   (src/config/compiler.rs:166-270).
//! - A disk buffer acknowledges an event when it is written (lib/vector-buffers/src/variants/
//!   disk_v2/writer.rs:256-295): with one, a checkpoint proves only "in the buffer".

use super::fingerprint::Strategy;
use crate::shipper::ShipperError;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// Vector's default `data_dir` (lib/vector-core/src/lib.rs:59-61).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/vector/";
/// `max_line_bytes` default: 100 KiB (src/sources/file.rs:248-250).
pub const DEFAULT_MAX_LINE_BYTES: u64 = 102_400;
/// `glob_minimum_cooldown_ms` default (src/sources/file.rs:260-262): also how often
/// checkpoints are written (lib/file-source/src/file_server.rs:150-156).
pub const DEFAULT_COOLDOWN_MS: u64 = 1000;

/// The configuration files read, and the `file` sources they define.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorConfig {
    pub files: Vec<PathBuf>,
    pub sources: Vec<FileSource>,
}

/// One `file` source and what its checkpoints mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    pub id: String,
    /// The config file that defines it.
    pub defined_in: PathBuf,
    /// Glob patterns, as Vector matches them.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// `<data_dir>/<id>`: where `checkpoints.json` is.
    pub state_dir: PathBuf,
    pub strategy: Strategy,
    /// `read_from: end`: files found at Vector's start without a checkpoint are read from
    /// their end.
    pub read_from_end: bool,
    /// `ignore_older_secs`: files not modified for this long are read from their end.
    pub ignore_older_secs: Option<u64>,
    pub cooldown_ms: u64,
    pub acks: Acks,
    /// The sinks fed by this source (directly or through transforms).
    pub sinks: Vec<Sink>,
}

/// Whether the source acknowledges, and what decided it (for people).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acks {
    pub enabled: bool,
    pub decided_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sink {
    pub id: String,
    /// One of its buffer stages is on disk.
    pub disk_buffer: bool,
}

impl FileSource {
    /// Why a checkpoint at a file's end does not prove that the file was delivered.
    pub fn inexact(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.sinks.is_empty() {
            why.push(
                "no sink in the configuration read reads from this source (directly or through transforms), so what its lines are delivered to cannot be judged; if the configuration is split over several files, name them all (--vector-config takes a directory)"
                    .to_string(),
            );
        }
        if !self.acks.enabled {
            why.push(format!(
                "end-to-end acknowledgements are off ({}): checkpoints advance when Vector reads a line (src/sources/file.rs:664-666), not when a sink delivers it. Set `acknowledgements.enabled: true` on the sinks this source feeds, or globally",
                self.acks.decided_by
            ));
        }
        for s in self.sinks.iter().filter(|s| s.disk_buffer) {
            why.push(format!(
                "sink {} has a disk buffer: checkpoints advance when a line is written to the buffer, not when the sink delivers it, and what waits in the buffer cannot be read (its ledger is private to Vector). Use a memory buffer for an exact drain",
                s.id
            ));
        }
        why
    }

    /// Checkpoints prove delivery.
    pub fn exact(&self) -> bool {
        self.inexact().is_empty()
    }
}

fn bad(file: &Path, reason: impl Into<String>) -> ShipperError {
    ShipperError::Config {
        path: file.to_path_buf(),
        reason: reason.into(),
    }
}

/// The files a config path names: the file, or a directory's `.toml`, `.yaml`, `.yml` and
/// `.json` files (as `--config-dir` reads them), sorted.
pub fn files_of(path: &Path) -> Result<Vec<PathBuf>, ShipperError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let rd = std::fs::read_dir(path).map_err(|source| ShipperError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "toml" | "yaml" | "yml" | "json"))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Reads and merges the config files.
pub fn read(files: &[PathBuf]) -> Result<VectorConfig, ShipperError> {
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|source| ShipperError::Io {
            path: f.clone(),
            source,
        })?;
        docs.push((f.clone(), parse_text(f, &text)?));
    }
    topology(&docs)
}

/// One file's text as a JSON value, by its extension (YAML unless `.toml` or `.json`, as
/// Vector's default config is YAML).
pub fn parse_text(file: &Path, text: &str) -> Result<Value, ShipperError> {
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    let v = match ext {
        "toml" => {
            let t: toml::Table =
                toml::from_str(text).map_err(|e| bad(file, format!("not TOML: {e}")))?;
            serde_json::to_value(t).map_err(|e| bad(file, e.to_string()))?
        }
        "json" => serde_json::from_str(text).map_err(|e| bad(file, format!("not JSON: {e}")))?,
        _ => {
            let docs =
                YamlLoader::load_from_str(text).map_err(|e| bad(file, format!("not YAML: {e}")))?;
            yaml_to_json(docs.into_iter().next().unwrap_or(Yaml::Null))
        }
    };
    match v {
        Value::Object(_) => Ok(v),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err(bad(file, "the top level is not a mapping")),
    }
}

fn yaml_to_json(y: Yaml) -> Value {
    match y {
        Yaml::String(s) => Value::String(s),
        Yaml::Integer(i) => Value::from(i),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(r), Value::Number),
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Array(a) => Value::Array(a.into_iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s,
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        Yaml::Real(r) => r,
                        other => format!("{other:?}"),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// A component as the topology sees it.
struct Component<'a> {
    id: &'a str,
    file: &'a Path,
    body: &'a Map<String, Value>,
}

/// Builds the sources, with their acknowledgements and sinks, from the parsed files.
pub fn topology(docs: &[(PathBuf, Value)]) -> Result<VectorConfig, ShipperError> {
    let mut global_data_dir: Option<(String, &Path)> = None;
    let mut global_acks: Option<bool> = None;
    let mut sources = Vec::new();
    let mut transforms = Vec::new();
    let mut sinks = Vec::new();
    for (file, doc) in docs {
        let top = doc
            .as_object()
            .ok_or_else(|| bad(file, "the top level is not a mapping"))?;
        if let Some(d) = top.get("data_dir").filter(|v| !v.is_null()) {
            let d = d
                .as_str()
                .ok_or_else(|| bad(file, "data_dir is not a string"))?;
            global_data_dir.get_or_insert((d.to_string(), file));
        }
        if let Some(a) = bool_or_struct(file, "acknowledgements", top.get("acknowledgements"))? {
            global_acks.get_or_insert(a);
        }
        for (kind, list) in [
            ("sources", &mut sources),
            ("transforms", &mut transforms),
            ("sinks", &mut sinks),
        ] {
            let Some(v) = top.get(kind).filter(|v| !v.is_null()) else {
                continue;
            };
            let m = v
                .as_object()
                .ok_or_else(|| bad(file, format!("{kind} is not a mapping")))?;
            for (id, body) in m {
                let body = body
                    .as_object()
                    .ok_or_else(|| bad(file, format!("{kind}.{id} is not a mapping")))?;
                list.push(Component { id, file, body });
            }
        }
    }
    let mut out = Vec::new();
    for s in sources.iter().filter(|s| type_of(s) == Some("file")) {
        out.push(file_source(
            s,
            &global_data_dir,
            global_acks,
            &sources,
            &transforms,
            &sinks,
        )?);
    }
    Ok(VectorConfig {
        files: docs.iter().map(|(f, _)| f.clone()).collect(),
        sources: out,
    })
}

fn type_of<'a>(c: &Component<'a>) -> Option<&'a str> {
    c.body.get("type").and_then(Value::as_str)
}

fn file_source(
    s: &Component<'_>,
    global_data_dir: &Option<(String, &Path)>,
    global_acks: Option<bool>,
    sources: &[Component<'_>],
    transforms: &[Component<'_>],
    sinks: &[Component<'_>],
) -> Result<FileSource, ShipperError> {
    let file = s.file;
    let key = |k: &str| format!("sources.{}.{k}", s.id);
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| s.body.get(*n))
            .filter(|v| !v.is_null())
    };
    let include = strings(file, &key("include"), get(&["include"]))?;
    if include.is_empty() {
        return Err(bad(
            file,
            format!(
                "{} is empty: Vector needs at least one pattern",
                key("include")
            ),
        ));
    }
    let exclude = strings(file, &key("exclude"), get(&["exclude"]))?;
    for p in include.iter().chain(&exclude) {
        no_variables(file, &key("include/exclude"), p)?;
    }
    let data_dir = match get(&["data_dir"]) {
        Some(v) => v
            .as_str()
            .ok_or_else(|| bad(file, format!("{} is not a string", key("data_dir"))))?
            .to_string(),
        None => global_data_dir
            .as_ref()
            .map_or(DEFAULT_DATA_DIR.to_string(), |(d, _)| d.clone()),
    };
    no_variables(file, "data_dir", &data_dir)?;
    let uint = |names: &[&str], default: u64| -> Result<u64, ShipperError> {
        match get(names) {
            None => Ok(default),
            Some(v) => v.as_u64().ok_or_else(|| {
                bad(
                    file,
                    format!("{} is not a non-negative integer", key(names[0])),
                )
            }),
        }
    };
    let max_line_bytes = uint(&["max_line_bytes"], DEFAULT_MAX_LINE_BYTES)?;
    let cooldown_ms = uint(
        &["glob_minimum_cooldown_ms", "glob_minimum_cooldown"],
        DEFAULT_COOLDOWN_MS,
    )?;
    let ignore_older_secs = match get(&["ignore_older_secs", "ignore_older"]) {
        None => None,
        Some(_) => Some(uint(&["ignore_older_secs", "ignore_older"], 0)?),
    };
    let strategy = strategy(
        file,
        &key("fingerprint"),
        get(&["fingerprint", "fingerprinting"]),
        max_line_bytes,
    )?;
    let read_from_end = match get(&["read_from"]).map(|v| v.as_str()) {
        None => get(&["start_at_beginning"]).and_then(Value::as_bool) == Some(false),
        Some(Some("end")) => true,
        Some(Some("beginning")) => false,
        Some(_) => {
            return Err(bad(
                file,
                format!("{} is neither \"beginning\" nor \"end\"", key("read_from")),
            ))
        }
    };

    // The sinks fed by this source, through any transforms.
    let fed: Vec<&Component<'_>> = sinks
        .iter()
        .filter(|k| reaches(k, s.id, sources, transforms, &mut HashSet::new()))
        .collect();
    let own = bool_or_struct(
        file,
        &key("acknowledgements"),
        s.body.get("acknowledgements"),
    )?;
    let mut enabling = Vec::new();
    for k in &fed {
        let sink_acks = bool_or_struct(
            k.file,
            &format!("sinks.{}.acknowledgements", k.id),
            k.body.get("acknowledgements"),
        )?;
        if sink_acks.or(global_acks) == Some(true) {
            enabling.push(k.id.to_string());
        }
    }
    let acks = match (own, global_acks) {
        (Some(b), _) => Acks {
            enabled: b,
            decided_by: format!(
                "the source's own `acknowledgements` is {b}, which wins over the sinks' (src/config/source.rs:202-215)"
            ),
        },
        (None, Some(b)) => Acks {
            enabled: b,
            decided_by: format!(
                "the global `acknowledgements` is {b}, which decides for the source whatever its sinks say (src/config/source.rs:202-215)"
            ),
        },
        (None, None) if enabling.is_empty() => Acks {
            enabled: false,
            decided_by: "neither the source, the global setting nor a sink it feeds enables them"
                .into(),
        },
        (None, None) => Acks {
            enabled: true,
            decided_by: format!("enabled by sink {}", enabling.join(", ")),
        },
    };
    let mut out_sinks = Vec::new();
    for k in fed {
        out_sinks.push(Sink {
            id: k.id.to_string(),
            disk_buffer: disk_buffer(k)?,
        });
    }
    Ok(FileSource {
        id: s.id.to_string(),
        defined_in: file.to_path_buf(),
        include,
        exclude,
        state_dir: Path::new(&absolute(&data_dir)).join(s.id),
        strategy,
        read_from_end,
        ignore_older_secs,
        cooldown_ms,
        acks,
        sinks: out_sinks,
    })
}

/// A relative path as Vector's service sees it (systemd starts it in `/`).
fn absolute(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// Vector expands `$VAR` and `${VAR}` from its own environment before parsing
/// (src/config/vars.rs), which drainhook does not share: a path that uses one cannot be
/// known here.
fn no_variables(file: &Path, key: &str, value: &str) -> Result<(), ShipperError> {
    if value.replace("$$", "").contains('$') {
        return Err(bad(
            file,
            format!(
                "{key} ({value}) uses an environment variable, which Vector expands from its own environment; drainhook cannot know its value: give --vector-config a config with the path written out"
            ),
        ));
    }
    Ok(())
}

/// `acknowledgements: true` or `acknowledgements: {enabled: true}`.
fn bool_or_struct(file: &Path, key: &str, v: Option<&Value>) -> Result<Option<bool>, ShipperError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Object(m)) => match m.get("enabled") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(bad(
                file,
                format!("{key}.enabled is not a boolean: {other}"),
            )),
        },
        Some(other) => Err(bad(
            file,
            format!("{key} is neither a boolean nor a mapping: {other}"),
        )),
    }
}

fn strings(file: &Path, key: &str, v: Option<&Value>) -> Result<Vec<String>, ShipperError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(String::from)
                    .ok_or_else(|| bad(file, format!("{key} holds a non-string: {x}")))
            })
            .collect(),
        Some(other) => Err(bad(
            file,
            format!("{key} is not a list of patterns: {other}"),
        )),
    }
}

/// The `fingerprint` setting (src/sources/file.rs:280-334): `strategy` `checksum` (default)
/// with `ignored_header_bytes` (0) and `lines` (1), or `device_and_inode`.
fn strategy(
    file: &Path,
    key: &str,
    v: Option<&Value>,
    max_line_bytes: u64,
) -> Result<Strategy, ShipperError> {
    let m = match v {
        None => return Ok(checksum(0, 1, max_line_bytes)),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(bad(file, format!("{key} is not a mapping: {other}"))),
    };
    let uint = |name: &str, default: u64| -> Result<u64, ShipperError> {
        match m.get(name).filter(|v| !v.is_null()) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad(file, format!("{key}.{name} is not a non-negative integer"))),
        }
    };
    match m
        .get("strategy")
        .and_then(Value::as_str)
        .unwrap_or("checksum")
    {
        "checksum" => Ok(checksum(
            uint("ignored_header_bytes", 0)?,
            uint("lines", 1)?,
            max_line_bytes,
        )),
        "device_and_inode" => Ok(Strategy::DevInode),
        other => Err(bad(
            file,
            format!("{key}.strategy {other:?} is neither \"checksum\" nor \"device_and_inode\""),
        )),
    }
}

fn checksum(ignored_header_bytes: u64, lines: u64, max_line_bytes: u64) -> Strategy {
    Strategy::Checksum {
        ignored_header_bytes,
        lines,
        max_line_bytes,
    }
}

/// Whether any of the sink's (or transform's) inputs lead to source `source`.
fn reaches(
    c: &Component<'_>,
    source: &str,
    sources: &[Component<'_>],
    transforms: &[Component<'_>],
    seen: &mut HashSet<String>,
) -> bool {
    if !seen.insert(c.id.to_string()) {
        return false;
    }
    let inputs = match c.body.get("inputs") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => Vec::new(),
    };
    inputs.iter().any(|input| {
        sources
            .iter()
            .any(|s| s.id == source && refers(input, s.id))
            || transforms
                .iter()
                .filter(|t| t.id != c.id && refers(input, t.id))
                .any(|t| reaches(t, source, sources, transforms, seen))
    })
}

/// Whether an input names component `id`: `id`, one of its outputs `id.port`, or a glob
/// pattern matching either.
fn refers(input: &str, id: &str) -> bool {
    let matches =
        |pattern: &str| pattern == id || glob::Pattern::new(pattern).is_ok_and(|p| p.matches(id));
    matches(input) || input.split_once('.').is_some_and(|(head, _)| matches(head))
}

/// A sink's `buffer`: one stage (`{type: memory|disk, ...}`) or a list of them
/// (lib/vector-buffers/src/config.rs). `disk_v1` was the old disk buffer.
fn disk_buffer(k: &Component<'_>) -> Result<bool, ShipperError> {
    let stage_is_disk = |v: &Value| -> Result<bool, ShipperError> {
        match v.get("type") {
            None | Some(Value::Null) => Ok(false),
            Some(Value::String(t)) => Ok(t.starts_with("disk")),
            Some(other) => Err(bad(
                k.file,
                format!("sinks.{}.buffer.type is not a string: {other}", k.id),
            )),
        }
    };
    match k.body.get("buffer") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Array(stages)) => {
            for st in stages {
                if stage_is_disk(st)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Some(v @ Value::Object(_)) => stage_is_disk(v),
        Some(other) => Err(bad(
            k.file,
            format!(
                "sinks.{}.buffer is neither a mapping nor a list: {other}",
                k.id
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, text: &str) -> Result<VectorConfig, ShipperError> {
        let file = PathBuf::from(name);
        let v = parse_text(&file, text)?;
        topology(&[(file, v)])
    }

    fn source(name: &str, text: &str) -> FileSource {
        let c = one(name, text).unwrap();
        assert_eq!(c.sources.len(), 1, "{c:?}");
        c.sources.into_iter().next().unwrap()
    }

    #[test]
    fn yaml_with_acknowledgements_on_the_sink_is_exact() {
        let s = source(
            "vector.yaml",
            r#"
sources:
  app:
    type: file
    include: ["/var/log/app/*.log"]
transforms:
  parse:
    type: remap
    inputs: [app]
    source: ". = parse_json!(.message)"
sinks:
  out:
    type: aws_s3
    inputs: [parse]
    acknowledgements:
      enabled: true
"#,
        );
        assert_eq!(s.id, "app");
        assert_eq!(s.include, vec!["/var/log/app/*.log"]);
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/vector/app"));
        assert_eq!(
            s.strategy,
            Strategy::Checksum {
                ignored_header_bytes: 0,
                lines: 1,
                max_line_bytes: 102_400
            }
        );
        assert!(s.acks.enabled, "{:?}", s.acks);
        assert!(s.exact(), "{:?}", s.inexact());
    }

    #[test]
    fn toml_without_acknowledgements_is_not_exact_and_says_why() {
        let s = source(
            "vector.toml",
            r#"
data_dir = "/srv/vector"
[sources.logs]
type = "file"
include = ["/var/log/*.log"]
exclude = ["/var/log/secret.log"]
fingerprint.strategy = "device_and_inode"
read_from = "end"
[sinks.out]
type = "http"
inputs = ["logs"]
uri = "http://example"
encoding.codec = "json"
"#,
        );
        assert_eq!(s.state_dir, PathBuf::from("/srv/vector/logs"));
        assert_eq!(s.strategy, Strategy::DevInode);
        assert!(s.read_from_end);
        assert_eq!(s.exclude, vec!["/var/log/secret.log"]);
        assert!(!s.acks.enabled);
        let why = s.inexact().join("; ");
        assert!(why.contains("acknowledgements are off"), "{why}");
    }

    #[test]
    fn acknowledgements_are_decided_as_vector_decides_them() {
        let cfg = |global: &str, src: &str, sink: &str| {
            format!(
                "{global}\nsources:\n  in:\n    type: file\n    include: [/l/*.log]\n{src}\nsinks:\n  out:\n    type: console\n    inputs: [in]\n{sink}\n"
            )
        };
        let on = |g: &str, s: &str, k: &str| source("v.yaml", &cfg(g, s, k)).acks.enabled;
        // The sink enables them: propagated to the source.
        assert!(on("", "", "    acknowledgements: true"));
        // Globally on.
        assert!(on("acknowledgements: true", "", ""));
        assert!(on("acknowledgements:\n  enabled: true", "", ""));
        // The source's own (deprecated) setting wins over the sink's.
        assert!(!on(
            "",
            "    acknowledgements: false",
            "    acknowledgements: true"
        ));
        assert!(on("", "    acknowledgements:\n      enabled: true", ""));
        // A global false decides for the source even where the sink enables them.
        assert!(!on(
            "acknowledgements: false",
            "",
            "    acknowledgements: true"
        ));
        // Nothing anywhere: off.
        assert!(!on("", "", ""));
        // A sink off under a global true: the global decides for the source.
        assert!(on(
            "acknowledgements: true",
            "",
            "    acknowledgements: false"
        ));
    }

    #[test]
    fn a_sink_fed_through_a_wildcard_or_a_named_output_counts() {
        let s = source(
            "v.yaml",
            r#"
sources:
  app_a:
    type: file
    include: [/l/*.log]
transforms:
  route:
    type: route
    inputs: ["app_*"]
    route: {x: "true"}
sinks:
  keep:
    type: console
    inputs: [route.x]
    acknowledgements: true
    buffer:
      - type: memory
      - type: disk
        max_size: 268435488
  other:
    type: console
    inputs: [somewhere_else]
"#,
        );
        assert_eq!(
            s.sinks,
            vec![Sink {
                id: "keep".into(),
                disk_buffer: true
            }]
        );
        assert!(s.acks.enabled);
        let why = s.inexact().join("; ");
        assert!(why.contains("sink keep has a disk buffer"), "{why}");
    }

    #[test]
    fn a_source_no_sink_reads_is_not_exact() {
        let s = source(
            "v.yaml",
            "acknowledgements: true\nsources:\n  in:\n    type: file\n    include: [/l/*.log]\n",
        );
        assert!(
            s.inexact().join(" ").contains("no sink"),
            "{:?}",
            s.inexact()
        );
    }

    #[test]
    fn fingerprint_settings_and_the_source_s_data_dir() {
        let s = source(
            "v.yaml",
            r#"
data_dir: /global
sources:
  in:
    type: file
    include: [/l/*.log]
    data_dir: /mine
    max_line_bytes: 4096
    fingerprinting:
      strategy: checksum
      ignored_header_bytes: 12
      lines: 3
sinks:
  out: {type: blackhole, inputs: [in], acknowledgements: true}
"#,
        );
        assert_eq!(s.state_dir, PathBuf::from("/mine/in"));
        assert_eq!(
            s.strategy,
            Strategy::Checksum {
                ignored_header_bytes: 12,
                lines: 3,
                max_line_bytes: 4096
            }
        );
    }

    #[test]
    fn several_files_merge_into_one_topology() {
        let a = PathBuf::from("/etc/vector/sources.yaml");
        let b = PathBuf::from("/etc/vector/sinks.toml");
        let docs = vec![
            (
                a.clone(),
                parse_text(&a, "sources:\n  in: {type: file, include: [/l/*.log]}\n").unwrap(),
            ),
            (
                b.clone(),
                parse_text(
                    &b,
                    "[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\nacknowledgements.enabled = true\n",
                )
                .unwrap(),
            ),
        ];
        let c = topology(&docs).unwrap();
        assert!(c.sources[0].exact(), "{:?}", c.sources[0].inexact());
        assert_eq!(c.sources[0].defined_in, a);
    }

    #[test]
    fn other_sources_are_not_file_sources() {
        let c = one(
            "v.yaml",
            "sources:\n  j: {type: journald}\n  h: {type: host_metrics}\n",
        )
        .unwrap();
        assert!(c.sources.is_empty());
    }

    #[test]
    fn bad_configs_are_errors_that_name_the_file_and_the_key() {
        for (name, text, want) in [
            ("v.yaml", "sources: [1]", "sources is not a mapping"),
            ("v.yaml", "- a\n- b\n", "top level"),
            ("v.toml", "sources = ", "not TOML"),
            ("v.json", "{", "not JSON"),
            (
                "v.yaml",
                "sources:\n  in: {type: file}\n",
                "include is empty",
            ),
            (
                "v.yaml",
                "sources:\n  in: {type: file, include: [\"${LOGS}/*.log\"]}\n",
                "environment variable",
            ),
            (
                "v.yaml",
                "sources:\n  in: {type: file, include: [/l], fingerprint: {strategy: crc}}\n",
                "strategy",
            ),
            (
                "v.yaml",
                "sources:\n  in: {type: file, include: [/l], acknowledgements: maybe}\n",
                "acknowledgements is neither",
            ),
            (
                "v.yaml",
                "sources:\n  in: {type: file, include: [/l], max_line_bytes: -3}\n",
                "max_line_bytes",
            ),
        ] {
            let e = one(name, text).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(want), "{text}: {e}");
        }
    }
}
