//! The hinted scenarios' announcer: it knows the schedule (as a service
//! knows its batch jobs or a scheduled campaign) and tells the agent of
//! each burst (`bench e2e`) or each growth of the working set (`bench
//! memory`) `--hint-ahead` before it starts, through the real hint
//! socket. It runs as root and names the sandbox, which the socket allows
//! root to do (docs/hints.md).

use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use shadow_agent::hint::{Reply, Request, client::Client, protocol::Amount};

use super::policy::Window;

/// What the windows announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Cores (`bench e2e`).
    Cpu,
    /// Bytes of memory in use (`bench memory`).
    Memory,
}

/// One announcement and what the agent said.
#[derive(Clone, Debug)]
pub struct Hinted {
    /// The window's start, s from the run's start.
    pub start_s: f64,
    /// When the hint was sent, s from the run's start.
    pub sent_s: f64,
    /// What was announced (cores or bytes).
    pub amount: f64,
    /// The reply's status (`accepted`, `refused`).
    pub status: String,
    /// The floor the band got (amount × confidence × trust), if accepted.
    pub reserve: Option<f64>,
    /// The cgroup's trust at that moment, if accepted.
    pub trust: Option<f64>,
    /// The agent's reply line.
    pub reply: String,
}

/// Announces every window that has not started yet, each `ahead` of it,
/// until `stop`.
pub fn run(
    windows: &[Window],
    kind: Kind,
    ahead: Duration,
    socket: &Path,
    cgroup: &str,
    start: Instant,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<Hinted>> {
    let mut out = Vec::new();
    for w in windows {
        let begins = start + Duration::from_secs_f64(w.start_s);
        let at = begins.checked_sub(ahead).unwrap_or(start);
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
        let mut request = Request {
            start_in: Some(format!(
                "{}ms",
                begins.saturating_duration_since(sent).as_millis()
            )),
            duration: Some(format!("{}ms", (w.duration_s * 1e3).round() as u64)),
            reason: Some("bench: announced ahead".into()),
            cgroup: Some(cgroup.to_owned()),
            ..Request::default()
        };
        match kind {
            Kind::Cpu => request.cpu = Some(w.amount),
            Kind::Memory => request.memory = Some(Amount::Number(w.amount)),
        }
        // A connection per hint: gaps can exceed the socket's idle timeout.
        let mut client = Client::connect(socket).context("the announcer")?;
        let reply = client
            .send(&request)
            .with_context(|| format!("hinting the window at {:.1} s", w.start_s))?;
        let (status, reserve, trust) = match &reply {
            Reply::Accepted(a) => {
                let reserve = match kind {
                    Kind::Cpu => a.reserve.cpu,
                    Kind::Memory => a.reserve.memory,
                };
                ("accepted", Some(reserve), Some(a.trust))
            }
            Reply::Refused(_) => ("refused", None, None),
            Reply::Cancelled { .. } => ("cancelled", None, None),
        };
        if status != "accepted" {
            eprintln!(
                "bench:   the hint for the window at {:.1} s was not accepted: {}",
                w.start_s,
                client.last_line()
            );
        }
        out.push(Hinted {
            start_s: w.start_s,
            sent_s: (sent - start).as_secs_f64(),
            amount: w.amount,
            status: status.to_owned(),
            reserve,
            trust,
            reply: client.last_line().to_owned(),
        });
    }
    Ok(out)
}
