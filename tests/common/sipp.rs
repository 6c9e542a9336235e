//! SIPp runs and SIPp user agents, and the call tests' engine set-up.

#![allow(unused_imports)]
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;

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

// ---------------------------------------------------------------- calls
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

pub(crate) fn sipp_command(engine: &Engine, scenario: &str, port: u16, dir: &Path, extra: &[&str]) -> Command {
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
