//! The orchestrator as a child process whose log goes to a file, so it can
//! be killed at any moment (even before it is ready) and its log still
//! read afterwards.

use std::{
    fs::{self, OpenOptions},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::fleet::Fleet;
use crate::orchestrator::{orchestrator_bin, terminate};

/// One start of the orchestrator.
pub(crate) struct Daemon {
    child: Child,
    log: PathBuf,
    /// Where this start's lines begin in the shared log file.
    from: u64,
}

impl Daemon {
    /// Starts it on `socket` and `state`, with `tick` and `extra`
    /// arguments; returns at once (see [`Daemon::ready`]).
    pub(crate) fn spawn(
        socket: &Path,
        state: &Path,
        tick: Duration,
        extra: &[&str],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(log)?;
        let from = file.metadata()?.len();
        let child = Command::new(orchestrator_bin())
            .arg("--socket")
            .arg(socket)
            .arg("--state-dir")
            .arg(state)
            .arg("--tick")
            .arg(format!("{}ms", tick.as_millis()))
            .args(extra)
            .env("SHADOW_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .context("starting shadow-orchestrator")?;
        Ok(Self {
            child,
            log: log.to_owned(),
            from,
        })
    }

    /// This start's log so far.
    pub(crate) fn log(&self) -> String {
        let text = fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(text.get(self.from as usize..).unwrap_or_default()).into_owned()
    }

    /// Waits until this start's log has `needle`; fails with the log after
    /// `timeout` or if the process exited.
    pub(crate) fn wait_for(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return Ok(log);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("the orchestrator exited ({status}) before {needle:?}:\n{log}");
            }
            if Instant::now() > deadline {
                bail!("{needle:?} not logged in {timeout:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until it listens (the start-up restore is done by then).
    pub(crate) fn ready(&mut self) -> anyhow::Result<String> {
        self.wait_for("ready on", Duration::from_secs(30))
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(mut self) -> anyhow::Result<ExitStatus> {
        self.child.kill()?;
        Ok(self.child.wait()?)
    }

    /// SIGTERM (it restores every knob), then reap; fails unless it exited
    /// 0.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        match terminate(&mut self.child) {
            Some(s) if s.success() => Ok(()),
            other => bail!(
                "the orchestrator did not stop cleanly ({other:?}):\n{}",
                self.log()
            ),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An orchestrator configuration opting in the fleet's cgroups with CPU
/// bounds and no guardrail delays (so knobs change every tick), plus
/// `more`. The CPU capacity is declared at 2 cores per cgroup: the fake
/// agent's wants (up to 1.8 cores each) fitted within this host's real
/// cores would leave every cgroup at a sliver, below its quota and usage,
/// where the guardrails refuse most writes, and the knobs would hardly move.
pub(crate) fn config(dir: &Path, name: &str, fleet: &Fleet, more: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let (glob, cores) = (fleet.glob(), 2 * fleet.members.len());
    let text = format!(
        "lead = 2\nhold = 1\nmin_interval = \"0s\"\ncooldown = \"0s\"\n\
         [capacity]\ncpu = {cores}\n\
         [[manage]]\ncgroup = \"{glob}\"\ncpu = {{ floor = 0.05, ceiling = 1.8 }}\n{more}"
    );
    fs::write(&path, text)?;
    Ok(path)
}

/// Raises the soft limit on open files to the hard one: phase 4 holds over
/// a thousand sockets.
pub(crate) fn raise_fd_limit() -> anyhow::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error()).context("getrlimit");
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(std::io::Error::last_os_error()).context("setrlimit");
        }
    }
    Ok(())
}
