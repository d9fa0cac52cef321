//! The actuator over a directory tree mimicking cgroupfs: no root needed.
//! Writes and guardrails here; restoring in `restore.rs`.

use std::{fs, time::Duration};

use super::*;
use crate::actuator::{
    fake::{Capture, FakeTree},
    journal,
};

pub(super) fn guardrails() -> Guardrails {
    Guardrails {
        min_interval: Duration::from_secs(1),
        cooldown: Duration::from_secs(10),
        cpu_floor_cores: 0.1,
    }
}

/// A tree with "/g": cpu, memory, io in v2, and all of it in v1 too.
pub(super) fn tree(name: &str) -> FakeTree {
    let t = FakeTree::new(name);
    t.v2_cgroup("/g", &["cpu", "memory", "io"]);
    t.v1_cgroup("/g");
    t
}

pub(super) fn open(t: &FakeTree, mode: Mode) -> (Actuator, RestoreReport, Capture) {
    let out = Capture::default();
    let (a, r) = Actuator::open_with_output(
        t.layout(),
        &t.root.join("state"),
        mode,
        guardrails(),
        Box::new(out.clone()),
    )
    .expect("open actuator");
    (a, r, out)
}

/// A new value for every knob, all raises from the defaults.
pub(super) fn raises() -> Vec<(Knob, Setting)> {
    let quota = |cores| Setting::CpuQuota(CpuQuota::from_cores(cores, 100_000));
    vec![
        (Knob::CpuMax, quota(1.5)),
        (Knob::CpuWeight, Setting::Weight(300)),
        (Knob::MemoryLow, Setting::Bytes(Bytes::Limit(64 << 20))),
        (Knob::MemoryHigh, Setting::Bytes(Bytes::Max)),
        (Knob::IoWeight, Setting::Weight(200)),
        (Knob::CpuCfsQuota, quota(2.0)),
        (Knob::CpuShares, Setting::Weight(2048)),
        (Knob::MemorySoftLimit, Setting::Bytes(Bytes::Max)),
        (Knob::MemoryLimit, Setting::Bytes(Bytes::Max)),
        (Knob::BlkioWeight, Setting::Weight(500)),
    ]
}

pub(super) fn file(t: &FakeTree, knob: Knob) -> String {
    fs::read_to_string(t.layout().file("/g", knob).unwrap()).unwrap()
}

