//! The system-wide forecast: every local component's forecast combined per
//! resource, against the host's capacity.
//!
//! Adding up upper bands over-reserves: components rarely peak together, so
//! the total's band is narrower than the sum of theirs. With `e_i` the
//! distance from component i's point to its upper band and `rho` the
//! average correlation of their errors,
//!
//! ```text
//! upper_total = sum(point_i) + sqrt((1 - rho) * sum(e_i^2) + rho * (sum e_i)^2)
//! ```
//!
//! `rho = 1` (errors move together) gives back the plain sum of bands,
//! `rho = 0` (independent) the square-root-of-sum-of-squares rule. `rho` is
//! not assumed: it is estimated online from the realised errors, as the
//! share of the total error's variance that the individual variances do not
//! explain, and starts at 1 (no diversification credit without evidence).

use shadow_wire::Resource;

use crate::{
    book::{Live, Track, slot},
    capacity::Capacity,
};

/// Weight of the newest tick in the error moments (about the last 100
/// ticks).
const ALPHA: f64 = 0.01;

/// The system-wide forecast of one resource for the next interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct SystemForecast {
    /// Sum of the components' point forecasts.
    pub point: f64,
    /// Diversified upper band of the total.
    pub upper: f64,
    /// Plain sum of the components' upper bands, for comparison.
    pub upper_sum: f64,
    /// Estimated error correlation used.
    pub rho: f64,
    /// Sum of the latest realised usage.
    pub used: f64,
    /// Host capacity, if known.
    pub capacity: Option<f64>,
    /// Components with a live forecast.
    pub components: usize,
}

/// Per-resource estimate of the error correlation between components.
#[derive(Clone, Copy, Debug)]
struct Correlation {
    /// EW mean of (sum of errors)^2.
    total_sq: f64,
    /// EW mean of the sum of squared errors.
    sum_sq: f64,
    /// EW mean of (sum of |errors|)^2.
    abs_sq: f64,
    ticks: u32,
}

impl Default for Correlation {
    fn default() -> Self {
        Self {
            total_sq: 0.0,
            sum_sq: 0.0,
            abs_sq: 0.0,
            ticks: 0,
        }
    }
}

impl Correlation {
    fn learn(&mut self, total: f64, sum_sq: f64, abs: f64) {
        let a = if self.ticks < 10 { 0.1 } else { ALPHA };
        self.total_sq += a * (total * total - self.total_sq);
        self.sum_sq += a * (sum_sq - self.sum_sq);
        self.abs_sq += a * (abs * abs - self.abs_sq);
        self.ticks = self.ticks.saturating_add(1);
    }

    /// In [0, 1]; 1 until there are enough ticks to tell.
    fn rho(&self) -> f64 {
        let spread = self.abs_sq - self.sum_sq;
        if self.ticks < 30 || spread <= 1e-12 {
            return 1.0;
        }
        ((self.total_sq - self.sum_sq) / spread).clamp(0.0, 1.0)
    }
}

/// Combines forecasts every tick and learns the error correlation.
#[derive(Default)]
pub struct Aggregator {
    correlation: [Correlation; 4],
}

/// One tick's running sums over the components (filled in the engine's
/// single pass over the book).
#[derive(Default)]
pub struct Sums {
    out: [SystemForecast; 4],
    /// Per resource: sum of e and of e^2.
    band: [(f64, f64); 4],
    /// Per resource: realised errors' sum, sum of squares, sum of |r|, count.
    errors: [(f64, f64, f64, usize); 4],
}

impl Sums {
    /// Adds one track (resource `i`) of a component of this host (a
    /// guest's usage is already inside its VM's cgroup here, so remote
    /// components are not added), with its forecast as seen now.
    pub fn add(&mut self, i: usize, t: &Track, live: Option<Live<'_>>) {
        if let Some((used, _)) = t.usage {
            self.out[i].used += f64::from(used);
        }
        if let Some(f) = live {
            let (point, upper) = f.at(1);
            let e = f64::from(upper - point);
            self.out[i].point += f64::from(point);
            self.out[i].upper_sum += f64::from(upper);
            self.out[i].components += 1;
            self.band[i].0 += e;
            self.band[i].1 += e * e;
            if let Some((used, _)) = t.usage {
                let (predicted, _) = f.at(0);
                let r = f64::from(used - predicted);
                let errors = &mut self.errors[i];
                errors.0 += r;
                errors.1 += r * r;
                errors.2 += r.abs();
                errors.3 += 1;
            }
        }
    }
}

impl Aggregator {
    /// The system-wide forecast of every resource for the next interval
    /// from one tick's sums; learns the error correlation from the usage
    /// that arrived since the last tick.
    pub fn finish(&mut self, sums: Sums, capacity: &Capacity) -> [SystemForecast; 4] {
        let mut out = sums.out;
        for resource in Resource::ALL {
            let i = slot(resource);
            let errors = sums.errors[i];
            if errors.3 >= 2 {
                self.correlation[i].learn(errors.0, errors.1, errors.2);
            }
            let rho = self.correlation[i].rho();
            let (sum_e, sum_e2) = sums.band[i];
            out[i].rho = rho;
            out[i].upper = out[i].point + ((1.0 - rho) * sum_e2 + rho * sum_e * sum_e).sqrt();
            out[i].capacity = capacity.of(resource);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_estimates() {
        // Independent errors of equal size: sum^2 averages n*s^2 = sum of
        // squares, so rho → 0.
        let mut c = Correlation::default();
        let mut x = 1u64;
        for _ in 0..2000 {
            let mut errs = [0.0f64; 8];
            for e in &mut errs {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *e = if (x >> 33) & 1 == 0 { 1.0 } else { -1.0 };
            }
            let total: f64 = errs.iter().sum();
            c.learn(
                total,
                errs.iter().map(|e| e * e).sum(),
                errs.iter().map(|e| e.abs()).sum(),
            );
        }
        assert!(c.rho() < 0.1, "{}", c.rho());
        // Identical errors: rho → 1.
        let mut c = Correlation::default();
        for i in 0..2000 {
            let e = if i % 2 == 0 { 1.0 } else { -1.0 };
            c.learn(8.0 * e, 8.0, 8.0);
        }
        assert!(c.rho() > 0.99, "{}", c.rho());
    }
}
