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
//!   a hard one (`memory.high` / `memory.limit_in_bytes`), that at `a` plus
//!   [`MEMORY_HEADROOM`] (never above the ceiling unless `a` is), so a
//!   forecast miss is reclaimed or throttled rather than killed;
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

/// Hard memory caps sit this share above the reservation.
pub const MEMORY_HEADROOM: f64 = 0.5;

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
            Some(a) => match setting(act, &d.path, knob, a, d.ceiling, capacity)? {
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
    a: f64,
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
            // As for the quota: no cap where the operator set none.
            match before_shadow(act, cgroup, knob)? {
                Setting::Bytes(Bytes::Max) => None,
                _ => Some(bytes((a * (1.0 + MEMORY_HEADROOM)).min(ceiling.max(a)))),
            }
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
