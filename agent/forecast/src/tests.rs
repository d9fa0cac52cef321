//! Behaviour of the whole forecaster on synthetic series: the cases the
//! issue names (constant, trend, step, periodic, spike, missing samples,
//! NaN and negative input) plus calibration and cost bounds.

use super::*;

/// Deterministic noise in [0, 1) (SplitMix64), so tests need no RNG crate.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }
}

fn forecaster(interval_s: f64) -> Forecaster {
    Forecaster::new(Config::new(interval_s).unwrap())
}

/// Feeds `ys` one per second; returns the share of targets at or below the
/// band at horizon `h` over the second half, and the forecaster.
fn run(ys: &[f64], h: usize) -> (f64, Forecaster) {
    let mut f = forecaster(1.0);
    let mut bands = vec![f64::NAN; ys.len()];
    let (mut hit, mut n) = (0, 0);
    for (t, &y) in ys.iter().enumerate() {
        if t >= ys.len() / 2 && t >= h && !bands[t - h].is_nan() {
            n += 1;
            if y <= bands[t - h] {
                hit += 1;
            }
        }
        f.update(t as f64, y).unwrap();
        bands[t] = f.forecast().upper[h - 1];
    }
    (hit as f64 / n as f64, f)
}

#[test]
fn constant_series_gets_a_tight_band() {
    let (coverage, f) = run(&[7.0; 500], 1);
    let fc = f.forecast();
    assert_eq!(coverage, 1.0);
    for h in 0..MAX_HORIZON {
        assert!((fc.point[h] - 7.0).abs() < 1e-4, "{fc:?}");
        assert!(
            fc.upper[h] >= fc.point[h] && fc.upper[h] - 7.0 < 1e-3,
            "{fc:?}"
        );
    }
    assert!(fc.volatility < 1e-6);
}

#[test]
fn trend_is_followed_at_every_horizon() {
    let ys: Vec<f64> = (0..600).map(|t| 100.0 + 0.5 * t as f64).collect();
    let (coverage, f) = run(&ys, 6);
    let fc = f.forecast();
    for h in 1..=MAX_HORIZON {
        let truth = 100.0 + 0.5 * (599 + h) as f64;
        assert!((fc.point[h - 1] - truth).abs() < 1.0, "h={h} {fc:?}");
        assert!(fc.upper[h - 1] >= truth - 0.01, "h={h} {fc:?}");
    }
    assert!(coverage > 0.9, "{coverage}");
}

#[test]
fn level_shift_is_absorbed_quickly() {
    let mut noise = Noise(1);
    let ys: Vec<f64> = (0..800)
        .map(|t| if t < 400 { 10.0 } else { 50.0 } + noise.next())
        .collect();
    let mut f = forecaster(1.0);
    for (t, &y) in ys.iter().enumerate() {
        f.update(t as f64, y).unwrap();
        if t == 420 {
            let fc = f.forecast();
            assert!(
                (fc.point[0] - 50.5).abs() < 2.0,
                "20 ticks after the shift: {fc:?}"
            );
            assert!(fc.upper[0] >= 50.0, "{fc:?}");
        }
    }
}

#[test]
fn periodic_job_is_found_and_anticipated() {
    // A job busy for 10 of every 45 ticks (cron-like), with noise.
    let mut noise = Noise(2);
    let ys: Vec<f64> = (0..3000)
        .map(|t| if t % 45 < 10 { 2.0 } else { 0.1 } + 0.05 * noise.next())
        .collect();
    let (coverage, f) = run(&ys, 6);
    let fc = f.forecast();
    assert_eq!(fc.period, Some(45));
    // 2999 % 45 = 29: the next job starts at tick 3015, 16 ticks out, so
    // all six horizons are idle; then check a point where one starts.
    assert!(fc.point.iter().all(|p| *p < 0.5), "{fc:?}");
    // Continue the pattern up to tick 3055: the job at 3060 is then 5
    // ticks ahead, while tick 3056 is idle.
    let mut f = f;
    for t in 3000..=3055 {
        f.update(t as f64, if t % 45 < 10 { 2.0 } else { 0.1 })
            .unwrap();
    }
    let fc = f.forecast();
    assert!(
        fc.upper[4] > 1.5,
        "job start 5 ticks ahead not anticipated: {fc:?}"
    );
    assert!(fc.upper[0] < 1.0, "idle tick reserved as busy: {fc:?}");
    assert!(coverage > 0.9, "{coverage}");
}

