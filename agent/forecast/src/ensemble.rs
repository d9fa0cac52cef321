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
//!
//! Per-horizon state is kept as arrays over the bands and written
//! branch-free, so the compiler vectorises the scoring and the mixing: the
//! cost per update is what keeps 10,000 series per second cheap.

use super::experts::{EXPERTS, Experts, SEASONAL, Snapshot};
use super::period::PeriodDetector;
use super::quantile::{Calibration, SIGMA_FAST, SIGMA_SLOW};
use super::recur::Recurrence;
use super::ring::{Ring, prefetch};
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
const SPEEDS: usize = 2;
/// Bands mixed per horizon: every expert at every speed; band `b` belongs
/// to expert `b / SPEEDS`.
const BANDS: usize = EXPERTS * SPEEDS;
/// Memory of `sigma` per band.
const BAND_ALPHA: [f32; BANDS] = {
    let mut a = [0.0; BANDS];
    let mut b = 0;
    while b < BANDS {
        a[b] = if b % SPEEDS == 0 {
            SIGMA_FAST
        } else {
            SIGMA_SLOW
        };
        b += 1;
    }
    a
};

/// What the forecaster keeps per horizon: each band's calibration, its
/// discounted pinball loss, each expert's discounted absolute error, and
/// the ticks scored (saturating) for the young-state memories; the seasonal
/// expert, which starts late, has its own count.
#[derive(Debug, Clone, Copy)]
struct HorizonState {
    cal: Calibration<BANDS>,
    band_loss: [f32; BANDS],
    point_loss: [f32; EXPERTS],
    scored: u32,
    seasonal_scored: u32,
}

impl HorizonState {
    const fn new() -> Self {
        Self {
            cal: Calibration::new(),
            band_loss: [0.0; BANDS],
            point_loss: [0.0; EXPERTS],
            scored: 0,
            seasonal_scored: 0,
        }
    }
}

