//! What the CloudWatch agent is configured to tail, and where it keeps its state and log.
//!
//! Which file the running agent reads (aws/amazon-cloudwatch-agent, snapshot ab55b8da):
//! - The agent runs from the TOML `etc/amazon-cloudwatch-agent.toml`
//!   (`cmd/start-amazon-cloudwatch-agent/path.go:57-70`: `-config paths.TomlConfigPath`).
//! - That TOML is translated from the JSON at every start
//!   (`start-amazon-cloudwatch-agent.go:22-28`, `--multi-config remove`: the old
//!   `etc/amazon-cloudwatch-agent.json` plus every file of `etc/amazon-cloudwatch-agent.d/`
//!   that is not `.tmp` or `.yaml`, `translator/cmdutil/translatorutil.go:113-199`), and by
//!   every `amazon-cloudwatch-agent-ctl -a fetch-config` (which leaves its JSON in `.d/` as
//!   `file_<name>`, `ssm_<name>` or `default`, `tool/downloader/downloader.go:104-147`).
//!
//! So the TOML is read when it exists: it is what the agent runs with, with
//! `file_state_folder`, `max_persist_state` and placeholders already resolved. Without it (an
//! agent configured but not started yet) the JSON files are read as the translator merges
//! them: `collect_list` entries of every file appended (`mergeJsonUtil/util.go:61-92`), the
//! state folder the translator would set (`translate/logs/util/file_state_folder.go:12`),
//! `max_persist_state` = 2 × `logs.concurrency` when that is above 1
//! (`files/ruleMaxPersistState.go:15-21`, `logs/ruleConcurrency.go:15-22`), and
//! `from_beginning` true unless said (`collect_list/ruleFromBeginning.go:14`).
//!
//! Paths of the agent's own install (state folder, its log) are moved under
//! `--cloudwatch-agent-dir` when that is not `/opt/aws/amazon-cloudwatch-agent` (a test
//! root, a container's mount); the tailed files' globs are used as they are.

use crate::shipper::{ShipperError, DEFAULT_CLOUDWATCH_AGENT_DIR};
use regex::Regex;
use serde::Deserialize;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const TOML: &str = "etc/amazon-cloudwatch-agent.toml";
pub const JSON: &str = "etc/amazon-cloudwatch-agent.json";
pub const JSON_DIR: &str = "etc/amazon-cloudwatch-agent.d";
/// `translate/logs/util/file_state_folder.go:12`.
pub const STATE_DIR: &str = "/opt/aws/amazon-cloudwatch-agent/logs/state";
/// `translate/agent/ruleLogFile.go:15`.
pub const AGENT_LOG: &str = "/opt/aws/amazon-cloudwatch-agent/logs/amazon-cloudwatch-agent.log";

/// One `collect_list` entry (`[[inputs.logfile.file_config]]`).
#[derive(Debug, Clone)]
pub struct FileConfig {
    /// The glob (gobwas/glob: `*`, `?`, `[...]`, `**`, `{a,b}`).
    pub file_path: String,
    /// Matched against each file's base name.
    pub blacklist: Option<Regex>,
    /// Every match is tailed (otherwise only the most recently modified one).
    pub publish_multi_logs: bool,
    pub group: String,
    pub stream: String,
    pub from_beginning: bool,
    /// A named pipe: nothing on disk to compare with.
    pub pipe: bool,
    pub auto_removal: bool,
}

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Toml(PathBuf),
    Json(Vec<PathBuf>),
}

/// The agent's configuration, as far as a drain needs it.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub source: Source,
    pub state_dir: PathBuf,
    /// The agent's own log; `None` when it logs to its console (`logfile = ""`).
    pub agent_log: Option<PathBuf>,
    pub files: Vec<FileConfig>,
    /// `[[outputs.cloudwatchlogs]] concurrency` (`logs.concurrency`); 0 or 1: one batch of a
    /// log stream at a time.
    pub concurrency: u32,
    /// `max_persist_state`: ranges kept per file (at most 1: one range, `0-max`).
    pub max_persist_state: u32,
}

