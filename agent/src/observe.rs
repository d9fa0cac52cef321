//! `shadow-agent observe`: per-cgroup usage every interval, as JSON lines
//! (for programs, one object per cgroup per interval) or a table (for people).

use std::{io::Write as _, path::PathBuf, sync::Arc, time::Duration, time::Instant};

use anyhow::Context as _;

use shadow_common::config::{AgentConfig, DurationAtLeast, MetricsCgroups, Quantile, RescanEvery};

use shadow_common::stop;

use crate::{
    hint,
    metrics::{self, AgentMetrics, DEFAULT_MAX_CGROUPS},
    pipeline::{Pipeline, Row, Settings},
};

pub use shadow_common::config::Format;

/// Arguments of `shadow-agent observe`. Most have a key in the `[agent]`
/// table of the configuration file (docs/configuration.md); a flag given
/// here overrides the key.
#[derive(Debug, clap::Args)]
pub struct ObserveArgs {
    /// Configuration file [default: /etc/shadow/shadow.toml if it exists].
    /// Its `[agent]` table is read at start and again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Length of one interval, at least 10ms (e.g. 500ms, 1s, 5s) [default: 1s].
    #[arg(long)]
    pub interval: Option<DurationAtLeast<10>>,
    /// Stop after this many intervals (default: until Ctrl-C or SIGTERM).
    #[arg(long)]
    pub count: Option<u64>,
    /// Output format [default: json].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Only this cgroup (path relative to the v2 root) and its descendants.
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Intervals between full walks of the cgroup tree (how soon removed
    /// cgroups are dropped; new ones are seen at once), 1..=3600 [default: 10].
    #[arg(long)]
    pub rescan_every: Option<RescanEvery>,
    /// Rows shown by the table format.
    #[arg(long, default_value_t = 25)]
    pub top: usize,
    /// Forecast each cgroup's CPU demand for the next interval (online,
    /// per cgroup; demand = ran + waited on a run queue) and add
    /// `cpu_demand_cores`, `cpu_forecast_cores`,
    /// `cpu_upper_cores` and `cpu_volatility_cores` to the output (and the
    /// memory level's `memory_forecast_bytes`, `memory_upper_bytes`).
    #[arg(long)]
    pub forecast: bool,
    /// Quantile of the forecast's upper band (with --forecast) [default: 0.95].
    #[arg(long)]
    pub quantile: Option<Quantile>,
    /// Send every cgroup's usage and forecasts (horizons 1..6) to the
    /// orchestrator at this Unix socket path, or `tcp:HOST:PORT` for a
    /// remote one (implies --forecast). Observation goes on if it is
    /// unreachable; the agent reconnects. The reservation the orchestrator
    /// holds for each cgroup's CPU is added to the output
    /// (`cpu_reserved_cores`, `cpu_reservation_managed`; the table's RSV%
    /// column, `*` where the orchestrator writes the knobs).
    #[arg(long, value_name = "SOCKET")]
    pub orchestrator: Option<String>,
    /// Listen for applications' hints on this Unix socket (with --forecast
    /// or --orchestrator; docs/hints.md). If another agent holds it, this
    /// one observes without hints [default: /run/shadow/hint.sock].
    #[arg(long, value_name = "PATH")]
    pub hint_socket: Option<PathBuf>,
    /// Group that owns the hint socket (mode 0660): its members may hint.
    #[arg(long, value_name = "NAME")]
    pub hint_group: Option<String>,
    /// Do not open the hint socket.
    #[arg(long)]
    pub no_hints: bool,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9465; port
    /// 0 picks one; off by default; docs/metrics.md). Turns the kernel's
    /// bpf_stats on for the per-program figures.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Most cgroups with their own metric series [default: 1000].
    #[arg(long, value_name = "N")]
    pub metrics_cgroups: Option<MetricsCgroups>,
    /// At exit, print the collector's own cost to stderr as one JSON line:
    /// ticks, median and max time to read and resolve all maps, peak RSS.
    #[arg(long)]
    pub summary: bool,
}

impl ObserveArgs {
    /// The pipeline and output these flags ask for, over the file's
    /// `[agent]` table, over the built-in defaults.
    pub fn resolve(&self, file: &AgentConfig) -> (Settings, Format) {
        let settings = Settings {
            interval: self
                .interval
                .or(file.interval)
                .map_or(Duration::from_secs(1), |d| d.0),
            cgroup: self
                .cgroup
                .clone()
                .or_else(|| file.cgroup.as_ref().map(|c| c.0.clone())),
            rescan_every: self.rescan_every.or(file.rescan_every).map_or(10, |r| r.0),
            forecast: self.forecast || file.forecast == Some(true),
            quantile: self.quantile.or(file.quantile).map_or(0.95, |q| q.0),
            orchestrator: self
                .orchestrator
                .clone()
                .or_else(|| file.orchestrator.clone()),
            key_file: file.key_file.clone(),
            key_name: file.key_name.clone(),
            hint_socket: self
                .hint_socket
                .clone()
                .or_else(|| file.hint_socket.clone())
                .unwrap_or_else(|| PathBuf::from(hint::DEFAULT_SOCKET)),
            hint_group: self.hint_group.clone().or_else(|| file.hint_group.clone()),
            no_hints: self.no_hints || file.hints == Some(false),
            metrics: self.metrics.clone().or_else(|| file.metrics.clone()),
            metrics_cgroups: self
                .metrics_cgroups
                .or(file.metrics_cgroups)
                .map_or(DEFAULT_MAX_CGROUPS, |n| n.0 as usize),
        };
        (
            settings,
            self.format.or(file.format).unwrap_or(Format::Json),
        )
    }

