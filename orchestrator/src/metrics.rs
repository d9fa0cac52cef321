//! Prometheus metrics of the orchestrator, served on `/metrics` (off unless
//! `--metrics ADDR` or `metrics` in the configuration; use a loopback
//! address unless the network is trusted).
//!
//! Names follow the Prometheus conventions: base units (seconds, bytes,
//! cores), `_total` for counters. Cardinality stays bounded with 10,000
//! cgroups: per-cgroup series exist only for the cgroups the configuration
//! opts in (an operator's list, not the host's), at most
//! [`MAX_CGROUP_SERIES`] of them; everything else is aggregated per resource.

use std::sync::{Mutex, atomic::AtomicU64};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};
use shadow_wire::Resource;

use crate::{
    book::{Optin, slot},
    engine::{Cycle, Engine},
};

/// Most per-cgroup series (managed cgroups x resources) kept.
pub const MAX_CGROUP_SERIES: usize = 4096;

/// Labels of a per-resource series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    /// cpu, memory, io or net.
    pub resource: String,
}

/// Labels of a per-cgroup series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CgroupLabel {
    /// cgroup path relative to the v2 root.
    pub cgroup: String,
    /// cpu, memory, io or net.
    pub resource: String,
}

/// Labels of a write counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabel {
    /// cpu, memory or io.
    pub resource: String,
    /// written (or would be, in a dry run), refused (a guardrail), failed.
    pub outcome: String,
}

