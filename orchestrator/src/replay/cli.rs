//! `shadow-orchestrator replay`: its arguments and what it prints.

use std::{io::Write, path::PathBuf};

use super::{
    grid::{self, Grid},
    input::InputError,
    plot, policy, report,
    run::{self, Kind},
    system, throughput,
};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line: per (resource, recommender), then the
    /// system-wide forecast's figures with --system.
    Json,
    /// Markdown tables, for people.
    Table,
}

/// Arguments of `shadow-orchestrator replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Per-VM trace files (CSV, plain or zstd): `ts` and any of `cpu_mhz`
    /// or `cpu_pct`, `mem_kb`, `cpu_capacity_mhz`, `mem_capacity_kb`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Quantile of Shadow's band (comma-separated to sweep; with --system,
    /// the first quantile and lead are used for the aggregate).
    #[arg(long, value_delimiter = ',', default_value = "0.95", value_parser = parse_quantile)]
    pub quantile: Vec<f64>,
    /// Steps Shadow's reservation looks ahead, 1..=6 (comma-separated to
    /// sweep; default: the orchestrator's default lead, 3).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=6))]
    pub lead: Vec<u16>,
    /// Horizons Shadow's forecaster serves (1..=6; 6 as on a host).
    #[arg(long, default_value_t = shadow_agent::forecast::MAX_HORIZON,
          value_parser = clap::builder::TypedValueParser::map(
              clap::value_parser!(u16).range(1..=6), usize::from))]
    pub horizon: usize,
    /// Recommenders to run (comma-separated): manual, vpa, autopilot-mw,
    /// max-24h, p95-last-1h, shadow.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "manual,vpa,autopilot-mw,max-24h,p95-last-1h,shadow"
    )]
    pub recommender: Vec<Choice>,
    /// Also forecast the sum over all VMs (the orchestrator's aggregate)
    /// and score it against the baselines on the summed series.
    #[arg(long)]
    pub system: bool,
    /// Draw each recommender's (slack, impacted) point and Shadow's sweep
    /// to this SVG file.
    #[arg(long, value_name = "SVG")]
    pub plot: Option<PathBuf>,
    /// Instead of scoring, measure throughput: the set's series replicated
    /// to this many, all stepped in turn (as a host steps its cgroups).
    #[arg(long, value_name = "SERIES")]
    pub throughput: Option<usize>,
}

/// A `--recommender` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// The provisioned capacity.
    Manual,
    /// Kubernetes VPA.
    Vpa,
    /// Autopilot's moving window.
    AutopilotMw,
    /// Max of the last day + 10 %.
    #[value(name = "max-24h")]
    Max24h,
    /// p95 of the last hour + 15 %.
    #[value(name = "p95-last-1h")]
    P95Last1h,
    /// Shadow, once per --quantile.
    Shadow,
}

/// A quantile strictly between 0 and 1.
fn parse_quantile(text: &str) -> Result<f64, String> {
    text.parse::<shadow_agent::config::Quantile>().map(|q| q.0)
}

/// Why the replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A trace file could not be read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The output could not be written.
    #[error("writing {what}: {source}")]
    Write {
        /// What was being written.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl ReplayArgs {
    /// The recommenders to run, Shadow once per quantile.
    pub fn kinds(&self) -> Vec<Kind> {
        let mut kinds = Vec::new();
        for c in &self.recommender {
            match c {
                Choice::Manual => kinds.push(Kind::Manual),
                Choice::Vpa => kinds.push(Kind::Vpa),
                Choice::AutopilotMw => kinds.push(Kind::AutopilotMw),
                Choice::Max24h => kinds.push(Kind::Max24h),
                Choice::P95Last1h => kinds.push(Kind::P95Last1h),
                Choice::Shadow => {
                    let leads = if self.lead.is_empty() {
                        vec![policy::default_lead()]
                    } else {
                        self.lead.clone()
                    };
                    for lead in leads {
                        kinds.extend(self.quantile.iter().map(|&quantile| {
                            Kind::Shadow(policy::Settings {
                                quantile,
                                lead,
                                horizon: self.horizon,
                            })
                        }));
                    }
                }
            }
        }
        kinds.dedup();
        kinds
    }
}

/// Loads every file onto the grid.
pub fn load(files: &[PathBuf]) -> Result<Vec<Grid>, InputError> {
    files.iter().map(|f| grid::load(f)).collect()
}

/// Runs the replay and prints to `out`.
pub fn run(args: &ReplayArgs, out: &mut dyn Write) -> Result<(), ReplayError> {
    let grids = load(&args.files)?;
    let kinds = args.kinds();
    let write = |what: &str| {
        let what = what.to_owned();
        move |source| ReplayError::Write { what, source }
    };
    if let Some(n) = args.throughput {
        let rows = throughput::measure(&grids, &kinds, n);
        let text = match args.format {
            Format::Json => throughput::json_lines(&rows),
            Format::Table => throughput::table(&rows),
        };
        return out.write_all(text.as_bytes()).map_err(write("the output"));
    }
    let rows = run::replay(&grids, &kinds);
    let mut text = match args.format {
        Format::Json => report::json_lines(&rows),
        Format::Table => {
            let mut t = report::table(&rows);
            if rows.iter().any(|r| matches!(r.kind, Kind::Shadow(_))) {
                t.push('\n');
                t.push_str(&report::dominance_table(&rows));
            }
            t
        }
    };
    if args.system {
        // At the first Shadow setting asked for (the default if none).
        let settings = kinds
            .iter()
            .find_map(|k| match k {
                Kind::Shadow(s) => Some(*s),
                _ => None,
            })
            .unwrap_or_default();
        let result = system::evaluate(&grids, settings);
        text.push_str(&match args.format {
            Format::Json => system::json_lines(&result),
            Format::Table => format!("\n{}", system::table(&result)),
        });
    }
    out.write_all(text.as_bytes())
        .map_err(write("the output"))?;
    if let Some(path) = &args.plot {
        std::fs::write(path, plot::svg(&rows)).map_err(write(&path.display().to_string()))?;
    }
    Ok(())
}
