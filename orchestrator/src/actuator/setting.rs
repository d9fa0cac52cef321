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
mod tests {
    use super::*;

    /// Every knob: the text the kernel shows parses, and formatting the parsed
    /// value gives text the kernel accepts and shows back the same.
    #[test]
    fn every_knob_round_trips_kernel_text() {
        let cases: &[(Knob, &str, Option<&str>, Setting, &str)] = &[
            (
                Knob::CpuMax,
                "max 100000\n",
                None,
                Setting::CpuQuota(CpuQuota::unlimited(100_000)),
                "max 100000",
            ),
            (
                Knob::CpuMax,
                "50000 100000\n",
                None,
                Setting::CpuQuota(CpuQuota {
                    quota_us: Some(50_000),
                    period_us: 100_000,
                }),
                "50000 100000",
            ),
            (
                Knob::CpuCfsQuota,
                "-1\n",
                Some("100000\n"),
                Setting::CpuQuota(CpuQuota::unlimited(100_000)),
                "-1",
            ),
            (
                Knob::CpuCfsQuota,
                "25000\n",
                Some("50000\n"),
                Setting::CpuQuota(CpuQuota {
                    quota_us: Some(25_000),
                    period_us: 50_000,
                }),
                "25000",
            ),
            (Knob::CpuWeight, "100\n", None, Setting::Weight(100), "100"),
            (
                Knob::CpuShares,
                "1024\n",
                None,
                Setting::Weight(1024),
                "1024",
            ),
            (
                Knob::IoWeight,
                "default 100\n8:0 200\n",
                None,
                Setting::Weight(100),
                "default 100",
            ),
            (
                Knob::BlkioWeight,
                "100\n",
                None,
                Setting::Weight(100),
                "100",
            ),
            (
                Knob::MemoryLow,
                "0\n",
                None,
                Setting::Bytes(Bytes::Limit(0)),
                "0",
            ),
            (
                Knob::MemoryHigh,
                "max\n",
                None,
                Setting::Bytes(Bytes::Max),
                "max",
            ),
            (
                Knob::MemorySoftLimit,
                "9223372036854771712\n",
                None,
                Setting::Bytes(Bytes::Max),
                "-1",
            ),
            (
                Knob::MemoryLimit,
                "99999744\n",
                None,
                Setting::Bytes(Bytes::Limit(99_999_744)),
                "99999744",
            ),
        ];
        for (knob, text, companion, setting, written) in cases {
            let parsed = knob.parse(text, *companion).unwrap();
            assert_eq!(parsed, *setting, "{knob} {text:?}");
            assert_eq!(knob.format(&parsed).unwrap(), *written, "{knob}");
        }
        // Every knob is covered.
        for k in Knob::ALL {
            assert!(cases.iter().any(|c| c.0 == k), "{k} has no case");
        }
    }

    #[test]
    fn bad_contents_are_errors_not_panics() {
        let bad = [
            "",
            "\n",
            "abc",
            "-5",
            "1 2 3",
            "max",
            "99999999999999999999999",
            "+1",
            " 1 0x10",
            "\u{fffd}",
        ];
        for knob in Knob::ALL {
            for text in bad {
                // Some of these are valid for some knobs ("max" on memory.high):
                // the point is that nothing panics and nonsense is refused.
                let _ = knob.parse(text, Some(text));
            }
        }
        assert!(Knob::CpuMax.parse("max", None).is_err());
        assert!(Knob::CpuMax.parse("max 100000 1", None).is_err());
        assert!(Knob::CpuMax.parse("-1 100000", None).is_err());
        assert!(Knob::CpuCfsQuota.parse("-2", Some("100000")).is_err());
        assert!(Knob::CpuCfsQuota.parse("5000", None).is_err());
        assert!(Knob::CpuShares.parse("1024 ", None).is_ok());
        assert!(Knob::CpuShares.parse("-1", None).is_err());
        assert!(Knob::MemoryLimit.parse("max", None).is_err());
        assert!(
            Knob::MemoryHigh
                .parse("18446744073709551616", None)
                .is_err()
        );
        assert!(Knob::IoWeight.parse("default x", None).is_err());
        let err = Knob::CpuWeight.parse(&"9".repeat(500), None).unwrap_err();
        assert_eq!(err.found.len(), 64, "error text is bounded");
    }

    #[test]
    fn v1_unlimited_is_recognised_for_any_page_size() {
        for page in [4096u64, 16384, 65536] {
            let max = (i64::MAX as u64) / page * page;
            assert_eq!(Bytes::parse_v1(&max.to_string()), Ok(Bytes::Max));
        }
        assert_eq!(Bytes::parse_v1("1099511627776"), Ok(Bytes::Limit(1 << 40)));
    }

