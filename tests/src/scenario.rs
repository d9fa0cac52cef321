//! The demonstration scenario, shared by `cargo xtask demo` and the
//! end-to-end test: a sandbox cgroup with a static CPU quota, opted in to
//! the orchestrator, running periodic CPU bursts while the agent (real BPF)
//! reports it. Records, over time, what the cgroup used, the forecast's
//! upper band, the reservation the orchestrator holds and the quota the
//! kernel actually has, then stops everything and checks the restore.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde_json::Value;
use shadow_common::plot::{self, Panel, Series};

use crate::{
    Agent,
    orchestrator::{Orchestrator, TempDir},
    workload,
};

/// The scenario's settings.
#[derive(Clone, Debug)]
pub struct Demo {
    /// Time between burst starts, ms.
    pub period_ms: u64,
    /// Length of a burst, ms.
    pub burst_ms: u64,
    /// Spinning threads per burst (its demand in cores).
    pub threads: u64,
    /// Number of bursts.
    pub bursts: u64,
    /// Agent interval and orchestrator tick.
    pub tick: &'static str,
    /// The sandbox's static quota, in cores (what an operator set).
    pub static_cores: f64,
    /// Reservation floor and ceiling, cores.
    pub floor: f64,
    /// See `floor`.
    pub ceiling: f64,
}

impl Default for Demo {
    fn default() -> Self {
        Self {
            period_ms: 10_000,
            burst_ms: 3_000,
            threads: 2,
            bursts: 12,
            tick: "500ms",
            static_cores: 0.5,
            floor: 0.2,
            ceiling: 1.9,
        }
    }
}

/// One agent interval of the sandbox.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    /// End of the interval, Unix seconds.
    pub t: f64,
    /// Cores used.
    pub used: f64,
    /// Cores demanded (used + waited to run), what the shadow forecasts.
    pub demand: Option<f64>,
    /// Forecast upper band for the next interval, cores.
    pub upper: Option<f64>,
    /// Reservation the orchestrator holds, cores.
    pub reserved: Option<f64>,
}

/// What a run recorded.
pub struct Outcome {
    /// The settings.
    pub demo: Demo,
    /// The sandbox's path.
    pub cgroup: String,
    /// Per agent interval.
    pub points: Vec<Point>,
    /// `(Unix seconds, cores)` of the quota the kernel had, every 50 ms.
    pub quota: Vec<(f64, f64)>,
    /// Burst start times, Unix seconds.
    pub bursts: Vec<f64>,
    /// Every cgroup the orchestrator logged a write to.
    pub written: Vec<String>,
    /// True if the quota and shares were back to their originals after the
    /// orchestrator stopped.
    pub restored: bool,
    /// The orchestrator's log.
    pub log: String,
}

pub use crate::sandbox::{CpuHierarchy, QuotaWatcher, Sandbox};
pub use shadow_common::host::unix_now;

/// Orchestrator and agent (real BPF) managing one cgroup's CPU, as the
/// scenarios configure them: `lead` ticks (3 in the demo), a rate limit of one tick, a
/// 2 s cooldown, the agent's interval equal to the tick, its hint socket in
/// a folder of its own (never another agent's).
pub struct Shadow {
    cgroup: String,
    /// The agent's hint socket.
    pub hint_socket: PathBuf,
    orchestrator: Orchestrator,
    agent: Agent,
    _dir: TempDir,
}

/// What the agent and orchestrator said about the cgroup.
pub struct ShadowRecord {
    /// Per agent interval.
    pub points: Vec<Point>,
    /// The agent's lines for the cgroup, whole (memory, I/O, ...).
    pub lines: Vec<Value>,
    /// Every cgroup the orchestrator logged a write to.
    pub written: Vec<String>,
    /// The orchestrator's log.
    pub log: String,
}

impl Shadow {
    /// Starts both, the orchestrator managing `cgroup` within
    /// `floor..=ceiling` cores.
    pub fn start(
        cgroup: &str,
        tick: &str,
        lead: u16,
        floor: f64,
        ceiling: f64,
    ) -> anyhow::Result<Self> {
        Self::start_with_config(
            cgroup,
            tick,
            &format!(
                "lead = {lead}\nmin_interval = \"{tick}\"\ncooldown = \"2s\"\n[[manage]]\ncgroup = \"{cgroup}\"\ncpu = {{ floor = {floor}, ceiling = {ceiling} }}\n",
            ),
        )
    }

