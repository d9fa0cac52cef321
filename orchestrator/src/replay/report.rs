//! The replay's output: one JSON object per line, or a Markdown table with
//! the digits BASELINES.md prints.

use std::fmt::Write as _;

use serde::Serialize;

use super::{
    run::{Kind, Row},
    score::Summary,
};

/// One row as JSON.
#[derive(Serialize)]
struct JsonRow<'a> {
    resource: &'a str,
    recommender: &'a str,
    /// Shadow's band quantile and look-ahead (absent for the baselines).
    #[serde(skip_serializing_if = "Option::is_none")]
    quantile: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lead: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    horizon: Option<usize>,
    #[serde(flatten)]
    summary: &'a Summary,
    ns_per_update: f64,
}

/// One JSON object per row, a line each.
pub fn json_lines(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        let (quantile, lead, horizon) = match r.kind {
            Kind::Shadow(s) => (Some(s.quantile), Some(s.lead), Some(s.horizon)),
            _ => (None, None, None),
        };
        let row = JsonRow {
            resource: r.resource,
            recommender: r.kind.name(),
            quantile,
            lead,
            horizon,
            summary: &r.summary,
            ns_per_update: r.ns_per_update,
        };
        // Serialising plain numbers and strings cannot fail; NaN (no
        // VM-day at all) becomes null.
        let _ = writeln!(out, "{}", serde_json::to_string(&row).unwrap_or_default());
    }
    out
}

/// The figures as BASELINES.md prints them: rel. slack median and mean
/// (3 decimals), mean violation share (4), impacted share (3), median
/// changes per day (as Python's `{:g}`), shortfall (4), slack (2).
pub fn printed(s: &Summary) -> [String; 7] {
    let changes = if s.limit_changes_median.fract() == 0.0 {
        format!("{:.0}", s.limit_changes_median)
    } else {
        format!("{}", s.limit_changes_median)
    };
    [
        format!("{:.3}", s.rel_slack_median),
        format!("{:.3}", s.rel_slack_mean),
        format!("{:.4}", s.violation_share_mean),
        format!("{:.3}", s.seriously_impacted_share),
        changes,
        format!("{:.4}", s.shortfall_total),
        format!("{:.2}", s.slack_total),
    ]
}

/// Name of a row's recommender in the table (Shadow with its settings).
pub fn label(kind: &Kind) -> String {
    match kind {
        Kind::Shadow(s) => format!("shadow q={} lead={} h={}", s.quantile, s.lead, s.horizon),
        other => other.name().to_owned(),
    }
}

/// A Markdown table, BASELINES.md's columns (time per update in ns).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| res | recommender | VMs | VM-days | rel. slack median | mean | viol mean | impacted | changes/day (median) | shortfall | slack | ns/upd |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let f = printed(&r.summary);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.0} |",
            r.resource,
            label(&r.kind),
            r.summary.vms,
            r.summary.vm_days,
            f.join(" | "),
            r.ns_per_update,
        );
    }
    out
}

/// Whether Shadow's sweep dominates a baseline: some setting of the sweep
/// (or the straight line between two neighbouring settings, read as an
/// intermediate quantile) has a median relative slack and a share of
/// seriously impacted VM-days both at most the baseline's.
#[derive(Clone, Debug, PartialEq)]
pub struct Dominance {
    /// "cpu" or "memory".
    pub resource: &'static str,
    /// The baseline.
    pub baseline: &'static str,
    /// Shadow's look-ahead of the dominating sweep, if any does.
    pub by_lead: Option<u16>,
}

/// Checks every baseline of `rows` against every Shadow sweep (one per
/// look-ahead and horizon).
pub fn dominance(rows: &[Row]) -> Vec<Dominance> {
    let mut out = Vec::new();
    for b in rows.iter().filter(|r| !matches!(r.kind, Kind::Shadow(_))) {
        let (bs, bi) = (
            b.summary.rel_slack_median,
            b.summary.seriously_impacted_share,
        );
        let mut sweeps: Vec<(u16, usize)> = rows
            .iter()
            .filter_map(|r| match r.kind {
                Kind::Shadow(s) if r.resource == b.resource => Some((s.lead, s.horizon)),
                _ => None,
            })
            .collect();
        sweeps.dedup();
        let by_lead = sweeps.into_iter().find_map(|(lead, horizon)| {
            let mut curve: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.resource == b.resource)
                .filter(
                    |r| matches!(r.kind, Kind::Shadow(s) if s.lead == lead && s.horizon == horizon),
                )
                .map(|r| {
                    (
                        r.summary.rel_slack_median,
                        r.summary.seriously_impacted_share,
                    )
                })
                .collect();
            curve.sort_by(|x, y| x.0.total_cmp(&y.0));
            let at_point = curve.iter().any(|&(s, i)| s <= bs && i <= bi);
            let on_segment = curve.windows(2).any(|w| {
                let ((s0, i0), (s1, i1)) = (w[0], w[1]);
                s0 <= bs && bs <= s1 && s1 > s0 && i0 + (i1 - i0) * (bs - s0) / (s1 - s0) <= bi
            });
            (at_point || on_segment).then_some(lead)
        });
        out.push(Dominance {
            resource: b.resource,
            baseline: b.kind.name(),
            by_lead,
        });
    }
    out
}

