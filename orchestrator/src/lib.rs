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

pub mod aggregate;
pub mod allocate;
pub mod book;
pub mod capacity;
pub mod config;
pub mod engine;
pub mod server;
