//! Helpers for the hint socket's tests: an agent with its hint socket in a
//! temporary folder, clients run as an unprivileged user inside a test
//! cgroup (so the kernel reports that cgroup and uid), raw connections.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::net::UnixStream,
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::{Agent, TestCgroup, agent_bin, orchestrator::TempDir, workload};

/// The unprivileged user (and group) clients run as: nobody / nogroup.
pub const NOBODY: u32 = 65534;

/// An agent observing `scope` every 200 ms with forecasts, its hint socket
/// in a temporary folder, owned by group nogroup.
pub struct HintAgent {
    /// The agent (stop it to get its output).
    pub agent: Agent,
    /// The hint socket.
    pub socket: PathBuf,
    _dir: TempDir,
}

impl HintAgent {
    /// Starts it; `extra` goes to `observe`.
    pub fn start(name: &str, scope: &str, extra: &[&str]) -> Self {
        let dir = TempDir::new(name);
        let socket = dir.0.join("hint.sock");
        let mut args = vec![
            "--forecast",
            "--hint-socket",
            socket.to_str().expect("utf-8 path"),
            "--hint-group",
            "nogroup",
        ];
        args.extend_from_slice(extra);
        let agent = Agent::start_with(scope, "200ms", &args);
        Self {
            agent,
            socket,
            _dir: dir,
        }
    }

    /// `shadow-agent hint ARGS` run as nobody inside `cg`: (exit success,
    /// the reply line).
    pub fn hint_from(&self, cg: &TestCgroup, args: &[&str]) -> (bool, Value) {
        let mut cmd = as_nobody(&agent_bin());
        cmd.arg("hint").arg("--socket").arg(&self.socket).args(args);
        finish_client(cg.spawn(&mut cmd))
    }

    /// `shadow-agent hint ARGS` run as root from the test's own cgroup.
    pub fn hint_as_root(&self, args: &[&str]) -> (bool, Value) {
        let mut cmd = Command::new(agent_bin());
        cmd.arg("hint").arg("--socket").arg(&self.socket).args(args);
        finish_client(cmd.stdout(Stdio::piped()).spawn().expect("spawn client"))
    }

    /// A raw connection from this (root) process.
    pub fn connect(&self) -> Raw {
        let s = UnixStream::connect(&self.socket).expect("connect to the hint socket");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        Raw {
            reader: BufReader::new(s.try_clone().expect("clone")),
            stream: s,
        }
    }

    /// A long-lived client connection from a process running as nobody in
    /// `cg` (the workload's `hint-relay` mode).
    pub fn relay_in(&self, cg: &TestCgroup) -> Relay {
        let mut cmd = as_nobody(&workload(&[]).get_program().to_owned().into());
        cmd.args(["hint-relay"]).arg(&self.socket);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cg.spawn_with(&mut cmd);
        Relay {
            stdin: child.stdin.take().expect("stdin"),
            stdout: BufReader::new(child.stdout.take().expect("stdout")),
            child,
        }
    }
}

/// `program` run through setpriv as nobody:nogroup, no other groups.
fn as_nobody(program: &PathBuf) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".into(),
    ])
    .arg(program);
    cmd
}

fn finish_client(child: Child) -> (bool, Value) {
    let out = child.wait_with_output().expect("wait client");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("the client printed nothing (status {})", out.status));
    let reply = serde_json::from_str(line).unwrap_or_else(|e| panic!("reply {line:?}: {e}"));
    (out.status.success(), reply)
}

/// A raw connection: lines in, reply lines out.
pub struct Raw {
    /// The socket (write raw bytes to it).
    pub stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Raw {
    /// Sends `line` plus a newline and reads one reply.
    pub fn ask(&mut self, line: &str) -> Value {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
        self.reply()
    }

    /// Reads one reply line.
    pub fn reply(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read reply");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?}: {e}"))
    }

    /// True if the server closed the connection (EOF within 5 s).
    pub fn is_closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }
}

/// A client process holding one connection.
pub struct Relay {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Relay {
    /// Sends `line` through it and returns the reply.
    pub fn ask(&mut self, line: &str) -> Value {
        writeln!(self.stdin, "{line}").expect("relay stdin");
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).expect("relay stdout");
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("relay reply {reply:?}: {e}"))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
