//! One run of `bench e2e`: a fresh sandbox cgroup with the workload, the
//! neighbour beside it, one policy setting the sandbox's knobs every tick,
//! the kernel's accounting before and after the measured window.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    process::{Child, Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use shadow_tests::scenario::{self, CpuHierarchy, Point, Sandbox, Shadow, unix_now};

use super::{
    hinter::{self, Hinted},
    knobs::{Knobs, Waits, demand_cores},
    load::{self, Outcome, Pattern, Request, Sample, Scenario},
    neighbour::Neighbour,
    pgbench::{self, Cluster, Plan},
    policy::{Announced, DemandRule, Policy, usage_rule, weight_share, with_announced},
};
use crate::build::binary;

/// What the sandbox runs.
pub enum Load {
    /// The built-in service under an open-loop schedule.
    Service {
        pattern: Pattern,
        schedule: Vec<Request>,
    },
    /// PostgreSQL under pgbench.
    Pgbench { plan: Plan, cluster: Cluster },
    /// `--workload`: an `sh -c` command, for the pattern's duration.
    Custom { command: String, pattern: Pattern },
}

/// Settings shared by every run of a scenario.
pub struct Setup {
    pub scenario: Scenario,
    pub load: Load,
    /// Where the sandbox's quota lives (v1 or v2 cpu controller).
    pub hierarchy: CpuHierarchy,
    /// The sandbox's quota as created (what an operator set; Shadow
    /// restores it), for every policy but static and burst, cores.
    pub initial_cores: f64,
    /// The workload's mean demand, cores, and where the figure came from.
    pub mean_cores: f64,
    pub mean_from: String,
    /// The reactive rules' control period, Shadow's tick and agent interval.
    pub tick: Duration,
    /// Bounds of the reactive quotas and Shadow's `[[manage]]` rule, cores.
    pub floor: f64,
    pub ceiling: f64,
    /// Hinted scenario: how long before each burst Shadow is told of it.
    pub hint_ahead: Duration,
    /// Shadow's look-ahead in ticks if set (else the shipped default).
    pub lead: Option<u16>,
    /// The host's CPUs.
    pub cpus: f64,
    /// The batch job's chunks of work per CPU-second.
    pub work_rate: f64,
}

impl Setup {
    /// Length of the measured window as scheduled, s.
    pub fn duration_s(&self) -> f64 {
        match &self.load {
            Load::Service { pattern, .. } | Load::Custom { pattern, .. } => pattern.duration_s(),
            Load::Pgbench { plan, .. } => plan.duration_s(),
        }
    }

    /// Where bursts start, s from the window's start (a custom workload
    /// prints its own).
    pub fn burst_starts(&self) -> Vec<f64> {
        match &self.load {
            Load::Service { pattern, .. } => pattern.burst_starts(),
            Load::Pgbench { plan, .. } => plan.burst_starts(),
            Load::Custom { .. } => Vec::new(),
        }
    }

    /// How long a burst lasts (about, for pgbench), s.
    pub fn burst_s(&self) -> f64 {
        match &self.load {
            Load::Service { pattern, .. } | Load::Custom { pattern, .. } => pattern.burst_s,
            Load::Pgbench { plan, .. } => 2.0 * plan.segment_s,
        }
    }
}

/// What one run recorded; times are Unix seconds.
pub struct Run {
    pub policy: Policy,
    pub round: usize,
    /// Start and end of the measured window.
    pub start: f64,
    pub end: f64,
    /// Latencies (none for a custom workload); `at_s` from `start`.
    pub samples: Vec<Sample>,
    pub lost: usize,
    /// The kernel's quota every 50 ms, cores.
    pub quota: Vec<(f64, f64)>,
    /// Per tick: usage (cpuacct), and for reactive-demand the demand it
    /// read and for the reactive rules the quota set; for Shadow, the
    /// agent's points (usage, demand, forecast band, reservation).
    pub usage: Vec<Point>,
    pub agent: Vec<Point>,
    pub bursts: Vec<f64>,
    pub throttled_periods: u64,
    pub throttled_s: f64,
    pub used_s: f64,
    pub reserved_s: f64,
    /// The neighbour's work done, core-seconds, and the CPU it got (its
    /// cgroup's accounting); the chunks it counted and the CPU time it
    /// saw itself, for a check.
    pub work_s: f64,
    pub neighbour_used_s: f64,
    pub neighbour_units: f64,
    pub neighbour_own_cpu_s: f64,
    /// The host's 1-minute load average at the window's end.
    pub load_1m: String,
    pub leads: Vec<scenario::Lead>,
    /// Hints sent through the hint socket ahead of the bursts (hinted
    /// scenario, Shadow; the reactive rules read the same announcements).
    pub hints: Vec<Hinted>,
    /// Cgroups the orchestrator wrote other than the sandbox.
    pub written_elsewhere: Vec<String>,
}

