//! Helpers for Shadow's privileged integration tests: cgroups that remove
//! themselves, workloads started inside them, and the agent run as a real
//! subprocess whose JSON output is collected.
//!
//! These tests need root and a real kernel. Run them with `cargo xtask test`,
//! which builds the agent first and passes its path in `SHADOW_AGENT_BIN`.
//! They never skip themselves: a missing prerequisite fails with a message.

use std::{
    collections::HashMap,
    fs,
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::Value;
use shadow_common::mounts::Mounts;

pub mod chaos;
pub mod hint;
pub mod orchestrator;
pub mod phases;
pub mod sandbox;
pub mod scenario;
pub mod tmux;

/// Fails the test unless it runs as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the integration tests load BPF programs and create cgroups: run `cargo xtask test` as root"
    );
}

/// A cgroup created for one test, at the same relative path in the v2
/// hierarchy and in the v1 controllers asked for; removed on drop, even when
/// the test fails.
///
/// A controller asked for that is not bound to v1 (a pure v2 host) is the
/// v2 one: it is enabled in the parent's `cgroup.subtree_control` when the
/// parent is a test cgroup (the root's is the host's, and left as found).
pub struct TestCgroup {
    /// Path relative to the v2 root, as the agent reports it.
    pub path: String,
    dirs: Vec<PathBuf>,
}

impl TestCgroup {
    /// Creates `/shadow-test-<name>-<pid>` in v2 and in each of `v1`.
    pub fn new(name: &str, v1: &[&str]) -> Self {
        Self::at(format!("/shadow-test-{name}-{}", std::process::id()), v1)
    }

    /// Creates `<self>/<name>` in v2 and in each of `v1` (where this one
    /// must exist too). Drop it before its parent.
    pub fn child(&self, name: &str, v1: &[&str]) -> Self {
        Self::at(format!("{}/{name}", self.path), v1)
    }

    fn at(path: String, v1: &[&str]) -> Self {
        require_root();
        Self::create(&path, v1).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Creates `path` (relative to the v2 root) in v2 and in each of `v1`;
    /// what was created is removed again on error and on drop.
    pub fn create(path: &str, v1: &[&str]) -> anyhow::Result<Self> {
        let mut cg = Self {
            path: path.to_owned(),
            dirs: Vec::new(),
        };
        let mounts = Mounts::from_system()?;
        let v2 = mounts.v2_root()?.to_path_buf();
        let mut roots = vec![v2.clone()];
        let mut on_v2 = Vec::new();
        for c in v1 {
            match mounts.v1.get(*c) {
                Some(root) => roots.push(root.clone()),
                None => on_v2.push(v2_controller(c)),
            }
        }
        let relative = cg.path.trim_start_matches('/').to_owned();
        if let Some(parent) = Path::new(&relative)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            enable_v2(&v2.join(parent), &on_v2)?;
        }
        for root in roots {
            let dir = root.join(&relative);
            fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            cg.dirs.push(dir);
        }
        Ok(cg)
    }

    /// The directory of this cgroup under v1 controller `controller`.
    pub fn v1_dir(&self, controller: &str) -> Option<PathBuf> {
        Mounts::from_system().ok()?.v1_dir(controller, &self.path)
    }

    /// The v2 directory.
    pub fn v2_dir(&self) -> &Path {
        &self.dirs[0]
    }

    /// Starts `cmd` inside this cgroup (every hierarchy) before it execs,
    /// its stdout piped.
    pub fn spawn(&self, cmd: &mut Command) -> Child {
        self.spawn_with(cmd.stdout(Stdio::piped()))
    }

    /// [`TestCgroup::spawn`] with the stdio `cmd` already has.
    pub fn spawn_with(&self, cmd: &mut Command) -> Child {
        self.start(cmd).expect("spawn workload")
    }