    /// Starts both reading `config` as their shared file (the
    /// orchestrator's keys and `[agent]`), the orchestrator's tick and the
    /// agent's interval `tick`; the agent observes `cgroup`.
    pub fn start_with_config(cgroup: &str, tick: &str, config: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new("scenario");
        let config_file = dir.0.join("shadow.toml");
        fs::write(&config_file, config)?;
        let config_arg = config_file.to_str().context("path")?;
        let orchestrator = Orchestrator::start(
            &dir.0.join("o.sock"),
            &dir.0.join("state"),
            &["--config", config_arg, "--tick", tick],
        );
        let socket = orchestrator.socket.to_str().context("path")?.to_owned();
        let hint_socket = dir.0.join("hint.sock");
        let agent = Agent::start_with(
            cgroup,
            tick,
            &[
                "--config",
                config_arg,
                "--orchestrator",
                &socket,
                "--hint-socket",
                hint_socket.to_str().context("path")?,
            ],
        );
        Ok(Self {
            cgroup: cgroup.to_owned(),
            hint_socket,
            orchestrator,
            agent,
            _dir: dir,
        })
    }

    /// Stops the agent, then the orchestrator (which restores the knobs).
    pub fn stop(self) -> anyhow::Result<ShadowRecord> {
        let lines = self.agent.stop(Duration::from_millis(200));
        let log = self.orchestrator.stderr();
        let status = self.orchestrator.signal(libc::SIGTERM);
        if !status.success() {
            bail!("the orchestrator exited with {status}:\n{log}");
        }
        let lines: Vec<Value> = lines
            .into_iter()
            .filter(|l| l["cgroup"] == self.cgroup.as_str())
            .collect();
        let points = lines
            .iter()
            .map(|l| Point {
                t: l["ts"].as_f64().unwrap_or(f64::NAN),
                used: l["cpu_ns"].as_f64().unwrap_or(f64::NAN)
                    / l["interval_ns"].as_f64().unwrap_or(f64::NAN),
                demand: l["cpu_demand_cores"].as_f64(),
                upper: l["cpu_upper_cores"].as_f64(),
                reserved: l["cpu_reserved_cores"].as_f64(),
            })
            .collect();
        let written = log
            .lines()
            .filter(|l| l.contains("cgroup knob written"))
            .filter_map(|l| l.split("cgroup=").nth(1))
            .map(|rest| {
                let field = rest.split_whitespace().next().unwrap_or("");
                field.trim_matches('"').to_owned()
            })
            .collect();
        Ok(ShadowRecord {
            points,
            lines,
            written,
            log,
        })
    }
}

/// Runs the scenario (root; the binaries from `SHADOW_AGENT_BIN`,
/// `SHADOW_ORCHESTRATOR_BIN` and the test workload next to this crate's
/// executables).
pub fn run(demo: &Demo) -> anyhow::Result<Outcome> {
    let name = format!("/shadow-demo-{}", std::process::id());
    let sandbox = Sandbox::create(&name, demo.static_cores, false)?;
    let shadow = Shadow::start(&name, demo.tick, 3, demo.floor, demo.ceiling)?;
    let watcher = sandbox.watch_quota();
    let mut child = sandbox.cg.start(
        workload(&[
            "bursts",
            &demo.period_ms.to_string(),
            &demo.burst_ms.to_string(),
            &demo.threads.to_string(),
            &demo.bursts.to_string(),
        ])
        .stdout(Stdio::piped()),
    )?;
    let bursts = burst_starts(child.stdout.take().context("stdout")?, |n| {
        eprintln!("demo: burst {n} of {}", demo.bursts);
    })?;
    child.wait()?;
    // Half a period more so the last burst's aftermath is recorded.
    std::thread::sleep(Duration::from_millis(demo.period_ms / 2));
    let record = shadow.stop();
    let quota = watcher.finish();
    let record = record?;
    Ok(Outcome {
        demo: demo.clone(),
        cgroup: name,
        points: record.points,
        quota,
        bursts,
        written: record.written,
        restored: sandbox.as_created()?,
        log: record.log,
    })
}

/// Reads a workload's JSON lines until it closes its output; returns the
/// `start` of each (a burst start, Unix seconds), calling `each` with the
/// count so far as each arrives.
pub fn burst_starts(
    out: impl std::io::Read,
    mut each: impl FnMut(usize),
) -> anyhow::Result<Vec<f64>> {
    let mut bursts = Vec::new();
    for line in BufReader::new(out).lines() {
        let Ok(v) = serde_json::from_str::<Value>(&line?) else {
            continue;
        };
        if let Some(t) = v["start"].as_f64() {
            bursts.push(t);
            each(bursts.len());
        }
    }
    Ok(bursts)
}

/// How the quota was raised around one burst.
#[derive(Clone, Copy, Debug)]
pub struct Lead {
    /// Burst number, from 1.
    pub burst: usize,
    /// Quota in the middle of the idle gap before the burst, cores.
    pub idle: f64,
    /// Highest quota in the second before the burst started, cores.
    pub before: f64,
    /// If the quota right before the burst was over 1.2 times its idle
    /// level: how long before the burst it had been over that level without
    /// a break (None: it was not raised ahead).
    pub raised_ahead_s: Option<f64>,
    /// Signed lead: `raised_ahead_s` if raised ahead, else minus the time
    /// from the burst start to the first quota over 1.2 times the idle
    /// level (before the next mid-gap); None if never raised.
    pub lead_s: Option<f64>,
}

