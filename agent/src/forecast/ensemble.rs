//! The per-series forecaster: runs the experts, scores each one's forecasts
//! when their target tick arrives, calibrates each one's band per horizon,
//! and mixes them by recent loss.
//!
//! Mixing: per horizon, an expert's weight is `(best / loss)^POWER`, where
//! `loss` is its exponentially discounted pinball loss at `q` (for the
//! band) or absolute error (for the point) and `best` the lowest among the
//! experts. Inverse-loss weights need no learning rate in the series' unit
//! (only loss ratios enter), follow a change of regime within the loss
//! memory, and with a high power behave like "pick the best, hedge among
//! near-ties", which is what helps when two experts are equally good.
//! A final tracking step per horizon corrects whatever miss rate the mix
//! itself has (a mix of calibrated bands is not exactly calibrated).

use super::experts::{EXPERTS, Experts};
use super::period::PeriodDetector;
use super::quantile::{Calibrator, SIGMA_FAST, SIGMA_SLOW};
use super::ring::Ring;
use super::{Config, Error, Forecast, MAX_GAP_TICKS, MAX_HORIZON, Update, pinball};

/// Loss memory: about 256 ticks. Telling experts apart through noise needs
/// a long memory; a regime change still hands over within a few hundred
/// ticks.
const LOSS_ALPHA: f32 = 1.0 / 256.0;
/// Sharpness of the inverse-loss weights: an expert 10 % worse than the
/// best gets 5 % of its weight, so the mix is "the best, hedged among near
/// ties".
const POWER: i32 = 32;
/// Memory of the level used as the series' scale (about 256 ticks).
const SCALE_ALPHA: f32 = 1.0 / 256.0;
/// Each expert's band at both volatility memories.
const SPEEDS: [f32; 2] = [SIGMA_FAST, SIGMA_SLOW];
/// Bands mixed per horizon: every expert at every speed.
const BANDS: usize = EXPERTS * SPEEDS.len();

/// Per horizon and band (expert x speed): its calibration and recent loss.
#[derive(Debug, Clone, Copy)]
struct BandScore {
    cal: Calibrator,
    /// Discounted pinball loss (NaN: not scored yet).
    loss: f32,
}

impl BandScore {
    const fn new() -> Self {
        Self {
            cal: Calibrator::new(),
            loss: f32::NAN,
        }
    }
}

/// Online forecaster of one series. See the module docs of
/// [`crate::forecast`] for what it guarantees.
#[derive(Debug, Clone)]
pub struct Forecaster {
    cfg: Config,
    /// Values taken in so far (observed or imputed).
    n: u64,
    last_t: f64,
    scale: f32,
    ring: Ring,
    period: PeriodDetector,
    experts: Experts,
    /// `pending[target % MAX_HORIZON][h - 1][expert]`: the point forecast
    /// each expert made `h` ticks before `target`, kept until it is scored.
    pending: [[[f32; EXPERTS]; MAX_HORIZON]; MAX_HORIZON],
    /// Per horizon: each band's calibration and loss…
    bands: [[BandScore; BANDS]; MAX_HORIZON],
    /// …and each expert's discounted absolute error (NaN: not scored yet).
    point_loss: [[f32; EXPERTS]; MAX_HORIZON],
    /// Mean absolute one-tick error of the mixed point, for `volatility`.
    volatility: f32,
    point: [f32; MAX_HORIZON],
    upper: [f32; MAX_HORIZON],
}

