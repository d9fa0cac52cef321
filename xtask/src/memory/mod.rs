//! `cargo xtask bench memory`: memory end to end (issue 14). A service
//! whose working set (pages of a dataset file it serves from) grows and
//! shrinks in phases, under a memory ceiling, beside a neighbour that
//! fills the page cache with random reads of a large file; the two share a
//! budget, so the neighbour's ceiling is the budget less the service's and
//! every byte reserved is cache the neighbour loses. One policy sets the
//! service's ceiling per run:
//!
//! - static (levels from the mean working set to the largest plus a
//!   tenth), reactive (up at once on usage x headroom, at least doubling a
//!   ceiling that was hit, down slowly; headroom swept), Shadow (agent and
//!   orchestrator with the shipped defaults, its band quantile swept);
//! - measured: the service's time in direct reclaim (the agent's kernel-side
//!   probe, for every policy), its major faults (`memory.stat`), p99
//!   latency from each request's scheduled time, OOM kills, reserved and
//!   used GiB-seconds (the kernel's ceiling and usage, integrated), what
//!   the neighbour read;
//! - scenarios: phases (growth unannounced) and hinted (each growth
//!   announced ahead, to Shadow through the hint socket and to the
//!   reactive rule directly, so the baseline has the signal Shadow has);
//! - rounds (1 by default: a round of a scenario is about 25 minutes),
//!   the policies' order shuffled per round from a printed seed; medians.
//!
//! Layout: `cgroup` (the memory files on v1 or v2), `policy` (families,
//! sweep, the reactive rule), `run` (one run), `report` (table, goals,
//! JSON).

mod cgroup;
mod policy;
mod report;
mod run;

use std::{fs, io::Write as _, path::Path, time::Duration};

use anyhow::{Context as _, ensure};
use shadow_tests::phases::{self, Phase};

use crate::{cmd, demo, e2e};
use cgroup::Hierarchy;
use policy::{Family, MIB};
use run::{Service, Setup};

/// Settings of `bench memory` (with `--quick`, `--order-seed`, `--tick-ms`,
/// `--out` and `--runs`, shared with e2e).
#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    /// memory: scenarios (comma-separated): phases (the working set grows
    /// and shrinks unannounced), hinted (the same, each growth announced
    /// --mem-hint-ahead before it: to Shadow through the hint socket, to
    /// the reactive rule directly).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "phases,hinted"
    )]
    mem_scenario: Vec<Scenario>,
    /// memory: how long before each growth the hinted scenario announces
    /// it (e.g. 3s).
    #[arg(long, default_value = "3s", value_parser = shadow_common::duration::parse)]
    mem_hint_ahead: Duration,
    /// memory: only these policy families (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    mem_family: Vec<Family>,
    /// memory: the budget the service and the neighbour share, MiB.
    #[arg(long, default_value_t = 1024)]
    mem_budget_mib: u64,
    /// memory: the service's phases, SECONDS:MIB of working set, repeated
    /// in order [default: 10:128,12:512,8:256 three times, then 5:128;
    /// --quick: once].
    #[arg(long)]
    mem_phases: Option<String>,
    /// memory: the service's requests per second.
    #[arg(long, default_value_t = 200.0)]
    mem_rate: f64,
    /// memory: random pages of the working set each request reads.
    #[arg(long, default_value_t = 64)]
    mem_pages: u64,
    /// memory: how fast a growing working set is read in, MiB/s.
    #[arg(long, default_value_t = 1024.0)]
    mem_load_mibps: f64,
    /// memory: the service's worker threads.
    #[arg(long, default_value_t = 4)]
    mem_workers: usize,
    /// memory: the service's ceiling as created (the operator's, for the
    /// reactive rule and Shadow) = mean working set x (1 + margin).
    #[arg(long, default_value_t = 0.25)]
    mem_margin: f64,
}

/// The memory benchmark's scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Phases,
    Hinted,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Phases => "phases",
            Self::Hinted => "hinted",
        }
    }
}

/// The default phases: a cycle of rest, load and serve, shrink.
const CYCLE: &str = "10:128,12:512,8:256";

