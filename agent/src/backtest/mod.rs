//! Rolling-origin backtests of Shadow's forecaster and the standard
//! baselines on recorded traces, under the protocol of
//! `shared/data/traces/nab/BASELINES.md`: warm up on the first half
//! (W = n / 2), then at every origin t = W-1 .. n-1-h forecast y[t+h] from
//! y[0..=t] only, clip at 0, and score.
//!
//! Layout: `input.rs` reads traces, `models.rs` produces every model's
//! forecasts, `metrics.rs` scores them (one implementation for all models),
//! `report.rs` prints rows and summaries.

mod input;
mod metrics;
mod models;
mod report;

use std::path::PathBuf;

use anyhow::Context as _;

pub use models::Model;

use input::{JsonSelect, Trace};
use metrics::Metrics;
use models::Protocol;
pub(crate) use report::Row;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per file, model, quantile and horizon (plus summary
    /// objects with `--summary`).
    Json,
    /// Per-file figures and a summary per model, for people.
    Table,
}

/// Arguments of `shadow-agent backtest`.
#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// Trace files: NAB CSV (`timestamp,value`) or `observe --format json` output.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Models to run (comma-separated); `all` runs Shadow and every baseline.
    #[arg(long, value_delimiter = ',', default_value = "shadow")]
    pub model: Vec<ModelChoice>,
    /// Quantile of the upper band (comma-separated to sweep).
    #[arg(long, value_delimiter = ',', default_value = "0.95", value_parser = parse_quantile)]
    pub quantile: Vec<f64>,
    /// Horizons in ticks (comma-separated), each 1..=6.
    #[arg(long, value_delimiter = ',', default_value = "1,6",
          value_parser = clap::value_parser!(u16).range(1..=shadow_forecast::MAX_HORIZON as i64))]
    pub horizons: Vec<u16>,
    /// Metric of observe JSON input (any numeric field; read as a rate per
    /// second using interval_ns).
    #[arg(long, default_value = "cpu_ns")]
    pub metric: String,
    /// Observe JSON input: only this cgroup and its descendants.
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Season of the seasonal-naive baseline in ticks (default: one day
    /// for data sampled every minute or slower, 300 s for finer data).
    #[arg(long)]
    pub season: Option<usize>,
    /// Residual window of the point baselines in ticks (default: one day,
    /// or 600 s for data finer than a minute).
    #[arg(long)]
    pub residual_window: Option<usize>,
    /// Half-life of the vpa histogram in ticks (default: 24 h, or 600 s for
    /// data finer than a minute).
    #[arg(long)]
    pub vpa_half_life: Option<f64>,
    /// Adaptive reporting: relative move of the upper band that triggers a
    /// report.
    #[arg(long, default_value_t = 0.10)]
    pub report_change: f64,
    /// Adaptive reporting: heartbeat in ticks.
    #[arg(long, default_value_t = 30.0)]
    pub report_heartbeat: f64,
    /// With --format json, also print one summary object per model,
    /// quantile and horizon.
    #[arg(long)]
    pub summary: bool,
    /// Also draw, per file (at most 12), the realised values, the first
    /// model's forecast and upper band at the first horizon and quantile,
    /// and (Shadow) the band the orchestrator holds under adaptive
    /// reporting, over the evaluated half: an SVG written to this path.
    #[arg(long, value_name = "SVG")]
    pub plot: Option<PathBuf>,
}

/// Most panels in a `--plot` chart (one per file).
const PLOT_PANELS: usize = 12;

/// A `--model` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelChoice {
    /// Shadow's online ensemble.
    Shadow,
    /// Last value.
    Naive,
    /// Value one season ago.
    SeasonalNaive,
    /// Exponentially weighted mean.
    Ewma,
    /// Kubernetes VPA recommender.
    Vpa,
    /// Shadow and every baseline.
    All,
}

/// The one quantile check (`config::Quantile`), as a plain number.
fn parse_quantile(text: &str) -> Result<f64, String> {
    text.parse::<shadow_common::config::Quantile>().map(|q| q.0)
}

