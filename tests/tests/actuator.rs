//! The actuator against the real kernel, on the hierarchy that holds each
//! controller here (v1 on the hybrid development hosts, v2 in the guest
//! tier's pure v2 kernel, `cargo xtask vm test`): every knob written under
//! cgroups the tests create and read back from cgroupfs; the memory ceiling
//! refused below what a real process holds; a SIGKILLed writer's originals
//! put back by the next open; dry runs that change nothing. The v2 knobs
//! are also checked over a tree mimicking cgroupfs, so a hybrid host runs
//! them too.
//!
//! Two `#[ignore]`d tests are not tests: they are the child processes that
//! the real tests start (this executable run again with an environment
//! variable saying which), and fail when started any other way.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use shadow_common::mounts::Mounts;
use shadow_orchestrator::actuator::{
    Actuator, Bytes, CpuQuota, Guardrails, Knob, Layout, Mode, Outcome, Refusal, Resource, Setting,
    fake::{Capture, FakeTree},
};
use shadow_tests::{ChildGuard, TestCgroup, require_root};

/// Which child a re-run of this executable is, and its arguments.
const CHILD: &str = "SHADOW_ACTUATOR_CHILD";
/// What a child prints once it has done its part.
const READY: &str = "SHADOW-CHILD-READY";

/// The controllers each test cgroup gets (v1 names; v2 where not on v1).
const CONTROLLERS: [&str; 3] = ["cpu", "memory", "blkio"];

/// A private state directory, removed on drop.
struct StateDir(PathBuf);

impl StateDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "shadow-test-actuator-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn layout() -> Layout {
    Layout::from_system().expect("cgroup mounts")
}

fn open(state: &Path, mode: Mode) -> Actuator {
    let (act, report) = Actuator::open(layout(), state, mode, Guardrails::default()).expect("open");
    assert!(
        report.restored.is_empty() && report.failed.is_empty(),
        "fresh state dir had a journal: {report:?}"
    );
    act
}

/// Whether this host binds the cpu controller to v1 (hybrid) rather than
/// v2 (pure v2).
fn hybrid() -> bool {
    Mounts::from_system()
        .expect("cgroup mounts")
        .v1
        .contains_key("cpu")
}

/// The knobs the actuator writes for `cgroup` here: CPU, memory, I/O.
fn knobs(cgroup: &str) -> Vec<Knob> {
    let layout = layout();
    [Resource::Cpu, Resource::Memory, Resource::Io]
        .into_iter()
        .flat_map(|r| layout.knobs_for(cgroup, r).expect("knobs_for"))
        .collect()
}

/// The exact text of each knob file of `cgroup`, as the kernel shows it.
fn files(cgroup: &str) -> BTreeMap<Knob, String> {
    let layout = layout();
    knobs(cgroup)
        .into_iter()
        .map(|k| {
            let path = layout.file(cgroup, k).expect("knob path");
            let text =
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (k, text)
        })
        .collect()
}

/// A new value for every knob of `cgroup`, with the kernel's text for it.
fn changes(act: &Actuator, cgroup: &str) -> Vec<(Knob, Setting, &'static str)> {
    knobs(cgroup)
        .into_iter()
        .map(|knob| {
            let (new, text) = match knob {
                Knob::CpuCfsQuota | Knob::CpuMax => {
                    let Setting::CpuQuota(q) = act.read(cgroup, knob).expect("read quota") else {
                        panic!("{knob} is not a quota");
                    };
                    assert_eq!(q.period_us, 100_000, "the kernel's default CFS period");
                    let text = if knob == Knob::CpuMax {
                        "150000 100000\n"
                    } else {
                        "150000\n"
                    };
                    (
                        Setting::CpuQuota(CpuQuota::from_cores(1.5, q.period_us)),
                        text,
                    )
                }
                Knob::CpuShares => (Setting::Weight(2048), "2048\n"),
                Knob::CpuWeight => (Setting::Weight(200), "200\n"),
                Knob::MemorySoftLimit | Knob::MemoryLow => {
                    (Setting::Bytes(Bytes::Limit(256 << 20)), "268435456\n")
                }
                Knob::MemoryLimit | Knob::MemoryHigh => {
                    (Setting::Bytes(Bytes::Limit(512 << 20)), "536870912\n")
                }
                Knob::BlkioWeight => (Setting::Weight(500), "500\n"),
                Knob::IoWeight => (Setting::Weight(500), "default 500\n"),
            };
            (knob, new, text)
        })
        .collect()
}

