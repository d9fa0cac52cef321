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
}
