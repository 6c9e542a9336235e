//! Persistence of registrations (redb). Only the routing shard writes, so
//! there is one writer and no lock on the call path.
//!
//! File: `<state_dir>/cc-engine.redb`. Tables:
//! - `bindings`: key `agent NUL contact`, value the `Binding` as JSON (small,
//!   self-describing, and `serde(default)` lets later fields be added without
//!   a migration).
//! - `meta`: `schema_version` (u32 LE), `nonce_secret` (32 bytes: nonces
//!   survive a restart, so clients mid-handshake are not re-challenged).
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

const BINDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bindings");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
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

pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) `<state_dir>/cc-engine.redb`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::CreateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(DB_FILE);
        let db = Database::create(&path).ctx("open database", &path)?;
        let store = Store { db, path };
        store.init_schema()?;
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
        let db = ReadOnlyDatabase::open(&path)
            .ctx("open database read-only (is the engine running?)", &path)?;
        let tx = db.begin_read().ctx("begin read transaction", &path)?;
        read_bindings(&tx, &path)?
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

/// Buffers changes and says when to commit them as one transaction: after
/// `max_changes` changes or `max_delay_ms` after the oldest pending one,
/// whichever first. The delay is the crash-loss bound (see module docs).
/// Time is passed in, like everywhere in the core.
#[derive(Debug)]
pub struct GroupCommit {
    pending: Vec<Change>,
    oldest_ms: Option<u64>,
    max_delay_ms: u64,
    max_changes: usize,
}

impl GroupCommit {
    pub fn new(max_delay_ms: u64, max_changes: usize) -> Self {
        GroupCommit {
            pending: Vec::new(),
            oldest_ms: None,
            max_delay_ms,
            max_changes: max_changes.max(1),
        }
    }

    pub fn push(&mut self, change: Change, now_ms: u64) {
        self.oldest_ms.get_or_insert(now_ms);
        self.pending.push(change);
    }

    pub fn extend(&mut self, changes: impl IntoIterator<Item = Change>, now_ms: u64) {
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

    /// Commits everything pending in one transaction. On error the changes
    /// stay pending, so the next flush retries them in the same order.
    pub fn flush(&mut self, store: &Store) -> Result<usize, StoreError> {
        store.apply(&self.pending)?;
        let n = self.pending.len();
        self.pending.clear();
        self.oldest_ms = None;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