/// Online forecaster of one series. See the module docs of
/// [`crate`] for what it guarantees.
///
/// Laid out for the cold cache, the usual case when thousands of series
/// are updated in turn: fields in declaration order (`repr(C)`), starting
/// on a cache line, with what every update touches first (scalars, the
/// experts, the lift's records, the origins, the period detector's
/// per-tick part), then the per-horizon blocks (only the configured
/// horizons are touched), then the ring, of which an update reads only the
/// lines near the newest value and near a few lags.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub struct Forecaster {
    cfg: Config,
    /// Values taken in so far (observed or imputed).
    n: u64,
    last_t: f64,
    scale: f32,
    /// Mean absolute one-tick error of the mixed point, for `volatility`.
    volatility: f32,
    /// Whether the seasonal expert forecast at the last tick, and whether
    /// it ever did (its record then survives a period lost and found again).
    seasonal_on: bool,
    seasonal_seen: bool,
    point: [f32; MAX_HORIZON],
    upper: [f32; MAX_HORIZON],
    experts: Experts,
    /// Lifts of the band for peaks that recur at a long wall-clock period.
    recur: Recurrence,
    /// `origins[n % MAX_HORIZON]`: the experts' state after the `n`-th
    /// value, from which the forecasts made then are derived again when
    /// their targets arrive and are scored (the last `MAX_HORIZON` origins).
    origins: [Snapshot; MAX_HORIZON],
    period: PeriodDetector,
    /// Per-horizon calibration and records, one block per horizon.
    horizons: [HorizonState; MAX_HORIZON],
    ring: Ring,
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
            period: PeriodDetector::new(cfg.interval_s()),
            experts: Experts::new(),
            recur: Recurrence::new(cfg.interval_s()),
            origins: [Snapshot::EMPTY; MAX_HORIZON],
            horizons: [HorizonState::new(); MAX_HORIZON],
            seasonal_on: false,
            seasonal_seen: false,
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
        self.prefetch();
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

    /// Starts loading, all at once, the cold cache lines this update will
    /// read beyond the first few (see `ring::prefetch`): the configured
    /// horizons' blocks and the ring near the lags the seasonal expert and
    /// the lift read.
    #[inline]
    fn prefetch(&self) {
        let blocks = &self.horizons[..self.cfg.horizon()];
        let bytes = std::mem::size_of_val(blocks);
        let base = blocks.as_ptr().cast::<u8>();
        for off in (0..bytes).step_by(64) {
            prefetch(base.wrapping_add(off));
        }
        self.ring.prefetch(0, 0);
        if let Some(m) = self.period.period() {
            // Read at lags m - 1 - h after the push (m - 2 - h now), and
            // at m - 1 + delay when scoring.
            if m >= MAX_HORIZON + 2 && m < self.ring.len() {
                self.ring.prefetch(m - 1 - MAX_HORIZON, m - 1 + MAX_HORIZON);
            }
        }
        self.recur.prefetch(&self.ring);
    }

    /// Scores the forecasts whose target is the tick `y` belongs to.
    fn learn(&mut self, y: f32) {
        let q = self.cfg.quantile() as f32;
        if self.n > 0 {
            // The mixed one-tick forecast made for this tick is still the
            // current one (`advance` has not run yet).
            let err = (y - self.point[0]).abs();
            self.volatility += SIGMA_FAST * (err - self.volatility);
        }
        self.recur.score(&self.ring, y, q);
        for h in 0..self.cfg.horizon() {
            if self.n <= h as u64 {
                break;
            }
            // Made at the origin h ticks before the newest value, whose
            // ring was h values shorter.
            let origin = ((self.n - h as u64) % MAX_HORIZON as u64) as usize;
            let (p, valid) = sanitize(&self.origins[origin].row(h, &self.ring, h));
            // Bias-corrected start: the first scores set the losses and
            // scales, then the fixed memories take over.
            let k = self.horizons[h].scored;
            self.horizons[h].scored = k.saturating_add(1);
            let young = 1.0 / (k as f32 + 1.0);
            // The seasonal expert's record restarts when it first appears
            // (see `adopt_seasonal`): its own first scores replace the
            // borrowed one at once.
            let ks = self.horizons[h].seasonal_scored;
            self.horizons[h].seasonal_scored = ks.saturating_add(valid[SEASONAL] as u32);
            let mut la = [LOSS_ALPHA.max(young); EXPERTS];
            la[SEASONAL] = LOSS_ALPHA.max(1.0 / (ks as f32 + 1.0));
            for e in 0..EXPERTS {
                let loss = &mut self.horizons[h].point_loss[e];
                *loss += valid[e] * la[e] * ((y - p[e]).abs() - *loss);
            }
            let cal = &mut self.horizons[h].cal;
            let margins = cal.margins();
            let mut r = [0.0f32; BANDS];
            let mut mask = [0.0f32; BANDS];
            let mut alpha = [0.0f32; BANDS];
            for b in 0..BANDS {
                let (pb, vb) = (p[b / SPEEDS], valid[b / SPEEDS]);
                r[b] = y - pb;
                mask[b] = vb;
                alpha[b] = BAND_ALPHA[b].max(young);
                let u = (pb + margins[b]).max(0.0);
                let loss = &mut self.horizons[h].band_loss[b];
                *loss += vb * la[b / SPEEDS] * (pinball(y, u, q) - *loss);
            }
            cal.update(&r, &mask, q, &alpha);
        }
    }

    /// A period has appeared for the first time. Until its first forecasts
    /// are scored, the seasonal expert holds the record of the best expert
    /// so far (a fair chance: it shares the mix at once; its own first
    /// scores then replace that record outright), and it starts
    /// with the naive expert's calibration (its closest relative: both
    /// repeat a past value). Starting from nothing would make it look
    /// perfect (zero loss) with an empty band (zero scale).
    fn adopt_seasonal(&mut self) {
        const NAIVE: usize = 0;
        for h in 0..MAX_HORIZON {
            let best_point = self.horizons[h].point_loss[..SEASONAL]
                .iter()
                .fold(f32::INFINITY, |a, &l| a.min(l));
            let best_band = self.horizons[h].band_loss[..SEASONAL * SPEEDS]
                .iter()
                .fold(f32::INFINITY, |a, &l| a.min(l));
            self.horizons[h].point_loss[SEASONAL] = best_point;
            for s in 0..SPEEDS {
                let (from, to) = (NAIVE * SPEEDS + s, SEASONAL * SPEEDS + s);
                self.horizons[h].band_loss[to] = best_band;
                let cal = &mut self.horizons[h].cal;
                cal.sigma[to] = cal.sigma[from];
                cal.qhat[to] = cal.qhat[from];
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
        let snapshot = self.experts.snapshot(&self.ring, self.period.period());
        self.origins[(self.n % MAX_HORIZON as u64) as usize] = snapshot;
        let mut made = [[0.0f32; EXPERTS]; MAX_HORIZON];
        for (h, row) in made.iter_mut().enumerate().take(horizon) {
            *row = snapshot.row(h, &self.ring, 0);
        }
        // Tiny floor so that a series that is exactly predictable (loss 0)
        // does not divide by zero; relative to the series' level.
        let floor = 1e-9 * self.scale.abs() + f32::MIN_POSITIVE;
        let seasonal_on = !made[0][SEASONAL].is_nan();
        if seasonal_on && !self.seasonal_seen {
            self.adopt_seasonal();
            self.seasonal_seen = true;
        }
        self.seasonal_on = seasonal_on;
        for (h, row) in made.iter().enumerate().take(horizon) {
            let (p, valid) = sanitize(row);
            let band_loss = &self.horizons[h].band_loss;
            let point_loss = &self.horizons[h].point_loss;
            let margins = self.horizons[h].cal.margins();
            // Experts that made no forecast count as infinitely bad: no
            // weight, never the best.
            let mut pl = [0.0f32; EXPERTS];
            for e in 0..EXPERTS {
                pl[e] = if valid[e] > 0.0 {
                    point_loss[e]
                } else {
                    f32::INFINITY
                };
            }
            let mut bl = [0.0f32; BANDS];
            for b in 0..BANDS {
                bl[b] = if valid[b / SPEEDS] > 0.0 {
                    band_loss[b]
                } else {
                    f32::INFINITY
                };
            }
            let best_point = pl.iter().fold(f32::INFINITY, |a, &l| a.min(l));
            let best_band = bl.iter().fold(f32::INFINITY, |a, &l| a.min(l));
            let (mut wp, mut sp) = (0.0f32, 0.0f32);
            for e in 0..EXPERTS {
                let w = weight(best_point, pl[e], floor);
                wp += w;
                sp += w * p[e];
            }
            let (mut wb, mut sb) = (0.0f32, 0.0f32);
            for b in 0..BANDS {
                let w = weight(best_band, bl[b], floor);
                wb += w;
                sb += w * (p[b / SPEEDS] + margins[b]).max(0.0);
            }
            let point = (sp / wp).max(0.0);
            self.point[h] = point;
            self.upper[h] = (sb / wb).max(point);
        }
        self.recur.lift(&self.ring, &mut self.upper, horizon);
    }
}

/// Forecasts with NaN (an expert that made none) replaced by 0, and a mask
/// that is 1 where a forecast exists: arithmetic on masks instead of
/// branches keeps the per-band loops vectorisable.
#[inline]
fn sanitize(row: &[f32; EXPERTS]) -> ([f32; EXPERTS], [f32; EXPERTS]) {
    let mut p = [0.0; EXPERTS];
    let mut valid = [0.0; EXPERTS];
    for e in 0..EXPERTS {
        let ok = !row[e].is_nan();
        p[e] = if ok { row[e] } else { 0.0 };
        valid[e] = if ok { 1.0 } else { 0.0 };
    }
    (p, valid)
}

/// Inverse-loss weight relative to the best (1 for the best itself).
#[inline]
fn weight(best: f32, loss: f32, floor: f32) -> f32 {
    ((best + floor) / (loss + floor)).powi(POWER)
}
