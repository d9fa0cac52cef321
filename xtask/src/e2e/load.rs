//! The scenarios of `bench e2e`, and the open-loop load generator of the
//! built-in service: requests are sent on a schedule fixed in advance
//! (Poisson arrivals, a base rate with bursts of higher rate and cost,
//! periodic or at irregular seeded times), whatever the replies do, over
//! several connections; each request's latency runs from its scheduled send time to
//! its reply, so a stalled server is charged for every request it delayed
//! (no coordinated omission).

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpStream,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::policy::Window;

/// What the sandbox runs and when its load comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// The built-in service, bursts every period: a rhythm a forecaster
    /// can learn.
    Periodic,
    /// The built-in service, bursts at irregular seeded times (no period
    /// to learn), each announced ahead: through the hint socket in the
    /// Shadow runs, directly to the reactive rules in theirs (from a tick
    /// before the burst to its end, at least its cores times their
    /// headroom).
    Hinted,
    /// The hinted schedule without the hints: nothing to predict.
    Irregular,
    /// PostgreSQL under `pgbench --rate` shaped like a real trace.
    Pgbench,
    /// `--workload`: the user's command instead of the service.
    #[value(skip)]
    Custom,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Periodic => "periodic",
            Scenario::Hinted => "hinted",
            Scenario::Irregular => "irregular",
            Scenario::Pgbench => "pgbench",
            Scenario::Custom => "custom",
        }
    }
}

/// The request pattern: the first burst starts one period in, the run
/// ends half a period after the last burst starts.
#[derive(Clone, Debug)]
pub struct Pattern {
    /// Bursts at irregular seeded times (else every period).
    pub irregular: bool,
    /// Time between burst starts (the mean, for irregular bursts), s.
    pub period_s: f64,
    /// Length of a burst, s.
    pub burst_s: f64,
    /// Number of bursts.
    pub bursts: u32,
    /// Requests per second outside bursts.
    pub base_rate: f64,
    /// Mean CPU cost of a request outside bursts, µs.
    pub base_cost_us: f64,
    /// Requests per second in bursts.
    pub burst_rate: f64,
    /// Mean CPU cost of a request in bursts, µs.
    pub burst_cost_us: f64,
    /// Connections the requests are spread over (round robin).
    pub connections: usize,
    /// Seed of the arrivals and costs.
    pub seed: u64,
}

/// One scheduled request.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// Send time from the start of the run, s.
    pub at_s: f64,
    /// CPU to burn, µs.
    pub cost_us: u64,
}

/// One answered request.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Scheduled send time from the start of the run, s.
    pub at_s: f64,
    /// From the scheduled send time to the reply, s.
    pub latency_s: f64,
}

impl Pattern {
    /// Mean CPU demand of a burst, cores (what the hinted scenario
    /// announces).
    pub fn burst_cores(&self) -> f64 {
        self.burst_rate * self.burst_cost_us / 1e6
    }

    /// Every burst as an announced window of its cores.
    pub fn windows(&self) -> Vec<Window> {
        self.burst_starts()
            .into_iter()
            .map(|start_s| Window {
                start_s,
                duration_s: self.burst_s,
                amount: self.burst_cores(),
            })
            .collect()
    }

    /// Length of the run, s.
    pub fn duration_s(&self) -> f64 {
        self.burst_starts().last().copied().unwrap_or(0.0) + self.period_s / 2.0
    }

    /// Burst start times from the start of the run, s. Irregular bursts
    /// are separated by idle gaps uniform in 0.3..1.7 times the periodic
    /// one (so the mean period is the same and no two bursts overlap),
    /// drawn from a stream of their own so the arrivals stay those of the
    /// seed.
    pub fn burst_starts(&self) -> Vec<f64> {
        if !self.irregular {
            (1..=self.bursts)
                .map(|k| f64::from(k) * self.period_s)
                .collect()
        } else {
            let mut rng = SplitMix(self.seed ^ 0xB0A5_7ED5_0000_0001);
            let idle = self.period_s - self.burst_s;
            let mut t = self.period_s;
            let mut out = vec![t];
            for _ in 1..self.bursts {
                t += self.burst_s + idle * (0.3 + 1.4 * rng.unit());
                out.push(t);
            }
            out
        }
    }

