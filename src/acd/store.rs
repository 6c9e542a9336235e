//! Persistence of registrations (redb). Only the routing shard writes,
//! through its store thread (`shard/store_thread.rs`), so there is one
//! writer, no lock on the call path and no disk wait on an executor.
//!
//! File: `<state_dir>/cc-engine.redb`. Tables:
//! - `bindings`: key `agent NUL contact`, value the `Binding` as JSON (small,
//!   self-describing, and `serde(default)` lets later fields be added without
//!   a migration).
//! - `meta`: `schema_version` (u32 LE), `nonce_secret` (32 bytes: nonces
//!   survive a restart, so clients mid-handshake are not re-challenged).
//! - `cdrs`: key `ended_ms (u64 BE) ‖ call id (u64 BE)`, value the `Cdr` as
//!   JSON. Big-endian time first makes `--since T` a range scan and keeps
//!   calls whose ids repeat after a restart apart.
//! - `live_calls`: key the call id, value the `LiveCall` as JSON; a row
//!   lives from arrival until its CDR is written in the same transaction.
//! - `router_state`: `rr NUL queue` → last agent offered (UTF-8),
//!   `agent NUL id` → `AgentPersist` JSON (pause, no-answer count,
//!   reporting counters), `qstats NUL queue` → `QueueStats` JSON.
//! - `queue_log`: key `time_ms (u64 BE) ‖ n (u64 BE)`, value the line
//!   (`acd::queue_log`); `n` counts up across restarts, so lines of one
//!   millisecond keep their order and never collide.
//!
//! The new tables are additive, so the schema version stays 1: an older
//! build simply ignores them.
//!
//! Crash loss is bounded by the group-commit interval: with `GroupCommit` at
//! `max_delay_ms`, a `kill -9` loses at most that window of REGISTER results,
//! which the UAs repair at their next refresh.

use std::path::{Path, PathBuf};

use rand::RngCore;
use redb::{
    Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition, TableError,
};
use serde_json::{json, Value};

use super::agent::AgentDef;
use super::binding::{Binding, Change};
use super::cdr::{AgentPersist, Cdr, LiveCall, RouterRestore, StoreOp};
use super::stats::QueueStats;
use super::facts::CallId;

const BINDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bindings");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const CDRS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("cdrs");
const LIVE_CALLS: TableDefinition<u64, &[u8]> = TableDefinition::new("live_calls");
const ROUTER_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("router_state");
const QUEUE_LOG: TableDefinition<&[u8], &str> = TableDefinition::new("queue_log");
const RR_PREFIX: &str = "rr\0";
const AGENT_PREFIX: &str = "agent\0";
const QSTATS_PREFIX: &str = "qstats\0";
const SCHEMA_VERSION: u32 = 1;
pub const DB_FILE: &str = "cc-engine.redb";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{op} failed on {path}: {source}")]
    Db {
        op: &'static str,
        path: PathBuf,
        source: Box<redb::Error>,
    },
    #[error("{path} has schema version {found}; this build understands up to {SCHEMA_VERSION}")]
    SchemaTooNew { path: PathBuf, found: u32 },
    /// The thread that owned the database ended (it panicked): commits
    /// cannot reach the disk any more.
    #[error("the store thread is gone")]
    ThreadGone,
    #[error("cannot encode binding {key:?} for {path}: {source}")]
    Encode {
        path: PathBuf,
        key: String,
        source: serde_json::Error,
    },
}

/// Attaches the operation and file to any redb error.
trait Ctx<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> Ctx<T> for Result<T, E> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Db {
            op,
            path: path.to_path_buf(),
            source: Box::new(e.into()),
        })
    }
}

/// Page cache of the engine's database unless the config sets one
/// (`engine.db_cache_mib`).
pub const CACHE_BYTES: usize = 32 << 20;

pub struct Store {
    db: Database,
    path: PathBuf,
    /// The next queue log key's sequence part.
    qlog_next: std::cell::Cell<u64>,
}

