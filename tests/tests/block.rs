//! Block I/O against the bytes the workload itself moved with O_DIRECT.

use std::{path::PathBuf, process::Command, time::Duration};

use shadow_tests::{Agent, TestCgroup, finish, probe_status, ratio, total, workload};

const BYTES: u64 = 64 << 20;

/// A loop device over a sparse file, detached and deleted on drop.
struct LoopDevice {
    dev: String,
    file: PathBuf,
}

impl LoopDevice {
    fn new(size: u64) -> Self {
        let file = std::env::temp_dir().join(format!("shadow-test-loop-{}", std::process::id()));
        std::fs::File::create(&file)
            .and_then(|f| f.set_len(size))
            .expect("backing file");
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&file)
            .output()
            .expect("losetup (util-linux) is needed: `cargo xtask setup` installs it");
        assert!(
            out.status.success(),
            "losetup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Self { dev, file }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// 64 MiB written and 64 MiB read with O_DIRECT on a loop device: between
/// 99% and 101% of those bytes attributed to the workload's cgroup. On a
/// kernel without the `block_io_start` tracepoint (before 6.5: the guest
/// tier's 6.1), the agent must say so in `check`, and then attribute no
/// bytes at all rather than wrong ones.
#[test]
fn direct_io_bytes_are_attributed_to_the_submitter() {
    let start = probe_status("block_io_start");
    let disk = LoopDevice::new(BYTES + (16 << 20));
    let cg = TestCgroup::new("block", &[]);
    let agent = Agent::start(&cg.path, "200ms");
    let written = finish(cg.spawn(&mut workload(&["dio-write", &disk.dev, &BYTES.to_string()])));
    let read = finish(cg.spawn(&mut workload(&["dio-read", &disk.dev, &BYTES.to_string()])));
    let samples = agent.stop(Duration::from_millis(600));
    let moved =
        total(&samples, &cg.path, "io_write_bytes") + total(&samples, &cg.path, "io_read_bytes");
    if start != "attached" {
        assert_eq!(
            start, "off: this kernel has no tracepoint block_io_start",
            "the only reason block I/O may be off"
        );
        assert_eq!(moved, 0, "bytes counted without knowing who submitted them");
        return;
    }
    let w = ratio(
        "io_write_bytes",
        total(&samples, &cg.path, "io_write_bytes"),
        written["bytes"].as_u64().unwrap(),
    );
    let r = ratio(
        "io_read_bytes",
        total(&samples, &cg.path, "io_read_bytes"),
        read["bytes"].as_u64().unwrap(),
    );
    assert!((0.99..=1.01).contains(&w), "write bytes ratio {w}");
    assert!((0.99..=1.01).contains(&r), "read bytes ratio {r}");
    let ops = total(&samples, &cg.path, "io_ops");
    assert!(ops >= 128, "at least one op per MiB expected, got {ops}");
    assert!(
        total(&samples, &cg.path, "io_latency_ns") > 0,
        "no latency recorded"
    );
}
