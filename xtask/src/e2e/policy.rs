//! The policies of `bench e2e` and their settings: which points each
//! family's curve is drawn through, and the two reactive rules (pure, so
//! they are tested without a cgroup).
//!
//! Every policy writes the same knobs: the quota, and the weight with
//! Shadow's own rule (the orchestrator always writes it with the quota and
//! has no key to leave it alone), see [`weight_share`].

use std::time::Duration;

/// A family of policies: one curve on the chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Family {
    /// A fixed quota.
    Static,
    /// Every tick: the usage just observed times a headroom.
    ReactiveUsage,
    /// Every tick: the demand (ran + waited) with a fast-up, slow-down rule.
    ReactiveDemand,
    /// A fixed quota plus the kernel's burst allowance.
    Burst,
    /// Orchestrator and agent.
    Shadow,
}

impl Family {
    pub const ALL: [Family; 5] = [
        Family::Static,
        Family::ReactiveUsage,
        Family::ReactiveDemand,
        Family::Burst,
        Family::Shadow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Static => "static",
            Family::ReactiveUsage => "reactive-usage",
            Family::ReactiveDemand => "reactive-demand",
            Family::Burst => "burst",
            Family::Shadow => "shadow",
        }
    }
}

/// One point of a family's curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Policy {
    /// The quota fixed at `cores`.
    Static { cores: f64 },
    /// quota = usage over the last tick x `headroom`.
    ReactiveUsage { headroom: f64 },
    /// [`DemandRule`] with `headroom`.
    ReactiveDemand { headroom: f64 },
    /// The quota fixed at `cores` with a burst allowance of as much again
    /// (the kernel refuses a burst above the quota).
    Burst { cores: f64 },
    /// Shadow with the shipped defaults, or with the agent's band quantile
    /// (`[agent] quantile`) set.
    Shadow { quantile: Option<f64> },
}

/// The reactive rules' headrooms; 1.25 is today's rule (target 0.8).
pub const HEADROOMS: [f64; 4] = [1.1, 1.25, 1.5, 2.0];
/// The reactive families' default point.
pub const DEFAULT_HEADROOM: f64 = 1.25;
/// Shadow's band quantile besides the shipped 0.95. The margin has no key
/// (it adapts from 0, docs/orchestrator.md), so it cannot be swept.
pub const SHADOW_QUANTILES: [f64; 3] = [0.8, 0.9, 0.99];
/// Static levels, evenly from the mean demand to the ceiling.
pub const STATIC_LEVELS: usize = 6;
/// Burst levels: the lowest static levels.
pub const BURST_LEVELS: usize = 3;

impl Policy {
    pub fn family(self) -> Family {
        match self {
            Policy::Static { .. } => Family::Static,
            Policy::ReactiveUsage { .. } => Family::ReactiveUsage,
            Policy::ReactiveDemand { .. } => Family::ReactiveDemand,
            Policy::Burst { .. } => Family::Burst,
            Policy::Shadow { .. } => Family::Shadow,
        }
    }

    /// The swept value as the results name it: cores for static and burst
    /// (the quota; the burst allowance is as much again), the headroom for
    /// the reactive rules, `default` or the quantile for Shadow.
    pub fn setting(self) -> String {
        match self {
            Policy::Static { cores } | Policy::Burst { cores } => format!("{cores:.3}"),
            Policy::ReactiveUsage { headroom } | Policy::ReactiveDemand { headroom } => {
                format!("{headroom}")
            }
            Policy::Shadow { quantile: None } => "default".into(),
            Policy::Shadow { quantile: Some(q) } => format!("quantile {q}"),
        }
    }

    /// `family setting`, for logs and cgroup names.
    pub fn label(self) -> String {
        format!("{} {}", self.family().name(), self.setting())
    }

    /// The family's default point: what the goals compare.
    pub fn is_default(self) -> bool {
        match self {
            Policy::ReactiveUsage { headroom } | Policy::ReactiveDemand { headroom } => {
                headroom == DEFAULT_HEADROOM
            }
            Policy::Shadow { quantile } => quantile.is_none(),
            Policy::Static { .. } | Policy::Burst { .. } => false,
        }
    }
}

