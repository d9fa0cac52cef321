//! `cargo xtask bench e2e`: the headline benchmark (issues 6 and 12).
//! A workload in its own sandbox cgroup (quota on v1 `cpu.cfs_quota_us`
//! on hybrid hosts, v2 `cpu.max` on pure v2 ones), a best-effort batch job
//! in a sibling cgroup whose quota is the host's CPUs minus the sandbox's,
//! and one policy setting the sandbox's quota and weight per run:
//!
//! - static (levels from the mean demand to the ceiling), burst (static
//!   plus the kernel's burst allowance), reactive-usage and
//!   reactive-demand (headroom swept), Shadow (shipped defaults, and its
//!   band quantile swept): each family a curve of (reserved core-seconds,
//!   p99), beside the neighbour's work;
//! - scenarios: periodic, hinted (irregular bursts announced to Shadow),
//!   irregular (the same, unannounced), pgbench (PostgreSQL under a
//!   trace-shaped open loop), or `--workload CMD`;
//! - rounds (5 by default), the policies' order shuffled per round from a
//!   printed seed; medians with min-max; the goals of issue 12 checked.
//!
//! Outputs per scenario in `--out` (default target/e2e): the summary
//! `results-<scenario>.json`, the frontier chart `e2e-<scenario>.svg`,
//! every run's details `runs-<scenario>.json` and time series
//! `runs-<scenario>.svg`; a full run (or `--publish`) also writes the
//! summary to docs/e2e/ and the chart to docs/.
//!
//! Layout: `policy` (families, sweeps, the reactive rules), `load`
//! (scenarios, the service's schedule and client), `pgbench` (the
//! database scenario), `hinter` (announcements), `knobs` (weight, burst,
//! idle; the demand signal), `neighbour` (the batch job), `run` (one run),
//! `stats` (medians, summary, goals), `report` (table, JSON, charts).

pub mod hinter;
mod knobs;
mod load;
pub mod neighbour;
mod pgbench;
pub mod policy;
mod report;
mod run;
pub mod stats;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, ensure};
use serde_json::json;
use shadow_tests::scenario::{CpuHierarchy, Sandbox};

use crate::{cmd, demo};
use load::{Pattern, Scenario, SplitMix};
use policy::{Family, Policy};
use run::{Load, Setup};

