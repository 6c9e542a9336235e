//! A simulated day of contact-center traffic through the real core: the
//! harness of `sim_calls` (signalling integrators per shard over a fake
//! relay, the routing integrator, agents registering by digest, a real redb,
//! a network with loss, delay and duplication, virtual time only) driven by
//! a contact center's day instead of one queue's stress:
//!
//! - Poisson arrivals (thinning) with a morning peak: the rate rises from a
//!   base to about three times it and falls back; exponential talk times;
//! - four queues with different strategies: `sales` (longest-idle, max
//!   wait → overflow into `support` keeping the arrival time, tier
//!   escalation), `support` (skills with relaxation, max wait → timed out),
//!   `billing` (round-robin, small `max_waiting` → rejected full, join-empty
//!   and leave-when-empty when all its members are paused or offline),
//!   `vip` (ring-all over eight support agents, max wait → timed out);
//! - 40 agents with mixed skills and proficiencies, tiers (`tiers =
//!   {sales = 2}`), some with two registered phones (one REGISTER, two
//!   contacts: whether only the first rings or all do, the checks hold),
//!   some taking two calls at once;
//! - breaks (pause/unpause through the routing integrator's
//!   `Input::Command`), a billing team meeting that empties that queue, and
//!   agents going unreachable (their UA silent both ways) and coming back
//!   (re-REGISTER); 5 % packet loss.
//!
//! Checks, from what the core itself says (router events and snapshot, the
//! agents' received INVITEs, the redb's CDRs, queue log and counters):
//! - no caller waits beyond its queue's exit (max wait, overflow move),
//!   allowing the ring timeout of an offer made just before and the network;
//! - no offer while the agent is paused (router's own pause events: breaks
//!   and auto-pause), in wrap-up (from its call's end until `WrapUpEnded`)
//!   or at capacity (router snapshot right after the offer); every INVITE
//!   an agent UA receives answers an offer the router made to that agent
//!   for that caller, made before any pause we drove; after a failed offer
//!   the same call is not offered to the same agent again before `retry_s`,
//!   and the agent gets no offer before its no-answer / busy rest;
//! - every exit is reached: answered, abandoned, timed out, overflowed,
//!   leave-empty, join-empty, rejected full;
//! - ring-all races happen (offers to several agents at once) and are lost
//!   (`Cancelled`); a lost race is no failed offer: the checks above
//!   treat it as none (no rest, no retry wait);
//! - fairness (bounds derived where they are asserted);
//! - one CDR per call; the queue log recounted per queue and event equals
//!   the router's `today` and `total` counters, and the CDRs per queue and
//!   disposition agree with both; no leaks (as `sim_calls`).
//!
//! The harness is a copy of `sim_calls`' (same UAs, network, relay and
//! store thread), grown for several queues, phones, commands and outages.
//!
//! Runtime (debug, `cargo test --test sim_day`, shared 2-core VM): the day
//! (~3,100 calls, 3 virtual hours with the drain, ~207,000 events) ≈ 11–15 s
//! of CPU; the three tests together ≈ 21 s of CPU, 30–75 s wall depending
//! on the load others put on the machine.
//!
//! Env: `SIM_SEEDS`, `SIM_VERBOSE=1` (summary line, cohorts' counts),
//! `SIM_CALLS` (expected calls; the day lasts calls × 2.4 s),
//! `SIM_LOSS_PCT`, `SIM_TRACE=c42|a07`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use cc_engine::acd::command::{Command, CommandResult};
use cc_engine::acd::facts::{CallFact, CallId, Decision, OfferResult, RtpCounts};
use cc_engine::acd::router::AgentStatus;
use cc_engine::acd::routing::{self, apply_commit, CommitOutcome, Loaded, Routing};
use cc_engine::acd::{Cdr, Disposition, RouterEvent, Store, StoreOp};
use cc_engine::call::{CallConfig, CallTable, MediaControl};
use cc_engine::config::{AgentConfig, AnswerMode, Config, EmptyWhen, NoAgents, QueueConfig, RelaxStep, SkillReq, Strategy};
use cc_engine::media::ports::split_range;
use cc_engine::media::sdp::default_codecs;
use cc_engine::engine::{Effect, Forwarded, FromRouting, Input, Signalling, SignallingConfig, ToRouting};
use cc_engine::media::{RelayLegConfig, RelayLegId, RelayLegPorts, OpenError, PortAllocator};
use cc_engine::sip::auth::{compute_response, format_authorization, Algorithm, DigestResponse};
use cc_engine::sip::ids::IdRng;
use cc_engine::sip::message::scan;
use cc_engine::sip::{ClientTxId, Endpoint, EndpointConfig, Output, ResponseSpec, ServerTxId, Timers, View, Message};

/// A signalling shard: the shipped integrator over the fake relay.
type Shard = Signalling<FakeRelay>;

const WALL0: u64 = 1_800_000_000_000;
const MS: u64 = 1_000_000; // ns
const SEC: u64 = 1_000 * MS;
/// The day's queues: longest-idle, skills with relaxation, round-robin.
const SALES: &str = "sales";
const SUPPORT: &str = "support";
const BILLING: &str = "billing";
/// Ring-all: every free member rings at once.
const VIP: &str = "vip";
const QUEUES: [&str; 4] = [SALES, SUPPORT, BILLING, VIP];
/// Share of the callers dialling each queue.
const QUEUE_MIX: [f64; 4] = [0.40, 0.35, 0.20, 0.05];

fn engine_addr() -> SocketAddr {
    "192.0.2.1:5060".parse().unwrap()
}

// ------------------------------------------------------------------ rng

struct Rng(IdRng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(IdRng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5151))
    }
    fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [0, 1).
    fn f(&mut self) -> f64 {
        (self.u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.f() < p
    }
    /// Uniform in [lo, hi] (ns or ms, whatever the caller means).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.u64() % (hi - lo + 1)
        }
    }
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f()).ln()
    }
}

// ------------------------------------------------------------------ scenario

#[derive(Clone, Debug)]
struct Scenario {
    name: &'static str,
    calls: u32,
    agents: u32,
    shards: u16,
    mode: AnswerMode,
    /// Mean gap between call arrivals (Poisson, open loop).
    arrival_gap: u64,
    loss: f64,
    dup: f64,
    delay: (u64, u64),
    /// No loss/duplication/jitter on packets to or from agents.
    agents_clean: bool,
    /// Every agent answers every offer after `fixed_answer`, hangs up after
    /// `fixed_talk`; customers never hang up first.
    disciplined: bool,
    fixed_answer: u64,
    fixed_talk: u64,
    ring_timeout_s: u32,
    wrap_up_s: u32,
    /// Chance that the relay has no leg for an offer (agent leg), as when
    /// the port range runs out: the call must stay queued and be answered.
    agent_leg_failure: f64,
    /// The routing shard's group commit window.
    group_commit_ms: u64,
    /// The engine crashes (everything in memory lost, routing rebuilt from
    /// the redb) at the first point between two commits after each multiple
    /// of this much virtual time, while calls still arrive.
    crash_every: Option<u64>,
    /// Breaks (pause/unpause), the billing team meeting, agents going
    /// unreachable and coming back.
    breaks: bool,
    /// Mean talk time (exponential), ns.
    talk_mean: u64,
}

impl Scenario {
    fn with_calls(mut self, calls: u32) -> Scenario {
        self.calls = calls;
        self
    }

    /// The day: `calls` expected over `calls × arrival_gap` of virtual time
    /// (the gap is the day's mean; the morning peak is about twice it).
    fn day(calls: u32, name: &'static str) -> Scenario {
        let mut sc = Scenario::chaos(calls, AnswerMode::OnAgent, name);
        sc.agents = 40;
        sc.arrival_gap = 2400 * MS;
        sc.ring_timeout_s = 6;
        sc.wrap_up_s = 5;
        sc.breaks = true;
        // Busy enough at the peak that sales overflows and support times
        // out; quiet enough the rest of the day that the queues drain.
        sc.talk_mean = 60 * SEC;
        sc
    }

    fn chaos(calls: u32, mode: AnswerMode, name: &'static str) -> Scenario {
        Scenario {
            breaks: false,
            talk_mean: 30 * SEC,
            name,
            calls,
            agents: 50,
            shards: 2,
            mode,
            // 10,000 calls over 30 virtual minutes.
            arrival_gap: 180 * MS,
            loss: 0.05,
            dup: 0.01,
            delay: (MS, 80 * MS),
            agents_clean: false,
            disciplined: false,
            fixed_answer: 0,
            fixed_talk: 0,
            ring_timeout_s: 2,
            wrap_up_s: 1,
            agent_leg_failure: 0.0,
            // Virtual time is cheap, commits (real redb, ~3 ms each in a
            // debug build) are not: one per 5 virtual seconds keeps a
            // 10,000-call run to ~400 of them. Longer than the engine's
            // config allows; the grouping changes no decision.
            group_commit_ms: 5000,
            crash_every: None,
        }
    }
}

// ------------------------------------------------------------------ events

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Node {
    Shard(u16),
    Router,
    Cust(u32),
    Agent(u32),
}

#[derive(Debug, Clone, Copy)]
enum CustAct {
    Start,
    /// Patience over (on-agent: CANCEL if unanswered) or, in immediate
    /// mode, the caller's whole call is over (BYE).
    GiveUp,
    /// Talk time over after an answer: BYE.
    Hangup,
    /// Put the agent on hold: re-INVITE with `a=sendonly` (CSeq 2).
    Hold,
}

#[derive(Debug, Clone, Copy)]
enum AgentAct {
    /// REGISTER (without credentials: the registrar challenges).
    Register,
    Ring,
    Answer,
    Reject,
    Bye,
}

enum Ev {
    Datagram { dst: SocketAddr, src: SocketAddr, data: Bytes },
    /// Channels carry the engine incarnation (`Sim::epoch`) they were sent
    /// in: what is in flight when the engine crashes dies with it.
    Mesh(u32, u16, Forwarded),
    ToRouting(u32, ToRouting),
    FromRouting(u32, u16, FromRouting),
    /// The store thread's answer to a commit.
    Committed(u32, CommitOutcome),
    Timer(Node, u64),
    Cust(u32, CustAct),
    Agent(u32, String, AgentAct),
    /// The relay reports a media timeout on some open leg.
    MediaTimeout,
    /// An operator pauses (`true`) or unpauses an agent.
    Pause(u32, bool),
    /// An agent's phones go silent (`true`: nothing in, nothing out) or
    /// come back (and re-REGISTER).
    Silent(u32, bool),
}

struct Item {
    t: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> Ordering {
        // Min-heap on (t, seq).
        (o.t, o.seq).cmp(&(self.t, self.seq))
    }
}

// ------------------------------------------------------------------ fake relay

/// `MediaControl` with a real `PortAllocator`: every leg must be closed
/// exactly once, and nothing may touch a closed leg.
struct FakeRelay {
    ports: PortAllocator,
    ip: IpAddr,
    next: u64,
    open: BTreeMap<RelayLegId, u16>,
    /// Open legs whose RTCP is not bound yet (deferred until bridged).
    rtcp_deferred: BTreeSet<RelayLegId>,
    errors: Vec<String>,
    opened: u64,
    /// Customer legs refused (a 503 to the caller: the scenario's range is
    /// too small).
    refused: u64,
    /// Agent legs refused on purpose (`Scenario::agent_leg_failure`).
    agent_refused: u64,
    agent_leg_failure: f64,
    rng: Rng,
}

impl FakeRelay {
    fn check(&mut self, leg: RelayLegId, what: &str) {
        if !self.open.contains_key(&leg) {
            self.errors.push(format!("{what} on leg {leg:?} that is not open"));
        }
    }
}

impl MediaControl for FakeRelay {
    fn open_leg(&mut self, cfg: RelayLegConfig, now: Instant) -> Result<RelayLegPorts, OpenError> {
        // Only customer legs defer RTCP: the others are offers' agent legs.
        if !cfg.defer_rtcp && self.agent_leg_failure > 0.0 && self.rng.chance(self.agent_leg_failure) {
            self.agent_refused += 1;
            return Err(OpenError::Bind(std::io::Error::other("no relay leg (simulated)")));
        }
        let port = self.ports.allocate(now).map_err(|e| {
            self.refused += 1;
            OpenError::Ports(e)
        })?;
        self.next += 1;
        let id = RelayLegId(self.next);
        self.open.insert(id, port);
        if cfg.defer_rtcp {
            self.rtcp_deferred.insert(id);
        }
        self.opened += 1;
        Ok(RelayLegPorts {
            id,
            rtp: SocketAddr::new(self.ip, port),
            rtcp: SocketAddr::new(self.ip, port + 1),
        })
    }
    fn set_peer(&mut self, leg: RelayLegId, _rtp: Option<SocketAddr>, _rtcp: Option<SocketAddr>) {
        self.check(leg, "set_peer");
    }
    fn start_hold(&mut self, leg: RelayLegId, _queue: &str, _pt: u8) {
        self.check(leg, "start_hold");
    }
    fn stop_hold(&mut self, leg: RelayLegId) {
        self.check(leg, "stop_hold");
    }
    fn bridge(&mut self, a: RelayLegId, b: RelayLegId) {
        self.check(a, "bridge");
        self.check(b, "bridge");
        self.rtcp_deferred.remove(&a);
        self.rtcp_deferred.remove(&b);
    }
    fn close(&mut self, leg: RelayLegId, now: Instant) {
        self.rtcp_deferred.remove(&leg);
        match self.open.remove(&leg) {
            Some(port) => self.ports.release(port, now),
            None => self.errors.push(format!("close of leg {leg:?} that is not open (double close?)")),
        }
    }
    fn rtp_counts(&mut self, _c: RelayLegId, _a: RelayLegId) -> RtpCounts {
        RtpCounts::default()
    }
}

