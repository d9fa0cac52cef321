//! Memory per cgroup against the kernel's own files: the level
//! (`memory_bytes`, anon and file) and the time stalled in reclaim.
//!
//! The agent reads the level from the same files a test can read, but at
//! its own moment: the test reads them as each sample arrives (a few
//! milliseconds later) and compares only samples taken while the workload
//! held its level, i.e. when no step of the workload overlapped the span
//! from the sample's timestamp to the test's read. There the two readings
//! are of the same state and must agree within 1 %.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;
use shadow_common::values::{Bytes, memory_stat};
use shadow_tests::{Agent, ChildGuard, TestCgroup, finish, workload};

/// A file of `mib` MiB on the root file system (not tmpfs: its pages must
/// be reclaimable), written and synced, removed on drop.
struct DataFile(PathBuf);

impl DataFile {
    fn new(name: &str, mib: usize) -> Self {
        let path = std::env::temp_dir().join(format!("shadow-{name}-{}", std::process::id()));
        let mut f = fs::File::create(&path).expect("create data file");
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..mib {
            f.write_all(&chunk).expect("write data file");
        }
        f.sync_all().expect("sync data file");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Where the agent reads memory here: the v1 memory directory on hybrid
/// hosts, else the v2 one; (usage file, anon key, file key).
fn kernel_files(cg: &TestCgroup) -> (PathBuf, &'static str, &'static str, &'static str) {
    match cg.v1_dir("memory").filter(|d| d.exists()) {
        Some(dir) => (dir, "memory.usage_in_bytes", "total_rss", "total_cache"),
        None => (cg.v2_dir().to_owned(), "memory.current", "anon", "file"),
    }
}

/// (usage, anon, file) as the kernel shows them now.
fn read_kernel(dir: &Path, usage: &str, anon: &str, file: &str) -> (u64, u64, u64) {
    let text = fs::read_to_string(dir.join(usage)).expect("read usage");
    let bytes = Bytes::parse_v1(&text)
        .or_else(|_| Bytes::parse_v2(&text))
        .expect("usage is bytes")
        .as_u64();
    let stat = fs::read_to_string(dir.join("memory.stat")).expect("read memory.stat");
    let [a, f] = memory_stat(&stat, [anon, file]).expect("memory.stat");
    (bytes, a.expect("anon line"), f.expect("file line"))
}

/// True if `a` and `b` differ by at most 1 % of the larger (or 64 KiB,
/// for levels near zero: one per-CPU charge batch is 64 pages).
fn close(a: u64, b: u64) -> bool {
    a.abs_diff(b) as f64 <= (a.max(b) as f64 * 0.01).max(65536.0)
}

/// A workload allocates 64 MiB, maps and reads a 32 MiB file, frees half,
/// unmaps, frees the rest, holding each level 1.2 s: at every tick taken
/// while a level held, memory_bytes, anon and file are within 1 % of the
/// kernel's files read as the sample arrives; and the levels follow the
/// steps.
#[test]
fn memory_level_matches_the_kernel_at_each_tick() {
    let cg = TestCgroup::new("memory", &["memory"]);
    let data = DataFile::new("memory-map", 32);
    let (dir, usage, anon, file) = kernel_files(&cg);
    let agent = Agent::start(&cg.path, "200ms");
    let mut child = ChildGuard(cg.spawn(&mut workload(&["memory", data.path(), "64", "1200"])));
    let stdout = child.0.stdout.take().expect("stdout");
    // The workload's steps, as (start, end), read as it announces them.
    let steps = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(f64, f64)>::new()));
    let sink = std::sync::Arc::clone(&steps);
    let reader = std::thread::spawn(move || {
        let mut named = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let v: Value = serde_json::from_str(&line.expect("line")).expect("json");
            if let (Some(s), Some(e)) = (v["start"].as_f64(), v["end"].as_f64()) {
                sink.lock().expect("lock").push((s, e));
                named.push((v["step"].as_str().unwrap_or("?").to_owned(), s, e));
            }
        }
        named
    });
    // Follow the samples; read the kernel's files as each one arrives.
    let mut seen = 0;
    let mut readings = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reader.is_finished() && Instant::now() < deadline {
        for s in agent.since(seen) {
            seen += 1;
            if s["cgroup"] == cg.path.as_str() {
                let kernel = read_kernel(&dir, usage, anon, file);
                readings.push((s, shadow_common::host::unix_now(), kernel));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let named = reader.join().expect("workload reader");
    let _ = child.0.wait();
    drop(agent);
    assert_eq!(named.len(), 5, "the workload did not finish: {named:?}");
    let steps = steps.lock().expect("lock").clone();
    let mut compared = 0;
    let mut worst = 0.0f64;
    let mut levels = Vec::new();
    for (s, read_at, (k_usage, k_anon, k_file)) in &readings {
        let ts = s["ts"].as_f64().expect("ts");
        let agent_usage = s["memory_bytes"].as_u64().expect("memory_bytes");
        let agent_anon = s["memory_anon_bytes"].as_u64().expect("anon");
        let agent_file = s["memory_file_bytes"].as_u64().expect("file");
        levels.push((ts, agent_usage, agent_anon, agent_file));
        // 10 ms either side: the agent reads its files a little after ts.
        let moving = steps
            .iter()
            .any(|&(a, b)| a <= read_at + 0.01 && b >= ts - 0.01);
        if moving {
            continue;
        }
        compared += 1;
        worst = worst.max(agent_usage.abs_diff(*k_usage) as f64 / (*k_usage).max(1) as f64);
        assert!(
            close(agent_usage, *k_usage)
                && close(agent_anon, *k_anon)
                && close(agent_file, *k_file),
            "at {ts}: agent ({agent_usage}, {agent_anon}, {agent_file}) vs kernel ({k_usage}, {k_anon}, {k_file})"
        );
    }
    eprintln!(
        "compared {compared} of {} samples, largest memory_bytes difference {:.4} %; levels (ts, bytes, anon, file): {levels:?}; steps {named:?}",
        readings.len(),
        worst * 100.0
    );
    assert!(compared >= 15, "too few samples compared: {compared}");
    // The levels follow the steps: 64 MiB of anon, then the 32 MiB file.
    let mib = |v: u64| v as f64 / f64::from(1 << 20);
    let max_anon = levels.iter().map(|l| mib(l.2)).fold(0.0, f64::max);
    let max_file = levels.iter().map(|l| mib(l.3)).fold(0.0, f64::max);
    assert!(max_anon >= 63.0, "anon peaked at {max_anon} MiB");
    assert!(max_file >= 31.0, "file peaked at {max_file} MiB");
    let last = levels.last().expect("samples");
    assert!(mib(last.2) < 8.0, "anon not freed at the end: {last:?}");
}

/// Two cgroups reread a 96 MiB file for 4 s: one limited to 24 MiB (v1
/// memory.limit_in_bytes, or v2 memory.high), which must reclaim its own
/// page cache to go on, and one without a limit. The first shows reclaim
/// stall time, growing through the run; the second none.
#[test]
fn reclaim_stall_shows_under_a_limit_and_not_without() {
    let parent = TestCgroup::new("reclaim", &["memory"]);
    let limited = parent.child("limited", &["memory"]);
    let free = parent.child("free", &["memory"]);
    let limit = (24u64 << 20).to_string();
    match limited.v1_dir("memory").filter(|d| d.exists()) {
        Some(dir) => fs::write(dir.join("memory.limit_in_bytes"), &limit),
        None => fs::write(limited.v2_dir().join("memory.high"), &limit),
    }
    .expect("set the limit");
    let data_limited = DataFile::new("reclaim-limited", 96);
    let data_free = DataFile::new("reclaim-free", 96);
    let agent = Agent::start(&parent.path, "500ms");
    let a = limited.spawn(&mut workload(&["reread", data_limited.path(), "4"]));
    let b = free.spawn(&mut workload(&["reread", data_free.path(), "4"]));
    let (out_a, out_b) = (finish(a), finish(b));
    let samples = agent.stop(Duration::from_millis(1200));
    eprintln!("limited: {out_a}; free: {out_b}");
    let stall = |path: &str| -> Vec<u64> {
        samples
            .iter()
            .filter(|s| s["cgroup"] == path)
            .map(|s| s["reclaim_stall_ns"].as_u64().expect("reclaim_stall_ns"))
            .collect()
    };
    let (sa, sb) = (stall(&limited.path), stall(&free.path));
    eprintln!("reclaim_stall_ns per 500 ms: limited {sa:?}, free {sb:?}");
    let total_a: u64 = sa.iter().sum();
    assert!(total_a > 0, "no reclaim stall under the limit: {sa:?}");
    // Growing: stalls in most intervals of the run, not one lump.
    let stalled = sa.iter().filter(|&&v| v > 0).count();
    assert!(stalled >= 5, "stall in only {stalled} intervals: {sa:?}");
    assert_eq!(sb.iter().sum::<u64>(), 0, "stall without a limit: {sb:?}");
}

/// The service of `cargo xtask bench memory` (`shadow-workload memserve`):
/// serving from a 192 MiB working set of a file under a ceiling of 128 MiB,
/// its reads go back to the disk (the kernel counts the major faults) and
/// its latency grows; with room for the working set, neither. This is the
/// signal the benchmark scores policies by, so it must be there.
#[test]
fn the_memory_benchmark_service_stalls_only_below_its_working_set() {
    let data = DataFile::new("memserve", 192);
    let run = |name: &str, ceiling: Option<u64>| -> (u64, Value) {
        let cg = TestCgroup::new(name, &["memory"]);
        let (dir, fault_key, ceiling_file) = match cg.v1_dir("memory").filter(|d| d.exists()) {
            Some(dir) => (dir, "total_pgmajfault", "memory.limit_in_bytes"),
            None => (cg.v2_dir().to_owned(), "pgmajfault", "memory.high"),
        };
        if let Some(c) = ceiling {
            fs::write(dir.join(ceiling_file), c.to_string()).expect("set the ceiling");
        }
        let faults = || {
            let text = fs::read_to_string(dir.join("memory.stat")).expect("memory.stat");
            memory_stat(&text, [fault_key]).expect("memory.stat")[0].expect("major faults")
        };
        let before = faults();
        let out = finish(cg.spawn(&mut workload(&[
            "memserve",
            data.path(),
            "50",
            "16",
            "0",
            "1:16,3:192",
            "4",
        ])));
        (faults() - before, out)
    };
    let (tight_faults, tight) = run("memserve-tight", Some(128 << 20));
    let (roomy_faults, roomy) = run("memserve-roomy", None);
    eprintln!("under 128 MiB: {tight_faults} major faults, {tight}");
    eprintln!("unlimited: {roomy_faults} major faults, {roomy}");
    assert_eq!(tight["requests"], 200, "{tight}");
    assert_eq!(roomy["requests"], 200, "{roomy}");
    assert!(
        tight_faults >= 200 && roomy_faults * 20 <= tight_faults,
        "major faults: {tight_faults} under the ceiling, {roomy_faults} without"
    );
    let p99 = |v: &Value| v["p99_ms"].as_f64().expect("p99_ms");
    assert!(p99(&tight) > p99(&roomy), "{tight} vs {roomy}");
}