/// Shadow's configuration file: the shipped defaults, the sandbox opted in
/// within the floor and ceiling, and only what the run sweeps.
pub fn shadow_config(setup: &Setup, cgroup: &str, quantile: Option<f64>) -> String {
    let mut c = String::new();
    if let Some(lead) = setup.lead {
        c += &format!("lead = {lead}\n");
    }
    c += &format!(
        "[[manage]]\ncgroup = \"{cgroup}\"\ncpu = {{ floor = {}, ceiling = {} }}\n",
        setup.floor, setup.ceiling
    );
    if let Some(q) = quantile {
        c += &format!("[agent]\nquantile = {q}\n");
    }
    c
}

/// Runs `policy` once; `index` names its cgroups.
pub fn run(setup: &Setup, policy: Policy, round: usize, index: usize) -> anyhow::Result<Run> {
    let tag = format!(
        "{}-{}-{index}-{round}",
        std::process::id(),
        setup.scenario.name()
    );
    let name = format!("/shadow-e2e-{tag}");
    let initial = match policy {
        Policy::Static { cores } | Policy::Burst { cores } => cores,
        _ => setup.initial_cores,
    };
    let sandbox = Sandbox::create(&name, initial, true)?;
    let knobs = Knobs::of(&sandbox)?;
    if let Policy::Static { cores } | Policy::Burst { cores } = policy {
        knobs.set_weight_share(weight_share(cores))?;
    }
    if let Policy::Burst { cores } = policy {
        knobs.set_burst(cores)?;
    }
    let mut neighbour = Neighbour::start(&format!("/shadow-e2e-batch-{tag}"), initial, setup.cpus)?;
    let shadow = match policy {
        Policy::Shadow { quantile } => Some(Shadow::start_with_config(
            &name,
            &format!("{}ms", setup.tick.as_millis()),
            &shadow_config(setup, &name, quantile),
        )?),
        _ => None,
    };
    let watcher = sandbox.watch_quota();
    let hint_socket = shadow.as_ref().map(|s| s.hint_socket.as_path());
    let result = drive(setup, policy, &sandbox, &knobs, &neighbour, hint_socket);
    let record = shadow.map(Shadow::stop).transpose();
    if !matches!(policy, Policy::Shadow { .. }) {
        // Back to what the sandbox was created with, for the restore check.
        knobs.restore()?;
        sandbox.set_cores(initial)?;
    }
    neighbour.stop();
    let quota = watcher.finish();
    let (mut run, record) = (result?, record?);
    ensure!(
        sandbox.as_created()?,
        "{name}: quota or weight not restored after the {} run",
        policy.label()
    );
    let window: Vec<(f64, f64)> = quota
        .iter()
        .copied()
        .filter(|q| q.0 >= run.start && q.0 <= run.end)
        .collect();
    run.reserved_s = scenario::reserved_seconds(&window);
    run.leads = scenario::leads(&quota, &run.bursts, setup.burst_s());
    run.quota = quota;
    run.round = round;
    if let Some(r) = record {
        run.agent = r.points;
        run.written_elsewhere = r.written.into_iter().filter(|c| *c != name).collect();
    }
    Ok(run)
}

/// The workload in the sandbox.
enum Workload<'a> {
    Service { child: Child, port: u16 },
    Pgbench(pgbench::Server<'a>),
    Custom(Child),
}

impl<'a> Workload<'a> {
    fn start(setup: &'a Setup, sandbox: &'a Sandbox) -> anyhow::Result<Self> {
        Ok(match &setup.load {
            Load::Service { .. } => {
                let mut cmd = Command::new(binary("shadow-workload"));
                cmd.arg("serve");
                let mut child = spawn(sandbox, &mut cmd)?;
                let port = read_port(&mut child)?;
                Workload::Service { child, port }
            }
            Load::Pgbench { plan, cluster } => {
                let server = pgbench::Server::start(cluster, sandbox, true)?;
                server.warm_up(plan.rates[0], plan.clients)?;
                Workload::Pgbench(server)
            }
            Load::Custom { command, .. } => {
                let mut cmd = Command::new("sh");
                cmd.args(["-c", command]);
                Workload::Custom(spawn(sandbox, &mut cmd)?)
            }
        })
    }

