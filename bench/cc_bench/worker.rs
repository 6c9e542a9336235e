//! One load worker: a thread pinned to a core that owns its sockets (a pool
//! of SIP sockets, two RTP sockets) and every agent, customer call and RTP
//! stream it created. Nothing is shared between workers except a few atomic
//! gauges the main thread reads; cross-side figures are joined after the run
//! from per-worker event logs (timestamps are CLOCK_REALTIME everywhere).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;

use crate::hist::Stats;
use crate::net::{now_ns, wait_readable, RecvBatch, Sock};
use crate::sip_ua::Msg;

/// Run-wide settings every worker reads.
#[derive(Clone, Debug)]
pub struct Params {
    pub engine: SocketAddr,
    /// Domain in URIs (host of the engine).
    pub domain: String,
    pub local_ip: std::net::IpAddr,
    pub agents: usize,
    pub workers: usize,
    pub sockets_per_worker: usize,
    pub rate: f64,
    pub duration_s: f64,
    pub queue: String,
    pub talk_ns: u64,
    pub answer_delay_ns: u64,
    pub timeout_ns: u64,
    pub rtp: bool,
    pub pps: u32,
    pub reg_rate: f64,
    pub expires: u32,
    pub prefer_alg: Option<cc_engine::sip::auth::Algorithm>,
    /// Customers expect to wait (no agents): they hang up after --talk and
    /// a call that reached 180/200 and ended cleanly is a success.
    pub wait_only: bool,
    pub run_id: u32,
}

/// Gauges the main thread samples while the run goes on.
#[derive(Default)]
pub struct Shared {
    /// Customer calls alive (INVITE sent, not ended).
    pub active_calls: AtomicI64,
    /// Calls where the agent has answered and no one has hung up.
    pub bridged: AtomicI64,
    /// Bench RTP packets received (relayed by the engine).
    pub rtp_rx: AtomicU64,
    pub hold_rx: AtomicU64,
    /// Customer calls and agent legs not yet ended, over all workers.
    pub open_legs: AtomicI64,
    /// Workers whose arrivals are all sent.
    pub senders_done: AtomicU64,
    /// Workers done with the measured run.
    pub finished: AtomicU64,
}

/// Cross-side events, joined after the run.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// Customer sent the INVITE of call `token`.
    CustInvite { token: u64, t: u64 },
    /// An agent received the engine's INVITE for customer call `token`.
    AgentInvite { token: u64, t: u64 },
    /// Agent leg `akey` sent its 200.
    Agent200 { akey: u64, t: u64 },
    /// The customer first heard agent leg `akey`.
    FirstAgentRtp { akey: u64, t: u64 },
    /// Customer call `token` failed before reaching an agent (counted).
    CustFailed { token: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    RegTimeout(String),
    RegOp,
    CallArrival,
    CustTimeout(String),
    CustHangup(String),
    CustByeTimeout(String),
    AgentAnswer(String),
    AgentHangup(String),
    AgentByeTimeout(String),
    /// 1 ms tick of the RTP timing wheel (relay.rs).
    RtpTick,
}

pub struct Agent {
    pub user: String,
    pub password: String,
    pub sock: usize,
    pub call_id: String,
    pub cseq: u32,
    pub registered: bool,
}

pub struct Worker {
    pub id: usize,
    pub p: Arc<Params>,
    pub sh: Arc<Shared>,
    pub sip: Vec<Sock>,
    pub rtp_cust: Sock,
    pub rtp_agent: Sock,
    pub batch: RecvBatch,
    pub stats: Stats,
    pub events: Vec<Event>,
    timers: BinaryHeap<Reverse<(u64, Timer)>>,
    pub agents: Vec<Agent>,
    pub by_user: HashMap<String, usize>,
    pub reg_txn: HashMap<String, crate::register::RegTxn>,
    pub reg_plan: crate::register::RegPlan,
    pub reg_plan_active: bool,
    pub call_plan: crate::calls::CallPlan,
    pub cust: HashMap<String, crate::calls::CustCall>,
    pub acalls: HashMap<String, crate::calls::AgentCall>,
    pub streams: Vec<crate::relay::Stream>,
    /// RTP timing wheel: slot k (1 ms each) holds the streams that send at
    /// k, k + len, k + 2·len… ms; one sendmmsg per socket per tick.
    pub wheel: Vec<Vec<usize>>,
    pub wheel_armed: bool,
    pub rx: HashMap<(u8, u64), crate::relay::RxStream>,
    pub heard_agent: HashSet<u64>,
    /// Tokens of customer calls alive here / of agent legs alive here.
    pub live_tokens: HashMap<u64, String>,
    pub agent_tokens: HashSet<u64>,
    pub seq: u64,
    pub unregistering: bool,
    pub tx_buf: Vec<u8>,
}

impl Worker {
    pub fn new(id: usize, p: Arc<Params>, sh: Arc<Shared>) -> std::io::Result<Worker> {
        let mut sip = Vec::new();
        for _ in 0..p.sockets_per_worker.max(1) {
            sip.push(Sock::bind_high(p.local_ip)?);
        }
        let mut agents = Vec::new();
        let mut by_user = HashMap::new();
        let mut i = id + 1;
        while i <= p.agents {
            let user = format!("agent{i:04}");
            by_user.insert(user.clone(), agents.len());
            agents.push(Agent {
                password: format!("pw-{user}"),
                sock: agents.len() % sip.len(),
                call_id: format!("reg-{user}-{:x}@cc-bench", p.run_id),
                user,
                cseq: 0,
                registered: false,
            });
            i += p.workers;
        }
        Ok(Worker {
            id,
            sh,
            sip,
            rtp_cust: Sock::bind_high(p.local_ip)?,
            rtp_agent: Sock::bind_high(p.local_ip)?,
            batch: RecvBatch::new(),
            stats: Stats::default(),
            events: Vec::new(),
            timers: BinaryHeap::new(),
            agents,
            by_user,
            reg_txn: HashMap::new(),
            reg_plan: Default::default(),
            reg_plan_active: false,
            call_plan: Default::default(),
            cust: HashMap::new(),
            acalls: HashMap::new(),
            streams: Vec::new(),
            wheel: Vec::new(),
            wheel_armed: false,
            rx: HashMap::new(),
            heard_agent: HashSet::new(),
            live_tokens: HashMap::new(),
            agent_tokens: HashSet::new(),
            seq: 0,
            unregistering: false,
            tx_buf: Vec::with_capacity(2048),
            p,
        })
    }

