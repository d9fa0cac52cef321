//! `cargo xtask bench e2e`: the headline benchmark (issue 6). A service in
//! its own sandbox cgroup (v1 cpu with a CFS quota on hybrid hosts, v2
//! `cpu.max` on pure v2 ones) serves an open-loop load with bursts,
//! periodic or (scenario `hinted`) at irregular times each announced ahead
//! through the hint socket to Shadow; three policies set the quota, one run
//! each per round and scenario, interleaved (S R P S R P ...), same
//! schedule and seed:
//!
//! 1. static: the schedule's mean CPU demand plus a margin, fixed;
//! 2. reactive: every tick, the usage just observed (cpuacct) over a target
//!    utilisation, within the same floor and ceiling as Shadow;
//! 3. shadow: orchestrator and agent (tests' scenario pieces), nothing else
//!    writing the quota; in the hinted scenario also told of each burst.
//!
//! Per run: latency p50/p99/p99.9, throttling (v1 cpu.stat), reserved and
//! used CPU-seconds, slack, and per burst how early the quota went up.
//! Per scenario, medians over runs go to a table; everything to
//! `results-<scenario>.json`; round 1 to `e2e-<scenario>.svg` (in `--out`,
//! default target/e2e).
//!
//! Layout: `load` (pattern, schedule, open-loop client), `hinter` (the
//! hinted scenario's announcements), `run` (one run of one policy),
//! `report` (figures, table, JSON, plot).

mod hinter;
mod load;
mod report;
mod run;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, ensure};
use shadow_tests::scenario::CpuHierarchy;

use crate::{cmd, demo};
use load::{Pattern, Scenario};
use run::{Policy, Setup};

/// Settings of `bench e2e` (ignored by the other benchmarks).
#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    /// e2e: when bursts come, one or more (comma-separated): periodic
    /// (every --period) or hinted (irregular seeded gaps with the same
    /// mean, each burst announced --hint-ahead to Shadow through its hint
    /// socket).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "periodic")]
    scenario: Vec<Scenario>,
    /// e2e: how long before each burst the hinted scenario announces it
    /// (e.g. 3s, 1500ms).
    #[arg(long, default_value = "3s", value_parser = shadow_common::duration::parse)]
    hint_ahead: Duration,
    /// e2e: Shadow's look-ahead in ticks (the orchestrator's `lead`, 1..=6):
    /// the reservation covers the highest band over the next `lead` ticks.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=6))]
    lead: u16,
    /// e2e: bursts per run (the first one period in; a run ends half a
    /// period after the last one starts).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..))]
    bursts: u32,
    /// e2e: seconds between burst starts (their mean, for hinted).
    #[arg(long, default_value_t = 10.0)]
    period: f64,
    /// e2e: seconds a burst lasts.
    #[arg(long, default_value_t = 3.0)]
    burst: f64,
    /// e2e: requests per second outside bursts.
    #[arg(long, default_value_t = 100.0)]
    base_rate: f64,
    /// e2e: mean CPU µs per request outside bursts.
    #[arg(long, default_value_t = 2000.0)]
    base_cost_us: f64,
    /// e2e: requests per second in bursts.
    #[arg(long, default_value_t = 300.0)]
    burst_rate: f64,
    /// e2e: mean CPU µs per request in bursts.
    #[arg(long, default_value_t = 4000.0)]
    burst_cost_us: f64,
    /// e2e: client connections (the service has a thread per connection).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// e2e: seed of arrivals and costs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// e2e: reactive control period, Shadow's tick and agent interval, ms.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(100..=10_000))]
    tick_ms: u64,
    /// e2e: the reactive policy's target utilisation (quota = usage / target).
    #[arg(long, default_value_t = 0.8)]
    target: f64,
    /// e2e: static quota = mean demand x (1 + margin).
    #[arg(long, default_value_t = 0.25)]
    margin: f64,
    /// e2e: floor and ceiling of the reactive and Shadow quotas, cores.
    #[arg(long, default_value_t = 0.2)]
    floor: f64,
    /// See --floor.
    #[arg(long, default_value_t = 1.9)]
    ceiling: f64,
    /// e2e: run this `sh -c` command in the sandbox instead of the built-in
    /// service (no latency then; throttling and reservation figures still;
    /// burst starts from its JSON lines with "start", if it prints them).
    /// Needs --static-cores.
    #[arg(long)]
    workload: Option<String>,
    /// e2e: the static quota in cores [default: from the schedule's mean
    /// demand and --margin].
    #[arg(long)]
    static_cores: Option<f64>,
    /// e2e: folder for results-<scenario>.json and e2e-<scenario>.svg
    /// [default: target/e2e].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `runs` rounds of the three policies, interleaved.
