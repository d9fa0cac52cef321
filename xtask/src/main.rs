//! `cargo xtask`: everything a newcomer runs. Each command does what it needs
//! first (`test` runs `setup` and `build-ebpf`), so one command works on a
//! fresh machine.
//!
//! Layout: `setup` (toolchain, bpf-linker, Debian packages, the guest
//! kernel), `build` (the BPF object and the binaries), `cmd` (running
//! commands with clear failures), `bench` (overhead benchmarks), `chaos`
//! (fault injection), `e2e` (the end-to-end benchmark), `memory` (its memory
//! counterpart), `stack` (orchestrator and agent started together), `demo`
//! (the guided demonstration), `stop` (Ctrl-C handling), `dist` (the release
//! tarball), `vm` (real guests and the guest tier of the tests).

mod bench;
mod build;
mod chaos;
mod cmd;
mod demo;
mod dist;
mod e2e;
mod memory;
mod setup;
mod stack;
mod stop;
mod test;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Build, run and test Shadow.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what is missing: the pinned nightly with rust-src, bpf-linker
    /// built against that nightly's LLVM, the Debian packages tests need,
    /// and the guest kernel and initramfs of `vm` (in target/vm).
    /// Example: `cargo xtask setup`
    Setup,
    /// Build the BPF object that the agent embeds (target/ebpf).
    /// Example: `cargo xtask build-ebpf`
    BuildEbpf,
    /// Build everything (BPF object, then release binaries in target/release).
    /// Example: `cargo xtask build`
    Build,
    /// Build, then start the orchestrator and the agent on this host,
    /// connected over /run/shadow/orchestrator.sock (needs root): a live
    /// table of every cgroup's usage, forecast band and reservation. Only
    /// cgroups that /etc/shadow/shadow.toml opts in are written (none by
    /// default: recommendations only). Ctrl-C stops both and restores every
    /// knob. Arguments after `--` go to `shadow-agent observe`.
    /// Example: `cargo xtask run -- --cgroup /system.slice --count 5`
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: formatting, clippy, unit tests, then the privileged
    /// integration tests against the real kernel (needs root). The last line
    /// says how many passed and failed. Example: `sudo cargo xtask test`
    Test,
    /// A few-minute demonstration (needs root): a sandbox cgroup with a
    /// static quota runs periodic CPU bursts; Shadow raises its quota ahead
    /// of each burst. Prints per-burst figures and writes a plot.
    /// Example: `cargo xtask demo --bursts 12 --out demo.svg`
    Demo {
        /// Number of bursts (10 s apart).
        #[arg(long, default_value_t = 12)]
        bursts: u64,
        /// Where to write the SVG plot [default: target/demo.svg].
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Build everything and pack the binaries, systemd units, example
    /// configuration and docs into target/dist/shadow-<version>-<arch>.tar.gz
    /// (docs/install.md). Example: `cargo xtask dist`
    Dist,
    /// Benchmarks (needs root): overhead (ns per event per program, the
    /// sched pipe slowdown, the collector's cost with 10,000 cgroups) and
    /// `e2e`, Shadow against the static, burst and reactive baselines swept
    /// across their settings, with a neighbour paying for every reserved
    /// core, in four scenarios (hours; `--quick` for a development run),
    /// and `memory`, the same for memory ceilings beside a neighbour whose
    /// page cache pays for every reserved byte.
    /// Example: `cargo xtask bench e2e --quick --scenario periodic`
    Bench(Box<bench::BenchArgs>),
    /// Fault injection against the real binaries (needs root; a few
    /// minutes), on cgroups it creates under /shadow-chaos-<pid> and
    /// removes: the orchestrator SIGKILLed at random moments (`--kills`)
    /// while a fake agent moves every knob; its state directory on a tiny
    /// tmpfs that fills up; a broken configuration, then `--restore`;
    /// idle, slowloris, flooding, unauthenticated and impostor peers while
    /// a good agent is timed; the real agent killed while its reservation
    /// is held. Prints one JSON line
    /// `{"kills", "knobs_checked", "knobs_lost", "peers_refused",
    /// "good_agent_late_ticks"}` and fails if a knob was lost, a tick was
    /// late or another promise broke (docs/benchmarks.md, "Fault
    /// injection"). Uses SHADOW_ORCHESTRATOR_BIN and SHADOW_AGENT_BIN when
    /// both are set, else builds. Example: `sudo cargo xtask chaos --kills 100`
    Chaos(chaos::ChaosArgs),
    /// Real guests (QEMU, Debian's 6.1 kernel, pure cgroup v2, the host's
    /// root shared read-only so the workspace's binaries run there; needs
    /// root for the tests). `vm run -- CMD` runs one command in a fresh
    /// guest and exits with its status; `vm test` runs the guest tier of
    /// the integration tests (also part of `cargo xtask test`).
    /// Example: `sudo cargo xtask vm run -- target/release/shadow-agent check`
    Vm(vm::VmArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = |()| 0;
    let result = match cli.command {
        Command::Setup => setup::run().map(done),
        Command::BuildEbpf => build::ebpf().map(done),
        Command::Build => build::all().map(done),
        Command::Run { args } => stack::run(&args).map(done),
        Command::Demo { bursts, out } => demo::run(out, bursts).map(done),
        Command::Dist => dist::run().map(done),
        Command::Test => test::run().map(done),
        Command::Bench(args) => bench::run(&args).map(done),
        Command::Chaos(args) => chaos::run(&args).map(done),
        // A guest command's own exit status is passed on.
        Command::Vm(args) => vm::run(&args),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
