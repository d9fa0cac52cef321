//! A directory tree that mimics cgroupfs, for tests: v2 knobs cannot be
//! written for real on hybrid hosts (their v2 tree has no cpu, memory or io
//! controller), and unit tests must not need root.
//!
//! Files hold what the kernel shows in a fresh cgroup; a write stores the
//! text as written, which every parser here accepts back.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use super::layout::Layout;

/// v1 "unlimited" as the kernel shows it with 4 KiB pages.
pub const V1_MAX: &str = "9223372036854771712";

/// A temporary tree with `unified/` (v2) and `cpu/`, `memory/`, `blkio/`
/// (v1) mounts, removed on drop.
pub struct FakeTree {
    /// The tree's top directory.
    pub root: PathBuf,
}

impl FakeTree {
    /// An empty tree in the temporary directory; `name` keeps concurrent
    /// tests apart.
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "shadow-fake-cgroupfs-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        for dir in ["unified", "cpu", "memory", "blkio"] {
            fs::create_dir_all(root.join(dir)).expect("create fake cgroupfs");
        }
        fs::write(
            root.join("unified/cgroup.controllers"),
            "cpu io memory pids\n",
        )
        .expect("write fake cgroupfs");
        Self { root }
    }

    /// The layout of this tree.
    pub fn layout(&self) -> Layout {
        Layout::new(
            Some(self.root.join("unified")),
            ["cpu", "memory", "blkio"].map(|c| (c, self.root.join(c))),
        )
    }

    /// A v2 cgroup with `controllers` enabled and their knob files at the
    /// kernel's defaults.
    pub fn v2_cgroup(&self, cgroup: &str, controllers: &[&str]) -> PathBuf {
        let dir = self.dir("unified", cgroup);
        write(
            &dir,
            "cgroup.controllers",
            &format!("{}\n", controllers.join(" ")),
        );
        for c in controllers {
            let files: &[(&str, &str)] = match *c {
                "cpu" => &[("cpu.max", "max 100000"), ("cpu.weight", "100")],
                "memory" => &[
                    ("memory.low", "0"),
                    ("memory.high", "max"),
                    ("memory.current", "0"),
                ],
                "io" => &[("io.weight", "default 100")],
                _ => &[],
            };
            for (name, value) in files {
                write(&dir, name, &format!("{value}\n"));
            }
        }
        dir
    }

    /// The same cgroup in the v1 cpu, memory and blkio mounts, with the
    /// kernel's defaults.
    pub fn v1_cgroup(&self, cgroup: &str) {
        let cpu = self.dir("cpu", cgroup);
        write(&cpu, "cpu.cfs_quota_us", "-1\n");
        write(&cpu, "cpu.cfs_period_us", "100000\n");
        write(&cpu, "cpu.shares", "1024\n");
        let mem = self.dir("memory", cgroup);
        write(&mem, "memory.soft_limit_in_bytes", &format!("{V1_MAX}\n"));
        write(&mem, "memory.limit_in_bytes", &format!("{V1_MAX}\n"));
        write(&mem, "memory.usage_in_bytes", "0\n");
        write(&self.dir("blkio", cgroup), "blkio.bfq.weight", "100\n");
    }

    /// Directory of `cgroup` under mount `mount` ("unified", "cpu", ...).
    pub fn dir(&self, mount: &str, cgroup: &str) -> PathBuf {
        let dir = self.root.join(mount).join(cgroup.trim_start_matches('/'));
        fs::create_dir_all(&dir).expect("create fake cgroup");
        dir
    }

    /// Every file below the tree with its contents, sorted: a snapshot to
    /// compare before and after.
    pub fn snapshot(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let text = fs::read_to_string(&path).unwrap_or_default();
                    out.push((path, text));
                }
            }
        }
        out.sort();
        out
    }
}

fn write(dir: &Path, name: &str, value: &str) {
    fs::write(dir.join(name), value).expect("write fake cgroup file");
}

impl Drop for FakeTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Dry-run output captured for inspection (give a clone to
/// `Actuator::open_with_output`).
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// Every JSON line written so far.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// The last JSON line written.
    pub fn last(&self) -> serde_json::Value {
        self.lines().pop().expect("a dry-run line")
    }
}
