//! Loads and attaches Shadow's BPF programs.
//!
//! A probe whose hook the kernel lacks is skipped with one warning and the
//! others run. Everything that stops the agent as a whole (not root, no BTF,
//! object not built, nothing attached) is a [`ProbeError`] that says what to
//! do about it.

use std::{fs::File, path::Path};

use agent_ebpf::{
    COUNTERS_MAP, PENDING_MAP,
    offsets::{self, Offset},
};
use aya::{
    Ebpf, EbpfLoader,
    maps::MapData,
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, PerfEvent, ProgramError,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};
use tracing::{info, warn};

use crate::btf::{self, Btf};

#[cfg(shadow_bpf_object)]
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("SHADOW_BPF_OBJECT"));
#[cfg(not(shadow_bpf_object))]
static OBJECT: &[u8] = &[];

/// Where a program attaches.
#[derive(Clone, Copy, Debug)]
enum Hook {
    /// A BTF tracepoint (`tp_btf`), by tracepoint name.
    Tracepoint(&'static str),
    /// A cgroup_skb program on the v2 root.
    CgroupSkb(CgroupSkbAttachType),
    /// A perf_event program on the CPU clock of every online CPU, firing
    /// every this many nanoseconds.
    CpuClock(u64),
}

/// One program: its name in the object, its hook, what it measures.
#[derive(Clone, Copy, Debug)]
struct Probe {
    program: &'static str,
    /// The empty program on the same hook (for `probe-cost`).
    empty: &'static str,
    hook: Hook,
    measures: &'static str,
    /// Kernel struct members the program reads (offsets set at load time).
    reads: &'static [Offset],
}

/// What the scheduler programs read of `task_struct`.
const SCHED_READS: &[Offset] = &[
    offsets::TASK_RUNTIME,
    offsets::TASK_RUN_DELAY,
    offsets::TASK_PCOUNT,
    offsets::TASK_CGROUPS,
];

const PROBES: &[Probe] = &[
    Probe {
        program: "sched_switch",
        empty: "empty_sched_switch",
        hook: Hook::Tracepoint("sched_switch"),
        measures: "CPU time, run-queue delay",
        reads: SCHED_READS,
    },
    Probe {
        program: "cpu_clock",
        empty: "empty_cpu_clock",
        hook: Hook::CpuClock(20_000_000),
        measures: "CPU time of running tasks",
        reads: SCHED_READS,
    },
    Probe {
        program: "sched_wakeup_new",
        empty: "empty_sched_wakeup_new",
        hook: Hook::Tracepoint("sched_wakeup_new"),
        measures: "CPU time of new tasks",
        reads: &[],
    },
    Probe {
        program: "page_fault_user",
        empty: "empty_page_fault_user",
        hook: Hook::Tracepoint("page_fault_user"),
        measures: "page faults",
        reads: &[],
    },
    Probe {
        program: "page_fault_kernel",
        empty: "empty_page_fault_kernel",
        hook: Hook::Tracepoint("page_fault_kernel"),
        measures: "page faults",
        reads: &[],
    },
    Probe {
        program: "block_io_start",
        empty: "empty_block_io_start",
        hook: Hook::Tracepoint("block_io_start"),
        measures: "block I/O",
        reads: &[],
    },
    Probe {
        program: "block_rq_complete",
        empty: "empty_block_rq_complete",
        hook: Hook::Tracepoint("block_rq_complete"),
        measures: "block I/O",
        reads: &[offsets::RQ_CMD_FLAGS],
    },
    Probe {
        program: "direct_reclaim_begin",
        empty: "empty_direct_reclaim_begin",
        hook: Hook::Tracepoint("mm_vmscan_direct_reclaim_begin"),
        measures: "reclaim stall",
        reads: &[],
    },
    Probe {
        program: "direct_reclaim_end",
        empty: "empty_direct_reclaim_end",
        hook: Hook::Tracepoint("mm_vmscan_direct_reclaim_end"),
        measures: "reclaim stall",
        reads: &[],
    },
    Probe {
        program: "memcg_reclaim_begin",
        empty: "empty_memcg_reclaim_begin",
        hook: Hook::Tracepoint("mm_vmscan_memcg_reclaim_begin"),
        measures: "reclaim stall",
        reads: &[],
    },
    Probe {
        program: "memcg_reclaim_end",
        empty: "empty_memcg_reclaim_end",
        hook: Hook::Tracepoint("mm_vmscan_memcg_reclaim_end"),
        measures: "reclaim stall",
        reads: &[],
    },
    Probe {
        program: "net_egress",
        empty: "empty_net_egress",
        hook: Hook::CgroupSkb(CgroupSkbAttachType::Egress),
        measures: "network tx",
        reads: &[],
    },
    Probe {
        program: "net_ingress",
        empty: "empty_net_ingress",
        hook: Hook::CgroupSkb(CgroupSkbAttachType::Ingress),
        measures: "network rx",
        reads: &[],
    },
];

/// Why the agent cannot observe at all.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Loading BPF programs is privileged.
    #[error(
        "loading BPF programs needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN); run it with sudo"
    )]
    NotPrivileged,
    /// The kernel has no BTF, which BTF tracepoints need.
    #[error(
        "this kernel exposes no BTF at {path}: Shadow's tracepoints need a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf {
        /// The file that is missing.
        path: &'static str,
    },
    /// The binary was built without its BPF object.
    #[error(
        "this binary was built without its BPF object: run `cargo xtask build-ebpf`, then build the agent again (or just `cargo xtask build`)"
    )]
    NotBuilt,
    /// The object could not be loaded as a whole (maps, relocations).
    #[error("loading the BPF object failed")]
    Load(#[source] Box<aya::EbpfError>),
    /// Every probe failed: there is nothing to observe.
    #[error("no probe could be attached:\n{0}")]
    NothingAttached(String),
}