    /// Runs the load from `start`; its outcome and, for a custom
    /// workload, the burst starts it printed (Unix seconds).
    fn load(
        &mut self,
        setup: &Setup,
        start: Instant,
        start_unix: f64,
    ) -> anyhow::Result<(Outcome, Option<Vec<f64>>)> {
        let drain = Duration::from_secs(30);
        match (self, &setup.load) {
            (Workload::Service { port, .. }, Load::Service { pattern, schedule }) => {
                load::run(*port, schedule, pattern.connections, start, drain).map(|o| (o, None))
            }
            (Workload::Pgbench(_), Load::Pgbench { plan, cluster }) => {
                pgbench::drive(plan, cluster, start, start_unix, drain).map(|o| (o, None))
            }
            (Workload::Custom(child), _) => {
                let deadline = start + Duration::from_secs_f64(setup.duration_s());
                let starts = wait_custom(child, deadline)?;
                Ok((
                    Outcome {
                        samples: Vec::new(),
                        lost: 0,
                    },
                    Some(starts),
                ))
            }
            _ => unreachable!("the workload follows the setup's load"),
        }
    }

    fn stop(self) {
        match self {
            Workload::Service { mut child, .. } | Workload::Custom(mut child) => {
                stop_workload(&mut child);
            }
            Workload::Pgbench(server) => drop(server),
        }
    }
}

/// Starts the workload, runs the load, the policy's control loop, the
/// neighbour's quota and (hinted scenario, Shadow) the hints; stops the
/// workload; the figures of the measured window.
fn drive(
    setup: &Setup,
    policy: Policy,
    sandbox: &Sandbox,
    knobs: &Knobs,
    neighbour: &Neighbour,
    hint_socket: Option<&std::path::Path>,
) -> anyhow::Result<Run> {
    let mut workload = Workload::start(setup, sandbox)?;
    let first = Counters::read(sandbox, neighbour)?;
    let start = Instant::now();
    let start_unix = first.unix;
    let window_end = start + Duration::from_secs_f64(setup.duration_s());
    let stop = AtomicBool::new(false);
    let usage = Mutex::new(Vec::new());
    // The hinted scenario's announcements: through the hint socket to
    // Shadow, and to the reactive rules directly.
    let hinting = match &setup.load {
        Load::Service { pattern, .. } if setup.scenario == Scenario::Hinted => {
            Some((hint_socket, pattern))
        }
        _ => None,
    };
    let outcome = std::thread::scope(|scope| -> anyhow::Result<_> {
        let announced = hinting.map(|(_, pattern)| Announced {
            windows: pattern.windows(),
            ahead_s: setup.hint_ahead.as_secs_f64(),
        });
        let controller = scope.spawn(|| {
            control(
                setup,
                policy,
                sandbox,
                knobs,
                &stop,
                &usage,
                (start, announced),
            )
        });
        let follower = scope.spawn(|| neighbour.follow(sandbox, setup.cpus, &stop));
        // The figures cover the scheduled window; a backlog drained after
        // it adds latency, not reserved or used time.
        let last = scope.spawn(|| {
            while Instant::now() < window_end && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(
                    window_end
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(20)),
                );
            }
            Counters::read(sandbox, neighbour)
        });
        let stop_hints = &stop;
        let hints = hinting
            .and_then(|(socket, pattern)| Some((socket?, pattern)))
            .map(|(socket, pattern)| {
                scope.spawn(move || {
                    hinter::run(
                        &pattern.windows(),
                        hinter::Kind::Cpu,
                        setup.hint_ahead,
                        socket,
                        &sandbox.cg.path,
                        start,
                        stop_hints,
                    )
                })
            });
        let outcome = workload.load(setup, start, start_unix);
        stop.store(true, Ordering::Relaxed);
        let joined = |what: &str| anyhow::anyhow!("{what} panicked");
        let last = last.join().map_err(|_| joined("window end"))?;
        controller.join().map_err(|_| joined("controller"))??;
        follower.join().map_err(|_| joined("neighbour"))??;
        let hints = match hints {
            Some(h) => h.join().map_err(|_| joined("hinter"))??,
            None => Vec::new(),
        };
        outcome.map(|(o, s)| (o, s, hints, last))
    });
    workload.stop();
    let (outcome, custom_bursts, hints, last) = outcome?;
    let last = last?;
    let bursts = custom_bursts.unwrap_or_else(|| {
        setup
            .burst_starts()
            .iter()
            .map(|b| start_unix + b)
            .collect()
    });
    let (units, own_cpu) = match (
        neighbour.progress_at(first.unix),
        neighbour.progress_at(last.unix),
    ) {
        (Some(a), Some(b)) => (b.0 - a.0, b.1 - a.1),
        _ => (f64::NAN, f64::NAN),
    };
    Ok(Run {
        policy,
        round: 0,
        start: start_unix,
        end: last.unix,
        samples: outcome.samples,
        lost: outcome.lost,
        quota: Vec::new(),
        usage: usage.into_inner().expect("lock"),
        agent: Vec::new(),
        bursts,
        throttled_periods: last.periods - first.periods,
        throttled_s: (last.throttled_ns - first.throttled_ns) as f64 / 1e9,
        used_s: (last.used_ns - first.used_ns) as f64 / 1e9,
        reserved_s: 0.0,
        work_s: units / setup.work_rate,
        neighbour_used_s: (last.neighbour_ns - first.neighbour_ns) as f64 / 1e9,
        neighbour_units: units,
        neighbour_own_cpu_s: own_cpu,
        load_1m: super::load_1m(),
        leads: Vec::new(),
        hints,
        written_elsewhere: Vec::new(),
    })
}

