//! `shadow-orchestrator`: receives the agents' forecasts, combines them
//! into a system-wide forecast, and raises the knobs of the cgroups the
//! configuration opts in ahead of predicted demand, restoring every
//! original value when it stops (and, after a crash, when it starts).

use std::{path::PathBuf, process::ExitCode, sync::LazyLock};

use anyhow::Context as _;
use clap::Parser;
use shadow_common::{config::DurationAtLeast, host::unix_ms, stop};
use shadow_orchestrator::{
    actuator::{Actuator, Guardrails, Layout, Mode, journal::DEFAULT_STATE_DIR},
    config::{self, Config},
    daemon::{Control, Daemon, Options, log_restore, open_actuator},
    engine::Cycle,
};
use shadow_wire::Resource;

/// Shadow's orchestrator: aggregates the agents' forecasts and applies soft
/// pre-reservations to the cgroups the configuration opts in.
///
/// Agents connect over the Unix socket (local) or TCP (remote; off unless
/// --tcp or `tcp` in the configuration). Without a configuration nothing is
/// written: every cgroup gets recommendations only.
///
/// The configuration (docs/configuration.md) is re-read on SIGHUP: rules,
/// capacity, tick, lead and the guardrails change at once, without losing
/// what was learnt; cgroups no longer managed get their original values
/// back. A file that fails to load leaves the running configuration as it
/// was, and the error is logged.
///
/// Examples:
///   shadow-orchestrator --config /etc/shadow/shadow.toml --dry-run
///   shadow-orchestrator --check-config --config /etc/shadow/shadow.toml
///   systemctl reload shadow-orchestrator     # sends SIGHUP
///   shadow-orchestrator replay ../shared/data/traces/bitbrains/*.csv.zst
#[derive(Parser)]
#[command(version = VERSION_TEXT.as_str(), verbatim_doc_comment, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (TOML; docs/configuration.md). Default:
    /// /etc/shadow/shadow.toml if it exists, else built-in defaults. Flags
    /// override the file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Check the whole configuration file (the orchestrator's keys and the
    /// agent's `[agent]` table), print what it found and exit.
    #[arg(long)]
    check_config: bool,
    /// Unix socket agents connect to [default: /run/shadow/orchestrator.sock].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Also accept remote agents over TCP at this address (e.g. 0.0.0.0:7370).
    #[arg(long)]
    tcp: Option<String>,
    /// Directory of the journal of original knob values [default: /run/shadow].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Length of one decision cycle (e.g. 1s, 500ms; at least 100ms).
    #[arg(long)]
    tick: Option<DurationAtLeast<100>>,
    /// Log every write it would make as a JSON line on stdout; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464; off
    /// by default).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Print the system-wide forecast as a JSON line on stdout every tick.
    #[arg(long)]
    status: bool,
    /// Stop after this many ticks (tests, demos); default: until SIGTERM/Ctrl-C.
    #[arg(long)]
    ticks: Option<u64>,
    /// Only put back the original knob values a crashed run left in the
    /// journal, then exit.
    #[arg(long)]
    restore: bool,
}

/// Subcommands (the daemon itself takes the flags alone).
#[derive(clap::Subcommand)]
enum Command {
    /// Replay per-VM traces through the standard recommenders and Shadow's
    /// forecaster and reservation policy, scored like Autopilot
    /// (docs/replay.md).
    Replay(shadow_orchestrator::replay::ReplayArgs),
}

/// `--version`: the build and the wire protocol it speaks.
static VERSION_TEXT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (protocol {})",
        env!("CARGO_PKG_VERSION"),
        shadow_wire::VERSION
    )
});

