//! What the host has: the yardstick of the system-wide forecast and the
//! upper limit of the managed reservations.

use shadow_common::host;
use shadow_wire::Resource;

use crate::config::CapacityConfig;

/// Capacity per resource, in the protocol's units; `None` = unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Capacity {
    /// CPU cores available to the host's cgroups.
    pub cpu: Option<f64>,
    /// Memory in bytes.
    pub memory: Option<f64>,
    /// Block I/O bandwidth, bytes/s (only from configuration).
    pub io: Option<f64>,
    /// Network bandwidth, bytes/s (only from configuration).
    pub net: Option<f64>,
}

impl Capacity {
    /// Reads CPU and memory from the host, then applies the configuration's
    /// values on top (they win: an operator may keep part of the host back).
    pub fn detect(config: &CapacityConfig) -> Self {
        Self {
            cpu: Some(config.cpu.unwrap_or_else(host::cores)),
            memory: config.memory.map(|a| a.0).or_else(host::memory_bytes),
            io: config.io.map(|a| a.0),
            net: config.net.map(|a| a.0),
        }
    }

    /// Capacity of one resource.
    pub fn of(&self, resource: Resource) -> Option<f64> {
        match resource {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
            Resource::Io => self.io,
            Resource::Net => self.net,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_has_cpus_and_memory() {
        let c = Capacity::detect(&CapacityConfig::default());
        assert!(c.cpu.is_some_and(|n| n >= 1.0));
        assert!(c.memory.is_some_and(|m| m > 1e8));
        assert_eq!(c.io, None);
    }
}
