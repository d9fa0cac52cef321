//! One run of `bench memory`: a fresh service cgroup and a neighbour
//! beside it sharing a memory budget, one policy setting the service's
//! ceiling every tick, the kernel's counters around the measured window.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use shadow_tests::{Agent, phases::Phase, scenario::Shadow};

use super::{
    cgroup::{Hierarchy, MemCgroup},
    policy::{MIB, Policy, ReactiveRule},
};
use crate::{
    build::binary,
    e2e::{
        hinter::{self, Hinted, Kind},
        neighbour,
        policy::{Announced, Window, with_announced},
    },
};

/// The service's load.
#[derive(Clone, Debug)]
pub struct Service {
    pub rate: f64,
    pub pages: u64,
    pub load_mibps: f64,
    /// `SECONDS:MIB,...`
    pub phases: String,
    pub workers: usize,
}

/// Bytes per unit the neighbour counts (`shadow-workload cache-read`
/// reads 64 KiB blocks).
const NEIGHBOUR_BLOCK: f64 = 65536.0;

/// Settings shared by every run.
pub struct Setup {
    pub hierarchy: Hierarchy,
    /// The reactive rule's control period and Shadow's tick.
    pub tick: Duration,
    /// The service's ceiling plus the neighbour's, bytes.
    pub budget: f64,
    /// The service's ceiling as created (the operator's; the floor of the
    /// reactive rule and of Shadow's writes), for all but static.
    pub initial: f64,
    /// The least the neighbour is left, bytes.
    pub least: f64,
    pub dataset: PathBuf,
    pub neighbour_file: PathBuf,
    pub service: Service,
    /// The phases `service.phases` names.
    pub phases: Vec<Phase>,
    /// Hinted: each growth of the working set announced this long before
    /// it (to Shadow through the hint socket, to the reactive rule
    /// directly).
    pub hint_ahead: Option<Duration>,
}

impl Setup {
    /// The most the service's ceiling may be: the budget less the
    /// neighbour's least.
    pub fn most(&self) -> f64 {
        self.budget - self.least
    }
}

/// What one run measured.
pub struct Run {
    pub policy: Policy,
    pub round: usize,
    /// The service's summary line.
    pub summary: Value,
    pub start: f64,
    pub end: f64,
    /// Time in direct reclaim of the service's tasks (the agent's
    /// kernel-side `reclaim_stall_ns`), s.
    pub stall_s: f64,
    pub major_faults: u64,
    pub oom_kills: u64,
    /// Integrals of the service's ceiling and usage over the window, GiB-s.
    pub reserved_gib_s: f64,
    pub used_gib_s: f64,
    /// What the neighbour read in the window, GiB.
    pub neighbour_gib: f64,
    /// Ceiling writes the kernel refused (a v1 limit below what it could
    /// reclaim), the service's and the neighbour's.
    pub refused_writes: u64,
    /// Every 100 ms: (Unix s, ceiling bytes, usage bytes).
    pub series: Vec<(f64, f64, f64)>,
    /// Hints sent to Shadow (hinted scenario).
    pub hints: Vec<Hinted>,
}

/// Shadow's configuration: the shipped defaults, the service opted in for
/// memory within the budget, and the quantile when swept.
fn shadow_config(setup: &Setup, cgroup: &str, quantile: Option<f64>) -> String {
    let mut c = format!(
        "[[manage]]\ncgroup = \"{cgroup}\"\nmemory = {{ floor = \"16MiB\", ceiling = \"{}MiB\" }}\n",
        (setup.most() / MIB).floor()
    );
    if let Some(q) = quantile {
        c += &format!("[agent]\nquantile = {q}\n");
    }
    c
}

/// The agent's lines: Shadow's own agent, or an observing one beside a
/// baseline, so that every run's stall time comes from the same probe.
enum Observer {
    Shadow(Box<Shadow>),
    Agent(Agent),
}

impl Observer {
    fn hint_socket(&self) -> Option<PathBuf> {
        match self {
            Self::Shadow(s) => Some(s.hint_socket.clone()),
            Self::Agent(_) => None,
        }
    }

    fn stop(self, cgroup: &str) -> anyhow::Result<Vec<Value>> {
        Ok(match self {
            Self::Shadow(s) => s.stop()?.lines,
            Self::Agent(a) => a
                .stop(Duration::from_millis(600))
                .into_iter()
                .filter(|l| l["cgroup"] == cgroup)
                .collect(),
        })
    }
}

/// Runs `policy` once; `index` names its cgroups.
pub fn run(setup: &Setup, policy: Policy, round: usize, index: usize) -> anyhow::Result<Run> {
    let tag = format!("{}-{index}-{round}", std::process::id());
    let path = format!("/shadow-mem-{tag}");
    let initial = match policy {
        Policy::Static { bytes } => bytes,
        _ => setup.initial,
    };
    let service = MemCgroup::create(&path, setup.hierarchy, initial)?;
    let beside = MemCgroup::create(
        &format!("/shadow-mem-batch-{tag}"),
        setup.hierarchy,
        (setup.budget - initial).max(setup.least),
    )?;
    let mut reader = beside
        .cg
        .start(
            Command::new(binary("shadow-workload"))
                .args(["cache-read", path_str(&setup.neighbour_file)?])
                .stdout(Stdio::piped()),
        )
        .context("starting the neighbour")?;
    let result = with_neighbour(setup, policy, &service, &beside, &mut reader, round);
    let _ = reader.kill();
    let _ = reader.wait();
    result
}

