//! `shadow-agent observe`: per-cgroup usage every interval, as JSON lines
//! (for programs, one object per cgroup per interval) or a table (for people).

use std::{io::Write as _, path::PathBuf, time::Duration, time::Instant};

use anyhow::Context as _;
use clap::ValueEnum;

use crate::{
    hint,
    pipeline::{Pipeline, Row, Settings},
    stop,
};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per cgroup per interval.
    Json,
    /// A table of the busiest cgroups, refreshed every interval.
    Table,
    /// Nothing on stdout: for a service that only reports to the
    /// orchestrator (`--orchestrator`).
    None,
}

/// Arguments of `shadow-agent observe`.
#[derive(Debug, clap::Args)]
pub struct ObserveArgs {
    /// Length of one interval (e.g. 500ms, 1s, 5s).
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after this many intervals (default: until Ctrl-C or SIGTERM).
    #[arg(long)]
    pub count: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Only this cgroup (path relative to the v2 root) and its descendants.
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Intervals between full walks of the cgroup tree (how soon removed
    /// cgroups are dropped; new ones are seen at once).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub rescan_every: u64,
    /// Rows shown by the table format.
    #[arg(long, default_value_t = 25)]
    pub top: usize,
    /// Forecast each cgroup's CPU demand for the next interval (online,
    /// per cgroup; demand = ran + waited on a run queue) and add
    /// `cpu_demand_cores`, `cpu_forecast_cores`,
    /// `cpu_upper_cores` and `cpu_volatility_cores` to the output.
    #[arg(long)]
    pub forecast: bool,
    /// Quantile of the forecast's upper band (with --forecast).
    #[arg(long, default_value_t = 0.95, value_parser = parse_quantile)]
    pub quantile: f64,
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
    /// one observes without hints.
    #[arg(long, value_name = "PATH", default_value = hint::DEFAULT_SOCKET)]
    pub hint_socket: PathBuf,
    /// Group that owns the hint socket (mode 0660): its members may hint.
    #[arg(long, value_name = "NAME")]
    pub hint_group: Option<String>,
    /// Do not open the hint socket.
    #[arg(long)]
    pub no_hints: bool,
    /// At exit, print the collector's own cost to stderr as one JSON line:
    /// ticks, median and max time to read and resolve all maps, peak RSS.
    #[arg(long)]
    pub summary: bool,
}

pub(crate) fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = crate::duration::parse(text)?;
    if d < Duration::from_millis(10) {
        return Err("the interval must be at least 10ms".into());
    }
    Ok(d)
}

pub(crate) fn parse_quantile(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(q) if q > 0.0 && q < 1.0 => Ok(q),
        _ => Err(format!(
            "{text:?} is not a quantile strictly between 0 and 1 (e.g. 0.95)"
        )),
    }
}

impl ObserveArgs {
    /// The pipeline these flags ask for.
    pub fn settings(&self) -> Settings {
        Settings {
            interval: self.interval,
            cgroup: self.cgroup.clone(),
            rescan_every: self.rescan_every,
            forecast: self.forecast,
            quantile: self.quantile,
            orchestrator: self.orchestrator.clone(),
            hint_socket: self.hint_socket.clone(),
            hint_group: self.hint_group.clone(),
            no_hints: self.no_hints,
        }
    }
}

/// Runs the observe loop until `--count` intervals or a stop signal.
pub fn run(args: &ObserveArgs) -> anyhow::Result<()> {
    let mut pipeline = Pipeline::start(&args.settings())?;
    stop::install_handlers();
    let mut stdout = std::io::stdout().lock();
    let mut deadline = Instant::now() + args.interval;
    let mut done = 0;
    while args.count.is_none_or(|n| done < n) {
        stop::sleep_until(deadline);
        let stopping = stop::requested();
        deadline += args.interval;
        let rows = pipeline.tick()?;
        let written = match args.format {
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
        "{:>7} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}{forecast_header}  CGROUP",
        "CPU%", "RUNQ_MS", "FAULTS", "READ_KB", "WRITE_KB", "TX_KB", "RX_KB"
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
            "{:>7.1} {:>8.1} {:>8.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0}{forecast}{reservation}  {}",
            per_s(u.cpu_ns) / 1e7,
            per_s(u.runq_delay_ns) / 1e6,
            per_s(u.page_faults),
            per_s(u.io_read_bytes) / 1024.0,
            per_s(u.io_write_bytes) / 1024.0,
            per_s(u.net_tx_bytes) / 1024.0,
            per_s(u.net_rx_bytes) / 1024.0,
            r.sample.cgroup
        )?;
    }
    Ok(())
}
