//! Page faults on user addresses, in the faulting task's cgroup.
//!
//! The tracepoints fire on entry to the fault handler, before the fault is
//! resolved, so they cannot tell minor from major faults. getrusage counts
//! faults on user memory taken in kernel mode too (copy_to_user into a fresh
//! page), so page_fault_kernel is counted when the address is a user one.

use aya_ebpf::{
    helpers::bpf_get_current_cgroup_id, macros::btf_tracepoint, programs::BtfTracePointContext,
};

use crate::maps::counters;

#[btf_tracepoint(function = "page_fault_user")]
pub fn page_fault_user(_ctx: BtfTracePointContext) -> u32 {
    count_fault();
    0
}

#[btf_tracepoint(function = "page_fault_kernel")]
pub fn page_fault_kernel(ctx: BtfTracePointContext) -> u32 {
    // TP_PROTO(unsigned long address, struct pt_regs *regs, unsigned long error_code)
    // User addresses have the top bit clear on x86-64.
    if ctx.arg::<u64>(0) >> 63 == 0 {
        count_fault();
    }
    0
}

#[inline(always)]
fn count_fault() {
    // SAFETY: a helper without arguments, allowed in tracing programs; the
    // fault tracepoints run in the faulting task's context, so "current"
    // is the task the fault belongs to.
    if let Some(c) = counters(unsafe { bpf_get_current_cgroup_id() }) {
        c.page_faults += 1;
    }
}
