//! Building the BPF object and the binaries, running the agent and the tests.

use std::{path::PathBuf, process::Command};

use crate::{
    cmd::{self, cargo},
    setup,
};

/// Where `build-ebpf` leaves the object; the agent's build script embeds it.
pub fn ebpf_object() -> PathBuf {
    cmd::root().join("target/ebpf/bpfel-unknown-none/release/shadow-ebpf")
}

/// `cargo xtask build-ebpf`: the BPF object, with the pinned nightly and
/// bpf-linker (installed first if missing).
pub fn ebpf() -> anyhow::Result<()> {
    setup::run()?;
    let path = format!(
        "{}:{}",
        setup::tools_dir().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // BTF in the object gives readable verifier logs; the cfg tells
    // aya-ebpf which architecture's pt_regs to use.
    let flags = [
        "--cfg=bpf_target_arch=\"x86_64\"",
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
    ]
    .join("\x1f");
    cmd::run(
        cargo(Some(setup::NIGHTLY))
            .args([
                "build",
                "--release",
                "-p",
                "agent-ebpf",
                "--bin",
                "shadow-ebpf",
            ])
            .args(["--features", "ebpf", "--target", "bpfel-unknown-none"])
            .args(["-Z", "build-std=core", "--target-dir", "target/ebpf"])
            .env("CARGO_ENCODED_RUSTFLAGS", flags)
            .env("PATH", path),
    )?;
    eprintln!("xtask: BPF object at {}", ebpf_object().display());
    Ok(())
}

/// `cargo xtask build`: the BPF object, then release binaries embedding it.
pub fn all() -> anyhow::Result<()> {
    ebpf()?;
    cmd::run(cargo(None).args([
        "build",
        "--release",
        "-p",
        "shadow-agent",
        "-p",
        "shadow-orchestrator",
    ]))
}

/// Path of a release binary built by [`all`].
pub fn binary(name: &str) -> PathBuf {
    cmd::root().join("target/release").join(name)
}

/// `cargo release build` of the given packages/binaries.
pub fn cargo_release(args: &[&str]) -> Command {
    let mut cmd = cargo(None);
    cmd.args(["build", "--release"]).args(args);
    cmd
}

/// `cargo xtask run`: the orchestrator and the agent on this host,
/// connected over the Unix socket; the agent's live table shows each
/// cgroup's usage, forecast band and reservation. Ctrl-C (or SIGTERM) stops
/// both; the orchestrator restores every knob it changed.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    all()?;
    let agent_args: Vec<String> = if args.is_empty() {
        ["--interval", "1s", "--format", "table"]
            .map(String::from)
            .to_vec()
    } else {
        args.to_vec()
    };
    crate::stop::install();
    let stack = crate::stack::Stack::start(
        std::path::Path::new("/run/shadow/orchestrator.sock"),
        std::path::Path::new("/run/shadow"),
        &agent_args,
    )?;
    stack.wait_for_stop(crate::stop::requested)
}

/// `cargo xtask test`: every test. Lints and unit tests need no root; the
/// integration tests in `tests/` load the real programs, so they run as
/// root, one at a time (they create cgroups and measure the whole host).
pub fn test() -> anyhow::Result<()> {
    all()?;
    cmd::run(cargo(None).args(["fmt", "--all", "--", "--check"]))?;
    cmd::run(cargo(None).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let mut totals = cmd::TestTotals::default();
    cmd::run_tests(
        cargo(None).args(["test", "--workspace", "--exclude", "shadow-tests"]),
        &mut totals,
    )?;
    cmd::run_tests(
        cargo(None)
            .args([
                "test",
                "--release",
                "-p",
                "shadow-tests",
                "--",
                "--test-threads=1",
            ])
            .env("SHADOW_AGENT_BIN", binary("shadow-agent"))
            .env("SHADOW_ORCHESTRATOR_BIN", binary("shadow-orchestrator")),
        &mut totals,
    )?;
    // One closing line for the whole run (CI reads the last one).
    println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    Ok(())
}
