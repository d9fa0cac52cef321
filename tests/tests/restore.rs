//! Putting originals back needs only the state directory: with a broken
//! configuration file, `--restore` and a plain start (which then refuses
//! to run) still write back what a crashed run left in the journal, from
//! the `--state-dir` flag, the file's own `state_dir` if it can be read,
//! or the default.

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use shadow_orchestrator::actuator::{Layout, Resource, journal::Original};
use shadow_tests::{
    TestCgroup,
    orchestrator::{TempDir, orchestrator_bin},
};

/// A test cgroup whose CPU weight (v1 `cpu.shares`, v2 `cpu.weight`) a
/// "crashed" orchestrator left at 4 times its default, with the original
/// in a journal in `state`.
struct Crashed {
    _cg: TestCgroup,
    weight: PathBuf,
    original: String,
}

impl Crashed {
    fn new(name: &str, state: &Path) -> Self {
        let cg = TestCgroup::new(name, &["cpu"]);
        let layout = Layout::from_system().expect("cgroup mounts");
        let knob = layout
            .knobs_for(&cg.path, Resource::Cpu)
            .expect("cpu knobs")[0];
        let weight = layout.file(&cg.path, knob).expect("weight file");
        let original = read(&weight);
        let default: u64 = original.parse().expect("a weight");
        let entry = Original {
            cgroup: cg.path.clone(),
            knob,
            path: weight.clone(),
            original: original.clone(),
            id: Some(fs::metadata(weight.parent().unwrap()).unwrap().ino()),
        };
        fs::create_dir_all(state).unwrap();
        fs::write(
            state.join("journal.jsonl"),
            serde_json::to_string(&entry).unwrap() + "\n",
        )
        .unwrap();
        fs::write(&weight, (default * 4).to_string()).unwrap();
        Self {
            _cg: cg,
            weight,
            original,
        }
    }

    fn restored(&self) -> bool {
        read(&self.weight) == self.original
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap().trim().to_owned()
}

/// Runs the orchestrator with `args` and returns (success, log).
fn orchestrator(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(orchestrator_bin())
        .args(args)
        .arg("--socket")
        .arg(dir.join("o.sock"))
        .args(["--ticks", "1"])
        .env("SHADOW_LOG", "info")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_broken_configuration_does_not_stop_restore_nor_the_restore_at_start() {
    let dir = TempDir::new("restore-broken");
    let state = dir.0.join("state");
    let broken = dir.0.join("shadow.toml");
    fs::write(&broken, "tick = \"1s\"\n[[manage]\ncgroup = ").unwrap();
    let (cfg, state_s) = (broken.to_str().unwrap(), state.to_str().unwrap());

    let c = Crashed::new("restore-broken", &state);
    let (ok, log) = orchestrator(
        &dir.0,
        &["--config", cfg, "--state-dir", state_s, "--restore"],
    );
    assert!(ok, "--restore exits 0 once the originals are back:\n{log}");
    assert!(log.contains("does not load"), "{log}");
    assert!(c.restored(), "--restore:\n{log}");
    drop(c);

    let c = Crashed::new("restore-broken-start", &state);
    let (ok, log) = orchestrator(&dir.0, &["--config", cfg, "--state-dir", state_s]);
    assert!(!ok, "a start with a broken file refuses to run:\n{log}");
    assert!(log.contains("TOML parse error"), "{log}");
    assert!(c.restored(), "start:\n{log}");
}

#[test]
fn without_the_flag_the_files_own_state_dir_is_used_when_it_can_be_read() {
    let dir = TempDir::new("restore-salvage");
    let state = dir.0.join("state");
    let cfg = dir.0.join("shadow.toml");
    // Valid TOML, but a key the schema refuses.
    fs::write(
        &cfg,
        format!("state_dir = \"{}\"\nstate_dirr = 1\n", state.display()),
    )
    .unwrap();
    let c = Crashed::new("restore-salvage", &state);
    let (ok, log) = orchestrator(&dir.0, &["--config", cfg.to_str().unwrap(), "--restore"]);
    assert!(ok, "{log}");
    assert!(log.contains("the file's state_dir"), "{log}");
    assert!(c.restored(), "{log}");
}