/// What happened to one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Loaded and attached.
    Attached,
    /// The kernel lacks the hook; the probe is off.
    Missing(String),
    /// The kernel refused the program or the attachment.
    Failed(String),
}

/// One line of the probe report.
#[derive(Clone, Debug)]
pub struct Report {
    /// Program name.
    pub program: &'static str,
    /// What it measures.
    pub measures: &'static str,
    /// Outcome.
    pub status: Status,
}

/// The loaded programs (detached when dropped) and what happened to each.
pub struct Probes {
    ebpf: Ebpf,
    reports: Vec<Report>,
    /// Keeps `bpf_stats` on while held (BPF_ENABLE_STATS, no sysctl change).
    _stats: Option<std::os::fd::OwnedFd>,
}

/// How to attach.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Turn on the kernel's per-program run-time statistics while attached.
    pub stats: bool,
    /// Also attach an empty program beside each probe, as a cost baseline.
    pub baselines: bool,
}

/// What one probe costs per event, next to the empty program on its hook.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Cost {
    /// Program name.
    pub program: &'static str,
    /// Events the program ran for.
    pub events: u64,
    /// Mean nanoseconds per event.
    pub ns_per_event: f64,
    /// The same for the empty program on the same hook (NaN if not attached).
    pub empty_ns_per_event: f64,
}

