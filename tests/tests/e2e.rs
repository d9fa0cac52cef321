//! The main job end to end, shortened from `cargo xtask demo`: agent (real
//! BPF) and orchestrator managing a sandbox cgroup that runs periodic CPU
//! bursts under a static quota.

use shadow_tests::scenario::{self, Demo};

/// The first burst by which the agent's forecaster has learnt the 10 s
/// period: its detector re-selects every 32 ticks (16 s at 500 ms) from
/// the autocorrelation of what it has seen, which takes about four
/// periods of bursts (it found it 47 s in on the `bench e2e` run's demand,
/// docs/benchmarks.md).
const LEARNT_FROM: usize = 6;

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
    let learnt: Vec<_> = leads.iter().filter(|l| l.burst >= LEARNT_FROM).collect();
    let ahead = learnt.iter().filter(|l| l.raised_ahead_s.is_some()).count();
    assert!(
        !learnt.is_empty() && 2 * ahead >= learnt.len(),
        "{ahead} of the {} bursts after the period is learnt had their quota raised before they started (at least half must); log:\n{}",
        learnt.len(),
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
