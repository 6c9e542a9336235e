//! Paths, temporary directories, free ports and child processes with
//! hard timeouts.

#![allow(unused_imports)]
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;

pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
// Generous: CI shares 2 cores between the engine, SIPp and the test itself.
pub const SIP_TIMEOUT: Duration = Duration::from_secs(5);

/// Repository root (where Cargo.toml, config/, sipp/ live).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn engine_bin() -> PathBuf {
    match std::env::var_os("CC_ENGINE_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_cc-engine")),
    }
}

pub fn shipped_config() -> PathBuf {
    repo().join("config/cc-engine.toml")
}

pub fn sipp_file(name: &str) -> PathBuf {
    repo().join("sipp").join(name)
}

// ---------------------------------------------------------------- temp dirs

pub(crate) static SEQ: AtomicU64 = AtomicU64::new(0);

pub(crate) fn unique() -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{}-{:x}", std::process::id(), n, t & 0xffff_ffff)
}

/// A temporary directory removed on Drop (kept if CC_E2E_KEEP is set).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("cc-e2e-{tag}-{}", unique()));
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("CC_E2E_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        } else {
            eprintln!("kept {}", self.0.display());
        }
    }
}

// ---------------------------------------------------------------- ports

pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp 0");
    s.local_addr().unwrap().port()
}

pub fn free_tcp_port() -> u16 {
    let s = TcpListener::bind("127.0.0.1:0").expect("bind tcp 0");
    s.local_addr().unwrap().port()
}

/// A port free on both UDP and TCP (the engine may use either later).
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let p = free_udp_port();
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port found");
}

// ---------------------------------------------------------------- processes

/// Fails loudly when an external tool is not installed.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "required external tool `{name}` is not installed (apt-get install -y sip-tester sipsak baresip-core); \
         the e2e tests do not skip"
    );
}

pub struct Output {
    pub status: Option<ExitStatus>, // None = killed on timeout
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }
    pub fn describe(&self) -> String {
        format!(
            "status={:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            tail(&self.stdout, 4000),
            tail(&self.stderr, 4000)
        )
    }
}

pub fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = s.len() - n;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Runs a command to completion with a hard timeout (killed after it).
/// stdout/stderr go through files, so a chatty child never blocks on a pipe.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let dir = TempDir::new("out");
    let out_p = dir.path().join("stdout");
    let err_p = dir.path().join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out_p).unwrap())
        .stderr(fs::File::create(&err_p).unwrap());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let status = wait_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Output {
        status,
        stdout: String::from_utf8_lossy(&fs::read(&out_p).unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&fs::read(&err_p).unwrap_or_default()).into_owned(),
    }
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn signal(child: &Child, sig: i32) {
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// A child process killed (SIGKILL) on Drop.
pub struct Guard(pub Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
