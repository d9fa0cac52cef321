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

#[test]
fn a_handshake_trickled_a_byte_at_a_time_is_cut_at_the_deadline() {
    let (_server, events, addr) = server();
    let mut s = TcpStream::connect(addr).unwrap();
    let frame =
        shadow_wire::encode(&Message::Hello(hello("vm-1", "vm-1")), Compression::Off).unwrap();
    let start = Instant::now();
    let mut closed_after = None;
    // One byte every 400 ms: each read is well within any per-read
    // timeout, and the 24-byte Hello would take ~10 s.
    for byte in frame.iter().cycle().take(60) {
        use std::io::Write as _;
        if s.write_all(&[*byte]).is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    let closed_after = closed_after.expect("the orchestrator never closed the trickle");
    assert!(
        closed_after < HANDSHAKE + Duration::from_secs(2),
        "closed after {closed_after:?}"
    );
    assert!(connected(&events).is_none());
}

#[test]
fn connections_beyond_the_cap_are_refused_as_busy() {
    let (_server, _events, addr) = server();
    let idle: Vec<TcpStream> = (0..TCP_CONNS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // Let the listener take them all (they are idle: no Hello yet).
    std::thread::sleep(Duration::from_millis(300));
    let mut s = dial(addr);
    match shadow_wire::read_message(&mut s, &mut Vec::new()) {
        Ok(Message::Error(f)) => assert_eq!(f.code, Code::Busy),
        other => panic!("expected Busy, got {other:?}"),
    }
    drop(idle);
}

/// A Unix-socket server and a connected local agent.
fn local(name: &str) -> (Server, Receiver<Event>, std::path::PathBuf) {
    let path =
        std::env::temp_dir().join(format!("shadow-server-{name}-{}.sock", std::process::id()));
    let (server, events) = Server::new("orchestrator");
    server.listen_unix(&path).unwrap();
    (server, events, path)
}

fn usage_message(path: &str) -> Message {
    Message::Usage(shadow_wire::UsageBatch {
        at_ms: 1,
        interval_ms: 100,
        components: vec![shadow_wire::Component {
            path: path.into(),
            id: 1,
        }],
        usage: vec![shadow_wire::Usage {
            component: 0,
            resource: shadow_wire::Resource::Cpu,
            value: 1.0,
        }],
    })
}

#[test]
fn a_flooding_peer_holds_back_only_itself() {
    use shadow_wire::transport::Target;
    let (_server, events, path) = local("flood");
    let open = |name: &str| {
        let mut s = Stream::connect(&Target::Unix(path.clone()), Duration::from_secs(2)).unwrap();
        shadow_wire::connect(&mut s, hello(name, "")).unwrap();
        s
    };
    let mut good = open("good");
    let mut flooder = open("flooder");
    let flood = std::thread::spawn(move || {
        while shadow_wire::write_message(&mut flooder, &usage_message("/flood"), Compression::Off)
            .is_ok()
        {}
    });
    // A slow decision loop: the flood fills whatever queue it may.
    let mut conns = HashMap::new();
    let mut flooded = 0;
    while flooded < 50 {
        match events.recv_timeout(Duration::from_secs(5)).expect("events") {
            Event::Connected { conn, hello, .. } => {
                conns.insert(conn, hello.host);
            }
            Event::Message { .. } => flooded += 1,
            Event::Closed { .. } => {}
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    shadow_wire::write_message(&mut good, &usage_message("/good"), Compression::Off).unwrap();
    let mut ahead = 0;
    loop {
        match events.recv_timeout(Duration::from_secs(5)).expect("events") {
            Event::Message { conn, .. } if conns[&conn] == "good" => break,
            Event::Message { .. } => ahead += 1,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        ahead <= 2 * CREDITS,
        "{ahead} flood messages went ahead of the good agent's"
    );
    drop(events);
    drop(good);
    let _ = std::fs::remove_file(&path);
    drop(flood);
}
