//! The shadows: one per observed cgroup, with an online forecaster per
//! resource it uses, fed every interval; they say what each cgroup is
//! expected to need next and, through a [`Reporter`] per series, when that
//! forecast is worth sending to the orchestrator.
//!
//! CPU *demand* is forecast for every cgroup: the time its tasks ran plus
//! the time they waited on a run queue (schedstat run delay), in cores. Usage
//! alone cannot see past a CPU quota: a cgroup throttled at its quota shows
//! usage equal to the quota whatever it asks for, while its tasks' waiting
//! time grows with the unmet demand. On an idle host the two are the same.
//! Run delay sums over every waiting task, so eight threads queued behind a
//! quota count eight times; demand is therefore capped at the CPUs this
//! agent may use: a cgroup cannot run on more, so waiting beyond that is
//! its threads queueing behind each other, which no reservation can meet
//! (uncapped, a 1.2-core burst on a 2-CPU host showed as 3 to 8 cores and
//! kept the next interval's band above 2 cores between bursts).
//!
//! CPU is forecast for every cgroup. Block I/O and network get a forecaster
//! only once the cgroup has used them: each forecaster holds about 4 KiB,
//! and most cgroups never touch a disk or a socket. Memory gets one once
//! its level is known (the collector read the cgroup's memory files).
//!
//! Memory is a *level*, not a rate: the value fed is the bytes in use at
//! the end of the interval (`memory_bytes`), and the forecast at horizon h
//! is the level expected then, with its upper band. The same forecaster
//! serves (its experts and calibrated band do not assume a rate); what
//! differs is how the band is used: the orchestrator reserves the highest
//! band within its look-ahead, which for a level is how high it can go
//! before then (docs/forecasting.md).
//!
//! Hints (crate::hint) are fused here: a live hint is a prior under the
//! forecast of its cgroup. At every horizon whose interval overlaps the
//! hinted window, the upper band is at least `amount × confidence × trust`
//! (the point forecast is left to the model: the hint says what may come,
//! the model what is likely). A band raised that way is marked
//! [`Source::Hint`], and such forecasts are always sent, as is the first
//! one after a hint stops raising the band, so the orchestrator sees both
//! edges of the window. The realised usage is handed back to the hint ledger,
//! which judges each hint after its window and updates the trust.
//!
//! Between announced windows the band is conditioned on the hints: a series
//! whose bursts are announced gets a second, *quiet* forecaster, fed only
//! with the intervals no hint window (nor the interval after one) covers.
//! At every horizon outside a window its forecast replaces the model's: a
//! model fed the bursts too holds its band near the burst level between
//! them, which is what the announcements make unnecessary. Bursts that come
//! unannounced land in the quiet forecaster as well, so its band widens by
//! itself when the hints stop covering them.

use std::{collections::HashMap, time::Duration};

use serde::Serialize;

use shadow_forecast::{Config, Error, Forecast, Forecaster, Reporter, ReporterConfig};

use shadow_wire::{Resource, Source};

use crate::{
    collector::Sample,
    hint::{Amounts, Ledger},
};

/// One cgroup's CPU forecast for the next interval (`observe --forecast`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CpuForecast {
    /// CPU demand in the interval just ended (ran + waited to run), in
    /// cores.
    pub cpu_demand_cores: f64,
    /// Expected CPU demand over the next interval, in cores.
    pub cpu_forecast_cores: f64,
    /// Upper band of that demand at the configured quantile, in cores.
    pub cpu_upper_cores: f64,
    /// Recent mean absolute one-interval error, in cores.
    pub cpu_volatility_cores: f64,
    /// True if a hint's window covers the next interval (its prior is in
    /// `cpu_upper_cores` when above the model's band).
    pub hint_active: bool,
    /// That hint's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint_id: Option<u64>,
    /// The trust this cgroup's hints have earned, 0..=1 (None when the
    /// hint socket is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint_trust: Option<f64>,
}

/// One cgroup's memory forecast for the next interval (`observe
/// --forecast`): a level, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MemoryForecast {
    /// Expected bytes in use at the end of the next interval.
    pub memory_forecast_bytes: f64,
    /// Upper band of that level at the configured quantile (raised to a
    /// memory hint's prior inside its window).
    pub memory_upper_bytes: f64,
}

/// One resource of one cgroup after an interval.
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    /// Which resource.
    pub resource: Resource,
    /// Usage over the interval, in the resource's unit.
    pub value: f64,
    /// The forecast made from it (None if the sample was refused).
    pub forecast: Option<Forecast>,
    /// True if the forecast should be sent on (adaptive reporting).
    pub send: bool,
    /// Whether a hint raised the upper band at some horizon.
    pub source: Source,
    /// The hint whose window covers the next interval, if any.
    pub hint: Option<u64>,
}

/// One resource of one cgroup: its forecaster and reporting state.
struct ResourceShadow {
    forecaster: Forecaster,
    reporter: Reporter,
    /// The last forecast's band was raised by a hint.
    hinted: bool,
    /// The series outside announced windows, once it has had a hint.
    quiet: Option<Box<Quiet>>,
}