pub fn run(args: &E2eArgs, runs: usize) -> anyhow::Result<()> {
    ensure!(
        args.burst > 0.0 && args.burst < args.period,
        "--burst must be shorter than --period"
    );
    ensure!(
        args.target > 0.0 && args.target <= 1.0,
        "--target must be in (0, 1]"
    );
    ensure!(
        args.workload.is_none() || args.static_cores.is_some(),
        "--workload needs --static-cores (its mean demand is not known in advance)"
    );
    ensure!(
        args.workload.is_none() || !args.scenario.contains(&Scenario::Hinted),
        "--scenario hinted drives the built-in service; it cannot announce a custom --workload's bursts"
    );
    let mut scenarios = args.scenario.clone();
    scenarios.dedup();
    let hierarchy = CpuHierarchy::detect().context("choosing the sandbox's cpu controller")?;
    eprintln!("e2e: quota on the {}", hierarchy.describe());
    demo::prepare()?;
    let setups: Vec<(Setup, String)> = scenarios
        .iter()
        .map(|&s| setup(args, s, hierarchy))
        .collect();
    let per_round: f64 = setups
        .iter()
        .map(|(s, _)| 3.0 * (s.pattern.duration_s() + 10.0))
        .sum();
    eprintln!(
        "e2e: {runs} rounds x {} scenarios x 3 policies, {} bursts each, about {:.0} min",
        setups.len(),
        args.bursts,
        runs as f64 * per_round / 60.0
    );
    for (s, from) in &setups {
        eprintln!(
            "e2e: {}: static quota {:.3} cores ({from})",
            s.pattern.scenario.name(),
            s.static_cores
        );
    }
    let mut done: Vec<Vec<run::Run>> = setups.iter().map(|_| Vec::new()).collect();
    for round in 1..=runs {
        for ((setup, _), done) in setups.iter().zip(&mut done) {
            let scenario = setup.pattern.scenario.name();
            for policy in Policy::ALL {
                eprintln!("e2e: round {round}/{runs}: {scenario}: {}", policy.name());
                let r = run::run(setup, policy, round)
                    .with_context(|| format!("round {round}, {scenario}, {}", policy.name()))?;
                eprintln!("e2e:   {}", report::Figures::of(&r).line());
                ensure!(
                    r.written_elsewhere.is_empty(),
                    "the orchestrator wrote outside the sandbox: {:?}",
                    r.written_elsewhere
                );
                done.push(r);
            }
        }
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| cmd::root().join("target/e2e"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for ((setup, from), runs) in setups.iter().zip(&done) {
        report::write(setup, from, runs, &out)?;
    }
    Ok(())
}

/// The settings of one scenario; with where its static quota came from.
fn setup(args: &E2eArgs, scenario: Scenario, hierarchy: CpuHierarchy) -> (Setup, String) {
    let pattern = Pattern {
        scenario,
        period_s: args.period,
        burst_s: args.burst,
        bursts: args.bursts,
        base_rate: args.base_rate,
        base_cost_us: args.base_cost_us,
        burst_rate: args.burst_rate,
        burst_cost_us: args.burst_cost_us,
        connections: args.connections,
        seed: args.seed,
    };
    let schedule = pattern.schedule();
    let mean = pattern.mean_cores(&schedule);
    let (static_cores, static_from) = match args.static_cores {
        Some(c) => (c, "--static-cores".to_owned()),
        None => (
            mean * (1.0 + args.margin),
            format!(
                "the schedule's mean demand {mean:.3} cores x (1 + {})",
                args.margin
            ),
        ),
    };
    let setup = Setup {
        pattern,
        schedule,
        workload: args.workload.clone(),
        hierarchy,
        static_cores,
        tick: Duration::from_millis(args.tick_ms),
        target: args.target,
        floor: args.floor,
        ceiling: args.ceiling,
        hint_ahead: args.hint_ahead,
        lead: args.lead,
    };
    (setup, static_from)
}
