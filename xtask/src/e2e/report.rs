//! Figures of `bench e2e` runs, and per scenario: the table with the
//! goals, the summary JSON, every run's details, the frontier chart (all
//! curves) and the time series of the default points.

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use serde_json::{Value, json};
use shadow_common::plot::{self, Panel, Series};
use shadow_tests::scenario::{self, Point};

use super::{
    load::Scenario,
    policy::{Family, Policy},
    run::{Load, Run, Setup},
    stats::{self, Row, finite, median, quantile},
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
    pub work_s: f64,
    pub neighbour_used_s: f64,
    /// Median over bursts of the signed lead (s; negative: raised after the
    /// burst started; a burst whose quota never went up is left out).
    pub lead_s: f64,
    /// Share of bursts whose quota was raised before they started.
    pub ahead: f64,
}

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
            work_s: run.work_s,
            neighbour_used_s: run.neighbour_used_s,
            lead_s: median(&mut leads),
            ahead,
        }
    }

    /// What the summary keeps.
    pub fn point(&self) -> stats::Point {
        stats::Point {
            p99_ms: self.p99_ms,
            throttled_s: self.throttled_s,
            reserved_core_s: self.reserved_s,
            used_core_s: self.used_s,
            neighbour_work_core_s: self.work_s,
        }
    }

    fn json(&self) -> Value {
        json!({
            "p50_ms": finite(self.p50_ms), "p99_ms": finite(self.p99_ms),
            "p999_ms": finite(self.p999_ms), "throttled_s": finite(self.throttled_s),
            "throttled_periods": finite(self.throttled_periods),
            "reserved_core_s": finite(self.reserved_s), "used_core_s": finite(self.used_s),
            "neighbour_work_core_s": finite(self.work_s),
            "neighbour_used_core_s": finite(self.neighbour_used_s),
            "lead_s": finite(self.lead_s), "raised_ahead_share": finite(self.ahead),
        })
    }

    /// One line for the progress log.
    pub fn line(&self) -> String {
        format!(
            "p99 {:.1} ms, throttled {:.2} s, reserved {:.1} / used {:.1} core-s, neighbour {:.1} core-s of work ({:.1} CPU), lead {:.2} s",
            self.p99_ms,
            self.throttled_s,
            self.reserved_s,
            self.used_s,
            self.work_s,
            self.neighbour_used_s,
            self.lead_s
        )
    }
}

/// A table cell: `-` where there is nothing to measure.
fn cell(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "-".to_owned()
    }
}

/// `median [min-max]`.
fn spread(r: &Row, i: usize, decimals: usize) -> String {
    let (m, lo, hi) = (r.median.values()[i], r.min.values()[i], r.max.values()[i]);
    if r.rounds > 1 && m.is_finite() {
        format!(
            "{} [{}–{}]",
            cell(m, decimals),
            cell(lo, decimals),
            cell(hi, decimals)
        )
    } else {
        cell(m, decimals)
    }
}

/// The table (markdown) of the summary rows.
pub fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| policy | setting | rounds | p99 ms | throttled s | reserved core-s | used core-s | neighbour work core-s |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.policy.family().name(),
            r.policy.setting(),
            r.rounds,
            spread(r, 0, 1),
            spread(r, 1, 2),
            spread(r, 2, 1),
            spread(r, 3, 1),
            spread(r, 4, 1),
        );
    }
    t
}

/// Where a scenario's outputs go.
pub struct Outputs<'a> {
    /// Everything: summary, details, both charts.
    pub out: &'a Path,
    /// Also the summary and the frontier chart here (docs/e2e/ and docs/),
    /// for a published run.
    pub publish: Option<(&'a Path, &'a Path)>,
    /// The command line and settings, for the details.
    pub settings: Value,
}

