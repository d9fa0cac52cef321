//! Golden vectors: whole frames (length prefix included) in
//! `agent/wire/tests/vectors/`, so another implementation can be checked against
//! the same bytes. Each must decode to its sample and, uncompressed,
//! re-encode byte for byte.
//!
//! Regenerate (only after a deliberate protocol change, with a new
//! `VERSION`): `SHADOW_WIRE_REGEN=1 cargo test -p shadow-wire --lib tests::vectors`.

use std::path::PathBuf;

use super::samples;
use crate::{Compression, Message, decode_body, encode};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn regenerate() -> bool {
    std::env::var_os("SHADOW_WIRE_REGEN").is_some()
}

/// Reads a vector, or writes it first when regenerating.
fn vector(name: &str, frame: &[u8]) -> Vec<u8> {
    let path = dir().join(name);
    if regenerate() {
        std::fs::write(&path, frame).expect("write vector");
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Splits a whole frame into its body, checking the length prefix.
fn body(frame: &[u8]) -> &[u8] {
    let (len, body) = frame.split_at(4);
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    assert_eq!(len, body.len(), "length prefix");
    body
}

#[test]
fn uncompressed_vectors_decode_and_reencode_byte_for_byte() {
    for (name, msg) in samples::all() {
        let ours = encode(&msg, Compression::Off).expect("encode");
        let stored = vector(&format!("{name}.bin"), &ours);
        let decoded = decode_body(body(&stored)).expect(name);
        assert_eq!(decoded, msg, "{name}: decoded value");
        assert_eq!(stored[4], 0, "{name}: flags");
        assert_eq!(ours, stored, "{name}: re-encoding");
        // Small messages are never compressed, even when allowed.
        assert_eq!(encode(&msg, Compression::Auto).expect("encode"), stored);
    }
}

/// zstd's output may change between library versions, so only the decoded
/// value of the compressed vector is checked, not a re-encoding's bytes.
#[test]
fn compressed_vector_decodes() {
    let msg = samples::batch();
    let ours = encode(&msg, Compression::Auto).expect("encode");
    let stored = vector("predictions-zstd.bin", &ours);
    assert_eq!(stored[4], 1, "flags: zstd");
    assert_eq!(decode_body(body(&stored)).expect("decode"), msg);
    // The same message uncompressed, for comparison of sizes.
    let plain = encode(&msg, Compression::Off).expect("encode");
    let plain = vector("predictions-large.bin", &plain);
    assert_eq!(decode_body(body(&plain)).expect("decode"), msg);
    assert!(stored.len() < plain.len());
    assert!(matches!(
        decode_body(body(&ours)),
        Ok(Message::Predictions(_))
    ));
}
