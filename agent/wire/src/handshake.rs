//! The version handshake: the agent sends `Hello`, the orchestrator answers
//! `Welcome` or refuses with an `Error` frame naming both versions, then
//! closes. Where the orchestrator requires a key (remote agents), it sends
//! a `Challenge` after the `Hello`, and the agent's `Proof` must verify
//! before the `Welcome`. Nothing else may be sent before the handshake
//! completes.

use std::io::{Read, Write};

use super::{
    Challenge, Compression, Error, Failure, Hello, MAX_FRAME, Message, Proof, VERSION, Welcome,
    auth::{self, Key, Keys},
    decode_body, encode,
    frame::{hello_version, read_body},
    read_message, write_message,
};

/// Agent side without a key: sends `hello` and waits for the answer.
pub fn connect(stream: &mut (impl Read + Write), hello: Hello) -> Result<Welcome, Error> {
    connect_with(stream, hello, None)
}

/// Agent side: sends `hello` and waits for the answer; answers a
/// `Challenge` with `key` (`hello.key` must name it), or fails with
/// [`Error::KeyRequired`] without one.
pub fn connect_with(
    stream: &mut (impl Read + Write),
    hello: Hello,
    key: Option<&Key>,
) -> Result<Welcome, Error> {
    let frame = encode(&Message::Hello(hello), Compression::Off)?;
    stream.write_all(&frame)?;
    stream.flush()?;
    let mut answer = read_message(stream, &mut Vec::new())?;
    if let Message::Challenge(c) = answer {
        let Some(key) = key else {
            return Err(Error::KeyRequired);
        };
        // The Hello's payload: after the length and the flags byte.
        let mac = auth::proof(key, &c.nonce, &frame[5..]);
        write_message(stream, &Message::Proof(Proof { mac }), Compression::Off)?;
        answer = read_message(stream, &mut Vec::new())?;
    }
    match answer {
        Message::Welcome(w) if w.version == VERSION => Ok(w),
        Message::Welcome(w) => Err(Error::Incompatible {
            ours: VERSION,
            theirs: w.version,
        }),
        Message::Error(f) => Err(Error::Refused {
            code: f.code,
            message: f.message,
        }),
        other => Err(Error::Unexpected {
            expected: "Welcome",
            got: other.kind(),
        }),
    }
}

/// What the orchestrator requires of a peer before welcoming it.
#[derive(Clone, Copy, Debug)]
pub enum Require<'a> {
    /// Nothing but a compatible Hello: a local peer, or a listener the
    /// operator declared insecure.
    Nothing,
    /// A proof with the key its Hello names, one of these.
    Key(&'a Keys),
}

/// A peer that completed the handshake.
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    /// Its Hello (`host` is its claim, nothing more).
    pub hello: Hello,
    /// The name of the key it proved it holds, when one was required: its
    /// identity.
    pub key: Option<String>,
}

/// Orchestrator side without authentication: reads the peer's `Hello` and
/// welcomes it, or refuses it.
pub fn accept(stream: &mut (impl Read + Write), orchestrator: &str) -> Result<Hello, Error> {
    accept_with(stream, orchestrator, Require::Nothing).map(|a| a.hello)
}

/// Orchestrator side: reads the peer's `Hello`, challenges it if `require`
/// says so, and welcomes it, or refuses it (telling the peer why, when the
/// connection still works).
pub fn accept_with(
    stream: &mut (impl Read + Write),
    orchestrator: &str,
    require: Require<'_>,
) -> Result<Accepted, Error> {
    let mut body = Vec::new();
    if let Err(e) = read_body(stream, &mut body) {
        // An oversized frame is the peer's fault too: say so before closing.
        refuse(stream, &e);
        return Err(e);
    }
    let result = hello(&body).and_then(|hello| match require {
        Require::Nothing => Ok(Accepted { hello, key: None }),
        Require::Key(keys) => {
            // The Hello was sent uncompressed: its payload follows the flags.
            let payload = body.get(1..).unwrap_or_default();
            challenge(stream, keys, hello, payload)
        }
    });
    match result {
        Ok(accepted) => {
            let welcome = Welcome {
                version: VERSION,
                orchestrator: orchestrator.to_owned(),
                max_frame: MAX_FRAME as u32,
            };
            write_message(stream, &Message::Welcome(welcome), Compression::Off)?;
            Ok(accepted)
        }
        Err(e) => {
            refuse(stream, &e);
            Err(e)
        }
    }
}

/// The Hello in a first frame's body, or why it is refused.
fn hello(body: &[u8]) -> Result<Hello, Error> {
    match decode_body(body) {
        Ok(Message::Hello(h)) if h.version == VERSION && body.first() == Some(&0) => Ok(h),
        Ok(Message::Hello(h)) if h.version == VERSION => Err(Error::Unexpected {
            expected: "an uncompressed Hello",
            got: "a compressed one",
        }),
        Ok(Message::Hello(h)) => Err(Error::Incompatible {
            ours: VERSION,
            theirs: h.version,
        }),
        Ok(other) => Err(Error::Unexpected {
            expected: "Hello",
            got: other.kind(),
        }),
        // A Hello from another version may not decode as ours at all.
        Err(e) => match hello_version(body) {
            Some(theirs) if theirs != VERSION => Err(Error::Incompatible {
                ours: VERSION,
                theirs,
            }),
            _ => Err(e),
        },
    }
}

/// Challenges the peer and checks its proof. An unknown key name gets a
/// challenge too (checked against a random key), so a peer cannot tell
/// which names exist.
fn challenge(
    stream: &mut (impl Read + Write),
    keys: &Keys,
    hello: Hello,
    payload: &[u8],
) -> Result<Accepted, Error> {
    let nonce = auth::nonce()?;
    write_message(
        stream,
        &Message::Challenge(Challenge { nonce }),
        Compression::Off,
    )?;
    let mut body = Vec::new();
    read_body(stream, &mut body)?;
    let proof = match decode_body(&body)? {
        Message::Proof(p) => p,
        other => {
            return Err(Error::Unexpected {
                expected: "Proof",
                got: other.kind(),
            });
        }
    };
    let known = keys.get(&hello.key);
    let verified = match known {
        Some(key) => auth::verify(key, &nonce, payload, &proof.mac),
        None => {
            let decoy = Key::from_random()?;
            let _ = auth::verify(&decoy, &nonce, payload, &proof.mac);
            false
        }
    };
    if !verified {
        return Err(Error::Unauthenticated { key: hello.key });
    }
    let key = Some(hello.key.clone());
    Ok(Accepted { hello, key })
}

/// Tells the peer why it is being disconnected, if the error is its fault.
/// Best effort: the peer may already be gone, and the caller closes anyway.
pub fn refuse(stream: &mut impl Write, error: &Error) {
    if let Some(code) = error.code() {
        let failure = Failure {
            code,
            message: error.to_string(),
        };
        let _ = write_message(stream, &Message::Error(failure), Compression::Off);
    }
}
