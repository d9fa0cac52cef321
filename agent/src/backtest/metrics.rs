//! The one scoring implementation every model goes through, so that Shadow
//! and the baselines are compared on exactly the same arithmetic.

use shadow_forecast::pinball;

/// Running sums over the scored origins of one (series, model, horizon).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Metrics {
    points: u64,
    sum_y: f64,
    abs_err: f64,
    /// Absolute percentage errors, over targets with y > 0 only (a
    /// percentage of zero usage is undefined; idle ticks are common).
    ape: f64,
    ape_points: u64,
    pinball: f64,
    covered: u64,
    shortfall: f64,
    slack: f64,
}

/// Final figures (see the issue and BASELINES.md for the definitions).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct Summary {
    pub points: u64,
    pub mae: f64,
    pub mape: f64,
    /// Mean pinball loss of the upper band at the band's quantile.
    pub pinball: f64,
    /// `pinball / mean(y)`: comparable across series of different units.
    pub npinball: f64,
    /// Share of targets at or below the upper band.
    pub coverage: f64,
    /// `mean(max(0, y - upper)) / mean(y)`: demand left unreserved.
    pub shortfall: f64,
    /// `mean(max(0, upper - y)) / mean(y)`: reserved but unused.
    pub slack: f64,
}

impl Metrics {
    /// Scores one forecast (point, upper) of the target `y` at quantile `q`.
    /// Point and band are clipped at 0 first, as the protocol does.
    pub(crate) fn add(&mut self, y: f64, point: f64, upper: f64, q: f64) {
        let point = point.max(0.0);
        let upper = upper.max(0.0);
        self.points += 1;
        self.sum_y += y;
        self.abs_err += (y - point).abs();
        if y > 0.0 {
            self.ape += (y - point).abs() / y;
            self.ape_points += 1;
        }
        self.pinball += pinball(y, upper, q);
        if y <= upper {
            self.covered += 1;
        }
        self.shortfall += (y - upper).max(0.0);
        self.slack += (upper - y).max(0.0);
    }

    pub(crate) fn summary(&self) -> Summary {
        let n = self.points.max(1) as f64;
        let mean_y = self.sum_y / n;
        let norm = |x: f64| {
            if mean_y > 0.0 {
                x / n / mean_y
            } else {
                f64::NAN
            }
        };
        Summary {
            points: self.points,
            mae: self.abs_err / n,
            mape: if self.ape_points > 0 {
                self.ape / self.ape_points as f64
            } else {
                f64::NAN
            },
            pinball: self.pinball / n,
            npinball: norm(self.pinball),
            coverage: self.covered as f64 / n,
            shortfall: norm(self.shortfall),
            slack: norm(self.slack),
        }
    }
}

/// Median of the finite values (NaN if none): the robust figure across
/// series, as BASELINES.md uses.
pub(crate) fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Mean of the finite values (NaN if none).
pub(crate) fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (s, n) = values
        .into_iter()
        .filter(|x| x.is_finite())
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { s / n as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npinball_is_the_weighted_sum_of_shortfall_and_slack() {
        let mut m = Metrics::default();
        for (y, u) in [(1.0, 2.0), (3.0, 2.0), (0.0, 1.0), (2.0, 2.0)] {
            m.add(y, u, u, 0.95);
        }
        let s = m.summary();
        assert!((s.npinball - (0.95 * s.shortfall + 0.05 * s.slack)).abs() < 1e-12);
        assert_eq!(s.coverage, 0.75);
        assert_eq!(median([3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
