//! Figures of `bench e2e` runs, medians per policy, the table, the JSON and
//! the plot.

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use serde_json::{Value, json};
use shadow_common::plot::{self, Panel, Series};
use shadow_tests::scenario::{self, Point};

use super::{
    load::Scenario,
    run::{Policy, Run, Setup},
};

/// The figures of one run (NaN where there is nothing to measure).
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub throttled_s: f64,
    pub throttled_periods: f64,
    pub reserved_s: f64,
    pub used_s: f64,
    pub slack: f64,
    /// Median over bursts of the signed lead (s; negative: raised after the
    /// burst started; a burst whose quota never went up is left out).
    pub lead_s: f64,
    /// Share of bursts whose quota was raised before they started.
    pub ahead: f64,
}

const NAMES: [&str; 10] = [
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "throttled_s",
    "throttled_periods",
    "reserved_cpu_s",
    "used_cpu_s",
    "slack",
    "lead_s",
    "raised_ahead_share",
];

impl Figures {
    pub fn of(run: &Run) -> Self {
        let mut lat: Vec<f64> = run.samples.iter().map(|s| s.latency_s * 1e3).collect();
        lat.sort_by(f64::total_cmp);
        let mut leads: Vec<f64> = run.leads.iter().filter_map(|l| l.lead_s).collect();
        let ahead = run
            .leads
            .iter()
            .filter(|l| l.raised_ahead_s.is_some())
            .count() as f64
            / run.leads.len().max(1) as f64;
        Self {
            p50_ms: quantile(&lat, 0.5),
            p99_ms: quantile(&lat, 0.99),
            p999_ms: quantile(&lat, 0.999),
            throttled_s: run.throttled_s,
            throttled_periods: run.throttled_periods as f64,
            reserved_s: run.reserved_s,
            used_s: run.used_s,
            slack: (run.reserved_s - run.used_s) / run.used_s,
            lead_s: median(&mut leads),
            ahead,
        }
    }

    fn values(&self) -> [f64; 10] {
        [
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.throttled_s,
            self.throttled_periods,
            self.reserved_s,
            self.used_s,
            self.slack,
            self.lead_s,
            self.ahead,
        ]
    }

    fn from_values(v: [f64; 10]) -> Self {
        Self {
            p50_ms: v[0],
            p99_ms: v[1],
            p999_ms: v[2],
            throttled_s: v[3],
            throttled_periods: v[4],
            reserved_s: v[5],
            used_s: v[6],
            slack: v[7],
            lead_s: v[8],
            ahead: v[9],
        }
    }

    /// Per figure, the median over `runs`.
    fn median_of(runs: &[Figures]) -> Self {
        let mut out = [f64::NAN; 10];
        for (i, o) in out.iter_mut().enumerate() {
            let mut column: Vec<f64> = runs.iter().map(|f| f.values()[i]).collect();
            *o = median(&mut column);
        }
        Self::from_values(out)
    }

    fn json(&self) -> Value {
        let map: serde_json::Map<String, Value> = NAMES
            .iter()
            .zip(self.values())
            .map(|(n, v)| ((*n).to_owned(), finite(v)))
            .collect();
        Value::Object(map)
    }

    /// One line for the progress log.
    pub fn line(&self) -> String {
        format!(
            "p99 {:.1} ms, throttled {:.2} s in {} periods, reserved {:.1} / used {:.1} CPU-s, lead {:.2} s",
            self.p99_ms,
            self.throttled_s,
            self.throttled_periods,
            self.reserved_s,
            self.used_s,
            self.lead_s
        )
    }
}

