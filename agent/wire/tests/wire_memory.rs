//! Memory a hostile frame can make the decoder allocate. A compressed frame
//! of a few kilobytes expands to at most `MAX_DECODED` bytes, but postcard
//! builds the message before validation counts its lists, and an empty
//! component costs 2 bytes on the wire and 32 in memory. The list limits
//! must therefore hold while decoding, not only afterwards.
//!
//! Its own test binary because it counts every allocation of the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use shadow_wire::{Error, MAX_DECODED, MAX_FRAME, decode_body};

struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = NOW.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(now, Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        NOW.fetch_sub(layout.size(), Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Unsigned LEB128, as postcard writes lengths.
fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A `Predictions` payload of `n` components with empty paths and id 0.
fn empty_components(n: usize, room: usize) -> Vec<u8> {
    let mut p = vec![2, 0, 1]; // variant Predictions, at_ms 0, step_ms 1
    varint(n as u64, &mut p);
    p.resize(p.len() + 2 * n, 0);
    p.push(0); // no predictions
    assert!(p.len() <= room);
    p
}

/// Peak bytes allocated while decoding `body`, above what was live before.
fn peak_while(body: &[u8]) -> (Result<(), Error>, usize) {
    let base = NOW.load(Relaxed);
    PEAK.store(base, Relaxed);
    let result = decode_body(body).map(drop);
    (result, PEAK.load(Relaxed) - base)
}

#[test]
fn hostile_frames_allocate_a_bounded_amount() {
    let n = (MAX_DECODED - 16) / 2;
    let payload = empty_components(n, MAX_DECODED);
    let packed = zstd::bulk::compress(&payload, 3).unwrap();
    let mut body = vec![1];
    body.extend_from_slice(&packed);
    drop(payload);
    let (result, peak) = peak_while(&body);
    eprintln!(
        "{} byte frame, {n} components: peak {:.1} MiB",
        body.len() + 4,
        peak as f64 / (1 << 20) as f64
    );
    assert!(result.is_err());
    // The decompressed payload itself, plus little more.
    assert!(peak < MAX_DECODED + (4 << 20), "peak {peak} bytes");

    let n = (MAX_FRAME - 16) / 2;
    let mut body = vec![0];
    body.extend(empty_components(n, MAX_FRAME - 1));
    let (result, peak) = peak_while(&body);
    eprintln!(
        "uncompressed {} byte frame: peak {:.1} MiB",
        body.len() + 4,
        peak as f64 / (1 << 20) as f64
    );
    assert!(result.is_err());
    assert!(peak < 4 << 20, "peak {peak} bytes");
}
