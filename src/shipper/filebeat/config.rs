//! What a drain needs from `filebeat.yml`, and nothing else: `path.data` (and `path.home`,
//! which it defaults from), `filebeat.registry.path` and the queue (`queue.disk`,
//! `queue.spool`, `queue.mem`).
//!
//! filebeat's config library accepts a key written nested (`path: {data: /x}`), dotted
//! (`path.data: /x`) or anything in between, so every split of a dotted name is tried.
//! `${path.data}`-style references and `${VAR}` / `${VAR:default}` environment variables in
//! those values are expanded as filebeat does; anything else left unexpanded is an error.

use crate::shipper::ShipperError;
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// The queue filebeat is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueConfig {
    /// `queue.mem` (the default): the registry advances when the output acknowledges.
    Memory,
    /// `queue.disk`: the registry advances when events are written to the queue, which is
    /// at `path` (default `${path.data}/diskqueue`).
    Disk { path: PathBuf },
    /// `queue.spool` (7.x beta, removed in 8.0): a file drainhook cannot read.
    Spool { path: PathBuf },
}

/// The settings a drain needs, with filebeat's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilebeatConfig {
    /// The config file read.
    pub file: PathBuf,
    pub data: PathBuf,
    /// The registry's directory (`filebeat.registry.path`, default `${path.data}/registry`).
    pub registry: PathBuf,
    pub queue: QueueConfig,
    /// `filebeat.config.inputs.path` when external input files are enabled (where an
    /// installer may drop an input).
    pub inputs_glob: Option<String>,
}

/// Paths as filebeat's command line or package set them, before the config file speaks.
#[derive(Debug, Clone, Default)]
pub struct PathFlags {
    pub home: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

/// A package install's data dir (its unit passes `--path.data /var/lib/filebeat`).
pub const PACKAGE_DATA_DIR: &str = "/var/lib/filebeat";

/// Reads `file`. `flags` are what filebeat's command line says (they win over the file, as
/// `-E`/`--path.*` flags do in filebeat).
pub fn read(file: &Path, flags: &PathFlags) -> Result<FilebeatConfig, ShipperError> {
    let text = std::fs::read_to_string(file).map_err(|source| ShipperError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    parse(file, &text, flags)
}

pub fn parse(file: &Path, text: &str, flags: &PathFlags) -> Result<FilebeatConfig, ShipperError> {
    let bad = |reason: String| ShipperError::Config {
        path: file.to_path_buf(),
        reason,
    };
    let docs = YamlLoader::load_from_str(text).map_err(|e| bad(format!("not YAML: {e}")))?;
    let doc = docs.into_iter().next().unwrap_or(Yaml::Null);
    if !matches!(doc, Yaml::Hash(_) | Yaml::Null) {
        return Err(bad("the top level is not a mapping".into()));
    }
    let text_at = |key: &str| -> Result<Option<String>, ShipperError> {
        match lookup(&doc, key) {
            None | Some(Yaml::Null) => Ok(None),
            Some(Yaml::String(s)) => Ok(Some(s.clone())),
            Some(Yaml::Integer(i)) => Ok(Some(i.to_string())),
            Some(other) => Err(bad(format!("{key} is not a string: {other:?}"))),
        }
    };
    let config_dir = flags
        .config
        .clone()
        .or_else(|| file.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let home = match (&flags.home, text_at("path.home")?) {
        (Some(h), _) => h.clone(),
        (None, Some(h)) => PathBuf::from(expand(&h, &[], &bad)?),
        // A package install: the binary's home is /usr/share/filebeat, its data elsewhere.
        (None, None) => PathBuf::from("/usr/share/filebeat"),
    };
    let vars = |data: &Path| {
        vec![
            ("path.home", home.display().to_string()),
            ("path.config", config_dir.display().to_string()),
            ("path.data", data.display().to_string()),
            ("path.logs", home.join("logs").display().to_string()),
        ]
    };
    let data = match (&flags.data, text_at("path.data")?) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => {
            let vars = vars(Path::new(""));
            absolute(&home, expand(&d, &vars[..2], &bad)?)
        }
        (None, None) if flags.home.is_some() => home.join("data"),
        (None, None) => PathBuf::from(PACKAGE_DATA_DIR),
    };
    let vars = vars(&data);
    let path_of = |key: &str, default: &str| -> Result<PathBuf, ShipperError> {
        let v = text_at(key)?.unwrap_or_else(|| default.to_string());
        Ok(absolute(&data, expand(&v, &vars, &bad)?))
    };
    let registry = path_of("filebeat.registry.path", "registry")?;
    let queue = if is_set(&doc, "queue.disk") {
        QueueConfig::Disk {
            path: path_of("queue.disk.path", "diskqueue")?,
        }
    } else if is_set(&doc, "queue.spool") {
        QueueConfig::Spool {
            path: path_of("queue.spool.file.path", "spool.dat")?,
        }
    } else {
        QueueConfig::Memory
    };
    let inputs_enabled = !matches!(
        lookup(&doc, "filebeat.config.inputs.enabled"),
        Some(Yaml::Boolean(false))
    );
    let inputs_glob = match text_at("filebeat.config.inputs.path")? {
        Some(p) if inputs_enabled => Some(
            absolute(&config_dir, expand(&p, &vars, &bad)?)
                .display()
                .to_string(),
        ),
        _ => None,
    };
    Ok(FilebeatConfig {
        file: file.to_path_buf(),
        data,
        registry,
        queue,
        inputs_glob,
    })
}

/// A key that is present, itself or through a key below it (`queue.disk: ~`,
/// `queue.disk: {}` and `queue.disk.path: /q` all select the disk queue).
fn is_set(doc: &Yaml, key: &str) -> bool {
    let Yaml::Hash(map) = doc else {
        return false;
    };
    map.iter().any(|(k, v)| {
        let Yaml::String(k) = k else { return false };
        if k == key || k.strip_prefix(key).is_some_and(|r| r.starts_with('.')) {
            return true;
        }
        key.strip_prefix(k.as_str())
            .and_then(|r| r.strip_prefix('.'))
            .is_some_and(|rest| is_set(v, rest))
    })
}

/// The value at a dotted key, trying every way the key may be split between nesting and
/// dots (`a.b.c`, `a: {b.c}`, `a.b: {c}`, `a: {b: {c}}`).
pub fn lookup<'a>(doc: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    let Yaml::Hash(map) = doc else {
        return None;
    };
    let parts: Vec<&str> = key.split('.').collect();
    for n in (1..=parts.len()).rev() {
        let head = parts[..n].join(".");
        if let Some(v) = map.get(&Yaml::String(head)) {
            if n == parts.len() {
                return Some(v);
            }
            if let Some(found) = lookup(v, &parts[n..].join(".")) {
                return Some(found);
            }
        }
    }
    None
}

