//! The engine's configuration: one TOML file, validated in full before the
//! engine starts. Every error names the file, the key and the reason, so an
//! operator can fix it without reading the source.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod cidr;
mod features;
mod reload;
mod routing;

pub use cidr::Cidr;
pub use features::{is_feature_user, FeatureAction, FeatureError, FeaturesSection};
pub use reload::Reload;
pub use routing::{skills_in_force, EmptyWhen, RelaxStep, SkillReq};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: key `{key}`: {reason}")]
    Invalid {
        file: PathBuf,
        key: String,
        reason: String,
    },
}

/// How many signalling shards to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shards {
    /// One per CPU the process may run on.
    Auto,
    Count(u16),
}

impl<'de> Deserialize<'de> for Shards {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Num(i64),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "auto" => Ok(Shards::Auto),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "expected \"auto\" or a number of shards, found \"{w}\""
            ))),
            Raw::Num(n) => u16::try_from(n)
                .map(Shards::Count)
                .map_err(|_| serde::de::Error::custom(format!("{n} shards is out of range"))),
        }
    }
}

impl Shards {
    /// The number of signalling shards this resolves to on this machine.
    pub fn resolve(self) -> u16 {
        match self {
            Shards::Count(n) => n,
            Shards::Auto => std::thread::available_parallelism()
                .map(|n| u16::try_from(n.get()).unwrap_or(u16::MAX))
                .unwrap_or(1),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub engine: EngineSection,
    pub sip: SipSection,
    #[serde(default)]
    pub registrar: RegistrarSection,
    #[serde(default)]
    pub mgmt: MgmtSection,
    #[serde(default)]
    pub media: MediaSection,
    #[serde(default)]
    pub features: FeaturesSection,
    #[serde(default, rename = "agent")]
    pub agents: Vec<AgentConfig>,
    #[serde(default, rename = "queue")]
    pub queues: Vec<QueueConfig>,
    /// The file this was read from (`Config::load`): what a reload reads.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    pub shards: Shards,
    /// Where the redb database lives; relative paths are relative to the
    /// working directory (the systemd unit passes an absolute one).
    pub state_dir: PathBuf,
    /// A tracing filter (`info`, `cc_engine=debug`…); `RUST_LOG` wins.
    pub log_level: String,
    /// io_uring buffer memory per executor. Locked memory is scarce
    /// (RLIMIT_MEMLOCK), so this stays small.
    pub io_memory_kib: u32,
    /// The routing shard commits registrations and CDRs at most this long
    /// after they happen: the bound on what a crash can lose.
    pub group_commit_ms: u64,
    /// redb's page cache, in MiB: the bound on what the database keeps in
    /// memory however many CDRs it holds.
    pub db_cache_mib: u32,
    /// CDRs and queue log lines are kept this many days after they ended
    /// (a rolling window, not calendar days); older ones are exported to
    /// dated files in `export_dir` and deleted. 0: everything that ended
    /// before the sweep started is exported and deleted.
    pub retention_days: u32,
    /// How often the retention sweep runs, in seconds.
    pub retention_sweep_s: u64,
    /// Where the sweep writes `cdrs-YYYY-MM-DD.csv` and
    /// `queue_log-YYYY-MM-DD.log`; unset: `state_dir`, next to the
    /// database.
    pub export_dir: Option<PathBuf>,
    /// Pin executors to CPUs (off only for debugging on busy machines).
    pub pin_cpus: bool,
    /// Where the routing shard runs: its own executor, or as tasks inside
    /// the signalling shard that shares its CPU.
    pub routing_executor: RoutingExecutor,
}

/// Placement of the routing shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingExecutor {
    /// `shared` when the routing shard would share a CPU with a signalling
    /// shard anyway (shards >= CPUs, or one allowed CPU), else `own`.
    Auto,
    /// A pinned executor (thread) of its own.
    Own,
    /// Tasks in the executor of the signalling shard on the same CPU: no
    /// thread switch and no eventfd wake-up between them per message.
    Shared,
}

impl RoutingExecutor {
    /// Whether routing runs inside a signalling shard's executor, given the
    /// shard count and the CPUs the process may use (empty: not pinned).
    pub fn shared(self, shards: u16, cpus: usize) -> bool {
        match self {
            RoutingExecutor::Own => false,
            RoutingExecutor::Shared => true,
            RoutingExecutor::Auto => cpus > 0 && usize::from(shards) >= cpus,
        }
    }
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            shards: Shards::Auto,
            state_dir: PathBuf::from("state"),
            log_level: "info".into(),
            io_memory_kib: 256,
            group_commit_ms: 5,
            db_cache_mib: 32,
            retention_days: 90,
            retention_sweep_s: 3600,
            export_dir: None,
            pin_cpus: true,
            routing_executor: RoutingExecutor::Auto,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSection {
    pub listen: SocketAddr,
    /// The domain agents register in (the host part of their AOR).
    pub domain: String,
    #[serde(default = "default_realm")]
    pub realm: String,
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
    /// Larger datagrams are answered 513 (or dropped if unaddressable).
    #[serde(default = "default_max_datagram")]
    pub max_datagram: usize,
    /// RFC 3261 T1 in milliseconds (RTT estimate).
    #[serde(default = "default_t1")]
    pub t1_ms: u64,
    /// Datagrams per second accepted from one source IP before parsing
    /// (bursts of twice that); the rest are dropped and counted. 0 = off.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_ip: u32,
    /// Loopback sources (local load generators, a co-located proxy) are
    /// not rate limited.
    #[serde(default = "default_true")]
    pub rate_limit_exempt_loopback: bool,
    /// Sources (CIDR ranges) whose `Priority`, `X-CC-Priority` and
    /// `X-CC-Skills` headers are believed; from anyone else they are
    /// ignored and counted. Empty: no one's.
    #[serde(default)]
    pub trusted_sources: Vec<Cidr>,
    /// SIP over TCP on the `listen` port.
    #[serde(default = "default_true")]
    pub tcp: bool,
    /// SIP over TLS on `tls_port` with `tls_cert` / `tls_key` (PEM).
    #[serde(default)]
    pub tls: bool,
    #[serde(default = "default_tls_port")]
    pub tls_port: u16,
    #[serde(default)]
    pub tls_cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub tls_key: Option<std::path::PathBuf>,
    /// Open TCP/TLS connections from one source IP, per shard.
    #[serde(default = "default_tcp_per_ip")]
    pub tcp_max_connections_per_ip: u32,
    /// A TCP/TLS connection with nothing received for this long is closed
    /// (agents keep theirs open with REGISTER refreshes or CRLF pings).
    #[serde(default = "default_tcp_idle")]
    pub tcp_idle_timeout_s: u64,
    /// A message must arrive whole within this long of its first byte
    /// (slow senders are cut off).
    #[serde(default = "default_tcp_partial")]
    pub tcp_partial_timeout_ms: u64,
    /// Largest message on a TCP/TLS connection; a larger one closes it.
    #[serde(default = "default_tcp_max_message")]
    pub tcp_max_message: usize,
}

fn default_tls_port() -> u16 {
    5061
}
fn default_tcp_per_ip() -> u32 {
    64
}
fn default_tcp_idle() -> u64 {
    900
}
fn default_tcp_partial() -> u64 {
    5000
}
fn default_tcp_max_message() -> usize {
    65535
}

fn default_rate_limit() -> u32 {
    2000
}
fn default_true() -> bool {
    true
}

fn default_realm() -> String {
    "cc-engine".into()
}
fn default_user_agent() -> String {
    concat!("cc-engine/", env!("CARGO_PKG_VERSION")).into()
}
fn default_max_datagram() -> usize {
    8192
}
fn default_t1() -> u64 {
    500
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarSection {
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub max_contacts: u32,
    /// Seconds a digest nonce stays fresh; older ones get `stale=true`.
    pub nonce_lifetime_s: u32,
    /// Digest challenges offered, in this order: "MD5", "SHA-256".
    pub algorithms: Vec<String>,
    /// Seconds between OPTIONS to every registered contact (they also keep
    /// NAT bindings open); 0 = none.
    pub keepalive_s: u32,
    /// Probes in a row without an answer (timeout or ICMP unreachable)
    /// that make a contact unreachable: no offers until it answers again
    /// or registers again.
    pub keepalive_failures: u32,
}

impl Default for RegistrarSection {
    fn default() -> Self {
        RegistrarSection {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 3,
            nonce_lifetime_s: 300,
            // MD5 alone by default: Debian's baresip 1.0 fails a REGISTER
            // when any challenge is SHA-256, and SIPp answers only MD5.
            algorithms: vec!["MD5".into()],
            keepalive_s: 30,
            keepalive_failures: 2,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MgmtSection {
    /// HTTP address of the management plane (metrics, agents); off if absent.
    pub listen: Option<SocketAddr>,
    /// Who may call the API; with none, only the open routes answer.
    #[serde(default)]
    pub tokens: Vec<MgmtToken>,
    /// Leaves `/metrics` and `/health` open to callers without a token
    /// (a Prometheus scraper or a load balancer's probe).
    #[serde(default)]
    pub open_metrics: bool,
    /// PEM certificate chain and private key: HTTPS instead of HTTP.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Events kept for `/v1/events` clients that reconnect (0: the default).
    #[serde(default)]
    pub event_buffer: usize,
}

/// One bearer token of the management API.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MgmtToken {
    /// The token itself; after loading, also the content of `token_file`.
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the token (first line), relative to the config file.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    pub role: MgmtRole,
}

impl fmt::Debug for MgmtToken {
    // Never print a secret, not even in a debug log of the config.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MgmtToken")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("role", &self.role)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MgmtRole {
    /// Reads everything.
    Viewer,
    /// Reads and acts.
    Admin,
}

/// Shortest token accepted: a guessable token is no authentication.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSection {
    /// The relay's address, written into SDP.
    pub address: std::net::IpAddr,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    pub codecs: Vec<String>,
    pub media_timeout_s: u32,
}

impl Default for MediaSection {
    fn default() -> Self {
        MediaSection {
            address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            rtp_port_min: 20000,
            rtp_port_max: 29999,
            codecs: vec!["PCMU".into(), "PCMA".into(), "telephone-event".into()],
            media_timeout_s: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub id: String,
    pub password: String,
    #[serde(default = "one")]
    pub max_calls: u32,
    /// Queues this agent serves.
    #[serde(default)]
    pub queues: Vec<String>,
    /// Skill name → proficiency 1..=100.
    #[serde(default)]
    pub skills: BTreeMap<String, u8>,
    /// Queue → tier level (1 = first tier). The agent serves these queues
    /// too; `queues` entries are level 1. Higher levels get a queue's calls
    /// only after they have waited `tier_wait_s` per level.
    #[serde(default)]
    pub tiers: BTreeMap<String, u32>,
}

impl AgentConfig {
    /// Every queue this agent serves, with its tier level.
    pub fn queue_levels(&self) -> BTreeMap<&str, u32> {
        let mut m: BTreeMap<&str, u32> = self.tiers.iter().map(|(q, l)| (q.as_str(), *l)).collect();
        for q in &self.queues {
            m.insert(q.as_str(), 1);
        }
        m
    }
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    RoundRobin,
    LongestIdle,
    FewestCalls,
    Skills,
    Priority,
    /// Config order, always from the top.
    Linear,
    Random,
    LeastTalkTime,
    /// Random, weighted by the agent's tier level for the queue (level 1
    /// twice as likely as level 2, ...).
    WeightedRandom,
    /// Every free member of the lowest tier reached rings at once; the
    /// first to answer takes the call.
    RingAll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerMode {
    Immediate,
    OnAgent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoAgents {
    Wait,
    Reject,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub name: String,
    #[serde(default = "default_strategy")]
    pub strategy: Strategy,
    #[serde(default = "default_answer")]
    pub answer: AnswerMode,
    /// Calls allowed to wait at once.
    #[serde(default = "default_max_waiting")]
    pub max_waiting: u32,
    /// Queue that takes calls when this one is full.
    #[serde(default)]
    pub overflow: Option<String>,
    /// Status sent when full with no overflow: 486 or 503 (+Retry-After).
    #[serde(default = "default_full_status")]
    pub full_status: u16,
    #[serde(default = "default_retry_after")]
    pub retry_after_s: u32,
    #[serde(default = "default_no_agents")]
    pub no_agents: NoAgents,
    /// 0 = wait forever.
    #[serde(default)]
    pub max_wait_s: u32,
    /// Longest a call may last once an agent answered; the engine then
    /// hangs up both legs (CDR reason `max-duration`). 0 = no limit.
    #[serde(default)]
    pub max_talk_s: u32,
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout_s: u32,
    #[serde(default = "default_wrap_up")]
    pub wrap_up_s: u32,
    #[serde(default = "default_max_no_answer")]
    pub max_no_answer: u32,
    /// Base priority of calls entering this queue.
    #[serde(default)]
    pub priority: i32,
    /// WAV file (8 kHz mono 16-bit PCM) played while callers wait.
    #[serde(default)]
    pub hold_audio: Option<PathBuf>,
    /// Skills a call in this queue needs (for the `skills` strategy):
    /// `"name"` or `"name>=N"`.
    #[serde(default)]
    pub skills: Vec<SkillReq>,
    /// Looser skill requirements after a caller has waited a while.
    #[serde(default)]
    pub relax: Vec<RelaxStep>,
    /// `priority` strategy: a waiting caller gains one priority level per
    /// this many seconds (0: no ageing).
    #[serde(default = "default_ageing")]
    pub ageing_s: u32,
    /// Of two queues with callers that share a free agent, the higher
    /// weight is served first.
    #[serde(default)]
    pub weight: u32,
    /// Tier escalation: agents of level L get this queue's calls once they
    /// have waited (L - 1) × this; 0 offers every level at once (lower
    /// levels still first).
    #[serde(default)]
    pub tier_wait_s: u32,
    /// After a failed offer the same agent is not offered this call again
    /// for this long (other free agents are tried first in any case).
    #[serde(default = "default_retry")]
    pub retry_s: u32,
    /// The agent rests this long after a 486/600 (busy, DND) ...
    #[serde(default)]
    pub busy_delay_s: u32,
    /// ... after a 603 or any other refusal ...
    #[serde(default)]
    pub reject_delay_s: u32,
    /// ... and after letting it ring out.
    #[serde(default)]
    pub no_answer_delay_s: u32,
    /// An agent auto-paused for `max_no_answer` is unpaused after this
    /// long (0: stays paused until unpaused).
    #[serde(default)]
    pub auto_unpause_s: u32,
    /// At `max_wait_s` the caller moves to this queue, keeping its arrival
    /// time, instead of being timed out.
    #[serde(default)]
    pub max_wait_queue: Option<String>,
    /// A new caller is not queued here while every member is in one of
    /// these states: it goes to `join_empty_queue`, else gets 480.
    #[serde(default)]
    pub join_empty: Vec<EmptyWhen>,
    #[serde(default)]
    pub join_empty_queue: Option<String>,
    /// Waiting callers leave when every member is in one of these states:
    /// to `leave_empty_queue`, else they are timed out (reason
    /// `leave-empty`).
    #[serde(default)]
    pub leave_when_empty: Vec<EmptyWhen>,
    #[serde(default)]
    pub leave_empty_queue: Option<String>,
    /// Service level threshold: answered within this many seconds.
    #[serde(default = "default_service_level")]
    pub service_level_s: u32,
}

fn default_strategy() -> Strategy {
    Strategy::LongestIdle
}
fn default_answer() -> AnswerMode {
    AnswerMode::Immediate
}
fn default_max_waiting() -> u32 {
    100
}
fn default_full_status() -> u16 {
    486
}
fn default_retry_after() -> u32 {
    30
}
fn default_no_agents() -> NoAgents {
    NoAgents::Wait
}
fn default_ring_timeout() -> u32 {
    15
}
fn default_wrap_up() -> u32 {
    10
}
fn default_max_no_answer() -> u32 {
    3
}
fn default_ageing() -> u32 {
    30
}
fn default_retry() -> u32 {
    5
}
fn default_service_level() -> u32 {
    20
}

impl Config {
    /// Reads, parses and validates `file`.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        let mut cfg = Config::parse(&text, file)?;
        cfg.source = Some(file.to_path_buf());
        Ok(cfg)
    }

    /// Parses and validates TOML text; `file` only names the source in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let invalid = |key: String, reason: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            key,
            reason,
        };
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            // toml's message carries the line and a caret; keep it whole.
            let reason = inner.message().trim().to_string();
            let reason = match inner.span() {
                Some(span) => format!("{reason} (line {})", line_of(text, span.start)),
                None => reason,
            };
            invalid(if key == "." { "(top level)".into() } else { key }, reason)
        })?;
        let mut cfg = cfg;
        let base = file.parent().unwrap_or(Path::new("."));
        cfg.mgmt.load_files(base).map_err(|(key, reason)| invalid(key, reason))?;
        cfg.sip.load_files(base).map_err(|(key, reason)| invalid(key, reason))?;
        cfg.validate().map_err(|(key, reason)| invalid(key, reason))?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, r: String| Err((k.to_string(), r));
        if self.engine.shards == Shards::Count(0) {
            return err("engine.shards", "must be at least 1 (or \"auto\")".into());
        }
        if let Shards::Count(n) = self.engine.shards {
            if n > 256 {
                return err("engine.shards", format!("{n} is more than 256"));
            }
        }
        if !(64..=65536).contains(&self.engine.io_memory_kib) {
            return err(
                "engine.io_memory_kib",
                format!("{} is outside 64..=65536", self.engine.io_memory_kib),
            );
        }
        if !(1..=65536).contains(&self.engine.db_cache_mib) {
            return err(
                "engine.db_cache_mib",
                format!("{} is outside 1..=65536", self.engine.db_cache_mib),
            );
        }
        if self.engine.retention_days > 36_500 {
            return err(
                "engine.retention_days",
                format!("{} is more than 36500 (100 years)", self.engine.retention_days),
            );
        }
        if !(1..=86_400).contains(&self.engine.retention_sweep_s) {
            return err(
                "engine.retention_sweep_s",
                format!("{} is outside 1..=86400", self.engine.retention_sweep_s),
            );
        }
        if self.engine.export_dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return err("engine.export_dir", "must not be empty (leave it out for state_dir)".into());
        }
        if !(1..=1000).contains(&self.engine.group_commit_ms) {
            return err(
                "engine.group_commit_ms",
                format!("{} is outside 1..=1000", self.engine.group_commit_ms),
            );
        }
        if self.engine.log_level.trim().is_empty() {
            return err("engine.log_level", "must not be empty".into());
        }
        if self.sip.listen.port() == 0 {
            return err("sip.listen", "port 0 is not a listening port".into());
        }
        if self.sip.domain.trim().is_empty() || self.sip.domain.contains(char::is_whitespace) {
            return err("sip.domain", format!("\"{}\" is not a domain", self.sip.domain));
        }
        if self.sip.realm.is_empty() || self.sip.realm.contains('"') {
            return err("sip.realm", "must be non-empty and contain no '\"'".into());
        }
        if !(1024..=65507).contains(&self.sip.max_datagram) {
            return err(
                "sip.max_datagram",
                format!("{} is outside 1024..=65507", self.sip.max_datagram),
            );
        }
        if !(50..=10_000).contains(&self.sip.t1_ms) {
            return err("sip.t1_ms", format!("{} is outside 50..=10000", self.sip.t1_ms));
        }
        let r = &self.registrar;
        if r.keepalive_failures == 0 {
            return err("registrar.keepalive_failures", "must be at least 1".into());
        }
        if r.min_expires == 0 {
            return err("registrar.min_expires", "must be at least 1".into());
        }
        if r.max_expires < r.min_expires {
            return err(
                "registrar.max_expires",
                format!("{} is below min_expires {}", r.max_expires, r.min_expires),
            );
        }
        if !(r.min_expires..=r.max_expires).contains(&r.default_expires) {
            return err(
                "registrar.default_expires",
                format!(
                    "{} is outside min_expires..=max_expires ({}..={})",
                    r.default_expires, r.min_expires, r.max_expires
                ),
            );
        }
        if !(1..=100).contains(&r.max_contacts) {
            return err(
                "registrar.max_contacts",
                format!("{} is outside 1..=100", r.max_contacts),
            );
        }
        if !(10..=86_400).contains(&r.nonce_lifetime_s) {
            return err(
                "registrar.nonce_lifetime_s",
                format!("{} is outside 10..=86400", r.nonce_lifetime_s),
            );
        }
        if r.algorithms.is_empty() {
            return err("registrar.algorithms", "must offer at least one algorithm".into());
        }
        for a in &r.algorithms {
            if !matches!(a.as_str(), "MD5" | "SHA-256") {
                return err("registrar.algorithms", format!("\"{a}\" is not \"MD5\" or \"SHA-256\""));
            }
        }
        let m = &self.media;
        if m.rtp_port_min < 1024 || m.rtp_port_min % 2 != 0 {
            return err(
                "media.rtp_port_min",
                format!("{} must be an even port >= 1024", m.rtp_port_min),
            );
        }
        if m.rtp_port_max <= m.rtp_port_min {
            return err(
                "media.rtp_port_max",
                format!("{} must be above rtp_port_min {}", m.rtp_port_max, m.rtp_port_min),
            );
        }
        if m.codecs.is_empty() {
            return err("media.codecs", "must name at least one codec".into());
        }
        for c in &m.codecs {
            let known = ["PCMU", "PCMA", "telephone-event"];
            if !known.iter().any(|k| k.eq_ignore_ascii_case(c)) {
                return err(
                    "media.codecs",
                    format!("\"{c}\" is not supported (known: {})", known.join(", ")),
                );
            }
        }
        self.features.validate()?;
        let mut queue_names = BTreeSet::new();
        for (i, q) in self.queues.iter().enumerate() {
            let key = |f: &str| format!("queue[{i}].{f}");
            if !is_sip_user(&q.name) {
                return err(&key("name"), format!("\"{}\" is not a valid SIP user part", q.name));
            }
            if self.features.enabled && is_feature_user(&q.name) {
                return err(&key("name"), format!("\"{}\" starts like a feature code (see [features])", q.name));
            }
            if !queue_names.insert(q.name.as_str()) {
                return err(&key("name"), format!("queue \"{}\" is defined twice", q.name));
            }
            if q.full_status != 486 && q.full_status != 503 {
                return err(&key("full_status"), format!("{} is not 486 or 503", q.full_status));
            }
            if q.ring_timeout_s == 0 || q.ring_timeout_s > 600 {
                return err(&key("ring_timeout_s"), format!("{} is outside 1..=600", q.ring_timeout_s));
            }
            if q.max_no_answer == 0 {
                return err(&key("max_no_answer"), "must be at least 1".into());
            }
            // Read the file now: a caller must never wait in silence because
            // of a typo found only when the first call arrives.
            if let Some(path) = &q.hold_audio {
                if let Err(e) = crate::media::wav::load(path) {
                    return err(&key("hold_audio"), e.to_string());
                }
            }
        }
        for (i, q) in self.queues.iter().enumerate() {
            if let Some(o) = &q.overflow {
                if o == &q.name {
                    return err(&format!("queue[{i}].overflow"), "a queue cannot overflow into itself".into());
                }
                if !queue_names.contains(o.as_str()) {
                    return err(&format!("queue[{i}].overflow"), format!("no queue named \"{o}\""));
                }
            }
            for (field, target) in [("join_empty_queue", &q.join_empty_queue), ("leave_empty_queue", &q.leave_empty_queue)] {
                if let Some(o) = target {
                    let k = format!("queue[{i}].{field}");
                    if o == &q.name {
                        return err(&k, "a queue cannot send its callers to itself".into());
                    }
                    if !queue_names.contains(o.as_str()) {
                        return err(&k, format!("no queue named \"{o}\""));
                    }
                }
            }
            if let Some(o) = &q.max_wait_queue {
                let k = format!("queue[{i}].max_wait_queue");
                if o == &q.name {
                    return err(&k, "a queue cannot send its timed-out callers to itself".into());
                }
                if !queue_names.contains(o.as_str()) {
                    return err(&k, format!("no queue named \"{o}\""));
                }
                if q.max_wait_s == 0 {
                    return err(&k, "needs max_wait_s > 0".into());
                }
            }
            let mut after = BTreeSet::new();
            for (j, r) in q.relax.iter().enumerate() {
                if r.after_s == 0 || !after.insert(r.after_s) {
                    return err(&format!("queue[{i}].relax[{j}].after_s"), "must be > 0 and differ from the other steps".into());
                }
            }
        }
        let mut agent_ids = BTreeSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            let key = |f: &str| format!("agent[{i}].{f}");
            if !is_sip_user(&a.id) {
                return err(&key("id"), format!("\"{}\" is not a valid SIP user part", a.id));
            }
            if queue_names.contains(a.id.as_str()) {
                return err(&key("id"), format!("\"{}\" is also a queue name", a.id));
            }
            if !agent_ids.insert(a.id.as_str()) {
                return err(&key("id"), format!("agent \"{}\" is defined twice", a.id));
            }
            if a.password.is_empty() {
                return err(&key("password"), "must not be empty".into());
            }
            if !(1..=100).contains(&a.max_calls) {
                return err(&key("max_calls"), format!("{} is outside 1..=100", a.max_calls));
            }
            for q in &a.queues {
                if !queue_names.contains(q.as_str()) {
                    return err(&key("queues"), format!("no queue named \"{q}\""));
                }
            }
            for (q, level) in &a.tiers {
                if !queue_names.contains(q.as_str()) {
                    return err(&key(&format!("tiers.{q}")), format!("no queue named \"{q}\""));
                }
                if !(1..=9).contains(level) {
                    return err(&key(&format!("tiers.{q}")), format!("level {level} is outside 1..=9"));
                }
            }
            for (s, p) in &a.skills {
                if !(1..=100).contains(p) {
                    return err(&key(&format!("skills.{s}")), format!("{p} is outside 1..=100"));
                }
            }
        }
        Ok(())
    }
}

impl SipSection {
    /// With `tls` on, resolves the certificate and key against the config's
    /// directory and checks them, so a bad file names its key at start.
    fn load_files(&mut self, base: &Path) -> Result<(), (String, String)> {
        if !self.tls {
            return Ok(());
        }
        match (&mut self.tls_cert, &mut self.tls_key) {
            (Some(c), Some(k)) => {
                *c = base.join(&*c);
                *k = base.join(&*k);
                crate::mgmt::tls::load(c, k).map_err(|e| match e {
                    crate::mgmt::tls::TlsError::Cert(r) => ("sip.tls_cert".to_string(), r),
                    crate::mgmt::tls::TlsError::Key(r) => ("sip.tls_key".to_string(), r),
                })?;
                Ok(())
            }
            (None, _) => Err(("sip.tls_cert".into(), "tls = true needs tls_cert and tls_key".into())),
            (_, None) => Err(("sip.tls_key".into(), "tls = true needs tls_cert and tls_key".into())),
        }
    }
}

impl MgmtSection {
    /// Reads token files into `token` and checks the TLS files, so a typo
    /// is an error naming the key before the engine starts.
    fn load_files(&mut self, base: &Path) -> Result<(), (String, String)> {
        for (i, t) in self.tokens.iter_mut().enumerate() {
            let key = |f: &str| format!("mgmt.tokens[{i}].{f}");
            match (&t.token, &t.token_file) {
                (Some(_), Some(_)) => {
                    return Err((key("token_file"), "give token or token_file, not both".into()))
                }
                (None, None) => return Err((key("token"), "give token or token_file".into())),
                (Some(_), None) => {}
                (None, Some(f)) => {
                    let path = base.join(f);
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| (key("token_file"), format!("{}: {e}", path.display())))?;
                    t.token = Some(text.lines().next().unwrap_or("").trim().to_string());
                }
            }
            let tok = t.token.as_deref().unwrap_or("");
            let field = if t.token_file.is_some() { "token_file" } else { "token" };
            if tok.len() < MIN_TOKEN_LEN {
                return Err((key(field), format!("a token needs at least {MIN_TOKEN_LEN} characters")));
            }
            if !tok.bytes().all(|b| b.is_ascii_graphic()) {
                return Err((key(field), "a token is printable ASCII without spaces".into()));
            }
        }
        let mut seen = BTreeSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if !seen.insert(t.token.as_deref().unwrap_or("")) {
                return Err((format!("mgmt.tokens[{i}]"), "the same token is listed twice".into()));
            }
        }
        match (&mut self.tls_cert, &mut self.tls_key) {
            (Some(c), Some(k)) => {
                *c = base.join(&*c);
                *k = base.join(&*k);
                crate::mgmt::tls::load(c, k).map_err(|e| match e {
                    crate::mgmt::tls::TlsError::Cert(r) => ("mgmt.tls_cert".to_string(), r),
                    crate::mgmt::tls::TlsError::Key(r) => ("mgmt.tls_key".to_string(), r),
                })?;
            }
            (Some(_), None) => return Err(("mgmt.tls_key".into(), "tls_cert needs tls_key".into())),
            (None, Some(_)) => return Err(("mgmt.tls_cert".into(), "tls_key needs tls_cert".into())),
            (None, None) => {}
        }
        Ok(())
    }
}

