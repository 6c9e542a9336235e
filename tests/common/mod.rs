//! Shared harness for the end-to-end tests: runs the REAL `cc-engine` binary
//! on loopback and talks to it with raw UDP, plain HTTP, and external SIP
//! tools (SIPp, sipsak, baresip) with hard timeouts.
//!
//! Rules every test follows: only 127.0.0.1; free ports chosen by binding
//! port 0 and releasing; its own temporary state dir; every wait bounded;
//! every child process killed on Drop. A missing external tool is a loud
//! failure, never a skip (the project's test command installs them).
//!
//! `CC_ENGINE_BIN` overrides the binary (debugging only); by default the
//! binary Cargo built for this test run is used.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

static SEQ: AtomicU64 = AtomicU64::new(0);

fn unique() -> String {
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

// ---------------------------------------------------------------- configs

/// Writes a copy of the shipped config with `key` inside `[section]` set to
/// `value` (TOML text), into `dir`; panics if the key is not there.
pub fn derived_config(dir: &Path, section: &str, key: &str, value: &str) -> PathBuf {
    let text = fs::read_to_string(shipped_config()).expect("read config/cc-engine.toml");
    let mut cur = String::new();
    let mut done = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('[') {
                cur = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            }
            if !done && cur == section {
                if let Some((k, _)) = t.split_once('=') {
                    if k.trim() == key && !t.starts_with('#') {
                        done = true;
                        return format!("{key} = {value}");
                    }
                }
            }
            l.to_string()
        })
        .collect();
    assert!(done, "config/cc-engine.toml has no `{key}` in [{section}]");
    let p = dir.join(format!("cc-engine-{section}-{key}.toml"));
    fs::write(&p, out.join("\n") + "\n").unwrap();
    p
}

// ---------------------------------------------------------------- engine

pub struct EngineOpts {
    pub shards: Option<u32>,
    pub config: PathBuf,
}

impl Default for EngineOpts {
    fn default() -> Self {
        EngineOpts {
            shards: None,
            config: shipped_config(),
        }
    }
}

/// A running `cc-engine` on 127.0.0.1 with its own state dir. Killed on Drop;
/// if the test is panicking, the tail of the engine's stderr is printed.
pub struct Engine {
    child: Option<Child>,
    pub sip_port: u16,
    pub mgmt_port: u16,
    pub opts_shards: Option<u32>,
    pub config: PathBuf,
    pub state: TempDir,
    pub log: PathBuf,
    runs: u32,
}

impl Engine {
    pub fn start() -> Engine {
        Engine::start_with(EngineOpts::default())
    }

