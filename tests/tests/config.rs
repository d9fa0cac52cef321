//! The shared configuration file against the real agent: refused at start
//! with the line, re-read on SIGHUP; a file that does not load keeps the
//! running configuration; a new orchestrator address is connected to at
//! once, and keys that need a restart are named.

use std::{fs, process::Command, time::Duration};

use shadow_tests::{
    Agent, TestCgroup, agent_bin, finish,
    orchestrator::{Orchestrator, TempDir},
    workload,
};

#[test]
fn a_bad_file_stops_the_agent_at_start_with_the_line() {
    shadow_tests::require_root();
    let dir = TempDir::new("config-bad");
    let file = dir.0.join("shadow.toml");
    fs::write(&file, "tick = \"1s\"\n[agent]\nintervall = \"1s\"\n").unwrap();
    let out = Command::new(agent_bin())
        .args(["observe", "--count", "1", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("line 3") && err.contains("unknown field `intervall`"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "it observed anyway");
}

#[test]
fn sighup_reloads_the_agent_and_a_failed_reload_keeps_it_running() {
    let cg = TestCgroup::new("config-hup", &[]);
    let dir = TempDir::new("config-hup");
    let first = Orchestrator::start(&dir.0.join("a.sock"), &dir.0.join("state-a"), &[]);
    let second = Orchestrator::start(&dir.0.join("b.sock"), &dir.0.join("state-b"), &[]);
    let file = dir.0.join("shadow.toml");
    let write = |orchestrator: &std::path::Path, extra: &str| {
        let text = format!(
            "lead = 3\n[agent]\norchestrator = \"{}\"\n{extra}",
            orchestrator.display()
        );
        fs::write(&file, text).unwrap();
    };
    write(&first.socket, "");
    let agent = Agent::start_with(
        &cg.path,
        "200ms",
        &["--config", file.to_str().unwrap(), "--no-hints"],
    );
    // The file's orchestrator is used: no flag names one.
    first.wait_for_log(Duration::from_secs(10), "connected");
    fs::write(&file, "[agent]\nquantile = 7\n").unwrap();
    agent.send(libc::SIGHUP);
    agent.wait_for_log(
        Duration::from_secs(5),
        "reload failed, keeping the running configuration",
    );
    assert!(agent.log().contains("line 2"), "{}", agent.log());
    write(&second.socket, "quantile = 0.9\n");
    agent.send(libc::SIGHUP);
    agent.wait_for_log(Duration::from_secs(5), "configuration reloaded");
    second.wait_for_log(Duration::from_secs(10), "connected");
    let log = agent.log();
    assert!(
        log.contains("`quantile` changed; it takes effect at the next start"),
        "{log}"
    );
    // Still observing after both reloads.
    let printed = agent.printed();
    let burn = cg.spawn(&mut workload(&["burn", "1"]));
    finish(burn);
    assert!(agent.printed() > printed, "the agent stopped printing");
    let samples = agent.stop(Duration::from_millis(300));
    assert!(samples.iter().any(|s| s["cgroup"] == cg.path.as_str()));
}
