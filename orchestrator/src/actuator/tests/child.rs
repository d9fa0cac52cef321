//! A full disk, for real and without root: an ignored test of this binary
//! run in a child process whose files may not grow past a limit
//! (RLIMIT_FSIZE). The kernel then cuts a write across the limit short and
//! fails the next one (EFBIG), as it does on a full file system (ENOSPC),
//! so the code under test meets a genuine short write. A child process,
//! because the limit is per process and the other tests run alongside.

use std::{path::Path, process::Command};

/// The environment variable naming the child's working directory; an
/// ignored child test run without it (`cargo test -- --ignored`) does
/// nothing.
const DIR: &str = "SHADOW_TEST_CHILD_DIR";

/// Runs the ignored test `name` (its full path, e.g.
/// `actuator::journal::tests::short_write_child`) alone in a child process
/// with `dir` as its directory, and panics with its output if it fails.
pub(crate) fn run(name: &str, dir: &Path) {
    let exe = std::env::current_exe().expect("test executable");
    let out = Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(DIR, dir)
        .output()
        .expect("run the child test");
    assert!(
        out.status.success(),
        "child test {name} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "child test {name} did not run"
    );
}

/// In a child test: its directory, or None when not run by [`run`].
pub(crate) fn dir() -> Option<std::path::PathBuf> {
    std::env::var_os(DIR).map(Into::into)
}

/// In a child test: files of this process may not grow past `bytes`
/// (writes across it are cut short, then fail with EFBIG instead of
/// raising SIGXFSZ).
pub(crate) fn limit_file_size(bytes: u64) {
    // SAFETY: ignoring a signal and setting this process's own limit; no
    // memory is shared with the kernel beyond the struct passed by pointer.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut limit: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        limit.rlim_cur = bytes;
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}
