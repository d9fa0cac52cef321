//! Every model the backtest runs, producing per origin and horizon a point
//! and an upper band from the data up to that origin only.
//!
//! Baselines follow BASELINES.md: naive, seasonal naive and EWMA get
//! `point + empirical q-quantile of their last `window` h-step residuals`;
//! vpa is the Kubernetes VPA recommender's rule (weighted quantile of an
//! exponentially decaying sample history, times 1.15, median as point).

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::Context as _;

use shadow_forecast::{Config, Forecast, Forecaster, Reporter, ReporterConfig, percentile};

/// Models selectable with `--model`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// Shadow's online ensemble.
    Shadow,
    /// Last value.
    Naive,
    /// Value one season ago.
    SeasonalNaive,
    /// Exponentially weighted mean, factor chosen on the warm-up.
    Ewma,
    /// Kubernetes VPA recommender (decaying histogram, 95th pct x 1.15).
    Vpa,
}

/// Settings shared by every model of a run, derived from the sampling
/// interval unless overridden (see `Protocol::for_interval`).
#[derive(Debug, Clone)]
pub(crate) struct Protocol {
    pub horizons: Vec<usize>,
    pub quantile: f64,
    /// Season of the seasonal-naive baseline, in ticks.
    pub season: usize,
    /// Residual window of the point baselines, in ticks.
    pub window: usize,
    /// Half-life of the vpa histogram, in ticks.
    pub vpa_half_life: f64,
    pub reporter_change: f64,
    pub reporter_heartbeat: f64,
}

impl Protocol {
    /// The reference settings of BASELINES.md as a rule of the sampling
    /// interval: data at a minute or coarser is read at the scale of a day
    /// (season, residual window and half-life of one day: 288 ticks at
    /// 5 min); finer data at the scale of minutes (season 300 s, window and
    /// half-life 600 s, as the 1 s local reference uses).
    pub(crate) fn for_interval(interval_s: f64, horizons: Vec<usize>, quantile: f64) -> Self {
        let ticks = |s: f64| ((s / interval_s).round() as usize).max(2);
        let (season, window, half_life) = if interval_s >= 60.0 {
            (ticks(86_400.0), ticks(86_400.0), ticks(86_400.0))
        } else {
            (ticks(300.0), ticks(600.0), ticks(600.0))
        };
        Self {
            horizons,
            quantile,
            season,
            window,
            vpa_half_life: half_life as f64,
            reporter_change: ReporterConfig::for_interval(1.0).change,
            reporter_heartbeat: ReporterConfig::for_interval(1.0).heartbeat_s,
        }
    }
}

/// Forecasts of one model over one series: `point[k][t]`, `upper[k][t]` for
/// horizon `horizons[k]` from origin `t` (NaN where not made).
pub(crate) struct Predictions {
    pub point: Vec<Vec<f64>>,
    pub upper: Vec<Vec<f64>>,
    pub ns_per_update: f64,
    /// Shadow only: what the orchestrator holds under adaptive reporting.
    pub reported: Option<Reported>,
    pub period: Option<u32>,
}

pub(crate) struct Reported {
    /// Whether a report was sent at origin `t`.
    pub sent: Vec<bool>,
    pub point: Vec<Vec<f64>>,
    pub upper: Vec<Vec<f64>>,
}

/// Runs `model` over `values`, producing bands from origin `first` on
/// (earlier origins only warm the model up).
pub(crate) fn predict(
    model: Model,
    values: &[f64],
    interval_s: f64,
    first: usize,
    p: &Protocol,
) -> anyhow::Result<Predictions> {
    match model {
        Model::Shadow => shadow(values, interval_s, p),
        Model::Naive => Ok(with_residual_band(values, first, p, Naive(0.0))),
        Model::SeasonalNaive => Ok(with_residual_band(
            values,
            first,
            p,
            SeasonalNaive {
                m: p.season,
                history: Vec::new(),
            },
        )),
        Model::Ewma => {
            let alpha = ewma_alpha(&values[..(first + 1).min(values.len())]);
            Ok(with_residual_band(
                values,
                first,
                p,
                Ewma {
                    alpha,
                    level: f64::NAN,
                },
            ))
        }
        Model::Vpa => Ok(vpa(values, first, p)),
    }
}