fn finite(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of the finite values (mean of the middle two for an even count).
fn median(values: &mut Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Prints the table and the goal, writes `results-<scenario>.json` and
/// `e2e-<scenario>.svg` to `out`.
pub fn write(setup: &Setup, static_from: &str, runs: &[Run], out: &Path) -> anyhow::Result<()> {
    let per_run: Vec<Figures> = runs.iter().map(Figures::of).collect();
    let summary: Vec<(Policy, Figures)> = Policy::ALL
        .iter()
        .map(|&p| {
            let mine: Vec<Figures> = runs
                .iter()
                .zip(&per_run)
                .filter(|(r, _)| r.policy == p)
                .map(|(_, f)| *f)
                .collect();
            (p, Figures::median_of(&mine))
        })
        .collect();
    let rounds = runs.iter().map(|r| r.round).max().unwrap_or(0);
    let scenario = setup.pattern.scenario.name();
    let table = table(&summary, rounds, scenario, setup.hierarchy.describe());
    print!("{table}");
    let (reactive, shadow) = (summary[1].1, summary[2].1);
    let goal = json!({
        "p99_ratio": finite(shadow.p99_ms / reactive.p99_ms),
        "throttled_ratio": finite(shadow.throttled_s / reactive.throttled_s),
        "reserved_ratio": finite(shadow.reserved_s / reactive.reserved_s),
        "met": shadow.p99_ms <= reactive.p99_ms / 5.0
            && shadow.throttled_s <= reactive.throttled_s / 5.0
            && shadow.reserved_s <= 1.25 * reactive.reserved_s,
    });
    println!(
        "goal, {scenario} (Shadow vs reactive: p99 and throttled time <= 1/5, reserved <= 1.25x): p99 {}x, throttled {}x, reserved {}x: {}",
        cell(shadow.p99_ms / reactive.p99_ms, 3),
        cell(shadow.throttled_s / reactive.throttled_s, 3),
        cell(shadow.reserved_s / reactive.reserved_s, 3),
        if goal["met"] == true {
            "met"
        } else {
            "NOT met"
        }
    );
    let p = &setup.pattern;
    let results = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "rounds": rounds,
        "scenario": scenario,
        "cpu_controller": setup.hierarchy.describe(),
        "lead_ticks": setup.lead,
        "hint_ahead_s": (setup.pattern.scenario == Scenario::Hinted).then_some(setup.hint_ahead.as_secs_f64()),
        "burst_starts_s": p.burst_starts(),
        "pattern": {
            "period_s": p.period_s, "burst_s": p.burst_s, "bursts": p.bursts,
            "base_rate": p.base_rate, "base_cost_us": p.base_cost_us,
            "burst_rate": p.burst_rate, "burst_cost_us": p.burst_cost_us,
            "connections": p.connections, "seed": p.seed,
            "requests": setup.schedule.len(),
            "mean_demand_cores": p.mean_cores(&setup.schedule),
        },
        "workload": setup.workload,
        "static_cores": setup.static_cores,
        "static_from": static_from,
        "tick_ms": setup.tick.as_millis() as u64,
        "reactive_target": setup.target,
        "floor": setup.floor,
        "ceiling": setup.ceiling,
        "summary": summary.iter().map(|(p, f)| (p.name().to_owned(), f.json())).collect::<serde_json::Map<_, _>>(),
        "goal": goal,
        "runs": runs.iter().zip(&per_run).map(|(r, f)| run_json(r, f)).collect::<Vec<_>>(),
    });
    let json_path = out.join(format!("results-{scenario}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let svg_path = out.join(format!("e2e-{scenario}.svg"));
    std::fs::write(&svg_path, svg(setup, runs))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    println!(
        "results: {}\nplot: {}",
        json_path.display(),
        svg_path.display()
    );
    Ok(())
}

fn table(summary: &[(Policy, Figures)], rounds: usize, scenario: &str, cpu: &str) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nbench e2e, {scenario} bursts, median of {rounds} runs per policy (interleaved), quota on the {cpu}"
    );
    let _ = writeln!(
        t,
        "| policy | p50 ms | p99 ms | p99.9 ms | throttled s | throttled periods | reserved CPU-s | used CPU-s | slack | lead s (median) | raised ahead |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|---|---|");
    for (p, f) in summary {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.name(),
            cell(f.p50_ms, 1),
            cell(f.p99_ms, 1),
            cell(f.p999_ms, 1),
            cell(f.throttled_s, 2),
            cell(f.throttled_periods, 0),
            cell(f.reserved_s, 1),
            cell(f.used_s, 1),
            cell(f.slack, 2),
            cell(f.lead_s, 2),
            cell(f.ahead * 100.0, 0) + "%"
        );
    }
    t
}

/// A table cell: `-` where there is nothing to measure.
fn cell(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "-".to_owned()
    }
}

