//! Over rounds: each policy's medians with their min-max, the summary's
//! JSON (`docs/e2e/results-<scenario>.json`), and the goals of issue 12
//! checked on the medians (pure: tested without a run).

use serde_json::{Value, json};

use super::policy::{Family, Policy};

/// The summary's figures of one run (NaN where there is nothing to
/// measure: no latency for a custom workload).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    pub p99_ms: f64,
    pub throttled_s: f64,
    pub reserved_core_s: f64,
    pub used_core_s: f64,
    pub neighbour_work_core_s: f64,
}

/// The summary's keys, in [`Point::values`] order.
pub const KEYS: [&str; 5] = [
    "p99_ms",
    "throttled_s",
    "reserved_core_s",
    "used_core_s",
    "neighbour_work_core_s",
];

impl Point {
    pub fn values(&self) -> [f64; 5] {
        [
            self.p99_ms,
            self.throttled_s,
            self.reserved_core_s,
            self.used_core_s,
            self.neighbour_work_core_s,
        ]
    }

    fn from_values(v: [f64; 5]) -> Self {
        Self {
            p99_ms: v[0],
            throttled_s: v[1],
            reserved_core_s: v[2],
            used_core_s: v[3],
            neighbour_work_core_s: v[4],
        }
    }
}

/// One policy over its rounds.
#[derive(Clone, Debug)]
pub struct Row {
    pub policy: Policy,
    pub rounds: usize,
    pub median: Point,
    pub min: Point,
    pub max: Point,
}

/// Nearest-rank quantile of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of the finite values (mean of the middle two for an even count).
pub fn median(values: &mut Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Per policy (in the order of `policies`), the median, min and max of
/// each figure over its runs in `runs`.
pub fn summarize(policies: &[Policy], runs: &[(Policy, Point)]) -> Vec<Row> {
    policies
        .iter()
        .map(|&policy| {
            let mine: Vec<Point> = runs
                .iter()
                .filter(|(p, _)| *p == policy)
                .map(|(_, f)| *f)
                .collect();
            let column = |i: usize| -> Vec<f64> {
                mine.iter()
                    .map(|f| f.values()[i])
                    .filter(|v| v.is_finite())
                    .collect()
            };
            let mut med = [f64::NAN; 5];
            let mut lo = [f64::NAN; 5];
            let mut hi = [f64::NAN; 5];
            for i in 0..5 {
                let mut c = column(i);
                med[i] = median(&mut c);
                lo[i] = c.first().copied().unwrap_or(f64::NAN);
                hi[i] = c.last().copied().unwrap_or(f64::NAN);
            }
            Row {
                policy,
                rounds: mine.len(),
                median: Point::from_values(med),
                min: Point::from_values(lo),
                max: Point::from_values(hi),
            }
        })
        .collect()
}

/// A figure for JSON: null where there is none (NaN, infinite).
pub fn finite(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

/// The committed summary: one object per policy, medians.
pub fn summary_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                let mut o = serde_json::Map::new();
                o.insert("policy".into(), json!(r.policy.family().name()));
                o.insert("setting".into(), json!(r.policy.setting()));
                o.insert("rounds".into(), json!(r.rounds));
                for (k, v) in KEYS.iter().zip(r.median.values()) {
                    o.insert((*k).into(), finite(v));
                }
                Value::Object(o)
            })
            .collect(),
    )
}

/// True if `a` dominates `b` on (p99, reserved): no worse on both, better
/// on one. NaN never dominates nor is dominated.
pub fn dominates(a: &Point, b: &Point) -> bool {
    dominates_on((a.p99_ms, a.reserved_core_s), (b.p99_ms, b.reserved_core_s))
}

/// [`dominates`] on bare (p99, reserved) pairs, whatever their units.
pub fn dominates_on((ap, ar): (f64, f64), (bp, br): (f64, f64)) -> bool {
    if ![ap, ar, bp, br].iter().all(|v| v.is_finite()) {
        return false;
    }
    ap <= bp && ar <= br && (ap < bp || ar < br)
}

/// One goal of issue 12, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Goal {
    pub what: String,
    /// The measured figures, e.g. "p99 0.41x, reserved 1.05x".
    pub measured: String,
    /// None: not measurable in this run (a point is missing).
    pub met: Option<bool>,
}

fn default_of(rows: &[Row], family: Family) -> Option<&Row> {
    rows.iter()
        .find(|r| r.policy.family() == family && r.policy.is_default())
}

