//! The agent's per-tick machinery, shared by every front end (`observe`'s
//! JSON and table, `top`'s screen): probes attached, the collector, one
//! shadow forecaster per cgroup, the hint socket and the transmitter to the
//! orchestrator. A front end calls [`Pipeline::tick`] once per interval and
//! shows the [`Row`]s however it likes.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    cgroups::{self, Index},
    collector::{Collector, Sample},
    counter_map::CounterMap,
    hint::{self, Ledger},
    memory::{MemoryReader, Source},
    probes::{Options, Probes, Status},
    reservations::Reservations,
    shadow::{CpuForecast, MemoryForecast, Observation, Shadows},
    transmit::{AgentKey, Transmitter},
};
use shadow_common::host::unix_now;
use shadow_common::mounts::Mounts;
use shadow_forecast::MAX_HORIZON;
use shadow_wire::Resource;
use shadow_wire::{auth::Key, transport::Target};

/// What the pipeline does, whatever asked for it (command-line flags today,
/// a configuration file later).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Length of one interval.
    pub interval: Duration,
    /// Only this cgroup (path relative to the v2 root) and its descendants.
    pub cgroup: Option<String>,
    /// Intervals between full walks of the cgroup tree.
    pub rescan_every: u64,
    /// Forecast each cgroup's CPU demand (always on with an orchestrator).
    pub forecast: bool,
    /// Quantile of the forecast's upper band.
    pub quantile: f64,
    /// The orchestrator to report to (Unix socket path or `tcp:HOST:PORT`).
    pub orchestrator: Option<String>,
    /// This agent's key file, proved to an orchestrator that asks.
    pub key_file: Option<PathBuf>,
    /// The name of that key (default: the host name).
    pub key_name: Option<String>,
    /// Where to listen for hints (when forecasting).
    pub hint_socket: PathBuf,
    /// Group that owns the hint socket.
    pub hint_group: Option<String>,
    /// Do not open the hint socket.
    pub no_hints: bool,
    /// Serve Prometheus metrics on this address (the front end serves
    /// them; the pipeline turns the kernel's `bpf_stats` on for them).
    pub metrics: Option<String>,
    /// Most cgroups with their own metric series.
    pub metrics_cgroups: usize,
}

/// One cgroup after one interval: what it used, what it will likely use,
/// and what the orchestrator holds for it.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The interval's usage.
    #[serde(flatten)]
    pub sample: Sample,
    /// The CPU forecast (when forecasting and the forecaster had a value).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<CpuForecast>,
    /// The memory forecast (when forecasting and the level is known).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub memory_forecast: Option<MemoryForecast>,
    /// The orchestrator's CPU reservation (when reporting to one that has
    /// answered for this cgroup).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<CpuReservation>,
}

/// One sample's CPU and memory forecasts.
type Forecasts = (Option<CpuForecast>, Option<MemoryForecast>);

/// What the orchestrator holds for a cgroup's CPU.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CpuReservation {
    /// Cores reserved (managed) or recommended.
    pub cpu_reserved_cores: f64,
    /// True if the orchestrator writes this cgroup's knobs.
    pub cpu_reservation_managed: bool,
}

/// Everything that runs between ticks. Dropping it detaches the probes and
/// closes the hint socket.
pub struct Pipeline {
    // Fields drop in declaration order: the hint socket closes first, the
    // probes detach last.
    hints: Option<(hint::server::Server, Arc<Mutex<Ledger>>)>,
    shadows: Option<Shadows>,
    transmitter: Option<Transmitter>,
    collector: Collector<CounterMap>,
    /// Reads each in-scope cgroup's memory at the end of its interval.
    memory: MemoryReader,
    settings: Settings,
    /// The orchestrator's reservations, as received.
    reservations: Reservations,
    /// Scratch: one sample's observations.
    observations: Vec<Observation>,
    /// This tick's observations, each with the index of its sample.
    tagged: Vec<(usize, Observation)>,
    last: Instant,
    collect_ms: Vec<f64>,
    /// Holds the programs attached; declared last so it is dropped last.
    probes: Probes,
}

