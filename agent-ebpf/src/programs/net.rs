//! Network bytes and packets per cgroup from cgroup_skb programs attached to
//! the v2 root (they run for every descendant). The socket's cgroup is known
//! on both paths, so ingress is attributed right, unlike softirq hooks that
//! have lost the owner. Bytes are IP bytes (skb->len, headers included).

use aya_ebpf::{helpers::bpf_skb_cgroup_id, macros::cgroup_skb, programs::SkBuffContext};

use crate::maps::counters;

/// Let the packet through: these programs only count.
const PASS: i32 = 1;

#[cgroup_skb(egress)]
pub fn net_egress(ctx: SkBuffContext) -> i32 {
    if let Some((c, bytes, packets)) = count(&ctx) {
        c.net_tx_bytes += bytes;
        c.net_tx_packets += packets;
    }
    PASS
}

#[cgroup_skb(ingress)]
pub fn net_ingress(ctx: SkBuffContext) -> i32 {
    if let Some((c, bytes, packets)) = count(&ctx) {
        c.net_rx_bytes += bytes;
        c.net_rx_packets += packets;
    }
    PASS
}

/// The counters of the packet's socket's cgroup, its bytes and its packets
/// (a GSO packet counts as the segments it will be cut into).
#[inline(always)]
fn count(ctx: &SkBuffContext) -> Option<(&'static mut agent_ebpf::Counters, u64, u64)> {
    let skb = ctx.skb.skb;
    // SAFETY: `skb` is the program's context pointer as the kernel passed
    // it, the argument this helper expects (the verifier checks the type).
    let id = unsafe { bpf_skb_cgroup_id(skb) };
    // SAFETY: a load from the context: `gso_segs` is a `__sk_buff` field
    // that cgroup_skb programs may read; the verifier checks the offset and
    // rewrites the load into a read of the kernel's own sk_buff.
    let segs = u64::from(unsafe { (*skb).gso_segs }).max(1);
    Some((counters(id)?, u64::from(ctx.len()), segs))
}
