//! `cargo xtask vm`: real guests as a development and test tool. A guest
//! runs Debian's 6.1 kernel with pure cgroup v2 (the stock Debian host's
//! layout, where this host is hybrid) on the host's own root, so it runs
//! the workspace's freshly built binaries.
//!
//! Layout: `image` (kernel and initramfs, fetched and built once), `guest`
//! (one boot for one command), `tier` (the integration tests run there).

mod guest;
pub mod image;
mod tier;

use clap::{Args, Subcommand};

pub use guest::GuestOpts;

use crate::{build, cmd, stop};

#[derive(Debug, Args)]
pub struct VmArgs {
    #[command(subcommand)]
    command: VmCommand,
}

#[derive(Debug, Subcommand)]
enum VmCommand {
    /// Build, boot a guest, run CMD there as root in the current directory
    /// and exit with its status. The guest is shut down afterwards, also on
    /// timeout or Ctrl-C.
    /// Example: `cargo xtask vm run -- target/release/shadow-agent check`
    Run {
        #[command(flatten)]
        guest: GuestOpts,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Build, then run the guest tier of the privileged integration tests
    /// in a guest (which tests are left out, and why, is printed first).
    /// Example: `cargo xtask vm test` or `cargo xtask vm test block memory`
    Test {
        #[command(flatten)]
        guest: GuestOpts,
        /// Only these test files of tests/tests (names without `.rs`).
        files: Vec<String>,
    },
}

/// Runs `cargo xtask vm ...`; returns the exit status to pass on.
pub fn run(args: &VmArgs) -> anyhow::Result<u8> {
    stop::install();
    match &args.command {
        VmCommand::Run { guest, command } => {
            build::all()?;
            let image = image::prepare()?;
            let cwd = std::env::current_dir()?;
            let status = guest::run(&image, guest, &cwd, command, &mut |line| println!("{line}"))?;
            Ok(u8::try_from(status).unwrap_or(u8::MAX))
        }
        VmCommand::Test { guest, files } => {
            let totals = tier::run(guest, files)?;
            println!(
                "guest tests: {} passed, {} failed",
                totals.passed, totals.failed
            );
            Ok(u8::from(totals.failed > 0))
        }
    }
}

/// Used by `cargo xtask test`: the guest tier, counted into `totals`.
pub fn test_into(totals: &mut cmd::TestTotals) -> anyhow::Result<()> {
    let t = tier::run(&GuestOpts::default(), &[])?;
    totals.passed += t.passed;
    totals.failed += t.failed;
    Ok(())
}
