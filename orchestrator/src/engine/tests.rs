use std::{path::Path, time::Duration};

use shadow_wire::{Component, Prediction, PredictionBatch, Source, Step, Usage, UsageBatch};

use super::*;

/// What an agent sends each tick: usage (a little), then its forecasts.
fn report(e: &mut Engine, host: &Option<Arc<str>>, paths: &[&str], upper: f32, now: Instant) {
    let sender = Sender {
        host: host.clone(),
        conn: 1,
    };
    let usage = UsageBatch {
        at_ms: 0,
        interval_ms: 1000,
        components: predictions(paths, upper).components,
        usage: (0..paths.len() as u32)
            .map(|component| Usage {
                component,
                resource: Resource::Cpu,
                value: 0.1,
            })
            .collect(),
    };
    e.usage(host, &usage, now);
    e.predictions(&sender, &predictions(paths, upper), now);
}

fn predictions(paths: &[&str], upper: f32) -> PredictionBatch {
    PredictionBatch {
        at_ms: 0,
        step_ms: 1000,
        components: paths
            .iter()
            .map(|p| Component {
                path: (*p).into(),
                id: 0,
            })
            .collect(),
        predictions: (0..paths.len() as u32)
            .map(|component| Prediction {
                component,
                resource: Resource::Cpu,
                source: Source::Model,
                quantile: 0.95,
                volatility: 0.1,
                last: 0.5,
                next_report_ms: 3000,
                steps: vec![Step {
                    ahead: 1,
                    point: upper / 2.0,
                    upper,
                }],
            })
            .collect(),
    }
}

fn engine(rules: &str, cpus: f64) -> Engine {
    let config = Config::parse(rules, Path::new("t.toml")).unwrap();
    let capacity = Capacity {
        cpu: Some(cpus),
        ..Capacity::default()
    };
    Engine::new(config, capacity)
}

const RULES: &str = r#"
    [[manage]]
    cgroup = "/m/*"
    cpu = { floor = 0.5, ceiling = 3 }
"#;

#[test]
fn only_opted_in_cgroups_get_decisions() {
    let mut e = engine(RULES, 8.0);
    let now = Instant::now();
    report(&mut e, &None, &["/m/a", "/other"], 2.0, now);
    // A remote agent's cgroup at a managed path is never written.
    report(&mut e, &Some("guest".into()), &["/m/b"], 2.0, now);
    let cycle = e.cycle(now);
    assert_eq!(cycle.decisions.len(), 1, "{:?}", cycle.decisions);
    assert_eq!(cycle.decisions[0].path, "/m/a");
    assert_eq!(cycle.decisions[0].amount, Some(2.0));
    // The others got recommendations, visible in the reservation state.
    let local = e.reservations(&None, 0).reservations;
    let other = local.iter().find(|r| r.path == "/other").unwrap();
    assert!(!other.managed);
    assert_eq!(other.reserved, 2.0);
    assert!(local.iter().find(|r| r.path == "/m/a").unwrap().managed);
    // Unchanged forecast: no rewrite.
    assert!(e.cycle(now).decisions.is_empty());
}

#[test]
fn bounds_and_capacity_hold_under_a_flood() {
    let mut e = engine(RULES, 4.0);
    let now = Instant::now();
    let paths: Vec<String> = (0..100).map(|i| format!("/m/c{i}")).collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    for _ in 0..50 {
        report(&mut e, &None, &refs, 100.0, now);
    }
    let cycle = e.cycle(now);
    let total: f64 = cycle.decisions.iter().filter_map(|d| d.amount).sum();
    // Floors alone (100 x 0.5) exceed the 4 cores: scaled to fit.
    assert!(total <= 4.0 + 1e-6, "{total}");
    assert_eq!(cycle.over_committed, vec![Resource::Cpu]);
    let mut e = engine(RULES, 64.0);
    report(&mut e, &None, &["/m/a"], 100.0, now);
    let cycle = e.cycle(now);
    assert_eq!(cycle.decisions[0].amount, Some(3.0), "ceiling");
}

#[test]
fn a_reload_releases_what_it_no_longer_manages_and_keeps_what_was_learnt() {
    let mut e = engine(RULES, 8.0);
    let now = Instant::now();
    report(&mut e, &None, &["/m/a", "/m/b", "/n/c"], 1.0, now);
    assert_eq!(e.cycle(now).decisions.len(), 2);
    let margin_before = e
        .book
        .components
        .values()
        .map(|c| c.tracks[0].margin)
        .sum::<f32>();
    // /m/b drops out of the rules, /n/c comes in, /m/a gets a lower ceiling.
    let reloaded = r#"
        [[manage]]
        cgroup = "/m/a"
        cpu = { floor = 0.1, ceiling = 0.5 }
        [[manage]]
        cgroup = "/n/*"
        cpu = { floor = 0.1, ceiling = 2 }
    "#;
    let config = Config::parse(reloaded, Path::new("t.toml")).unwrap();
    let released = e.reconfigure(config, *e.capacity());
    assert_eq!(released, vec![("/m/b".to_owned(), Resource::Cpu)]);
    let margin_after = e
        .book
        .components
        .values()
        .map(|c| c.tracks[0].margin)
        .sum::<f32>();
    assert_eq!(margin_before, margin_after, "learnt state kept");
    let mut decisions = e.cycle(now).decisions;
    decisions.sort_by(|a, b| a.path.cmp(&b.path));
    let got: Vec<(&str, Option<f64>)> = decisions
        .iter()
        .map(|d| (d.path.as_str(), d.amount))
        .collect();
    assert_eq!(got, vec![("/m/a", Some(0.5)), ("/n/c", Some(1.0))]);
    let state = e.reservations(&None, 0).reservations;
    assert!(!state.iter().find(|r| r.path == "/m/b").unwrap().managed);
}

#[test]
fn stale_forecast_releases_the_reservation() {
    let mut e = engine(RULES, 8.0);
    let now = Instant::now();
    report(&mut e, &None, &["/m/a"], 1.0, now);
    assert_eq!(e.cycle(now).decisions.len(), 1);
    // next_report 3 s + 2 ticks of grace.
    let later = now + Duration::from_secs(6);
    let cycle = e.cycle(later);
    assert_eq!(cycle.decisions.len(), 1);
    assert_eq!(cycle.decisions[0].amount, None);
    assert!(e.cycle(later).decisions.is_empty(), "released once");
}

#[test]
fn an_agent_that_goes_away_has_its_reservations_released_at_the_next_cycle() {
    let mut e = engine(RULES, 8.0);
    let now = Instant::now();
    report(&mut e, &None, &["/m/a"], 1.0, now);
    assert_eq!(e.cycle(now).decisions[0].amount, Some(1.0));
    // Another connection of this host closing changes nothing.
    e.agent_gone(&Sender {
        host: None,
        conn: 2,
    });
    assert!(e.cycle(now).decisions.is_empty());
    e.agent_gone(&Sender {
        host: None,
        conn: 1,
    });
    let cycle = e.cycle(now);
    assert_eq!(cycle.decisions.len(), 1);
    assert_eq!(cycle.decisions[0].amount, None, "released");
    assert_eq!(cycle.decisions[0].reason, Reason::Release);
}
