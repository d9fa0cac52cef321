//! Shadow's kernel programs: per-cgroup CPU, run-queue, page-fault, block and
//! network counters in one per-CPU hash map keyed by the v2 cgroup id.
//!
//! Every hot-path hook is a BTF tracepoint (`tp_btf`): on these machines a
//! classic tracepoint costs about 20x more per event (DESIGN.md). Each program
//! is a thin entry point over a small function; nothing logs on a hot path.
//!
//! Layout: `maps` (the maps and the counter lookup), then one file per hook
//! family under `programs/`.
#![no_std]
#![no_main]

mod maps;
mod programs;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves programs cannot panic; this is never reached.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
