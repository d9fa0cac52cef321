//! Knob values in their native units, parsed and formatted exactly as the
//! kernel reads and writes the files. Cgroup file contents come from
//! outside: every parse is validated and returns an error, never panics.

use super::knob::Knob;

/// The kernel's smallest CFS quota and period (1 ms).
pub const MIN_CFS_US: u64 = 1_000;
/// The kernel's largest CFS period (1 s).
pub const MAX_CFS_PERIOD_US: u64 = 1_000_000;
/// The kernel's largest CFS quota (`MAX_BW`, 2^44 - 1 us).
pub const MAX_CFS_QUOTA_US: u64 = (1 << 44) - 1;
/// v1 memory files show "unlimited" as `PAGE_COUNTER_MAX` pages in bytes
/// (9223372036854771712 with 4 KiB pages). Anything at or above i64::MAX
/// rounded down to 1 MiB is that, whatever the page size.
pub const V1_UNLIMITED_FROM: u64 = (i64::MAX as u64) & !((1 << 20) - 1);

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

/// CPU bandwidth: `quota_us` of CPU time per `period_us` (None: unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuQuota {
    /// Microseconds of CPU time per period; None is "max" / -1.
    pub quota_us: Option<u64>,
    /// Length of the period in microseconds.
    pub period_us: u64,
}

/// A memory amount, or no limit ("max" on v2, -1 / a huge number on v1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bytes {
    /// No limit.
    Max,
    /// A limit in bytes.
    Limit(u64),
}

/// File contents that are not what the kernel writes there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found:?}")]
pub struct ParseError {
    /// What the file should contain.
    pub expected: &'static str,
    /// What it contained (first 64 bytes).
    pub found: String,
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

fn error(expected: &'static str, found: &str) -> ParseError {
    ParseError {
        expected,
        found: found.chars().take(64).collect(),
    }
}

/// A plain decimal number (no sign, no spaces), as cgroup files hold.
fn number(text: &str, expected: &'static str) -> Result<u64, ParseError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(error(expected, text));
    }
    text.parse().map_err(|_| error(expected, text))
}

impl CpuQuota {
    /// No limit for the given period.
    pub fn unlimited(period_us: u64) -> Self {
        Self {
            quota_us: None,
            period_us,
        }
    }

    /// The quota that allows `cores` CPUs per `period_us`, rounded up and
    /// kept within the kernel's limits; infinite cores is unlimited.
    pub fn from_cores(cores: f64, period_us: u64) -> Self {
        if cores == f64::INFINITY {
            return Self::unlimited(period_us);
        }
        let quota = (cores.max(0.0) * period_us as f64).ceil();
        // NaN and negatives end at the minimum: a cap of 1 ms, never a panic.
        let quota = if quota.is_nan() { 0.0 } else { quota };
        Self {
            quota_us: Some((quota as u64).clamp(MIN_CFS_US, MAX_CFS_QUOTA_US)),
            period_us,
        }
    }

    /// CPUs this quota allows (infinity when unlimited).
    pub fn cores(&self) -> f64 {
        match self.quota_us {
            None => f64::INFINITY,
            Some(q) => q as f64 / self.period_us.max(1) as f64,
        }
    }

    /// Parses `cpu.max`: "max 100000" or "50000 100000".
    pub fn parse_cpu_max(text: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "\"max <period>\" or \"<quota> <period>\"";
        let mut parts = text.split_ascii_whitespace();
        let (Some(quota), Some(period), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(error(WHAT, text));
        };
        let quota_us = match quota {
            "max" => None,
            q => Some(number(q, WHAT)?),
        };
        Ok(Self {
            quota_us,
            period_us: number(period, WHAT)?,
        })
    }

    /// Formats for `cpu.max`.
    pub fn format_cpu_max(&self) -> String {
        match self.quota_us {
            None => format!("max {}", self.period_us),
            Some(q) => format!("{q} {}", self.period_us),
        }
    }

