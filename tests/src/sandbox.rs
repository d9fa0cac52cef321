//! The sandbox of a scenario or benchmark: a cgroup with a static CPU quota
//! set at creation, as an operator would have it, on whichever hierarchy
//! holds the cpu controller: v1 `cpu.cfs_quota_us` on hybrid hosts (cpu
//! bound to v1), v2 `cpu.max` on pure v2 hosts. Removed on drop.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use shadow_common::host::unix_now;
use shadow_common::{mounts::Mounts, values::CpuQuota};

use crate::{TestCgroup, keyed};

/// Which hierarchy's cpu controller the sandbox uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuHierarchy {
    /// v1 `cpu` (+ `cpuacct` for usage): `cpu.cfs_quota_us`.
    V1,
    /// v2: `cpu.max`, usage and throttling from `cpu.stat`.
    V2,
}

impl CpuHierarchy {
    /// v1 when the cpu controller is mounted there (it then cannot be on
    /// v2); v2 when the root hands cpu to its children. Anything else is an
    /// error saying what is missing: the sandbox never enables controllers
    /// on a cgroup it did not create.
    pub fn detect() -> anyhow::Result<Self> {
        let mounts = Mounts::from_system()?;
        if mounts.v1.contains_key("cpu") {
            return Ok(Self::V1);
        }
        let root = mounts.v2_root()?;
        let enabled = read(&root.join("cgroup.subtree_control"))?;
        if enabled.split_whitespace().any(|c| c == "cpu") {
            return Ok(Self::V2);
        }
        let available = read(&root.join("cgroup.controllers")).unwrap_or_default();
        if available.split_whitespace().any(|c| c == "cpu") {
            bail!(
                "the v2 cpu controller is not enabled for {}'s children; enable it with `echo +cpu > {}`",
                root.display(),
                root.join("cgroup.subtree_control").display()
            );
        }
        bail!("no cpu controller: neither mounted on v1 nor available on v2")
    }

    /// For output: the hierarchy and its quota file.
    pub fn describe(self) -> &'static str {
        match self {
            Self::V1 => "cgroup v1 cpu controller (cpu.cfs_quota_us, cpuacct.usage)",
            Self::V2 => "cgroup v2 cpu controller (cpu.max, cpu.stat)",
        }
    }
}

/// A cgroup under a static CPU quota.
pub struct Sandbox {
    /// The cgroup (its path relative to the v2 root is `cg.path`).
    pub cg: TestCgroup,
    /// The hierarchy its quota is on.
    pub hierarchy: CpuHierarchy,
    /// Folder of the quota, weight and cpu.stat files.
    cpu_dir: PathBuf,
    /// The quota's period, µs.
    pub period_us: f64,
    static_quota: String,
    weight: String,
}

impl Sandbox {
    /// Creates `path` with `static_cores` of quota; on v1, `cpuacct` also
    /// creates it under that controller (for [`Sandbox::usage_ns`]; v2 has
    /// the usage in `cpu.stat`).
    pub fn create(path: &str, static_cores: f64, cpuacct: bool) -> anyhow::Result<Self> {
        let hierarchy = CpuHierarchy::detect()?;
        let controllers: &[&str] = match (hierarchy, cpuacct) {
            (CpuHierarchy::V2, _) => &[],
            (CpuHierarchy::V1, true) => &["cpu", "cpuacct"],
            (CpuHierarchy::V1, false) => &["cpu"],
        };
        let cg = TestCgroup::create(path, controllers)?;
        let cpu_dir = match hierarchy {
            CpuHierarchy::V1 => cg.v1_dir("cpu").context("no v1 cpu controller")?,
            CpuHierarchy::V2 => cg.v2_dir().to_path_buf(),
        };
        let mut sandbox = Self {
            cg,
            hierarchy,
            cpu_dir,
            period_us: 0.0,
            static_quota: String::new(),
            weight: String::new(),
        };
        sandbox.period_us = match hierarchy {
            CpuHierarchy::V1 => read(&sandbox.cpu_dir.join("cpu.cfs_period_us"))?.parse()?,
            CpuHierarchy::V2 => {
                CpuQuota::parse_cpu_max(&read(&sandbox.quota_file())?)?.period_us as f64
            }
        };
        sandbox.set_cores(static_cores)?;
        sandbox.static_quota = read(&sandbox.quota_file())?;
        sandbox.weight = read(&sandbox.weight_file())?;
        Ok(sandbox)
    }

    /// The quota file.
    pub fn quota_file(&self) -> PathBuf {
        self.cpu_dir.join(match self.hierarchy {
            CpuHierarchy::V1 => "cpu.cfs_quota_us",
            CpuHierarchy::V2 => "cpu.max",
        })
    }

    /// The weight file (v1 `cpu.shares`, v2 `cpu.weight`).
    pub fn weight_file(&self) -> PathBuf {
        self.cpu_dir.join(match self.hierarchy {
            CpuHierarchy::V1 => "cpu.shares",
            CpuHierarchy::V2 => "cpu.weight",
        })
    }