impl Store {
    /// Opens (creating if needed) `<state_dir>/cc-engine.redb`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(state_dir, CACHE_BYTES)
    }

    /// [`Store::open`] with a page cache of `cache_bytes`.
    pub fn open_with_cache(state_dir: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::CreateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(DB_FILE);
        // redb's default cache is 1 GiB; the engine's working set (bindings,
        // live calls, router state) is small and CDRs are written, not read.
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .ctx("open database", &path)?;
        let store = Store { db, path, qlog_next: std::cell::Cell::new(0) };
        store.init_schema()?;
        store.qlog_next.set(store.last_qlog_seq()?.map_or(0, |n| n + 1));
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn init_schema(&self) -> Result<(), StoreError> {
        let p = &self.path;
        let tx = self.db.begin_write().ctx("begin init transaction", p)?;
        {
            // Opening creates the tables, so readers never see them missing.
            tx.open_table(BINDINGS).ctx("create bindings table", p)?;
            tx.open_table(CDRS).ctx("create cdrs table", p)?;
            tx.open_table(LIVE_CALLS).ctx("create live_calls table", p)?;
            tx.open_table(ROUTER_STATE).ctx("create router_state table", p)?;
            let mut meta = tx.open_table(META).ctx("create meta table", p)?;
            let found = meta
                .get("schema_version")
                .ctx("read schema version", p)?
                .and_then(|v| <[u8; 4]>::try_from(v.value()).ok())
                .map(u32::from_le_bytes);
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::SchemaTooNew {
                        path: p.clone(),
                        found: v,
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())
                        .ctx("write schema version", p)?;
                }
            }
        }
        tx.commit().ctx("commit init transaction", p)
    }

    /// The nonce-signing secret, created on first use.
    pub fn nonce_secret(&self) -> Result<[u8; 32], StoreError> {
        let p = &self.path;
        let tx = self
            .db
            .begin_write()
            .ctx("begin nonce-secret transaction", p)?;
        let secret = {
            let mut meta = tx.open_table(META).ctx("open meta table", p)?;
            let existing = meta
                .get("nonce_secret")
                .ctx("read nonce secret", p)?
                .and_then(|v| <[u8; 32]>::try_from(v.value()).ok());
            match existing {
                Some(s) => s,
                None => {
                    let mut s = [0u8; 32];
                    rand::rngs::OsRng.fill_bytes(&mut s);
                    meta.insert("nonce_secret", s.as_slice())
                        .ctx("write nonce secret", p)?;
                    s
                }
            }
        };
        tx.commit().ctx("commit nonce secret", p)?;
        Ok(secret)
    }

    /// Applies `changes` in order, in one write transaction (all or nothing).
    pub fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let p = &self.path;
        let tx = self.db.begin_write().ctx("begin apply transaction", p)?;
        {
            let mut t = tx.open_table(BINDINGS).ctx("open bindings table", p)?;
            for c in changes {
                let key = c.key();
                match c {
                    Change::Upsert(b) => {
                        let v = serde_json::to_vec(b).map_err(|source| StoreError::Encode {
                            path: p.clone(),
                            key: key.clone(),
                            source,
                        })?;
                        t.insert(key.as_str(), v.as_slice())
                            .ctx("insert binding", p)?;
                    }
                    Change::Remove { .. } => {
                        t.remove(key.as_str()).ctx("remove binding", p)?;
                    }
                }
            }
        }
        tx.commit().ctx("commit apply transaction", p)
    }

    /// Applies the router's (and registrar's) ops in order, in one write
    /// transaction: a CDR and the removal of its live call land together.
    pub fn apply_ops(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let p = &self.path;
        let enc = |key: String, r: serde_json::Result<Vec<u8>>| {
            r.map_err(|source| StoreError::Encode { path: p.clone(), key, source })
        };
        let tx = self.db.begin_write().ctx("begin apply-ops transaction", p)?;
        let mut qlog_next = self.qlog_next.get();
        {
            let mut bindings = tx.open_table(BINDINGS).ctx("open bindings table", p)?;
            let mut cdrs = tx.open_table(CDRS).ctx("open cdrs table", p)?;
            let mut live = tx.open_table(LIVE_CALLS).ctx("open live_calls table", p)?;
            let mut state = tx.open_table(ROUTER_STATE).ctx("open router_state table", p)?;
            let mut qlog = tx.open_table(QUEUE_LOG).ctx("open queue_log table", p)?;
            for op in ops {
                match op {
                    StoreOp::Binding(Change::Upsert(b)) => {
                        let v = enc(b.key(), serde_json::to_vec(b))?;
                        bindings.insert(b.key().as_str(), v.as_slice()).ctx("insert binding", p)?;
                    }
                    StoreOp::Binding(c @ Change::Remove { .. }) => {
                        bindings.remove(c.key().as_str()).ctx("remove binding", p)?;
                    }
                    StoreOp::Cdr(cdr) => {
                        let v = enc(cdr.call_id.clone(), serde_json::to_vec(cdr))?;
                        let key = cdr_key(cdr.ended_ms, parse_call_id(&cdr.call_id));
                        cdrs.insert(key.as_slice(), v.as_slice()).ctx("insert cdr", p)?;
                    }
                    StoreOp::CallLive(l) => {
                        let v = enc(l.call.to_string(), serde_json::to_vec(l))?;
                        live.insert(l.call.0, v.as_slice()).ctx("insert live call", p)?;
                    }
                    StoreOp::CallDone(call) => {
                        live.remove(call.0).ctx("remove live call", p)?;
                    }
                    StoreOp::RoundRobin { queue, last_agent } => {
                        let key = format!("{RR_PREFIX}{queue}");
                        state.insert(key.as_str(), last_agent.as_bytes()).ctx("write rr position", p)?;
                    }
                    StoreOp::Agent { agent, state: st } => {
                        let key = format!("{AGENT_PREFIX}{agent}");
                        if *st == AgentPersist::default() {
                            state.remove(key.as_str()).ctx("remove agent state", p)?;
                        } else {
                            let v = enc(key.clone(), serde_json::to_vec(st))?;
                            state.insert(key.as_str(), v.as_slice()).ctx("write agent state", p)?;
                        }
                    }
                    StoreOp::QueueStats { queue, stats } => {
                        let key = format!("{QSTATS_PREFIX}{queue}");
                        let v = enc(key.clone(), serde_json::to_vec(stats))?;
                        state.insert(key.as_str(), v.as_slice()).ctx("write queue stats", p)?;
                    }
                    StoreOp::QueueLog(e) => {
                        let key = qlog_key(e.time_ms, qlog_next);
                        qlog_next += 1;
                        qlog.insert(key.as_slice(), e.line().as_str()).ctx("append queue log", p)?;
                    }
                }
            }
        }
        tx.commit().ctx("commit apply-ops transaction", p)?;
        // Only a committed transaction uses up its sequence numbers.
        self.qlog_next.set(qlog_next);
        Ok(())
    }

    /// What `Router::new` needs: rr positions, agent pauses and no-answer
    /// counts, and the calls that were live when the engine stopped.
    pub fn load_router_state(&self) -> Result<RouterRestore, StoreError> {
        let p = &self.path;
        let tx = self.db.begin_read().ctx("begin read transaction", p)?;
        let mut out = RouterRestore::default();
        let state = tx.open_table(ROUTER_STATE).ctx("open router_state table", p)?;
        for row in state.iter().ctx("iterate router_state", p)? {
            let (k, v) = row.ctx("read router_state", p)?;
            let key = k.value();
            if let Some(queue) = key.strip_prefix(RR_PREFIX) {
                match std::str::from_utf8(v.value()) {
                    Ok(agent) => {
                        out.rr_last.insert(queue.to_string(), agent.to_string());
                    }
                    Err(e) => tracing::warn!(key = %key.escape_debug(), error = %e, "skipping undecodable rr position"),
                }
            } else if let Some(queue) = key.strip_prefix(QSTATS_PREFIX) {
                match serde_json::from_slice::<QueueStats>(v.value()) {
                    Ok(s) => {
                        out.queue_stats.insert(queue.to_string(), s);
                    }
                    Err(e) => tracing::warn!(key = %key.escape_debug(), error = %e, "skipping undecodable queue stats"),
                }
            } else if let Some(agent) = key.strip_prefix(AGENT_PREFIX) {
                match serde_json::from_slice::<AgentPersist>(v.value()) {
                    Ok(a) => {
                        out.agents.insert(agent.to_string(), a);
                    }
                    Err(e) => tracing::warn!(key = %key.escape_debug(), error = %e, "skipping undecodable agent state"),
                }
            }
        }
        let live = tx.open_table(LIVE_CALLS).ctx("open live_calls table", p)?;
        for row in live.iter().ctx("iterate live_calls", p)? {
            let (k, v) = row.ctx("read live call", p)?;
            match serde_json::from_slice::<LiveCall>(v.value()) {
                Ok(l) => out.live_calls.push(l),
                Err(e) => tracing::warn!(key = k.value(), error = %e, "skipping undecodable live call"),
            }
        }
        Ok(out)
    }

    /// Queue log lines at or after `since_ms`, oldest first, at most
    /// `limit`.
    pub fn queue_log(&self, since_ms: Option<u64>, limit: usize) -> Result<Vec<String>, StoreError> {
        let p = &self.path;
        let tx = self.db.begin_read().ctx("begin read transaction", p)?;
        read_queue_log(&tx, p, since_ms, limit)
    }

    fn last_qlog_seq(&self) -> Result<Option<u64>, StoreError> {
        let p = &self.path;
        let tx = self.db.begin_read().ctx("begin read transaction", p)?;
        let t = match tx.open_table(QUEUE_LOG) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e).ctx("open queue_log table", p),
        };
        // Keys sort by time first: the largest sequence number may sit
        // anywhere if the clock went back, so look at them all once.
        let mut max = None;
        for row in t.iter().ctx("iterate queue_log", p)? {
            let (k, _) = row.ctx("read queue log", p)?;
            if let Some(n) = k.value().get(8..16).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                max = max.max(Some(u64::from_be_bytes(n)));
            }
        }
        Ok(max)
    }

    /// CDRs that ended at or after `since_ms`, oldest first.
    pub fn cdrs(&self, since_ms: Option<u64>) -> Result<Vec<Cdr>, StoreError> {
        let tx = self.db.begin_read().ctx("begin read transaction", &self.path)?;
        read_cdrs(&tx, &self.path, since_ms)
    }

    /// One page of CDRs for the API, oldest first: ended in
    /// `[since, until)`, after the row `after` (the cursor a previous page
    /// returned), kept by `keep`, at most `limit`. A range scan: rows
    /// outside the window are never read. The second value is the cursor
    /// of the next page, `None` when no matching row follows.
    pub fn cdr_page(
        &self,
        since_ms: Option<u64>,
        until_ms: Option<u64>,
        after: Option<CdrCursor>,
        limit: usize,
        keep: impl Fn(&Cdr) -> bool,
    ) -> Result<(Vec<Cdr>, Option<CdrCursor>), StoreError> {
        use std::ops::Bound;
        let p = &self.path;
        let tx = self.db.begin_read().ctx("begin read transaction", p)?;
        let t = match tx.open_table(CDRS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), None)),
            Err(e) => return Err(e).ctx("open cdrs table", p),
        };
        let since = cdr_key(since_ms.unwrap_or(0), 0);
        let start = match after {
            Some(CdrCursor(k)) if k >= since => Bound::Excluded(k),
            _ => Bound::Included(since),
        };
        let until = until_ms.map(|u| cdr_key(u, 0));
        let end = until.as_ref().map_or(Bound::Unbounded, |u| Bound::Excluded(u.as_slice()));
        let start = match &start {
            Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
            Bound::Included(k) => Bound::Included(k.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut page = Vec::new();
        let mut last = None;
        for row in t.range::<&[u8]>((start, end)).ctx("range cdrs", p)? {
            let (k, v) = row.ctx("read cdr", p)?;
            let cdr = match serde_json::from_slice::<Cdr>(v.value()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, path = %p.display(), "skipping undecodable cdr");
                    continue;
                }
            };
            if !keep(&cdr) {
                continue;
            }
            if page.len() == limit {
                return Ok((page, last));
            }
            last = <[u8; 16]>::try_from(k.value()).ok().map(CdrCursor);
            page.push(cdr);
        }
        Ok((page, None))
    }

    /// Every stored binding, expired ones included: the registrar's
    /// `restore` drops those and returns the `Remove`s to apply.
    pub fn load_bindings(&self) -> Result<Vec<Binding>, StoreError> {
        let tx = self
            .db
            .begin_read()
            .ctx("begin read transaction", &self.path)?;
        read_bindings(&tx, &self.path)
    }
}

