//! The `drainhook` command: `agent`, `drain`, `backlog` and `check`.

use clap::{Args, Parser, Subcommand};
use drainhook::backlog::{human_bytes, Backlog};
use drainhook::config::{ConfigFileArg, ShipperArgs};
use drainhook::drain::{self, DrainOptions, Ended};
use drainhook::logging::{self, LogFormat};
use drainhook::report::{self, Drained, Ending, Report};
use drainhook::shipper::{self, Spec};
use drainhook::{check, duration, exit};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

const EXIT_CODES: &str = "\
Exit codes:
  0  drained (everything delivered, and it held for --settle)
  1  error (a shipper's state unreadable, no shipper found, bad arguments or configuration)
  2  timed out with bytes still pending
  3  interrupted by SIGTERM or SIGINT before the drain finished
  4  nothing left to wait for, but a shipper dropped data during the drain (the log and the
     report say how much)";

const CHECK_EXIT_CODES: &str = "\
Exit codes:
  0  an exact drain is possible: every shipper's state proves delivery
  1  error: no shipper found, or a state or config that cannot be read
  2  shippers found, but \"drained\" cannot be exact for at least one (the output says why)";

#[derive(Parser)]
#[command(
    name = "drainhook",
    version,
    about = "Hold a terminating EC2 Auto Scaling instance until its log shippers have delivered every log line",
    long_about = "drainhook keeps an instance that Auto Scaling is terminating in \
Terminating:Wait until its log shippers have delivered every byte of every log file they \
track, each judged from its own proof of delivery (filebeat's registry and disk queue, \
Elastic Agent's registries, the CloudWatch agent's state files and log, Fluent Bit's tail DBs, \
chunks and metrics, Vector's checkpoints), then completes the lifecycle action. `agent` is \
the daemon; `drain`, `backlog` and `check` work on the shippers' state alone."
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
    /// Wait until every log shipper has delivered every tracked file to its end.
    #[command(after_help = EXIT_CODES)]
    Drain(DrainArgs),
    /// Show what the log shippers still have to deliver, file by file, and their queues.
    #[command(after_help = "Exit codes: 0 the state was read (drained or not), 1 error.")]
    Backlog(BacklogArgs),
    /// Say what a drain would watch, and whether "drained" can be exact here.
    #[command(after_help = CHECK_EXIT_CODES)]
    Check(CheckArgs),
}

#[derive(Args)]
struct DrainArgs {
    #[command(flatten)]
    shippers: ShipperArgs,

    #[command(flatten)]
    config: ConfigFileArg,

    /// Give up after this long (exit 2), e.g. `90s`, `30m`, `1h`.
    #[arg(long, env = "DRAINHOOK_DRAIN_TIMEOUT", default_value = "30m", value_parser = duration::arg)]
    timeout: Duration,

    /// How long everything must stay delivered, with nothing more delivered, before the
    /// drain ends (any progress starts it again) [default: settle in the config file, else
    /// 11s: filebeat's 1 s registry flush plus its 10 s scan interval, so a file appended at
    /// the last moment is not missed].
    #[arg(long, env = "DRAINHOOK_SETTLE", value_parser = duration::arg)]
    settle: Option<Duration>,

    /// How often to log progress while waiting.
    #[arg(long, default_value = "10s", value_parser = duration::arg)]
    progress_interval: Duration,

    /// The agent's "already drained" marker: when it exists and nothing is pending, return
    /// at once (the agent drained for this shutdown already) [default: drained_marker in the
    /// config file, else /run/drainhook/drained].
    #[arg(long, env = "DRAINHOOK_DRAINED_MARKER")]
    drained_marker: Option<PathBuf>,

    /// Append a drain report line (outcome `shutdown`) to --report-file when the drain ends,
    /// and wait (within --timeout) until a shipper has delivered it. The shutdown fallback
    /// does this.
    #[arg(long)]
    report: bool,

    /// Where --report appends [default: report_file in the config file, else
    /// /var/log/drainhook/drain.log].
    #[arg(long, env = "DRAINHOOK_REPORT_FILE")]
    report_file: Option<PathBuf>,
}

#[derive(Args)]
struct BacklogArgs {
    #[command(flatten)]
    shippers: ShipperArgs,

    #[command(flatten)]
    config: ConfigFileArg,

    /// Print one JSON object: {"format", "files": [{"source", "inode", "device", "offset",
    /// "size", "pending", "state"}], "pending_bytes", "lost_bytes", "drained", "sources":
    /// [{"shipper", "owner", "state", "format", "files", "pending_bytes", "queue", ...}]}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    shippers: ShipperArgs,

