//! Turning the engine's decisions into knob writes (docs/actuator.md has
//! the mapping and why each knob is soft or hard).
//!
//! A reservation of `a` in the resource's unit becomes:
//! - CPU (`a` cores): the weight (`cpu.weight` / `cpu.shares`) at `a` times
//!   the default (one core = the default weight), never below the weight
//!   the cgroup had before Shadow changed it; and, only where the operator
//!   set a quota (`cpu.max` / `cpu.cfs_quota_us`), the quota at `a` cores
//!   over the knob's current period;
//! - memory (`a` bytes): the soft knob (`memory.low` /
//!   `memory.soft_limit_in_bytes`) at `a`, and, only where the operator set
//!   a ceiling (`memory.high` / `memory.limit_in_bytes`), that ceiling
//!   raised ahead of growth but never below the operator's own value nor
//!   below usage and the reservation plus [`MEMORY_HEADROOM`]
//!   ([`memory_ceiling`]): v1 `memory.limit_in_bytes` OOM-kills, so a
//!   ceiling Shadow writes must never be tighter than what the operator
//!   chose;
//!
//! A soft reservation never caps: a hard knob the operator left unlimited
//! stays unlimited, so no cgroup is throttled or reclaimed for the first
//! time because Shadow manages it.
//! - block I/O (`a` bytes/s): the weight (`io.weight` / `blkio.bfq.weight`)
//!   at the reservation's share of the configured device bandwidth times the
//!   knob's range (no bandwidth configured: not written);
//! - a release: every knob of the resource back to its original.
//!
//! Every write goes through the actuator's guardrails (rate limit,
//! cooldown, never a hard cap below usage); a refusal leaves the decision
//! unapplied, and the engine retries it on a later tick.

use std::time::Instant;

use crate::{
    actuator::{
        Actuator, ActuatorError, Bytes, CpuQuota, Knob, Outcome, Refusal, Resource, Setting,
        setting::weight_from_share,
    },
    engine::Decision,
};

/// Memory ceilings sit at least this share above the larger of usage and
/// the reservation.
pub const MEMORY_HEADROOM: f64 = 0.5;

/// The memory ceiling (`memory.high`, v1 `memory.limit_in_bytes`) for a
/// reservation of `reserved` bytes of a cgroup using `usage` bytes, whose
/// ceiling was `original` before Shadow wrote it; `ceiling` is the
/// configured most Shadow may reserve for it. None: not written.
///
/// The rule, so that no write can cause an OOM kill the operator's own
/// setting would not have caused:
/// - no ceiling where the operator set none (`original` unlimited);
/// - never below `original`: Shadow only ever loosens a ceiling, ahead of
///   predicted growth, and a release puts the original back;
/// - never below `max(usage, reserved) x (1 + MEMORY_HEADROOM)`: the
///   reservation is the forecast's upper band over the look-ahead (with
///   its margin), so the ceiling is above usage plus the band, with
///   headroom for a forecast miss;
/// - raised no higher than the configured `ceiling` allows, except where
///   usage itself needs more (the floor above wins over the ceiling).
pub fn memory_ceiling(original: Bytes, reserved: f64, usage: f64, ceiling: f64) -> Option<Bytes> {
    let Bytes::Limit(original) = original else {
        return None;
    };
    let (reserved, usage) = (finite(reserved), finite(usage));
    let floor = usage * (1.0 + MEMORY_HEADROOM);
    let wanted = reserved.max(usage) * (1.0 + MEMORY_HEADROOM);
    let within = wanted.min(finite(ceiling).max(floor));
    // Saturating: a float beyond u64 is "as large as can be".
    let target = (within.ceil() as u64).max(original);
    Some(Bytes::Limit(target))
}

/// NaN and negatives as 0; infinity stays (and saturates when cast).
fn finite(v: f64) -> f64 {
    if v.is_nan() { 0.0 } else { v.max(0.0) }
}

/// What applying one decision did.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// Knobs written (or, in a dry run, that would have been).
    pub written: usize,
    /// Knobs already at the value.
    pub unchanged: usize,
    /// The knobs a guardrail kept from being written, and why.
    pub refused: Vec<(Knob, Refusal)>,
}

impl Applied {
    /// True if every knob now holds what the decision asked for.
    pub fn complete(&self) -> bool {
        self.refused.is_empty()
    }
}