fn path_str(p: &std::path::Path) -> anyhow::Result<&str> {
    p.to_str().context("a path that is not UTF-8")
}

fn with_neighbour(
    setup: &Setup,
    policy: Policy,
    service: &MemCgroup,
    beside: &MemCgroup,
    reader: &mut Child,
    round: usize,
) -> anyhow::Result<Run> {
    let (progress, collector) = neighbour::collect(reader)?;
    // The neighbour's page cache fills its share before the window.
    std::thread::sleep(Duration::from_secs(3));
    let path = service.cg.path.clone();
    let tick = format!("{}ms", setup.tick.as_millis());
    let observer = match policy {
        Policy::Shadow { quantile } => Observer::Shadow(Box::new(Shadow::start_with_config(
            &path,
            &tick,
            &shadow_config(setup, &path, quantile),
        )?)),
        _ => Observer::Agent(Agent::start_with(&path, &tick, &[])),
    };
    let before = service.counters()?;
    let measured = measure(setup, policy, service, beside, observer.hint_socket());
    let lines = observer.stop(&path)?;
    // Its reader thread ends when the neighbour is killed and its output
    // closes.
    drop(collector);
    let Measured {
        summary,
        series,
        refused,
        hints,
    } = measured?;
    let after = service.counters()?;
    let start = summary["start"].as_f64().context("the service's start")?;
    let end = start + setup.phases.iter().map(|p| p.seconds).sum::<f64>();
    if let Policy::Shadow { .. } = policy {
        let back = service.ceiling()?;
        ensure!(
            (back - setup.initial).abs() < 4096.0,
            "{path}: the ceiling is {back} after the Shadow run, not the original {}",
            setup.initial
        );
    }
    let stall_ns: f64 = lines
        .iter()
        .filter(|l| {
            l["ts"]
                .as_f64()
                .is_some_and(|t| t > start && t <= end + 1.0)
        })
        .filter_map(|l| l["reclaim_stall_ns"].as_f64())
        .sum();
    let window: Vec<(f64, f64, f64)> = series
        .iter()
        .copied()
        .filter(|s| s.0 >= start && s.0 <= end)
        .collect();
    let integral = |f: fn(&(f64, f64, f64)) -> f64| {
        window
            .windows(2)
            .map(|w| f(&w[0]).min(setup.budget) * (w[1].0 - w[0].0))
            .sum::<f64>()
            / (1u64 << 30) as f64
    };
    let read = |t: f64| neighbour::units_at(&progress, t);
    let neighbour_gib = match (read(start), read(end)) {
        (Some(a), Some(b)) => (b - a) * NEIGHBOUR_BLOCK / (1u64 << 30) as f64,
        _ => bail!("the neighbour reported nothing in the window"),
    };
    Ok(Run {
        policy,
        round,
        start,
        end,
        stall_s: stall_ns / 1e9,
        major_faults: after.major_faults.saturating_sub(before.major_faults),
        oom_kills: after.oom_kills.saturating_sub(before.oom_kills),
        reserved_gib_s: integral(|s| s.1),
        used_gib_s: integral(|s| s.2),
        neighbour_gib,
        refused_writes: refused,
        summary,
        series: window,
        hints,
    })
}

/// What [`measure`] saw.
struct Measured {
    summary: Value,
    series: Vec<(f64, f64, f64)>,
    refused: u64,
    hints: Vec<Hinted>,
}

/// Every growth of the working set in `phases` as an announced window of
/// the bytes it grows to.
pub fn growth_windows(phases: &[Phase]) -> Vec<Window> {
    let (mut at, mut last) = (0.0, 0.0);
    let mut out = Vec::new();
    for p in phases {
        let bytes = p.mib * MIB;
        if bytes > last {
            out.push(Window {
                start_s: at,
                duration_s: p.seconds,
                amount: bytes,
            });
        }
        (at, last) = (at + p.seconds, bytes);
    }
    out
}

