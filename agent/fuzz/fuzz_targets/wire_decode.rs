//! Arbitrary bytes into the decoder: as a frame body (`decode_body`), as a
//! stream of whole frames (`read_message`, the orchestrator's path), and as
//! the body after a 4-byte prefix so the golden vectors (whole frames) seed
//! both. Any panic, overflow or runaway allocation is a bug; errors are fine.
//! Whatever decodes must pass validation and survive a re-encoding.

#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use shadow_wire::{Compression, decode_body, encode, read_message};

fuzz_target!(|data: &[u8]| {
    for body in [data, data.get(4..).unwrap_or_default()] {
        if let Ok(msg) = decode_body(body) {
            msg.validate().expect("decoded messages are valid");
            let frame = encode(&msg, Compression::Auto).expect("re-encode");
            assert_eq!(decode_body(&frame[4..]).expect("decode again"), msg);
        }
    }
    let mut stream = Cursor::new(data);
    let mut buf = Vec::new();
    while read_message(&mut stream, &mut buf).is_ok() {}
});
