//! Drives recommenders over the VMs' grids, scores them and times them.
//!
//! The time per update is the CPU time of the step loop (the
//! recommender's work and the harness's bookkeeping around it) over the
//! number of grid steps, one core, one VM after another. CPU time, not
//! wall time: the machines are shared, and wall time would count the
//! waits for a core as well.

use std::time::Duration;

use super::{
    Input, Recommender,
    baselines::{Autopilot, Manual, Max24h, P95Last1h, Vpa},
    grid::{Grid, Series},
    policy::{self, Shadow},
    score::{Summary, Tally, score_vm},
};

/// A recommender of the replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// The provisioned capacity.
    Manual,
    /// Kubernetes VPA.
    Vpa,
    /// Autopilot's moving window.
    AutopilotMw,
    /// Max of the last day + 10 %.
    Max24h,
    /// p95 of the last hour + 15 %.
    P95Last1h,
    /// Shadow's forecaster and reservation policy.
    Shadow(policy::Settings),
}

impl Kind {
    /// The five baselines, in BASELINES.md's order.
    pub const BASELINES: [Kind; 5] = [
        Kind::Manual,
        Kind::Vpa,
        Kind::AutopilotMw,
        Kind::Max24h,
        Kind::P95Last1h,
    ];

    /// Name in the output.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Manual => "manual",
            Kind::Vpa => "vpa",
            Kind::AutopilotMw => "autopilot-mw",
            Kind::Max24h => "max-24h",
            Kind::P95Last1h => "p95-last-1h",
            Kind::Shadow(_) => "shadow",
        }
    }

    /// A fresh recommender for `series`; None when it does not apply (the
    /// manual baseline without a capacity column).
    pub fn build(&self, series: &Series) -> Option<Box<dyn Recommender>> {
        Some(match self {
            Kind::Manual => {
                series.capacity.as_ref()?;
                Box::new(Manual::default())
            }
            Kind::Vpa => Box::new(Vpa::new(series.unit)),
            Kind::AutopilotMw => Box::new(Autopilot::new(series.unit)),
            Kind::Max24h => Box::new(Max24h::default()),
            Kind::P95Last1h => Box::new(P95Last1h::default()),
            Kind::Shadow(settings) => Box::new(Shadow::new(series.unit, *settings).ok()?),
        })
    }
}

/// The input of step `k` of `series`.
pub fn input(series: &Series, k: usize) -> Input {
    let finite = |v: f64| (!v.is_nan()).then_some(v);
    Input {
        previous: k.checked_sub(1).and_then(|j| finite(series.y[j])),
        capacity: series.capacity.as_ref().and_then(|c| finite(c[k])),
    }
}

/// Runs `r` over every step of `series`: the limit per step (NaN where it
/// had none) and the time spent.
pub fn drive(r: &mut dyn Recommender, series: &Series) -> (Vec<f64>, Duration) {
    let mut limits = vec![f64::NAN; series.y.len()];
    let start = thread_cpu();
    for (k, l) in limits.iter_mut().enumerate() {
        *l = r.step(input(series, k)).unwrap_or(f64::NAN);
    }
    (limits, thread_cpu().saturating_sub(start))
}

/// CPU time used by this thread so far.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// One (resource, recommender) result.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// "cpu" or "memory".
    pub resource: &'static str,
    /// The recommender.
    pub kind: Kind,
    /// The figures.
    pub summary: Summary,
    /// CPU time per grid step, in nanoseconds.
    pub ns_per_update: f64,
}

/// Replays every recommender of `kinds` over every VM of `grids`, CPU
/// rows first, then memory, each in the order of `kinds`.
pub fn replay(grids: &[Grid], kinds: &[Kind]) -> Vec<Row> {
    let mut rows = Vec::new();
    for memory in [false, true] {
        for kind in kinds {
            let mut tally = Tally::default();
            let (mut spent, mut steps) = (Duration::ZERO, 0usize);
            let mut resource = None;
            for g in grids {
                let Some(series) = g.series(memory) else {
                    continue;
                };
                let Some(mut r) = kind.build(series) else {
                    continue;
                };
                resource = Some(series.unit.resource());
                let (limits, took) = drive(r.as_mut(), series);
                spent += took;
                steps += limits.len();
                tally.add(&score_vm(&series.y, &limits, |k| g.day(k)));
            }
            if let Some(resource) = resource {
                rows.push(Row {
                    resource,
                    kind: *kind,
                    summary: tally.summary(),
                    ns_per_update: spent.as_nanos() as f64 / steps.max(1) as f64,
                });
            }
        }
    }
    rows
}
