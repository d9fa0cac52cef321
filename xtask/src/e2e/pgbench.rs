//! The `pgbench` scenario: PostgreSQL 15 (Debian's `postgresql`) in the
//! sandbox, loaded open-loop by `pgbench --rate` from outside it, the rate
//! following the shape of a real 1 s CPU trace compressed in time.
//!
//! - Cluster: a private one (`initdb`, `pg_ctl`, as the postgres user) in a
//!   temporary folder, Unix socket only, initialised once per benchmark:
//!   `pgbench -i` into a template database. Each run starts the server in
//!   its own sandbox, copies the template into a fresh database and warms
//!   up, all before the measured window; the server is stopped (anything
//!   left in the sandbox killed) after it.
//! - Load: the trace's samples are averaged over `compress` seconds, each
//!   average one segment of `segment_s`; a segment is one `pgbench -R
//!   <rate> -t <n>` (every scheduled transaction runs, none is dropped at
//!   a time limit; a segment that falls behind overlaps the next, as an
//!   open loop should). Latency is pgbench's own per transaction, from its
//!   scheduled start (the schedule lag included), from `--log`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use shadow_tests::{orchestrator::TempDir, scenario::Sandbox};

use super::load::{Outcome, Sample};
use crate::cmd;

/// Debian's PostgreSQL 15 programs.
const BIN: &str = "/usr/lib/postgresql/15/bin";
/// The database `pgbench -i` fills once; each run gets a copy.
const TEMPLATE: &str = "bench";
/// A run's database.
const RUN_DB: &str = "run";

/// The load over time.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The trace the shape comes from.
    pub trace: PathBuf,
    /// Trace seconds per segment.
    pub compress: usize,
    /// Length of a segment, s.
    pub segment_s: f64,
    /// Transactions per second, per segment.
    pub rates: Vec<f64>,
    /// Most clients (connections) per segment.
    pub clients: usize,
    /// pgbench's `-s`.
    pub scale: u32,
}

impl Plan {
    /// The rates of the trace `file` (`timestamp,value` rows), averaged
    /// over `compress` samples per segment, the first `segments` of them
    /// (all if None), scaled so the highest segment asks `peak_tps`.
    pub fn rates_from_trace(
        file: &Path,
        compress: usize,
        segments: Option<usize>,
        peak_tps: f64,
    ) -> anyhow::Result<Vec<f64>> {
        let text =
            fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let values: Vec<f64> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').nth(1)?.trim().parse().ok())
            .collect();
        ensure!(
            values.len() >= compress,
            "{}: {} samples",
            file.display(),
            values.len()
        );
        Ok(shape(&values, compress, segments, peak_tps))
    }

    pub fn duration_s(&self) -> f64 {
        self.rates.len() as f64 * self.segment_s
    }

    pub fn mean_tps(&self) -> f64 {
        self.rates.iter().sum::<f64>() / self.rates.len().max(1) as f64
    }

    /// Where the load jumps: the start of each run of segments above half
    /// way between the median rate and the peak, s from the start.
    pub fn burst_starts(&self) -> Vec<f64> {
        let mut sorted = self.rates.clone();
        sorted.sort_by(f64::total_cmp);
        let (mid, peak) = (sorted[sorted.len() / 2], sorted[sorted.len() - 1]);
        let high = (mid + peak) / 2.0;
        let mut out = Vec::new();
        let mut above = false;
        for (k, r) in self.rates.iter().enumerate() {
            if *r > high && !above {
                out.push(k as f64 * self.segment_s);
            }
            above = *r > high;
        }
        out
    }

    /// Clients and transactions per client of segment `rate` (at least
    /// one transaction each: `-t` counts per client).
    fn split(&self, rate: f64) -> (usize, u64) {
        let total = (rate * self.segment_s).round().max(1.0);
        let clients = (self.clients as f64).min(total).max(1.0);
        (clients as usize, (total / clients).round().max(1.0) as u64)
    }
}

/// Means of `compress` consecutive values (the first `segments`), scaled
/// to `peak` at the highest.
fn shape(values: &[f64], compress: usize, segments: Option<usize>, peak: f64) -> Vec<f64> {
    let means: Vec<f64> = values
        .chunks_exact(compress)
        .take(segments.unwrap_or(usize::MAX))
        .map(|c| c.iter().sum::<f64>() / c.len() as f64)
        .collect();
    let top = means.iter().copied().fold(0.0, f64::max);
    means
        .iter()
        .map(|m| if top > 0.0 { m / top * peak } else { peak })
        .collect()
}

/// The private cluster, initialised: data folder, socket folder and the
/// template database.
pub struct Cluster {
    dir: TempDir,
    /// CPU-seconds the server spent per transaction when calibrated.
    pub cpu_per_tx: f64,
}

fn postgres_ids() -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        cmd::output(Command::new("id").args([flag, "postgres"]))
            .context("no postgres user: run `cargo xtask setup` (Debian package postgresql)")?
            .trim()
            .parse()
            .context("id postgres")
    };
    Ok((id("-u")?, id("-g")?))
}

