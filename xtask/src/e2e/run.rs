//! One run of `bench e2e`: a fresh sandbox cgroup, the workload in it, one
//! policy setting its quota, the kernel's accounting before and after.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use shadow_tests::scenario::{self, CpuHierarchy, Point, Sandbox, Shadow, unix_now};

use super::{
    hinter::{self, Hinted},
    load::{self, Pattern, Request, Sample},
};
use crate::build::binary;

/// Who sets the sandbox's quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// A fixed quota: the workload's mean demand plus a margin.
    Static,
    /// Every tick: the usage just observed over a target utilisation.
    Reactive,
    /// Orchestrator and agent.
    Shadow,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::Static, Policy::Reactive, Policy::Shadow];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Static => "static",
            Policy::Reactive => "reactive",
            Policy::Shadow => "shadow",
        }
    }
}

/// Settings shared by every run.
pub struct Setup {
    pub pattern: Pattern,
    pub schedule: Vec<Request>,
    /// `sh -c` command run in the sandbox instead of the built-in service.
    pub workload: Option<String>,
    /// Where the sandbox's quota lives (v1 or v2 cpu controller).
    pub hierarchy: CpuHierarchy,
    /// The static policy's quota (and every run's quota before its policy
    /// acts), cores.
    pub static_cores: f64,
    /// Reactive control period, Shadow's tick and agent interval.
    pub tick: Duration,
    /// Reactive: quota = usage / target.
    pub target: f64,
    /// Bounds of the reactive and Shadow quotas, cores.
    pub floor: f64,
    pub ceiling: f64,
    /// Hinted scenario: how long before each burst Shadow is told of it.
    pub hint_ahead: Duration,
    /// Shadow's look-ahead in ticks.
    pub lead: u16,
}

/// What one run recorded; times are Unix seconds.
pub struct Run {
    pub policy: Policy,
    pub round: usize,
    /// Start and end of the measured window.
    pub start: f64,
    pub end: f64,
    /// Request latencies (built-in service only); `at_s` from `start`.
    pub samples: Vec<Sample>,
    pub lost: usize,
    /// The kernel's quota every 50 ms, cores.
    pub quota: Vec<(f64, f64)>,
    /// Usage per tick from cpuacct; for Shadow, the agent's points (usage,
    /// forecast band, reservation).
    pub usage: Vec<Point>,
    pub agent: Vec<Point>,
    pub bursts: Vec<f64>,
    pub throttled_periods: u64,
    pub throttled_s: f64,
    pub used_s: f64,
    pub reserved_s: f64,
    pub leads: Vec<scenario::Lead>,
    /// Hints sent ahead of the bursts (hinted scenario, Shadow only).
    pub hints: Vec<Hinted>,
    /// Cgroups the orchestrator wrote other than the sandbox.
    pub written_elsewhere: Vec<String>,
}

/// Runs `policy` once.
pub fn run(setup: &Setup, policy: Policy, round: usize) -> anyhow::Result<Run> {
    let name = format!(
        "/shadow-e2e-{}-{}-{}-{round}",
        std::process::id(),
        setup.pattern.scenario.name(),
        policy.name()
    );
    let sandbox = Sandbox::create(&name, setup.static_cores, true)?;
    let tick_text = format!("{}ms", setup.tick.as_millis());
    let shadow = match policy {
        Policy::Shadow => Some(Shadow::start(
            &name,
            &tick_text,
            setup.lead,
            setup.floor,
            setup.ceiling,
        )?),
        _ => None,
    };
    let watcher = sandbox.watch_quota();
    let hint_socket = shadow.as_ref().map(|s| s.hint_socket.as_path());
    let result = drive(setup, policy, &sandbox, hint_socket);
    let record = shadow.map(Shadow::stop).transpose();
    if policy == Policy::Reactive {
        // Back to what the sandbox was created with, for the restore check.
        sandbox.set_cores(setup.static_cores)?;
    }
    let quota = watcher.finish();
    let (mut run, record) = (result?, record?);
    ensure!(
        sandbox.as_created()?,
        "{name}: the quota was not restored after the {} run",
        policy.name()
    );
    let window: Vec<(f64, f64)> = quota
        .iter()
        .copied()
        .filter(|q| q.0 >= run.start && q.0 <= run.end)
        .collect();
    run.reserved_s = scenario::reserved_seconds(&window);
    run.leads = scenario::leads(&quota, &run.bursts, setup.pattern.burst_s);
    run.quota = quota;
    run.round = round;
    if let Some(r) = record {
        run.agent = r.points;
        run.written_elsewhere = r.written.into_iter().filter(|c| *c != name).collect();
    }
    Ok(run)
}