    pub fn start_with(opts: EngineOpts) -> Engine {
        let state = TempDir::new("state");
        let mut e = Engine {
            child: None,
            sip_port: free_port(),
            mgmt_port: free_tcp_port(),
            opts_shards: opts.shards,
            config: opts.config,
            log: state.path().with_extension("log"),
            state,
            runs: 0,
        };
        e.spawn();
        e
    }

    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sip_port))
    }

    pub fn mgmt_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.mgmt_port))
    }

    /// The engine's own state (database) directory, inside the temp dir.
    pub fn state_dir(&self) -> PathBuf {
        self.state.path().join("db")
    }

    /// (Re)starts the process on the same ports and state dir, waits ready.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "engine already running");
        fs::create_dir_all(self.state_dir()).unwrap();
        self.runs += 1;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(engine_bin());
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.sip_port))
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--mgmt")
            .arg(format!("127.0.0.1:{}", self.mgmt_port));
        if let Some(n) = self.opts_shards {
            cmd.arg("--shards").arg(n.to_string());
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", engine_bin().display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        loop {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "cc-engine exited during start-up with {s}\n{}",
                    self.log_tail(6000)
                );
            }
            let msg = Req::new("OPTIONS", &format!("sip:127.0.0.1:{}", self.sip_port)).build(&sock);
            let _ = sock.send_to(msg.as_bytes(), self.sip_addr());
            let mut buf = vec![0u8; 65536];
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if let Some(r) = Msg::parse(&buf[..n]) {
                    if r.status() == Some(200) {
                        break;
                    }
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "cc-engine did not answer OPTIONS with 200 within {READY_TIMEOUT:?}\n{}",
                    self.log_tail(6000)
                );
            }
        }
        // management plane: wait until it accepts connections too
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect_timeout(&self.mgmt_addr(), Duration::from_millis(200)).is_err() {
            if Instant::now() >= deadline {
                panic!(
                    "management HTTP on {} not reachable\n{}",
                    self.mgmt_addr(),
                    self.log_tail(6000)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("engine not running").id()
    }

    /// SIGKILL, no clean-up by the engine.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns the exit status if it exited within `timeout`
    /// (killed hard otherwise, and None returned).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take().expect("engine not running");
        signal(&c, libc::SIGTERM);
        let st = wait_timeout(&mut c, timeout);
        if st.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        st
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    pub fn log_tail(&self, n: usize) -> String {
        let t = self.log_text();
        format!("--- cc-engine stderr (tail) ---\n{}", tail(&t, n))
    }

    // ---- management plane

    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.mgmt_addr(), path)
    }

    pub fn metrics(&self) -> Metrics {
        let (code, body) = self.http_get("/metrics");
        assert_eq!(code, 200, "GET /metrics: {body}");
        Metrics(body)
    }

    /// Metrics are snapshots gathered from the shards and may trail the
    /// traffic: polls (bounded, 3 s) until `name{labels}` reaches `min`.
    /// Returns the last value seen (None: series absent) and the text.
    pub fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        min: f64,
    ) -> (Option<f64>, Metrics) {
        let mut last = Metrics(String::new());
        let mut v = None;
        poll(Duration::from_secs(3), || {
            last = self.metrics();
            v = last.get(name, labels);
            (v.unwrap_or(f64::NEG_INFINITY) >= min).then_some(())
        });
        (v, last)
    }

    pub fn agents(&self) -> Vec<serde_json::Value> {
        let (code, body) = self.http_get("/agents");
        assert_eq!(code, 200, "GET /agents: {body}");
        parse_json_lines(&body)
    }

    /// `cc-engine agents --state-dir DIR` (meant for a stopped engine),
    /// normalised to one object per binding like /agents. (The binary prints
    /// one object per configured agent with a nested `bindings` array whose
    /// items carry `expires_in_s`; a flat per-binding line is taken as is.)
    pub fn offline_agents(&self) -> Vec<serde_json::Value> {
        let mut cmd = Command::new(engine_bin());
        cmd.arg("agents")
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--config")
            .arg(&self.config);
        let out = run_with_timeout(cmd, Duration::from_secs(10));
        assert_eq!(out.code(), Some(0), "cc-engine agents: {}", out.describe());
        let mut flat = vec![];
        for v in parse_json_lines(&out.stdout) {
            match v.get("bindings").and_then(|b| b.as_array()) {
                Some(bs) => {
                    for b in bs {
                        let mut o = b.clone();
                        if let Some(m) = o.as_object_mut() {
                            m.insert("agent".into(), v["agent"].clone());
                            if !m.contains_key("expires_in") {
                                if let Some(x) = m.get("expires_in_s").cloned() {
                                    m.insert("expires_in".into(), x);
                                }
                            }
                        }
                        flat.push(o);
                    }
                }
                None => {
                    if v.get("contact").is_some() {
                        flat.push(v)
                    }
                }
            }
        }
        flat
    }

    /// Sends one request from a fresh socket and returns the final response.
    pub fn request(&self, req: Req) -> Option<Msg> {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let msg = req.build(&sock);
        exchange(&sock, self.sip_addr(), msg.as_bytes(), SIP_TIMEOUT)
    }

    pub fn options_ok(&self) -> bool {
        self.request(Req::new(
            "OPTIONS",
            &format!("sip:127.0.0.1:{}", self.sip_port),
        ))
        .map(|r| r.status() == Some(200))
        .unwrap_or(false)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(8000));
        }
        let _ = fs::remove_file(&self.log);
    }
}

pub fn parse_json_lines(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Bindings of one agent in a JSON-lines listing.
pub fn bindings_of<'a>(list: &'a [serde_json::Value], agent: &str) -> Vec<&'a serde_json::Value> {
    list.iter().filter(|v| v["agent"] == agent).collect()
}

/// Polls `f` every 50 ms until it returns Some or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- HTTP

/// The bearer tokens of the shipped config (`[[mgmt.tokens]]`).
pub const DEMO_ADMIN_TOKEN: &str = "demo-admin-token-change-me";
#[allow(dead_code)]
pub const DEMO_VIEWER_TOKEN: &str = "demo-viewer-token-change-me";