    /// Parses v1 `cpu.cfs_quota_us` ("-1" or microseconds) with the
    /// contents of `cpu.cfs_period_us`.
    pub fn parse_cfs(quota: &str, period: &str) -> Result<Self, ParseError> {
        let quota = quota.trim();
        let quota_us = match quota {
            "-1" => None,
            q => Some(number(q, "\"-1\" or a quota in microseconds")?),
        };
        Ok(Self {
            quota_us,
            period_us: number(period.trim(), "a period in microseconds")?,
        })
    }

    /// Formats for v1 `cpu.cfs_quota_us` (the quota alone).
    pub fn format_cfs_quota(&self) -> String {
        self.quota_us
            .map_or_else(|| "-1".to_owned(), |q| q.to_string())
    }

    fn validate(&self) -> Result<(), InvalidSetting> {
        let quota_ok = self
            .quota_us
            .is_none_or(|q| (MIN_CFS_US..=MAX_CFS_QUOTA_US).contains(&q));
        if quota_ok && (MIN_CFS_US..=MAX_CFS_PERIOD_US).contains(&self.period_us) {
            Ok(())
        } else {
            Err(InvalidSetting::Quota {
                quota_us: self.quota_us,
                period_us: self.period_us,
            })
        }
    }
}

impl Bytes {
    /// Parses a v2 memory file: "max" or bytes.
    pub fn parse_v2(text: &str) -> Result<Self, ParseError> {
        match text.trim() {
            "max" => Ok(Self::Max),
            t => number(t, "\"max\" or bytes").map(Self::Limit),
        }
    }

    /// Parses a v1 memory file: bytes, where anything from
    /// [`V1_UNLIMITED_FROM`] up means unlimited.
    pub fn parse_v1(text: &str) -> Result<Self, ParseError> {
        let text = text.trim();
        if text == "-1" {
            return Ok(Self::Max);
        }
        let n = number(text, "bytes")?;
        Ok(if n >= V1_UNLIMITED_FROM {
            Self::Max
        } else {
            Self::Limit(n)
        })
    }

    /// Formats for a v2 memory file.
    pub fn format_v2(&self) -> String {
        match self {
            Self::Max => "max".to_owned(),
            Self::Limit(n) => n.to_string(),
        }
    }

    /// Formats for a v1 memory file ("-1" is how v1 is told "unlimited").
    pub fn format_v1(&self) -> String {
        match self {
            Self::Max => "-1".to_owned(),
            Self::Limit(n) => n.to_string(),
        }
    }

    /// Rounded down to whole pages, as the kernel stores it: so that what
    /// is written is what reads back.
    pub fn page_aligned(self, page: u64) -> Self {
        match self {
            Self::Limit(n) if page > 0 => Self::Limit(n / page * page),
            other => other,
        }
    }

    /// Bytes, with no limit as `u64::MAX`.
    pub fn as_u64(&self) -> u64 {
        match self {
            Self::Max => u64::MAX,
            Self::Limit(n) => *n,
        }
    }
}

/// Parses `io.weight`: the first line, "default N" (a bare "N" is accepted
/// too); per-device lines after it are left alone by Shadow.
pub fn parse_io_weight(text: &str) -> Result<u64, ParseError> {
    const WHAT: &str = "\"default <weight>\"";
    let first = text.lines().next().unwrap_or("").trim();
    let n = first.strip_prefix("default ").unwrap_or(first);
    number(n.trim(), WHAT)
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

impl Knob {
    /// Parses this knob's file. `companion` is the content of
    /// [`Knob::companion_file`] (the CFS period for v1 quota).
    pub fn parse(self, text: &str, companion: Option<&str>) -> Result<Setting, ParseError> {
        let text = text.trim_end();
        Ok(match self {
            Self::CpuMax => Setting::CpuQuota(CpuQuota::parse_cpu_max(text)?),
            Self::CpuCfsQuota => Setting::CpuQuota(CpuQuota::parse_cfs(
                text,
                companion.ok_or_else(|| error("cpu.cfs_period_us alongside", text))?,
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
            (Self::CpuMax | Self::CpuCfsQuota, Setting::CpuQuota(q)) => q.validate(),
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