/// Applies `d` to its cgroup's knobs; `capacity` is the host's (for the
/// I/O weight).
pub fn apply(
    act: &mut Actuator,
    d: &Decision,
    capacity: Option<f64>,
    now: Instant,
) -> Result<Applied, ActuatorError> {
    if d.resource == Resource::Cpu {
        act.note_cpu_usage(&d.path, d.usage);
    }
    let mut applied = Applied::default();
    let reason = d.reason.to_string();
    for knob in act.layout().knobs_for(&d.path, d.resource)? {
        let outcome = match d.amount {
            Some(a) => match setting(act, &d.path, knob, (a, d.usage), d.ceiling, capacity)? {
                Some(target) => act.write(&d.path, knob, target, &reason, now)?,
                None => continue,
            },
            // A release: the original, whatever the usage (Actuator::put_back).
            None => match act.original(&d.path, knob).transpose()? {
                Some(original) => act.put_back(&d.path, knob, original, &reason, now)?,
                None => continue,
            },
        };
        match outcome {
            Outcome::Written { .. } | Outcome::DryRun { .. } => applied.written += 1,
            Outcome::Unchanged => applied.unchanged += 1,
            Outcome::Refused(why) => applied.refused.push((knob, why)),
        }
    }
    Ok(applied)
}

/// The setting of `knob` for a reservation of `a`; None if this knob is not
/// written for it.
fn setting(
    act: &Actuator,
    cgroup: &str,
    knob: Knob,
    (a, usage): (f64, f64),
    ceiling: f64,
    capacity: Option<f64>,
) -> Result<Option<Setting>, ActuatorError> {
    Ok(match knob {
        Knob::CpuMax | Knob::CpuCfsQuota => {
            // Soft means soft: a cgroup the operator left without a quota
            // never gets one (its reservation is the weight).
            let Setting::CpuQuota(before) = before_shadow(act, cgroup, knob)? else {
                return Ok(None);
            };
            before
                .quota_us
                .map(|_| Setting::CpuQuota(CpuQuota::from_cores(a, before.period_us)))
        }
        Knob::CpuWeight | Knob::CpuShares => {
            // A reservation raises a cgroup's weight, never lowers it below
            // what it had: under contention with unmanaged tasks (each at
            // the default weight) a reservation under one core would
            // otherwise starve it below what it got unmanaged, its usage
            // would stay low, and the forecast with it.
            let before = before_shadow(act, cgroup, knob)?;
            weight_from_share(knob, a).map(|w| match before {
                Setting::Weight(b) => Setting::Weight(w.max(b)),
                _ => Setting::Weight(w),
            })
        }
        Knob::MemoryLow | Knob::MemorySoftLimit => Some(bytes(a)),
        Knob::MemoryHigh | Knob::MemoryLimit => {
            // As for the quota: no cap where the operator set none; and
            // never tighter than the operator's own.
            let Setting::Bytes(original) = before_shadow(act, cgroup, knob)? else {
                return Ok(None);
            };
            memory_ceiling(original, a, usage, ceiling).map(Setting::Bytes)
        }
        Knob::IoWeight | Knob::BlkioWeight => {
            let Some(capacity) = capacity.filter(|c| *c > 0.0) else {
                return Ok(None);
            };
            let range = knob.weight_range().map_or(100.0, |r| *r.end() as f64);
            let default = knob.default_weight().map_or(100.0, |d| d as f64);
            weight_from_share(knob, a / capacity * range / default).map(Setting::Weight)
        }
    })
}

/// The knob's value before Shadow changed it: the journaled original, or
/// what it holds now if Shadow has not written it.
fn before_shadow(act: &Actuator, cgroup: &str, knob: Knob) -> Result<Setting, ActuatorError> {
    match act.original(cgroup, knob) {
        Some(original) => original,
        None => act.read(cgroup, knob),
    }
}

