//! Memory actuation never kills: a managed cgroup whose memory grows fast
//! past the operator's v1 `memory.limit_in_bytes` has its limit raised
//! ahead of it by the orchestrator (agent forecasts, real BPF and real
//! cgroupfs) and is never OOM-killed; the same workload under the same
//! limit without Shadow is (so the test can fail). The original limit is
//! restored when the orchestrator stops.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use shadow_tests::{
    Agent, TestCgroup,
    orchestrator::{Orchestrator, TempDir},
    workload,
};

/// The operator's limit: 256 MiB.
const LIMIT: u64 = 256 << 20;

/// Growth to 640 MiB, 32 MiB every 250 ms (128 MiB/s), held 2 s.
const GROW: [&str; 5] = ["grow", "640", "32", "250", "2000"];

/// The v1 memory directory of `cg`, with the operator's limit set.
fn limited(cg: &TestCgroup) -> PathBuf {
    let dir = cg.v1_dir("memory").expect("v1 memory is mounted here");
    fs::write(dir.join("memory.limit_in_bytes"), LIMIT.to_string()).expect("set the limit");
    dir
}

/// OOM kills in the cgroup so far (v1 `memory.oom_control`'s `oom_kill`).
fn oom_kills(dir: &Path) -> u64 {
    let text = fs::read_to_string(dir.join("memory.oom_control")).expect("oom_control");
    shadow_common::values::memory_stat(&text, ["oom_kill"]).expect("oom_control")[0]
        .expect("this kernel counts oom_kill")
}

fn limit(dir: &Path) -> u64 {
    let text = fs::read_to_string(dir.join("memory.limit_in_bytes")).expect("limit");
    text.trim().parse().expect("limit is bytes")
}

#[test]
fn a_fast_grower_under_shadow_is_never_oom_killed_and_its_limit_follows_it() {
    // Without Shadow: the same growth under the same limit is killed.
    let bare = TestCgroup::new("oom-bare", &["memory"]);
    let bare_dir = limited(&bare);
    let out = bare
        .spawn(&mut workload(&GROW))
        .wait_with_output()
        .expect("wait");
    let bare_kills = oom_kills(&bare_dir);
    eprintln!("without Shadow: {:?}, oom_kill {bare_kills}", out.status);
    assert!(
        !out.status.success() && bare_kills >= 1,
        "the workload was meant to outgrow the limit"
    );
    drop(bare);

    let cg = TestCgroup::new("oom-shadow", &["memory"]);
    let dir = limited(&cg);
    let tmp = TempDir::new("oom-shadow");
    let cfg = tmp.0.join("shadow.toml");
    fs::write(
        &cfg,
        format!(
            "lead = 3\n[[manage]]\ncgroup = \"{}\"\nmemory = {{ floor = \"16MiB\", ceiling = \"4GiB\" }}\n",
            cg.path
        ),
    )
    .expect("config");
    let mut o = Orchestrator::start(
        &tmp.0.join("o.sock"),
        &tmp.0.join("state"),
        &["--config", cfg.to_str().expect("utf-8")],
    );
    let socket = o.socket.to_str().expect("utf-8").to_owned();
    let agent = Agent::start_with(&cg.path, "200ms", &["--orchestrator", &socket]);
    // Let the forecaster see the idle cgroup for a while first.
    std::thread::sleep(Duration::from_secs(2));
    // The highest limit written while it grows, sampled every 20 ms.
    let (max, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let watcher = {
        let (max, stop, dir) = (Arc::clone(&max), Arc::clone(&stop), dir.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                max.fetch_max(limit(&dir), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let run = cg
        .spawn(&mut workload(&GROW))
        .wait_with_output()
        .expect("wait");
    stop.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher");
    let kills = oom_kills(&dir);
    assert!(
        run.status.success() && kills == 0,
        "killed under Shadow ({:?}, oom_kill {kills}, highest limit {} MiB); log:\n{}",
        run.status,
        max.load(Ordering::Relaxed) >> 20,
        o.stderr()
    );
    let text = String::from_utf8_lossy(&run.stdout);
    let out: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("output")).expect("json");
    let samples = agent.stop(Duration::from_millis(400));
    let peak = samples
        .iter()
        .filter(|s| s["cgroup"] == cg.path.as_str())
        .filter_map(|s| s["memory_bytes"].as_u64())
        .max()
        .unwrap_or(0);
    let highest = max.load(Ordering::Relaxed);
    eprintln!(
        "under Shadow: {out}, oom_kill {kills}, peak usage {} MiB, highest limit written {} MiB",
        peak >> 20,
        highest >> 20
    );
    assert_eq!(out["reached"], 640, "{out}");
    assert!(highest >= 640 << 20, "the limit did not follow: {highest}");
    // Stopped, the orchestrator puts the operator's limit back.
    o.terminate();
    assert_eq!(limit(&dir), LIMIT, "the original limit is not restored");
}