    #[test]
    fn weights_out_of_range_are_refused() {
        let refuse = [
            (Knob::CpuWeight, 0),
            (Knob::CpuWeight, 10_001),
            (Knob::CpuShares, 1),
            (Knob::CpuShares, 262_145),
            (Knob::IoWeight, 0),
            (Knob::BlkioWeight, 0),
            (Knob::BlkioWeight, 1_001),
        ];
        for (k, w) in refuse {
            let err = k.format(&Setting::Weight(w)).unwrap_err();
            assert!(
                matches!(err, InvalidSetting::OutOfRange { value, .. } if value == w),
                "{k} {w}: {err}"
            );
        }
        for k in [
            Knob::CpuWeight,
            Knob::CpuShares,
            Knob::IoWeight,
            Knob::BlkioWeight,
        ] {
            let r = k.weight_range().unwrap();
            assert!(k.format(&Setting::Weight(*r.start())).is_ok());
            assert!(k.format(&Setting::Weight(*r.end())).is_ok());
        }
    }

    #[test]
    fn wrong_kinds_and_bad_quotas_are_refused() {
        assert!(matches!(
            Knob::CpuMax.format(&Setting::Weight(100)),
            Err(InvalidSetting::WrongKind { .. })
        ));
        assert!(matches!(
            Knob::MemoryLow.format(&Setting::Weight(100)),
            Err(InvalidSetting::WrongKind { .. })
        ));
        assert!(matches!(
            Knob::CpuWeight.format(&Setting::Bytes(Bytes::Max)),
            Err(InvalidSetting::WrongKind { .. })
        ));
        let q = |quota_us, period_us| {
            Setting::CpuQuota(CpuQuota {
                quota_us,
                period_us,
            })
        };
        // The kernel refuses a quota under 1 ms (EINVAL, checked on 6.18).
        assert!(Knob::CpuCfsQuota.format(&q(Some(500), 100_000)).is_err());
        assert!(Knob::CpuMax.format(&q(Some(1_000), 999)).is_err());
        assert!(Knob::CpuMax.format(&q(None, 1_000_001)).is_err());
        assert!(Knob::CpuMax.format(&q(Some(1_000), 1_000)).is_ok());
    }

    #[test]
    fn cores_and_quota_convert_both_ways() {
        let q = CpuQuota::from_cores(1.5, 100_000);
        assert_eq!(q.quota_us, Some(150_000));
        assert!((q.cores() - 1.5).abs() < 1e-12);
        // Rounded up: never less CPU than asked for.
        assert_eq!(
            CpuQuota::from_cores(0.333_333, 100_000).quota_us,
            Some(33_334)
        );
        // Kept within the kernel's limits; nonsense ends at the minimum.
        assert_eq!(
            CpuQuota::from_cores(0.0, 100_000).quota_us,
            Some(MIN_CFS_US)
        );
        assert_eq!(
            CpuQuota::from_cores(-3.0, 100_000).quota_us,
            Some(MIN_CFS_US)
        );
        assert_eq!(
            CpuQuota::from_cores(f64::NAN, 100_000).quota_us,
            Some(MIN_CFS_US)
        );
        assert_eq!(
            CpuQuota::from_cores(1e30, 100_000).quota_us,
            Some(MAX_CFS_QUOTA_US)
        );
        assert_eq!(
            CpuQuota::from_cores(f64::INFINITY, 50_000),
            CpuQuota::unlimited(50_000)
        );
        assert_eq!(CpuQuota::unlimited(100_000).cores(), f64::INFINITY);
    }

    #[test]
    fn weights_from_shares() {
        assert_eq!(weight_from_share(Knob::CpuWeight, 1.0), Some(100));
        assert_eq!(weight_from_share(Knob::CpuShares, 2.0), Some(2048));
        assert_eq!(weight_from_share(Knob::BlkioWeight, 50.0), Some(1000));
        assert_eq!(weight_from_share(Knob::IoWeight, 0.0), Some(1));
        assert_eq!(weight_from_share(Knob::CpuShares, f64::NAN), Some(2));
        assert_eq!(weight_from_share(Knob::MemoryLow, 1.0), None);
        assert_eq!(cpu_weight_from_shares(2), 1);
        assert_eq!(cpu_weight_from_shares(262_144), 10_000);
        assert_eq!(cpu_weight_from_shares(1024), 39);
    }

    #[test]
    fn memory_is_page_aligned_and_ordered() {
        assert_eq!(
            Bytes::Limit(100_000_001).page_aligned(4096),
            Bytes::Limit(99_999_744)
        );
        assert_eq!(Bytes::Max.page_aligned(4096), Bytes::Max);
        // Unlimited gives more than any limit, so going to "max" is a raise.
        assert!(
            Setting::Bytes(Bytes::Max).amount() > Setting::Bytes(Bytes::Limit(u64::MAX)).amount()
        );
        assert!(
            Setting::CpuQuota(CpuQuota::from_cores(2.0, 100_000)).amount()
                > Setting::CpuQuota(CpuQuota::from_cores(1.0, 10_000)).amount()
        );
    }
}
