//! The memory benchmark's cgroups: the files of one cgroup's memory
//! controller on whichever hierarchy holds it (v1 on these hybrid hosts,
//! v2 on pure ones), read and written as the policies need them.

use std::{fs, path::PathBuf};

use anyhow::Context as _;
use shadow_common::{mounts::Mounts, values::memory_stat};
use shadow_tests::TestCgroup;

/// Which hierarchy holds the memory controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    V1,
    V2,
}

impl Hierarchy {
    pub fn detect() -> anyhow::Result<Self> {
        let mounts = Mounts::from_system().context("reading the cgroup mounts")?;
        Ok(if mounts.v1.contains_key("memory") {
            Self::V1
        } else {
            Self::V2
        })
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::V1 => "v1 memory controller (memory.limit_in_bytes)",
            Self::V2 => "v2 memory controller (memory.high)",
        }
    }

    /// The ceiling the policies set (the one Shadow raises where the
    /// operator set it): v1's limit, v2's `memory.high` (Shadow never
    /// writes `memory.max`).
    fn ceiling_file(self) -> &'static str {
        match self {
            Self::V1 => "memory.limit_in_bytes",
            Self::V2 => "memory.high",
        }
    }
}

/// A cgroup with the memory controller, removed on drop.
pub struct MemCgroup {
    pub cg: TestCgroup,
    dir: PathBuf,
    hierarchy: Hierarchy,
}

/// Counters read before and after the measured window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub major_faults: u64,
    pub oom_kills: u64,
}

impl MemCgroup {
    /// Creates `path` (relative to the v2 root) with its ceiling at
    /// `ceiling` bytes.
    pub fn create(path: &str, hierarchy: Hierarchy, ceiling: f64) -> anyhow::Result<Self> {
        let v1: &[&str] = match hierarchy {
            Hierarchy::V1 => &["memory"],
            Hierarchy::V2 => &[],
        };
        let cg = TestCgroup::create(path, v1)?;
        let dir = match hierarchy {
            Hierarchy::V1 => cg.v1_dir("memory").context("the v1 memory directory")?,
            Hierarchy::V2 => cg.v2_dir().to_path_buf(),
        };
        let m = Self { cg, dir, hierarchy };
        m.set_ceiling(ceiling)?;
        Ok(m)
    }

    fn read(&self, file: &str) -> anyhow::Result<String> {
        let p = self.dir.join(file);
        fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    }

    fn number(&self, file: &str) -> anyhow::Result<f64> {
        let text = self.read(file)?;
        let t = text.trim();
        Ok(if t == "max" {
            f64::INFINITY
        } else {
            t.parse::<u64>()
                .with_context(|| format!("{file}: {t:?} is not a number"))? as f64
        })
    }

    /// The ceiling in bytes (v1's "unlimited" is a huge number: as such).
    pub fn ceiling(&self) -> anyhow::Result<f64> {
        self.number(self.hierarchy.ceiling_file())
    }

    /// Writes the ceiling; the kernel may refuse a v1 limit below what it
    /// cannot reclaim (EBUSY), which the caller counts and retries.
    pub fn set_ceiling(&self, bytes: f64) -> anyhow::Result<()> {
        let p = self.dir.join(self.hierarchy.ceiling_file());
        fs::write(&p, format!("{}", bytes.max(0.0) as u64))
            .with_context(|| format!("writing {}", p.display()))
    }

    /// Bytes in use.
    pub fn usage(&self) -> anyhow::Result<f64> {
        self.number(match self.hierarchy {
            Hierarchy::V1 => "memory.usage_in_bytes",
            Hierarchy::V2 => "memory.current",
        })
    }

    /// Times the ceiling was hit so far (v1 `memory.failcnt`, v2
    /// `memory.events` high).
    pub fn hits(&self) -> anyhow::Result<u64> {
        match self.hierarchy {
            Hierarchy::V1 => Ok(self.number("memory.failcnt")? as u64),
            Hierarchy::V2 => self.key("memory.events", "high"),
        }
    }

    fn key(&self, file: &str, key: &str) -> anyhow::Result<u64> {
        let text = self.read(file)?;
        memory_stat(&text, [key]).with_context(|| format!("parsing {file}"))?[0]
            .with_context(|| format!("{file} has no {key}"))
    }

    pub fn counters(&self) -> anyhow::Result<Counters> {
        let (faults, oom) = match self.hierarchy {
            Hierarchy::V1 => (
                self.key("memory.stat", "total_pgmajfault")?,
                self.key("memory.oom_control", "oom_kill")?,
            ),
            Hierarchy::V2 => (
                self.key("memory.stat", "pgmajfault")?,
                self.key("memory.events", "oom_kill")?,
            ),
        };
        Ok(Counters {
            major_faults: faults,
            oom_kills: oom,
        })
    }
}
