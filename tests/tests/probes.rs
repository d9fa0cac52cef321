//! What the agent says about its probes and its prerequisites.

use std::{os::unix::process::CommandExt as _, process::Command};

use shadow_tests::{agent_bin, require_root};

/// Every probe is either attached or off because the hook is missing, and
/// the report says which; none fails.
#[test]
fn check_reports_every_probe() {
    require_root();
    let out = Command::new(agent_bin())
        .arg("check")
        .output()
        .expect("run check");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "check failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for program in [
        "sched_switch",
        "page_fault_user",
        "block_io_start",
        "block_rq_complete",
        "net_egress",
        "net_ingress",
        "direct_reclaim_begin",
        "direct_reclaim_end",
        "memcg_reclaim_begin",
        "memcg_reclaim_end",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(program))
            .unwrap_or_else(|| panic!("{program} not reported"));
        assert!(
            line.contains("attached") || line.contains("off: this kernel has no tracepoint"),
            "{line}"
        );
    }
    // Memory levels come from cgroupfs; the report names the files.
    let memory = text
        .lines()
        .find(|l| l.starts_with("memory "))
        .expect("memory source reported");
    assert!(
        memory.contains("memory.current") || memory.contains("memory.usage_in_bytes"),
        "{memory}"
    );
}

/// Without privileges the agent says what to do, with no panic or raw errno.
#[test]
fn unprivileged_run_is_refused_clearly() {
    require_root();
    let mut cmd = Command::new(agent_bin());
    cmd.args(["observe", "--count", "1"]);
    // nobody/nogroup.
    cmd.uid(65534).gid(65534);
    let out = cmd.output().expect("run as nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("needs root") && err.contains("sudo"),
        "unclear error: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
