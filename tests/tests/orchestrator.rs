//! The orchestrator end to end on this host: the agent (real BPF) reports a
//! burning cgroup, the orchestrator raises the cgroup's v1 CPU quota above
//! the static half core for its demand, and every original value comes back: on SIGTERM, and
//! after SIGKILL at the next start. Dry-run writes nothing; a cgroup that
//! is not opted in is never written.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use shadow_common::mounts::Mounts;
use shadow_tests::{
    Agent, TestCgroup,
    orchestrator::{Orchestrator, TempDir, orchestrator_bin},
    workload,
};

/// The static setting the operator gave the cgroup: half a core.
const QUOTA: &str = "50000";

/// A v1 cpu test cgroup with a 0.5-core quota, and its knob files.
struct Managed {
    cg: TestCgroup,
    quota: PathBuf,
    shares: PathBuf,
}

impl Managed {
    fn new(name: &str) -> Self {
        let cg = TestCgroup::new(name, &["cpu"]);
        let mounts = Mounts::from_system().unwrap();
        let dir = mounts.v1_dir("cpu", &cg.path).unwrap();
        let quota = dir.join("cpu.cfs_quota_us");
        fs::write(&quota, QUOTA).unwrap();
        Self {
            cg,
            quota,
            shares: dir.join("cpu.shares"),
        }
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap().trim().to_owned()
    }
}

fn config(dir: &Path, managed: &str) -> PathBuf {
    let path = dir.join("shadow.toml");
    let text = format!(
        "lead = 3\n[[manage]]\ncgroup = \"{managed}\"\ncpu = {{ floor = 0.2, ceiling = 1.5 }}\n"
    );
    fs::write(&path, text).unwrap();
    path
}

/// Records the highest quota seen while the test runs.
struct Watch {
    max: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
}