/// Prints the table and the goals; writes the outputs.
pub fn write(setup: &Setup, policies: &[Policy], runs: &[Run], to: &Outputs) -> anyhow::Result<()> {
    let figures: Vec<Figures> = runs.iter().map(Figures::of).collect();
    let points: Vec<(Policy, stats::Point)> = runs
        .iter()
        .zip(&figures)
        .map(|(r, f)| (r.policy, f.point()))
        .collect();
    let rows = stats::summarize(policies, &points);
    let scenario = setup.scenario.name();
    println!(
        "\nbench e2e, {scenario}: medians [min–max] over rounds, order shuffled per round\n{}",
        table(&rows)
    );
    let goals = stats::goals(&rows, setup.scenario == Scenario::Irregular);
    for g in &goals {
        let verdict = match g.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        println!("goal, {scenario}: {}: {}: {verdict}", g.what, g.measured);
    }
    let summary = serde_json::to_string_pretty(&stats::summary_json(&rows))? + "\n";
    let chart = frontier(setup, &rows);
    let details = json!({
        "scenario": scenario,
        "settings": to.settings,
        "mean_demand_cores": setup.mean_cores,
        "mean_from": setup.mean_from,
        "initial_cores": setup.initial_cores,
        "burst_starts_s": setup.burst_starts(),
        "goals": goals.iter().map(|g| json!({"goal": g.what, "measured": g.measured, "met": g.met})).collect::<Vec<_>>(),
        "summary": stats::summary_json(&rows),
        "runs": runs.iter().zip(&figures).map(|(r, f)| run_json(r, f)).collect::<Vec<_>>(),
    });
    let mut files = vec![
        (
            to.out.join(format!("results-{scenario}.json")),
            summary.clone(),
        ),
        (to.out.join(format!("e2e-{scenario}.svg")), chart.clone()),
        (
            to.out.join(format!("runs-{scenario}.json")),
            serde_json::to_string(&details)?,
        ),
        (
            to.out.join(format!("runs-{scenario}.svg")),
            series(setup, runs),
        ),
    ];
    if let Some((json_dir, svg_dir)) = to.publish {
        files.push((json_dir.join(format!("results-{scenario}.json")), summary));
        files.push((svg_dir.join(format!("e2e-{scenario}.svg")), chart));
    }
    for (path, text) in files {
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn run_json(r: &Run, f: &Figures) -> Value {
    let t0 = r.start;
    let pts = |v: &[Point]| -> Vec<Value> {
        v.iter()
            .map(|p| {
                json!([
                    p.t - t0,
                    finite(p.used),
                    p.demand.map(finite),
                    p.upper.map(finite),
                    p.reserved.map(finite)
                ])
            })
            .collect()
    };
    json!({
        "policy": r.policy.family().name(),
        "setting": r.policy.setting(),
        "round": r.round,
        "start_unix": r.start,
        "duration_s": r.end - r.start,
        "requests_answered": r.samples.len(),
        "requests_lost": r.lost,
        "load_1m_at_end": r.load_1m,
        "neighbour_chunks": finite(r.neighbour_units),
        "neighbour_own_cpu_s": finite(r.neighbour_own_cpu_s),
        "figures": f.json(),
        "hints": r.hints.iter().map(|h| json!({
            "burst_s": h.start_s, "sent_s": h.sent_s, "cpu": h.amount, "status": h.status,
            "reserve_cpu": h.reserve, "trust": h.trust, "reply": h.reply,
        })).collect::<Vec<_>>(),
        "leads": r.leads.iter().map(|l| json!({
            "burst": l.burst, "idle_cores": finite(l.idle), "before_cores": finite(l.before),
            "raised_ahead_s": l.raised_ahead_s, "lead_s": l.lead_s,
        })).collect::<Vec<_>>(),
        "series": {
            "quota": r.quota.iter().map(|q| json!([q.0 - t0, finite(q.1)])).collect::<Vec<_>>(),
            "usage_demand_upper_reserved": pts(&r.usage),
            "agent_usage_demand_upper_reserved": pts(&r.agent),
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

fn color(f: Family) -> &'static str {
    match f {
        Family::Static => "#7f7f7f",
        Family::ReactiveUsage => "#ff7f0e",
        Family::ReactiveDemand => "#9467bd",
        Family::Burst => "#8c564b",
        Family::Shadow => "#2ca02c",
    }
}

/// A cross at `(x, y)` of half-size `(dx, dy)`: one point drawn with the
/// plotter's lines (NaN breaks the two strokes).
fn cross(x: f64, y: f64, dx: f64, dy: f64) -> Vec<(f64, f64)> {
    vec![
        (x - dx, y),
        (x + dx, y),
        (f64::NAN, f64::NAN),
        (x, y - dy),
        (x, y + dy),
    ]
}

/// A curve through `points` with a small cross on each (a lone point is
/// then visible too), as one series.
fn marked(points: &[(f64, f64)], dx: f64, dy: f64) -> Vec<(f64, f64)> {
    let mut out = points.to_vec();
    for &(x, y) in points {
        out.push((f64::NAN, f64::NAN));
        out.extend(cross(x, y, dx * 0.5, dy * 0.5));
    }
    out
}

/// The frontier: every family's curve of medians, (reserved core-s, p99)
/// on a log scale, and (reserved, the neighbour's work) below; Shadow's
/// default point a large red cross on both.
pub fn frontier(setup: &Setup, rows: &[Row]) -> String {
    let log = |v: f64| if v > 0.0 { v.log10() } else { f64::NAN };
    let span = |v: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = v
            .filter(|x| x.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |a, x| {
                (a.0.min(x), a.1.max(x))
            });
        if hi > lo { hi - lo } else { 1.0 }
    };
    let dx = span(&mut rows.iter().map(|r| r.median.reserved_core_s)) * 0.012;
    let dy_latency = span(&mut rows.iter().map(|r| log(r.median.p99_ms)).chain([0.0])) * 0.04;
    let dy_work = span(
        &mut rows
            .iter()
            .map(|r| r.median.neighbour_work_core_s)
            .chain([0.0]),
    ) * 0.04;
    let mut latency = Vec::new();
    let mut work = Vec::new();
    for family in Family::ALL {
        let mut mine: Vec<&Row> = rows
            .iter()
            .filter(|r| r.policy.family() == family)
            .collect();
        if mine.is_empty() {
            continue;
        }
        mine.sort_by(|a, b| {
            a.median
                .reserved_core_s
                .total_cmp(&b.median.reserved_core_s)
        });
        let name = match family {
            Family::Shadow => "shadow (quantile sweep)".to_owned(),
            f => f.name().to_owned(),
        };
        let curve = |f: &dyn Fn(&Row) -> f64| -> Vec<(f64, f64)> {
            mine.iter()
                .map(|r| (r.median.reserved_core_s, f(r)))
                .collect()
        };
        latency.push(Series::line(
            &name,
            color(family),
            marked(&curve(&|r| log(r.median.p99_ms)), dx, dy_latency),
        ));
        work.push(Series::line(
            &name,
            color(family),
            marked(&curve(&|r| r.median.neighbour_work_core_s), dx, dy_work),
        ));
    }
    if let Some(s) = rows
        .iter()
        .find(|r| r.policy.family() == Family::Shadow && r.policy.is_default())
    {
        let x = s.median.reserved_core_s;
        latency.push(Series::line(
            "shadow default",
            "#d62728",
            cross(x, log(s.median.p99_ms), dx, dy_latency),
        ));
        work.push(Series::line(
            "shadow default",
            "#d62728",
            cross(x, s.median.neighbour_work_core_s, dx, dy_work),
        ));
    }
    plot::svg(
        &format!(
            "bench e2e, {}: every policy's median point, each family's setting swept",
            setup.scenario.name()
        ),
        "reserved core-seconds (integral of the quota over the window)",
        &[
            Panel {
                title: "p99 latency, log10 ms (1 = 10 ms, 2 = 100 ms, 3 = 1 s)".into(),
                y_label: "log10 p99 ms".into(),
                series: latency,
            },
            Panel {
                title: "the neighbour's work, core-seconds".into(),
                y_label: "core-s".into(),
                series: work,
            },
        ],
    )
}

/// Round 1 of each family's default point (the lowest static and burst
/// levels), stacked: cores over time, then latency.
fn series(setup: &Setup, runs: &[Run]) -> String {
    let mut panels = Vec::new();
    let mut latency = Vec::new();
    for family in Family::ALL {
        let Some(r) = runs.iter().find(|r| {
            r.round == 1
                && r.policy.family() == family
                && (r.policy.is_default() || matches!(family, Family::Static | Family::Burst))
        }) else {
            continue;
        };
        let points = if r.agent.is_empty() {
            &r.usage
        } else {
            &r.agent
        };
        panels.push(Panel {
            title: format!("{}: CPU", r.policy.label()),
            y_label: "cores".into(),
            series: scenario::cores_series(points, &r.quota, r.start),
        });
        if !r.samples.is_empty() {
            latency.push(Series::line(
                &r.policy.label(),
                color(family),
                latency_p99(r),
            ));
        }
    }
    if !latency.is_empty() {
        panels.push(Panel {
            title: "latency, p99 per second (by scheduled start)".into(),
            y_label: "ms".into(),
            series: latency,
        });
    }
    let what = match &setup.load {
        Load::Service { pattern: p, .. } => format!(
            "{} req/s x {} µs, bursts of {} req/s x {} µs for {} s",
            p.base_rate, p.base_cost_us, p.burst_rate, p.burst_cost_us, p.burst_s
        ),
        Load::Pgbench { plan, .. } => format!(
            "pgbench, peak {:.0} tps, shaped like {}",
            plan.rates.iter().copied().fold(0.0, f64::max),
            plan.trace.display()
        ),
        Load::Custom { command, .. } => command.clone(),
    };
    plot::svg(
        &format!("bench e2e, {}, round 1: {what}", setup.scenario.name()),
        "seconds from the window's start",
        &panels,
    )
}

#[cfg(test)]
mod tests;
