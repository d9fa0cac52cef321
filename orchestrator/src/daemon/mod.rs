//! The orchestrator's loop: agents' messages in, one decision cycle per
//! tick, knob writes out, reservation state back to the agents, and every
//! original value put back at the end. The binary only parses flags, loads
//! the configuration and prints; everything between start and stop lives
//! here, so it runs in-process in tests (over a fake cgroup tree and a
//! temporary socket).
//!
//! A tick: wait for messages until the deadline → [`Engine::cycle`] →
//! [`apply`] each decision → metrics → reservation state to the agents →
//! forget components nobody reports on.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, mpsc::Receiver, mpsc::RecvTimeoutError},
    time::{Duration, Instant},
};

use shadow_common::host::{hostname, unix_ms};
use shadow_wire::{
    Message,
    auth::{Key, KeyError, Keys},
};

use crate::{
    actuator::{Actuator, ActuatorError, Layout, Mode, RestoreReport, journal::DEFAULT_STATE_DIR},
    apply::apply,
    book::Sender,
    capacity::Capacity,
    config::{Config, DEFAULT_SOCKET},
    engine::{Cycle, Decision, Engine},
    metrics::{CgroupLabel, Metrics},
    server::{Event, ListenError, Outbox, Server, TcpAuth},
};

/// The cycle brought forward by new forecasts ([`Daemon::serve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Early {
    /// None since the last regular cycle: new forecasts bring one forward.
    Ready,
    /// New forecasts arrived: run it now.
    Due,
    /// Run (or none yet allowed) until the next regular cycle.
    Spent,
}

/// Components nobody reported on for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Longest wait for a message before the loop looks at its signals again.
const POLL: Duration = Duration::from_millis(100);

/// Why the daemon could not start or did not end cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The journal could not be opened, or the originals a crashed run left
    /// could not be read.
    #[error("opening the journal in {dir}: {source}")]
    Journal {
        /// The state directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: ActuatorError,
    },
    /// A listener (Unix socket or TCP) could not be started.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// `tcp` is set but no `[[peer]]` key is, and `insecure_tcp` is not.
    #[error(
        "refusing to listen on TCP {addr} without authentication: add a [[peer]] with a key_file per remote agent, or set insecure_tcp = true if every host that can reach the port is trusted (docs/protocol.md)"
    )]
    TcpWithoutKeys {
        /// The address asked for.
        addr: String,
    },
    /// A peer's key could not be loaded.
    #[error("[[peer]] {name}: {source}")]
    Key {
        /// The peer.
        name: String,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// Two `[[peer]]` tables with one name.
    #[error("[[peer]] {0} is configured twice")]
    DuplicatePeer(String),
    /// The metrics endpoint could not be served.
    #[error("serving metrics on {addr}: {source}")]
    Metrics {
        /// The address asked for.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connections' threads are gone.
    #[error("the listeners stopped")]
    ListenersStopped,
    /// Restoring at exit failed as a whole (the journal is kept).
    #[error("restoring the original knob values: {0}")]
    Restore(#[source] ActuatorError),
    /// Some originals could not be put back; they stay in the journal for
    /// the next start (or `shadow-orchestrator --restore`).
    #[error(
        "{0} original values could not be restored; they stay in the journal for the next start (or `shadow-orchestrator --restore`)"
    )]
    NotRestored(usize),
}

/// How the daemon runs, besides the configuration.
pub struct Options {
    /// Where the cgroup knobs are (the host's, or a fake tree in tests).
    pub layout: Layout,
    /// Write, or only print the writes.
    pub mode: Mode,
    /// Stop after this many ticks (None: until asked to stop).
    pub ticks: Option<u64>,
}

/// What the loop asks of its surroundings each time round: signals, a
/// fresh configuration, and where each cycle's system forecast goes.
pub trait Control {
    /// True once the daemon should stop.
    fn stop_requested(&mut self) -> bool;
    /// A configuration to switch to, if a reload was asked for: None when
    /// none was, or when the new one failed to load (the control says why;
    /// the running configuration stays).
    fn reload(&mut self) -> Option<Config>;
    /// Sees every cycle (`--status` prints its system forecast).
    fn cycle(&mut self, _cycle: &Cycle) {}
}

