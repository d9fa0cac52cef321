//! The main job end to end, shortened from `cargo xtask demo`: agent (real
//! BPF) and orchestrator managing a sandbox cgroup that runs periodic CPU
//! bursts under a static quota.

use shadow_tests::scenario::{self, Demo};

#[test]
fn reservation_is_raised_before_a_burst_and_everything_is_restored() {
    let demo = Demo {
        bursts: 10,
        ..Demo::default()
    };
    let out = scenario::run(&demo).expect("demo scenario");
    let leads = out.leads();
    for l in &leads {
        eprintln!(
            "burst {}: quota {:.2} cores mid-gap, {:.2} just before, raised {:?} s ahead",
            l.burst, l.idle, l.before, l.raised_ahead_s
        );
    }
    assert!(
        leads.iter().any(|l| l.raised_ahead_s.is_some()),
        "no burst had its quota raised before it started; log:\n{}",
        out.log
    );
    assert!(!out.written.is_empty(), "nothing was written:\n{}", out.log);
    assert!(
        out.written.iter().all(|c| *c == out.cgroup),
        "a cgroup outside the sandbox was written: {:?}",
        out.written
    );
    assert!(
        out.restored,
        "the quota or shares were not restored:\n{}",
        out.log
    );
}
