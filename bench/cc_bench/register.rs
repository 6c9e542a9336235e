//! Digest-authenticated registration, as a phone does it after boot:
//! REGISTER → 401 (challenge) → REGISTER with Authorization → 200.
//! One operation = both round trips. Each agent keeps its Call-ID and raises
//! CSeq (RFC 3261 §10.2.4), so overlapping operations stay ordered.
//! No retransmissions: over loopback a lost datagram is a socket overflow,
//! which is exactly what the benchmark must count (as `REGISTER timeout`).

use crate::net::now_ns;
use crate::sip_ua::{authorization, pick_challenge, Msg};
use crate::worker::{Timer, Worker};

pub struct RegTxn {
    pub agent: usize,
    pub op_start: u64,
    pub sent: u64,
    pub stage: u8,
    pub done: bool,
}

/// What the RegOp timer does: which agents, how often, until when.
#[derive(Default)]
pub struct RegPlan {
    pub next: usize,
    /// Operations left (None = until `end`).
    pub remaining: Option<usize>,
    /// Operation k starts at `start + round(k * interval_ns)`: no drift
    /// from truncated intervals, exactly rate × duration operations.
    pub interval_ns: f64,
    pub start: u64,
    pub k: u64,
    pub end: u64,
}

impl Worker {
    /// Starts registering per `plan` from time `t0`.
    pub fn start_registrations(&mut self, t0: u64, plan: RegPlan) {
        if self.agents.is_empty() || plan.remaining == Some(0) {
            return;
        }
        self.reg_plan = plan;
        self.reg_plan.start = t0;
        self.reg_plan.k = 0;
        self.reg_plan_active = true;
        self.arm(t0, Timer::RegOp);
    }

    pub fn reg_outstanding(&self) -> usize {
        self.reg_txn.values().filter(|t| !t.done).count()
    }

    pub(crate) fn on_reg_op(&mut self, at: u64) {
        let a = self.reg_plan.next % self.agents.len();
        self.reg_plan.next += 1;
        if let Some(r) = &mut self.reg_plan.remaining {
            *r -= 1;
        }
        self.send_register(a, at, None);
        let _ = at;
        self.reg_plan.k += 1;
        let next = self.reg_plan.start
            + (self.reg_plan.k as f64 * self.reg_plan.interval_ns).round() as u64;
        if self.reg_plan.remaining != Some(0) && next < self.reg_plan.end {
            self.arm(next, Timer::RegOp);
        } else {
            self.reg_plan_active = false;
        }
    }

    fn send_register(&mut self, a: usize, op_start: u64, auth: Option<String>) {
        let branch = self.unique("z9hG4bKr");
        let tag = self.unique("t");
        let local = self.sip[self.agents[a].sock].local;
        let d = self.p.domain.clone();
        let ag = &mut self.agents[a];
        ag.cseq += 1;
        let mut s = format!(
            "REGISTER sip:{d} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@{d}>;tag={tag}\r\nTo: <sip:{u}@{d}>\r\nCall-ID: {cid}\r\nCSeq: {n} REGISTER\r\nContact: <sip:{u}@{local}>\r\nExpires: {e}\r\nUser-Agent: cc-bench\r\n",
            u = ag.user,
            cid = ag.call_id,
            n = ag.cseq,
            e = if self.unregistering { 0 } else { self.p.expires }
        );
        let stage = if let Some(h) = auth {
            s.push_str("Authorization: ");
            s.push_str(&h);
            s.push_str("\r\n");
            2
        } else {
            1
        };
        s.push_str("Content-Length: 0\r\n\r\n");
        let sock = self.agents[a].sock;
        let sent = now_ns();
        self.send_sip(sock, s.as_bytes(), self.p.engine);
        if !self.unregistering {
            self.stats.inc("REGISTER sent", 1);
        }
        self.reg_txn.insert(
            branch.clone(),
            RegTxn {
                agent: a,
                op_start,
                sent,
                stage,
                done: false,
            },
        );
        self.arm(sent + self.p.timeout_ns, Timer::RegTimeout(branch));
    }

