//! The orchestrator's two hot paths, against the budgets:
//! - one decision cycle over 10,000 components x 4 resources (< 5 ms);
//! - ingest over the Unix socket (>= 100,000 predictions per second),
//!   through the real server: socket, framing, zstd, validation, book.
//!
//! Prints medians of repeated runs (the machine is noisy).
//! `cargo bench -p shadow-orchestrator --bench orchestrator`

use std::{
    path::Path,
    time::{Duration, Instant},
};

use shadow_orchestrator::{
    book::Sender,
    capacity::Capacity,
    config::Config,
    engine::Engine,
    server::{Event, Server},
};
use shadow_wire::{
    Component, Compression, Hello, Message, Prediction, PredictionBatch, Resource, Source, Step,
    Usage, UsageBatch,
};

const COMPONENTS: usize = 10_000;

/// One local agent's connection.
const LOCAL: Sender = Sender {
    host: None,
    conn: 1,
};

/// A little deterministic noise, so values are not all alike (zstd would
/// flatter constant batches).
fn noise(i: &mut u64) -> f32 {
    *i = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*i >> 40) as f32 / (1u64 << 24) as f32
}

fn batch(from: usize, n: usize, seed: &mut u64) -> (PredictionBatch, UsageBatch) {
    let components: Vec<Component> = (from..from + n)
        .map(|i| Component {
            path: format!("/system.slice/service-{i}.service"),
            id: 1000 + i as u64,
        })
        .collect();
    let mut predictions = Vec::new();
    let mut usage = Vec::new();
    for c in 0..n as u32 {
        for resource in Resource::ALL {
            let level = noise(seed) * 2.0;
            predictions.push(Prediction {
                component: c,
                resource,
                source: Source::Model,
                quantile: 0.95,
                volatility: level * 0.1,
                last: level,
                next_report_ms: 30_000,
                steps: (1..=6)
                    .map(|ahead| Step {
                        ahead,
                        point: level * (1.0 + 0.01 * noise(seed)),
                        upper: level * (1.2 + 0.05 * noise(seed)),
                    })
                    .collect(),
            });
            usage.push(Usage {
                component: c,
                resource,
                value: level * noise(seed),
            });
        }
    }
    (
        PredictionBatch {
            at_ms: 0,
            step_ms: 1000,
            components: components.clone(),
            predictions,
        },
        UsageBatch {
            at_ms: 0,
            interval_ms: 1000,
            components,
            usage,
        },
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn cycle_cost() {
    let config = Config::parse(
        "[[manage]]\ncgroup = \"/system.slice/service-1*\"\ncpu = { floor = 0.01, ceiling = 2 }\nmemory = { floor = 0, ceiling = \"1GiB\" }\n",
        Path::new("bench.toml"),
    )
    .unwrap();
    let mut engine = Engine::new(config, Capacity::detect(&Default::default()));
    let mut seed = 1;
    let mut runs = Vec::new();
    let mut decisions = 0;
    for _ in 0..30 {
        let now = Instant::now();
        for from in (0..COMPONENTS).step_by(1000) {
            let (p, u) = batch(from, 1000, &mut seed);
            engine.usage(&None, &u, now);
            engine.predictions(&LOCAL, &p, now);
        }
        let start = Instant::now();
        let cycle = engine.cycle(now);
        runs.push(start.elapsed().as_secs_f64() * 1e3);
        decisions += cycle.decisions.len();
    }
    println!(
        "cycle: {} components x 4 resources: median {:.2} ms, max {:.2} ms over {} runs ({} decisions per run)",
        engine.components().len(),
        median(runs.clone()),
        runs.iter().cloned().fold(0.0, f64::max),
        runs.len(),
        decisions / runs.len()
    );
}

fn ingest_rate(compression: Compression) -> (f64, f64) {
    let dir = std::env::temp_dir().join(format!("shadow-bench-{}", std::process::id()));
    let socket = dir.join("o.sock");
    let (server, events) = Server::new("bench");
    server.listen_unix(&socket).unwrap();
    let mut seed = 7;
    // 250 components x 4 resources = 1,000 predictions per frame.
    let frames: Vec<Vec<u8>> = (0..40)
        .map(|k| {
            let (p, _) = batch(k * 250, 250, &mut seed);
            shadow_wire::encode(&Message::Predictions(p), compression).unwrap()
        })
        .collect();
    let bytes_per_prediction =
        frames.iter().map(Vec::len).sum::<usize>() as f64 / (frames.len() * 1000) as f64;
    let rounds = 10;
    let total = frames.len() * 1000 * rounds;
    let client = std::thread::spawn(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        let hello = Hello {
            version: shadow_wire::VERSION,
            host: "bench".into(),
            agent: "bench".into(),
            tick_ms: 1000,
            key: String::new(),
        };
        shadow_wire::connect(&mut s, hello).unwrap();
        for _ in 0..rounds {
            for f in &frames {
                std::io::Write::write_all(&mut s, f).unwrap();
            }
        }
        s
    });
    let mut engine = Engine::new(Config::default(), Capacity::default());
    let mut got = 0;
    let mut start = None;
    while got < total {
        match events
            .recv_timeout(Duration::from_secs(30))
            .expect("events")
        {
            Event::Message {
                message: Message::Predictions(b),
                ..
            } => {
                start.get_or_insert_with(Instant::now);
                got += b.predictions.len();
                engine.predictions(&LOCAL, &b, Instant::now());
            }
            Event::Closed { reason, .. } => panic!("closed: {reason}"),
            _ => {}
        }
    }
    let elapsed = start.unwrap().elapsed().as_secs_f64();
    drop(client.join());
    let _ = std::fs::remove_dir_all(&dir);
    // The first frame's wait is not counted: rate over the others.
    ((total - 1000) as f64 / elapsed, bytes_per_prediction)
}

fn main() {
    cycle_cost();
    for (name, compression) in [("zstd", Compression::Auto), ("plain", Compression::Off)] {
        let runs: Vec<(f64, f64)> = (0..5).map(|_| ingest_rate(compression)).collect();
        println!(
            "ingest over the Unix socket ({name}): median {:.0} predictions/s over {} runs; {:.1} bytes per prediction (6 horizons each)",
            median(runs.iter().map(|r| r.0).collect()),
            runs.len(),
            runs[0].1
        );
    }
}