fn run_json(r: &Run, f: &Figures) -> Value {
    let t0 = r.start;
    let pts = |v: &[Point]| -> Vec<Value> {
        v.iter()
            .map(|p| {
                json!([
                    p.t - t0,
                    finite(p.used),
                    p.upper.map(finite),
                    p.reserved.map(finite)
                ])
            })
            .collect()
    };
    json!({
        "policy": r.policy.name(),
        "round": r.round,
        "start_unix": r.start,
        "duration_s": r.end - r.start,
        "requests_answered": r.samples.len(),
        "requests_lost": r.lost,
        "figures": f.json(),
        "hints": r.hints.iter().map(|h| json!({
            "burst_s": h.burst_s, "sent_s": h.sent_s, "cpu": h.cpu, "status": h.status,
            "reserve_cpu": h.reserve_cpu, "trust": h.trust, "reply": h.reply,
        })).collect::<Vec<_>>(),
        "leads": r.leads.iter().map(|l| json!({
            "burst": l.burst, "idle_cores": finite(l.idle), "before_cores": finite(l.before),
            "raised_ahead_s": l.raised_ahead_s, "lead_s": l.lead_s,
        })).collect::<Vec<_>>(),
        "series": {
            "quota": r.quota.iter().map(|q| json!([q.0 - t0, finite(q.1)])).collect::<Vec<_>>(),
            "usage": pts(&r.usage),
            "agent": pts(&r.agent),
            "latency_p99_ms_per_s": latency_p99(r),
        },
    })
}

/// p99 latency of the requests scheduled in each second of the run, ms.
fn latency_p99(r: &Run) -> Vec<(f64, f64)> {
    let mut by_second: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
    for s in &r.samples {
        by_second
            .entry(s.at_s.max(0.0) as u64)
            .or_default()
            .push(s.latency_s * 1e3);
    }
    by_second
        .into_iter()
        .map(|(sec, mut v)| {
            v.sort_by(f64::total_cmp);
            (sec as f64 + 0.5, quantile(&v, 0.99))
        })
        .collect()
}

/// Round 1 of each policy, stacked: cores (demand, usage, quota, and for
/// Shadow its forecast band and reservation), then latency.
fn svg(setup: &Setup, runs: &[Run]) -> String {
    let p = &setup.pattern;
    let demand: Vec<(f64, f64)> = if setup.workload.is_none() {
        let base = p.base_rate * p.base_cost_us / 1e6;
        let peak = p.burst_rate * p.burst_cost_us / 1e6;
        let mut d = vec![(0.0, base)];
        for b in p.burst_starts() {
            let e = b + p.burst_s;
            d.extend([(b, base), (b, peak), (e, peak), (e, base)]);
        }
        d.push((p.duration_s(), base));
        d
    } else {
        Vec::new()
    };
    let colors = ["#ff7f0e", "#9467bd", "#2ca02c"];
    let mut panels = Vec::new();
    let mut latency = Vec::new();
    for (policy, color) in Policy::ALL.into_iter().zip(colors) {
        let Some(r) = runs.iter().find(|r| r.policy == policy && r.round == 1) else {
            continue;
        };
        let mut series = Vec::new();
        if !demand.is_empty() {
            series.push(Series::dashed("mean demand", "#bbb", demand.clone()));
        }
        let points = if r.agent.is_empty() {
            &r.usage
        } else {
            &r.agent
        };
        series.extend(scenario::cores_series(points, &r.quota, r.start));
        panels.push(Panel {
            title: format!("{}: CPU", policy.name()),
            y_label: "cores".into(),
            series,
        });
        if !r.samples.is_empty() {
            latency.push(Series::line(policy.name(), color, latency_p99(r)));
        }
    }
    if !latency.is_empty() {
        panels.push(Panel {
            title: "request latency, p99 per second (by scheduled send time)".into(),
            y_label: "ms".into(),
            series: latency,
        });
    }
    let every = match p.scenario {
        Scenario::Periodic => format!("every {} s", p.period_s),
        Scenario::Hinted => format!(
            "at irregular times (mean {} s apart), each hinted to Shadow {} s ahead",
            p.period_s,
            setup.hint_ahead.as_secs_f64()
        ),
    };
    plot::svg(
        &format!(
            "bench e2e: {} req/s x {} µs, bursts of {} req/s x {} µs for {} s {every}",
            p.base_rate, p.base_cost_us, p.burst_rate, p.burst_cost_us, p.burst_s
        ),
        "seconds from the run's start",
        &panels,
    )
}
