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
mod tests {
    use agent_ebpf::Counters;

    use super::*;

    /// The CPUs the tests' agent may use.
    const CPUS: f64 = 4.0;

    /// A ledger on a host with 8 CPUs and plenty of everything else.
    fn ledger() -> Ledger {
        use crate::hint::{Amounts, ClientLimits};
        Ledger::new(ClientLimits::new(Amounts {
            cpu: 8.0,
            memory: 1e12,
            io: 1e12,
            net: 1e12,
        }))
    }

    /// Submits the hint `json` for /c1 at `now`; its id.
    fn hint(ledger: &mut Ledger, json: &[u8], now: f64) -> u64 {
        let Ok(crate::hint::protocol::Command::Hint(spec)) =
            crate::hint::parse_line(json, ledger.limits())
        else {
            panic!("hint refused")
        };
        ledger.submit("/c1", &spec, now).unwrap().id
    }

    fn sample(id: u64, ts: f64, cores: f64, io_bytes: u64) -> Sample {
        Sample {
            ts,
            cgroup: format!("/c{id}"),
            cgroup_id: id,
            interval_ns: 1_000_000_000,
            usage: Counters {
                cpu_ns: (cores * 1e9) as u64,
                io_write_bytes: io_bytes,
                ..Counters::default()
            },
            memory: Default::default(),
        }
    }