fn qlog_key(time_ms: u64, n: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&time_ms.to_be_bytes());
    k[8..].copy_from_slice(&n.to_be_bytes());
    k
}

fn read_queue_log(tx: &redb::ReadTransaction, path: &Path, since_ms: Option<u64>, limit: usize) -> Result<Vec<String>, StoreError> {
    let t = match tx.open_table(QUEUE_LOG) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx("open queue_log table", path),
    };
    let from = qlog_key(since_ms.unwrap_or(0), 0);
    let mut out = Vec::new();
    for row in t.range(from.as_slice()..).ctx("range queue_log", path)?.take(limit) {
        let (_, v) = row.ctx("read queue log", path)?;
        out.push(v.value().to_string());
    }
    Ok(out)
}

/// Reads and decodes the bindings table. A record that does not decode is
/// logged and skipped: one bad row must not keep the engine from starting.
fn read_bindings(tx: &redb::ReadTransaction, path: &Path) -> Result<Vec<Binding>, StoreError> {
    let t = match tx.open_table(BINDINGS) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx("open bindings table", path),
    };
    let mut out = Vec::new();
    for row in t.iter().ctx("iterate bindings", path)? {
        let (k, v) = row.ctx("read binding", path)?;
        match serde_json::from_slice::<Binding>(v.value()) {
            Ok(b) => out.push(b),
            Err(e) => {
                tracing::warn!(key = %k.value().escape_debug(), error = %e, path = %path.display(), "skipping undecodable binding")
            }
        }
    }
    Ok(out)
}