/// For each burst after the first (starts in Unix seconds, in order, each
/// `burst_s` long, periodic or not): the quota in the middle of the idle
/// gap since the previous burst ended, right before the burst, and how
/// long before (or after) it the quota went up. `quota` is `(Unix seconds,
/// cores)` in time order.
pub fn leads(quota: &[(f64, f64)], bursts: &[f64], burst_s: f64) -> Vec<Lead> {
    let quota_at = |t: f64| quota.iter().rev().find(|q| q.0 <= t).map(|q| q.1);
    bursts
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let start = w[1];
            let gap = start - w[0] - burst_s;
            let mid = start - gap / 2.0;
            let idle = quota_at(mid).unwrap_or(f64::NAN);
            let before = quota
                .iter()
                .filter(|q| q.0 >= start - 1.0 && q.0 < start)
                .map(|q| q.1)
                .fold(f64::NAN, f64::max);
            // Walk back from the burst start while the quota stays raised.
            let raised_since = quota
                .iter()
                .rev()
                .skip_while(|q| q.0 >= start)
                .take_while(|q| q.0 > mid && q.1 > idle * 1.2)
                .last()
                .map(|q| q.0);
            let raised_ahead_s = raised_since.map(|t| start - t);
            let raised_after = quota
                .iter()
                .filter(|q| q.0 >= start && q.0 < start + burst_s + gap / 2.0)
                .find(|q| q.1 > idle * 1.2)
                .map(|q| q.0 - start);
            Lead {
                burst: i + 2,
                idle,
                before,
                raised_ahead_s,
                lead_s: raised_ahead_s.or(raised_after.map(|d| -d)),
            }
        })
        .collect()
}

/// CPU-seconds a quota series reserved (`(Unix seconds, cores)`, NaN for
/// unlimited counts as nothing reserved).
pub fn reserved_seconds(quota: &[(f64, f64)]) -> f64 {
    quota
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * if w[0].1.is_finite() { w[0].1 } else { 0.0 })
        .sum()
}

impl Outcome {
    /// For each burst after the first: the quota at mid-gap, right before
    /// the burst, and how long before it the quota went up.
    pub fn leads(&self) -> Vec<Lead> {
        leads(&self.quota, &self.bursts, self.demo.burst_ms as f64 / 1e3)
    }

    /// CPU-seconds the quota reserved and the sandbox used over the run.
    pub fn cpu_seconds(&self) -> (f64, f64) {
        let used = self
            .points
            .windows(2)
            .map(|w| (w[1].t - w[0].t) * w[1].used)
            .sum();
        (reserved_seconds(&self.quota), used)
    }

    /// Usage, forecast band, reservation and the kernel's quota over time.
    pub fn svg(&self) -> String {
        let t0 = self
            .bursts
            .first()
            .map_or(0.0, |b| b - self.demo.period_ms as f64 / 1e3);
        let demand = self
            .bursts
            .iter()
            .flat_map(|&b| {
                let end = b + self.demo.burst_ms as f64 / 1e3;
                let d = self.demo.threads as f64;
                [(b - t0, 0.0), (b - t0, d), (end - t0, d), (end - t0, 0.0)]
            })
            .collect();
        let mut series = vec![Series::dashed("burst demand", "#bbb", demand)];
        series.extend(cores_series(&self.points, &self.quota, t0));
        let panel = Panel {
            title: format!(
                "{}: periodic bursts of {} cores, static quota {} cores",
                self.cgroup, self.demo.threads, self.demo.static_cores
            ),
            y_label: "cores".into(),
            series,
        };
        plot::svg(
            "Shadow demo: reservation raised ahead of each burst",
            "seconds",
            &[panel],
        )
    }
}

/// The lines of a cores panel, times relative to `t0`: used, the forecast's
/// upper band and the orchestrator's reservation (when the points have
/// them), and the kernel's quota.
pub fn cores_series(points: &[Point], quota: &[(f64, f64)], t0: f64) -> Vec<Series> {
    let line = |f: fn(&Point) -> Option<f64>| -> Vec<(f64, f64)> {
        points
            .iter()
            .map(|p| (p.t - t0, f(p).unwrap_or(f64::NAN)))
            .collect()
    };
    let mut series = vec![Series::line("used", "black", line(|p| Some(p.used)))];
    let demand = line(|p| p.demand);
    if demand.iter().any(|p| p.1.is_finite()) {
        series.push(Series::line("demand (ran + waited)", "#9467bd", demand));
    }
    let upper = line(|p| p.upper);
    if upper.iter().any(|p| p.1.is_finite()) {
        series.push(Series::dashed("forecast upper", "#1f77b4", upper));
    }
    let reserved = line(|p| p.reserved);
    if reserved.iter().any(|p| p.1.is_finite()) {
        series.push(Series::line("reservation", "#2ca02c", reserved));
    }
    let quota = quota.iter().map(|q| (q.0 - t0, q.1)).collect();
    series.push(Series::line("quota (kernel)", "#d62728", quota));
    series
}
