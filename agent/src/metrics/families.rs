//! The agent's metric families, made once and registered under
//! `shadow_agent` with their help text and unit (docs/metrics.md lists
//! them).

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use super::{CounterF, GaugeF, Labels};

/// The registered metrics (clones share their values with the registry).
#[derive(Default)]
pub(super) struct Families {
    pub(super) cpu_seconds: Family<Labels, CounterF>,
    pub(super) runq_seconds: Family<Labels, CounterF>,
    pub(super) page_faults: Family<Labels, Counter>,
    pub(super) io_bytes: Family<Labels, Counter>,
    pub(super) io_ops: Family<Labels, Counter>,
    pub(super) net_bytes: Family<Labels, Counter>,
    pub(super) memory_bytes: Family<Labels, Gauge>,
    pub(super) reclaim_seconds: Family<Labels, CounterF>,
    pub(super) forecast: Family<Labels, GaugeF>,
    pub(super) upper: Family<Labels, GaugeF>,
    pub(super) reserved: Family<Labels, GaugeF>,
    pub(super) managed: Family<Labels, Gauge>,
    pub(super) trust: Family<Labels, GaugeF>,
    pub(super) shortfall: Family<Labels, CounterF>,
    pub(super) slack: Family<Labels, CounterF>,
    pub(super) hints: Family<Labels, Counter>,
    pub(super) probe_events: Family<Labels, Counter>,
    pub(super) probe_seconds: Family<Labels, CounterF>,
    pub(super) process_cpu: CounterF,
    pub(super) process_rss: Gauge,
    pub(super) cgroups: Gauge,
    pub(super) active: Gauge,
    pub(super) series: Gauge,
    pub(super) unlabelled: Gauge,
}

/// A registry holding every family of `f` and the `tick` histogram.
pub(super) fn registry(f: &Families, tick: &Histogram) -> Registry {
    let mut r = Registry::with_prefix("shadow_agent");
    let s = Unit::Seconds;
    let per = |what: &str| format!("{what}, per cgroup (label `cgroup`: path under the v2 root)");
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
    r.register_with_unit(
        "cgroup_memory",
        per("Memory in use at the end of the last interval (memory.current or v1 memory.usage_in_bytes)"),
        Unit::Bytes,
        f.memory_bytes.clone(),
    );
    r.register_with_unit(
        "cgroup_reclaim_stall",
        per("Time tasks spent stalled in direct or memcg reclaim"),
        s.clone(),
        f.reclaim_seconds.clone(),
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
    r
}