// ------------------------------------------------------------------ UAs

fn sdp(ip: IpAddr, port: u16) -> String {
    format!(
        "v=0\r\no=sim 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
    )
}

fn parse_req(text: &str) -> rsip::Request {
    rsip::Request::try_from(text.as_bytes()).unwrap_or_else(|e| panic!("sim built a bad request: {e}\n{text}"))
}

fn ua_endpoint(addr: SocketAddr, seed: u64) -> Endpoint {
    let mut cfg = EndpointConfig::new(addr);
    cfg.user_agent = "sim-ua".into();
    cfg.rng_seed = seed;
    Endpoint::new(cfg)
}

struct Cust {
    ep: Endpoint,
    addr: SocketAddr,
    call_id: String,
    from: String,
    invite_tx: Option<ClientTxId>,
    provisional: bool,
    /// Decided to hang up before an answer.
    giving_up: bool,
    /// Virtual time of the INVITE.
    started_at: Option<u64>,
    cancel_sent: bool,
    got_2xx: bool,
    /// To (with the engine's tag) and Contact of the 2xx.
    dialog: Option<(String, String)>,
    final_status: Option<u16>,
    invite_timeout: bool,
    bye_sent: bool,
    bye_tx: Option<ClientTxId>,
    /// Sends a hold re-INVITE this long after the answer.
    hold_after: Option<u64>,
    reinvite_tx: Option<ClientTxId>,
    bye_done: bool,
    bye_received: bool,
    /// After an answer, hang up after this long; `None`: wait for the agent.
    talk: Option<u64>,
    /// Immediate mode: the caller's whole call lasts this long (BYE).
    total: Option<u64>,
    /// Unanswered this long after the INVITE: hang up (CANCEL).
    patience: Option<u64>,
    started: bool,
    queue: &'static str,
}

struct AgDialog {
    tx: ServerTxId,
    cust: Option<u32>,
    /// Engine's From (our To in requests we send) and our To (with tag).
    remote: String,
    local: String,
    target: String,
    src: SocketAddr,
    answered: bool,
    confirmed: bool,
    ended: bool,
    bye_sent: bool,
    talk: u64,
}

struct AgentUa {
    name: String,
    ep: Endpoint,
    addr: SocketAddr,
    dialogs: BTreeMap<String, AgDialog>,
    by_tx: BTreeMap<ServerTxId, String>,
    bye_txs: BTreeMap<ClientTxId, String>,
    invites: u64,
    reg_tx: Option<ClientTxId>,
    reg_cseq: u32,
    /// REGISTERs sent with credentials (a second one means a stale nonce).
    reg_auth_tries: u32,
    registered: bool,
    /// Registered contacts (phones); all on this one UA.
    phones: u32,
    /// Unreachable: every datagram to or from its phones is lost.
    silent: bool,
    /// The outage's end came (one outage per agent).
    outage_over: bool,
    /// INVITEs for a call this UA already rings (another of its phones):
    /// they ring until CANCELled.
    forks: BTreeSet<ServerTxId>,
}

// ------------------------------------------------------------------ sim

/// What the checks gather while the day runs, from the router's own
/// events (in the order it emits them) and the agents' received INVITEs.
#[derive(Default)]
struct Checks {
    /// Agents the router says are paused (breaks and auto-pause), since (ms).
    paused: HashMap<String, u64>,
    /// Agents we paused (`Command::Pause` answered `Done`), since (ms).
    driven_pause: HashMap<u32, u64>,
    /// Answered calls and their agent.
    talking: HashMap<CallId, String>,
    /// Agents in wrap-up (from their call's end until `WrapUpEnded`): since (ms).
    wrap: HashMap<String, u64>,
    /// (call, agent) → when an offer of it failed (ms).
    failed: HashMap<(CallId, String), u64>,
    /// Agent → end of its rest after a failed offer (ms) and why.
    rest: HashMap<String, (u64, &'static str)>,
    /// (agent, customer) → when the router offered that caller to the agent (ms).
    offers: HashMap<(String, u32), Vec<u64>>,
    /// Call → customer, from its `Arrived` fact.
    cust_of_call: HashMap<CallId, u32>,
    /// Call (as text) → when it moved to another queue at max wait (ms).
    moved_at: HashMap<String, (u64, String, String)>,
    /// The answer to the last operator command.
    command: Option<CommandResult>,
    commands: u64,
    offers_checked: u64,
    /// Ring-all offers to more than one agent, and agents that lost one.
    ring_all_wide: u64,
    ring_all_lost: u64,
}

struct Sim {
    roles: Vec<Role>,
    chk: Checks,
    cust_by_sip: HashMap<String, u32>,
    sc: Scenario,
    seed: u64,
    rng: Rng,
    base: Instant,
    now: u64,
    seq: u64,
    heap: BinaryHeap<Item>,
    armed: HashMap<Node, u64>,
    /// FIFO channels (shard ⇄ router, shard → shard): last delivery time.
    chan_last: HashMap<(Node, Node), u64>,
    shards: Vec<Shard>,
    routing: Routing,
    cfg: Config,
    /// The routing shard's redb, in a temp dir; every `Commit` lands here.
    store: Store,
    state_dir: std::path::PathBuf,
    /// Engine incarnation: bumped by each crash.
    epoch: u32,
    next_crash: u64,
    /// Virtual time of each crash.
    crashes: Vec<u64>,
    /// Live calls in the store at the last crash: the restart's first
    /// commit must give each exactly one `engine-restart` CDR.
    expect_restart: Option<BTreeSet<String>>,
    /// Relay figures of the shards lost in crashes.
    lost_relays: (u64, u64),
    custs: Vec<Cust>,
    agents: Vec<AgentUa>,
    addr_of: HashMap<SocketAddr, Node>,
    offered: Vec<String>,
    violations: Vec<String>,
    shard_inputs: u64,
    /// The leg audit reported once; later checks would only repeat it.
    legs_audit_failed: bool,
    stats: BTreeMap<&'static str, u64>,
    events: u64,
    /// Wall time spent per input kind: engine, agents, customers, router.
    cpu: [Duration; 4],
    /// Of the router's: applying commits to the redb.
    store_cpu: Duration,
    /// Router-side stage of each live call: 0 arrived, 1 queued, 2 ringing, 3 talking.
    stage: HashMap<cc_engine::acd::facts::CallId, usize>,
    /// `SIM_TRACE=c42` / `a07`: print that UA's datagrams.
    trace: Option<SocketAddr>,
}

fn cust_addr(i: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8 + 1, (i % 250) as u8 + 1)), 5060 + (i / 62_500) as u16)
}

fn agent_addr(i: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 2, 0, i as u8 + 1)), 5070)
}

/// An agent's second phone.
fn agent_addr2(i: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 2, 1, i as u8 + 1)), 5070)
}

fn agent_name(i: u32) -> String {
    format!("a{i:02}")
}

fn base_queue(sc: &Scenario, name: &str, strategy: Strategy) -> QueueConfig {
    QueueConfig {
        name: name.into(),
        strategy,
        answer: sc.mode,
        max_waiting: 1_000_000,
        overflow: None,
        full_status: 503,
        retry_after_s: 5,
        no_agents: NoAgents::Wait,
        max_wait_s: 0,
        ring_timeout_s: sc.ring_timeout_s,
        wrap_up_s: sc.wrap_up_s,
        // Three rings out in a row pause the agent, for a minute.
        max_no_answer: 3,
        priority: 0,
        hold_audio: None,
        skills: Vec::new(),
        relax: Vec::new(),
        ageing_s: 30,
        weight: 0,
        tier_wait_s: 0,
        retry_s: RETRY_S,
        busy_delay_s: BUSY_DELAY_S,
        reject_delay_s: BUSY_DELAY_S,
        no_answer_delay_s: NO_ANSWER_DELAY_S,
        auto_unpause_s: 60,
        max_wait_queue: None,
        join_empty: Vec::new(),
        join_empty_queue: None,
        leave_when_empty: Vec::new(),
        leave_empty_queue: None,
        service_level_s: 20,
        max_talk_s: 0,
    }
}

/// The same call is not offered to the same agent again before this (s).
const RETRY_S: u32 = 10;
/// An agent rests this long after a 486 / 603 (s) ...
const BUSY_DELAY_S: u32 = 3;
/// ... and after letting an offer ring out.
const NO_ANSWER_DELAY_S: u32 = 4;
/// Max waits (s): sales overflows into support (keeping the arrival
/// time), support and billing time out.
const SALES_MAX_WAIT_S: u32 = 30;
const SUPPORT_MAX_WAIT_S: u32 = 75;
const BILLING_MAX_WAIT_S: u32 = 60;
const VIP_MAX_WAIT_S: u32 = 60;
/// Billing lets this many callers wait at once; the next get 503.
const BILLING_MAX_WAITING: u32 = 4;

fn req(s: &str) -> SkillReq {
    SkillReq::parse(s).expect("skill requirement parses")
}

fn queue_configs(sc: &Scenario) -> Vec<QueueConfig> {
    let mut sales = base_queue(sc, SALES, Strategy::LongestIdle);
    sales.max_wait_s = SALES_MAX_WAIT_S;
    sales.max_wait_queue = Some(SUPPORT.into());
    // Tier 2 (support agents) helps after 15 s.
    sales.tier_wait_s = 15;
    let mut support = base_queue(sc, SUPPORT, Strategy::Skills);
    support.max_wait_s = SUPPORT_MAX_WAIT_S;
    support.skills = vec![req("english>=60")];
    support.relax = vec![
        RelaxStep { after_s: 20, skills: vec![req("english>=20")] },
        RelaxStep { after_s: 40, skills: Vec::new() },
    ];
    let mut billing = base_queue(sc, BILLING, Strategy::RoundRobin);
    billing.max_wait_s = BILLING_MAX_WAIT_S;
    billing.max_waiting = BILLING_MAX_WAITING;
    billing.tier_wait_s = 20;
    billing.join_empty = vec![EmptyWhen::Offline, EmptyWhen::Paused];
    billing.leave_when_empty = vec![EmptyWhen::Offline, EmptyWhen::Paused];
    let mut vip = base_queue(sc, VIP, Strategy::RingAll);
    vip.max_wait_s = VIP_MAX_WAIT_S;
    vec![sales, support, billing, vip]
}

/// What an agent of the day's roster is, besides its config.
#[derive(Clone, Copy, Debug, Default)]
struct Role {
    /// Sales only, level 1, never paused or unreachable, one phone, one
    /// call at a time: the longest-idle fairness cohort.
    sales_cohort: bool,
    /// Billing only, level 1: the round-robin fairness cohort.
    billing_cohort: bool,
    phones: u32,
    /// Goes unreachable once during the day.
    outage: bool,
    /// Serves billing (any level): paused for the team meeting.
    billing: bool,
}

/// 40 agents: 0–9 sales (0–5 the cohort), 10–23 support with mixed
/// English (and some French) proficiency, 10–15 also sales at level 2, 16–23 also vip (ring-all),
/// 24–31 billing, 32–39 support and billing at level 2 (36–39 take two
/// calls at once). Every third agent has two phones.
fn roster(n: u32) -> (Vec<AgentConfig>, Vec<Role>) {
    let mut cfgs = Vec::new();
    let mut roles = Vec::new();
    for i in 0..n {
        let mut skills = BTreeMap::new();
        let mut tiers = BTreeMap::new();
        let mut role = Role { phones: if i % 3 == 1 { 2 } else { 1 }, ..Role::default() };
        let (queues, max_calls) = match i {
            0..=9 => {
                skills.insert("english".to_owned(), 60);
                role.sales_cohort = i < 6;
                (vec![SALES.to_owned()], 1)
            }
            10..=23 => {
                skills.insert("english".to_owned(), (10 + (i * 37) % 91) as u8);
                if i % 4 == 0 {
                    skills.insert("french".to_owned(), 70);
                }
                if i < 16 {
                    tiers.insert(SALES.to_owned(), 2);
                    (vec![SUPPORT.to_owned()], 1)
                } else {
                    (vec![SUPPORT.to_owned(), VIP.to_owned()], 1)
                }
            }
            24..=31 => {
                role.billing_cohort = true;
                role.billing = true;
                (vec![BILLING.to_owned()], 1)
            }
            _ => {
                skills.insert("english".to_owned(), (30 + (i * 13) % 71) as u8);
                tiers.insert(BILLING.to_owned(), 2);
                role.billing = true;
                (vec![SUPPORT.to_owned()], if i >= 36 { 2 } else { 1 })
            }
        };
        if role.sales_cohort {
            role.phones = 1;
        }
        role.outage = [7, 12, 19, 27, 33, 38].contains(&i);
        cfgs.push(AgentConfig { id: agent_name(i), password: AGENT_PASSWORD.into(), max_calls, queues, skills, tiers });
        roles.push(role);
    }
    (cfgs, roles)
}

