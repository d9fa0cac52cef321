//! The server over real sockets on loopback: who a TCP peer is, and who is
//! refused.

use std::{
    net::TcpStream,
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

use shadow_wire::{
    Code, Error,
    auth::{Key, Keys},
    transport::Stream,
};

use super::*;

fn key(byte: u8) -> Key {
    Key::from_hex(&format!("{byte:02x}").repeat(32), "test").unwrap()
}

fn hello(host: &str, key: &str) -> Hello {
    Hello {
        version: shadow_wire::VERSION,
        host: host.into(),
        agent: "test".into(),
        tick_ms: 100,
        key: key.into(),
    }
}

/// A server with one TCP listener on loopback requiring `vm-1`'s key.
fn server() -> (Server, Receiver<Event>, std::net::SocketAddr) {
    let (server, events) = Server::new("orchestrator");
    let keys: Keys = [("vm-1".to_owned(), key(1))].into();
    let addr = server
        .listen_tcp("127.0.0.1:0", TcpAuth::Keys(keys))
        .unwrap();
    (server, events, addr)
}

fn dial(addr: std::net::SocketAddr) -> Stream {
    let s: Stream = TcpStream::connect(addr).unwrap().into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// The next Connected event within a few seconds, if any.
fn connected(events: &Receiver<Event>) -> Option<(Hello, Identity)> {
    let deadline = Instant::now() + Duration::from_secs(3);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(Event::Connected {
                hello, identity, ..
            }) => return Some((hello, identity)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn a_tcp_peer_is_known_by_its_keys_name_never_by_its_claim() {
    let (_server, events, addr) = server();
    let mut s = dial(addr);
    shadow_wire::connect_with(&mut s, hello("vm-2", "vm-1"), Some(&key(1))).unwrap();
    let (hello, identity) = connected(&events).expect("connected");
    assert_eq!(hello.host, "vm-2");
    assert_eq!(identity, Identity::Key("vm-1".into()));
    assert_eq!(identity.host(), Some("vm-1"));
}

#[test]
fn unknown_keys_wrong_keys_and_no_keys_are_refused_with_a_code() {
    let (_server, events, addr) = server();
    let cases = [
        ("vm-1", Some(key(2))),
        ("vm-9", Some(key(1))),
        ("vm-1", None),
    ];
    for (name, key) in cases {
        let mut s = dial(addr);
        match shadow_wire::connect_with(&mut s, hello(name, name), key.as_ref()) {
            Err(Error::Refused {
                code: Code::Unauthenticated,
                ..
            }) => assert!(key.is_some()),
            Err(Error::KeyRequired) => assert!(key.is_none()),
            other => panic!("{name} {key:?}: {other:?}"),
        }
    }
    assert!(connected(&events).is_none(), "nobody got through");
}
