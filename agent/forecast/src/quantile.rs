//! Calibrates an upper band from the errors actually made.
//!
//! The band is `point + qhat * sigma`: `sigma` is a recent mean absolute
//! error (so the band breathes with volatility, widening in a burst and
//! narrowing in calm), and `qhat` is moved by online quantile tracking
//! (the update behind adaptive conformal inference): up by `lr * q` after a
//! miss, down by `lr * (1 - q)` after a hit, which settles where misses are
//! a share `1 - q` of the ticks whatever the error distribution. No Gaussian
//! (or any) shape is assumed, and skewed, heavy-tailed errors get the
//! multiplier they need. Only the hit/miss indicator enters the update, so a
//! single huge spike cannot throw the multiplier off.

/// Step of the multiplier per tick, in units of `sigma`: large enough to
/// recover from a regime change within a few dozen misses, small enough that
/// the multiplier does not jitter with each tick.
const LR: f32 = 0.05;
/// Memories of `sigma`. Whether volatility clusters (a burst announces more)
/// or not (a burst is a one-off) differs between series, so every expert's
/// band is kept at both speeds and the mixing picks: half-lives of about 14
/// ticks (a burst) and 700 ticks (a regime: two days of 5-minute samples,
/// twelve minutes of 1-second ones, the scale of the reference harness's
/// one-day residual window).
pub(crate) const SIGMA_FAST: f32 = 0.05;
pub(crate) const SIGMA_SLOW: f32 = 0.001;
/// Starting multiplier: the 95% point of a Gaussian in mean-absolute-error
/// units (1.645 * 1.2533); only a starting point, tracking takes over.
const START: f32 = 2.06;

/// Calibration of `N` bands at once (every expert at every speed, for one
/// horizon), stored as arrays and updated with masks instead of branches, so
/// that one update is a few vector instructions rather than `N` scattered
/// ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Calibration<const N: usize> {
    /// Recent mean absolute error per band.
    pub(crate) sigma: [f32; N],
    pub(crate) qhat: [f32; N],
}

impl<const N: usize> Calibration<N> {
    pub(crate) const fn new() -> Self {
        Self {
            sigma: [0.0; N],
            qhat: [START; N],
        }
    }

    /// Distance from each point forecast to its upper band.
    #[inline]
    pub(crate) fn margins(&self) -> [f32; N] {
        let mut m = [0.0; N];
        for ((m, q), s) in m.iter_mut().zip(&self.qhat).zip(&self.sigma) {
            *m = q * s;
        }
        m
    }

    /// Learns from one realised error per band, `r = y - point`, where
    /// `valid` is 1 for bands that made a forecast and 0 for those that did
    /// not (their `r` must still be finite), `q` is the target quantile and
    /// `alpha` each band's memory of `sigma` (larger while young, so that the
    /// first errors set the scale instead of a guess).
    #[inline]
    pub(crate) fn update(&mut self, r: &[f32; N], valid: &[f32; N], q: f32, alpha: &[f32; N]) {
        for i in 0..N {
            let miss = if r[i] > self.qhat[i] * self.sigma[i] {
                1.0
            } else {
                0.0
            };
            self.qhat[i] += valid[i] * LR * (miss - (1.0 - q));
            self.sigma[i] += valid[i] * alpha[i] * (r[i].abs() - self.sigma[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Skewed errors (exponential): a Gaussian band would be off; tracking
    /// reaches the nominal miss rate anyway.
    #[test]
    fn reaches_nominal_coverage_on_skewed_errors() {
        let mut c = Calibration::<1>::new();
        let mut s = 7u64;
        let mut misses = 0;
        let n = 20_000;
        for i in 0..n {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = ((s >> 11) as f64 / (1u64 << 53) as f64).max(1e-12);
            let r = (-u.ln()) as f32 - 1.0;
            if i >= n / 2 && r > c.margins()[0] {
                misses += 1;
            }
            let alpha = SIGMA_FAST.max(1.0 / (i + 1) as f32);
            c.update(&[r], &[1.0], 0.95, &[alpha]);
        }
        let rate = misses as f64 / (n / 2) as f64;
        assert!((rate - 0.05).abs() < 0.01, "miss rate {rate}");
    }
}
