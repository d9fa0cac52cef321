//! Running commands: echoed before they run, failures that name the command.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().expect("xtask has a parent").to_path_buf()
}

/// Runs `cmd` in the workspace root, printing it first; fails if it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    run_in(&root(), cmd)
}

/// Runs `cmd` in `dir`, printing it first; fails if it fails.
pub fn run_in(dir: &std::path::Path, cmd: &mut Command) -> anyhow::Result<()> {
    cmd.current_dir(dir);
    eprintln!("xtask: $ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout, or None if it failed to run.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// A `cargo` invocation for `toolchain` with the variables an outer cargo
/// sets removed, so they cannot leak into the inner build.
pub fn cargo(toolchain: Option<&str>) -> Command {
    let mut cmd = Command::new("cargo");
    if let Some(t) = toolchain {
        cmd.arg(format!("+{t}"));
    }
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Tests counted over several `cargo test` runs.
#[derive(Debug, Default)]
pub struct TestTotals {
    pub passed: u64,
    pub failed: u64,
}

impl TestTotals {
    /// Adds a libtest `test result: ...` line; other lines are ignored.
    pub fn add_line(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("test result: ") {
            self.passed += count(rest, " passed");
            self.failed += count(rest, " failed");
        }
    }
}

/// Runs `cargo test` like [`run`], echoing its output and adding up its
/// `test result:` lines into `totals`.
pub fn run_tests(cmd: &mut Command, totals: &mut TestTotals) -> anyhow::Result<()> {
    cmd.current_dir(root()).stdout(Stdio::piped());
    eprintln!("xtask: $ {}", show(cmd));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{}`", show(cmd)))?;
    let stdout = child.stdout.take().context("test output")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        totals.add_line(&line);
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// The number before `label` in `ok. 3 passed; 0 failed; ...`.
fn count(summary: &str, label: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label.trim_start())
                .map(str::trim)
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_cargo_test_summaries() {
        let ok =
            "ok. 14 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.06s";
        assert_eq!((count(ok, " passed"), count(ok, " failed")), (14, 0));
        let bad = "FAILED. 2 passed; 3 failed; 0 ignored";
        assert_eq!((count(bad, " passed"), count(bad, " failed")), (2, 3));
    }
}