    /// Sets the quota to `cores` (at least the kernel's 1 ms per period).
    pub fn set_cores(&self, cores: f64) -> anyhow::Result<()> {
        let quota = ((cores * self.period_us).round() as i64).max(1000);
        let text = match self.hierarchy {
            CpuHierarchy::V1 => quota.to_string(),
            CpuHierarchy::V2 => format!("{quota} {}", self.period_us as i64),
        };
        fs::write(self.quota_file(), text).context("setting the quota")
    }

    /// The quota now, in cores (NaN: unlimited).
    pub fn cores(&self) -> anyhow::Result<f64> {
        Ok(quota_cores(
            self.hierarchy,
            &read(&self.quota_file())?,
            self.period_us,
        ))
    }

    /// True if quota and weight (v1 shares) are what [`Sandbox::create`]
    /// left.
    pub fn as_created(&self) -> anyhow::Result<bool> {
        Ok(read(&self.quota_file())? == self.static_quota
            && read(&self.weight_file())? == self.weight)
    }

    /// CPU time used since creation, ns (v1 `cpuacct.usage`, v2
    /// `cpu.stat` `usage_usec`).
    pub fn usage_ns(&self) -> anyhow::Result<u64> {
        match self.hierarchy {
            CpuHierarchy::V1 => {
                let dir = self.cg.v1_dir("cpuacct").context("no v1 cpuacct")?;
                Ok(read(&dir.join("cpuacct.usage"))?.parse()?)
            }
            CpuHierarchy::V2 => Ok(stat(&self.cpu_dir, "usage_usec")? * 1000),
        }
    }

    /// `cpu.stat`: `(nr_throttled, throttled time ns)` since creation.
    pub fn throttling(&self) -> anyhow::Result<(u64, u64)> {
        let periods = stat(&self.cpu_dir, "nr_throttled")?;
        Ok(match self.hierarchy {
            CpuHierarchy::V1 => (periods, stat(&self.cpu_dir, "throttled_time")?),
            CpuHierarchy::V2 => (periods, stat(&self.cpu_dir, "throttled_usec")? * 1000),
        })
    }

    /// Polls the kernel's quota every 50 ms until the watcher is finished.
    pub fn watch_quota(&self) -> QuotaWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (file, period, hierarchy) = (self.quota_file(), self.period_us, self.hierarchy);
        let handle = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(text) = read(&file) {
                        let cores = quota_cores(hierarchy, &text, period);
                        samples.lock().expect("lock").push((unix_now(), cores));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        QuotaWatcher {
            stop,
            samples,
            handle: Some(handle),
        }
    }
}

/// A quota file's text in cores; NaN for unlimited or unreadable.
fn quota_cores(hierarchy: CpuHierarchy, text: &str, period_us: f64) -> f64 {
    let quota = match hierarchy {
        CpuHierarchy::V1 => CpuQuota::parse_cfs(text, &format!("{period_us}")),
        CpuHierarchy::V2 => CpuQuota::parse_cpu_max(text),
    };
    match quota {
        Ok(q) if q.quota_us.is_some() => q.cores(),
        _ => f64::NAN,
    }
}

fn stat(dir: &Path, key: &str) -> anyhow::Result<u64> {
    keyed(&dir.join("cpu.stat"))
        .get(key)
        .copied()
        .with_context(|| format!("no {key} in {}", dir.join("cpu.stat").display()))
}

/// The quota over time (see [`Sandbox::watch_quota`]); polling stops when
/// it is finished or dropped.
pub struct QuotaWatcher {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(f64, f64)>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl QuotaWatcher {
    /// Stops polling; `(Unix seconds, cores)` (NaN: unlimited).
    pub fn finish(mut self) -> Vec<(f64, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        std::mem::take(&mut *self.samples.lock().expect("lock"))
    }

    /// The highest limited quota seen so far, cores (-inf: none yet).
    pub fn max_cores(&self) -> f64 {
        self.samples
            .lock()
            .expect("lock")
            .iter()
            .map(|&(_, cores)| cores)
            .filter(|c| c.is_finite())
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

impl Drop for QuotaWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A file's text, trimmed.
pub(crate) fn read(file: &Path) -> anyhow::Result<String> {
    Ok(fs::read_to_string(file)
        .with_context(|| format!("reading {}", file.display()))?
        .trim()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_files_read_as_cores() {
        assert_eq!(quota_cores(CpuHierarchy::V1, "150000", 100_000.0), 1.5);
        assert!(quota_cores(CpuHierarchy::V1, "-1", 100_000.0).is_nan());
        assert_eq!(
            quota_cores(CpuHierarchy::V2, "50000 100000", 100_000.0),
            0.5
        );
        assert!(quota_cores(CpuHierarchy::V2, "max 100000", 100_000.0).is_nan());
    }
}
