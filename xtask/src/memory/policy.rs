//! The memory benchmark's policies: each sets the service's memory ceiling
//! (v1 `memory.limit_in_bytes`, v2 `memory.high`) and is swept into a
//! curve of (reserved GiB-seconds, p99).

/// MiB in bytes.
pub const MIB: f64 = (1u64 << 20) as f64;

/// Policy families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Family {
    Static,
    Reactive,
    Shadow,
}

impl Family {
    pub const ALL: [Self; 3] = [Self::Static, Self::Reactive, Self::Shadow];

    pub fn name(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Reactive => "reactive",
            Self::Shadow => "shadow",
        }
    }
}

/// One point of a family's curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Policy {
    /// The ceiling fixed at this many bytes.
    Static { bytes: f64 },
    /// The demand-aware reactive rule ([`ReactiveRule`]) at this headroom.
    Reactive { headroom: f64 },
    /// Orchestrator and agent, shipped defaults; the band's quantile set
    /// only when swept.
    Shadow { quantile: Option<f64> },
}

/// Reactive headrooms swept; the second is the default the goals use.
pub const HEADROOMS: [f64; 4] = [1.1, 1.25, 1.5, 2.0];
/// The reactive rule's default headroom.
pub const DEFAULT_HEADROOM: f64 = 1.25;

impl Policy {
    pub fn family(self) -> Family {
        match self {
            Self::Static { .. } => Family::Static,
            Self::Reactive { .. } => Family::Reactive,
            Self::Shadow { .. } => Family::Shadow,
        }
    }

    pub fn setting(self) -> String {
        match self {
            Self::Static { bytes } => format!("{:.0} MiB", bytes / MIB),
            Self::Reactive { headroom } => format!("{headroom}"),
            Self::Shadow { quantile: None } => "default".into(),
            Self::Shadow { quantile: Some(q) } => format!("quantile {q}"),
        }
    }

    pub fn label(self) -> String {
        format!("{} {}", self.family().name(), self.setting())
    }

    /// The point the goals compare: Shadow's shipped defaults and the
    /// reactive rule's default headroom.
    pub fn is_default(self) -> bool {
        matches!(self, Self::Shadow { quantile: None })
            || self
                == Self::Reactive {
                    headroom: DEFAULT_HEADROOM,
                }
    }
}

/// Every policy to run: static levels from the mean working set to the
/// largest one plus a tenth (6, or 3 with `quick`), the reactive headrooms
/// (2 with `quick`), Shadow's default and its quantile swept (0.8 and
/// 0.99; 0.99 only with `quick`).
pub fn sweep(mean: f64, largest: f64, quick: bool, families: &[Family]) -> Vec<Policy> {
    let mut out = Vec::new();
    let has = |f| families.contains(&f);
    if has(Family::Static) {
        let levels = if quick { 3 } else { 6 };
        let top = largest * 1.1;
        for i in 0..levels {
            let bytes = mean + (top - mean) * i as f64 / (levels - 1) as f64;
            out.push(Policy::Static {
                bytes: (bytes / MIB).round() * MIB,
            });
        }
    }
    if has(Family::Reactive) {
        let headrooms: &[f64] = if quick { &[1.25, 2.0] } else { &HEADROOMS };
        out.extend(headrooms.iter().map(|&h| Policy::Reactive { headroom: h }));
    }
    if has(Family::Shadow) {
        out.push(Policy::Shadow { quantile: None });
        let quantiles: &[f64] = if quick { &[0.99] } else { &[0.8, 0.99] };
        out.extend(
            quantiles
                .iter()
                .map(|&q| Policy::Shadow { quantile: Some(q) }),
        );
    }
    out
}

/// Reactive memory, given what Shadow is given: the cgroup's usage and
/// whether it hit its ceiling since the last tick (v1 `memory.failcnt`,
/// v2 `memory.events` high). Up at once: to usage x headroom, and at least
/// double a ceiling that was hit (usage at the ceiling says only that
/// demand is at least that); down slowly, halving the excess over usage x
/// headroom every `half_life_ticks` (memory given back early is read in
/// again). Never below `floor` (the operator's ceiling, which Shadow never
/// goes below either) nor above `ceiling`.
#[derive(Clone, Copy, Debug)]
pub struct ReactiveRule {
    pub headroom: f64,
    pub floor: f64,
    pub ceiling: f64,
    /// The excess's decay per tick.
    decay: f64,
}

impl ReactiveRule {
    pub fn new(headroom: f64, floor: f64, ceiling: f64, half_life_ticks: f64) -> Self {
        Self {
            headroom,
            floor,
            ceiling,
            decay: 0.5f64.powf(1.0 / half_life_ticks.max(1.0)),
        }
    }

    /// The ceiling for the next tick, from this tick's `usage`, whether the
    /// ceiling was `hit`, and the ceiling `now`.
    pub fn step(&self, usage: f64, hit: bool, now: f64) -> f64 {
        let target = usage * self.headroom;
        let next = if hit {
            target.max(now * 2.0)
        } else if target >= now {
            target
        } else {
            target + (now - target) * self.decay
        };
        next.clamp(self.floor, self.ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_spans_the_working_set_and_names_one_default_per_family() {
        let p = sweep(300.0 * MIB, 512.0 * MIB, false, &Family::ALL);
        assert_eq!(p.len(), 6 + 4 + 3);
        assert_eq!(p[0], Policy::Static { bytes: 300.0 * MIB });
        assert_eq!(p[5], Policy::Static { bytes: 563.0 * MIB });
        assert_eq!(p.iter().filter(|p| p.is_default()).count(), 2);
        assert_eq!(
            sweep(300.0 * MIB, 512.0 * MIB, true, &[Family::Shadow]),
            [
                Policy::Shadow { quantile: None },
                Policy::Shadow {
                    quantile: Some(0.99)
                }
            ]
        );
    }

    #[test]
    fn the_reactive_rule_doubles_when_hit_and_decays_slowly() {
        let r = ReactiveRule::new(1.25, 100.0, 1000.0, 2.0);
        assert_eq!(r.step(300.0, true, 300.0), 600.0, "hit: at least double");
        assert_eq!(r.step(300.0, true, 600.0), 1000.0, "capped");
        assert_eq!(
            r.step(400.0, false, 300.0),
            500.0,
            "up at once to usage x headroom"
        );
        let down = r.step(100.0, false, 600.0);
        assert!(
            (down - (125.0 + 475.0 * 0.5f64.sqrt())).abs() < 1e-9,
            "{down}"
        );
        assert_eq!(r.step(10.0, false, 100.0), 100.0, "never below the floor");
    }
}