/// The key `settings` name, loaded and checked (mode, owner, format).
fn agent_key(settings: &Settings) -> anyhow::Result<Option<AgentKey>> {
    let Some(file) = &settings.key_file else {
        return Ok(None);
    };
    let key = Key::load(file).context("loading the agent's key ([agent] key_file)")?;
    let name = settings
        .key_name
        .clone()
        .unwrap_or_else(shadow_common::host::hostname);
    Ok(Some(AgentKey { name, key }))
}

impl Pipeline {
    /// Attaches the probes and starts the collector, forecasters, hint
    /// socket and transmitter that `settings` ask for. Prints nothing: the
    /// front end says what started ([`Pipeline::attached`],
    /// [`Pipeline::hint_socket`]) where its screen allows.
    pub fn start(settings: &Settings) -> anyhow::Result<Self> {
        let mounts = Mounts::from_system().context("finding cgroup mounts")?;
        let v2_root: PathBuf = mounts.v2_root()?.to_path_buf();
        // Per-program run time is only counted while bpf_stats is on (it
        // costs two clock reads per event): only when metrics are served.
        let options = Options {
            stats: settings.metrics.is_some(),
            baselines: false,
        };
        let mut probes = Probes::attach(Some(&v2_root), options)?;
        let (counters, pending) = probes
            .counter_maps()
            .context("the BPF object has no counter maps")?;
        let map = CounterMap::new(counters, pending)?;
        let mut collector = Collector::new(map, Index::new(v2_root.clone()), settings.rescan_every);
        collector.walk_in_background(settings.interval);
        let memory = MemoryReader::new(Source::detect(&mounts));
        let key = agent_key(settings)?;
        let transmitter = settings
            .orchestrator
            .as_deref()
            .map(|t| Transmitter::new(Target::parse(t), settings.interval, key));
        let horizon = if transmitter.is_some() {
            MAX_HORIZON
        } else {
            1
        };
        let (shadows, hints) = if settings.forecast || transmitter.is_some() {
            // Read once: the CPUs cap the demand forecast, the whole bounds
            // what hints may announce.
            let capacity = hint::host_capacity();
            let shadows =
                Shadows::new(settings.interval, settings.quantile, horizon, capacity.cpu)?;
            let hints = if settings.no_hints {
                None
            } else {
                start_hints(settings, &v2_root, capacity)?
            };
            (Some(shadows), hints)
        } else {
            (None, None)
        };
        Ok(Self {
            settings: settings.clone(),
            collector,
            memory,
            transmitter,
            shadows,
            hints,
            reservations: Reservations::default(),
            observations: Vec::new(),
            tagged: Vec::new(),
            last: Instant::now(),
            collect_ms: Vec::new(),
            probes,
        })
    }

    /// Closes the interval that began at the previous tick (or the start)
    /// and returns one row per cgroup in scope. The data goes one way, a
    /// step each: collect the counters, forecast, settle the hints whose
    /// window is over, transmit to the orchestrator, take in what it sent
    /// back, join it all into rows.
    pub fn tick(&mut self) -> anyhow::Result<Vec<Row>> {
        let samples = self.collect()?;
        let forecasts = self.forecast(&samples);
        self.settle_hints();
        self.transmit(&samples);
        self.receive(&samples);
        Ok(self.rows(samples, forecasts))
    }

    /// The interval's usage of every cgroup in scope.
    fn collect(&mut self) -> anyhow::Result<Vec<Sample>> {
        let now = Instant::now();
        let interval_ns =
            u64::try_from(now.duration_since(self.last).as_nanos()).unwrap_or(u64::MAX);
        self.last = now;
        let started = Instant::now();
        let mut samples = self.collector.tick(unix_now(), interval_ns)?;
        if let Some(filter) = &self.settings.cgroup {
            samples.retain(|s| cgroups::is_within(&s.cgroup, filter));
        }
        // Read right after the counters: the level at the interval's end.
        self.memory.fill(&mut samples);
        self.collect_ms.push(started.elapsed().as_secs_f64() * 1e3);
        Ok(samples)
    }

