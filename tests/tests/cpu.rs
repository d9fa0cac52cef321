//! CPU time and run-queue delay against the kernel's own accounting.

use std::time::Duration;

use shadow_tests::{Agent, FIELDS, TestCgroup, finish, keyed, ratio, total, workload};

/// On-CPU time of a CPU-bound workload within 2% of the cgroup's
/// `cpu.stat` usage_usec.
#[test]
fn cpu_time_matches_cpu_stat() {
    let cg = TestCgroup::new("cpu", &[]);
    let agent = Agent::start(&cg.path, "200ms");
    let child = cg.spawn(&mut workload(&["burn", "3"]));
    finish(child);
    let samples = agent.stop(Duration::from_millis(600));
    let usage_ns = keyed(&cg.v2_dir().join("cpu.stat"))["usage_usec"] * 1000;
    let r = ratio("cpu_ns", total(&samples, &cg.path, "cpu_ns"), usage_ns);
    assert!(
        (0.98..=1.02).contains(&r),
        "cpu_ns off by more than 2%: {r}"
    );
    // Charged as it runs, not in lumps at switch-out: no interval shows a
    // single-threaded task using much more than one core.
    let lumpiest = samples
        .iter()
        .filter(|s| s["cgroup"] == cg.path.as_str())
        .map(|s| s["cpu_ns"].as_f64().unwrap() / s["interval_ns"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(
        lumpiest < 1.25,
        "one interval shows {lumpiest:.2} cores for one thread"
    );
    // Every line carries the documented schema (memory fields are null
    // here: this cgroup has no v1 memory directory on a hybrid host).
    let line = samples
        .iter()
        .find(|s| s["cgroup"] == cg.path.as_str())
        .expect("a sample");
    for field in FIELDS {
        assert!(line.get(field).is_some(), "field {field} missing in {line}");
    }
}

/// Two CPU-bound tasks sharing one CPU: the run-queue delay within 5% of the
/// sum of their `/proc/<pid>/schedstat` run delays.
#[test]
fn runq_delay_matches_schedstat() {
    let cg = TestCgroup::new("runq", &[]);
    let agent = Agent::start(&cg.path, "200ms");
    let a = cg.spawn(&mut workload(&["burn", "3", "0"]));
    let b = cg.spawn(&mut workload(&["burn", "3", "0"]));
    let delay: u64 = [finish(a), finish(b)]
        .iter()
        .map(|v| v["run_delay_ns"].as_u64().unwrap())
        .sum();
    let samples = agent.stop(Duration::from_millis(600));
    assert!(
        delay > 1_000_000_000,
        "the tasks barely competed ({delay} ns): test is meaningless"
    );
    let r = ratio(
        "runq_delay_ns",
        total(&samples, &cg.path, "runq_delay_ns"),
        delay,
    );
    assert!(
        (0.95..=1.05).contains(&r),
        "runq_delay_ns off by more than 5%: {r}"
    );
    assert!(total(&samples, &cg.path, "runq_count") > 0);
}
