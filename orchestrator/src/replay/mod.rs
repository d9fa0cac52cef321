//! The fleet replay (`shadow-orchestrator replay`): per-VM traces replayed
//! one 5-minute step at a time through reservation recommenders, scored
//! the way Google scored Autopilot (relative slack, violations, seriously
//! impacted VM-days, limit changes), under
//! `shared/data/traces/bitbrains/PROTOCOL.md`. See `docs/replay.md`.
//!
//! Every recommender, the five standard baselines and Shadow, implements
//! [`Recommender`]: told what was observed at the step before, it answers
//! with the limit for this step, as it would on a host. Shadow's is the
//! agent's forecaster and reporter feeding the orchestrator's book and
//! reservation rule, the code that runs on hosts.
//!
//! Layout:
//! - `input.rs`: bounded, validated CSV reading (plain or zstd).
//! - `grid.rs`: rows onto the protocol's 300-s grid.
//! - `histogram.rs`: VPA's exponential-bucket decaying histogram.
//! - `baselines.rs`: manual, vpa, autopilot-mw, max-24h, p95-last-1h.
//! - `policy.rs`: Shadow as a recommender.
//! - `score.rs`: per VM-day scoring and the set's figures.
//! - `run.rs`: drives recommenders over grids and times them.
//! - `system.rs`: the system-wide forecast of the summed series.
//! - `throughput.rs`: steps per second with thousands of series.
//! - `report.rs`, `plot.rs`: JSON lines, the table, the SVG.
//! - `cli.rs`: the subcommand's arguments and entry point.

pub mod baselines;
pub mod cli;
pub mod grid;
pub mod histogram;
pub mod input;
pub mod plot;
pub mod policy;
pub mod report;
pub mod run;
pub mod score;
pub mod system;
pub mod throughput;

pub use cli::ReplayArgs;

use histogram::Buckets;

/// What a recommender learns at one step, and what it may read.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Input {
    /// Usage observed at the previous step; None when that step is
    /// missing (and at the first step).
    pub previous: Option<f64>,
    /// Capacity provisioned at this step, when the trace records it (only
    /// the manual baseline reads it).
    pub capacity: Option<f64>,
}

/// A reservation recommender, fed one step at a time: it sees only the
/// past (and its own outputs), in O(1) or O(window) work per step.
pub trait Recommender {
    /// The limit for the current step; None while it has nothing to go on.
    fn step(&mut self, input: Input) -> Option<f64>;

    /// Bytes of state kept for the series (itself and what it owns).
    fn state_bytes(&self) -> usize;
}

/// Unit of a series: sets the baselines' histogram resolution (PROTOCOL.md
/// §4: VPA's 0.001 core ≈ 1 MHz, 10 MB, 0.01 %).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// CPU in MHz.
    CpuMhz,
    /// CPU in percent of the VM.
    CpuPct,
    /// Memory in KB.
    MemKb,
}

impl Unit {
    /// The histogram buckets for this unit.
    pub fn buckets(self) -> Buckets {
        match self {
            Self::CpuMhz => Buckets::new(1.0, 1e6),
            Self::CpuPct => Buckets::new(0.01, 1e3),
            Self::MemKb => Buckets::new(1e4, 1e9),
        }
    }

    /// Memory is a level; CPU a rate.
    pub fn is_memory(self) -> bool {
        self == Self::MemKb
    }

    /// Name of the resource in the output.
    pub fn resource(self) -> &'static str {
        if self.is_memory() { "memory" } else { "cpu" }
    }
}