impl AgentConfig {
    /// `etc/amazon-cloudwatch-agent.toml`, or the JSON files.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Toml(p) => p.display().to_string(),
            Source::Json(v) => v
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Reads the configuration of the agent installed at `dir`; `None` when it has none.
pub fn read(dir: &Path) -> Result<Option<AgentConfig>, ShipperError> {
    let toml = dir.join(TOML);
    match fs::read_to_string(&toml) {
        Ok(text) => return parse_toml(dir, &toml, &text).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ShipperError::Io {
                path: toml,
                source: e,
            })
        }
    }
    let mut jsons = Vec::new();
    let json = dir.join(JSON);
    if json.is_file() {
        jsons.push(json);
    }
    match fs::read_dir(dir.join(JSON_DIR)) {
        Ok(rd) => {
            let mut names: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .filter(|p| {
                    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
                    ext != "tmp" && ext != "yaml"
                })
                .collect();
            names.sort();
            jsons.extend(names);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ShipperError::Io {
                path: dir.join(JSON_DIR),
                source: e,
            })
        }
    }
    if jsons.is_empty() {
        return Ok(None);
    }
    let mut texts = Vec::new();
    for p in &jsons {
        let text = fs::read_to_string(p).map_err(|e| ShipperError::Io {
            path: p.clone(),
            source: e,
        })?;
        texts.push((p.clone(), text));
    }
    parse_json(dir, &texts).map(Some)
}

/// A path of the agent's own install, moved under `dir` when the install is elsewhere.
fn rebase(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    match p.strip_prefix(DEFAULT_CLOUDWATCH_AGENT_DIR) {
        Ok(rel) if dir != Path::new(DEFAULT_CLOUDWATCH_AGENT_DIR) => dir.join(rel),
        _ => p.to_path_buf(),
    }
}

#[derive(Deserialize, Default)]
struct TomlConfig {
    #[serde(default)]
    agent: TomlAgent,
    #[serde(default)]
    inputs: TomlInputs,
    #[serde(default)]
    outputs: TomlOutputs,
}

#[derive(Deserialize, Default)]
struct TomlAgent {
    logfile: Option<String>,
}

#[derive(Deserialize, Default)]
struct TomlInputs {
    #[serde(default)]
    logfile: Vec<TomlLogfile>,
}

#[derive(Deserialize, Default)]
struct TomlLogfile {
    file_state_folder: Option<String>,
    #[serde(default)]
    max_persist_state: i64,
    #[serde(default)]
    file_config: Vec<RawFile>,
}

#[derive(Deserialize, Default)]
struct TomlOutputs {
    #[serde(default)]
    cloudwatchlogs: Vec<TomlCloudwatchLogs>,
}

#[derive(Deserialize, Default)]
struct TomlCloudwatchLogs {
    #[serde(default)]
    concurrency: i64,
}

/// A file entry, in the TOML (`plugins/inputs/logfile/fileconfig.go:26-80`) and in the JSON
/// (`collect_list`) alike: the keys are the same.
#[derive(Deserialize, Default)]
struct RawFile {
    file_path: String,
    #[serde(default)]
    blacklist: String,
    #[serde(default)]
    publish_multi_logs: bool,
    #[serde(default)]
    log_group_name: String,
    #[serde(default)]
    log_stream_name: String,
    from_beginning: Option<bool>,
    #[serde(default)]
    pipe: bool,
    #[serde(default)]
    auto_removal: bool,
}

