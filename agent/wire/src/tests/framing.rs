//! Framing: round trips, and every way a frame can be wrong is an `Error`
//! of the right kind, never a panic.

use std::io::Cursor;

use super::samples;
use crate::{
    Compression, Error, MAX_DECODED, MAX_FRAME, Message, decode_body, encode, read_message,
};

/// Reads one message from `bytes` as a peer would.
fn read(bytes: &[u8]) -> Result<Message, Error> {
    read_message(&mut Cursor::new(bytes), &mut Vec::new())
}

/// A frame around `flags` and `payload`, as the encoder would build it.
fn frame(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = ((payload.len() + 1) as u32).to_le_bytes().to_vec();
    f.push(flags);
    f.extend_from_slice(payload);
    f
}

/// The postcard payload of `msg` (the frame without header and flags).
fn payload(msg: &Message) -> Vec<u8> {
    encode(msg, Compression::Off).expect("encode")[5..].to_vec()
}

fn every_kind() -> Vec<Message> {
    let mut all: Vec<Message> = samples::all().into_iter().map(|(_, m)| m).collect();
    all.push(samples::batch());
    all
}

#[test]
fn every_kind_round_trips_with_and_without_compression() {
    for msg in every_kind() {
        for compression in [Compression::Off, Compression::Auto] {
            let f = encode(&msg, compression).expect("encode");
            let back = read(&f).unwrap_or_else(|e| panic!("{}: {e}", msg.kind()));
            assert_eq!(back, msg);
        }
    }
    // The large batch is the one that is compressed when allowed.
    assert_eq!(encode(&samples::batch(), Compression::Auto).unwrap()[4], 1);
}

#[test]
fn frames_follow_each_other_then_the_stream_ends_cleanly() {
    let mut stream = Vec::new();
    for msg in every_kind() {
        stream.extend(encode(&msg, Compression::Auto).expect("encode"));
    }
    let mut r = Cursor::new(stream);
    let mut buf = Vec::new();
    for msg in every_kind() {
        assert_eq!(read_message(&mut r, &mut buf).expect("frame"), msg);
    }
    assert!(matches!(read_message(&mut r, &mut buf), Err(Error::Closed)));
}

