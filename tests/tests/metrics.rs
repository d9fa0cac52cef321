//! The Prometheus endpoints of the orchestrator and the agent, scraped over
//! HTTP and parsed with a real exposition-format parser.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use shadow_tests::{
    Agent, TestCgroup, finish, keyed,
    orchestrator::{Orchestrator, TempDir},
    require_root, workload,
};

/// The address a binary said it serves metrics on.
fn address(log: &str) -> String {
    log.lines()
        .find_map(|l| l.split("metrics on http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
        .to_owned()
}

fn scrape(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_owned(), body.to_owned())
}

#[test]
fn metrics_follow_the_conventions_and_parse() {
    require_root();
    let dir = TempDir::new("metrics");
    let o = Orchestrator::start(
        &dir.0.join("o.sock"),
        &dir.0.join("state"),
        &["--metrics", "127.0.0.1:0"],
    );
    let addr = address(&o.stderr());
    // A few ticks (200 ms each) so the cycle has been measured.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (head, body) = scrape(&addr, "/metrics");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let cycles = body
            .lines()
            .find_map(|l| l.strip_prefix("shadow_orchestrator_cycle_seconds_count "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if cycles.is_some_and(|n| n >= 1.0) || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let value = |name: &str, label: Option<(&str, &str)>| {
        parsed
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| s.value.clone())
            .unwrap_or_else(|| panic!("no sample {name} {label:?} in:\n{body}"))
    };
    match value("shadow_orchestrator_cycle_seconds_count", None) {
        prometheus_parse::Value::Untyped(n) | prometheus_parse::Value::Counter(n) => {
            assert!(n >= 1.0, "{n}")
        }
        other => panic!("cycle count is {other:?}"),
    }
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    match value("shadow_orchestrator_capacity", Some(("resource", "cpu"))) {
        prometheus_parse::Value::Gauge(c) | prometheus_parse::Value::Untyped(c) => {
            assert_eq!(c, cores)
        }
        other => panic!("capacity is {other:?}"),
    }
    // Counters end in _total; units are base units.
    assert!(
        body.contains("shadow_orchestrator_predictions_received_total"),
        "{body}"
    );
    assert!(
        body.contains("# UNIT shadow_orchestrator_cycle_seconds seconds"),
        "{body}"
    );
    let (head, _) = scrape(&addr, "/nothing-here");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[test]
fn the_agent_exposes_usage_forecasts_probes_and_its_own_cost() {
    let stats = "/proc/sys/kernel/bpf_stats_enabled";
    let stats_before = std::fs::read_to_string(stats).unwrap();
    let cg = TestCgroup::new("agent-metrics", &[]);
    let agent = Agent::start_with(
        &cg.path,
        "200ms",
        &["--metrics", "127.0.0.1:0", "--forecast", "--no-hints"],
    );
    agent.wait_for_log(Duration::from_secs(5), "metrics on http://");
    let addr = address(&agent.log());
    finish(cg.spawn(&mut workload(&["burn", "1"])));
    std::thread::sleep(Duration::from_millis(500));
    let (head, body) = scrape(&addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let number = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let sample = parsed
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no sample {name} {label:?} in:\n{body}"));
        match sample.value {
            prometheus_parse::Value::Counter(n)
            | prometheus_parse::Value::Gauge(n)
            | prometheus_parse::Value::Untyped(n) => n,
            ref other => panic!("{name} is {other:?}"),
        }
    };
    let mine = Some(("cgroup", cg.path.as_str()));
    // The kernel's own figure for the same work, not the burn's wall-clock
    // second: on a busy machine the burner gets less than a whole CPU.
    let kernel = keyed(&cg.v2_dir().join("cpu.stat"))["usage_usec"] as f64 / 1e6;
    let cpu = number("shadow_agent_cgroup_cpu_seconds_total", mine);
    assert!(
        kernel > 0.1 && (cpu - kernel).abs() <= 0.1 * kernel,
        "the kernel counted {kernel} s, the agent {cpu} s"
    );
    // A band over a cgroup that just burnt a core for a second: above zero,
    // and not beyond the host's CPUs (demand is capped there).
    let upper = number("shadow_agent_cgroup_cpu_upper_cores", mine);
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert!(
        upper > 0.0 && upper <= cores * 1.5,
        "upper band {upper} cores"
    );
    let switches = number(
        "shadow_agent_probe_events_total",
        Some(("program", "sched_switch")),
    );
    let run = number(
        "shadow_agent_probe_run_seconds_total",
        Some(("program", "sched_switch")),
    );
    assert!(switches > 0.0 && run > 0.0, "{switches} events, {run} s");
    // docs/benchmarks.md measures ~100 ns per switch; 5 us would be the
    // careless design DESIGN.md warns about (Kepler's 440 ns to 12 us).
    let ns = run * 1e9 / switches;
    assert!((10.0..5_000.0).contains(&ns), "{ns} ns per sched_switch");
    assert!(number("shadow_agent_tick_seconds_count", None) >= 1.0);
    assert!(number("shadow_agent_process_resident_memory_bytes", None) > 1e6);
    assert!(number("shadow_agent_process_cpu_seconds_total", None) > 0.0);
    for s in &parsed.samples {
        if matches!(s.value, prometheus_parse::Value::Counter(_)) {
            assert!(s.metric.ends_with("_total"), "counter {}", s.metric);
        }
    }
    agent.stop(Duration::from_millis(100));
    assert_eq!(
        std::fs::read_to_string(stats).unwrap(),
        stats_before,
        "bpf_stats left changed"
    );
}
