//! The configuration: `/etc/drainhook/drainhook.toml`, `DRAINHOOK_*` variables and flags, in
//! rising precedence (flags win). Unknown keys in the file are an error. The agent reads every
//! key; `drain`, `backlog` and `check` read the same file for the shipper keys (and `drain`
//! for `settle`, `drained_marker` and `report_file`), so the shutdown fallback drains what the
//! agent drains.

use crate::duration;
use crate::shipper::{Kind, Spec};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG: &str = "/etc/drainhook/drainhook.toml";

/// What to complete the lifecycle action with when the drain times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    /// CONTINUE: terminate now (the default; the instance goes either way).
    Continue,
    /// ABANDON: skip the remaining hooks; with `TerminateHookAbandon = retain` the
    /// instance stays in `Terminating:Retained` for a human.
    Abandon,
}

impl OnTimeout {
    pub const fn result(self) -> &'static str {
        match self {
            OnTimeout::Continue => "CONTINUE",
            OnTimeout::Abandon => "ABANDON",
        }
    }
}

/// `drainhook agent` flags. Each may also be set in the config file (same name, with `_`)
/// or in a `DRAINHOOK_*` variable.
#[derive(Debug, Args, Default)]
pub struct AgentArgs {
    /// Config file (TOML). A missing default file is fine; a missing named file is an error
    /// [default: /etc/drainhook/drainhook.toml].
    #[arg(long, env = "DRAINHOOK_CONFIG")]
    pub config: Option<PathBuf>,

    /// SQS queue the lifecycle hook notifies: a second trigger beside IMDS [default: none,
    /// IMDS alone, no SQS call].
    #[arg(long, env = "DRAINHOOK_QUEUE_URL")]
    pub queue_url: Option<String>,

    /// Watch IMDS autoscaling/target-lifecycle-state (once a second) for this instance's
    /// termination [default: true]. `false` leaves the queue as the only trigger.
    #[arg(long, env = "DRAINHOOK_IMDS_TRIGGER", value_name = "BOOL")]
    pub imds_trigger: Option<bool>,

    /// The termination hook to hold for, when the group has several [default: the group's
    /// only autoscaling:EC2_INSTANCE_TERMINATING hook]. Notices of any other hook are left
    /// alone: not held, not completed, not deleted.
    #[arg(long, env = "DRAINHOOK_HOOK_NAME")]
    pub hook_name: Option<String>,

    /// Queue that malformed or unknown messages are moved to (send, then delete). Without it
    /// they stay in the queue until its retention ends.
    #[arg(long, env = "DRAINHOOK_DEAD_LETTER_QUEUE_URL")]
    pub dead_letter_queue_url: Option<String>,

    #[command(flatten)]
    pub shippers: ShipperArgs,

    /// This instance's id [default: from IMDSv2].
    #[arg(long, env = "DRAINHOOK_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// AWS region [default: the SDK's chain: AWS_REGION, profile, IMDS].
    #[arg(long, env = "DRAINHOOK_REGION")]
    pub region: Option<String>,

    /// Never hold an instance longer than this, counted from the action's start where it is
    /// known (the notice's SentTimestamp, or the start an earlier agent recorded in
    /// /run/drainhook), so a restart does not reset it [default: 1h].
    #[arg(long, env = "DRAINHOOK_MAX_HOLD", value_parser = duration::arg)]
    pub max_hold: Option<Duration>,

    /// Give up draining after this long [default: what is left of --max-hold].
    #[arg(long, env = "DRAINHOOK_DRAIN_TIMEOUT", value_parser = duration::arg)]
    pub drain_timeout: Option<Duration>,

    /// How long "everything shipped" must hold [default: 11s].
    #[arg(long, env = "DRAINHOOK_SETTLE", value_parser = duration::arg)]
    pub settle: Option<Duration>,

    /// Heartbeat period [default: the hook's HeartbeatTimeout / 2, read anew at each hold;
    /// 15s until that read succeeds].
    #[arg(long, env = "DRAINHOOK_HEARTBEAT_INTERVAL", value_parser = duration::arg)]
    pub heartbeat_interval: Option<Duration>,

    /// Lifecycle result when the drain times out [default: continue].
    #[arg(long, env = "DRAINHOOK_ON_TIMEOUT", value_enum)]
    pub on_timeout: Option<OnTimeout>,

