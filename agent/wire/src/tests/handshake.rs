//! The handshake over a real `UnixStream` pair: each side runs on its own
//! thread, as agent and orchestrator would.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::thread;

use super::samples;
use crate::{
    Accepted, Code, Compression, Error, Hello, MAX_FRAME, Message, Require, VERSION, Welcome,
    accept, accept_with,
    auth::{Key, Keys},
    connect, connect_with, read_message, refuse, write_message,
};

fn hello(version: u16) -> Hello {
    match samples::hello() {
        Message::Hello(h) => Hello { version, ..h },
        _ => unreachable!(),
    }
}

/// Runs `accept` on one end while `peer` drives the other.
fn with_orchestrator<T: Send + 'static>(
    peer: impl FnOnce(&mut UnixStream) -> T + Send + 'static,
) -> (Result<Hello, Error>, T) {
    let (mut ours, mut theirs) = UnixStream::pair().expect("socketpair");
    let agent = thread::spawn(move || peer(&mut theirs));
    let accepted = accept(&mut ours, "node-7");
    drop(ours);
    (accepted, agent.join().expect("peer thread"))
}

/// The frame the orchestrator sent back, which must be an `Error`.
fn refusal(s: &mut UnixStream) -> Code {
    match read_message(s, &mut Vec::new()) {
        Ok(Message::Error(f)) => f.code,
        other => panic!("expected an Error frame, got {other:?}"),
    }
}

#[test]
fn matching_versions_are_welcomed() {
    let (accepted, connected) = with_orchestrator(|s| connect(s, hello(VERSION)));
    assert_eq!(accepted.expect("accept"), hello(VERSION));
    let expected = Welcome {
        version: VERSION,
        orchestrator: "node-7".into(),
        max_frame: MAX_FRAME as u32,
    };
    assert_eq!(connected.expect("connect"), expected);
}

#[test]
fn another_version_is_refused_on_both_sides() {
    let (accepted, connected) = with_orchestrator(|s| connect(s, hello(VERSION + 1)));
    assert!(matches!(
        accepted,
        Err(Error::Incompatible { ours: VERSION, theirs }) if theirs == VERSION + 1
    ));
    match connected {
        Err(Error::Refused {
            code: Code::Incompatible,
            message,
        }) => assert!(
            message.contains(&format!("version {}", VERSION + 1))
                && message.contains(&format!("speaks {VERSION}"))
        ),
        other => panic!("{other:?}"),
    }
}

/// A future version's Hello keeps variant 0 and `version` first, but its
/// later fields need not decode as ours: it is still refused by version.
#[test]
fn future_hello_with_undecodable_fields_is_refused_by_version() {
    let (accepted, code) = with_orchestrator(|s| {
        // Variant 0, version 7 (varint), then fields this build cannot read:
        // a string length far beyond the payload.
        let payload = [0x00, 0x07, 0xff, 0xff, 0x03, 0xaa];
        let mut f = ((payload.len() + 1) as u32).to_le_bytes().to_vec();
        f.push(0);
        f.extend_from_slice(&payload);
        s.write_all(&f).unwrap();
        refusal(s)
    });
    assert!(matches!(
        accepted,
        Err(Error::Incompatible {
            ours: VERSION,
            theirs: 7
        })
    ));
    assert_eq!(code, Code::Incompatible);
}

#[test]
fn first_frame_not_hello_is_unexpected() {
    let (accepted, code) = with_orchestrator(|s| {
        write_message(s, &samples::usage(), Compression::Off).unwrap();
        refusal(s)
    });
    assert!(matches!(
        accepted,
        Err(Error::Unexpected {
            expected: "Hello",
            got: "Usage"
        })
    ));
    assert_eq!(code, Code::Unexpected);
}

#[test]
fn malformed_hello_of_our_version_is_malformed() {
    let (accepted, code) = with_orchestrator(|s| {
        let payload = [0x00, VERSION as u8, 0x02, 0xc3, 0x28, 0x00, 0x01];
        let mut f = ((payload.len() + 1) as u32).to_le_bytes().to_vec();
        f.push(0);
        f.extend_from_slice(&payload);
        s.write_all(&f).unwrap();
        refusal(s)
    });
    assert!(matches!(accepted, Err(Error::Decode(_))));
    assert_eq!(code, Code::Malformed);
}

#[test]
fn oversized_first_frame_is_too_large() {
    let (accepted, code) = with_orchestrator(|s| {
        s.write_all(&(MAX_FRAME as u32 + 1).to_le_bytes()).unwrap();
        refusal(s)
    });
    assert!(matches!(accepted, Err(Error::FrameSize { .. })));
    assert_eq!(code, Code::TooLarge);
}