fn bytes(a: f64) -> Setting {
    Setting::Bytes(Bytes::Limit(a.max(0.0) as u64))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::actuator::{Guardrails, Mode, fake::FakeTree};

    fn decision(amount: f64) -> Decision {
        Decision {
            path: "/g".into(),
            resource: Resource::Cpu,
            amount: Some(amount),
            previous: None,
            usage: 0.05,
            ceiling: 4.0,
            reason: crate::engine::Reason::Release,
        }
    }

    fn open(name: &str, quota: Option<&str>) -> (FakeTree, Actuator) {
        let t = FakeTree::new(name);
        // A hybrid host: no cpu controller in v2, the v1 knobs are written.
        t.v2_cgroup("/g", &[]);
        t.v1_cgroup("/g");
        if let Some(q) = quota {
            let file = t.layout().file("/g", Knob::CpuCfsQuota).unwrap();
            std::fs::write(file, q).unwrap();
        }
        let guardrails = Guardrails {
            min_interval: Duration::ZERO,
            cooldown: Duration::ZERO,
            cpu_floor_cores: 0.01,
        };
        let (act, _) =
            Actuator::open(t.layout(), &t.root.join("state"), Mode::Write, guardrails).unwrap();
        (t, act)
    }

    fn quota(act: &Actuator) -> Option<u64> {
        let Setting::CpuQuota(q) = act.read("/g", Knob::CpuCfsQuota).unwrap() else {
            panic!("not a quota")
        };
        q.quota_us
    }

    #[test]
    fn cpu_weight_is_raised_by_a_reservation_but_never_lowered_below_the_original() {
        let (_t, mut act) = open("apply-weight", Some("50000"));
        let shares = |act: &Actuator| act.read("/g", Knob::CpuShares).unwrap();
        let now = Instant::now();
        // A quarter core: the operator's quota follows, the shares stay at 1024.
        apply(&mut act, &decision(0.25), None, now).unwrap();
        assert_eq!(shares(&act), Setting::Weight(1024));
        assert_eq!(quota(&act), Some(25_000));
        // Two cores: twice the default; then back down, to the original.
        apply(&mut act, &decision(2.0), None, now).unwrap();
        assert_eq!(shares(&act), Setting::Weight(2048));
        assert_eq!(quota(&act), Some(200_000));
        apply(&mut act, &decision(0.25), None, now).unwrap();
        assert_eq!(shares(&act), Setting::Weight(1024));
    }

    const MIB: f64 = 1024.0 * 1024.0;

    #[test]
    fn a_memory_ceiling_is_never_tighter_than_the_operators_nor_below_usage_and_band() {
        let gib = 1u64 << 30;
        let original = Bytes::Limit(2 * gib);
        let at = |reserved: f64, usage: f64, ceiling: f64| {
            memory_ceiling(original, reserved, usage, ceiling)
                .unwrap()
                .as_u64()
        };
        // The old rule (1.5 x the reservation) wrote 768 MiB over a 2 GiB
        // limit for a 512 MiB reservation: a cgroup using 1 GiB would have
        // been OOM-killed. Now the operator's 2 GiB stays.
        assert_eq!(at(512.0 * MIB, 1024.0 * MIB, 8.0 * 1024.0 * MIB), 2 * gib);
        // Growth forecast beyond it: raised ahead, 1.5 x the band.
        assert_eq!(
            at(3072.0 * MIB, 1024.0 * MIB, 8.0 * 1024.0 * MIB),
            4608 << 20
        );
        // The configured ceiling bounds the raise, never below the original...
        assert_eq!(
            at(3072.0 * MIB, 1024.0 * MIB, 2.5 * 1024.0 * MIB),
            2560 << 20
        );
        assert_eq!(at(3072.0 * MIB, 1024.0 * MIB, 512.0 * MIB), 2 * gib);
        // ...nor below usage plus headroom when usage outgrew it.
        assert_eq!(at(3072.0 * MIB, 2048.0 * MIB, 512.0 * MIB), 3 * gib);
        // A band below usage (a falling forecast): usage decides.
        assert_eq!(at(0.0, 3072.0 * MIB, 16.0 * 1024.0 * MIB), 4608 << 20);
        // Garbage in: never below the original, never a panic.
        for (r, u, c) in [
            (f64::NAN, f64::NAN, f64::NAN),
            (-1.0, -1.0, -1.0),
            (f64::INFINITY, 0.0, f64::INFINITY),
        ] {
            assert!(at(r, u, c) >= 2 * gib, "{r} {u} {c}");
        }
        // Where the operator set no ceiling, none is ever written.
        assert_eq!(memory_ceiling(Bytes::Max, 1e9, 1e9, 1e12), None);
    }

    /// Randomised: whatever the inputs, the ceiling is at least the
    /// original and at least usage x 1.5, and the reservation x 1.5 when the
    /// configured ceiling allows it.
    #[test]
    fn the_memory_ceiling_rule_holds_for_any_inputs() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64 * 64.0 * 1024.0 * MIB
        };
        for _ in 0..10_000 {
            let (o, r, u, c) = (next() as u64, next(), next(), next());
            let t = memory_ceiling(Bytes::Limit(o), r, u, c).unwrap().as_u64() as f64;
            assert!(t >= o as f64, "{o} {r} {u} {c}: {t}");
            assert!(t + 1.0 >= u * 1.5, "{o} {r} {u} {c}: {t}");
            if c >= r.max(u) * 1.5 {
                assert!(t + 1.0 >= r * 1.5, "{o} {r} {u} {c}: {t}");
            }
        }
    }

    #[test]
    fn a_cgroup_without_a_quota_is_never_given_one() {
        let (_t, mut act) = open("apply-uncapped", None);
        let now = Instant::now();
        for cores in [0.25, 2.0, 0.5] {
            apply(&mut act, &decision(cores), None, now).unwrap();
            assert_eq!(quota(&act), None, "{cores} cores reserved");
        }
        assert_eq!(
            act.read("/g", Knob::CpuShares).unwrap(),
            Setting::Weight(1024),
            "the weight is the reservation: back at the original for half a core"
        );
    }
}
