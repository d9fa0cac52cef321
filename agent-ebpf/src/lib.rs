//! The map ABI shared by Shadow's kernel programs and the agent.
//!
//! Defined once, `#[repr(C)]` with explicit sizes, so the kernel and userspace
//! sides cannot drift. The programs themselves live in `main.rs` and the
//! `programs/` folder and are only compiled for the BPF target.
#![no_std]

/// Name of the per-CPU hash map of [`Counters`], keyed by the v2 cgroup id.
pub const COUNTERS_MAP: &str = "COUNTERS";

/// Name of the per-CPU array (one entry per CPU) of [`Pending`].
pub const PENDING_MAP: &str = "PENDING";

/// Capacity of [`COUNTERS_MAP`]: enough for 10,000+ cgroups. Its memory is
/// `MAX_CGROUPS * size_of::<Counters>() * possible CPUs` plus per-entry overhead.
pub const MAX_CGROUPS: u32 = 16_384;

/// Capacity of the map of tasks inside reclaim: a task is in it only while
/// it reclaims, so this bounds the tasks stalled at once that are timed.
pub const MAX_RECLAIMING: u32 = 16_384;

/// Capacity of the map of block requests in flight (requests are
/// preallocated per hardware queue tag, so their addresses are a bounded set).
pub const MAX_IN_FLIGHT: u32 = 16_384;

/// Globals holding kernel struct offsets (bytes), read from the running
/// kernel's BTF by the agent and set at load time (aya cannot emit CO-RE
/// relocations). Each names the global in the BPF object and the member path.
pub mod offsets {
    /// A global offset: (global name, struct, member path).
    pub type Offset = (&'static str, &'static str, &'static [&'static str]);
    /// `struct request`'s `cmd_flags` (operation and flags, u32).
    pub const RQ_CMD_FLAGS: Offset = ("RQ_CMD_FLAGS_OFF", "request", &["cmd_flags"]);
    /// `task_struct`'s `se.sum_exec_runtime`: the scheduler's own on-CPU
    /// nanoseconds, the figure cgroup `cpu.stat` sums.
    pub const TASK_RUNTIME: Offset = (
        "TASK_RUNTIME_OFF",
        "task_struct",
        &["se", "sum_exec_runtime"],
    );
    /// `task_struct`'s `sched_info.run_delay`: nanoseconds spent runnable
    /// but waiting for a CPU (schedstat's second field).
    pub const TASK_RUN_DELAY: Offset = (
        "TASK_RUN_DELAY_OFF",
        "task_struct",
        &["sched_info", "run_delay"],
    );
    /// `task_struct`'s `sched_info.pcount`: times the task got a CPU.
    pub const TASK_PCOUNT: Offset = ("TASK_PCOUNT_OFF", "task_struct", &["sched_info", "pcount"]);
    /// `task_struct`'s `cgroups`: its css_set, which changes exactly when
    /// the task moves to another cgroup.
    pub const TASK_CGROUPS: Offset = ("TASK_CGROUPS_OFF", "task_struct", &["cgroups"]);
}

/// What the scheduler probe last saw of a task (task local storage), so each
/// switch-out charges only what happened since.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskSeen {
    /// `se.sum_exec_runtime` at the last switch-out.
    pub runtime_ns: u64,
    /// `sched_info.run_delay` then.
    pub run_delay_ns: u64,
    /// `sched_info.pcount` then.
    pub pcount: u64,
    /// 0 until the fields hold a baseline (storage starts zeroed).
    pub valid: u64,
    /// The task's css_set (`task_struct.cgroups`) when `cgroup_id` was read.
    pub css_set: u64,
    /// Its v2 cgroup id then: asking the kernel costs about 50 ns a switch
    /// here, comparing the css_set pointer a load.
    pub cgroup_id: u64,
}

const _: () = assert!(core::mem::size_of::<TaskSeen>() == 48);