    #[test]
    fn steady_demand_is_forecast_with_a_band_above_it() {
        let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 1, CPUS).unwrap();
        let mut observations = Vec::new();
        let mut sent = 0;
        for i in 0..300 {
            // 1.5 cores with a small wobble.
            let cores = 1.5 + 0.1 * ((i % 7) as f64 / 7.0 - 0.5);
            observations.clear();
            shadows.observe(&sample(1, f64::from(i), cores, 0), &mut observations);
            sent += usize::from(observations[0].send);
        }
        assert_eq!(observations.len(), 1, "no I/O or network used: CPU only");
        let f = Shadows::cpu_forecast(&observations).expect("a forecast");
        assert!((f.cpu_forecast_cores - 1.5).abs() < 0.1, "{f:?}");
        assert!(f.cpu_upper_cores >= f.cpu_forecast_cores, "{f:?}");
        assert!(
            f.cpu_upper_cores < 2.0,
            "band too wide for a steady series: {f:?}"
        );
        // A steady series reports rarely: far fewer than one per tick.
        assert!(sent < 60, "{sent} reports in 300 ticks");
    }

    #[test]
    fn demand_counts_waiting_but_never_more_than_the_cpus() {
        let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 1, CPUS).unwrap();
        let mut out = Vec::new();
        let mut s = sample(1, 1.0, 0.25, 0);
        s.usage.runq_delay_ns = 250_000_000;
        shadows.observe(&s, &mut out);
        assert_eq!(out[0].value, 0.5, "ran + waited");
        // Many threads queued: the summed waits exceed what the CPUs could
        // serve.
        out.clear();
        let mut s = sample(1, 2.0, 0.5, 0);
        s.usage.runq_delay_ns = (CPUS * 4.0 * 1e9) as u64;
        shadows.observe(&s, &mut out);
        assert_eq!(out[0].value, CPUS);
    }

    #[test]
    fn io_is_forecast_once_used() {
        let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 6, CPUS).unwrap();
        let mut observations = Vec::new();
        shadows.observe(&sample(1, 1.0, 0.5, 0), &mut observations);
        assert_eq!(observations.len(), 1);
        observations.clear();
        shadows.observe(&sample(1, 2.0, 0.5, 4096), &mut observations);
        let io = observations
            .iter()
            .find(|r| r.resource == Resource::Io)
            .unwrap();
        assert_eq!(io.value, 4096.0);
        assert_eq!(io.forecast.unwrap().horizon, 6);
        assert!(io.send, "a new series' first forecast is sent");
    }

    #[test]
    fn a_hint_raises_the_band_in_its_window_only_and_is_judged() {
        use crate::hint::ledger::INITIAL_TRUST;
        let mut ledger = ledger();
        let id = hint(
            &mut ledger,
            br#"{"cpu":4,"net":1000,"start_in":"10s","duration":"5s"}"#,
            100.0,
        );
        let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 6, CPUS).unwrap();
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for t in 90..=120 {
            out.clear();
            shadows.observe_hinted(
                &sample(1, f64::from(t), 0.5, 0),
                Some(&mut ledger),
                &mut out,
            );
            let cpu = out[0];
            let f = Shadows::cpu_forecast(&out).unwrap();
            seen.push((t, f.cpu_upper_cores, cpu.source, cpu.hint, cpu.send));
            // The next interval (t, t+1] overlaps the window [110, 115).
            let inside = (110..=114).contains(&t);
            assert_eq!(f.hint_id.is_some(), inside, "t={t}: {seen:?}");
            if inside {
                assert_eq!(f.hint_id, Some(id));
                assert!(f.cpu_upper_cores >= 4.0 * INITIAL_TRUST, "t={t}");
                assert_eq!(cpu.source, Source::Hint);
                assert!(cpu.send, "hinted forecasts are always sent");
                assert!(
                    out.iter().any(|r| r.resource == Resource::Net),
                    "net series made for the hint"
                );
            } else if !(104..=116).contains(&t) {
                assert!(f.cpu_upper_cores < 2.0, "t={t}: {seen:?}");
                assert_eq!(cpu.source, Source::Model);
            }
            ledger.settle(f64::from(t), 1.0);
        }
        // Hinted 4 cores (and 1000 B/s), used 0.5 (and nothing): trusted less.
        assert!(
            ledger.trust("/c1") < INITIAL_TRUST - 0.2,
            "{}",
            ledger.trust("/c1")
        );
    }

    #[test]
    fn between_announced_bursts_the_band_comes_down_to_the_quiet_level() {
        let mut ledger = ledger();
        let mut hinted = Shadows::new(Duration::from_secs(1), 0.95, 3, CPUS).unwrap();
        let mut blind = Shadows::new(Duration::from_secs(1), 0.95, 3, CPUS).unwrap();
        let (mut out, mut blind_out) = (Vec::new(), Vec::new());
        let (mut quiet_bands, mut blind_bands, mut window_bands) = (vec![], vec![], vec![]);
        // 0.3 cores, bursts of 1.5 cores for 3 s at irregular gaps of 8 to
        // 17 s (nothing a model could learn the timing of), each announced
        // 4 s ahead.
        let mut next_burst = 10u64;
        let mut lcg = 12345u64;
        for t in 0..600u64 {
            let ts = 1000.0 + t as f64;
            if t + 4 == next_burst {
                hint(
                    &mut ledger,
                    br#"{"cpu":1.5,"start_in":"4s","duration":"3s"}"#,
                    ts,
                );
            }
            // The sample at `ts` is the interval ending there.
            let in_burst = t > next_burst && t <= next_burst + 3;
            let cores = if in_burst { 1.5 } else { 0.3 };
            out.clear();
            hinted.observe_hinted(&sample(1, ts, cores, 0), Some(&mut ledger), &mut out);
            blind_out.clear();
            blind.observe(&sample(1, ts, cores, 0), &mut blind_out);
            let (f, b) = (out[0].forecast.unwrap(), blind_out[0].forecast.unwrap());
            let top = |f: &Forecast| f.upper[..3].iter().copied().fold(0.0, f64::max);
            // Quiet stretches: the next three intervals are outside every
            // window (and not just after one).
            let quiet = t > next_burst + 4 || t + 4 < next_burst;
            if t >= 200 && quiet && t < next_burst {
                quiet_bands.push(top(&f));
                blind_bands.push(top(&b));
            }
            if t >= 200 && t + 1 == next_burst {
                window_bands.push(f.upper[1]);
            }
            ledger.settle(ts, 1.5);
            if t == next_burst + 3 {
                lcg = lcg
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                next_burst += 8 + (lcg >> 33) % 10;
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (q, b) = (median(&mut quiet_bands), median(&mut blind_bands));
        assert!(
            b > 1.0,
            "the model alone holds the band near the bursts: {b}"
        );
        assert!(
            q < 0.5,
            "announced bursts: the band between them is quiet: {q}"
        );
        assert!(
            window_bands.iter().all(|&w| w >= 1.5 * 0.5),
            "inside a window the band is the hint's: {window_bands:?}"
        );
    }

    /// A sample with a known memory level of `bytes`.
    fn with_memory(mut s: Sample, bytes: u64) -> Sample {
        s.memory.memory_bytes = Some(bytes);
        s
    }

    #[test]
    fn memory_is_forecast_as_a_level_once_known() {
        const MIB: f64 = 1024.0 * 1024.0;
        let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 6, CPUS).unwrap();
        let mut out = Vec::new();
        // Unknown level: no memory series (an unknown is not a zero).
        shadows.observe(&sample(1, 0.0, 0.1, 0), &mut out);
        assert!(out.iter().all(|o| o.resource != Resource::Memory));
        // A working set of 512 MiB with a small wobble, then a jump to
        // 1 GiB that stays: a level with a rare jump.
        let mut last = None;
        for t in 1..400u64 {
            let level = if t < 300 { 512.0 } else { 1024.0 } * MIB + (t % 5) as f64 * 64e3;
            out.clear();
            shadows.observe(
                &with_memory(sample(1, t as f64, 0.1, 0), level as u64),
                &mut out,
            );
            let m = out.iter().find(|o| o.resource == Resource::Memory).unwrap();
            assert_eq!(m.value, level.floor());
            assert_eq!(
                m.forecast.unwrap().horizon,
                6,
                "forecast over the look-ahead"
            );
            if t == 299 {
                let f = Shadows::memory_forecast(&out).unwrap();
                assert!((f.memory_forecast_bytes / MIB - 512.0).abs() < 8.0, "{f:?}");
                assert!(f.memory_upper_bytes >= f.memory_forecast_bytes, "{f:?}");
                assert!(f.memory_upper_bytes < 560.0 * MIB, "band too wide: {f:?}");
            }
            last = Shadows::memory_forecast(&out);
            // The jump is followed within two ticks (a rare jump cannot
            // be foreseen: the tick of the jump itself is a miss).
            if t == 302 {
                let f = last.unwrap();
                assert!(
                    (f.memory_forecast_bytes / MIB - 1024.0).abs() < 16.0,
                    "{f:?}"
                );
            }
        }
        // A hundred intervals after the jump the level is the new one.
        let f = last.unwrap();
        assert!(
            (f.memory_forecast_bytes / MIB - 1024.0).abs() < 16.0,
            "{f:?}"
        );
        assert!(f.memory_upper_bytes >= 1000.0 * MIB, "{f:?}");
    }

    #[test]
    fn a_memory_hint_raises_the_memory_band_and_is_judged_on_the_level() {
        use crate::hint::ledger::INITIAL_TRUST;
        const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
        let mut ledger = ledger();
        let id = hint(
            &mut ledger,
            br#"{"memory":"2GiB","start_in":"10s","duration":"5s"}"#,
            100.0,
        );
        let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 6, CPUS).unwrap();
        let mut out = Vec::new();
        for t in 90..=120 {
            out.clear();
            // Holds 1 GiB throughout: half of what was announced.
            let s = with_memory(sample(1, f64::from(t), 0.1, 0), 1 << 30);
            shadows.observe_hinted(&s, Some(&mut ledger), &mut out);
            let m = *out.iter().find(|o| o.resource == Resource::Memory).unwrap();
            let f = m.forecast.unwrap();
            if (110..=114).contains(&t) {
                assert_eq!(m.hint, Some(id), "t={t}");
                assert_eq!(m.source, Source::Hint, "t={t}");
                assert!(f.upper[0] >= 2.0 * GIB * INITIAL_TRUST, "t={t}: {f:?}");
                assert!(m.send, "hinted forecasts are always sent");
            } else if !(104..=116).contains(&t) {
                assert_eq!(m.source, Source::Model, "t={t}");
                assert!(f.upper[0] < 1.2 * GIB, "t={t}: {f:?}");
            }
            ledger.settle(f64::from(t), 1.0);
        }
        // Used half the hinted level: trusted less, but not as little as
        // a hint of which nothing came.
        let trust = ledger.trust("/c1");
        assert!(trust < INITIAL_TRUST && trust > 0.5, "{trust}");
    }

    #[test]
    fn shadows_are_per_cgroup_and_dropped_with_it() {
        let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 1, CPUS).unwrap();
        let mut out = Vec::new();
        shadows.observe(&sample(1, 1.0, 1.0, 0), &mut out);
        shadows.observe(&sample(2, 1.0, 0.0, 0), &mut out);
        assert_eq!(shadows.len(), 2);
        shadows.retain_only(&[sample(2, 2.0, 0.0, 0)]);
        assert_eq!(shadows.len(), 1);
        // A time that goes backwards is refused, not a panic.
        out.clear();
        shadows.observe(&sample(2, 0.5, 1.0, 0), &mut out);
        assert!(out[0].forecast.is_none());
        assert!(Shadows::new(Duration::ZERO, 0.95, 1, CPUS).is_err());
    }
}
