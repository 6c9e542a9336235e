//! systemd readiness and watchdog over `$NOTIFY_SOCKET` (sd_notify(3)).
//!
//! A few lines over a Unix datagram socket instead of a crate: the protocol
//! is one datagram of `KEY=VALUE` lines, and we need only three messages.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where systemd listens, if the engine runs under a `Type=notify` unit.
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// `None` when not started by systemd (no `NOTIFY_SOCKET`).
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        // A leading '@' names a socket in the abstract namespace.
        let addr = match bytes.split_first() {
            Some((b'@', rest)) => SocketAddr::from_abstract_name(rest).ok()?,
            Some(_) => SocketAddr::from_pathname(std::path::Path::new(&path)).ok()?,
            None => return None,
        };
        let sock = UnixDatagram::unbound().ok()?;
        Some(Notifier { sock, addr })
    }

    fn send(&self, msg: &str) {
        if let Err(e) = self.sock.send_to_addr(msg.as_bytes(), &self.addr) {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }

    pub fn ready(&self) {
        self.send(&format!("READY=1\nMAINPID={}\nSTATUS=serving", std::process::id()));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

/// Half the watchdog period systemd asked for, if it asked for one for us.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID").ok().and_then(|p| p.parse::<u32>().ok()) {
        if pid != std::process::id() {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(100)))
}
