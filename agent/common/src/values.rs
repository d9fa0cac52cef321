//! cgroup knob values in the kernel's own text formats: CPU bandwidth
//! (`cpu.max`, v1 `cpu.cfs_quota_us`), memory amounts (v2 and v1 files) and
//! `io.weight`. One parser per format, for every part that reads them (the
//! orchestrator's actuator, the host's own quota, the test sandbox).
//! Cgroup file contents come from outside: every parse is validated and
//! returns an error, never panics.

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

impl ParseError {
    /// `found` was not `expected` (only its first 64 characters are kept).
    pub fn new(expected: &'static str, found: &str) -> Self {
        Self {
            expected,
            found: found.chars().take(64).collect(),
        }
    }
}

fn error(expected: &'static str, found: &str) -> ParseError {
    ParseError::new(expected, found)
}

/// A plain decimal number (no sign, no spaces), as cgroup files hold.
pub fn number(text: &str, expected: &'static str) -> Result<u64, ParseError> {
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

    /// True if the kernel stores this quota and period as given.
    pub fn within_kernel_limits(&self) -> bool {
        self.quota_us
            .is_none_or(|q| (MIN_CFS_US..=MAX_CFS_QUOTA_US).contains(&q))
            && (MIN_CFS_US..=MAX_CFS_PERIOD_US).contains(&self.period_us)
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

/// The values of `keys` in a `memory.stat` file (v1 or v2: one
/// `name value` pair per line), in the order asked; None for a key the file
/// does not have (v1 has no `anon`, v2 no `total_rss`). Lines with other
/// keys are not looked at, so new kernel fields change nothing; a wanted
/// key whose value is not a number is an error.
pub fn memory_stat<const N: usize>(
    text: &str,
    keys: [&str; N],
) -> Result<[Option<u64>; N], ParseError> {
    const WHAT: &str = "\"<name> <bytes>\" lines";
    let mut found = [None; N];
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let (Some(name), value) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(i) = keys.iter().position(|k| *k == name) else {
            continue;
        };
        let (Some(value), None) = (value, parts.next()) else {
            return Err(error(WHAT, line));
        };
        found[i] = Some(number(value, WHAT)?);
    }
    Ok(found)
}

/// Parses `io.weight`: the first line, "default N" (a bare "N" is accepted
/// too); per-device lines after it are left alone by Shadow.
pub fn parse_io_weight(text: &str) -> Result<u64, ParseError> {
    const WHAT: &str = "\"default <weight>\"";
    let first = text.lines().next().unwrap_or("").trim();
    let n = first.strip_prefix("default ").unwrap_or(first);
    number(n.trim(), WHAT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_stat_gives_the_keys_asked_for() {
        let v2 = "anon 1052672\nfile 8192\nkernel 4096\nanon_thp 0\n";
        assert_eq!(
            memory_stat(v2, ["anon", "file", "total_rss"]).unwrap(),
            [Some(1_052_672), Some(8192), None]
        );
        let v1 = "cache 0\nrss 4096\ntotal_cache 12288\ntotal_rss 8192\n";
        assert_eq!(
            memory_stat(v1, ["total_rss", "total_cache"]).unwrap(),
            [Some(8192), Some(12288)]
        );
        assert_eq!(memory_stat("", ["anon"]).unwrap(), [None]);
    }

    #[test]
    fn memory_stat_refuses_a_wanted_value_that_is_not_bytes() {
        for bad in ["anon -1\n", "anon\n", "anon 1 2\n", "anon 1e9\n"] {
            assert!(memory_stat(bad, ["anon"]).is_err(), "{bad:?} accepted");
        }
        // Other lines are not looked at.
        assert_eq!(
            memory_stat("weird x y\nanon 5", ["anon"]).unwrap(),
            [Some(5)]
        );
    }
}
