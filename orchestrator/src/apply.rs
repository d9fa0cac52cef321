//! Turning the engine's decisions into knob writes (docs/actuator.md has
//! the mapping and why each knob is soft or hard).
//!
//! A reservation of `a` in the resource's unit becomes:
//! - CPU (`a` cores): the quota (`cpu.max` / `cpu.cfs_quota_us`) at `a`
//!   cores over the knob's current period, and the weight (`cpu.weight` /
//!   `cpu.shares`) at `a` times the default (one core = the default weight);
//! - memory (`a` bytes): the soft knob (`memory.low` /
//!   `memory.soft_limit_in_bytes`) at `a`, and the hard one (`memory.high` /
//!   `memory.limit_in_bytes`) at `a` plus [`MEMORY_HEADROOM`] (never above
//!   the ceiling unless `a` is), so a forecast miss is reclaimed or
//!   throttled rather than killed;
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
        Actuator, ActuatorError, Bytes, CpuQuota, Knob, Outcome, Resource, Setting,
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
    /// Why writes were refused by a guardrail.
    pub refused: Vec<String>,
}

impl Applied {
    /// True if every knob now holds what the decision asked for.
    pub fn complete(&self) -> bool {
        self.refused.is_empty()
    }
}

/// Applies `d` to its cgroup's knobs. `ceiling` is the configured ceiling
/// of the resource, `capacity` the host's (for the I/O weight).
pub fn apply(
    act: &mut Actuator,
    d: &Decision,
    ceiling: f64,
    capacity: Option<f64>,
    now: Instant,
) -> Result<Applied, ActuatorError> {
    if d.resource == Resource::Cpu {
        act.note_cpu_usage(&d.path, d.usage);
    }
    let mut applied = Applied::default();
    let reason = d.reason.to_string();
    for knob in act.layout().knobs_for(&d.path, d.resource)? {
        let target = match d.amount {
            Some(a) => setting(act, &d.path, knob, a, ceiling, capacity)?,
            None => act.original(&d.path, knob).transpose()?,
        };
        let Some(target) = target else {
            continue;
        };
        match act.write(&d.path, knob, target, &reason, now)? {
            Outcome::Written { .. } | Outcome::DryRun { .. } => applied.written += 1,
            Outcome::Unchanged => applied.unchanged += 1,
            Outcome::Refused(why) => applied.refused.push(format!("{knob}: {why}")),
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
            let Setting::CpuQuota(current) = act.read(cgroup, knob)? else {
                return Ok(None);
            };
            Some(Setting::CpuQuota(CpuQuota::from_cores(
                a,
                current.period_us,
            )))
        }
        Knob::CpuWeight | Knob::CpuShares => weight_from_share(knob, a).map(Setting::Weight),
        Knob::MemoryLow | Knob::MemorySoftLimit => Some(bytes(a)),
        Knob::MemoryHigh | Knob::MemoryLimit => {
            Some(bytes((a * (1.0 + MEMORY_HEADROOM)).min(ceiling.max(a))))
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

fn bytes(a: f64) -> Setting {
    Setting::Bytes(Bytes::Limit(a.max(0.0) as u64))
}
