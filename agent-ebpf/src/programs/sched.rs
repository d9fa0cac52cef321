//! CPU time and run-queue delay, from the scheduler's own per-task
//! accounting, charged to cgroups at each context switch.
//!
//! sched_switch fires after the scheduler has updated the outgoing task's
//! `se.sum_exec_runtime` (put_prev_task, inside pick_next_task) and before
//! the switch itself, so `current` is still that task: its cgroup is
//! `bpf_get_current_cgroup_id()`. What the task gained since its previous
//! switch-out is charged: on-CPU time, and the run-queue delay (schedstat's
//! `sched_info.run_delay`, updated when the task was switched in). Reading
//! the kernel's counters instead of timing events ourselves needs no clock
//! read (about 50 ns each here) and no wakeup hook, and is exactly what
//! `cpu.stat` and `/proc/<pid>/schedstat` count. Field offsets come from the
//! kernel's BTF at load time.
//!
//! A task that keeps its CPU (a busy loop alone on a core is not preempted)
//! would be charged in lumps of seconds at its eventual switch-out, so a
//! CPU clock event also charges the running task every 20 ms per CPU
//! (`cpu_clock`): per-interval figures then lag by at most that.

use agent_ebpf::{Pending, TaskSeen};
use aya_ebpf::{
    bindings::task_struct,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task_btf},
    macros::{btf_tracepoint, perf_event},
    programs::{BtfTracePointContext, PerfEventContext},
};

use crate::maps::{PENDING, counters, task_seen};

#[unsafe(no_mangle)]
static TASK_RUNTIME_OFF: u64 = 0;
#[unsafe(no_mangle)]
static TASK_RUN_DELAY_OFF: u64 = 0;
#[unsafe(no_mangle)]
static TASK_PCOUNT_OFF: u64 = 0;
#[unsafe(no_mangle)]
static TASK_CGROUPS_OFF: u64 = 0;

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> u32 {
    // TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
    //          unsigned int prev_state)
    // pid 0 is the idle task: its time is idle, not a cgroup's usage.
    if bpf_get_current_pid_tgid() as u32 != 0 {
        charge(ctx.arg::<*mut task_struct>(1));
    }
    0
}

/// Every 20 ms on every CPU (a perf CPU clock event, in a hard interrupt):
/// charges the running task what it has gained so far. sched_switch runs
/// with interrupts off, so the two never interleave on one CPU.
#[perf_event]
pub fn cpu_clock(_ctx: PerfEventContext) -> u32 {
    if bpf_get_current_pid_tgid() as u32 != 0 {
        // SAFETY: returns the running task as a trusted BTF pointer.
        charge(unsafe { bpf_get_current_task_btf() });
    }
    0
}

/// A new task: its storage starts as a zero baseline before it first runs,
/// so all of its time is counted. (Tasks that existed before the agent get
/// their baseline at their first switch-out instead.)
#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: BtfTracePointContext) -> u32 {
    if let Some(seen) = task_seen(ctx.arg::<*mut task_struct>(0)) {
        seen.valid = 1;
    }
    0
}

/// Charges `task` (the running one, whose cgroup is the current cgroup)
/// what it gained since it was last seen.
#[inline(always)]
fn charge(task: *mut task_struct) {
    let Some(now) = read_task(task) else {
        return;
    };
    let Some(seen) = task_seen(task) else {
        return;
    };
    // The cgroup id is asked again only when the task changed css_set (it
    // moved); `task` is `current` here, so the helper names its cgroup.
    let cgroup_id = if seen.css_set == now.css_set && seen.cgroup_id != 0 {
        seen.cgroup_id
    } else {
        // SAFETY: a helper without arguments, allowed in these programs.
        unsafe { bpf_get_current_cgroup_id() }
    };
    if seen.valid != 0
        && let Some(p) = pending(cgroup_id)
    {
        p.cpu_ns += now.runtime_ns.saturating_sub(seen.runtime_ns);
        p.runq_delay_ns += now.run_delay_ns.saturating_sub(seen.run_delay_ns);
        p.runq_count += now.pcount.saturating_sub(seen.pcount);
    }
    *seen = TaskSeen { cgroup_id, ..now };
}

/// This CPU's pending counts, for cgroup `id`: when another cgroup's counts
/// are pending, they are moved to its counters first. sched_switch runs
/// with interrupts off, so nothing else touches this CPU's slot meanwhile.
#[inline(always)]
fn pending(id: u64) -> Option<&'static mut Pending> {
    // SAFETY: per-CPU slot, see above.
    let p = unsafe { &mut *PENDING.get_ptr_mut(0)? };
    if p.cgroup_id != id {
        if p.cgroup_id != 0
            && let Some(c) = counters(p.cgroup_id)
        {
            c.cpu_ns += p.cpu_ns;
            c.runq_delay_ns += p.runq_delay_ns;
            c.runq_count += p.runq_count;
        }
        *p = Pending {
            cgroup_id: id,
            ..Pending::default()
        };
    }
    Some(p)
}

/// The task's cumulative counters, now.
///
/// Plain loads, not `bpf_probe_read_kernel` (about 40 ns a call here): the
/// verifier knows `task` as a BTF `task_struct` and the offsets as
/// constants (they live in the frozen read-only globals), so it checks each
/// load against the kernel's type and lets it through.
#[inline(always)]
fn read_task(task: *mut task_struct) -> Option<TaskSeen> {
    let base = task.cast::<u8>();
    // SAFETY: see above; the verifier rejects the program if an offset does
    // not land on a u64 member of task_struct.
    let read = |global: &u64| unsafe {
        let off = core::ptr::read_volatile(global) as usize;
        core::ptr::read_volatile(base.add(off).cast::<u64>())
    };
    Some(TaskSeen {
        runtime_ns: read(&TASK_RUNTIME_OFF),
        run_delay_ns: read(&TASK_RUN_DELAY_OFF),
        pcount: read(&TASK_PCOUNT_OFF),
        valid: 1,
        css_set: read(&TASK_CGROUPS_OFF),
        cgroup_id: 0,
    })
}
