//! The one transport under the protocol: a Unix socket for agents on this
//! host, TCP for remote ones, behind one [`Stream`] type so both ends handle
//! them alike; connecting with a deadline (an unreachable orchestrator must
//! not stall the agent's tick); and binding a Unix socket that replaces only
//! a stale socket, never another file, and never a live listener.

use std::{
    fmt, io,
    net::{Shutdown, TcpStream, ToSocketAddrs as _},
    os::unix::{
        fs::{FileTypeExt as _, PermissionsExt as _},
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    time::Duration,
};

/// Where a peer listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A Unix socket path.
    Unix(PathBuf),
    /// `host:port` over TCP.
    Tcp(String),
}

impl Target {
    /// `tcp:HOST:PORT` for TCP, anything else is a Unix socket path.
    pub fn parse(text: &str) -> Self {
        match text.strip_prefix("tcp:") {
            Some(addr) => Target::Tcp(addr.to_owned()),
            None => Target::Unix(PathBuf::from(text)),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// A connected stream of either kind.
#[derive(Debug)]
pub enum Stream {
    /// A local peer.
    Unix(UnixStream),
    /// A remote peer.
    Tcp(TcpStream),
}

impl Stream {
    /// Connects to `target`, giving up after `timeout` (per address tried,
    /// for TCP). Reads and writes then time out after `timeout` too, until
    /// changed.
    pub fn connect(target: &Target, timeout: Duration) -> io::Result<Self> {
        let stream = match target {
            // A Unix connect does not wait on a network: it succeeds, is
            // refused, or fails at once.
            Target::Unix(p) => Stream::Unix(UnixStream::connect(p)?),
            Target::Tcp(a) => Stream::Tcp(connect_tcp(a, timeout)?),
        };
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(stream)
    }

    /// True for a Unix socket (a peer on this host).
    pub fn is_local(&self) -> bool {
        matches!(self, Stream::Unix(_))
    }

    /// A second handle on the same connection (one reader, one writer).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    /// Longest wait of one read (None: forever).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
        }
    }

    /// Longest wait of one write (None: forever).
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tcp(s) => s.set_write_timeout(t),
        }
    }

    /// Ends both directions: a thread blocked reading the other handle
    /// returns.
    pub fn shutdown(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
        }
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Self {
        Stream::Unix(s)
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        // Frames are small and each answers a tick: no Nagle delay.
        let _ = s.set_nodelay(true);
        Stream::Tcp(s)
    }
}

impl io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl io::Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// `TcpStream::connect` has no deadline; a blackholed address would hold
/// the caller for the kernel's SYN retries (about two minutes).
fn connect_tcp(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} resolves to no address"),
        )
    }))
}

/// Why a Unix socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The socket's folder could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another process listens on the path already.
    #[error("{path} is in use by another process")]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something that is not a socket is in the way: it is never removed.
    #[error("{path} exists and is not a socket; remove it or choose another path")]
    NotSocket {
        /// The path.
        path: PathBuf,
    },
    /// Removing a stale socket, binding, or setting the mode failed.
    #[error("cannot set up the socket {path}: {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Binds a Unix socket at `path` with permission bits `mode`, creating its
/// folder. A socket file nobody listens on (left by a crash) is replaced;
/// a live one, or any file that is not a socket, is an error.
pub fn bind_unix(path: &Path, mode: u32) -> Result<UnixListener, BindError> {
    let socket_err = |source| BindError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| BindError::Dir {
            path: dir.to_owned(),
            source,
        })?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(BindError::NotSocket {
                path: path.to_owned(),
            });
        }
        if UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse {
                path: path.to_owned(),
            });
        }
        std::fs::remove_file(path).map_err(socket_err)?;
    }
    let listener = UnixListener::bind(path).map_err(socket_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(socket_err)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("shadow-transport-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn parses_targets() {
        assert_eq!(
            Target::parse("tcp:10.0.0.1:7370"),
            Target::Tcp("10.0.0.1:7370".into())
        );
        assert_eq!(
            Target::parse("/run/x.sock"),
            Target::Unix("/run/x.sock".into())
        );
        assert_eq!(Target::parse("tcp:h:1").to_string(), "tcp:h:1");
    }

    #[test]
    fn binds_replaces_only_stale_sockets_and_never_other_files() {
        let dir = temp("bind");
        let path = dir.join("sub/s.sock");
        let live = bind_unix(&path, 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            bind_unix(&path, 0o600),
            Err(BindError::InUse { .. })
        ));
        drop(live);
        // The file stays behind, nobody listens: stale, replaced.
        let again = bind_unix(&path, 0o660).unwrap();
        drop(again);
        let file = dir.join("precious");
        std::fs::write(&file, "keep").unwrap();
        assert!(matches!(
            bind_unix(&file, 0o600),
            Err(BindError::NotSocket { .. })
        ));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn both_kinds_carry_bytes() {
        let dir = temp("carry");
        let path = dir.join("s.sock");
        let unix = bind_unix(&path, 0o600).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let targets = [
            Target::Unix(path.clone()),
            Target::Tcp(tcp.local_addr().unwrap().to_string()),
        ];
        for target in &targets {
            let mut client = Stream::connect(target, Duration::from_secs(2)).unwrap();
            let mut server: Stream = match target {
                Target::Unix(_) => unix.accept().unwrap().0.into(),
                Target::Tcp(_) => tcp.accept().unwrap().0.into(),
            };
            assert_eq!(client.is_local(), matches!(target, Target::Unix(_)));
            client.write_all(b"ping").unwrap();
            let mut buf = [0; 4];
            server.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"ping");
            server.shutdown().unwrap();
            assert_eq!(client.read(&mut buf).unwrap(), 0, "{target}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nothing_listening_is_an_error_not_a_hang() {
        let dir = temp("none");
        let e = Stream::connect(&Target::Unix(dir.join("no.sock")), Duration::from_secs(1));
        assert!(e.is_err());
        // A port nobody listens on, on loopback: refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = Stream::connect(&Target::Tcp(port.to_string()), Duration::from_secs(1));
        assert!(e.is_err());
    }
}
