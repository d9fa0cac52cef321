//! Accepting agents over the Unix socket (local) and TCP (remote).
//!
//! Each connection has its own reader thread, and its own writer thread fed
//! through a small bounded queue, so a slow or dead agent stalls nobody but
//! itself: the decision loop never blocks on a socket. Whatever a peer
//! sends is decoded by [`shadow_wire`], which bounds and validates
//! it; a bad frame ends that one connection with a logged reason (and an
//! Error frame to the peer saying why).
//!
//! Bounds (`limits.rs`): at most [`UNIX_CONNS`] and [`TCP_CONNS`]
//! connections (more are refused with `Busy`); the whole handshake within
//! [`HANDSHAKE`]; at most [`CREDITS`] messages per connection waiting for
//! the decision loop, so a flooding peer is held back alone.

use std::{
    collections::HashMap,
    io,
    mem::Discriminant,
    net::TcpListener,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, Sender, SyncSender, TrySendError, channel, sync_channel},
    },
    thread,
    time::{Duration, Instant},
};

use shadow_wire::{
    Code, Compression, Failure, Hello, Message, Require,
    auth::Keys,
    transport::{BindError, Stream, bind_unix},
};

/// A connection that says nothing for this long is closed (agents send a
/// heartbeat far more often).
const IDLE: Duration = Duration::from_secs(120);
/// The whole handshake (Hello, and the challenge and proof over TCP) must
/// be done within this, however slowly the bytes come.
pub const HANDSHAKE: Duration = Duration::from_secs(5);
/// A write that takes longer than this means the peer is not reading.
const WRITE: Duration = Duration::from_secs(2);
/// Frames queued for one peer before new ones are dropped.
const OUTBOX: usize = 4;
/// Connections served at once on the Unix socket (root's agents).
pub const UNIX_CONNS: usize = 64;
/// Connections served at once over TCP, handshakes included.
pub const TCP_CONNS: usize = 256;
/// Messages of one connection waiting for the decision loop at once; its
/// reader stops reading the socket until the loop has handled one.
pub const CREDITS: usize = 8;
/// How long a reader waits for a credit before it gives up on a decision
/// loop that does not move.
const CREDIT_PATIENCE: Duration = IDLE;

/// A refused peer's kind of refusal is logged at most once per this, with
/// how many were not logged meanwhile.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// (Peer, kind) pairs remembered for that; when full, those older than
/// [`REFUSAL_LOG_EVERY`] are forgotten, and until then new ones go unlogged.
const REFUSAL_PEERS: usize = 4096;

/// Who a connected peer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// An agent of this host (the Unix socket).
    Local,
    /// A remote agent that proved it holds the key of this name.
    Key(String),
    /// A remote agent on an insecure listener (`insecure_tcp`): its
    /// Hello's claim, unchecked.
    Claimed(String),
}

impl Identity {
    /// The host key its components are booked under (None: this host).
    pub fn host(&self) -> Option<&str> {
        match self {
            Identity::Local => None,
            Identity::Key(name) | Identity::Claimed(name) => Some(name),
        }
    }
}

/// How TCP peers must prove who they are.
pub enum TcpAuth {
    /// With one of these keys (`[[peer]]` in the configuration).
    Keys(Keys),
    /// Not at all (`insecure_tcp = true`, no `[[peer]]`).
    Insecure,
}

/// What the connections tell the decision loop.
pub enum Event {
    /// A peer completed the handshake.
    Connected {
        /// Connection number.
        conn: u64,
        /// Its Hello.
        hello: Hello,
        /// Who it is.
        identity: Identity,
        /// Frames to send it.
        outbox: Outbox,
    },
    /// A message from a connected peer (already validated).
    Message {
        /// Connection number.
        conn: u64,
        /// The message.
        message: Message,
        /// Its place in the queue: dropping the event gives it back.
        credit: Credit,
    },
    /// A connection that had completed the handshake ended.
    Closed {
        /// Connection number.
        conn: u64,
        /// Why, for the log.
        reason: String,
    },
}

/// Sends frames to one peer without waiting.
#[derive(Clone)]
pub struct Outbox(SyncSender<Message>);

