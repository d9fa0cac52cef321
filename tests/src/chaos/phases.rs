//! Phases 1 to 3 and 5 of a chaos run (4, the peers, is in `peers`).

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    Options, Outcome, Rng,
    daemon::{Daemon, config},
    feed::Feeder,
    fleet::Fleet,
    sub,
};
use crate::{Agent, ChildGuard, orchestrator::orchestrator_bin};

/// What every phase shares.
pub(crate) struct Ctx<'a> {
    pub(crate) options: &'a Options,
    pub(crate) fleet: &'a Fleet,
    pub(crate) dir: PathBuf,
}

impl Ctx<'_> {
    /// The fleet's (path, id) pairs, as an agent reports them.
    pub(crate) fn paths(&self) -> Vec<(String, u64)> {
        self.fleet
            .members
            .iter()
            .zip(&self.fleet.ids)
            .map(|(m, id)| (m.cg.path.clone(), *id))
            .collect()
    }

    /// Compares every knob with its original; adds to the summary.
    fn check(&self, phase: &str, outcome: &mut Outcome) -> anyhow::Result<()> {
        let (checked, lost) = self.fleet.check(phase)?;
        outcome.summary.knobs_checked += checked;
        outcome.summary.knobs_lost += lost;
        Ok(())
    }

    /// A phase's folder, socket, log and configuration.
    fn setup(&self, name: &str, more: &str) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
        let dir = sub(&self.dir, name)?;
        let cfg = config(&dir, "shadow.toml", self.fleet, more)?;
        Ok((dir.join("o.sock"), dir.join("orchestrator.log"), cfg))
    }
}

/// A start of the orchestrator with the phase's configuration.
fn start(ctx: &Ctx, socket: &Path, state: &Path, log: &Path, cfg: &Path) -> anyhow::Result<Daemon> {
    let cfg = cfg.to_str().context("configuration path")?;
    Daemon::spawn(socket, state, ctx.options.tick, &["--config", cfg], log)
}

/// Phase 1: start, wait a random time (from the seed), SIGKILL; again and
/// again while the feeder moves every knob; then a last start (which
/// restores at once), a clean stop, and every knob compared.
pub(crate) fn kill_loop(ctx: &Ctx, rng: &mut Rng, outcome: &mut Outcome) -> anyhow::Result<()> {
    let (socket, log, cfg) = ctx.setup("kill", "")?;
    let state = socket.with_file_name("state");
    let feeder = Feeder::start(socket.clone(), ctx.paths(), ctx.options.tick, rng.next());
    let started = Instant::now();
    let mut raised = 0;
    for i in 0..ctx.options.kills {
        let wait = ctx.options.max_wait.mul_f64(rng.unit());
        let daemon = start(ctx, &socket, &state, &log, &cfg)?;
        std::thread::sleep(wait);
        let changed = ctx.fleet.changed()?.len();
        raised += changed;
        daemon.kill()?;
        outcome.summary.kills += 1;
        if (i + 1) % 10 == 0 {
            eprintln!(
                "chaos: kill {}/{}: killed after {wait:.2?} with {changed} knobs raised",
                i + 1,
                ctx.options.kills
            );
        }
    }
    let mut last = start(ctx, &socket, &state, &log, &cfg)?;
    last.ready()?;
    std::thread::sleep(ctx.options.tick * 5);
    drop(feeder);
    last.stop()?;
    eprintln!(
        "chaos: kill loop: {} kills in {:.1?}, {raised} knob values differed from the originals at the kills",
        ctx.options.kills,
        started.elapsed()
    );
    if ctx.options.kills > 0 && raised == 0 {
        outcome
            .failures
            .push("kill loop: no knob was ever raised when a SIGKILL came".into());
    }
    panics(&log, outcome);
    ctx.check("kill loop", outcome)
}

/// A tmpfs mounted at a folder, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> anyhow::Result<Self> {
        fs::create_dir_all(at)?;
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .context("running mount")?;
        if !status.success() {
            bail!("mount -t tmpfs at {} failed: {status}", at.display());
        }
        Ok(Self(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Writes zeros to `file` until the file system is full.
fn fill(file: &Path) -> anyhow::Result<u64> {
    let mut f = fs::File::create(file)?;
    let block = [0u8; 4096];
    let mut written = 0;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => return Err(e).context("filling the tmpfs"),
        }
    }
    Ok(written)
}

