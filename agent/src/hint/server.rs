//! The hint socket's server: a Unix stream socket, one thread per
//! connection (at most `max_connections`), each reading bounded lines with
//! an idle timeout. A connection only ever touches the shared [`Ledger`]
//! under a short lock, so one that misbehaves, stalls or dies costs the
//! others nothing.

use std::{
    io::{self, BufRead, BufReader},
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use shadow_wire::transport::{BindError, bind_unix};

use super::{
    ClientLimits, Ledger,
    peer::{self, Caller},
    protocol::{Code, Command, Refusal, Reply, parse_line},
};

/// A reply that takes longer to write means the client is not reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and how to listen.
#[derive(Clone, Debug)]
pub struct Config {
    /// Socket path.
    pub path: PathBuf,
    /// Group owning the socket (mode 0660); None: the agent's own group.
    pub group: Option<String>,
    /// The bounds.
    pub limits: ClientLimits,
    /// The cgroup v2 mount: a named cgroup must exist under it.
    pub v2_root: PathBuf,
    /// Only cgroups at or below this one are observed (`observe --cgroup`);
    /// hints for others could not be fused and are refused.
    pub scope: Option<String>,
}

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket file: its folder, a live socket or another file in the way.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// Setting the socket's group, or starting its thread.
    #[error("cannot set up the socket {path}: {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `--hint-group` names no group on this host.
    #[error("no group named {0:?}")]
    Group(String),
    /// The socket could not be given to `--hint-group`: its members could
    /// not hint.
    #[error(
        "cannot give the hint socket {path} to group {group:?}: {source}; as root without CAP_CHOWN (a service's CapabilityBoundingSet=) only the agent's own groups can be set: grant CAP_CHOWN (dist/shadow-agent.service does) or unset hint_group"
    )]
    Chown {
        /// The socket path.
        path: PathBuf,
        /// The group asked for.
        group: String,
        /// Why (EPERM without CAP_CHOWN).
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// True when the hint socket cannot be what the configuration asks
    /// (its group): the agent refuses to start rather than drop hints
    /// silently. Otherwise (another agent holds the socket) it observes
    /// without hints.
    pub fn is_configuration(&self) -> bool {
        matches!(self, Error::Group(_) | Error::Chown { .. })
    }
}

/// State shared by the connections.
struct Shared {
    config: Config,
    ledger: Arc<Mutex<Ledger>>,
    open: AtomicUsize,
}

/// A listening hint socket; its file is removed on drop.
pub struct Server {
    path: PathBuf,
}