#[test]
fn truncated_header_and_body() {
    let f = encode(&samples::predictions(), Compression::Off).unwrap();
    assert!(matches!(read(&[]), Err(Error::Closed)));
    for cut in 1..4 {
        match read(&f[..cut]) {
            Err(Error::Truncated { got, want: 4 }) => assert_eq!(got, cut),
            other => panic!("header cut at {cut}: {other:?}"),
        }
    }
    let body = f.len() - 4;
    for cut in 4..f.len() {
        match read(&f[..cut]) {
            Err(Error::Truncated { got, want }) => {
                assert_eq!((got, want), (cut - 4, body));
            }
            other => panic!("body cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn zero_and_oversized_lengths() {
    for len in [0, MAX_FRAME as u32 + 1, u32::MAX] {
        let mut f = len.to_le_bytes().to_vec();
        f.extend_from_slice(&[0; 16]);
        match read(&f) {
            Err(Error::FrameSize { len: l, max }) => {
                assert_eq!((l, max), (len as usize, MAX_FRAME))
            }
            other => panic!("length {len}: {other:?}"),
        }
    }
    assert!(matches!(
        decode_body(&[]),
        Err(Error::FrameSize { len: 0, .. })
    ));
}

#[test]
fn encoding_a_message_too_large_for_a_frame_fails() {
    let huge = Message::Error(crate::Failure {
        code: crate::Code::Internal,
        message: "x".repeat(MAX_FRAME),
    });
    assert!(matches!(
        encode(&huge, Compression::Off),
        Err(Error::FrameSize { .. })
    ));
}

#[test]
fn unknown_flags() {
    let p = payload(&samples::hello());
    for flags in 2..=u8::MAX {
        match read(&frame(flags, &p)) {
            Err(Error::Flags(f)) => assert_eq!(f, flags),
            other => panic!("flags {flags:#x}: {other:?}"),
        }
    }
}

#[test]
fn trailing_bytes() {
    let mut p = payload(&samples::usage());
    p.extend_from_slice(&[0, 0, 0]);
    assert!(matches!(read(&frame(0, &p)), Err(Error::Trailing(3))));
}

#[test]
fn malformed_payloads_are_decode_errors() {
    let decode = |p: &[u8]| match read(&frame(0, p)) {
        Err(Error::Decode(e)) => e,
        other => panic!("{p:02x?}: {other:?}"),
    };
    // Variant index 6 does not exist.
    decode(&[6]);
    // A varint longer than any u32 allows.
    decode(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
    // Hello with a 3-byte varint version above u16::MAX.
    decode(&[0, 0xff, 0xff, 0x7f, 0, 0, 1]);
    // Hello whose host is not UTF-8.
    decode(&[0, 1, 2, 0xc3, 0x28, 0, 1]);
    // Reservation with `managed` = 2 (bool is 0 or 1).
    let mut r = payload(&samples::reservations());
    // variant, at_ms (6-byte varint), count, path (1 + 27), resource, reserved
    let managed = 1 + 6 + 1 + 28 + 1 + 4;
    assert_eq!(r[managed], 1);
    r[managed] = 2;
    decode(&r);
    // Every strict prefix of every payload.
    for msg in every_kind() {
        let p = payload(&msg);
        for cut in 0..p.len() {
            decode(&p[..cut]);
        }
    }
}

/// A small xorshift generator: deterministic garbage without a dependency.
fn noise(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn garbage_and_mutated_frames_never_panic() {
    let mut seed = 0x5eed_u64;
    for _ in 0..20_000 {
        let len = (noise(&mut seed) % 64) as usize;
        let body: Vec<u8> = (0..len).map(|_| noise(&mut seed) as u8).collect();
        let _ = decode_body(&body);
        let _ = read(&body);
    }
    for msg in every_kind() {
        for compression in [Compression::Off, Compression::Auto] {
            let f = encode(&msg, compression).unwrap();
            for _ in 0..2_000 {
                let mut m = f.clone();
                for _ in 0..1 + noise(&mut seed) % 4 {
                    let i = 4 + (noise(&mut seed) as usize) % (m.len() - 4);
                    m[i] ^= 1 << (noise(&mut seed) % 8);
                }
                // Whatever decodes must still be valid.
                if let Ok(decoded) = decode_body(&m[4..]) {
                    decoded.validate().expect("decoded messages are valid");
                }
            }
        }
    }
}

#[test]
fn zstd_bomb_is_refused() {
    let packed = zstd::bulk::compress(&vec![0u8; MAX_DECODED + 1], 19).unwrap();
    assert!(packed.len() < 4096, "{} bytes", packed.len());
    assert!(matches!(
        read(&frame(1, &packed)),
        Err(Error::Decompress(_))
    ));
}

#[test]
fn corrupt_zstd_is_refused() {
    let mut f = encode(&samples::batch(), Compression::Auto).unwrap();
    assert_eq!(f[4], 1);
    f.truncate(f.len() - 8);
    let len = (f.len() - 4) as u32;
    f[..4].copy_from_slice(&len.to_le_bytes());
    assert!(matches!(read(&f), Err(Error::Decompress(_))));
    assert!(matches!(
        read(&frame(1, b"not zstd")),
        Err(Error::Decompress(_))
    ));
    // zstd reads an empty input as no frames, zero bytes: then nothing
    // decodes.
    assert!(matches!(read(&frame(1, &[])), Err(Error::Decode(_))));
}

/// A frame that announces `MAX_FRAME` and then stalls costs the bytes that
/// arrived, not the announced length.
#[test]
fn announced_length_is_not_allocated_up_front() {
    let mut f = (MAX_FRAME as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&[0; 10]);
    let mut buf = Vec::new();
    let got = read_message(&mut Cursor::new(&f), &mut buf);
    assert!(matches!(
        got,
        Err(Error::Truncated {
            got: 10,
            want: MAX_FRAME
        })
    ));
    assert!(buf.capacity() < MAX_FRAME / 4, "{}", buf.capacity());
}