    /// True inside a burst; with the time its phase ends (`starts` from
    /// [`Pattern::burst_starts`]).
    fn phase(&self, starts: &[f64], t: f64) -> (bool, f64) {
        for &s in starts {
            if t < s {
                return (false, s);
            }
            if t < s + self.burst_s {
                return (true, s + self.burst_s);
            }
        }
        (false, f64::INFINITY)
    }

    /// The schedule: Poisson arrivals at the phase's rate (restarted at each
    /// phase boundary, which memorylessness makes exact), costs uniform in
    /// 0.5..1.5 times the phase's mean. Same seed, same schedule.
    pub fn schedule(&self) -> Vec<Request> {
        let mut rng = SplitMix(self.seed);
        let starts = self.burst_starts();
        let mut out = Vec::new();
        let mut t = 0.0;
        let end = self.duration_s();
        while t < end {
            let (burst, phase_end) = self.phase(&starts, t);
            let (rate, cost) = if burst {
                (self.burst_rate, self.burst_cost_us)
            } else {
                (self.base_rate, self.base_cost_us)
            };
            let next = t - (1.0 - rng.unit()).ln() / rate;
            if next >= phase_end {
                t = phase_end;
                continue;
            }
            t = next;
            if t < end {
                let cost_us = (cost * (0.5 + rng.unit())).round() as u64;
                out.push(Request { at_s: t, cost_us });
            }
        }
        out
    }

    /// Mean CPU demand of a schedule over the run, cores (the requests'
    /// own cost; the service's per-request overhead comes on top).
    pub fn mean_cores(&self, schedule: &[Request]) -> f64 {
        let cost: u64 = schedule.iter().map(|r| r.cost_us).sum();
        cost as f64 / 1e6 / self.duration_s()
    }
}

