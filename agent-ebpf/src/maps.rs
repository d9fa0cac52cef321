//! The maps and the one way programs reach a cgroup's counters.

use agent_ebpf::{Counters, IoStart, MAX_CGROUPS, MAX_IN_FLIGHT};
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

/// Per CPU: when the task now running on it was switched in (ns).
#[map(name = "SWITCHED_IN")]
pub static SWITCHED_IN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Block requests: request address → submitter and start time. Request
/// structs are preallocated per hardware queue tag and reused, so the keys
/// are a bounded set and entries are updated in place, never deleted. A plain
/// hash: an LRU map's update costs an LRU pop and push on every event (about
/// 40x an empty program here).
#[map(name = "IO_START")]
pub static IO_START: HashMap<u64, IoStart> = HashMap::with_max_entries(MAX_IN_FLIGHT, 0);

/// A BTF-defined task local storage map (aya-ebpf 0.2 has no wrapper): one
/// u64 per task, found through the task itself (no hashing, no shared
/// lock) and freed by the kernel when the task exits. The layout is the
/// libbpf convention: each field's pointee encodes one attribute.
#[repr(C)]
pub struct TaskStorage {
    r#type: *const [i32; BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const u64,
    max_entries: *const [i32; 0],
    /// BPF_F_NO_PREALLOC, which local storage requires.
    map_flags: *const [i32; 1],
}

// SAFETY: the fields are placeholders the loader reads from BTF; they are
// never dereferenced.
unsafe impl Sync for TaskStorage {}

/// Per task: when it became runnable (ns), 0 while it is not waiting.
#[unsafe(link_section = ".maps")]
#[unsafe(export_name = "RUNQ_START")]
pub static RUNQ_START: TaskStorage = TaskStorage {
    r#type: core::ptr::null(),
    key: core::ptr::null(),
    value: core::ptr::null(),
    max_entries: core::ptr::null(),
    map_flags: core::ptr::null(),
};

/// The run-queue slot of `task`, created if `create` (else None if absent).
#[inline(always)]
pub fn runq_slot(
    task: *mut aya_ebpf::bindings::task_struct,
    create: bool,
) -> Option<&'static mut u64> {
    let flags = if create {
        u64::from(aya_ebpf::bindings::BPF_LOCAL_STORAGE_GET_F_CREATE)
    } else {
        0
    };
    let map = core::ptr::from_ref(&RUNQ_START).cast_mut().cast();
    // SAFETY: `task` is a tracepoint argument the verifier knows as a
    // task_struct; the helper returns null or a pointer into the storage.
    let slot =
        unsafe { aya_ebpf::helpers::bpf_task_storage_get(map, task, core::ptr::null_mut(), flags) };
    // SAFETY: non-null storage of a u64 belonging to `task`.
    unsafe { slot.cast::<u64>().as_mut() }
}

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