#[test]
fn writes_journal_first_and_restore_all_puts_everything_back() {
    let t = tree("restore-all");
    // The memory caps start capped so that "max" is a change.
    for knob in [Knob::MemoryHigh, Knob::MemoryLimit, Knob::MemorySoftLimit] {
        fs::write(t.layout().file("/g", knob).unwrap(), "1073741824\n").unwrap();
    }
    let before = t.snapshot();
    let (mut a, report, _) = open(&t, Mode::Write);
    assert_eq!(report, RestoreReport::default());
    let now = Instant::now();
    for (knob, new) in raises() {
        let outcome = a.write("/g", knob, new, "test raise", now).unwrap();
        assert!(
            matches!(outcome, Outcome::Written { .. }),
            "{knob}: {outcome:?}"
        );
        assert_eq!(a.read("/g", knob).unwrap(), new, "{knob} reads back");
    }
    assert_eq!(file(&t, Knob::CpuMax), "150000 100000");
    assert_eq!(file(&t, Knob::CpuCfsQuota), "200000");
    assert_eq!(file(&t, Knob::IoWeight), "default 200");
    assert_eq!(file(&t, Knob::MemoryLimit), "-1");
    // Every original is on disk, once, in the journal.
    let journal = journal::Journal::read(&t.root.join("state")).unwrap();
    assert_eq!(journal.entries.len(), Knob::ALL.len());
    let high = journal
        .entries
        .iter()
        .find(|e| e.knob == Knob::MemoryHigh)
        .unwrap();
    assert_eq!(high.original, "1073741824");
    let quota = journal
        .entries
        .iter()
        .find(|e| e.knob == Knob::CpuCfsQuota)
        .unwrap();
    assert_eq!(quota.original, "-1");
    // A second write to a knob does not journal its own value.
    let later = now + Duration::from_secs(2);
    a.write("/g", Knob::CpuShares, Setting::Weight(4096), "again", later)
        .unwrap();
    assert_eq!(
        journal::Journal::read(&t.root.join("state"))
            .unwrap()
            .entries
            .len(),
        Knob::ALL.len()
    );
    let report = a.restore_all().unwrap();
    assert_eq!(report.restored.len(), Knob::ALL.len());
    assert!(report.gone.is_empty() && report.failed.is_empty());
    let after: Vec<_> = t
        .snapshot()
        .into_iter()
        .filter(|(p, _)| !p.starts_with(t.root.join("state")))
        .collect();
    // Restored text is the kernel's write format ("-1" for v1 unlimited):
    // compare parsed values, which is what the kernel would show.
    assert_eq!(after.len(), before.len());
    for ((p, was), (q, now)) in before.iter().zip(&after) {
        assert_eq!(p, q);
        if let Some(knob) = p
            .file_name()
            .and_then(|n| Knob::from_file_name(&n.to_string_lossy()))
        {
            let companion = (knob == Knob::CpuCfsQuota).then_some("100000");
            assert_eq!(
                knob.parse(was, companion).unwrap(),
                knob.parse(now, companion).unwrap(),
                "{knob}"
            );
        } else {
            assert_eq!(was, now, "{}", p.display());
        }
    }
    assert!(!t.root.join("state").join(journal::FILE_NAME).exists());
}

#[test]
fn dry_run_writes_nothing_and_prints_each_write() {
    let t = tree("dry-run");
    let before = t.snapshot();
    let (mut a, _, out) = open(&t, Mode::DryRun);
    let now = Instant::now();
    for (knob, new) in raises() {
        let outcome = a.write("/g", knob, new, "predicted burst", now).unwrap();
        if knob == Knob::MemoryLimit || knob == Knob::MemorySoftLimit || knob == Knob::MemoryHigh {
            // Already unlimited in a fresh cgroup.
            assert_eq!(outcome, Outcome::Unchanged, "{knob}");
        } else {
            assert!(
                matches!(outcome, Outcome::DryRun { .. }),
                "{knob}: {outcome:?}"
            );
        }
    }
    // Rate limits apply as in a real run (to lowerings: raises never wait).
    let again = a
        .write("/g", Knob::CpuWeight, Setting::Weight(50), "x", now)
        .unwrap();
    assert!(matches!(
        again,
        Outcome::Refused(Refusal::RateLimited { .. })
    ));
    let lines = out.lines();
    assert_eq!(lines.len(), Knob::ALL.len() - 3);
    let weight = lines.iter().find(|l| l["knob"] == "cpu.weight").unwrap();
    assert_eq!(
        weight,
        &serde_json::json!({"cgroup": "/g", "knob": "cpu.weight", "old": "100",
            "new": "300", "reason": "predicted burst"})
    );
    let report = a.restore_all().unwrap();
    assert_eq!(report.pending.len(), Knob::ALL.len() - 3);
    let lines = out.lines();
    let restore = lines
        .iter()
        .find(|l| l["knob"] == "cpu.weight" && l["reason"] == "restore on exit")
        .unwrap();
    assert_eq!(
        (&restore["old"], &restore["new"]),
        (&"300".into(), &"100".into())
    );
    drop(a);
    assert_eq!(t.snapshot(), before, "dry run changed a file");
    assert!(
        !t.root.join("state").exists(),
        "dry run created the state dir"
    );
}