impl Watch {
    fn start(file: PathBuf) -> Self {
        let max = Arc::new(AtomicI64::new(i64::MIN));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (max.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(v) = Managed::read(&file).parse::<i64>() {
                    m.fetch_max(v, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self { max, stop }
    }

    fn max(&self) -> i64 {
        self.max.load(Ordering::Relaxed)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Burns a CPU in the managed cgroup with the agent reporting to `o`,
/// until the quota was raised above the static half core (or 20 s).
fn burn_until_raised(m: &Managed, o: &Orchestrator, watch: &Watch) -> Agent {
    let socket = o.socket.to_str().unwrap().to_owned();
    let agent = Agent::start_with(&m.cg.path, "200ms", &["--orchestrator", &socket]);
    let mut child = m.cg.spawn(&mut workload(&["burn", "25"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while watch.max() <= 50_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        watch.max() > 50_000,
        "the quota was never raised above the static 0.5 core (max seen {}); log:\n{}",
        watch.max(),
        o.stderr()
    );
    agent
}

/// A managed cgroup whose quota the orchestrator raised for a burn, and
/// everything that got it there.
struct Raised {
    m: Managed,
    /// Its `cpu.shares` before the orchestrator started.
    shares: String,
    dir: TempDir,
    cfg: PathBuf,
    o: Orchestrator,
    watch: Watch,
    agent: Agent,
}

impl Raised {
    fn new(name: &str) -> Self {
        let m = Managed::new(name);
        let shares = Managed::read(&m.shares);
        let dir = TempDir::new(name);
        let cfg = config(&dir.0, &m.cg.path);
        let o = Orchestrator::start(
            &dir.0.join("o.sock"),
            &dir.0.join("state"),
            &["--config", cfg.to_str().unwrap()],
        );
        let watch = Watch::start(m.quota.clone());
        let agent = burn_until_raised(&m, &o, &watch);
        Self {
            m,
            shares,
            dir,
            cfg,
            o,
            watch,
            agent,
        }
    }
}

#[test]
fn quota_is_raised_for_demand_and_restored_on_sigterm() {
    // Every part bound: what is not would be dropped (removed) at once.
    let Raised {
        m,
        shares,
        dir: _dir,
        cfg: _cfg,
        o,
        watch: _watch,
        agent,
    } = Raised::new("orch-term");
    let samples = agent.stop(Duration::from_millis(500));
    // The agent shows the reservation the orchestrator holds, as managed.
    assert!(
        samples
            .iter()
            .any(|s| s["cgroup"] == m.cg.path.as_str() && s["cpu_reservation_managed"] == true),
        "the agent never showed a managed reservation"
    );
    let log = o.stderr();
    assert!(log.contains("cgroup knob written"), "{log}");
    let status = o.signal(libc::SIGTERM);
    assert!(status.success(), "{status}");
    assert_eq!(Managed::read(&m.quota), QUOTA, "quota restored exactly");
    assert_eq!(Managed::read(&m.shares), shares, "shares restored exactly");
}

#[test]
fn originals_come_back_at_the_next_start_after_sigkill() {
    let Raised {
        m,
        shares,
        dir,
        cfg: _cfg,
        o,
        watch,
        agent,
    } = Raised::new("orch-kill");
    let state = dir.0.join("state");
    drop(watch);
    let status = o.signal(libc::SIGKILL);
    assert!(!status.success());
    drop(agent);
    assert_ne!(
        Managed::read(&m.quota),
        QUOTA,
        "SIGKILL left the raise in place"
    );
    // The next start restores before anything else; --restore stops there.
    let out = std::process::Command::new(orchestrator_bin())
        .arg("--restore")
        .arg("--state-dir")
        .arg(&state)
        .arg("--socket")
        .arg(dir.0.join("o2.sock"))
        .env("SHADOW_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("after a crash"), "{log}");
    assert_eq!(Managed::read(&m.quota), QUOTA, "quota restored exactly");
    assert_eq!(Managed::read(&m.shares), shares, "shares restored exactly");
}

#[test]
fn dry_run_and_cgroups_not_opted_in_are_never_written() {
    let m = Managed::new("orch-dry");
    let other = Managed::new("orch-other");
    let dir = TempDir::new("orch-dry");
    let cfg = config(&dir.0, &m.cg.path);
    let o = Orchestrator::start(
        &dir.0.join("o.sock"),
        &dir.0.join("state"),
        &["--config", cfg.to_str().unwrap(), "--dry-run"],
    );
    let watch = Watch::start(m.quota.clone());
    let watch_other = Watch::start(other.quota.clone());
    let socket = o.socket.to_str().unwrap().to_owned();
    // One agent observing both cgroups (their common parent is the root).
    let agent = Agent::start_with("/", "200ms", &["--orchestrator", &socket]);
    let mut a = m.cg.spawn(&mut workload(&["burn", "25"]));
    let mut b = other.cg.spawn(&mut workload(&["burn", "25"]));
    let path = m.cg.path.clone();
    o.wait_for(Duration::from_secs(20), |lines| {
        lines
            .iter()
            .any(|l| l["cgroup"] == path.as_str() && l["knob"] == "cpu.cfs_quota_us")
    });
    for c in [&mut a, &mut b] {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(agent);
    let lines = o.lines();
    let line = lines
        .iter()
        .find(|l| l["knob"] == "cpu.cfs_quota_us")
        .unwrap();
    assert_eq!(line["old"], QUOTA, "{line}");
    assert!(line["reason"].as_str().unwrap().contains("band"), "{line}");
    assert!(
        lines.iter().all(|l| l["cgroup"] != other.cg.path.as_str()),
        "a cgroup not opted in appeared in the writes"
    );
    let status = o.signal(libc::SIGTERM);
    assert!(status.success(), "{status}");
    assert_eq!(watch.max(), 50_000, "dry run changed the quota");
    assert_eq!(
        watch_other.max(),
        50_000,
        "a cgroup not opted in was written"
    );
    assert!(
        !dir.0.join("state").exists(),
        "dry run created the state directory"
    );
}

#[test]
fn sighup_reloads_keeps_the_running_config_on_error_and_restores_what_it_no_longer_manages() {
    let Raised {
        m,
        shares,
        dir: _dir,
        cfg,
        o,
        watch: _watch,
        agent,
    } = Raised::new("orch-hup");
    // A broken file changes nothing (the 30 s default cooldown keeps the
    // raise in place meanwhile).
    fs::write(&cfg, "lead = 99\n").unwrap();
    o.send(libc::SIGHUP);
    o.wait_for_log(
        Duration::from_secs(5),
        "reload failed, keeping the running configuration",
    );
    let log = o.stderr();
    assert!(
        log.contains("line 1") && log.contains("outside 1..=6"),
        "{log}"
    );
    assert_ne!(
        Managed::read(&m.quota),
        QUOTA,
        "a failed reload undid the raise"
    );
    // A file without the rule: the cgroup is released at once.
    fs::write(&cfg, "lead = 3\n").unwrap();
    o.send(libc::SIGHUP);
    o.wait_for_log(Duration::from_secs(5), "configuration reloaded");
    let log = o.stderr();
    assert!(log.contains("no longer managed"), "{log}");
    assert_eq!(Managed::read(&m.quota), QUOTA, "quota restored on reload");
    assert_eq!(
        Managed::read(&m.shares),
        shares,
        "shares restored on reload"
    );
    // And it stays released while the agent keeps reporting.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        Managed::read(&m.quota),
        QUOTA,
        "written again after release"
    );
    drop(agent);
    let status = o.signal(libc::SIGTERM);
    assert!(status.success(), "{status}");
}
