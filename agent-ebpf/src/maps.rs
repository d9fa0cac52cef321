//! The maps and the one way programs reach a cgroup's counters.

use agent_ebpf::{
    Counters, IoStart, MAX_CGROUPS, MAX_IN_FLIGHT, MAX_RECLAIMING, Pending, ReclaimStart, TaskSeen,
};
use aya_ebpf::{
    bindings::{BPF_NOEXIST, bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE},
    macros::map,
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
};

/// Per-cgroup counters (see `agent_ebpf::COUNTERS_MAP`). Not LRU: an LRU map
/// would silently evict live counters when full; userspace deletes the
/// entries of removed cgroups instead.
#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuHashMap<u64, Counters> = PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// Per CPU: scheduler counts not yet in COUNTERS (see `agent_ebpf::Pending`).
#[map(name = "PENDING")]
pub static PENDING: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

/// Block requests: request address → submitter and start time. Request
/// structs are preallocated per hardware queue tag and reused, so the keys
/// are a bounded set and entries are updated in place, never deleted. A plain
/// hash: an LRU map's update costs an LRU pop and push on every event (about
/// 40x an empty program here).
#[map(name = "IO_START")]
pub static IO_START: HashMap<u64, IoStart> = HashMap::with_max_entries(MAX_IN_FLIGHT, 0);

/// Tasks inside reclaim: thread id → when it began. An entry lives only
/// while its task reclaims and only that task touches it (a task runs on
/// one CPU at a time), so a plain hash without atomics is enough; reclaim
/// is slow and rare next to the scheduler's events, so the hash cost does
/// not matter here.
#[map(name = "RECLAIMING")]
pub static RECLAIMING: HashMap<u32, ReclaimStart> = HashMap::with_max_entries(MAX_RECLAIMING, 0);

/// A BTF-defined task local storage map (aya-ebpf 0.2 has no wrapper): one
/// [`TaskSeen`] per task, found through the task itself (no hashing, no
/// shared lock) and freed by the kernel when the task exits. The layout is
/// the libbpf convention: each field's pointee encodes one attribute.
#[repr(C)]
pub struct TaskStorage {
    r#type: *const [i32; BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const TaskSeen,
    max_entries: *const [i32; 0],
    /// BPF_F_NO_PREALLOC, which local storage requires.
    map_flags: *const [i32; 1],
}

// SAFETY: the fields are placeholders the loader reads from BTF; they are
// never dereferenced.
unsafe impl Sync for TaskStorage {}

/// Per task: what the scheduler probe last saw of it.
#[unsafe(link_section = ".maps")]
#[unsafe(export_name = "TASK_SEEN")]
pub static TASK_SEEN: TaskStorage = TaskStorage {
    r#type: core::ptr::null(),
    key: core::ptr::null(),
    value: core::ptr::null(),
    max_entries: core::ptr::null(),
    map_flags: core::ptr::null(),
};

/// The storage of `task`, created zeroed if absent.
#[inline(always)]
pub fn task_seen(task: *mut aya_ebpf::bindings::task_struct) -> Option<&'static mut TaskSeen> {
    let flags = u64::from(aya_ebpf::bindings::BPF_LOCAL_STORAGE_GET_F_CREATE);
    let map = core::ptr::from_ref(&TASK_SEEN).cast_mut().cast();
    // SAFETY: `task` is a tracepoint argument the verifier knows as a
    // task_struct; the helper returns null or a pointer into the storage.
    let slot =
        unsafe { aya_ebpf::helpers::bpf_task_storage_get(map, task, core::ptr::null_mut(), flags) };
    // SAFETY: non-null storage belonging to `task`, which only the
    // scheduler programs touch, and only for a task being switched out or
    // not yet started (never two CPUs at once).
    unsafe { slot.cast::<TaskSeen>().as_mut() }
}

/// This CPU's counters of cgroup `id`, created zeroed on first use.
#[inline(always)]
pub fn counters(id: u64) -> Option<&'static mut Counters> {
    if let Some(c) = COUNTERS.get_ptr_mut(id) {
        // SAFETY: a per-CPU value is only touched by programs on this CPU
        // (they run with migration disabled). One may interrupt another
        // (cgroup_skb ingress in softirq, cpu_clock in a hard interrupt),
        // but the fields split by writer: scheduler programs (which never
        // interleave: sched_switch runs with interrupts off), faults, block
        // completion, egress, ingress; a tracing program does not nest in
        // itself. The one gap: a softirq's egress interrupting a process's
        // egress on the same CPU for the same cgroup can lose one increment
        // of the tx fields; plain adds are kept on purpose (no atomics on
        // hot paths).
        return Some(unsafe { &mut *c });
    }
    // Another CPU may insert the same key first: then ours fails and the
    // lookup below finds theirs.
    let _ = COUNTERS.insert(id, Counters::default(), u64::from(BPF_NOEXIST));
    // SAFETY: as above.
    COUNTERS.get_ptr_mut(id).map(|c| unsafe { &mut *c })
}
