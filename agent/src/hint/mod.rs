//! The hint socket: applications announce the demand they expect ("4 cores
//! and 2 GiB for 5 minutes, starting in 30 s") so the forecast carries it
//! before any history could show it.
//!
//! Identity comes from the kernel (SO_PEERCRED and `/proc/<pid>/cgroup`),
//! never from the message; everything a client can make the agent hold is
//! bounded (line length, live hints per cgroup, request rate, connections,
//! idle time), so a broken or hostile client costs the others nothing.
//! docs/hints.md is the user-facing specification.
//!
//! Layout:
//! - [`protocol`]: request and reply lines, pure parsing and validation.
//! - [`ledger`]: live hints, rate limits, trust; the prior a hint puts under
//!   a forecast (pure, time passed in).
//! - [`peer`]: who is calling (kernel credentials, cgroup) and what it may
//!   name.
//! - [`server`]: the Unix socket, one bounded thread per connection.
//! - [`client`]: a small client for programs.
//! - [`cli`]: `shadow-agent hint`, the client for shell scripts.

pub mod cli;
pub mod client;
pub mod ledger;
pub mod peer;
pub mod protocol;
pub mod server;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use ledger::Ledger;
pub use protocol::{Accepted, Amounts, Code, Command, Refusal, Reply, Request, parse_line};

/// Where the agent listens by default.
pub const DEFAULT_SOCKET: &str = "/run/shadow/hint.sock";

/// Bandwidth assumed for block I/O and network when the host's is unknown
/// (bytes/s): amounts are not clamped below it.
pub const UNKNOWN_BANDWIDTH: f64 = 100.0 * (1u64 << 30) as f64;

/// Everything a client can make the server hold or do, bounded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClientLimits {
    /// Longest request line in bytes (without the newline).
    pub max_line: usize,
    /// Live (pending or running) hints per cgroup.
    pub max_live: usize,
    /// Live hints on the whole host.
    pub max_total: usize,
    /// Requests a caller's cgroup may send in a burst...
    pub rate_burst: f64,
    /// ...and per second after it (token bucket).
    pub rate_per_s: f64,
    /// Latest allowed `start_in`.
    pub max_start_in: Duration,
    /// Longest allowed `duration`.
    pub max_duration: Duration,
    /// A connection silent for this long is closed.
    pub idle: Duration,
    /// Connections served at once; more are refused (`busy`).
    pub max_connections: usize,
    /// Amounts above capacity × this are refused as absurd (a typo);
    /// amounts between capacity and that are clamped to capacity.
    pub absurd_factor: f64,
    /// The host's capacity per resource.
    pub capacity: Amounts,
}

impl ClientLimits {
    /// The defaults (docs/hints.md) for a host with `capacity`.
    pub fn new(capacity: Amounts) -> Self {
        Self {
            max_line: 4096,
            max_live: 8,
            max_total: 4096,
            rate_burst: 16.0,
            rate_per_s: 2.0,
            max_start_in: Duration::from_secs(3600),
            max_duration: Duration::from_secs(6 * 3600),
            idle: Duration::from_secs(30),
            max_connections: 64,
            absurd_factor: 1000.0,
            capacity,
        }
    }
}

/// This host's capacity ([`shadow_common::host`]: the CPUs this process
/// may use and `MemTotal`); block and network bandwidth are unknown to the
/// agent ([`UNKNOWN_BANDWIDTH`]).
pub fn host_capacity() -> Amounts {
    Amounts {
        cpu: shadow_common::host::cores(),
        memory: shadow_common::host::memory_bytes().unwrap_or(f64::MAX),
        io: UNKNOWN_BANDWIDTH,
        net: UNKNOWN_BANDWIDTH,
    }
}