/// A forecaster of the intervals no hint window covers.
struct Quiet {
    forecaster: Forecaster,
    updates: u32,
}

/// Updates a quiet forecaster needs before its band is used: its band is
/// calibrated from its own errors, which takes a few dozen of them.
const QUIET_WARMUP: u32 = 30;

/// What fusing hints needs besides the series.
struct Hints<'a> {
    ledger: &'a Ledger,
    path: &'a str,
    interval_s: f64,
    config: Config,
}

/// The series of one cgroup.
struct Shadow {
    cpu: ResourceShadow,
    memory: Option<Box<ResourceShadow>>,
    io: Option<Box<ResourceShadow>>,
    net: Option<Box<ResourceShadow>>,
}

/// A shadow per cgroup id.
pub struct Shadows {
    config: Config,
    reporting: ReporterConfig,
    /// CPUs this agent may use: the cap on CPU demand.
    cpus: f64,
    by_id: HashMap<u64, Shadow>,
}

impl Shadows {
    /// Shadows for samples every `interval`, bands at `quantile`,
    /// forecasting horizons 1..=`horizon` intervals, with CPU demand capped
    /// at `cpus` (the CPUs this agent may use: the caller reads the host).
    pub fn new(
        interval: Duration,
        quantile: f64,
        horizon: usize,
        cpus: f64,
    ) -> Result<Self, Error> {
        let config = Config::new(interval.as_secs_f64())?
            .with_horizon(horizon)?
            .with_quantile(quantile)?;
        Ok(Self {
            config,
            reporting: ReporterConfig::for_interval(interval.as_secs_f64()),
            cpus,
            by_id: HashMap::new(),
        })
    }

    /// The longest silence of a steady series, in seconds.
    pub fn heartbeat_s(&self) -> f64 {
        self.reporting.heartbeat_s
    }

    /// Feeds one interval's sample to its cgroup's shadow; appends one
    /// observation per resource the cgroup has used to `out`. Nothing is
    /// appended for an empty interval.
    pub fn observe(&mut self, sample: &Sample, out: &mut Vec<Observation>) {
        self.observe_hinted(sample, None, out);
    }

    /// [`Shadows::observe`] with the live hints of `ledger` fused into the
    /// forecasts and the realised usage recorded for judging them.
    pub fn observe_hinted(
        &mut self,
        sample: &Sample,
        ledger: Option<&mut Ledger>,
        out: &mut Vec<Observation>,
    ) {
        if sample.interval_ns == 0 {
            return;
        }
        let secs = sample.interval_ns as f64 / 1e9;
        let u = &sample.usage;
        let used = u.cpu_ns as f64 / sample.interval_ns as f64;
        let cpu = ((u.cpu_ns + u.runq_delay_ns) as f64 / sample.interval_ns as f64)
            .min(self.cpus.max(used));
        let io = (u.io_read_bytes + u.io_write_bytes) as f64 / secs;
        let net = (u.net_rx_bytes + u.net_tx_bytes) as f64 / secs;
        // A level: None when the cgroup's memory files could not be read.
        let memory = sample.memory.memory_bytes.map(|b| b as f64);
        let (config, reporting) = (self.config, self.reporting);
        let new = || ResourceShadow {
            forecaster: Forecaster::new(config),
            reporter: Reporter::new(reporting),
            hinted: false,
            quiet: None,
        };
        let path = sample.cgroup.as_str();
        let hinted = |ledger: &Option<&mut Ledger>, r| {
            ledger
                .as_ref()
                .is_some_and(|b| b.hints_resource(path, r, sample.ts))
        };
        let (io_hinted, net_hinted) = (
            hinted(&ledger, Resource::Io),
            hinted(&ledger, Resource::Net),
        );
        let shadow = self
            .by_id
            .entry(sample.cgroup_id)
            .or_insert_with(|| Shadow {
                cpu: new(),
                memory: None,
                io: None,
                net: None,
            });
        let hints = ledger.as_deref().map(|ledger| Hints {
            ledger,
            path,
            interval_s: config.interval_s(),
            config,
        });
        let mut push = |series: &mut ResourceShadow, resource, value| {
            out.push(step(series, resource, sample.ts, value, hints.as_ref()));
        };
        push(&mut shadow.cpu, Resource::Cpu, cpu);
        // Fed only when known: an unknown level is not a zero.
        if let Some(level) = memory {
            let series = shadow.memory.get_or_insert_with(|| Box::new(new()));
            push(series, Resource::Memory, level);
        }
        for (slot, resource, value, hinted) in [
            (&mut shadow.io, Resource::Io, io, io_hinted),
            (&mut shadow.net, Resource::Net, net, net_hinted),
        ] {
            if slot.is_none() && (value > 0.0 || hinted) {
                *slot = Some(Box::new(new()));
            }
            if let Some(series) = slot {
                push(series, resource, value);
            }
        }
        if let Some(b) = ledger {
            let usage = Amounts {
                cpu,
                memory: memory.unwrap_or(0.0),
                io,
                net,
            };
            b.record(path, sample.ts, secs, usage);
        }
    }

