//! Prometheus metrics of the agent (`observe --metrics ADDR`, off by
//! default): per-cgroup usage counters, forecast and reservation gauges,
//! the band's realised shortfall and slack, hint counts, each probe's
//! events and run time, and the agent's own cost. docs/metrics.md lists
//! every family.
//!
//! Cardinality is bounded: per-cgroup series exist for at most
//! `max_cgroups` cgroups, admitted in the order they first show activity
//! and kept while they live, so a counter never restarts because a ranking
//! moved. A cgroup without activity for [`DROP_AFTER_TICKS`] ticks (a
//! removed one too: it is dropped after the same wait) loses its series
//! and frees its place; cgroups that found no place
//! are counted (`cgroups_unlabelled`), and the root cgroup `/` always has
//! the host's totals.
//!
//! Layout:
//! - `families.rs`: every family, made and registered once.
//! - `cgroup.rs`: the per-cgroup series and their cap.
//! - `process.rs`: the agent's own CPU time and memory.

mod cgroup;
mod families;
mod process;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    sync::{Mutex, atomic::AtomicU64},
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{hint::ledger::Counts, pipeline::Row, probes::Cost};
use cgroup::Cgroups;
use families::Families;

/// Default most cgroups with their own series: with 10 per cgroup, 10,000
/// series, which one scrape encodes in a few milliseconds.
pub const DEFAULT_MAX_CGROUPS: usize = 1000;

/// Ticks without activity after which a cgroup's series are dropped.
pub const DROP_AFTER_TICKS: u64 = 600;

type Labels = Vec<(String, String)>;
type CounterF = Counter<f64, AtomicU64>;
type GaugeF = Gauge<f64, AtomicU64>;

/// Every metric, registered once, and the bookkeeping of per-cgroup series.
pub struct AgentMetrics {
    registry: Registry,
    families: Families,
    tick: Histogram,
    state: Mutex<State>,
    max_cgroups: usize,
}

/// Between ticks: which cgroups have series, and the last totals of the
/// kernel's cumulative figures (turned into counter increments).
#[derive(Default)]
struct State {
    tick: u64,
    cgroups: Cgroups,
    probes: HashMap<&'static str, (u64, f64)>,
    hints: Counts,
    process_cpu: f64,
}

/// What one tick brings besides the rows.
pub struct Tick<'a> {
    /// The rows the pipeline returned.
    pub rows: &'a [Row],
    /// How long the pipeline's tick took, in seconds.
    pub seconds: f64,
    /// Cgroups the collector knows.
    pub cgroups: usize,
    /// Each probe's cumulative events and run time (with `bpf_stats` on).
    pub probes: &'a [Cost],
    /// The hint socket's counts, if it is open.
    pub hints: Option<Counts>,
}

impl AgentMetrics {
    /// Registers every family under `shadow_agent`, with per-cgroup series
    /// for at most `max_cgroups` cgroups.
    pub fn new(max_cgroups: usize) -> Self {
        let families = Families::default();
        let tick = Histogram::new([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0]);
        Self {
            registry: families::registry(&families, &tick),
            families,
            tick,
            state: Mutex::new(State::default()),
            max_cgroups,
        }
    }

    /// Records one tick.
    pub fn record(&self, t: &Tick<'_>) {
        let f = &self.families;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.tick += 1;
        let now = state.tick;
        let unlabelled = state.cgroups.record(f, t.rows, now, self.max_cgroups);
        f.series.set(state.cgroups.len() as i64);
        f.unlabelled.set(unlabelled);
        f.active.set(t.rows.len() as i64);
        f.cgroups.set(t.cgroups as i64);
        self.tick.observe(t.seconds);
        for cost in t.probes {
            let (events, run_s) = (cost.events, cost.events as f64 * cost.ns_per_event / 1e9);
            let (was_events, was_s) = state
                .probes
                .insert(cost.program, (events, run_s))
                .unwrap_or_default();
            let label = vec![("program".to_owned(), cost.program.to_owned())];
            f.probe_events
                .get_or_create(&label)
                .inc_by(events.saturating_sub(was_events));
            f.probe_seconds
                .get_or_create(&label)
                .inc_by((run_s - was_s).max(0.0));
        }
        if let Some(h) = t.hints {
            let was = std::mem::replace(&mut state.hints, h);
            for (outcome, n) in [
                ("accepted", h.accepted.saturating_sub(was.accepted)),
                ("refused", h.refused.saturating_sub(was.refused)),
                ("judged", h.judged.saturating_sub(was.judged)),
            ] {
                f.hints
                    .get_or_create(&vec![("outcome".to_owned(), outcome.to_owned())])
                    .inc_by(n);
            }
        }
        let (cpu, rss) = process::own_cost();
        f.process_cpu.inc_by((cpu - state.process_cpu).max(0.0));
        state.process_cpu = cpu.max(state.process_cpu);
        f.process_rss.set(rss as i64);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