/// Settings of `bench e2e` (ignored by the other benchmarks).
#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    /// e2e: scenarios (comma-separated): periodic (bursts every --period),
    /// hinted (irregular seeded gaps with the same mean, each burst
    /// announced --hint-ahead to Shadow and to the reactive rules),
    /// irregular (the hinted schedule,
    /// no hints), pgbench (PostgreSQL, a trace-shaped open loop).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "periodic,hinted,irregular,pgbench"
    )]
    scenario: Vec<Scenario>,
    /// e2e: only these policy families (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    family: Vec<Family>,
    /// e2e: a development run: 3 static levels, 2 headrooms, 1 burst level,
    /// Shadow's default and quantile 0.99; 4 bursts of 2 s every 6 s;
    /// 60 s of pgbench; 1 round unless --runs. memory: one cycle of the
    /// phases, 3 static levels, 2 headrooms, Shadow's default and 0.99.
    #[arg(long)]
    pub quick: bool,
    /// e2e and memory: seed of the policies' order in each round [default:
    /// from the clock; printed].
    #[arg(long)]
    pub order_seed: Option<u64>,
    /// e2e: how long before each burst the hinted scenario announces it
    /// (e.g. 3s, 1500ms).
    #[arg(long, default_value = "3s", value_parser = shadow_common::duration::parse)]
    hint_ahead: Duration,
    /// e2e: Shadow's look-ahead in ticks (`lead`, 1..=6) [default: the
    /// shipped default, not written].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=6))]
    lead: Option<u16>,
    /// e2e: bursts per run (the first one period in; a run ends half a
    /// period after the last one starts) [default: 10; --quick 4].
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..))]
    bursts: Option<u32>,
    /// e2e: seconds between burst starts (their mean, for hinted and
    /// irregular) [default: 10; --quick 6].
    #[arg(long)]
    period: Option<f64>,
    /// e2e: seconds a burst lasts [default: 3; --quick 2].
    #[arg(long)]
    burst: Option<f64>,
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
    /// e2e: seed of arrivals, costs and irregular burst times.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// e2e and memory: control period of the reactive rules, Shadow's tick
    /// and agent interval, ms.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(100..=10_000))]
    pub tick_ms: u64,
    /// e2e: the sandbox's quota as created (what an operator set, and what
    /// Shadow restores) = mean demand x (1 + margin), for every policy but
    /// static and burst.
    #[arg(long, default_value_t = 0.25)]
    margin: f64,
    /// e2e: floor of the reactive quotas and of Shadow's rule, cores.
    #[arg(long, default_value_t = 0.2)]
    floor: f64,
    /// e2e: ceiling of the reactive quotas and of Shadow's rule, and the
    /// highest static level, cores.
    #[arg(long, default_value_t = 1.9)]
    ceiling: f64,
    /// e2e: run this `sh -c` command in the sandbox instead of a scenario
    /// (no latency then; burst starts from its JSON lines with "start", if
    /// it prints them; runs for the periodic pattern's length). Needs
    /// --mean-cores.
    #[arg(long)]
    workload: Option<String>,
    /// e2e: the custom workload's mean CPU demand, cores (the lowest
    /// static level).
    #[arg(long)]
    mean_cores: Option<f64>,
    /// e2e: pgbench: the 1 s CPU trace whose shape the rate follows
    /// [default: ../shared/data/traces/local/trace-pg_cpu_cores.csv].
    #[arg(long)]
    pg_trace: Option<PathBuf>,
    /// e2e: pgbench: trace seconds per 1 s segment.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pg_compress: u64,
    /// e2e: pgbench: segments (seconds) of load [default: the whole trace;
    /// --quick 60].
    #[arg(long)]
    pg_seconds: Option<usize>,
    /// e2e: pgbench: transactions per second at the trace's peak.
    #[arg(long, default_value_t = 1000.0)]
    pg_peak_tps: f64,
    /// e2e: pgbench: scale of the database (`pgbench -i -s`).
    #[arg(long, default_value_t = 10)]
    pg_scale: u32,
    /// e2e: pgbench: most connections per segment.
    #[arg(long, default_value_t = 8)]
    pg_clients: usize,
    /// e2e and memory: folder for every output [default: target/e2e,
    /// target/memory].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// e2e: also write the summaries to docs/e2e/ and the charts to docs/
    /// (done anyway by a full run: 5+ rounds, not --quick, every family).
    #[arg(long)]
    publish: bool,
}

/// The policies' order in `round` of scenario `scenario`: a permutation of
/// `0..n` drawn from `seed` (Fisher-Yates).
pub fn order(n: usize, seed: u64, round: usize, scenario: usize) -> Vec<usize> {
    let mut rng = SplitMix(
        seed ^ (round as u64).wrapping_mul(0xA24B_AED4_963E_E407)
            ^ (scenario as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25),
    );
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = ((rng.unit() * (i + 1) as f64) as usize).min(i);
        v.swap(i, j);
    }
    v
}

