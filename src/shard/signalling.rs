//! A signalling shard's shell: one pinned executor that owns a SIP socket
//! (shared port via SO_REUSEPORT), the relay of its own calls (its slice of
//! the RTP port range) and an `engine::Signalling` integrator over them.
//!
//! The shell is a few small tasks around the integrator in a `RefCell`: each
//! task borrows it only while feeding it inputs and draining its effects,
//! never across an `.await`. Here are only sockets, timers, channels and
//! the ICMP error queue; what to do with them is the integrator's.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use bytes::Bytes;
use glommio::net::{TcpListener, UdpSocket};

use super::icmp;
use super::streams::{self, StreamLimits, Streams};
use super::tls::TlsSession;
use super::shared::{housekeeping, wall_ms, Shared};
use super::wake::{self, Wake};
use crate::call::{CallConfig, CallTable, HoldLibrary, RelayMedia};
use crate::config::Config;
use crate::engine::{Effect, Forwarded, FromRouting, Input, Signalling, SignallingConfig, ToRouting};
use crate::media::RelayHandle;
use crate::sip::endpoint::{Endpoint, EndpointConfig};
use crate::sip::Timers;

/// How often the shard drains relay events (media timeouts, stats). The
/// relay answers over a std channel, so this is a poll; it only bounds how
/// late a media timeout or a stats answer is seen.
const MEDIA_POLL: Duration = Duration::from_millis(50);

/// Effects carried out per step before the shell goes back to its inputs;
/// ICMP news met while sending adds effects, at most this many rounds.
const EFFECT_ROUNDS: usize = 4;

pub(super) type Core = Signalling<RelayMedia>;

pub struct Context {
    pub id: u16,
    pub shards: u16,
    pub cfg: Config,
    pub socket: socket2::Socket,
    pub relay: RelayHandle,
    pub hold: HoldLibrary,
    pub to_routing: SharedSender<ToRouting>,
    pub from_routing: SharedReceiver<FromRouting>,
    /// Indexed by destination shard; `None` at our own index.
    pub mesh_tx: Vec<Option<SharedSender<Forwarded>>>,
    pub mesh_rx: Vec<SharedReceiver<Forwarded>>,
    pub shared: Shared,
}

/// I/O handles of the shard, shared by its tasks.
pub(super) struct Io {
    id: u16,
    shards: u16,
    socket: UdpSocket,
    pub(super) streams: Rc<Streams>,
    to_routing: ConnectedSender<ToRouting>,
    mesh: Vec<Option<ConnectedSender<Forwarded>>>,
}