impl Probes {
    /// Loads the object and attaches every probe the kernel supports.
    /// `cgroup_v2_root` is where the network programs attach (None: off).
    pub fn attach(cgroup_v2_root: Option<&Path>, options: Options) -> Result<Self, ProbeError> {
        check_privileges()?;
        if OBJECT.is_empty() {
            return Err(ProbeError::NotBuilt);
        }
        let kernel_btf = aya::Btf::from_sys_fs().map_err(|_| ProbeError::NoBtf {
            path: btf::VMLINUX_BTF,
        })?;
        // Every offset any program reads; a failed lookup turns off only the
        // probes that need it.
        let all: Vec<Offset> = PROBES
            .iter()
            .flat_map(|p| p.reads.iter().copied())
            .collect();
        let located = locate(&all);
        let mut loader = EbpfLoader::new();
        loader.btf(Some(&kernel_btf));
        for ((global, ..), found) in all.iter().zip(&located) {
            loader.override_global(global, found.as_ref().unwrap_or(&0), true);
        }
        // TASK_SEEN is task local storage, which aya 0.14 creates but has
        // no typed wrapper for; only the kernel side uses it.
        let mut ebpf = loader
            .allow_unsupported_maps()
            .load(OBJECT)
            .map_err(|e| ProbeError::Load(Box::new(e)))?;
        let stats = options
            .stats
            .then(|| aya::sys::enable_stats(aya::sys::Stats::RunTime).ok())
            .flatten();
        let mut reports = Vec::new();
        for probe in PROBES {
            let missing = all
                .iter()
                .zip(&located)
                .find_map(|(offset, found)| match found {
                    Err(why) if probe.reads.contains(offset) => Some(why.clone()),
                    _ => None,
                });
            let status = match missing {
                Some(why) => Status::Missing(why),
                None => attach_one(
                    &mut ebpf,
                    probe.program,
                    probe.hook,
                    &kernel_btf,
                    cgroup_v2_root,
                ),
            };
            if options.baselines && status == Status::Attached {
                let baseline = attach_one(
                    &mut ebpf,
                    probe.empty,
                    probe.hook,
                    &kernel_btf,
                    cgroup_v2_root,
                );
                if baseline != Status::Attached {
                    warn!(program = probe.empty, status = ?baseline, "baseline not attached");
                }
            }
            match &status {
                Status::Attached => info!(program = probe.program, "probe attached"),
                Status::Missing(why) => {
                    warn!(
                        program = probe.program,
                        measures = probe.measures,
                        why = %why,
                        "probe off"
                    )
                }
                Status::Failed(why) => {
                    warn!(
                        program = probe.program,
                        measures = probe.measures,
                        cause = %why,
                        "probe failed"
                    )
                }
            }
            reports.push(Report {
                program: probe.program,
                measures: probe.measures,
                status,
            });
        }
        if !reports.iter().any(|r| r.status == Status::Attached) {
            let lines: Vec<String> = reports
                .iter()
                .map(|r| format!("  {}: {:?}", r.program, r.status))
                .collect();
            return Err(ProbeError::NothingAttached(lines.join("\n")));
        }
        Ok(Self {
            ebpf,
            reports,
            _stats: stats,
        })
    }

    /// What happened to each probe.
    pub fn reports(&self) -> &[Report] {
        &self.reports
    }

    /// The per-cgroup counter map and the per-CPU pending scheduler counts
    /// (taken out of the object: call once).
    pub fn counter_maps(&mut self) -> Option<(MapData, MapData)> {
        let counters = match self.ebpf.take_map(COUNTERS_MAP)? {
            aya::maps::Map::PerCpuHashMap(data) => data,
            _ => return None,
        };
        let pending = match self.ebpf.take_map(PENDING_MAP)? {
            aya::maps::Map::PerCpuArray(data) => data,
            _ => return None,
        };
        Some((counters, pending))
    }

    /// Per-event cost of each attached probe and of its empty twin, from
    /// the kernel's bpf_stats (attach with `stats` and `baselines`).
    pub fn costs(&self) -> Vec<Cost> {
        let stats = |name: &str| {
            let info = self.ebpf.program(name).and_then(|p| p.info().ok())?;
            let events = info.run_count();
            Some((
                events,
                info.run_time().as_nanos() as f64 / events.max(1) as f64,
            ))
        };
        PROBES
            .iter()
            .filter_map(|p| {
                let (events, ns_per_event) = stats(p.program)?;
                let empty = stats(p.empty).map_or(f64::NAN, |(_, ns)| ns);
                Some(Cost {
                    program: p.program,
                    events,
                    ns_per_event,
                    empty_ns_per_event: empty,
                })
            })
            .collect()
    }
}

