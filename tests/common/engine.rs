//! Configs derived from the shipped one, and the real engine process.

#![allow(unused_imports)]
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;

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
    pub(crate) child: Option<Child>,
    pub sip_port: u16,
    pub mgmt_port: u16,
    pub opts_shards: Option<u32>,
    pub config: PathBuf,
    pub state: TempDir,
    pub log: PathBuf,
    pub(crate) runs: u32,
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
