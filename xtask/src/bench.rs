//! `cargo xtask bench`: the overhead benchmarks of docs/benchmarks.md.
//!
//! - `probes`: ns per event of every program, from the kernel's bpf_stats,
//!   next to an empty program on the same hook in the same run, under a load
//!   that hits every hook; median over runs.
//! - `pipe`: `perf bench sched pipe` pinned to one CPU, without and with the
//!   agent observing, interleaved A B A B; the slowdown ratio per pair and
//!   its median (`--metrics`: the agent without and with `--metrics`, which
//!   turns the kernel's bpf_stats on).
//! - `collector`: 10,000 live cgroups; the agent's time per tick to read and
//!   resolve all maps, and its peak RSS.
//!
//! - `e2e`: the headline benchmark, Shadow against the static, burst and
//!   reactive baselines across their settings, with a neighbour that pays
//!   for every reserved core (`crate::e2e`); not part of `all` (it takes
//!   hours; `--quick` minutes).
//! - `memory`: memory end to end, Shadow against static and reactive
//!   ceilings across their settings, beside a neighbour whose page cache
//!   pays for every reserved byte (`crate::memory`); not part of `all`.
//!
//! All need root. Figures are ratios or medians: timings on these shared
//! 2-core machines are noisy (DESIGN.md, "Measuring").

use std::{
    collections::BTreeMap,
    fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, ensure};
use serde_json::Value;
use shadow_common::mounts::Mounts;

use crate::{
    build,
    cmd::{self, cargo},
};

/// Which benchmark to run.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// probes, pipe, collector, all (those three), e2e or memory.
    #[arg(default_value = "all", value_parser = ["probes", "pipe", "collector", "all", "e2e", "memory"])]
    which: String,
    /// Repetitions (runs for `probes`, A/B pairs for `pipe`, rounds of
    /// every policy for `e2e` and `memory`) [default: 5; e2e --quick and
    /// memory: 1].
    #[arg(long)]
    runs: Option<usize>,
    /// Cgroups created for `collector`.
    #[arg(long, default_value_t = 10_000)]
    cgroups: usize,
    /// `pipe`: compare the agent with `--metrics` (kernel bpf_stats on)
    /// against the agent without, instead of the agent against none.
    #[arg(long)]
    metrics: bool,
    #[command(flatten)]
    e2e: crate::e2e::E2eArgs,
    #[command(flatten)]
    memory: crate::memory::MemoryArgs,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the benchmarks load BPF programs and create cgroups: run as root"
    );
    if args.which == "e2e" {
        return crate::e2e::run(&args.e2e, args.runs);
    }
    if args.which == "memory" {
        return crate::memory::run(&args.memory, &args.e2e, args.runs);
    }
    let runs = args.runs.unwrap_or(5);
    build::all()?;
    cmd::run(cargo(None).args([
        "build",
        "--release",
        "-p",
        "shadow-tests",
        "--bin",
        "shadow-workload",
    ]))?;
    let all = args.which == "all";
    if all || args.which == "probes" {
        probes(runs)?;
    }
    if all || args.which == "pipe" {
        pipe(runs, args.metrics)?;
    }
    if all || args.which == "collector" {
        collector(args.cgroups)?;
    }
    Ok(())
}

fn agent() -> Command {
    Command::new(build::binary("shadow-agent"))
}

fn workload(args: &[&str]) -> Command {
    let mut cmd = Command::new(build::binary("shadow-workload"));
    cmd.args(args).stdout(Stdio::null()).process_group(0);
    cmd
}

fn perf_pipe(loops: u32) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args([
        "-c",
        "0",
        "perf",
        "bench",
        "sched",
        "pipe",
        "-l",
        &loops.to_string(),
    ]);
    cmd
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Background load that hits every hook for about `seconds`. Each child
/// leads its own process group, so [`stop`] also ends what it forked
/// (perf's second process, the shell's workloads).
fn load(seconds: u64, dev: &str) -> anyhow::Result<Vec<Child>> {
    let mut children = vec![
        perf_pipe(150_000 * seconds as u32)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?,
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "end=$(($(date +%s)+{seconds})); while [ $(date +%s) -lt $end ]; do {w} touch 20000; {w} dio-write {dev} 16777216; {w} dio-read {dev} 16777216; done",
                w = build::binary("shadow-workload").display()
            ))
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()?,
    ];
    let mut rx = workload(&["tcp-recv"]).stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(rx.stdout.as_mut().context("stdout")?),
        &mut line,
    )?;
    let port: Value = serde_json::from_str(&line)?;
    children.push(rx);
    children.push(
        workload(&[
            "tcp-send",
            &port["port"].to_string(),
            &(256u64 << 20).to_string(),
        ])
        .spawn()?,
    );
    Ok(children)
}