/// Runs every policy for `runs` rounds [default: 1].
pub fn run(args: &MemoryArgs, shared: &e2e::E2eArgs, runs: Option<usize>) -> anyhow::Result<()> {
    let runs = runs.unwrap_or(1);
    let phases = args.mem_phases.clone().unwrap_or_else(|| {
        let cycles = if shared.quick { 1 } else { 3 };
        format!("{},5:128", vec![CYCLE; cycles].join(","))
    });
    let parsed = phases::parse(&phases)?;
    let (mean, largest) = working_set(&parsed);
    let seconds: f64 = parsed.iter().map(|p| p.seconds).sum();
    let budget = args.mem_budget_mib as f64 * MIB;
    ensure!(
        largest * 1.1 < budget,
        "the largest working set ({:.0} MiB) needs a budget above {:.0} MiB",
        largest / MIB,
        largest * 1.1 / MIB
    );
    let hierarchy = Hierarchy::detect()?;
    eprintln!("memory: ceilings on the {}", hierarchy.describe());
    demo::prepare()?;
    let dir = cmd::root().join("target/memory");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dataset = dir.join("dataset");
    let neighbour_file = dir.join("neighbour");
    ensure_file(&dataset, largest as u64)?;
    ensure_file(&neighbour_file, budget as u64)?;
    let mut setup = Setup {
        hierarchy,
        tick: Duration::from_millis(shared.tick_ms),
        budget,
        initial: (mean * (1.0 + args.mem_margin) / MIB).round() * MIB,
        least: 64.0 * MIB,
        dataset,
        neighbour_file,
        service: Service {
            rate: args.mem_rate,
            pages: args.mem_pages,
            load_mibps: args.mem_load_mibps,
            phases,
            workers: args.mem_workers,
        },
        hint_ahead: None,
        phases: parsed,
    };
    let families = if args.mem_family.is_empty() {
        Family::ALL.to_vec()
    } else {
        args.mem_family.clone()
    };
    let plan = policy::sweep(mean, largest, shared.quick, &families);
    let mut scenarios = args.mem_scenario.clone();
    scenarios.dedup();
    let seed = shared.order_seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!(
        "memory: mean working set {:.0} MiB, largest {:.0} MiB, budget {:.0} MiB, created ceiling {:.0} MiB; {} scenarios x {} policies x {runs} rounds of {seconds:.0} s (about {:.0} min); order seed {seed}",
        mean / MIB,
        largest / MIB,
        budget / MIB,
        setup.initial / MIB,
        scenarios.len(),
        plan.len(),
        (scenarios.len() * plan.len()) as f64 * (seconds + 12.0) * runs as f64 / 60.0
    );
    let out = shared.out.clone().unwrap_or_else(|| dir.clone());
    for (k, scenario) in scenarios.into_iter().enumerate() {
        setup.hint_ahead = (scenario == Scenario::Hinted).then_some(args.mem_hint_ahead);
        let mut done = Vec::new();
        for round in 1..=runs {
            for i in e2e::order(plan.len(), seed, round, 7 + k) {
                let p = plan[i];
                eprintln!(
                    "memory: round {round}/{runs}: {}: {} (load {})",
                    scenario.name(),
                    p.label(),
                    e2e::load_1m()
                );
                let r = run::run(&setup, p, round, i).with_context(|| {
                    format!("round {round}, {}, {}", scenario.name(), p.label())
                })?;
                eprintln!("memory:   {}", report::line(&r));
                done.push(r);
            }
        }
        report::write(&setup, scenario, &plan, &done, &out, seed, runs)?;
    }
    Ok(())
}

/// Time-weighted mean and largest working set, bytes.
fn working_set(phases: &[Phase]) -> (f64, f64) {
    let seconds: f64 = phases.iter().map(|p| p.seconds).sum();
    let weighted: f64 = phases.iter().map(|p| p.seconds * p.mib * MIB).sum();
    let largest = phases.iter().map(|p| p.mib * MIB).fold(0.0, f64::max);
    (weighted / seconds, largest)
}

/// A file of `bytes` of non-zero data at `path` (kept between runs).
fn ensure_file(path: &Path, bytes: u64) -> anyhow::Result<()> {
    if fs::metadata(path).is_ok_and(|m| m.len() >= bytes) {
        return Ok(());
    }
    eprintln!("memory: writing {} ({} MiB)", path.display(), bytes >> 20);
    let mut f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8 | 1).collect();
    for _ in 0..bytes.div_ceil(1 << 20) {
        f.write_all(&chunk)?;
    }
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_working_set_is_weighted_by_time() {
        let (mean, largest) = working_set(&phases::parse("10:100,30:300").unwrap());
        assert_eq!((mean / MIB, largest / MIB), (250.0, 300.0));
    }
}