/// Minimal HTTP/1.0 GET (Connection: close), bounded by timeouts, with the
/// shipped admin token (the management API needs one).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {DEMO_ADMIN_TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 16384];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break
            }
            Err(e) => panic!("read {addr}{path}: {e}"),
        }
        // stop early once a Content-Length body is complete
        if let Some(done) = http_complete(&buf) {
            if done {
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response from {addr}{path}: {text:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (code, body)
}

fn http_complete(buf: &[u8]) -> Option<bool> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let cl = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim().eq_ignore_ascii_case("content-length") {
            v.trim().parse::<usize>().ok()
        } else {
            None
        }
    })?;
    Some(body.len() >= cl)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((len, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Prometheus text exposition.
pub struct Metrics(pub String);

impl Metrics {
    /// Sum of every series of `name` whose label set contains all `labels`
    /// (`[("code","200")]`); None if no such series is present.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for line in self.0.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // `name{labels} value [timestamp]`
            let (n, lbl, rest) = match line.find('{') {
                Some(i) if line[..i].find(char::is_whitespace).is_none() => {
                    let close = match line[i..].find('}') {
                        Some(c) => i + c,
                        None => continue,
                    };
                    (&line[..i], &line[i + 1..close], &line[close + 1..])
                }
                _ => match line.split_once(char::is_whitespace) {
                    Some((n, r)) => (n, "", r),
                    None => continue,
                },
            };
            let value = rest.split_whitespace().next().unwrap_or("");
            if n != name {
                continue;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| lbl.split(',').any(|kv| kv.trim() == format!("{k}=\"{v}\"")));
            if !ok {
                continue;
            }
            if let Ok(v) = value.parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    pub fn sum(&self, name: &str) -> f64 {
        self.get(name, &[]).unwrap_or(0.0)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name, &[]).is_some()
    }
}

// ---------------------------------------------------------------- SIP over UDP

static BRANCH: AtomicU64 = AtomicU64::new(1);

pub fn token() -> String {
    format!(
        "{}x{}",
        unique().replace('-', ""),
        BRANCH.fetch_add(1, Ordering::SeqCst)
    )
}

/// A request builder producing a well-formed request; tests then mutate it.
#[derive(Clone)]
pub struct Req {
    pub method: String,
    pub uri: String,
    pub from_user: String,
    pub to_user: Option<String>,
    pub to_tag: Option<String>,
    pub call_id: String,
    pub cseq: u32,
    pub extra: Vec<String>,
    pub body: String,
}

impl Req {
    pub fn new(method: &str, uri: &str) -> Req {
        Req {
            method: method.into(),
            uri: uri.into(),
            from_user: "e2e".into(),
            to_user: None,
            to_tag: None,
            call_id: format!("{}@e2e", token()),
            cseq: 1,
            extra: vec![],
            body: String::new(),
        }
    }
    pub fn header(mut self, h: &str) -> Req {
        self.extra.push(h.to_string());
        self
    }
    pub fn to(mut self, user: &str) -> Req {
        self.to_user = Some(user.into());
        self
    }
    pub fn from(mut self, user: &str) -> Req {
        self.from_user = user.into();
        self
    }
    pub fn with_to_tag(mut self, tag: &str) -> Req {
        self.to_tag = Some(tag.into());
        self
    }
    pub fn cseq(mut self, n: u32) -> Req {
        self.cseq = n;
        self
    }
    pub fn call_id(mut self, id: &str) -> Req {
        self.call_id = id.into();
        self
    }

    /// Renders with a Via/Contact naming `sock`'s local address.
    pub fn build(&self, sock: &UdpSocket) -> String {
        self.build_for(sock.local_addr().unwrap())
    }

    pub fn build_for(&self, local: SocketAddr) -> String {
        let to_uri = match &self.to_user {
            Some(u) => format!("sip:{u}@127.0.0.1"),
            None => self.uri.clone(),
        };
        let to_tag = self
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        let mut m = format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK{br}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{from}@127.0.0.1>;tag={ftag}\r\n\
             To: <{to_uri}>{to_tag}\r\n\
             Call-ID: {cid}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:{from}@{local}>\r\n\
             User-Agent: cc-engine-e2e\r\n",
            method = self.method,
            uri = self.uri,
            br = token(),
            from = self.from_user,
            ftag = token(),
            cid = self.call_id,
            cseq = self.cseq,
        );
        for h in &self.extra {
            m.push_str(h);
            m.push_str("\r\n");
        }
        m.push_str(&format!(
            "Content-Length: {}\r\n\r\n{}",
            self.body.len(),
            self.body
        ));
        m
    }
}