/// Usage counters of one cgroup on one CPU, all monotonic since the entry was
/// created. Userspace sums the CPUs and takes deltas per tick.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct Counters {
    /// Nanoseconds on CPU (charged when a task is switched out).
    pub cpu_ns: u64,
    /// Nanoseconds runnable tasks waited for a CPU (enqueue to switch-in).
    pub runq_delay_ns: u64,
    /// Number of times tasks got a CPU (each ends one wait, maybe of 0 ns).
    pub runq_count: u64,
    /// Page faults on user addresses (from user or kernel mode).
    pub page_faults: u64,
    /// Bytes of read bios submitted by the cgroup's tasks.
    pub io_read_bytes: u64,
    /// Bytes of write bios submitted by the cgroup's tasks.
    pub io_write_bytes: u64,
    /// Read and write bios submitted.
    pub io_ops: u64,
    /// Summed submission-to-completion time of those bios that completed.
    pub io_latency_ns: u64,
    /// IP bytes (headers included) sent by the cgroup's sockets.
    pub net_tx_bytes: u64,
    /// IP bytes (headers included) received by the cgroup's sockets.
    pub net_rx_bytes: u64,
    /// Packets sent (GSO segments counted one by one).
    pub net_tx_packets: u64,
    /// Packets received (GSO segments counted one by one).
    pub net_rx_packets: u64,
    /// Nanoseconds the cgroup's tasks spent in direct reclaim (global, or
    /// their memory cgroup's limit or high boundary), charged when the
    /// reclaim ends.
    pub reclaim_stall_ns: u64,
}

const _: () = assert!(core::mem::size_of::<Counters>() == 104);

impl Counters {
    /// `f` applied field by field to `self` and `other`: the one place
    /// that lists the fields for arithmetic on whole counter sets.
    pub fn zip_with(&self, other: &Self, f: impl Fn(u64, u64) -> u64) -> Self {
        Self {
            cpu_ns: f(self.cpu_ns, other.cpu_ns),
            runq_delay_ns: f(self.runq_delay_ns, other.runq_delay_ns),
            runq_count: f(self.runq_count, other.runq_count),
            page_faults: f(self.page_faults, other.page_faults),
            io_read_bytes: f(self.io_read_bytes, other.io_read_bytes),
            io_write_bytes: f(self.io_write_bytes, other.io_write_bytes),
            io_ops: f(self.io_ops, other.io_ops),
            io_latency_ns: f(self.io_latency_ns, other.io_latency_ns),
            net_tx_bytes: f(self.net_tx_bytes, other.net_tx_bytes),
            net_rx_bytes: f(self.net_rx_bytes, other.net_rx_bytes),
            net_tx_packets: f(self.net_tx_packets, other.net_tx_packets),
            net_rx_packets: f(self.net_rx_packets, other.net_rx_packets),
            reclaim_stall_ns: f(self.reclaim_stall_ns, other.reclaim_stall_ns),
        }
    }

    /// Field-wise sum (per-CPU values into a total), wrapping like the
    /// kernel's own u64 counters.
    pub fn wrapping_add(&self, other: &Self) -> Self {
        self.zip_with(other, u64::wrapping_add)
    }
}

// SAFETY: `Counters` is `repr(C)`, `Copy`, made only of u64 and has no padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Counters {}

/// Scheduler counts of the cgroup that last ran on a CPU, not yet added to
/// [`COUNTERS_MAP`]. Consecutive switch-outs of the same cgroup's tasks on
/// a CPU (the common case) add here, an array slot, instead of looking the
/// cgroup up in the hash map each time; the counts are moved to the hash
/// map when another cgroup runs. Userspace adds what is pending to the
/// totals it read from the hash map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// v2 cgroup id the counts belong to (0: none).
    pub cgroup_id: u64,
    /// As in [`Counters`].
    pub cpu_ns: u64,
    /// As in [`Counters`].
    pub runq_delay_ns: u64,
    /// As in [`Counters`].
    pub runq_count: u64,
}

const _: () = assert!(core::mem::size_of::<Pending>() == 32);

// SAFETY: `Pending` is `repr(C)`, `Copy`, made only of u64 and has no padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Pending {}

/// A task inside reclaim: when its outermost reclaim began and how deeply
/// reclaims are nested (a memcg reclaim may, in principle, run inside a
/// global one; only the outermost is timed, so nothing counts twice).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ReclaimStart {
    /// `bpf_ktime_get_ns()` at the outermost begin.
    pub start_ns: u64,
    /// Reclaims begun and not yet ended.
    pub depth: u64,
}

const _: () = assert!(core::mem::size_of::<ReclaimStart>() == 16);

/// Block I/O in flight: who submitted it and when.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoStart {
    /// v2 cgroup id of the submitting task.
    pub cgroup_id: u64,
    /// `bpf_ktime_get_ns()` at submission.
    pub start_ns: u64,
}

const _: () = assert!(core::mem::size_of::<IoStart>() == 16);
