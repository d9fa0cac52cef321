use std::{fs, path::Path, thread};

use shadow_wire::{
    Component, Compression, Hello, Prediction, PredictionBatch, Resource, Source, Step, Usage,
    UsageBatch,
    transport::{Stream, Target},
};

use super::*;
use crate::actuator::fake::FakeTree;

/// Stops after `cycles` cycles, recording the cgroup's CPU weight after
/// each, or once `give_up` has passed (a guard, so that a test waiting for
/// a cycle that never comes fails instead of hanging).
struct Script {
    cycles: usize,
    weight_file: PathBuf,
    weights: Vec<String>,
    give_up: Instant,
}

impl Control for Script {
    fn stop_requested(&mut self) -> bool {
        self.weights.len() >= self.cycles || Instant::now() > self.give_up
    }
    fn reload(&mut self) -> Option<Config> {
        None
    }
    fn cycle(&mut self, _cycle: &Cycle) {
        let w = fs::read_to_string(&self.weight_file).unwrap_or_default();
        self.weights.push(w.trim().to_owned());
    }
}

fn config(tree: &FakeTree) -> Config {
    let text = format!(
        r#"
        socket = "{}"
        state_dir = "{}"
        tick = "100ms"
        cooldown = "0s"
        min_interval = "0s"
        [capacity]
        cpu = 4
        [[manage]]
        cgroup = "/g"
        cpu = {{ floor = 0.1, ceiling = 2 }}
        "#,
        tree.root.join("orchestrator.sock").display(),
        tree.root.join("state").display(),
    );
    Config::parse(&text, Path::new("t.toml")).expect("test configuration")
}

/// An agent that reports /g demanding 1.5 cores, with a band of 1.5,
/// every 100 ms for `reports` reports or until the daemon is gone.
fn agent(socket: PathBuf, reports: u32) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut s = Stream::connect(&Target::Unix(socket), Duration::from_secs(2)).unwrap();
        let hello = Hello {
            version: shadow_wire::VERSION,
            host: "test".into(),
            agent: "test-agent".into(),
            tick_ms: 100,
            key: String::new(),
        };
        shadow_wire::connect(&mut s, hello).unwrap();
        let components = vec![Component {
            path: "/g".into(),
            id: 1,
        }];
        for _ in 0..reports {
            let usage = Message::Usage(UsageBatch {
                at_ms: unix_ms(),
                interval_ms: 100,
                components: components.clone(),
                usage: vec![Usage {
                    component: 0,
                    resource: Resource::Cpu,
                    value: 1.5,
                }],
            });
            let steps = (1..=3)
                .map(|ahead| Step {
                    ahead,
                    point: 1.4,
                    upper: 1.5,
                })
                .collect();
            let predictions = Message::Predictions(PredictionBatch {
                at_ms: unix_ms(),
                step_ms: 100,
                components: components.clone(),
                predictions: vec![Prediction {
                    component: 0,
                    resource: Resource::Cpu,
                    source: Source::Model,
                    quantile: 0.95,
                    volatility: 0.05,
                    last: 1.5,
                    next_report_ms: 1000,
                    steps,
                }],
            });
            for m in [usage, predictions] {
                // The daemon stops when the test has seen enough.
                if shadow_wire::write_message(&mut s, &m, Compression::Auto).is_err() {
                    return;
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
    })
}

/// A fake tree named `name` with the v2 cgroup `/g` (cpu), its weight
/// file, and options that write to it.
fn managed_g(name: &str) -> (FakeTree, PathBuf, Options) {
    let tree = FakeTree::new(name);
    tree.v2_cgroup("/g", &["cpu"]);
    let weight_file = tree
        .layout()
        .file("/g", crate::actuator::Knob::CpuWeight)
        .unwrap();
    let options = Options {
        layout: tree.layout(),
        mode: Mode::Write,
        ticks: None,
    };
    (tree, weight_file, options)
}

#[test]
fn an_agents_forecast_raises_a_managed_knob_and_the_original_comes_back() {
    let (tree, weight_file, options) = managed_g("daemon");
    let daemon = Daemon::start(config(&tree), options).unwrap();
    let reporter = agent(daemon.socket().to_owned(), 20);
    let mut script = Script {
        cycles: 15,
        weight_file: weight_file.clone(),
        weights: Vec::new(),
        give_up: Instant::now() + Duration::from_secs(60),
    };
    daemon.run(&mut script).unwrap();
    reporter.join().unwrap();
    // 1.5 cores reserved: the weight at 1.5 times the default (100).
    assert!(
        script.weights.iter().any(|w| w == "150"),
        "weights seen: {:?}",
        script.weights
    );
    assert_eq!(fs::read_to_string(&weight_file).unwrap().trim(), "100");
    assert!(!tree.root.join("orchestrator.sock").exists());
}

#[test]
fn new_forecasts_bring_a_cycle_forward() {
    let (tree, weight_file, options) = managed_g("daemon-early");
    // A tick far longer than the test: only a cycle the agent's forecast
    // brought forward can write the knob.
    let mut config = config(&tree);
    config.tick = Some(shadow_common::config::DurationAtLeast(Duration::from_secs(
        600,
    )));
    let daemon = Daemon::start(config, options).unwrap();
    let reporter = agent(daemon.socket().to_owned(), 3);
    let mut script = Script {
        cycles: 1,
        weight_file: weight_file.clone(),
        weights: Vec::new(),
        give_up: Instant::now() + Duration::from_secs(60),
    };
    daemon.run(&mut script).unwrap();
    reporter.join().unwrap();
    assert_eq!(script.weights, ["150"]);
    assert_eq!(fs::read_to_string(&weight_file).unwrap().trim(), "100");
}

#[test]
fn a_tcp_listener_without_keys_refuses_to_start_unless_declared_insecure() {
    let tree = FakeTree::new("daemon-tcp");
    let options = || Options {
        layout: tree.layout(),
        mode: Mode::Write,
        ticks: Some(0),
    };
    let mut c = config(&tree);
    c.tcp = Some("127.0.0.1:0".into());
    let err = Daemon::start(c.clone(), options()).err().expect("refused");
    assert!(matches!(err, DaemonError::TcpWithoutKeys { .. }), "{err}");
    assert!(err.to_string().contains("insecure_tcp = true"), "{err}");
    // A listener lives as long as the process: the next start gets its own.
    c.socket = Some(tree.root.join("second.sock"));
    c.insecure_tcp = Some(true);
    let daemon = Daemon::start(c.clone(), options()).expect("declared insecure");
    drop(daemon);
    c.socket = Some(tree.root.join("third.sock"));
    // A peer whose key file others can read is refused too.
    let key_file = tree.root.join("vm-1.key");
    fs::write(&key_file, "00".repeat(32)).unwrap();
    c.insecure_tcp = None;
    c.peer = vec![crate::config::PeerKey {
        name: crate::config::PeerName("vm-1".into()),
        key_file,
    }];
    let err = Daemon::start(c, options()).err().expect("refused");
    assert!(err.to_string().contains("chmod 0600"), "{err}");
}