/// The host's 1-minute load average, as /proc/loadavg says it.
pub fn load_1m() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Runs every scenario's policies for `runs` rounds [default: 5; 1 with
/// --quick].
pub fn run(args: &E2eArgs, runs: Option<usize>) -> anyhow::Result<()> {
    let runs = runs.unwrap_or(if args.quick { 1 } else { 5 });
    ensure!(
        args.floor > 0.0 && args.floor < args.ceiling,
        "--floor must be above 0 and below --ceiling"
    );
    ensure!(
        args.workload.is_none() || args.mean_cores.is_some(),
        "--workload needs --mean-cores (its mean demand is not known in advance)"
    );
    let scenarios = match args.workload {
        Some(_) => vec![Scenario::Custom],
        None => {
            let mut s = args.scenario.clone();
            s.dedup();
            s
        }
    };
    let families = if args.family.is_empty() {
        Family::ALL.to_vec()
    } else {
        args.family.clone()
    };
    let hierarchy = CpuHierarchy::detect().context("choosing the sandbox's cpu controller")?;
    eprintln!("e2e: quota on the {}", hierarchy.describe());
    demo::prepare()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let work_rate = neighbour::calibrate().context("calibrating the batch job")?;
    eprintln!(
        "e2e: {cpus} CPUs; the batch job does {work_rate:.0} chunks per CPU-second; load {}",
        load_1m()
    );
    let mut setups = Vec::new();
    for &s in &scenarios {
        setups.push(setup(args, s, hierarchy, cpus, work_rate)?);
    }
    let plans: Vec<Vec<Policy>> = setups
        .iter()
        .map(|s| policy::sweep(s.mean_cores, args.ceiling, args.quick, &families))
        .collect();
    let seed = args.order_seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let minutes: f64 = setups
        .iter()
        .zip(&plans)
        .map(|(s, p)| p.len() as f64 * (s.duration_s() + 12.0) * runs as f64 / 60.0)
        .sum();
    eprintln!(
        "e2e: {runs} rounds, order seed {seed} (--order-seed {seed} repeats it), about {minutes:.0} min"
    );
    for (s, p) in setups.iter().zip(&plans) {
        eprintln!(
            "e2e: {}: mean demand {:.3} cores ({}); created quota {:.3}; {} policies: {}",
            s.scenario.name(),
            s.mean_cores,
            s.mean_from,
            s.initial_cores,
            p.len(),
            p.iter().map(|p| p.label()).collect::<Vec<_>>().join(", ")
        );
    }
    let mut done: Vec<Vec<run::Run>> = setups.iter().map(|_| Vec::new()).collect();
    for round in 1..=runs {
        for (k, ((setup, plan), done)) in setups.iter().zip(&plans).zip(&mut done).enumerate() {
            let scenario = setup.scenario.name();
            for i in order(plan.len(), seed, round, k) {
                let policy = plan[i];
                eprintln!(
                    "e2e: round {round}/{runs}: {scenario}: {} (load {})",
                    policy.label(),
                    load_1m()
                );
                let r = run::run(setup, policy, round, i)
                    .with_context(|| format!("round {round}, {scenario}, {}", policy.label()))?;
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
    let root = cmd::root();
    let out = args.out.clone().unwrap_or_else(|| root.join("target/e2e"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let full = runs >= 5 && !args.quick && families.len() == Family::ALL.len();
    let (docs_json, docs) = (root.join("docs/e2e"), root.join("docs"));
    if args.publish || full {
        std::fs::create_dir_all(&docs_json)?;
    }
    for ((setup, plan), done) in setups.iter().zip(&plans).zip(&done) {
        let settings = json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "rounds": runs,
            "order_seed": seed,
            "quick": args.quick,
            "cpu_controller": setup.hierarchy.describe(),
            "cpus": cpus,
            "tick_ms": setup.tick.as_millis() as u64,
            "floor": setup.floor,
            "ceiling": setup.ceiling,
            "lead": setup.lead,
            "hint_ahead_s": (setup.scenario == Scenario::Hinted).then_some(setup.hint_ahead.as_secs_f64()),
            "batch_chunks_per_cpu_s": setup.work_rate,
            "load": load_json(&setup.load),
        });
        report::write(
            setup,
            plan,
            done,
            &report::Outputs {
                out: &out,
                publish: (args.publish || full).then_some((docs_json.as_path(), docs.as_path())),
                settings,
            },
        )?;
    }
    Ok(())
}

fn load_json(load: &Load) -> serde_json::Value {
    let pattern = |p: &Pattern| {
        json!({
            "irregular": p.irregular, "period_s": p.period_s, "burst_s": p.burst_s,
            "bursts": p.bursts, "base_rate": p.base_rate, "base_cost_us": p.base_cost_us,
            "burst_rate": p.burst_rate, "burst_cost_us": p.burst_cost_us,
            "connections": p.connections, "seed": p.seed,
        })
    };
    match load {
        Load::Service {
            pattern: p,
            schedule,
        } => {
            json!({"service": pattern(p), "requests": schedule.len()})
        }
        Load::Pgbench { plan, cluster } => json!({"pgbench": {
            "trace": plan.trace, "compress": plan.compress, "segment_s": plan.segment_s,
            "rates_tps": plan.rates, "clients": plan.clients, "scale": plan.scale,
            "server_cpu_s_per_transaction": cluster.cpu_per_tx,
        }}),
        Load::Custom {
            command,
            pattern: p,
        } => json!({"workload": command, "pattern": pattern(p)}),
    }
}

/// The settings of one scenario.
fn setup(
    args: &E2eArgs,
    scenario: Scenario,
    hierarchy: CpuHierarchy,
    cpus: f64,
    work_rate: f64,
) -> anyhow::Result<Setup> {
    let quick = |full: f64, quick: f64| if args.quick { quick } else { full };
    let pattern = Pattern {
        irregular: matches!(scenario, Scenario::Hinted | Scenario::Irregular),
        period_s: args.period.unwrap_or(quick(10.0, 6.0)),
        burst_s: args.burst.unwrap_or(quick(3.0, 2.0)),
        bursts: args.bursts.unwrap_or(if args.quick { 4 } else { 10 }),
        base_rate: args.base_rate,
        base_cost_us: args.base_cost_us,
        burst_rate: args.burst_rate,
        burst_cost_us: args.burst_cost_us,
        connections: args.connections,
        seed: args.seed,
    };
    ensure!(
        pattern.burst_s > 0.0 && pattern.burst_s < pattern.period_s,
        "--burst must be shorter than --period"
    );
    let (load, mean, mean_from) = match scenario {
        Scenario::Custom => {
            let mean = args.mean_cores.context("--mean-cores")?;
            (
                Load::Custom {
                    command: args.workload.clone().context("--workload")?,
                    pattern,
                },
                mean,
                "--mean-cores".to_owned(),
            )
        }
        Scenario::Pgbench => pg_load(args, cpus)?,
        _ => {
            let schedule = pattern.schedule();
            let mean = pattern.mean_cores(&schedule);
            (
                Load::Service { pattern, schedule },
                mean,
                "the schedule's request costs".to_owned(),
            )
        }
    };
    Ok(Setup {
        scenario,
        load,
        hierarchy,
        initial_cores: (mean * (1.0 + args.margin)).min(args.ceiling),
        mean_cores: mean,
        mean_from,
        tick: Duration::from_millis(args.tick_ms),
        floor: args.floor,
        ceiling: args.ceiling,
        hint_ahead: args.hint_ahead,
        lead: args.lead,
        cpus,
        work_rate,
    })
}

/// The pgbench scenario's plan and cluster (initialised here, once), and
/// its mean demand: the plan's mean rate x the server's calibrated CPU
/// per transaction.
fn pg_load(args: &E2eArgs, cpus: f64) -> anyhow::Result<(Load, f64, String)> {
    let trace = args
        .pg_trace
        .clone()
        .unwrap_or_else(|| cmd::root().join("../shared/data/traces/local/trace-pg_cpu_cores.csv"));
    let segments = args.pg_seconds.or(args.quick.then_some(60));
    let rates = pgbench::Plan::rates_from_trace(
        &trace,
        args.pg_compress as usize,
        segments,
        args.pg_peak_tps,
    )?;
    let plan = pgbench::Plan {
        trace,
        compress: args.pg_compress as usize,
        segment_s: 1.0,
        rates,
        clients: args.pg_clients.max(1),
        scale: args.pg_scale,
    };
    eprintln!(
        "e2e: pgbench: initialising a private cluster (scale {})",
        plan.scale
    );
    let scratch = Sandbox::create(
        &format!("/shadow-e2e-{}-pginit", std::process::id()),
        cpus,
        true,
    )?;
    let cluster = pgbench::Cluster::init(plan.scale, plan.clients, 200.0, &scratch)?;
    drop(scratch);
    let mean = plan.mean_tps() * cluster.cpu_per_tx;
    let from = format!(
        "mean rate {:.0} tps x {:.3} ms of server CPU per transaction (calibrated at 200 tps)",
        plan.mean_tps(),
        cluster.cpu_per_tx * 1e3
    );
    Ok((Load::Pgbench { plan, cluster }, mean, from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_round_shuffles_every_policy_once_from_the_seed() {
        let a = order(21, 7, 1, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..21).collect::<Vec<_>>());
        assert_eq!(a, order(21, 7, 1, 0), "same seed, same order");
        assert_ne!(a, order(21, 7, 2, 0), "another round");
        assert_ne!(a, order(21, 7, 1, 1), "another scenario");
        assert_ne!(a, order(21, 8, 1, 0), "another seed");
        assert_eq!(order(1, 7, 1, 0), [0]);
        assert!(order(0, 7, 1, 0).is_empty());
    }
}
