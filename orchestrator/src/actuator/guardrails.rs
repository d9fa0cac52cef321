//! Rate limit and cooldown per knob: pure decisions, time passed in.
//!
//! Control is asymmetric: a raise is never delayed (demand that arrives, or
//! is about to, gets its resources at once); only lowerings wait. A knob
//! lowered every tick makes the workload's resources oscillate with the
//! forecast's noise, so a lowering waits `min_interval` after any write
//! and `cooldown` after the last raise. The engine already lowers only
//! after the band has stayed low for a while (its `hold`), so the shipped
//! cooldown is short: a safety net, not the policy.

use std::time::{Duration, Instant};

/// How often and how soon the actuator may change a knob.
#[derive(Clone, Debug, PartialEq)]
pub struct Guardrails {
    /// Least time between a write to a knob and a lowering of it.
    pub min_interval: Duration,
    /// Least time between a knob's last raise and a lowering of it. Raises
    /// are never delayed by it: demand that arrives gets its resources.
    pub cooldown: Duration,
    /// A CPU quota is never lowered below this many cores, whatever the
    /// recent usage was (a quota near zero starves even a shell).
    pub cpu_floor_cores: f64,
}

impl Default for Guardrails {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(1),
            cooldown: Duration::from_secs(2),
            cpu_floor_cores: 0.1,
        }
    }
}

/// Whether a write gives more or less than the knob has now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// More (or the same amount in other terms, such as another period).
    Raise,
    /// Less.
    Lower,
}

impl Direction {
    /// The direction of a change from `old` to `new` amounts.
    pub fn of(old: f64, new: f64) -> Self {
        if new >= old { Self::Raise } else { Self::Lower }
    }
}

/// Why a write was not made (it may be retried later or with another value).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The knob was written less than `min_interval` ago.
    #[error("rate limited: the knob was written recently; retry in {retry_in:?}")]
    RateLimited {
        /// Time until a write is allowed.
        retry_in: Duration,
    },
    /// A lowering less than `cooldown` after the knob's last raise.
    #[error("cooling down after a raise; a lowering is allowed in {retry_in:?}")]
    Cooldown {
        /// Time until a lowering is allowed.
        retry_in: Duration,
    },
    /// A memory cap below what the cgroup uses now.
    #[error("hard memory limit {limit} B is below current usage {usage} B")]
    BelowMemoryUsage {
        /// The limit offered.
        limit: u64,
        /// The cgroup's usage.
        usage: u64,
    },
    /// A CPU quota below recent usage or the floor.
    #[error("CPU quota of {cores:.3} cores is below {needed:.3} (recent usage or floor)")]
    BelowCpuUsage {
        /// Cores the quota offered allows.
        cores: f64,
        /// Recent usage or the floor, whichever is larger.
        needed: f64,
    },
}

/// The writes made to one knob, as far as the limits care.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct History {
    last_write: Option<Instant>,
    last_raise: Option<Instant>,
}

impl History {
    /// Whether a write in `direction` at `now` is allowed.
    pub fn check(
        &self,
        limits: &Guardrails,
        direction: Direction,
        now: Instant,
    ) -> Result<(), Refusal> {
        if direction == Direction::Raise {
            return Ok(());
        }
        if let Some(last) = self.last_write {
            let since = now.saturating_duration_since(last);
            if since < limits.min_interval {
                return Err(Refusal::RateLimited {
                    retry_in: limits.min_interval - since,
                });
            }
        }
        if let Some(raise) = self.last_raise {
            let since = now.saturating_duration_since(raise);
            if since < limits.cooldown {
                return Err(Refusal::Cooldown {
                    retry_in: limits.cooldown - since,
                });
            }
        }
        Ok(())
    }

    /// Records a write made at `now`.
    pub fn record(&mut self, direction: Direction, now: Instant) {
        self.last_write = Some(now);
        if direction == Direction::Raise {
            self.last_raise = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Guardrails {
        Guardrails {
            min_interval: Duration::from_secs(2),
            cooldown: Duration::from_secs(10),
            cpu_floor_cores: 0.1,
        }
    }

    #[test]
    fn first_write_is_always_allowed() {
        let t0 = Instant::now();
        let h = History::default();
        assert_eq!(h.check(&limits(), Direction::Lower, t0), Ok(()));
        assert_eq!(h.check(&limits(), Direction::Raise, t0), Ok(()));
    }

    #[test]
    fn lowerings_closer_than_min_interval_are_refused_raises_never() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.record(Direction::Lower, t0);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(h.check(&limits(), Direction::Raise, t1), Ok(()));
        assert_eq!(
            h.check(&limits(), Direction::Lower, t1),
            Err(Refusal::RateLimited {
                retry_in: Duration::from_millis(1500)
            })
        );
        assert_eq!(
            h.check(&limits(), Direction::Lower, t0 + Duration::from_secs(2)),
            Ok(())
        );
    }

    #[test]
    fn lowering_waits_for_cooldown_after_a_raise_but_raising_does_not() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.record(Direction::Raise, t0);
        let t3 = t0 + Duration::from_secs(3);
        assert_eq!(h.check(&limits(), Direction::Raise, t3), Ok(()));
        assert_eq!(
            h.check(&limits(), Direction::Lower, t3),
            Err(Refusal::Cooldown {
                retry_in: Duration::from_secs(7)
            })
        );
        assert_eq!(
            h.check(&limits(), Direction::Lower, t0 + Duration::from_secs(10)),
            Ok(())
        );
        // A lowering does not restart the cooldown; a new raise does.
        h.record(Direction::Lower, t0 + Duration::from_secs(10));
        assert_eq!(
            h.check(&limits(), Direction::Lower, t0 + Duration::from_secs(12)),
            Ok(())
        );
        h.record(Direction::Raise, t0 + Duration::from_secs(12));
        assert!(matches!(
            h.check(&limits(), Direction::Lower, t0 + Duration::from_secs(20)),
            Err(Refusal::Cooldown { .. })
        ));
    }

    #[test]
    fn time_going_backwards_is_not_a_panic() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut h = History::default();
        h.record(Direction::Raise, t0);
        let earlier = t0 - Duration::from_secs(50);
        assert!(h.check(&limits(), Direction::Lower, earlier).is_err());
        assert!(h.check(&limits(), Direction::Raise, earlier).is_ok());
    }

    #[test]
    fn direction_of_change() {
        assert_eq!(Direction::of(1.0, 2.0), Direction::Raise);
        assert_eq!(Direction::of(2.0, 1.0), Direction::Lower);
        assert_eq!(Direction::of(1.0, 1.0), Direction::Raise);
        assert_eq!(Direction::of(5.0, f64::INFINITY), Direction::Raise);
        assert_eq!(Direction::of(f64::INFINITY, 5.0), Direction::Lower);
    }
}
