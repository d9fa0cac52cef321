//! Decides when a shadow's forecast is worth sending on.
//!
//! With 10,000 cgroups a message per series per tick would swamp the
//! orchestrator with news that nothing changed. A forecast is sent when
//! what the orchestrator holds has gone stale in a way that matters:
//! - the upper band at some horizon moved by more than a share of its
//!   last sent value (or of the series' typical level, so that a series
//!   near zero does not report every flicker), since the band is what gets
//!   reserved;
//! - the realised value broke through the band the orchestrator holds (it
//!   is under-reserving right now);
//! - a heartbeat is due (so silence means "unchanged", not "dead").
//!
//! A steady series thus reports at the heartbeat, a volatile one often.

use super::{Forecast, MAX_HORIZON};

/// Settings of a [`Reporter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReporterConfig {
    /// Relative move of the upper band that triggers a report.
    pub change: f64,
    /// Longest silence, in seconds.
    pub heartbeat_s: f64,
    /// Sampling interval in seconds (to tell which horizon of the last sent
    /// forecast covers "now").
    pub interval_s: f64,
}

impl ReporterConfig {
    /// Defaults: 10 % band move, heartbeat every 30 ticks.
    pub fn for_interval(interval_s: f64) -> Self {
        Self {
            change: 0.10,
            heartbeat_s: 30.0 * interval_s,
            interval_s,
        }
    }
}

/// Why a forecast was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Nothing was sent before.
    First,
    /// The realised value exceeded the band last sent for this tick.
    Breach,
    /// The upper band moved enough to matter.
    Moved,
    /// The heartbeat was due.
    Heartbeat,
}

/// Per-series reporting state: the forecast the orchestrator holds.
#[derive(Debug, Clone)]
pub struct Reporter {
    cfg: ReporterConfig,
    sent: Option<Forecast>,
}

impl Reporter {
    /// A reporter that has sent nothing.
    pub fn new(cfg: ReporterConfig) -> Self {
        Self { cfg, sent: None }
    }

    /// The forecast the orchestrator holds.
    pub fn last_sent(&self) -> Option<&Forecast> {
        self.sent.as_ref()
    }

    /// Offers the newest forecast, made after observing `y` at `f.t`;
    /// returns why it must be sent, or `None` to stay silent. A sent
    /// forecast becomes the one held.
    pub fn offer(&mut self, y: f64, f: &Forecast) -> Option<Reason> {
        let reason = self.decide(y, f);
        if reason.is_some() {
            self.sent = Some(*f);
        }
        reason
    }

    fn decide(&self, y: f64, f: &Forecast) -> Option<Reason> {
        let Some(sent) = &self.sent else {
            return Some(Reason::First);
        };
        let ticks = ((f.t - sent.t) / self.cfg.interval_s).round();
        if ticks >= 1.0 {
            let i = (ticks as usize).min(sent.horizon.max(1)) - 1;
            if y > sent.upper[i] {
                return Some(Reason::Breach);
            }
        }
        // Against what the orchestrator holds for the same ticks: the sent
        // forecast's horizons shifted by the ticks since it was made (its
        // band for the next tick is now its second horizon's, which is
        // wider), not its band at the same horizon index.
        let h = f.horizon.min(MAX_HORIZON);
        let moved = (0..h).any(|i| {
            let held = self.held_upper(f.t, i + 1).unwrap_or(0.0);
            (f.upper[i] - held).abs() > self.cfg.change * held.max(f.scale)
        });
        if moved {
            return Some(Reason::Moved);
        }
        (f.t - sent.t >= self.cfg.heartbeat_s).then_some(Reason::Heartbeat)
    }

    /// Upper band the orchestrator holds for the tick `h` intervals after
    /// `t`: the last sent forecast's band for that tick, or its longest
    /// horizon when the tick lies beyond it.
    pub fn held_upper(&self, t: f64, h: usize) -> Option<f64> {
        self.held(t, h).map(|(s, i)| s.upper[i])
    }

    /// Point forecast the orchestrator holds, as [`Self::held_upper`].
    pub fn held_point(&self, t: f64, h: usize) -> Option<f64> {
        self.held(t, h).map(|(s, i)| s.point[i])
    }

    fn held(&self, t: f64, h: usize) -> Option<(&Forecast, usize)> {
        let s = self.sent.as_ref()?;
        let ahead = ((t - s.t) / self.cfg.interval_s).round().max(0.0) as usize + h;
        Some((s, ahead.clamp(1, s.horizon.max(1)) - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fc(t: f64, upper: f64) -> Forecast {
        Forecast {
            t,
            horizon: 2,
            point: [1.0; MAX_HORIZON],
            upper: [upper; MAX_HORIZON],
            volatility: 0.1,
            scale: 1.0,
            period: None,
        }
    }

    #[test]
    fn steady_is_quiet_until_heartbeat_moves_and_breaches_report() {
        let mut r = Reporter::new(ReporterConfig::for_interval(1.0));
        assert_eq!(r.offer(1.0, &fc(0.0, 2.0)), Some(Reason::First));
        for t in 1..30 {
            assert_eq!(r.offer(1.0, &fc(t as f64, 2.05)), None, "t={t}");
        }
        assert_eq!(r.offer(1.0, &fc(30.0, 2.0)), Some(Reason::Heartbeat));
        assert_eq!(r.offer(1.0, &fc(31.0, 2.5)), Some(Reason::Moved));
        assert_eq!(r.offer(3.0, &fc(32.0, 2.5)), Some(Reason::Breach));
        assert_eq!(r.held_upper(32.0, 1), Some(2.5));
    }

    /// The orchestrator holds the sent forecast shifted by the ticks since:
    /// a new forecast whose bands match the sent one horizon by horizon
    /// but not tick by tick (a band that widens with the horizon) is news.
    #[test]
    fn moved_is_judged_against_the_band_held_for_the_same_tick() {
        let widening = |t: f64| Forecast {
            upper: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            horizon: MAX_HORIZON,
            ..fc(t, 0.0)
        };
        let mut r = Reporter::new(ReporterConfig::for_interval(1.0));
        assert_eq!(r.offer(0.5, &widening(0.0)), Some(Reason::First));
        // One tick on, the orchestrator holds 2.0 for the next tick.
        assert_eq!(r.offer(0.5, &widening(1.0)), Some(Reason::Moved));
        // A forecast that matches what is held tick by tick is not news.
        let shifted = Forecast {
            upper: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            horizon: MAX_HORIZON,
            ..fc(2.0, 0.0)
        };
        let held: Vec<f64> = (1..=MAX_HORIZON)
            .map(|h| r.held_upper(2.0, h).unwrap())
            .collect();
        assert_eq!(held, [2.0, 3.0, 4.0, 5.0, 6.0, 6.0]);
        let same = Forecast {
            upper: [2.0, 3.0, 4.0, 5.0, 6.0, 6.0],
            ..shifted
        };
        assert_eq!(r.offer(0.5, &same), None);
    }
}
