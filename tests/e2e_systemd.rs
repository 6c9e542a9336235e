//! The engine under systemd's notify protocol: READY=1 once serving,
//! WATCHDOG=1 at half the requested interval while its executors run,
//! STOPPING=1 on SIGTERM. systemd itself is simulated by a Unix datagram
//! socket named in NOTIFY_SOCKET, exactly as sd_notify(3) describes.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn collect(sock: &UnixDatagram, until: Instant, msgs: &mut Vec<String>, stop: impl Fn(&[String]) -> bool) {
    let mut buf = [0u8; 512];
    while Instant::now() < until && !stop(msgs) {
        if let Ok(n) = sock.recv(&mut buf) {
            msgs.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[test]
fn notify_ready_watchdog_and_stopping() {
    let dir = TempDir::new("notify");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let port = free_port();
    let child = Command::new(engine_bin())
        .arg("--config")
        .arg(shipped_config())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--state-dir")
        .arg(dir.path().join("db"))
        .arg("--mgmt")
        .arg("off")
        .env("NOTIFY_SOCKET", &sock_path)
        // 400 ms: the engine must ping every 200 ms.
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cc-engine");
    let guard_pid = child.id();
    // Killed on drop if an assertion fails first.
    let mut guard = Guard(Some(child));
    let mut msgs = Vec::new();
    collect(&sock, Instant::now() + Duration::from_secs(10), &mut msgs, |m| {
        m.iter().filter(|s| s.contains("WATCHDOG=1")).count() >= 3
    });
    let ready = msgs.iter().position(|m| m.contains("READY=1"));
    let first_ping = msgs.iter().position(|m| m.contains("WATCHDOG=1"));
    assert!(ready.is_some(), "no READY=1 within 10 s: {msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains(&format!("MAINPID={guard_pid}"))),
        "READY carries MAINPID: {msgs:?}"
    );
    assert!(first_ping.is_some_and(|p| Some(p) > ready), "watchdog pings after READY: {msgs:?}");
    assert!(msgs.iter().filter(|s| s.contains("WATCHDOG=1")).count() >= 3, "{msgs:?}");

    signal(guard.0.as_ref().expect("child"), libc::SIGTERM);
    let mut rest = Vec::new();
    collect(&sock, Instant::now() + Duration::from_secs(2), &mut rest, |m| {
        m.iter().any(|s| s.contains("STOPPING=1"))
    });
    assert!(rest.iter().any(|s| s.contains("STOPPING=1")), "no STOPPING=1 after SIGTERM: {rest:?}");
    let status = wait_timeout(guard.0.as_mut().expect("child"), Duration::from_secs(2)).expect("exit within 2 s of SIGTERM");
    assert!(status.success(), "clean exit: {status}");
}
