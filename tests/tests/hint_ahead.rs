//! A hint reaches the orchestrator ahead of time: a process in a managed
//! cgroup announces 1.5 cores starting in 3 s; the agent raises that
//! cgroup's band over the window (marked as coming from a hint on the
//! wire), and the orchestrator raises the cgroup's real CPU quota before
//! the window starts, then restores the original when it stops.

use std::{
    fs,
    process::Command,
    time::{Duration, Instant},
};

use shadow_common::host::unix_now;
use shadow_tests::{
    hint::HintAgent,
    orchestrator::{Orchestrator, TempDir},
    scenario::Sandbox,
};

#[test]
fn the_quota_is_raised_before_a_hinted_window() {
    // 0.3 cores of quota (v1 cpu.cfs_quota_us or v2 cpu.max).
    let sandbox = Sandbox::create(
        &format!("/shadow-test-hint-ahead-{}", std::process::id()),
        0.3,
        false,
    )
    .expect("sandbox");
    let a = &sandbox.cg;
    let dir = TempDir::new("hint-ahead-orch");
    let config = dir.0.join("shadow.toml");
    fs::write(
        &config,
        format!(
            "lead = 5\nmin_interval = \"200ms\"\ncooldown = \"1s\"\n[[manage]]\ncgroup = \"{}\"\ncpu = {{ floor = 0.2, ceiling = 1.9 }}\n",
            a.path
        ),
    )
    .unwrap();
    let o = Orchestrator::start(
        &dir.0.join("o.sock"),
        &dir.0.join("state"),
        &["--config", config.to_str().unwrap()],
    );
    let socket = o.socket.to_str().unwrap().to_owned();
    let agent = HintAgent::start("hint-ahead", &a.path, &["--orchestrator", &socket]);
    // A trickle of CPU so the cgroup is sampled every interval (ten forks
    // a second: cheap in the emulated guest tier too).
    let mut load = a.spawn(Command::new("sh").args(["-c", "while :; do sleep 0.1; done"]));
    std::thread::sleep(Duration::from_secs(3));
    let (ok, reply) = agent.hint_from(a, &["--cpu", "1.5", "--start-in", "3s", "--duration", "2s"]);
    assert!(ok && reply["status"] == "accepted", "{reply}");
    let start = reply["start"].as_f64().unwrap();
    // The first moment the kernel's quota is at least a core.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut raised_at = None;
    while Instant::now() < deadline && raised_at.is_none() {
        if sandbox.cores().unwrap() >= 1.0 {
            raised_at = Some(unix_now());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = load.kill();
    let _ = load.wait();
    drop(agent);
    let log = o.stderr();
    let status = o.signal(libc::SIGTERM);
    assert!(status.success(), "{status}");
    let raised_at = raised_at.unwrap_or_else(|| panic!("the quota never reached a core:\n{log}"));
    let lead = start - raised_at;
    eprintln!("quota raised {lead:.2} s before the hinted window");
    assert!(
        lead > 0.0,
        "raised {:.2} s after the window began:\n{log}",
        -lead
    );
    assert!(sandbox.as_created().unwrap(), "quota and weight restored");
}
