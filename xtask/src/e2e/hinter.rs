//! The hinted scenario's announcer: it knows the schedule (as a service
//! knows its batch jobs or a scheduled campaign) and tells the agent of
//! each burst `--hint-ahead` before it starts, through the real hint
//! socket. It runs as root and names the sandbox, which the socket allows
//! root to do (docs/hints.md).

use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use shadow_agent::hint::{Reply, Request, client::Client};

use super::load::Pattern;

/// One announcement and what the agent said.
#[derive(Clone, Debug)]
pub struct Hinted {
    /// The burst's start, s from the run's start.
    pub burst_s: f64,
    /// When the hint was sent, s from the run's start.
    pub sent_s: f64,
    /// Cores announced.
    pub cpu: f64,
    /// The reply's status (`accepted`, `refused`).
    pub status: String,
    /// The floor the band got (cpu × confidence × trust), if accepted.
    pub reserve_cpu: Option<f64>,
    /// The cgroup's trust at that moment, if accepted.
    pub trust: Option<f64>,
    /// The agent's reply line.
    pub reply: String,
}

/// Announces every burst of `p` that has not started yet, each `ahead` of
/// it (the burst's mean demand, for its length), until `stop`.
pub fn run(
    p: &Pattern,
    ahead: Duration,
    socket: &Path,
    cgroup: &str,
    start: Instant,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<Hinted>> {
    let cpu = p.burst_cores();
    let mut out = Vec::new();
    for burst_s in p.burst_starts() {
        let burst_at = start + Duration::from_secs_f64(burst_s);
        let at = burst_at.checked_sub(ahead).unwrap_or(start);
        while Instant::now() < at {
            if stop.load(Ordering::Relaxed) {
                return Ok(out);
            }
            std::thread::sleep(
                at.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100)),
            );
        }
        let sent = Instant::now();
        let request = Request {
            cpu: Some(cpu),
            start_in: Some(format!(
                "{}ms",
                burst_at.saturating_duration_since(sent).as_millis()
            )),
            duration: Some(format!("{}ms", (p.burst_s * 1e3).round() as u64)),
            reason: Some("bench e2e: burst ahead".into()),
            cgroup: Some(cgroup.to_owned()),
            ..Request::default()
        };
        // A connection per hint: gaps can exceed the socket's idle timeout.
        let mut client = Client::connect(socket).context("the hinted scenario's announcer")?;
        let reply = client
            .send(&request)
            .with_context(|| format!("hinting the burst at {burst_s:.1} s"))?;
        let (status, reserve_cpu, trust) = match &reply {
            Reply::Accepted(a) => ("accepted", Some(a.reserve.cpu), Some(a.trust)),
            Reply::Refused(_) => ("refused", None, None),
            Reply::Cancelled { .. } => ("cancelled", None, None),
        };
        if status != "accepted" {
            eprintln!(
                "e2e:   the hint for the burst at {burst_s:.1} s was not accepted: {}",
                client.last_line()
            );
        }
        out.push(Hinted {
            burst_s,
            sent_s: (sent - start).as_secs_f64(),
            cpu,
            status: status.to_owned(),
            reserve_cpu,
            trust,
            reply: client.last_line().to_owned(),
        });
    }
    Ok(out)
}