impl Server {
    /// Binds the socket (0660, group `config.group`) and serves it on a
    /// background thread, sharing `ledger` with the forecasts.
    pub fn start(config: Config, ledger: Arc<Mutex<Ledger>>) -> Result<Self, Error> {
        let path = config.path.clone();
        let listener = bind(&path, config.group.as_deref())?;
        let shared = Arc::new(Shared {
            config,
            ledger,
            open: AtomicUsize::new(0),
        });
        let sock_err = |source| Error::Socket {
            path: path.clone(),
            source,
        };
        std::thread::Builder::new()
            .name("hint-accept".into())
            .spawn(move || accept(&listener, &shared))
            .map_err(sock_err)?;
        Ok(Self { path })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds (replacing only a stale socket) with mode 0660, then gives the
/// socket to `group`. A group that cannot be set is an error, not a socket
/// its members silently cannot reach.
pub(super) fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, Error> {
    let gid = group
        .map(|g| gid_of(g).ok_or_else(|| Error::Group(g.to_owned())))
        .transpose()?;
    let listener = bind_unix(path, 0o660)?;
    if let (Some(gid), Some(group)) = (gid, group)
        && let Err(source) = std::os::unix::fs::chown(path, None, Some(gid))
    {
        let _ = std::fs::remove_file(path);
        return Err(Error::Chown {
            path: path.to_owned(),
            group: group.to_owned(),
            source,
        });
    }
    Ok(listener)
}

/// A group's id by name (or a number).
fn gid_of(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let c_name = std::ffi::CString::new(name).ok()?;
    let mut group: libc::group = unsafe {
        // SAFETY: `group` is plain data; getgrnam_r fills it.
        std::mem::zeroed()
    };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the sizes given; the result points
    // into `group` (or is null) and is read before `buf` goes away.
    let rc = unsafe {
        libc::getgrnam_r(
            c_name.as_ptr(),
            &raw mut group,
            buf.as_mut_ptr(),
            buf.len(),
            &raw mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(group.gr_gid)
}

fn accept(listener: &UnixListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(cause = %e, "hint socket: accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let max = shared.config.limits.max_connections;
        if shared.open.fetch_add(1, Ordering::AcqRel) >= max {
            shared.open.fetch_sub(1, Ordering::AcqRel);
            let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
            let busy = Refusal::new(Code::Busy, format!("{max} connections open already"));
            let _ = write_reply(&mut stream, &Reply::Refused(busy));
            continue;
        }
        let shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("hint-conn".into())
            .spawn(move || {
                serve(stream, &shared);
                shared.open.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            tracing::warn!(cause = %e, "hint socket: cannot start a connection thread");
        }
    }
}

/// What [`read_line`] got.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line (in the buffer, without its newline).
    Full,
    /// The peer closed (possibly mid-line: the partial line is dropped).
    Closed,
    /// Longer than the limit.
    TooLong,
    /// The line did not complete within the idle timeout.
    Idle,
}

/// Reads one line of at most `max` bytes into `buf`, never holding more
/// than `max` + one read's worth.
fn read_line(r: &mut impl BufRead, max: usize, idle: Duration, buf: &mut Vec<u8>) -> Line {
    buf.clear();
    let started = Instant::now();
    loop {
        let available = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Line::Idle;
            }
            Err(_) => return Line::Closed,
        };
        if available.is_empty() {
            return Line::Closed;
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (available.len(), false),
        };
        if buf.len() + take > max {
            return Line::TooLong;
        }
        buf.extend_from_slice(&available[..take]);
        r.consume(take + usize::from(done));
        if done {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Line::Full;
        }
        // A trickle of bytes must not hold a connection forever.
        if started.elapsed() > idle {
            return Line::Idle;
        }
    }
}

fn write_reply(w: &mut impl io::Write, reply: &Reply) -> io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)
}

/// Serves one connection until it closes, idles, or sends garbage.
fn serve(stream: UnixStream, shared: &Shared) {
    let limits = shared.config.limits;
    let cred = match shadow_common::peer::credentials(&stream) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(cause = %e, "hint socket: no peer credentials");
            return;
        }
    };
    // Taken now, while the peer that connected is the process behind the
    // pid; each request then checks it is still there (peer::identify).
    let pidfd = shadow_common::peer::pidfd(&stream, cred.0)
        .inspect_err(
            |e| tracing::warn!(pid = cred.0, cause = %e, "hint socket: no pidfd for the peer"),
        )
        .ok();
    let setup = stream
        .set_read_timeout(Some(limits.idle))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
        .and_then(|()| stream.try_clone());
    let mut writer = match setup {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(cause = %e, "hint socket: connection setup failed");
            return;
        }
    };
    let mut reader = BufReader::with_capacity(limits.max_line.min(64 * 1024), stream);
    let mut buf = Vec::new();
    loop {
        let reply = match read_line(&mut reader, limits.max_line, limits.idle, &mut buf) {
            Line::Full if buf.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Full => handle(&buf, cred, pidfd.as_ref(), shared),
            Line::Closed => return,
            Line::TooLong => Reply::Refused(Refusal::new(
                Code::TooLong,
                format!("a line may be at most {} bytes", limits.max_line),
            )),
            Line::Idle => Reply::Refused(Refusal::new(
                Code::Idle,
                format!("no complete line for {:?}", limits.idle),
            )),
        };
        let closes = matches!(&reply, Reply::Refused(r) if r.code.closes());
        match &reply {
            Reply::Refused(r) => {
                tracing::debug!(pid = cred.0, code = ?r.code, message = %r.message, "hint refused");
                lock(&shared.ledger).counts.refused += 1;
            }
            Reply::Accepted(_) => lock(&shared.ledger).counts.accepted += 1,
            _ => {}
        }
        if write_reply(&mut writer, &reply).is_err() || closes {
            return;
        }
    }
}