/// The dominance check as a Markdown table.
pub fn dominance_table(rows: &[Row]) -> String {
    let mut out = String::from("| res | baseline | dominated by Shadow's sweep |\n|---|---|---|\n");
    for d in dominance(rows) {
        let verdict = d
            .by_lead
            .map_or_else(|| "no".to_owned(), |lead| format!("yes (lead {lead})"));
        let _ = writeln!(out, "| {} | {} | {} |", d.resource, d.baseline, verdict);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::policy::Settings;

    fn row(kind: Kind) -> Row {
        Row {
            resource: "cpu",
            kind,
            summary: Summary {
                vms: 2,
                vm_days: 10,
                rel_slack_median: 0.12345,
                rel_slack_mean: -0.5,
                violation_share_mean: 0.01234,
                seriously_impacted_share: 0.1,
                limit_changes_median: 38.5,
                shortfall_total: 0.02,
                slack_total: 1.234,
            },
            ns_per_update: 123.4,
        }
    }

    #[test]
    fn json_has_the_issue_fields() {
        let text = json_lines(&[row(Kind::Vpa), row(Kind::Shadow(Settings::default()))]);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        for key in [
            "resource",
            "recommender",
            "vms",
            "vm_days",
            "rel_slack_median",
            "rel_slack_mean",
            "violation_share_mean",
            "seriously_impacted_share",
            "limit_changes_median",
            "shortfall_total",
            "slack_total",
            "ns_per_update",
        ] {
            assert!(lines[0].get(key).is_some(), "{key}");
        }
        assert!(lines[0].get("quantile").is_none());
        assert_eq!(lines[1]["recommender"], "shadow");
        assert_eq!(lines[1]["quantile"], 0.95);
    }

    #[test]
    fn table_prints_baselines_digits() {
        let t = table(&[row(Kind::Max24h)]);
        assert!(
            t.contains("| cpu | max-24h | 2 | 10 | 0.123 | -0.500 | 0.0123 | 0.100 | 38.5 | 0.0200 | 1.23 | 123 |"),
            "{t}"
        );
    }

    #[test]
    fn dominance_reads_points_and_segments() {
        let at = |kind, slack, impacted| Row {
            summary: Summary {
                rel_slack_median: slack,
                seriously_impacted_share: impacted,
                ..row(kind).summary
            },
            ..row(kind)
        };
        let q = |quantile| {
            Kind::Shadow(Settings {
                quantile,
                ..Settings::default()
            })
        };
        let rows = vec![
            // Below the segment (0.1, 0.3)-(0.3, 0.0): at 0.2 it reads 0.15.
            at(Kind::Vpa, 0.2, 0.16),
            // Above it.
            at(Kind::AutopilotMw, 0.2, 0.14),
            // Leaner than the whole sweep.
            at(Kind::P95Last1h, 0.05, 0.5),
            // Equal impacted, more slack: dominated.
            at(Kind::Max24h, 0.5, 0.0),
            at(q(0.9), 0.1, 0.3),
            at(q(0.99), 0.3, 0.0),
        ];
        let d = dominance(&rows);
        let lead = Settings::default().lead;
        let got: Vec<_> = d.iter().map(|d| (d.baseline, d.by_lead)).collect();
        assert_eq!(
            got,
            vec![
                ("vpa", Some(lead)),
                ("autopilot-mw", None),
                ("p95-last-1h", None),
                ("max-24h", Some(lead)),
            ]
        );
        assert!(dominance_table(&rows).contains("| cpu | autopilot-mw | no |"));
    }
}
