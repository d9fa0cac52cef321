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

use std::{
    collections::HashMap,
    sync::{Mutex, atomic::AtomicU64},
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::{hint::ledger::Counts, pipeline::Row, probes::Cost};

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

/// The registered metrics (clones share their values with the registry).
#[derive(Default)]
struct Families {
    cpu_seconds: Family<Labels, CounterF>,
    runq_seconds: Family<Labels, CounterF>,
    page_faults: Family<Labels, Counter>,
    io_bytes: Family<Labels, Counter>,
    io_ops: Family<Labels, Counter>,
    net_bytes: Family<Labels, Counter>,
    forecast: Family<Labels, GaugeF>,
    upper: Family<Labels, GaugeF>,
    reserved: Family<Labels, GaugeF>,
    managed: Family<Labels, Gauge>,
    trust: Family<Labels, GaugeF>,
    shortfall: Family<Labels, CounterF>,
    slack: Family<Labels, CounterF>,
    hints: Family<Labels, Counter>,
    probe_events: Family<Labels, Counter>,
    probe_seconds: Family<Labels, CounterF>,
    process_cpu: CounterF,
    process_rss: Gauge,
    cgroups: Gauge,
    active: Gauge,
    series: Gauge,
    unlabelled: Gauge,
}

/// Between ticks: which cgroups have series, and the last totals of the
/// kernel's cumulative figures (turned into counter increments).
#[derive(Default)]
struct State {
    tick: u64,
    cgroups: HashMap<String, Seen>,
    probes: HashMap<&'static str, (u64, f64)>,
    hints: Counts,
    process_cpu: f64,
}

/// A cgroup with series: when it was last active, its upper band for the
/// coming interval (what the next interval's demand is judged by), and
/// handles on its series, so a tick neither hashes nor allocates labels.
struct Seen {
    tick: u64,
    upper: Option<f64>,
    series: CgroupSeries,
}

/// One cgroup's series. Those that only some cgroups have (a forecast, a
/// reservation, a trust) are made when first needed: a missing series
/// says "none", where 0 would say "zero".
struct CgroupSeries {
    label: Labels,
    cpu: CounterF,
    runq: CounterF,
    faults: Counter,
    io_read: Counter,
    io_write: Counter,
    io_ops: Counter,
    tx: Counter,
    rx: Counter,
    forecast: Option<(GaugeF, GaugeF, CounterF, CounterF)>,
    reserved: Option<(GaugeF, Gauge)>,
    trust: Option<GaugeF>,
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
        let f = Families::default();
        let tick = Histogram::new([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0]);
        let mut r = Registry::with_prefix("shadow_agent");
        let s = Unit::Seconds;
        let per =
            |what: &str| format!("{what}, per cgroup (label `cgroup`: path under the v2 root)");
        r.register_with_unit(
            "cgroup_cpu",
            per("CPU time"),
            s.clone(),
            f.cpu_seconds.clone(),
        );
        r.register_with_unit(
            "cgroup_runq_delay",
            per("Time runnable tasks waited on a run queue, summed over tasks"),
            s.clone(),
            f.runq_seconds.clone(),
        );
        r.register(
            "cgroup_page_faults",
            per("Page faults"),
            f.page_faults.clone(),
        );
        r.register_with_unit(
            "cgroup_io",
            per("Block I/O completed, by `op` (read, write)"),
            Unit::Bytes,
            f.io_bytes.clone(),
        );
        r.register(
            "cgroup_io_operations",
            per("Block requests completed"),
            f.io_ops.clone(),
        );
        r.register_with_unit(
            "cgroup_net",
            per("IP bytes, by `direction` (tx, rx)"),
            Unit::Bytes,
            f.net_bytes.clone(),
        );
        r.register(
            "cgroup_cpu_forecast_cores",
            per("Forecast of CPU demand (ran + waited) for the next interval"),
            f.forecast.clone(),
        );
        r.register(
            "cgroup_cpu_upper_cores",
            per("Upper band of that forecast"),
            f.upper.clone(),
        );
        r.register(
            "cgroup_cpu_reserved_cores",
            per("CPU the orchestrator reserves (or recommends)"),
            f.reserved.clone(),
        );
        r.register(
            "cgroup_cpu_reservation_managed",
            per("1 if the orchestrator writes this cgroup's knobs, 0 if it only recommends"),
            f.managed.clone(),
        );
        r.register(
            "cgroup_hint_trust",
            per("Trust in the cgroup's hints (0..1)"),
            f.trust.clone(),
        );
        r.register(
            "cgroup_cpu_shortfall_core_seconds",
            per("CPU demand above the upper band forecast for it, integrated over time"),
            f.shortfall.clone(),
        );
        r.register(
            "cgroup_cpu_slack_core_seconds",
            per("Upper band above the CPU demand that came, integrated over time"),
            f.slack.clone(),
        );
        r.register(
            "hints",
            "Hint socket requests, by `outcome` (accepted, refused) and hints judged (judged)",
            f.hints.clone(),
        );
        r.register(
            "probe_events",
            "Events each kernel program ran for (label `program`; needs --metrics, which turns bpf_stats on)",
            f.probe_events.clone(),
        );
        r.register_with_unit(
            "probe_run",
            "Time each kernel program ran; divided by probe_events: ns per event",
            s.clone(),
            f.probe_seconds.clone(),
        );
        r.register_with_unit(
            "process_cpu",
            "CPU time of the agent itself (user + system)",
            s.clone(),
            f.process_cpu.clone(),
        );
        r.register_with_unit(
            "process_resident_memory",
            "Resident memory of the agent",
            Unit::Bytes,
            f.process_rss.clone(),
        );
        r.register_with_unit(
            "tick",
            "Time one tick took: read the maps, resolve cgroups, forecast, report",
            s,
            tick.clone(),
        );
        r.register("cgroups", "Cgroups the agent knows", f.cgroups.clone());
        r.register(
            "cgroups_active",
            "Cgroups active in the last interval",
            f.active.clone(),
        );
        r.register(
            "cgroup_series",
            "Cgroups that have their own series",
            f.series.clone(),
        );
        r.register(
            "cgroups_unlabelled",
            "Cgroups active in the last interval without their own series (the cap was reached)",
            f.unlabelled.clone(),
        );
        Self {
            registry: r,
            families: f,
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
        let mut unlabelled = 0;
        for row in t.rows {
            let cgroup = &row.sample.cgroup;
            if !state.cgroups.contains_key(cgroup) {
                if cgroup != "/" && state.cgroups.len() >= self.max_cgroups {
                    unlabelled += 1;
                    continue;
                }
                let series = self.series(cgroup);
                state.cgroups.insert(
                    cgroup.clone(),
                    Seen {
                        tick: now,
                        upper: None,
                        series,
                    },
                );
            }
            let Some(seen) = state.cgroups.get_mut(cgroup) else {
                continue;
            };
            seen.tick = now;
            let upper_before = seen.upper;
            seen.upper = row.forecast.map(|fc| fc.cpu_upper_cores);
            self.record_row(row, upper_before, &mut seen.series);
        }
        // Idle (or gone) for long: the series go, the place is freed.
        state.cgroups.retain(|_, seen| {
            let keep = now - seen.tick < DROP_AFTER_TICKS;
            if !keep {
                self.forget(&seen.series);
            }
            keep
        });
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
        let (cpu, rss) = own_cost();
        f.process_cpu.inc_by((cpu - state.process_cpu).max(0.0));
        state.process_cpu = cpu.max(state.process_cpu);
        f.process_rss.set(rss as i64);
    }

    /// The always-present series of a newly admitted cgroup.
    fn series(&self, cgroup: &str) -> CgroupSeries {
        let f = &self.families;
        let label = vec![("cgroup".to_owned(), cgroup.to_owned())];
        CgroupSeries {
            cpu: f.cpu_seconds.get_or_create_owned(&label),
            runq: f.runq_seconds.get_or_create_owned(&label),
            faults: f.page_faults.get_or_create_owned(&label),
            io_read: f.io_bytes.get_or_create_owned(&with(&label, IO_READ)),
            io_write: f.io_bytes.get_or_create_owned(&with(&label, IO_WRITE)),
            io_ops: f.io_ops.get_or_create_owned(&label),
            tx: f.net_bytes.get_or_create_owned(&with(&label, NET_TX)),
            rx: f.net_bytes.get_or_create_owned(&with(&label, NET_RX)),
            forecast: None,
            reserved: None,
            trust: None,
            label,
        }
    }

    /// One active cgroup's interval; `upper_before` is the band that was
    /// forecast for it.
    fn record_row(&self, row: &Row, upper_before: Option<f64>, s: &mut CgroupSeries) {
        let f = &self.families;
        let u = &row.sample.usage;
        s.cpu.inc_by(u.cpu_ns as f64 / 1e9);
        s.runq.inc_by(u.runq_delay_ns as f64 / 1e9);
        s.faults.inc_by(u.page_faults);
        s.io_read.inc_by(u.io_read_bytes);
        s.io_write.inc_by(u.io_write_bytes);
        s.io_ops.inc_by(u.io_ops);
        s.tx.inc_by(u.net_tx_bytes);
        s.rx.inc_by(u.net_rx_bytes);
        if let Some(fc) = row.forecast {
            let (point, upper, shortfall, slack) = s.forecast.get_or_insert_with(|| {
                (
                    f.forecast.get_or_create_owned(&s.label),
                    f.upper.get_or_create_owned(&s.label),
                    f.shortfall.get_or_create_owned(&s.label),
                    f.slack.get_or_create_owned(&s.label),
                )
            });
            point.set(fc.cpu_forecast_cores);
            upper.set(fc.cpu_upper_cores);
            if let Some(band) = upper_before {
                let secs = row.sample.interval_ns as f64 / 1e9;
                let gap = fc.cpu_demand_cores - band;
                shortfall.inc_by(gap.max(0.0) * secs);
                slack.inc_by((-gap).max(0.0) * secs);
            }
            if let Some(t) = fc.hint_trust {
                s.trust
                    .get_or_insert_with(|| f.trust.get_or_create_owned(&s.label))
                    .set(t);
            }
        }
        if let Some(r) = row.reservation {
            let (reserved, managed) = s.reserved.get_or_insert_with(|| {
                (
                    f.reserved.get_or_create_owned(&s.label),
                    f.managed.get_or_create_owned(&s.label),
                )
            });
            reserved.set(r.cpu_reserved_cores);
            managed.set(i64::from(r.cpu_reservation_managed));
        }
    }

    /// Drops every series of a cgroup.
    fn forget(&self, s: &CgroupSeries) {
        let f = &self.families;
        let one = &s.label;
        for family in [&f.cpu_seconds, &f.runq_seconds, &f.shortfall, &f.slack] {
            family.remove(one);
        }
        for family in [&f.forecast, &f.upper, &f.reserved, &f.trust] {
            family.remove(one);
        }
        f.page_faults.remove(one);
        f.io_ops.remove(one);
        f.managed.remove(one);
        for extra in [IO_READ, IO_WRITE] {
            f.io_bytes.remove(&with(one, extra));
        }
        for extra in [NET_TX, NET_RX] {
            f.net_bytes.remove(&with(one, extra));
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The extra label of the I/O and network byte counters.
const IO_READ: (&str, &str) = ("op", "read");
const IO_WRITE: (&str, &str) = ("op", "write");
const NET_TX: (&str, &str) = ("direction", "tx");
const NET_RX: (&str, &str) = ("direction", "rx");

/// `label` with one more pair: what series() makes and forget() removes.
fn with(label: &Labels, (key, value): (&str, &str)) -> Labels {
    let mut l = label.clone();
    l.push((key.to_owned(), value.to_owned()));
    l
}

/// The agent's own CPU seconds (user + system) and resident bytes.
fn own_cost() -> (f64, u64) {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) in ")".
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 11 and 12 here.
    let cpu = (field(11) + field(12)) / ticks;
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let rss_pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu, rss_pages * page)
}

#[cfg(test)]
mod tests {
    use agent_ebpf::Counters;

    use super::*;
    use crate::{collector::Sample, pipeline::CpuReservation, shadow::CpuForecast};

    fn row(cgroup: &str, cpu_ms: u64, demand: f64, upper: f64) -> Row {
        Row {
            sample: Sample {
                ts: 0.0,
                cgroup: cgroup.into(),
                cgroup_id: 1,
                interval_ns: 1_000_000_000,
                usage: Counters {
                    cpu_ns: cpu_ms * 1_000_000,
                    io_read_bytes: 4096,
                    net_tx_bytes: 100,
                    ..Counters::default()
                },
            },
            forecast: Some(CpuForecast {
                cpu_demand_cores: demand,
                cpu_forecast_cores: upper / 2.0,
                cpu_upper_cores: upper,
                cpu_volatility_cores: 0.1,
                hint_active: false,
                hint_id: None,
                hint_trust: Some(0.8),
            }),
            reservation: Some(CpuReservation {
                cpu_reserved_cores: 1.5,
                cpu_reservation_managed: true,
            }),
        }
    }

    fn tick(m: &AgentMetrics, rows: &[Row]) {
        m.record(&Tick {
            rows,
            seconds: 0.003,
            cgroups: rows.len(),
            probes: &[Cost {
                program: "sched_switch",
                events: 1000,
                ns_per_event: 100.0,
                empty_ns_per_event: f64::NAN,
            }],
            hints: Some(Counts {
                accepted: 2,
                refused: 1,
                judged: 0,
            }),
        });
    }

    fn value(text: &str, series: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line[series.len()..].trim().parse().unwrap()
    }

    #[test]
    fn counters_accumulate_and_follow_the_naming_conventions() {
        let m = AgentMetrics::new(10);
        tick(&m, &[row("/a", 500, 0.5, 1.0)]);
        tick(&m, &[row("/a", 250, 1.5, 1.0)]);
        let text = m.encode();
        let a = r#"{cgroup="/a"}"#;
        assert_eq!(
            value(&text, &format!("shadow_agent_cgroup_cpu_seconds_total{a}")),
            0.75
        );
        assert_eq!(
            value(
                &text,
                r#"shadow_agent_cgroup_io_bytes_total{cgroup="/a",op="read"}"#
            ),
            8192.0
        );
        assert_eq!(
            value(&text, &format!("shadow_agent_cgroup_cpu_upper_cores{a}")),
            1.0
        );
        assert_eq!(
            value(&text, &format!("shadow_agent_cgroup_cpu_reserved_cores{a}")),
            1.5
        );
        assert_eq!(
            value(
                &text,
                &format!("shadow_agent_cgroup_cpu_reservation_managed{a}")
            ),
            1.0
        );
        // Judged against the band forecast the tick before: 1.5 vs 1.0.
        assert_eq!(
            value(
                &text,
                &format!("shadow_agent_cgroup_cpu_shortfall_core_seconds_total{a}")
            ),
            0.5
        );
        // Cumulative kernel totals become increments, counted once.
        assert_eq!(
            value(
                &text,
                r#"shadow_agent_probe_events_total{program="sched_switch"}"#
            ),
            1000.0
        );
        assert_eq!(
            value(&text, r#"shadow_agent_hints_total{outcome="accepted"}"#),
            2.0
        );
        assert!(value(&text, "shadow_agent_process_resident_memory_bytes") > 0.0);
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (name, kind) = (parts[2], parts[3]);
            assert!(name.starts_with("shadow_agent_"), "{line}");
            if kind == "counter" {
                // The exposition adds `_total` to each counter's samples.
                assert!(text.contains(&format!("{name}_total")), "{line}");
            }
        }
    }

    #[test]
    fn series_are_capped_kept_in_order_of_arrival_and_dropped_when_idle() {
        let m = AgentMetrics::new(2);
        tick(
            &m,
            &[
                row("/a", 1, 0.0, 0.0),
                row("/b", 1, 0.0, 0.0),
                row("/c", 1, 0.0, 0.0),
            ],
        );
        let text = m.encode();
        assert!(!text.contains(r#"cgroup="/c""#), "over the cap");
        assert_eq!(value(&text, "shadow_agent_cgroups_unlabelled"), 1.0);
        // The root always has its series, over the cap.
        tick(&m, &[row("/", 1, 0.0, 0.0), row("/c", 1, 0.0, 0.0)]);
        assert!(m.encode().contains(r#"cgroup="/""#));
        for _ in 0..DROP_AFTER_TICKS {
            tick(&m, &[row("/a", 1, 0.0, 0.0)]);
        }
        let text = m.encode();
        assert!(!text.contains(r#"cgroup="/b""#), "idle /b kept its series");
        assert!(text.contains(r#"cgroup="/a""#));
        // Its place is free again.
        tick(&m, &[row("/c", 1, 0.0, 0.0)]);
        assert!(m.encode().contains(r#"cgroup="/c""#));
    }
}
