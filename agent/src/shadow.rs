//! The shadows: one online forecaster per observed cgroup, fed the cgroup's
//! CPU demand (in cores) every interval, so `observe --forecast` shows what
//! each cgroup is expected to need next to what it used.
//!
//! CPU only for now: it is the resource the pre-allocation engine acts on
//! first, and each forecaster holds about 4 KiB, so one per resource for
//! 10,000 cgroups would cost more memory than the whole collector.

use std::{collections::HashMap, time::Duration};

use serde::Serialize;

use crate::{
    collector::Sample,
    forecast::{Config, Error, Forecaster},
};

/// One cgroup's CPU forecast for the next interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CpuForecast {
    /// CPU used in the interval just ended, in cores.
    pub cpu_cores: f64,
    /// Expected CPU demand over the next interval, in cores.
    pub cpu_forecast_cores: f64,
    /// Upper band of that demand at the configured quantile, in cores.
    pub cpu_upper_cores: f64,
    /// Recent mean absolute one-interval error, in cores.
    pub cpu_volatility_cores: f64,
}

/// A forecaster per cgroup id.
pub struct Shadows {
    config: Config,
    by_id: HashMap<u64, Forecaster>,
}

impl Shadows {
    /// Shadows for samples every `interval`, bands at `quantile`.
    pub fn new(interval: Duration, quantile: f64) -> Result<Self, Error> {
        let config = Config::new(interval.as_secs_f64())?
            .with_horizon(1)?
            .with_quantile(quantile)?;
        Ok(Self {
            config,
            by_id: HashMap::new(),
        })
    }

    /// Feeds one interval's sample to its cgroup's shadow and returns the
    /// forecast for the next interval. None if the sample was refused (an
    /// empty interval or a clock that went backwards): the shadow keeps its
    /// state and treats the tick as missing.
    pub fn observe(&mut self, sample: &Sample) -> Option<CpuForecast> {
        if sample.interval_ns == 0 {
            return None;
        }
        let cores = sample.usage.cpu_ns as f64 / sample.interval_ns as f64;
        let shadow = self
            .by_id
            .entry(sample.cgroup_id)
            .or_insert_with(|| Forecaster::new(self.config));
        shadow.update(sample.ts, cores).ok()?;
        let f = shadow.forecast();
        Some(CpuForecast {
            cpu_cores: cores,
            cpu_forecast_cores: f.point[0],
            cpu_upper_cores: f.upper[0],
            cpu_volatility_cores: f.volatility,
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

#[cfg(test)]
mod tests {
    use agent_ebpf::Counters;

    use super::*;

    fn sample(id: u64, ts: f64, cores: f64) -> Sample {
        Sample {
            ts,
            cgroup: format!("/c{id}"),
            cgroup_id: id,
            interval_ns: 1_000_000_000,
            usage: Counters {
                cpu_ns: (cores * 1e9) as u64,
                ..Counters::default()
            },
        }
    }

    #[test]
    fn steady_demand_is_forecast_with_a_band_above_it() {
        let mut shadows = Shadows::new(Duration::from_secs(1), 0.95).unwrap();
        let mut last = None;
        for i in 0..300 {
            // 1.5 cores with a small wobble.
            let cores = 1.5 + 0.1 * ((i % 7) as f64 / 7.0 - 0.5);
            last = shadows.observe(&sample(1, f64::from(i), cores));
        }
        let f = last.expect("a forecast");
        assert!((f.cpu_forecast_cores - 1.5).abs() < 0.1, "{f:?}");
        assert!(f.cpu_upper_cores >= f.cpu_forecast_cores, "{f:?}");
        assert!(
            f.cpu_upper_cores < 2.0,
            "band too wide for a steady series: {f:?}"
        );
    }

    #[test]
    fn shadows_are_per_cgroup_and_dropped_with_it() {
        let mut shadows = Shadows::new(Duration::from_secs(1), 0.95).unwrap();
        shadows.observe(&sample(1, 1.0, 1.0));
        shadows.observe(&sample(2, 1.0, 0.0));
        assert_eq!(shadows.len(), 2);
        shadows.retain_only(&[sample(2, 2.0, 0.0)]);
        assert_eq!(shadows.len(), 1);
        // A time that goes backwards is refused, not a panic.
        assert!(shadows.observe(&sample(2, 0.5, 1.0)).is_none());
        assert!(Shadows::new(Duration::ZERO, 0.95).is_err());
    }
}