/// Sends `bytes` and waits for the final (non-1xx) response; None on timeout.
pub fn exchange(sock: &UdpSocket, to: SocketAddr, bytes: &[u8], timeout: Duration) -> Option<Msg> {
    sock.send_to(bytes, to).expect("send");
    recv_final(sock, timeout)
}

pub fn recv_final(sock: &UdpSocket, timeout: Duration) -> Option<Msg> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                if let Some(m) = Msg::parse(&buf[..n]) {
                    if m.status().map(|s| s >= 200).unwrap_or(false) {
                        return Some(m);
                    }
                }
            }
            Err(_) => return None,
        }
    }
}

/// Every datagram that arrives within `window` (raw).
pub fn recv_all(sock: &UdpSocket, window: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + window;
    let mut buf = vec![0u8; 65536];
    let mut out = vec![];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => out.push(buf[..n].to_vec()),
            Err(_) => return out,
        }
    }
}

/// A received SIP message, minimally parsed (text; header lookups are
/// case-insensitive and understand compact forms for the common headers).
#[derive(Clone, Debug)]
pub struct Msg {
    pub text: String,
}

impl Msg {
    pub fn parse(b: &[u8]) -> Option<Msg> {
        let text = String::from_utf8_lossy(b).into_owned();
        if text.trim().is_empty() {
            return None;
        }
        Some(Msg { text })
    }
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
    pub fn status(&self) -> Option<u16> {
        let l = self.first_line();
        if !l.starts_with("SIP/2.0 ") {
            return None;
        }
        l.split_whitespace().nth(1)?.parse().ok()
    }
    pub fn headers(&self, name: &str) -> Vec<String> {
        let compact = match name.to_ascii_lowercase().as_str() {
            "via" => Some("v"),
            "from" => Some("f"),
            "to" => Some("t"),
            "call-id" => Some("i"),
            "contact" => Some("m"),
            "content-length" => Some("l"),
            "supported" => Some("k"),
            _ => None,
        };
        let head = self.text.split("\r\n\r\n").next().unwrap_or("");
        head.lines()
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                let k = k.trim();
                if k.eq_ignore_ascii_case(name)
                    || compact.map(|c| k.eq_ignore_ascii_case(c)).unwrap_or(false)
                {
                    Some(v.trim().to_string())
                } else {
                    None
                }
            })
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }
    pub fn call_id(&self) -> Option<String> {
        self.header("Call-ID")
    }
}

// ---------------------------------------------------------------- digest

