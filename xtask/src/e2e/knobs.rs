//! The sandbox's knobs besides the quota: the weight, written the same way
//! for every policy (Shadow's rule, [`super::policy::weight_share`]), and
//! the kernel's burst allowance (the burst family); and the demand signal
//! the reactive-demand rule reads without Shadow's agent.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use shadow_orchestrator::actuator::{Knob, setting::weight_from_share};
use shadow_tests::scenario::{CpuHierarchy, Sandbox};

/// Weight, burst and idle files of a sandbox, and the weight it had.
pub struct Knobs {
    dir: PathBuf,
    hierarchy: CpuHierarchy,
    period_us: f64,
    weight: String,
}

impl Knobs {
    pub fn of(sandbox: &Sandbox) -> anyhow::Result<Self> {
        let dir = sandbox
            .quota_file()
            .parent()
            .context("the quota file has no folder")?
            .to_path_buf();
        let mut knobs = Self {
            dir,
            hierarchy: sandbox.hierarchy,
            period_us: sandbox.period_us,
            weight: String::new(),
        };
        knobs.weight = read(&knobs.file(knobs.weight_knob().file_name()))?;
        Ok(knobs)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn weight_knob(&self) -> Knob {
        match self.hierarchy {
            CpuHierarchy::V1 => Knob::CpuShares,
            CpuHierarchy::V2 => Knob::CpuWeight,
        }
    }

    /// Sets the weight to `share` times the kernel's default, within the
    /// knob's range (the orchestrator's own conversion).
    pub fn set_weight_share(&self, share: f64) -> anyhow::Result<()> {
        let knob = self.weight_knob();
        let weight = weight_from_share(knob, share).context("not a weight knob")?;
        write(&self.file(knob.file_name()), &weight.to_string())
    }

    fn burst_file(&self) -> PathBuf {
        self.file(match self.hierarchy {
            CpuHierarchy::V1 => "cpu.cfs_burst_us",
            CpuHierarchy::V2 => "cpu.max.burst",
        })
    }

    /// Sets the burst allowance to `cores` over the quota's period (the
    /// kernel refuses more than the quota).
    pub fn set_burst(&self, cores: f64) -> anyhow::Result<()> {
        let us = (cores * self.period_us).round().max(0.0) as u64;
        write(&self.burst_file(), &us.to_string())
    }

    /// Weight and burst back to what the sandbox was created with (burst
    /// first: it may not exceed the quota restored after it).
    pub fn restore(&self) -> anyhow::Result<()> {
        if self.burst_file().exists() {
            write(&self.burst_file(), "0")?;
        }
        write(&self.file(self.weight_knob().file_name()), &self.weight)
    }
}

fn read(file: &Path) -> anyhow::Result<String> {
    Ok(fs::read_to_string(file)
        .with_context(|| format!("reading {}", file.display()))?
        .trim()
        .to_owned())
}

fn write(file: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(file, text).with_context(|| format!("writing {text} to {}", file.display()))
}

/// The time the sandbox's threads waited for a CPU, from the scheduler's
/// per-task `run_delay` (`/proc/<tid>/schedstat`, the same task field the
/// agent's BPF program reads), summed over the threads in the v2
/// `cgroup.threads` (every thread is in the v2 cgroup too, on hybrid
/// hosts). A thread that exited between two reads loses its last wait.
pub struct Waits {
    threads: PathBuf,
    seen: HashMap<u32, u64>,
}

impl Waits {
    /// Starts counting from now.
    pub fn new(sandbox: &Sandbox) -> Self {
        let mut w = Self {
            threads: sandbox.cg.v2_dir().join("cgroup.threads"),
            seen: HashMap::new(),
        };
        w.waited_ns();
        w
    }

    /// Nanoseconds waited since the previous call.
    pub fn waited_ns(&mut self) -> u64 {
        let now: Vec<(u32, u64)> = fs::read_to_string(&self.threads)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok())
            .filter_map(|tid| {
                let stat = fs::read_to_string(format!("/proc/{tid}/schedstat")).ok()?;
                Some((tid, stat.split_whitespace().nth(1)?.parse().ok()?))
            })
            .collect();
        waited_since(&mut self.seen, now)
    }
}

/// The growth of each thread's run delay since `seen` (a thread not seen
/// before counts whole: it was born since), and `seen` replaced by `now`.
fn waited_since(seen: &mut HashMap<u32, u64>, now: Vec<(u32, u64)>) -> u64 {
    let grown = now
        .iter()
        .map(|(tid, delay)| delay.saturating_sub(seen.get(tid).copied().unwrap_or(0)))
        .sum();
    *seen = now.into_iter().collect();
    grown
}

/// Demand in cores over `secs`: ran plus waited, capped at the CPUs, as
/// the agent computes it (docs/observation.md).
pub fn demand_cores(used_ns: u64, waited_ns: u64, secs: f64, cpus: f64) -> f64 {
    ((used_ns + waited_ns) as f64 / 1e9 / secs).min(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_per_thread_and_new_threads_count_whole() {
        let mut seen = HashMap::new();
        assert_eq!(waited_since(&mut seen, vec![(1, 100), (2, 50)]), 150);
        // Thread 2 exited, 3 was born.
        assert_eq!(waited_since(&mut seen, vec![(1, 130), (3, 20)]), 50);
        assert_eq!(seen.len(), 2);
        assert_eq!(waited_since(&mut seen, vec![(1, 130), (3, 20)]), 0);
    }

    #[test]
    fn demand_adds_waiting_and_stops_at_the_cpus() {
        // 0.2 s ran + 0.8 s waited in a second: one core wanted.
        assert_eq!(demand_cores(200_000_000, 800_000_000, 1.0, 2.0), 1.0);
        // Eight threads queued behind a quota: no more than the CPUs.
        assert_eq!(demand_cores(500_000_000, 4_000_000_000, 0.5, 2.0), 2.0);
    }
}
