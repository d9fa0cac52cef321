//! Who is calling, from the kernel: SO_PEERCRED gives the peer's pid, uid
//! and gid (as they were when it connected), and a pidfd taken at connect
//! (SO_PEERPIDFD) pins that very process. Its cgroup is read from
//! `/proc/<pid>/cgroup` at each request, so a process moved since it
//! connected hints for where it is now; the read is trusted only if the
//! pidfd says the process is still there after it (a pid cannot be reused
//! while its process exists, even as a zombie), so a hint is never credited
//! to another process that got the pid after the peer exited. Nothing in a
//! message can change who the caller is.
//!
//! Limits: a peer in another pid namespace is reported with its pid in
//! ours (the kernel translates it); a peer that exited is refused
//! (`identity`), even if another process of its cgroup still holds the
//! connection.

use std::os::fd::OwnedFd;

use super::protocol::{Code, Refusal};

/// The calling process, as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Process id.
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Its cgroup (v2 path, `/` = root).
    pub cgroup: String,
}

/// The caller with its cgroup read now; `pidfd` is the one taken when it
/// connected (None: none could be had, and the pid alone cannot be
/// trusted).
pub fn identify(pid: i32, uid: u32, gid: u32, pidfd: Option<&OwnedFd>) -> Result<Caller, Refusal> {
    let refuse = |why: String| Refusal::new(Code::Identity, why);
    if pid <= 0 {
        return Err(refuse("the kernel gave no pid for this peer".into()));
    }
    let Some(pidfd) = pidfd else {
        return Err(refuse(format!(
            "no pidfd for process {pid}: its pid alone could name another process"
        )));
    };
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| refuse(format!("cannot read /proc/{pid}/cgroup: {e}")))?;
    // After the read: if the process that connected still exists, the pid
    // was its own all along.
    match shadow_common::peer::alive(pidfd) {
        Ok(true) => {}
        Ok(false) => {
            return Err(refuse(format!(
                "process {pid} has exited since it connected; its pid may be another process's now"
            )));
        }
        Err(e) => return Err(refuse(format!("cannot check process {pid}: {e}"))),
    }
    let cgroup =
        v2_cgroup(&text).ok_or_else(|| refuse(format!("process {pid} has no cgroup v2 entry")))?;
    Ok(Caller {
        pid,
        uid,
        gid,
        cgroup,
    })
}

/// The v2 path in a `/proc/<pid>/cgroup` file (its `0::` line).
pub fn v2_cgroup(text: &str) -> Option<String> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    normalize(path).ok()
}

/// A cgroup path in canonical form: absolute, no empty, `.` or `..`
/// segments, no trailing slash (`/` for the root).
pub fn normalize(path: &str) -> Result<String, Refusal> {
    let bad = |why: &str| Refusal::new(Code::Invalid, format!("cgroup {path:?}: {why}"));
    if !path.starts_with('/') {
        return Err(bad("must be absolute (relative to the v2 root)"));
    }
    if path.len() > 4096 || path.contains('\0') {
        return Err(bad("not a path"));
    }
    let mut out = String::with_capacity(path.len());
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        if seg == "." || seg == ".." {
            return Err(bad("no . or .. segments"));
        }
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Whether `caller` may hint for (or cancel a hint of) `target`: its own
/// cgroup or one below it; root (uid 0) any.
pub fn authorize(caller: &Caller, target: &str) -> Result<(), Refusal> {
    if caller.uid == 0 || crate::cgroups::is_within(target, &caller.cgroup) {
        return Ok(());
    }
    Err(Refusal::new(
        Code::Forbidden,
        format!(
            "process {} (uid {}) in cgroup {} may only hint for its own cgroup or one below it, not {target}",
            caller.pid, caller.uid, caller.cgroup
        ),
    ))
}