/// SplitMix64: small, deterministic, good enough for arrivals.
pub(super) struct SplitMix(pub(super) u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What a load run got back.
pub struct Outcome {
    /// Answered requests, in no particular order.
    pub samples: Vec<Sample>,
    /// Requests without a reply by the end of the drain.
    pub lost: usize,
}

/// Sends `schedule` to 127.0.0.1:`port` from `start`, spread over
/// `connections`; waits up to `drain` after the last send for replies.
pub fn run(
    port: u16,
    schedule: &[Request],
    connections: usize,
    start: Instant,
    drain: Duration,
) -> anyhow::Result<Outcome> {
    let mut workers = Vec::new();
    for c in 0..connections.max(1) {
        let mine: Vec<Request> = schedule
            .iter()
            .skip(c)
            .step_by(connections.max(1))
            .copied()
            .collect();
        let conn = TcpStream::connect(("127.0.0.1", port)).context("connecting to the service")?;
        conn.set_nodelay(true)?;
        let reader = conn.try_clone()?;
        let (tx, rx) = mpsc::channel::<f64>();
        let expected = mine.len();
        let end = start + Duration::from_secs_f64(mine.last().map_or(0.0, |r| r.at_s)) + drain;
        let receiver = std::thread::spawn(move || receive(reader, rx, expected, start, end));
        let sender = std::thread::spawn(move || send(conn, &mine, start, tx));
        workers.push((sender, receiver));
    }
    let mut samples = Vec::with_capacity(schedule.len());
    for (sender, receiver) in workers {
        sender
            .join()
            .map_err(|_| anyhow::anyhow!("sender panicked"))??;
        samples.extend(
            receiver
                .join()
                .map_err(|_| anyhow::anyhow!("receiver panicked"))?,
        );
    }
    let lost = schedule.len() - samples.len();
    Ok(Outcome { samples, lost })
}

fn send(
    mut conn: TcpStream,
    requests: &[Request],
    start: Instant,
    sent: mpsc::Sender<f64>,
) -> anyhow::Result<()> {
    for r in requests {
        let at = start + Duration::from_secs_f64(r.at_s);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        // Announced before the write, so the reply never finds it missing.
        let _ = sent.send(r.at_s);
        conn.write_all(format!("{}\n", r.cost_us).as_bytes())
            .context("sending a request")?;
    }
    Ok(())
}

/// Replies come back in order on a connection (the service answers each
/// connection's requests one after the other).
fn receive(
    conn: TcpStream,
    sent: mpsc::Receiver<f64>,
    expected: usize,
    start: Instant,
    end: Instant,
) -> Vec<Sample> {
    let mut samples = Vec::with_capacity(expected);
    let mut lines = BufReader::new(conn);
    let mut line = String::new();
    while samples.len() < expected {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || lines.get_ref().set_read_timeout(Some(left)).is_err() {
            break;
        }
        line.clear();
        match lines.read_line(&mut line) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
        let now = start.elapsed().as_secs_f64();
        let Ok(at_s) = sent.recv() else { break };
        samples.push(Sample {
            at_s,
            latency_s: now - at_s,
        });
    }
    samples
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::e2e) fn pattern() -> Pattern {
        Pattern {
            irregular: false,
            period_s: 10.0,
            burst_s: 3.0,
            bursts: 10,
            base_rate: 100.0,
            base_cost_us: 2000.0,
            burst_rate: 300.0,
            burst_cost_us: 4000.0,
            connections: 8,
            seed: 1,
        }
    }

    #[test]
    fn schedule_is_deterministic_and_follows_the_pattern() {
        let p = pattern();
        let a = p.schedule();
        let b = p.schedule();
        assert_eq!(a.len(), b.len());
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.at_s == y.at_s && x.cost_us == y.cost_us)
        );
        assert!(a.windows(2).all(|w| w[0].at_s <= w[1].at_s));
        let starts = p.burst_starts();
        let in_bursts = a.iter().filter(|r| p.phase(&starts, r.at_s).0).count() as f64;
        let burst_time = f64::from(p.bursts) * p.burst_s;
        // 3000 expected in bursts, 105 s - 30 s = 75 s at 100/s outside.
        assert!((in_bursts / burst_time / p.burst_rate - 1.0).abs() < 0.1);
        let outside = a.len() as f64 - in_bursts;
        assert!((outside / (p.duration_s() - burst_time) / p.base_rate - 1.0).abs() < 0.1);
        // Mean demand: (75 s x 0.2 + 30 s x 1.2) / 105 s = 0.486 cores.
        assert!(
            (p.mean_cores(&a) - 0.486).abs() < 0.05,
            "{}",
            p.mean_cores(&a)
        );
        let other = Pattern { seed: 2, ..p }.schedule();
        assert!(other.len() != a.len() || other[0].at_s != a[0].at_s);
    }

    #[test]
    fn phases_start_bursts_one_period_in() {
        let p = pattern();
        let s = p.burst_starts();
        assert_eq!(p.phase(&s, 5.0), (false, 10.0));
        assert_eq!(p.phase(&s, 10.5), (true, 13.0));
        assert_eq!(p.phase(&s, 13.0), (false, 20.0));
        assert!(!p.phase(&s, 105.0).0);
        assert_eq!(s.len(), 10);
        assert_eq!(p.duration_s(), 105.0);
    }

    #[test]
    fn irregular_bursts_have_no_period_and_the_same_mean() {
        let p = Pattern {
            irregular: true,
            bursts: 40,
            ..pattern()
        };
        let s = p.burst_starts();
        assert_eq!(s.len(), 40);
        assert_eq!(s[0], 10.0);
        let gaps: Vec<f64> = s.windows(2).map(|w| w[1] - w[0]).collect();
        // Idle gaps in 0.3..1.7 x 7 s after each 3 s burst.
        assert!(gaps.iter().all(|g| (5.1..=14.9).contains(g)), "{gaps:?}");
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 10.0).abs() < 1.5, "mean gap {mean}");
        let spread = gaps.iter().fold(0.0f64, |m, g| m.max((g - mean).abs()));
        assert!(spread > 3.0, "gaps barely vary: {gaps:?}");
        assert_eq!(s, p.burst_starts(), "same seed, same times");
        let other = Pattern {
            seed: 2,
            ..p.clone()
        }
        .burst_starts();
        assert_ne!(s, other);
        // The arrivals follow the irregular bursts.
        let a = p.schedule();
        let in_bursts = a.iter().filter(|r| p.phase(&s, r.at_s).0).count() as f64;
        assert!((in_bursts / (40.0 * 3.0) / p.burst_rate - 1.0).abs() < 0.1);
    }
}
