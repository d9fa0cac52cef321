//! The `/metrics` endpoint both binaries serve: a bare HTTP/1.1 responder
//! on its own thread (one request per connection, bounded reads and
//! timeouts), so that no web framework runs in a privileged process.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpListener},
    time::Duration,
};

/// Serves `GET /metrics` on `addr` from a thread, the body made by
/// `encode` at each scrape; returns the bound address (port 0 picks one).
pub fn serve(
    addr: &str,
    encode: impl Fn() -> String + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                respond(stream, &encode);
            }
        })?;
    Ok(bound)
}

/// One request, one response, then close. Only the request line is looked
/// at (bounded: at most 8 KiB read).
fn respond(mut stream: std::net::TcpStream, encode: &impl Fn() -> String) {
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