/// RFC 3261 `user` characters we accept in names (unreserved + a few).
fn is_sip_user(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'+".contains(&b))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map(|t| t.bytes().filter(|&b| b == b'\n').count() + 1)
        .unwrap_or(0)
}

impl fmt::Display for Shards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shards::Auto => f.write_str("auto"),
            Shards::Count(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../config/cc-engine.toml");

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, Path::new("test.toml"))
    }

    fn key_of(t: &str) -> String {
        match parse(t) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn shipped_config_is_valid() {
        let c = parse(SHIPPED).expect("shipped config");
        assert_eq!(c.sip.listen.to_string(), "127.0.0.1:5060");
        assert!(c.agents.iter().any(|a| a.id == "alice"));
        assert!(c.agents.iter().any(|a| a.id == "bob"));
        assert!(c.queues.iter().any(|q| q.name == "support"));
        assert_eq!(c.engine.shards, Shards::Auto);
    }

    #[test]
    fn unknown_key_is_named() {
        let t = SHIPPED.replace("[sip]", "[sip]\nlisen = 1");
        assert_eq!(key_of(&t), "sip.lisen");
        let e = parse(&t).unwrap_err().to_string();
        assert!(e.contains("test.toml") && e.contains("lisen"), "{e}");
    }

    #[test]
    fn trusted_sources_are_cidr_ranges() {
        let t = SHIPPED.replace("trusted_sources = []", "trusted_sources = [\"127.0.0.2/32\", \"10.0.0.0/8\"]");
        let c = parse(&t).unwrap();
        assert_eq!(c.sip.trusted_sources.len(), 2);
        assert!(c.sip.trusted_sources[1].contains("10.9.8.7".parse().unwrap()));
        let bad = SHIPPED.replace("trusted_sources = []", "trusted_sources = [\"127.0.0.2/32\", \"10.0.0.1/8\"]");
        assert!(key_of(&bad).starts_with("sip.trusted_sources"), "{}", key_of(&bad));
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("host bits"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let t = SHIPPED.replace("min_expires = 60", "min_expires = \"sixty\"");
        assert_eq!(key_of(&t), "registrar.min_expires");
    }

    #[test]
    fn impossible_values_are_named() {
        assert_eq!(key_of(&SHIPPED.replace("shards = \"auto\"", "shards = 0")), "engine.shards");
        assert_eq!(
            key_of(&SHIPPED.replace("127.0.0.1:5060", "127.0.0.1:70000")),
            "sip.listen"
        );
        assert_eq!(
            key_of(&SHIPPED.replace("max_expires = 3600", "max_expires = 10")),
            "registrar.max_expires"
        );
        assert_eq!(
            key_of(&SHIPPED.replace("queues = [\"support\"]", "queues = [\"nope\"]")),
            "agent[0].queues"
        );
        let set = |from: &str, to: &str| {
            assert!(SHIPPED.contains(from), "{from}");
            SHIPPED.replacen(from, to, 1)
        };
        assert_eq!(key_of(&set("retention_sweep_s = 3600", "retention_sweep_s = 0")), "engine.retention_sweep_s");
        assert_eq!(key_of(&set("retention_days = 90", "retention_days = 100000")), "engine.retention_days");
        assert_eq!(key_of(&set("retention_days = 90", "retention_days = -1")), "engine.retention_days");
        assert_eq!(key_of(&set("retention_days = 90", "retention_days = 0\nexport_dir = \"\"")), "engine.export_dir");
        assert!(parse(&set("retention_days = 90", "retention_days = 0\nexport_dir = \"/tmp/x\"")).is_ok());
    }

    #[test]
    fn routing_executor_is_shared_only_when_a_cpu_is_shared_anyway() {
        let with = |v: &str| SHIPPED.replace("[engine]", &format!("[engine]\nrouting_executor = \"{v}\""));
        assert_eq!(parse(SHIPPED).unwrap().engine.routing_executor, RoutingExecutor::Auto);
        assert_eq!(parse(&with("own")).unwrap().engine.routing_executor, RoutingExecutor::Own);
        assert_eq!(parse(&with("shared")).unwrap().engine.routing_executor, RoutingExecutor::Shared);
        assert_eq!(key_of(&with("elsewhere")), "engine.routing_executor");
        // (shards, pinned CPUs): the routing CPU is a shard's when shards >= CPUs.
        assert!(RoutingExecutor::Auto.shared(1, 1));
        assert!(RoutingExecutor::Auto.shared(2, 2));
        assert!(!RoutingExecutor::Auto.shared(1, 2));
        assert!(!RoutingExecutor::Auto.shared(4, 0), "unpinned: the kernel places threads");
        assert!(RoutingExecutor::Shared.shared(1, 8));
        assert!(!RoutingExecutor::Own.shared(2, 1));
    }

    #[test]
    fn shards_accepts_auto_and_numbers_only() {
        assert_eq!(
            parse(&SHIPPED.replace("shards = \"auto\"", "shards = 3")).unwrap().engine.shards,
            Shards::Count(3)
        );
        assert_eq!(key_of(&SHIPPED.replace("shards = \"auto\"", "shards = \"many\"")), "engine.shards");
    }

    #[test]
    fn hold_audio_must_be_a_readable_8khz_wav() {
        let dir = std::env::temp_dir().join(format!("cc-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("not.wav");
        std::fs::write(&bad, b"RIFF????WAVEjunk").unwrap();
        let good = dir.join("ok.wav");
        std::fs::write(&good, crate::media::wav::to_wav_bytes(&[0i16; 160])).unwrap();
        let with = |p: &Path| {
            SHIPPED.replace("wrap_up_s = 10", &format!("wrap_up_s = 10\nhold_audio = {:?}", p.display().to_string()))
        };
        assert_eq!(key_of(&with(&bad)), "queue[0].hold_audio");
        assert_eq!(key_of(&with(&dir.join("missing.wav"))), "queue[0].hold_audio");
        assert!(parse(&with(&good)).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn duplicate_agent_is_refused() {
        let t = format!("{SHIPPED}\n[[agent]]\nid = \"alice\"\npassword = \"x\"\n");
        assert_eq!(key_of(&t), "agent[2].id");
    }
}