/// Answers one request line from the peer with credentials `cred` and the
/// pidfd taken at connect.
fn handle(
    line: &[u8],
    (pid, uid, gid): (i32, u32, u32),
    pidfd: Option<&std::os::fd::OwnedFd>,
    shared: &Shared,
) -> Reply {
    let run = || -> Result<Reply, Refusal> {
        let now = shadow_common::host::unix_now();
        let caller = peer::identify(pid, uid, gid, pidfd)?;
        lock(&shared.ledger).admit(&caller.cgroup, now)?;
        match parse_line(line, &shared.config.limits)? {
            Command::Hint(spec) => {
                let target = match &spec.cgroup {
                    Some(c) => peer::normalize(c)?,
                    None => caller.cgroup.clone(),
                };
                check_target(&caller, &target, &shared.config)?;
                let accepted = lock(&shared.ledger).submit(&target, &spec, now)?;
                tracing::info!(
                    id = accepted.id,
                    cgroup = %target,
                    pid,
                    uid,
                    cpu = accepted.amounts.cpu,
                    memory = accepted.amounts.memory,
                    start_in_s = spec.start_in.as_secs_f64(),
                    duration_s = spec.duration.as_secs_f64(),
                    trust = accepted.trust,
                    reason = ?spec.reason.as_deref().unwrap_or(""),
                    "hint accepted"
                );
                Ok(Reply::Accepted(accepted))
            }
            Command::Cancel(id) => {
                let mut ledger = lock(&shared.ledger);
                let target = ledger
                    .cgroup_of(id)
                    .ok_or_else(|| {
                        Refusal::new(Code::NotFound, format!("no live hint with id {id}"))
                    })?
                    .to_owned();
                peer::authorize(&caller, &target)?;
                ledger.cancel(id, now)?;
                tracing::info!(id, cgroup = %target, pid, "hint cancelled");
                Ok(Reply::Cancelled { id })
            }
        }
    };
    run().unwrap_or_else(Reply::Refused)
}

/// The caller may name `target`, it exists, and this agent forecasts it.
fn check_target(caller: &Caller, target: &str, config: &Config) -> Result<(), Refusal> {
    peer::authorize(caller, target)?;
    if !config.v2_root.join(target.trim_start_matches('/')).is_dir() {
        return Err(Refusal::new(
            Code::NoCgroup,
            format!("cgroup {target} does not exist"),
        ));
    }
    if let Some(scope) = &config.scope
        && !crate::cgroups::is_within(target, scope)
    {
        return Err(Refusal::new(
            Code::NotObserved,
            format!("this agent observes only {scope} and below, not {target}"),
        ));
    }
    Ok(())
}

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8], max: usize) -> (Line, Vec<u8>) {
        let mut r = BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let line = read_line(&mut r, max, Duration::from_secs(5), &mut buf);
        (line, buf)
    }

    #[test]
    fn lines_are_bounded() {
        assert_eq!(
            read(b"{\"a\":1}\r\nrest", 16),
            (Line::Full, b"{\"a\":1}".to_vec())
        );
        assert_eq!(read(b"0123456789\n", 10).0, Line::Full);
        assert_eq!(read(b"0123456789a\n", 10).0, Line::TooLong);
        assert_eq!(read(b"0123456789abcdef", 10).0, Line::TooLong);
        assert_eq!(read(b"{\"cpu\":", 64).0, Line::Closed);
        assert_eq!(read(b"", 64).0, Line::Closed);
    }

    #[test]
    fn groups_resolve_by_name_or_number() {
        assert_eq!(gid_of("root"), Some(0));
        assert_eq!(gid_of("1234"), Some(1234));
        assert_eq!(gid_of("no-such-group-here"), None);
    }
}