/// `program` run as the postgres user, without PAM (no session cgroup).
fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid",
        "postgres",
        "--regid",
        "postgres",
        "--init-groups",
        "--",
    ])
    .arg(Path::new(BIN).join(program));
    c
}

fn run_quiet(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: starting"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    /// The socket folder (`-h` of clients).
    pub fn socket(&self) -> &Path {
        &self.dir.0
    }

    /// `initdb`, then in `sandbox` (a scratch cgroup with no effective
    /// quota): `pgbench -i -s scale`, and a calibration of the server's CPU
    /// per transaction at `tps`.
    pub fn init(scale: u32, clients: usize, tps: f64, sandbox: &Sandbox) -> anyhow::Result<Self> {
        let (uid, gid) = postgres_ids()?;
        let dir = TempDir::new("e2e-pg");
        std::os::unix::fs::chown(&dir.0, Some(uid), Some(gid))
            .context("handing the cluster's folder to postgres")?;
        let mut cluster = Self {
            dir,
            cpu_per_tx: f64::NAN,
        };
        run_quiet(
            as_postgres("initdb").arg("-D").arg(cluster.data()).args([
                "--auth=trust",
                "-U",
                "postgres",
                "--no-locale",
                "-E",
                "UTF8",
            ]),
            "initdb",
        )?;
        // CPU is what is measured: no fsync waits, no autovacuum at random
        // times; room for segments that overlap when the server falls behind.
        let conf = format!(
            "listen_addresses = ''\nunix_socket_directories = '{}'\nmax_connections = 200\nshared_buffers = 128MB\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nautovacuum = off\n",
            cluster.socket().display()
        );
        let conf_file = cluster.data().join("postgresql.conf");
        let mut text = fs::read_to_string(&conf_file)?;
        text.push_str(&conf);
        fs::write(&conf_file, text)?;
        let cpu_per_tx = {
            let server = Server::start(&cluster, sandbox, false)?;
            server.sql(&format!("CREATE DATABASE {TEMPLATE}"))?;
            run_quiet(
                Command::new("pgbench")
                    .arg("-h")
                    .arg(cluster.socket())
                    .args(["-U", "postgres", "-i", "-q", "-s", &scale.to_string()])
                    .arg(TEMPLATE),
                "pgbench -i",
            )?;
            server.sql(&format!("CHECKPOINT; DROP DATABASE IF EXISTS {RUN_DB}; CREATE DATABASE {RUN_DB} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY"))?;
            let used0 = sandbox.usage_ns()?;
            let per_client = (tps * 4.0 / clients as f64).round().max(1.0) as u64;
            run_quiet(
                &mut pgbench(cluster.socket(), clients, tps, per_client, None::<&Path>),
                "pgbench (calibration)",
            )?;
            let used = (sandbox.usage_ns()? - used0) as f64 / 1e9;
            used / (per_client * clients as u64) as f64
        };
        cluster.cpu_per_tx = cpu_per_tx;
        Ok(cluster)
    }
}

