//! Block I/O per cgroup, attributed to the task that submitted it.
//!
//! block_io_start fires when a request is made from a bio, in the submitting
//! task's context (blk_mq_submit_bio); completion runs in an interrupt or a
//! kworker, so the owner is remembered per request until block_rq_complete,
//! which also gives the bytes actually transferred. Bios merged into another
//! task's request are charged to the request's owner; bio-based devices
//! without requests (zram, brd) are not seen.

use agent_ebpf::IoStart;
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::maps::{IO_START, counters};

/// Offset of `struct request`'s `cmd_flags`, from the kernel's BTF at load time.
#[unsafe(no_mangle)]
static RQ_CMD_FLAGS_OFF: u64 = 0;

const REQ_OP_MASK: u32 = 0xff;
const REQ_OP_READ: u32 = 0;
const REQ_OP_WRITE: u32 = 1;

#[btf_tracepoint(function = "block_io_start")]
pub fn block_io_start(ctx: BtfTracePointContext) -> u32 {
    let rq = ctx.arg::<u64>(0);
    let start = IoStart {
        // SAFETY: a helper without arguments, allowed in tracing programs;
        // it reads the current task's cgroup and touches no memory of ours.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        // SAFETY: a helper without arguments or preconditions (reads the
        // monotonic clock).
        start_ns: unsafe { bpf_ktime_get_ns() },
    };
    // Update in place when the request was seen before: a hash update
    // allocates a new element and frees the old one.
    match IO_START.get_ptr_mut(rq) {
        // SAFETY: map value; one submitter per request at a time.
        Some(slot) => unsafe { *slot = start },
        None => {
            let _ = IO_START.insert(rq, start, 0);
        }
    }
    0
}

#[btf_tracepoint(function = "block_rq_complete")]
pub fn block_rq_complete(ctx: BtfTracePointContext) -> u32 {
    // TP_PROTO(struct request *rq, blk_status_t error, unsigned int nr_bytes)
    let rq = ctx.arg::<u64>(0);
    let nr_bytes = ctx.arg::<u64>(2) & 0xffff_ffff;
    try_complete(rq, nr_bytes);
    0
}

#[inline(always)]
fn try_complete(rq: u64, nr_bytes: u64) {
    let Some(start) = IO_START.get_ptr_mut(rq) else {
        return;
    };
    // SAFETY: a reference to a static is valid and aligned; the read is
    // volatile so the compiler does not fold in the 0 the loader replaces.
    let off = unsafe { core::ptr::read_volatile(&RQ_CMD_FLAGS_OFF) };
    // SAFETY: the helper copies from a kernel address and returns an error
    // instead of faulting if it is not readable, so no address can break
    // the program; it is the right one because the request is live during
    // its completion tracepoint and the offset comes from this kernel's BTF.
    let Ok(flags) = (unsafe { bpf_probe_read_kernel((rq + off) as *const u32) }) else {
        return;
    };
    let op = flags & REQ_OP_MASK;
    if op != REQ_OP_READ && op != REQ_OP_WRITE {
        return;
    }
    // SAFETY: map value pointer; a racing completion of the same request is
    // impossible (one completion context per request).
    let start = unsafe { &mut *start };
    let Some(c) = counters(start.cgroup_id) else {
        return;
    };
    if op == REQ_OP_READ {
        c.io_read_bytes += nr_bytes;
    } else {
        c.io_write_bytes += nr_bytes;
    }
    // A request may complete in parts: count it and its latency once.
    if start.start_ns != 0 {
        c.io_ops += 1;
        // SAFETY: a helper without arguments or preconditions.
        c.io_latency_ns += unsafe { bpf_ktime_get_ns() }.saturating_sub(start.start_ns);
        start.start_ns = 0;
    }
}