#[test]
fn rate_limit_and_cooldown_per_knob() {
    let t = tree("limits");
    let (mut a, _, _) = open(&t, Mode::Write);
    let t0 = Instant::now();
    let w = |n| Setting::Weight(n);
    let mut write = |knob, n, at| a.write("/g", knob, w(n), "test", at).unwrap();
    assert!(matches!(
        write(Knob::CpuWeight, 200, t0),
        Outcome::Written { .. }
    ));
    // Another knob is not limited by this one.
    assert!(matches!(
        write(Knob::IoWeight, 200, t0),
        Outcome::Written { .. }
    ));
    // A raise never waits; a lowering waits for min_interval after any
    // write and for cooldown after the last raise.
    let t_half = t0 + Duration::from_millis(500);
    assert!(matches!(
        write(Knob::CpuWeight, 150, t_half),
        Outcome::Refused(Refusal::RateLimited { .. })
    ));
    let t2 = t0 + Duration::from_secs(2);
    assert!(matches!(
        write(Knob::CpuWeight, 300, t2),
        Outcome::Written { .. }
    ));
    let t5 = t0 + Duration::from_secs(5);
    assert_eq!(
        write(Knob::CpuWeight, 50, t5),
        Outcome::Refused(Refusal::Cooldown {
            retry_in: Duration::from_secs(7)
        })
    );
    assert_eq!(file(&t, Knob::CpuWeight), "300");
    let t12 = t0 + Duration::from_secs(12);
    assert!(matches!(
        write(Knob::CpuWeight, 50, t12),
        Outcome::Written { .. }
    ));
    assert_eq!(file(&t, Knob::CpuWeight), "50");
    // Writing what is already there is not a write.
    let t20 = t0 + Duration::from_secs(20);
    assert_eq!(write(Knob::CpuWeight, 50, t20), Outcome::Unchanged);
}

#[test]
fn hard_caps_never_go_below_usage() {
    let t = tree("usage");
    let layout = t.layout();
    let mem_dir = layout.dir("/g", Knob::MemoryLimit).unwrap();
    fs::write(mem_dir.join("memory.usage_in_bytes"), "52428800\n").unwrap();
    fs::write(t.root.join("unified/g/memory.current"), "52428800\n").unwrap();
    let (mut a, _, _) = open(&t, Mode::Write);
    let t0 = Instant::now();
    let bytes = |n| Setting::Bytes(Bytes::Limit(n));
    for knob in [Knob::MemoryLimit, Knob::MemoryHigh] {
        let out = a.write("/g", knob, bytes(10 << 20), "cut", t0).unwrap();
        assert_eq!(
            out,
            Outcome::Refused(Refusal::BelowMemoryUsage {
                limit: 10 << 20,
                usage: 50 << 20
            }),
            "{knob}"
        );
        let out = a.write("/g", knob, bytes(60 << 20), "cut", t0).unwrap();
        assert!(matches!(out, Outcome::Written { .. }), "{knob}: {out:?}");
    }
    // Soft knobs may go below usage: they only matter under contention.
    let out = a
        .write("/g", Knob::MemorySoftLimit, bytes(1 << 20), "soft", t0)
        .unwrap();
    assert!(matches!(out, Outcome::Written { .. }));
    // CPU: below the floor, then below the usage the engine reported.
    let q = |cores| Setting::CpuQuota(CpuQuota::from_cores(cores, 100_000));
    let out = a.write("/g", Knob::CpuMax, q(0.05), "cut", t0).unwrap();
    assert!(
        matches!(out, Outcome::Refused(Refusal::BelowCpuUsage { .. })),
        "{out:?}"
    );
    a.note_cpu_usage("/g", 0.8);
    let out = a.write("/g", Knob::CpuCfsQuota, q(0.5), "cut", t0).unwrap();
    assert!(
        matches!(out, Outcome::Refused(Refusal::BelowCpuUsage { needed, .. }) if needed == 0.8)
    );
    let out = a.write("/g", Knob::CpuCfsQuota, q(0.9), "cut", t0).unwrap();
    assert!(matches!(out, Outcome::Written { .. }));
    assert_eq!(file(&t, Knob::CpuCfsQuota), "90000");
    // A release puts the operator's own value back, below the (stale)
    // usage or not: a killed agent's last usage held its quota up for ever.
    let later = t0 + Duration::from_secs(3600);
    let out = a
        .write("/g", Knob::CpuCfsQuota, q(0.5), "cut", later)
        .unwrap();
    assert!(matches!(
        out,
        Outcome::Refused(Refusal::BelowCpuUsage { .. })
    ));
    let out = a
        .put_back("/g", Knob::CpuCfsQuota, q(0.5), "release", later)
        .unwrap();
    assert!(matches!(out, Outcome::Written { .. }), "{out:?}");
    assert_eq!(file(&t, Knob::CpuCfsQuota), "50000");
    // Not so a memory limit: the kernel's usage is read now, and a release
    // waits until the cgroup fits under the original.
    for knob in [Knob::MemoryLimit, Knob::MemoryHigh] {
        let out = a
            .put_back("/g", knob, bytes(10 << 20), "release", later)
            .unwrap();
        assert!(
            matches!(out, Outcome::Refused(Refusal::BelowMemoryUsage { .. })),
            "{knob}: {out:?}"
        );
    }
}