    /// Feeds the interval to the shadows, with the live hints fused in and
    /// the usage recorded for judging them; keeps every observation, tagged
    /// with its sample, for [`Pipeline::transmit`]. One CPU and one memory
    /// forecast per sample, None when not forecasting.
    fn forecast(&mut self, samples: &[Sample]) -> Vec<Forecasts> {
        let mut forecasts = vec![(None, None); samples.len()];
        self.tagged.clear();
        let Some(shadows) = &mut self.shadows else {
            return forecasts;
        };
        shadows.retain_only(samples);
        let mut ledger = self.hints.as_ref().map(|(_, l)| lock(l));
        for (i, s) in samples.iter().enumerate() {
            self.observations.clear();
            shadows.observe_hinted(s, ledger.as_deref_mut(), &mut self.observations);
            let cpu = Shadows::cpu_forecast(&self.observations).map(|mut f| {
                f.hint_trust = ledger.as_ref().map(|l| l.trust(&s.cgroup));
                f
            });
            forecasts[i] = (cpu, Shadows::memory_forecast(&self.observations));
            self.tagged
                .extend(self.observations.iter().map(|&o| (i, o)));
        }
        forecasts
    }

    /// Judges the hints whose window is over (with the usage just
    /// recorded) and updates their cgroups' trust.
    fn settle_hints(&mut self) {
        let Some((_, ledger)) = &self.hints else {
            return;
        };
        // One interval of grace lets the window's last usage in.
        let grace = self.settings.interval.as_secs_f64() * 1.5;
        for o in lock(ledger).settle(unix_now(), grace) {
            tracing::info!(id = o.id, cgroup = %o.cgroup, accuracy = ?o.accuracy, trust = o.trust, "hint judged");
        }
    }

    /// Sends the interval's usage and the forecasts worth sending to the
    /// orchestrator, when reporting to one.
    fn transmit(&mut self, samples: &[Sample]) {
        let (Some(t), Some(shadows)) = (&mut self.transmitter, &self.shadows) else {
            return;
        };
        let at_ms = (unix_now() * 1e3) as u64;
        t.tick(
            at_ms,
            samples,
            &self.tagged,
            self.settings.quantile,
            shadows.heartbeat_s(),
        );
    }

    /// Takes in the reservations the orchestrator sent since the last tick
    /// and drops those of cgroups not observed any more.
    fn receive(&mut self, samples: &[Sample]) {
        if let Some(t) = &self.transmitter {
            for batch in t.received() {
                self.reservations.take(batch);
            }
        }
        self.reservations.retain_observed(samples);
    }

    /// Joins samples, forecasts and the orchestrator's reservations.
    fn rows(&self, samples: Vec<Sample>, forecasts: Vec<Forecasts>) -> Vec<Row> {
        samples
            .into_iter()
            .zip(forecasts)
            .map(|(sample, (forecast, memory_forecast))| {
                let reservation = self
                    .reservations
                    .get(&sample.cgroup, Resource::Cpu)
                    .map(|r| CpuReservation {
                        cpu_reserved_cores: f64::from(r.reserved),
                        cpu_reservation_managed: r.managed,
                    });
                Row {
                    sample,
                    forecast,
                    memory_forecast,
                    reservation,
                }
            })
            .collect()
    }

