//! Recurring peaks at a wall-clock period whose timing jitters (a daily job
//! that runs "around 03:00", a report every hour give or take a minute).
//!
//! Such a peak is one tick wide and lands a few ticks early or late each
//! time, so the autocorrelation at its period stays weak and the mixed band
//! learns to ignore it: whatever the experts say, a peak that lasts one
//! tick a day carries almost no weight in a loss with a memory of a few
//! hundred ticks. Yet if it recurs, the cheapest honest band at the ticks
//! around its expected time is the peak itself.
//!
//! So this part proposes, for each long wall-clock period `m` (see
//! `period::long_wall_lags`) and each jitter tolerance `w` in [`WIDTHS`], a
//! *lift*: raise the band for tick `t` to the highest value seen in the
//! window `t - m - w ..= t - m + w`, one period earlier. It is a
//! specialist: it only has an opinion at ticks where that window holds
//! something above the mixed band ("awake" ticks), and it is scored only on
//! those, against the mixed band, with the pinball loss at `q`. Measured
//! per unit of lift, the pinball gain of lifting the band from `u` to `W`
//! when `y` happened is `clamp((y - u) / (W - u), 0, 1) - (1 - q)`: the
//! share of the lift that was used, minus the price of reserving it. A lift
//! is applied only while the discounted share used exceeds `1 - q` by two
//! standard errors (a one-sided test at about 2.5 %), so a series with
//! peaks at random times (which wake the specialist as often) is left
//! alone, and the one candidate with the highest share is used.
//!
//! Known weakness: the share weighs every awake tick alike whatever the
//! size of the lift, so frequent small lifts (a band that sits just below a
//! level the series keeps returning to, as coarse two-level readings do)
//! earn as much record as a rare large peak. On such a series the test is
//! passed through those small lifts, and the candidate selected is the one
//! with the best share, which need not be the one that sees the peak. On a
//! base whose noise crosses the band every few ticks, a daily peak's
//! record is drowned by the noise's and no lift is applied.
//!
//! Only the one-tick band is scored (the windows for other horizons are the
//! same windows shifted), and the scores are counterfactual (the unlifted
//! band is kept), so applying a lift does not feed back into its record.
//! Cost: a window maximum per candidate per tick, read from the ring at
//! lags the period detector reads anyway; the state is two floats per
//! candidate.

use super::MAX_HORIZON;
use super::period::long_wall_lags;
use super::ring::{RING, Ring};

/// Jitter tolerances in ticks: exact recurrence, ±1 and ±3 ticks. The
/// windows are nested, so their maxima come from one pass.
const WIDTHS: [usize; 3] = [0, 1, 3];
const W: usize = WIDTHS.len();
const WIDEST: usize = WIDTHS[W - 1];
/// Long wall-clock periods followed (in practice two or three fit the ring
/// at any sampling interval).
const LAGS: usize = 4;
/// Memory of the record, in awake ticks.
const BETA: f32 = 1.0 / 64.0;
/// Squared number of standard errors the share used must exceed `1 - q` by.
const Z2: f32 = 4.0;
/// No lift selected.
const NONE: u8 = u8::MAX;

#[derive(Debug, Clone)]
pub(crate) struct Recurrence {
    /// Candidate periods in ticks (0 = unused slot).
    lags: [u16; LAGS],
    /// Per candidate and width: discounted share of the lift used…
    used: [[f32; W]; LAGS],
    /// …and discounted number of awake ticks.
    awake: [[f32; W]; LAGS],
    /// The unlifted one-tick band made at the last tick (NaN: none yet).
    base: f32,
    /// Selected candidate, `lag * W + width`, or [`NONE`].
    active: u8,
}

/// Largest value in the ring at lags `centre - w ..= centre + w`, for each
/// width of [`WIDTHS`] (callers keep `centre + WIDEST < ring.len()` and
/// `centre >= WIDEST`).
#[inline]
fn window_maxima(ring: &Ring, centre: usize) -> [f32; W] {
    let mut out = [0.0; W];
    let mut m = ring.get(centre);
    let mut reached = 0;
    for (o, &w) in out.iter_mut().zip(&WIDTHS) {
        while reached < w {
            reached += 1;
            m = m
                .max(ring.get(centre - reached))
                .max(ring.get(centre + reached));
        }
        *o = m;
    }
    out
}

impl Recurrence {
    pub(crate) fn new(interval_s: f64) -> Self {
        let mut lags = [0u16; LAGS];
        let mut count = 0;
        // Scoring reads lags up to m - 1 + WIDEST, lifting down to
        // m - MAX_HORIZON - WIDEST.
        for k in long_wall_lags(interval_s, RING - 1 - WIDEST) {
            if count < LAGS && !lags[..count].contains(&k) {
                lags[count] = k;
                count += 1;
            }
        }
        Self {
            lags,
            used: [[0.0; W]; LAGS],
            awake: [[0.0; W]; LAGS],
            base: f32::NAN,
            active: NONE,
        }
    }

    /// Starts loading the ring values `score` and `lift` will read (see
    /// `ring::prefetch`); call before `y` enters the ring.
    #[inline]
    pub(crate) fn prefetch(&self, ring: &Ring) {
        for &m in &self.lags {
            let m = m as usize;
            if m > 0 && m + WIDEST <= ring.len() {
                // Scoring reads lags m - 1 -+ WIDEST now; lifting, after
                // the push, m - h -+ WIDEST, which are lags one less now.
                ring.prefetch(m - 1 - MAX_HORIZON - WIDEST, m - 1 + WIDEST);
            }
        }
    }

