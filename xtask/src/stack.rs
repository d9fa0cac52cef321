//! Orchestrator and agent started together, connected over a Unix socket:
//! what `cargo xtask run`, `demo` and `bench e2e` drive.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::build::binary;

/// How to start the pair.
pub struct Options<'a> {
    /// Orchestrator configuration file, if any (else its defaults).
    pub config: Option<&'a Path>,
    /// Unix socket between them.
    pub socket: &'a Path,
    /// The orchestrator's journal directory.
    pub state_dir: &'a Path,
    /// Extra orchestrator arguments (e.g. `--status`, `--tick 1s`).
    pub orchestrator_args: &'a [&'a str],
    /// `shadow-agent observe` arguments (interval, format, cgroup filter).
    pub agent_args: &'a [String],
    /// Where the agent's stdout goes (its table or JSON lines).
    pub agent_stdout: Stdio,
    /// Where the orchestrator's stdout goes (status and dry-run lines).
    pub orchestrator_stdout: Stdio,
}

/// The running pair. Stopping sends SIGTERM to both (the orchestrator
/// restores every knob it changed); dropping without `stop` does the same.
pub struct Stack {
    /// The orchestrator process.
    pub orchestrator: Child,
    /// The agent process.
    pub agent: Child,
}

impl Stack {
    /// Starts the orchestrator, waits until it listens, then the agent.
    pub fn start(o: Options<'_>) -> anyhow::Result<Self> {
        let mut cmd = Command::new(binary("shadow-orchestrator"));
        cmd.arg("--socket").arg(o.socket);
        cmd.arg("--state-dir").arg(o.state_dir);
        if let Some(c) = o.config {
            cmd.arg("--config").arg(c);
        }
        let mut orchestrator = cmd
            .args(o.orchestrator_args)
            .stdout(o.orchestrator_stdout)
            .stderr(Stdio::piped())
            .spawn()
            .context("starting shadow-orchestrator (run `cargo xtask build` first)")?;
        wait_ready(&mut orchestrator, "ready on", "shadow-orchestrator")?;
        let agent = Command::new(binary("shadow-agent"))
            .arg("observe")
            .arg("--orchestrator")
            .arg(o.socket)
            .args(o.agent_args)
            .stdout(o.agent_stdout)
            .spawn();
        let agent = match agent {
            Ok(a) => a,
            Err(e) => {
                terminate(&mut orchestrator);
                return Err(e).context("starting shadow-agent");
            }
        };
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
            if let Ok(Some(status)) = self.orchestrator.try_wait() {
                bail!("shadow-orchestrator stopped ({status}); its log is above");
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
        let status = terminate(&mut self.orchestrator);
        if !status.is_some_and(|s| s.success()) {
            bail!("shadow-orchestrator did not stop cleanly ({status:?})");
        }
        Ok(())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        terminate(&mut self.agent);
        terminate(&mut self.orchestrator);
    }
}

/// SIGTERM, then wait (SIGKILL after 10 s); the exit status if it ran.
fn terminate(child: &mut Child) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    for _ in 0..200 {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Waits for `marker` on the child's stderr, then keeps echoing its stderr
/// to ours (its log), so it never blocks on a full pipe.
fn wait_ready(child: &mut Child, marker: &str, name: &str) -> anyhow::Result<()> {
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = mpsc::channel();
    let marker = marker.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains(&marker) {
                let _ = tx.send(());
            }
            eprintln!("{line}");
        }
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let status = child.try_wait().ok().flatten();
        terminate(child);
        bail!("{name} did not start ({status:?}); its log is above");
    }
    Ok(())
}