fn nan_grid(k: usize, n: usize) -> Vec<Vec<f64>> {
    vec![vec![f64::NAN; n]; k]
}

fn shadow(values: &[f64], interval_s: f64, p: &Protocol) -> anyhow::Result<Predictions> {
    let max_h = p.horizons.iter().copied().max().unwrap_or(1);
    let cfg = Config::new(interval_s)
        .and_then(|c| c.with_horizon(max_h))
        .and_then(|c| c.with_quantile(p.quantile))
        .context("forecaster settings")?;
    let mut f = Forecaster::new(cfg);
    let n = values.len();
    let mut out: Vec<Forecast> = Vec::with_capacity(n);
    let start = Instant::now();
    for (i, &y) in values.iter().enumerate() {
        let t = i as f64 * interval_s;
        // A refused sample (negative, NaN) leaves the forecast as it was;
        // the next accepted one fills the gap.
        let _ = f.update(t, y);
        out.push(f.forecast());
    }
    let ns_per_update = start.elapsed().as_nanos() as f64 / n.max(1) as f64;
    let period = out.last().and_then(|f| f.period);

    let k = p.horizons.len();
    let (mut point, mut upper) = (nan_grid(k, n), nan_grid(k, n));
    let mut reported = Reported {
        sent: vec![false; n],
        point: nan_grid(k, n),
        upper: nan_grid(k, n),
    };
    let mut reporter = Reporter::new(ReporterConfig {
        change: p.reporter_change,
        heartbeat_s: p.reporter_heartbeat * interval_s,
        interval_s,
    });
    for (t, fc) in out.iter().enumerate() {
        reported.sent[t] = reporter.offer(values[t], fc).is_some();
        for (j, &h) in p.horizons.iter().enumerate() {
            point[j][t] = fc.point[h - 1];
            upper[j][t] = fc.upper[h - 1];
            reported.point[j][t] = reporter.held_point(fc.t, h).unwrap_or(f64::NAN);
            reported.upper[j][t] = reporter.held_upper(fc.t, h).unwrap_or(f64::NAN);
        }
    }
    Ok(Predictions {
        point,
        upper,
        ns_per_update,
        reported: Some(reported),
        period,
    })
}

/// A point forecaster (baselines without their own band).
trait PointModel {
    fn update(&mut self, y: f64);
    fn point(&self, h: usize) -> f64;
}

struct Naive(f64);

impl PointModel for Naive {
    fn update(&mut self, y: f64) {
        self.0 = y;
    }
    fn point(&self, _h: usize) -> f64 {
        self.0
    }
}

struct SeasonalNaive {
    m: usize,
    history: Vec<f64>,
}

impl PointModel for SeasonalNaive {
    fn update(&mut self, y: f64) {
        self.history.push(y);
    }
    fn point(&self, h: usize) -> f64 {
        let n = self.history.len();
        // y[t + h - m], wrapping whole seasons for h > m; naive until a
        // season has been seen.
        let back = self.m - 1 - (h - 1) % self.m;
        if back < n {
            self.history[n - 1 - back]
        } else {
            self.history[n - 1]
        }
    }
}

struct Ewma {
    alpha: f64,
    level: f64,
}

impl PointModel for Ewma {
    fn update(&mut self, y: f64) {
        self.level = if self.level.is_nan() {
            y
        } else {
            self.level + self.alpha * (y - self.level)
        };
    }
    fn point(&self, _h: usize) -> f64 {
        self.level
    }
}

