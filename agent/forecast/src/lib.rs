//! Online forecasters: one per (cgroup, resource), fed one sample per tick.
//!
//! The pre-allocation engine reserves against the *upper band*, so what
//! matters is that the band is tight and honest: realised usage should land
//! above it about `1 - q` of the time, on every kind of series, without
//! anyone tuning it per workload. No single simple model does that for
//! steady, trending, periodic and bursty series alike, so the forecaster runs
//! several cheap ones side by side, calibrates each one's band from the
//! errors it actually made, and mixes them by their recent pinball loss
//! (see `docs/forecasting.md`).
//!
//! Everything here is pure: no I/O, no clock (time is an argument), no
//! randomness, so the same inputs give the same forecasts and tests are plain
//! `#[test]`s. State is fixed-size (no allocation after construction) and
//! each update costs the same whatever the history length.
//!
//! Layout:
//! - [`Forecaster`] (`ensemble.rs`): the per-series state and the mixing.
//! - `experts.rs`: the simple models (naive, two EWMAs, damped trend,
//!   mean-reverting AR(1), seasonal naive).
//! - `quantile.rs`: online calibration of a band from realised errors.
//! - `period.rs`: self-detected period over a bounded set of candidate lags.
//! - `recur.rs`: band lifts for peaks that recur at a long wall-clock
//!   period with jittered timing (a specialist scored on its own ticks).
//! - `ring.rs`: the bounded window of recent values the seasonal parts need.
//! - [`Reporter`] (`reporter.rs`): volatility-adaptive decision to send.
//!
//! Cumulative counters are turned into per-interval amounts before they
//! get here (the agent's collector, which also handles counters that read
//! lower than before).

mod ensemble;
mod experts;
mod period;
mod quantile;
mod recur;
mod reporter;
mod ring;
#[cfg(test)]
mod tests;

pub use ensemble::Forecaster;
pub use reporter::{Reason, Reporter, ReporterConfig};

/// Longest horizon a forecaster can serve, in ticks. The per-horizon state
/// (calibration and records per horizon, the experts' state at as many
/// origins) and the work per update grow with this, and six ticks (6 s at
/// 1 s ticks, 30 min at 5 min) is what the pre-allocation engine needs to
/// act ahead of demand.
pub const MAX_HORIZON: usize = 6;

/// Gaps longer than this many ticks restart the forecaster: after such an
/// absence the old level and calibration say little about the new regime,
/// and imputing hundreds of ticks would make one update unboundedly costly.
pub const MAX_GAP_TICKS: u64 = 60;

/// Why a sample or a setting was refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum Error {
    /// NaN or infinite sample: a broken reading must not poison the state,
    /// so it is refused and the tick is treated as missing by the next
    /// accepted sample.
    #[error("sample {0} is not a finite number")]
    NonFinite(f64),
    /// Usage cannot be negative; a negative rate is a counter that went
    /// backwards (reset, wrap, or a cgroup recreated under the same path).
    /// Callers turn counters into non-negative amounts first.
    #[error("sample {0} is negative (a counter reset?)")]
    Negative(f64),
    /// Samples must arrive in time order; a repeated or older timestamp
    /// would silently shift every horizon.
    #[error("sample time {t} s is not after the previous sample's {prev} s")]
    TimeNotIncreasing {
        /// Time of the refused sample.
        t: f64,
        /// Time of the last accepted sample.
        prev: f64,
    },
    /// Horizon outside `1..=MAX_HORIZON`.
    #[error("horizon {0} is outside 1..={MAX_HORIZON}")]
    Horizon(usize),
    /// Quantile outside the open interval (0, 1).
    #[error("quantile {0} is outside (0, 1)")]
    Quantile(f64),
    /// Sampling interval that is not a positive finite number of seconds.
    #[error("sampling interval {0} s is not a positive finite number")]
    Interval(f64),
}

