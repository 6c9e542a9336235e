//! A signalling shard: one pinned executor that owns a SIP socket (shared
//! port via SO_REUSEPORT), the sans-IO endpoint with its transactions, and
//! the glue that hands REGISTERs to the routing shard.
//!
//! The shard is a few small tasks around one `Core` in a `RefCell`: each
//! task borrows it only while feeding it one input and draining its outputs,
//! never across an `.await`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use glommio::net::UdpSocket;

use super::messages::{Forwarded, FromRouting, ToRouting};
use super::register;
use super::runtime::Shared;
use super::wake::{self, Wake};
use crate::config::Config;
use crate::mgmt::Sample;
use crate::sip::endpoint::{Endpoint, EndpointConfig, Output, ResponseSpec, ServerTxId};
use crate::sip::{DropReason, Timers};

pub struct Context {
    pub id: u16,
    pub shards: u16,
    pub cfg: Config,
    pub socket: socket2::Socket,
    pub to_routing: SharedSender<ToRouting>,
    pub from_routing: SharedReceiver<FromRouting>,
    /// Indexed by destination shard; `None` at our own index.
    pub mesh_tx: Vec<Option<SharedSender<Forwarded>>>,
    pub mesh_rx: Vec<SharedReceiver<Forwarded>>,
    pub shared: Shared,
}

/// What the core asks the shell to do after an input.
enum Effect {
    Send(SocketAddr, Bytes),
    Forward(u16, Forwarded),
    Route(ToRouting),
}

/// The shard's protocol state: the endpoint plus the requests it has handed
/// to the routing shard and not yet answered.
struct Core {
    id: u16,
    ep: Endpoint,
    queues: Vec<String>,
    next_ticket: u64,
    awaiting_routing: HashMap<u64, ServerTxId>,
    /// Responses put on the wire, by status code (100..=699), for /metrics.
    statuses: Box<[u64; 700]>,
    send_errors: u64,
    routing_lost: u64,
}

