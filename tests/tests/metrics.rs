//! The orchestrator's Prometheus endpoint, scraped over HTTP and parsed
//! with a real exposition-format parser.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use shadow_tests::{
    orchestrator::{Orchestrator, TempDir},
    require_root,
};

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
    let log = o.stderr();
    let addr = log
        .lines()
        .find_map(|l| l.split("metrics on http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
        .to_owned();
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
