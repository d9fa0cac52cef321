//! The cgroup knobs the actuator may write, one per file, for both layouts.
//!
//! A knob is named by its file; the file names are unique across v1 and v2,
//! so the journal and the dry-run output name knobs by file name.

use std::{fmt, ops::RangeInclusive};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use shadow_wire::Resource;

/// Where each resource's knobs are. Network bandwidth has no cgroup knob:
/// v2 has no net controller, and v1 `net_cls`/`net_prio` only tag packets
/// for a `tc` qdisc that Shadow does not manage, so `Net` maps to nothing.
pub trait ResourceKnobs {
    /// The knobs for this resource in one layout (v2 or v1), soft first.
    fn knobs(self, v2: bool) -> &'static [Knob];
    /// The v2 controller that carries this resource's knobs.
    fn v2_controller(self) -> Option<&'static str>;
    /// The v1 controller that carries this resource's knobs.
    fn v1_controller(self) -> Option<&'static str>;
}

impl ResourceKnobs for Resource {
    fn knobs(self, v2: bool) -> &'static [Knob] {
        match (self, v2) {
            (Resource::Cpu, true) => &[Knob::CpuWeight, Knob::CpuMax],
            (Resource::Cpu, false) => &[Knob::CpuShares, Knob::CpuCfsQuota],
            (Resource::Memory, true) => &[Knob::MemoryLow, Knob::MemoryHigh],
            (Resource::Memory, false) => &[Knob::MemorySoftLimit, Knob::MemoryLimit],
            (Resource::Io, true) => &[Knob::IoWeight],
            (Resource::Io, false) => &[Knob::BlkioWeight],
            (Resource::Net, _) => &[],
        }
    }

    fn v2_controller(self) -> Option<&'static str> {
        match self {
            Resource::Cpu => Some("cpu"),
            Resource::Memory => Some("memory"),
            Resource::Io => Some("io"),
            Resource::Net => None,
        }
    }

    fn v1_controller(self) -> Option<&'static str> {
        match self {
            Resource::Cpu => Some("cpu"),
            Resource::Memory => Some("memory"),
            Resource::Io => Some("blkio"),
            Resource::Net => None,
        }
    }
}

/// One cgroup knob (a file in a cgroup directory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Knob {
    /// v2 `cpu.max`: "quota period" or "max period", microseconds.
    CpuMax,
    /// v2 `cpu.weight`: 1..=10000, default 100.
    CpuWeight,
    /// v2 `memory.low`: best-effort protection from reclaim, bytes or "max".
    MemoryLow,
    /// v2 `memory.high`: throttling and reclaim above it, bytes or "max".
    MemoryHigh,
    /// v2 `io.weight`: "default N", 1..=10000 (needs blk-iocost).
    IoWeight,
    /// v1 `cpu.cfs_quota_us` (-1 unlimited), with `cpu.cfs_period_us`
    /// read for the period and never written.
    CpuCfsQuota,
    /// v1 `cpu.shares`: 2..=262144, default 1024 (the kernel clamps silently,
    /// so out-of-range values are refused here instead).
    CpuShares,
    /// v1 `memory.soft_limit_in_bytes`: reclaimed down to it under pressure.
    MemorySoftLimit,
    /// v1 `memory.limit_in_bytes`: the hard cap (reclaim, then OOM).
    MemoryLimit,
    /// v1 `blkio.bfq.weight`: 1..=1000, default 100. Kernels since 5.0 have
    /// no CFQ and so no `blkio.weight`; BFQ's v1 weight is what exists.
    BlkioWeight,
}

impl Knob {
    /// Every knob, v2 then v1.
    pub const ALL: [Self; 10] = [
        Self::CpuMax,
        Self::CpuWeight,
        Self::MemoryLow,
        Self::MemoryHigh,
        Self::IoWeight,
        Self::CpuCfsQuota,
        Self::CpuShares,
        Self::MemorySoftLimit,
        Self::MemoryLimit,
        Self::BlkioWeight,
    ];

