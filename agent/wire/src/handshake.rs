//! The version handshake: the agent sends `Hello`, the orchestrator answers
//! `Welcome` or refuses with an `Error` frame naming both versions, then
//! closes. Nothing else may be sent before the handshake completes.

use std::io::{Read, Write};

use super::{
    Compression, Error, Failure, Hello, MAX_FRAME, Message, VERSION, Welcome, decode_body,
    frame::{hello_version, read_body},
    read_message, write_message,
};

/// Agent side: sends `hello` and waits for the answer.
pub fn connect(stream: &mut (impl Read + Write), hello: Hello) -> Result<Welcome, Error> {
    write_message(stream, &Message::Hello(hello), Compression::Off)?;
    match read_message(stream, &mut Vec::new())? {
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

/// Orchestrator side: reads the peer's `Hello` and welcomes it, or refuses
/// it (telling the peer why, when the connection still works).
pub fn accept(stream: &mut (impl Read + Write), orchestrator: &str) -> Result<Hello, Error> {
    let mut body = Vec::new();
    if let Err(e) = read_body(stream, &mut body) {
        // An oversized frame is the peer's fault too: say so before closing.
        refuse(stream, &e);
        return Err(e);
    }
    let result = match decode_body(&body) {
        Ok(Message::Hello(h)) if h.version == VERSION => Ok(h),
        Ok(Message::Hello(h)) => Err(Error::Incompatible {
            ours: VERSION,
            theirs: h.version,
        }),
        Ok(other) => Err(Error::Unexpected {
            expected: "Hello",
            got: other.kind(),
        }),
        // A Hello from another version may not decode as ours at all.
        Err(e) => match hello_version(&body) {
            Some(theirs) if theirs != VERSION => Err(Error::Incompatible {
                ours: VERSION,
                theirs,
            }),
            _ => Err(e),
        },
    };
    match result {
        Ok(hello) => {
            let welcome = Welcome {
                version: VERSION,
                orchestrator: orchestrator.to_owned(),
                max_frame: MAX_FRAME as u32,
            };
            write_message(stream, &Message::Welcome(welcome), Compression::Off)?;
            Ok(hello)
        }
        Err(e) => {
            refuse(stream, &e);
            Err(e)
        }
    }
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
