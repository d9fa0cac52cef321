//! Facts about this host that several parts read: the wall clock (sample
//! timestamps, wire `at_ms`) and the host name (wire `Hello`, `Welcome`).

use std::time::{SystemTime, UNIX_EPOCH};

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