#[test]
fn peer_gone_before_hello() {
    let (accepted, ()) = with_orchestrator(|s| {
        s.shutdown(std::net::Shutdown::Both).unwrap();
    });
    assert!(matches!(accepted, Err(Error::Closed)));
}

/// The agent refuses an orchestrator of another version too.
#[test]
fn agent_refuses_a_welcome_of_another_version() {
    let (mut agent, mut orchestrator) = UnixStream::pair().unwrap();
    let fake = thread::spawn(move || {
        read_message(&mut orchestrator, &mut Vec::new()).unwrap();
        let welcome = Welcome {
            version: VERSION + 1,
            orchestrator: "node-7".into(),
            max_frame: MAX_FRAME as u32,
        };
        write_message(
            &mut orchestrator,
            &Message::Welcome(welcome),
            Compression::Off,
        )
        .unwrap();
    });
    let connected = connect(&mut agent, hello(VERSION));
    fake.join().unwrap();
    assert!(matches!(
        connected,
        Err(Error::Incompatible { theirs, .. }) if theirs == VERSION + 1
    ));
}

#[test]
fn refuse_sends_a_reason_only_for_the_peers_faults() {
    let mut out = Vec::new();
    refuse(&mut out, &Error::Trailing(3));
    match read_message(&mut out.as_slice(), &mut Vec::new()) {
        Ok(Message::Error(f)) => {
            assert_eq!(f.code, Code::Malformed);
            assert!(f.message.contains("3 bytes left over"));
        }
        other => panic!("{other:?}"),
    }
    let mut out = Vec::new();
    refuse(&mut out, &Error::Closed);
    refuse(&mut out, &Error::Truncated { got: 1, want: 4 });
    assert!(out.is_empty());
}

/// The orchestrator requires a key: `accept_with` over one end, `peer` on
/// the other.
fn with_keys<T: Send + 'static>(
    peer: impl FnOnce(&mut UnixStream) -> T + Send + 'static,
) -> (Result<Accepted, Error>, T) {
    let (mut ours, mut theirs) = UnixStream::pair().expect("socketpair");
    let agent = thread::spawn(move || peer(&mut theirs));
    let keys: Keys = [("vm-7".to_owned(), samples::key())].into();
    let accepted = accept_with(&mut ours, "node-7", Require::Key(&keys));
    drop(ours);
    (accepted, agent.join().expect("peer thread"))
}

fn hello_with_key(key: &str) -> Hello {
    Hello {
        key: key.into(),
        ..hello(VERSION)
    }
}

#[test]
fn a_peer_with_the_right_key_is_welcomed_under_the_keys_name() {
    let (accepted, connected) = with_keys(|s| {
        let hello = Hello {
            host: "someone-else".into(),
            ..hello_with_key("vm-7")
        };
        connect_with(s, hello, Some(&samples::key()))
    });
    let accepted = accepted.expect("accept");
    assert_eq!(accepted.key.as_deref(), Some("vm-7"));
    assert_eq!(accepted.hello.host, "someone-else", "the claim, kept apart");
    connected.expect("connect");
}

#[test]
fn wrong_unknown_or_missing_keys_are_refused_as_unauthenticated() {
    let wrong = Key::from_hex(&"ab".repeat(32), "k").unwrap();
    let cases: [(&str, Option<Key>); 3] = [
        ("vm-7", Some(wrong.clone())),
        ("vm-8", Some(samples::key())),
        ("vm-7", None),
    ];
    for (name, key) in cases {
        let has_key = key.is_some();
        let (accepted, connected) =
            with_keys(move |s| connect_with(s, hello_with_key(name), key.as_ref()));
        assert!(
            matches!(
                &accepted,
                Err(Error::Unauthenticated { .. }) | Err(Error::Closed)
            ),
            "{name}: {accepted:?}"
        );
        match connected {
            Err(Error::Refused {
                code: Code::Unauthenticated,
                ..
            }) => assert!(has_key),
            Err(Error::KeyRequired) => assert!(!has_key),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn a_peer_that_answers_the_challenge_with_something_else_is_refused() {
    let (accepted, code) = with_keys(|s| {
        write_message(s, &Message::Hello(hello_with_key("vm-7")), Compression::Off).unwrap();
        assert!(matches!(
            read_message(s, &mut Vec::new()),
            Ok(Message::Challenge(_))
        ));
        write_message(s, &samples::usage(), Compression::Off).unwrap();
        refusal(s)
    });
    assert!(matches!(
        accepted,
        Err(Error::Unexpected {
            expected: "Proof",
            ..
        })
    ));
    assert_eq!(code, Code::Unexpected);
}
