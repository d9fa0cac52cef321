//! The memory benchmark's figures: a line per run, each policy's medians
//! over rounds as a table, issue 14's goals checked on them, and the JSON
//! (`results.json` in the output folder) with every run's series.

use std::path::Path;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::{
    Scenario,
    policy::{DEFAULT_HEADROOM, Family, Policy},
    run::{Run, Setup},
};
use crate::e2e::stats::{dominates_on, finite, median};

/// The figures compared, in [`Figures::values`] order.
const KEYS: [&str; 7] = [
    "p99_ms",
    "stall_s",
    "major_faults",
    "reserved_gib_s",
    "used_gib_s",
    "neighbour_gib",
    "oom_kills",
];

/// One run's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Figures([f64; 7]);

impl Figures {
    fn of(r: &Run) -> Self {
        Self([
            r.summary["p99_ms"].as_f64().unwrap_or(f64::NAN),
            r.stall_s,
            r.major_faults as f64,
            r.reserved_gib_s,
            r.used_gib_s,
            r.neighbour_gib,
            r.oom_kills as f64,
        ])
    }

    fn p99(&self) -> f64 {
        self.0[0]
    }
    fn stall(&self) -> f64 {
        self.0[1]
    }
    fn reserved(&self) -> f64 {
        self.0[3]
    }
}

/// A run in one line, as it ends.
pub fn line(r: &Run) -> String {
    format!(
        "p99 {:.2} ms, reclaim stall {:.3} s, {} major faults, reserved {:.1} GiB-s, used {:.1} GiB-s, neighbour read {:.1} GiB, {} OOM kills, {} refused writes",
        r.summary["p99_ms"].as_f64().unwrap_or(f64::NAN),
        r.stall_s,
        r.major_faults,
        r.reserved_gib_s,
        r.used_gib_s,
        r.neighbour_gib,
        r.oom_kills,
        r.refused_writes
    )
}

/// Each policy's medians over its runs, in plan order.
fn medians(plan: &[Policy], runs: &[Run]) -> Vec<(Policy, usize, Figures)> {
    plan.iter()
        .map(|&p| {
            let mine: Vec<Figures> = runs
                .iter()
                .filter(|r| r.policy == p)
                .map(Figures::of)
                .collect();
            let m = std::array::from_fn(|i| median(&mut mine.iter().map(|f| f.0[i]).collect()));
            (p, mine.len(), Figures(m))
        })
        .collect()
}

/// `a` dominates `b`: no worse on p99 and reserved, better on one.
fn dominates(a: &Figures, b: &Figures) -> bool {
    dominates_on((a.p99(), a.reserved()), (b.p99(), b.reserved()))
}

/// Issue 14's goals on the medians, one line each: (goal, met, figures).
fn goals(rows: &[(Policy, usize, Figures)], runs: &[Run]) -> Vec<(String, bool, String)> {
    let find = |p: Policy| rows.iter().find(|r| r.0 == p).map(|r| r.2);
    let shadow = find(Policy::Shadow { quantile: None });
    let reactive = find(Policy::Reactive {
        headroom: DEFAULT_HEADROOM,
    });
    let mut out = Vec::new();
    if let (Some(s), Some(r)) = (shadow, reactive) {
        // Both at zero is no ratio: said as such.
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let times = |r: f64| {
            if r.is_nan() {
                "both 0".to_owned()
            } else {
                format!("{r:.2}x")
            }
        };
        let (stall, p99, reserved) = (
            ratio(s.stall(), r.stall()),
            ratio(s.p99(), r.p99()),
            ratio(s.reserved(), r.reserved()),
        );
        out.push((
            format!("vs reactive {DEFAULT_HEADROOM}: reclaim stall <= 0.2x"),
            s.stall() <= 0.2 * r.stall(),
            format!(
                "{} ({:.3} s vs {:.3} s)",
                times(stall),
                s.stall(),
                r.stall()
            ),
        ));
        out.push((
            format!("vs reactive {DEFAULT_HEADROOM}: p99 <= 0.2x"),
            s.p99() <= 0.2 * r.p99(),
            format!("{} ({:.2} ms vs {:.2} ms)", times(p99), s.p99(), r.p99()),
        ));
        out.push((
            format!("vs reactive {DEFAULT_HEADROOM}: reserved <= 1.25x"),
            reserved <= 1.25,
            format!("{reserved:.2}x"),
        ));
        let beaten: Vec<String> = rows
            .iter()
            .filter(|r| r.0.family() != Family::Shadow && dominates(&r.2, &s))
            .map(|r| r.0.label())
            .collect();
        out.push((
            "no baseline dominates Shadow's default (p99, reserved)".into(),
            beaten.is_empty(),
            if beaten.is_empty() {
                "none does".into()
            } else {
                beaten.join(", ")
            },
        ));
    }
    let killed: Vec<String> = runs
        .iter()
        .filter(|r| r.oom_kills > 0)
        .map(|r| format!("{} (round {})", r.policy.label(), r.round))
        .collect();
    out.push((
        "no OOM kill in any run".into(),
        killed.is_empty(),
        if killed.is_empty() {
            format!("{} runs, none", runs.len())
        } else {
            killed.join(", ")
        },
    ));
    out
}

