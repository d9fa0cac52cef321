//! Sends the shadows' forecasts and the realised usage to the orchestrator
//! over the wire protocol, and passes on the reservations it sends back: a
//! reader thread per connection puts each batch on a channel that the
//! pipeline drains once a tick ([`Transmitter::received`]); it keeps them
//! ([`crate::reservations`]), nothing here does.
//!
//! Observation must not depend on the orchestrator: if it is not there or
//! goes away, the agent keeps observing, says so once, and reconnects every
//! few seconds. After a reconnection every series' forecast is sent again,
//! since the orchestrator lost what it held.

use std::{
    collections::HashMap,
    sync::mpsc::{self, Receiver, Sender},
    time::{Duration, Instant},
};

use shadow_wire::{
    Component, Compression, Hello, Message, Prediction, PredictionBatch, ReservationBatch, Usage,
    UsageBatch,
    auth::Key,
    transport::{Stream, Target},
};

use crate::{collector::Sample, shadow::Observation};

/// Wait between connection attempts.
const RETRY: Duration = Duration::from_secs(3);
/// A connect, handshake or write that takes longer means the orchestrator
/// is not there or not reading; the tick goes on without it.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A key to prove this agent's identity with, and its name.
#[derive(Clone, Debug)]
pub struct AgentKey {
    /// The name the orchestrator knows it by.
    pub name: String,
    /// The key.
    pub key: Key,
}

/// The agent's side of the virtual interface.
pub struct Transmitter {
    target: Target,
    hello: Hello,
    key: Option<AgentKey>,
    conn: Option<Stream>,
    retry_at: Instant,
    /// Send every forecast on the next tick (after a (re)connection).
    resend_all: bool,
    /// Batches from the orchestrator, put here by the reader threads.
    received: Receiver<ReservationBatch>,
    /// Cloned into each connection's reader thread.
    to_receive: Sender<ReservationBatch>,
    warned: bool,
}

/// What one tick sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Forecasts sent (component × resource).
    pub predictions: usize,
    /// Usage figures sent.
    pub usage: usize,
}

impl Transmitter {
    /// A transmitter to `target`, proving its identity with `key` if the
    /// orchestrator asks; it connects on the first tick.
    pub fn new(target: Target, tick: Duration, key: Option<AgentKey>) -> Self {
        let host = shadow_common::host::hostname();
        let (to_receive, received) = mpsc::channel();
        Self {
            target,
            hello: Hello {
                version: shadow_wire::VERSION,
                host,
                agent: format!("shadow-agent/{}", std::process::id()),
                tick_ms: u32::try_from(tick.as_millis()).unwrap_or(u32::MAX).max(1),
                key: key.as_ref().map(|k| k.name.clone()).unwrap_or_default(),
            },
            key,
            conn: None,
            retry_at: Instant::now(),
            resend_all: true,
            received,
            to_receive,
            warned: false,
        }
    }