    /// Command run (by `sh -c`) before draining, e.g. to stop the application so the logs
    /// stop growing. Repeatable; run in order.
    #[arg(long = "pre-drain", value_name = "CMD")]
    pub pre_drain: Vec<String>,

    /// Bound on each pre-drain command [default: 2m].
    #[arg(long, env = "DRAINHOOK_PRE_DRAIN_TIMEOUT", value_parser = duration::arg)]
    pub pre_drain_timeout: Option<Duration>,

    /// How long a received message stays invisible per extension, so that a crashed
    /// agent's message comes back soon [default: 30s].
    #[arg(long, env = "DRAINHOOK_VISIBILITY_TIMEOUT", value_parser = duration::arg)]
    pub visibility_timeout: Option<Duration>,

    /// Pause after a batch that held only other instances' messages [default: 2s].
    #[arg(long, env = "DRAINHOOK_IDLE_PAUSE", value_parser = duration::arg)]
    pub idle_pause: Option<Duration>,

    /// Marker left after a completed drain, so the shutdown fallback returns at once
    /// [default: /run/drainhook/drained].
    #[arg(long, env = "DRAINHOOK_DRAINED_MARKER")]
    pub drained_marker: Option<PathBuf>,

    /// Where the drain report (one JSON line per hold) is appended; the log shipper ships
    /// it like any log [default: /var/log/drainhook/drain.log].
    #[arg(long, env = "DRAINHOOK_REPORT_FILE")]
    pub report_file: Option<PathBuf>,
}

/// Which log shippers to drain, and where they are: the same flags for `agent`, `drain`,
/// `backlog` and `check`. Without any, every shipper found on the instance is drained.
#[derive(Debug, Args, Default, Clone)]
pub struct ShipperArgs {
    /// Drain only these shippers (repeatable or comma-separated) [default: every one found].
    #[arg(
        long = "shipper",
        value_enum,
        value_delimiter = ',',
        env = "DRAINHOOK_SHIPPER"
    )]
    pub shipper: Vec<Kind>,

    /// A filebeat registry: filebeat's data dir, its `registry` file or dir, or
    /// `registry/filebeat`. Repeatable. Given, these replace filebeat's discovery (its config,
    /// its running process, Elastic Agent's components) [default: discovered].
    #[arg(long, env = "DRAINHOOK_REGISTRY", value_delimiter = ',')]
    pub registry: Vec<PathBuf>,

    /// filebeat's config, read for path.data, filebeat.registry.path and queue.*; it is fine
    /// if it does not exist [default: /etc/filebeat/filebeat.yml].
    #[arg(long, env = "DRAINHOOK_FILEBEAT_CONFIG")]
    pub filebeat_config: Option<PathBuf>,

    /// Elastic Agent's install directory, whose running agent's components are drained
    /// [default: /opt/Elastic/Agent].
    #[arg(long, env = "DRAINHOOK_ELASTIC_AGENT_DIR")]
    pub elastic_agent_dir: Option<PathBuf>,

    /// Name of the filebeat process, whose open files are searched for files rotated away
    /// [default: filebeat].
    #[arg(long, env = "DRAINHOOK_FILEBEAT_PROCESS")]
    pub filebeat_process: Option<String>,

    /// The CloudWatch agent's install directory (its config under etc/, its state under
    /// logs/state) [default: /opt/aws/amazon-cloudwatch-agent].
    #[arg(long, env = "DRAINHOOK_CLOUDWATCH_AGENT_DIR")]
    pub cloudwatch_agent_dir: Option<PathBuf>,

    /// Fluent Bit's config file, classic or YAML [default: /etc/fluent-bit/fluent-bit.conf,
    /// else fluent-bit.yaml beside it].
    #[arg(long, env = "DRAINHOOK_FLUENT_BIT_CONFIG")]
    pub fluent_bit_config: Option<PathBuf>,

    /// Vector's config file, YAML or TOML [default: /etc/vector/vector.yaml, else
    /// vector.toml beside it].
    #[arg(long, env = "DRAINHOOK_VECTOR_CONFIG")]
    pub vector_config: Option<PathBuf>,

    /// Prefixed to every default location (tests only).
    #[arg(long, env = "DRAINHOOK_TEST_ROOT", hide = true)]
    pub test_root: Option<PathBuf>,
}