/// Phase 2: the state directory on a 256 KiB tmpfs. Half the cgroups are
/// raised, the disk is filled, the other half is asked for (their
/// originals cannot be journaled), then SIGKILL, space freed, a restart
/// and a clean stop; every knob compared.
pub(crate) fn full_disk(ctx: &Ctx, outcome: &mut Outcome) -> anyhow::Result<()> {
    let (socket, log, cfg) = ctx.setup("disk", "")?;
    let mnt = socket.with_file_name("tmpfs");
    let tmpfs = Tmpfs::mount(&mnt, "256k")?;
    let state = mnt.join("state");
    let paths = ctx.paths();
    let half = paths.len() / 2;
    let feeder = Feeder::start(
        socket.clone(),
        paths,
        ctx.options.tick,
        ctx.options.seed ^ 2,
    );
    feeder.reported.store(half, Ordering::Relaxed);
    let mut daemon = start(ctx, &socket, &state, &log, &cfg)?;
    daemon.ready()?;
    std::thread::sleep(ctx.options.tick * 10);
    let before = ctx.fleet.changed()?.len();
    let filler = mnt.join("fill");
    let filled = fill(&filler)?;
    feeder.reported.store(usize::MAX, Ordering::Relaxed);
    std::thread::sleep(ctx.options.tick * 15);
    let during = ctx.fleet.changed()?.len();
    daemon.kill()?;
    outcome.summary.kills += 1;
    fs::remove_file(&filler)?;
    eprintln!(
        "chaos: full disk: {before} knobs raised before the disk filled ({filled} bytes), {during} when killed"
    );
    if before == 0 {
        outcome
            .failures
            .push("full disk: no knob was raised before the disk filled".into());
    }
    let mut again = start(ctx, &socket, &state, &log, &cfg)?;
    again.ready()?;
    drop(feeder);
    again.stop()?;
    panics(&log, outcome);
    drop(tmpfs);
    ctx.check("full disk", outcome)
}

/// Phase 3: knobs raised, SIGKILL, the configuration file broken, then
/// `--restore` alone must put every original back.
pub(crate) fn broken_config(ctx: &Ctx, outcome: &mut Outcome) -> anyhow::Result<()> {
    let (socket, log, cfg) = ctx.setup("broken", "")?;
    let state = socket.with_file_name("state");
    let feeder = Feeder::start(
        socket.clone(),
        ctx.paths(),
        ctx.options.tick,
        ctx.options.seed ^ 3,
    );
    let mut daemon = start(ctx, &socket, &state, &log, &cfg)?;
    daemon.ready()?;
    std::thread::sleep(ctx.options.tick * 10);
    let raised = ctx.fleet.changed()?.len();
    daemon.kill()?;
    outcome.summary.kills += 1;
    drop(feeder);
    if raised == 0 {
        outcome
            .failures
            .push("broken configuration: no knob was raised before the kill".into());
    }
    fs::write(&cfg, "tick = \"1s\"\n[[manage]\ncgroup = ")?;
    let out = Command::new(orchestrator_bin())
        .arg("--config")
        .arg(&cfg)
        .arg("--state-dir")
        .arg(&state)
        .arg("--socket")
        .arg(&socket)
        .arg("--restore")
        .env("SHADOW_LOG", "info")
        .output()
        .context("running shadow-orchestrator --restore")?;
    eprintln!("chaos: broken configuration: {raised} knobs raised at the kill, then --restore");
    if !out.status.success() {
        outcome.failures.push(format!(
            "--restore with a broken configuration exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    panics(&log, outcome);
    ctx.check("broken configuration", outcome)
}

/// How long a dead agent's reservation may stay (docs/orchestrator.md):
/// the close is seen at once and the next cycle restores, so two ticks,
/// plus this much for the scheduler of a busy host.
const RELEASE_GRACE: Duration = Duration::from_millis(300);

/// Phase 5: the real agent reports a CPU burner in the first cgroup until
/// its quota is raised, is SIGKILLed, and the quota must be back within
/// two ticks (+ [`RELEASE_GRACE`]).
pub(crate) fn agent_killed(ctx: &Ctx, outcome: &mut Outcome) -> anyhow::Result<()> {
    let (socket, log, cfg) = ctx.setup("agent", "")?;
    let state = socket.with_file_name("state");
    let mut daemon = start(ctx, &socket, &state, &log, &cfg)?;
    daemon.ready()?;
    let m = &ctx.fleet.members[0];
    let sock = socket.to_str().context("socket path")?;
    let agent = Agent::start_with(&m.cg.path, "200ms", &["--orchestrator", sock]);
    let _burner = ChildGuard(
        m.cg.start(Command::new("sh").args(["-c", "while :; do :; done"]))
            .context("starting a CPU burner")?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.as_created()? {
        if Instant::now() > deadline {
            outcome
                .failures
                .push("agent killed: the burner's quota was never raised in 30 s".into());
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let raised = m.cores()?;
    let killed = Instant::now();
    drop(agent); // SIGKILL, then reaped
    let bound = ctx.options.tick * 2 + RELEASE_GRACE;
    while !m.as_created()? && killed.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let release = killed.elapsed();
    eprintln!(
        "chaos: agent killed with the quota at {raised:.2} cores: released in {release:.1?} (bound {bound:?})"
    );
    if release > bound {
        let log = daemon.log();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        outcome.failures.push(format!(
            "agent killed: its reservation was released after {release:?}, more than {bound:?}; \
             the orchestrator's log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    daemon.stop()?;
    panics(&log, outcome);
    Ok(())
}

/// A panic in any orchestrator log is a failure.
pub(crate) fn panics(log: &Path, outcome: &mut Outcome) {
    let text = fs::read_to_string(log).unwrap_or_default();
    if let Some(line) = text.lines().find(|l| l.contains("panicked")) {
        outcome.failures.push(format!("{}: {line}", log.display()));
    }
}
