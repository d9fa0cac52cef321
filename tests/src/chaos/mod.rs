//! Fault injection against the real `shadow-orchestrator` (and, for the
//! last phase, the real `shadow-agent`), as root, on cgroups it creates:
//! the code behind `cargo xtask chaos` and the CI-sized `tests/chaos.rs`.
//!
//! Phases, each on a fresh state directory and the same managed cgroups:
//!
//! 1. kill -9 at random moments, under a fake agent that sends new
//!    forecasts for every cgroup each tick (so knobs keep changing);
//! 2. a full disk: the state directory on a tiny tmpfs filled mid-run;
//! 3. a broken configuration, then `--restore`;
//! 4. misbehaving peers while a good agent is served ([`peers`]);
//! 5. the real agent killed while its reservation is held.
//!
//! After phases 1 to 3, every knob of every cgroup is compared with the
//! value it had before the first start. Layout: `mod` (options, summary,
//! the run), [`fleet`] (the cgroups and their knobs), [`feed`] (the fake
//! agent), [`daemon`] (the orchestrator as a child process), [`phases`],
//! [`peers`].

mod daemon;
mod feed;
mod fleet;
mod peers;
mod phases;

use std::{path::PathBuf, time::Duration};

use serde::Serialize;

use crate::orchestrator::TempDir;

/// What to inject and how much.
#[derive(Clone, Debug)]
pub struct Options {
    /// Managed cgroups created under `/shadow-chaos-<pid>`.
    pub cgroups: usize,
    /// SIGKILL iterations in phase 1.
    pub kills: u32,
    /// Longest random wait between a start and its SIGKILL.
    pub max_wait: Duration,
    /// Idle TCP connections opened in phase 4.
    pub idle: usize,
    /// Slowloris handshakes in phase 4.
    pub slowloris: usize,
    /// How long the peers of phase 4 attack.
    pub attack: Duration,
    /// Seed of every random choice (printed, so a run can be repeated).
    pub seed: u64,
    /// The orchestrator's tick.
    pub tick: Duration,
    /// How long a good agent's report may wait for its reservation state
    /// before that tick counts as late (docs/benchmarks.md).
    pub deadline: Duration,
}

impl Options {
    /// The full run of `cargo xtask chaos`.
    pub fn full(seed: u64) -> Self {
        Self {
            cgroups: 24,
            kills: 100,
            max_wait: Duration::from_millis(1500),
            idle: 1000,
            slowloris: 50,
            attack: Duration::from_secs(8),
            seed,
            tick: Duration::from_millis(100),
            deadline: Duration::from_secs(1),
        }
    }

    /// A run sized for CI (well under 90 s).
    pub fn ci(seed: u64) -> Self {
        Self {
            cgroups: 12,
            kills: 10,
            idle: 100,
            slowloris: 10,
            attack: Duration::from_secs(7),
            ..Self::full(seed)
        }
    }
}

/// The one JSON line of a run.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// SIGKILLs of the orchestrator (phases 1 to 3).
    pub kills: u64,
    /// Knob comparisons with the value before the first start.
    pub knobs_checked: u64,
    /// Comparisons that found another value.
    pub knobs_lost: u64,
    /// Misbehaving connections the orchestrator refused or cut.
    pub peers_refused: u64,
    /// Good-agent reports whose reservation state did not come back
    /// within [`Options::deadline`].
    pub good_agent_late_ticks: u64,
}

/// A run's summary and every promise it found broken besides lost knobs
/// and late ticks (a peer getting another host's state, a release later
/// than documented, a phase that never raised a knob).
#[derive(Debug, Default)]
pub struct Outcome {
    /// The figures.
    pub summary: Summary,
    /// What else went wrong, one sentence each.
    pub failures: Vec<String>,
}

impl Outcome {
    /// True when nothing was lost, nothing was late and nothing failed.
    pub fn passed(&self) -> bool {
        self.summary.knobs_lost == 0
            && self.summary.good_agent_late_ticks == 0
            && self.failures.is_empty()
    }
}

/// Runs every phase with `options` (root, real binaries from
/// `SHADOW_ORCHESTRATOR_BIN` and `SHADOW_AGENT_BIN`). Progress goes to
/// stderr; the cgroups, mounts and temporary files are removed at the end,
/// also on error.
pub fn run(options: &Options) -> anyhow::Result<Outcome> {
    crate::require_root();
    daemon::raise_fd_limit()?;
    eprintln!("chaos: seed {} ({options:?})", options.seed);
    let tmp = TempDir::new("chaos");
    let fleet = fleet::Fleet::create(options.cgroups)?;
    let mut rng = Rng::new(options.seed);
    let mut outcome = Outcome::default();
    let ctx = phases::Ctx {
        options,
        fleet: &fleet,
        dir: tmp.0.clone(),
    };
    let timed = |name: &str, started: std::time::Instant| {
        eprintln!("chaos: {name} took {:.1?}", started.elapsed());
    };
    let t = std::time::Instant::now();
    phases::kill_loop(&ctx, &mut rng, &mut outcome)?;
    timed("the kill loop", t);
    let t = std::time::Instant::now();
    phases::full_disk(&ctx, &mut outcome)?;
    timed("the full disk", t);
    let t = std::time::Instant::now();
    phases::broken_config(&ctx, &mut outcome)?;
    timed("the broken configuration", t);
    let t = std::time::Instant::now();
    peers::attack(&ctx, &mut outcome)?;
    timed("the peers", t);
    let t = std::time::Instant::now();
    phases::agent_killed(&ctx, &mut outcome)?;
    timed("the agent killed", t);
    Ok(outcome)
}

/// A temporary folder of the run.
pub(crate) fn sub(dir: &std::path::Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::create_dir_all(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(path)
}

/// splitmix64: reproducible from the printed seed, no dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
