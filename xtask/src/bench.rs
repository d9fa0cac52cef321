//! `cargo xtask bench`: overhead benchmarks (filled in below).

/// Which benchmark to run.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub fn run(_args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("no benchmark yet")
}
