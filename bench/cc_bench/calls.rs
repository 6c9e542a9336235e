//! Both sides of a queued call.
//!
//! Customer: `INVITE sip:<queue>@<domain>` with SDP → 1xx → 200 (ACK) or a
//! final error (ACK, counted by code) → BYE on schedule, or BYE from the
//! engine when the agent side hangs up. Arrivals are open-loop timers: a
//! call starts at its time whatever earlier calls are doing.
//!
//! Agent: answers the engine's INVITE (180, then 200 after --answer-delay,
//! or 200 at once), expects ACK, hangs up on schedule or answers the
//! engine's BYE.
//!
//! Which side hangs up: even-numbered customer calls hang up themselves,
//! odd-numbered ones are hung up by the agent, so both BYE directions run.
//! The customer's call token (`ccbk<hex>x`) is in its From user and display
//! name; the agent finds it anywhere in the engine's INVITE (a B2BUA copies
//! the caller id) and uses it to join "customer INVITE → agent INVITE".

use std::net::SocketAddr;

use crate::net::now_ns;
use crate::sip_ua::{self, Msg};
use crate::worker::{Event, Timer, Worker};

#[derive(Default)]
pub struct CallPlan {
    pub active: bool,
    /// Arrival k at `start + round(k * interval_ns)` (no drift).
    pub interval_ns: f64,
    pub start: u64,
    pub k: u64,
    pub end: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CState {
    Inviting,
    Early,
    Up,
    Cancelling,
    Byeing,
}

pub struct CustCall {
    pub token: u64,
    pub sock: usize,
    pub from_tag: String,
    pub branch: String,
    pub to_tag: Option<String>,
    pub to_hdr: String,
    pub target: String,
    pub t_inv: u64,
    pub state: CState,
    pub stream: Option<usize>,
    pub customer_hangs_up: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AState {
    Ringing,
    Answered,
    Up,
    Byeing,
    Ended,
}

pub struct AgentCall {
    pub agent: usize,
    pub sock: usize,
    pub from: SocketAddr,
    pub invite: Vec<u8>,
    pub to_tag: String,
    pub token: Option<u64>,
    pub akey: u64,
    pub state: AState,
    pub last_response: Vec<u8>,
    pub stream: Option<usize>,
    pub media: Option<SocketAddr>,
    pub acked: bool,
}

/// The customer token inside any text (`ccbk<hex>x`).
pub fn find_token(text: &str) -> Option<u64> {
    let i = text.find("ccbk")?;
    let rest = &text[i + 4..];
    let end = rest.find(|c: char| !c.is_ascii_hexdigit())?;
    if &rest[end..end + 1] != "x" {
        return None;
    }
    u64::from_str_radix(&rest[..end], 16).ok()
}

impl Worker {
    pub fn start_calls(&mut self, t0: u64, rate_per_worker: f64, end: u64) {
        let interval = 1e9 / rate_per_worker.max(1e-9);
        // Stagger workers so arrivals interleave evenly.
        let offset = (interval / self.p.workers as f64 * self.id as f64).round() as u64;
        self.call_plan = CallPlan {
            active: true,
            interval_ns: interval,
            start: t0 + offset,
            k: 0,
            end,
        };
        if t0 + offset < end {
            self.arm(t0 + offset, Timer::CallArrival);
        } else {
            self.call_plan.active = false;
            self.sh
                .senders_done
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub(crate) fn on_call_arrival(&mut self, at: u64) {
        let _ = at;
        self.call_plan.k += 1;
        let next = self.call_plan.start
            + (self.call_plan.k as f64 * self.call_plan.interval_ns).round() as u64;
        if next < self.call_plan.end {
            self.arm(next, Timer::CallArrival);
        } else {
            self.call_plan.active = false;
            self.sh
                .senders_done
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let n = self.next_id();
        let token = ((self.id as u64) << 40) | n;
        let sock = (n as usize) % self.sip.len();
        let local = self.sip[sock].local;
        let d = self.p.domain.clone();
        let q = self.p.queue.clone();
        let cid = format!("ccbk{token:x}x-{:x}@cc-bench", self.p.run_id);
        let tag = self.unique("t");
        let branch = self.unique("z9hG4bKi");
        let body = sip_ua::sdp(self.rtp_cust.local, token);
        let to_hdr = format!("<sip:{q}@{d}>");
        let msg = format!(
            "INVITE sip:{q}@{d} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: \"ccbk{token:x}x\" <sip:ccbk{token:x}x@{d}>;tag={tag}\r\nTo: {to_hdr}\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:ccbk{token:x}x@{local}>\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\nUser-Agent: cc-bench\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let t = now_ns();
        self.send_sip(sock, msg.as_bytes(), self.p.engine);
        self.stats.inc("calls attempted", 1);
        self.events.push(Event::CustInvite { token, t });
        self.live_tokens.insert(token, cid.clone());
        self.sh
            .active_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sh
            .open_legs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let customer_hangs_up = self.p.wait_only || n.is_multiple_of(2);
        self.cust.insert(
            cid.clone(),
            CustCall {
                token,
                sock,
                from_tag: tag,
                branch,
                to_tag: None,
                to_hdr,
                target: format!("sip:{q}@{d}"),
                t_inv: t,
                state: CState::Inviting,
                stream: None,
                customer_hangs_up,
            },
        );
        self.arm(t + self.p.timeout_ns, Timer::CustTimeout(cid));
    }

    fn cust_end(&mut self, cid: &str) {
        if let Some(c) = self.cust.remove(cid) {
            self.live_tokens.remove(&c.token);
            if let Some(s) = c.stream {
                self.streams[s].active = false;
            }
            self.sh
                .active_calls
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            self.sh
                .open_legs
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// In-dialog request from the customer (ACK, BYE, CANCEL).
    fn cust_request(
        &mut self,
        cid: &str,
        method: &str,
        cseq: u32,
        branch: Option<&str>,
    ) -> Vec<u8> {
        let c = &self.cust[cid];
        let local = self.sip[c.sock].local;
        let d = &self.p.domain;
        let br = match branch {
            Some(b) => b.to_string(),
            None => format!("z9hG4bKb{:x}", now_ns()),
        };
        let to = match &c.to_tag {
            Some(t) => format!("{};tag={t}", c.to_hdr),
            None => c.to_hdr.clone(),
        };
        let ruri = if method == "CANCEL" {
            format!("sip:{}@{}", self.p.queue, d)
        } else {
            c.target.clone()
        };
        format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={br};rport\r\nMax-Forwards: 70\r\nFrom: \"ccbk{t:x}x\" <sip:ccbk{t:x}x@{d}>;tag={ft}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nUser-Agent: cc-bench\r\nContent-Length: 0\r\n\r\n",
            t = c.token,
            ft = c.from_tag
        )
        .into_bytes()
    }

    pub(crate) fn on_cust_response(&mut self, m: &Msg, ts: u64) {
        let cid = m.call_id().to_string();
        let code = m.code();
        let (_, method) = m.cseq();
        let Some(c) = self.cust.get_mut(&cid) else {
            return;
        };
        match method {
            "INVITE" => {
                if code < 200 {
                    if code >= 180 && c.state == CState::Inviting {
                        c.state = CState::Early;
                        c.to_tag = m.to_tag().map(str::to_string);
                        self.stats.inc("calls ringing (18x)", 1);
                        if self.p.wait_only {
                            let t = ts + self.p.talk_ns;
                            self.arm(t, Timer::CustHangup(cid));
                        }
                    }
                    return;
                }
                if code < 300 {
                    let first = matches!(
                        c.state,
                        CState::Inviting | CState::Early | CState::Cancelling
                    );
                    c.to_tag = m.to_tag().map(str::to_string);
                    if let Some(t) = m.contact_uri() {
                        c.target = t.to_string();
                    }
                    let ack = self.cust_request(&cid, "ACK", 1, None);
                    let sock = self.cust[&cid].sock;
                    self.send_sip(sock, &ack, m_source(self));
                    if !first {
                        self.stats.inc("200 retransmissions (ACK resent)", 1);
                        return;
                    }
                    let c = self.cust.get_mut(&cid).unwrap();
                    let was_cancelling = c.state == CState::Cancelling;
                    self.stats.record("invite_200", ts.saturating_sub(c.t_inv));
                    self.stats.inc("calls answered (200)", 1);
                    c.state = CState::Up;
                    if was_cancelling {
                        self.on_cust_hangup(&cid);
                        return;
                    }
                    let token = c.token;
                    let hangs = c.customer_hangs_up;
                    if self.p.rtp {
                        if let Some(dst) = sip_ua::sdp_addr(m.body) {
                            let s = self.start_stream(dst, false, token, 0);
                            self.cust.get_mut(&cid).unwrap().stream = Some(s);
                        } else {
                            self.stats.fail("200 without usable SDP");
                        }
                    }
                    if hangs {
                        // Without RTP the customer cannot tell when the agent
                        // answered: it hangs up --talk after 200 (+ the
                        // agent's answer delay). With RTP it hangs up --talk
                        // after it first hears the agent (relay.rs), and this
                        // timer only ends a call no agent ever took.
                        let at = if self.p.wait_only {
                            ts + self.p.talk_ns
                        } else if self.p.rtp {
                            ts + self.p.timeout_ns + self.p.answer_delay_ns + self.p.talk_ns
                        } else {
                            ts + self.p.answer_delay_ns + self.p.talk_ns
                        };
                        self.arm(at, Timer::CustHangup(cid));
                    }
                    return;
                }
                // Final error: ACK it (same branch), count it, done.
                let state = c.state;
                c.to_tag = m.to_tag().map(str::to_string);
                let branch = c.branch.clone();
                let sock = c.sock;
                let ack = self.cust_request(&cid, "ACK", 1, Some(&branch));
                self.send_sip(sock, &ack, self.p.engine);
                if state == CState::Cancelling && code == 487 {
                    self.stats.inc("calls cancelled while waiting", 1);
                } else {
                    self.stats.fail(&format!("INVITE {code}"));
                    let token = self.cust[&cid].token;
                    self.events.push(Event::CustFailed { token });
                }
                self.cust_end(&cid);
            }
            "BYE" => {
                if c.state != CState::Byeing {
                    return;
                }
                if (200..300).contains(&code) {
                    self.stats.inc("calls ended by customer", 1);
                } else if code >= 200 {
                    self.stats.fail(&format!("customer BYE {code}"));
                } else {
                    return;
                }
                self.cust_end(&cid);
            }
            _ => {}
        }
    }

    pub(crate) fn on_cust_request(&mut self, sock: usize, m: &Msg, from: SocketAddr, _ts: u64) {
        let cid = m.call_id().to_string();
        match m.method() {
            "BYE" => {
                let r = sip_ua::response(m, 200, "OK", None, "", b"");
                self.send_sip(sock, &r, from);
                let c = &self.cust[&cid];
                match c.state {
                    CState::Up | CState::Byeing => {
                        if self.p.wait_only {
                            self.stats.fail("waiting call hung up by engine");
                        } else {
                            self.stats.inc("calls ended by agent", 1);
                        }
                    }
                    _ => self.stats.fail("BYE before answer"),
                }
                self.cust_end(&cid);
            }
            _ => {
                let r = sip_ua::response(m, 481, "Call/Transaction Does Not Exist", None, "", b"");
                self.send_sip(sock, &r, from);
            }
        }
    }

    pub(crate) fn on_cust_timeout(&mut self, cid: &str) {
        let Some(c) = self.cust.get_mut(cid) else {
            return;
        };
        match c.state {
            CState::Inviting => {
                self.stats.fail("INVITE timeout");
                let token = c.token;
                self.events.push(Event::CustFailed { token });
                self.cust_end(cid);
            }
            CState::Early if !self.p.wait_only => {
                // Rang (on-agent queue) but no agent answered in time.
                c.state = CState::Cancelling;
                self.stats.fail("INVITE timeout after 18x");
                let token = c.token;
                self.events.push(Event::CustFailed { token });
                let cancel = self.cust_cancel(cid);
                let sock = self.cust[cid].sock;
                self.send_sip(sock, &cancel, self.p.engine);
                self.arm(
                    now_ns() + self.p.timeout_ns,
                    Timer::CustByeTimeout(cid.to_string()),
                );
            }
            _ => {}
        }
    }

    fn cust_cancel(&mut self, cid: &str) -> Vec<u8> {
        let c = &self.cust[cid];
        let branch = c.branch.clone();
        let saved = self.cust.get_mut(cid).unwrap().to_tag.take();
        let msg = self.cust_request(cid, "CANCEL", 1, Some(&branch));
        self.cust.get_mut(cid).unwrap().to_tag = saved;
        msg
    }

    pub(crate) fn on_cust_hangup(&mut self, cid: &str) {
        let Some(c) = self.cust.get_mut(cid) else {
            return;
        };
        match c.state {
            CState::Up => {
                c.state = CState::Byeing;
                if let Some(s) = c.stream.take() {
                    self.streams[s].active = false;
                }
                let sock = c.sock;
                let bye = self.cust_request(cid, "BYE", 2, None);
                self.send_sip(sock, &bye, self.p.engine);
                self.arm(
                    now_ns() + self.p.timeout_ns,
                    Timer::CustByeTimeout(cid.to_string()),
                );
            }
            CState::Early => {
                c.state = CState::Cancelling;
                let sock = c.sock;
                let cancel = self.cust_cancel(cid);
                self.send_sip(sock, &cancel, self.p.engine);
                self.arm(
                    now_ns() + self.p.timeout_ns,
                    Timer::CustByeTimeout(cid.to_string()),
                );
            }
            _ => {}
        }
    }

    pub(crate) fn on_cust_bye_timeout(&mut self, cid: &str) {
        let Some(c) = self.cust.get(cid) else { return };
        match c.state {
            CState::Byeing => self.stats.fail("lost BYE (customer BYE unanswered)"),
            CState::Cancelling => self.stats.fail("CANCEL unanswered"),
            _ => return,
        }
        self.cust_end(cid);
    }

    // ---- agent side ----

    pub(crate) fn on_agent_request(&mut self, sock: usize, m: &Msg, from: SocketAddr, ts: u64) {
        let cid = m.call_id().to_string();
        let method = m.method();
        if let Some(a) = self.acalls.get_mut(&cid) {
            match method {
                "INVITE" => {
                    // Retransmission: repeat what we said.
                    let r = a.last_response.clone();
                    self.stats.inc("INVITE retransmissions (agent)", 1);
                    if !r.is_empty() {
                        self.send_sip(sock, &r, from);
                    }
                }
                "ACK" => {
                    if a.state == AState::Answered {
                        a.state = AState::Up;
                    }
                    a.acked = true;
                }
                "CANCEL" => {
                    let ok = sip_ua::response(m, 200, "OK", Some(&a.to_tag.clone()), "", b"");
                    self.send_sip(sock, &ok, from);
                    let a = self.acalls.get_mut(&cid).unwrap();
                    if a.state == AState::Ringing {
                        a.state = AState::Ended;
                        self.sh
                            .open_legs
                            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        let inv = a.invite.clone();
                        let tag = a.to_tag.clone();
                        let im = Msg::parse(&inv).unwrap();
                        let r =
                            sip_ua::response(&im, 487, "Request Terminated", Some(&tag), "", b"");
                        self.send_sip(sock, &r, from);
                        self.stats.inc("agent legs cancelled", 1);
                    }
                }
                "BYE" => {
                    let tag = a.to_tag.clone();
                    let r = sip_ua::response(m, 200, "OK", Some(&tag), "", b"");
                    self.send_sip(sock, &r, from);
                    self.agent_end(&cid, true);
                }
                _ => {}
            }
            return;
        }
        match method {
            "INVITE" => self.on_agent_invite(sock, m, from, ts),
            "ACK" => {}
            _ => {
                let r = sip_ua::response(
                    m,
                    481,
                    "Call/Transaction Does Not Exist",
                    Some("ccb"),
                    "",
                    b"",
                );
                self.send_sip(sock, &r, from);
            }
        }
    }

    fn on_agent_invite(&mut self, sock: usize, m: &Msg, from: SocketAddr, ts: u64) {
        let user = m
            .ruri()
            .strip_prefix("sip:")
            .and_then(|r| r.split('@').next())
            .unwrap_or("");
        let Some(&agent) = self.by_user.get(user) else {
            self.stats.inc("INVITEs for unknown agent", 1);
            let r = sip_ua::response(m, 404, "Not Found", Some("ccb"), "", b"");
            self.send_sip(sock, &r, from);
            return;
        };
        self.stats.inc("agent INVITEs", 1);
        self.sh
            .open_legs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = find_token(m.text);
        match token {
            Some(t) => self.events.push(Event::AgentInvite { token: t, t: ts }),
            None => self.stats.inc("agent INVITEs without customer token", 1),
        }
        let akey = ((self.id as u64) << 40) | self.next_id();
        let to_tag = self.unique("a");
        let media = sip_ua::sdp_addr(m.body);
        let mut a = AgentCall {
            agent,
            sock,
            from,
            invite: m
                .text
                .as_bytes()
                .iter()
                .chain(b"\r\n\r\n")
                .chain(m.body)
                .copied()
                .collect(),
            to_tag: to_tag.clone(),
            token,
            akey,
            state: AState::Ringing,
            last_response: Vec::new(),
            stream: None,
            media,
            acked: false,
        };
        let cid = m.call_id().to_string();
        if self.p.answer_delay_ns > 0 {
            a.last_response = sip_ua::response(m, 180, "Ringing", Some(&to_tag), "", b"");
            self.send_sip(sock, &a.last_response.clone(), from);
            self.acalls.insert(cid.clone(), a);
            self.arm(ts + self.p.answer_delay_ns, Timer::AgentAnswer(cid));
        } else {
            self.acalls.insert(cid.clone(), a);
            self.on_agent_answer(&cid);
        }
    }

    pub(crate) fn on_agent_answer(&mut self, cid: &str) {
        let Some(a) = self.acalls.get(cid) else {
            return;
        };
        if a.state != AState::Ringing {
            return;
        }
        let inv = a.invite.clone();
        let m = Msg::parse(&inv).unwrap();
        let user = &self.agents[a.agent].user;
        let local = self.sip[a.sock].local;
        let body = sip_ua::sdp(self.rtp_agent.local, a.akey);
        let extra = format!("Contact: <sip:{user}@{local}>\r\nContent-Type: application/sdp\r\n");
        let r = sip_ua::response(
            &m,
            200,
            "OK",
            Some(&a.to_tag.clone()),
            &extra,
            body.as_bytes(),
        );
        let (sock, from, akey, token, media) = (a.sock, a.from, a.akey, a.token, a.media);
        let t = now_ns();
        self.send_sip(sock, &r, from);
        self.events.push(Event::Agent200 { akey, t });
        self.stats.inc("agent answers (200)", 1);
        self.sh
            .bridged
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let a = self.acalls.get_mut(cid).unwrap();
        a.last_response = r;
        a.state = AState::Answered;
        if let Some(tk) = token {
            self.agent_tokens.insert(tk);
        }
        if self.p.rtp {
            match media {
                Some(dst) => {
                    let s = self.start_stream(dst, true, token.unwrap_or(0), akey);
                    self.acalls.get_mut(cid).unwrap().stream = Some(s);
                }
                None => self.stats.fail("agent INVITE without usable SDP"),
            }
        }
        // Odd customer calls are hung up by the agent; a call without a
        // token cannot be told apart, so its customer hangs up.
        if let Some(tk) = token {
            if tk & 1 == 1 {
                self.arm(t + self.p.talk_ns, Timer::AgentHangup(cid.to_string()));
            }
        }
    }

    fn agent_end(&mut self, cid: &str, by_remote: bool) {
        let Some(a) = self.acalls.get_mut(cid) else {
            return;
        };
        let was_bridged = matches!(a.state, AState::Answered | AState::Up | AState::Byeing);
        if a.state == AState::Ended {
            return;
        }
        if by_remote && a.state == AState::Ringing {
            self.stats.fail("agent leg: BYE while ringing");
        }
        a.state = AState::Ended;
        if let Some(s) = a.stream.take() {
            self.streams[s].active = false;
        }
        if !a.acked && was_bridged {
            self.stats.fail("agent leg: 200 never ACKed");
        }
        if let Some(t) = a.token {
            self.agent_tokens.remove(&t);
        }
        // Keep the entry (state Ended) to absorb retransmissions; drop the
        // bulky INVITE copy.
        a.invite = Vec::new();
        self.sh
            .open_legs
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if was_bridged {
            self.sh
                .bridged
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub(crate) fn on_agent_hangup(&mut self, cid: &str) {
        let Some(a) = self.acalls.get_mut(cid) else {
            return;
        };
        if !matches!(a.state, AState::Answered | AState::Up) {
            return;
        }
        a.state = AState::Byeing;
        if let Some(s) = a.stream.take() {
            self.streams[s].active = false;
        }
        let m = Msg::parse(&a.invite).unwrap();
        let target = m.contact_uri().unwrap_or("").to_string();
        let their = m.header("from").unwrap_or("").to_string();
        let ours = format!("{};tag={}", m.header("to").unwrap_or(""), a.to_tag);
        let local = self.sip[a.sock].local;
        let (sock, from) = (a.sock, a.from);
        let msg = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKab{:x};rport\r\nMax-Forwards: 70\r\nFrom: {ours}\r\nTo: {their}\r\nCall-ID: {cid}\r\nCSeq: 1 BYE\r\nUser-Agent: cc-bench\r\nContent-Length: 0\r\n\r\n",
            now_ns()
        );
        let dst = sip_ua::uri_addr(&target).unwrap_or(from);
        self.send_sip(sock, msg.as_bytes(), dst);
        self.arm(
            now_ns() + self.p.timeout_ns,
            Timer::AgentByeTimeout(cid.to_string()),
        );
    }

    pub(crate) fn on_agent_response(&mut self, m: &Msg, _ts: u64) {
        let cid = m.call_id().to_string();
        if m.cseq().1 != "BYE" || m.code() < 200 {
            return;
        }
        let Some(a) = self.acalls.get(&cid) else {
            return;
        };
        if a.state != AState::Byeing {
            return;
        }
        if m.code() >= 300 {
            self.stats.fail(&format!("agent BYE {}", m.code()));
        } else {
            self.stats.inc("agent BYEs answered", 1);
        }
        self.agent_end(&cid, false);
    }

    pub(crate) fn on_agent_bye_timeout(&mut self, cid: &str) {
        if let Some(a) = self.acalls.get(cid) {
            if a.state == AState::Byeing {
                self.stats.fail("lost BYE (agent BYE unanswered)");
                self.agent_end(cid, false);
            }
        }
    }

    /// At the end of the run: whatever is still open is a failure, named
    /// by the state it is stuck in.
    pub fn count_unfinished(&mut self) {
        let cs: Vec<CState> = self.cust.values().map(|c| c.state).collect();
        for s in cs {
            let r = match s {
                CState::Up => "lost BYE (customer leg never got BYE)",
                CState::Early => "call still ringing at end",
                _ => "call unfinished at end",
            };
            self.stats.fail(r);
        }
        let asts: Vec<AState> = self.acalls.values().map(|a| a.state).collect();
        for s in asts {
            match s {
                AState::Ended => {}
                AState::Ringing => self.stats.fail("agent leg still ringing at end"),
                _ => self.stats.fail("lost BYE (agent leg never got BYE)"),
            }
        }
    }
}

/// Where in-dialog customer requests go: the engine's address (the engine
/// is the only peer; its Contact names the same socket).
fn m_source(w: &Worker) -> SocketAddr {
    w.p.engine
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_found_anywhere() {
        assert_eq!(
            super::find_token("From: \"ccbk1a2x\" <sip:x@y>"),
            Some(0x1a2)
        );
        assert_eq!(super::find_token("From: <sip:ccbkx@y>"), None);
        assert_eq!(super::find_token("nothing"), None);
    }
}
