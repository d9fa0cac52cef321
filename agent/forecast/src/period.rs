//! Finds a series' period by itself, in bounded memory and time.
//!
//! For each candidate lag `k` it keeps an exponentially weighted variogram
//! `E[(y_t - y_{t-k})^2]`, which gives the autocorrelation as
//! `1 - gamma(k) / (2 var)` without tracking a mean per lag (so slow level
//! drift barely disturbs it). The candidates are every short lag (any
//! period of a few tens of ticks, e.g. a job every 45 s at 1 s ticks) plus
//! the periods people schedule by, converted to ticks with the sampling
//! interval (a day of 5-minute samples is 288 ticks): no list per trace.

use super::ring::{RING, Ring, SLACK};

/// Every lag from 2 to this one is a candidate.
const DENSE_MAX: usize = 48;
/// Upper bound on candidates (dense ones plus wall-clock ones).
const MAX_CANDIDATES: usize = 64;
/// Wall-clock periods (seconds) that schedules use: cron minutes, hours,
/// days, plus five- and fifteen-minute collection cycles.
const WALL_PERIODS_S: [f64; 13] = [
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0, 43200.0,
    86400.0,
];
/// Forgetting rate: a memory of about a thousand ticks, several periods for
/// every candidate that fits the ring.
const ALPHA: f32 = 1.0 / 1024.0;
/// A period must explain at least this much of the variance (autocorrelation)…
const MIN_ACF: f32 = 0.3;
/// …and the autocorrelation must have dipped by this much at a shorter lag,
/// so that a slowly varying series (high autocorrelation at every short lag)
/// is not mistaken for a periodic one.
const MIN_DIP: f32 = 0.15;
/// A selected period is kept while its autocorrelation stays above this…
const KEEP_ACF: f32 = 0.1;
/// …and no other peak beats it by more than this.
const SWITCH: f32 = 0.1;
/// Among peaks within this much of the best, the shortest lag wins (the
/// fundamental, not a multiple of it).
const TIE: f32 = 0.05;
/// Pairs after which a lag's forgetting rate is the fixed [`ALPHA`].
const WARM: usize = 1024;
/// Re-select the period every this many ticks; the statistics move slowly.
const RESELECT_EVERY: u32 = 32;
/// The variogram is brought up to date every this many ticks (and before
/// each selection), for the values taken since, oldest first: the same
/// updates in the same order as one per tick, so the same numbers, but its
/// state and the ring far back are touched once per batch instead of every
/// tick. The values stay readable because the ring keeps `SLACK` values
/// beyond its reach.
const BATCH: u8 = 8;
const _: () = assert!(BATCH as usize <= SLACK + 1 && RESELECT_EVERY.is_multiple_of(BATCH as u32));
/// Dense candidates (lags 2..=DENSE_MAX), the first ones.
const DENSE: usize = DENSE_MAX - 1;
/// Room for the wall-clock candidates beyond the dense lags.
const LONG: usize = MAX_CANDIDATES - DENSE;
const _: () = assert!(WALL_PERIODS_S.len() <= LONG);

/// The wall-clock periods longer than the dense lags, in ticks of
/// `interval_s`, up to `max_lag`, ascending (a day of 5-minute samples is
/// 288 ticks; one, two and five minutes of 1-second samples are 60, 120 and
/// 300).
pub(crate) fn long_wall_lags(interval_s: f64, max_lag: usize) -> impl Iterator<Item = u16> {
    WALL_PERIODS_S.into_iter().filter_map(move |p| {
        let k = (p / interval_s).round();
        (k > DENSE_MAX as f64 && k <= max_lag as f64).then_some(k as u16)
    })
}

/// Per-tick statistics first (mean, variance, counters; `repr(C)` keeps
/// the declaration order), the per-candidate ones after them: only the
/// first are touched every tick.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct PeriodDetector {
    n: u32,
    mean: f32,
    var: f32,
    /// Detected period (0 = none).
    period: u16,
    /// Candidates: the dense lags, then `long[..candidates - DENSE]`.
    candidates: u8,
    /// Values taken since the variogram was last brought up to date.
    behind: u8,
    /// Wall-clock candidate lags beyond the dense ones, ascending.
    long: [u16; LONG],
    /// Variogram per candidate (dense lags first).
    gamma: [f32; MAX_CANDIDATES],
}

impl PeriodDetector {
    pub(crate) fn new(interval_s: f64) -> Self {
        let mut long = [0u16; LONG];
        let mut count = 0;
        // The seasonal forecast for horizon h reads y[t + h - m]: keep the
        // longest lag inside the ring.
        let max_lag = RING - 1;
        for k in long_wall_lags(interval_s, max_lag) {
            if count < LONG && !long[..count].contains(&k) {
                long[count] = k;
                count += 1;
            }
        }
        Self {
            n: 0,
            mean: 0.0,
            var: 0.0,
            period: 0,
            candidates: (DENSE + count) as u8,
            behind: 0,
            long,
            gamma: [0.0; MAX_CANDIDATES],
        }
    }

    /// Lag of candidate `i`.
    #[inline]
    fn lag(&self, i: usize) -> usize {
        if i < DENSE {
            i + 2
        } else {
            self.long[i - DENSE] as usize
        }
    }

