//! `cargo xtask demo`: a few minutes that show what Shadow does. A sandbox
//! cgroup with a static half-core quota runs CPU bursts every 10 s; the
//! agent watches it, the orchestrator manages it; the run prints, per burst,
//! the quota before the burst and how early it was raised, then plots usage,
//! forecast band, reservation and the kernel's quota over time.

use std::path::PathBuf;

use anyhow::Context as _;
use shadow_tests::scenario::{self, Demo};

use crate::{
    build::{self, binary},
    cmd,
};

/// Builds the binaries the scenarios run and tells the scenario helpers
/// where they are (also used by `bench e2e`).
pub fn prepare() -> anyhow::Result<()> {
    build::all()?;
    cmd::run(&mut build::cargo_release(&[
        "-p",
        "shadow-tests",
        "--bin",
        "shadow-workload",
    ]))?;
    // SAFETY: set before any thread starts; the scenario's helpers read them.
    unsafe {
        std::env::set_var("SHADOW_AGENT_BIN", binary("shadow-agent"));
        std::env::set_var("SHADOW_ORCHESTRATOR_BIN", binary("shadow-orchestrator"));
        std::env::set_var("SHADOW_WORKLOAD_BIN", binary("shadow-workload"));
    }
    Ok(())
}

/// Builds what is missing, runs the scenario and writes the plot to `out`.
pub fn run(out: Option<PathBuf>, bursts: u64) -> anyhow::Result<()> {
    prepare()?;
    let demo = Demo {
        bursts,
        ..Demo::default()
    };
    eprintln!(
        "demo: a sandbox cgroup with a {} core quota, bursts of {} cores for {} ms every {} ms ({} bursts, about {} s)",
        demo.static_cores,
        demo.threads,
        demo.burst_ms,
        demo.period_ms,
        demo.bursts,
        (demo.bursts + 1) * demo.period_ms / 1000
    );
    let outcome = scenario::run(&demo)?;
    println!("burst  quota mid-gap  quota before  raised ahead");
    for l in outcome.leads() {
        println!(
            "{:>5}  {:>11.2}c  {:>11.2}c  {}",
            l.burst,
            l.idle,
            l.before,
            l.raised_ahead_s
                .map_or("no".to_owned(), |s| format!("{s:.1} s"))
        );
    }
    let (reserved, used) = outcome.cpu_seconds();
    println!(
        "cpu-seconds: used {used:.1}, reserved (quota) {reserved:.1}; knob writes logged: {}, all in {}; originals restored: {}",
        outcome.written.len(),
        outcome.cgroup,
        if outcome.restored { "yes" } else { "NO" }
    );
    let out = out.unwrap_or_else(|| cmd::root().join("target/demo.svg"));
    std::fs::write(&out, outcome.svg()).with_context(|| format!("writing {}", out.display()))?;
    println!("plot: {}", out.display());
    anyhow::ensure!(
        outcome.restored,
        "the sandbox's original quota was not restored"
    );
    Ok(())
}
