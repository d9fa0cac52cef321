//! Shadow's agent: observes every cgroup from inside the kernel and forecasts
//! what each one will need.
//!
//! The pieces it shares with the orchestrator live in their own crates under
//! `agent/`: `shadow-wire` (the protocol and its transport), `shadow-forecast`
//! (the forecasters, pure code) and `shadow-common` (host facts, signals,
//! logging, the configuration file, cgroup mounts, plots, the metrics HTTP
//! responder). This crate holds what only the agent does.
//!
//! Layout:
//! - [`btf`]: struct member offsets from the running kernel's BTF, handed to
//!   the BPF programs as globals (aya cannot emit CO-RE relocations).
//! - [`probes`]: loads and attaches the BPF programs, with actionable errors.
//! - [`cgroups`]: the cgroup id → path index.
//! - [`counter_map`]: batched reads of the kernel's counter map.
//! - [`collector`]: reads the per-CPU counter map each tick and turns
//!   counters into per-interval deltas per cgroup.
//! - [`memory`]: each cgroup's memory in use, read from cgroupfs at each
//!   tick.
//! - [`shadow`]: one forecaster per observed cgroup and resource.
//! - [`hint`]: the hint socket: applications announce expected demand.
//! - [`transmit`]: sends forecasts and usage to the orchestrator and passes
//!   on the reservations it sends back.
//! - [`reservations`]: those reservations as the pipeline holds them.
//! - [`pipeline`]: the per-tick machinery (probes, collector, forecasts,
//!   hints, transmitter, reservations) behind every front end, as
//!   [`pipeline::Row`]s; the data goes forward, one step after another.
//! - [`observe`]: the `observe` subcommand's output (JSON lines or a table).
//! - [`top`]: `shadow-agent top`, the pipeline as a live terminal table.
//! - [`metrics`]: the agent's Prometheus endpoint.
//! - [`backtest`]: rolling-origin evaluation of forecasters on traces.

pub mod backtest;
pub mod btf;
pub mod cgroups;
pub mod collector;
pub mod counter_map;
pub mod hint;
pub mod memory;
pub mod metrics;
pub mod observe;
pub mod pipeline;
pub mod probes;
pub mod reservations;
pub mod shadow;
pub mod top;
pub mod transmit;