/// Ends each child's whole process group and reaps the children.
fn stop(children: &mut [Child]) {
    for child in children {
        // SAFETY: signalling process groups this process created.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
    }
}

/// A loop device over a sparse file in the target dir, removed on drop.
struct LoopDevice {
    dev: String,
    file: PathBuf,
}

impl LoopDevice {
    fn new() -> anyhow::Result<Self> {
        let file = cmd::root().join("target/bench-loop.img");
        fs::File::create(&file)?.set_len(64 << 20)?;
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&file)
            .output()?;
        ensure!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Self {
            dev: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            file,
        })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
        let _ = fs::remove_file(&self.file);
    }
}

fn probes(runs: usize) -> anyhow::Result<()> {
    let disk = LoopDevice::new()?;
    let mut ratios: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut ns: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut events: BTreeMap<String, u64> = BTreeMap::new();
    for run in 1..=runs {
        let mut children = load(8, &disk.dev)?;
        let out = agent()
            .args(["probe-cost", "--duration", "6s"])
            .stderr(Stdio::null())
            .output()?;
        stop(&mut children);
        ensure!(out.status.success(), "probe-cost failed");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: Value = serde_json::from_str(line)?;
            let program = v["program"].as_str().unwrap_or("?").to_owned();
            let (real, empty) = (v["ns_per_event"].as_f64(), v["empty_ns_per_event"].as_f64());
            if let (Some(real), Some(empty)) = (real, empty)
                && v["events"].as_u64().unwrap_or(0) > 0
                && empty > 0.0
            {
                ratios
                    .entry(program.clone())
                    .or_default()
                    .push(real / empty);
                ns.entry(program.clone()).or_default().push(real);
                *events.entry(program).or_default() += v["events"].as_u64().unwrap_or(0);
            }
        }
        eprintln!("xtask: probes run {run}/{runs} done");
    }
    println!(
        "\nprobe cost, median of {runs} runs (ns/event from bpf_stats; ratio = real / empty program on the same hook, same run)"
    );
    println!(
        "{:<20} {:>12} {:>10} {:>8}",
        "program", "events", "ns/event", "ratio"
    );
    for (program, r) in &mut ratios {
        let n = ns.get_mut(program).map_or(f64::NAN, |v| median(v));
        println!(
            "{program:<20} {:>12} {:>10.1} {:>8.2}",
            events[program],
            n,
            median(r)
        );
    }
    Ok(())
}