/// The goals on the medians; `irregular` adds the scenario's own.
pub fn goals(rows: &[Row], irregular: bool) -> Vec<Goal> {
    let Some(shadow) = default_of(rows, Family::Shadow) else {
        return Vec::new();
    };
    let s = shadow.median;
    let dominating: Vec<String> = rows
        .iter()
        .filter(|r| r.policy.family() != Family::Shadow && dominates(&r.median, &s))
        .map(|r| r.policy.label())
        .collect();
    let mut out = vec![Goal {
        what: "no baseline point dominates Shadow's default (p99 and reserved)".into(),
        measured: if dominating.is_empty() {
            "none does".into()
        } else {
            format!("dominated by {}", dominating.join(", "))
        },
        met: Some(dominating.is_empty()),
    }];
    let ratios = |b: &Row| {
        (
            s.p99_ms / b.median.p99_ms,
            s.reserved_core_s / b.median.reserved_core_s,
            s.neighbour_work_core_s / b.median.neighbour_work_core_s,
        )
    };
    let check = |what: &str, family: Family, p99: f64, reserved: f64| -> Goal {
        match default_of(rows, family) {
            Some(b) => {
                let (p, r, _) = ratios(b);
                Goal {
                    what: what.into(),
                    measured: format!("p99 {p:.3}x, reserved {r:.3}x"),
                    met: (p.is_finite() && r.is_finite()).then_some(p <= p99 && r <= reserved),
                }
            }
            None => Goal {
                what: what.into(),
                measured: "not run".into(),
                met: None,
            },
        }
    };
    out.push(check(
        "vs reactive-demand 1.25: p99 <= 0.5x at reserved <= 1.1x",
        Family::ReactiveDemand,
        0.5,
        1.1,
    ));
    out.push(check(
        "vs reactive-usage 1.25: p99 <= 0.2x at reserved <= 1.25x",
        Family::ReactiveUsage,
        0.2,
        1.25,
    ));
    let work = default_of(rows, Family::ReactiveDemand).map(|b| ratios(b).2);
    out.push(Goal {
        what: "neighbour's work >= 0.95x its work beside reactive-demand 1.25".into(),
        measured: work.map_or("not run".into(), |w| format!("{w:.3}x")),
        met: work.filter(|w| w.is_finite()).map(|w| w >= 0.95),
    });
    if irregular {
        out.push(check(
            "irregular: within 1.1x of reactive-demand 1.25 on both axes",
            Family::ReactiveDemand,
            1.1,
            1.1,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(p99_ms: f64, reserved_core_s: f64, work: f64) -> Point {
        Point {
            p99_ms,
            throttled_s: 1.0,
            reserved_core_s,
            used_core_s: 50.0,
            neighbour_work_core_s: work,
        }
    }

    #[test]
    fn medians_and_quantiles() {
        assert_eq!(median(&mut vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut vec![4.0, 1.0, f64::NAN, 2.0, 3.0]), 2.5);
        assert!(median(&mut vec![]).is_nan());
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.99), 99.0);
        assert_eq!(quantile(&sorted, 0.5), 50.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn rows_hold_median_and_range_per_policy_in_sweep_order() {
        let a = Policy::Static { cores: 0.5 };
        let b = Policy::Shadow { quantile: None };
        let runs = [
            (b, point(10.0, 100.0, 40.0)),
            (a, point(300.0, 50.0, 80.0)),
            (b, point(30.0, 120.0, 35.0)),
            (a, point(100.0, 51.0, 82.0)),
            (a, point(200.0, 52.0, 78.0)),
            (b, point(20.0, 110.0, 30.0)),
        ];
        let rows = summarize(&[a, b], &runs);
        assert_eq!(rows[0].policy, a);
        assert_eq!(rows[0].rounds, 3);
        assert_eq!(rows[0].median.p99_ms, 200.0);
        assert_eq!((rows[0].min.p99_ms, rows[0].max.p99_ms), (100.0, 300.0));
        assert_eq!(rows[1].median.reserved_core_s, 110.0);
        assert_eq!(rows[1].median.neighbour_work_core_s, 35.0);
    }

    #[test]
    fn summary_json_has_exactly_the_issue_s_shape() {
        let rows = summarize(
            &[Policy::ReactiveDemand { headroom: 1.25 }],
            &[(
                Policy::ReactiveDemand { headroom: 1.25 },
                Point {
                    p99_ms: f64::NAN,
                    ..point(1.0, 2.0, 3.0)
                },
            )],
        );
        let v = summary_json(&rows);
        let o = v[0].as_object().unwrap();
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "neighbour_work_core_s",
                "p99_ms",
                "policy",
                "reserved_core_s",
                "rounds",
                "setting",
                "throttled_s",
                "used_core_s"
            ]
        );
        assert_eq!(o["policy"], "reactive-demand");
        assert_eq!(o["setting"], "1.25");
        assert_eq!(o["rounds"], 1);
        assert_eq!(o["p99_ms"], Value::Null);
        assert_eq!(o["reserved_core_s"], 2.0);
    }

    #[test]
    fn domination_needs_no_worse_on_both_and_better_on_one() {
        let s = point(100.0, 100.0, 0.0);
        assert!(dominates(&point(90.0, 100.0, 0.0), &s));
        assert!(dominates(&point(100.0, 90.0, 0.0), &s));
        assert!(!dominates(&point(100.0, 100.0, 0.0), &s), "equal");
        assert!(!dominates(&point(50.0, 101.0, 0.0), &s), "a trade-off");
        assert!(!dominates(&point(f64::NAN, 10.0, 0.0), &s));
    }

    #[test]
    fn goals_compare_shadow_s_default_with_the_default_baselines() {
        let shadow = Policy::Shadow { quantile: None };
        let demand = Policy::ReactiveDemand { headroom: 1.25 };
        let usage = Policy::ReactiveUsage { headroom: 1.25 };
        let stat = Policy::Static { cores: 1.9 };
        let rows = summarize(
            &[shadow, demand, usage, stat],
            &[
                (shadow, point(40.0, 105.0, 96.0)),
                (demand, point(100.0, 100.0, 100.0)),
                (usage, point(500.0, 90.0, 120.0)),
                (stat, point(30.0, 200.0, 10.0)),
            ],
        );
        let g = goals(&rows, true);
        let met: Vec<Option<bool>> = g.iter().map(|g| g.met).collect();
        assert_eq!(
            met,
            [Some(true), Some(true), Some(true), Some(true), Some(true)],
            "{g:?}"
        );
        // A static point below Shadow on both axes dominates it.
        let rows = summarize(
            &[shadow, stat],
            &[
                (shadow, point(40.0, 105.0, 96.0)),
                (stat, point(30.0, 100.0, 10.0)),
            ],
        );
        let g = goals(&rows, false);
        assert_eq!(g[0].met, Some(false));
        assert!(g[0].measured.contains("static 1.900"), "{}", g[0].measured);
        assert_eq!(g[1].met, None, "no reactive-demand point was run");
        assert_eq!(g.len(), 4);
    }
}