/// Agents' SIP password (the registrar checks their digests).
const AGENT_PASSWORD: &str = "x";

/// Expires of the agents' registrations (s).
const REG_EXPIRES: u64 = 3600;

/// Virtual time given to the agents' registrations before calls arrive.
const REGISTRATION: u64 = 3 * SEC;

/// How long the simulated store thread takes for a commit.
const COMMIT_TIME: u64 = 2 * MS;

/// The engine's configuration as the routing integrator reads it.
fn engine_config(sc: &Scenario, agents: Vec<AgentConfig>) -> Config {
    let text = format!(
        "[engine]\n[sip]\nlisten = \"{}\"\ndomain = \"cc.sim\"\nrealm = \"cc.sim\"\n\
         [registrar]\nmin_expires = 60\nmax_expires = 86400\ndefault_expires = 3600\n",
        engine_addr()
    );
    let mut cfg = Config::parse(&text, std::path::Path::new("sim.toml")).expect("sim config parses");
    cfg.engine.group_commit_ms = sc.group_commit_ms;
    cfg.queues = queue_configs(sc);
    cfg.agents = agents;
    cfg
}

/// A fresh temp dir per run (tmpfs when there is one: the simulation
/// measures the engine, not the disk).
fn state_dir(sc: &Scenario, seed: u64) -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let root = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let name: String = sc.name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    root.join(format!("cc-sim-{}-{name}-{seed}-{}", std::process::id(), sc.calls))
}

/// The signalling shards of one engine incarnation (`epoch` 0 at start).
fn build_shards(sc: &Scenario, seed: u64, rng: &mut Rng, epoch: u32) -> Vec<Shard> {
    let ranges = split_range(20000, 59999, usize::from(sc.shards));
    (0..sc.shards)
        .map(|id| {
            let mut cfg = EndpointConfig::new(engine_addr());
            cfg.shard = id;
            cfg.shards = sc.shards;
            cfg.domain = "cc.sim".into();
            cfg.timers = Timers::default();
            cfg.rng_seed = rng.u64();
            let ccfg = CallConfig {
                queues: QUEUES.iter().map(|q| (q.to_string(), sc.mode)).collect(),
                codecs: default_codecs(),
                media_timeout: None,
                trusted_sources: Vec::new(),
                feature_tone: None,
            };
            let relay = FakeRelay {
                ports: PortAllocator::new(ranges[usize::from(id)], Duration::from_secs(5)),
                ip: engine_addr().ip(),
                next: u64::from(id) << 40 | u64::from(epoch) << 32,
                open: BTreeMap::new(),
                rtcp_deferred: BTreeSet::new(),
                errors: Vec::new(),
                opened: 0,
                refused: 0,
                agent_refused: 0,
                agent_leg_failure: sc.agent_leg_failure,
                // Its own stream: the other draws stay as they were.
                rng: Rng::new(seed ^ (0xA6E7_u64 << 32 | u64::from(id)) ^ u64::from(epoch) << 20),
            };
            let calls = CallTable::new(ccfg, id, rng.u64());
            Signalling::new(SignallingConfig::new(id, sc.shards), Endpoint::new(cfg), calls, relay)
        })
        .collect()
}

impl Sim {
    fn new(sc: Scenario, seed: u64) -> Sim {
        let base = Instant::now();
        let mut rng = Rng::new(seed);
        let shards = build_shards(&sc, seed, &mut rng, 0);
        let (agent_cfgs, roles) = roster(sc.agents);
        let cfg = engine_config(&sc, agent_cfgs);
        let state_dir = state_dir(&sc, seed);
        let _ = std::fs::remove_dir_all(&state_dir);
        let store = Store::open(&state_dir).expect("sim store opens");
        let loaded = Loaded::from_store(&store).expect("sim store loads");
        let mut routing = Routing::new(&cfg, loaded, WALL0);
        routing.keep_events();
        let mut addr_of = HashMap::new();
        let mut agents = Vec::new();
        for i in 0..sc.agents {
            let addr = agent_addr(i);
            addr_of.insert(addr, Node::Agent(i));
            let phones = roles[i as usize].phones;
            if phones > 1 {
                addr_of.insert(agent_addr2(i), Node::Agent(i));
            }
            agents.push(AgentUa {
                phones,
                silent: false,
                outage_over: false,
                forks: BTreeSet::new(),
                name: agent_name(i),
                ep: ua_endpoint(addr, rng.u64()),
                addr,
                dialogs: BTreeMap::new(),
                by_tx: BTreeMap::new(),
                bye_txs: BTreeMap::new(),
                invites: 0,
                reg_tx: None,
                reg_cseq: 0,
                reg_auth_tries: 0,
                registered: false,
            });
        }
        let mut sim = Sim {
            sc: sc.clone(),
            seed,
            rng,
            base,
            now: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            armed: HashMap::new(),
            chan_last: HashMap::new(),
            shards,
            routing,
            cfg,
            store,
            state_dir,
            epoch: 0,
            next_crash: sc.crash_every.unwrap_or(u64::MAX),
            crashes: Vec::new(),
            expect_restart: None,
            lost_relays: (0, 0),
            custs: Vec::with_capacity(sc.calls as usize),
            roles,
            chk: Checks::default(),
            cust_by_sip: HashMap::new(),
            agents,
            addr_of,
            offered: Vec::new(),
            violations: Vec::new(),
            shard_inputs: 0,
            legs_audit_failed: false,
            stats: BTreeMap::new(),
            events: 0,
            cpu: [Duration::ZERO; 4],
            store_cpu: Duration::ZERO,
            stage: HashMap::new(),
            trace: std::env::var("SIM_TRACE").ok().and_then(|t| {
                let n: u32 = t.get(1..)?.parse().ok()?;
                Some(if t.starts_with('a') { agent_addr(n) } else { cust_addr(n) })
            }),
        };
        sim.routing_drain();
        // Agents register first (REGISTER, 401, REGISTER with digest, 200).
        for i in 0..sc.agents {
            let t = sim.rng.range(0, 200 * MS);
            sim.push(t, Ev::Agent(i, String::new(), AgentAct::Register));
        }
        if !sc.disciplined {
            sim.push(REGISTRATION + 60 * SEC, Ev::MediaTimeout);
        }
        // Open-loop arrivals, once the agents had time to register:
        // a Poisson process of rate λ(u) = λ̄ · shape(u) / mean(shape) over
        // the day u ∈ [0, 1], drawn by thinning (candidates at the peak
        // rate, each kept with probability λ(u) / λ_max).
        let day = u64::from(sc.calls) * sc.arrival_gap;
        let shape = |u: f64| 1.0 + 2.0 * (-((u - 0.3) / 0.12).powi(2)).exp();
        let mean_shape = (0..1000).map(|k| shape((f64::from(k) + 0.5) / 1000.0)).sum::<f64>() / 1000.0;
        let peak = shape(0.3) / mean_shape / sc.arrival_gap as f64; // per ns
        let mut t = 0f64;
        let mut i = 0u32;
        loop {
            t += sim.rng.exp(1.0 / peak);
            if t >= day as f64 {
                break;
            }
            let u = t / day as f64;
            if !sim.rng.chance(shape(u) / shape(0.3)) {
                continue;
            }
            let c = sim.new_cust(i);
            sim.custs.push(c);
            sim.addr_of.insert(cust_addr(i), Node::Cust(i));
            sim.cust_by_sip.insert(sim.custs[i as usize].call_id.clone(), i);
            sim.push(REGISTRATION + t as u64, Ev::Cust(i, CustAct::Start));
            i += 1;
        }
        if sc.breaks {
            sim.plan_breaks(day);
        }
        sim
    }

    /// Breaks: every agent outside the fairness cohorts takes one or two
    /// of 3–10 minutes; the whole billing team meets for 5 minutes at the
    /// peak (billing empties: join-empty, leave-empty); six agents go
    /// unreachable for 1–4 minutes and come back.
    fn plan_breaks(&mut self, day: u64) {
        // At the peak, when billing has callers waiting and arriving.
        let meeting = REGISTRATION + day * 3 / 10;
        let meeting_end = meeting + 300 * SEC;
        for i in 0..self.sc.agents {
            let role = self.roles[i as usize];
            if role.sales_cohort || role.billing_cohort {
                continue;
            }
            for _ in 0..self.rng.range(1, 2) {
                let mut at = REGISTRATION + self.rng.range(day / 20, day - day / 10);
                let len = self.rng.range(180 * SEC, 600 * SEC);
                // A break of a billing member never ends inside the
                // meeting (its unpause would end the meeting for it).
                if role.billing && at < meeting_end && at + len >= meeting {
                    at = meeting_end + 60 * SEC;
                }
                self.push(at, Ev::Pause(i, true));
                self.push(at + len, Ev::Pause(i, false));
            }
        }
        for i in 0..self.sc.agents {
            if self.roles[i as usize].billing {
                self.push(meeting, Ev::Pause(i, true));
                self.push(meeting_end, Ev::Pause(i, false));
            }
        }
        for i in 0..self.sc.agents {
            if self.roles[i as usize].outage {
                let at = REGISTRATION + self.rng.range(day / 10, day - day / 5);
                let len = self.rng.range(60 * SEC, 240 * SEC);
                self.push(at, Ev::Silent(i, true));
                self.push(at + len, Ev::Silent(i, false));
            }
        }
    }

    fn new_cust(&mut self, i: u32) -> Cust {
        let addr = cust_addr(i);
        let r = &mut self.rng;
        let (mut talk, mut total) = (None, None);
        let mut patience = None;
        if !self.sc.disciplined {
            let x = r.f();
            match self.sc.mode {
                AnswerMode::OnAgent => {
                    // 3 % hang up at once, 15 % after an exponential
                    // patience (mean 45 s), the rest wait for an agent or
                    // the queue's exit; a third of the answered callers
                    // hang up themselves (exponential talk time).
                    if x < 0.03 {
                        patience = Some(r.range(0, 150 * MS));
                    } else if x < 0.18 {
                        patience = Some(r.exp(45.0 * SEC as f64) as u64 + SEC);
                    }
                    if r.chance(0.33) {
                        talk = Some((r.exp(self.sc.talk_mean as f64) as u64).clamp(SEC, 600 * SEC));
                    }
                }
                AnswerMode::Immediate => {
                    // The caller cannot tell waiting from talking: its call
                    // lasts `total` (BYE while queued, ringing or talking),
                    // or until the agent hangs up.
                    if x < 0.05 {
                        patience = Some(r.range(0, 150 * MS)); // CANCEL early
                    } else if x < 0.55 {
                        total = Some(r.range(SEC, 45 * SEC));
                    }
                }
            }
        }
        let hold_after = (!self.sc.disciplined && r.chance(0.1)).then(|| r.range(200 * MS, 3 * SEC));
        let x = r.f();
        let queue = if x < QUEUE_MIX[0] {
            SALES
        } else if x < QUEUE_MIX[0] + QUEUE_MIX[1] {
            SUPPORT
        } else if x < QUEUE_MIX[0] + QUEUE_MIX[1] + QUEUE_MIX[2] {
            BILLING
        } else {
            VIP
        };
        let c = Cust {
            queue,
            ep: ua_endpoint(addr, r.u64()),
            addr,
            call_id: format!("sim{}-{i}-{:08x}@customer.sim", self.seed, r.u64() as u32),
            from: format!("\"c{i}\" <sip:c{i}@{addr}>;tag=ct{i}x{:x}", r.u64() as u16),
            invite_tx: None,
            provisional: false,
            giving_up: false,
            started_at: None,
            cancel_sent: false,
            got_2xx: false,
            dialog: None,
            final_status: None,
            invite_timeout: false,
            bye_sent: false,
            bye_tx: None,
            hold_after,
            reinvite_tx: None,
            bye_done: false,
            bye_received: false,
            talk,
            total,
            patience,
            started: false,
        };
        c
    }
}

fn uri_of(v: &str) -> String {
    let v = v.trim();
    match v.split_once('<') {
        Some((_, r)) => r.split_once('>').map_or(r, |(u, _)| u).trim().to_owned(),
        None => v.split(';').next().unwrap_or("").trim().to_owned(),
    }
}

/// Customer index from the agent INVITE's From display `"c42 (support)"`.
fn cust_of_from(from: &str) -> Option<u32> {
    let d = from.trim().strip_prefix('"')?.strip_prefix('c')?;
    let n: String = d.chars().take_while(char::is_ascii_digit).collect();
    n.parse().ok()
}

