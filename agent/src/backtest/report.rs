//! Backtest output: one row per (series, model, quantile, horizon), and a
//! summary per (model, quantile, horizon) across series, as BASELINES.md
//! summarises (medians are the robust figures; means are dominated by the
//! spikiest series).

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use super::metrics::{Summary, mean, median};
use super::models::Model;

/// Figures of one model on one series at one horizon.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub file: String,
    pub model: Model,
    pub quantile: f64,
    pub horizon: usize,
    #[serde(flatten)]
    pub metrics: Summary,
    /// Messages sent over the scored ticks (adaptive reporting for Shadow;
    /// every tick for the baselines).
    pub reports: u64,
    /// Ticks in the scored range (what reporting every tick would send).
    pub ticks: u64,
    /// Shadow only: the figures of what the orchestrator holds (the last
    /// sent forecast), i.e. the accuracy cost of reporting less often.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported: Option<Summary>,
    pub ns_per_update: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<u32>,
}

/// Across-series figures of one (model, quantile, horizon).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Aggregate {
    pub model: Model,
    pub quantile: f64,
    pub horizon: usize,
    pub files: usize,
    pub npinball_median: f64,
    pub npinball_mean: f64,
    pub coverage_mean: f64,
    pub coverage_min: f64,
    pub shortfall_median: f64,
    pub slack_median: f64,
    /// Series on which this model has the lowest npinball among the models
    /// of the run (same quantile and horizon).
    pub wins: usize,
    /// Messages sent / ticks, summed over series.
    pub report_ratio: f64,
    pub reported_npinball_median: Option<f64>,
    pub reported_coverage_mean: Option<f64>,
    pub ns_per_update_median: f64,
}

type Key = (Model, u64, usize);

fn key(r: &Row) -> Key {
    (r.model, r.quantile.to_bits(), r.horizon)
}

/// Summaries in a stable order (model, quantile, horizon).
pub(crate) fn aggregate(rows: &[Row]) -> Vec<Aggregate> {
    // Winner per (file, quantile, horizon).
    let mut best: BTreeMap<(&str, u64, usize), (f64, Model)> = BTreeMap::new();
    for r in rows {
        let k = (r.file.as_str(), r.quantile.to_bits(), r.horizon);
        let v = r.metrics.npinball;
        if v.is_finite() && best.get(&k).is_none_or(|(b, _)| v < *b) {
            best.insert(k, (v, r.model));
        }
    }
    let mut groups: BTreeMap<Key, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups.entry(key(r)).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((model, qbits, horizon), rs)| {
            let wins = rs
                .iter()
                .filter(|r| {
                    best.get(&(r.file.as_str(), qbits, horizon))
                        .is_some_and(|(_, m)| *m == model)
                })
                .count();
            let reported: Vec<&Summary> = rs.iter().filter_map(|r| r.reported.as_ref()).collect();
            Aggregate {
                model,
                quantile: f64::from_bits(qbits),
                horizon,
                files: rs.len(),
                npinball_median: median(rs.iter().map(|r| r.metrics.npinball)),
                npinball_mean: mean(rs.iter().map(|r| r.metrics.npinball)),
                coverage_mean: mean(rs.iter().map(|r| r.metrics.coverage)),
                coverage_min: rs
                    .iter()
                    .map(|r| r.metrics.coverage)
                    .fold(f64::INFINITY, f64::min),
                shortfall_median: median(rs.iter().map(|r| r.metrics.shortfall)),
                slack_median: median(rs.iter().map(|r| r.metrics.slack)),
                wins,
                report_ratio: rs.iter().map(|r| r.reports).sum::<u64>() as f64
                    / rs.iter().map(|r| r.ticks).sum::<u64>().max(1) as f64,
                reported_npinball_median: (!reported.is_empty())
                    .then(|| median(reported.iter().map(|s| s.npinball))),
                reported_coverage_mean: (!reported.is_empty())
                    .then(|| mean(reported.iter().map(|s| s.coverage))),
                ns_per_update_median: median(rs.iter().map(|r| r.ns_per_update)),
            }
        })
        .collect()
}

/// JSON lines: rows, then (with `summary`) aggregates marked `"summary": true`.
pub(crate) fn json(out: &mut impl Write, rows: &[Row], summary: bool) -> std::io::Result<()> {
    for r in rows {
        serde_json::to_writer(&mut *out, r)?;
        writeln!(out)?;
    }
    if summary {
        for a in aggregate(rows) {
            let mut v = serde_json::to_value(&a)?;
            v["summary"] = true.into();
            serde_json::to_writer(&mut *out, &v)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

fn name(m: Model) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Tables for people: per-series figures, then the summary.
pub(crate) fn table(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<40} {:<14} {:>5} {:>2} {:>10} {:>9} {:>8} {:>8} {:>8} {:>7} {:>9} {:>9} {:>7}",
        "file",
        "model",
        "q",
        "h",
        "mae",
        "npinball",
        "coverage",
        "shortfl",
        "slack",
        "mape",
        "reports",
        "rep_npin",
        "ns/upd"
    )?;
    for r in rows {
        let m = &r.metrics;
        writeln!(
            out,
            "{:<40} {:<14} {:>5} {:>2} {:>10.4} {:>9.5} {:>8.3} {:>8.4} {:>8.3} {:>7.3} {:>9} {:>9} {:>7.0}",
            truncate(&r.file, 40),
            name(r.model),
            r.quantile,
            r.horizon,
            m.mae,
            m.npinball,
            m.coverage,
            m.shortfall,
            m.slack,
            m.mape,
            format!("{}/{}", r.reports, r.ticks),
            r.reported
                .map_or("-".to_owned(), |s| format!("{:.5}", s.npinball)),
            r.ns_per_update,
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<14} {:>5} {:>2} {:>5} {:>9} {:>9} {:>7} {:>7} {:>9} {:>7} {:>5} {:>7} {:>9} {:>7} {:>7}",
        "model",
        "q",
        "h",
        "files",
        "npin_med",
        "npin_mean",
        "cov",
        "cov_min",
        "short_med",
        "slack",
        "wins",
        "reports",
        "rep_npin",
        "rep_cov",
        "ns/upd"
    )?;
    for a in aggregate(rows) {
        writeln!(
            out,
            "{:<14} {:>5} {:>2} {:>5} {:>9.5} {:>9.4} {:>7.3} {:>7.3} {:>9.4} {:>7.3} {:>5} {:>7.3} {:>9} {:>7} {:>7.0}",
            name(a.model),
            a.quantile,
            a.horizon,
            a.files,
            a.npinball_median,
            a.npinball_mean,
            a.coverage_mean,
            a.coverage_min,
            a.shortfall_median,
            a.slack_median,
            a.wins,
            a.report_ratio,
            a.reported_npinball_median
                .map_or("-".to_owned(), |v| format!("{v:.5}")),
            a.reported_coverage_mean
                .map_or("-".to_owned(), |v| format!("{v:.3}")),
            a.ns_per_update_median,
        )?;
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
