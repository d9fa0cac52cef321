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

    /// Point forecasts of every expert for horizons `1..=horizon`, written
    /// to `out[h - 1]`. The seasonal expert is NaN while no period is known
    /// (or the ring does not reach back a period yet).
    pub(crate) fn forecast(
        &self,
        ring: &Ring,
        period: Option<usize>,
        horizon: usize,
        out: &mut [[f32; EXPERTS]],
    ) {
        let phi = if self.ar_var > 0.0 {
            (self.ar_cov / self.ar_var).clamp(0.0, 0.999)
        } else {
            0.0
        };
        let dev = self.last - self.ar_mean;
        let mut ar_decay = 1.0;
        let mut damp = 0.0;
        let mut damp_pow = 1.0;
        for (h, row) in out.iter_mut().enumerate().take(horizon) {
            ar_decay *= phi;
            damp_pow *= DAMPING;
            damp += damp_pow;
            row[0] = self.last;
            row[1] = self.fast;
            row[2] = self.slow;
            row[3] = self.level + damp * self.trend;
            row[4] = self.ar_mean + ar_decay * dev;
            row[SEASONAL] = match period {
                Some(m) if ring.len() >= m => ring.get(m - 1 - (h % m)),
                _ => f32::NAN,
            };
        }
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
        let mut out = [[0.0; EXPERTS]; 3];
        e.forecast(&ring, Some(4), 3, &mut out);
        // Newest is 9; target 10 is one period (4) after 6, 11 after 7, 12 after 8.
        assert_eq!(out[0][SEASONAL], 6.0);
        assert_eq!(out[1][SEASONAL], 7.0);
        assert_eq!(out[2][SEASONAL], 8.0);
        // Horizon beyond the period wraps around it.
        e.forecast(&ring, Some(2), 3, &mut out);
        assert_eq!(
            [out[0][SEASONAL], out[1][SEASONAL], out[2][SEASONAL]],
            [8.0, 9.0, 8.0]
        );
    }
}