/// Every point to run: `mean` is the workload's mean demand (the lowest
/// static level), `ceiling` the highest; `quick` keeps a few points per
/// family (development runs). Only `families` are kept.
pub fn sweep(mean: f64, ceiling: f64, quick: bool, families: &[Family]) -> Vec<Policy> {
    let levels = if quick { 3 } else { STATIC_LEVELS };
    let lo = mean.min(ceiling);
    let statics: Vec<f64> = (0..levels)
        .map(|i| lo + (ceiling - lo) * i as f64 / (levels - 1) as f64)
        .collect();
    let headrooms: &[f64] = if quick {
        &[DEFAULT_HEADROOM, 2.0]
    } else {
        &HEADROOMS
    };
    let quantiles: &[f64] = if quick { &[0.99] } else { &SHADOW_QUANTILES };
    let bursts = if quick { 1 } else { BURST_LEVELS };
    let mut out: Vec<Policy> = statics
        .iter()
        .map(|&cores| Policy::Static { cores })
        .collect();
    out.extend(
        headrooms
            .iter()
            .map(|&headroom| Policy::ReactiveUsage { headroom }),
    );
    out.extend(
        headrooms
            .iter()
            .map(|&headroom| Policy::ReactiveDemand { headroom }),
    );
    out.extend(
        statics
            .iter()
            .take(bursts)
            .map(|&cores| Policy::Burst { cores }),
    );
    out.push(Policy::Shadow { quantile: None });
    out.extend(
        quantiles
            .iter()
            .map(|&q| Policy::Shadow { quantile: Some(q) }),
    );
    out.retain(|p| families.contains(&p.family()));
    out
}

/// The weight every policy writes for a quota of `cores`, as a share of
/// the kernel's default weight: Shadow's rule (orchestrator/src/apply.rs),
/// a core per default weight, never below the cgroup's original (the
/// default, for the fresh sandbox).
pub fn weight_share(cores: f64) -> f64 {
    cores.max(1.0)
}

/// Reactive on usage: the quota follows what was used.
pub fn usage_rule(used_cores: f64, headroom: f64) -> f64 {
    used_cores * headroom
}

/// The reactive-demand rule's memory: the demand decays by half in this
/// long once it has passed (slowly next to its rise, which is at once).
pub const DEMAND_HALF_LIFE: Duration = Duration::from_secs(1);
/// A tick with throttling raises the quota at least this many times.
pub const THROTTLED_STEP: f64 = 2.0;

/// Reactive on demand: Shadow without prediction. It sees the demand
/// Shadow's forecaster is fed (ran + waited, capped at the CPUs, which
/// sees past the quota) each tick and
/// - rises at once: to the demand x headroom, and when the tick was
///   throttled to at least [`THROTTLED_STEP`] times the quota it had;
/// - falls slowly: the demand it answers is the highest recent one,
///   decaying with a half-life of [`DEMAND_HALF_LIFE`], so a burst's noisy
///   ticks do not drop the quota in its middle.
#[derive(Clone, Debug)]
pub struct DemandRule {
    headroom: f64,
    /// Share of the held demand kept per tick.
    keep: f64,
    /// The demand answered, cores.
    held: f64,
}

impl DemandRule {
    pub fn new(headroom: f64, tick: Duration) -> Self {
        Self {
            headroom,
            keep: 0.5f64.powf(tick.as_secs_f64() / DEMAND_HALF_LIFE.as_secs_f64()),
            held: 0.0,
        }
    }

    /// The quota wanted after a tick whose demand was `demand` cores,
    /// `throttled` or not, under a quota of `quota` cores (before the
    /// floor and ceiling).
    pub fn step(&mut self, demand: f64, throttled: bool, quota: f64) -> f64 {
        self.held = demand.max(self.held * self.keep);
        if throttled {
            self.held = self.held.max(quota * THROTTLED_STEP / self.headroom);
        }
        self.held * self.headroom
    }
}

/// One announced window of demand: `amount` (cores, or bytes of memory)
/// from `start_s` (s from the run's start) for `duration_s`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub start_s: f64,
    pub duration_s: f64,
    pub amount: f64,
}

/// What a hinted scenario announces, given to the reactive rules too
/// (every baseline gets the signals Shadow has): its windows, each told
/// `ahead_s` before it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Announced {
    pub windows: Vec<Window>,
    pub ahead_s: f64,
}

impl Announced {
    /// The amount announced for the moment `now_s` of the run, for a rule
    /// that acts every `tick_s`: from one tick before an announced window
    /// (the least a rule acting once a tick needs to have it in place when
    /// it starts; never before the announcement) to its end; None outside.
    pub fn at(&self, now_s: f64, tick_s: f64) -> Option<f64> {
        let lead = tick_s.min(self.ahead_s);
        self.windows
            .iter()
            .filter(|w| now_s >= w.start_s - lead && now_s < w.start_s + w.duration_s)
            .map(|w| w.amount)
            .reduce(f64::max)
    }
}

