//! The registrar (RFC 3261 §10.3), sans-IO: `handle_register` takes a
//! REGISTER as plain data and the wall-clock time, and returns the reply and
//! the `Change`s for the store. No socket, clock or database in here.
//!
//! Policy choices (each is tested):
//! - Unknown user → 404 (the brief asks for it; it does reveal which agent ids
//!   exist, which is acceptable for a call-center's own agents).
//! - Credentials only for other realms → treated as no credentials → 401
//!   with a fresh challenge: RFC 3261 §22.3 lets a UA carry credentials for
//!   several realms, so a foreign realm is not an error, just not ours.
//! - Stale nonce → 401 `stale=true` only if the digest is otherwise right
//!   (RFC 2617 §3.2.1); a stale nonce with a wrong digest gets a plain 401.
//! - Right nonce, wrong password, or digest username ≠ To user → 403.
//! - Digest without qop (we always offer qop="auth"), or digest `uri` ≠
//!   Request-URI → 400 (RFC 2617 §3.2.2.5).
//! - Too many contacts: `OverflowPolicy::ReplaceOldest` (default, like
//!   Asterisk's `remove_existing`) drops the untouched bindings closest to
//!   expiry. Softphones that restart or change network re-register with a new
//!   Contact before the old one expires; rejecting them would lock an agent
//!   out of calls for up to an hour. `Reject` answers 503 "Too Many Registered
//!   Contacts" like Kamailio.
//! - Bindings are identified by the contact URI (exact string; UAs resend the
//!   same string). Call-ID/CSeq only orders requests (§10.3 step 7): same
//!   Call-ID with CSeq ≤ the stored one → 500 and nothing changes.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use super::agent::AgentDef;
use super::binding::{parse_sip_uri, resolve_target, Binding, Change, ContactParam, ContactSet};
use crate::sip::auth::{self, Algorithm, AuthError, NonceKey, NonceStatus};

/// Contacts accepted in one REGISTER (adds and removals together).
pub const MAX_CONTACTS_PER_REQUEST: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverflowPolicy {
    ReplaceOldest,
    Reject,
}

#[derive(Clone, Debug)]
pub struct RegistrarConfig {
    pub realm: String,
    /// Used when neither the contact nor the request gives an expiry.
    pub default_expires: u32,
    /// Below this (and above 0) → 423 with Min-Expires.
    pub min_expires: u32,
    /// Longer requests are clamped to this.
    pub max_expires: u32,
    pub max_contacts: usize,
    pub overflow: OverflowPolicy,
    /// Nonce lifetime; bounds replay, since nonce counts are not tracked.
    pub nonce_lifetime_ms: u64,
    /// Challenges offered, in order. Many softphones answer the first
    /// challenge they see, and some (sipsak, older firmware) give up when it
    /// is not MD5, so the order is the operator's choice.
    pub algorithms: Vec<Algorithm>,
}

impl RegistrarConfig {
    pub fn new(realm: impl Into<String>) -> Self {
        RegistrarConfig {
            realm: realm.into(),
            default_expires: 3600,
            min_expires: 60,
            max_expires: 7200,
            max_contacts: 3,
            overflow: OverflowPolicy::ReplaceOldest,
            nonce_lifetime_ms: 300_000,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        }
    }
}