impl ShipperArgs {
    /// The flags over the config file's keys over the defaults.
    pub fn spec(self, file: &FileConfig) -> Spec {
        let d = Spec::default();
        Spec {
            only: if self.shipper.is_empty() {
                file.shipper.clone().unwrap_or_default()
            } else {
                self.shipper
            },
            registries: if self.registry.is_empty() {
                file.registry
                    .clone()
                    .map(PathList::into_vec)
                    .unwrap_or_default()
            } else {
                self.registry
            },
            filebeat_config: self
                .filebeat_config
                .or_else(|| file.filebeat_config.clone())
                .unwrap_or(d.filebeat_config),
            elastic_agent_dir: self
                .elastic_agent_dir
                .or_else(|| file.elastic_agent_dir.clone())
                .unwrap_or(d.elastic_agent_dir),
            filebeat_process: self
                .filebeat_process
                .or_else(|| file.filebeat_process.clone())
                .unwrap_or(d.filebeat_process),
            cloudwatch_agent_dir: self
                .cloudwatch_agent_dir
                .or_else(|| file.cloudwatch_agent_dir.clone())
                .unwrap_or(d.cloudwatch_agent_dir),
            fluent_bit_config: self
                .fluent_bit_config
                .or_else(|| file.fluent_bit_config.clone())
                .unwrap_or(d.fluent_bit_config),
            vector_config: self
                .vector_config
                .or_else(|| file.vector_config.clone())
                .unwrap_or(d.vector_config),
            root: self.test_root.unwrap_or(d.root),
            proc_root: d.proc_root,
        }
    }
}

/// `--config` of `drain`, `backlog` and `check`.
#[derive(Debug, Args, Default, Clone)]
pub struct ConfigFileArg {
    /// The agent's config file (TOML), whose shipper keys apply where no flag or variable
    /// sets them (for `drain` also settle, drained_marker and report_file); refused, like the
    /// agent refuses it, when anyone but root can change it. A missing default file is fine;
    /// a missing named file is an error [default: /etc/drainhook/drainhook.toml].
    #[arg(long, env = "DRAINHOOK_CONFIG")]
    pub config: Option<PathBuf>,
}

impl ConfigFileArg {
    /// The file's keys (all unset when the default file does not exist).
    pub fn read(&self) -> Result<FileConfig, ConfigError> {
        read_file(self.config.as_deref()).map(|(_, f)| f)
    }
}

/// Reads the config file `explicit`, or the default one, which may be missing (then every key
/// is unset). Before it is read, the file is refused when anyone but root can change it
/// ([`crate::trust`]). Returns the path read and its keys.
pub fn read_file(explicit: Option<&Path>) -> Result<(PathBuf, FileConfig), ConfigError> {
    crate::trust::check_config(explicit).map_err(|e| ConfigError(e.to_string()))?;
    let path = explicit.map_or_else(|| PathBuf::from(DEFAULT_CONFIG), Path::to_path_buf);
    let file = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            FileConfig::default()
        }
        Err(e) => {
            return Err(ConfigError(format!(
                "cannot read config file {}: {e}",
                path.display()
            )))
        }
    };
    Ok((path, file))
}

/// One path or a list of them, in the config file.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum PathList {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl PathList {
    pub fn into_vec(self) -> Vec<PathBuf> {
        match self {
            PathList::One(p) => vec![p],
            PathList::Many(v) => v,
        }
    }
}