/// The EWMA factor (0.01 .. 1 by 0.01) with the least one-step squared error
/// on the warm-up.
fn ewma_alpha(warmup: &[f64]) -> f64 {
    let sse = |alpha: f64| {
        let mut level = f64::NAN;
        let mut sse = 0.0;
        for &y in warmup {
            if !level.is_nan() {
                sse += (y - level) * (y - level);
            }
            level = if level.is_nan() {
                y
            } else {
                level + alpha * (y - level)
            };
        }
        sse
    };
    (1..=100)
        .map(|i| i as f64 / 100.0)
        .min_by(|a, b| sse(*a).total_cmp(&sse(*b)))
        .unwrap_or(0.5)
}

fn with_residual_band(
    values: &[f64],
    first: usize,
    p: &Protocol,
    mut m: impl PointModel,
) -> Predictions {
    let n = values.len();
    let k = p.horizons.len();
    let (mut point, mut upper) = (nan_grid(k, n), nan_grid(k, n));
    let mut residuals: Vec<VecDeque<f64>> = vec![VecDeque::with_capacity(p.window + 1); k];
    let mut scratch = Vec::with_capacity(p.window);
    let start = Instant::now();
    for (t, &y) in values.iter().enumerate() {
        m.update(y);
        for (j, &h) in p.horizons.iter().enumerate() {
            if t >= h {
                let r = y - point[j][t - h];
                let w = &mut residuals[j];
                w.push_back(r);
                if w.len() > p.window {
                    w.pop_front();
                }
            }
            let pt = m.point(h);
            point[j][t] = pt;
            if t >= first {
                scratch.clear();
                scratch.extend(residuals[j].iter().copied());
                upper[j][t] = pt + percentile(&mut scratch, p.quantile).unwrap_or(0.0);
            }
        }
    }
    let ns_per_update = start.elapsed().as_nanos() as f64 / n.max(1) as f64;
    Predictions {
        point,
        upper,
        ns_per_update,
        reported: None,
        period: None,
    }
}

/// VPA recommender: every past sample weighted `2^(-age / half_life)`;
/// upper = 1.15 x weighted q-quantile, point = weighted median.
fn vpa(values: &[f64], first: usize, p: &Protocol) -> Predictions {
    let n = values.len();
    let k = p.horizons.len();
    let (mut point, mut upper) = (nan_grid(k, n), nan_grid(k, n));
    // Past samples sorted by value: (value, index).
    let mut sorted: Vec<(f64, usize)> = Vec::with_capacity(n);
    let decay = (-std::f64::consts::LN_2 / p.vpa_half_life).exp();
    let mut total = 0.0;
    let start = Instant::now();
    for (t, &y) in values.iter().enumerate() {
        let at = sorted.partition_point(|(v, _)| *v <= y);
        sorted.insert(at, (y, t));
        total = total * decay + 1.0;
        if t < first {
            continue;
        }
        let (mut median, mut quant) = (f64::NAN, f64::NAN);
        let mut acc = 0.0;
        for &(v, i) in &sorted {
            acc += decay.powi((t - i) as i32);
            if median.is_nan() && acc >= 0.5 * total {
                median = v;
            }
            if acc >= p.quantile * total {
                quant = v;
                break;
            }
        }
        if quant.is_nan() {
            quant = sorted.last().map_or(0.0, |(v, _)| *v);
        }
        for j in 0..k {
            point[j][t] = median;
            upper[j][t] = 1.15 * quant;
        }
    }
    let ns_per_update = start.elapsed().as_nanos() as f64 / n.max(1) as f64;
    Predictions {
        point,
        upper,
        ns_per_update,
        reported: None,
        period: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&mut v, 0.5), Some(2.5));
        assert_eq!(percentile(&mut v, 0.95), Some(3.8499999999999996));
    }

    #[test]
    fn seasonal_naive_wraps_seasons() {
        let mut m = SeasonalNaive {
            m: 3,
            history: Vec::new(),
        };
        for y in [1.0, 2.0, 3.0, 4.0] {
            m.update(y);
        }
        // Next ticks are 5, 6, 7 in a season of 3: 2, 3, 4 one season back.
        assert_eq!(
            [m.point(1), m.point(2), m.point(3), m.point(4)],
            [2.0, 3.0, 4.0, 2.0]
        );
    }
}