/// Starts the workload, runs the load and the policy's control loop (and,
/// with a hint socket in the hinted scenario, the hints), stops the
/// workload; the figures of the measured window.
fn drive(
    setup: &Setup,
    policy: Policy,
    sandbox: &Sandbox,
    hint_socket: Option<&std::path::Path>,
) -> anyhow::Result<Run> {
    let mut child = start_workload(setup, sandbox)?;
    let port = match &setup.workload {
        None => Some(read_port(&mut child)?),
        Some(_) => None,
    };
    let (periods0, throttled0) = sandbox.throttling()?;
    let used0 = sandbox.usage_ns()?;
    let start = Instant::now();
    let start_unix = unix_now();
    let stop = Arc::new(AtomicBool::new(false));
    let usage = Arc::new(Mutex::new(Vec::new()));
    let hinting = match hint_socket {
        Some(socket) if setup.pattern.scenario == load::Scenario::Hinted => Some(socket),
        _ => None,
    };
    let control = std::thread::scope(|scope| -> anyhow::Result<_> {
        let controller = scope.spawn(|| control(setup, policy, sandbox, &stop, &usage));
        let stop_hints = &*stop;
        let hints = hinting.map(|socket| {
            scope.spawn(move || hinter::run(setup, socket, &sandbox.cg.path, start, stop_hints))
        });
        let outcome = match port {
            Some(port) => {
                let out = load::run(
                    port,
                    &setup.schedule,
                    setup.pattern.connections,
                    start,
                    Duration::from_secs(30),
                );
                stop.store(true, Ordering::Relaxed);
                out.map(|o| (o, Vec::new()))
            }
            None => {
                let deadline = start + Duration::from_secs_f64(setup.pattern.duration_s());
                let starts = wait_custom(&mut child, deadline);
                stop.store(true, Ordering::Relaxed);
                starts.map(|s| {
                    (
                        load::Outcome {
                            samples: Vec::new(),
                            lost: 0,
                        },
                        s,
                    )
                })
            }
        };
        controller
            .join()
            .map_err(|_| anyhow::anyhow!("controller panicked"))??;
        let hints = match hints {
            Some(h) => h.join().map_err(|_| anyhow::anyhow!("hinter panicked"))??,
            None => Vec::new(),
        };
        outcome.map(|(o, s)| (o, s, hints))
    });
    let end = unix_now();
    let used1 = sandbox.usage_ns();
    let throttling1 = sandbox.throttling();
    stop_workload(&mut child);
    let (outcome, custom_bursts, hints) = control?;
    let (periods1, throttled1) = throttling1?;
    let bursts = if setup.workload.is_none() {
        setup
            .pattern
            .burst_starts()
            .iter()
            .map(|b| start_unix + b)
            .collect()
    } else {
        custom_bursts
    };
    Ok(Run {
        policy,
        round: 0,
        start: start_unix,
        end,
        samples: outcome.samples,
        lost: outcome.lost,
        quota: Vec::new(),
        usage: std::mem::take(&mut *usage.lock().expect("lock")),
        agent: Vec::new(),
        bursts,
        throttled_periods: periods1 - periods0,
        throttled_s: (throttled1 - throttled0) as f64 / 1e9,
        used_s: (used1? - used0) as f64 / 1e9,
        reserved_s: 0.0,
        leads: Vec::new(),
        hints,
        written_elsewhere: Vec::new(),
    })
}

/// Every tick: the usage since the last tick; the reactive policy sets the
/// quota from it.
fn control(
    setup: &Setup,
    policy: Policy,
    sandbox: &Sandbox,
    stop: &AtomicBool,
    usage: &Mutex<Vec<Point>>,
) -> anyhow::Result<()> {
    let mut last = (Instant::now(), sandbox.usage_ns()?);
    let mut next = last.0 + setup.tick;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += setup.tick;
        let now = (Instant::now(), sandbox.usage_ns()?);
        let cores = (now.1 - last.1) as f64 / 1e9 / (now.0 - last.0).as_secs_f64();
        last = now;
        usage.lock().expect("lock").push(Point {
            t: unix_now(),
            used: cores,
            demand: None,
            upper: None,
            reserved: None,
        });
        if policy == Policy::Reactive {
            sandbox.set_cores((cores / setup.target).clamp(setup.floor, setup.ceiling))?;
        }
    }
    Ok(())
}

fn start_workload(setup: &Setup, sandbox: &Sandbox) -> anyhow::Result<Child> {
    let mut cmd = match &setup.workload {
        None => {
            let mut c = Command::new(binary("shadow-workload"));
            c.arg("serve");
            c
        }
        Some(line) => {
            let mut c = Command::new("sh");
            c.args(["-c", line]);
            c
        }
    };
    cmd.stdout(Stdio::piped()).process_group(0);
    sandbox
        .cg
        .start(&mut cmd)
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
