//! The metrics as a scraper sees them: names, values, the cap.

use agent_ebpf::Counters;

use super::*;
use crate::{collector::Sample, pipeline::CpuReservation, shadow::CpuForecast};

fn row(cgroup: &str, cpu_ms: u64, demand: f64, upper: f64) -> Row {
    Row {
        sample: Sample {
            ts: 0.0,
            cgroup: cgroup.into(),
            cgroup_id: 1,
            interval_ns: 1_000_000_000,
            usage: Counters {
                cpu_ns: cpu_ms * 1_000_000,
                io_read_bytes: 4096,
                net_tx_bytes: 100,
                reclaim_stall_ns: 250_000_000,
                ..Counters::default()
            },
            memory: crate::memory::Memory {
                memory_bytes: Some(cpu_ms << 20),
                ..Default::default()
            },
        },
        forecast: Some(CpuForecast {
            cpu_demand_cores: demand,
            cpu_forecast_cores: upper / 2.0,
            cpu_upper_cores: upper,
            cpu_volatility_cores: 0.1,
            hint_active: false,
            hint_id: None,
            hint_trust: Some(0.8),
        }),
        memory_forecast: None,
        reservation: Some(CpuReservation {
            cpu_reserved_cores: 1.5,
            cpu_reservation_managed: true,
        }),
    }
}

fn tick(m: &AgentMetrics, rows: &[Row]) {
    m.record(&Tick {
        rows,
        seconds: 0.003,
        cgroups: rows.len(),
        probes: &[Cost {
            program: "sched_switch",
            events: 1000,
            ns_per_event: 100.0,
            empty_ns_per_event: f64::NAN,
        }],
        hints: Some(Counts {
            accepted: 2,
            refused: 1,
            judged: 0,
        }),
    });
}

fn value(text: &str, series: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line[series.len()..].trim().parse().unwrap()
}

#[test]
fn counters_accumulate_and_follow_the_naming_conventions() {
    let m = AgentMetrics::new(10);
    tick(&m, &[row("/a", 500, 0.5, 1.0)]);
    tick(&m, &[row("/a", 250, 1.5, 1.0)]);
    let text = m.encode();
    let a = r#"{cgroup="/a"}"#;
    assert_eq!(
        value(&text, &format!("shadow_agent_cgroup_cpu_seconds_total{a}")),
        0.75
    );
    assert_eq!(
        value(
            &text,
            r#"shadow_agent_cgroup_io_bytes_total{cgroup="/a",op="read"}"#
        ),
        8192.0
    );
    assert_eq!(
        value(&text, &format!("shadow_agent_cgroup_cpu_upper_cores{a}")),
        1.0
    );
    assert_eq!(
        value(&text, &format!("shadow_agent_cgroup_cpu_reserved_cores{a}")),
        1.5
    );
    assert_eq!(
        value(
            &text,
            &format!("shadow_agent_cgroup_cpu_reservation_managed{a}")
        ),
        1.0
    );
    // Memory is a level: the last tick's; reclaim stall adds up.
    assert_eq!(
        value(&text, &format!("shadow_agent_cgroup_memory_bytes{a}")),
        f64::from(250 << 20)
    );
    assert_eq!(
        value(
            &text,
            &format!("shadow_agent_cgroup_reclaim_stall_seconds_total{a}")
        ),
        0.5
    );
    // Judged against the band forecast the tick before: 1.5 vs 1.0.
    assert_eq!(
        value(
            &text,
            &format!("shadow_agent_cgroup_cpu_shortfall_core_seconds_total{a}")
        ),
        0.5
    );
    // Cumulative kernel totals become increments, counted once.
    assert_eq!(
        value(
            &text,
            r#"shadow_agent_probe_events_total{program="sched_switch"}"#
        ),
        1000.0
    );
    assert_eq!(
        value(&text, r#"shadow_agent_hints_total{outcome="accepted"}"#),
        2.0
    );
    assert!(value(&text, "shadow_agent_process_resident_memory_bytes") > 0.0);
    for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (name, kind) = (parts[2], parts[3]);
        assert!(name.starts_with("shadow_agent_"), "{line}");
        if kind == "counter" {
            // The exposition adds `_total` to each counter's samples.
            assert!(text.contains(&format!("{name}_total")), "{line}");
        }
    }
}

#[test]
fn series_are_capped_kept_in_order_of_arrival_and_dropped_when_idle() {
    let m = AgentMetrics::new(2);
    tick(
        &m,
        &[
            row("/a", 1, 0.0, 0.0),
            row("/b", 1, 0.0, 0.0),
            row("/c", 1, 0.0, 0.0),
        ],
    );
    let text = m.encode();
    assert!(!text.contains(r#"cgroup="/c""#), "over the cap");
    assert_eq!(value(&text, "shadow_agent_cgroups_unlabelled"), 1.0);
    // The root always has its series, over the cap.
    tick(&m, &[row("/", 1, 0.0, 0.0), row("/c", 1, 0.0, 0.0)]);
    assert!(m.encode().contains(r#"cgroup="/""#));
    for _ in 0..DROP_AFTER_TICKS {
        tick(&m, &[row("/a", 1, 0.0, 0.0)]);
    }
    let text = m.encode();
    assert!(!text.contains(r#"cgroup="/b""#), "idle /b kept its series");
    assert!(text.contains(r#"cgroup="/a""#));
    // Its place is free again.
    tick(&m, &[row("/c", 1, 0.0, 0.0)]);
    assert!(m.encode().contains(r#"cgroup="/c""#));
}