fn absolute(base: &Path, p: String) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

/// Expands `${name}` from `vars`, then from the environment (`${VAR:default}` too).
fn expand(
    v: &str,
    vars: &[(&str, String)],
    bad: &dyn Fn(String) -> ShipperError,
) -> Result<String, ShipperError> {
    let mut out = String::new();
    let mut rest = v;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(bad(format!("unterminated ${{ in {v:?}")));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(':') {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let value = vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, val)| val.clone())
            .or_else(|| std::env::var(name).ok())
            .or(default.map(String::from));
        match value {
            Some(val) => out.push_str(&val),
            None => {
                return Err(bad(format!(
                    "cannot resolve ${{{name}}} in {v:?} (not a path setting nor a variable of this environment)"
                )))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> FilebeatConfig {
        parse(
            Path::new("/etc/filebeat/filebeat.yml"),
            text,
            &PathFlags::default(),
        )
        .unwrap()
    }

    #[test]
    fn defaults_are_a_package_install_with_the_memory_queue() {
        let c = cfg("filebeat.inputs:\n- type: filestream\n  paths: [/var/log/*.log]\n");
        assert_eq!(c.data, PathBuf::from("/var/lib/filebeat"));
        assert_eq!(c.registry, PathBuf::from("/var/lib/filebeat/registry"));
        assert_eq!(c.queue, QueueConfig::Memory);
        assert_eq!(c.inputs_glob, None);
    }

    #[test]
    fn nested_and_dotted_keys_mean_the_same() {
        for text in [
            "queue.disk:\n  path: /q\n  max_size: 10GB\npath.data: /d\n",
            "queue:\n  disk:\n    path: /q\npath:\n  data: /d\n",
            "queue:\n  disk.path: /q\npath: {data: /d}\n",
        ] {
            let c = cfg(text);
            assert_eq!(
                c.queue,
                QueueConfig::Disk {
                    path: PathBuf::from("/q")
                },
                "{text}"
            );
            assert_eq!(c.data, PathBuf::from("/d"), "{text}");
        }
    }

    #[test]
    fn the_disk_queue_defaults_beside_the_registry_and_paths_expand() {
        let c = cfg("queue.disk: {max_size: 1GB}\npath.data: /srv/fb\nfilebeat.registry.path: ${path.data}/reg\n");
        assert_eq!(
            c.queue,
            QueueConfig::Disk {
                path: PathBuf::from("/srv/fb/diskqueue")
            }
        );
        assert_eq!(c.registry, PathBuf::from("/srv/fb/reg"));
        let c = cfg("queue.disk: ~\n");
        assert_eq!(
            c.queue,
            QueueConfig::Disk {
                path: PathBuf::from("/var/lib/filebeat/diskqueue")
            }
        );
        let c = cfg("queue.spool: {file: {size: 512MiB}}\n");
        assert_eq!(
            c.queue,
            QueueConfig::Spool {
                path: PathBuf::from("/var/lib/filebeat/spool.dat")
            }
        );
    }

    #[test]
    fn external_inputs_are_found_where_enabled() {
        let c = cfg("filebeat.config.inputs:\n  enabled: true\n  path: inputs.d/*.yml\n");
        assert_eq!(
            c.inputs_glob.as_deref(),
            Some("/etc/filebeat/inputs.d/*.yml")
        );
        let c = cfg("filebeat.config.inputs:\n  enabled: false\n  path: inputs.d/*.yml\n");
        assert_eq!(c.inputs_glob, None);
    }

    #[test]
    fn bad_files_are_errors_that_name_the_file() {
        let f = Path::new("/etc/filebeat/filebeat.yml");
        for text in [
            "path.data: [1, 2]\n",
            "queue.disk.path: ${NO_SUCH_VARIABLE_HERE}/q\n",
            "- a list\n",
            "a: [unclosed\n",
        ] {
            let e = parse(f, text, &PathFlags::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains("/etc/filebeat/filebeat.yml"), "{text}: {e}");
        }
    }
}
