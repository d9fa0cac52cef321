//! Shadow's orchestrator: receives the agents' forecasts over the wire
//! protocol, combines them into a system-wide forecast, and raises the
//! managed cgroups' knobs ahead of predicted demand (soft reservations),
//! within guardrails, restoring every original value when it stops.
//!
//! Layout:
//! - [`config`]: the configuration file (what may be written, bounds).
//! - [`capacity`]: what the host has.
//! - [`server`]: agents' connections (Unix socket and TCP).
//! - [`book`]: per component and resource, the forecast held, usage, and
//!   the adaptive margin.
//! - [`aggregate`]: the system-wide forecast with diversification.
//! - [`allocate`]: fitting reservations within capacity by priority.
//! - [`engine`]: each tick's decisions.
//! - [`actuator`]: which cgroup knobs exist on this host (v2 or v1 per
//!   controller), their values in the kernel's own formats, and guarded
//!   writes (rate limit, cooldown, never a hard cap below usage, dry-run).
//!   Its `journal` holds every original value, fsynced before the first
//!   write that changes it, so a normal exit and the start after a crash
//!   put it back.
//! - [`apply`]: decisions turned into knob writes.
//! - [`daemon`]: the loop (messages in, a cycle per tick, writes out,
//!   reservation state back, originals restored at the end), behind
//!   `run(control)` so it runs in-process in tests.
//! - [`metrics`]: the Prometheus endpoint.
//! - [`replay`]: the fleet replay (`shadow-orchestrator replay`): per-VM
//!   traces through the baselines and through Shadow's forecaster and
//!   reservation policy, scored like Autopilot.

pub mod actuator;
pub mod aggregate;
pub mod allocate;
pub mod apply;
pub mod book;
pub mod capacity;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod metrics;
pub mod replay;
pub mod server;