/// Each offset's value from the kernel's BTF, or why it is not there.
fn locate(wanted: &[Offset]) -> Vec<Result<u64, String>> {
    let btf = Btf::from_kernel();
    wanted
        .iter()
        .map(|(_, structure, path)| match &btf {
            Ok(btf) => btf
                .member_offset(structure, path)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        })
        .collect()
}

fn attach_one(
    ebpf: &mut Ebpf,
    name: &str,
    hook: Hook,
    btf: &aya::Btf,
    v2_root: Option<&Path>,
) -> Status {
    let Some(program) = ebpf.program_mut(name) else {
        return Status::Failed(
            "program missing from the BPF object (rebuild with `cargo xtask build-ebpf`)".into(),
        );
    };
    let result = match hook {
        Hook::Tracepoint(tp) => match <&mut BtfTracePoint>::try_from(program) {
            Ok(p) => p.load(tp, btf).and_then(|()| p.attach().map(drop)),
            Err(e) => Err(e),
        },
        Hook::CpuClock(period_ns) => match <&mut PerfEvent>::try_from(program) {
            Ok(p) => p.load().and_then(|()| {
                let cpus = aya::util::online_cpus().map_err(|(_, e)| {
                    ProgramError::SyscallError(aya::sys::SyscallError {
                        call: "online_cpus",
                        io_error: e,
                    })
                })?;
                for cpu in cpus {
                    p.attach(
                        PerfEventConfig::Software(SoftwareEvent::CpuClock),
                        PerfEventScope::AllProcessesOneCpu { cpu },
                        SamplePolicy::Period(period_ns),
                        false,
                    )?;
                }
                Ok(())
            }),
            Err(e) => Err(e),
        },
        Hook::CgroupSkb(kind) => {
            let Some(root) = v2_root else {
                return Status::Missing("no cgroup v2 hierarchy is mounted".into());
            };
            let cgroup = match File::open(root) {
                Ok(f) => f,
                Err(e) => return Status::Failed(format!("cannot open {}: {e}", root.display())),
            };
            match <&mut CgroupSkb>::try_from(program) {
                // On kernels with BPF links (5.7+) aya attaches through a
                // link, which the kernel always adds beside other programs
                // (BPF_F_ALLOW_MULTI) and which refuses explicit flags:
                // `Single` here passes none and displaces nobody.
                Ok(p) => p
                    .load()
                    .and_then(|()| p.attach(&cgroup, kind, CgroupAttachMode::Single).map(drop)),
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => Status::Attached,
        Err(e) => classify(hook, e),
    }
}

/// Turns aya's error into a status an operator can act on.
fn classify(hook: Hook, err: ProgramError) -> Status {
    match err {
        ProgramError::Btf(aya::BtfError::UnknownBtfTypeName { .. }) => {
            let Hook::Tracepoint(tp) = hook else {
                return Status::Failed(err.to_string());
            };
            Status::Missing(format!("this kernel has no tracepoint {tp}"))
        }
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .take(6)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Status::Failed(format!(
                "the kernel verifier rejected it ({io_error}); this kernel or this build is not supported, please report with this log:\n{}",
                tail.join("\n")
            ))
        }
        other => Status::Failed(chain(&other)),
    }
}

/// Root, or the capabilities BPF loading and cgroup attachment need.
fn check_privileges() -> Result<(), ProbeError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let needed = [CAP_NET_ADMIN, CAP_PERFMON, CAP_BPF];
    if needed.iter().all(|cap| effective & (1 << cap) != 0) {
        Ok(())
    } else {
        Err(ProbeError::NotPrivileged)
    }
}

/// An error and its causes on one line (aya's syscall errors keep the errno
/// in the source).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
