//! A small client for programs that want to announce their demand.
//!
//! ```no_run
//! use shadow_agent::hint::{Reply, Request, client::Client};
//!
//! let mut client = Client::connect(shadow_agent::hint::DEFAULT_SOCKET)?;
//! let reply = client.send(&Request {
//!     cpu: Some(4.0),
//!     memory: Some(shadow_agent::hint::protocol::Amount::Text("2GiB".into())),
//!     start_in: Some("30s".into()),
//!     duration: Some("5m".into()),
//!     reason: Some("nightly export".into()),
//!     ..Request::default()
//! })?;
//! match reply {
//!     Reply::Accepted(a) => println!("hint {} live, trust {}", a.id, a.trust),
//!     Reply::Refused(r) => eprintln!("refused ({:?}): {}", r.code, r.message),
//!     Reply::Cancelled { .. } => {}
//! }
//! # Ok::<(), shadow_agent::hint::client::Error>(())
//! ```
//!
//! The server identifies the caller from the kernel, so the hint applies
//! to the calling process's cgroup unless `cgroup` names one below it.

use std::{
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use super::protocol::{Reply, Request};

/// How long to wait for the agent's reply.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Longest reply line accepted.
const MAX_REPLY: u64 = 64 * 1024;

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be reached.
    #[error("cannot connect to the hint socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Sending or receiving failed.
    #[error("hint socket: {0}")]
    Io(#[from] io::Error),
    /// The agent closed the connection without a reply.
    #[error("the agent closed the connection without replying")]
    Closed,
    /// The reply was not a reply line.
    #[error("unreadable reply {line:?}: {source}")]
    Reply {
        /// What came back.
        line: String,
        /// Why it did not parse.
        #[source]
        source: serde_json::Error,
    },
}

/// A connection to the agent's hint socket; several requests may be sent
/// over it, each answered in order.
pub struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    /// The last reply line exactly as received.
    last: String,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let connect = |source| Error::Connect {
            path: path.to_owned(),
            source,
        };
        let writer = UnixStream::connect(path).map_err(connect)?;
        writer.set_read_timeout(Some(TIMEOUT))?;
        writer.set_write_timeout(Some(TIMEOUT))?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(Self {
            writer,
            reader,
            last: String::new(),
        })
    }

    /// Sends `request` and returns the agent's reply.
    pub fn send(&mut self, request: &Request) -> Result<Reply, Error> {
        let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        self.last.clear();
        let n = (&mut self.reader)
            .take(MAX_REPLY)
            .read_line(&mut self.last)?;
        if n == 0 {
            return Err(Error::Closed);
        }
        serde_json::from_str(self.last.trim_end()).map_err(|source| Error::Reply {
            line: self.last.trim_end().to_owned(),
            source,
        })
    }

    /// Cancels hint `id`.
    pub fn cancel(&mut self, id: u64) -> Result<Reply, Error> {
        self.send(&Request {
            cancel: Some(id),
            ..Request::default()
        })
    }

    /// The last reply line as the agent sent it (for printing verbatim).
    pub fn last_line(&self) -> &str {
        self.last.trim_end()
    }
}
