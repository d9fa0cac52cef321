//! Facts about this host that several parts read: the wall clock (sample
//! timestamps, wire `at_ms`), the host name (wire `Hello`, `Welcome`), and
//! what it has (the agent's hint bounds and demand cap, the orchestrator's
//! capacity): one reader, so the two binaries cannot disagree.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{mounts::Mounts, values::CpuQuota};

/// Now, in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    (unix_now() * 1e3) as u64
}

/// This host's name, or "localhost" if it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// CPUs this process may run on, further limited by a CPU quota on its own
/// v2 cgroup (a host that is itself a container).
pub fn cores() -> f64 {
    let cpus = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    own_quota_cores().map_or(cpus, |q| q.min(cpus))
}

/// The v2 `cpu.max` of this process's cgroup, in cores, if limited.
fn own_quota_cores() -> Option<f64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let file = Mounts::from_system()
        .ok()?
        .v2?
        .join(path.trim_start_matches('/'))
        .join("cpu.max");
    let quota = CpuQuota::parse_cpu_max(std::fs::read_to_string(file).ok()?.trim_end()).ok()?;
    quota.quota_us.map(|_| quota.cores())
}

/// `MemTotal` from /proc/meminfo, in bytes; None if it cannot be read.
pub fn memory_bytes() -> Option<f64> {
    parse_mem_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
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
    fn parses_mem_total() {
        assert_eq!(
            parse_mem_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24_576_000.0 * 1024.0)
        );
        assert_eq!(parse_mem_total("garbage"), None);
    }

    #[test]
    fn this_host_has_cpus_and_memory() {
        assert!(cores() > 0.0);
        assert!(memory_bytes().is_some_and(|m| m > 1e8));
    }
}