    pub fn arm(&mut self, at: u64, t: Timer) {
        self.timers.push(Reverse((at, t)));
    }

    pub fn next_id(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A fresh branch / tag / Call-ID component, unique per run and worker.
    pub fn unique(&mut self, prefix: &str) -> String {
        let n = self.next_id();
        format!("{prefix}{:x}w{}n{n:x}", self.p.run_id, self.id)
    }

    pub fn send_sip(&mut self, sock: usize, data: &[u8], to: SocketAddr) {
        match self.sip[sock].send_to(data, to) {
            Ok(_) => {}
            Err(_) => self.stats.inc("sip send errors", 1),
        }
    }

    /// Runs the event loop until `done` says so (checked after every turn)
    /// or `deadline` passes.
    pub fn run_until(&mut self, deadline: u64, mut done: impl FnMut(&Worker) -> bool) {
        let mut fds: Vec<i32> = self.sip.iter().map(|s| s.sock.as_raw_fd()).collect();
        fds.push(self.rtp_cust.sock.as_raw_fd());
        fds.push(self.rtp_agent.sock.as_raw_fd());
        loop {
            let mut now = now_ns();
            // Due timers first (open-loop arrivals are timers).
            let mut fired = 0;
            while let Some(Reverse((at, _))) = self.timers.peek() {
                if *at > now {
                    break;
                }
                let Reverse((at, t)) = self.timers.pop().unwrap();
                self.on_timer(at, t);
                fired += 1;
                if fired % 64 == 0 {
                    now = now_ns();
                    self.poll_sockets();
                }
            }
            self.poll_sockets();
            if done(self) || now_ns() >= deadline {
                return;
            }
            let now = now_ns();
            let next = self
                .timers
                .peek()
                .map(|Reverse((at, _))| *at)
                .unwrap_or(u64::MAX);
            let wait = next
                .saturating_sub(now)
                .min(deadline.saturating_sub(now))
                .min(50_000_000);
            if wait > 0 {
                wait_readable(&fds, wait);
            }
        }
    }

    fn poll_sockets(&mut self) {
        for s in 0..self.sip.len() {
            loop {
                let n = self.sip[s].recv_batch(&mut self.batch).unwrap_or_default();
                if n == 0 {
                    break;
                }
                for i in 0..n {
                    let d = self.batch.get(i);
                    let (from, ts) = (d.from, d.ts);
                    // Copy out: handlers borrow self mutably.
                    let data = d.data.to_vec();
                    self.on_sip(s, &data, from, ts);
                }
            }
        }
        self.poll_rtp();
    }

    fn on_sip(&mut self, sock: usize, data: &[u8], from: SocketAddr, ts: u64) {
        let Some(m) = Msg::parse(data) else {
            self.stats.inc("unparsable datagrams", 1);
            return;
        };
        if m.is_response() {
            match m.cseq().1 {
                "REGISTER" => self.on_register_response(&m, ts),
                _ => {
                    if self.cust.contains_key(m.call_id()) {
                        self.on_cust_response(&m, ts);
                    } else if self.acalls.contains_key(m.call_id()) {
                        self.on_agent_response(&m, ts);
                    } else {
                        self.stats.inc("stray responses", 1);
                        if std::env::var_os("CC_BENCH_TRACE").is_some() {
                            eprintln!("stray response:\n{}", m.text);
                        }
                    }
                }
            }
        } else {
            match m.method() {
                "OPTIONS" => {
                    let r = crate::sip_ua::response(&m, 200, "OK", Some("ccb"), "", b"");
                    self.send_sip(sock, &r, from);
                }
                "INVITE" | "ACK" | "BYE" | "CANCEL" => {
                    if self.cust.contains_key(m.call_id()) {
                        self.on_cust_request(sock, &m, from, ts);
                    } else {
                        self.on_agent_request(sock, &m, from, ts);
                    }
                }
                _ => {
                    let r = crate::sip_ua::response(
                        &m,
                        405,
                        "Method Not Allowed",
                        Some("ccb"),
                        "",
                        b"",
                    );
                    self.send_sip(sock, &r, from);
                }
            }
        }
    }

    fn on_timer(&mut self, at: u64, t: Timer) {
        match t {
            Timer::RegOp => self.on_reg_op(at),
            Timer::RegTimeout(b) => self.on_reg_timeout(&b),
            Timer::CallArrival => self.on_call_arrival(at),
            Timer::CustTimeout(c) => self.on_cust_timeout(&c),
            Timer::CustHangup(c) => self.on_cust_hangup(&c),
            Timer::CustByeTimeout(c) => self.on_cust_bye_timeout(&c),
            Timer::AgentAnswer(c) => self.on_agent_answer(&c),
            Timer::AgentHangup(c) => self.on_agent_hangup(&c),
            Timer::AgentByeTimeout(c) => self.on_agent_bye_timeout(&c),
            Timer::RtpTick => self.on_rtp_tick(at),
        }
    }
}
