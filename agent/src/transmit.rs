//! Sends the shadows' forecasts and the realised usage to the orchestrator
//! over the wire protocol, and keeps the reservations it sends back.
//!
//! Observation must not depend on the orchestrator: if it is not there or
//! goes away, the agent keeps observing, says so once, and reconnects every
//! few seconds. After a reconnection every series' forecast is sent again,
//! since the orchestrator lost what it held.

use std::{
    collections::HashMap,
    io,
    net::TcpStream,
    os::unix::net::UnixStream,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    collector::Sample,
    forecast::Forecast,
    shadow::Reading,
    wire::{
        self, Component, Compression, Hello, Message, Prediction, PredictionBatch, Reservation,
        Resource, Source, Step, Usage, UsageBatch,
    },
};

/// Wait between connection attempts.
const RETRY: Duration = Duration::from_secs(3);
/// A write that takes longer means the orchestrator is not reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the orchestrator listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A Unix socket path.
    Unix(PathBuf),
    /// `host:port` over TCP.
    Tcp(String),
}

impl Target {
    /// `tcp:HOST:PORT` for TCP, anything else is a Unix socket path.
    pub fn parse(text: &str) -> Self {
        match text.strip_prefix("tcp:") {
            Some(addr) => Target::Tcp(addr.to_owned()),
            None => Target::Unix(PathBuf::from(text)),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl io::Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
        }
    }
}

impl io::Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Conn {
    fn open(target: &Target) -> io::Result<Self> {
        let conn = match target {
            Target::Unix(p) => Conn::Unix(UnixStream::connect(p)?),
            Target::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
        };
        let timeout = Some(WRITE_TIMEOUT);
        match &conn {
            Conn::Unix(s) => {
                s.set_write_timeout(timeout)?;
                s.set_read_timeout(timeout)?;
            }
            Conn::Tcp(s) => {
                s.set_write_timeout(timeout)?;
                s.set_read_timeout(timeout)?;
            }
        }
        Ok(conn)
    }

    fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
        })
    }

    fn clear_read_timeout(&self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_read_timeout(None),
            Conn::Tcp(s) => s.set_read_timeout(None),
        }
    }
}

/// The latest reservation per (cgroup path, resource), as the orchestrator
/// sent it.
pub type Reservations = Arc<Mutex<HashMap<(String, Resource), Reservation>>>;

/// The agent's side of the virtual interface.
pub struct Transmitter {
    target: Target,
    hello: Hello,
    conn: Option<Conn>,
    retry_at: Instant,
    /// Send every forecast on the next tick (after a (re)connection).
    resend_all: bool,
    reservations: Reservations,
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
    /// A transmitter to `target`; it connects on the first tick.
    pub fn new(target: Target, tick: Duration) -> Self {
        let host = crate::host::hostname();
        Self {
            target,
            hello: Hello {
                version: wire::VERSION,
                host,
                agent: format!("shadow-agent/{}", std::process::id()),
                tick_ms: u32::try_from(tick.as_millis()).unwrap_or(u32::MAX).max(1),
            },
            conn: None,
            retry_at: Instant::now(),
            resend_all: true,
            reservations: Reservations::default(),
            warned: false,
        }
    }

    /// The reservations received so far (shared with the reader thread).
    pub fn reservations(&self) -> Reservations {
        self.reservations.clone()
    }

    /// Whether the orchestrator is connected.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Sends one tick: usage of every reading, and the forecasts that the
    /// adaptive reporting marked (all of them after a reconnection).
    /// `readings` pairs each reading with the index of its sample.
    pub fn tick(
        &mut self,
        at_ms: u64,
        samples: &[Sample],
        readings: &[(usize, Reading)],
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
            readings,
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
        let result =
            wire::write_message(conn, &Message::Usage(usage), Compression::Auto).and_then(|()| {
                if sent.predictions == 0 {
                    return Ok(());
                }
                wire::write_message(conn, &Message::Predictions(predictions), Compression::Auto)
            });
        match result {
            Ok(()) => sent,
            Err(e) => {
                tracing::warn!("orchestrator at {}: {e}; reconnecting", self.target);
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
                tracing::info!("connected to the orchestrator at {}", self.target);
                self.conn = Some(conn);
                self.resend_all = true;
                self.warned = false;
                true
            }
            Err(e) => {
                if !self.warned {
                    eprintln!(
                        "shadow-agent: cannot reach the orchestrator at {}: {e} (observing anyway, retrying every {}s)",
                        self.target,
                        RETRY.as_secs()
                    );
                    self.warned = true;
                }
                false
            }
        }
    }

