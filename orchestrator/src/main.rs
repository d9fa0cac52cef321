//! `shadow-orchestrator`: aggregates the agents' forecasts and applies soft
//! pre-reservations. A placeholder until the orchestrator issue lands: it
//! parses its command line and says that it does nothing yet.

use std::process::ExitCode;

use clap::Parser;

/// Shadow's orchestrator (not implemented yet: the agent observes and
/// forecasts on its own for now).
#[derive(Parser)]
#[command(version)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!(
        "shadow-orchestrator: not implemented yet; run `shadow-agent observe` to watch this host"
    );
    ExitCode::FAILURE
}