impl RawFile {
    fn into_config(
        self,
        file: &Path,
        from_beginning_default: bool,
    ) -> Result<FileConfig, ShipperError> {
        if self.file_path.is_empty() {
            return Err(ShipperError::Config {
                path: file.to_path_buf(),
                reason: "a file entry has an empty file_path".into(),
            });
        }
        let blacklist = match self.blacklist.as_str() {
            "" => None,
            re => Some(Regex::new(re).map_err(|e| ShipperError::Config {
                path: file.to_path_buf(),
                reason: format!(
                    "blacklist {re:?} of {} is not a regexp: {e}",
                    self.file_path
                ),
            })?),
        };
        Ok(FileConfig {
            file_path: self.file_path,
            blacklist,
            publish_multi_logs: self.publish_multi_logs,
            group: self.log_group_name,
            stream: self.log_stream_name,
            from_beginning: self.from_beginning.unwrap_or(from_beginning_default),
            pipe: self.pipe,
            auto_removal: self.auto_removal,
        })
    }
}

/// The translated TOML the running agent reads.
pub fn parse_toml(dir: &Path, path: &Path, text: &str) -> Result<AgentConfig, ShipperError> {
    let c: TomlConfig = toml::from_str(text).map_err(|e| ShipperError::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut files = Vec::new();
    let mut state_dir = None;
    let mut max_persist_state = 0;
    for l in c.inputs.logfile {
        if state_dir.is_none() {
            state_dir = l.file_state_folder.filter(|s| !s.is_empty());
        }
        max_persist_state = max_persist_state.max(l.max_persist_state);
        for f in l.file_config {
            // The TOML's Go struct defaults to false; the translator always writes it.
            files.push(f.into_config(path, false)?);
        }
    }
    let logfile = c.agent.logfile.unwrap_or_else(|| AGENT_LOG.to_string());
    Ok(AgentConfig {
        source: Source::Toml(path.to_path_buf()),
        state_dir: rebase(dir, state_dir.as_deref().unwrap_or(STATE_DIR)),
        agent_log: (!logfile.is_empty()).then(|| rebase(dir, &logfile)),
        files,
        concurrency: c
            .outputs
            .cloudwatchlogs
            .iter()
            .map(|o| o.concurrency)
            .max()
            .unwrap_or(0)
            .clamp(0, i64::from(u32::MAX)) as u32,
        max_persist_state: max_persist_state.clamp(0, i64::from(u32::MAX)) as u32,
    })
}

#[derive(Deserialize, Default)]
struct JsonConfig {
    #[serde(default)]
    agent: JsonAgent,
    #[serde(default)]
    logs: JsonLogs,
}

#[derive(Deserialize, Default)]
struct JsonAgent {
    logfile: Option<String>,
}

#[derive(Deserialize, Default)]
struct JsonLogs {
    #[serde(default)]
    logs_collected: JsonCollected,
    concurrency: Option<f64>,
}

#[derive(Deserialize, Default)]
struct JsonCollected {
    #[serde(default)]
    files: JsonFiles,
}

#[derive(Deserialize, Default)]
struct JsonFiles {
    #[serde(default)]
    collect_list: Vec<RawFile>,
}

/// The JSON files (the old single file and `.d/`), merged as the translator merges them.
pub fn parse_json(dir: &Path, texts: &[(PathBuf, String)]) -> Result<AgentConfig, ShipperError> {
    let mut files = Vec::new();
    let mut logfile = None;
    let mut concurrency = 0u32;
    for (path, text) in texts {
        let c: JsonConfig = serde_json::from_str(text).map_err(|e| ShipperError::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if logfile.is_none() {
            logfile = c.agent.logfile;
        }
        if let Some(n) = c.logs.concurrency.filter(|n| *n > 1.0) {
            concurrency = concurrency.max(n.min(f64::from(u32::MAX)) as u32);
        }
        for f in c.logs.logs_collected.files.collect_list {
            let f = f.into_config(path, true)?;
            let dup = files.iter().any(|g: &FileConfig| {
                g.file_path == f.file_path && g.group == f.group && g.stream == f.stream
            });
            if !dup {
                files.push(f);
            }
        }
    }
    let logfile = logfile.unwrap_or_else(|| AGENT_LOG.to_string());
    Ok(AgentConfig {
        source: Source::Json(texts.iter().map(|(p, _)| p.clone()).collect()),
        state_dir: rebase(dir, STATE_DIR),
        agent_log: (!logfile.is_empty()).then(|| rebase(dir, &logfile)),
        files,
        concurrency,
        max_persist_state: if concurrency > 1 { 2 * concurrency } else { 0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_translated_toml() {
        // The shape of translator/tocwconfig/totomlconfig/testdata/agentToml.conf.
        let text = r#"
[agent]
  logfile = "/opt/aws/amazon-cloudwatch-agent/logs/amazon-cloudwatch-agent.log"
[inputs]
  [[inputs.logfile]]
    destination = "cloudwatchlogs"
    file_state_folder = "/opt/aws/amazon-cloudwatch-agent/logs/state"
    max_persist_state = 8
    [[inputs.logfile.file_config]]
      file_path = "/var/log/app/*.log"
      from_beginning = true
      log_group_name = "app"
      log_stream_name = "i-1"
      blacklist = "^debug"
      pipe = false
      retention_in_days = 5
[outputs]
  [[outputs.cloudwatchlogs]]
    concurrency = 4
    force_flush_interval = "5s"
"#;
        let c = parse_toml(Path::new("/x"), Path::new("/x/etc/a.toml"), text).unwrap();
        assert_eq!(c.state_dir, Path::new("/x/logs/state"));
        assert_eq!(
            c.agent_log.as_deref(),
            Some(Path::new("/x/logs/amazon-cloudwatch-agent.log"))
        );
        assert_eq!((c.concurrency, c.max_persist_state), (4, 8));
        assert_eq!(c.files.len(), 1);
        assert!(c.files[0].from_beginning);
        assert!(c.files[0].blacklist.as_ref().unwrap().is_match("debug.log"));
        let at_home = parse_toml(
            Path::new(DEFAULT_CLOUDWATCH_AGENT_DIR),
            Path::new("/a.toml"),
            text,
        )
        .unwrap();
        assert_eq!(at_home.state_dir, Path::new(STATE_DIR));
    }

    #[test]
    fn merges_the_json_files_as_the_translator_does() {
        let a = r#"{"agent":{"logfile":""},"logs":{"concurrency":3,"logs_collected":{"files":{"collect_list":[{"file_path":"/var/log/a.log","log_group_name":"a"}]}}}}"#;
        let b = r#"{"logs":{"logs_collected":{"files":{"collect_list":[{"file_path":"/var/log/a.log","log_group_name":"a"},{"file_path":"/var/log/b.log","from_beginning":false}]}}}}"#;
        let c = parse_json(
            Path::new(DEFAULT_CLOUDWATCH_AGENT_DIR),
            &[("a.json".into(), a.into()), ("file_b".into(), b.into())],
        )
        .unwrap();
        assert_eq!(c.files.len(), 2, "the same entry twice is kept once");
        assert!(c.files[0].from_beginning, "the translator's default");
        assert!(!c.files[1].from_beginning);
        assert_eq!((c.concurrency, c.max_persist_state), (3, 6));
        assert_eq!(
            c.agent_log, None,
            "logfile \"\": the agent logs to its console"
        );
        assert_eq!(c.state_dir, Path::new(STATE_DIR));
    }

    #[test]
    fn a_bad_config_names_its_file() {
        let e = parse_toml(Path::new("/x"), Path::new("/x/etc/a.toml"), "[inputs\n").unwrap_err();
        assert!(e.to_string().contains("/x/etc/a.toml"), "{e}");
        let e = parse_json(Path::new("/x"), &[("/x/etc/b.json".into(), r#"{"logs":{"logs_collected":{"files":{"collect_list":[{"file_path":"/a","blacklist":"("}]}}}}"#.into())]).unwrap_err();
        assert!(
            e.to_string().contains("/x/etc/b.json") && e.to_string().contains("blacklist"),
            "{e}"
        );
    }
}