/// Each controller's knobs come from the hierarchy that holds it: v1 on a
/// hybrid host (its v2 tree has no cpu, memory nor io), v2 on a pure v2
/// one; and they all exist.
#[test]
fn layout_picks_the_knobs_of_the_hierarchy_holding_each_controller() {
    let cg = TestCgroup::new("act-layout", &CONTROLLERS);
    let layout = layout();
    let v2 = layout.v2_controllers(&cg.path).expect("cgroup.controllers");
    let hybrid = hybrid();
    for c in ["cpu", "memory", "io"] {
        assert_eq!(
            v2.iter().any(|x| x == c),
            !hybrid,
            "{c} in this cgroup's v2 cgroup.controllers {v2:?} (hybrid host: {hybrid})"
        );
    }
    let knobs = |r| layout.knobs_for(&cg.path, r).expect("knobs_for");
    let (cpu, memory, io, other) = if hybrid {
        (
            [Knob::CpuShares, Knob::CpuCfsQuota],
            [Knob::MemorySoftLimit, Knob::MemoryLimit],
            Knob::BlkioWeight,
            Knob::CpuMax,
        )
    } else {
        (
            [Knob::CpuWeight, Knob::CpuMax],
            [Knob::MemoryLow, Knob::MemoryHigh],
            Knob::IoWeight,
            Knob::CpuCfsQuota,
        )
    };
    assert_eq!(knobs(Resource::Cpu), cpu);
    assert_eq!(knobs(Resource::Memory), memory);
    assert_eq!(
        knobs(Resource::Io),
        [io],
        "no I/O weight: the kernel needs BFQ (v1 blkio.bfq.weight) or blk-iocost (v2 io.weight)"
    );
    assert!(knobs(Resource::Net).is_empty());
    // A knob of the other hierarchy is a read error naming its file, not
    // "gone": the cgroup is there.
    let act = open(&StateDir::new("layout").0, Mode::DryRun);
    let err = act.read(&cg.path, other).unwrap_err();
    assert!(!err.is_gone(), "{err}");
    assert!(err.to_string().contains(other.file_name()), "{err}");
}

/// Every knob written for real and read back from the kernel; then
/// restore_all puts back exactly the text the kernel showed before.
#[test]
fn knobs_are_written_and_restored_exactly() {
    let cg = TestCgroup::new("act-knobs", &CONTROLLERS);
    let state = StateDir::new("knobs");
    let before = files(&cg.path);
    assert_eq!(
        before.len(),
        5,
        "cpu (2), memory (2) and io (1) knobs: {before:?}"
    );
    let mut act = open(&state.0, Mode::Write);
    let now = Instant::now();
    for (knob, new, text) in changes(&act, &cg.path) {
        let out = act.write(&cg.path, knob, new, "test", now).expect("write");
        assert!(matches!(out, Outcome::Written { .. }), "{knob}: {out:?}");
        let path = act.layout().file(&cg.path, knob).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            text,
            "{knob} in the kernel"
        );
        assert_eq!(act.read(&cg.path, knob).unwrap(), new, "{knob} parsed back");
    }
    let journal = state.0.join("journal.jsonl");
    assert_eq!(
        fs::read_to_string(&journal).unwrap().lines().count(),
        before.len()
    );
    let report = act.restore_all().expect("restore");
    assert_eq!(report.restored.len(), before.len(), "{report:?}");
    assert_eq!(files(&cg.path), before);
    assert!(!journal.exists(), "journal left after a full restore");
}

/// A child holding 64 MiB in the cgroup: the memory ceiling (v1
/// memory.limit_in_bytes, v2 memory.high) is not lowered below what the
/// kernel says the cgroup uses, and is lowered to above it.
#[test]
fn memory_ceiling_is_refused_below_real_usage() {
    let cg = TestCgroup::new("act-usage", &["memory"]);
    let state = StateDir::new("usage");
    let mut child = ChildGuard(cg.spawn(&mut child_command("hold", &[])));
    wait_ready(&mut child.0);
    let layout = layout();
    let ceiling = layout
        .knobs_for(&cg.path, Resource::Memory)
        .expect("knobs_for")[1];
    let usage_file = layout.dir(&cg.path, ceiling).unwrap().join(
        ceiling
            .usage_file()
            .expect("a memory knob has a usage file"),
    );
    let usage: u64 = fs::read_to_string(&usage_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(usage >= 64 << 20, "child holds 64 MiB, usage is {usage}");
    let path = layout.file(&cg.path, ceiling).unwrap();
    let original = fs::read_to_string(&path).unwrap();
    let mut act = open(&state.0, Mode::Write);
    let now = Instant::now();
    let limit = |n| Setting::Bytes(Bytes::Limit(n));
    let out = act
        .write(&cg.path, ceiling, limit(usage / 2), "cut", now)
        .unwrap();
    assert!(
        matches!(out, Outcome::Refused(Refusal::BelowMemoryUsage { usage: u, .. }) if u >= usage / 2),
        "{out:?}"
    );
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        original,
        "refused write changed {ceiling}"
    );
    let roomy = (usage + (64 << 20)) / 4096 * 4096;
    let out = act
        .write(&cg.path, ceiling, limit(roomy), "cut", now)
        .unwrap();
    assert!(matches!(out, Outcome::Written { .. }), "{out:?}");
    assert_eq!(fs::read_to_string(&path).unwrap().trim(), roomy.to_string());
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the child died under the new ceiling"
    );
    drop(child);
    let report = act.restore_all().unwrap();
    assert_eq!(report.restored.len(), 1);
    assert_eq!(fs::read_to_string(&path).unwrap(), original);
}