    /// Starts `cmd` inside this cgroup (every hierarchy) before it execs.
    pub fn start(&self, cmd: &mut Command) -> std::io::Result<Child> {
        let procs: Vec<PathBuf> = self.dirs.iter().map(|d| d.join("cgroup.procs")).collect();
        // SAFETY: the closure only writes to files, which is async-signal-safe
        // enough for a freshly forked child of a test process.
        unsafe {
            cmd.pre_exec(move || {
                for p in &procs {
                    fs::write(p, "0")?;
                }
                Ok(())
            });
        }
        cmd.spawn()
    }
}

/// The v2 name of a controller the tests name as v1 does.
fn v2_controller(v1: &str) -> &str {
    match v1 {
        "cpuacct" => "cpu",
        "blkio" => "io",
        other => other,
    }
}

/// Enables `controllers` for the children of the v2 cgroup `dir`.
fn enable_v2(dir: &Path, controllers: &[&str]) -> anyhow::Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let enabled =
        fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    for c in controllers {
        if !enabled.split_whitespace().any(|e| e == *c) {
            fs::write(&file, format!("+{c}"))
                .with_context(|| format!("enabling {c} in {}", file.display()))?;
        }
    }
    Ok(())
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            // Move stragglers out, then remove; tasks that are exiting can
            // keep a cgroup busy for a moment.
            let parent_procs = dir.parent().map(|p| p.join("cgroup.procs"));
            for _ in 0..100 {
                if let (Ok(pids), Some(parent)) =
                    (fs::read_to_string(dir.join("cgroup.procs")), &parent_procs)
                {
                    for pid in pids.lines() {
                        let _ = fs::write(parent, pid);
                    }
                }
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Kills and reaps a child on drop, even when the test fails.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The workload binary built with these tests (cargo puts it one folder
/// above the test executables in `deps/`), or `SHADOW_WORKLOAD_BIN`.
pub fn workload(args: &[&str]) -> Command {
    // `SHADOW_WORKLOAD_BIN` when run from elsewhere (`cargo xtask demo`).
    let bin = match std::env::var_os("SHADOW_WORKLOAD_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => {
            let exe = std::env::current_exe().expect("test executable path");
            exe.parent()
                .and_then(Path::parent)
                .expect("target dir")
                .join("shadow-workload")
        }
    };
    // Read the whole binary once so it is in the page cache: otherwise the
    // first exec in a test cgroup reads it from disk, and that (correctly
    // attributed) I/O would be counted against the block test's figures.
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        fs::read(&bin).unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}): run the tests through cargo",
                bin.display()
            )
        });
    });
    let mut cmd = Command::new(bin);
    cmd.args(args);
    cmd
}

/// Waits for a workload and parses the JSON line it printed last.
pub fn finish(child: Child) -> Value {
    let out = child.wait_with_output().expect("wait workload");
    assert!(out.status.success(), "workload failed: {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().expect("workload printed nothing"))
        .expect("workload JSON")
}

/// Path of the agent binary (set by `cargo xtask test`).
pub fn agent_bin() -> PathBuf {
    PathBuf::from(
        std::env::var_os("SHADOW_AGENT_BIN").expect(
            "SHADOW_AGENT_BIN is not set: run the integration tests with `cargo xtask test`",
        ),
    )
}

/// What `shadow-agent check` says of `program` on this kernel: "attached",
/// or "off: <why>".
pub fn probe_status(program: &str) -> String {
    let out = Command::new(agent_bin())
        .arg("check")
        .output()
        .expect("run shadow-agent check");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(program))
        .unwrap_or_else(|| panic!("{program} not in `shadow-agent check`:\n{text}"));
    // "<program> <what it measures> <status>": the status starts at the
    // first "attached" or "off:" word.
    let at = line
        .find(" attached")
        .or_else(|| line.find(" off:"))
        .or_else(|| line.find(" failed"))
        .unwrap_or_else(|| panic!("no status in {line:?}"));
    line[at..].trim().to_owned()
}