    /// The file this knob is written to.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::CpuMax => "cpu.max",
            Self::CpuWeight => "cpu.weight",
            Self::MemoryLow => "memory.low",
            Self::MemoryHigh => "memory.high",
            Self::IoWeight => "io.weight",
            Self::CpuCfsQuota => "cpu.cfs_quota_us",
            Self::CpuShares => "cpu.shares",
            Self::MemorySoftLimit => "memory.soft_limit_in_bytes",
            Self::MemoryLimit => "memory.limit_in_bytes",
            Self::BlkioWeight => "blkio.bfq.weight",
        }
    }

    /// The knob written to `name`, if any.
    pub fn from_file_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.file_name() == name)
    }

    /// True for a v2 knob, false for a v1 one.
    pub fn is_v2(self) -> bool {
        matches!(
            self,
            Self::CpuMax | Self::CpuWeight | Self::MemoryLow | Self::MemoryHigh | Self::IoWeight
        )
    }

    /// The controller owning the file: a v2 controller name for v2 knobs,
    /// the v1 controller (its mount in `Mounts::v1`) for v1 knobs.
    pub fn controller(self) -> &'static str {
        let resource = self.resource();
        let name = if self.is_v2() {
            resource.v2_controller()
        } else {
            resource.v1_controller()
        };
        name.unwrap_or("")
    }

    /// The resource this knob reserves.
    pub fn resource(self) -> Resource {
        match self {
            Self::CpuMax | Self::CpuWeight | Self::CpuCfsQuota | Self::CpuShares => Resource::Cpu,
            Self::MemoryLow | Self::MemoryHigh | Self::MemorySoftLimit | Self::MemoryLimit => {
                Resource::Memory
            }
            Self::IoWeight | Self::BlkioWeight => Resource::Io,
        }
    }

    /// A hard knob is a cap: set too low it throttles (CPU quota, v2
    /// memory.high) or reclaims and OOM-kills (v1 memory.limit_in_bytes)
    /// the workload even when the host is idle. Soft knobs (weights,
    /// memory.low, the v1 soft limit) only matter under contention and
    /// cannot take anything away from an otherwise idle host.
    pub fn is_hard(self) -> bool {
        matches!(
            self,
            Self::CpuMax | Self::CpuCfsQuota | Self::MemoryHigh | Self::MemoryLimit
        )
    }

    /// The valid range of a weight knob (None for the others).
    pub fn weight_range(self) -> Option<RangeInclusive<u64>> {
        match self {
            Self::CpuWeight | Self::IoWeight => Some(1..=10_000),
            Self::CpuShares => Some(2..=262_144),
            Self::BlkioWeight => Some(1..=1_000),
            _ => None,
        }
    }

    /// The kernel's default of a weight knob: what a share of 1.0 maps to.
    pub fn default_weight(self) -> Option<u64> {
        match self {
            Self::CpuWeight | Self::IoWeight | Self::BlkioWeight => Some(100),
            Self::CpuShares => Some(1024),
            _ => None,
        }
    }

    /// A second file read (never written) to understand this knob's value:
    /// the CFS period beside the v1 quota.
    pub fn companion_file(self) -> Option<&'static str> {
        (self == Self::CpuCfsQuota).then_some("cpu.cfs_period_us")
    }

    /// The file in the same directory that holds current usage, for the
    /// memory caps' "never below usage" guard.
    pub fn usage_file(self) -> Option<&'static str> {
        match self {
            Self::MemoryLow | Self::MemoryHigh => Some("memory.current"),
            Self::MemorySoftLimit | Self::MemoryLimit => Some("memory.usage_in_bytes"),
            _ => None,
        }
    }
}

impl fmt::Display for Knob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

impl Serialize for Knob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.file_name())
    }
}

impl<'de> Deserialize<'de> for Knob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::from_file_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown cgroup knob {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_unique_and_round_trip() {
        for k in Knob::ALL {
            assert_eq!(Knob::from_file_name(k.file_name()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<Knob>(&json).unwrap(), k);
        }
        assert!(serde_json::from_str::<Knob>("\"cpu.nope\"").is_err());
    }

    #[test]
    fn each_resource_has_one_soft_and_at_most_one_hard_knob_per_layout() {
        for r in [Resource::Cpu, Resource::Memory, Resource::Io] {
            for v2 in [true, false] {
                let knobs = r.knobs(v2);
                assert!(!knobs.is_empty());
                assert!(knobs.iter().all(|k| k.is_v2() == v2 && k.resource() == r));
                assert!(!knobs[0].is_hard(), "{:?} soft first", knobs[0]);
                assert!(knobs.iter().filter(|k| k.is_hard()).count() <= 1);
            }
        }
        assert!(Resource::Net.knobs(true).is_empty() && Resource::Net.knobs(false).is_empty());
    }

    #[test]
    fn controllers_and_hardness() {
        assert_eq!(Knob::IoWeight.controller(), "io");
        assert_eq!(Knob::BlkioWeight.controller(), "blkio");
        assert_eq!(Knob::MemoryLimit.controller(), "memory");
        let hard: Vec<_> = Knob::ALL.into_iter().filter(|k| k.is_hard()).collect();
        assert_eq!(
            hard,
            [
                Knob::CpuMax,
                Knob::MemoryHigh,
                Knob::CpuCfsQuota,
                Knob::MemoryLimit
            ]
        );
    }
}