/// Per connected agent: its host key (None: this host) and its outbox.
struct Peer {
    host: Option<Arc<str>>,
    outbox: Outbox,
}

/// A started daemon: the journal open (and a crashed run's leftovers put
/// back), listening, serving metrics.
pub struct Daemon {
    engine: Engine,
    actuator: Actuator,
    metrics: Arc<Metrics>,
    events: Receiver<Event>,
    peers: HashMap<u64, Peer>,
    socket: PathBuf,
    ticks: Option<u64>,
    tick: Duration,
}

/// Opens the journal in the configured state directory and puts back the
/// originals a crashed run left changed. Returns the actuator and what was
/// restored. The configuration only names the directory and guardrails:
/// `--restore` needs nothing else.
pub fn open_actuator(
    config: &Config,
    layout: Layout,
    mode: Mode,
) -> Result<(Actuator, RestoreReport), DaemonError> {
    let dir = config
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    Actuator::open(layout, &dir, mode, config.guardrails())
        .map_err(|source| DaemonError::Journal { dir, source })
}

/// How TCP peers authenticate: the `[[peer]]` keys, loaded and checked;
/// none only where the operator declared the network trusted.
fn tcp_auth(config: &Config, addr: &str) -> Result<TcpAuth, DaemonError> {
    if config.peer.is_empty() {
        if config.insecure_tcp == Some(true) {
            tracing::warn!(
                address = addr,
                "insecure_tcp: TCP agents are not authenticated; their host names are their own claims"
            );
            return Ok(TcpAuth::Insecure);
        }
        return Err(DaemonError::TcpWithoutKeys {
            addr: addr.to_owned(),
        });
    }
    let mut keys = Keys::new();
    for peer in &config.peer {
        let name = peer.name.0.clone();
        let key = Key::load(&peer.key_file).map_err(|source| DaemonError::Key {
            name: name.clone(),
            source,
        })?;
        if keys.insert(name.clone(), key).is_some() {
            return Err(DaemonError::DuplicatePeer(name));
        }
    }
    Ok(TcpAuth::Keys(keys))
}

impl Daemon {
    /// Puts back what a crashed run left, then listens on the configured
    /// socket(s) and serves metrics if asked.
    pub fn start(config: Config, options: Options) -> Result<Self, DaemonError> {
        let (actuator, restored) = open_actuator(&config, options.layout, options.mode)?;
        log_restore("after a crash", &restored);
        let capacity = Capacity::detect(&config.capacity);
        let (server, events) = Server::new(&hostname());
        let socket = config
            .socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
        // Checked before anything listens: a refusal leaves nothing behind.
        let tcp = match &config.tcp {
            Some(addr) => Some((addr, tcp_auth(&config, addr)?)),
            None => None,
        };
        server.listen_unix(&socket)?;
        if let Some((addr, auth)) = tcp {
            let bound = server.listen_tcp(addr, auth)?;
            tracing::info!(address = %bound, "listening for remote agents on tcp {bound}");
        }
        if config.manage.is_empty() {
            tracing::info!(
                "no cgroup is opted in (`[[manage]]` in the configuration): recommending only"
            );
        }
        tracing::info!(
            socket = %socket.display(),
            cpu_cores = ?capacity.cpu,
            memory_bytes = ?capacity.memory,
            io_bytes_per_s = ?capacity.io,
            net_bytes_per_s = ?capacity.net,
            "listening; host capacity"
        );
        let metrics = Arc::new(Metrics::new());
        if let Some(addr) = &config.metrics {
            let for_scrapes = metrics.clone();
            let bound = shadow_common::http::serve(addr, move || for_scrapes.encode()).map_err(
                |source| DaemonError::Metrics {
                    addr: addr.clone(),
                    source,
                },
            )?;
            tracing::info!(address = %bound, "serving Prometheus metrics on http://{bound}/metrics");
        }
        let tick = config.tick();
        Ok(Self {
            engine: Engine::new(config, capacity),
            actuator,
            metrics,
            events,
            peers: HashMap::new(),
            socket,
            ticks: options.ticks,
            tick,
        })
    }