    /// The CPU forecast among `observations` in the shape `observe` prints.
    pub fn cpu_forecast(observations: &[Observation]) -> Option<CpuForecast> {
        let r = observations.iter().find(|r| r.resource == Resource::Cpu)?;
        let f = r.forecast?;
        Some(CpuForecast {
            cpu_demand_cores: r.value,
            cpu_forecast_cores: f.point[0],
            cpu_upper_cores: f.upper[0],
            cpu_volatility_cores: f.volatility,
            hint_active: r.hint.is_some(),
            hint_id: r.hint,
            hint_trust: None,
        })
    }

    /// The memory forecast among `observations`, if the level was known.
    pub fn memory_forecast(observations: &[Observation]) -> Option<MemoryForecast> {
        let r = observations
            .iter()
            .find(|r| r.resource == Resource::Memory)?;
        let f = r.forecast?;
        Some(MemoryForecast {
            memory_forecast_bytes: f.point[0],
            memory_upper_bytes: f.upper[0],
        })
    }

    /// Drops the shadows of cgroups that no longer report (removed).
    pub fn retain_only(&mut self, samples: &[Sample]) {
        let live: std::collections::HashSet<u64> = samples.iter().map(|s| s.cgroup_id).collect();
        self.by_id.retain(|id, _| live.contains(id));
    }

    /// Number of shadows.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Updates one series (and its quiet forecaster), conditions the forecast
/// on the hints, and asks the reporter whether it is worth sending. A
/// refused sample (a clock that went backwards) leaves the state alone and
/// yields no forecast.
fn step(
    series: &mut ResourceShadow,
    resource: Resource,
    t: f64,
    value: f64,
    hints: Option<&Hints<'_>>,
) -> Observation {
    let mut forecast = series
        .forecaster
        .update(t, value)
        .ok()
        .map(|_| series.forecaster.forecast());
    let mut hint = None;
    let mut raised = false;
    if let Some(h) = hints {
        feed_quiet(series, h, resource, t, value);
        if let Some(f) = &mut forecast {
            let quiet = series.quiet.as_ref().filter(|q| q.updates >= QUIET_WARMUP);
            (hint, raised) = fuse(f, quiet.map(|q| q.forecaster.forecast()), h, resource, t);
        }
    }
    let offered = forecast.is_some_and(|f| series.reporter.offer(value, &f).is_some());
    // Hinted forecasts are always sent, and so is the first one after, so
    // the orchestrator sees both edges of the window.
    let send = offered || raised || series.hinted;
    series.hinted = raised;
    Observation {
        resource,
        value,
        forecast,
        send,
        source: if raised { Source::Hint } else { Source::Model },
        hint,
    }
}

/// Starts the quiet forecaster at the series' first hint, and feeds it the
/// intervals outside every window, with one interval to spare on each side
/// (the application's clock and ours differ, and a burst may start a little
/// early or run on a little past what was announced).
fn feed_quiet(series: &mut ResourceShadow, h: &Hints<'_>, resource: Resource, t: f64, value: f64) {
    if series.quiet.is_none() && h.ledger.hints_resource(h.path, resource, t) {
        series.quiet = Some(Box::new(Quiet {
            forecaster: Forecaster::new(h.config),
            updates: 0,
        }));
    }
    let Some(q) = &mut series.quiet else {
        return;
    };
    let covered = h
        .ledger
        .prior(h.path, resource, t - 2.0 * h.interval_s, t + h.interval_s)
        .is_some();
    if !covered && q.forecaster.update(t, value).is_ok() {
        q.updates = q.updates.saturating_add(1);
    }
}

/// Per horizon `h` (the interval `(t + hΔ, t + (h+1)Δ]`): inside a hint
/// window, the band is at least the hint's prior; outside every window, the
/// quiet forecast (when there is one) replaces the model's. Returns the
/// hint covering the next interval and whether a prior raised the band.
fn fuse(
    f: &mut Forecast,
    quiet: Option<Forecast>,
    h: &Hints<'_>,
    resource: Resource,
    t: f64,
) -> (Option<u64>, bool) {
    let mut hint = None;
    let mut raised = false;
    for i in 0..f.horizon {
        let from = t + i as f64 * h.interval_s;
        match h.ledger.prior(h.path, resource, from, from + h.interval_s) {
            Some(prior) => {
                if i == 0 {
                    hint = Some(prior.id);
                }
                if prior.floor > f.upper[i] {
                    f.upper[i] = prior.floor;
                    raised = true;
                }
            }
            None => {
                if let Some(q) = &quiet {
                    f.point[i] = q.point[i];
                    f.upper[i] = q.upper[i];
                }
            }
        }
    }
    (hint, raised)
}

#[cfg(test)]
mod tests;
