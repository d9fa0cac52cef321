//! Empty programs on the same hooks as the real ones. They are loaded only
//! by `shadow-agent probe-cost`: the kernel's per-program run time of an
//! empty program is the floor a real handler is compared with.

use aya_ebpf::{
    macros::{btf_tracepoint, cgroup_skb, perf_event},
    programs::{BtfTracePointContext, PerfEventContext, SkBuffContext},
};

macro_rules! empty_tracepoints {
    ($($name:ident => $tp:literal),* $(,)?) => {$(
        #[btf_tracepoint(function = $tp)]
        pub fn $name(_ctx: BtfTracePointContext) -> u32 {
            0
        }
    )*};
}

empty_tracepoints!(
    empty_sched_switch => "sched_switch",
    empty_sched_wakeup_new => "sched_wakeup_new",
    empty_page_fault_user => "page_fault_user",
    empty_page_fault_kernel => "page_fault_kernel",
    empty_block_io_start => "block_io_start",
    empty_block_rq_complete => "block_rq_complete",
    empty_direct_reclaim_begin => "mm_vmscan_direct_reclaim_begin",
    empty_direct_reclaim_end => "mm_vmscan_direct_reclaim_end",
    empty_memcg_reclaim_begin => "mm_vmscan_memcg_reclaim_begin",
    empty_memcg_reclaim_end => "mm_vmscan_memcg_reclaim_end",
);

#[perf_event]
pub fn empty_cpu_clock(_ctx: PerfEventContext) -> u32 {
    0
}

#[cgroup_skb(egress)]
pub fn empty_net_egress(_ctx: SkBuffContext) -> i32 {
    1
}

#[cgroup_skb(ingress)]
pub fn empty_net_ingress(_ctx: SkBuffContext) -> i32 {
    1
}