    /// The Unix socket agents connect to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs until `control` asks to stop (or the configured number of
    /// ticks), then restores every original value.
    pub fn run(mut self, control: &mut dyn Control) -> Result<(), DaemonError> {
        let result = self.serve(control);
        tracing::info!("stopping: restoring the original knob values");
        let _ = std::fs::remove_file(&self.socket);
        let restored = self.actuator.restore_all().map_err(DaemonError::Restore)?;
        log_restore("on exit", &restored);
        result?;
        if !restored.failed.is_empty() {
            return Err(DaemonError::NotRestored(restored.failed.len()));
        }
        Ok(())
    }

    /// Cycles every tick, plus one brought forward when new forecasts
    /// arrive: an agent reports at the end of its interval, and a band
    /// that jumped (a burst nobody foresaw has started) is acted on then,
    /// not up to a tick later. At most one such cycle between two regular
    /// ones, so many agents reporting at different moments cost at most
    /// twice the cycles.
    fn serve(&mut self, control: &mut dyn Control) -> Result<(), DaemonError> {
        let mut deadline = Instant::now() + self.tick;
        let mut done = 0u64;
        let mut early = Early::Ready;
        while !control.stop_requested() && self.ticks.is_none_or(|n| done < n) {
            if let Some(config) = control.reload() {
                self.reconfigure(config);
            }
            let now = Instant::now();
            if early == Early::Due {
                early = Early::Spent;
                let cycle = self.tick(now);
                control.cycle(&cycle);
                continue;
            }
            if now < deadline {
                match self.events.recv_timeout((deadline - now).min(POLL)) {
                    Ok(event) => {
                        if self.handle(event) && early == Early::Ready {
                            early = Early::Due;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(DaemonError::ListenersStopped);
                    }
                }
                continue;
            }
            deadline += self.tick;
            done += 1;
            early = Early::Ready;
            let cycle = self.tick(now);
            control.cycle(&cycle);
        }
        Ok(())
    }

    /// One decision cycle and what follows from it.
    fn tick(&mut self, now: Instant) -> Cycle {
        let cycle = self.engine.cycle(now);
        for d in &cycle.decisions {
            self.apply(d, now);
        }
        self.metrics
            .record_cycle(&cycle, &self.engine, now.elapsed().as_secs_f64());
        self.metrics.agents.set(self.peers.len() as i64);
        for r in &cycle.over_committed {
            tracing::warn!(
                resource = r.name(),
                "the floors of the managed cgroups exceed the host's capacity: scaled down"
            );
        }
        self.send_reservations();
        self.engine.expire(now, FORGET_AFTER);
        cycle
    }

    /// Writes one decision; what could not be written is tried again on a
    /// later tick.
    fn apply(&mut self, d: &Decision, now: Instant) {
        let capacity = self.engine.capacity().of(d.resource);
        match apply(&mut self.actuator, d, capacity, now) {
            Ok(applied) => {
                self.metrics.write(d.resource, "written", applied.written);
                self.metrics
                    .write(d.resource, "refused", applied.refused.len());
                if !applied.complete() {
                    for (knob, why) in &applied.refused {
                        tracing::debug!(cgroup = %d.path, knob = %knob, refusal = %why, "not yet written");
                    }
                    self.engine.not_applied(d);
                }
            }
            Err(e) if e.is_gone() => {
                tracing::debug!(cgroup = %d.path, cause = %e, "cgroup is gone");
                self.actuator.forget(&d.path);
                self.metrics.forget_cgroup(&CgroupLabel {
                    cgroup: d.path.clone(),
                    resource: d.resource.name().into(),
                });
            }
            Err(e) => {
                tracing::warn!(cgroup = %d.path, resource = d.resource.name(), cause = %e, "write failed");
                self.metrics.write(d.resource, "failed", 1);
                self.engine.not_applied(d);
            }
        }
    }

    /// A reloaded configuration: what changed takes effect from the next
    /// cycle, without losing what was learnt; cgroups no longer managed get
    /// their originals back at once.
    fn reconfigure(&mut self, config: Config) {
        for key in self.engine.config().restart_only_changes(&config) {
            tracing::warn!(key, "reload: changed; it takes effect at the next start");
        }
        let capacity = Capacity::detect(&config.capacity);
        self.actuator.set_guardrails(config.guardrails());
        self.tick = config.tick();
        let rules = config.manage.len();
        let released = self.engine.reconfigure(config, capacity);
        let restored = self.actuator.restore_matching(
            |e| {
                released
                    .iter()
                    .any(|(path, resource)| e.cgroup == *path && e.knob.resource() == *resource)
            },
            "no longer managed",
        );
        // Their per-cgroup series would otherwise stay at the last values.
        for (path, resource) in &released {
            self.metrics.forget_cgroup(&CgroupLabel {
                cgroup: path.clone(),
                resource: resource.name().into(),
            });
        }
        match restored {
            Ok(r) => log_restore("for cgroups no longer managed", &r),
            Err(e) => {
                tracing::error!(cause = %e, "reload: restoring the cgroups no longer managed")
            }
        }
        tracing::info!(rules, tick = ?self.tick, "configuration reloaded");
    }

    /// Takes in one event; true if it brought new forecasts.
    fn handle(&mut self, event: Event) -> bool {
        let now = Instant::now();
        match event {
            Event::Connected {
                conn,
                hello,
                identity,
                outbox,
            } => {
                tracing::info!(
                    agent = %hello.agent,
                    claimed_host = %hello.host,
                    identity = ?identity,
                    conn,
                    "agent connected"
                );
                let host = identity.host().map(Arc::from);
                self.peers.insert(conn, Peer { host, outbox });
            }
            Event::Message { conn, message, .. } => {
                let Some(peer) = self.peers.get(&conn) else {
                    return false;
                };
                match &message {
                    Message::Predictions(b) => {
                        self.metrics.predictions.inc_by(b.predictions.len() as u64);
                        let sender = Sender {
                            host: peer.host.clone(),
                            conn,
                        };
                        self.engine.predictions(&sender, b, now);
                        return !b.predictions.is_empty();
                    }
                    Message::Usage(b) => {
                        self.metrics.usage.inc_by(b.usage.len() as u64);
                        self.engine.usage(&peer.host, b, now);
                    }
                    _ => {}
                }
            }
            Event::Closed { conn, reason } => {
                if let Some(peer) = self.peers.remove(&conn) {
                    tracing::info!(conn, %reason, "connection closed; its reservations are released");
                    self.engine.agent_gone(&Sender {
                        host: peer.host,
                        conn,
                    });
                    // Released at the next cycle: bring it forward too.
                    return true;
                }
            }
        }
        false
    }

    /// Each host's agents get the reservation state of that host's cgroups.
    fn send_reservations(&mut self) {
        let at_ms = unix_ms();
        let mut by_host: HashMap<Option<Arc<str>>, shadow_wire::ReservationBatch> = HashMap::new();
        for peer in self.peers.values() {
            let batch = by_host
                .entry(peer.host.clone())
                .or_insert_with(|| self.engine.reservations(&peer.host, at_ms));
            if !batch.reservations.is_empty()
                && !peer.outbox.send(Message::Reservations(batch.clone()))
            {
                tracing::debug!("an agent is not keeping up; its reservation update was dropped");
            }
        }
    }
}

/// Logs what a restore did.
pub fn log_restore(when: &str, r: &RestoreReport) {
    if !r.restored.is_empty() || !r.gone.is_empty() || !r.stale.is_empty() {
        tracing::info!(
            when,
            restored = r.restored.len(),
            gone = r.gone.len(),
            recreated = r.stale.len(),
            "original knob values restored"
        );
    }
    for f in &r.failed {
        tracing::error!(file = %f.entry.path.display(), cause = %f.cause, "cannot restore");
    }
    if !r.pending.is_empty() {
        tracing::warn!(
            pending = r.pending.len(),
            "dry run: originals from a crashed run are still to be restored (run without --dry-run)"
        );
    }
}

#[cfg(test)]
mod tests;
