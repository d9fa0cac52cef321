//! The maps and the one way programs reach a cgroup's counters.

use agent_ebpf::{Counters, IoStart, MAX_CGROUPS, MAX_IN_FLIGHT};
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{LruHashMap, PerCpuArray, PerCpuHashMap},
};

/// Per-cgroup counters (see `agent_ebpf::COUNTERS_MAP`). Not LRU: an LRU map
/// would silently evict live counters when full; userspace deletes the
/// entries of removed cgroups instead.
#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuHashMap<u64, Counters> = PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// Per CPU: when the task now running on it was switched in (ns).
#[map(name = "SWITCHED_IN")]
pub static SWITCHED_IN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Runnable tasks waiting for a CPU: task_struct address → since when (ns).
#[map(name = "RUNQ_START")]
pub static RUNQ_START: LruHashMap<u64, u64> = LruHashMap::with_max_entries(MAX_IN_FLIGHT, 0);

/// Block requests in flight: request address → submitter and start time.
#[map(name = "IO_START")]
pub static IO_START: LruHashMap<u64, IoStart> = LruHashMap::with_max_entries(MAX_IN_FLIGHT, 0);

/// This CPU's counters of cgroup `id`, created zeroed on first use.
#[inline(always)]
pub fn counters(id: u64) -> Option<&'static mut Counters> {
    if let Some(c) = COUNTERS.get_ptr_mut(id) {
        // SAFETY: a per-CPU value is only touched by programs on this CPU,
        // which do not preempt each other (tracing programs run with
        // migration disabled and at most one per CPU at a time).
        return Some(unsafe { &mut *c });
    }
    // Another CPU may insert the same key first: then ours fails and the
    // lookup below finds theirs.
    let _ = COUNTERS.insert(id, Counters::default(), u64::from(BPF_NOEXIST));
    // SAFETY: as above.
    COUNTERS.get_ptr_mut(id).map(|c| unsafe { &mut *c })
}
