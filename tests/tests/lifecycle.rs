//! cgroups that come and go while the agent runs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shadow_tests::{Agent, TestCgroup, finish, keyed, ratio, total, workload};

/// A cgroup created after the agent started is reported under its path from
/// its first interval; once removed, it is reported for its last interval
/// and then no more (its kernel entry is deleted).
#[test]
fn new_and_removed_cgroups_are_tracked() {
    let agent = Agent::start("/", "200ms");
    let cg = TestCgroup::new("lifecycle", &[]);
    let path = cg.path.clone();
    finish(cg.spawn(&mut workload(&["burn", "1"])));
    std::thread::sleep(Duration::from_millis(400));
    let usage_ns = keyed(&cg.v2_dir().join("cpu.stat"))["usage_usec"] * 1000;
    drop(cg);
    let removed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // The agent walks the tree every 10 intervals (2 s here).
    let samples = agent.stop(Duration::from_secs(4));
    let r = ratio(
        "cpu_ns of a new cgroup",
        total(&samples, &path, "cpu_ns"),
        usage_ns,
    );
    assert!(
        (0.98..=1.02).contains(&r),
        "the new cgroup's CPU time was not all reported under its path: {r}"
    );
    let late: Vec<_> = samples
        .iter()
        .filter(|s| s["cgroup"] == path.as_str() && s["ts"].as_f64().unwrap() > removed + 2.5)
        .collect();
    assert!(late.is_empty(), "removed cgroup still reported: {late:?}");
    assert!(
        samples.iter().all(|s| s["cgroup"] != "?"),
        "a sample without a path"
    );
}

/// A task that moves to another cgroup while it runs: its CPU time before
/// the move goes to the first cgroup, after it to the second, each within
/// 2% of that cgroup's `cpu.stat` (the agent caches a task's cgroup and
/// must notice the move).
#[test]
fn a_task_that_moves_is_charged_to_each_cgroup_in_turn() {
    let first = TestCgroup::new("move-a", &[]);
    let second = TestCgroup::new("move-b", &[]);
    let agent = Agent::start("/", "200ms");
    let procs = second.v2_dir().join("cgroup.procs");
    finish(first.spawn(&mut workload(&["burn-move", "2", procs.to_str().unwrap()])));
    let samples = agent.stop(Duration::from_millis(600));
    for cg in [&first, &second] {
        let usage_ns = keyed(&cg.v2_dir().join("cpu.stat"))["usage_usec"] * 1000;
        let r = ratio(
            &format!("cpu_ns of {}", cg.path),
            total(&samples, &cg.path, "cpu_ns"),
            usage_ns,
        );
        assert!((0.98..=1.02).contains(&r), "{}: {r}", cg.path);
    }
}