type GaugeF = Gauge<f64, AtomicU64>;

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    /// Time one decision cycle took.
    pub cycle_seconds: Histogram,
    /// Predictions received from agents.
    pub predictions: Counter,
    /// Usage figures received from agents.
    pub usage: Counter,
    /// Agents connected.
    pub agents: Gauge,
    /// Components known.
    pub components: Gauge,
    /// Knob writes by resource and outcome.
    pub writes: Family<WriteLabel, Counter>,
    /// System-wide point forecast per resource.
    pub system_point: Family<ResourceLabel, GaugeF>,
    /// System-wide diversified upper band per resource.
    pub system_upper: Family<ResourceLabel, GaugeF>,
    /// Plain sum of the components' upper bands per resource.
    pub system_upper_sum: Family<ResourceLabel, GaugeF>,
    /// Latest realised usage summed per resource.
    pub system_used: Family<ResourceLabel, GaugeF>,
    /// Host capacity per resource (absent if unknown).
    pub capacity: Family<ResourceLabel, GaugeF>,
    /// Reservation of each managed cgroup.
    pub reserved: Family<CgroupLabel, GaugeF>,
    /// Margin of each managed cgroup.
    pub margin: Family<CgroupLabel, GaugeF>,
    /// Share of recent intervals a managed cgroup's usage exceeded its
    /// reservation (realised shortfall frequency).
    pub exceeded: Family<CgroupLabel, GaugeF>,
    /// Recent unused reservation over usage of a managed cgroup.
    pub slack: Family<CgroupLabel, GaugeF>,
    cgroup_series: Mutex<usize>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `shadow_orchestrator` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("shadow_orchestrator");
        let cycle_seconds = Histogram::new([0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1]);
        let m = Self {
            registry: Registry::default(),
            cycle_seconds,
            predictions: Counter::default(),
            usage: Counter::default(),
            agents: Gauge::default(),
            components: Gauge::default(),
            writes: Family::default(),
            system_point: Family::default(),
            system_upper: Family::default(),
            system_upper_sum: Family::default(),
            system_used: Family::default(),
            capacity: Family::default(),
            reserved: Family::default(),
            margin: Family::default(),
            exceeded: Family::default(),
            slack: Family::default(),
            cgroup_series: Mutex::new(0),
        };
        registry.register_with_unit(
            "cycle",
            "Time one decision cycle took",
            Unit::Seconds,
            m.cycle_seconds.clone(),
        );
        registry.register(
            "predictions_received",
            "Predictions received from agents",
            m.predictions.clone(),
        );
        registry.register(
            "usage_received",
            "Usage figures received from agents",
            m.usage.clone(),
        );
        registry.register("agents", "Agents connected", m.agents.clone());
        registry.register("components", "Components known", m.components.clone());
        registry.register(
            "knob_writes",
            "cgroup knob writes by resource and outcome (written, refused by a guardrail, failed)",
            m.writes.clone(),
        );
        for (name, help, family) in [
            (
                "system_forecast",
                "System-wide point forecast, in the resource's unit (cores, bytes, bytes/s)",
                &m.system_point,
            ),
            (
                "system_upper",
                "System-wide diversified upper band",
                &m.system_upper,
            ),
            (
                "system_upper_sum",
                "Plain sum of the components' upper bands",
                &m.system_upper_sum,
            ),
            (
                "system_used",
                "Latest realised usage, summed",
                &m.system_used,
            ),
            ("capacity", "Host capacity", &m.capacity),
        ] {
            registry.register(name, help, family.clone());
        }
        for (name, help, family) in [
            (
                "reserved",
                "Reservation of a managed cgroup, in the resource's unit",
                &m.reserved,
            ),
            (
                "margin",
                "Adaptive margin of a managed cgroup over its forecast band",
                &m.margin,
            ),
            (
                "exceeded_ratio",
                "Share of recent intervals whose usage exceeded the reservation",
                &m.exceeded,
            ),
            (
                "slack_ratio",
                "Recent unused reservation over usage",
                &m.slack,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        Self { registry, ..m }
    }

    /// Whether a new per-cgroup series may be created (the cap keeps a
    /// broad opt-in rule from exploding the scrape).
    pub fn admit_cgroup_series(&self, label: &CgroupLabel) -> bool {
        if self.reserved.get(label).is_some() {
            return true;
        }
        let mut n = self.cgroup_series.lock().unwrap_or_else(|p| p.into_inner());
        if *n >= MAX_CGROUP_SERIES {
            return false;
        }
        *n += 1;
        true
    }

    /// Drops the series of a cgroup that is gone.
    pub fn forget_cgroup(&self, label: &CgroupLabel) {
        let removed = self.reserved.remove(label);
        self.margin.remove(label);
        self.exceeded.remove(label);
        self.slack.remove(label);
        if removed {
            let mut n = self.cgroup_series.lock().unwrap_or_else(|p| p.into_inner());
            *n = n.saturating_sub(1);
        }
    }

    /// Records one cycle: its duration, the system forecast, and the state
    /// of every managed cgroup.
    pub fn record_cycle(&self, cycle: &Cycle, engine: &Engine, seconds: f64) {
        self.cycle_seconds.observe(seconds);
        self.components.set(engine.components().len() as i64);
        for r in Resource::ALL {
            let s = &cycle.system[slot(r)];
            let label = ResourceLabel {
                resource: r.name().into(),
            };
            self.system_point.get_or_create(&label).set(s.point);
            self.system_upper.get_or_create(&label).set(s.upper);
            self.system_upper_sum.get_or_create(&label).set(s.upper_sum);
            self.system_used.get_or_create(&label).set(s.used);
            if let Some(c) = s.capacity {
                self.capacity.get_or_create(&label).set(c);
            }
        }
        for (key, entry) in engine.components() {
            let Optin::Rule(rule) = entry.optin else {
                continue;
            };
            let rule = &engine.config().manage[rule];
            for r in Resource::ALL {
                let t = &entry.tracks[slot(r)];
                let (Some(reserved), Some(_)) = (t.reserved, rule.bounds(r)) else {
                    continue;
                };
                let label = CgroupLabel {
                    cgroup: key.path.clone(),
                    resource: r.name().into(),
                };
                if !self.admit_cgroup_series(&label) {
                    continue;
                }
                self.reserved.get_or_create(&label).set(f64::from(reserved));
                self.margin.get_or_create(&label).set(f64::from(t.margin));
                self.exceeded
                    .get_or_create(&label)
                    .set(f64::from(t.exceeded));
                self.slack.get_or_create(&label).set(f64::from(t.slack()));
            }
        }
    }

    /// Counts one knob write outcome.
    pub fn write(&self, resource: Resource, outcome: &str, n: usize) {
        if n > 0 {
            self.writes
                .get_or_create(&WriteLabel {
                    resource: resource.name().into(),
                    outcome: outcome.into(),
                })
                .inc_by(n as u64);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_units_and_totals() {
        let m = Metrics::new();
        m.predictions.inc_by(3);
        m.cycle_seconds.observe(0.002);
        let label = CgroupLabel {
            cgroup: "/a".into(),
            resource: "cpu".into(),
        };
        assert!(m.admit_cgroup_series(&label));
        m.reserved.get_or_create(&label).set(1.5);
        let text = m.encode();
        assert!(
            text.contains("shadow_orchestrator_predictions_received_total 3"),
            "{text}"
        );
        assert!(
            text.contains("shadow_orchestrator_cycle_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(r#"shadow_orchestrator_reserved{cgroup="/a",resource="cpu"} 1.5"#),
            "{text}"
        );
        m.forget_cgroup(&label);
        assert!(!m.encode().contains("cgroup=\"/a\""));
    }
}
