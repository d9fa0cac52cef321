//! The orchestrator end to end on this host: the agent (real BPF) reports a
//! burning cgroup, the orchestrator raises the cgroup's CPU quota (v1
//! `cpu.cfs_quota_us` or v2 `cpu.max`, whichever holds cpu here) above the
//! static half core for its demand, and every original value comes back:
//! on SIGTERM, and after SIGKILL at the next start. Dry-run writes nothing;
//! a cgroup that is not opted in is never written.

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use shadow_tests::{
    Agent,
    orchestrator::{Orchestrator, TempDir, orchestrator_bin},
    scenario::{QuotaWatcher, Sandbox},
    workload,
};

/// The static setting the operator gave the cgroup: half a core.
const STATIC_CORES: f64 = 0.5;

/// A test cgroup under a static half-core quota, with the kernel's text of
/// its quota and weight as created.
struct Managed {
    sandbox: Sandbox,
    quota: String,
    weight: String,
}

impl Managed {
    fn new(name: &str) -> Self {
        let path = format!("/shadow-test-{name}-{}", std::process::id());
        let sandbox = Sandbox::create(&path, STATIC_CORES, false).expect("sandbox");
        Self {
            quota: read(&sandbox.quota_file()),
            weight: read(&sandbox.weight_file()),
            sandbox,
        }
    }

    fn path(&self) -> &str {
        &self.sandbox.cg.path
    }

    /// `(quota, weight)` as the kernel shows them now.
    fn now(&self) -> (String, String) {
        (
            read(&self.sandbox.quota_file()),
            read(&self.sandbox.weight_file()),
        )
    }

    /// The quota file's name, as the orchestrator's dry-run lines name it.
    fn quota_knob(&self) -> String {
        let file = self.sandbox.quota_file();
        file.file_name().unwrap().to_string_lossy().into_owned()
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap().trim().to_owned()
}

fn config(dir: &Path, managed: &str) -> PathBuf {
    let path = dir.join("shadow.toml");
    let text = format!(
        "lead = 3\n[[manage]]\ncgroup = \"{managed}\"\ncpu = {{ floor = 0.2, ceiling = 1.5 }}\n"
    );
    fs::write(&path, text).unwrap();
    path
}

/// Burns a CPU in the managed cgroup with the agent reporting to `o`,
/// until the quota was raised above the static half core (or 20 s).
fn burn_until_raised(m: &Managed, o: &Orchestrator, watch: &QuotaWatcher) -> Agent {
    let socket = o.socket.to_str().unwrap().to_owned();
    let agent = Agent::start_with(m.path(), "200ms", &["--orchestrator", &socket]);
    let mut child = m.sandbox.cg.spawn(&mut workload(&["burn", "25"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while watch.max_cores() <= STATIC_CORES && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        watch.max_cores() > STATIC_CORES,
        "the quota was never raised above the static 0.5 core (max seen {}); log:\n{}",
        watch.max_cores(),
        o.stderr()
    );
    agent
}

/// A managed cgroup whose quota the orchestrator raised for a burn, and
/// everything that got it there.
struct Raised {
    m: Managed,
    dir: TempDir,
    cfg: PathBuf,
    o: Orchestrator,
    watch: QuotaWatcher,
    agent: Agent,
}

impl Raised {
    fn new(name: &str) -> Self {
        let m = Managed::new(name);
        let dir = TempDir::new(name);
        let cfg = config(&dir.0, m.path());
        let o = Orchestrator::start(
            &dir.0.join("o.sock"),
            &dir.0.join("state"),
            &["--config", cfg.to_str().unwrap()],
        );
        let watch = m.sandbox.watch_quota();
        let agent = burn_until_raised(&m, &o, &watch);
        Self {
            m,
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
            .any(|s| s["cgroup"] == m.path() && s["cpu_reservation_managed"] == true),
        "the agent never showed a managed reservation"
    );
    let log = o.stderr();
    assert!(log.contains("cgroup knob written"), "{log}");
    let status = o.signal(libc::SIGTERM);
    assert!(status.success(), "{status}");
    assert_eq!(
        m.now(),
        (m.quota.clone(), m.weight.clone()),
        "quota and weight restored exactly"
    );
}

#[test]
fn originals_come_back_at_the_next_start_after_sigkill() {
    let Raised {
        m,
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
    assert_ne!(m.now().0, m.quota, "SIGKILL left the raise in place");
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
    assert_eq!(
        m.now(),
        (m.quota.clone(), m.weight.clone()),
        "quota and weight restored exactly"
    );
}

#[test]
fn dry_run_and_cgroups_not_opted_in_are_never_written() {
    let m = Managed::new("orch-dry");
    let other = Managed::new("orch-other");
    let dir = TempDir::new("orch-dry");
    let cfg = config(&dir.0, m.path());
    let o = Orchestrator::start(
        &dir.0.join("o.sock"),
        &dir.0.join("state"),
        &["--config", cfg.to_str().unwrap(), "--dry-run"],
    );
    let watch = m.sandbox.watch_quota();
    let watch_other = other.sandbox.watch_quota();
    let socket = o.socket.to_str().unwrap().to_owned();
    // One agent observing both cgroups (their common parent is the root).
    let agent = Agent::start_with("/", "200ms", &["--orchestrator", &socket]);
    let mut a = m.sandbox.cg.spawn(&mut workload(&["burn", "25"]));
    let mut b = other.sandbox.cg.spawn(&mut workload(&["burn", "25"]));
    let (path, knob) = (m.path().to_owned(), m.quota_knob());
    o.wait_for(Duration::from_secs(20), |lines| {
        lines
            .iter()
            .any(|l| l["cgroup"] == path.as_str() && l["knob"] == knob.as_str())
    });
    for c in [&mut a, &mut b] {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(agent);
    let lines = o.lines();
    let line = lines.iter().find(|l| l["knob"] == knob.as_str()).unwrap();
    assert_eq!(line["old"], m.quota.as_str(), "{line}");
    assert!(line["reason"].as_str().unwrap().contains("band"), "{line}");
    assert!(
        lines.iter().all(|l| l["cgroup"] != other.path()),
        "a cgroup not opted in appeared in the writes"
    );
    let status = o.signal(libc::SIGTERM);
    assert!(status.success(), "{status}");
    assert_eq!(watch.max_cores(), STATIC_CORES, "dry run changed the quota");
    assert_eq!(
        watch_other.max_cores(),
        STATIC_CORES,
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
    assert_ne!(m.now().0, m.quota, "a failed reload undid the raise");
    // A file without the rule: the cgroup is released at once.
    fs::write(&cfg, "lead = 3\n").unwrap();
    o.send(libc::SIGHUP);
    o.wait_for_log(Duration::from_secs(5), "configuration reloaded");
    let log = o.stderr();
    assert!(log.contains("no longer managed"), "{log}");
    assert_eq!(
        m.now(),
        (m.quota.clone(), m.weight.clone()),
        "quota and weight restored on reload"
    );
    // And it stays released while the agent keeps reporting.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(m.now().0, m.quota, "written again after release");
    drop(agent);
    let status = o.signal(libc::SIGTERM);
    assert!(status.success(), "{status}");
}
