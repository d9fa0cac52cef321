//! What serving metrics costs the agent per tick with 10,000 active
//! cgroups: recording one tick (rows into the families, the default cap of
//! 1,000 per-cgroup series) and encoding one scrape. Medians of repeated
//! runs, with the spread. `cargo bench -p shadow-agent --bench metrics`.

use std::{hint::black_box, time::Instant};

use agent_ebpf::Counters;
use shadow_agent::{
    collector::Sample,
    hint::ledger::Counts,
    metrics::{AgentMetrics, DEFAULT_MAX_CGROUPS, Tick},
    pipeline::{CpuReservation, Row},
    probes::Cost,
    shadow::CpuForecast,
};

fn rows(n: usize, tick: u64) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            sample: Sample {
                ts: tick as f64,
                cgroup: format!("/system.slice/service-{}.service", 1000 + i),
                cgroup_id: 2_000_000 + i as u64,
                interval_ns: 1_000_000_000,
                usage: Counters {
                    cpu_ns: 1_000_000 * (i as u64 % 97 + tick % 5),
                    runq_delay_ns: 10_000 * i as u64,
                    page_faults: i as u64 % 13,
                    io_read_bytes: 4096 * (i as u64 % 3),
                    net_tx_bytes: 1500 * (i as u64 % 7),
                    ..Counters::default()
                },
                memory: Default::default(),
            },
            forecast: Some(CpuForecast {
                cpu_demand_cores: 0.05 * (i % 20) as f64,
                cpu_forecast_cores: 0.05 * (i % 20) as f64,
                cpu_upper_cores: 0.06 * (i % 20) as f64,
                cpu_volatility_cores: 0.01,
                hint_active: false,
                hint_id: None,
                hint_trust: None,
            }),
            memory_forecast: None,
            reservation: (i % 10 == 0).then_some(CpuReservation {
                cpu_reserved_cores: 1.0,
                cpu_reservation_managed: true,
            }),
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let n = 10_000;
    let m = AgentMetrics::new(DEFAULT_MAX_CGROUPS);
    let probes: Vec<Cost> = ["sched_switch", "page_fault_user", "block_rq_complete"]
        .iter()
        .map(|p| Cost {
            program: p,
            events: 1_000_000,
            ns_per_event: 100.0,
            empty_ns_per_event: f64::NAN,
        })
        .collect();
    let ticks: Vec<Vec<Row>> = (0..5).map(|t| rows(n, t)).collect();
    let mut record_ms = Vec::new();
    let mut encode_ms = Vec::new();
    let mut bytes = 0;
    for round in 0..30 {
        let rows = &ticks[round % ticks.len()];
        let start = Instant::now();
        m.record(&Tick {
            rows,
            seconds: 0.01,
            cgroups: n,
            probes: &probes,
            hints: Some(Counts::default()),
        });
        record_ms.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        let text = black_box(m.encode());
        encode_ms.push(start.elapsed().as_secs_f64() * 1e3);
        bytes = text.len();
    }
    let (r, r_lo, r_hi) = median(record_ms);
    let (e, e_lo, e_hi) = median(encode_ms);
    println!(
        "metrics with {n} active cgroups, {DEFAULT_MAX_CGROUPS} with series: record one tick median {r:.2} ms ({r_lo:.2}-{r_hi:.2}), encode one scrape median {e:.2} ms ({e_lo:.2}-{e_hi:.2}), {:.0} KiB per scrape (30 rounds)",
        bytes as f64 / 1024.0
    );
}