/// For `cc-engine agents --state-dir DIR` while the engine is stopped: one
/// JSON object per agent (config order), then one per stored binding whose
/// agent is no longer configured. Expired bindings are left out. A missing
/// database just means nothing is registered.
pub fn agents_report(
    state_dir: &Path,
    agents: &[AgentDef],
    now_ms: u64,
) -> Result<Vec<Value>, StoreError> {
    let path = state_dir.join(DB_FILE);
    let mut bindings = if path.exists() {
        // Fails with DatabaseAlreadyOpen while the engine runs; the message says which file.
        with_report_tx(&path, |tx| read_bindings(tx, &path))?
    } else {
        Vec::new()
    };
    bindings.retain(|b| b.expires_at_ms > now_ms);
    bindings.sort_by(|a, b| (&a.agent, &a.contact_uri).cmp(&(&b.agent, &b.contact_uri)));

    let binding_json = |b: &Binding| {
        json!({
            "contact": b.contact_uri,
            "target": b.target.to_string(),
            "received": b.received.map(|r| r.to_string()),
            "expires_in_s": b.remaining_secs(now_ms),
            "expires_at_ms": b.expires_at_ms,
            "registered_at_ms": b.registered_at_ms,
            "user_agent": b.user_agent,
            "call_id": b.call_id,
            "cseq": b.cseq,
        })
    };
    let mut out: Vec<Value> = agents
        .iter()
        .map(|a| {
            let mine: Vec<Value> = bindings
                .iter()
                .filter(|b| b.agent == a.id)
                .map(binding_json)
                .collect();
            json!({
                "agent": a.id,
                "configured": true,
                "max_calls": a.max_calls,
                "queues": a.queues,
                "skills": a.skills,
                "registered": !mine.is_empty(),
                "bindings": mine,
            })
        })
        .collect();
    let mut orphans: Vec<&str> = bindings
        .iter()
        .map(|b| b.agent.as_str())
        .filter(|id| !agents.iter().any(|a| a.id == *id))
        .collect();
    orphans.dedup(); // sorted above
    for id in orphans {
        let theirs: Vec<Value> = bindings
            .iter()
            .filter(|b| b.agent == id)
            .map(binding_json)
            .collect();
        out.push(
            json!({ "agent": id, "configured": false, "registered": true, "bindings": theirs }),
        );
    }
    Ok(out)
}

