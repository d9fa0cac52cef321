//! `cargo xtask chaos`: fault injection against the real binaries
//! (shadow_tests::chaos, which the CI-sized `tests/chaos.rs` runs too);
//! prints one JSON line and fails when a knob was lost, the good agent was
//! late, or another promise broke.

use std::time::Duration;

use anyhow::bail;
use shadow_tests::chaos::{Options, run as chaos};

use crate::build;

/// Flags of `cargo xtask chaos`; the defaults are the full run.
#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// SIGKILLs of the orchestrator in the kill loop.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    kills: u32,
    /// Managed cgroups created under /shadow-chaos-<pid>.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=1000))]
    cgroups: u64,
    /// Idle TCP connections opened while the good agent is served.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    idle: u64,
    /// Slowloris handshakes (a Hello a byte every 250 ms).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=1000))]
    slowloris: u64,
    /// Longest random wait, in ms, between a start and its SIGKILL.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    max_wait_ms: u64,
    /// Seed of the random waits and figures [default: the clock]; printed
    /// first, so a failing run can be replayed.
    #[arg(long)]
    seed: Option<u64>,
}

/// Builds the binaries unless `SHADOW_ORCHESTRATOR_BIN` and
/// `SHADOW_AGENT_BIN` name them already, then runs every phase.
pub fn run(args: &ChaosArgs) -> anyhow::Result<()> {
    let given = ["SHADOW_ORCHESTRATOR_BIN", "SHADOW_AGENT_BIN"]
        .iter()
        .all(|v| std::env::var_os(v).is_some());
    if !given {
        build::all()?;
        // SAFETY: set before any thread starts; the chaos helpers read them.
        unsafe {
            std::env::set_var("SHADOW_AGENT_BIN", build::binary("shadow-agent"));
            std::env::set_var(
                "SHADOW_ORCHESTRATOR_BIN",
                build::binary("shadow-orchestrator"),
            );
        }
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let options = Options {
        cgroups: args.cgroups as usize,
        kills: args.kills,
        max_wait: Duration::from_millis(args.max_wait_ms),
        idle: args.idle as usize,
        slowloris: args.slowloris as usize,
        ..Options::full(seed)
    };
    let started = std::time::Instant::now();
    let outcome = chaos(&options)?;
    eprintln!("chaos: done in {:.1?}", started.elapsed());
    println!("{}", serde_json::to_string(&outcome.summary)?);
    for f in &outcome.failures {
        eprintln!("chaos: FAILED: {f}");
    }
    if !outcome.passed() {
        bail!(
            "chaos: {} knobs lost, {} late ticks, {} other failures (seed {seed})",
            outcome.summary.knobs_lost,
            outcome.summary.good_agent_late_ticks,
            outcome.failures.len()
        );
    }
    Ok(())
}
