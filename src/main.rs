//! The `drainhook` command: `agent`, `drain` and `backlog`.

use clap::{Args, Parser, Subcommand};
use drainhook::backlog::{self, human_bytes, ProcScan};
use drainhook::drain::{self, DrainOptions, Outcome};
use drainhook::logging::{self, LogFormat};
use drainhook::registry::{Registry, DEFAULT_DATA_DIR};
use drainhook::{duration, exit};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const EXIT_CODES: &str = "\
Exit codes:
  0  drained (every tracked file shipped, and it held for --settle)
  1  error (registry unreadable, bad arguments or configuration)
  2  timed out with bytes still pending
  3  interrupted by SIGTERM or SIGINT before the drain finished";

#[derive(Parser)]
#[command(
    name = "drainhook",
    version,
    about = "Hold a terminating EC2 Auto Scaling instance until filebeat has shipped every log line",
    long_about = "drainhook keeps an instance that Auto Scaling is terminating in \
Terminating:Wait until filebeat has acknowledged every byte of every log file it tracks, \
then completes the lifecycle action. `agent` is the daemon; `drain` and `backlog` work on \
filebeat's registry alone."
)]
struct Cli {
    /// Log format: `text` for journalctl, `json` for log pipelines.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "DRAINHOOK_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the lifecycle agent: notice this instance's termination (IMDS, and the queue if
    /// given), hold it, drain, complete.
    #[command(after_long_help = drainhook::agent::AGENT_HELP)]
    Agent(Box<drainhook::config::AgentArgs>),
    /// Wait until filebeat has shipped every tracked file to its end.
    #[command(after_help = EXIT_CODES)]
    Drain(DrainArgs),
    /// Show what filebeat still has to ship, file by file.
    #[command(after_help = "Exit codes: 0 the registry was read (drained or not), 1 error.")]
    Backlog(BacklogArgs),
}

#[derive(Args)]
struct RegistryArgs {
    /// filebeat's data dir, its `registry` file or dir, or `registry/filebeat`.
    #[arg(long, env = "DRAINHOOK_REGISTRY", default_value = DEFAULT_DATA_DIR)]
    registry: PathBuf,

    /// Name of the shipper process whose open files are searched for rotated-away files.
    #[arg(long, env = "DRAINHOOK_FILEBEAT_PROCESS", default_value = "filebeat")]
    filebeat_process: String,
}

impl RegistryArgs {
    fn procs(&self) -> ProcScan {
        ProcScan {
            process_name: self.filebeat_process.clone(),
            ..ProcScan::default()
        }
    }
}

#[derive(Args)]
struct DrainArgs {
    #[command(flatten)]
    registry: RegistryArgs,

    /// Give up after this long (exit 2), e.g. `90s`, `30m`, `1h`.
    #[arg(long, env = "DRAINHOOK_DRAIN_TIMEOUT", default_value = "30m", value_parser = duration::arg)]
    timeout: Duration,

    /// How long everything must stay shipped, with nothing more shipped, before the drain
    /// ends (any ack starts it again): filebeat's 1 s registry flush plus its 10 s scan
    /// interval, so a file appended at the last moment is not missed.
    #[arg(long, env = "DRAINHOOK_SETTLE", default_value = "11s", value_parser = duration::arg)]
    settle: Duration,

    /// How often to log progress while waiting.
    #[arg(long, default_value = "10s", value_parser = duration::arg)]
    progress_interval: Duration,

    /// The agent's "already drained" marker: when it exists and nothing is pending, return
    /// at once (the agent drained for this shutdown already).
    #[arg(long, env = "DRAINHOOK_DRAINED_MARKER", default_value = drain::DEFAULT_DRAINED_MARKER)]
    drained_marker: PathBuf,
}

#[derive(Args)]
struct BacklogArgs {
    #[command(flatten)]
    registry: RegistryArgs,

    /// Print one JSON object: {"format", "files": [{"source", "inode", "device", "offset",
    /// "size", "pending", "state"}], "pending_bytes"}.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(exit::ERROR)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Backlog(args) => {
            let reg = Registry::open(&args.registry.registry).map_err(|e| e.to_string())?;
            if let Some(w) = reg.warning() {
                tracing::warn!("{w}");
            }
            let b = backlog::compute(&reg, &args.registry.procs());
            if args.json {
                println!("{}", serde_json::to_string(&b).map_err(|e| e.to_string())?);
            } else {
                print!("{}", b.to_table());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Drain(args) => {
            let opts = DrainOptions {
                timeout: args.timeout,
                settle: args.settle,
                progress_interval: args.progress_interval,
                procs: args.registry.procs(),
                drained_marker: Some(args.drained_marker),
                ..DrainOptions::new(args.registry.registry)
            };
            runtime()?.block_on(run_drain(opts))
        }
        Command::Agent(args) => {
            let cfg = args.resolve().map_err(|e| e.to_string())?;
            runtime()?.block_on(drainhook::agent::run(cfg))
        }
    }
}

async fn run_drain(opts: DrainOptions) -> Result<ExitCode, String> {
    // Caught before the first registry read, which runs before the drain's first await (slow
    // under emulation, or with many processes to scan): from this line on, SIGTERM is reported.
    let signals = exit::catch_signals();
    tracing::info!(
        registry = %opts.registry.display(),
        "waiting for filebeat to ship everything (timeout {}, settle {})",
        duration::format(opts.timeout),
        duration::format(opts.settle)
    );
    let (signal_tx, signal_rx) = tokio::sync::oneshot::channel::<&'static str>();
    tokio::spawn(async move {
        let _ = signal_tx.send(signals.await);
    });
    let mut signal_name = None;
    let stop = async {
        if let Ok(name) = signal_rx.await {
            signal_name = Some(name);
        } else {
            std::future::pending::<()>().await;
        }
    };
    let outcome = drain::drain(&opts, stop, |p| tracing::info!("{}", p.summary()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(match outcome {
        Outcome::Drained { backlog, waited } => {
            tracing::info!(
                "drained: {} files shipped to their end after {}",
                backlog.files.len(),
                duration::format(waited)
            );
            ExitCode::SUCCESS
        }
        Outcome::TimedOut { backlog } => {
            tracing::error!(
                "timed out after {}: {} still pending: {}",
                duration::format(opts.timeout),
                human_bytes(backlog.pending_bytes),
                exit::describe_waiting(&backlog)
            );
            ExitCode::from(exit::TIMEOUT)
        }
        Outcome::Interrupted { backlog } => {
            tracing::warn!(
                "interrupted by {}: {} still pending: {}",
                signal_name.unwrap_or("a signal"),
                human_bytes(backlog.pending_bytes),
                exit::describe_waiting(&backlog)
            );
            ExitCode::from(exit::INTERRUPTED)
        }
    })
}