/// `shadow-agent observe` running as a subprocess, its JSON lines collected.
pub struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Agent {
    /// Starts observing `cgroup` (and below) every `interval`, and returns
    /// once the probes are attached.
    pub fn start(cgroup: &str, interval: &str) -> Self {
        Self::start_with(cgroup, interval, &[])
    }

    /// [`Agent::start`] with extra `observe` arguments.
    pub fn start_with(cgroup: &str, interval: &str, extra: &[&str]) -> Self {
        require_root();
        let mut child = Command::new(agent_bin())
            .args([
                "observe",
                "--format",
                "json",
                "--interval",
                interval,
                "--cgroup",
                cgroup,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shadow-agent");
        let stderr = child.stderr.take().expect("stderr");
        let mut stderr = BufReader::new(stderr);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            let n = stderr.read_line(&mut line).expect("agent stderr");
            seen.push_str(&line);
            if line.contains("observing") {
                break;
            }
            assert!(
                n > 0 && Instant::now() < deadline,
                "agent did not start:\n{seen}"
            );
        }
        // Keep draining stderr (the log) so the agent never blocks on it.
        let log = Arc::new(Mutex::new(seen));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().expect("lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"));
                sink.lock().expect("lock").push(value);
            }
        });
        Self {
            child,
            lines,
            log,
            reader: Some(reader),
        }
    }

    /// Its log (stderr) so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("lock").clone()
    }

    /// How many JSON lines it printed so far.
    pub fn printed(&self) -> usize {
        self.lines.lock().expect("lock").len()
    }

    /// The JSON lines it printed so far from index `from` on (to follow
    /// the samples as they arrive).
    pub fn since(&self, from: usize) -> Vec<Value> {
        let lines = self.lines.lock().expect("lock");
        lines.get(from..).map(<[Value]>::to_vec).unwrap_or_default()
    }

    /// Sends `signal` (SIGHUP, say) and returns at once.
    pub fn send(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits until its log contains `needle`, or panics after `timeout`
    /// with the log.
    pub fn wait_for_log(&self, timeout: Duration, needle: &str) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged in {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Lets `settle` pass (so the last events are read), stops the agent
    /// with SIGTERM and returns every sample it printed.
    pub fn stop(mut self, settle: Duration) -> Vec<Value> {
        std::thread::sleep(settle);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait agent");
        assert!(status.success(), "agent exited with {status}");
        if let Some(r) = self.reader.take() {
            r.join().expect("reader");
        }
        std::mem::take(&mut *self.lines.lock().expect("lock"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of `field` over the samples of cgroup `path`.
pub fn total(samples: &[Value], path: &str, field: &str) -> u64 {
    samples
        .iter()
        .filter(|s| s["cgroup"] == path)
        .map(|s| {
            s[field]
                .as_u64()
                .unwrap_or_else(|| panic!("field {field} missing in {s}"))
        })
        .sum()
}

/// Every field of the JSON schema, for a schema check.
pub const FIELDS: &[&str] = &[
    "ts",
    "cgroup",
    "cgroup_id",
    "interval_ns",
    "cpu_ns",
    "runq_delay_ns",
    "runq_count",
    "page_faults",
    "io_read_bytes",
    "io_write_bytes",
    "io_ops",
    "io_latency_ns",
    "net_tx_bytes",
    "net_rx_bytes",
    "net_tx_packets",
    "net_rx_packets",
    "reclaim_stall_ns",
    "memory_bytes",
    "memory_anon_bytes",
    "memory_file_bytes",
];

/// `key value` pairs of a flat-keyed cgroup file such as `cpu.stat`.
pub fn keyed(file: &Path) -> HashMap<String, u64> {
    fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `measured / expected`, printed so test logs carry the figure.
pub fn ratio(what: &str, measured: u64, expected: u64) -> f64 {
    assert!(expected > 0, "{what}: ground truth is zero");
    let r = measured as f64 / expected as f64;
    eprintln!("{what}: agent {measured}, kernel {expected}, ratio {r:.4}");
    r
}