/// A reactive rule's setting with what was announced: at least the
/// announced amount with the rule's headroom while a window is open.
pub fn with_announced(setting: f64, announced: Option<f64>, headroom: f64) -> f64 {
    announced.map_or(setting, |amount| setting.max(amount * headroom))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_burst_is_reserved_from_a_tick_before_to_its_end() {
        let window = |start_s| Window {
            start_s,
            duration_s: 3.0,
            amount: 1.2,
        };
        let a = Announced {
            windows: vec![window(10.0), window(25.0)],
            ahead_s: 3.0,
        };
        assert_eq!(a.at(9.0, 0.5), None);
        assert_eq!(a.at(9.5, 0.5), Some(1.2));
        assert_eq!(a.at(12.9, 0.5), Some(1.2));
        assert_eq!(a.at(13.0, 0.5), None);
        assert_eq!(a.at(24.6, 0.5), Some(1.2));
        // Never before the announcement.
        let late = Announced {
            ahead_s: 0.2,
            ..a.clone()
        };
        assert_eq!(late.at(9.7, 0.5), None);
        assert_eq!(with_announced(0.3, Some(1.2), 1.25), 1.5);
        assert_eq!(with_announced(1.9, Some(1.2), 1.25), 1.9);
        assert_eq!(with_announced(0.3, None, 1.25), 0.3);
    }

    #[test]
    fn the_sweep_has_every_family_with_its_levels() {
        let all = sweep(0.5, 1.9, false, &Family::ALL);
        let count = |f: Family| all.iter().filter(|p| p.family() == f).count();
        assert_eq!(count(Family::Static), 6);
        assert_eq!(count(Family::ReactiveUsage), 4);
        assert_eq!(count(Family::ReactiveDemand), 4);
        assert_eq!(count(Family::Burst), 3);
        assert_eq!(count(Family::Shadow), 4);
        let statics: Vec<f64> = all
            .iter()
            .filter_map(|p| match p {
                Policy::Static { cores } => Some(*cores),
                _ => None,
            })
            .collect();
        assert!((statics[0] - 0.5).abs() < 1e-9 && (statics[5] - 1.9).abs() < 1e-9);
        assert!(
            statics
                .windows(2)
                .all(|w| (w[1] - w[0] - 0.28).abs() < 1e-9)
        );
        // One default point each for the goals' comparisons.
        let defaults: Vec<String> = all
            .iter()
            .filter(|p| p.is_default())
            .map(|p| p.label())
            .collect();
        assert_eq!(
            defaults,
            [
                "reactive-usage 1.25",
                "reactive-demand 1.25",
                "shadow default"
            ]
        );
        let quick = sweep(0.5, 1.9, true, &[Family::Static, Family::Shadow]);
        assert_eq!(quick.len(), 3 + 2);
        assert_eq!(quick[3].setting(), "default");
        assert_eq!(quick[4].setting(), "quantile 0.99");
    }

    #[test]
    fn the_weight_follows_the_quota_above_one_core_only() {
        assert_eq!(weight_share(0.3), 1.0);
        assert_eq!(weight_share(1.9), 1.9);
        assert_eq!(usage_rule(0.8, 1.25), 1.0);
    }

    #[test]
    fn demand_rule_rises_at_once_and_falls_by_half_a_second() {
        let tick = Duration::from_millis(500);
        let mut r = DemandRule::new(1.25, tick);
        // Quiet: the quota follows the demand with its headroom.
        assert!((r.step(0.2, false, 0.3) - 0.25).abs() < 1e-9);
        // A burst: demand 2 cores (waiting counted) at once.
        assert!((r.step(2.0, true, 0.25) - 2.5).abs() < 1e-9);
        // Over: the held demand halves every second (two ticks).
        let a = r.step(0.2, false, 1.9);
        let b = r.step(0.2, false, 1.9);
        assert!((a - 2.5 * 0.5f64.sqrt()).abs() < 1e-9, "{a}");
        assert!((b - 1.25).abs() < 1e-9, "{b}");
        // Down to the demand again after a few seconds.
        for _ in 0..10 {
            r.step(0.2, false, 1.0);
        }
        assert!((r.step(0.2, false, 0.3) - 0.25).abs() < 1e-9);
    }

    #[test]
    fn demand_rule_doubles_a_throttled_quota_whatever_the_demand_said() {
        let mut r = DemandRule::new(1.25, Duration::from_millis(500));
        // Throttled while the signal saw little (waits land at switch-in).
        let q = r.step(0.3, true, 0.4);
        assert!((q - 0.8).abs() < 1e-9, "{q}");
        let q = r.step(0.3, true, q);
        assert!((q - 1.6).abs() < 1e-9, "{q}");
    }
}