    /// The reservation batches received since the last call, oldest first.
    pub fn received(&self) -> impl Iterator<Item = ReservationBatch> + '_ {
        self.received.try_iter()
    }

    /// The key it proves its identity with.
    pub fn key(&self) -> Option<AgentKey> {
        self.key.clone()
    }

    /// Whether the orchestrator is connected.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Sends one tick: usage of every observation, and the forecasts that the
    /// adaptive reporting marked (all of them after a reconnection).
    /// `observations` pairs each observation with the index of its sample.
    pub fn tick(
        &mut self,
        at_ms: u64,
        samples: &[Sample],
        observations: &[(usize, Observation)],
        quantile: f64,
        heartbeat_s: f64,
    ) -> Sent {
        if !self.connect() {
            return Sent::default();
        }
        let resend_all = std::mem::take(&mut self.resend_all);
        let interval_ms = samples
            .first()
            .map_or(1, |s| (s.interval_ns / 1_000_000).max(1));
        let (usage, predictions) = batches(
            at_ms,
            u32::try_from(interval_ms).unwrap_or(u32::MAX),
            self.hello.tick_ms,
            samples,
            observations,
            Options {
                quantile: quantile as f32,
                next_report_ms: (heartbeat_s * 1e3) as u32,
                resend_all,
            },
        );
        let sent = Sent {
            predictions: predictions.predictions.len(),
            usage: usage.usage.len(),
        };
        let conn = self.conn.as_mut().expect("connected above");
        let result = shadow_wire::write_message(conn, &Message::Usage(usage), Compression::Auto)
            .and_then(|()| {
                if sent.predictions == 0 {
                    return Ok(());
                }
                shadow_wire::write_message(
                    conn,
                    &Message::Predictions(predictions),
                    Compression::Auto,
                )
            });
        match result {
            Ok(()) => sent,
            Err(e) => {
                tracing::warn!(orchestrator = %self.target, cause = %e, "orchestrator connection lost; reconnecting");
                self.conn = None;
                self.retry_at = Instant::now() + RETRY;
                Sent::default()
            }
        }
    }

    /// Connects (and handshakes) if not connected and a retry is due.
    fn connect(&mut self) -> bool {
        if self.conn.is_some() {
            return true;
        }
        if Instant::now() < self.retry_at {
            return false;
        }
        self.retry_at = Instant::now() + RETRY;
        match self.open() {
            Ok(conn) => {
                tracing::info!(orchestrator = %self.target, "connected to the orchestrator");
                self.conn = Some(conn);
                self.resend_all = true;
                self.warned = false;
                true
            }
            Err(e) => {
                if !self.warned {
                    tracing::warn!(
                        orchestrator = %self.target,
                        cause = %e,
                        retry_s = RETRY.as_secs(),
                        "cannot reach the orchestrator; observing anyway and retrying"
                    );
                    self.warned = true;
                }
                false
            }
        }
    }

    fn open(&self) -> Result<Stream, shadow_wire::Error> {
        let mut conn = Stream::connect(&self.target, TIMEOUT)?;
        shadow_wire::connect_with(
            &mut conn,
            self.hello.clone(),
            self.key.as_ref().map(|k| &k.key),
        )?;
        let mut reader = conn.try_clone()?;
        reader.set_read_timeout(None)?;
        let to = self.to_receive.clone();
        std::thread::Builder::new()
            .name("reservations".into())
            .spawn(move || read_reservations(&mut reader, &to))?;
        Ok(conn)
    }
}

/// Passes on the reservations the orchestrator sends until it closes (or
/// the transmitter is gone).
fn read_reservations(conn: &mut Stream, to: &Sender<ReservationBatch>) {
    let mut buf = Vec::new();
    loop {
        match shadow_wire::read_message(conn, &mut buf) {
            Ok(Message::Reservations(b)) => {
                if to.send(b).is_err() {
                    return;
                }
            }
            Ok(Message::Error(f)) => {
                tracing::warn!(code = ?f.code, message = %f.message, "the orchestrator refused us");
                return;
            }
            Ok(other) => {
                tracing::debug!(
                    kind = other.kind(),
                    "ignoring a message from the orchestrator"
                );
            }
            Err(shadow_wire::Error::Closed) => return,
            Err(e) => {
                tracing::debug!(cause = %e, "reading from the orchestrator failed");
                return;
            }
        }
    }
}

/// How forecasts are packed.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Quantile of the bands.
    pub quantile: f32,
    /// The heartbeat: longest silence of a series, in milliseconds.
    pub next_report_ms: u32,
    /// Send every forecast, not only those the reporters marked.
    pub resend_all: bool,
}

/// Packs one tick's observations into a usage batch and a prediction batch,
/// each naming its components once.
pub fn batches(
    at_ms: u64,
    interval_ms: u32,
    step_ms: u32,
    samples: &[Sample],
    observations: &[(usize, Observation)],
    options: Options,
) -> (UsageBatch, PredictionBatch) {
    let mut usage = UsageBatch {
        at_ms,
        interval_ms,
        components: Vec::new(),
        usage: Vec::with_capacity(observations.len()),
    };
    let mut predictions = PredictionBatch {
        at_ms,
        step_ms,
        components: Vec::new(),
        predictions: Vec::new(),
    };
    // Sample index → component index, per batch.
    let mut in_usage: HashMap<usize, u32> = HashMap::new();
    let mut in_predictions: HashMap<usize, u32> = HashMap::new();
    for &(i, r) in observations {
        let Some(sample) = samples.get(i) else {
            continue;
        };
        let component = index_of(&mut in_usage, &mut usage.components, i, sample);
        usage.usage.push(Usage {
            component,
            resource: r.resource,
            value: r.value as f32,
        });
        let Some(f) = r.forecast.filter(|_| r.send || options.resend_all) else {
            continue;
        };
        let component = index_of(&mut in_predictions, &mut predictions.components, i, sample);
        predictions.predictions.push(Prediction::of_forecast(
            component,
            (r.resource, r.source),
            (options.quantile, options.next_report_ms),
            r.value,
            &f,
        ));
    }
    (usage, predictions)
}

