//! The virtual interface: the versioned protocol between agents and the
//! orchestrator (docs/protocol.md is the specification).
//!
//! Frames are length-prefixed; each carries one [`Message`] encoded with
//! postcard (a compact, documented serde format), zstd-compressed when that
//! pays. Everything read from a peer is bounded and validated before use:
//! a bad frame is an [`Error`] for that connection, never a panic.
//!
//! Layout:
//! - `message.rs`: the message types (their order is the byte layout).
//! - `frame.rs`: framing, compression, limits, reading and writing.
//! - `bounded.rs`: list limits applied while decoding (memory bounds).
//! - `validate.rs`: checks a decoded message's contents.
//! - `handshake.rs`: the version handshake on both sides, with the
//!   challenge and response of remote agents.
//! - [`auth`]: keys, HMAC proofs, nonces.
//! - [`transport`]: Unix and TCP streams as one type, connecting with a
//!   deadline, binding a Unix socket safely.

pub mod auth;
mod bounded;
mod frame;
mod handshake;
mod message;
#[cfg(test)]
mod tests;
pub mod transport;
mod validate;

pub use frame::{Compression, decode_body, encode, read_message, write_message};
pub use handshake::{Accepted, Require, accept, accept_with, connect, connect_with, refuse};
pub use message::*;
pub use validate::Invalid;

/// Protocol version spoken by this build.
pub const VERSION: u16 = 2;

/// Largest frame body (flags byte + payload) accepted on the wire, in bytes.
pub const MAX_FRAME: usize = 4 << 20;

/// Largest payload after decompression, in bytes: a small compressed frame
/// must not expand into unbounded memory.
pub const MAX_DECODED: usize = 16 << 20;

/// Most entries in one batch's lists (components, predictions, usage,
/// reservations): 16,384 cgroups × 4 resources.
pub const MAX_ITEMS: usize = 65_536;

/// Longest string (host, agent, path, message), in bytes: PATH_MAX.
pub const MAX_STRING: usize = 4096;

/// Most horizons in one prediction.
pub const MAX_STEPS: usize = 64;

/// Payloads at least this long are compressed; below it zstd's frame
/// overhead outweighs the gain.
pub const COMPRESS_FROM: usize = 256;

/// Why a frame could not be read, written or accepted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the transport failed.
    #[error("transport: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection between frames.
    #[error("connection closed by peer")]
    Closed,
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed mid-frame ({got} of {want} bytes)")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes the frame announced.
        want: usize,
    },
    /// A frame announced a body longer than [`MAX_FRAME`] (or empty).
    #[error("frame body of {len} bytes is outside 1..={max}")]
    FrameSize {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Unknown flag bits: a newer peer's feature this build cannot read.
    #[error("unknown frame flags {0:#04x}")]
    Flags(u8),
    /// The compressed payload is corrupt or expands beyond [`MAX_DECODED`].
    #[error("cannot decompress payload: {0}")]
    Decompress(#[source] std::io::Error),
    /// zstd could not compress an outgoing payload.
    #[error("cannot compress payload: {0}")]
    Compress(#[source] std::io::Error),
    /// The payload is not a message of this protocol version.
    #[error("cannot decode message: {0}")]
    Decode(#[from] postcard::Error),
    /// The payload decoded but left bytes over.
    #[error("{0} bytes left over after the message")]
    Trailing(usize),
    /// The message decoded but its contents are out of bounds.
    #[error("invalid message: {0}")]
    Invalid(#[from] Invalid),
    /// The peer speaks another protocol version.
    #[error("peer speaks protocol version {theirs}, this build speaks {ours}")]
    Incompatible {
        /// Our version.
        ours: u16,
        /// Theirs.
        theirs: u16,
    },
    /// A valid message at the wrong point of the conversation.
    #[error("unexpected message: expected {expected}, got {got}")]
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// What came.
        got: &'static str,
    },
    /// The peer did not prove it holds the key its Hello names (or named
    /// none where one is required).
    #[error("peer not authenticated (key {key:?}): unknown key or wrong proof")]
    Unauthenticated {
        /// The key name it claimed.
        key: String,
    },
    /// The orchestrator asks for a key and this agent has none.
    #[error("the orchestrator requires a key: set `key_file` in [agent] (docs/protocol.md)")]
    KeyRequired,
    /// The peer refused us and said why.
    #[error("peer refused ({code:?}): {message}")]
    Refused {
        /// Its reason.
        code: Code,
        /// Its explanation.
        message: String,
    },
}

impl Error {
    /// The code to send the peer when refusing it for this error, if the
    /// error is the peer's fault and the connection can still carry it.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Io(_)
            | Error::Closed
            | Error::Truncated { .. }
            | Error::Refused { .. }
            | Error::Compress(_)
            | Error::KeyRequired => None,
            Error::Unauthenticated { .. } => Some(Code::Unauthenticated),
            Error::FrameSize { .. } => Some(Code::TooLarge),
            Error::Incompatible { .. } => Some(Code::Incompatible),
            Error::Unexpected { .. } => Some(Code::Unexpected),
            Error::Flags(_)
            | Error::Decompress(_)
            | Error::Decode(_)
            | Error::Trailing(_)
            | Error::Invalid(_) => Some(Code::Malformed),
        }
    }
}

impl Message {
    /// Name of the message kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::Welcome(_) => "Welcome",
            Message::Predictions(_) => "Predictions",
            Message::Usage(_) => "Usage",
            Message::Reservations(_) => "Reservations",
            Message::Error(_) => "Error",
            Message::Challenge(_) => "Challenge",
            Message::Proof(_) => "Proof",
        }
    }
}
