//! Orchestrator and agent started together on this host, connected over a
//! Unix socket: `cargo xtask run`. The orchestrator is the one
//! the tests, the demo and `bench e2e` use (`shadow_tests::orchestrator`).

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use shadow_tests::orchestrator::{Orchestrator, terminate};

use crate::build::{self, binary};

/// The running pair. Stopping sends SIGTERM to both (the orchestrator
/// restores every knob it changed); dropping without `stop` does the same.
pub struct Stack {
    orchestrator: Orchestrator,
    agent: Child,
}

impl Stack {
    /// Starts the orchestrator on `socket` with its journal in `state_dir`
    /// (its log and output echoed to ours), waits until it listens, then
    /// the agent with `shadow-agent observe` arguments `agent_args`.
    pub fn start(socket: &Path, state_dir: &Path, agent_args: &[String]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(binary("shadow-orchestrator"));
        cmd.arg("--socket")
            .arg(socket)
            .arg("--state-dir")
            .arg(state_dir);
        let orchestrator = Orchestrator::launch(cmd, socket, true)
            .context("starting shadow-orchestrator (run `cargo xtask build` first)")?;
        let agent = Command::new(binary("shadow-agent"))
            .arg("observe")
            .arg("--orchestrator")
            .arg(socket)
            .args(agent_args)
            .stdout(Stdio::inherit())
            .spawn()
            .context("starting shadow-agent")?;
        Ok(Self {
            orchestrator,
            agent,
        })
    }

    /// Runs until `stop()` says so or the agent ends on its own (e.g.
    /// `--count`), then stops both.
    pub fn wait_for_stop(mut self, stop: impl Fn() -> bool) -> anyhow::Result<()> {
        while !stop() {
            if let Ok(Some(_)) = self.agent.try_wait() {
                break;
            }
            if !self.orchestrator.is_running() {
                bail!("shadow-orchestrator stopped; its log is above");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.stop()
    }

    /// Stops both (agent first, so its last report is not lost, then the
    /// orchestrator, which restores the knobs); fails if the orchestrator
    /// did not exit cleanly.
    pub fn stop(mut self) -> anyhow::Result<()> {
        terminate(&mut self.agent);
        let status = self.orchestrator.terminate();
        if !status.is_some_and(|s| s.success()) {
            bail!("shadow-orchestrator did not stop cleanly ({status:?})");
        }
        Ok(())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // The orchestrator stops itself when dropped, after the agent.
        terminate(&mut self.agent);
    }
}

/// `cargo xtask run`: the orchestrator and the agent on this host,
/// connected over the Unix socket; the agent's live table shows each
/// cgroup's usage, forecast band and reservation. Ctrl-C (or SIGTERM) stops
/// both; the orchestrator restores every knob it changed.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    build::all()?;
    let agent_args: Vec<String> = if args.is_empty() {
        ["--interval", "1s", "--format", "table"]
            .map(String::from)
            .to_vec()
    } else {
        args.to_vec()
    };
    crate::stop::install();
    let stack = Stack::start(
        std::path::Path::new("/run/shadow/orchestrator.sock"),
        std::path::Path::new("/run/shadow"),
        &agent_args,
    )?;
    stack.wait_for_stop(crate::stop::requested)
}
