//! Who is at the other end of a Unix socket, from the kernel
//! (SO_PEERCRED): the hint server's identity and the orchestrator's name
//! for a local peer in its logs; and a pidfd on it (SO_PEERPIDFD), so a
//! pid read at connect is never taken for another process that got the
//! same pid after the peer exited.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd},
};

/// `SO_PEERPIDFD` (Linux 6.5+, asm-generic/socket.h; not in libc yet).
const SO_PEERPIDFD: libc::c_int = 77;

/// The peer's pid, uid and gid, as they were when it connected.
pub fn credentials(socket: &impl AsRawFd) -> io::Result<(i32, u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.pid, cred.uid, cred.gid))
}

/// A pidfd on the process that connected `socket`: SO_PEERPIDFD where the
/// kernel has it (6.5+: the very process that connected, with no window),
/// else `pidfd_open(pid)` (5.3+: the process holding `pid` now, which is
/// the peer unless it already exited and its pid was reused in between).
pub fn pidfd(socket: &impl AsRawFd, pid: i32) -> io::Result<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&raw mut fd).cast(),
            &raw mut len,
        )
    };
    if rc == 0 && fd >= 0 {
        // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above, a new descriptor only we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Whether the process `pidfd` refers to still exists (a zombie counts:
/// its pid cannot be reused until it is reaped). Signal 0 checks without
/// sending anything.
pub fn alive(pidfd: &OwnedFd) -> io::Result<bool> {
    // SAFETY: pidfd_send_signal with signal 0, no siginfo and no flags only
    // checks that the process exists and may be signalled.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pidfd_tells_a_reaped_process_from_a_live_one() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("spawn sleep");
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        // A socketpair's peer is this process: SO_PEERPIDFD or not, `a`'s
        // peer is alive.
        let me = pidfd(&a, std::process::id() as i32).unwrap();
        assert!(alive(&me).unwrap());
        let fd = {
            // SAFETY: pidfd_open on our own child's pid.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as i32, 0) };
            assert!(fd >= 0, "{}", io::Error::last_os_error());
            // SAFETY: a new descriptor only we own.
            unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
        };
        assert!(alive(&fd).unwrap());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            !alive(&fd).unwrap(),
            "reaped: gone, whoever has its pid now"
        );
    }
}
