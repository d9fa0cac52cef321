//! What the host has: the yardstick of the system-wide forecast and the
//! upper limit of the managed reservations.

use shadow_agent::wire::Resource;

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
            cpu: config.cpu.or_else(host_cores),
            memory: config.memory.map(|a| a.0).or_else(host_memory),
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

/// CPUs this process may run on, further limited by a CPU quota on the
/// orchestrator's own cgroup (a host that is itself a container).
fn host_cores() -> Option<f64> {
    let cpus = std::thread::available_parallelism().ok()?.get() as f64;
    Some(own_quota_cores().map_or(cpus, |q| q.min(cpus)))
}

/// The v2 `cpu.max` of this process's cgroup, in cores, if limited.
fn own_quota_cores() -> Option<f64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mounts = shadow_agent::cgroups::Mounts::from_system().ok()?;
    let file = mounts
        .v2?
        .join(path.trim_start_matches('/'))
        .join("cpu.max");
    parse_cpu_max(&std::fs::read_to_string(file).ok()?)
}

/// "max 100000" → None; "150000 100000" → 1.5 cores.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut it = text.split_whitespace();
    let quota: f64 = it.next()?.parse().ok()?;
    let period: f64 = it.next()?.parse().ok()?;
    (period > 0.0).then(|| quota / period)
}

/// MemTotal from /proc/meminfo, in bytes.
fn host_memory() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&meminfo)
}

fn parse_mem_total(meminfo: &str) -> Option<f64> {
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_files() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(
            parse_mem_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24_576_000.0 * 1024.0)
        );
        assert_eq!(parse_mem_total("garbage"), None);
    }

    #[test]
    fn this_host_has_cpus_and_memory() {
        let c = Capacity::detect(&CapacityConfig::default());
        assert!(c.cpu.is_some_and(|n| n >= 1.0));
        assert!(c.memory.is_some_and(|m| m > 1e8));
        assert_eq!(c.io, None);
    }
}
