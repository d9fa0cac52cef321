//! Time stalled in reclaim, per cgroup: the time a task spends reclaiming
//! memory instead of running its own code, because its allocation found no
//! free page (global direct reclaim) or its memory cgroup at its limit or
//! above its high boundary (memcg reclaim).
//!
//! Both pairs of tracepoints fire in the stalled task's own context, so the
//! begin time is kept per thread and the elapsed time charged, at the end,
//! to the task's v2 cgroup. kswapd's background reclaim stalls no one and is
//! not counted; neither is soft-limit reclaim, which runs inside a global
//! reclaim already being timed.

use agent_ebpf::ReclaimStart;
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::maps::{RECLAIMING, counters};

#[btf_tracepoint(function = "mm_vmscan_direct_reclaim_begin")]
pub fn direct_reclaim_begin(_ctx: BtfTracePointContext) -> u32 {
    begin();
    0
}

#[btf_tracepoint(function = "mm_vmscan_direct_reclaim_end")]
pub fn direct_reclaim_end(_ctx: BtfTracePointContext) -> u32 {
    end();
    0
}

#[btf_tracepoint(function = "mm_vmscan_memcg_reclaim_begin")]
pub fn memcg_reclaim_begin(_ctx: BtfTracePointContext) -> u32 {
    begin();
    0
}

#[btf_tracepoint(function = "mm_vmscan_memcg_reclaim_end")]
pub fn memcg_reclaim_end(_ctx: BtfTracePointContext) -> u32 {
    end();
    0
}

/// The current thread's id (the low half of pid_tgid).
#[inline(always)]
fn thread() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

#[inline(always)]
fn begin() {
    let tid = thread();
    if let Some(slot) = RECLAIMING.get_ptr_mut(tid) {
        // SAFETY: this thread's own entry; no other CPU touches it.
        unsafe { (*slot).depth += 1 };
        return;
    }
    let start = ReclaimStart {
        // SAFETY: a helper without arguments or preconditions.
        start_ns: unsafe { bpf_ktime_get_ns() },
        depth: 1,
    };
    // A full map loses this reclaim's time, never another's.
    let _ = RECLAIMING.insert(tid, start, u64::from(BPF_NOEXIST));
}

#[inline(always)]
fn end() {
    let tid = thread();
    // No entry: the reclaim began before the agent attached.
    let Some(slot) = RECLAIMING.get_ptr_mut(tid) else {
        return;
    };
    // SAFETY: this thread's own entry; no other CPU touches it.
    let entry = unsafe { &mut *slot };
    if entry.depth > 1 {
        entry.depth -= 1;
        return;
    }
    // SAFETY: a helper without arguments or preconditions.
    let elapsed = unsafe { bpf_ktime_get_ns() }.saturating_sub(entry.start_ns);
    let _ = RECLAIMING.remove(tid);
    // SAFETY: a helper without arguments; "current" is the stalled task.
    if let Some(c) = counters(unsafe { bpf_get_current_cgroup_id() }) {
        c.reclaim_stall_ns += elapsed;
    }
}