/// Where a page of `Store::cdr_page` ended: the key of its last row, as
/// 32 hex digits in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CdrCursor(pub [u8; 16]);

impl CdrCursor {
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<CdrCursor> {
        let s = s.trim().as_bytes();
        if s.len() != 32 || !s.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let mut k = [0u8; 16];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            let hex = std::str::from_utf8(pair).ok()?;
            *k.get_mut(i)? = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(CdrCursor(k))
    }
}

/// `ended_ms ‖ call id`, both big-endian so byte order is time order.
fn cdr_key(ended_ms: u64, call: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ended_ms.to_be_bytes());
    k[8..].copy_from_slice(&call.to_be_bytes());
    k
}

/// Back from `CallId`'s `shard-seq` text; 0 if it does not parse (the key
/// then still sorts by time).
fn parse_call_id(s: &str) -> u64 {
    s.split_once('-')
        .and_then(|(sh, seq)| Some(CallId::new(sh.parse().ok()?, seq.parse().ok()?).0))
        .unwrap_or(0)
}

fn read_cdrs(tx: &redb::ReadTransaction, path: &Path, since_ms: Option<u64>) -> Result<Vec<Cdr>, StoreError> {
    let t = match tx.open_table(CDRS) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx("open cdrs table", path),
    };
    let start = cdr_key(since_ms.unwrap_or(0), 0);
    let mut out = Vec::new();
    for row in t.range(start.as_slice()..).ctx("scan cdrs", path)? {
        let (_, v) = row.ctx("read cdr", path)?;
        match serde_json::from_slice::<Cdr>(v.value()) {
            Ok(c) => out.push(c),
            Err(e) => tracing::warn!(error = %e, path = %path.display(), "skipping undecodable cdr"),
        }
    }
    Ok(out)
}

