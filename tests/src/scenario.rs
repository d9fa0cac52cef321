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
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use serde_json::Value;
use shadow_agent::plot::{self, Panel, Series};

use crate::{
    Agent, TestCgroup,
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
    /// Cores demanded (used + waited to run).
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

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs the scenario (root; the binaries from `SHADOW_AGENT_BIN`,
/// `SHADOW_ORCHESTRATOR_BIN` and the test workload next to this crate's
/// executables).
pub fn run(demo: &Demo) -> anyhow::Result<Outcome> {
    let name = format!("/shadow-demo-{}", std::process::id());
    let cg = TestCgroup::create(&name, &["cpu"])?;
    let cpu_dir = cg.v1_dir("cpu").context("no v1 cpu controller")?;
    let quota_file = cpu_dir.join("cpu.cfs_quota_us");
    let shares_file = cpu_dir.join("cpu.shares");
    let period: f64 = read(&cpu_dir.join("cpu.cfs_period_us"))?.parse()?;
    let static_quota = format!("{}", (demo.static_cores * period).round() as i64);
    fs::write(&quota_file, &static_quota).context("setting the static quota")?;
    let shares = read(&shares_file)?;

    let dir = TempDir::new("demo");
    let config = dir.0.join("shadow.toml");
    fs::write(
        &config,
        format!(
            "lead = 3\nmin_interval = \"{tick}\"\ncooldown = \"2s\"\n[[manage]]\ncgroup = \"{name}\"\ncpu = {{ floor = {}, ceiling = {} }}\n",
            demo.floor,
            demo.ceiling,
            tick = demo.tick,
        ),
    )?;
    let orchestrator = Orchestrator::start(
        &dir.0.join("o.sock"),
        &dir.0.join("state"),
        &[
            "--config",
            config.to_str().context("path")?,
            "--tick",
            demo.tick,
        ],
    );
    let socket = orchestrator.socket.to_str().context("path")?.to_owned();
    let agent = Agent::start_with(&name, demo.tick, &["--orchestrator", &socket]);

    let stop = Arc::new(AtomicBool::new(false));
    let quota = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let (stop, quota, file) = (stop.clone(), quota.clone(), quota_file.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(q) = read(&file).map(|t| t.parse::<f64>().unwrap_or(-1.0)) {
                    let cores = if q < 0.0 { f64::NAN } else { q / period };
                    quota.lock().expect("lock").push((unix_now(), cores));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut child = cg.start(
        workload(&[
            "bursts",
            &demo.period_ms.to_string(),
            &demo.burst_ms.to_string(),
            &demo.threads.to_string(),
            &demo.bursts.to_string(),
        ])
        .stdout(Stdio::piped()),
    )?;
    let mut bursts = Vec::new();
    for line in BufReader::new(child.stdout.take().context("stdout")?).lines() {
        let v: Value = serde_json::from_str(&line?)?;
        if let Some(t) = v["start"].as_f64() {
            eprintln!("demo: burst {} of {}", bursts.len() + 1, demo.bursts);
            bursts.push(t);
        }
    }
    child.wait()?;
    // One more period so the last burst's aftermath is recorded.
    std::thread::sleep(Duration::from_millis(demo.period_ms / 2));
    let lines = agent.stop(Duration::from_millis(200));
    let log = orchestrator.stderr();
    let status = orchestrator.signal(libc::SIGTERM);
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    if !status.success() {
        bail!("the orchestrator exited with {status}:\n{log}");
    }
    let restored = read(&quota_file)? == static_quota && read(&shares_file)? == shares;
    let points = lines
        .iter()
        .filter(|l| l["cgroup"] == name.as_str())
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
    let quota = std::mem::take(&mut *quota.lock().expect("lock"));
    Ok(Outcome {
        demo: demo.clone(),
        cgroup: name,
        points,
        quota,
        bursts,
        written,
        restored,
        log,
    })
}

fn read(file: &PathBuf) -> anyhow::Result<String> {
    Ok(fs::read_to_string(file)
        .with_context(|| format!("reading {}", file.display()))?
        .trim()
        .to_owned())
}

/// How the quota was raised ahead of one burst.
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
}

impl Outcome {
    /// For each burst after the first: the quota at mid-gap, right before
    /// the burst, and how long before it the quota went up.
    pub fn leads(&self) -> Vec<Lead> {
        let gap = (self.demo.period_ms - self.demo.burst_ms) as f64 / 1e3;
        self.bursts
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, &start)| {
                let mid = start - gap / 2.0;
                let idle = self.quota_at(mid).unwrap_or(f64::NAN);
                let before = self
                    .quota
                    .iter()
                    .filter(|q| q.0 >= start - 1.0 && q.0 < start)
                    .map(|q| q.1)
                    .fold(f64::NAN, f64::max);
                // Walk back from the burst start while the quota stays raised.
                let raised_since = self
                    .quota
                    .iter()
                    .rev()
                    .skip_while(|q| q.0 >= start)
                    .take_while(|q| q.0 > mid && q.1 > idle * 1.2)
                    .last()
                    .map(|q| q.0);
                let raised_ahead_s = raised_since.map(|t| start - t);
                Lead {
                    burst: i + 1,
                    idle,
                    before,
                    raised_ahead_s,
                }
            })
            .collect()
    }

    /// CPU-seconds the quota reserved and the sandbox used over the run.
    pub fn cpu_seconds(&self) -> (f64, f64) {
        let reserved = self
            .quota
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * if w[0].1.is_finite() { w[0].1 } else { 0.0 })
            .sum();
        let used = self
            .points
            .windows(2)
            .map(|w| (w[1].t - w[0].t) * w[1].used)
            .sum();
        (reserved, used)
    }

    fn quota_at(&self, t: f64) -> Option<f64> {
        self.quota.iter().rev().find(|q| q.0 <= t).map(|q| q.1)
    }

    /// Usage, forecast band, reservation and the kernel's quota over time.
    pub fn svg(&self) -> String {
        let t0 = self
            .bursts
            .first()
            .map_or(0.0, |b| b - self.demo.period_ms as f64 / 1e3);
        let rel = |t: f64| t - t0;
        let used = self.points.iter().map(|p| (rel(p.t), p.used)).collect();
        let demanded = self
            .points
            .iter()
            .map(|p| (rel(p.t), p.demand.unwrap_or(f64::NAN)))
            .collect();
        let upper = self
            .points
            .iter()
            .map(|p| (rel(p.t), p.upper.unwrap_or(f64::NAN)))
            .collect();
        let reserved = self
            .points
            .iter()
            .map(|p| (rel(p.t), p.reserved.unwrap_or(f64::NAN)))
            .collect();
        let quota = self.quota.iter().map(|q| (rel(q.0), q.1)).collect();
        let demand = self
            .bursts
            .iter()
            .flat_map(|&b| {
                let end = b + self.demo.burst_ms as f64 / 1e3;
                let d = self.demo.threads as f64;
                [(rel(b), 0.0), (rel(b), d), (rel(end), d), (rel(end), 0.0)]
            })
            .collect();
        let panel = Panel {
            title: format!(
                "{}: periodic bursts of {} cores, static quota {} cores",
                self.cgroup, self.demo.threads, self.demo.static_cores
            ),
            y_label: "cores".into(),
            series: vec![
                Series::dashed("burst demand", "#bbb", demand),
                Series::line("used", "black", used),
                Series::line("demand (ran + waited)", "#9467bd", demanded),
                Series::dashed("forecast upper", "#1f77b4", upper),
                Series::line("reservation", "#2ca02c", reserved),
                Series::line("quota (kernel)", "#d62728", quota),
            ],
        };
        plot::svg(
            "Shadow demo: reservation raised ahead of each burst",
            "seconds",
            &[panel],
        )
    }
}