/// The status code of an outgoing response (`SIP/2.0 NNN ...`), if it is one.
fn status_of(data: &[u8]) -> Option<u16> {
    let code = data.strip_prefix(b"SIP/2.0 ")?.get(..3)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

impl Core {
    /// Moves every pending endpoint output into `out`, answering the
    /// requests the shard handles itself.
    fn drain(&mut self, now: Instant, out: &mut Vec<Effect>) {
        while let Some(o) = self.ep.poll_output() {
            match o {
                Output::Transmit { dest, data } => {
                    if let Some(code) = status_of(&data) {
                        if let Some(c) = self.statuses.get_mut(usize::from(code)) {
                            *c += 1;
                        }
                    }
                    out.push(Effect::Send(dest, data))
                }
                Output::Forward { shard, data, src } => {
                    out.push(Effect::Forward(shard, Forwarded { data, src }))
                }
                Output::Request { tx, request, src } => self.on_request(tx, request, src, now, out),
                // Nothing is pending long enough to be cancelled yet: every
                // INVITE is answered at once until queues exist.
                Output::Cancelled { tx } => self.ep.respond(tx, ResponseSpec::new(487), now),
                other => {
                    tracing::trace!(shard = self.id, output = ?other, "endpoint output ignored");
                }
            }
        }
    }

    fn on_request(
        &mut self,
        tx: ServerTxId,
        req: rsip::Request,
        src: SocketAddr,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        tracing::debug!(shard = self.id, method = %req.method, uri = %req.uri, %src, "request");
        match req.method {
            rsip::Method::Register => match register::to_registrar(&req, src) {
                Ok(rr) => {
                    let ticket = self.next_ticket;
                    self.next_ticket += 1;
                    self.awaiting_routing.insert(ticket, tx);
                    out.push(Effect::Route(ToRouting::Register { shard: self.id, tx: ticket, req: rr }));
                }
                Err(reason) => self.ep.respond(tx, reply(400, reason), now),
            },
            rsip::Method::Invite => {
                let user = req.uri.user().unwrap_or("").to_string();
                let spec = if self.queues.iter().any(|q| *q == user) {
                    // Queued calls arrive with the B2BUA (issue 3); until then
                    // say so honestly instead of ringing forever.
                    reply(480, "Queue Service Not Available")
                } else {
                    reply(404, "No Such Queue")
                };
                self.ep.respond(tx, spec, now);
            }
            // No dialogs exist yet, so every in-dialog request is for none.
            _ => self.ep.respond(tx, reply(481, "Call/Transaction Does Not Exist"), now),
        }
    }

    fn on_routing(&mut self, msg: FromRouting, now: Instant) {
        match msg {
            FromRouting::RegisterReply { tx, reply } => match self.awaiting_routing.remove(&tx) {
                Some(stx) => self.ep.respond(stx, register::to_response(&reply), now),
                None => self.routing_lost += 1,
            },
            FromRouting::Decision(d) => {
                tracing::warn!(call = %d.call(), "decision for a call this shard does not have");
            }
        }
    }

    fn samples(&self) -> Vec<Sample> {
        let c = self.ep.counters();
        let mut v = Vec::with_capacity(32);
        for r in DropReason::ALL {
            v.push(Sample::new("cc_sip_dropped_total", format!("reason=\"{}\"", r.as_str()), c.dropped(r)));
        }
        for (class, n) in c.responses_sent.iter().enumerate().skip(1) {
            v.push(Sample::new("cc_sip_responses_sent_total", format!("class=\"{class}xx\""), *n));
        }
        for (code, n) in self.statuses.iter().enumerate().filter(|(_, n)| **n > 0) {
            v.push(Sample::new("cc_sip_responses_total", format!("code=\"{code}\""), *n));
        }
        v.push(Sample::new("cc_sip_keepalives_total", "", c.keepalives));
        v.push(Sample::new("cc_sip_forwarded_total", "", c.forwarded));
        v.push(Sample::new("cc_sip_requests_total", "", c.requests_in));
        v.push(Sample::new("cc_sip_responses_received_total", "", c.responses_in));
        v.push(Sample::new("cc_sip_retransmissions_absorbed_total", "", c.retransmissions_absorbed));
        v.push(Sample::new("cc_sip_retransmissions_sent_total", "", c.retransmissions_sent));
        v.push(Sample::new("cc_sip_client_timeouts_total", "", c.client_timeouts));
        v.push(Sample::new("cc_sip_server_timeouts_total", "", c.server_timeouts));
        let (server, client) = self.ep.transactions();
        v.push(Sample::new("cc_sip_transactions", "kind=\"server\"", server as u64));
        v.push(Sample::new("cc_sip_transactions", "kind=\"client\"", client as u64));
        v.push(Sample::new("cc_sip_send_errors_total", "", self.send_errors));
        v.push(Sample::new("cc_routing_replies_unmatched_total", "", self.routing_lost));
        v.push(Sample::new("cc_routing_pending", "", self.awaiting_routing.len() as u64));
        v
    }
}

fn reply(status: u16, reason: &str) -> ResponseSpec {
    ResponseSpec { reason: Some(reason.to_string()), ..ResponseSpec::new(status) }
}

/// I/O handles of the shard, shared by its tasks.
struct Io {
    socket: UdpSocket,
    to_routing: ConnectedSender<ToRouting>,
    mesh: Vec<Option<ConnectedSender<Forwarded>>>,
}

impl Io {
    async fn apply(&self, core: &RefCell<Core>, effects: &mut Vec<Effect>) {
        for e in effects.drain(..) {
            match e {
                Effect::Send(dest, data) => {
                    if let Err(err) = self.socket.send_to(&data, dest).await {
                        tracing::debug!(%dest, error = %err, "send failed");
                        core.borrow_mut().send_errors += 1;
                    }
                }
                Effect::Forward(shard, fwd) => {
                    match self.mesh.get(shard as usize).and_then(Option::as_ref) {
                        // Awaiting a full channel is back-pressure, not loss.
                        Some(tx) => {
                            if tx.send(fwd).await.is_err() {
                                tracing::warn!(shard, "owner shard is gone; forwarded message lost");
                            }
                        }
                        None => tracing::warn!(shard, "no such shard; forwarded message lost"),
                    }
                }
                Effect::Route(msg) => {
                    if self.to_routing.send(msg).await.is_err() {
                        tracing::warn!("routing shard is gone");
                    }
                }
            }
        }
    }
}

/// The executor's main future; returns on shutdown.
pub async fn run(ctx: Context) {
    let Context { id, shards, cfg, socket, to_routing, from_routing, mesh_tx, mesh_rx, shared } = ctx;
    let local_addr = cfg.sip.listen;
    let ep = Endpoint::new(EndpointConfig {
        shard: id,
        shards,
        local_addr,
        domain: cfg.sip.domain.clone(),
        user_agent: cfg.sip.user_agent.clone(),
        max_datagram: cfg.sip.max_datagram,
        timers: Timers { t1: Duration::from_millis(cfg.sip.t1_ms), ..Timers::default() },
        rng_seed: rand::random(),
    });
    let core = Rc::new(RefCell::new(Core {
        id,
        ep,
        queues: cfg.queues.iter().map(|q| q.name.clone()).collect(),
        next_ticket: 0,
        awaiting_routing: HashMap::new(),
        statuses: Box::new([0; 700]),
        send_errors: 0,
        routing_lost: 0,
    }));
    // A channel end's connect() waits for its peer's, so every end is
    // connected from its own task: sequential connects would deadlock.
    let to_routing = glommio::spawn_local(to_routing.connect());
    let from_routing = glommio::spawn_local(from_routing.connect());
    let mesh_tx: Vec<_> =
        mesh_tx.into_iter().map(|t| t.map(|t| glommio::spawn_local(t.connect()))).collect();
    let mesh_rx: Vec<_> = mesh_rx.into_iter().map(|r| glommio::spawn_local(r.connect())).collect();
    let mut mesh = Vec::with_capacity(mesh_tx.len());
    for t in mesh_tx {
        mesh.push(match t {
            Some(t) => Some(t.await),
            None => None,
        });
    }
    // glommio links an older socket2; hand the descriptor over raw.
    // SAFETY: into_raw_fd gives up ownership, so the fd has one owner.
    let socket = unsafe {
        <UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(socket))
    };
    let io = Rc::new(Io { socket, to_routing: to_routing.await, mesh });
    let (wake, wake_rx) = Wake::new();
    let wake = Rc::new(wake);

    // Datagrams from the socket.
    {
        let (core, io, wake) = (core.clone(), io.clone(), wake.clone());
        glommio::spawn_local(async move {
            let mut buf = vec![0u8; 65536];
            let mut effects = Vec::new();
            loop {
                let (n, src) = match io.socket.recv_from(&mut buf).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "recv failed");
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let now = Instant::now();
                tracing::trace!(shard = id, %src, len = n, "datagram in");
                {
                    let mut c = core.borrow_mut();
                    c.ep.handle_datagram(buf.get(..n).unwrap_or(&[]), src, now);
                    c.drain(now, &mut effects);
                    wake.check(c.ep.poll_timeout());
                }
                io.apply(&core, &mut effects).await;
            }
        })
        .detach();
    }
    // Decisions from the routing shard.
    {
        let (core, io, wake) = (core.clone(), io.clone(), wake.clone());
        let rx = from_routing.await;
        glommio::spawn_local(async move {
            let mut effects = Vec::new();
            while let Some(msg) = rx.recv().await {
                let now = Instant::now();
                {
                    let mut c = core.borrow_mut();
                    c.on_routing(msg, now);
                    c.drain(now, &mut effects);
                    wake.check(c.ep.poll_timeout());
                }
                io.apply(&core, &mut effects).await;
            }
        })
        .detach();
    }
    // Messages other shards received but we own.
    for rx in mesh_rx {
        let (core, io, wake) = (core.clone(), io.clone(), wake.clone());
        let rx = rx.await;
        glommio::spawn_local(async move {
            let mut effects = Vec::new();
            while let Some(f) = rx.recv().await {
                let now = Instant::now();
                {
                    let mut c = core.borrow_mut();
                    c.ep.handle_forwarded(&f.data, f.src, now);
                    c.drain(now, &mut effects);
                    wake.check(c.ep.poll_timeout());
                }
                io.apply(&core, &mut effects).await;
            }
        })
        .detach();
    }
    // SIP timers.
    {
        let (core, io, wake) = (core.clone(), io.clone(), wake.clone());
        glommio::spawn_local(async move {
            let mut effects = Vec::new();
            loop {
                let next = core.borrow().ep.poll_timeout();
                wake.arm(next);
                let d = wake::sleep_for(next, Instant::now());
                futures_lite::future::or(glommio::timer::sleep(d), async {
                    let _ = wake_rx.recv().await;
                })
                .await;
                let now = Instant::now();
                {
                    let mut c = core.borrow_mut();
                    c.ep.handle_timeout(now);
                    c.drain(now, &mut effects);
                }
                io.apply(&core, &mut effects).await;
            }
        })
        .detach();
    }

    let _ = shared.ready.send(format!("shard {id}"));
    tracing::debug!(shard = id, %local_addr, "signalling shard running");
    housekeeping(id as usize, &shared, || core.borrow().samples()).await;
    tracing::debug!(shard = id, "signalling shard stopped");
}

/// Heartbeat, metrics publication and the shutdown check, every 100 ms.
pub async fn housekeeping(slot: usize, shared: &Shared, samples: impl Fn() -> Vec<Sample>) {
    while !shared.shutdown.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_millis(100)).await;
        if let Some(b) = shared.heartbeats.get(slot) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        shared.board.publish(slot, samples());
    }
}
