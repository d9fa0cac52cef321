//! A fake local agent: over the orchestrator's Unix socket, each tick, a
//! usage figure and a fresh random CPU forecast for each of the first `n`
//! cgroups, so the orchestrator moves their knobs every tick. It
//! reconnects whenever the orchestrator goes away (it is killed often).

use std::{
    os::unix::net::UnixStream,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use shadow_wire::{
    Component, Compression, Hello, Message, Prediction, PredictionBatch, Resource, Source, Step,
    Usage, UsageBatch,
};

use super::Rng;

/// The Hello of a local agent named `agent`.
pub(crate) fn hello(agent: &str, tick: Duration) -> Hello {
    Hello {
        version: shadow_wire::VERSION,
        host: "chaos".into(),
        agent: agent.into(),
        tick_ms: tick.as_millis() as u32,
        key: String::new(),
    }
}

/// One report: usage `used[i]` and a CPU forecast whose band is `upper[i]`
/// over the next four steps, for component `i` at `paths[i]`.
pub(crate) fn report(
    paths: &[(String, u64)],
    used: &[f32],
    upper: &[f32],
    tick: Duration,
) -> [Message; 2] {
    let at_ms = shadow_common::host::unix_ms();
    let step_ms = tick.as_millis() as u32;
    let components: Vec<Component> = paths
        .iter()
        .map(|(path, id)| Component {
            path: path.clone(),
            id: *id,
        })
        .collect();
    let usage = UsageBatch {
        at_ms,
        interval_ms: step_ms,
        components: components.clone(),
        usage: (0..paths.len())
            .map(|i| Usage {
                component: i as u32,
                resource: Resource::Cpu,
                value: used[i],
            })
            .collect(),
    };
    let predictions = PredictionBatch {
        at_ms,
        step_ms,
        components,
        predictions: (0..paths.len())
            .map(|i| Prediction {
                component: i as u32,
                resource: Resource::Cpu,
                source: Source::Model,
                quantile: 0.95,
                volatility: 0.1,
                last: used[i],
                next_report_ms: 5000,
                steps: (1..=4)
                    .map(|ahead| Step {
                        ahead,
                        point: used[i],
                        upper: upper[i],
                    })
                    .collect(),
            })
            .collect(),
    };
    [Message::Usage(usage), Message::Predictions(predictions)]
}

/// The feeding thread; stopped and joined on drop.
pub(crate) struct Feeder {
    stop: Arc<AtomicBool>,
    /// How many of the cgroups it reports on (the rest are left alone).
    pub(crate) reported: Arc<AtomicUsize>,
    handle: Option<JoinHandle<()>>,
}

impl Feeder {
    /// Feeds the orchestrator on `socket` about `paths` every `tick`,
    /// with random figures from `seed`.
    pub(crate) fn start(
        socket: PathBuf,
        paths: Vec<(String, u64)>,
        tick: Duration,
        seed: u64,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let reported = Arc::new(AtomicUsize::new(paths.len()));
        let (s, n) = (stop.clone(), reported.clone());
        let handle = std::thread::spawn(move || {
            let mut rng = Rng::new(seed);
            while !s.load(Ordering::Relaxed) {
                let Ok(mut stream) = UnixStream::connect(&socket) else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                if shadow_wire::connect(&mut stream, hello("chaos-feed", tick)).is_err() {
                    continue;
                }
                // Reservation state comes back every tick: drain it.
                if let Ok(mut r) = stream.try_clone() {
                    std::thread::spawn(move || {
                        let mut buf = Vec::new();
                        while shadow_wire::read_message(&mut r, &mut buf).is_ok() {}
                    });
                }
                'conn: while !s.load(Ordering::Relaxed) {
                    let k = n.load(Ordering::Relaxed).min(paths.len());
                    let used: Vec<f32> = (0..k).map(|_| 0.05 + 0.3 * rng.unit() as f32).collect();
                    let upper: Vec<f32> = used
                        .iter()
                        .map(|u| u + 0.05 + 0.8 * rng.unit() as f32)
                        .collect();
                    for m in report(&paths[..k], &used, &upper, tick) {
                        if shadow_wire::write_message(&mut stream, &m, Compression::Auto).is_err() {
                            break 'conn;
                        }
                    }
                    std::thread::sleep(tick);
                }
            }
        });
        Self {
            stop,
            reported,
            handle: Some(handle),
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
