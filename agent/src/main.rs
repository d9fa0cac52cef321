//! `shadow-agent`: Shadow's per-host agent.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shadow_agent::{backtest, hint, observe, probes, top};

/// Shadow's agent: watches every cgroup from inside the kernel (eBPF) and
/// forecasts what each will need.
///
/// Examples:
///   sudo shadow-agent observe --interval 1s --count 10 --format table
///   sudo shadow-agent observe --cgroup /system.slice --format json
///   sudo shadow-agent top
///   sudo shadow-agent check
///   shadow-agent backtest trace.csv
///   sudo shadow-agent observe --orchestrator /run/shadow/orchestrator.sock --format table
///   shadow-agent hint --cpu 4 --memory 2GiB --start-in 30s --duration 5m
#[derive(Parser)]
#[command(version = VERSION_TEXT.as_str(), verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print per-cgroup CPU, run-queue, page-fault, block I/O and network
    /// usage every interval (needs root).
    ///
    /// JSON: one object per cgroup per interval, with ts, cgroup, cgroup_id,
    /// interval_ns, cpu_ns, runq_delay_ns, runq_count, page_faults,
    /// io_read_bytes, io_write_bytes, io_ops, io_latency_ns, net_tx_bytes,
    /// net_rx_bytes, net_tx_packets, net_rx_packets (all for that interval).
    ///
    /// Example: sudo shadow-agent observe --interval 1s --count 5 --cgroup /system.slice
    Observe(observe::ObserveArgs),
    /// A live table of every cgroup (needs root, a terminal; works over SSH
    /// and in 80x24): CPU, run-queue wait, forecast and its upper band,
    /// the orchestrator's reservation, hint trust, I/O and network, sorted
    /// by any column, with the selected cgroup's CPU over the last minutes.
    /// Keys: arrows, PgUp/PgDn, Home/End select; Left/Right or Tab pick the
    /// sort column, r reverses it; q, Esc or Ctrl-C quit.
    ///
    /// Without --orchestrator it only watches and can run next to the agent
    /// service; with it, it is the host's agent (instead of
    /// `observe --orchestrator`, not beside it).
    ///
    /// Example: sudo shadow-agent top --interval 2s --cgroup /machine.slice
    Top(top::TopArgs),
    /// Load and attach every probe, report each one's status and exit
    /// (non-zero if a probe failed for a reason other than a missing hook).
    ///
    /// Example: sudo shadow-agent check
    Check,
    /// Measure what each probe costs per event (kernel bpf_stats), next to
    /// an empty program attached to the same hook, while the host runs its
    /// usual load (or a benchmark you start). Prints one JSON line per probe.
    ///
    /// Example: sudo shadow-agent probe-cost --duration 10s
    ProbeCost {
        /// How long to measure.
        #[arg(long, default_value = "10s", value_parser = shadow_common::duration::parse)]
        duration: std::time::Duration,
    },
    /// Evaluate forecasters on recorded traces (rolling origin).
    ///
    /// Example: shadow-agent backtest ../shared/data/traces/nab/*.csv --format table
    Backtest(backtest::BacktestArgs),
    /// Tell the agent what this process's cgroup expects to need, so the
    /// resources are waiting (docs/hints.md). Prints the agent's reply;
    /// exits non-zero if it refused.
    ///
    /// Example: shadow-agent hint --cpu 4 --memory 2GiB --start-in 30s --duration 5m
    ///
    /// Example: shadow-agent hint --cancel 17
    Hint(hint::cli::HintArgs),
}

/// `--version`: the build and the wire protocol it speaks.
static VERSION_TEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (protocol {})",
        env!("CARGO_PKG_VERSION"),
        shadow_wire::VERSION
    )
});

fn main() -> ExitCode {
    shadow_common::logging::init("warn");
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Observe(args) => observe::run(&args),
        Command::Top(args) => top::run(&args),
        Command::Check => check(),
        Command::ProbeCost { duration } => probe_cost(duration),
        Command::Backtest(args) => backtest::run(&args),
        Command::Hint(args) => hint::cli::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("shadow-agent: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `shadow-agent check`.
fn check() -> anyhow::Result<()> {
    let mounts = shadow_common::mounts::Mounts::from_system()?;
    let probes = probes::Probes::attach(mounts.v2.as_deref(), probes::Options::default())?;
    let mut failed = 0;
    for r in probes.reports() {
        let status = match &r.status {
            probes::Status::Attached => "attached".to_owned(),
            probes::Status::Missing(why) => format!("off: {why}"),
            probes::Status::Failed(why) => {
                failed += 1;
                format!("FAILED: {why}")
            }
        };
        println!("{:<20} {:<26} {status}", r.program, r.measures);
    }
    // Memory levels are read from cgroupfs, not counted by a probe.
    let memory = shadow_agent::memory::Source::detect(&mounts);
    println!(
        "{:<20} {:<26} {}",
        "memory",
        "memory in use",
        memory.describe()
    );
    anyhow::ensure!(failed == 0, "{failed} probe(s) failed");
    Ok(())
}

/// `shadow-agent probe-cost`.
fn probe_cost(duration: std::time::Duration) -> anyhow::Result<()> {
    let mounts = shadow_common::mounts::Mounts::from_system()?;
    let options = probes::Options {
        stats: true,
        baselines: true,
    };
    let probes = probes::Probes::attach(mounts.v2.as_deref(), options)?;
    eprintln!("shadow-agent: measuring for {duration:?}");
    std::thread::sleep(duration);
    for cost in probes.costs() {
        println!("{}", serde_json::to_string(&cost)?);
    }
    Ok(())
}