/// A REGISTER, as plain data (`sip::register` reads it from the scanned message).
#[derive(Clone, Debug)]
pub struct RegisterRequest {
    /// User part of the To URI: the agent id.
    pub user: String,
    pub contacts: ContactSet,
    /// The Expires header.
    pub expires: Option<u32>,
    /// Raw `Authorization` header values, in message order.
    pub authorizations: Vec<String>,
    /// Request-URI as sent; the digest `uri` must equal it.
    pub method_uri: String,
    pub call_id: String,
    pub cseq: u32,
    /// Packet source address (for NAT handling).
    pub source: SocketAddr,
    pub user_agent: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RegisterReply {
    /// 200 with every current binding: `(contact uri, seconds left)`.
    Ok { contacts: Vec<(String, u32)> },
    /// 401: one WWW-Authenticate value per algorithm, SHA-256 first.
    Challenge { www_authenticate: Vec<String> },
    /// 403; the reason is for logs, not for the wire.
    Forbidden(&'static str),
    /// 404
    NotFound,
    /// 423 with `Min-Expires`.
    IntervalTooBrief { min_expires: u32 },
    /// 400 with a reason phrase.
    BadRequest(&'static str),
    /// 500: same Call-ID with a CSeq not above the stored one (§10.3 step 7).
    OutOfOrder,
    /// 503 "Too Many Registered Contacts" (Kamailio's wording).
    TooManyContacts { max: usize },
}

impl RegisterReply {
    pub fn status(&self) -> u16 {
        match self {
            RegisterReply::Ok { .. } => 200,
            RegisterReply::Challenge { .. } => 401,
            RegisterReply::Forbidden(_) => 403,
            RegisterReply::NotFound => 404,
            RegisterReply::IntervalTooBrief { .. } => 423,
            RegisterReply::BadRequest(_) => 400,
            RegisterReply::OutOfOrder => 500,
            RegisterReply::TooManyContacts { .. } => 503,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            RegisterReply::Ok { .. } => "OK",
            RegisterReply::Challenge { .. } => "Unauthorized",
            RegisterReply::Forbidden(_) => "Forbidden",
            RegisterReply::NotFound => "Not Found",
            RegisterReply::IntervalTooBrief { .. } => "Interval Too Brief",
            RegisterReply::BadRequest(r) => r,
            RegisterReply::OutOfOrder => "Out Of Order",
            RegisterReply::TooManyContacts { .. } => "Too Many Registered Contacts",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RegisterOutcome {
    pub reply: RegisterReply,
    /// For the store, in order. Empty unless bindings changed.
    pub changes: Vec<Change>,
}

pub struct Registrar {
    cfg: RegistrarConfig,
    nonces: NonceKey,
    agents: HashMap<String, AgentDef>,
    /// Per agent, at most `max_contacts` (small), so a Vec beats a map.
    bindings: HashMap<String, Vec<Binding>>,
    /// (expires_at_ms, agent, contact): the reaper's queue.
    expiries: BTreeSet<(u64, String, String)>,
}

impl Registrar {
    pub fn new(
        cfg: RegistrarConfig,
        agents: impl IntoIterator<Item = AgentDef>,
        nonces: NonceKey,
    ) -> Self {
        Registrar {
            cfg,
            nonces,
            agents: agents.into_iter().map(|a| (a.id.clone(), a)).collect(),
            bindings: HashMap::new(),
            expiries: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.cfg
    }

    pub fn agent(&self, id: &str) -> Option<&AgentDef> {
        self.agents.get(id)
    }

    /// Current bindings of an agent (may include ones past expiry until the
    /// next `reap`; the call layer should call `reap` from its timer).
    pub fn bindings(&self, agent: &str) -> &[Binding] {
        self.bindings.get(agent).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Bindings of `agent` still valid at `now_ms`, best `q` first (absent
    /// q counts as 1.0, RFC 3261 §20.10), then most recently registered:
    /// the order in which the call layer should try them.
    pub fn live_bindings(&self, agent: &str, now_ms: u64) -> Vec<&Binding> {
        let mut v: Vec<&Binding> = self
            .bindings(agent)
            .iter()
            .filter(|b| b.expires_at_ms > now_ms)
            .collect();
        v.sort_by(|a, b| {
            let (qa, qb) = (a.q.unwrap_or(1.0), b.q.unwrap_or(1.0));
            qb.total_cmp(&qa)
                .then(b.registered_at_ms.cmp(&a.registered_at_ms))
        });
        v
    }

    pub fn all_bindings(&self) -> impl Iterator<Item = &Binding> {
        self.bindings.values().flatten()
    }

    /// Replaces the agent list (config reload). Bindings of agents that are
    /// gone are removed; the returned `Remove`s go to the store.
    pub fn set_agents(&mut self, agents: impl IntoIterator<Item = AgentDef>) -> Vec<Change> {
        self.agents = agents.into_iter().map(|a| (a.id.clone(), a)).collect();
        let gone: Vec<String> = self
            .bindings
            .keys()
            .filter(|id| !self.agents.contains_key(*id))
            .cloned()
            .collect();
        gone.iter()
            .flat_map(|id| self.replace_agent_bindings(id, Vec::new()))
            .collect()
    }

    /// Loads bindings from the store at start. Returns `Remove`s for those
    /// already expired and for agents no longer in the config.
    pub fn restore(&mut self, stored: Vec<Binding>, now_ms: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        for b in stored {
            if b.expires_at_ms <= now_ms || !self.agents.contains_key(&b.agent) {
                changes.push(Change::Remove {
                    agent: b.agent,
                    contact: b.contact_uri,
                });
                continue;
            }
            let list = self.bindings.entry(b.agent.clone()).or_default();
            if let Some(old) = list.iter_mut().find(|x| x.contact_uri == b.contact_uri) {
                self.expiries.remove(&(
                    old.expires_at_ms,
                    old.agent.clone(),
                    old.contact_uri.clone(),
                ));
                *old = b.clone();
            } else {
                list.push(b.clone());
            }
            self.expiries
                .insert((b.expires_at_ms, b.agent, b.contact_uri));
        }
        changes
    }

    /// When the earliest binding expires: arm the reaper timer for it.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiries.first().map(|(t, _, _)| *t)
    }

    /// Removes every binding with `expires_at_ms <= now_ms`.
    pub fn reap(&mut self, now_ms: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        while let Some((t, agent, contact)) = self.expiries.first().cloned() {
            if t > now_ms {
                break;
            }
            self.expiries.pop_first();
            if let Some(list) = self.bindings.get_mut(&agent) {
                list.retain(|b| b.contact_uri != contact);
                if list.is_empty() {
                    self.bindings.remove(&agent);
                }
            }
            changes.push(Change::Remove { agent, contact });
        }
        changes
    }

    /// The 401 challenge values, SHA-256 first (RFC 7616 §3.7: the client
    /// uses the first one it supports, so the strongest goes first).
    pub fn challenge(&self, now_ms: u64, stale: bool) -> Vec<String> {
        let nonce = self.nonces.issue(&self.cfg.realm, now_ms);
        self.cfg
            .algorithms
            .iter()
            .copied()
            .map(|a| auth::challenge_header(&self.cfg.realm, a, &nonce, stale))
            .collect()
    }

    pub fn handle_register(&mut self, req: &RegisterRequest, now_ms: u64) -> RegisterOutcome {
        let reply = |reply| RegisterOutcome {
            reply,
            changes: Vec::new(),
        };
        let Some(agent) = self.agents.get(&req.user) else {
            return reply(RegisterReply::NotFound);
        };
        if let Err(r) = self.authenticate(req, agent, "REGISTER", now_ms) {
            return reply(r);
        }
        // Expired-but-not-yet-reaped bindings must not count (limits, ordering).
        let mut changes = self.reap_agent(&req.user, now_ms);
        let result = match &req.contacts {
            ContactSet::None => Ok(Vec::new()),
            ContactSet::List(l) if l.is_empty() => Ok(Vec::new()),
            ContactSet::Star => self.unregister_all(req),
            ContactSet::List(l) => self.update(req, l, now_ms),
        };
        match result {
            Ok(mut c) => {
                changes.append(&mut c);
                let contacts = self
                    .bindings(&req.user)
                    .iter()
                    .map(|b| (b.contact_uri.clone(), b.remaining_secs(now_ms)))
                    .collect();
                RegisterOutcome {
                    reply: RegisterReply::Ok { contacts },
                    changes,
                }
            }
            // The reaped Removes still stand: they are true whatever the reply.
            Err(r) => RegisterOutcome { reply: r, changes },
        }
    }

    /// Digest-checks another request of agent `user` (a feature-code
    /// INVITE) by the very rules of REGISTER: same realm, nonces, replies.
    /// An unknown user is `NotFound`, as for REGISTER.
    pub fn check_digest(
        &self,
        user: &str,
        method: &str,
        request_uri: &str,
        authorizations: &[String],
        source: SocketAddr,
        now_ms: u64,
    ) -> Result<(), RegisterReply> {
        let Some(agent) = self.agents.get(user) else {
            return Err(RegisterReply::NotFound);
        };
        let req = RegisterRequest {
            user: user.to_string(),
            contacts: ContactSet::None,
            expires: None,
            authorizations: authorizations.to_vec(),
            method_uri: request_uri.to_string(),
            call_id: String::new(),
            cseq: 0,
            source,
            user_agent: None,
        };
        self.authenticate(&req, agent, method, now_ms)
    }

    fn authenticate(
        &self,
        req: &RegisterRequest,
        agent: &AgentDef,
        method: &str,
        now_ms: u64,
    ) -> Result<(), RegisterReply> {
        let realm = &self.cfg.realm;
        let mut malformed = false;
        let mut ours = None;
        for h in &req.authorizations {
            match auth::parse_authorization(h) {
                Ok(r) if r.realm == *realm => {
                    ours = Some(r);
                    break;
                }
                // Another realm's credentials, another scheme, or an algorithm
                // we did not offer: not ours, so as if absent.
                Ok(_) | Err(AuthError::NotDigest | AuthError::UnsupportedAlgorithm(_)) => {}
                Err(e) => {
                    tracing::debug!(user = %req.user, error = %e, "malformed Authorization");
                    malformed = true;
                }
            }
        }
        let challenge = |stale| RegisterReply::Challenge {
            www_authenticate: self.challenge(now_ms, stale),
        };
        let Some(r) = ours else {
            return Err(if malformed {
                RegisterReply::BadRequest("Malformed Authorization Header")
            } else {
                challenge(false)
            });
        };
        let status = self
            .nonces
            .check(&r.nonce, realm, now_ms, self.cfg.nonce_lifetime_ms);
        if status == NonceStatus::Invalid {
            return Err(challenge(false));
        }
        if r.qop.is_none() {
            return Err(RegisterReply::BadRequest("Digest Without qop"));
        }
        if r.username != req.user {
            return Err(RegisterReply::Forbidden(
                "digest username differs from To user",
            ));
        }
        if !r.uri.trim().eq_ignore_ascii_case(req.method_uri.trim()) {
            return Err(RegisterReply::BadRequest("Digest URI Mismatch"));
        }
        let good = auth::verify(&r, method, &agent.password, realm);
        match (status, good) {
            (NonceStatus::Valid, true) => Ok(()),
            (NonceStatus::Valid, false) => Err(RegisterReply::Forbidden("wrong credentials")),
            (_, good) => Err(challenge(good)),
        }
    }

    fn reap_agent(&mut self, agent: &str, now_ms: u64) -> Vec<Change> {
        let Some(list) = self.bindings.get_mut(agent) else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        list.retain(|b| {
            if b.expires_at_ms > now_ms {
                return true;
            }
            self.expiries
                .remove(&(b.expires_at_ms, b.agent.clone(), b.contact_uri.clone()));
            changes.push(Change::Remove {
                agent: b.agent.clone(),
                contact: b.contact_uri.clone(),
            });
            false
        });
        if list.is_empty() {
            self.bindings.remove(agent);
        }
        changes
    }

    /// `Contact: *` (RFC 3261 §10.3 step 6).
    fn unregister_all(&mut self, req: &RegisterRequest) -> Result<Vec<Change>, RegisterReply> {
        if req.expires != Some(0) {
            return Err(RegisterReply::BadRequest("Contact * Requires Expires 0"));
        }
        let existing = self.bindings(&req.user);
        if existing
            .iter()
            .any(|b| b.call_id == req.call_id && req.cseq <= b.cseq)
        {
            return Err(RegisterReply::OutOfOrder);
        }
        Ok(self.replace_agent_bindings(&req.user, Vec::new()))
    }

    /// Adds, refreshes and removes the listed contacts, atomically: any error
    /// leaves every binding as it was.
    fn update(
        &mut self,
        req: &RegisterRequest,
        list: &[ContactParam],
        now_ms: u64,
    ) -> Result<Vec<Change>, RegisterReply> {
        let cfg = &self.cfg;
        // Bounds the quadratic de-duplication below; no real UA lists this many.
        if list.len() > MAX_CONTACTS_PER_REQUEST {
            return Err(RegisterReply::TooManyContacts {
                max: cfg.max_contacts,
            });
        }
        let mut wanted: Vec<(&ContactParam, u32)> = Vec::with_capacity(list.len());
        for c in list {
            if parse_sip_uri(&c.uri).is_none() {
                return Err(RegisterReply::BadRequest("Contact Is Not A SIP URI"));
            }
            let e = c.expires.or(req.expires).unwrap_or(cfg.default_expires);
            if e != 0 && e < cfg.min_expires {
                return Err(RegisterReply::IntervalTooBrief {
                    min_expires: cfg.min_expires,
                });
            }
            // The same contact twice in one request: the last one wins.
            wanted.retain(|(w, _)| w.uri != c.uri);
            wanted.push((c, e.min(cfg.max_expires)));
        }

        let existing = self.bindings(&req.user);
        for (c, _) in &wanted {
            if let Some(b) = existing.iter().find(|b| b.contact_uri == c.uri) {
                if b.call_id == req.call_id && req.cseq <= b.cseq {
                    return Err(RegisterReply::OutOfOrder);
                }
            }
        }

        let mut next: Vec<Binding> = existing.to_vec();
        let mut touched: Vec<&str> = Vec::new();
        let mut added = 0usize;
        for (c, e) in wanted {
            let pos = next.iter().position(|b| b.contact_uri == c.uri);
            if e == 0 {
                if let Some(p) = pos {
                    next.remove(p);
                }
                continue;
            }
            let (target, received) = resolve_target(&c.uri, c.ob, req.source);
            let old = pos.and_then(|p| next.get_mut(p));
            let b = Binding {
                agent: req.user.clone(),
                contact_uri: c.uri.clone(),
                target,
                received,
                expires_at_ms: now_ms.saturating_add(u64::from(e) * 1000),
                call_id: req.call_id.clone(),
                cseq: req.cseq,
                user_agent: req.user_agent.clone(),
                registered_at_ms: old.as_ref().map_or(now_ms, |o| o.registered_at_ms),
                // RFC 3261 §20.10: q is 0..=1; NaN would not survive JSON anyway.
                q: c.q.filter(|q| q.is_finite()).map(|q| q.clamp(0.0, 1.0)),
            };
            match old {
                Some(o) => *o = b,
                None => {
                    added += 1;
                    next.push(b);
                }
            }
            touched.push(&c.uri);
        }

        let max = cfg.max_contacts;
        // Only new contacts can push an agent over the limit; refreshes of
        // existing ones are always accepted (e.g. after max_contacts shrank).
        if next.len() > max && added > 0 {
            match cfg.overflow {
                OverflowPolicy::Reject => return Err(RegisterReply::TooManyContacts { max }),
                OverflowPolicy::ReplaceOldest => {
                    while next.len() > max {
                        let victim = next
                            .iter()
                            .enumerate()
                            .filter(|(_, b)| !touched.contains(&b.contact_uri.as_str()))
                            .min_by_key(|(_, b)| b.expires_at_ms)
                            .map(|(i, _)| i);
                        match victim {
                            Some(i) => {
                                next.remove(i);
                            }
                            // The request alone lists more than max contacts.
                            None => return Err(RegisterReply::TooManyContacts { max }),
                        }
                    }
                }
            }
        }
        Ok(self.replace_agent_bindings(&req.user, next))
    }

    /// Installs `next` as the agent's bindings and returns the diff.
    fn replace_agent_bindings(&mut self, agent: &str, next: Vec<Binding>) -> Vec<Change> {
        let old = self.bindings.remove(agent).unwrap_or_default();
        let mut changes = Vec::new();
        for b in &old {
            self.expiries
                .remove(&(b.expires_at_ms, b.agent.clone(), b.contact_uri.clone()));
            if !next.iter().any(|n| n.contact_uri == b.contact_uri) {
                changes.push(Change::Remove {
                    agent: b.agent.clone(),
                    contact: b.contact_uri.clone(),
                });
            }
        }
        for b in &next {
            self.expiries
                .insert((b.expires_at_ms, b.agent.clone(), b.contact_uri.clone()));
            if old.iter().find(|o| o.contact_uri == b.contact_uri) != Some(b) {
                changes.push(Change::Upsert(b.clone()));
            }
        }
        if !next.is_empty() {
            self.bindings.insert(agent.to_string(), next);
        }
        changes
    }
}

#[cfg(test)]
#[path = "registrar_tests.rs"]
mod tests;