/// The config file. Every key is optional; unknown keys are rejected.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// SQS queue URL the lifecycle hook notifies (optional: IMDS alone without it).
    pub queue_url: Option<String>,
    /// Watch IMDS for this instance's termination (default true).
    pub imds_trigger: Option<bool>,
    /// The termination hook to hold for, when the group has several.
    pub hook_name: Option<String>,
    /// Queue for malformed or unknown messages.
    pub dead_letter_queue_url: Option<String>,
    /// The shippers to drain (default: every one found).
    pub shipper: Option<Vec<Kind>>,
    /// filebeat registries (data dirs or registry paths): one, or a list.
    pub registry: Option<PathList>,
    /// filebeat's config file.
    pub filebeat_config: Option<PathBuf>,
    /// Elastic Agent's install directory.
    pub elastic_agent_dir: Option<PathBuf>,
    /// The CloudWatch agent's install directory.
    pub cloudwatch_agent_dir: Option<PathBuf>,
    /// Fluent Bit's config file.
    pub fluent_bit_config: Option<PathBuf>,
    /// Vector's config file.
    pub vector_config: Option<PathBuf>,
    /// This instance's id (normally from IMDS).
    pub instance_id: Option<String>,
    /// AWS region (normally from the SDK's chain).
    pub region: Option<String>,
    /// Longest hold, e.g. "1h".
    pub max_hold: Option<String>,
    /// Drain timeout, e.g. "50m".
    pub drain_timeout: Option<String>,
    /// Settle period, e.g. "11s".
    pub settle: Option<String>,
    /// Heartbeat period, e.g. "5m".
    pub heartbeat_interval: Option<String>,
    /// "continue" or "abandon".
    pub on_timeout: Option<OnTimeout>,
    /// Commands run before the drain.
    pub pre_drain: Option<Vec<String>>,
    /// Bound on each pre-drain command.
    pub pre_drain_timeout: Option<String>,
    /// Visibility extension, e.g. "30s".
    pub visibility_timeout: Option<String>,
    /// Pause after a batch of foreign messages.
    pub idle_pause: Option<String>,
    /// Name of the filebeat process.
    pub filebeat_process: Option<String>,
    /// Marker left after a completed drain.
    pub drained_marker: Option<PathBuf>,
    /// Where the drain report is appended.
    pub report_file: Option<PathBuf>,
}

impl FileConfig {
    /// `settle`: `given` (a flag or variable), else the file's, else 11 s.
    pub fn settle_or(&self, given: Option<Duration>) -> Result<Duration, ConfigError> {
        Ok(match given {
            Some(d) => d,
            None => file_duration("settle", self.settle.clone())?
                .unwrap_or(crate::drain::DEFAULT_SETTLE),
        })
    }

    /// `drained_marker`: `given`, else the file's, else `/run/drainhook/drained`.
    pub fn drained_marker_or(&self, given: Option<PathBuf>) -> PathBuf {
        given
            .or_else(|| self.drained_marker.clone())
            .unwrap_or_else(|| PathBuf::from(crate::drain::DEFAULT_DRAINED_MARKER))
    }

    /// `report_file`: `given`, else the file's, else `/var/log/drainhook/drain.log`.
    pub fn report_file_or(&self, given: Option<PathBuf>) -> PathBuf {
        given
            .or_else(|| self.report_file.clone())
            .unwrap_or_else(|| PathBuf::from(crate::report::DEFAULT_REPORT_FILE))
    }
}

/// The resolved configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub queue_url: Option<String>,
    pub imds_trigger: bool,
    pub hook_name: Option<String>,
    pub dead_letter_queue_url: Option<String>,
    /// The shippers to drain and where they are.
    pub shippers: Spec,
    pub instance_id: Option<String>,
    pub region: Option<String>,
    pub max_hold: Duration,
    pub drain_timeout: Option<Duration>,
    pub settle: Duration,
    pub heartbeat_interval: Option<Duration>,
    pub on_timeout: OnTimeout,
    pub pre_drain: Vec<String>,
    pub pre_drain_timeout: Duration,
    pub visibility_timeout: Duration,
    pub idle_pause: Duration,
    pub drained_marker: PathBuf,
    pub report_file: PathBuf,
}

#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn file_duration(key: &str, v: Option<String>) -> Result<Option<Duration>, ConfigError> {
    v.map(|s| duration::parse(&s).map_err(|e| ConfigError(format!("config key {key}: {e}"))))
        .transpose()
}