/// usecs/op from `perf bench sched pipe` output.
fn usecs_per_op(out: &str) -> anyhow::Result<f64> {
    out.lines()
        .find(|l| l.contains("usecs/op"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no usecs/op in perf output:\n{out}"))
}

fn pipe(pairs: usize, metrics: bool) -> anyhow::Result<()> {
    let once = || -> anyhow::Result<f64> {
        let out = perf_pipe(200_000)
            .output()
            .context("perf (linux-perf) is needed: cargo xtask setup")?;
        ensure!(
            out.status.success(),
            "perf bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        usecs_per_op(&String::from_utf8_lossy(&out.stdout))
    };
    // A: no agent (with --metrics: the agent without them); B: the agent
    // (with --metrics: serving them, so bpf_stats are on).
    let (a, b): (Option<&[&str]>, &[&str]) = if metrics {
        (Some(&[]), &["--metrics", "127.0.0.1:0"])
    } else {
        (None, &[])
    };
    let mut slowdowns = Vec::new();
    for pair in 1..=pairs {
        let without = match a {
            Some(extra) => observing(extra, once)?,
            None => once()?,
        };
        let with = observing(b, once)?;
        let ratio = with / without;
        eprintln!(
            "xtask: pair {pair}/{pairs}: A {without:.3} us/op, B {with:.3} us/op, ratio {ratio:.4}"
        );
        slowdowns.push(ratio);
    }
    let m = median(&mut slowdowns);
    let what = if metrics {
        "the agent with --metrics against without"
    } else {
        "with the agent against without"
    };
    println!(
        "\nperf bench sched pipe (taskset -c 0, 200000 loops), {pairs} interleaved pairs, {what}: median slowdown {:.2}% (ratios {:?})",
        (m - 1.0) * 100.0,
        slowdowns
            .iter()
            .map(|r| format!("{r:.4}"))
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// Runs `f` while `shadow-agent observe` (plus `extra`) observes.
fn observing(extra: &[&str], f: impl Fn() -> anyhow::Result<f64>) -> anyhow::Result<f64> {
    let mut observer = agent()
        .args(["observe", "--interval", "1s", "--format", "json"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(2));
    let result = f();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(observer.id() as i32, libc::SIGTERM) };
    observer.wait()?;
    result
}

/// Creates `n` v2 cgroups, gives each a counter entry by running in it for a
/// moment, and measures the agent's tick cost and memory.
fn collector(n: usize) -> anyhow::Result<()> {
    let v2 = v2_root()?;
    let parent = v2.join(format!("shadow-bench-{}", std::process::id()));
    let tree = CgroupTree::create(&parent, n)?;
    let observer = agent()
        .args([
            "observe",
            "--interval",
            "1s",
            "--count",
            "25",
            "--format",
            "json",
            "--summary",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(2));
    tree.visit_all()?;
    let out = observer.wait_with_output()?;
    drop(tree);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = stderr
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("no summary from the agent:\n{stderr}"))?;
    println!(
        "\ncollector with {n} extra cgroups ({} in the tree): tick (read + resolve all maps) median {:.2} ms, max {:.2} ms over {} ticks; agent peak RSS {:.1} MiB",
        summary["cgroups"],
        summary["tick_ms_median"].as_f64().unwrap_or(f64::NAN),
        summary["tick_ms_max"].as_f64().unwrap_or(f64::NAN),
        summary["ticks"],
        summary["rss_peak_bytes"].as_f64().unwrap_or(0.0) / f64::from(1 << 20),
    );
    Ok(())
}

fn v2_root() -> anyhow::Result<PathBuf> {
    Ok(Mounts::from_system()?.v2_root()?.to_path_buf())
}

/// `n` empty cgroups under `parent`, all removed on drop.
struct CgroupTree {
    parent: PathBuf,
    children: Vec<PathBuf>,
    /// Where this process was, to go back exactly there.
    home: PathBuf,
}

impl CgroupTree {
    fn create(parent: &Path, n: usize) -> anyhow::Result<Self> {
        let own = fs::read_to_string("/proc/self/cgroup")?;
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .context("not in a v2 cgroup")?;
        let home = v2_root()?.join(rel.trim_start_matches('/'));
        fs::create_dir(parent).with_context(|| format!("mkdir {}", parent.display()))?;
        let mut tree = Self {
            parent: parent.to_path_buf(),
            children: Vec::new(),
            home,
        };
        for i in 0..n {
            let child = parent.join(format!("c{i}"));
            fs::create_dir(&child)?;
            tree.children.push(child);
        }
        eprintln!("xtask: created {n} cgroups under {}", parent.display());
        Ok(tree)
    }

    /// Runs this thread for a moment in every cgroup, so each gets counters.
    fn visit_all(&self) -> anyhow::Result<()> {
        let result = (|| {
            for child in &self.children {
                fs::write(child.join("cgroup.procs"), "0")?;
                std::thread::sleep(Duration::from_micros(50));
            }
            Ok(())
        })();
        fs::write(self.home.join("cgroup.procs"), "0").context("moving back home")?;
        result
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        let _ = fs::write(self.home.join("cgroup.procs"), "0");
        for child in self.children.iter().chain(std::iter::once(&self.parent)) {
            if let Err(e) = fs::remove_dir(child) {
                eprintln!("xtask: could not remove {}: {e}", child.display());
            }
        }
    }
}
