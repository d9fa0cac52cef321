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
    /// Quantile of Shadow's band, comma-separated to sweep (default: the
    /// forecaster's, 0.95; with --system, the first quantile and lead are
    /// used for the aggregate).
    #[arg(long, value_delimiter = ',', value_parser = parse_quantile)]
    pub quantile: Vec<f64>,
    /// Steps Shadow's reservation looks ahead, 1..=6 (comma-separated to
    /// sweep; default: the orchestrator's default lead, 3).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=6))]
    pub lead: Vec<u16>,
    /// Horizons Shadow's forecaster serves (1..=6; 6 as on a host).
    #[arg(long, default_value_t = shadow_forecast::MAX_HORIZON,
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
    text.parse::<shadow_common::config::Quantile>().map(|q| q.0)
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
                    let quantiles = if self.quantile.is_empty() {
                        vec![policy::Settings::default().quantile]
                    } else {
                        self.quantile.clone()
                    };
                    for lead in leads {
                        kinds.extend(quantiles.iter().map(|&quantile| {
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
            // The dominance check needs both Shadow and baselines.
            let shadows = rows
                .iter()
                .filter(|r| matches!(r.kind, Kind::Shadow(_)))
                .count();
            if shadows > 0 && shadows < rows.len() {
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: ReplayArgs,
    }

    fn args(line: &[&str]) -> ReplayArgs {
        Command::try_parse_from(std::iter::once("replay").chain(line.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn sweeps_expand_per_lead_and_quantile() {
        let a = args(&["a.csv"]);
        assert_eq!(a.kinds().len(), 6, "five baselines and Shadow's default");
        assert_eq!(a.kinds()[5], Kind::Shadow(policy::Settings::default()));
        let a = args(&[
            "a.csv",
            "--recommender",
            "vpa,shadow",
            "--quantile",
            "0.9,0.99",
            "--lead",
            "1,3",
        ]);
        let kinds = a.kinds();
        assert_eq!(kinds.len(), 5);
        assert_eq!(kinds[0], Kind::Vpa);
        assert!(matches!(kinds[4], Kind::Shadow(s) if s.lead == 3 && s.quantile == 0.99));
        assert!(Command::try_parse_from(["replay", "a.csv", "--quantile", "1.5"]).is_err());
        assert!(Command::try_parse_from(["replay", "a.csv", "--lead", "7"]).is_err());
    }

    #[test]
    fn runs_end_to_end_on_a_small_file() {
        let dir = std::env::temp_dir().join(format!("shadow-replay-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vm-1.csv");
        let mut text = String::from("ts,cpu_pct\n");
        for k in 0..3 * 288 {
            text.push_str(&format!("{},{}\n", k * 300, 10 + (k * 7) % 13));
        }
        std::fs::write(&file, text).unwrap();
        let svg = dir.join("out.svg");
        let a = args(&[
            file.to_str().unwrap(),
            "--format",
            "json",
            "--system",
            "--plot",
            svg.to_str().unwrap(),
        ]);
        let mut out = Vec::new();
        run(&a, &mut out).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // CPU only, no capacity: vpa, autopilot-mw, max-24h, p95-last-1h
        // and shadow; then the sum's forecasts and the pooling figure.
        let recommenders: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.get("recommender").and_then(|r| r.as_str()))
            .collect();
        assert_eq!(
            recommenders,
            ["vpa", "autopilot-mw", "max-24h", "p95-last-1h", "shadow"]
        );
        assert!(lines.iter().all(|l| l["resource"] == "cpu"));
        assert!(lines.iter().any(|l| l.get("ratio").is_some()));
        assert_eq!(lines[0]["vm_days"], 2);
        assert!(std::fs::read_to_string(&svg).unwrap().contains("</svg>"));
        let broken = dir.join("vm-2.csv");
        std::fs::write(&broken, "ts,cpu_pct\n0,x\n").unwrap();
        let err = run(&args(&[broken.to_str().unwrap()]), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("vm-2.csv:2"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
