//! `shadow-orchestrator`: receives the agents' forecasts, combines them
//! into a system-wide forecast, and raises the knobs of the cgroups the
//! configuration opts in ahead of predicted demand, restoring every
//! original value when it stops (and, after a crash, when it starts).

use std::{
    collections::HashMap,
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, LazyLock, mpsc::RecvTimeoutError},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Parser;
use shadow_agent::{
    config::DurationAtLeast,
    host::{hostname, unix_ms},
    stop,
    wire::{self, Message, Resource},
};
use shadow_orchestrator::{
    actuator::{Actuator, Layout, Mode, RestoreReport},
    apply::apply,
    capacity::Capacity,
    config::{self, Config, DEFAULT_SOCKET},
    engine::Engine,
    journal::DEFAULT_STATE_DIR,
    metrics::{CgroupLabel, Metrics},
    server::{Event, Outbox, Server},
};

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
static VERSION_TEXT: LazyLock<String> =
    LazyLock::new(|| format!("{} (protocol {})", env!("CARGO_PKG_VERSION"), wire::VERSION));

fn main() -> ExitCode {
    let cli = Cli::parse();
    shadow_agent::logging::init("info");
    let result = if let Some(Command::Replay(args)) = &cli.command {
        shadow_orchestrator::replay::cli::run(args, &mut std::io::stdout().lock()).context("replay")
    } else if cli.check_config {
        check_config(&cli)
    } else {
        load(&cli).and_then(|(config, path)| run(&cli, config, path))
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

/// Per connected agent: its host key (None: this host) and its outbox.
struct Peer {
    host: Option<Arc<str>>,
    outbox: Outbox,
}

fn run(cli: &Cli, config: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    stop::install_handlers();
    let mut tick = config.tick();
    let state_dir = config
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let mode = if cli.dry_run {
        Mode::DryRun
    } else {
        Mode::Write
    };
    // Before anything else: put back what a crashed run left changed.
    let layout = Layout::from_system().context("finding the cgroup mounts")?;
    let (mut actuator, restored) = Actuator::open(layout, &state_dir, mode, config.limits())
        .with_context(|| format!("opening the journal in {}", state_dir.display()))?;
    log_restore("after a crash", &restored);
    if cli.restore {
        return Ok(());
    }
    let hostname = hostname();
    let capacity = Capacity::detect(&config.capacity);
    let (server, events) = Server::new(&hostname);
    let socket = config
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    server.listen_unix(&socket)?;
    if let Some(addr) = &config.tcp {
        let bound = server.listen_tcp(addr)?;
        tracing::info!("listening for remote agents on tcp {bound}");
    }
    if config.manage.is_empty() {
        tracing::info!(
            "no cgroup is opted in (`[[manage]]` in the configuration): recommending only"
        );
    }
    tracing::info!(
        "listening on {}; capacity: cpu {:?} cores, memory {:?} bytes, io {:?} B/s, net {:?} B/s",
        socket.display(),
        capacity.cpu,
        capacity.memory,
        capacity.io,
        capacity.net
    );
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = &config.metrics {
        let for_scrapes = metrics.clone();
        let bound = shadow_agent::metrics::http::serve(addr, move || for_scrapes.encode())
            .with_context(|| format!("serving metrics on {addr}"))?;
        tracing::info!("serving Prometheus metrics on http://{bound}/metrics");
    }
    eprintln!("shadow-orchestrator: ready on {}", socket.display());
    let mut engine = Engine::new(config, capacity);
    let mut peers: HashMap<u64, Peer> = HashMap::new();
    let mut deadline = Instant::now() + tick;
    let mut done = 0u64;
    while !stop::requested() && cli.ticks.is_none_or(|n| done < n) {
        if stop::reload_requested() {
            let on = Running {
                engine: &mut engine,
                actuator: &mut actuator,
                metrics: &metrics,
            };
            reload(cli, path.as_deref(), on, &mut tick);
        }
        let now = Instant::now();
        if now < deadline {
            let wait = (deadline - now).min(Duration::from_millis(100));
            match events.recv_timeout(wait) {
                Ok(event) => handle(event, &mut engine, &mut peers, &metrics),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => anyhow::bail!("listeners stopped"),
            }
            continue;
        }
        deadline += tick;
        done += 1;
        let cycle = engine.cycle(now);
        for d in &cycle.decisions {
            let capacity = engine.capacity().of(d.resource);
            let result = apply(&mut actuator, d, capacity, now);
            if let Ok(applied) = &result {
                metrics.write(d.resource, "written", applied.written);
                metrics.write(d.resource, "refused", applied.refused.len());
            }
            match result {
                Ok(applied) if applied.complete() => {}
                Ok(applied) => {
                    tracing::debug!(
                        "{} {}: not yet: {}",
                        d.path,
                        d.resource.name(),
                        applied.refused.join("; ")
                    );
                    engine.not_applied(d);
                }
                Err(e) if e.is_gone() => {
                    tracing::debug!("{} is gone: {e}", d.path);
                    actuator.forget(&d.path);
                    metrics.forget_cgroup(&CgroupLabel {
                        cgroup: d.path.clone(),
                        resource: d.resource.name().into(),
                    });
                }
                Err(e) => {
                    tracing::warn!("{} {}: {e}", d.path, d.resource.name());
                    metrics.write(d.resource, "failed", 1);
                    engine.not_applied(d);
                }
            }
        }
        metrics.record_cycle(&cycle, &engine, now.elapsed().as_secs_f64());
        metrics.agents.set(peers.len() as i64);
        for r in &cycle.over_committed {
            tracing::warn!(
                "the floors of the managed cgroups exceed the host's {} capacity: scaled down",
                r.name()
            );
        }
        if cli.status {
            print_status(&cycle.system);
        }
        send_reservations(&mut engine, &peers);
        engine.book.expire(now, Duration::from_secs(600));
    }
    tracing::info!("stopping: restoring the original knob values");
    let _ = std::fs::remove_file(&socket);
    let restored = actuator
        .restore_all()
        .context("restoring the original knob values")?;
    log_restore("on exit", &restored);
    if !restored.failed.is_empty() {
        anyhow::bail!(
            "{} original values could not be restored; they stay in the journal for the next start (or `shadow-orchestrator --restore`)",
            restored.failed.len()
        );
    }
    Ok(())
}

/// SIGHUP: re-reads the file. What changed takes effect from the next
/// cycle; a file that does not load changes nothing.
/// What a reload changes while the loop runs.
struct Running<'a> {
    engine: &'a mut Engine,
    actuator: &'a mut Actuator,
    metrics: &'a Metrics,
}

fn reload(cli: &Cli, path: Option<&std::path::Path>, on: Running<'_>, tick: &mut Duration) {
    let Running {
        engine,
        actuator,
        metrics,
    } = on;
    let Some(path) = path else {
        tracing::warn!(
            "SIGHUP: there is no configuration file to reload ({} does not exist and --config was not given)",
            config::DEFAULT_PATH
        );
        return;
    };
    let config = match load(cli) {
        Ok((config, _)) => config,
        Err(e) => {
            tracing::error!("reload failed, keeping the running configuration: {e:#}");
            return;
        }
    };
    for key in engine.config().restart_only_changes(&config) {
        tracing::warn!("reload: `{key}` changed; it takes effect at the next start");
    }
    let capacity = Capacity::detect(&config.capacity);
    actuator.set_limits(config.limits());
    *tick = config.tick();
    let rules = config.manage.len();
    let released = engine.reconfigure(config, capacity);
    let restored = actuator.restore_matching(
        |e| {
            released
                .iter()
                .any(|(path, resource)| e.cgroup == *path && e.knob.resource() == *resource)
        },
        "no longer managed",
    );
    // Their per-cgroup series would otherwise stay at the last values.
    for (path, resource) in &released {
        metrics.forget_cgroup(&CgroupLabel {
            cgroup: path.clone(),
            resource: resource.name().into(),
        });
    }
    match restored {
        Ok(r) => log_restore("for cgroups no longer managed", &r),
        Err(e) => tracing::error!("reload: restoring the cgroups no longer managed: {e}"),
    }
    tracing::info!(
        "configuration reloaded from {}: {rules} [[manage]] rules, tick {tick:?}",
        path.display()
    );
}

fn log_restore(when: &str, r: &RestoreReport) {
    if !r.restored.is_empty() || !r.gone.is_empty() {
        tracing::info!(
            "restored {} original knob values {when} ({} cgroups were gone)",
            r.restored.len(),
            r.gone.len()
        );
    }
    for f in &r.failed {
        tracing::error!("cannot restore {}: {}", f.entry.path.display(), f.cause);
    }
    if !r.pending.is_empty() {
        tracing::warn!(
            "dry run: {} original values from a crashed run are still to be restored (run without --dry-run)",
            r.pending.len()
        );
    }
}

fn handle(event: Event, engine: &mut Engine, peers: &mut HashMap<u64, Peer>, metrics: &Metrics) {
    let now = Instant::now();
    match event {
        Event::Connected {
            conn,
            hello,
            local,
            outbox,
        } => {
            tracing::info!(
                "agent {} on {} connected ({}, connection {conn})",
                hello.agent,
                hello.host,
                if local { "local" } else { "remote" }
            );
            let host = (!local).then(|| Arc::from(hello.host.as_str()));
            peers.insert(conn, Peer { host, outbox });
        }
        Event::Message { conn, message } => {
            let Some(peer) = peers.get(&conn) else {
                return;
            };
            match &message {
                Message::Predictions(b) => {
                    metrics.predictions.inc_by(b.predictions.len() as u64);
                    engine.book.predictions(&peer.host, b, now);
                }
                Message::Usage(b) => {
                    metrics.usage.inc_by(b.usage.len() as u64);
                    engine.book.usage(&peer.host, b, now);
                }
                _ => {}
            }
        }
        Event::Closed { conn, reason } => {
            if peers.remove(&conn).is_some() {
                tracing::info!("connection {conn} closed: {reason}");
            } else {
                tracing::warn!("connection {conn} refused: {reason}");
            }
        }
    }
}

fn send_reservations(engine: &mut Engine, peers: &HashMap<u64, Peer>) {
    let at_ms = unix_ms();
    let mut by_host: HashMap<Option<Arc<str>>, wire::ReservationBatch> = HashMap::new();
    for peer in peers.values() {
        let batch = by_host
            .entry(peer.host.clone())
            .or_insert_with(|| engine.reservations(&peer.host, at_ms));
        if !batch.reservations.is_empty() && !peer.outbox.send(Message::Reservations(batch.clone()))
        {
            tracing::debug!("an agent is not keeping up; its reservation update was dropped");
        }
    }
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
