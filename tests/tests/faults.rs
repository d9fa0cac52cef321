//! Page faults against getrusage.

use std::time::Duration;

use shadow_tests::{Agent, TestCgroup, finish, ratio, total, workload};

/// Faults of a workload touching 50,000 fresh pages within 2% of its
/// getrusage minflt + majflt.
#[test]
fn page_faults_match_rusage() {
    let cg = TestCgroup::new("faults", &[]);
    let agent = Agent::start(&cg.path, "200ms");
    let out = finish(cg.spawn(&mut workload(&["touch", "50000"])));
    let samples = agent.stop(Duration::from_millis(600));
    let rusage = out["minflt"].as_u64().unwrap() + out["majflt"].as_u64().unwrap();
    assert!(
        rusage >= 50_000,
        "one fault per touched page expected: {out}"
    );
    let r = ratio(
        "page_faults",
        total(&samples, &cg.path, "page_faults"),
        rusage,
    );
    assert!(
        (0.98..=1.02).contains(&r),
        "page_faults off by more than 2%: {r}"
    );
}
