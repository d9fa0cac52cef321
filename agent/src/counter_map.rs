//! Reads the kernel's per-CPU counter map in batches.
//!
//! aya 0.14 iterates a hash map with two syscalls per entry (next key, then
//! lookup); with 10,000 cgroups that is 20,000 syscalls per tick.
//! `BPF_MAP_LOOKUP_BATCH` (kernel 5.6+) returns hundreds of entries, with
//! every CPU's value, per call. The scheduler's per-CPU pending counts
//! (`agent_ebpf::Pending`) are read after the hash map and added in: read in
//! that order, a move from pending to the map that races with the read can
//! at worst count one CPU's pending amount twice in one tick, which the
//! collector's monotonic baseline pays back over the next ticks.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use agent_ebpf::{Counters, Pending};
use aya::maps::MapData;

use crate::collector::{CollectError, CounterSource};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries asked for per batch call.
const BATCH: usize = 1024;

/// The per-cgroup counter map, read in batches and summed over CPUs.
pub struct CounterMap {
    map: MapData,
    pending_map: MapData,
    cpus: usize,
    keys: Vec<u64>,
    values: Vec<Counters>,
    pending: Vec<Pending>,
}

impl CounterMap {
    /// Wraps the maps taken from the loaded object.
    pub fn new(map: MapData, pending_map: MapData) -> Result<Self, CollectError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| CollectError::Syscall(e))?;
        Ok(Self {
            map,
            pending_map,
            cpus,
            keys: vec![0; BATCH],
            values: vec![Counters::default(); BATCH * cpus],
            pending: vec![Pending::default(); cpus],
        })
    }

    fn fd(&self) -> u32 {
        fd_of(&self.map)
    }

    /// Every CPU's pending scheduler counts.
    fn read_pending(&mut self) -> Result<&[Pending], CollectError> {
        let key = 0u32;
        // struct { map_fd: u32, pad: u32, key: u64, value: u64, flags: u64 }
        let mut attr = [
            u64::from(fd_of(&self.pending_map)),
            std::ptr::from_ref(&key) as u64,
            self.pending.as_mut_ptr() as u64,
            0,
        ];
        bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).map_err(CollectError::Syscall)?;
        Ok(&self.pending)
    }
}

/// `bpf(cmd, attr)`. The attr is a prefix of `union bpf_attr`; the kernel
/// zero-extends shorter ones.
fn bpf(cmd: libc::c_long, attr: &mut [u64]) -> io::Result<()> {
    // SAFETY: attr points to initialised memory of the size given, laid out
    // as the command's part of `union bpf_attr`; buffers it points to are
    // valid for the sizes encoded in it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn fd_of(map: &MapData) -> u32 {
    map.fd().as_fd().as_raw_fd() as u32
}

impl CounterSource for CounterMap {
    fn read_all(&mut self, out: &mut Vec<(u64, Counters)>) -> Result<(), CollectError> {
        let mut token = 0u64;
        let mut first = true;
        loop {
            let mut next = 0u64;
            // struct { in_batch, out_batch, keys, values: u64; count, map_fd: u32;
            //          elem_flags, flags: u64 } batch;
            let mut attr = [
                if first {
                    0
                } else {
                    std::ptr::from_ref(&token) as u64
                },
                std::ptr::from_mut(&mut next) as u64,
                self.keys.as_mut_ptr() as u64,
                self.values.as_mut_ptr() as u64,
                (BATCH as u64) | (u64::from(self.fd()) << 32),
                0,
                0,
            ];
            let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
            let count = (attr[4] & 0xffff_ffff) as usize;
            for (i, key) in self.keys.iter().take(count.min(BATCH)).enumerate() {
                let per_cpu = &self.values[i * self.cpus..(i + 1) * self.cpus];
                out.push((
                    *key,
                    per_cpu
                        .iter()
                        .fold(Counters::default(), |acc, c| acc.wrapping_add(c)),
                ));
            }
            match result {
                Ok(()) => {}
                // ENOENT: the last batch (possibly with entries) was returned.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
                Err(e) => return Err(CollectError::Syscall(e)),
            }
            token = next;
            first = false;
        }
        for p in self.read_pending()?.iter().filter(|p| p.cgroup_id != 0) {
            let extra = Counters {
                cpu_ns: p.cpu_ns,
                runq_delay_ns: p.runq_delay_ns,
                runq_count: p.runq_count,
                ..Counters::default()
            };
            match out.iter_mut().find(|(id, _)| *id == p.cgroup_id) {
                Some((_, total)) => *total = total.wrapping_add(&extra),
                None => out.push((p.cgroup_id, extra)),
            }
        }
        Ok(())
    }

    fn remove(&mut self, id: u64) {
        // struct { map_fd: u32, pad: u32, key: u64, ... }
        let mut attr = [u64::from(self.fd()), std::ptr::from_ref(&id) as u64, 0, 0];
        // Already gone is fine: the goal is that it is gone.
        let _ = bpf(BPF_MAP_DELETE_ELEM, &mut attr);
    }
}