impl Io {
    async fn apply(&self, core: &RefCell<Core>, effects: &mut Vec<Effect>) {
        for e in effects.drain(..) {
            match e {
                Effect::Send(dest, data) => {
                    let data = match self.streams.send(dest, data) {
                        Ok(()) => continue,
                        Err(data) => data,
                    };
                    if streams::wants_stream(&data) {
                        self.stream_elsewhere(core, dest, data, self.id, 0).await;
                        continue;
                    }
                    let mut sent = self.socket.send_to(&data, dest).await;
                    if let Err(err) = &sent {
                        if unreachable(err) {
                            // A pending ICMP error (IP_RECVERR) fails the
                            // next socket call, whatever its destination,
                            // and is cleared by it: hand the news over and
                            // send again.
                            let dests = icmp::drain_unreachable(self.socket.as_raw_fd());
                            core.borrow_mut().handle(Input::Unreachable(dests), Instant::now(), wall_ms());
                            sent = self.socket.send_to(&data, dest).await;
                        }
                    }
                    if let Err(err) = sent {
                        tracing::debug!(%dest, error = %err, "send failed");
                        core.borrow_mut().note_send_error();
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

impl Io {
    /// Bytes for a connection this shard does not hold: on to the next
    /// shard round from `origin`, or, when all were asked, the origin is
    /// told `dest` is unreachable.
    async fn stream_elsewhere(&self, core: &RefCell<Core>, dest: SocketAddr, data: Bytes, origin: u16, hops: u16) {
        let hops = hops + 1;
        if hops >= self.shards {
            tracing::debug!(%dest, "no shard holds a connection to this destination");
            let gone = Forwarded::Unreachable { dest };
            if origin == self.id {
                core.borrow_mut().handle(Input::Forwarded(gone), Instant::now(), wall_ms());
            } else if let Some(tx) = self.mesh.get(origin as usize).and_then(Option::as_ref) {
                let _ = tx.send(gone).await;
            }
            return;
        }
        let next = (origin + hops) % self.shards;
        if let Some(tx) = self.mesh.get(next as usize).and_then(Option::as_ref) {
            let _ = tx.send(Forwarded::StreamSend { dest, data, origin, hops }).await;
        }
    }
}

/// An error glommio passed on from the socket that means ICMP news.
fn unreachable(e: &glommio::GlommioError<()>) -> bool {
    matches!(e, glommio::GlommioError::IoError(io) if icmp::is_unreachable(io))
}

/// Feeds inputs to the integrator (`f`), re-arms the timer task if they
/// created an earlier deadline, and carries out the effects. The relay is
/// woken once per step, however many commands the inputs gave it.
pub(super) async fn step(core: &RefCell<Core>, io: &Io, wake: &Wake, effects: &mut Vec<Effect>, f: impl FnOnce(&mut Core, Instant, u64)) {
    let (now, wall) = (Instant::now(), wall_ms());
    {
        let mut c = core.borrow_mut();
        c.media().relay.begin_batch();
        f(&mut c, now, wall);
        c.media().relay.end_batch();
        c.drain_effects(effects);
        wake.check(c.poll_timeout());
    }
    for round in 1..=EFFECT_ROUNDS {
        if effects.is_empty() {
            break;
        }
        io.apply(core, effects).await;
        if round == EFFECT_ROUNDS {
            // ICMP news kept coming: what it caused waits in the
            // integrator's queue for the next step.
            break;
        }
        let mut c = core.borrow_mut();
        c.drain_effects(effects);
        wake.check(c.poll_timeout());
    }
}

/// The executor's main future; returns on shutdown.
pub async fn run(ctx: Context) {
    let Context { id, shards, cfg, socket, relay, hold, to_routing, from_routing, mesh_tx, mesh_rx, shared } = ctx;
    let local_addr = cfg.sip.listen;
    let seed: u64 = rand::random();
    let ep = Endpoint::new(EndpointConfig {
        shard: id,
        shards,
        local_addr,
        domain: cfg.sip.domain.clone(),
        user_agent: cfg.sip.user_agent.clone(),
        max_datagram: cfg.sip.max_datagram,
        tls_port: cfg.sip.tls_port,
        timers: Timers { t1: Duration::from_millis(cfg.sip.t1_ms), ..Timers::default() },
        rng_seed: seed,
    });
    let calls = CallTable::new(CallConfig::from_config(&cfg), id, seed.rotate_left(17));
    let sc = SignallingConfig {
        rate_limit_per_ip: cfg.sip.rate_limit_per_ip,
        rate_limit_exempt_loopback: cfg.sip.rate_limit_exempt_loopback,
        ..SignallingConfig::new(id, shards)
    };
    let core = Rc::new(RefCell::new(Signalling::new(sc, ep, calls, RelayMedia::new(relay, hold))));

    // A channel end's connect() waits for its peer's, so every end is
    // connected from its own task: sequential connects would deadlock.
    let to_routing = glommio::spawn_local(to_routing.connect());
    let from_routing = glommio::spawn_local(from_routing.connect());
    let mesh_tx: Vec<_> =
        mesh_tx.into_iter().map(|t| t.map(|t| glommio::spawn_local(t.connect()))).collect();
    let mesh_rx: Vec<_> = mesh_rx.into_iter().map(|r| glommio::spawn_local(r.connect())).collect();
    tracing::debug!(shard = id, "connecting channels");
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
    let streams = Rc::new(Streams::new(StreamLimits::from_config(&cfg.sip)));
    let io = Rc::new(Io { id, shards, socket, streams, to_routing: to_routing.await, mesh });
    tracing::debug!(shard = id, "mesh and routing senders connected");
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
                    Err(e) if unreachable(&e) => {
                        // An ICMP error for a datagram we sent (IP_RECVERR).
                        let dests = icmp::drain_unreachable(io.socket.as_raw_fd());
                        step(&core, &io, &wake, &mut effects, |c, now, wall| c.handle(Input::Unreachable(dests), now, wall))
                            .await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "recv failed");
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                tracing::trace!(shard = id, %src, len = n, "datagram in");
                let data = buf.get(..n).unwrap_or(&[]);
                step(&core, &io, &wake, &mut effects, |c, now, wall| c.handle(Input::Datagram { data, src }, now, wall))
                    .await;
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
                step(&core, &io, &wake, &mut effects, |c, now, wall| c.handle(Input::Routing(msg), now, wall)).await;
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
                let f = match f {
                    Forwarded::StreamSend { dest, data, origin, hops } => {
                        match io.streams.send(dest, data) {
                            Ok(()) => io.streams.note_relayed(),
                            Err(data) => io.stream_elsewhere(&core, dest, data, origin, hops).await,
                        }
                        continue;
                    }
                    f => f,
                };
                step(&core, &io, &wake, &mut effects, |c, now, wall| c.handle(Input::Forwarded(f), now, wall)).await;
            }
        })
        .detach();
    }
    // SIP and call timers, and the refresh of bridged legs' counters.
    {
        let (core, io, wake) = (core.clone(), io.clone(), wake.clone());
        glommio::spawn_local(async move {
            let mut effects = Vec::new();
            loop {
                let next = core.borrow().poll_timeout();
                wake.arm(next);
                let d = wake::sleep_for(next, Instant::now());
                futures_lite::future::or(glommio::timer::sleep(d), async {
                    let _ = wake_rx.recv().await;
                })
                .await;
                step(&core, &io, &wake, &mut effects, |c, now, wall| c.handle(Input::Timer, now, wall)).await;
            }
        })
        .detach();
    }
    // Relay events.
    {
        let (core, io, wake) = (core.clone(), io.clone(), wake.clone());
        glommio::spawn_local(async move {
            let mut effects = Vec::new();
            loop {
                glommio::timer::sleep(MEDIA_POLL).await;
                step(&core, &io, &wake, &mut effects, |c, now, wall| {
                    while let Some(ev) = c.media().relay.try_event() {
                        c.handle(Input::Media(ev), now, wall);
                    }
                })
                .await;
            }
        })
        .detach();
    }

    // SIP over TCP, and over TLS, on listeners of their own per shard
    // (SO_REUSEPORT, like the datagram socket).
    if cfg.sip.tcp {
        listen(&core, &io, &wake, local_addr, None);
    }
    if cfg.sip.tls {
        let tls = match (&cfg.sip.tls_cert, &cfg.sip.tls_key) {
            (Some(c), Some(k)) => match super::tls::load(c, k) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(shard = id, error = ?e, "sip.tls: certificate not loaded; no TLS listener");
                    None
                }
            },
            _ => None,
        };
        if let (Some(t), Some(c), Some(k)) = (tls, &cfg.sip.tls_cert, &cfg.sip.tls_key) {
            let certs = TlsCerts { cfg: t, cert: c.clone(), key: k.clone(), control: shared.control.clone(), seen: 0 };
            listen(&core, &io, &wake, SocketAddr::new(local_addr.ip(), cfg.sip.tls_port), Some(certs));
        }
    }

