//! Rolling-origin backtests (placeholder: filled by the forecasting issue).

/// Arguments of `shadow-agent backtest`.
#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// Trace files: NAB CSV (`timestamp,value`) or `observe --format json` output.
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
}

/// Runs the backtest.
pub fn run(_args: &BacktestArgs) -> anyhow::Result<()> {
    anyhow::bail!("backtest is not implemented yet")
}