    /// Learns from the newest value, which `ring` already holds.
    pub(crate) fn update(&mut self, ring: &Ring) {
        let y = ring.get(0);
        self.n = self.n.saturating_add(1);
        let a = ALPHA.max(1.0 / self.n as f32);
        let d = y - self.mean;
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
        self.behind += 1;
        let reselect = self.n.is_multiple_of(RESELECT_EVERY);
        if self.behind == BATCH || reselect {
            self.catch_up(ring);
        }
        if reselect {
            self.period = self.select();
        }
    }

    /// Brings the variogram up to date with the values taken since the
    /// last batch, oldest first, each as the per-tick update would have
    /// done when it was the newest (`delay` ticks ago).
    fn catch_up(&mut self, ring: &Ring) {
        let count = self.candidates as usize;
        for delay in (0..self.behind as usize).rev() {
            // At that tick (saturation aside, unreachable in practice and
            // then in the steady state anyway): n and the ring's length.
            let n = self.n as usize - delay;
            let held = n.min(RING);
            let y = ring.get(delay);
            if n > RING + WARM {
                // Steady state (every lag has more than WARM pairs): one
                // forgetting rate, and the dense lags read a contiguous
                // stretch of the ring, so this loop vectorises.
                let mut diffs = [0.0f32; DENSE];
                ring.diffs_from(delay, 2, &mut diffs);
                for (g, d) in self.gamma[..DENSE].iter_mut().zip(&diffs) {
                    *g += ALPHA * (d * d - *g);
                }
                for i in DENSE..count {
                    let diff = y - ring.get(delay + self.long[i - DENSE] as usize);
                    self.gamma[i] += ALPHA * (diff * diff - self.gamma[i]);
                }
            } else {
                for i in 0..count {
                    let k = self.lag(i);
                    if k >= held {
                        // Lags are sorted ascending.
                        break;
                    }
                    // Bias-corrected start: plain mean of the first pairs.
                    let a = ALPHA.max(1.0 / (n - k) as f32);
                    let diff = y - ring.get(delay + k);
                    self.gamma[i] += a * (diff * diff - self.gamma[i]);
                }
            }
        }
        self.behind = 0;
    }

    fn select(&self) -> u16 {
        if self.var <= 0.0 {
            return 0;
        }
        let mut min_before = f32::INFINITY;
        let mut best: Option<(usize, f32)> = None;
        let mut peaks = [(0usize, 0f32); MAX_CANDIDATES];
        let mut npeaks = 0;
        for i in 0..self.candidates as usize {
            let k = self.lag(i);
            // Three periods of pairs before a lag's estimate is trusted.
            if (self.n as usize) < 4 * k {
                break;
            }
            let acf = 1.0 - self.gamma[i] / (2.0 * self.var);
            if acf >= MIN_ACF && acf - min_before >= MIN_DIP {
                peaks[npeaks] = (k, acf);
                npeaks += 1;
                if best.is_none_or(|(_, b)| acf > b) {
                    best = Some((k, acf));
                }
            }
            min_before = min_before.min(acf);
        }
        let current = self.acf_of(self.period as usize);
        let Some((_, top)) = best else {
            // Hysteresis: a period found once is kept while it still
            // explains some variance, so that the seasonal expert is not
            // switched on and off by estimation noise (a daily spike moves
            // the estimate once a day).
            return if current >= KEEP_ACF { self.period } else { 0 };
        };
        if current >= KEEP_ACF && current >= top - SWITCH {
            return self.period;
        }
        peaks[..npeaks]
            .iter()
            .find(|(_, acf)| *acf >= top - TIE)
            .map_or(0, |(k, _)| *k as u16)
    }

    /// Autocorrelation at candidate lag `k` (-inf when `k` is not one).
    fn acf_of(&self, k: usize) -> f32 {
        (0..self.candidates as usize)
            .find(|&i| self.lag(i) == k)
            .map_or(f32::NEG_INFINITY, |i| {
                1.0 - self.gamma[i] / (2.0 * self.var)
            })
    }

    pub(crate) fn period(&self) -> Option<usize> {
        (self.period > 0).then_some(self.period as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(interval_s: f64, n: usize, f: impl Fn(usize) -> f32) -> Option<usize> {
        let mut ring = Ring::new();
        let mut d = PeriodDetector::new(interval_s);
        for t in 0..n {
            ring.push(f(t));
            d.update(&ring);
        }
        d.period()
    }

    #[test]
    fn finds_a_daily_cycle_in_five_minute_data() {
        let p = detect(300.0, 3000, |t| {
            let day = (t as f32 * std::f32::consts::TAU / 288.0).sin();
            10.0 + 5.0 * day + ((t * 7919) % 13) as f32 * 0.1
        });
        assert_eq!(p, Some(288));
    }

    #[test]
    fn finds_a_short_job_cycle() {
        // A 20-tick busy burst every 45 ticks.
        let p = detect(1.0, 2000, |t| if t % 45 < 20 { 1.0 } else { 0.0 });
        assert_eq!(p, Some(45));
    }

    #[test]
    fn no_period_in_a_random_walk_or_a_trend() {
        let mut x = 50.0f32;
        let mut s = 12345u32;
        let walk: Vec<f32> = (0..3000)
            .map(|_| {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
                x += ((s >> 16) % 100) as f32 / 50.0 - 0.99;
                x
            })
            .collect();
        assert_eq!(detect(300.0, walk.len(), |t| walk[t]), None);
        assert_eq!(detect(1.0, 2000, |t| t as f32), None);
    }
}
