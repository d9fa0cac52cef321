//! Frames: `u32` little-endian body length, then the body: one flags byte
//! and the payload (a postcard-encoded [`Message`], zstd-compressed if flag
//! bit 0 is set).

use std::io::{self, Read, Write};

use super::{COMPRESS_FROM, Error, MAX_DECODED, MAX_FRAME, Message};

/// Flag bit 0: the payload is one zstd frame.
const FLAG_ZSTD: u8 = 0x01;

/// zstd level: batches are sent every tick, so speed matters more than the
/// last few percent of size (level 1 is within a few percent of 3 on these
/// messages; docs/benchmarks.md).
const ZSTD_LEVEL: i32 = 1;

/// Whether to compress a frame's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Never (tests, golden vectors, tiny links).
    Off,
    /// When the payload is at least [`COMPRESS_FROM`] bytes.
    Auto,
}

/// Encodes `msg` as one whole frame, length prefix included.
pub fn encode(msg: &Message, compression: Compression) -> Result<Vec<u8>, Error> {
    let payload = postcard::to_allocvec(msg)?;
    let (flags, payload) = if compression == Compression::Auto && payload.len() >= COMPRESS_FROM {
        let packed = zstd::bulk::compress(&payload, ZSTD_LEVEL).map_err(Error::Compress)?;
        (FLAG_ZSTD, packed)
    } else {
        (0, payload)
    };
    let body_len = payload.len() + 1;
    if body_len > MAX_FRAME {
        return Err(Error::FrameSize {
            len: body_len,
            max: MAX_FRAME,
        });
    }
    let mut frame = Vec::with_capacity(4 + body_len);
    frame.extend_from_slice(&(body_len as u32).to_le_bytes());
    frame.push(flags);
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Decodes a frame body (flags byte and payload, without the length
/// prefix) and validates the message.
pub fn decode_body(body: &[u8]) -> Result<Message, Error> {
    let payload = payload(body)?;
    let (msg, rest) = postcard::take_from_bytes::<Message>(&payload)?;
    if !rest.is_empty() {
        return Err(Error::Trailing(rest.len()));
    }
    msg.validate()?;
    Ok(msg)
}

/// Reads one frame and decodes it. `buf` is reused between calls so a
/// steady stream of frames does not allocate a body buffer per frame.
pub fn read_message(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<Message, Error> {
    read_body(r, buf)?;
    decode_body(buf)
}

/// Reads one frame's body (flags and payload) into `buf`, undecoded.
pub(super) fn read_body(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<(), Error> {
    let mut len = [0u8; 4];
    let got = read_full(r, &mut len)?;
    if got == 0 {
        return Err(Error::Closed);
    }
    if got < len.len() {
        return Err(Error::Truncated { got, want: 4 });
    }
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(Error::FrameSize {
            len,
            max: MAX_FRAME,
        });
    }
    // Grow with the bytes that actually arrive: four bytes announcing
    // MAX_FRAME must not cost 4 MiB per connection before the peer sends
    // anything (a reused buffer keeps its capacity, so steady streams do
    // not reallocate).
    buf.clear();
    buf.reserve(len.min(64 << 10));
    let got = r.take(len as u64).read_to_end(buf)?;
    if got < len {
        return Err(Error::Truncated { got, want: len });
    }
    Ok(())
}

/// The payload of a frame body, decompressed if needed.
fn payload(body: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, Error> {
    let (&flags, payload) = body.split_first().ok_or(Error::FrameSize {
        len: 0,
        max: MAX_FRAME,
    })?;
    match flags {
        0 => Ok(payload.into()),
        FLAG_ZSTD => zstd::bulk::decompress(payload, MAX_DECODED)
            .map(Into::into)
            .map_err(Error::Decompress),
        other => Err(Error::Flags(other)),
    }
}

/// The version a Hello frame announces, read without decoding the rest:
/// `Hello` is variant 0 and `version` its first field in every protocol
/// version, so even a Hello whose later fields differ can be refused with
/// the versions named.
pub(super) fn hello_version(body: &[u8]) -> Option<u16> {
    let payload = payload(body).ok()?;
    match postcard::take_from_bytes::<(u32, u16)>(&payload) {
        Ok(((0, version), _)) => Some(version),
        _ => None,
    }
}

/// Encodes and writes one frame.
pub fn write_message(
    w: &mut impl Write,
    msg: &Message,
    compression: Compression,
) -> Result<(), Error> {
    let frame = encode(msg, compression)?;
    w.write_all(&frame)?;
    w.flush()?;
    Ok(())
}

/// Reads until `buf` is full or the peer closes; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, Error> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(got)
}
