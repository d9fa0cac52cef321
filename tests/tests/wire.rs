//! The orchestrator's side of the wire protocol over a real Unix socket:
//! bad peers are refused with a reason and disconnected, one at a time,
//! while a good agent keeps being served throughout.

use std::{
    io::{Read as _, Write as _},
    os::unix::net::UnixStream,
    time::{Duration, Instant},
};

use shadow_tests::{
    orchestrator::{Orchestrator, TempDir},
    require_root,
};
use shadow_wire::{
    Code, Component, Compression, Hello, Message, Prediction, PredictionBatch, Resource, Source,
    Step, Usage, UsageBatch,
};

fn hello(version: u16) -> Hello {
    Hello {
        version,
        host: "test".into(),
        agent: "wire-test".into(),
        tick_ms: 200,
        key: String::new(),
    }
}

fn connect(o: &Orchestrator) -> UnixStream {
    let s = UnixStream::connect(&o.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads frames until an Error frame or the end; returns the error's code
/// and message, or None if the peer just closed.
fn refusal(s: &mut UnixStream) -> Option<(Code, String)> {
    let mut buf = Vec::new();
    loop {
        match shadow_wire::read_message(s, &mut buf) {
            Ok(Message::Error(f)) => return Some((f.code, f.message)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// True once the orchestrator closed `s` (read returns 0 or fails).
fn closed(s: &mut UnixStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(s.read(&mut byte), Ok(0) | Err(_))
}

/// One component's one-step CPU forecast.
fn cpu_forecast(path: &str, point: f32, upper: f32) -> PredictionBatch {
    PredictionBatch {
        at_ms: 1,
        step_ms: 200,
        components: vec![Component {
            path: path.into(),
            id: 7,
        }],
        predictions: vec![Prediction {
            component: 0,
            resource: Resource::Cpu,
            source: Source::Model,
            quantile: 0.95,
            volatility: 0.1,
            last: point,
            next_report_ms: 5000,
            steps: vec![Step {
                ahead: 1,
                point,
                upper,
            }],
        }],
    }
}

/// What an agent sends each tick: usage, then its forecast.
fn report(s: &mut impl std::io::Write, path: &str, upper: f32) {
    let predictions = cpu_forecast(path, 0.5, upper);
    let usage = UsageBatch {
        at_ms: 1,
        interval_ms: 200,
        components: predictions.components.clone(),
        usage: vec![Usage {
            component: 0,
            resource: Resource::Cpu,
            value: 0.5,
        }],
    };
    shadow_wire::write_message(s, &Message::Usage(usage), Compression::Auto).unwrap();
    shadow_wire::write_message(s, &Message::Predictions(predictions), Compression::Auto).unwrap();
}

#[test]
fn bad_peers_are_refused_while_a_good_agent_is_served() {
    require_root();
    let dir = TempDir::new("wire");
    let mut o = Orchestrator::start(&dir.0.join("o.sock"), &dir.0.join("state"), &[]);

    // A peer that connects and says nothing must not hold anyone up.
    let _silent = connect(&o);

    let mut good = connect(&o);
    let welcome = shadow_wire::connect(&mut good, hello(shadow_wire::VERSION)).expect("handshake");
    assert_eq!(welcome.version, shadow_wire::VERSION);

    // Another protocol version: refused, naming both versions.
    let mut s = connect(&o);
    shadow_wire::write_message(&mut s, &Message::Hello(hello(99)), Compression::Off).unwrap();
    let (code, message) = refusal(&mut s).expect("an Error frame");
    assert_eq!(code, Code::Incompatible);
    assert!(
        message.contains("99") && message.contains(&shadow_wire::VERSION.to_string()),
        "{message}"
    );

    // Not our protocol at all (an HTTP request): the "length" is absurd.
    let mut s = connect(&o);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(refusal(&mut s).map(|r| r.0), Some(Code::TooLarge));

    // A first frame that is not a Hello.
    let mut s = connect(&o);
    let usage = UsageBatch {
        at_ms: 0,
        interval_ms: 1,
        components: vec![],
        usage: vec![],
    };
    shadow_wire::write_message(&mut s, &Message::Usage(usage), Compression::Off).unwrap();
    assert_eq!(refusal(&mut s).map(|r| r.0), Some(Code::Unexpected));

    // After a good handshake: a malformed frame (valid length, garbage body).
    let mut s = connect(&o);
    shadow_wire::connect(&mut s, hello(shadow_wire::VERSION)).unwrap();
    s.write_all(&[5, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])
        .unwrap();
    assert_eq!(refusal(&mut s).map(|r| r.0), Some(Code::Malformed));
    assert!(closed(&mut s));

    // Oversized length prefix.
    let mut s = connect(&o);
    shadow_wire::connect(&mut s, hello(shadow_wire::VERSION)).unwrap();
    s.write_all(&(shadow_wire::MAX_FRAME as u32 + 1).to_le_bytes())
        .unwrap();
    assert_eq!(refusal(&mut s).map(|r| r.0), Some(Code::TooLarge));

    // A frame cut short by a disconnect.
    let mut s = connect(&o);
    shadow_wire::connect(&mut s, hello(shadow_wire::VERSION)).unwrap();
    s.write_all(&[100, 0, 0, 0, 0, 1, 2]).unwrap();
    drop(s);

    // Through all of that the good agent is served: it reports and gets
    // its recommendation back.
    report(&mut good, "/wire-test/a", 1.5);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = Vec::new();
    let reservation = loop {
        assert!(
            Instant::now() < deadline,
            "no reservation state came back:\n{}",
            o.stderr()
        );
        if let Ok(Message::Reservations(b)) = shadow_wire::read_message(&mut good, &mut buf)
            && let Some(r) = b
                .reservations
                .into_iter()
                .find(|r| r.path == "/wire-test/a")
        {
            break r;
        }
    };
    assert!(!reservation.managed, "not opted in: a recommendation");
    assert!(reservation.reserved >= 1.5, "{reservation:?}");
    assert!(o.is_running(), "the orchestrator survived:\n{}", o.stderr());
    let log = o.stderr();
    for reason in ["version 99", "unexpected message", "closed mid-frame"] {
        assert!(log.contains(reason), "no log line with {reason:?}:\n{log}");
    }
    let status = o.signal(libc::SIGTERM);
    assert!(status.success(), "{status}");
}

/// A remote agent (a guest VM) proves its key and reports over TCP: the
/// same frames, and its components get recommendations, never writes (they
/// are not this host's cgroups).
#[test]
fn remote_agent_over_tcp() {
    require_root();
    let dir = TempDir::new("wire-tcp");
    let key = "5a".repeat(32);
    let key_file = dir.0.join("guest-1.key");
    std::fs::write(&key_file, &key).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let cfg = dir.0.join("shadow.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[peer]]\nname = \"guest-1\"\nkey_file = \"{}\"\n",
            key_file.display()
        ),
    )
    .unwrap();
    let o = Orchestrator::start(
        &dir.0.join("o.sock"),
        &dir.0.join("state"),
        &["--config", cfg.to_str().unwrap(), "--tcp", "127.0.0.1:0"],
    );
    let log = o.stderr();
    let addr = log
        .lines()
        .find_map(|l| l.split("remote agents on tcp ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no TCP address in the log:\n{log}"))
        .to_owned();
    let mut s = std::net::TcpStream::connect(&addr).expect("connect over TCP");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut h = hello(shadow_wire::VERSION);
    h.host = "guest-1-claims-this".into();
    h.key = "guest-1".into();
    let key = shadow_wire::auth::Key::from_hex(&key, "test").unwrap();
    shadow_wire::connect_with(&mut s, h, Some(&key)).expect("handshake over TCP");
    report(&mut s, "/", 2.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "nothing came back over TCP:\n{}",
            o.stderr()
        );
        if let Ok(Message::Reservations(b)) = shadow_wire::read_message(&mut s, &mut buf)
            && let Some(r) = b.reservations.into_iter().find(|r| r.path == "/")
        {
            assert!(!r.managed, "a guest's cgroup is never managed: {r:?}");
            assert!(r.reserved >= 2.0, "{r:?}");
            break;
        }
    }
    assert!(
        o.stderr().contains("Key(\"guest-1\")"),
        "known by its key's name:\n{}",
        o.stderr()
    );
}
