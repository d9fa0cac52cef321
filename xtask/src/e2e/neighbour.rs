//! The neighbour that pays: a batch job (`shadow-workload batch`,
//! counting chunks of work) in a sibling cgroup of the sandbox, holding
//! what the service does not: its quota is the host's CPUs minus the
//! service's quota, whoever set it, so every core-second reserved and
//! unused is one the batch loses; and its weight follows its quota by the
//! rule the service's weight follows (a core per default weight), so when
//! other tenants of the host contend, the two share the CPU in proportion
//! to what each holds.
//!
//! Not `cpu.idle`: on these shared hosts an idle-class job gets nothing
//! while any other tenant runs (0.1 CPU-s in a 27 s window in a first
//! trial), so its work would measure the other tenants, not the
//! reservation. Not the default weight either: the service's weight is
//! the default up to a core, so the batch would take half of any
//! contended CPU from a service holding 0.5 cores beside its 1.5.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use shadow_tests::scenario::Sandbox;

use super::knobs::Knobs;
use crate::build::binary;

/// The least quota the neighbour is left, cores (the kernel's 1 ms per
/// 100 ms period).
const LEAST: f64 = 0.01;
/// How often the neighbour's quota follows the service's.
pub const FOLLOW: Duration = Duration::from_millis(50);

/// One progress line of the batch job (and of the memory benchmark's
/// neighbour, which reports in the same form).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Unix seconds.
    t: f64,
    /// Chunks done since it started.
    units: u64,
    /// Its CPU time so far, s.
    cpu_s: f64,
}

/// The batch job running in its cgroup.
pub struct Neighbour {
    pub sandbox: Sandbox,
    knobs: Knobs,
    child: Child,
    progress: Arc<Mutex<Vec<Progress>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// The batch job's quota beside a service holding `service` cores.
pub fn quota_beside(service: f64, cpus: f64) -> f64 {
    if service.is_finite() {
        (cpus - service).max(LEAST)
    } else {
        LEAST
    }
}

impl Neighbour {
    /// Creates `path` beside a service holding `service` cores of `cpus`
    /// and starts the batch job there with a thread per CPU.
    pub fn start(path: &str, service: f64, cpus: f64) -> anyhow::Result<Self> {
        let sandbox = Sandbox::create(path, quota_beside(service, cpus), true)?;
        let knobs = Knobs::of(&sandbox)?;
        knobs.set_weight_share(quota_beside(service, cpus))?;
        let mut cmd = batch(cpus.ceil() as usize);
        let mut child = sandbox
            .cg
            .start(&mut cmd)
            .context("starting the batch job")?;
        let (progress, reader) = collect(&mut child)?;
        let n = Self {
            sandbox,
            knobs,
            child,
            progress,
            reader: Some(reader),
        };
        // A report before the window starts, to count from.
        for _ in 0..100 {
            if !n.progress.lock().expect("lock").is_empty() {
                return Ok(n);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("the batch job reported nothing in 5 s")
    }

    /// Until `stop`: the neighbour's quota and weight follow `service`'s
    /// quota.
    pub fn follow(&self, service: &Sandbox, cpus: f64, stop: &AtomicBool) -> anyhow::Result<()> {
        let mut last = f64::NAN;
        while !stop.load(Ordering::Relaxed) {
            let q = service.cores()?;
            if q != last && !(q.is_nan() && last.is_nan()) {
                let mine = quota_beside(q, cpus);
                self.sandbox.set_cores(mine)?;
                self.knobs.set_weight_share(mine)?;
                last = q;
            }
            std::thread::sleep(FOLLOW);
        }
        Ok(())
    }

    /// Chunks done and the job's own CPU seconds by Unix second `t`,
    /// between the reports around it.
    pub fn progress_at(&self, t: f64) -> Option<(f64, f64)> {
        let cpu: Vec<(f64, f64)> = {
            let p = self.progress.lock().expect("lock");
            p.iter().map(|p| (p.t, p.cpu_s)).collect()
        };
        Some((units_at(&self.progress, t)?, between(&cpu, t)?))
    }

    /// Ends the job; the sandbox goes when the neighbour is dropped.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `shadow-workload batch THREADS`; it exits by itself when its output
/// closes (this process gone), so an interrupted benchmark leaves no
/// burner behind.
fn batch(threads: usize) -> Command {
    let mut cmd = Command::new(binary("shadow-workload"));
    cmd.args(["batch", &threads.to_string()])
        .stdout(Stdio::piped());
    cmd
}

pub type Collected = (Arc<Mutex<Vec<Progress>>>, std::thread::JoinHandle<()>);

/// Reads `child`'s progress lines as they come.
pub fn collect(child: &mut Child) -> anyhow::Result<Collected> {
    let out = child.stdout.take().context("stdout")?;
    let progress = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&progress);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let (Some(t), Some(units), Some(cpu_s)) =
                (v["t"].as_f64(), v["units"].as_u64(), v["cpu_s"].as_f64())
            {
                sink.lock()
                    .expect("lock")
                    .push(Progress { t, units, cpu_s });
            }
        }
    });
    Ok((progress, reader))
}

/// Chunks of batch work per CPU-second: one thread of the batch job alone
/// for a while (wherever this process runs; only its own CPU time counts),
/// so work done converts to core-seconds whatever the job's quota.
pub fn calibrate() -> anyhow::Result<f64> {
    let mut child = batch(1).spawn().context("starting the batch job")?;
    let (progress, reader) = collect(&mut child)?;
    std::thread::sleep(Duration::from_millis(2500));
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let p = progress.lock().expect("lock");
    let (Some(a), Some(b)) = (p.get(2), p.last()) else {
        anyhow::bail!("the batch job reported too little to calibrate");
    };
    let rate = (b.units - a.units) as f64 / (b.cpu_s - a.cpu_s);
    anyhow::ensure!(
        rate.is_finite() && rate > 0.0,
        "the batch job's calibration gave {rate} chunks per CPU-second"
    );
    Ok(rate)
}

/// Units done by Unix second `t`, between the reports around it.
pub fn units_at(progress: &Mutex<Vec<Progress>>, t: f64) -> Option<f64> {
    let p = progress.lock().expect("lock");
    let units: Vec<(f64, f64)> = p.iter().map(|p| (p.t, p.units as f64)).collect();
    between(&units, t)
}

/// `y` at `t` on the line through the points (in time order) around it;
/// the last point's if `t` is past them; None before the first.
fn between(points: &[(f64, f64)], t: f64) -> Option<f64> {
    let after = points.iter().position(|p| p.0 > t);
    match after {
        Some(0) => None,
        Some(i) => {
            let (a, b) = (points[i - 1], points[i]);
            Some(a.1 + (b.1 - a.1) * (t - a.0) / (b.0 - a.0))
        }
        None => points.last().map(|p| p.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_read_between_reports() {
        let r = [(10.0, 100.0), (10.1, 110.0), (10.2, 130.0)];
        assert_eq!(between(&r, 9.0), None);
        assert_eq!(between(&r, 10.0), Some(100.0));
        assert!((between(&r, 10.15).unwrap() - 120.0).abs() < 1e-9);
        assert_eq!(between(&r, 11.0), Some(130.0));
    }

    #[test]
    fn the_neighbour_gets_what_the_service_does_not_hold() {
        assert_eq!(quota_beside(0.5, 2.0), 1.5);
        assert_eq!(quota_beside(1.995, 2.0), LEAST);
        assert_eq!(quota_beside(f64::NAN, 2.0), LEAST, "an unlimited service");
    }
}