/// Runs the backtest.
pub fn run(args: &BacktestArgs) -> anyhow::Result<()> {
    let mut panels = Vec::new();
    let rows = evaluate_files(args, args.plot.as_ref().map(|_| &mut panels))?;
    if let Some(path) = &args.plot {
        let title = format!(
            "backtest: {:?} at horizon {}, quantile {}",
            models(args).first().copied().unwrap_or(Model::Shadow),
            args.horizons.first().copied().unwrap_or(1),
            args.quantile.first().copied().unwrap_or(0.95)
        );
        std::fs::write(
            path,
            shadow_common::plot::svg(&title, "ticks since the evaluation started", &panels),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("backtest: plot written to {}", path.display());
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => report::json(&mut out, &rows, args.summary),
        Format::Table => report::table(&mut out, &rows),
    }
    .context("writing the results")
}

fn models(args: &BacktestArgs) -> Vec<Model> {
    let mut v: Vec<Model> = Vec::new();
    for m in &args.model {
        match m {
            ModelChoice::Shadow => v.push(Model::Shadow),
            ModelChoice::Naive => v.push(Model::Naive),
            ModelChoice::SeasonalNaive => v.push(Model::SeasonalNaive),
            ModelChoice::Ewma => v.push(Model::Ewma),
            ModelChoice::Vpa => v.push(Model::Vpa),
            ModelChoice::All => v.extend([
                Model::Shadow,
                Model::Naive,
                Model::SeasonalNaive,
                Model::Ewma,
                Model::Vpa,
            ]),
        }
    }
    v.sort();
    v.dedup();
    v
}

/// Every (series, model, quantile, horizon) row of a run.
/// With `plots`, also draws the first model at the first quantile and
/// horizon for each series.
pub(crate) fn evaluate_files(
    args: &BacktestArgs,
    mut plots: Option<&mut Vec<shadow_common::plot::Panel>>,
) -> anyhow::Result<Vec<Row>> {
    let select = JsonSelect {
        metric: &args.metric,
        cgroup: args.cgroup.as_deref(),
    };
    let horizons: Vec<usize> = args.horizons.iter().map(|&h| h as usize).collect();
    let mut rows = Vec::new();
    let total = args.files.len();
    for (i, path) in args.files.iter().enumerate() {
        if total > 1 && args.format == Format::Table {
            // Long runs show progress (stderr, so output stays clean).
            eprintln!("backtest: {}/{total} {}", i + 1, path.display());
        }
        for series in input::read(path, &select)? {
            for (qi, &q) in args.quantile.iter().enumerate() {
                let mut p = Protocol::for_interval(series.interval_s, horizons.clone(), q);
                p.season = args.season.unwrap_or(p.season);
                p.window = args.residual_window.unwrap_or(p.window);
                p.vpa_half_life = args.vpa_half_life.unwrap_or(p.vpa_half_life);
                p.reporter_change = args.report_change;
                p.reporter_heartbeat = args.report_heartbeat;
                for (mi, model) in models(args).into_iter().enumerate() {
                    let (r, pred) = evaluate(&series, model, &p)
                        .with_context(|| format!("{} with {model:?}", series.name))?;
                    rows.extend(r);
                    if let Some(panels) = plots.as_deref_mut()
                        && qi == 0
                        && mi == 0
                        && panels.len() < PLOT_PANELS
                    {
                        panels.push(panel(&series, &pred, p.horizons[0]));
                    }
                }
            }
        }
    }
    Ok(rows)
}

/// Realised values against the first horizon's point, band and (Shadow)
/// held band, over the evaluated half of `series`.
fn panel(series: &Trace, pred: &models::Predictions, h: usize) -> shadow_common::plot::Panel {
    use shadow_common::plot::Series as Line;
    let y = &series.values;
    let first = y.len() / 2 - 1;
    let at = |v: &[f64]| -> Vec<(f64, f64)> {
        (first..y.len() - h)
            .map(|t| ((t - first + h) as f64, v[t]))
            .collect()
    };
    let actual = (first..y.len() - h)
        .map(|t| ((t - first + h) as f64, y[t + h]))
        .collect();
    let mut lines = vec![
        Line::line("realised", "black", actual),
        Line::line("forecast", "#1f77b4", at(&pred.point[0])),
        Line::dashed("upper band", "#d62728", at(&pred.upper[0])),
    ];
    if let Some(r) = &pred.reported {
        lines.push(Line::line("band held upstream", "#2ca02c", at(&r.upper[0])));
    }
    shadow_common::plot::Panel {
        title: series.name.clone(),
        y_label: "value".into(),
        series: lines,
    }
}

/// Scores one model on one series, one row per horizon; also returns the
/// forecasts (for plots).
fn evaluate(
    series: &Trace,
    model: Model,
    p: &Protocol,
) -> anyhow::Result<(Vec<Row>, models::Predictions)> {
    let y = &series.values;
    let n = y.len();
    let max_h = p.horizons.iter().copied().max().unwrap_or(1);
    anyhow::ensure!(
        n >= 2 * max_h + 4,
        "{}: too short ({n} samples) for a backtest",
        series.name
    );
    let first = n / 2 - 1;
    let pred = models::predict(model, y, series.interval_s, first, p)?;
    let ticks = (n - first) as u64;
    let reports = pred
        .reported
        .as_ref()
        .map(|r| r.sent[first..].iter().filter(|s| **s).count() as u64);
    let rows = p
        .horizons
        .iter()
        .enumerate()
        .map(|(j, &h)| {
            let mut m = Metrics::default();
            let mut held = Metrics::default();
            for t in first..n - h {
                m.add(y[t + h], pred.point[j][t], pred.upper[j][t], p.quantile);
                if let Some(r) = &pred.reported {
                    held.add(y[t + h], r.point[j][t], r.upper[j][t], p.quantile);
                }
            }
            Row {
                file: series.name.clone(),
                model,
                quantile: p.quantile,
                horizon: h,
                metrics: m.summary(),
                // Without adaptive reporting every tick is a message.
                reports: reports.unwrap_or(ticks),
                ticks,
                reported: pred.reported.as_ref().map(|_| held.summary()),
                ns_per_update: pred.ns_per_update,
                period: pred.period,
            }
        })
        .collect();
    Ok((rows, pred))
}

#[cfg(test)]
mod tests;