fn main() -> ExitCode {
    let cli = Cli::parse();
    shadow_common::logging::init("info");
    let result = if let Some(Command::Replay(args)) = &cli.command {
        shadow_orchestrator::replay::cli::run(args, &mut std::io::stdout().lock()).context("replay")
    } else if cli.check_config {
        check_config(&cli)
    } else {
        match load(&cli) {
            Ok((config, path)) => run(&cli, config, path),
            Err(e) => restore_despite(&cli, e),
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("shadow-orchestrator: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration in force: the file (if any) with the flags over it.
/// Start and every reload go through here, so a flag keeps overriding.
fn load(cli: &Cli) -> anyhow::Result<(Config, Option<PathBuf>)> {
    let path = config::choose(cli.config.as_deref());
    let mut config = match &path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(s) = cli.socket.clone() {
        config.socket = Some(s);
    }
    if let Some(t) = cli.tcp.clone() {
        config.tcp = Some(t);
    }
    if let Some(d) = cli.state_dir.clone() {
        config.state_dir = Some(d);
    }
    if let Some(m) = cli.metrics.clone() {
        config.metrics = Some(m);
    }
    if let Some(t) = cli.tick {
        config.tick = Some(t);
    }
    Ok((config, path))
}

/// The configuration does not load. Putting back what a crashed run left
/// needs only the state directory, so do that anyway: `--restore` is then
/// done, and a start refuses with the configuration's error (a service
/// manager that restarts it on failure does not leave knobs raised).
fn restore_despite(cli: &Cli, error: anyhow::Error) -> anyhow::Result<()> {
    let salvaged =
        config::choose(cli.config.as_deref()).and_then(|p| config::salvage_state_dir(&p));
    let (dir, from) = match (&cli.state_dir, salvaged) {
        (Some(dir), _) => (dir.clone(), "--state-dir"),
        (None, Some(dir)) => (dir, "the file's state_dir"),
        (None, None) => (PathBuf::from(DEFAULT_STATE_DIR), "the default"),
    };
    tracing::warn!(
        state_dir = %dir.display(),
        "the configuration does not load; restoring what a crashed run left in {} ({from}) anyway, with default guardrails: {error:#}",
        dir.display()
    );
    let mode = if cli.dry_run {
        Mode::DryRun
    } else {
        Mode::Write
    };
    let layout = Layout::from_system().context("finding the cgroup mounts")?;
    let (_, restored) = Actuator::open(layout, &dir, mode, Guardrails::default())
        .with_context(|| format!("restoring from {}", dir.display()))?;
    log_restore("after a crash", &restored);
    if cli.restore {
        return Ok(());
    }
    Err(error.context(format!(
        "refusing to start (what a crashed run left in {} was put back)",
        dir.display()
    )))
}

/// `--check-config`.
fn check_config(cli: &Cli) -> anyhow::Result<()> {
    let (config, path) = load(cli)?;
    let Some(path) = path else {
        anyhow::bail!(
            "no configuration file: {} does not exist and --config was not given",
            config::DEFAULT_PATH
        );
    };
    println!(
        "{}: ok ({} [[manage]] rules, tick {:?}, lead {}, agent interval {:?})",
        path.display(),
        config.manage.len(),
        config.tick(),
        config.lead(),
        config.agent.interval.map(|i| i.0),
    );
    Ok(())
}

/// The binary's side of the loop: signals, the file re-read on SIGHUP,
/// `--status` lines.
struct Signals<'a> {
    cli: &'a Cli,
    path: Option<PathBuf>,
}

impl Control for Signals<'_> {
    fn stop_requested(&mut self) -> bool {
        stop::requested()
    }

    fn reload(&mut self) -> Option<Config> {
        if !stop::reload_requested() {
            return None;
        }
        let Some(path) = &self.path else {
            tracing::warn!(
                default = config::DEFAULT_PATH,
                "SIGHUP: there is no configuration file to reload (the default does not exist and --config was not given)"
            );
            return None;
        };
        match load(self.cli) {
            Ok((config, _)) => {
                tracing::info!(file = %path.display(), "reloading the configuration");
                Some(config)
            }
            Err(e) => {
                tracing::error!("reload failed, keeping the running configuration: {e:#}");
                None
            }
        }
    }

    fn cycle(&mut self, cycle: &Cycle) {
        if self.cli.status {
            print_status(&cycle.system);
        }
    }
}

fn run(cli: &Cli, config: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    stop::install_handlers();
    let mode = if cli.dry_run {
        Mode::DryRun
    } else {
        Mode::Write
    };
    // Before anything else: put back what a crashed run left changed.
    let layout = Layout::from_system().context("finding the cgroup mounts")?;
    if cli.restore {
        let (_, restored) = open_actuator(&config, layout, mode)?;
        log_restore("after a crash", &restored);
        return Ok(());
    }
    let options = Options {
        layout,
        mode,
        ticks: cli.ticks,
    };
    let daemon = Daemon::start(config, options)?;
    // A lifecycle line, whatever the log level: people and tests wait for it.
    eprintln!(
        "shadow-orchestrator: ready on {}",
        daemon.socket().display()
    );
    daemon.run(&mut Signals { cli, path })?;
    Ok(())
}

fn print_status(system: &[shadow_orchestrator::aggregate::SystemForecast; 4]) {
    let mut line = serde_json::Map::new();
    line.insert("event".into(), "system".into());
    line.insert("at_ms".into(), unix_ms().into());
    for r in Resource::ALL {
        line.insert(
            r.name().into(),
            serde_json::to_value(system[shadow_orchestrator::book::slot(r)]).unwrap_or_default(),
        );
    }
    println!("{}", serde_json::Value::Object(line));
}
