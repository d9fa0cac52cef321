//! The hint socket end to end: real sockets, real cgroups, clients run as
//! an unprivileged user inside test cgroups so the kernel (SO_PEERCRED,
//! /proc/<pid>/cgroup) says who they are.

use std::{
    io::Write as _,
    process::{Child, Command},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use shadow_tests::{TestCgroup, hint::HintAgent, scenario::Sandbox};

/// A trickle of CPU (a shell forking `sleep`), so the cgroup is sampled
/// every interval while its model band stays far below a 1-core hint.
fn trickle(cg: &TestCgroup) -> Child {
    cg.spawn(Command::new("sh").args(["-c", "while :; do sleep 0.02; done"]))
}

fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

fn code(reply: &Value) -> &str {
    assert_eq!(reply["status"], "refused", "{reply}");
    reply["code"].as_str().expect("a code")
}

#[test]
fn a_hint_for_itself_shapes_the_forecast_during_its_window_only() {
    let parent = TestCgroup::new("hint-own", &[]);
    let a = parent.child("a", &[]);
    let agent = HintAgent::start("hint-own", &parent.path, &[]);
    let load = trickle(&a);
    std::thread::sleep(Duration::from_secs(2));
    // Two cores: far above what the trickle can demand, even waiting on a
    // busy machine's run queues (one task at a time: at most one core).
    let (ok, reply) = agent.hint_from(&a, &["--cpu", "2", "--start-in", "1s", "--duration", "2s"]);
    assert!(ok, "{reply}");
    assert_eq!(reply["status"], "accepted", "{reply}");
    assert_eq!(reply["cgroup"], a.path.as_str(), "the caller's own cgroup");
    let (id, start, end) = (
        reply["id"].as_u64().unwrap(),
        reply["start"].as_f64().unwrap(),
        reply["end"].as_f64().unwrap(),
    );
    let floor = reply["reserve"]["cpu"].as_f64().unwrap();
    assert!(floor > 1.5, "{reply}");
    std::thread::sleep(Duration::from_secs(5));
    stop(load);
    let rows = agent.agent.stop(Duration::ZERO);
    let rows: Vec<&Value> = rows
        .iter()
        .filter(|r| r["cgroup"] == a.path.as_str())
        .collect();
    let (mut inside, mut before, mut after) = (0, 0, 0);
    for r in &rows {
        let ts = r["ts"].as_f64().unwrap();
        let upper = r["cpu_upper_cores"].as_f64().unwrap();
        // The row's forecast is for the interval (ts, ts + 0.2 s].
        if ts < end && ts + 0.2 > start {
            inside += 1;
            assert_eq!(r["hint_active"], true, "{r}");
            assert_eq!(r["hint_id"].as_u64(), Some(id), "{r}");
            assert!(
                upper >= floor - 1e-9,
                "band below the hint in its window: {r}"
            );
        } else {
            if ts + 0.2 <= start {
                before += 1;
            } else {
                after += 1;
            }
            assert_eq!(r["hint_active"], false, "{r}");
            assert!(upper < 0.75 * floor, "hinted band outside the window: {r}");
        }
    }
    eprintln!("rows: {before} before, {inside} inside, {after} after the window");
    assert!(
        inside >= 7 && before >= 5 && after >= 5,
        "{before}/{inside}/{after}"
    );
}

#[test]
fn a_sibling_is_refused_and_root_may_name_it() {
    let parent = TestCgroup::new("hint-auth", &[]);
    let a = parent.child("a", &[]);
    let b = parent.child("b", &[]);
    let agent = HintAgent::start("hint-auth", &parent.path, &[]);
    let hint = ["--cpu", "0.5", "--duration", "2s", "--cgroup"];
    let (ok, reply) = agent.hint_from(&a, &[&hint[..], &[b.path.as_str()]].concat());
    assert!(!ok, "the client must fail on a refusal");
    assert_eq!(code(&reply), "forbidden");
    let (ok, reply) = agent.hint_from(&a, &[&hint[..], &[parent.path.as_str()]].concat());
    assert!(!ok);
    assert_eq!(code(&reply), "forbidden", "a parent is not below its own");
    let (ok, reply) = agent.hint_as_root(&[&hint[..], &[b.path.as_str()]].concat());
    assert!(ok, "{reply}");
    assert_eq!(reply["status"], "accepted");
    assert_eq!(reply["cgroup"], b.path.as_str());
    // A cancels nothing of B's; root cancels it.
    let id = reply["id"].as_u64().unwrap().to_string();
    let (ok, reply) = agent.hint_from(&a, &["--cancel", &id]);
    assert!(!ok);
    assert_eq!(code(&reply), "forbidden");
    let (ok, reply) = agent.hint_as_root(&["--cancel", &id]);
    assert!(ok, "{reply}");
    assert_eq!(reply["status"], "cancelled");
    let (_, reply) = agent.hint_as_root(&["--cpu", "1", "--duration", "1s", "--cgroup", "/"]);
    assert_eq!(code(&reply), "not_observed");
    let missing = format!("{}/missing", parent.path);
    let (_, reply) = agent.hint_as_root(&["--cpu", "1", "--duration", "1s", "--cgroup", &missing]);
    assert_eq!(code(&reply), "no_cgroup");
}

#[test]
fn bad_clients_are_refused_or_closed_and_others_keep_being_served() {
    let parent = TestCgroup::new("hint-bad", &[]);
    let a = parent.child("a", &[]);
    let b = parent.child("b", &[]);
    let agent = HintAgent::start("hint-bad", &parent.path, &[]);
    // A well-behaved client in B, holding its connection throughout.
    let mut good = agent.relay_in(&b);
    let mut served = |when: &str| {
        let r = good.ask(r#"{"cancel":999999}"#);
        assert_eq!(r["code"], "not_found", "good client after {when}: {r}");
    };
    served("start");

    let mut c = agent.connect();
    let long = format!(r#"{{"reason":"{}"}}"#, "x".repeat(5000));
    assert_eq!(code(&c.ask(&long)), "too_long");
    assert!(c.is_closed(), "closed after an oversized line");
    served("an oversized line");

    let mut c = agent.connect();
    assert_eq!(code(&c.ask("this is not json")), "malformed");
    assert!(c.is_closed(), "closed after garbage");
    served("garbage");

    let mut c = agent.connect();
    assert_eq!(
        code(&c.ask(r#"{"cpu":1,"duration":"1s","colour":"red"}"#)),
        "unknown_field"
    );
    assert_eq!(
        code(&c.ask(r#"{"cpu":-2,"duration":"1s"}"#)),
        "out_of_range"
    );
    assert_eq!(
        code(&c.ask(r#"{"cpu":1e12,"duration":"1s"}"#)),
        "out_of_range"
    );
    assert_eq!(
        code(&c.ask(r#"{"memory":"-1GiB","duration":"1s"}"#)),
        "invalid"
    );
    assert_eq!(
        code(&c.ask(r#"{"cpu":1,"duration":"99h"}"#)),
        "out_of_range"
    );
    assert_eq!(
        code(&c.ask(r#"{"cpu":1,"duration":"1s","confidence":2}"#)),
        "out_of_range"
    );
    served("bad requests");

    // Too many live hints for one cgroup (root names A; 8 at most).
    let many = format!(
        r#"{{"cpu":0.1,"start_in":"60s","duration":"10s","cgroup":"{}"}}"#,
        a.path
    );
    let replies: Vec<Value> = (0..9).map(|_| c.ask(&many)).collect();
    assert!(
        replies[..8].iter().all(|r| r["status"] == "accepted"),
        "{replies:?}"
    );
    assert_eq!(code(&replies[8]), "too_many");
    served("too many hints");

    // A client that disconnects mid-line.
    let mut c = agent.connect();
    c.stream.write_all(br#"{"cpu":1,"dura"#).unwrap();
    drop(c);
    served("a disconnect mid-line");

    // A flood from a fresh cgroup, one request after the other with no
    // pause: its burst is served, then it is rate-limited.
    let c = parent.child("c", &[]);
    let mut flooder = agent.relay_in(&c);
    let codes: Vec<String> = (0..40)
        .map(|_| code(&flooder.ask(r#"{"cancel":999999}"#)).to_owned())
        .collect();
    let limited = codes.iter().filter(|c| *c == "rate_limited").count();
    eprintln!("flood: {limited} of 40 rate-limited");
    assert!(codes[..10].iter().all(|c| c == "not_found"), "{codes:?}");
    assert!(limited >= 20, "{codes:?}");
    drop(flooder);
    served("a flood");
    drop(good);
    agent.agent.stop(Duration::ZERO);
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_component_that_hints_4_cores_and_uses_half_a_core_is_trusted_less() {
    // Half a core of quota (v1 cpu.cfs_quota_us or v2 cpu.max).
    let sandbox = Sandbox::create(
        &format!("/shadow-test-hint-trust-{}", std::process::id()),
        0.5,
        false,
    )
    .expect("sandbox");
    let a = &sandbox.cg;
    let agent = HintAgent::start("hint-trust", &a.path, &[]);
    let burn = a.spawn(&mut shadow_tests::workload(&["burn", "20"]));
    std::thread::sleep(Duration::from_secs(1));
    let hint = ["--cpu", "4", "--duration", "2s"];
    let (ok, first) = agent.hint_from(a, &hint);
    assert!(ok, "{first}");
    let end = first["end"].as_f64().unwrap();
    // The window, then the grace of 1.5 intervals before it is judged.
    std::thread::sleep(Duration::from_secs_f64((end - now()).max(0.0) + 1.0));
    let (ok, second) = agent.hint_from(a, &hint);
    assert!(ok, "{second}");
    stop(burn);
    let rows = agent.agent.stop(Duration::from_millis(300));
    let (t1, t2) = (
        first["trust"].as_f64().unwrap(),
        second["trust"].as_f64().unwrap(),
    );
    let (r1, r2) = (
        first["reserve"]["cpu"].as_f64().unwrap(),
        second["reserve"]["cpu"].as_f64().unwrap(),
    );
    eprintln!("trust {t1} -> {t2}; reserved band {r1} -> {r2} cores");
    assert!(t2 < t1 - 0.1, "trust {t1} -> {t2}");
    assert!(r2 < r1 * 0.9, "band {r1} -> {r2}");
    let last = rows
        .iter()
        .rev()
        .find(|r| r["cgroup"] == a.path.as_str())
        .expect("rows for A");
    assert!(
        (last["hint_trust"].as_f64().unwrap() - t2).abs() < 1e-9,
        "{last}"
    );
}
