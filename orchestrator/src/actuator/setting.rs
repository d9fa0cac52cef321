//! Knob values in their native units, parsed and formatted exactly as the
//! kernel reads and writes the files. Cgroup file contents come from
//! outside: every parse is validated and returns an error, never panics.

use super::knob::Knob;
pub use shadow_common::values::{
    Bytes, CpuQuota, MAX_CFS_PERIOD_US, MAX_CFS_QUOTA_US, MIN_CFS_US, ParseError,
    V1_UNLIMITED_FROM, number, parse_io_weight,
};

/// A knob's value. Which variant a knob takes: quota knobs `CpuQuota`,
/// weight knobs `Weight`, memory knobs `Bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// `cpu.max`, or v1 `cpu.cfs_quota_us` with its period.
    CpuQuota(CpuQuota),
    /// `cpu.weight`, `cpu.shares`, `io.weight`, `blkio.bfq.weight`.
    Weight(u64),
    /// `memory.low`, `memory.high`, `memory.soft_limit_in_bytes`,
    /// `memory.limit_in_bytes`.
    Bytes(Bytes),
}

/// A value that the kernel would refuse or silently change for this knob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSetting {
    /// The value's kind does not fit the knob (a weight for `cpu.max`).
    #[error("{knob} does not take {setting:?}")]
    WrongKind {
        /// The knob.
        knob: Knob,
        /// The value offered.
        setting: Setting,
    },
    /// A weight outside the knob's range.
    #[error("{knob} must be within {min}..={max}, not {value}")]
    OutOfRange {
        /// The knob.
        knob: Knob,
        /// The value offered.
        value: u64,
        /// Smallest valid value.
        min: u64,
        /// Largest valid value.
        max: u64,
    },
    /// A CFS quota or period outside the kernel's limits.
    #[error("CPU quota {quota_us:?} us per {period_us} us is outside the kernel's limits")]
    Quota {
        /// Quota offered.
        quota_us: Option<u64>,
        /// Period offered.
        period_us: u64,
    },
    /// v1 quota with another period than `cpu.cfs_period_us` holds: the
    /// period is read, never written, so the quota would mean another rate.
    #[error("period {new} us differs from the cgroup's cpu.cfs_period_us {current}")]
    PeriodMismatch {
        /// The cgroup's period.
        current: u64,
        /// The period offered.
        new: u64,
    },
}

/// The weight for `share` times the knob's default weight (1.0 is the
/// kernel's default, 2.0 twice it), clamped to the knob's range. None for
/// knobs that are not weights.
pub fn weight_from_share(knob: Knob, share: f64) -> Option<u64> {
    let range = knob.weight_range()?;
    let default = knob.default_weight()? as f64;
    let w = (share * default).round();
    let w = if w.is_nan() { 0.0 } else { w };
    Some((w.max(0.0) as u64).clamp(*range.start(), *range.end()))
}

/// v1 `cpu.shares` ⇄ v2 `cpu.weight`, by the kernel's and systemd's linear
/// map of 2..=262144 onto 1..=10000 (so 1024 ↔ 39, not 100: the two
/// defaults do not map onto each other).
pub fn cpu_weight_from_shares(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9_999 / 262_142
}

/// A CFS quota the kernel would refuse or change is refused here.
fn validate_quota(q: &CpuQuota) -> Result<(), InvalidSetting> {
    if q.within_kernel_limits() {
        Ok(())
    } else {
        Err(InvalidSetting::Quota {
            quota_us: q.quota_us,
            period_us: q.period_us,
        })
    }
}

impl Knob {
    /// Parses this knob's file. `companion` is the content of
    /// [`Knob::companion_file`] (the CFS period for v1 quota).
    pub fn parse(self, text: &str, companion: Option<&str>) -> Result<Setting, ParseError> {
        let text = text.trim_end();
        Ok(match self {
            Self::CpuMax => Setting::CpuQuota(CpuQuota::parse_cpu_max(text)?),
            Self::CpuCfsQuota => Setting::CpuQuota(CpuQuota::parse_cfs(
                text,
                companion.ok_or_else(|| ParseError::new("cpu.cfs_period_us alongside", text))?,
            )?),
            Self::CpuWeight | Self::CpuShares | Self::BlkioWeight => {
                Setting::Weight(number(text.trim(), "a weight")?)
            }
            Self::IoWeight => Setting::Weight(parse_io_weight(text)?),
            Self::MemoryLow | Self::MemoryHigh => Setting::Bytes(Bytes::parse_v2(text)?),
            Self::MemorySoftLimit | Self::MemoryLimit => Setting::Bytes(Bytes::parse_v1(text)?),
        })
    }

    /// Checks that the kernel would store `setting` as given.
    pub fn validate(self, setting: &Setting) -> Result<(), InvalidSetting> {
        let wrong = || InvalidSetting::WrongKind {
            knob: self,
            setting: *setting,
        };
        match (self, setting) {
            (Self::CpuMax | Self::CpuCfsQuota, Setting::CpuQuota(q)) => validate_quota(q),
            (_, Setting::Weight(w)) => {
                let range = self.weight_range().ok_or_else(wrong)?;
                if range.contains(w) {
                    Ok(())
                } else {
                    Err(InvalidSetting::OutOfRange {
                        knob: self,
                        value: *w,
                        min: *range.start(),
                        max: *range.end(),
                    })
                }
            }
            (k, Setting::Bytes(_)) if k.usage_file().is_some() => Ok(()),
            _ => Err(wrong()),
        }
    }

    /// The text to write to this knob's file for `setting` (validated).
    pub fn format(self, setting: &Setting) -> Result<String, InvalidSetting> {
        self.validate(setting)?;
        Ok(self.format_raw(setting))
    }

    /// The text for `setting` without validation: for values read from the
    /// kernel, which are written back exactly as they were.
    pub fn format_raw(self, setting: &Setting) -> String {
        match setting {
            Setting::CpuQuota(q) if self == Self::CpuCfsQuota => q.format_cfs_quota(),
            Setting::CpuQuota(q) => q.format_cpu_max(),
            Setting::Weight(w) if self == Self::IoWeight => format!("default {w}"),
            Setting::Weight(w) => w.to_string(),
            Setting::Bytes(b) if self.is_v2() => b.format_v2(),
            Setting::Bytes(b) => b.format_v1(),
        }
    }
}

impl Setting {
    /// How much this setting gives, comparable between two settings of one
    /// knob: cores, weight, or bytes (unlimited is infinite). A write that
    /// increases it is a raise, one that decreases it a lowering.
    pub fn amount(&self) -> f64 {
        match self {
            Self::CpuQuota(q) => q.cores(),
            Self::Weight(w) => *w as f64,
            Self::Bytes(Bytes::Max) => f64::INFINITY,
            Self::Bytes(Bytes::Limit(n)) => *n as f64,
        }
    }
}

#[cfg(test)]
#[path = "setting_tests.rs"]
mod tests;
