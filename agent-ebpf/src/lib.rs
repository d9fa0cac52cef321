//! The map ABI shared by Shadow's kernel programs and the agent.
//!
//! Defined once, `#[repr(C)]` with explicit sizes, so the kernel and userspace
//! sides cannot drift. The programs themselves live in `main.rs` and the
//! `programs/` folder and are only compiled for the BPF target.
#![no_std]

/// Name of the per-CPU hash map of [`Counters`], keyed by the v2 cgroup id.
pub const COUNTERS_MAP: &str = "COUNTERS";

/// Capacity of [`COUNTERS_MAP`]: enough for 10,000+ cgroups. Its memory is
/// `MAX_CGROUPS * size_of::<Counters>() * possible CPUs` plus per-entry overhead.
pub const MAX_CGROUPS: u32 = 16_384;

/// Capacity of the maps that hold in-flight timestamps (woken tasks waiting
/// for a CPU, block I/O between submission and completion). They are LRU maps:
/// losing an old in-flight entry costs one latency sample, never a counter.
pub const MAX_IN_FLIGHT: u32 = 16_384;

/// Globals holding kernel struct offsets (bytes), read from the running
/// kernel's BTF by the agent and set at load time.
pub mod offsets {
    /// `struct bio`, member `bi_opf` (u32: operation and flags).
    pub const BIO_OPF: &str = "BIO_OPF_OFF";
    /// `struct bio`, member `bi_iter.bi_size` (u32: bytes left to transfer).
    pub const BIO_SIZE: &str = "BIO_SIZE_OFF";
    /// `struct bio`, member `bi_next` (next bio of the same request).
    pub const BIO_NEXT: &str = "BIO_NEXT_OFF";
    /// `struct request`, member `bio` (first bio of the request).
    pub const RQ_BIO: &str = "RQ_BIO_OFF";
}

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
    /// Number of such waits.
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
}

const _: () = assert!(core::mem::size_of::<Counters>() == 96);

// SAFETY: `Counters` is `repr(C)`, `Copy`, made only of u64 and has no padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Counters {}

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
