//! `shadow-orchestrator` run as a real subprocess for the tests: its own
//! socket and state directory under a temporary folder, its stdout JSON
//! lines (status and dry-run writes) and stderr log collected.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::Value;

/// Path of the orchestrator binary (set by `cargo xtask test`).
pub fn orchestrator_bin() -> PathBuf {
    PathBuf::from(std::env::var_os("SHADOW_ORCHESTRATOR_BIN").expect(
        "SHADOW_ORCHESTRATOR_BIN is not set: run the integration tests with `cargo xtask test`",
    ))
}

/// A temporary folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty folder named after `name` and this process.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("shadow-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running orchestrator.
pub struct Orchestrator {
    child: Child,
    /// Its socket.
    pub socket: PathBuf,
    stdout: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl Orchestrator {
    /// Starts it with `socket` and `state_dir` (and a 200 ms tick, status
    /// lines on) plus `extra` arguments; returns once it listens.
    pub fn start(socket: &Path, state_dir: &Path, extra: &[&str]) -> Self {
        let mut cmd = Command::new(orchestrator_bin());
        cmd.arg("--socket")
            .arg(socket)
            .arg("--state-dir")
            .arg(state_dir)
            .args(if extra.contains(&"--tick") {
                &["--status"][..]
            } else {
                &["--tick", "200ms", "--status"][..]
            })
            .args(extra)
            .env("SHADOW_LOG", "info");
        Self::launch(cmd, socket, false).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts `cmd`, an orchestrator listening on `socket`, and returns once
    /// it says it is ready. Its stdout JSON lines and its log are kept;
    /// with `echo` they are also copied to ours as they come (the live view
    /// of `cargo xtask run`).
    pub fn launch(mut cmd: Command, socket: &Path, echo: bool) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().context("stderr")?;
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if line.contains("ready on") {
                    let _ = ready_tx.send(());
                }
                if echo {
                    eprintln!("{line}");
                }
                let mut s = sink.lock().expect("lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().context("stdout")?;
        let (sink, log) = (stdout.clone(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if echo {
                    println!("{line}");
                }
                match serde_json::from_str(&line) {
                    Ok(value) => sink.lock().expect("lock").push(value),
                    // Kept in the log, where a test's assertion shows it.
                    Err(e) => log
                        .lock()
                        .expect("lock")
                        .push_str(&format!("bad JSON line on stdout {line:?}: {e}\n")),
                }
            }
        });
        let mut this = Self {
            child,
            socket: socket.to_owned(),
            stdout,
            stderr,
        };
        if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let status = this.child.try_wait();
            anyhow::bail!(
                "shadow-orchestrator did not start ({status:?}):\n{}",
                this.stderr()
            );
        }
        Ok(this)
    }

    /// The stdout JSON lines so far.
    pub fn lines(&self) -> Vec<Value> {
        self.stdout.lock().expect("lock").clone()
    }

    /// The log so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits until `what` holds for the stdout lines, or panics after
    /// `timeout` with the log.
    pub fn wait_for(&self, timeout: Duration, what: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if what(&self.lines()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("condition not met in {timeout:?}; log:\n{}", self.stderr());
    }

    /// Waits until the log contains `needle`, or panics after `timeout`
    /// with the log.
    pub fn wait_for_log(&self, timeout: Duration, needle: &str) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{needle:?} not logged in {timeout:?}; log:\n{}",
            self.stderr()
        );
    }

    /// Sends `signal` (SIGHUP, say) and returns at once.
    pub fn send(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Sends `signal` and waits for the exit; returns its status.
    pub fn signal(mut self, signal: i32) -> std::process::ExitStatus {
        self.send(signal);
        self.child.wait().expect("wait orchestrator")
    }

    /// SIGTERM (it restores every knob it changed), then waits; SIGKILL
    /// after 10 s. The exit status, if it could be had.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        terminate(&mut self.child)
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// SIGTERM, then wait (SIGKILL after 10 s); the exit status if it ran.
pub fn terminate(child: &mut Child) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    for _ in 0..200 {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait().ok()
}