/// Parses one `Digest k=v, k="v"` challenge into (lowercase key, value).
pub fn parse_challenge(h: &str) -> Vec<(String, String)> {
    let h = h.trim();
    let h = h
        .strip_prefix("Digest")
        .or_else(|| h.strip_prefix("digest"))
        .unwrap_or(h);
    let mut out = vec![];
    let mut rest = h.trim();
    while !rest.is_empty() {
        let (k, after) = match rest.split_once('=') {
            Some(x) => x,
            None => break,
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, r) = if let Some(s) = after.strip_prefix('"') {
            let end = s.find('"').unwrap_or(s.len());
            (s[..end].to_string(), s.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((k, v));
        rest = r.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

pub fn param<'a>(c: &'a [(String, String)], k: &str) -> Option<&'a str> {
    c.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
}

pub fn hex_md5(s: &str) -> String {
    use md5::{Digest, Md5};
    let d = Md5::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hex_sha256(s: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds an Authorization header answering the challenge (MD5 or SHA-256,
/// qop=auth or none).
pub fn authorization(challenge: &str, user: &str, pass: &str, method: &str, uri: &str) -> String {
    let c = parse_challenge(challenge);
    let realm = param(&c, "realm").unwrap_or("");
    let nonce = param(&c, "nonce").unwrap_or("");
    let alg = param(&c, "algorithm").unwrap_or("MD5");
    let h: fn(&str) -> String = if alg.eq_ignore_ascii_case("SHA-256") {
        hex_sha256
    } else {
        hex_md5
    };
    let ha1 = h(&format!("{user}:{realm}:{pass}"));
    let ha2 = h(&format!("{method}:{uri}"));
    let qop_auth = param(&c, "qop")
        .map(|q| q.split(',').any(|x| x.trim() == "auth"))
        .unwrap_or(false);
    let opaque = param(&c, "opaque")
        .map(|o| format!(", opaque=\"{o}\""))
        .unwrap_or_default();
    if qop_auth {
        let cnonce = token();
        let nc = "00000001";
        let resp = h(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", algorithm={alg}, qop=auth, nc={nc}, cnonce=\"{cnonce}\"{opaque}"
        )
    } else {
        let resp = h(&format!("{ha1}:{nonce}:{ha2}"));
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", algorithm={alg}{opaque}"
        )
    }
}

/// Picks the challenge with the wanted algorithm ("MD5" also matches a
/// challenge with no algorithm parameter).
pub fn pick_challenge(resp: &Msg, alg: &str) -> Option<String> {
    resp.headers("WWW-Authenticate").into_iter().find(|h| {
        let c = parse_challenge(h);
        match param(&c, "algorithm") {
            Some(a) => a.eq_ignore_ascii_case(alg),
            None => alg.eq_ignore_ascii_case("MD5"),
        }
    })
}

/// Outcome of a raw-UDP REGISTER with digest.
pub struct RegOutcome {
    pub first: Option<Msg>,
    pub last: Option<Msg>,
    pub local: SocketAddr,
    pub contact: String,
}

/// REGISTER `user` (from one socket, one Call-ID), answering one 401 with
/// `alg` digest. `expires` None = no Expires header. Returns both responses.
pub fn register(
    engine: &Engine,
    user: &str,
    pass: &str,
    expires: Option<u32>,
    alg: &str,
) -> RegOutcome {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    register_on(engine, &sock, user, pass, expires, alg)
}

pub fn register_on(
    engine: &Engine,
    sock: &UdpSocket,
    user: &str,
    pass: &str,
    expires: Option<u32>,
    alg: &str,
) -> RegOutcome {
    let local = sock.local_addr().unwrap();
    let contact = format!("sip:{user}@{local}");
    let call_id = format!("{}@e2e", token());
    let uri = "sip:127.0.0.1".to_string();
    let mk = |cseq: u32, auth: Option<String>| {
        let mut r = Req::new("REGISTER", &uri)
            .from(user)
            .to(user)
            .call_id(&call_id)
            .cseq(cseq);
        if let Some(e) = expires {
            r = r.header(&format!("Expires: {e}"));
        }
        if let Some(a) = auth {
            r = r.header(&a);
        }
        r.build_for(local)
    };
    let first = exchange(sock, engine.sip_addr(), mk(1, None).as_bytes(), SIP_TIMEOUT);
    let mut last = first.clone();
    if let Some(r) = &first {
        if r.status() == Some(401) {
            let ch = pick_challenge(r, alg)
                .unwrap_or_else(|| panic!("no {alg} challenge in 401:\n{}", r.text));
            let auth = authorization(&ch, user, pass, "REGISTER", &uri);
            last = exchange(
                sock,
                engine.sip_addr(),
                mk(2, Some(auth)).as_bytes(),
                SIP_TIMEOUT,
            );
        }
    }
    RegOutcome {
        first,
        last,
        local,
        contact,
    }
}

// ---------------------------------------------------------------- SIPp

/// Runs SIPp against the engine with a hard timeout. Logs (errors, messages)
/// are written to a temp dir and returned as text for assertion messages.
pub struct SippRun {
    pub out: Output,
    pub errors: String,
    pub messages: String,
}

impl SippRun {
    pub fn ok(&self) -> bool {
        self.out.code() == Some(0)
    }
    pub fn describe(&self) -> String {
        let hint = if self.errors.contains("must use MD5") {
            "\n*** SIPp 3.6 computes MD5 only and answers the FIRST WWW-Authenticate: the engine put a \
             non-MD5 challenge first (list MD5 first, or offer MD5 alone for such clients) ***"
        } else {
            ""
        };
        format!(
            "{}{hint}\n--- sipp errors log ---\n{}\n--- sipp messages (tail) ---\n{}",
            self.out.describe(),
            tail(&self.errors, 4000),
            tail(&self.messages, 4000)
        )
    }
}

pub fn sipp(engine: &Engine, scenario: &str, extra: &[&str], timeout: Duration) -> SippRun {
    require_tool("sipp");
    let dir = TempDir::new("sipp");
    let mut cmd = Command::new("sipp");
    cmd.current_dir(dir.path())
        .arg("-sf")
        .arg(sipp_file(scenario))
        .args(["-i", "127.0.0.1", "-p"])
        .arg(free_udp_port().to_string())
        .args([
            "-nostdin",
            "-trace_err",
            "-trace_msg",
            "-max_recv_loops",
            "1000",
        ])
        .args([
            "-timeout",
            &format!("{}s", timeout.as_secs().max(2) - 1),
            "-timeout_error",
        ])
        .arg("-error_file")
        .arg(dir.path().join("errors.log"))
        .arg("-message_file")
        .arg(dir.path().join("messages.log"))
        .args(extra)
        .arg(engine.sip_addr().to_string());
    let out = run_with_timeout(cmd, timeout);
    let errors = fs::read_to_string(dir.path().join("errors.log")).unwrap_or_default();
    let messages = fs::read_to_string(dir.path().join("messages.log")).unwrap_or_default();
    SippRun {
        out,
        errors,
        messages,
    }
}

// ---------------------------------------------------------------- calls (issue 3)
//
// Helpers for the call tests (tests/e2e_calls.rs, e2e_baresip_call.rs,
// e2e_restart_calls.rs): a config with the test's own queues and agents,
// SIPp user agents on chosen ports (agent phones that must be reachable at
// their registered Contact), /queues, and the CDRs of a stopped engine.

/// The demo agents of the call tests: alice and bob, both in `support`.
#[allow(dead_code)]
pub const ALICE_AND_BOB: &str = r#"
[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support"]

[[agent]]
id = "bob"
password = "bob-pass"
queues = ["support"]
"#;

/// Starts an engine on `calls_config` with these queues and agents; keep
/// the TempDir (the config) alive as long as the engine.
#[allow(dead_code)]
pub fn start_calls_engine(queues_and_agents: &str) -> (Engine, TempDir) {
    let dir = TempDir::new("calls-cfg");
    let config = calls_config(dir.path(), queues_and_agents);
    let e = Engine::start_with(EngineOpts {
        config,
        ..Default::default()
    });
    (e, dir)
}

/// Writes `cc-engine.toml` into `dir`: the shipped config's sections before
/// its first `[[queue]]` (engine, sip, registrar, mgmt, media), with
/// `algorithms = ["MD5"]` (SIPp and baresip 1.0 answer MD5 only) and an RTP
/// range of its own, followed by
/// `queues_and_agents` (the test's own `[[queue]]` / `[[agent]]` tables).
pub fn calls_config(dir: &Path, queues_and_agents: &str) -> PathBuf {
    let text = fs::read_to_string(shipped_config()).expect("read config/cc-engine.toml");
    // Each engine gets its own 400-port RTP window in 61000..65399: above
    // the kernel's ephemeral ports (32768..60999), away from the shipped
    // 20000..29999 and the bench's 10000..19999. Every engine allocates from
    // the bottom of its range and gives up (503) after 8 unbindable pairs,
    // so engines sharing a range on one busy machine refuse calls.
    let rtp_min = {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
        let r = (t ^ (std::process::id() as u64) << 7) ^ SEQ.fetch_add(1, Ordering::SeqCst) * 7919;
        61000 + (r % 11) * 400
    };
    let head: Vec<String> = text
        .lines()
        .take_while(|l| l.trim() != "[[queue]]")
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("algorithms") {
                r#"algorithms = ["MD5"]"#.to_string()
            } else if t.starts_with("rtp_port_min") {
                format!("rtp_port_min = {rtp_min}")
            } else if t.starts_with("rtp_port_max") {
                format!("rtp_port_max = {}", rtp_min + 399)
            } else {
                l.to_string()
            }
        })
        .collect();
    let p = dir.join("cc-engine.toml");
    fs::write(&p, format!("{}\n{}\n", head.join("\n"), queues_and_agents)).unwrap();
    p
}

/// `n` distinct free UDP ports (all held open while choosing).
pub fn free_udp_ports(n: usize) -> Vec<u16> {
    let socks: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind udp 0"))
        .collect();
    socks.iter().map(|s| s.local_addr().unwrap().port()).collect()
}

/// An even port P with P..=P+3 free (SIPp binds `-mp` and `-mp`+2 for audio
/// and video, each with its RTCP port beside).
pub fn free_media_port() -> u16 {
    for _ in 0..200 {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind udp 0");
        let x = a.local_addr().unwrap().port();
        let p = x & !1;
        if !(1024..=65530).contains(&p) {
            continue;
        }
        let held: Vec<_> = (p..p + 4)
            .filter(|q| *q != x)
            .map(|q| UdpSocket::bind(("127.0.0.1", q)))
            .collect();
        if held.iter().all(|h| h.is_ok()) {
            return p;
        }
    }
    panic!("no 4 consecutive free UDP ports found");
}

fn sipp_command(engine: &Engine, scenario: &str, port: u16, dir: &Path, extra: &[&str]) -> Command {
    require_tool("sipp");
    let mut cmd = Command::new("sipp");
    cmd.current_dir(dir)
        .arg("-sf")
        .arg(sipp_file(scenario))
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .arg("-mp")
        .arg(free_media_port().to_string())
        .args(["-nostdin", "-trace_err", "-trace_msg", "-max_recv_loops", "1000"])
        .arg("-error_file")
        .arg(dir.join("errors.log"))
        .arg("-message_file")
        .arg(dir.join("messages.log"))
        .args(extra)
        .arg(engine.sip_addr().to_string());
    cmd
}

/// Runs SIPp to completion from local port `port` (hard timeout; SIPp's own
/// `-timeout` is one second shorter and counts as an error).
pub fn sipp_on(engine: &Engine, scenario: &str, port: u16, extra: &[&str], timeout: Duration) -> SippRun {
    let dir = TempDir::new("sipp");
    let t = format!("{}s", timeout.as_secs().max(2) - 1);
    let mut all: Vec<&str> = vec!["-timeout", &t, "-timeout_error"];
    all.extend_from_slice(extra);
    let cmd = sipp_command(engine, scenario, port, dir.path(), &all);
    let out = run_with_timeout(cmd, timeout);
    SippRun {
        out,
        errors: fs::read_to_string(dir.path().join("errors.log")).unwrap_or_default(),
        messages: fs::read_to_string(dir.path().join("messages.log")).unwrap_or_default(),
    }
}

/// Registers `user` with digest auth using sipp/register.xml from local port
/// `port`, so the binding's Contact is 127.0.0.1:`port` (where the agent's
/// UAS scenario listens next). Panics with SIPp's logs on failure.
pub fn sipp_register_agent(engine: &Engine, user: &str, pass: &str, port: u16) {
    let dir = TempDir::new("inf");
    let csv = dir.path().join("agent.csv");
    fs::write(
        &csv,
        format!("SEQUENTIAL\n{user};{pass};[authentication username={user} password={pass}];x\n"),
    )
    .unwrap();
    let csv = csv.to_string_lossy().into_owned();
    let run = sipp_on(engine, "register.xml", port, &["-inf", &csv, "-m", "1"], Duration::from_secs(15));
    assert!(
        run.ok(),
        "SIPp registration of {user} from 127.0.0.1:{port} failed\n{}\n{}",
        run.describe(),
        engine.log_tail(3000)
    );
}

/// Counts SIP messages in a SIPp message trace: requests by method
/// (`"INVITE"`) or responses by code (`"486"`), received or sent alike.
pub fn count_sip(messages: &str, what: &str) -> usize {
    let is_code = what.chars().all(|c| c.is_ascii_digit());
    messages
        .lines()
        .filter(|l| {
            if is_code {
                l.starts_with(&format!("SIP/2.0 {what} "))
            } else {
                l.starts_with(&format!("{what} ")) && l.contains(" SIP/2.0")
            }
        })
        .count()
}

/// A long-running SIPp user agent (an agent phone, a customer) killed on
/// Drop. Its message trace is flushed as it runs, so it can be read live.
pub struct SippUa {
    pub name: String,
    pub port: u16,
    dir: TempDir,
    child: Guard,
}

impl SippUa {
    pub fn spawn(engine: &Engine, name: &str, scenario: &str, port: u16, extra: &[&str]) -> SippUa {
        let dir = TempDir::new("sippua");
        let mut cmd = sipp_command(engine, scenario, port, dir.path(), extra);
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(fs::File::create(dir.path().join("stderr")).unwrap());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn sipp for {name}: {e}"));
        let mut ua = SippUa {
            name: name.into(),
            port,
            dir,
            child: Guard(Some(child)),
        };
        // Ready = SIPp holds its port (a loaded machine can take a while to
        // start it; an INVITE sent before would hit a closed port).
        let up = poll(Duration::from_secs(10), || {
            UdpSocket::bind(("127.0.0.1", port)).is_err().then_some(())
        });
        if up.is_none() || ua.exited().is_some() {
            panic!("SIPp {name} did not start listening on 127.0.0.1:{port}\n{}", ua.describe());
        }
        ua
    }
    pub fn messages(&self) -> String {
        fs::read_to_string(self.dir.path().join("messages.log")).unwrap_or_default()
    }
    pub fn errors(&self) -> String {
        fs::read_to_string(self.dir.path().join("errors.log")).unwrap_or_default()
    }
    pub fn count(&self, what: &str) -> usize {
        count_sip(&self.messages(), what)
    }
    /// Waits (bounded) until the trace holds at least `n` of `what`.
    pub fn wait_count(&self, what: &str, n: usize, timeout: Duration) -> bool {
        poll(timeout, || (self.count(what) >= n).then_some(())).is_some()
    }
    /// Exit status if SIPp has exited (None while running).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let c = self.child.0.as_mut()?;
        wait_timeout(c, timeout)
    }
    pub fn describe(&self) -> String {
        let rd = |f: &str| fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "=== SIPp {} (127.0.0.1:{}) ===\n--- stdout (tail) ---\n{}\n--- stderr ---\n{}\n--- errors log ---\n{}\n--- messages (tail) ---\n{}",
            self.name,
            self.port,
            tail(&rd("stdout"), 1500),
            tail(&rd("stderr"), 1500),
            tail(&self.errors(), 3000),
            tail(&self.messages(), 5000)
        )
    }
}

impl Engine {
    /// GET /queues as JSON.
    pub fn queues(&self) -> serde_json::Value {
        let (code, body) = self.http_get("/queues");
        assert_eq!(code, 200, "GET /queues: {body}");
        serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("bad /queues JSON {body:?}: {e}"))
    }

    /// One queue of the /queues snapshot (panics if absent).
    pub fn queue(&self, name: &str) -> serde_json::Value {
        let q = self.queues();
        q["queues"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no queue {name} in /queues: {q}"))
    }

    /// One agent of the /queues snapshot (panics if absent).
    pub fn agent_state(&self, id: &str) -> serde_json::Value {
        let q = self.queues();
        q["agents"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == id).cloned())
            .unwrap_or_else(|| panic!("no agent {id} in /queues: {q}"))
    }

    /// Polls /queues (bounded) until no queue has a call waiting, ringing or
    /// talking. Returns the last snapshot on failure.
    pub fn wait_no_calls(&self, timeout: Duration) -> Result<(), serde_json::Value> {
        let mut last = serde_json::Value::Null;
        poll(timeout, || {
            last = self.queues();
            let busy = last["queues"].as_array().map_or(true, |qs| {
                qs.iter().any(|q| {
                    ["waiting", "ringing", "talking"]
                        .iter()
                        .any(|k| q[*k].as_u64().unwrap_or(0) > 0)
                })
            });
            (!busy).then_some(())
        })
        .ok_or(last)
    }

    /// `cc-engine cdrs --state-dir DIR` (the engine must be stopped).
    pub fn offline_cdrs(&self) -> Vec<serde_json::Value> {
        let mut cmd = Command::new(engine_bin());
        cmd.arg("cdrs").arg("--state-dir").arg(self.state_dir());
        let out = run_with_timeout(cmd, Duration::from_secs(10));
        assert_eq!(out.code(), Some(0), "cc-engine cdrs: {}", out.describe());
        parse_json_lines(&out.stdout)
    }

    /// SIGTERM (clean stop, CDRs committed), then the CDRs.
    pub fn stop_and_cdrs(&mut self) -> Vec<serde_json::Value> {
        let st = self.terminate(Duration::from_secs(5));
        assert!(st.is_some(), "cc-engine did not exit within 5 s of SIGTERM\n{}", self.log_tail(4000));
        self.offline_cdrs()
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

/// CDRs in a readable block for assertion messages.
pub fn show_cdrs(cdrs: &[serde_json::Value]) -> String {
    let mut s = format!("--- {} CDR(s) ---\n", cdrs.len());
    for c in cdrs {
        s.push_str(&c.to_string());
        s.push('\n');
    }
    s
}