/// The service's schedule start as an instant of this process, from its
/// first line (its clock and ours are the same clock).
fn started(lines: &Mutex<Vec<Value>>) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let start = lines
            .lock()
            .expect("lock")
            .iter()
            .find_map(|l| l["start"].as_f64());
        if let Some(unix) = start {
            let ago = (shadow_tests::scenario::unix_now() - unix).max(0.0);
            return Ok(Instant::now() - Duration::from_secs_f64(ago));
        }
        ensure!(
            Instant::now() < deadline,
            "the service did not start in 10 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts the service and, until it ends: the policy's rule every tick,
/// the neighbour's ceiling following the service's every 50 ms, the
/// ceiling and usage sampled every 100 ms, and in the hinted scenario the
/// growths announced.
fn measure(
    setup: &Setup,
    policy: Policy,
    service: &MemCgroup,
    beside: &MemCgroup,
    hint_socket: Option<PathBuf>,
) -> anyhow::Result<Measured> {
    let s = &setup.service;
    let mut child = service
        .cg
        .start(
            Command::new(binary("shadow-workload"))
                .args([
                    "memserve",
                    path_str(&setup.dataset)?,
                    &s.rate.to_string(),
                    &s.pages.to_string(),
                    &s.load_mibps.to_string(),
                    &s.phases,
                    &s.workers.to_string(),
                ])
                .stdout(Stdio::piped()),
        )
        .context("starting the service")?;
    let out = child.stdout.take().context("the service's output")?;
    let lines = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = Arc::clone(&lines);
    let done = Arc::new(AtomicBool::new(false));
    let ended = Arc::clone(&done);
    let output = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                sink.lock().expect("lock").push(v);
            }
        }
        ended.store(true, Ordering::Relaxed);
    });
    let start = started(&lines)?;
    let windows = growth_windows(&setup.phases);
    let announced = setup.hint_ahead.map(|ahead| Announced {
        windows: windows.clone(),
        ahead_s: ahead.as_secs_f64(),
    });
    let refused = AtomicU64::new(0);
    let series = Mutex::new(Vec::new());
    let rule = match policy {
        Policy::Reactive { headroom } => Some(ReactiveRule::new(
            headroom,
            setup.initial,
            setup.most(),
            10.0 / setup.tick.as_secs_f64(),
        )),
        _ => None,
    };
    let hints = std::thread::scope(|scope| -> anyhow::Result<Vec<Hinted>> {
        scope.spawn(|| follow(setup, service, beside, &done, &refused, &series));
        let hinting = setup
            .hint_ahead
            .zip(hint_socket.as_deref())
            .map(|(ahead, socket)| {
                let (windows, done, path) = (&windows, &done, &service.cg.path);
                scope.spawn(move || {
                    hinter::run(windows, Kind::Memory, ahead, socket, path, start, done)
                })
            });
        let mut hits = service.hits()?;
        let mut next = Instant::now();
        while !done.load(Ordering::Relaxed) {
            next += setup.tick;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            let Some(rule) = rule else { continue };
            let (usage, now_hits, ceiling) =
                (service.usage()?, service.hits()?, service.ceiling()?);
            let told = announced
                .as_ref()
                .and_then(|a| a.at(start.elapsed().as_secs_f64(), setup.tick.as_secs_f64()));
            let want = with_announced(
                rule.step(usage, now_hits > hits, ceiling),
                told,
                rule.headroom,
            )
            .min(setup.most());
            hits = now_hits;
            if (want - ceiling).abs() >= MIB && service.set_ceiling(want).is_err() {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        match hinting {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("the announcer panicked"))?,
            None => Ok(Vec::new()),
        }
    })?;
    let status = child.wait().context("waiting for the service")?;
    let _ = output.join();
    let lines = std::mem::take(&mut *lines.lock().expect("lock"));
    let summary = lines
        .into_iter()
        .find(|l| l["done"] == true)
        .with_context(|| format!("the service ended ({status}) without its summary"))?;
    Ok(Measured {
        summary,
        series: series.into_inner().expect("lock"),
        refused: refused.into_inner(),
        hints,
    })
}

/// Until `done`: the neighbour's ceiling is the budget less the service's
/// (at least `least`), and the service's ceiling and usage are sampled.
fn follow(
    setup: &Setup,
    service: &MemCgroup,
    beside: &MemCgroup,
    done: &AtomicBool,
    refused: &AtomicU64,
    series: &Mutex<Vec<(f64, f64, f64)>>,
) {
    let mut last = f64::NAN;
    let mut k = 0u64;
    while !done.load(Ordering::Relaxed) {
        if let (Ok(c), Ok(u)) = (service.ceiling(), service.usage()) {
            let c = c.min(setup.budget);
            if c != last {
                let mine = (setup.budget - c).max(setup.least);
                if beside.set_ceiling(mine).is_ok() {
                    last = c;
                } else {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
            if k.is_multiple_of(2) {
                series
                    .lock()
                    .expect("lock")
                    .push((shadow_tests::scenario::unix_now(), c, u));
            }
        }
        k += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_growth_is_announced_as_the_level_it_grows_to() {
        let phase = |seconds, mib| Phase { seconds, mib };
        let w = growth_windows(&[
            phase(10.0, 128.0),
            phase(12.0, 512.0),
            phase(8.0, 256.0),
            phase(10.0, 128.0),
            phase(12.0, 512.0),
        ]);
        let starts: Vec<f64> = w.iter().map(|w| w.start_s).collect();
        assert_eq!(starts, [0.0, 10.0, 40.0]);
        assert_eq!(w[1].amount, 512.0 * MIB);
        assert_eq!(w[1].duration_s, 12.0);
    }
}