impl Sim {
    fn inst(&self, t: u64) -> Instant {
        self.base + Duration::from_nanos(t)
    }
    fn wall(&self) -> u64 {
        WALL0 + self.now / MS
    }
    fn to_t(&self, i: Instant) -> u64 {
        i.saturating_duration_since(self.base).as_nanos() as u64
    }
    fn push(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Item { t, seq: self.seq, ev });
    }
    fn bump(&mut self, k: &'static str) {
        *self.stats.entry(k).or_default() += 1;
    }
    fn violation(&mut self, v: String) {
        self.violations.push(v);
    }

    fn is_agent(&self, a: SocketAddr) -> bool {
        matches!(self.addr_of.get(&a), Some(Node::Agent(_)))
    }

    /// SO_REUSEPORT: one remote address always lands on one shard.
    fn shard_for(&self, src: SocketAddr) -> u16 {
        let ip = match src.ip() {
            IpAddr::V4(a) => u64::from(u32::from(a)),
            IpAddr::V6(_) => 7,
        };
        let h = (ip << 16 | u64::from(src.port())).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((h >> 40) % u64::from(self.sc.shards)) as u16
    }

    /// The network: loss, duplication, random delay (hence reordering).
    fn send(&mut self, src: SocketAddr, dst: SocketAddr, data: Bytes) {
        self.bump("datagrams");
        let silent = |sim: &Sim, a: SocketAddr| match sim.addr_of.get(&a) {
            Some(Node::Agent(i)) => sim.agents[*i as usize].silent,
            _ => false,
        };
        if silent(self, src) || silent(self, dst) {
            self.bump("lost_to_silent_phone");
            return;
        }
        let clean = self.sc.agents_clean && (self.is_agent(src) || self.is_agent(dst));
        let (loss, dup, (lo, hi)) = if clean {
            (0.0, 0.0, (5 * MS, 5 * MS))
        } else {
            (self.sc.loss, self.sc.dup, self.sc.delay)
        };
        if self.rng.chance(loss) {
            self.bump("lost");
            return;
        }
        let copies = if self.rng.chance(dup) { 2 } else { 1 };
        if copies == 2 {
            self.bump("duplicated");
        }
        for _ in 0..copies {
            let d = self.rng.range(lo, hi);
            self.push(self.now + d, Ev::Datagram { dst, src, data: data.clone() });
        }
    }

    /// A FIFO channel (glommio mesh): small delay, order kept; now and then
    /// the receiving executor is busy for a while (a commit, a burst), which
    /// lets callers hang up before the router's first decision.
    fn chan(&mut self, from: Node, to: Node, ev: Ev) {
        let d = if self.rng.chance(0.05) {
            self.rng.range(50 * MS, 400 * MS)
        } else {
            self.rng.range(0, 2 * MS)
        };
        let last = self.chan_last.entry((from, to)).or_insert(0);
        let t = (self.now + d).max(*last);
        *last = t;
        self.push(t, ev);
    }

    fn arm(&mut self, node: Node, at: Option<u64>) {
        let Some(at) = at else { return };
        let at = at.max(self.now);
        if let Some(&a) = self.armed.get(&node) {
            if a <= at && a >= self.now {
                return; // fires first and re-arms
            }
        }
        self.armed.insert(node, at);
        self.push(at, Ev::Timer(node, at));
    }

    // ------------------------------------------------------------ engine

    /// One input to a shard's integrator; its effects go on the simulated
    /// network and channels.
    fn shard_input(&mut self, s: u16, input: Input<'_>) {
        let (now, wall) = (self.inst(self.now), self.wall());
        self.shards[usize::from(s)].handle(input, now, wall);
        self.shard_inputs += 1;
        if self.shard_inputs.is_multiple_of(16) {
            self.audit_legs(s);
        }
        let next = self.shards[usize::from(s)].poll_timeout().map(|i| self.to_t(i));
        self.arm(Node::Shard(s), next);
        while let Some(e) = self.shards[usize::from(s)].poll_effect() {
            match e {
                Effect::Send(dest, data) => self.send(engine_addr(), dest, data),
                Effect::Forward(to, fwd) => {
                    self.bump("forwarded");
                    self.chan(Node::Shard(s), Node::Shard(to), Ev::Mesh(self.epoch, to, fwd))
                }
                Effect::Route(msg) => self.chan(Node::Shard(s), Node::Router, Ev::ToRouting(self.epoch, msg)),
            }
        }
    }

    /// A shard holds one relay leg per call plus one per agent leg (ringing
    /// or bridged), and RTCP is bound only for bridged customer legs. Every
    /// 16th shard input (a full check costs a scan of the shard's calls); a
    /// leaked or early leg persists until the next check.
    fn audit_legs(&mut self, s: u16) {
        if self.legs_audit_failed {
            return;
        }
        let sh = &self.shards[usize::from(s)];
        let c = sh.calls().counts();
        let want = c.calls + c.ringing + c.bridged;
        let (open, deferred) = (sh.media().open.len(), sh.media().rtcp_deferred.len());
        if open != want || c.legs != want || deferred != c.calls - c.bridged {
            self.legs_audit_failed = true;
            self.violation(format!(
                "shard {s} at {} ms: {open} relay legs open, {} indexed, {deferred} with RTCP deferred for {c:?} \
                 (want {want} legs, {} deferred)",
                self.now / MS,
                c.legs,
                c.calls - c.bridged
            ));
        }
    }

    /// One input to the routing integrator.
    fn routing_input(&mut self, input: routing::Input) {
        let ms = self.wall();
        self.routing.handle(input, ms);
        self.routing_drain();
    }

    /// Carries out the routing integrator's effects: decisions and REGISTER
    /// replies over the channels, commits to the redb.
    fn routing_drain(&mut self) {
        while let Some(ev) = self.routing.poll_event() {
            self.watch(&ev);
            match ev {
                RouterEvent::Offered { agent, call, .. } => {
                    self.stage.insert(call, 2);
                    self.offered.push(agent)
                }
                RouterEvent::Ignored { .. } => self.bump("router_ignored_facts"),
                RouterEvent::OfferFailed { call, .. } => {
                    self.stage.insert(call, 1);
                }
                RouterEvent::Answered { call, .. } => {
                    self.stage.insert(call, 3);
                }
                RouterEvent::CallFinished { call, disposition, .. } => {
                    // Where the caller hung up (coverage of every stage).
                    let st = self.stage.remove(&call).unwrap_or(0);
                    if disposition == Disposition::Abandoned {
                        self.bump(["abandoned_arrived?", "abandoned_waiting", "abandoned_ringing", "abandoned_talking?"][st]);
                    }
                }
                _ => {}
            }
        }
        while let Some(e) = self.routing.poll_effect() {
            match e {
                routing::Effect::ToShard(sh, msg) => {
                    if let FromRouting::Decision(Decision::Queued { call, .. }) = &msg {
                        self.stage.insert(*call, 1);
                    }
                    self.chan(Node::Router, Node::Shard(sh), Ev::FromRouting(self.epoch, sh, msg));
                }
                routing::Effect::Commit { seq, ops } => self.commit(seq, ops),
                routing::Effect::CommandDone { result, .. } => self.chk.command = Some(result),
                routing::Effect::Stopped | routing::Effect::CallConfig(_) => {}
            }
        }
        let next = self.routing.poll_timeout().map(|t| t.saturating_sub(WALL0) * MS);
        self.arm(Node::Router, next);
    }

    /// The router's own account of an offer, checked against its own
    /// account of the agent's pause, wrap-up, capacity and rests.
    fn watch(&mut self, ev: &RouterEvent) {
        let now = self.wall();
        match ev {
            RouterEvent::AgentPaused { agent, .. } => {
                self.chk.paused.entry(agent.clone()).or_insert(now);
            }
            RouterEvent::AgentUnpaused { agent } => {
                self.chk.paused.remove(agent);
            }
            RouterEvent::WrapUpEnded { agent } => {
                self.chk.wrap.remove(agent);
            }
            RouterEvent::Answered { call, agent } => {
                self.chk.talking.insert(*call, agent.clone());
            }
            RouterEvent::CallFinished { call, .. } => {
                if let Some(agent) = self.chk.talking.remove(call) {
                    if self.sc.wrap_up_s > 0 {
                        self.chk.wrap.insert(agent, now);
                    }
                }
            }
            RouterEvent::Overflowed { call, from, to } => {
                self.chk.moved_at.insert(call.to_string(), (now, from.clone(), to.clone()));
            }
            RouterEvent::OfferFailed { call, agent, result } => {
                let rest = match result {
                    OfferResult::NoAnswer => Some((NO_ANSWER_DELAY_S, "no-answer")),
                    OfferResult::Busy | OfferResult::Declined => Some((BUSY_DELAY_S, "busy")),
                    _ => None,
                };
                if let Some((s, why)) = rest {
                    self.chk.rest.insert(agent.clone(), (now + u64::from(s) * 1000, why));
                }
                if *result == OfferResult::Cancelled {
                    self.chk.ring_all_lost += 1;
                }
                if !matches!(result, OfferResult::MediaUnavailable | OfferResult::Answered | OfferResult::Cancelled) {
                    self.chk.failed.insert((*call, agent.clone()), now);
                }
            }
            RouterEvent::Offered { call, agent, .. } => {
                self.chk.offers_checked += 1;
                let mut bad = Vec::new();
                if let Some(since) = self.chk.paused.get(agent) {
                    bad.push(format!("paused since {since}"));
                }
                if let Some(since) = self.chk.wrap.get(agent) {
                    bad.push(format!("in wrap-up since {since}"));
                }
                if let Some(&t) = self.chk.failed.get(&(*call, agent.clone())) {
                    if now < t + u64::from(RETRY_S) * 1000 {
                        bad.push(format!("offered this call again {} ms after it failed on it (retry_s {RETRY_S})", now - t));
                    }
                }
                if let Some(&(until, why)) = self.chk.rest.get(agent) {
                    if now < until {
                        bad.push(format!("resting after a {why} offer until {until}"));
                    }
                }
                let snap = self.routing.snapshot(now);
                if let Some(a) = snap.agents.iter().find(|a| &a.id == agent) {
                    if a.ringing + a.busy > a.max_calls as usize {
                        bad.push(format!("over capacity: ringing {} + busy {} > {}", a.ringing, a.busy, a.max_calls));
                    }
                }
                if !bad.is_empty() {
                    self.violation(format!("at {now}: call {call} offered to {agent} while {}", bad.join(", ")));
                }
                if let Some(&c) = self.chk.cust_of_call.get(call) {
                    self.chk.offers.entry((agent.clone(), c)).or_default().push(now);
                }
            }
            _ => {}
        }
    }

    /// An agent UA got a new INVITE from the engine: it must answer an
    /// offer the router made to that agent for that caller, and not one
    /// made after we paused the agent.
    fn check_invite(&mut self, i: u32, cust: Option<u32>) {
        let now = self.wall();
        let name = agent_name(i);
        let Some(c) = cust else {
            return self.violation(format!("agent {name} got an INVITE naming no caller"));
        };
        let last = self.chk.offers.get(&(name.clone(), c)).and_then(|v| v.iter().rev().find(|&&t| t <= now).copied());
        match last {
            None => self.violation(format!("agent {name} got an INVITE for c{c} the router never offered it")),
            Some(o) => {
                if let Some(&p) = self.chk.driven_pause.get(&i) {
                    if o > p {
                        self.violation(format!("agent {name} paused at {p} got an INVITE for c{c} offered at {o}"));
                    }
                }
            }
        }
    }

    /// An operator's pause or unpause, through the routing integrator.
    fn command(&mut self, i: u32, pause: bool) {
        let agent = agent_name(i);
        let cmd = if pause {
            Command::Pause { agent, reason: Some("break".into()) }
        } else {
            Command::Unpause { agent }
        };
        self.chk.commands += 1;
        let id = self.chk.commands;
        self.chk.command = None;
        self.routing_input(routing::Input::Command { id, cmd });
        match self.chk.command.take() {
            Some(CommandResult::Done { .. }) => {
                if pause {
                    self.chk.driven_pause.insert(i, self.wall());
                } else {
                    self.chk.driven_pause.remove(&i);
                }
                self.bump(if pause { "pauses" } else { "unpauses" });
            }
            other => self.violation(format!("command {id} for agent a{i:02} (pause={pause}) answered {other:?}")),
        }
    }

    /// The agent's phones go silent (nothing in or out) or come back and
    /// register again. A phone goes silent between calls (a phone that
    /// dies mid-call leaves a dialog no invariant can close).
    fn silence(&mut self, i: u32, on: bool) {
        let a = &mut self.agents[i as usize];
        if on && a.outage_over {
            return;
        }
        if on {
            if a.dialogs.values().any(|d| !d.ended) || a.ep.transactions() != (0, 0) {
                let t = self.now + 5 * SEC;
                self.push(t, Ev::Silent(i, true));
                return;
            }
            a.silent = true;
            self.bump("agents_unreachable");
        } else {
            a.outage_over = true;
            if a.silent {
                a.silent = false;
                self.agent_step(i, |sim, i, now| sim.agent_register(i, None, now));
            } else {
                self.bump("outages_skipped_busy");
            }
        }
    }

    /// The store thread: the ops go to the real redb now, the outcome comes
    /// back a moment later.
    fn commit(&mut self, seq: u64, ops: Vec<StoreOp>) {
        self.bump("commits");
        if let Some(live) = self.expect_restart.take() {
            // The first commit after a restart: a `failed` / `engine-restart`
            // CDR for every call the store had live at the crash, no other.
            let mut restarted = BTreeSet::new();
            for op in &ops {
                if let StoreOp::Cdr(c) = op {
                    let restart = c.disposition == Disposition::Failed && c.reason.as_deref() == Some("engine-restart");
                    if restart && !restarted.insert(c.call_id.clone()) {
                        self.violation(format!("two restart CDRs for call {}", c.call_id));
                    }
                }
            }
            if restarted != live {
                self.violation(format!(
                    "restart at {} s: live calls in the store {live:?}, restart CDRs {restarted:?}",
                    self.now / SEC
                ));
            }
            self.stats.insert("restart_cdrs", self.stats.get("restart_cdrs").copied().unwrap_or(0) + live.len() as u64);
        }
        let t0 = Instant::now();
        let outcome = apply_commit(&self.store, seq, ops);
        self.store_cpu += t0.elapsed();
        if let Err(e) = &outcome.result {
            self.violation(format!("commit {seq} failed: {e}"));
        }
        let t = self.now + COMMIT_TIME;
        self.push(t, Ev::Committed(self.epoch, outcome));
    }

    /// `kill -9` between two commits: every shard and the routing state are
    /// lost with what is in flight between them; routing is rebuilt from
    /// the redb, the shards start empty. The UAs and the network go on.
    fn crash(&mut self) {
        let live: BTreeSet<String> = match self.store.load_router_state() {
            Ok(r) => r.live_calls.iter().map(|l| l.call.to_string()).collect(),
            Err(e) => {
                self.violation(format!("store unreadable at the crash: {e}"));
                BTreeSet::new()
            }
        };
        self.epoch += 1;
        self.crashes.push(self.now);
        for sh in &self.shards {
            self.lost_relays.0 += sh.media().opened;
            self.lost_relays.1 += sh.media().agent_refused;
        }
        self.shards = build_shards(&self.sc, self.seed, &mut self.rng, self.epoch);
        self.armed.retain(|n, _| !matches!(n, Node::Shard(_) | Node::Router));
        self.stage.clear();
        let loaded = match Loaded::from_store(&self.store) {
            Ok(l) => l,
            Err(e) => {
                self.violation(format!("store cannot be loaded after the crash: {e}"));
                Loaded::default()
            }
        };
        self.routing = Routing::new(&self.cfg, loaded, self.wall());
        self.routing.keep_events();
        self.expect_restart = Some(live);
        self.routing_drain();
    }

    // ------------------------------------------------------------ customers

    fn cust_step(&mut self, i: u32, f: impl FnOnce(&mut Sim, u32, Instant)) {
        let now = self.inst(self.now);
        f(self, i, now);
        while let Some(o) = self.custs[i as usize].ep.poll_output() {
            match o {
                Output::Transmit { dest, data } => {
                    let src = self.custs[i as usize].addr;
                    self.send(src, dest, data)
                }
                other => self.cust_tu(i, other, now),
            }
        }
        let next = self.custs[i as usize].ep.poll_timeout().map(|t| self.to_t(t));
        self.arm(Node::Cust(i), next);
    }

    fn cust_act(&mut self, i: u32, act: CustAct, now: Instant) {
        let mode = self.sc.mode;
        let c = &mut self.custs[i as usize];
        match act {
            CustAct::Start => {
                c.started = true;
                c.started_at = Some(self.now);
                let body = sdp(c.addr.ip(), 40000 + (i % 10000) as u16 * 2);
                let text = format!(
                    "INVITE sip:{q}@{eng} SIP/2.0\r\nFrom: {from}\r\nTo: <sip:{q}@cc.sim>\r\nCall-ID: {cid}\r\n\
                     CSeq: 1 INVITE\r\nContact: <sip:c{i}@{addr}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
                    eng = engine_addr(),
                    q = c.queue,
                    from = c.from,
                    cid = c.call_id,
                    addr = c.addr,
                    len = body.len()
                );
                let tx = c.ep.send_request(parse_req(&text), engine_addr(), now);
                c.invite_tx = Some(tx);
                if let Some(p) = c.patience.or(c.total) {
                    let t = self.now + p;
                    self.push(t, Ev::Cust(i, CustAct::GiveUp));
                }
            }
            CustAct::GiveUp => {
                if !c.got_2xx {
                    if c.final_status.is_none() && !c.invite_timeout && !c.giving_up {
                        c.giving_up = true;
                        // §9.1: CANCEL only once a provisional came back.
                        if c.provisional && !c.cancel_sent {
                            c.cancel_sent = true;
                            if let Some(tx) = c.invite_tx {
                                c.ep.cancel(tx, now);
                            }
                        }
                    }
                } else if mode == AnswerMode::Immediate {
                    self.cust_bye(i, now);
                }
            }
            CustAct::Hangup => self.cust_bye(i, now),
            CustAct::Hold => {
                if c.bye_sent || c.bye_received || c.reinvite_tx.is_some() {
                    return;
                }
                let Some((to, contact)) = c.dialog.clone() else { return };
                let body = sdp(c.addr.ip(), 40000 + (i % 10000) as u16 * 2).replace("a=sendrecv", "a=sendonly");
                let text = format!(
                    "INVITE {contact} SIP/2.0\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 2 INVITE\r\n\
                     Contact: <sip:c{i}@{addr}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
                    from = c.from,
                    cid = c.call_id,
                    addr = c.addr,
                    len = body.len()
                );
                c.reinvite_tx = Some(c.ep.send_request(parse_req(&text), engine_addr(), now));
                self.bump("cust_hold_reinvites");
            }
        }
    }

    fn cust_bye(&mut self, i: u32, now: Instant) {
        let c = &mut self.custs[i as usize];
        if c.bye_sent || c.bye_received {
            return;
        }
        let Some((to, contact)) = c.dialog.clone() else { return };
        let text = format!(
            "BYE {contact} SIP/2.0\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n",
            from = c.from,
            cid = c.call_id
        );
        c.bye_sent = true;
        c.bye_tx = Some(c.ep.send_request(parse_req(&text), engine_addr(), now));
    }

    fn cust_tu(&mut self, i: u32, o: Output, now: Instant) {
        match o {
            Output::Response { tx, response } => {
                let code = response.status().unwrap_or(0);
                let c = &mut self.custs[i as usize];
                if Some(tx) == c.invite_tx {
                    if code < 200 {
                        c.provisional = true;
                        if c.giving_up && !c.cancel_sent {
                            c.cancel_sent = true;
                            c.ep.cancel(tx, now);
                        }
                    } else if code < 300 {
                        // Every 2xx (retransmissions too) is ACKed.
                        c.ep.send_ack_2xx(&response, engine_addr());
                        if !c.got_2xx {
                            c.got_2xx = true;
                            c.final_status = Some(code);
                            let text = response.to_string();
                            let m = scan(text.as_bytes()).expect("2xx scans");
                            let to = m.header("to").unwrap_or("").to_owned();
                            let contact = uri_of(m.header("contact").unwrap_or(""));
                            c.dialog = Some((to, contact));
                            if c.giving_up {
                                // Our CANCEL crossed the answer: ACK and BYE.
                                self.bump("cancel_crossed_2xx");
                                self.cust_bye(i, now);
                            } else {
                                let (talk, hold) = (c.talk, c.hold_after);
                                if let Some(t) = talk {
                                    let at = self.now + t;
                                    self.push(at, Ev::Cust(i, CustAct::Hangup));
                                }
                                if let Some(t) = hold {
                                    let at = self.now + t;
                                    self.push(at, Ev::Cust(i, CustAct::Hold));
                                }
                            }
                        }
                    } else if c.final_status.is_none() {
                        c.final_status = Some(code);
                    }
                } else if Some(tx) == c.bye_tx && code >= 200 {
                    c.bye_done = true;
                } else if Some(tx) == c.reinvite_tx && (200..300).contains(&code) {
                    c.ep.send_ack_2xx(&response, engine_addr());
                }
            }
            Output::ClientTimeout { tx } => {
                let c = &mut self.custs[i as usize];
                if Some(tx) == c.invite_tx {
                    c.invite_timeout = true;
                    self.bump("cust_invite_timeout");
                } else if Some(tx) == c.bye_tx {
                    c.bye_done = true;
                    self.bump("cust_bye_timeout");
                }
            }
            Output::Request { tx, request, .. } => {
                let c = &mut self.custs[i as usize];
                if request.method() == Some("BYE") {
                    c.ep.respond(tx, ResponseSpec::new(200), now);
                    let text = request.to_string();
                    let same = scan(text.as_bytes()).ok().and_then(|m| m.call_id().map(|x| x == c.call_id));
                    if same == Some(true) {
                        c.bye_received = true;
                    }
                } else {
                    c.ep.respond(tx, ResponseSpec::new(405), now);
                    self.bump("cust_unexpected_request");
                }
            }
            _ => self.bump("cust_unexpected_output"),
        }
    }

    // ------------------------------------------------------------ agents

    fn agent_step(&mut self, i: u32, f: impl FnOnce(&mut Sim, u32, Instant)) {
        let now = self.inst(self.now);
        f(self, i, now);
        while let Some(o) = self.agents[i as usize].ep.poll_output() {
            match o {
                Output::Transmit { dest, data } => {
                    let src = self.agents[i as usize].addr;
                    self.send(src, dest, data)
                }
                other => self.agent_tu(i, other, now),
            }
        }
        let next = self.agents[i as usize].ep.poll_timeout().map(|t| self.to_t(t));
        self.arm(Node::Agent(i), next);
    }

    /// REGISTER through the engine to the registrar; `auth`: the
    /// Authorization value answering its challenge.
    fn agent_register(&mut self, i: u32, auth: Option<String>, now: Instant) {
        let a = &mut self.agents[i as usize];
        a.reg_cseq += 1;
        let auth = auth.map(|v| format!("Authorization: {v}\r\n")).unwrap_or_default();
        let mut contact = format!("<sip:{}@{}>", a.name, a.addr);
        if a.phones > 1 {
            contact.push_str(&format!(", <sip:{}@{}>", a.name, agent_addr2(i)));
        }
        let text = format!(
            "REGISTER sip:cc.sim SIP/2.0\r\nFrom: <sip:{n}@cc.sim>;tag=reg{n}\r\nTo: <sip:{n}@cc.sim>\r\n\
             Call-ID: reg-{n}@agent.sim\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\nExpires: {REG_EXPIRES}\r\n\
             {auth}Content-Length: 0\r\n\r\n",
            n = a.name,
            cseq = a.reg_cseq,
        );
        a.reg_tx = Some(a.ep.send_request(parse_req(&text), engine_addr(), now));
        self.bump("agent_registers");
    }

    /// The registrar's answer to an agent's REGISTER: a challenge is
    /// answered with the digest (`sip::auth`), a 200 is the end of it.
    fn agent_registered(&mut self, i: u32, response: &Message, now: Instant) {
        let code = response.status().unwrap_or(0);
        let a = &mut self.agents[i as usize];
        match code {
            100..=199 => {}
            200..=299 => {
                a.reg_tx = None;
                a.registered = true;
                a.reg_auth_tries = 0;
                // Refreshed while calls arrive; afterwards the bindings
                // expire and the registrar's timer drains like any other.
                let arrivals_end = REGISTRATION + u64::from(self.sc.calls) * self.sc.arrival_gap;
                let refresh = self.now + REG_EXPIRES * SEC / 2;
                if refresh < arrivals_end {
                    self.push(refresh, Ev::Agent(i, String::new(), AgentAct::Register));
                }
            }
            401 if a.reg_auth_tries < 3 => {
                a.reg_auth_tries += 1;
                let challenge = response.header("www-authenticate").unwrap_or("").to_owned();
                let param = |k: &str| -> String {
                    challenge
                        .split(',')
                        .filter_map(|p| p.trim().trim_start_matches("Digest ").split_once('='))
                        .find(|(n, _)| n.trim().eq_ignore_ascii_case(k))
                        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
                        .unwrap_or_default()
                };
                let mut d = DigestResponse {
                    username: a.name.clone(),
                    realm: param("realm"),
                    nonce: param("nonce"),
                    uri: "sip:cc.sim".into(),
                    response: String::new(),
                    algorithm: Algorithm::parse(&param("algorithm")).unwrap_or(Algorithm::Md5),
                    cnonce: Some(format!("{:08x}", self.rng.u64() as u32)),
                    nc: Some("00000001".into()),
                    qop: Some("auth".into()),
                    opaque: None,
                };
                d.response = compute_response(&d, "REGISTER", AGENT_PASSWORD);
                self.agent_register(i, Some(format_authorization(&d)), now);
            }
            _ => {
                a.reg_tx = None;
                let name = a.name.clone();
                self.violation(format!("agent {name}: REGISTER answered {code}"));
            }
        }
    }

    fn agent_tu(&mut self, i: u32, o: Output, now: Instant) {
        let t0 = self.now;
        if let Output::Response { tx, response } = &o {
            if self.agents[i as usize].reg_tx == Some(*tx) {
                return self.agent_registered(i, response, now);
            }
        }
        if let Output::ClientTimeout { tx } = &o {
            if self.agents[i as usize].reg_tx == Some(*tx) {
                self.bump("agent_register_timeout");
                return self.agent_register(i, None, now);
            }
        }
        match o {
            Output::Request { tx, request, src } => {
                let text = request.to_string();
                let m = scan(text.as_bytes()).expect("request scans");
                let call_id = m.call_id().unwrap_or("").to_owned();
                let a = &mut self.agents[i as usize];
                match request.method().unwrap_or("") {
                    "INVITE" if m.to_tag().is_none() && a.dialogs.get(&call_id).is_some_and(|d| !d.ended) => {
                        // Another phone of this agent rings for the same
                        // call: it rings until CANCELled.
                        a.forks.insert(tx);
                        let contact = format!("<sip:{}@{}>", a.name, a.addr);
                        a.ep.respond(tx, ResponseSpec::new(180).header("Contact", contact), now);
                        self.bump("agent_fork_invites");
                    }
                    "INVITE" if m.to_tag().is_none() => {
                        a.invites += 1;
                        let cust = cust_of_from(m.header("from").unwrap_or(""));
                        self.check_invite(i, cust);
                        let a = &mut self.agents[i as usize];
                        let local = format!("{};tag={}", m.header("to").unwrap_or(""), a.ep.local_tag(tx).unwrap_or(""));
                        let remote = m.header("from").unwrap_or("").to_owned();
                        let d = AgDialog {
                            tx,
                            cust: cust_of_from(&remote),
                            remote,
                            local,
                            target: uri_of(m.header("contact").unwrap_or("")),
                            src,
                            answered: false,
                            confirmed: false,
                            ended: false,
                            bye_sent: false,
                            talk: 0,
                        };
                        a.by_tx.insert(tx, call_id.clone());
                        a.dialogs.insert(call_id.clone(), d);
                        let r = &mut self.rng;
                        let mut plan: Vec<(u64, AgentAct)> = Vec::new();
                        let talk = if self.sc.disciplined {
                            plan.push((0, AgentAct::Ring));
                            plan.push((self.sc.fixed_answer, AgentAct::Answer));
                            self.sc.fixed_talk
                        } else {
                            let x = r.f();
                            let ring = r.range(10 * MS, 200 * MS);
                            if x < 0.88 {
                                plan.push((ring, AgentAct::Ring));
                                // Ring timeout is 6 s: a few answers race the CANCEL.
                                plan.push((r.range(SEC, 6500 * MS), AgentAct::Answer));
                            } else if x < 0.92 {
                                plan.push((ring, AgentAct::Ring));
                                plan.push((r.range(200 * MS, 1500 * MS), AgentAct::Reject));
                            } else if x < 0.96 {
                                plan.push((ring, AgentAct::Ring)); // never answers
                            } // else: silent phone (only the 100 Trying)
                            (r.exp(self.sc.talk_mean as f64) as u64).clamp(SEC, 900 * SEC)
                        };
                        // A phone stops ringing by itself after a minute.
                        plan.push((60 * SEC, AgentAct::Reject));
                        if let Some(d) = self.agents[i as usize].dialogs.get_mut(&call_id) {
                            d.talk = talk;
                        }
                        for (dt, act) in plan {
                            self.push(t0 + dt, Ev::Agent(i, call_id.clone(), act));
                        }
                    }
                    "INVITE" => match a.dialogs.get(&call_id).filter(|d| !d.ended) {
                        // A re-INVITE from the engine (the caller's hold):
                        // accepted with our usual SDP.
                        Some(_) => {
                            let body = Bytes::from(sdp(a.addr.ip(), 30000 + 2 * (i as u16)));
                            let contact = format!("<sip:{}@{}>", a.name, a.addr);
                            let r = ResponseSpec::new(200).header("Contact", contact).body("application/sdp", body);
                            a.ep.respond(tx, r, now);
                            self.bump("agent_reinvites_answered");
                        }
                        None => a.ep.respond(tx, ResponseSpec::new(481), now),
                    },
                    "BYE" => match a.dialogs.get_mut(&call_id) {
                        Some(d) => {
                            d.ended = true;
                            a.ep.respond(tx, ResponseSpec::new(200), now);
                        }
                        None => a.ep.respond(tx, ResponseSpec::new(481), now),
                    },
                    _ => {
                        a.ep.respond(tx, ResponseSpec::new(405), now);
                        self.bump("agent_unexpected_request");
                    }
                }
            }
            Output::Cancelled { tx } => {
                let a = &mut self.agents[i as usize];
                a.ep.respond(tx, ResponseSpec::new(487), now);
                if a.forks.remove(&tx) {
                    return;
                }
                if let Some(d) = a.by_tx.get(&tx).and_then(|c| a.dialogs.get_mut(c)) {
                    if !d.answered {
                        d.ended = true;
                    }
                }
            }
            Output::Ack { tx, .. } => {
                let a = &mut self.agents[i as usize];
                if let Some(cid) = a.by_tx.get(&tx).cloned() {
                    if let Some(d) = a.dialogs.get_mut(&cid) {
                        if !d.confirmed {
                            d.confirmed = true;
                            if !d.ended {
                                let at = t0 + d.talk;
                                self.push(at, Ev::Agent(i, cid, AgentAct::Bye));
                            }
                        }
                    }
                }
            }
            Output::AckTimeout { tx } => {
                self.bump("agent_ack_timeout");
                let cid = self.agents[i as usize].by_tx.get(&tx).cloned();
                if let Some(cid) = cid {
                    self.agent_bye(i, &cid, now);
                }
            }
            Output::Response { tx, response } => {
                let a = &mut self.agents[i as usize];
                if response.status().unwrap_or(0) >= 200 {
                    if let Some(d) = a.bye_txs.get(&tx).and_then(|c| a.dialogs.get_mut(c)) {
                        d.ended = true;
                    }
                }
            }
            Output::ClientTimeout { tx } => {
                self.bump("agent_bye_timeout");
                let a = &mut self.agents[i as usize];
                if let Some(d) = a.bye_txs.get(&tx).and_then(|c| a.dialogs.get_mut(c)) {
                    d.ended = true;
                }
            }
            _ => self.bump("agent_unexpected_output"),
        }
    }

    fn agent_bye(&mut self, i: u32, cid: &str, now: Instant) {
        let a = &mut self.agents[i as usize];
        let Some(d) = a.dialogs.get_mut(cid) else { return };
        if d.ended || d.bye_sent {
            return;
        }
        d.bye_sent = true;
        let text = format!(
            "BYE {target} SIP/2.0\r\nFrom: {local}\r\nTo: {remote}\r\nCall-ID: {cid}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
            target = d.target,
            local = d.local,
            remote = d.remote,
        );
        let dest = d.src;
        let tx = a.ep.send_request(parse_req(&text), dest, now);
        a.bye_txs.insert(tx, cid.to_owned());
    }

    fn agent_act(&mut self, i: u32, cid: &str, act: AgentAct, now: Instant) {
        if let AgentAct::Register = act {
            if self.agents[i as usize].silent {
                return; // it registers again when it comes back
            }
            return self.agent_register(i, None, now);
        }
        let a = &mut self.agents[i as usize];
        let addr = a.addr;
        let name = a.name.clone();
        let Some(d) = a.dialogs.get_mut(cid) else { return };
        let contact = format!("<sip:{name}@{addr}>");
        match act {
            AgentAct::Ring if !d.ended && !d.answered => {
                a.ep.respond(d.tx, ResponseSpec::new(180).header("Contact", contact), now)
            }
            AgentAct::Answer if !d.ended && !d.answered => {
                d.answered = true;
                let body = Bytes::from(sdp(addr.ip(), 30000 + 2 * (i as u16)));
                let r = ResponseSpec::new(200).header("Contact", contact).body("application/sdp", body);
                a.ep.respond(d.tx, r, now);
            }
            AgentAct::Reject if !d.ended && !d.answered => {
                d.ended = true;
                a.ep.respond(d.tx, ResponseSpec::new(486), now);
            }
            AgentAct::Bye if d.confirmed && !d.ended => self.agent_bye(i, cid, now),
            _ => {}
        }
    }

    // ------------------------------------------------------------ loop

    fn run(&mut self) {
        let limit = u64::from(self.sc.calls) * self.sc.arrival_gap * 2 + 6 * 3600 * SEC;
        let mut same_instant = 0u64;
        while let Some(item) = self.heap.pop() {
            debug_assert!(item.t >= self.now);
            if item.t > limit {
                self.violation(format!("events still pending at {} s of virtual time", item.t / SEC));
                break;
            }
            same_instant = if item.t == self.now { same_instant + 1 } else { 0 };
            assert!(same_instant < 5_000_000, "livelock at t={} ns", item.t);
            self.now = item.t;
            self.events += 1;
            let kind = match &item.ev {
                Ev::Datagram { dst, .. } if *dst == engine_addr() => 0,
                Ev::Datagram { dst, .. } if self.is_agent(*dst) => 1,
                Ev::Datagram { .. } => 2,
                Ev::Mesh(..) | Ev::FromRouting(..) => 0,
                Ev::ToRouting(..) | Ev::Committed(..) => 3,
                Ev::Timer(Node::Shard(_), _) => 0,
                Ev::Timer(Node::Router, _) => 3,
                Ev::Timer(Node::Agent(_), _) | Ev::Agent(..) => 1,
                Ev::Timer(Node::Cust(_), _) | Ev::Cust(..) => 2,
                Ev::MediaTimeout => 0,
                Ev::Pause(..) => 3,
                Ev::Silent(..) => 1,
            };
            let t0 = Instant::now();
            if let (Some(tr), Ev::Datagram { dst, src, data }) = (self.trace, &item.ev) {
                if *dst == tr || *src == tr {
                    let first = String::from_utf8_lossy(data);
                    let cid = first.lines().find(|l| l.starts_with("Call-ID") || l.starts_with("CSeq") ).unwrap_or("");
                    eprintln!("t={:.3} {src} -> {dst}: {} | {cid} | via {}", self.now as f64 / SEC as f64, first.lines().next().unwrap_or(""),
                        first.lines().find(|l| l.starts_with("Via")).unwrap_or(""));
                }
            }
            match item.ev {
                Ev::Datagram { dst, src, data } => {
                    if dst == engine_addr() {
                        let s = self.shard_for(src);
                        self.shard_input(s, Input::Datagram { data: &data, src });
                    } else {
                        match self.addr_of.get(&dst).copied() {
                            Some(Node::Cust(i)) => {
                                self.cust_step(i, |sim, i, now| sim.custs[i as usize].ep.handle_datagram(&data, src, now))
                            }
                            Some(Node::Agent(i)) => {
                                self.agent_step(i, |sim, i, now| sim.agents[i as usize].ep.handle_datagram(&data, src, now))
                            }
                            _ => self.bump("undeliverable"),
                        }
                    }
                }
                // Sent by an engine that crashed since: lost with it.
                Ev::Mesh(e, ..) | Ev::ToRouting(e, _) | Ev::FromRouting(e, ..) | Ev::Committed(e, _) if e != self.epoch => {
                    self.bump("lost_in_crash")
                }
                Ev::Mesh(_, shard, fwd) => self.shard_input(shard, Input::Forwarded(fwd)),
                Ev::ToRouting(_, msg) => {
                    if let ToRouting::Call(CallFact::Arrived { call, sip_call_id, .. }) = &msg {
                        if let Some(&c) = self.cust_by_sip.get(sip_call_id.as_str()) {
                            self.chk.cust_of_call.insert(*call, c);
                        }
                    }
                    self.routing_input(routing::Input::Shard(msg))
                }
                Ev::Pause(i, on) => self.command(i, on),
                Ev::Silent(i, on) => self.silence(i, on),
                Ev::Committed(_, outcome) => {
                    self.routing_input(routing::Input::Committed(outcome));
                    // Between two commits: what the store holds is all
                    // the routing state there is.
                    if self.now >= self.next_crash && self.routing.pending_len() == 0 {
                        self.next_crash = self.now + self.sc.crash_every.unwrap_or(u64::MAX);
                        let arrivals_end = REGISTRATION + u64::from(self.sc.calls) * self.sc.arrival_gap;
                        if self.now < arrivals_end {
                            self.crash();
                        }
                    }
                }
                Ev::FromRouting(_, s, FromRouting::Decision(d)) => {
                    if matches!(&d, Decision::RingAll { agents, .. } if agents.len() > 1) {
                        self.chk.ring_all_wide += 1;
                    }
                    if !self.shards[usize::from(s)].calls().contains(d.call()) {
                        // The caller hung up before this decision arrived.
                        self.bump(match d {
                            Decision::Queued { .. } => "decision_late_queued",
                            Decision::Offer { .. } | Decision::RingAll { .. } => "decision_late_offer",
                            Decision::Rejected { .. } => "decision_late_rejected",
                            Decision::TimedOut { .. } => "decision_late_timed_out",
                            Decision::MaxDuration { .. } => "decision_late_max_duration",
                            Decision::Hangup { .. } => "decision_late_hangup",
                        });
                    }
                    self.shard_input(s, Input::Routing(FromRouting::Decision(d)))
                }
                Ev::FromRouting(_, s, msg) => self.shard_input(s, Input::Routing(msg)),
                Ev::Timer(node, t) => {
                    if self.armed.get(&node) != Some(&t) {
                        continue;
                    }
                    self.armed.remove(&node);
                    match node {
                        Node::Shard(s) => self.shard_input(s, Input::Timer),
                        Node::Router => self.routing_input(routing::Input::Timer),
                        Node::Cust(i) => self.cust_step(i, |sim, i, now| sim.custs[i as usize].ep.handle_timeout(now)),
                        Node::Agent(i) => {
                            self.agent_step(i, |sim, i, now| sim.agents[i as usize].ep.handle_timeout(now))
                        }
                    }
                }
                Ev::Cust(i, act) => self.cust_step(i, |sim, i, now| sim.cust_act(i, act, now)),
                Ev::Agent(i, cid, act) => self.agent_step(i, |sim, i, now| sim.agent_act(i, &cid, act, now)),
                Ev::MediaTimeout => {
                    let s = (self.rng.u64() % u64::from(self.sc.shards)) as u16;
                    let open = &self.shards[usize::from(s)].media().open;
                    if !open.is_empty() {
                        let k = (self.rng.u64() % open.len() as u64) as usize;
                        let leg = *open.keys().nth(k).expect("k < len");
                        self.bump("media_timeouts_injected");
                        let ev = cc_engine::media::Event::MediaTimeout { leg, idle: Duration::from_secs(30) };
                        self.shard_input(s, Input::Media(ev));
                    }
                    let end = REGISTRATION + u64::from(self.sc.calls) * self.sc.arrival_gap;
                    if self.now < end {
                        let t = self.now + 60 * SEC;
                        self.push(t, Ev::MediaTimeout);
                    }
                }
            }
            self.cpu[kind] += t0.elapsed();
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

// ------------------------------------------------------------------ checks

struct Outcome {
    violations: Vec<String>,
    summary: String,
    digest: u64,
    /// Answered calls per agent of the longest-idle and round-robin cohorts.
    sales_cohort: Vec<u64>,
    billing_cohort: Vec<u64>,
    /// How often each exit was taken.
    exits: BTreeMap<&'static str, u64>,
    agent_legs_refused: u64,
    /// Ring-all offers to several agents at once, and races lost.
    ring_all: (u64, u64),
}

fn fnv(h: &mut u64, s: &str) {
    for b in s.bytes() {
        *h ^= u64::from(b);
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}

impl Sim {
    fn check(&mut self) -> Outcome {
        let mut v = std::mem::take(&mut self.violations);
        let wall = self.wall();
        // Every CDR is what the routing integrator committed to the redb.
        let cdrs = match self.store.cdrs(None) {
            Ok(c) => c,
            Err(e) => {
                v.push(format!("CDRs unreadable: {e}"));
                Vec::new()
            }
        };
        // One CDR per call the router knew, restarts included (a call id
        // comes back after a restart, its arrival time does not).
        let mut seen = BTreeSet::new();
        for c in &cdrs {
            if !seen.insert((c.call_id.as_str(), c.arrived_ms)) {
                v.push(format!("two CDRs for call {} arrived at {}", c.call_id, c.arrived_ms));
            }
        }
        for a in &self.agents {
            if !a.registered {
                v.push(format!("agent {} never registered", a.name));
            }
        }
        // Which customer each agent UA had a confirmed (ACKed) dialog with.
        let mut confirmed: BTreeSet<(String, u32)> = BTreeSet::new();
        for a in &self.agents {
            for (cid, d) in &a.dialogs {
                if d.confirmed {
                    if let Some(c) = d.cust {
                        confirmed.insert((a.name.clone(), c));
                    }
                }
                if !d.ended {
                    v.push(format!(
                        "agent {} dialog {cid} (customer {:?}) never ended: answered={} confirmed={} bye_sent={}",
                        a.name, d.cust, d.answered, d.confirmed, d.bye_sent
                    ));
                }
            }
            if a.ep.transactions() != (0, 0) || a.ep.completed_transactions() != 0 {
                v.push(format!(
                    "agent UA {}: transactions left {:?} + {} completed",
                    a.name,
                    a.ep.transactions(),
                    a.ep.completed_transactions()
                ));
            }
        }
        // Exactly one CDR per customer call.
        let mut by_sip: HashMap<&str, Vec<&Cdr>> = HashMap::new();
        for c in &cdrs {
            by_sip.entry(c.sip_call_id.as_str()).or_default().push(c);
        }
        let mut disp: BTreeMap<String, u64> = BTreeMap::new();
        let (mut not_abandoned, mut answered) = (0u64, 0u64);
        let mut hit = 0u64;
        for (i, cu) in self.custs.iter().enumerate() {
            let who = format!(
                "customer c{i} ({}): got_2xx={} final={:?} provisional={} giving_up={} cancel_sent={} \
                 invite_timeout={} bye_sent={} bye_done={} bye_received={}",
                cu.call_id,
                cu.got_2xx,
                cu.final_status,
                cu.provisional,
                cu.giving_up,
                cu.cancel_sent,
                cu.invite_timeout,
                cu.bye_sent,
                cu.bye_done,
                cu.bye_received
            );
            if cu.ep.transactions() != (0, 0) || cu.ep.completed_transactions() != 0 {
                v.push(format!(
                    "{who}: UA transactions left {:?} + {} completed",
                    cu.ep.transactions(),
                    cu.ep.completed_transactions()
                ));
            }
            // A call live in an engine that crashed dies with its dialogs
            // (the restart CDRs are checked at the restart); one that was
            // over well before (its transactions too) is checked in full.
            let crash = cu.started_at.and_then(|t| self.crashes.iter().find(|c| **c > t).copied());
            if let Some(c) = crash {
                let crash_wall = WALL0 + c / MS;
                let done_before = by_sip
                    .get(cu.call_id.as_str())
                    .is_some_and(|cs| cs.len() == 1 && cs.iter().all(|x| x.ended_ms + 40_000 <= crash_wall));
                if !done_before {
                    hit += 1;
                    continue;
                }
            }
            if cu.final_status.is_none() && !cu.invite_timeout {
                v.push(format!("{who}: INVITE never got a final response"));
            }
            if cu.invite_timeout {
                v.push(format!("{who}: INVITE timed out at the customer (Timer B/C)"));
            }
            if cu.got_2xx && !(cu.bye_done || cu.bye_received) {
                v.push(format!("{who}: answered but the dialog never ended"));
            }
            let cdrs = by_sip.get(cu.call_id.as_str()).map_or(&[][..], Vec::as_slice);
            if cdrs.len() != 1 {
                v.push(format!("{who}: {} CDRs (expected exactly 1): {cdrs:?}", cdrs.len()));
                continue;
            }
            let cdr = cdrs[0];
            *disp.entry(format!("{:?}", cdr.disposition)).or_default() += 1;
            let is_answered = cdr.disposition == Disposition::Answered;
            if cdr.disposition != Disposition::Abandoned {
                not_abandoned += 1;
                answered += u64::from(is_answered);
            }
            match self.sc.mode {
                AnswerMode::OnAgent if is_answered != cu.got_2xx => {
                    v.push(format!("{who}: CDR {:?} but the caller got_2xx={}: {cdr:?}", cdr.disposition, cu.got_2xx))
                }
                AnswerMode::Immediate if is_answered && !cu.got_2xx => {
                    v.push(format!("{who}: CDR answered but the caller never got a 2xx: {cdr:?}"))
                }
                _ => {}
            }
            if cdr.ended_ms < cdr.answered_ms.unwrap_or(cdr.arrived_ms) || cdr.arrived_ms < WALL0 || cdr.ended_ms > wall {
                v.push(format!("{who}: CDR times out of order or outside the run: {cdr:?}"));
            }
            if is_answered != cdr.agent.is_some() {
                v.push(format!("{who}: CDR disposition and agent disagree: {cdr:?}"));
            }
            if let Some(a) = &cdr.agent {
                if !confirmed.contains(&(a.clone(), i as u32)) {
                    v.push(format!("{who}: CDR names agent {a}, whose UA never had a confirmed dialog with this caller"));
                }
            }
        }
        let known: BTreeSet<&str> = self.custs.iter().map(|c| c.call_id.as_str()).collect();
        for c in &cdrs {
            if !known.contains(c.sip_call_id.as_str()) {
                v.push(format!("CDR for no customer: {c:?}"));
            }
        }
        // Router: nobody ringing or busy, no call left.
        let snap = self.routing.snapshot(wall);
        for a in &snap.agents {
            if a.ringing > 0 || a.busy > 0 || matches!(a.status, AgentStatus::Ringing | AgentStatus::Busy) {
                v.push(format!("agent {} left {:?} (ringing {}, busy {}) without a call", a.id, a.status, a.ringing, a.busy));
            }
        }
        for q in &snap.queues {
            if q.waiting + q.ringing + q.talking > 0 {
                v.push(format!("queue {} not empty: {q:?}", q.name));
            }
        }
        // Engine shards: no call, transaction, dialog or relay leg left.
        for (s, sh) in self.shards.iter().enumerate() {
            let counts = sh.calls().counts();
            if !counts.is_idle() {
                v.push(format!("shard {s}: call table not idle: {counts:?}"));
            }
            let (ep, relay) = (sh.endpoint(), sh.media());
            if ep.transactions() != (0, 0) || ep.completed_transactions() != 0 {
                v.push(format!(
                    "shard {s}: endpoint transactions left {:?} + {} completed",
                    ep.transactions(),
                    ep.completed_transactions()
                ));
            }
            if !relay.open.is_empty() || relay.ports.in_use() != 0 {
                v.push(format!(
                    "shard {s}: relay legs left open {} / ports in use {}",
                    relay.open.len(),
                    relay.ports.in_use()
                ));
            }
            if relay.refused > 0 {
                v.push(format!("shard {s}: relay refused {} calls (port range too small for the scenario)", relay.refused));
            }
            for e in relay.errors.iter().take(5) {
                v.push(format!("shard {s}: relay misuse: {e}"));
            }
        }
        // Liveness.
        let ratio = if not_abandoned == 0 { 1.0 } else { answered as f64 / not_abandoned as f64 };
        // A day has exits (max wait, full, empty): a lower bar than
        // `sim_calls`' 90 %, but a queue that stops serving still fails it.
        if ratio < 0.70 {
            v.push(format!("liveness: only {answered}/{not_abandoned} ({:.1} %) of calls not abandoned were answered", ratio * 100.0));
        }
        let answered_per_agent: Vec<u64> = snap.agents.iter().map(|a| a.answered).collect();
        let answered_cdrs = cdrs.iter().filter(|c| c.disposition == Disposition::Answered).count() as u64;
        // The router's counts start again after a restart.
        if self.crashes.is_empty() && answered_per_agent.iter().sum::<u64>() != answered_cdrs {
            v.push(format!(
                "router counts {} answers over its agents but wrote {answered_cdrs} answered CDRs",
                answered_per_agent.iter().sum::<u64>()
            ));
        }
        let day = self.check_day(&cdrs, &snap, &mut v);
        let mut digest = 0xcbf2_9ce4_8422_2325u64;
        for c in &cdrs {
            fnv(
                &mut digest,
                &format!("{}|{}|{:?}|{:?}|{}|{}", c.call_id, c.sip_call_id, c.disposition, c.agent, c.arrived_ms, c.ended_ms),
            );
        }
        fnv(&mut digest, &format!("{}|{}", self.events, self.now));
        let mut stats = self.stats.clone();
        stats.insert("offers", self.offered.len() as u64);
        stats.insert("agent_invites", self.agents.iter().map(|a| a.invites).sum());
        for sh in &self.shards {
            *stats.entry("engine_retransmissions_sent").or_default() += sh.endpoint().counters().retransmissions_sent;
            *stats.entry("engine_client_timeouts").or_default() += sh.endpoint().counters().client_timeouts;
            *stats.entry("legs_opened").or_default() += sh.media().opened;
            *stats.entry("agent_legs_refused").or_default() += sh.media().agent_refused;
        }
        *stats.entry("legs_opened").or_default() += self.lost_relays.0;
        *stats.entry("agent_legs_refused").or_default() += self.lost_relays.1;
        stats.insert("crashes", self.crashes.len() as u64);
        stats.insert("calls_hit_by_crash", hit);
        let summary = format!(
            "sim {} cpu(engine,agents,customers,router)={:?} store={:?} seed={} digest={digest:016x} calls={} virtual={}s events={} cdrs={} dispositions={disp:?} answered/not-abandoned={answered}/{not_abandoned} \
             answered-per-agent min={} max={} stats={stats:?}",
            self.sc.name,
            self.cpu,
            self.store_cpu,
            self.seed,
            self.custs.len(),
            self.now / SEC,
            self.events,
            cdrs.len(),
            answered_per_agent.iter().min().unwrap_or(&0),
            answered_per_agent.iter().max().unwrap_or(&0),
        );
        let agent_legs_refused = self.shards.iter().map(|sh| sh.media().agent_refused).sum::<u64>() + self.lost_relays.1;
        let summary = format!(
            "{summary} exits={:?} qlog={:?} offers_checked={} ring_all(wide,lost)=({},{})",
            day.exits, day.qlog, self.chk.offers_checked, self.chk.ring_all_wide, self.chk.ring_all_lost
        );
        let pick = |f: fn(&Role) -> bool| -> Vec<u64> {
            snap.agents.iter().zip(&self.roles).filter(|(_, r)| f(r)).map(|(a, _)| a.answered).collect()
        };
        Outcome {
            violations: v,
            summary,
            digest,
            agent_legs_refused,
            ring_all: (self.chk.ring_all_wide, self.chk.ring_all_lost),
            sales_cohort: pick(|r| r.sales_cohort),
            billing_cohort: pick(|r| r.billing_cohort),
            exits: day.exits,
        }
    }
}

struct DayFigures {
    exits: BTreeMap<&'static str, u64>,
    qlog: BTreeMap<String, u64>,
}

fn max_wait_s(queue: &str) -> u64 {
    u64::from(match queue {
        SALES => SALES_MAX_WAIT_S,
        SUPPORT => SUPPORT_MAX_WAIT_S,
        VIP => VIP_MAX_WAIT_S,
        _ => BILLING_MAX_WAIT_S,
    })
}

impl Sim {
    /// The day's own checks over the redb's CDRs and queue log and the
    /// router's counters.
    fn check_day(&self, cdrs: &[Cdr], snap: &cc_engine::acd::router::RouterSnapshot, v: &mut Vec<String>) -> DayFigures {
        // An offer made just before the exit may still be answered: its
        // ring timeout, plus the network and the channels (≤ 0.5 s each way).
        let slack = u64::from(self.sc.ring_timeout_s) * 1000 + 2000;
        let mut exits: BTreeMap<&'static str, u64> = BTreeMap::new();
        for c in cdrs {
            let entered = match self.chk.moved_at.get(&c.call_id) {
                Some((at, from, to)) => {
                    if at.saturating_sub(c.arrived_ms) > max_wait_s(from) * 1000 + slack {
                        v.push(format!("call {} moved {from} → {to} after {} ms in {from}", c.call_id, at - c.arrived_ms));
                    }
                    if to != &c.queue {
                        v.push(format!("call {} moved to {to} but its CDR says queue {}", c.call_id, c.queue));
                    }
                    *exits.entry("overflowed").or_default() += 1;
                    *at
                }
                None => c.arrived_ms,
            };
            if c.overflowed_from.is_some() != self.chk.moved_at.contains_key(&c.call_id) {
                v.push(format!("CDR overflowed_from {:?} but the router's Overflowed events disagree: {c:?}", c.overflowed_from));
            }
            let left = match (c.disposition, c.answered_ms) {
                (Disposition::Rejected, _) => None,
                (_, Some(a)) => Some(a),
                _ => Some(c.ended_ms),
            };
            if let Some(left) = left {
                let waited = left.saturating_sub(entered);
                if waited > max_wait_s(&c.queue) * 1000 + slack {
                    v.push(format!("call {} waited {waited} ms in {} (exit at {} s): {c:?}", c.call_id, c.queue, max_wait_s(&c.queue)));
                }
            }
            let exit = match (c.disposition, c.reason.as_deref()) {
                (Disposition::Answered, _) => "answered",
                (Disposition::Abandoned, _) => "abandoned",
                (Disposition::TimedOut, Some("leave-empty")) => "leave-empty",
                (Disposition::TimedOut, _) => "timed-out",
                (Disposition::Rejected, _) => "rejected",
                (Disposition::Overflowed, _) => "overflowed-full",
                (Disposition::Failed, _) => "failed",
            };
            *exits.entry(exit).or_default() += 1;
        }
        // The queue log, recounted per queue and event.
        let lines = match self.store.queue_log(None, usize::MAX) {
            Ok(l) => l,
            Err(e) => {
                v.push(format!("queue log unreadable: {e}"));
                Vec::new()
            }
        };
        let mut qlog: BTreeMap<String, u64> = BTreeMap::new();
        let mut per: BTreeMap<(String, String), u64> = BTreeMap::new();
        for l in &lines {
            let f: Vec<&str> = l.split('|').collect();
            if f.len() < 5 {
                v.push(format!("queue log line with {} fields: {l}", f.len()));
                continue;
            }
            *qlog.entry(f[4].to_owned()).or_default() += 1;
            *per.entry((f[2].to_owned(), f[4].to_owned())).or_default() += 1;
        }
        for (ev, name) in [("JOINEMPTY", "join-empty"), ("FULL", "full"), ("EXITEMPTY", "exit-empty")] {
            exits.insert(name, qlog.get(ev).copied().unwrap_or(0));
        }
        for q in &snap.queues {
            let n = |ev: &str| per.get(&(q.name.clone(), ev.to_owned())).copied().unwrap_or(0);
            let cdr_n = |d: Disposition| cdrs.iter().filter(|c| c.queue == q.name && c.disposition == d).count() as u64;
            for (win, c) in [("today", &q.today), ("total", &q.total)] {
                let got = [c.offered, c.answered, c.abandoned, c.failed, c.rejected + c.overflowed + c.timed_out];
                let want = [
                    n("ENTERQUEUE"),
                    n("CONNECT"),
                    n("ABANDON"),
                    n("FAILED"),
                    n("FULL") + n("JOINEMPTY") + n("EXITEMPTY") + n("EXITWITHTIMEOUT"),
                ];
                if got != want {
                    v.push(format!(
                        "queue {} {win} counters [offered, answered, abandoned, failed, rejected+overflowed+timed_out] = {got:?}, \
                         queue log recount {want:?}",
                        q.name
                    ));
                }
                let by_cdr = [cdr_n(Disposition::Answered), cdr_n(Disposition::Abandoned), cdr_n(Disposition::TimedOut), cdr_n(Disposition::Rejected)];
                let by_counter = [c.answered, c.abandoned, c.timed_out, c.rejected];
                if by_cdr != by_counter {
                    v.push(format!(
                        "queue {} {win}: CDRs [answered, abandoned, timed out, rejected] {by_cdr:?}, counters {by_counter:?}",
                        q.name
                    ));
                }
            }
            let complete = n("COMPLETECALLER") + n("COMPLETEAGENT");
            let answered_here = cdrs.iter().filter(|c| c.queue == q.name && c.answered_ms.is_some()).count() as u64;
            if complete != answered_here {
                v.push(format!("queue {}: {complete} COMPLETE lines, {answered_here} answered CDRs", q.name));
            }
        }
        if cdrs.len() != self.custs.len() {
            v.push(format!("{} CDRs for {} callers", cdrs.len(), self.custs.len()));
        }
        DayFigures { exits, qlog }
    }
}

// ------------------------------------------------------------------ driver

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok())
}

/// The (seed, calls) runs of a test: `defaults`, unless `SIM_SEEDS` /
/// `SIM_SEED_COUNT` (seed list) or `SIM_CALLS` (calls per run) say otherwise.
fn plan(defaults: &[(u64, u32)]) -> Vec<(u64, u32)> {
    let calls = env_u64("SIM_CALLS").map(|n| n as u32);
    let seeds: Option<Vec<u64>> = match (std::env::var("SIM_SEEDS"), env_u64("SIM_SEED_COUNT")) {
        (Ok(s), _) => Some(s.split(',').filter_map(|x| x.trim().parse().ok()).collect()),
        (_, Some(n)) => Some((1..=n).collect()),
        _ => None,
    };
    match seeds {
        Some(seeds) => seeds.into_iter().map(|s| (s, calls.unwrap_or(10_000))).collect(),
        None => defaults.iter().map(|&(s, c)| (s, calls.unwrap_or(c))).collect(),
    }
}

fn simulate(sc: &Scenario, seed: u64) -> Outcome {
    let started = Instant::now();
    let mut sim = Sim::new(sc.clone(), seed);
    sim.run();
    let o = sim.check();
    let verbose = std::env::var("SIM_VERBOSE").is_ok();
    if verbose || !o.violations.is_empty() {
        eprintln!("{} (wall {:.1}s)", o.summary, started.elapsed().as_secs_f64());
    }
    o
}

fn run_scenario(base: Scenario, runs: &[(u64, u32)]) -> Vec<Outcome> {
    let mut outs = Vec::new();
    let mut failed = Vec::new();
    for (seed, calls) in plan(runs) {
        let mut sc = base.clone().with_calls(calls);
        // Harsher or different networks on demand.
        if let Some(p) = env_u64("SIM_LOSS_PCT") {
            sc.loss = p as f64 / 100.0;
        }
        if let Some(n) = env_u64("SIM_SHARDS") {
            sc.shards = n as u16;
        }
        if let Some(ms) = env_u64("SIM_MAX_DELAY_MS") {
            sc.delay.1 = ms * MS;
        }
        // Printed first so a panic inside the core names its seed.
        eprintln!("sim {}: seed {seed} ({} calls) …", sc.name, sc.calls);
        let o = simulate(&sc, seed);
        if !o.violations.is_empty() {
            let mut msg = format!(
                "sim {} seed {seed}: {} invariant violations (rerun: SIM_SEEDS={seed} SIM_CALLS={} cargo test --test sim_day)\n",
                sc.name,
                o.violations.len(),
                sc.calls
            );
            for x in o.violations.iter().take(15) {
                msg.push_str("  - ");
                msg.push_str(x);
                msg.push('\n');
            }
            failed.push(msg);
        }
        outs.push(o);
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    outs
}

/// Every exit the day must reach at least once.
const EXITS: [&str; 8] = ["answered", "abandoned", "timed-out", "overflowed", "leave-empty", "join-empty", "full", "rejected"];

/// The day: ~3,000 calls over 2 virtual hours with a morning peak, 40
/// agents, 4 queues (one ring-all), breaks, a billing meeting, outages, 5 % loss.
#[test]
fn day_of_traffic() {
    let sc = Scenario::day(0, "day");
    for o in run_scenario(sc, &[(1, 3_000)]) {
        assert_eq!(o.agent_legs_refused, 0, "{}", o.summary);
        assert!(o.ring_all.0 > 0 && o.ring_all.1 > 0, "no ring-all race rung and lost: {:?}\n{}", o.ring_all, o.summary);
        for e in EXITS {
            assert!(o.exits.get(e).copied().unwrap_or(0) > 0, "exit {e} never taken: {:?}\n{}", o.exits, o.summary);
        }
        // Longest-idle fairness (sales cohort: same queue, level, skills,
        // never paused or unreachable, one call at a time). When several
        // are idle, longest-idle hands them calls in strict rotation, so
        // what spread remains comes from the saturated stretches (the
        // peak), where an agent takes the next call as soon as it is free:
        // its count is then that of a renewal process of exponential talk
        // times (coefficient of variation 1), standard deviation ≈ √n, about
        // 10 % at n ≈ 100 answered each. The bound is three of those; the
        // seed-1 day gives [96, 94, 106, 101, 114, 93], within 13 %.
        if std::env::var("SIM_VERBOSE").is_ok() {
            eprintln!("sales cohort answered {:?}, billing cohort {:?}", o.sales_cohort, o.billing_cohort);
        }
        let n = o.sales_cohort.len() as f64;
        let mean = o.sales_cohort.iter().sum::<u64>() as f64 / n;
        for &x in &o.sales_cohort {
            let dev = (x as f64 - mean).abs() / mean;
            assert!(dev <= LONGEST_IDLE_BOUND, "longest-idle unfair: {:?} (mean {mean:.1})\n{}", o.sales_cohort, o.summary);
        }
    }
}

/// Round-robin, lossless: agents always answer after 500 ms and hang up
/// after 20 s, no loss or jitter on agent links, no breaks: the billing
/// cohort (level 1, billing only) answers within ±1 of each other.
#[test]
fn day_round_robin_lossless() {
    let mut sc = Scenario::day(0, "day/round-robin-lossless");
    sc.breaks = false;
    sc.agents_clean = true;
    sc.loss = 0.0;
    sc.dup = 0.0;
    sc.disciplined = true;
    sc.fixed_answer = 500 * MS;
    sc.fixed_talk = 20 * SEC;
    for o in run_scenario(sc, &[(1, 1_000)]) {
        let (min, max) = (o.billing_cohort.iter().min().copied().unwrap_or(0), o.billing_cohort.iter().max().copied().unwrap_or(0));
        assert!(max - min <= 1, "round-robin unfair: {:?}\n{}", o.billing_cohort, o.summary);
    }
}

/// Same seed, same day.
#[test]
fn day_replays() {
    let sc = Scenario::day(0, "day/replay").with_calls(300);
    let a = simulate(&sc, 9);
    let b = simulate(&sc, 9);
    assert_eq!(a.digest, b.digest, "same seed, different runs:\n{}\n{}", a.summary, b.summary);
}

/// Longest-idle: every cohort agent within this fraction of the cohort's
/// mean (derived in `day_of_traffic`).
const LONGEST_IDLE_BOUND: f64 = 0.30;
