//! Arbitrary bytes as the other side of the authenticated handshake: the
//! orchestrator (`accept_with`, a key required) reads them as a TCP
//! agent's Hello and Proof, and an agent (`connect_with`, with a key)
//! reads them as the orchestrator's Challenge and Welcome. Errors are
//! fine; a panic, overflow or runaway allocation is a bug, and so is an
//! orchestrator that welcomes a peer: the input cannot hold a proof for the
//! fresh random nonce it was challenged with.

#![no_main]

use std::io::{self, Cursor, Read, Write};

use libfuzzer_sys::fuzz_target;
use shadow_wire::{
    Hello, Require, accept_with,
    auth::{Key, Keys},
    connect_with,
};

/// Reads the fuzzer's bytes; writes go nowhere.
struct Peer<'a>(Cursor<&'a [u8]>);

impl Read for Peer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Peer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let key = Key::from_hex(&"00".repeat(32), "fuzz").expect("key");
    let keys: Keys = [("vm-7".to_owned(), key.clone())].into();
    let accepted = accept_with(&mut Peer(Cursor::new(data)), "node-7", Require::Key(&keys));
    assert!(accepted.is_err(), "welcomed without a proof: {accepted:?}");
    let hello = Hello {
        version: shadow_wire::VERSION,
        host: "vm-7".into(),
        agent: "fuzz".into(),
        tick_ms: 1000,
        key: "vm-7".into(),
    };
    let _ = connect_with(&mut Peer(Cursor::new(data)), hello, Some(&key));
});
