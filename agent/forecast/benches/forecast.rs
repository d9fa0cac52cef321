//! Cost of one forecaster update, with the forecast read back each tick as
//! a shadow does: a single hot series, and 10,000 series updated round-robin
//! (the realistic case: each one's state is cold in cache).
//!
//! Timings on shared machines are noisy, so every figure is the median of
//! several runs, with the spread shown. No criterion dependency: the
//! measurement is a plain timed loop over deterministic inputs.

use std::hint::black_box;
use std::time::Instant;

use shadow_forecast::{Config, Forecaster, MAX_HORIZON};

/// Deterministic, bursty, periodic input (a job every 45 ticks plus noise).
fn sample(series: u64, t: u64) -> f64 {
    let mut z = series.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 31;
    z = z.wrapping_mul(0x94D0_49BB_1331_11EB);
    let noise = (z >> 11) as f64 / (1u64 << 53) as f64;
    let busy = if (t + series) % 45 < 10 { 2.0 } else { 0.2 };
    busy + noise
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn run(series: usize, ticks: u64, runs: usize) -> (f64, f64, f64) {
    let cfg = Config::new(1.0).expect("valid");
    let mut per_update = Vec::new();
    for _ in 0..runs {
        let mut fs: Vec<Forecaster> = (0..series).map(|_| Forecaster::new(cfg)).collect();
        // Warm up past the transients (period detection, first scores).
        for t in 0..400 {
            for (s, f) in fs.iter_mut().enumerate() {
                f.update(t as f64, sample(s as u64, t))
                    .expect("valid sample");
            }
        }
        let start = Instant::now();
        let mut sink = 0.0;
        for t in 400..400 + ticks {
            for (s, f) in fs.iter_mut().enumerate() {
                f.update(t as f64, black_box(sample(s as u64, t)))
                    .expect("valid sample");
                sink += f.forecast().upper[MAX_HORIZON - 1];
            }
        }
        black_box(sink);
        per_update.push(start.elapsed().as_nanos() as f64 / (series as u64 * ticks) as f64);
    }
    median(per_update)
}

/// Cost of the input generator alone, subtracted from nothing but shown so
/// the reader can judge it.
fn input_cost(n: u64) -> f64 {
    let start = Instant::now();
    let mut sink = 0.0;
    for t in 0..n {
        sink += black_box(sample(t % 10_000, t));
    }
    black_box(sink);
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    // `cargo test --benches` runs this once with no timing wanted.
    if std::env::args().any(|a| a == "--test") {
        run(10, 10, 1);
        return;
    }
    let size = std::mem::size_of::<Forecaster>();
    println!("state per series: {size} bytes (forecaster)");
    println!(
        "input generator: {:.1} ns per sample",
        input_cost(5_000_000)
    );
    let (m, lo, hi) = run(1, 500_000, 7);
    println!("1 series, hot cache: median {m:.0} ns/update (min {lo:.0}, max {hi:.0}, 7 runs)");
    let (m, lo, hi) = run(10_000, 50, 5);
    println!(
        "10,000 series round-robin: median {m:.0} ns/update (min {lo:.0}, max {hi:.0}, 5 runs)"
    );
}
