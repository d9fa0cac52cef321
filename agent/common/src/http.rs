//! The `/metrics` endpoint both binaries serve: a bare HTTP/1.1 responder
//! (one request per connection, bounded reads and timeouts), so that no
//! web framework runs in a privileged process. Each client is answered on a
//! thread of its own, at most [`CLIENTS`] at once, so a slow or silent
//! client delays nobody else's scrape; beyond that, connections are closed
//! at once.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpListener},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

/// Clients answered at once.
pub const CLIENTS: usize = 8;

/// The longest a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` on `addr`, the body made by `encode` at each
/// scrape; returns the bound address (port 0 picks one).
pub fn serve(
    addr: &str,
    encode: impl Fn() -> String + Send + Sync + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let encode = Arc::new(encode);
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let taken = busy.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < CLIENTS).then_some(n + 1)
                });
                if taken.is_err() {
                    continue; // dropped: closed at once
                }
                let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
                let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
                let (encode, done) = (encode.clone(), busy.clone());
                let spawned = std::thread::Builder::new()
                    .name("metrics-client".into())
                    .spawn(move || {
                        respond(stream, &*encode);
                        done.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    busy.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok(bound)
}

/// One request, one response, then close. Only the request line is looked
/// at (bounded: at most 8 KiB read).
fn respond(mut stream: std::net::TcpStream, encode: &dyn Fn() -> String) {
    let mut line = String::new();
    let mut reader = BufReader::new((&stream).take_bounded());
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let ok = line.starts_with("GET /metrics ") || line.starts_with("GET / ");
    let (status, body) = if ok {
        ("200 OK", encode())
    } else {
        ("404 Not Found", "only GET /metrics is served\n".to_owned())
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A reader that stops after 8 KiB, so a peer cannot make the server
/// buffer an endless request line.
trait TakeBounded: std::io::Read + Sized {
    fn take_bounded(self) -> std::io::Take<Self> {
        self.take(8192)
    }
}
impl<R: std::io::Read> TakeBounded for R {}

#[cfg(test)]
mod tests {
    use std::{
        io::Read as _,
        net::TcpStream,
        time::{Duration, Instant},
    };

    use super::*;

    #[test]
    fn a_silent_client_does_not_hold_up_a_scrape() {
        let addr = serve("127.0.0.1:0", || "up 1\n".to_owned()).unwrap();
        let _silent: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("up 1\n"), "{answer}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "answered after {:?}",
            start.elapsed()
        );
    }
}
