//! The simple models the ensemble mixes. Each is cheap (a few floats) and
//! right for one kind of series; none is right for all:
//!
//! - naive (last value): random-walk-like usage, where anything smoother lags;
//! - fast EWMA (half-life 2 ticks): noisy level that still shifts often;
//! - slow EWMA (half-life 16 ticks): noisy level that is stable;
//! - damped trend (Holt, damping 0.98): ramps (memory leaks, growing load)
//!   without extrapolating them forever;
//! - mean-reverting AR(1) around a slow mean: bursts that decay back, with
//!   the persistence estimated online;
//! - seasonal naive at the detected period: schedules (cron jobs, daily
//!   cycles).
//!
//! Their constants are fixed time scales spread over one to tens of ticks,
//! chosen a priori; the ensemble's weighting, not tuning, picks among them.

use super::MAX_HORIZON;
use super::ring::Ring;

/// Number of experts.
pub(crate) const EXPERTS: usize = 6;
pub(crate) const SEASONAL: usize = 5;

const FAST: f32 = 0.292_893_2; // 1 - 2^(-1/2): half-life 2 ticks
const SLOW: f32 = 0.042_404_8; // 1 - 2^(-1/16): half-life 16 ticks
const HOLT_LEVEL: f32 = 0.3;
const HOLT_TREND: f32 = 0.1;
const DAMPING: f32 = 0.98;
/// The AR(1) mean and persistence move with a half-life of about 64 ticks.
const AR_ALPHA: f32 = 0.010_772_2;

#[derive(Debug, Clone)]
pub(crate) struct Experts {
    last: f32,
    fast: f32,
    slow: f32,
    level: f32,
    trend: f32,
    ar_mean: f32,
    ar_var: f32,
    ar_cov: f32,
    started: bool,
}

impl Experts {
    pub(crate) fn new() -> Self {
        Self {
            last: 0.0,
            fast: 0.0,
            slow: 0.0,
            level: 0.0,
            trend: 0.0,
            ar_mean: 0.0,
            ar_var: 0.0,
            ar_cov: 0.0,
            started: false,
        }
    }

    pub(crate) fn update(&mut self, y: f32) {
        if !self.started {
            self.started = true;
            self.last = y;
            self.fast = y;
            self.slow = y;
            self.level = y;
            self.ar_mean = y;
            return;
        }
        let prev_dev = self.last - self.ar_mean;
        self.fast += FAST * (y - self.fast);
        self.slow += SLOW * (y - self.slow);
        let prev_level = self.level;
        self.level = HOLT_LEVEL * y + (1.0 - HOLT_LEVEL) * (prev_level + DAMPING * self.trend);
        self.trend =
            HOLT_TREND * (self.level - prev_level) + (1.0 - HOLT_TREND) * DAMPING * self.trend;
        self.ar_mean += AR_ALPHA * (y - self.ar_mean);
        let dev = y - self.ar_mean;
        self.ar_var += AR_ALPHA * (dev * dev - self.ar_var);
        self.ar_cov += AR_ALPHA * (dev * prev_dev - self.ar_cov);
        self.last = y;
    }

    /// What the experts' forecasts made now depend on (see [`Snapshot`]).
    /// The seasonal expert forecasts while a period `m` is known and the
    /// ring reaches back a period.
    pub(crate) fn snapshot(&self, ring: &Ring, period: Option<usize>) -> Snapshot {
        let phi = if self.ar_var > 0.0 {
            (self.ar_cov / self.ar_var).clamp(0.0, 0.999)
        } else {
            0.0
        };
        let season = match period {
            Some(m) if ring.len() >= m => m as u16,
            _ => 0,
        };
        Snapshot {
            last: self.last,
            fast: self.fast,
            slow: self.slow,
            level: self.level,
            trend: self.trend,
            ar_mean: self.ar_mean,
            phi,
            season,
        }
    }
}

/// `DAMP[h]`: the damped trend's multiplier of the trend at horizon
/// `h + 1`, `phi + phi^2 + ... + phi^(h + 1)`, summed in that order.
const DAMP: [f32; MAX_HORIZON] = {
    let mut out = [0.0; MAX_HORIZON];
    let mut damp = 0.0;
    let mut damp_pow = 1.0;
    let mut h = 0;
    while h < MAX_HORIZON {
        damp_pow *= DAMPING;
        damp += damp_pow;
        out[h] = damp;
        h += 1;
    }
    out
};

/// The experts' state at one origin tick, enough to derive their forecasts
/// for every horizon (32 bytes instead of 6 horizons x 6 experts floats):
/// the forecasts are kept this way until their targets arrive and are
/// scored, and the same code derives them when made and when scored, so
/// both are the same numbers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    last: f32,
    fast: f32,
    slow: f32,
    level: f32,
    trend: f32,
    ar_mean: f32,
    /// AR(1) persistence estimated at the origin.
    phi: f32,
    /// Period the seasonal expert used (0: it made no forecast).
    season: u16,
}

impl Snapshot {
    /// Before any origin: every expert silent.
    pub(crate) const EMPTY: Self = Self {
        last: f32::NAN,
        fast: f32::NAN,
        slow: f32::NAN,
        level: f32::NAN,
        trend: f32::NAN,
        ar_mean: f32::NAN,
        phi: f32::NAN,
        season: 0,
    };

    /// Point forecasts of every expert for horizon `h + 1` from this
    /// origin. `ring` is read `delay` ticks after the origin (its newest
    /// value is then `delay` ticks newer); `delay <= h` keeps the seasonal
    /// read within the ring's slack. The seasonal expert is NaN when it
    /// made no forecast.
    #[inline]
    pub(crate) fn row(&self, h: usize, ring: &Ring, delay: usize) -> [f32; EXPERTS] {
        let mut ar_decay = 1.0;
        for _ in 0..=h {
            ar_decay *= self.phi;
        }
        let dev = self.last - self.ar_mean;
        let m = self.season as usize;
        [
            self.last,
            self.fast,
            self.slow,
            self.level + DAMP[h] * self.trend,
            self.ar_mean + ar_decay * dev,
            if m > 0 {
                ring.get(m - 1 - (h % m) + delay)
            } else {
                f32::NAN
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seasonal_reads_one_period_back() {
        let mut ring = Ring::new();
        let mut e = Experts::new();
        for t in 0..10 {
            ring.push(t as f32);
            e.update(t as f32);
        }
        let s = e.snapshot(&ring, Some(4));
        let out = |s: &Snapshot, h| s.row(h, &ring, 0)[SEASONAL];
        // Newest is 9; target 10 is one period (4) after 6, 11 after 7, 12 after 8.
        assert_eq!([out(&s, 0), out(&s, 1), out(&s, 2)], [6.0, 7.0, 8.0]);
        // Horizon beyond the period wraps around it.
        let s = e.snapshot(&ring, Some(2));
        assert_eq!([out(&s, 0), out(&s, 1), out(&s, 2)], [8.0, 9.0, 8.0]);
        // Read again after two more ticks, the forecast is the same.
        let mut later = ring.clone();
        later.push(100.0);
        later.push(101.0);
        assert_eq!(s.row(2, &later, 2)[SEASONAL], 8.0);
    }
}