/// A child writes every knob and is SIGKILLed; the next open restores
/// the kernel's original text of each, before returning.
#[test]
fn originals_are_restored_after_sigkill() {
    let cg = TestCgroup::new("act-crash", &CONTROLLERS);
    let state = StateDir::new("crash");
    let before = files(&cg.path);
    let mut cmd = child_command("crash", &[&cg.path, &state.0.to_string_lossy()]);
    let mut child = ChildGuard(cmd.stdout(Stdio::piped()).spawn().expect("spawn child"));
    wait_ready(&mut child.0);
    let during = files(&cg.path);
    assert_eq!(during.len(), 5, "{during:?}");
    for (k, text) in &during {
        assert_ne!(text, &before[k], "{k} was not changed by the child");
    }
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGKILL) }, 0);
    let status = child.0.wait().expect("wait child");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert_eq!(files(&cg.path), during, "nothing restored yet");
    let (act, report) =
        Actuator::open(layout(), &state.0, Mode::Write, Guardrails::default()).expect("reopen");
    assert_eq!(report.restored.len(), during.len(), "{report:?}");
    assert!(report.failed.is_empty() && report.gone.is_empty());
    assert_eq!(files(&cg.path), before);
    assert!(act.originals().is_empty());
    assert!(!state.0.join("journal.jsonl").exists());
}

/// Dry run over every knob: a JSON line for each, and no file changed,
/// no journal, no state directory.
#[test]
fn dry_run_changes_no_file() {
    let cg = TestCgroup::new("act-dry", &CONTROLLERS);
    let state = StateDir::new("dry");
    let before = files(&cg.path);
    let out = Capture::default();
    let (mut act, _) = Actuator::open_with_output(
        layout(),
        &state.0,
        Mode::DryRun,
        Guardrails::default(),
        Box::new(out.clone()),
    )
    .expect("open");
    let now = Instant::now();
    for (knob, new, text) in changes(&act, &cg.path) {
        let outcome = act.write(&cg.path, knob, new, "dry", now).unwrap();
        assert!(
            matches!(outcome, Outcome::DryRun { .. }),
            "{knob}: {outcome:?}"
        );
        let line = out.last();
        assert_eq!(line["cgroup"], cg.path.as_str());
        assert_eq!(line["knob"], knob.file_name());
        assert_eq!(line["new"], text.trim());
        assert_eq!(line["reason"], "dry");
    }
    act.restore_all().unwrap();
    assert_eq!(files(&cg.path), before);
    assert!(!state.0.exists(), "dry run created its state directory");
}

/// A cgroup removed mid-run: writes say "gone", restore drops it quietly.
#[test]
fn a_removed_cgroup_is_dropped_quietly() {
    let state = StateDir::new("gone");
    let mut act = open(&state.0, Mode::Write);
    let cg = TestCgroup::new("act-gone", &["cpu"]);
    let path = cg.path.clone();
    // The CPU weight: v1 cpu.shares or v2 cpu.weight.
    let weight = knobs(&path)[0];
    let now = Instant::now();
    act.write(&path, weight, Setting::Weight(512), "x", now)
        .unwrap();
    drop(cg);
    let err = act
        .write(
            &path,
            weight,
            Setting::Weight(256),
            "x",
            now + Duration::from_secs(60),
        )
        .unwrap_err();
    assert!(err.is_gone(), "{err}");
    let report = act.restore_all().unwrap();
    assert_eq!((report.gone.len(), report.restored.len()), (1, 0));
    assert!(report.failed.is_empty());
}