impl Outbox {
    /// Queues `message`; false if the peer's queue is full (it is not
    /// keeping up) or it is gone. The message is dropped then: reservation
    /// state is resent, so the next one supersedes it.
    pub fn send(&self, message: Message) -> bool {
        match self.0.try_send(message) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Why a listener could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The Unix socket (its folder, a live or foreign file in the way).
    #[error(transparent)]
    Unix(#[from] BindError),
    /// The TCP address.
    #[error("cannot listen on TCP {addr}: {source}")]
    Tcp {
        /// The address asked for.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The accepting thread.
    #[error("cannot start a listener thread: {0}")]
    Thread(#[source] io::Error),
}

/// The listeners' shared state.
pub struct Server {
    name: Arc<str>,
    /// Unbounded: what is queued is bounded by connections x [`CREDITS`].
    events: Sender<Event>,
    next: Arc<AtomicU64>,
    refusals: Arc<Refusals>,
}

/// Refused peers, for a log line per peer and kind of refusal per
/// [`REFUSAL_LOG_EVERY`]: a flooding peer cannot fill the log, and one
/// kind of mistake does not hide another (the kinds are few).
#[derive(Default)]
struct Refusals(Mutex<HashMap<RefusalKey, (Instant, u64)>>);

/// A peer's name and the kind of its refusal.
type RefusalKey = (String, Discriminant<shadow_wire::Error>);

impl Refusals {
    fn refused(&self, peer: &str, conn: u64, reason: &shadow_wire::Error) {
        let now = Instant::now();
        let key = (peer.to_owned(), std::mem::discriminant(reason));
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REFUSAL_PEERS && !seen.contains_key(&key) {
            seen.retain(|_, (at, _)| now.duration_since(*at) < REFUSAL_LOG_EVERY);
            if seen.len() >= REFUSAL_PEERS {
                return;
            }
        }
        match seen.get_mut(&key) {
            Some((at, suppressed)) if now.duration_since(*at) < REFUSAL_LOG_EVERY => {
                *suppressed += 1;
            }
            _ => {
                let suppressed = seen.insert(key, (now, 0)).map_or(0, |(_, n)| n);
                tracing::warn!(peer, conn, %reason, suppressed,
                    "peer refused (logged once a minute per peer and kind; `suppressed` such refusals since the last line)");
            }
        }
    }
}

/// A local peer's name in the logs: its pid and uid from the kernel, so
/// that one local process's refusals do not hide another's.
fn unix_peer(stream: &std::os::unix::net::UnixStream) -> String {
    match shadow_common::peer::credentials(stream) {
        Ok((pid, uid, _)) => format!("unix pid {pid} uid {uid}"),
        Err(_) => "unix".into(),
    }
}

impl Server {
    /// A server calling itself `name` in Welcome frames, and the receiving
    /// end of its events.
    pub fn new(name: &str) -> (Self, Receiver<Event>) {
        let (events, rx) = channel();
        let server = Self {
            name: name.into(),
            events,
            next: Arc::new(AtomicU64::new(1)),
            refusals: Arc::default(),
        };
        (server, rx)
    }

    /// Listens on a Unix socket at `path` (mode 0600: agents run as root).
    /// A stale socket left by a crash is replaced; a live one (another
    /// orchestrator) or a file that is not a socket is an error.
    pub fn listen_unix(&self, path: &Path) -> Result<(), ListenError> {
        let listener = bind_unix(path, 0o600)?;
        let this = self.handle();
        let slots = Slots::new(UNIX_CONNS);
        thread::Builder::new()
            .name("listen-unix".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    match stream {
                        Ok(s) => {
                            let peer = unix_peer(&s);
                            this.serve(s.into(), peer, None, &slots)
                        }
                        Err(e) => tracing::warn!(cause = %e, "accepting on the Unix socket"),
                    }
                }
            })
            .map_err(ListenError::Thread)?;
        Ok(())
    }

    /// Listens on TCP at `addr` for remote agents, who authenticate as
    /// `auth` says. Returns the bound address (useful with port 0).
    pub fn listen_tcp(
        &self,
        addr: &str,
        auth: TcpAuth,
    ) -> Result<std::net::SocketAddr, ListenError> {
        let tcp_err = |source| ListenError::Tcp {
            addr: addr.to_owned(),
            source,
        };
        let listener = TcpListener::bind(addr).map_err(tcp_err)?;
        let bound = listener.local_addr().map_err(tcp_err)?;
        let this = self.handle();
        let auth = Arc::new(auth);
        let slots = Slots::new(TCP_CONNS);
        thread::Builder::new()
            .name("listen-tcp".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    match stream {
                        Ok(s) => {
                            let peer = s
                                .peer_addr()
                                .map_or_else(|_| "?".into(), |a| a.ip().to_string());
                            this.serve(s.into(), peer, Some(auth.clone()), &slots);
                        }
                        Err(e) => tracing::warn!(cause = %e, "accepting on TCP"),
                    }
                }
            })
            .map_err(ListenError::Thread)?;
        Ok(bound)
    }

    fn handle(&self) -> Server {
        Server {
            name: self.name.clone(),
            events: self.events.clone(),
            next: self.next.clone(),
            refusals: self.refusals.clone(),
        }
    }

