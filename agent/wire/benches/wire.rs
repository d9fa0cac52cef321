//! Bytes per prediction on the wire, with and without zstd, and the cost of
//! encoding and decoding, on a realistic batch: 10,000 cgroups × 4
//! resources, horizons 1 and 6, values with noise (constants would
//! compress unrealistically well).
//!
//! Timings on shared machines are noisy, so each is the median of several
//! runs, with the spread shown. `cargo bench -p shadow-wire --bench wire`.

use std::hint::black_box;
use std::time::Instant;

use shadow_wire::{
    Component, Compression, Message, Prediction, PredictionBatch, Resource, Source, Step,
    decode_body, encode,
};

/// Deterministic noise in [0, 1) from two integers (splitmix-style).
fn noise(a: u64, b: u64) -> f32 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 31;
    z = z.wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 29;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

/// A typical level per resource and unit: cores, bytes, bytes/s, bytes/s.
fn scale(r: Resource) -> f32 {
    match r {
        Resource::Cpu => 2.0,
        Resource::Memory => 512.0 * 1024.0 * 1024.0,
        Resource::Io => 20.0 * 1024.0 * 1024.0,
        Resource::Net => 5.0 * 1024.0 * 1024.0,
    }
}

fn batch(components: usize) -> Message {
    let table = (0..components)
        .map(|i| Component {
            path: format!("/system.slice/service-{}.service", 1000 + i),
            id: 2_000_000 + 37 * i as u64,
        })
        .collect();
    let mut predictions = Vec::new();
    for c in 0..components as u64 {
        for (r, &resource) in Resource::ALL.iter().enumerate() {
            let n = |k: u64| noise(c * 4 + r as u64, k);
            let last = scale(resource) * n(0) * n(1);
            let volatility = last * 0.1 * n(2);
            let steps = [1u16, 6]
                .iter()
                .enumerate()
                .map(|(k, &ahead)| {
                    let point = last * (0.9 + 0.2 * n(3 + k as u64));
                    Step {
                        ahead,
                        point,
                        upper: point + volatility * (1.6 + f32::from(ahead).sqrt()),
                    }
                })
                .collect();
            predictions.push(Prediction {
                component: c as u32,
                resource,
                source: if n(5) < 0.02 {
                    Source::Hint
                } else {
                    Source::Model
                },
                quantile: 0.95,
                volatility,
                last,
                next_report_ms: if n(6) < 0.8 {
                    1000
                } else {
                    5000 + 1000 * (c % 25) as u32
                },
                steps,
            });
        }
    }
    Message::Predictions(PredictionBatch {
        at_ms: 1_767_225_600_000,
        step_ms: 1000,
        components: table,
        predictions,
    })
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// ns per prediction of `f`, median (min, max) over `runs`.
fn time(runs: usize, per: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    f(); // warm caches and allocator
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_nanos() as f64 / per as f64
            })
            .collect(),
    )
}

fn main() {
    // `cargo test --benches` runs this once with no timing wanted.
    let quick = std::env::args().any(|a| a == "--test");
    let (components, runs) = if quick { (10, 1) } else { (10_000, 15) };
    let msg = batch(components);
    let n = components * Resource::ALL.len();
    let plain = encode(&msg, Compression::Off).expect("encode");
    let packed = encode(&msg, Compression::Auto).expect("encode");
    assert_eq!(decode_body(&packed[4..]).expect("decode"), msg);
    println!("batch: {components} components x 4 resources = {n} predictions, 2 horizons each");
    for (name, frame) in [("uncompressed", &plain), ("zstd level 1", &packed)] {
        println!(
            "{name:>13}: {:>9} bytes/frame, {:6.2} bytes/prediction",
            frame.len(),
            frame.len() as f64 / n as f64
        );
    }
    // The level the encoder does not use, for the record.
    let level3 = zstd::bulk::compress(&plain[5..], 3).expect("zstd");
    println!(
        "{:>13}: {:>9} bytes/frame, {:6.2} bytes/prediction",
        "zstd level 3",
        level3.len() + 5,
        (level3.len() + 5) as f64 / n as f64
    );
    let report = |what: &str, (m, lo, hi): (f64, f64, f64)| {
        println!("{what:>26}: {m:7.1} ns/prediction (min {lo:.1}, max {hi:.1})");
    };
    report(
        "encode, uncompressed",
        time(runs, n, || {
            black_box(encode(black_box(&msg), Compression::Off).unwrap());
        }),
    );
    report(
        "encode, zstd",
        time(runs, n, || {
            black_box(encode(black_box(&msg), Compression::Auto).unwrap());
        }),
    );
    report(
        "decode+validate, plain",
        time(runs, n, || {
            black_box(decode_body(black_box(&plain[4..])).unwrap());
        }),
    );
    report(
        "decode+validate, zstd",
        time(runs, n, || {
            black_box(decode_body(black_box(&packed[4..])).unwrap());
        }),
    );
}