/// The table, the goals, and `results-<scenario>.json` in `out`.
pub fn write(
    setup: &Setup,
    scenario: Scenario,
    plan: &[Policy],
    runs: &[Run],
    out: &Path,
    seed: u64,
    rounds: usize,
) -> anyhow::Result<()> {
    let rows = medians(plan, runs);
    let mut table = String::from(
        "| policy | runs | p99 ms | reclaim stall s | major faults | reserved GiB-s | used GiB-s | neighbour read GiB | OOM kills |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (p, n, f) in &rows {
        let label = if p.is_default() {
            format!("**{}**", p.label())
        } else {
            p.label()
        };
        table += &format!(
            "| {label} | {n} | {:.2} | {:.3} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} |\n",
            f.0[0], f.0[1], f.0[2], f.0[3], f.0[4], f.0[5], f.0[6]
        );
    }
    let goals = goals(&rows, runs);
    let mut text = format!("memory: {}\n\n{table}", scenario.name());
    for (g, met, fig) in &goals {
        text += &format!("- {g}: {} ({fig})\n", if *met { "met" } else { "NOT met" });
    }
    println!("{text}");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "scenario": scenario.name(),
        "hint_ahead_s": setup.hint_ahead.map(|d| d.as_secs_f64()),
        "rounds": rounds,
        "order_seed": seed,
        "hierarchy": setup.hierarchy.describe(),
        "tick_ms": setup.tick.as_millis() as u64,
        "budget_mib": setup.budget / super::policy::MIB,
        "created_ceiling_mib": setup.initial / super::policy::MIB,
        "service": {
            "rate": setup.service.rate, "pages": setup.service.pages,
            "load_mibps": setup.service.load_mibps, "phases": setup.service.phases,
            "workers": setup.service.workers,
        },
        "summary": rows.iter().map(|(p, n, f)| {
            let mut o = json!({"policy": p.label(), "family": p.family().name(),
                               "setting": p.setting(), "default": p.is_default(), "runs": n});
            for (k, v) in KEYS.iter().zip(f.0) {
                o[*k] = finite(v);
            }
            o
        }).collect::<Vec<_>>(),
        "goals": goals.iter().map(|(g, met, fig)| json!({"goal": g, "met": met, "figures": fig})).collect::<Vec<_>>(),
        "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
    });
    let path = out.join(format!("results-{}.json", scenario.name()));
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("memory: wrote {}", path.display());
    Ok(())
}

fn run_json(r: &Run) -> Value {
    let mib = super::policy::MIB;
    json!({
        "policy": r.policy.label(),
        "round": r.round,
        "start_unix": r.start,
        "end_unix": r.end,
        "service": r.summary,
        "stall_s": r.stall_s,
        "major_faults": r.major_faults,
        "oom_kills": r.oom_kills,
        "reserved_gib_s": r.reserved_gib_s,
        "used_gib_s": r.used_gib_s,
        "neighbour_gib": r.neighbour_gib,
        "refused_writes": r.refused_writes,
        "hints": r.hints.iter().map(|h| json!({
            "start_s": h.start_s, "sent_s": h.sent_s, "bytes": h.amount, "status": h.status,
            "reserve_bytes": h.reserve, "trust": h.trust,
        })).collect::<Vec<_>>(),
        "series_s_ceiling_usage_mib": r.series.iter().map(|s| {
            json!([((s.0 - r.start) * 10.0).round() / 10.0, (s.1 / mib).round(), (s.2 / mib).round()])
        }).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_dominates_only_when_no_worse_on_both_and_better_on_one() {
        let f = |p99, reserved| {
            let mut v = [0.0; 7];
            (v[0], v[3]) = (p99, reserved);
            Figures(v)
        };
        assert!(dominates(&f(1.0, 10.0), &f(2.0, 10.0)));
        assert!(!dominates(&f(1.0, 10.0), &f(1.0, 10.0)));
        assert!(!dominates(&f(1.0, 11.0), &f(2.0, 10.0)));
    }
}