    fn open(&self) -> Result<Conn, wire::Error> {
        let mut conn = Conn::open(&self.target)?;
        wire::connect(&mut conn, self.hello.clone())?;
        let mut reader = conn.try_clone()?;
        reader.clear_read_timeout()?;
        let reservations = self.reservations.clone();
        std::thread::Builder::new()
            .name("reservations".into())
            .spawn(move || read_reservations(&mut reader, &reservations))?;
        Ok(conn)
    }
}

/// Keeps the reservations the orchestrator sends until it closes.
fn read_reservations(conn: &mut Conn, into: &Reservations) {
    let mut buf = Vec::new();
    loop {
        match wire::read_message(conn, &mut buf) {
            Ok(Message::Reservations(b)) => {
                let mut map = into.lock().unwrap_or_else(|p| p.into_inner());
                for r in b.reservations {
                    map.insert((r.path.clone(), r.resource), r);
                }
            }
            Ok(Message::Error(f)) => {
                tracing::warn!("the orchestrator refused us ({:?}): {}", f.code, f.message);
                return;
            }
            Ok(other) => tracing::debug!("ignoring {} from the orchestrator", other.kind()),
            Err(wire::Error::Closed) => return,
            Err(e) => {
                tracing::debug!("reading from the orchestrator: {e}");
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

/// Packs one tick's readings into a usage batch and a prediction batch,
/// each naming its components once.
pub fn batches(
    at_ms: u64,
    interval_ms: u32,
    step_ms: u32,
    samples: &[Sample],
    readings: &[(usize, Reading)],
    options: Options,
) -> (UsageBatch, PredictionBatch) {
    let mut usage = UsageBatch {
        at_ms,
        interval_ms,
        components: Vec::new(),
        usage: Vec::with_capacity(readings.len()),
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
    for &(i, r) in readings {
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
        predictions.predictions.push(prediction(
            component,
            (r.resource, r.source),
            r.value,
            &f,
            &options,
        ));
    }
    (usage, predictions)
}

/// The wire form of one series' forecast `f` (of a resource, from a
/// source), made from the usage `last`: what the orchestrator holds until
/// the series reports again. Also what the fleet replay hands the
/// orchestrator's book, so it holds exactly what a host would.
pub fn prediction(
    component: u32,
    (resource, source): (Resource, Source),
    last: f64,
    f: &Forecast,
    options: &Options,
) -> Prediction {
    Prediction {
        component,
        resource,
        source,
        quantile: options.quantile,
        volatility: f.volatility as f32,
        last: last as f32,
        next_report_ms: options.next_report_ms,
        steps: (0..f.horizon)
            .map(|h| Step {
                ahead: h as u16 + 1,
                point: f.point[h] as f32,
                upper: f.upper[h] as f32,
            })
            .collect(),
    }
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
        let mut shadows = Shadows::new(Duration::from_secs(1), 0.95, 6).unwrap();
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
            })
            .collect();
        let mut readings = Vec::new();
        let mut tagged = Vec::new();
        for (i, s) in samples.iter().enumerate() {
            readings.clear();
            shadows.observe(s, &mut readings);
            tagged.extend(readings.iter().map(|&r| (i, r)));
        }
        let options = Options {
            quantile: 0.95,
            next_report_ms: 30_000,
            resend_all: false,
        };
        let (usage, predictions) = batches(5, 1000, 1000, &samples, &tagged, options);
        assert_eq!(usage.components.len(), 3);
        assert_eq!(usage.usage.len(), 4, "3 CPU + 1 network");
        assert_eq!(
            predictions.predictions.len(),
            4,
            "first forecasts are all sent"
        );
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
    fn parses_targets() {
        assert_eq!(
            Target::parse("tcp:10.0.0.1:7370"),
            Target::Tcp("10.0.0.1:7370".into())
        );
        assert_eq!(
            Target::parse("/run/x.sock"),
            Target::Unix("/run/x.sock".into())
        );
    }
}