/// The kernel's counters at one moment.
struct Counters {
    unix: f64,
    used_ns: u64,
    periods: u64,
    throttled_ns: u64,
    neighbour_ns: u64,
}

impl Counters {
    fn read(sandbox: &Sandbox, neighbour: &Neighbour) -> anyhow::Result<Self> {
        let unix = unix_now();
        let (periods, throttled_ns) = sandbox.throttling()?;
        Ok(Self {
            unix,
            used_ns: sandbox.usage_ns()?,
            periods,
            throttled_ns,
            neighbour_ns: neighbour.sandbox.usage_ns()?,
        })
    }
}

/// Every tick: usage (and throttling) since the last tick; the reactive
/// rules set the quota from them, and the weight from the quota.
fn control(
    setup: &Setup,
    policy: Policy,
    sandbox: &Sandbox,
    knobs: &Knobs,
    stop: &AtomicBool,
    usage: &Mutex<Vec<Point>>,
    (start, announced): (Instant, Option<Announced>),
) -> anyhow::Result<()> {
    let mut waits = matches!(policy, Policy::ReactiveDemand { .. }).then(|| Waits::new(sandbox));
    let mut rule = match policy {
        Policy::ReactiveDemand { headroom } => Some(DemandRule::new(headroom, setup.tick)),
        _ => None,
    };
    let mut quota = sandbox.cores()?;
    let mut last = (Instant::now(), sandbox.usage_ns()?, sandbox.throttling()?.0);
    let mut next = last.0 + setup.tick;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += setup.tick;
        let now = (Instant::now(), sandbox.usage_ns()?, sandbox.throttling()?.0);
        let secs = (now.0 - last.0).as_secs_f64();
        let used_ns = now.1 - last.1;
        let throttled = now.2 > last.2;
        last = now;
        let used = used_ns as f64 / 1e9 / secs;
        let demand = waits
            .as_mut()
            .map(|w| demand_cores(used_ns, w.waited_ns(), secs, setup.cpus));
        let told = announced
            .as_ref()
            .and_then(|a| a.at((now.0 - start).as_secs_f64(), setup.tick.as_secs_f64()));
        let wanted = match (policy, rule.as_mut(), demand) {
            (Policy::ReactiveUsage { headroom }, _, _) => {
                Some(with_announced(usage_rule(used, headroom), told, headroom))
            }
            (Policy::ReactiveDemand { headroom }, Some(rule), Some(d)) => Some(with_announced(
                rule.step(d, throttled, quota),
                told,
                headroom,
            )),
            _ => None,
        };
        if let Some(w) = wanted {
            quota = w.clamp(setup.floor, setup.ceiling);
            sandbox.set_cores(quota)?;
            knobs.set_weight_share(weight_share(quota))?;
        }
        usage.lock().expect("lock").push(Point {
            t: unix_now(),
            used,
            demand,
            upper: None,
            reserved: wanted.map(|_| quota),
        });
    }
    Ok(())
}

/// Starts `cmd` in the sandbox, leading its own process group, its
/// output piped.
fn spawn(sandbox: &Sandbox, cmd: &mut Command) -> anyhow::Result<Child> {
    cmd.stdout(Stdio::piped()).process_group(0);
    sandbox
        .cg
        .start(cmd)
        .context("starting the workload in the sandbox")
}

fn read_port(child: &mut Child) -> anyhow::Result<u16> {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().context("stdout")?).read_line(&mut line)?;
    let v: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("service said {line:?}"))?;
    v["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .with_context(|| format!("no port in {line:?}"))
}

/// Waits for a custom workload to exit (at most until `deadline`); the
/// burst starts it printed (JSON lines with `start`, as `shadow-workload
/// bursts` prints), if any.
fn wait_custom(child: &mut Child, deadline: Instant) -> anyhow::Result<Vec<f64>> {
    let out = child.stdout.take().context("stdout")?;
    let reader = std::thread::spawn(move || scenario::burst_starts(out, |_| {}));
    while Instant::now() < deadline && child.try_wait()?.is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_workload(child);
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?
}

/// Ends the workload's process group (it leads its own) and reaps it.
fn stop_workload(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // SAFETY: signalling the process group this process created.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    }
    let _ = child.wait();
}

#[cfg(test)]
mod tests;
