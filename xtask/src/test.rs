//! `cargo xtask test`: lints, unit tests, then the privileged integration
//! tests against the freshly built binaries.

use crate::{
    build::{self, binary},
    cmd::{self, cargo},
    vm,
};

/// `cargo xtask test`: every test. Lints and unit tests need no root; the
/// integration tests in `tests/` load the real programs, so they run as
/// root, one at a time (they create cgroups and measure the whole host),
/// then again in a guest on Debian's 6.1 kernel with pure cgroup v2 (the
/// guest tier, `cargo xtask vm test`).
pub fn run() -> anyhow::Result<()> {
    build::all()?;
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
    // The same tests on a second kernel with pure cgroup v2 (docs/guests.md).
    vm::test_into(&mut totals)?;
    // One closing line for the whole run (CI reads the last one).
    println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    anyhow::ensure!(totals.failed == 0, "{} tests failed", totals.failed);
    Ok(())
}
