//! Shadow's agent: observes every cgroup from inside the kernel and forecasts
//! what each one will need.
//!
//! Layout:
//! - [`btf`]: struct member offsets from the running kernel's BTF, handed to
//!   the BPF programs as globals (aya cannot emit CO-RE relocations).
//! - [`cgroups`]: cgroup mounts and the cgroup id → path index.
//! - [`probes`]: loads and attaches the BPF programs, with actionable errors.
//! - [`collector`]: reads the per-CPU counter map each tick and turns
//!   counters into per-interval deltas per cgroup.
//! - [`counter_map`]: batched reads of the kernel's counter map.
//! - [`pipeline`]: the per-tick machinery (probes, collector, forecasts,
//!   hints, transmitter) behind every front end, as [`pipeline::Row`]s.
//! - [`observe`]: the `observe` subcommand's output (JSON lines or a table).
//! - [`host`]: wall clock and host name.
//! - [`logging`]: log setup shared by both binaries.
//! - [`forecast`]: the online forecasters (pure code, time passed in).
//! - [`plot`]: line charts as standalone SVG (reports, backtests).
//! - [`hint`]: the hint socket: applications announce expected demand.
//! - [`shadow`]: one forecaster per observed cgroup (`observe --forecast`).
//! - [`backtest`]: rolling-origin evaluation of forecasters on traces.
//! - [`top`]: `shadow-agent top`, the pipeline as a live terminal table.
//! - [`transmit`]: sends forecasts and usage to the orchestrator.
//! - [`wire`]: the versioned protocol between agents and the orchestrator.
//! - [`units`]: byte amounts with binary units (`2GiB`).

pub mod backtest;
pub mod btf;
pub mod cgroups;
pub mod collector;
pub mod config;
pub mod counter_map;
pub mod duration;
pub mod forecast;
pub mod hint;
pub mod host;
pub mod logging;
pub mod metrics;
pub mod observe;
pub mod pipeline;
pub mod plot;
pub mod probes;
pub mod shadow;
pub mod stop;
pub mod top;
pub mod transmit;
pub mod units;
pub mod wire;