/// Settings of one forecaster. Only what depends on the deployment is
/// configurable; the models' own constants are fixed, chosen a priori (time
/// scales spread over one to tens of ticks), never fitted to a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    interval_s: f64,
    horizon: usize,
    quantile: f64,
}

impl Config {
    /// Defaults for a series sampled every `interval_s` seconds: horizons
    /// 1..=[`MAX_HORIZON`], upper band at q = 0.95.
    pub fn new(interval_s: f64) -> Result<Self, Error> {
        if !(interval_s.is_finite() && interval_s > 0.0) {
            return Err(Error::Interval(interval_s));
        }
        Ok(Self {
            interval_s,
            horizon: MAX_HORIZON,
            quantile: 0.95,
        })
    }

    /// Forecast horizons `1..=horizon` ticks (fewer horizons, less work).
    pub fn with_horizon(mut self, horizon: usize) -> Result<Self, Error> {
        if !(1..=MAX_HORIZON).contains(&horizon) {
            return Err(Error::Horizon(horizon));
        }
        self.horizon = horizon;
        Ok(self)
    }

    /// Quantile the upper band aims at: realised values should exceed the
    /// band a share `1 - quantile` of the time.
    pub fn with_quantile(mut self, quantile: f64) -> Result<Self, Error> {
        if !(quantile > 0.0 && quantile < 1.0) {
            return Err(Error::Quantile(quantile));
        }
        self.quantile = quantile;
        Ok(self)
    }

    /// Nominal sampling interval in seconds.
    pub fn interval_s(&self) -> f64 {
        self.interval_s
    }

    /// Longest horizon served, in ticks.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Target quantile of the upper band.
    pub fn quantile(&self) -> f64 {
        self.quantile
    }
}

/// What a shadow hands on: per horizon `h` (index `h - 1`), the expected
/// value and the upper band for the tick `h` intervals after `t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// Time of the last sample the forecast is based on (seconds).
    pub t: f64,
    /// Horizons filled in `point` and `upper` (the rest are 0).
    pub horizon: usize,
    /// Point forecast per horizon (never negative).
    pub point: [f64; MAX_HORIZON],
    /// Upper band per horizon at the configured quantile (never below the
    /// point).
    pub upper: [f64; MAX_HORIZON],
    /// Current volatility: recent mean absolute one-tick error of the point
    /// forecast, in the series' own unit.
    pub volatility: f64,
    /// Typical level of the series (slow moving average), the yardstick for
    /// "moved enough to matter".
    pub scale: f64,
    /// Detected period in ticks, if any.
    pub period: Option<u32>,
}

/// What [`Forecaster::update`] did besides learning from the sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Update {
    /// Missing ticks before this sample that were filled with the forecast.
    pub imputed: u64,
    /// The gap was longer than [`MAX_GAP_TICKS`] and the state was reset.
    pub restarted: bool,
}

/// Loss of an upper band `u` at quantile `q` when `y` happened: the standard
/// pinball (quantile) loss, the one scoring rule whose minimiser is the
/// q-quantile, shared by the forecaster's weighting (f32) and the backtest
/// (f64). Written as max(q d, (q - 1) d) with d = y - u, without a branch,
/// so it vectorises.
pub fn pinball<T>(y: T, u: T, q: T) -> T
where
    T: Copy + PartialOrd + std::ops::Sub<Output = T> + std::ops::Mul<Output = T>,
{
    let d = y - u;
    let over = q * d;
    let under = over - d;
    if over > under { over } else { under }
}

/// Linear-interpolation percentile (numpy's default: position `q (n - 1)`
/// in the sorted values) of `v`, which it sorts; None when `v` is empty.
/// The reference harnesses score with it (the backtest's residual bands,
/// the fleet replay's recommenders and daily p95), so it sits beside
/// [`pinball`] as the one definition they share.
pub fn percentile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    Some(v[lo] + (pos - lo as f64) * (v[hi] - v[lo]))
}
