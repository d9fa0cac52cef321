//! Ctrl-C, SIGTERM and SIGHUP as flags the main loops of both binaries
//! check, so they end after the current interval (the probes detached, the
//! knobs restored, by the normal drop path) or reload between two.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

extern "C" fn request_reload(_signal: libc::c_int) {
    RELOAD.store(true, Ordering::Relaxed);
}

/// Routes SIGINT and SIGTERM to [`requested`], SIGHUP to
/// [`reload_requested`] (its default action would end the process).
pub fn install_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { libc::signal(signal, request_stop as *const () as libc::sighandler_t) };
    }
    // SAFETY: as above.
    unsafe {
        libc::signal(
            libc::SIGHUP,
            request_reload as *const () as libc::sighandler_t,
        )
    };
}

/// True once after each SIGHUP.
pub fn reload_requested() -> bool {
    RELOAD.swap(false, Ordering::Relaxed)
}

/// True once a stop signal arrived.
pub fn requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Sleeps until `deadline`, waking early if a stop was requested.
pub fn sleep_until(deadline: Instant) {
    while !requested() {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}