    /// Starts the threads of one connection from `peer` (an address, for
    /// logs), if the listener has a free slot; `auth` is None on the Unix
    /// socket.
    fn serve(&self, stream: Stream, peer: String, auth: Option<Arc<TcpAuth>>, slots: &Arc<Slots>) {
        let conn = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = slots.take() else {
            busy(stream);
            let e = shadow_wire::Error::Refused {
                code: Code::Busy,
                message: "at the connection limit".into(),
            };
            self.refusals.refused(&peer, conn, &e);
            return;
        };
        let name = self.name.clone();
        let events = self.events.clone();
        let refusals = self.refusals.clone();
        let spawned = thread::Builder::new()
            .name(format!("conn-{conn}"))
            .spawn(move || {
                let _slot = slot;
                let reason = match converse(conn, stream, auth.as_deref(), &name, &events) {
                    Ok(()) => "closed by peer".to_owned(),
                    Err(Ended::Refused(e)) => {
                        refusals.refused(&peer, conn, &e);
                        return;
                    }
                    Err(Ended::After(e)) => e.to_string(),
                };
                let _ = events.send(Event::Closed { conn, reason });
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a thread for connection {conn}: {e}");
        }
    }
}

/// How a conversation ended badly: before the handshake completed (the
/// decision loop never heard of it) or after.
enum Ended {
    Refused(shadow_wire::Error),
    After(shadow_wire::Error),
}

/// Handshake, then messages until the peer leaves or misbehaves.
fn converse(
    conn: u64,
    mut stream: Stream,
    auth: Option<&TcpAuth>,
    name: &str,
    events: &Sender<Event>,
) -> Result<(), Ended> {
    let setup = |stream: &mut Stream| -> Result<_, shadow_wire::Error> {
        let require = match auth {
            Some(TcpAuth::Keys(keys)) => Require::Key(keys),
            None | Some(TcpAuth::Insecure) => Require::Nothing,
        };
        let accepted =
            shadow_wire::accept_with(&mut Deadline::new(stream, HANDSHAKE, WRITE), name, require)?;
        stream.set_read_timeout(Some(IDLE))?;
        stream.set_write_timeout(Some(WRITE))?;
        let outbox = spawn_writer(conn, stream.try_clone()?)?;
        Ok((accepted, outbox))
    };
    let (accepted, outbox) = setup(&mut stream).map_err(Ended::Refused)?;
    let identity = match (auth, accepted.key) {
        (None, _) => Identity::Local,
        (Some(_), Some(key)) => Identity::Key(key),
        (Some(_), None) => Identity::Claimed(accepted.hello.host.clone()),
    };
    let connected = Event::Connected {
        conn,
        hello: accepted.hello,
        identity,
        outbox,
    };
    if events.send(connected).is_err() {
        return Ok(());
    }
    messages(conn, &mut stream, events).map_err(Ended::After)
}

/// Validated messages from a welcomed peer to the decision loop.
fn messages(
    conn: u64,
    stream: &mut Stream,
    events: &Sender<Event>,
) -> Result<(), shadow_wire::Error> {
    let mut buf = Vec::new();
    let credits = Credits::new(CREDITS);
    loop {
        // Read no more until the loop has room for this connection.
        let Some(credit) = credits.take(CREDIT_PATIENCE) else {
            let _ = stream.shutdown();
            return Err(shadow_wire::Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "the decision loop took none of this connection's messages",
            )));
        };
        let message = match shadow_wire::read_message(stream, &mut buf) {
            Ok(m) => m,
            Err(shadow_wire::Error::Closed) => return Ok(()),
            Err(e) => {
                shadow_wire::refuse(stream, &e);
                let _ = stream.shutdown();
                return Err(e);
            }
        };
        match message {
            Message::Predictions(_) | Message::Usage(_) => {}
            Message::Error(f) => {
                return Err(shadow_wire::Error::Refused {
                    code: f.code,
                    message: f.message,
                });
            }
            other => {
                let e = shadow_wire::Error::Unexpected {
                    expected: "Predictions or Usage",
                    got: other.kind(),
                };
                shadow_wire::refuse(stream, &e);
                let _ = stream.shutdown();
                return Err(e);
            }
        }
        if events
            .send(Event::Message {
                conn,
                message,
                credit,
            })
            .is_err()
        {
            return Ok(());
        }
    }
}

/// Tells a peer over the connection limit to come back later, without
/// waiting on it.
fn busy(mut stream: Stream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let failure = Failure {
        code: Code::Busy,
        message: "the orchestrator is at its connection limit; retry later".into(),
    };
    let _ = shadow_wire::write_message(&mut stream, &Message::Error(failure), Compression::Off);
    let _ = stream.shutdown();
}

/// A thread that writes queued frames to the peer; a failed or slow write
/// shuts the socket, which ends the reader too.
fn spawn_writer(conn: u64, mut stream: Stream) -> io::Result<Outbox> {
    let (tx, rx) = sync_channel::<Message>(OUTBOX);
    thread::Builder::new()
        .name(format!("conn-{conn}-tx"))
        .spawn(move || {
            for message in rx {
                if let Err(e) = shadow_wire::write_message(&mut stream, &message, Compression::Auto)
                {
                    tracing::debug!("connection {conn}: write failed: {e}");
                    let _ = stream.shutdown();
                    return;
                }
            }
        })?;
    Ok(Outbox(tx))
}

mod limits;
#[cfg(test)]
mod tests;

pub use limits::Credit;
use limits::{Credits, Deadline, Slots};