#[test]
fn memory_is_written_in_whole_pages() {
    let t = tree("pages");
    let (mut a, _, _) = open(&t, Mode::Write);
    let new = Setting::Bytes(Bytes::Limit(100_000_001));
    let out = a
        .write("/g", Knob::MemoryLow, new, "odd", Instant::now())
        .unwrap();
    let page = a.page_size;
    let aligned = 100_000_001 / page * page;
    assert_eq!(file(&t, Knob::MemoryLow), aligned.to_string());
    assert!(
        matches!(out, Outcome::Written { new: Setting::Bytes(Bytes::Limit(n)), .. } if n == aligned)
    );
}

#[test]
fn invalid_values_and_mismatched_periods_are_errors_and_write_nothing() {
    let t = tree("invalid");
    let before = t.snapshot();
    let (mut a, _, _) = open(&t, Mode::Write);
    let now = Instant::now();
    let err = a
        .write("/g", Knob::CpuShares, Setting::Weight(1), "x", now)
        .unwrap_err();
    assert!(err.to_string().contains("cpu.shares"), "{err}");
    let err = a
        .write("/g", Knob::CpuWeight, Setting::Bytes(Bytes::Max), "x", now)
        .unwrap_err();
    assert!(matches!(err, ActuatorError::Invalid { .. }), "{err}");
    let q = Setting::CpuQuota(CpuQuota::from_cores(1.0, 50_000));
    let err = a.write("/g", Knob::CpuCfsQuota, q, "x", now).unwrap_err();
    assert!(matches!(
        err,
        ActuatorError::Invalid {
            source: InvalidSetting::PeriodMismatch {
                current: 100_000,
                new: 50_000
            },
            ..
        }
    ));
    let err = a
        .write("/../etc", Knob::CpuWeight, Setting::Weight(5), "x", now)
        .unwrap_err();
    assert!(matches!(err, ActuatorError::BadCgroup(_)));
    assert_eq!(t.snapshot(), before);
}

#[test]
fn garbage_in_a_knob_file_is_a_parse_error_with_the_path() {
    let t = tree("garbage");
    fs::write(
        t.layout().file("/g", Knob::CpuMax).unwrap(),
        "lots of\0junk",
    )
    .unwrap();
    let (a, _, _) = open(&t, Mode::Write);
    let err = a.read("/g", Knob::CpuMax).unwrap_err();
    assert!(matches!(err, ActuatorError::Parse { .. }));
    assert!(err.to_string().contains("g/cpu.max"), "{err}");
}

pub(crate) mod child;
mod restore;