/// `pgbench` against the run's database: `clients` connections at `rate`
/// transactions per second (Poisson), `per_client` each, logging every
/// transaction under `log` if given.
fn pgbench(
    socket: &Path,
    clients: usize,
    rate: f64,
    per_client: u64,
    log: Option<&Path>,
) -> Command {
    let mut c = Command::new("pgbench");
    c.arg("-h")
        .arg(socket)
        .args(["-U", "postgres", "-n"])
        .args(["-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string()])
        .args(["-R", &format!("{rate:.3}")])
        .args(["-t", &per_client.to_string()]);
    if let Some(prefix) = log {
        c.arg("-l")
            .arg(format!("--log-prefix={}", prefix.display()));
    }
    c.arg(RUN_DB).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// The server running in a sandbox; stopped on drop, with anything left in
/// the sandbox killed.
pub struct Server<'a> {
    cluster: &'a Cluster,
    sandbox: &'a Sandbox,
}

impl<'a> Server<'a> {
    /// Starts the server inside `sandbox`; with `fresh`, gives the run a
    /// new copy of the template database.
    pub fn start(cluster: &'a Cluster, sandbox: &'a Sandbox, fresh: bool) -> anyhow::Result<Self> {
        let mut ctl = as_postgres("pg_ctl");
        ctl.arg("-D")
            .arg(cluster.data())
            .arg("-l")
            .arg(cluster.dir.0.join("server.log"))
            .args(["-w", "-t", "120", "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let status = sandbox
            .cg
            .start(&mut ctl)
            .context("pg_ctl start in the sandbox")?
            .wait()?;
        let server = Self { cluster, sandbox };
        if !status.success() {
            let log = fs::read_to_string(cluster.dir.0.join("server.log")).unwrap_or_default();
            bail!("pg_ctl start failed ({status}):\n{log}");
        }
        if fresh {
            server.sql(&format!("DROP DATABASE IF EXISTS {RUN_DB}"))?;
            server.sql(&format!(
                "CREATE DATABASE {RUN_DB} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY"
            ))?;
        }
        Ok(server)
    }

    /// Runs `statements` with psql (outside the sandbox).
    pub fn sql(&self, statements: &str) -> anyhow::Result<()> {
        for s in statements
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            run_quiet(
                Command::new("psql")
                    .arg("-h")
                    .arg(self.cluster.socket())
                    .args(["-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1"])
                    .args(["-q", "-c", s]),
                &format!("psql -c {s:?}"),
            )?;
        }
        Ok(())
    }

    /// A few seconds of load at `rate`, so the run's first segment does
    /// not pay for cold caches.
    pub fn warm_up(&self, rate: f64, clients: usize) -> anyhow::Result<()> {
        let per_client = (rate * 3.0 / clients as f64).round().max(1.0) as u64;
        run_quiet(
            &mut pgbench(self.cluster.socket(), clients, rate, per_client, None),
            "pgbench (warm-up)",
        )
    }
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.cluster.data())
            .args(["-m", "fast", "-w", "-t", "30", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let procs = self.sandbox.cg.v2_dir().join("cgroup.procs");
        for _ in 0..100 {
            let pids = fs::read_to_string(&procs).unwrap_or_default();
            if pids.trim().is_empty() {
                break;
            }
            for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                // SAFETY: a process of the sandbox this benchmark created.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs the plan from `start` (Unix `start_unix`), one pgbench per
/// segment, and collects every logged transaction; waits up to `drain`
/// after the last segment for those still running.
pub fn drive(
    plan: &Plan,
    cluster: &Cluster,
    start: Instant,
    start_unix: f64,
    drain: Duration,
) -> anyhow::Result<Outcome> {
    let logs = TempDir::new("e2e-pgbench-log");
    let mut running: Vec<Child> = Vec::new();
    let mut expected = 0u64;
    for (k, &rate) in plan.rates.iter().enumerate() {
        let at = start + Duration::from_secs_f64(k as f64 * plan.segment_s);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let (clients, per_client) = plan.split(rate);
        expected += clients as u64 * per_client;
        let prefix = logs.0.join(format!("seg-{k}"));
        running.push(
            pgbench(cluster.socket(), clients, rate, per_client, Some(&prefix))
                .spawn()
                .context("starting pgbench")?,
        );
        running.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
    }
    let deadline = Instant::now() + drain;
    while !running.is_empty() && Instant::now() < deadline {
        running.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        std::thread::sleep(Duration::from_millis(100));
    }
    for mut c in running {
        let _ = c.kill();
        let _ = c.wait();
    }
    let mut samples = Vec::new();
    for entry in fs::read_dir(&logs.0)? {
        let text = fs::read_to_string(entry?.path())?;
        samples.extend(text.lines().filter_map(|l| parse_log_line(l, start_unix)));
    }
    let lost = (expected as usize).saturating_sub(samples.len());
    Ok(Outcome { samples, lost })
}

/// One line of pgbench's per-transaction log (`client_id transaction_no
/// time script_no time_epoch time_us [schedule_lag]`: `time` is the
/// latency in µs from the scheduled start, the epoch pair when it
/// completed); None for skipped transactions or anything else.
fn parse_log_line(line: &str, start_unix: f64) -> Option<Sample> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let latency_us: f64 = f.get(2)?.parse().ok()?;
    let done = f.get(4)?.parse::<f64>().ok()? + f.get(5)?.parse::<f64>().ok()? / 1e6;
    let latency_s = latency_us / 1e6;
    Some(Sample {
        at_s: done - latency_s - start_unix,
        latency_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_is_averaged_and_scaled_to_the_peak() {
        let v = [0.1, 0.3, 1.0, 1.0, 0.2, 0.2, 9.9];
        let r = shape(&v, 2, None, 1000.0);
        assert_eq!(r, vec![200.0, 1000.0, 200.0]);
        assert_eq!(shape(&v, 2, Some(2), 1000.0).len(), 2);
        let plan = Plan {
            trace: PathBuf::new(),
            compress: 2,
            segment_s: 1.0,
            rates: vec![100.0, 100.0, 900.0, 1000.0, 100.0, 120.0, 800.0, 100.0],
            clients: 8,
            scale: 10,
        };
        assert_eq!(plan.burst_starts(), vec![2.0, 6.0]);
        assert_eq!(plan.duration_s(), 8.0);
        assert_eq!(plan.split(100.0), (8, 13));
        assert_eq!(plan.split(3.0), (3, 1));
    }

    #[test]
    fn log_lines_give_the_scheduled_time_and_the_latency() {
        let s = parse_log_line("3 17 25000 0 1700000010 500000 1200", 1_700_000_000.0).unwrap();
        assert!((s.latency_s - 0.025).abs() < 1e-12);
        assert!((s.at_s - 10.475).abs() < 1e-6, "{}", s.at_s);
        assert!(parse_log_line("3 17 skipped 0 1700000010 500000 1200", 0.0).is_none());
    }
}
