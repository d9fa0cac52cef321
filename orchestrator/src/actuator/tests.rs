//! The actuator over a directory tree mimicking cgroupfs: no root needed.

use std::{fs, time::Duration};

use super::*;
use crate::actuator::{
    fake::{Capture, FakeTree},
    journal,
};

fn limits() -> Guardrails {
    Guardrails {
        min_interval: Duration::from_secs(1),
        cooldown: Duration::from_secs(10),
        cpu_floor_cores: 0.1,
    }
}

/// A tree with "/g": cpu, memory, io in v2, and all of it in v1 too.
fn tree(name: &str) -> FakeTree {
    let t = FakeTree::new(name);
    t.v2_cgroup("/g", &["cpu", "memory", "io"]);
    t.v1_cgroup("/g");
    t
}

fn open(t: &FakeTree, mode: Mode) -> (Actuator, RestoreReport, Capture) {
    let out = Capture::default();
    let (a, r) = Actuator::open_with_output(
        t.layout(),
        &t.root.join("state"),
        mode,
        limits(),
        Box::new(out.clone()),
    )
    .expect("open actuator");
    (a, r, out)
}

/// A new value for every knob, all raises from the defaults.
fn raises() -> Vec<(Knob, Setting)> {
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

fn file(t: &FakeTree, knob: Knob) -> String {
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
    // Rate limits apply as in a real run.
    let again = a
        .write("/g", Knob::CpuWeight, Setting::Weight(400), "x", now)
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
fn a_crashed_run_is_restored_at_the_next_open() {
    let t = tree("crash");
    let before = t.snapshot();
    let (mut a, _, _) = open(&t, Mode::Write);
    let now = Instant::now();
    for (knob, new) in raises()
        .into_iter()
        .filter(|(k, _)| k.resource() == Resource::Cpu)
    {
        a.write("/g", knob, new, "raise", now).unwrap();
    }
    // No restore_all: the process "dies" here (dropping releases the lock,
    // as the kernel does for a killed process).
    drop(a);
    assert_ne!(file(&t, Knob::CpuShares), "1024\n");
    let (a, report, _) = open(&t, Mode::Write);
    assert_eq!(report.restored.len(), 4);
    assert_eq!(report.skipped_lines, 0);
    assert!(a.originals().is_empty());
    let after: Vec<_> = t
        .snapshot()
        .into_iter()
        .filter(|(p, _)| !p.starts_with(t.root.join("state")))
        .collect();
    let quota = t.layout().file("/g", Knob::CpuCfsQuota).unwrap();
    for ((p, was), (_, now)) in before.iter().zip(&after) {
        if *p == quota {
            assert_eq!((was.as_str(), now.as_str()), ("-1\n", "-1"));
        } else if p.ends_with("cpu.max") || p.ends_with("cpu.weight") || p.ends_with("cpu.shares") {
            assert_eq!(was.trim_end(), now, "{}", p.display());
        } else {
            assert_eq!(was, now, "{}", p.display());
        }
    }
    assert!(!t.root.join("state").join(journal::FILE_NAME).exists());
}

#[test]
fn dry_run_reports_a_crashed_runs_journal_without_touching_it() {
    let t = tree("crash-dry");
    let (mut a, _, _) = open(&t, Mode::Write);
    a.write(
        "/g",
        Knob::CpuShares,
        Setting::Weight(4096),
        "raise",
        Instant::now(),
    )
    .unwrap();
    drop(a);
    let journal_file = t.root.join("state").join(journal::FILE_NAME);
    let text = fs::read_to_string(&journal_file).unwrap();
    let (_a, report, out) = open(&t, Mode::DryRun);
    assert_eq!(report.pending.len(), 1);
    assert_eq!(file(&t, Knob::CpuShares), "4096");
    assert_eq!(fs::read_to_string(&journal_file).unwrap(), text);
    let lines = out.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["reason"], "restore after a crash");
    assert_eq!(
        (&lines[0]["old"], &lines[0]["new"]),
        (&"4096".into(), &"1024".into())
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
    let t_half = t0 + Duration::from_millis(500);
    assert!(matches!(
        write(Knob::CpuWeight, 300, t_half),
        Outcome::Refused(Refusal::RateLimited { .. })
    ));
    // A raise after min_interval is fine; a lowering waits for cooldown.
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

#[test]
fn a_vanished_cgroup_is_gone_and_restore_drops_it_quietly() {
    let t = tree("gone");
    t.v2_cgroup("/h", &["cpu"]);
    let (mut a, _, _) = open(&t, Mode::Write);
    let now = Instant::now();
    a.write("/g", Knob::CpuWeight, Setting::Weight(200), "x", now)
        .unwrap();
    a.write("/h", Knob::CpuWeight, Setting::Weight(200), "x", now)
        .unwrap();
    fs::remove_dir_all(t.root.join("unified/h")).unwrap();
    let err = a
        .write(
            "/h",
            Knob::CpuWeight,
            Setting::Weight(300),
            "x",
            now + Duration::from_secs(5),
        )
        .unwrap_err();
    assert!(err.is_gone(), "{err}");
    a.forget("/h");
    let report = a.restore_all().unwrap();
    assert_eq!(report.restored.len(), 1);
    assert_eq!(report.gone.len(), 1);
    assert_eq!(report.gone[0].cgroup, "/h");
    assert_eq!(file(&t, Knob::CpuWeight), "100");
}

#[test]
fn a_refused_restore_stays_journaled_and_is_retried() {
    let t = tree("retry");
    let (mut a, _, _) = open(&t, Mode::Write);
    a.write(
        "/g",
        Knob::CpuShares,
        Setting::Weight(4096),
        "x",
        Instant::now(),
    )
    .unwrap();
    // Make the write fail with something other than "gone": a directory
    // where the file was (EISDIR).
    let shares = t.layout().file("/g", Knob::CpuShares).unwrap();
    fs::remove_file(&shares).unwrap();
    fs::create_dir(&shares).unwrap();
    let report = a.restore_all().unwrap();
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].cause.contains("cpu.shares"));
    assert_eq!(a.originals().len(), 1);
    let journal = journal::Journal::read(&t.root.join("state")).unwrap();
    assert_eq!(journal.entries.len(), 1);
    fs::remove_dir(&shares).unwrap();
    fs::write(&shares, "4096").unwrap();
    let report = a.restore_all().unwrap();
    assert_eq!(report.restored.len(), 1);
    assert_eq!(file(&t, Knob::CpuShares), "1024");
}

#[test]
fn journal_entries_outside_the_mounts_are_never_written() {
    let t = tree("outside");
    let state = t.root.join("state");
    fs::create_dir_all(&state).unwrap();
    let victim = t.root.join("victim");
    fs::write(&victim, "precious").unwrap();
    let bad = [
        journal::Original {
            cgroup: "/g".into(),
            knob: Knob::CpuShares,
            path: victim.clone(),
            original: "2".into(),
        },
        journal::Original {
            cgroup: "/g".into(),
            knob: Knob::CpuShares,
            path: t.layout().file("/g", Knob::CpuWeight).unwrap(),
            original: "2".into(),
        },
    ];
    let text: String = bad
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    fs::write(state.join(journal::FILE_NAME), text + "{\"torn").unwrap();
    let (_a, report, _) = open(&t, Mode::Write);
    assert_eq!(report.refused.len(), 2);
    assert_eq!(report.skipped_lines, 1);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(file(&t, Knob::CpuWeight), "100\n");
}

#[test]
fn restore_matching_puts_back_only_what_it_selects_and_keeps_the_rest_journaled() {
    let t = tree("restore-some");
    let (mut a, _, _) = open(&t, Mode::Write);
    let now = Instant::now();
    for (knob, new) in raises() {
        a.write("/g", knob, new, "raise", now).unwrap();
    }
    let cpu_before = file(&t, Knob::CpuCfsQuota);
    // Knobs already at the new value ("max") were not changed, not journaled.
    let entries = journal::Journal::read(&t.root.join("state"))
        .unwrap()
        .entries;
    let journaled = entries.len();
    let memory_knobs = entries
        .iter()
        .filter(|e| e.knob.resource() == Resource::Memory)
        .count();
    assert!(memory_knobs >= 1 && memory_knobs < journaled);
    let report = a
        .restore_matching(
            |e| e.knob.resource() == Resource::Memory,
            "no longer managed",
        )
        .unwrap();
    assert_eq!(report.restored.len(), memory_knobs);
    assert_eq!(file(&t, Knob::MemoryLow).trim(), "0", "memory.low is back");
    assert_eq!(file(&t, Knob::CpuCfsQuota), cpu_before, "CPU stays raised");
    // The journal and the originals hold exactly the others: a crash now
    // restores them, and a later write to a restored knob journals afresh.
    let journal = journal::Journal::read(&t.root.join("state")).unwrap();
    assert_eq!(journal.entries.len(), journaled - memory_knobs);
    assert!(
        journal
            .entries
            .iter()
            .all(|e| e.knob.resource() != Resource::Memory)
    );
    assert_eq!(a.originals().len(), journal.entries.len());
    let later = now + Duration::from_secs(2);
    a.write(
        "/g",
        Knob::MemoryLow,
        Setting::Bytes(Bytes::Limit(1 << 20)),
        "again",
        later,
    )
    .unwrap();
    let journal = journal::Journal::read(&t.root.join("state")).unwrap();
    assert_eq!(journal.entries.len(), journaled - memory_knobs + 1);
    assert_eq!(
        a.restore_all().unwrap().restored.len(),
        journal.entries.len()
    );
}
