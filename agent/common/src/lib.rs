//! What both Shadow binaries share and neither owns: facts about the host,
//! stop and reload signals, logging, units and durations, the one
//! configuration file's shared pieces (and the agent's `[agent]` table,
//! which the orchestrator checks too), where the cgroup trees are mounted,
//! line charts, and the metrics HTTP responder. Nothing here touches the
//! kernel's BPF side or a terminal, so the orchestrator builds without them.
//!
//! Layout:
//! - [`host`]: wall clock, host name, and the host's CPUs and memory (one
//!   reader for both binaries).
//! - [`stop`]: SIGINT/SIGTERM/SIGHUP as flags the main loops check.
//! - [`logging`]: tracing set up the same way in both binaries.
//! - [`units`] and [`duration`]: byte amounts and durations as people write them.
//! - [`config`]: the shared configuration file, its checked value types,
//!   and the agent's `[agent]` table.
//! - [`mounts`]: the cgroup v2 and v1 mount points.
//! - [`values`]: cgroup knob values in the kernel's text formats (`cpu.max`,
//!   memory amounts, `io.weight`), parsed once for every reader.
//! - [`plot`]: line charts as standalone SVG (backtests, benchmarks).
//! - [`http`]: the minimal HTTP responder behind both metrics endpoints.
//! - [`peer`]: a Unix socket peer's credentials from the kernel.

pub mod config;
pub mod duration;
pub mod host;
pub mod http;
pub mod logging;
pub mod mounts;
pub mod peer;
pub mod plot;
pub mod stop;
pub mod units;
pub mod values;