/// The v2 knobs over a tree mimicking cgroupfs (so that hybrid hosts check
/// them too): written in the kernel's format, restored exactly.
#[test]
fn v2_knobs_over_a_mimicked_tree() {
    require_root();
    let tree = FakeTree::new("itest");
    tree.v2_cgroup("/vm", &["cpu", "memory", "io"]);
    let layout = tree.layout();
    let knobs: Vec<Knob> = [Resource::Cpu, Resource::Memory, Resource::Io]
        .into_iter()
        .flat_map(|r| layout.knobs_for("/vm", r).unwrap())
        .collect();
    assert_eq!(
        knobs,
        [
            Knob::CpuWeight,
            Knob::CpuMax,
            Knob::MemoryLow,
            Knob::MemoryHigh,
            Knob::IoWeight
        ]
    );
    let before = tree.snapshot();
    let state = tree.root.join("state");
    let (mut act, _) =
        Actuator::open(layout.clone(), &state, Mode::Write, Guardrails::default()).expect("open");
    let now = Instant::now();
    let changes = [
        (Knob::CpuWeight, Setting::Weight(250), "250"),
        (
            Knob::CpuMax,
            Setting::CpuQuota(CpuQuota::from_cores(0.5, 100_000)),
            "50000 100000",
        ),
        (
            Knob::MemoryLow,
            Setting::Bytes(Bytes::Limit(1 << 30)),
            "1073741824",
        ),
        (
            Knob::MemoryHigh,
            Setting::Bytes(Bytes::Limit(2 << 30)),
            "2147483648",
        ),
        (Knob::IoWeight, Setting::Weight(300), "default 300"),
    ];
    for (knob, new, text) in changes {
        let out = act.write("/vm", knob, new, "v2", now).unwrap();
        assert!(matches!(out, Outcome::Written { .. }), "{knob}: {out:?}");
        let path = layout.file("/vm", knob).unwrap();
        assert_eq!(fs::read_to_string(path).unwrap(), text);
    }
    act.restore_all().unwrap();
    let after: Vec<_> = tree
        .snapshot()
        .into_iter()
        .filter(|(p, _)| !p.starts_with(&state))
        .map(|(p, t)| (p, t.trim_end().to_owned()))
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .map(|(p, t)| (p, t.trim_end().to_owned()))
        .collect();
    assert_eq!(after, before);
}

/// Child of `memory_ceiling_is_refused_below_real_usage`: holds 64 MiB.
/// Child of `originals_are_restored_after_sigkill`: writes every knob.
/// Both print READY and wait to be killed.
#[test]
#[ignore = "a child process of the actuator tests, started by them"]
fn child() {
    let args: Vec<String> = std::env::var(CHILD)
        .expect("run by the actuator tests only")
        .split('\t')
        .map(str::to_owned)
        .collect();
    // Die with the test that started us, and on our own after a while, so
    // an interrupted test run leaves no child behind.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let mut held = Vec::new();
    match args[0].as_str() {
        "hold" => {
            held = vec![1u8; 64 << 20];
        }
        "crash" => {
            let (cgroup, state) = (&args[1], Path::new(&args[2]));
            let mut act = open(state, Mode::Write);
            for (knob, new, _) in changes(&act, cgroup) {
                let out = act.write(cgroup, knob, new, "crash test", Instant::now());
                assert!(
                    matches!(out, Ok(Outcome::Written { .. })),
                    "{knob}: {out:?}"
                );
            }
            std::mem::forget(act);
        }
        other => panic!("unknown child {other}"),
    }
    println!(
        "{READY} {}",
        held.iter().map(|&b| u64::from(b)).sum::<u64>()
    );
    std::thread::sleep(Duration::from_secs(120));
    panic!("child was not killed within 2 minutes");
}

/// This executable, run as child `kind` with `args`.
fn child_command(kind: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test executable"));
    cmd.args([
        "--exact",
        "child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(
        CHILD,
        [kind]
            .iter()
            .chain(args)
            .copied()
            .collect::<Vec<_>>()
            .join("\t"),
    )
    .stdout(Stdio::piped());
    cmd
}

/// Reads the child's stdout until it says it is ready.
fn wait_ready(child: &mut Child) {
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    loop {
        match lines.next() {
            // The harness prints "test child ... " without a newline first.
            Some(Ok(line)) if line.contains(READY) => break,
            Some(Ok(line)) => seen.push_str(&line),
            _ => panic!("child exited before it was ready; it printed: {seen}"),
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
}
