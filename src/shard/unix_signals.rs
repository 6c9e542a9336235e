//! SIGTERM/SIGINT (stop) and SIGHUP (reload the config) handling without a signal handler: the signals are blocked
//! in every thread (the mask is inherited by the executors spawned after
//! `block`), and the main thread collects them with `sigtimedwait`.

use std::time::Duration;

fn term_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and the threads it spawns.
pub fn block() {
    let set = term_set();
    // SAFETY: set is a valid sigset; a null old-set pointer is allowed.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits up to `timeout` for SIGTERM, SIGINT or SIGHUP; returns the signal number.
pub fn wait(timeout: Duration) -> Option<i32> {
    let set = term_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid set and timespec; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Whether `sig` (from [`wait`]) asks for a config reload rather than a stop.
pub fn is_reload(sig: i32) -> bool {
    sig == libc::SIGHUP
}