    /// Reads the configuration file (if any) and resolves against it.
    fn load(&self) -> anyhow::Result<(Settings, Format)> {
        let (file, _) = AgentConfig::load(self.config.as_deref())?;
        Ok(self.resolve(&file))
    }
}

/// Runs the observe loop until `--count` intervals or a stop signal.
pub fn run(args: &ObserveArgs) -> anyhow::Result<()> {
    let (settings, mut format) = args.load()?;
    let mut pipeline = Pipeline::start(&settings)?;
    // Lifecycle lines, shown whatever the log level.
    for line in pipeline.started() {
        eprintln!("{line}");
    }
    let metrics = serve_metrics(&settings)?;
    stop::install_handlers();
    let mut stdout = std::io::stdout().lock();
    let mut deadline = Instant::now() + settings.interval;
    let mut done = 0;
    while args.count.is_none_or(|n| done < n) {
        stop::sleep_until(deadline);
        let stopping = stop::requested();
        deadline += settings.interval;
        if stop::reload_requested() {
            reload(args, &mut pipeline, &mut format);
        }
        let started = Instant::now();
        let rows = pipeline.tick()?;
        if let Some(m) = &metrics {
            m.record(&metrics::Tick {
                rows: &rows,
                seconds: started.elapsed().as_secs_f64(),
                cgroups: pipeline.cgroups(),
                probes: &pipeline.probe_costs(),
                hints: pipeline.hint_counts(),
            });
        }
        let written = match format {
            Format::Json => write_json(&mut stdout, &rows),
            Format::Table => write_table(&mut stdout, rows, args.top, pipeline.cgroups()),
            Format::None => Ok(()),
        };
        if let Err(e) = written.and_then(|()| stdout.flush()) {
            // A closed pipe (`| head`) ends the run quietly.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e).context("writing output");
        }
        done += 1;
        if stopping {
            break;
        }
    }
    if args.summary {
        let mut tick_ms = pipeline.collect_ms().to_vec();
        eprintln!("{}", summary(&mut tick_ms, pipeline.cgroups()));
    }
    Ok(())
}

/// Starts the metrics endpoint the settings ask for, if any.
fn serve_metrics(settings: &Settings) -> anyhow::Result<Option<Arc<AgentMetrics>>> {
    let Some(addr) = &settings.metrics else {
        return Ok(None);
    };
    let m = Arc::new(AgentMetrics::new(settings.metrics_cgroups));
    let for_scrapes = Arc::clone(&m);
    let bound = shadow_common::http::serve(addr, move || for_scrapes.encode())
        .with_context(|| format!("serving metrics on {addr}"))?;
    eprintln!("shadow-agent: serving Prometheus metrics on http://{bound}/metrics");
    Ok(Some(m))
}

/// SIGHUP: re-reads the file; what can change while running does, the rest
/// is named. A file that does not load changes nothing.
fn reload(args: &ObserveArgs, pipeline: &mut Pipeline, format: &mut Format) {
    match args.load() {
        Ok((settings, new_format)) => {
            *format = new_format;
            for key in pipeline.reconfigure(&settings) {
                tracing::warn!("reload: `{key}` changed; it takes effect at the next start");
            }
            // A lifecycle line, like "observing": shown whatever the log level.
            eprintln!("shadow-agent: configuration reloaded");
        }
        Err(e) => {
            tracing::error!("reload failed, keeping the running configuration: {e:#}");
        }
    }
}

/// The collector's cost over the run, as one JSON object.
fn summary(tick_ms: &mut [f64], cgroups: usize) -> serde_json::Value {
    tick_ms.sort_by(f64::total_cmp);
    let median = tick_ms.get(tick_ms.len() / 2).copied().unwrap_or(f64::NAN);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    serde_json::json!({
        "ticks": tick_ms.len(),
        "tick_ms_median": median,
        "tick_ms_max": tick_ms.last().copied().unwrap_or(f64::NAN),
        "cgroups": cgroups,
        "rss_peak_bytes": peak_kib * 1024,
    })
}

fn write_json(out: &mut impl std::io::Write, rows: &[Row]) -> std::io::Result<()> {
    for row in rows {
        serde_json::to_writer(&mut *out, row)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn write_table(
    out: &mut impl std::io::Write,
    mut rows: Vec<Row>,
    top: usize,
    cgroups: usize,
) -> std::io::Result<()> {
    rows.sort_by_key(|r| std::cmp::Reverse(r.sample.usage.cpu_ns));
    let secs = rows
        .first()
        .map_or(1.0, |r| r.sample.interval_ns as f64 / 1e9)
        .max(1e-9);
    let forecasting = rows.iter().any(|r| r.forecast.is_some());
    writeln!(
        out,
        "\n{cgroups} cgroups, {} active; per second:",
        rows.len()
    )?;
    let reserving = rows.iter().any(|r| r.reservation.is_some());
    let forecast_header = match (forecasting, reserving) {
        (true, true) => "  NEXT% UPPER%  TRUST   RSV% ",
        (true, false) => "  NEXT% UPPER%  TRUST",
        _ => "",
    };
    writeln!(
        out,
        "{:>7} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8}{forecast_header}  CGROUP",
        "CPU%", "RUNQ_MS", "FAULTS", "READ_KB", "WRITE_KB", "TX_KB", "RX_KB", "MEM_MB"
    )?;
    for r in rows.iter().take(top) {
        let u = &r.sample.usage;
        let per_s = |v: u64| v as f64 / secs;
        let forecast = match (forecasting, r.forecast) {
            // TRUST is the cgroup's hint trust; '*' while a hint is live.
            (true, Some(f)) => format!(
                " {:>6.1} {:>6.1} {:>5}{}",
                f.cpu_forecast_cores * 100.0,
                f.cpu_upper_cores * 100.0,
                f.hint_trust.map_or("-".into(), |t| format!("{t:.2}")),
                if f.hint_active { "*" } else { " " }
            ),
            (true, None) => format!(" {:>6} {:>6} {:>5} ", "-", "-", "-"),
            (false, _) => String::new(),
        };
        let reservation = match (reserving, r.reservation) {
            // A trailing '*' marks a reservation the orchestrator writes.
            (true, Some(v)) => format!(
                " {:>6.1}{}",
                v.cpu_reserved_cores * 100.0,
                if v.cpu_reservation_managed { "*" } else { " " }
            ),
            (true, None) => format!(" {:>6} ", "-"),
            (false, _) => String::new(),
        };
        writeln!(
            out,
            "{:>7.1} {:>8.1} {:>8.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>8}{forecast}{reservation}  {}",
            per_s(u.cpu_ns) / 1e7,
            per_s(u.runq_delay_ns) / 1e6,
            per_s(u.page_faults),
            per_s(u.io_read_bytes) / 1024.0,
            per_s(u.io_write_bytes) / 1024.0,
            per_s(u.net_tx_bytes) / 1024.0,
            per_s(u.net_rx_bytes) / 1024.0,
            // A level, not a rate: what the cgroup held at the interval's end.
            r.sample.memory.memory_bytes.map_or_else(
                || "-".to_owned(),
                |b| format!("{:.1}", b as f64 / 1048576.0)
            ),
            r.sample.cgroup
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ObserveArgs,
    }

    fn resolve(flags: &[&str], file: &str) -> (Settings, Format) {
        let cli =
            Cli::try_parse_from(std::iter::once("observe").chain(flags.iter().copied())).unwrap();
        let file: shadow_common::config::AgentFile =
            shadow_common::config::parse(file, std::path::Path::new("t.toml")).unwrap();
        cli.args.resolve(&file.agent)
    }

    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let (s, f) = resolve(&[], "");
        assert_eq!(s.interval, Duration::from_secs(1));
        assert_eq!((s.rescan_every, s.quantile, f), (10, 0.95, Format::Json));
        assert_eq!(s.hint_socket, PathBuf::from(hint::DEFAULT_SOCKET));
        assert!(!s.forecast && !s.no_hints && s.orchestrator.is_none());
        let file = "[agent]\ninterval = \"2s\"\nformat = \"none\"\nquantile = 0.9\nhints = false\norchestrator = \"/o.sock\"\n";
        let (s, f) = resolve(&[], file);
        assert_eq!(
            (s.interval, s.quantile, f),
            (Duration::from_secs(2), 0.9, Format::None)
        );
        assert!(s.no_hints);
        assert_eq!(s.orchestrator.as_deref(), Some("/o.sock"));
        let (s, f) = resolve(
            &[
                "--interval",
                "500ms",
                "--format",
                "table",
                "--orchestrator",
                "tcp:h:1",
            ],
            file,
        );
        assert_eq!(
            (s.interval, s.quantile, f),
            (Duration::from_millis(500), 0.9, Format::Table)
        );
        assert_eq!(s.orchestrator.as_deref(), Some("tcp:h:1"));
    }

    #[test]
    fn flags_are_checked_like_the_file() {
        for flags in [
            &["--interval", "1ms"][..],
            &["--quantile", "1"],
            &["--rescan-every", "0"],
            &["--format", "xml"],
        ] {
            let all = std::iter::once("observe").chain(flags.iter().copied());
            assert!(Cli::try_parse_from(all).is_err(), "{flags:?} accepted");
        }
    }
}