    let samples = || {
        let mut v = core.borrow().samples();
        v.extend(io.streams.samples());
        v
    };
    // Metrics exist from the moment the engine says it is ready.
    shared.board.publish(id as usize, samples());
    let _ = shared.ready.send(format!("shard {id}"));
    tracing::debug!(shard = id, %local_addr, "signalling shard running");
    housekeeping(id as usize, &shared, samples).await;
    // Hang up what is still up, and give the BYEs a moment on the wire.
    let mut effects = Vec::new();
    step(&core, &io, &wake, &mut effects, |c, now, wall| c.handle(Input::Shutdown, now, wall)).await;
    tracing::debug!(shard = id, "signalling shard stopped");
}

/// Accepts connections on `addr` (TLS with `tls`) for the life of the shard.
fn listen(
    core: &Rc<RefCell<Core>>,
    io: &Rc<Io>,
    wake: &Rc<Wake>,
    addr: SocketAddr,
    mut tls: Option<TlsCerts>,
) {
    let kind = if tls.is_some() { "tls" } else { "tcp" };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(shard = io.id, %addr, error = %e, "SIP {kind} listener not bound");
            return;
        }
    };
    tracing::debug!(shard = io.id, %addr, "SIP {kind} listening");
    let (core, io, wake) = (core.clone(), io.clone(), wake.clone());
    glommio::spawn_local(async move {
        loop {
            let stream = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors, usually: let some close first.
                    tracing::warn!(%addr, error = %e, "accept failed");
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(peer) = stream.peer_addr() else { continue };
            let session = match &mut tls {
                Some(certs) => match TlsSession::new(certs.current()) {
                    Some(s) => Some(s),
                    None => continue,
                },
                None => None,
            };
            glommio::spawn_local(streams::serve(core.clone(), io.clone(), wake.clone(), stream, peer, session)).detach();
        }
    })
    .detach();
}

/// The TLS listener's certificate, read again after a reload (SIGHUP).
struct TlsCerts {
    cfg: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    control: std::sync::Arc<crate::mgmt::Control>,
    seen: u64,
}

impl TlsCerts {
    /// The config for the next handshake. Files are read only on the first
    /// handshake after a reload; a bad file keeps the old certificate.
    fn current(&mut self) -> std::sync::Arc<tokio_rustls::rustls::ServerConfig> {
        let g = self.control.tls_generation.load(std::sync::atomic::Ordering::Relaxed);
        if g != self.seen {
            self.seen = g;
            match super::tls::load(&self.cert, &self.key) {
                Ok(c) => {
                    tracing::info!(cert = %self.cert.display(), "SIP TLS certificate reloaded");
                    self.cfg = c;
                }
                Err(e) => tracing::error!(error = ?e, "SIP TLS certificate not reloaded; the old one stays"),
            }
        }
        self.cfg.clone()
    }
}