    /// Takes new settings while running: a new orchestrator address is
    /// connected to from the next tick. Returns the settings that changed
    /// but only take effect at the next start (the forecasters' step and
    /// band, the hint socket, the scope, and whether there are forecasters
    /// or a transmitter at all).
    pub fn reconfigure(&mut self, new: &Settings) -> Vec<&'static str> {
        let old = &self.settings;
        let mut later = Vec::new();
        for (key, changed) in [
            ("interval", old.interval != new.interval),
            ("cgroup", old.cgroup != new.cgroup),
            ("rescan_every", old.rescan_every != new.rescan_every),
            ("forecast", old.forecast != new.forecast),
            ("quantile", old.quantile != new.quantile),
            ("hint_socket", old.hint_socket != new.hint_socket),
            ("hint_group", old.hint_group != new.hint_group),
            ("hints", old.no_hints != new.no_hints),
            ("metrics", old.metrics != new.metrics),
            (
                "metrics_cgroups",
                old.metrics_cgroups != new.metrics_cgroups,
            ),
        ] {
            if changed {
                later.push(key);
            }
        }
        match (&old.orchestrator, &new.orchestrator) {
            (Some(a), Some(b)) if a != b => {
                tracing::info!(orchestrator = %b, was = %a, "reporting to another orchestrator from now on");
                let key = self.transmitter.as_ref().and_then(Transmitter::key);
                self.transmitter = Some(Transmitter::new(Target::parse(b), old.interval, key));
                self.reservations.clear();
                self.settings.orchestrator = Some(b.clone());
            }
            (a, b) if a.is_some() != b.is_some() => later.push("orchestrator"),
            _ => {}
        }
        later
    }

    /// Cgroups the collector knows (in scope or not).
    pub fn cgroups(&self) -> usize {
        self.collector.cgroups()
    }

    /// How long each tick took to read and resolve the maps and read the
    /// memory levels, in ms.
    pub fn collect_ms(&self) -> &[f64] {
        &self.collect_ms
    }

    /// Each probe's cumulative events and run time; empty unless metrics
    /// are on (bpf_stats).
    pub fn probe_costs(&self) -> Vec<crate::probes::Cost> {
        if self.settings.metrics.is_some() {
            self.probes.costs()
        } else {
            Vec::new()
        }
    }

    /// What the hint socket did so far, if it is open.
    pub fn hint_counts(&self) -> Option<hint::ledger::Counts> {
        self.hints.as_ref().map(|(_, ledger)| lock(ledger).counts)
    }

    /// True if hints are being taken (the socket is open).
    pub fn hints_on(&self) -> bool {
        self.hints.is_some()
    }

    /// Where hints are taken, if the socket is open.
    pub fn hint_socket(&self) -> Option<&Path> {
        self.hints.as_ref().map(|(server, _)| server.path())
    }

    /// What started, as the lines a front end shows people before it
    /// begins (tests wait for "observing").
    pub fn started(&self) -> Vec<String> {
        let (attached, probes) = self.attached();
        let mut lines = vec![format!(
            "shadow-agent: observing, {attached}/{probes} probes attached"
        )];
        if let Some(path) = self.hint_socket() {
            lines.push(format!("shadow-agent: hints on {}", path.display()));
        }
        lines
    }

    /// Probes attached, of those the object has.
    pub fn attached(&self) -> (usize, usize) {
        let reports = self.probes.reports();
        let attached = reports
            .iter()
            .filter(|r| r.status == Status::Attached)
            .count();
        (attached, reports.len())
    }
}

/// Opens the hint socket; observation goes on without it if it cannot,
/// unless it cannot be what the configuration asks (its group): then the
/// agent refuses to start, rather than lose every hint quietly.
fn start_hints(
    settings: &Settings,
    v2_root: &Path,
    capacity: hint::Amounts,
) -> anyhow::Result<Option<(hint::server::Server, Arc<Mutex<Ledger>>)>> {
    let limits = hint::ClientLimits::new(capacity);
    let ledger = Arc::new(Mutex::new(Ledger::new(limits)));
    let config = hint::server::Config {
        path: settings.hint_socket.clone(),
        group: settings.hint_group.clone(),
        limits,
        v2_root: v2_root.to_owned(),
        scope: settings.cgroup.clone(),
    };
    match hint::server::Server::start(config, Arc::clone(&ledger)) {
        Ok(server) => Ok(Some((server, ledger))),
        Err(e) if e.is_configuration() => {
            Err(anyhow::Error::new(e).context("setting up the hint socket (hint_group)"))
        }
        Err(e) => {
            tracing::warn!(cause = %e, "no hint socket; observing without hints");
            Ok(None)
        }
    }
}

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}