#[test]
fn a_spike_widens_the_band_which_then_narrows_again() {
    let mut noise = Noise(3);
    let mut f = forecaster(1.0);
    let mut t = 0.0;
    let mut feed = |f: &mut Forecaster, y: f64| {
        f.update(t, y).unwrap();
        t += 1.0;
    };
    for _ in 0..600 {
        feed(&mut f, 10.0 + noise.next());
    }
    let calm = f.forecast().upper[0];
    feed(&mut f, 100.0);
    for _ in 0..3 {
        feed(&mut f, 10.0 + noise.next());
    }
    let after = f.forecast().upper[0];
    for _ in 0..600 {
        feed(&mut f, 10.0 + noise.next());
    }
    let later = f.forecast().upper[0];
    assert!(after > calm, "calm {calm}, after the spike {after}");
    assert!(
        later < calm + 0.5 * (after - calm),
        "calm {calm}, after {after}, later {later}"
    );
}

#[test]
fn bands_are_calibrated_on_skewed_noise_at_every_horizon() {
    let mut noise = Noise(4);
    // Exponential bursts on a base load: far from Gaussian.
    let ys: Vec<f64> = (0..6000)
        .map(|_| 5.0 - 2.0 * (1.0 - noise.next()).ln())
        .collect();
    for h in [1, 3, 6] {
        let (coverage, _) = run(&ys, h);
        assert!((coverage - 0.95).abs() < 0.02, "h={h}: coverage {coverage}");
    }
}

#[test]
fn missing_ticks_are_imputed_and_long_gaps_restart() {
    let mut f = forecaster(1.0);
    for t in 0..100 {
        f.update(t as f64, 5.0).unwrap();
    }
    let u = f.update(103.0, 5.0).unwrap();
    assert_eq!(
        u,
        Update {
            imputed: 3,
            restarted: false
        }
    );
    // Jitter (1.3 intervals) is not a gap.
    assert_eq!(f.update(104.3, 5.0).unwrap().imputed, 0);
    let u = f.update(104.3 + (MAX_GAP_TICKS + 5) as f64, 9.0).unwrap();
    assert!(u.restarted);
    assert_eq!(f.forecast().point[0], 9.0);
}

#[test]
fn nan_negative_and_out_of_order_samples_are_refused_without_effect() {
    let mut f = forecaster(1.0);
    for t in 0..50 {
        f.update(t as f64, 3.0).unwrap();
    }
    let before = f.forecast();
    assert!(matches!(f.update(50.0, f64::NAN), Err(Error::NonFinite(y)) if y.is_nan()));
    assert!(matches!(
        f.update(50.0, f64::INFINITY),
        Err(Error::NonFinite(_))
    ));
    assert_eq!(f.update(50.0, -1.0), Err(Error::Negative(-1.0)));
    assert!(matches!(
        f.update(49.0, 1.0),
        Err(Error::TimeNotIncreasing { .. })
    ));
    assert_eq!(f.forecast(), before);
    assert!(f.update(50.0, 3.0).is_ok());
}

#[test]
fn settings_are_validated() {
    assert_eq!(Config::new(0.0), Err(Error::Interval(0.0)));
    assert!(
        Config::new(1.0)
            .unwrap()
            .with_horizon(MAX_HORIZON + 1)
            .is_err()
    );
    assert!(Config::new(1.0).unwrap().with_quantile(1.0).is_err());
}

#[test]
fn same_inputs_same_forecasts() {
    let mut noise = Noise(5);
    let ys: Vec<f64> = (0..1000).map(|_| noise.next() * 10.0).collect();
    let (_, a) = run(&ys, 1);
    let (_, b) = run(&ys, 1);
    assert_eq!(a.forecast(), b.forecast());
}

/// The bound: under 4 KiB of state per series, forecaster and
/// reporter together, fixed at compile time (no heap).
#[test]
fn state_per_series_is_under_4_kib() {
    let forecaster = std::mem::size_of::<Forecaster>();
    let reporter = std::mem::size_of::<Reporter>();
    eprintln!("state per series: forecaster {forecaster} B + reporter {reporter} B");
    assert!(forecaster + reporter < 4096, "{forecaster} + {reporter}");
}