    #[command(flatten)]
    config: ConfigFileArg,
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
            let file = args.config.read().map_err(|e| e.to_string())?;
            let spec = args.shippers.spec(&file);
            let b = runtime()?
                .block_on(backlog_now(&spec))
                .map_err(|e| e.to_string())?;
            if args.json {
                println!("{}", serde_json::to_string(&b).map_err(|e| e.to_string())?);
            } else {
                print!("{}", b.to_table());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => {
            let file = args.config.read().map_err(|e| e.to_string())?;
            let spec = args.shippers.spec(&file);
            runtime()?.block_on(async {
                let verdict = check::check(&spec).await;
                print!("{}", verdict.to_text());
                Ok(ExitCode::from(verdict.exit_code()))
            })
        }
        Command::Drain(args) => {
            let file = args.config.read().map_err(|e| e.to_string())?;
            let settle = file.settle_or(args.settle).map_err(|e| e.to_string())?;
            let drained_marker = file.drained_marker_or(args.drained_marker);
            let report = args.report.then(|| file.report_file_or(args.report_file));
            let opts = DrainOptions {
                timeout: args.timeout,
                settle,
                progress_interval: args.progress_interval,
                drained_marker: Some(drained_marker),
                ..DrainOptions::new(args.shippers.spec(&file))
            };
            runtime()?.block_on(run_drain(opts, report))
        }
        Command::Agent(args) => {
            let cfg = args.resolve().map_err(|e| e.to_string())?;
            runtime()?.block_on(drainhook::agent::run(cfg))
        }
    }
}

async fn backlog_now(spec: &Spec) -> Result<Backlog, shipper::ShipperError> {
    let d = shipper::detect(spec)?;
    for n in &d.notes {
        tracing::info!("{n}");
    }
    let mut sources = d.sources;
    drain::look_all(&mut sources).await
}

async fn run_drain(opts: DrainOptions, report_to: Option<PathBuf>) -> Result<ExitCode, String> {
    // Caught before the first look at the shippers, which runs before the drain's first
    // await (slow under emulation, or with many processes to scan): from this line on,
    // SIGTERM is reported.
    let signals = exit::catch_signals();
    tracing::info!(
        "waiting for every log shipper to deliver everything (timeout {}, settle {})",
        duration::format(opts.timeout),
        duration::format(opts.settle)
    );
    let started_at = SystemTime::now();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let (signal_tx, signal_rx) = tokio::sync::watch::channel::<Option<&'static str>>(None);
    tokio::spawn(async move {
        let _ = signal_tx.send(Some(signals.await));
    });
    let stopped = || {
        let mut rx = signal_rx.clone();
        async move {
            let _ = rx.wait_for(Option::is_some).await;
        }
    };
    let outcome = drain::drain(&opts, stopped(), |p| tracing::info!("{}", p.summary()))
        .await
        .map_err(|e| e.to_string())?;
    let backlog = &outcome.backlog;
    let code = match outcome.ended {
        Ended::Drained if backlog.lost_bytes() > 0 => {
            tracing::error!(
                "nothing left to wait for after {}, but {} LOST: dropped by the shipper during the drain ({})",
                duration::format(outcome.waited),
                human_bytes(backlog.lost_bytes()),
                exit::describe_lost(backlog)
            );
            exit::LOST
        }
        Ended::Drained if !backlog.inexact().is_empty() => {
            tracing::warn!(
                "drained as far as can be judged: {} read to their end and quiet for {} after {}; not exact: {}",
                drainhook::backlog::plural(backlog.files().count(), "file"),
                duration::format(opts.settle),
                duration::format(outcome.waited),
                backlog.inexact().join("; ")
            );
            0
        }
        Ended::Drained => {
            tracing::info!(
                "drained: {} delivered to their end after {}",
                drainhook::backlog::plural(backlog.files().count(), "file"),
                duration::format(outcome.waited)
            );
            0
        }
        Ended::TimedOut => {
            tracing::error!(
                "timed out after {}: {} still pending: {}",
                duration::format(opts.timeout),
                human_bytes(backlog.pending_bytes()),
                exit::describe_waiting(backlog)
            );
            exit::TIMEOUT
        }
        Ended::Interrupted => {
            tracing::warn!(
                "interrupted by {}: {} still pending: {}",
                (*signal_rx.borrow()).unwrap_or("a signal"),
                human_bytes(backlog.pending_bytes()),
                exit::describe_waiting(backlog)
            );
            exit::INTERRUPTED
        }
    };
    if let (Some(path), false) = (report_to, outcome.by_marker) {
        let r = Report::new(
            Ending::Shutdown,
            "shutdown",
            started_at,
            SystemTime::now(),
            Drained {
                first: Some(&outcome.first),
                last: Some(backlog),
            },
        );
        let existed = path.exists();
        if report::write(&path, &r) && outcome.ended != Ended::Interrupted {
            let d = report::wait_delivered(&opts.spec, &path, existed, deadline, stopped()).await;
            report::log_delivery(&path, &d);
        }
    }
    Ok(ExitCode::from(code))
}