/// For `cc-engine cdrs --state-dir DIR [--since T]` while the engine is
/// stopped: the CDRs that ended at or after `since_ms`, oldest first, as
/// JSON objects. `T` is parsed by `cdr::parse_since` (unix seconds or RFC
/// 3339). A missing database means no calls yet.
pub fn cdrs_report(state_dir: &Path, since_ms: Option<u64>) -> Result<Vec<Value>, StoreError> {
    let path = state_dir.join(DB_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let cdrs = with_report_tx(&path, |tx| read_cdrs(tx, &path, since_ms))?;
    Ok(cdrs.iter().map(|c| serde_json::to_value(c).unwrap_or(Value::Null)).collect())
}

/// Queue log lines of a stopped engine's database, oldest first.
pub fn queue_log_report(state_dir: &Path, since_ms: Option<u64>, limit: usize) -> Result<Vec<String>, StoreError> {
    let path = state_dir.join(DB_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    with_report_tx(&path, |tx| read_queue_log(tx, &path, since_ms, limit))
}

/// Runs `f` in a read transaction of the stopped engine's database. After a
/// crash (`kill -9`) redb wants a repair, which a read-only open cannot do;
/// the read-write open does it, and still fails while the engine runs
/// because the engine holds the file lock.
fn with_report_tx<R>(
    path: &Path,
    f: impl Fn(&redb::ReadTransaction) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    match ReadOnlyDatabase::open(path) {
        Ok(db) => f(&db.begin_read().ctx("begin read transaction", path)?),
        Err(redb::DatabaseError::RepairAborted) => {
            let db = Database::open(path).ctx("open database to repair it after a crash", path)?;
            f(&db.begin_read().ctx("begin read transaction", path)?)
        }
        Err(e) => Err(e).ctx("open database read-only (is the engine running?)", path),
    }
}

/// What a `GroupCommit` can buffer: registrar `Change`s alone (the
/// original use), or `StoreOp`s, which carry changes, CDRs and router
/// state in one transaction.
pub trait Commit: Sized {
    fn commit(store: &Store, pending: &[Self]) -> Result<(), StoreError>;
}

impl Commit for Change {
    fn commit(store: &Store, pending: &[Self]) -> Result<(), StoreError> {
        store.apply(pending)
    }
}

impl Commit for StoreOp {
    fn commit(store: &Store, pending: &[Self]) -> Result<(), StoreError> {
        store.apply_ops(pending)
    }
}

/// Buffers changes and says when to commit them as one transaction: after
/// `max_changes` changes or `max_delay_ms` after the oldest pending one,
/// whichever first. The delay is the crash-loss bound (see module docs).
/// Time is passed in, like everywhere in the core.
#[derive(Debug)]
pub struct GroupCommit<T = Change> {
    pending: Vec<T>,
    oldest_ms: Option<u64>,
    max_delay_ms: u64,
    max_changes: usize,
}

impl<T: Commit> GroupCommit<T> {
    pub fn new(max_delay_ms: u64, max_changes: usize) -> Self {
        GroupCommit {
            pending: Vec::new(),
            oldest_ms: None,
            max_delay_ms,
            max_changes: max_changes.max(1),
        }
    }

    pub fn push(&mut self, change: T, now_ms: u64) {
        self.oldest_ms.get_or_insert(now_ms);
        self.pending.push(change);
    }

    pub fn extend(&mut self, changes: impl IntoIterator<Item = T>, now_ms: u64) {
        for c in changes {
            self.push(c, now_ms);
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// When the shell must flush at the latest (arm a timer for it).
    pub fn deadline(&self) -> Option<u64> {
        self.oldest_ms.map(|t| t.saturating_add(self.max_delay_ms))
    }

    pub fn due(&self, now_ms: u64) -> bool {
        self.pending.len() >= self.max_changes || self.deadline().is_some_and(|d| now_ms >= d)
    }

    /// Whether the count alone makes a commit due.
    pub fn is_full(&self) -> bool {
        self.pending.len() >= self.max_changes
    }

    /// When the oldest pending change was pushed.
    pub fn oldest_ms(&self) -> Option<u64> {
        self.oldest_ms
    }

    /// Hands everything pending out (to commit elsewhere), leaving `spare`
    /// (emptied) as the buffer for what comes next.
    pub fn take_into(&mut self, mut spare: Vec<T>) -> Vec<T> {
        spare.clear();
        self.oldest_ms = None;
        std::mem::replace(&mut self.pending, spare)
    }

    /// Hands everything pending out, or drops it.
    pub fn take(&mut self) -> Vec<T> {
        self.take_into(Vec::new())
    }

    /// Puts back `ops` that failed to commit, ahead of what was pushed
    /// since, with their original age: the retry keeps the order, and the
    /// window still counts from the oldest change.
    pub fn requeue_front(&mut self, mut ops: Vec<T>, oldest_ms: u64) {
        if ops.is_empty() {
            return;
        }
        ops.append(&mut self.pending);
        self.pending = ops;
        self.oldest_ms = Some(self.oldest_ms.map_or(oldest_ms, |t| t.min(oldest_ms)));
    }

    /// Commits everything pending in one transaction. On error the changes
    /// stay pending, so the next flush retries them in the same order.
    pub fn flush(&mut self, store: &Store) -> Result<usize, StoreError> {
        T::commit(store, &self.pending)?;
        let n = self.pending.len();
        self.pending.clear();
        self.oldest_ms = None;
        Ok(n)
    }
}

/// How long group commits take (fsync included), failed ones too: the
/// `cc_store_commit_seconds` histogram of `/metrics`.
pub static COMMIT_TIME: crate::mgmt::Histogram =
    crate::mgmt::Histogram::new(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]);

#[path = "store_retention.rs"]
mod retention;

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "store_router_tests.rs"]
mod router_tests;