    /// Scores every candidate on the realised `y` of the tick the last
    /// one-tick band was made for, and selects the lift to use. Call before
    /// `y` enters the ring (its newest value is then the tick before `y`).
    pub(crate) fn score(&mut self, ring: &Ring, y: f32, q: f32) {
        let u = self.base;
        if u.is_nan() {
            return;
        }
        let mut woke = false;
        for i in 0..LAGS {
            let m = self.lags[i] as usize;
            // y's tick is one past the ring's newest, so one period before
            // it is lag m - 1.
            if m == 0 || m + WIDEST > ring.len() {
                continue;
            }
            let maxima = window_maxima(ring, m - 1);
            for (k, &top) in maxima.iter().enumerate() {
                if top > u {
                    let share = ((y - u) / (top - u)).clamp(0.0, 1.0);
                    self.used[i][k] = (1.0 - BETA) * self.used[i][k] + share;
                    self.awake[i][k] = (1.0 - BETA) * self.awake[i][k] + 1.0;
                    woke = true;
                }
            }
        }
        // The selection only changes when a record did.
        if woke {
            self.select(q);
        }
    }

    /// The candidate with the highest share used among those whose share
    /// exceeds `1 - q` by two standard errors.
    fn select(&mut self, q: f32) {
        let miss = 1.0 - q;
        // A share this close to 1 - q is noise: its variance under "no
        // better than reserving nothing" is q (1 - q).
        let null_var = q * miss;
        let mut best = (NONE, 0.0f32);
        for i in 0..LAGS {
            for k in 0..W {
                let awake = self.awake[i][k];
                if awake > 0.0 {
                    let p = self.used[i][k] / awake;
                    let excess = p - miss;
                    let var = (p * (1.0 - p)).max(null_var);
                    if excess > 0.0 && excess * excess * awake > Z2 * var && p > best.1 {
                        best = ((i * W + k) as u8, p);
                    }
                }
            }
        }
        self.active = best.0;
    }

    /// Keeps the mixed one-tick band for scoring, then raises the bands of
    /// horizons `1..=horizon` to the selected lift (if any). Call after the
    /// newest value entered the ring.
    pub(crate) fn lift(&mut self, ring: &Ring, upper: &mut [f32; MAX_HORIZON], horizon: usize) {
        self.base = upper[0];
        if self.active == NONE {
            return;
        }
        let (i, k) = (self.active as usize / W, self.active as usize % W);
        let (m, w) = (self.lags[i] as usize, WIDTHS[k]);
        // The target h ticks ahead is lag m - h one period back.
        for (h, u) in upper.iter_mut().enumerate().take(horizon) {
            let centre = m - (h + 1);
            let mut top = ring.get(centre);
            for j in 1..=w {
                top = top.max(ring.get(centre - j)).max(ring.get(centre + j));
            }
            *u = u.max(top);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `ys` with a flat band `u` standing for the mixed band; returns
    /// the lifted one-tick bands.
    fn replay(interval_s: f64, ys: &[f32], u: f32) -> Vec<f32> {
        let mut ring = Ring::new();
        let mut r = Recurrence::new(interval_s);
        let mut out = Vec::new();
        for &y in ys {
            r.score(&ring, y, 0.95);
            ring.push(y);
            let mut upper = [u; MAX_HORIZON];
            r.lift(&ring, &mut upper, MAX_HORIZON);
            out.push(upper[0]);
        }
        out
    }

    /// A one-tick daily peak in 5-minute data (288 ticks) that never comes
    /// at the same time twice (one tick earlier or later than the day
    /// before): after a few days the band is raised around its expected
    /// time, and only there.
    #[test]
    fn a_jittered_daily_peak_is_reserved_for() {
        let jitter = [0i64, 1, 2, 1, 0, -1, 0, 1, 0, -1, -2, -1, 0, 1];
        let mut ys = vec![1.0f32; 288 * jitter.len()];
        let peaks: Vec<usize> = jitter
            .iter()
            .enumerate()
            .map(|(d, j)| (288 * d as i64 + 150 + j) as usize)
            .collect();
        for &p in &peaks {
            ys[p] = 10.0;
        }
        let bands = replay(300.0, &ys, 1.5);
        let last_days = &peaks[peaks.len() - 4..];
        for &p in last_days {
            assert_eq!(bands[p - 1], 10.0, "peak at {p} not reserved for");
        }
        // Away from the peaks (more than a window from any), the band is
        // the mixed one.
        let lifted_far = (288 * 7..ys.len())
            .filter(|&t| peaks.iter().all(|&p| (t as i64 + 1 - p as i64).abs() > 8))
            .filter(|&t| bands[t] > 1.5)
            .count();
        assert_eq!(lifted_far, 0);
    }

    /// Peaks at random times: the specialist wakes up as often, but its
    /// lifts are rarely used, so it stays off.
    #[test]
    fn random_peaks_are_not_lifted() {
        let mut s = 99u64;
        let ys: Vec<f32> = (0..288 * 20)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                if (s >> 33).is_multiple_of(100) {
                    10.0
                } else {
                    1.0
                }
            })
            .collect();
        let bands = replay(300.0, &ys, 1.5);
        let lifted = bands[288 * 5..].iter().filter(|&&b| b > 1.5).count();
        assert!(lifted < 20, "{lifted} ticks lifted");
    }
}
