//! `--plot`: the trade-off every recommender makes, median relative slack
//! (x) against the share of seriously impacted VM-days (y), one panel per
//! resource: a marker per baseline, Shadow's quantile sweep as a line.
//! Drawn with the agent's SVG line charts (`shadow_common::plot`); a
//! marker is a small cross of two strokes, which is all that needs.

use shadow_common::plot::{Panel, Series, svg as render};

use super::run::{Kind, Row};

/// Colours per baseline, in [`Kind::BASELINES`] order.
const COLORS: [&str; 5] = ["#7f7f7f", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"];
/// Colours of Shadow's sweep curves.
const SWEEP_COLORS: [&str; 3] = ["#d62728", "#8c564b", "#e377c2"];

/// A point of a sweep: (quantile, (slack, impacted)).
type Swept = (f64, (f64, f64));

/// The chart of `rows`.
pub fn svg(rows: &[Row]) -> String {
    let mut panels = Vec::new();
    for resource in ["cpu", "memory"] {
        let of: Vec<&Row> = rows.iter().filter(|r| r.resource == resource).collect();
        if of.is_empty() {
            continue;
        }
        let point = |r: &Row| {
            (
                r.summary.rel_slack_median,
                r.summary.seriously_impacted_share,
            )
        };
        // Marker size: a small share of the panel's spans.
        let (xs, ys): (Vec<f64>, Vec<f64>) = of.iter().map(|r| point(r)).unzip();
        let span = |v: &[f64]| {
            let (lo, hi) = v
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                });
            (hi - lo).max(1e-3)
        };
        let (dx, dy) = (0.012 * span(&xs), 0.025 * span(&ys));
        let mut series = Vec::new();
        // Shadow's sweeps, one curve per (lead, horizon).
        let mut sweeps: Vec<((u16, usize), Vec<Swept>)> = Vec::new();
        for r in &of {
            let (x, y) = point(r);
            match r.kind {
                Kind::Shadow(s) => {
                    let key = (s.lead, s.horizon);
                    match sweeps.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, v)) => v.push((s.quantile, (x, y))),
                        None => sweeps.push((key, vec![(s.quantile, (x, y))])),
                    }
                }
                kind => {
                    let i = Kind::BASELINES.iter().position(|b| *b == kind).unwrap_or(0);
                    let cross = vec![
                        (x - dx, y),
                        (x + dx, y),
                        (f64::NAN, f64::NAN),
                        (x, y - dy),
                        (x, y + dy),
                    ];
                    series.push(Series::line(kind.name(), COLORS[i], cross));
                }
            }
        }
        for (i, ((lead, horizon), mut sweep)) in sweeps.into_iter().enumerate() {
            sweep.sort_by(|a, b| a.0.total_cmp(&b.0));
            let qs: Vec<String> = sweep.iter().map(|(q, _)| q.to_string()).collect();
            series.push(Series::line(
                &format!("shadow lead {lead} h {horizon}: q {}", qs.join(", ")),
                SWEEP_COLORS[i % SWEEP_COLORS.len()],
                sweep.iter().map(|s| s.1).collect(),
            ));
        }
        panels.push(Panel {
            title: format!(
                "{resource}: median relative slack (x) vs seriously impacted VM-days (y)"
            ),
            y_label: "impacted VM-days".into(),
            series,
        });
    }
    render(
        "Fleet replay: slack against impacted VM-days (lower-left is better)",
        "median relative slack",
        &panels,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{policy::Settings, score::Summary};

    #[test]
    fn draws_markers_and_the_sweep() {
        let row = |kind, slack, impacted| Row {
            resource: "cpu",
            kind,
            summary: Summary {
                rel_slack_median: slack,
                seriously_impacted_share: impacted,
                ..Summary::default()
            },
            ns_per_update: 1.0,
        };
        let shadow = |q| {
            Kind::Shadow(Settings {
                quantile: q,
                ..Settings::default()
            })
        };
        let rows = vec![
            row(Kind::Vpa, 0.14, 0.19),
            row(Kind::Max24h, 0.54, 0.0),
            row(shadow(0.99), 0.2, 0.01),
            row(shadow(0.95), 0.1, 0.05),
        ];
        let s = svg(&rows);
        assert!(s.contains("vpa") && s.contains("max-24h") && s.contains("q 0.95, 0.99"));
        // Two strokes per marker, one line for the sweep.
        assert_eq!(s.matches("<polyline").count(), 2 * 2 + 1);
        assert!(!s.contains("NaN"));
    }
}