impl AgentArgs {
    /// Merges flags/env over the config file over the defaults.
    pub fn resolve(mut self) -> Result<AgentConfig, ConfigError> {
        let (path, file) = read_file(self.config.as_deref())?;
        let settle = file.settle_or(self.settle)?;
        let drained_marker = file.drained_marker_or(self.drained_marker.take());
        let report_file = file.report_file_or(self.report_file.take());
        let shippers = std::mem::take(&mut self.shippers).spec(&file);
        let queue_url = self.queue_url.or(file.queue_url).filter(|q| !q.is_empty());
        let imds_trigger = self.imds_trigger.or(file.imds_trigger).unwrap_or(true);
        if queue_url.is_none() && !imds_trigger {
            return Err(ConfigError(format!(
                "no trigger: imds_trigger is false and no queue is set (--queue-url, DRAINHOOK_QUEUE_URL or queue_url in {}); the agent could never learn of a termination",
                path.display()
            )));
        }
        let max_hold = self
            .max_hold
            .or(file_duration("max_hold", file.max_hold)?)
            .unwrap_or(Duration::from_secs(3600));
        let visibility_timeout = self
            .visibility_timeout
            .or(file_duration(
                "visibility_timeout",
                file.visibility_timeout,
            )?)
            .unwrap_or(Duration::from_secs(30));
        if !(Duration::from_secs(2)..=Duration::from_secs(12 * 3600)).contains(&visibility_timeout)
        {
            return Err(ConfigError(
                "visibility_timeout must be between 2s and 12h".into(),
            ));
        }
        Ok(AgentConfig {
            queue_url,
            imds_trigger,
            hook_name: self.hook_name.or(file.hook_name),
            dead_letter_queue_url: self.dead_letter_queue_url.or(file.dead_letter_queue_url),
            shippers,
            instance_id: self.instance_id.or(file.instance_id),
            region: self.region.or(file.region),
            max_hold,
            drain_timeout: self
                .drain_timeout
                .or(file_duration("drain_timeout", file.drain_timeout)?),
            settle,
            heartbeat_interval: self.heartbeat_interval.or(file_duration(
                "heartbeat_interval",
                file.heartbeat_interval,
            )?),
            on_timeout: self
                .on_timeout
                .or(file.on_timeout)
                .unwrap_or(OnTimeout::Continue),
            pre_drain: if self.pre_drain.is_empty() {
                file.pre_drain.unwrap_or_default()
            } else {
                self.pre_drain
            },
            pre_drain_timeout: self
                .pre_drain_timeout
                .or(file_duration("pre_drain_timeout", file.pre_drain_timeout)?)
                .unwrap_or(Duration::from_secs(120)),
            visibility_timeout,
            idle_pause: self
                .idle_pause
                .or(file_duration("idle_pause", file.idle_pause)?)
                .unwrap_or(Duration::from_secs(2)),
            drained_marker,
            report_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(text: &str, args: AgentArgs) -> Result<AgentConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("drainhook.toml");
        std::fs::write(&p, text).unwrap();
        AgentArgs {
            config: Some(p),
            ..args
        }
        .resolve()
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let cfg = with_file(
            "queue_url = \"https://q/file\"\nmax_hold = \"30m\"\nsettle = \"5s\"\non_timeout = \"abandon\"\npre_drain = [\"systemctl stop app\"]\n",
            AgentArgs {
                queue_url: Some("https://q/flag".into()),
                settle: Some(Duration::from_secs(2)),
                ..AgentArgs::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.queue_url.as_deref(), Some("https://q/flag"));
        assert!(cfg.imds_trigger);
        assert_eq!(cfg.settle, Duration::from_secs(2));
        assert_eq!(cfg.max_hold, Duration::from_secs(1800));
        assert_eq!(cfg.on_timeout, OnTimeout::Abandon);
        assert_eq!(cfg.pre_drain, vec!["systemctl stop app".to_string()]);
        assert_eq!(cfg.visibility_timeout, Duration::from_secs(30));
    }

    #[test]
    fn without_a_queue_the_agent_runs_on_imds_alone() {
        let cfg = with_file("hook_name = \"drain\"\n", AgentArgs::default()).unwrap();
        assert_eq!(cfg.queue_url, None);
        assert!(cfg.imds_trigger);
        assert_eq!(cfg.hook_name.as_deref(), Some("drain"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected_with_the_file_named() {
        let e = with_file(
            "queue_url = \"x\"\nqueue_ur = \"y\"\n",
            AgentArgs::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("drainhook.toml") && e.contains("queue_ur"),
            "{e}"
        );
        let e = with_file(
            "queue_url = \"x\"\nmax_hold = \"soon\"\n",
            AgentArgs::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("max_hold"), "{e}");
        let e = with_file("imds_trigger = false\n", AgentArgs::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no trigger") && e.contains("--queue-url"), "{e}");
    }
}
