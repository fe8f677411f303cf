//! What a drain needs from Fluent Bit's configuration, and nothing else: the `[SERVICE]`
//! storage and HTTP server settings, the `tail` inputs (`Path`, `DB`, `DB.locking`,
//! `storage.type`, `Alias`) and the filters that put records into chunks of their own
//! (`rewrite_tag`, `multiline`: their emitter inputs).
//!
//! Both formats Fluent Bit reads:
//! - classic `.conf` (src/config_format/flb_cf_fluentbit.c): `[SECTION]` headers, indented
//!   `Key value` lines (the key ends at the first blank), `#` comments, `@INCLUDE file` (a
//!   `*` pattern in the file name too; relative to the main file's directory), `@SET k=v`;
//! - YAML (src/config_format/flb_cf_yaml.c): `service:`, `pipeline: {inputs, filters}`,
//!   `includes:` (relative to the including file), `env:`, read with yaml-rust2.
//!
//! Keys are case-insensitive in both. `${VAR}` and `${VAR:-word}` are expanded from `@SET`,
//! `env:` and the process environment, an unset one to nothing, as src/flb_env.c does.
//! The classic format has no crate, so its line rules are followed here, from the source.

use crate::shipper::ShipperError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// How an input keeps its chunks (`storage.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In memory only: seen from outside through `/api/v1/storage` alone.
    Memory,
    /// Files under `storage.path/<input instance>/` (also kept up in memory).
    Filesystem,
}

/// The `[SERVICE]` settings a drain needs, with Fluent Bit's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `storage.path`: where filesystem chunks live (none: no filesystem storage).
    pub storage_path: Option<PathBuf>,
    /// `storage.type` with `storage.inherit on`: what inputs without their own inherit.
    pub inherited_storage: Option<Storage>,
    /// `storage.metrics` (default on since 2.0: src/flb_config.c:424, commit ae21f9f14).
    pub storage_metrics: bool,
    /// `HTTP_Server` (default off: src/flb_config.c:354).
    pub http_server: bool,
    /// `HTTP_Listen` (default 0.0.0.0) and `HTTP_Port` (default 2020):
    /// include/fluent-bit/flb_config.h:38-39.
    pub http_listen: String,
    pub http_port: u16,
}

impl Default for Service {
    fn default() -> Self {
        Service {
            storage_path: None,
            inherited_storage: None,
            storage_metrics: true,
            http_server: false,
            http_listen: "0.0.0.0".into(),
            http_port: 2020,
        }
    }
}

/// One `tail` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailInput {
    /// Its instance name, `tail.<n>`: n counts every input before it, of any plugin
    /// (src/flb_input.c:268-282,458-459). Its chunk files are under `storage.path/<this>/`.
    pub instance: String,
    /// `Alias`: the name the HTTP server reports it under instead.
    pub alias: Option<String>,
    /// `Path`, as written (comma-separated patterns).
    pub path: String,
    /// `DB`: the SQLite file of its offsets (none: offsets live only in memory).
    pub db: Option<PathBuf>,
    /// `DB.locking true`: Fluent Bit holds the DB exclusively (tail_db.c:116-123).
    pub db_locking: bool,
    pub storage: Storage,
}

impl TailInput {
    /// The name `/api/v1/storage` lists it under (`flb_input_name`: the alias if set).
    pub fn reported_name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.instance)
    }
}

/// What a drain needs from one Fluent Bit configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FluentBitConfig {
    /// The main config file.
    pub file: PathBuf,
    pub service: Service,
    pub tails: Vec<TailInput>,
    /// Input instance names of emitters whose records come from the tail inputs' lines
    /// (`rewrite_tag`, `multiline` filters): their chunks hold tailed lines too.
    pub emitters: Vec<String>,
    /// Filters that hold records outside any chunk for a while (`multiline` with its
    /// flush timeout): named by `check`.
    pub buffering_filters: Vec<String>,
}

/// One section as read: its kind (`service`, `input`, `filter`, ...) and its properties,
/// keys lower-cased, in file order.
#[derive(Debug, Clone, Default)]
struct Section {
    kind: String,
    props: Vec<(String, String)>,
}