fn index_of(
    seen: &mut HashMap<usize, u32>,
    table: &mut Vec<Component>,
    i: usize,
    sample: &Sample,
) -> u32 {
    *seen.entry(i).or_insert_with(|| {
        table.push(Component {
            path: sample.cgroup.clone(),
            id: sample.cgroup_id,
        });
        (table.len() - 1) as u32
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agent_ebpf::Counters;

    use super::*;
    use crate::shadow::Shadows;

    #[test]
    fn packs_usage_always_and_forecasts_when_marked() {
        let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 6, 4.0).unwrap();
        let samples: Vec<Sample> = (0..3)
            .map(|id| Sample {
                ts: 1.0,
                cgroup: format!("/c{id}"),
                cgroup_id: id,
                interval_ns: 1_000_000_000,
                usage: Counters {
                    cpu_ns: 500_000_000,
                    net_tx_bytes: if id == 2 { 1000 } else { 0 },
                    ..Counters::default()
                },
                // /c1's memory level is known: it is forecast and sent too.
                memory: crate::memory::Memory {
                    memory_bytes: (id == 1).then_some(256 << 20),
                    ..Default::default()
                },
            })
            .collect();
        let mut observations = Vec::new();
        let mut tagged = Vec::new();
        for (i, s) in samples.iter().enumerate() {
            observations.clear();
            shadows.observe(s, &mut observations);
            tagged.extend(observations.iter().map(|&r| (i, r)));
        }
        let options = Options {
            quantile: 0.95,
            next_report_ms: 30_000,
            resend_all: false,
        };
        let (usage, predictions) = batches(5, 1000, 1000, &samples, &tagged, options);
        assert_eq!(usage.components.len(), 3);
        assert_eq!(usage.usage.len(), 5, "3 CPU + 1 memory + 1 network");
        assert_eq!(
            predictions.predictions.len(),
            5,
            "first forecasts are all sent"
        );
        let memory = predictions
            .predictions
            .iter()
            .find(|p| p.resource == shadow_wire::Resource::Memory)
            .expect("a memory prediction");
        assert_eq!(
            predictions.components[memory.component as usize].path,
            "/c1"
        );
        assert_eq!(memory.steps.len(), 6);
        assert_eq!(predictions.predictions[0].steps.len(), 6);
        let message = Message::Predictions(predictions);
        message.validate().unwrap();
        // Nothing marked and no resend: usage only.
        for (_, r) in &mut tagged {
            r.send = false;
        }
        let (_, predictions) = batches(5, 1000, 1000, &samples, &tagged, options);
        assert!(predictions.predictions.is_empty());
    }

    #[test]
    fn reservations_sent_back_are_passed_on_once() {
        let path =
            std::env::temp_dir().join(format!("shadow-transmit-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let batch = ReservationBatch {
            at_ms: 7,
            reservations: vec![shadow_wire::Reservation {
                path: "/a".into(),
                resource: shadow_wire::Resource::Cpu,
                reserved: 1.5,
                managed: true,
                margin: 0.1,
                exceeded: 0.0,
                slack: 0.0,
            }],
        };
        let sent = batch.clone();
        let orchestrator = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            shadow_wire::accept(&mut conn, "test").unwrap();
            let mut buf = Vec::new();
            let first = shadow_wire::read_message(&mut conn, &mut buf).unwrap();
            assert!(matches!(first, Message::Usage(_)), "{}", first.kind());
            let reply = Message::Reservations(sent);
            shadow_wire::write_message(&mut conn, &reply, Compression::Off).unwrap();
            conn
        });
        let mut t = Transmitter::new(Target::Unix(path.clone()), Duration::from_secs(1), None);
        t.tick(1, &[], &[], 0.95, 30.0);
        assert!(t.is_connected());
        let _conn = orchestrator.join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut received = Vec::new();
        while received.is_empty() && Instant::now() < deadline {
            received.extend(t.received());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(received, vec![batch]);
        assert_eq!(t.received().count(), 0, "taken once");
        std::fs::remove_file(&path).unwrap();
    }
}