    pub(crate) fn on_register_response(&mut self, m: &Msg, ts: u64) {
        let code = m.code();
        if code < 200 {
            return;
        }
        let Some(t) = self.reg_txn.get_mut(m.branch()) else {
            self.stats.inc("stray responses", 1);
            return;
        };
        if t.done {
            self.stats.inc("duplicate responses", 1);
            return;
        }
        t.done = true;
        let (a, op_start, sent, stage) = (t.agent, t.op_start, t.sent, t.stage);
        if !self.unregistering {
            self.stats.record("register_rtt", ts.saturating_sub(sent));
        }
        match (stage, code) {
            (1, 401) => {
                let Some(ch) = pick_challenge(m, self.p.prefer_alg) else {
                    self.stats.fail("REGISTER 401 without usable challenge");
                    return;
                };
                let cnonce = self.unique("c");
                let ag = &self.agents[a];
                let uri = format!("sip:{}", self.p.domain);
                let h = authorization(&ch, &ag.user, &ag.password, "REGISTER", &uri, &cnonce);
                self.send_register(a, op_start, Some(h));
            }
            (2, 200..=299) if self.unregistering => {
                self.agents[a].registered = false;
            }
            (2, 200..=299) => {
                self.stats
                    .record("registration", ts.saturating_sub(op_start));
                self.stats.inc("registrations", 1);
                self.agents[a].registered = true;
            }
            (_, c) if self.unregistering => self.stats.inc(&format!("unREGISTER {c}"), 1),
            (_, c) => self.stats.fail(&format!("REGISTER {c}")),
        }
    }

    pub(crate) fn on_reg_timeout(&mut self, branch: &str) {
        if let Some(t) = self.reg_txn.remove(branch) {
            if !t.done && self.unregistering {
                self.stats.inc("unREGISTER timeout", 1);
            } else if !t.done {
                self.stats.fail("REGISTER timeout");
            }
        }
    }

    /// At the end of the run: operations still waiting for an answer are
    /// timeouts (the deadline came first), never silently dropped.
    pub fn count_unfinished_registrations(&mut self) {
        let n = self.reg_txn.values().filter(|t| !t.done).count();
        for _ in 0..n {
            self.stats.fail("REGISTER timeout");
        }
        self.reg_txn.clear();
    }

    /// Blocks (runs the loop) until every agent of this worker registered
    /// once, or `deadline`. Returns false if some failed.
    pub fn register_all(&mut self, rate_per_worker: f64, deadline: u64) -> bool {
        let n = self.agents.len();
        if n == 0 {
            return true;
        }
        let interval = 1e9 / rate_per_worker.max(1.0);
        let t0 = now_ns();
        self.reg_plan_active = true;
        self.start_registrations(
            t0,
            RegPlan {
                next: 0,
                remaining: Some(n),
                interval_ns: interval,
                start: 0,
                k: 0,
                end: u64::MAX,
            },
        );
        self.run_until(deadline, |w| !w.reg_plan_active && w.reg_outstanding() == 0);
        self.reg_txn.clear();
        self.agents.iter().all(|a| a.registered)
    }
}

impl Worker {
    /// Removes this run's contacts (REGISTER Expires: 0, authenticated),
    /// so the next run's agents are not shadowed by dead contacts. Not
    /// measured; problems are counted as `unREGISTER ...`.
    pub fn unregister_all(&mut self, rate_per_worker: f64, deadline: u64) {
        let regs: Vec<bool> = self.agents.iter().map(|a| a.registered).collect();
        if !regs.iter().any(|r| *r) {
            return;
        }
        self.unregistering = true;
        self.reg_txn.clear();
        self.register_all(rate_per_worker, deadline);
        self.unregistering = false;
    }
}