impl Forecaster {
    /// A forecaster that has seen nothing yet.
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            n: 0,
            last_t: f64::NEG_INFINITY,
            scale: 0.0,
            ring: Ring::new(),
            period: PeriodDetector::new(cfg.interval_s(), cfg.horizon()),
            experts: Experts::new(),
            pending: [[[f32::NAN; EXPERTS]; MAX_HORIZON]; MAX_HORIZON],
            bands: [[BandScore::new(); BANDS]; MAX_HORIZON],
            point_loss: [[f32::NAN; EXPERTS]; MAX_HORIZON],
            volatility: 0.0,
            point: [0.0; MAX_HORIZON],
            upper: [0.0; MAX_HORIZON],
        }
    }

    /// Settings it was built with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Takes the sample `y` observed at time `t` (seconds, any epoch).
    ///
    /// Ticks missing since the previous sample (gaps of 1.5 intervals or
    /// more) are filled with the forecaster's own one-tick forecast without
    /// learning from them (they carry no news), which keeps the seasonal
    /// lags aligned; after a gap longer than [`MAX_GAP_TICKS`] the state is
    /// reset instead. Samples arriving early (jitter) count as the next tick.
    /// A refused sample leaves the state untouched.
    pub fn update(&mut self, t: f64, y: f64) -> Result<Update, Error> {
        if !y.is_finite() || !t.is_finite() {
            return Err(Error::NonFinite(if y.is_finite() { t } else { y }));
        }
        if y < 0.0 {
            return Err(Error::Negative(y));
        }
        let mut update = Update::default();
        if self.n > 0 {
            if t <= self.last_t {
                return Err(Error::TimeNotIncreasing {
                    t,
                    prev: self.last_t,
                });
            }
            let ticks = ((t - self.last_t) / self.cfg.interval_s()).round().max(1.0);
            let missing = ticks as u64 - 1;
            if missing > MAX_GAP_TICKS {
                *self = Self::new(self.cfg);
                update.restarted = true;
            } else {
                for _ in 0..missing {
                    let guess = self.point[0];
                    self.advance(guess);
                }
                update.imputed = missing;
            }
        }
        self.learn(y as f32);
        self.advance(y as f32);
        self.last_t = t;
        Ok(update)
    }

    /// The current forecast for horizons `1..=horizon`.
    pub fn forecast(&self) -> Forecast {
        let h = self.cfg.horizon();
        let mut point = [0.0; MAX_HORIZON];
        let mut upper = [0.0; MAX_HORIZON];
        for i in 0..h {
            point[i] = f64::from(self.point[i]);
            upper[i] = f64::from(self.upper[i]);
        }
        Forecast {
            t: self.last_t,
            horizon: h,
            point,
            upper,
            volatility: f64::from(self.volatility),
            scale: f64::from(self.scale),
            period: self.period.period().map(|p| p as u32),
        }
    }

    /// Scores the forecasts whose target is the tick `y` belongs to.
    fn learn(&mut self, y: f32) {
        let q = self.cfg.quantile() as f32;
        let slot = (self.n % MAX_HORIZON as u64) as usize;
        if self.n > 0 {
            // The mixed one-tick forecast made for this tick is still the
            // current one (`advance` has not run yet).
            let err = (y - self.point[0]).abs();
            self.volatility += SIGMA_FAST * (err - self.volatility);
        }
        for h in 0..self.cfg.horizon() {
            if self.n <= h as u64 {
                break;
            }
            let made = &self.pending[slot][h];
            for (e, &p) in made.iter().enumerate() {
                if p.is_nan() {
                    continue;
                }
                discount(&mut self.point_loss[h][e], (y - p).abs());
                for (s, &alpha) in SPEEDS.iter().enumerate() {
                    let b = &mut self.bands[h][e * SPEEDS.len() + s];
                    let u = (p + b.cal.margin()).max(0.0);
                    discount(
                        &mut b.loss,
                        pinball(f64::from(y), f64::from(u), f64::from(q)) as f32,
                    );
                    b.cal.update(y - p, q, alpha);
                }
            }
        }
    }

    /// Takes in one value (observed or imputed) and forecasts from it.
    fn advance(&mut self, y: f32) {
        self.ring.push(y);
        self.period.update(&self.ring);
        self.experts.update(y);
        self.scale = if self.n == 0 {
            y
        } else {
            self.scale + SCALE_ALPHA * (y - self.scale)
        };
        self.n += 1;

        let horizon = self.cfg.horizon();
        let mut made = [[0.0f32; EXPERTS]; MAX_HORIZON];
        self.experts
            .forecast(&self.ring, self.period.period(), horizon, &mut made);
        // Tiny floor so that a series that is exactly predictable (loss 0)
        // does not divide by zero; relative to the series' level.
        let floor = 1e-9 * self.scale.abs() + f32::MIN_POSITIVE;
        for (h, row) in made.iter().enumerate().take(horizon) {
            let bands = &self.bands[h];
            let losses = &self.point_loss[h];
            let mut best_band = f32::INFINITY;
            let mut best_point = f32::INFINITY;
            for (e, p) in row.iter().enumerate() {
                if p.is_nan() {
                    continue;
                }
                best_point = best_point.min(losses[e]);
                for b in &bands[e * SPEEDS.len()..(e + 1) * SPEEDS.len()] {
                    best_band = best_band.min(b.loss);
                }
            }
            let (mut wb, mut sb, mut wp, mut sp) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
            for (e, &p) in row.iter().enumerate() {
                if p.is_nan() {
                    continue;
                }
                let w = weight(best_point, losses[e], floor);
                wp += w;
                sp += w * p;
                for b in &bands[e * SPEEDS.len()..(e + 1) * SPEEDS.len()] {
                    let w = weight(best_band, b.loss, floor);
                    wb += w;
                    sb += w * (p + b.cal.margin()).max(0.0);
                }
            }
            let point = (sp / wp).max(0.0);
            self.point[h] = point;
            self.upper[h] = (sb / wb).max(point);
            let slot = ((self.n + h as u64) % MAX_HORIZON as u64) as usize;
            self.pending[slot][h] = *row;
        }
    }
}

/// Exponentially discounted running loss; the first loss starts it.
#[inline]
fn discount(loss: &mut f32, new: f32) {
    if loss.is_nan() {
        *loss = new;
    } else {
        *loss += LOSS_ALPHA * (new - *loss);
    }
}

/// Inverse-loss weight relative to the best; an expert without a record
/// yet (just started, or the seasonal one when a period first appears) gets
/// the weight of the best until it has one.
#[inline]
fn weight(best: f32, loss: f32, floor: f32) -> f32 {
    if loss.is_nan() || !best.is_finite() {
        return 1.0;
    }
    ((best + floor) / (loss + floor)).powi(POWER)
}