impl Section {
    fn get(&self, key: &str) -> Option<&str> {
        self.props
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the config at `file` (classic unless it ends in `.yaml` or `.yml`) with its
/// includes. `root` prefixes absolute paths it names (tests; `/` otherwise).
pub fn read(file: &Path, root: &Path) -> Result<FluentBitConfig, ShipperError> {
    let mut r = Reader {
        root: root.to_path_buf(),
        vars: HashMap::new(),
        sections: Vec::new(),
        seen: Vec::new(),
    };
    if is_yaml(file) {
        r.read_yaml(file)?;
    } else {
        let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        r.read_classic(file, &dir)?;
    }
    build(file, &r.sections, root)
}

/// Parses one config text (no includes are followed): for the property tests.
pub fn parse_text(file: &Path, text: &str) -> Result<FluentBitConfig, ShipperError> {
    let mut r = Reader {
        root: PathBuf::from("/"),
        vars: HashMap::new(),
        sections: Vec::new(),
        seen: vec![file.to_path_buf()],
    };
    if is_yaml(file) {
        r.parse_yaml(file, text, None)?;
    } else {
        r.parse_classic(file, text, None)?;
    }
    build(file, &r.sections, Path::new("/"))
}

fn is_yaml(file: &Path) -> bool {
    matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

struct Reader {
    root: PathBuf,
    vars: HashMap<String, String>,
    sections: Vec<Section>,
    /// Files read so far: one read twice is an error, as in Fluent Bit.
    seen: Vec<PathBuf>,
}

/// Files one config may include, at most (Fluent Bit's FLB_CF_FILE_NUM_LIMIT is 1000).
const MAX_FILES: usize = 1000;

impl Reader {
    fn open(&mut self, file: &Path) -> Result<String, ShipperError> {
        let key = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        if self.seen.contains(&key) {
            return Err(ShipperError::Config {
                path: file.to_path_buf(),
                reason: "included twice (Fluent Bit refuses this config)".into(),
            });
        }
        if self.seen.len() >= MAX_FILES {
            return Err(ShipperError::Config {
                path: file.to_path_buf(),
                reason: format!("more than {MAX_FILES} files included"),
            });
        }
        self.seen.push(key);
        std::fs::read_to_string(file).map_err(|source| ShipperError::Io {
            path: file.to_path_buf(),
            source,
        })
    }

    fn read_classic(&mut self, file: &Path, root_dir: &Path) -> Result<(), ShipperError> {
        let text = self.open(file)?;
        self.parse_classic(file, &text, Some(root_dir))
    }

    /// flb_cf_fluentbit.c:read_config: one line at a time.
    fn parse_classic(
        &mut self,
        file: &Path,
        text: &str,
        root_dir: Option<&Path>,
    ) -> Result<(), ShipperError> {
        let bad = |line: usize, reason: &str| ShipperError::Config {
            path: file.to_path_buf(),
            reason: format!("line {line}: {reason}"),
        };
        let mut current: Option<usize> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let l = raw.trim_end_matches('\r');
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if let Some(target) = strip_prefix_ignore_case(l, "@INCLUDE ") {
                let target = target.trim();
                let Some(dir) = root_dir else { continue };
                for f in self.include_targets(file, dir, target)? {
                    self.read_classic(&f, dir)?;
                }
                continue;
            }
            if l.starts_with('@') {
                // @SET key=value (flb_cf_meta_property_add); other metas are not ours.
                if let Some(set) = strip_prefix_ignore_case(l, "@SET ") {
                    if let Some((k, v)) = set.split_once('=') {
                        self.vars.insert(k.trim().to_string(), v.trim().to_string());
                    }
                }
                continue;
            }
            if let Some(rest) = l.strip_prefix('[') {
                let Some(end) = rest.find(']') else {
                    return Err(bad(line, "bad header definition (no ']')"));
                };
                self.sections.push(Section {
                    kind: rest[..end].trim().to_ascii_lowercase(),
                    props: Vec::new(),
                });
                current = Some(self.sections.len() - 1);
                continue;
            }
            let body = l.trim_start();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            if body.starts_with('[') {
                // A group inside a section (`[MULTILINE_PARSER]` rules): not ours.
                continue;
            }
            let Some((key, value)) = body.split_once(|c: char| c.is_ascii_whitespace()) else {
                return Err(bad(line, &format!("key {body:?} has no value")));
            };
            let value = value.trim();
            if value.is_empty() {
                return Err(bad(line, &format!("key {key:?} has an empty value")));
            }
            let value = expand(value, &self.vars);
            if let Some(i) = current {
                self.sections[i]
                    .props
                    .push((key.to_ascii_lowercase(), value));
            }
        }
        Ok(())
    }

    /// The files an include names: relative to `dir`, a `*` pattern in its last part.
    fn include_targets(
        &self,
        file: &Path,
        dir: &Path,
        target: &str,
    ) -> Result<Vec<PathBuf>, ShipperError> {
        let target = expand(target, &self.vars);
        let p = Path::new(&target);
        let p = if p.is_absolute() {
            at_root(&self.root, p)
        } else {
            dir.join(p)
        };
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !name.contains('*') {
            if !p.exists() {
                return Err(ShipperError::Config {
                    path: file.to_path_buf(),
                    reason: format!("includes {}, which does not exist", p.display()),
                });
            }
            return Ok(vec![p]);
        }
        let parent = p.parent().unwrap_or(Path::new("/"));
        let mut out: Vec<PathBuf> = match std::fs::read_dir(parent) {
            Ok(rd) => rd
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| wildcard(&name, n) && !n.starts_with('.'))
                })
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect(),
            Err(_) => Vec::new(), // glob(3) with no match: Fluent Bit warns and goes on
        };
        out.sort();
        Ok(out)
    }

    fn read_yaml(&mut self, file: &Path) -> Result<(), ShipperError> {
        let text = self.open(file)?;
        let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        self.parse_yaml(file, &text, Some(&dir))
    }

    /// flb_cf_yaml.c: the top-level sections in document order.
    fn parse_yaml(
        &mut self,
        file: &Path,
        text: &str,
        dir: Option<&Path>,
    ) -> Result<(), ShipperError> {
        let bad = |reason: String| ShipperError::Config {
            path: file.to_path_buf(),
            reason,
        };
        let docs = YamlLoader::load_from_str(text).map_err(|e| bad(format!("not YAML: {e}")))?;
        let doc = docs.into_iter().next().unwrap_or(Yaml::Null);
        let top = match doc {
            Yaml::Hash(h) => h,
            Yaml::Null => return Ok(()),
            _ => return Err(bad("the top level is not a mapping".into())),
        };
        for (k, v) in top {
            let Some(k) = k.as_str().map(str::to_ascii_lowercase) else {
                continue;
            };
            match k.as_str() {
                "env" => {
                    if let Yaml::Hash(h) = v {
                        for (ek, ev) in h {
                            if let (Some(ek), Some(ev)) = (ek.as_str(), scalar(&ev)) {
                                self.vars.insert(ek.to_string(), ev);
                            }
                        }
                    }
                }
                "includes" => {
                    let Some(dir) = dir else { continue };
                    let list = match v {
                        Yaml::Array(a) => a,
                        Yaml::Null => Vec::new(),
                        other => vec![other],
                    };
                    for inc in list {
                        let Some(t) = scalar(&inc) else {
                            return Err(bad("an entry of includes is not a file name".into()));
                        };
                        for f in self.include_targets(file, dir, &t)? {
                            self.read_yaml(&f)?;
                        }
                    }
                }
                "service" => {
                    let s = self.yaml_section("service", &v, file)?;
                    self.sections.push(s);
                }
                "pipeline" => {
                    let Yaml::Hash(p) = v else {
                        return Err(bad("pipeline is not a mapping".into()));
                    };
                    for (pk, pv) in p {
                        let kind = match pk.as_str().map(str::to_ascii_lowercase).as_deref() {
                            Some("inputs") => "input",
                            Some("filters") => "filter",
                            Some("outputs") => "output",
                            _ => continue,
                        };
                        let list = match pv {
                            Yaml::Array(a) => a,
                            Yaml::Null => Vec::new(),
                            _ => return Err(bad(format!("pipeline.{kind}s is not a list"))),
                        };
                        for item in list {
                            let s = self.yaml_section(kind, &item, file)?;
                            self.sections.push(s);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn yaml_section(&self, kind: &str, v: &Yaml, file: &Path) -> Result<Section, ShipperError> {
        let Yaml::Hash(h) = v else {
            return Err(ShipperError::Config {
                path: file.to_path_buf(),
                reason: format!("a {kind} entry is not a mapping"),
            });
        };
        let mut s = Section {
            kind: kind.to_string(),
            props: Vec::new(),
        };
        for (k, v) in h {
            let (Some(k), Some(v)) = (k.as_str(), scalar(v)) else {
                continue; // processors and other nested settings: not ours
            };
            s.props
                .push((k.to_ascii_lowercase(), expand(&v, &self.vars)));
        }
        Ok(s)
    }
}

/// `line` without `prefix`, matched ignoring ASCII case (strncasecmp in Fluent Bit).
fn strip_prefix_ignore_case<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let head = line.as_bytes().get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix.as_bytes()) {
        line.get(prefix.len()..)
    } else {
        None
    }
}

/// A scalar as Fluent Bit sees it: text.
fn scalar(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(if *b { "on" } else { "off" }.into()),
        _ => None,
    }
}

/// `${VAR}` and `${VAR:-word}` (src/flb_env.c:315-420): from the config's own variables,
/// then the environment; an unset one is empty.
fn expand(value: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let v = vars
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .filter(|v| !v.is_empty());
        out.push_str(
            &v.or_else(|| default.map(str::to_string))
                .unwrap_or_default(),
        );
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `*` matches any run of characters (glob(3) in the last path component).
fn wildcard(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == name;
    }
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Fluent Bit's booleans (src/flb_utils.c:flb_utils_bool): on/off, true/false, yes/no.
fn boolean(file: &Path, key: &str, v: &str) -> Result<bool, ShipperError> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(ShipperError::Config {
            path: file.to_path_buf(),
            reason: format!("{key} is {v:?}, not on/off"),
        }),
    }
}

fn storage(file: &Path, key: &str, v: &str) -> Result<Storage, ShipperError> {
    match v.to_ascii_lowercase().as_str() {
        "memory" => Ok(Storage::Memory),
        "filesystem" => Ok(Storage::Filesystem),
        // memrb: a memory ring buffer, memory as far as the outside can see.
        "memrb" => Ok(Storage::Memory),
        _ => Err(ShipperError::Config {
            path: file.to_path_buf(),
            reason: format!("{key} is {v:?}, not memory or filesystem"),
        }),
    }
}

fn at_root(root: &Path, p: &Path) -> PathBuf {
    match p.strip_prefix("/") {
        Ok(rel) if root != Path::new("/") => root.join(rel),
        _ => p.to_path_buf(),
    }
}

/// Relative paths in the config are relative to Fluent Bit's working directory, `/` under
/// its systemd unit.
fn config_path(root: &Path, v: &str) -> PathBuf {
    let p = Path::new(v);
    if p.is_absolute() {
        at_root(root, p)
    } else {
        at_root(root, &Path::new("/").join(p))
    }
}

fn build(file: &Path, sections: &[Section], root: &Path) -> Result<FluentBitConfig, ShipperError> {
    let mut service = Service::default();
    let mut global_storage = None;
    let mut inherit = false;
    for s in sections.iter().filter(|s| s.kind == "service") {
        for (k, v) in &s.props {
            match k.as_str() {
                "storage.path" => service.storage_path = Some(config_path(root, v)),
                "storage.metrics" => service.storage_metrics = boolean(file, "storage.metrics", v)?,
                "storage.type" => global_storage = Some(storage(file, "storage.type", v)?),
                "storage.inherit" => inherit = boolean(file, "storage.inherit", v)?,
                "http_server" => service.http_server = boolean(file, "HTTP_Server", v)?,
                "http_listen" => service.http_listen = v.clone(),
                "http_port" => {
                    service.http_port = v.parse().map_err(|_| ShipperError::Config {
                        path: file.to_path_buf(),
                        reason: format!("HTTP_Port is {v:?}, not a port number"),
                    })?
                }
                _ => {}
            }
        }
    }
    if inherit {
        service.inherited_storage = global_storage;
    }
    let mut tails = Vec::new();
    let mut emitters = Vec::new();
    let mut buffering_filters = Vec::new();
    for (id, s) in sections.iter().filter(|s| s.kind == "input").enumerate() {
        let name = s.get("name").unwrap_or_default().to_ascii_lowercase();
        if name != "tail" {
            continue;
        }
        let storage = match s.get("storage.type") {
            Some(v) => storage(file, "storage.type", v)?,
            None => service.inherited_storage.unwrap_or(Storage::Memory),
        };
        // Without storage.path there is no filesystem: Fluent Bit keeps the chunks in memory.
        let storage = match service.storage_path {
            Some(_) => storage,
            None => Storage::Memory,
        };
        tails.push(TailInput {
            instance: format!("tail.{id}"),
            alias: s.get("alias").map(str::to_string),
            path: s.get("path").unwrap_or_default().to_string(),
            db: s.get("db").map(|v| config_path(root, v)),
            db_locking: s
                .get("db.locking")
                .map(|v| boolean(file, "DB.locking", v))
                .transpose()?
                .unwrap_or(false),
            storage,
        });
    }
    // Filters that re-emit records feed an `emitter` input each, named (as the HTTP server
    // reports it) `emitter_name`, by default `emitter_for_<filter>`, the filter being
    // `<plugin>.<n>` or its alias (plugins/filter_rewrite_tag/rewrite_tag.c:236-260,
    // plugins/filter_multiline/ml.c:285-310): its chunks hold records made from tailed lines.
    for (id, s) in sections.iter().filter(|s| s.kind == "filter").enumerate() {
        let name = s.get("name").unwrap_or_default().to_ascii_lowercase();
        if name == "rewrite_tag" || name == "multiline" {
            let filter = s
                .get("alias")
                .map(str::to_string)
                .unwrap_or_else(|| format!("{name}.{id}"));
            emitters.push(
                s.get("emitter_name")
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("emitter_for_{filter}")),
            );
        }
        if name == "multiline" {
            buffering_filters.push(format!(
                "multiline filter (match {})",
                s.get("match").unwrap_or("*")
            ));
        }
    }
    Ok(FluentBitConfig {
        file: file.to_path_buf(),
        service,
        tails,
        emitters,
        buffering_filters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classic(text: &str) -> FluentBitConfig {
        parse_text(Path::new("/etc/fluent-bit/fluent-bit.conf"), text).unwrap()
    }

    #[test]
    fn classic_service_and_tail_inputs() {
        let c = classic(
            "[SERVICE]\n    Flush        1\n    HTTP_Server  On\n    HTTP_Listen  127.0.0.1\n    HTTP_PORT    2021\n    storage.path /var/lib/fluent-bit/storage\n\n\
             [INPUT]\n    Name cpu\n\n\
             # a comment\n[INPUT]\n    Name              tail\n    Path              /var/log/app/*.log\n    DB                /var/lib/fluent-bit/app.db\n    storage.type      filesystem\n\n\
             [INPUT]\n    name tail\n    alias nginx\n    path /var/log/nginx/access.log\n",
        );
        assert!(c.service.http_server);
        assert_eq!(c.service.http_listen, "127.0.0.1");
        assert_eq!(c.service.http_port, 2021);
        assert!(c.service.storage_metrics);
        assert_eq!(
            c.service.storage_path.as_deref(),
            Some(Path::new("/var/lib/fluent-bit/storage"))
        );
        assert_eq!(c.tails.len(), 2);
        assert_eq!(c.tails[0].instance, "tail.1");
        assert_eq!(c.tails[0].storage, Storage::Filesystem);
        assert_eq!(
            c.tails[0].db.as_deref(),
            Some(Path::new("/var/lib/fluent-bit/app.db"))
        );
        assert_eq!(c.tails[1].instance, "tail.2");
        assert_eq!(c.tails[1].reported_name(), "nginx");
        assert_eq!(c.tails[1].storage, Storage::Memory);
        assert_eq!(c.tails[1].db, None);
    }

    #[test]
    fn set_variables_and_defaults_expand() {
        let c = classic(
            "@SET dbdir=/var/lib/fb\n[INPUT]\n    Name tail\n    Path /x\n    DB ${dbdir}/t.db\n    Alias ${DRAINHOOK_SURELY_UNSET_VAR:-fallback}\n",
        );
        assert_eq!(
            c.tails[0].db.as_deref(),
            Some(Path::new("/var/lib/fb/t.db"))
        );
        assert_eq!(c.tails[0].alias.as_deref(), Some("fallback"));
    }

    #[test]
    fn classic_errors_name_the_line() {
        let e = parse_text(Path::new("/f.conf"), "[SERVICE]\n    HTTP_Server maybe\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/f.conf") && e.contains("HTTP_Server"), "{e}");
        let e = parse_text(Path::new("/f.conf"), "[INPUT\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = parse_text(Path::new("/f.conf"), "[INPUT]\n    Name\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("no value"), "{e}");
    }

    #[test]
    fn storage_inherit_gives_inputs_the_service_type() {
        let c = classic(
            "[SERVICE]\n    storage.type filesystem\n    storage.inherit on\n    storage.path /s\n[INPUT]\n    Name tail\n    Path /x\n",
        );
        assert_eq!(c.tails[0].storage, Storage::Filesystem);
        let c = classic(
            "[SERVICE]\n    storage.type filesystem\n[INPUT]\n    Name tail\n    Path /x\n",
        );
        assert_eq!(c.tails[0].storage, Storage::Memory);
        let c = classic("[INPUT]\n    Name tail\n    Path /x\n    storage.type filesystem\n");
        assert_eq!(
            c.tails[0].storage,
            Storage::Memory,
            "no storage.path: memory"
        );
    }

    #[test]
    fn yaml_service_and_pipeline() {
        let c = parse_text(
            Path::new("/etc/fluent-bit/fluent-bit.yaml"),
            "env:\n  DBDIR: /var/lib/fb\nservice:\n  http_server: on\n  http_port: 2022\n  storage.path: /var/lib/fb/storage\n  storage.metrics: off\n\
             pipeline:\n  inputs:\n    - name: dummy\n    - name: tail\n      path: /var/log/*.log\n      db: ${DBDIR}/tail.db\n      db.locking: true\n      storage.type: filesystem\n\
             \x20 filters:\n    - name: rewrite_tag\n      match: '*'\n  outputs:\n    - name: stdout\n",
        )
        .unwrap();
        assert!(c.service.http_server);
        assert_eq!(c.service.http_port, 2022);
        assert!(!c.service.storage_metrics);
        assert_eq!(c.tails[0].instance, "tail.1");
        assert!(c.tails[0].db_locking);
        assert_eq!(
            c.tails[0].db.as_deref(),
            Some(Path::new("/var/lib/fb/tail.db"))
        );
        assert_eq!(c.emitters, vec!["emitter_for_rewrite_tag.0".to_string()]);
    }

    #[test]
    fn yaml_booleans_are_fluent_bit_booleans() {
        let c = parse_text(
            Path::new("/f.yaml"),
            "service:\n  http_server: true\n  storage.metrics: false\n",
        )
        .unwrap();
        assert!(c.service.http_server);
        assert!(!c.service.storage_metrics);
    }

    #[test]
    fn includes_are_followed_relative_to_the_config() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("conf.d")).unwrap();
        std::fs::write(
            d.path().join("fluent-bit.conf"),
            "[SERVICE]\n    HTTP_Server on\n@INCLUDE conf.d/*.conf\n@INCLUDE outputs.conf\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("conf.d/a.conf"),
            "[INPUT]\n    Name tail\n    Path /a\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("conf.d/b.conf"),
            "[INPUT]\n    Name tail\n    Path /b\n",
        )
        .unwrap();
        std::fs::write(d.path().join("outputs.conf"), "[OUTPUT]\n    Name null\n").unwrap();
        let c = read(&d.path().join("fluent-bit.conf"), Path::new("/")).unwrap();
        let paths: Vec<&str> = c.tails.iter().map(|t| t.path.as_str()).collect();
        assert_eq!(paths, ["/a", "/b"]);
        assert!(c.service.http_server);

        std::fs::write(d.path().join("bad.conf"), "@INCLUDE missing.conf\n").unwrap();
        let e = read(&d.path().join("bad.conf"), Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.conf"), "{e}");
    }

    #[test]
    fn yaml_includes_are_followed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("fluent-bit.yaml"),
            "includes:\n  - inputs.yaml\nservice:\n  http_server: on\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("inputs.yaml"),
            "pipeline:\n  inputs:\n    - name: tail\n      path: /c\n",
        )
        .unwrap();
        let c = read(&d.path().join("fluent-bit.yaml"), Path::new("/")).unwrap();
        assert_eq!(c.tails.len(), 1);
        assert_eq!(c.tails[0].path, "/c");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*.conf", "a.conf"));
        assert!(!wildcard("*.conf", "a.yaml"));
        assert!(wildcard("in*-*.conf", "input-1.conf"));
        assert!(!wildcard("a*a", "a"));
    }
}
