//! CPU time and run-queue delay from the scheduler's own tracepoints.
//!
//! sched_switch fires before the context switch, so `current` is still the
//! task being switched out: its cgroup is `bpf_get_current_cgroup_id()` and
//! nothing has to be read from `task_struct`. A task's on-CPU time and the
//! run-queue wait that preceded it are both charged when it is switched out
//! (the per-CPU switch-in time says when it started running). When a task
//! started waiting is kept in task local storage.

use aya_ebpf::{
    bindings::task_struct,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::maps::{SWITCHED_IN, counters, runq_slot};

/// `TASK_RUNNING`: a task switched out in this state stays on the run queue.
const TASK_RUNNING: u64 = 0;

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> u32 {
    // TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
    //          unsigned int prev_state)
    let preempt = ctx.arg::<u64>(0) & 0xff != 0;
    let prev = ctx.arg::<*mut task_struct>(1);
    let prev_state = ctx.arg::<u64>(3) & 0xffff_ffff;
    try_sched_switch(prev, preempt || prev_state == TASK_RUNNING);
    0
}

#[inline(always)]
fn try_sched_switch(prev: *mut task_struct, still_runnable: bool) {
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(slot) = SWITCHED_IN.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU slot, only this CPU's programs touch it.
    let switched_in = unsafe { core::mem::replace(&mut *slot, now) };
    // pid 0 is the idle task: its time is idle, not a cgroup's usage.
    if bpf_get_current_pid_tgid() as u32 == 0 || switched_in == 0 {
        return;
    }
    let Some(c) = counters(unsafe { bpf_get_current_cgroup_id() }) else {
        return;
    };
    c.cpu_ns += now.saturating_sub(switched_in);
    // Only a task that stays runnable needs a slot created.
    let Some(slot) = runq_slot(prev, still_runnable) else {
        return;
    };
    let queued = *slot;
    if queued != 0 && queued < switched_in {
        c.runq_delay_ns += switched_in - queued;
        c.runq_count += 1;
    }
    *slot = if still_runnable { now } else { 0 };
}

#[btf_tracepoint(function = "sched_wakeup")]
pub fn sched_wakeup(ctx: BtfTracePointContext) -> u32 {
    enqueued(ctx.arg::<*mut task_struct>(0));
    0
}

#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: BtfTracePointContext) -> u32 {
    enqueued(ctx.arg::<*mut task_struct>(0));
    0
}

/// A woken task starts waiting. A task woken again while already queued
/// keeps its first enqueue time, as the kernel's schedstat does.
#[inline(always)]
fn enqueued(task: *mut task_struct) {
    if let Some(slot) = runq_slot(task, true)
        && *slot == 0
    {
        *slot = unsafe { bpf_ktime_get_ns() };
    }
}
