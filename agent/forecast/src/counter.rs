//! Cumulative counters (CPU ns, bytes, faults) to per-second rates.
//!
//! A counter that goes down was reset (cgroup recreated, map entry evicted,
//! agent restarted): the usage of that interval is unknown, so it is
//! reported as such rather than as a negative or a huge wrapped rate, and
//! the forecaster then treats the tick as missing.

use super::Error;

/// What one counter reading gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    /// First reading: no interval to take a rate over yet.
    First,
    /// Increase per second since the previous reading.
    Rate(f64),
    /// The counter went backwards: this interval's usage is unknown. Skip
    /// the forecaster update; the next rate arrives as a gap it fills.
    Reset,
}

/// Turns successive readings of one cumulative counter into rates.
#[derive(Debug, Clone, Copy, Default)]
pub struct CounterRate {
    prev: Option<(f64, u64)>,
}

impl CounterRate {
    /// A converter that has seen no reading.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the counter's `value` read at time `t` (seconds).
    pub fn observe(&mut self, t: f64, value: u64) -> Result<Reading, Error> {
        if !t.is_finite() {
            return Err(Error::NonFinite(t));
        }
        let Some((pt, pv)) = self.prev else {
            self.prev = Some((t, value));
            return Ok(Reading::First);
        };
        if t <= pt {
            return Err(Error::TimeNotIncreasing { t, prev: pt });
        }
        self.prev = Some((t, value));
        Ok(match value.checked_sub(pv) {
            Some(d) => Reading::Rate(d as f64 / (t - pt)),
            None => Reading::Reset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_resets() {
        let mut c = CounterRate::new();
        assert_eq!(c.observe(0.0, 100), Ok(Reading::First));
        assert_eq!(c.observe(2.0, 300), Ok(Reading::Rate(100.0)));
        assert_eq!(c.observe(3.0, 10), Ok(Reading::Reset));
        assert_eq!(c.observe(4.0, 60), Ok(Reading::Rate(50.0)));
        assert!(matches!(
            c.observe(4.0, 70),
            Err(Error::TimeNotIncreasing { .. })
        ));
    }
}
