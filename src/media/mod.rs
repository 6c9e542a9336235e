//! Media: SDP, RTP port ranges, the io_uring relay, hold audio.
//!
//! # Layout
//! * [`ports`] — per-shard RTP port range, even/odd pairs, quarantine (sans-IO).
//! * [`sdp`] — SDP parse/build, offer/answer, codec intersection (sans-IO).
//! * [`relay::stream`] / [`relay::stats`] — latching, validation, counters (sans-IO).
//! * `relay::table` — relay legs, bridges, media timeout, hold schedule (sans-IO).
//! * [`g711`], [`wav`], [`playout`] — hold audio (sans-IO scheduler).
//! * [`relay::ring`] — the io_uring loop (the only I/O here), with the
//!   buffer pool (`relay::pool`) and `relay::sockaddr`.
//!
//! # Control API (what the call layer uses)
//!
//! One relay per signalling shard. [`RelayHandle::spawn`] starts the relay's
//! ring on a sibling thread (pinned to `RelayConfig::cpu` if set) and returns
//! the handle, which the shard owns (`Send`, not shared, no lock). Every
//! handle method is non-blocking: commands go over an `std::sync::mpsc`
//! channel and an eventfd write wakes the ring; answers and notifications
//! come back as [`Event`]s, which the shard polls with
//! [`RelayHandle::try_event`] (e.g. from a glommio timer every 50–100 ms).
//! The handle never reads the clock: the methods that start or end a port
//! pair's quarantine take the caller's `now`.
//!
//! ```text
//! spawn(cfg: RelayConfig)                     -> io::Result<RelayHandle>
//! open_leg(&mut self, RelayLegConfig, now)         -> Result<RelayLegPorts, OpenError>   // 503 on exhaustion
//! open_pair(&mut self, RelayLegConfig, RelayLegConfig, now) -> Result<(RelayLegPorts, RelayLegPorts), OpenError>
//! set_peer(&self, RelayLegId, rtp: Option<SocketAddr>, rtcp: Option<SocketAddr>, strict: bool)
//! start_hold(&self, RelayLegId, HoldAudio, pt: u8)   // 20 ms G.711 frames to the leg's peer
//! stop_hold(&self, RelayLegId)
//! bridge(&mut self, a: RelayLegId, b: RelayLegId)         // a⇄b, stops hold on both; binds deferred RTCP
//! unbridge(&self, RelayLegId)
//! close(&mut self, RelayLegId, now)                  // pair released (quarantine from now), Event::Closed
//! request_stats(&self, RelayLegId)                   // answered by Event::Stats
//! request_counters(&self)                       // answered by Event::Counters
//! try_event(&self) -> Option<Event>             // MediaTimeout, Stats, Closed…
//! shutdown(self)
//! ```
//!
//! A *leg* is one side of a call as the relay sees it: an RTP socket (even
//! port) and an RTCP socket (port + 1) on the relay, and the peer's address
//! from its SDP. A customer⇄agent call is two legs bridged. While the
//! customer waits, its leg is not bridged and `start_hold` plays audio to it.
//!
//! A leg opened with `RelayLegConfig::defer_rtcp` binds only its RTP socket; the
//! RTCP port stays reserved in the allocator and is bound when the leg is
//! bridged. A waiting caller hears hold audio, which needs no RTCP, so a
//! waiting call holds one socket instead of two: with the open-files limit
//! (20,000 on the benchmark VM) that is what lets 10,000 callers wait. Until
//! then the caller's RTCP gets ICMP port unreachable, which RTP stacks
//! ignore. If the late bind fails (port taken meanwhile, no fd left) the
//! call is bridged without RTCP and the failure counted.
//!
//! # The hot path (measured; see bench/RESULTS.md "Media relay")
//! One ring per relay; every socket has one multishot `RECVMSG` armed with
//! buffers from a provided buffer ring (an armed receive holds no buffer);
//! the received buffer is sent on as is with `IORING_OP_SEND` + destination;
//! buffers return to the ring on send completion; sockets are in the ring's
//! registered file table; one `io_uring_enter` per loop turn (plus one per
//! 128 completions in long turns). No allocation or lock per packet. Sockets
//! that hit an empty pool go to a FIFO and are re-armed first when buffers
//! return, so none is left unread under overload. One-shot receives,
//! `SEND_ZC`, busy-polling, the adaptive spin and kernel batch waits lost at
//! RTP sizes; they are built only with the `relay-bench-modes` feature.
//!
//! # Ports
//! Keep the RTP range outside `net.ipv4.ip_local_port_range`. A freed pair is
//! quarantined (`RelayConfig::quarantine`, 10 s by default) before reuse,
//! unless nothing else is left (see [`ports`]). A pair with a port bound by
//! another socket (EADDRINUSE) is skipped and the next one tried, at most
//! [`BIND_ATTEMPTS`] per leg; any other socket error (EMFILE…) fails the
//! open at once and puts the untouched pair back.
//!
//! # Locked memory
//! With `relay-bench-modes`, the relay buffer pool (`pool_buffers ×
//! buf_size`, 1.5 MiB by default) is registered as a fixed buffer (for
//! `SEND_ZC`) when `register_buffers` is set; that counts against
//! `RLIMIT_MEMLOCK`. If registration fails the relay
//! logs it and runs with plain buffers. For the service set
//! `LimitMEMLOCK=16M` (or more: 1 MiB per shard plus the rings).

pub mod g711;
pub mod playout;
pub mod ports;
pub mod relay;
pub mod sdp;
pub mod wav;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub use playout::HoldAudio;
pub use ports::{PortAllocator, PortError, PortRange};
pub use relay::{DropReason, RelayTraffic, StreamStats};

/// Receive strategy of the ring (measured, see bench/RESULTS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvMode {
    /// One `RECVMSG` per datagram with a buffer selected from the provided ring.
    #[cfg(feature = "relay-bench-modes")]
    OneShot,
    /// One multishot `RECVMSG` per socket, buffers from the provided ring.
    Multishot,
    /// Comparison point without the provided ring: every socket owns one
    /// buffer, receives into it and sends from it, re-arming after the send.
    OwnBuffer,
}

/// Relay configuration (one relay per shard).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Address the relay binds and announces in SDP.
    pub bind_ip: IpAddr,
    /// This shard's slice of the RTP range (see [`ports::split_range`]).
    /// Keep the whole RTP range outside `net.ipv4.ip_local_port_range`
    /// (32768–60999 by default), or ephemeral sockets will take its ports.
    pub range: PortRange,
    /// Time a freed port pair waits before reuse.
    pub quarantine: Duration,
    /// Pair of the range handed out first (`None`: random, so engines
    /// sharing a range do not all start at its lowest port).
    pub first_pair: Option<usize>,
    /// Buffers in the pool (provided buffer ring). 1024 × 1.5 KiB = 1.5 MiB.
    /// A datagram larger than `buf_size` (minus 144 bytes in multishot mode)
    /// is dropped as truncated.
    pub pool_buffers: usize,
    pub buf_size: usize,
    /// Submission queue entries.
    pub ring_entries: u32,
    pub recv_mode: RecvMode,
    /// Use `SEND_ZC` instead of `SENDMSG`.
    #[cfg(feature = "relay-bench-modes")]
    pub send_zc: bool,
    /// Register the pool as a fixed buffer (locked memory; used by SEND_ZC).
    #[cfg(feature = "relay-bench-modes")]
    pub register_buffers: bool,
    /// Spin instead of sleeping in `io_uring_enter`.
    #[cfg(feature = "relay-bench-modes")]
    pub busy_poll: bool,
    /// Kernel-side batching of wake-ups (`min_wait_usec`, Linux 6.12+),
    /// adaptive: while the recent packet gap fills this window with at least
    /// two packets, wait for the packets expected in it (at most `batch`),
    /// but return after this many µs if at least one is ready. At lower
    /// rates, and always when idle, wake on the first completion. 0 = off.
    #[cfg(feature = "relay-bench-modes")]
    pub batch_wait_us: u32,
    #[cfg(feature = "relay-bench-modes")]
    pub batch: usize,
    /// One `io_uring_enter` per loop turn: wait for one completion beyond
    /// the sends submitted in the same call (UDP sends complete inline, so
    /// their CQEs are already posted when the wait starts). Off: the send
    /// CQEs satisfy the wait and every packet costs a second enter.
    pub wait_past_sends: bool,
    /// After a turn that forwarded packets, poll the ring's shared
    /// `IORING_SQ_TASKRUN` flag (no syscall) for up to this many µs before
    /// sleeping, when the recent packet gap is shorter than that. 0 = off.
    /// The spin is on-CPU time and is counted as such.
    #[cfg(feature = "relay-bench-modes")]
    pub spin_us: u32,
    /// Register relay sockets in the ring's file table (saves fget/fput per op).
    pub fixed_files: bool,
    /// Pin the relay thread to this CPU.
    pub cpu: Option<usize>,
    /// Period of the inactivity check.
    pub tick: Duration,
    /// Expected maximum of legs (preallocation only, not a limit).
    pub max_legs: usize,
    /// SO_RCVBUF for relay sockets (0: system default).
    pub rcvbuf: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            range: PortRange { start: 30000, end: 40000 },
            quarantine: Duration::from_secs(10),
            first_pair: None,
            pool_buffers: 1024,
            buf_size: 1536,
            ring_entries: 4096,
            recv_mode: RecvMode::Multishot,
            #[cfg(feature = "relay-bench-modes")]
            send_zc: false,
            #[cfg(feature = "relay-bench-modes")]
            register_buffers: false,
            #[cfg(feature = "relay-bench-modes")]
            busy_poll: false,
            #[cfg(feature = "relay-bench-modes")]
            batch_wait_us: 0,
            #[cfg(feature = "relay-bench-modes")]
            batch: 16,
            wait_past_sends: true,
            #[cfg(feature = "relay-bench-modes")]
            spin_us: 0,
            fixed_files: true,
            cpu: None,
            tick: Duration::from_millis(100),
            max_legs: 1024,
            rcvbuf: 0,
        }
    }
}

/// Identifies a leg in its relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayLegId(pub u64);

/// How to open a leg.
#[derive(Debug, Clone, Default)]
pub struct RelayLegConfig {
    /// The peer's RTP address from its SDP (`None` on hold / not yet known).
    pub peer_rtp: Option<SocketAddr>,
    /// The peer's RTCP address (`a=rtcp`, else RTP port + 1).
    pub peer_rtcp: Option<SocketAddr>,
    /// Drop packets from any source other than the latched/SDP one.
    pub strict: bool,
    /// Report [`Event::MediaTimeout`] after this long without RTP.
    pub media_timeout: Option<Duration>,
    /// Bind the RTCP socket only when the leg is bridged (see the module
    /// docs): for a caller who waits with hold audio.
    pub defer_rtcp: bool,
}

impl RelayLegConfig {
    /// From a peer RTP address (RTCP = port + 1).
    pub fn peer(rtp: SocketAddr) -> Self {
        RelayLegConfig { peer_rtp: Some(rtp), peer_rtcp: Some(SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))), ..Default::default() }
    }
}

/// What `open_leg` returns: the relay-side addresses to put in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLegPorts {
    pub id: RelayLegId,
    /// Relay RTP address (even port); RTCP is on port + 1.
    pub rtp: SocketAddr,
    pub rtcp: SocketAddr,
}

/// Why a leg could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Port range exhausted → refuse the call with 503.
    #[error(transparent)]
    Ports(#[from] PortError),
    #[error("cannot bind relay socket: {0}")]
    Bind(io::Error),
    #[error("relay thread is gone")]
    RelayGone,
}

impl OpenError {
    /// SIP status for refusing the call.
    pub fn sip_status(&self) -> u16 {
        503
    }
}

/// Relay-wide counters (for benchmarks and metrics).
#[derive(Debug, Clone, Default)]
pub struct RelayCounters {
    pub loop_turns: u64,
    pub cqes: u64,
    pub rx: u64,
    pub tx: u64,
    pub enobufs: u64,
    pub starved_rearms: u64,
    pub recv_errors: u64,
    pub send_errors: u64,
    pub sq_full_flushes: u64,
    pub mid_turn_submits: u64,
    /// Adaptive spin (`spin_us`): completions found while spinning / spins
    /// that ended in a sleep.
    pub spin_hits: u64,
    pub spin_misses: u64,
    /// Waits that used the kernel batch window (`batch_wait_us`).
    pub batched_waits: u64,
    pub buffers_out: usize,
    pub starved_now: usize,
    pub registered_buffers: bool,
}

/// Notifications from the relay to the call layer.
#[derive(Debug, Clone)]
pub enum Event {
    /// No RTP received on `leg` for `idle` (≥ its media timeout). Reported
    /// once per silence; re-armed when packets flow again.
    MediaTimeout { leg: RelayLegId, idle: Duration },
    /// Answer to `request_stats`.
    Stats { leg: RelayLegId, rtp: StreamStats, rtcp: StreamStats, rtp_dest: Option<SocketAddr> },
    /// `request_stats` for a leg the relay does not know.
    UnknownLeg { leg: RelayLegId },
    /// Answer to `request_counters`.
    Counters(RelayCounters),
    /// The leg is closed; its sockets are closed once in-flight I/O ends.
    Closed { leg: RelayLegId },
}

pub(crate) enum Command {
    /// `rtcp` is `None` for a leg with deferred RTCP (`AttachRtcp` later).
    Open { id: RelayLegId, rtp: UdpSocket, rtcp: Option<UdpSocket>, cfg: RelayLegConfig },
    AttachRtcp { id: RelayLegId, rtcp: UdpSocket },
    SetPeer { id: RelayLegId, rtp: Option<SocketAddr>, rtcp: Option<SocketAddr>, strict: bool },
    Bridge { a: RelayLegId, b: RelayLegId },
    Unbridge { id: RelayLegId },
    StartHold { id: RelayLegId, audio: HoldAudio, pt: u8 },
    StopHold { id: RelayLegId },
    Close { id: RelayLegId },
    Stats { id: RelayLegId },
    Counters,
    Shutdown,
}

/// The shard's handle on its relay. See the module docs.
pub struct RelayHandle {
    tx: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    wake: Arc<OwnedFd>,
    ports: PortAllocator,
    cfg: RelayConfig,
    next_id: u64,
    open: HashMap<RelayLegId, OpenLeg>,
    rtcp_bind_failures: u64,
    /// The relay thread's traffic totals (stored at its tick).
    totals: Arc<relay::RelayTotals>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Inside a batch (`begin_batch`..`end_batch`) commands are queued
    /// and the relay is woken once at the end: one shard step sends up to
    /// five commands for a call (open, hold, bridge…), and each eventfd
    /// write woke the relay thread for a context switch of its own.
    batch: std::cell::Cell<Batch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    Off,
    Clean,
    Dirty,
}

/// A leg's port pair, as the handle tracks it.
#[derive(Debug, Clone, Copy)]
struct OpenLeg {
    port: u16,
    /// RTCP not bound yet (`RelayLegConfig::defer_rtcp`).
    rtcp_deferred: bool,
}

/// Pairs tried per `open_leg` when ports turn out to be bound by another
/// socket (EADDRINUSE): enough to step over a few strangers in the range,
/// bounded so a range full of them fails fast.
pub const BIND_ATTEMPTS: usize = 8;

impl RelayHandle {
    /// Start a relay on its own thread.
    pub fn spawn(cfg: RelayConfig) -> io::Result<RelayHandle> {
        let (tx, rx) = mpsc::channel();
        let (etx, erx) = mpsc::channel();
        let wake = Arc::new(relay::ring::eventfd()?);
        let wake_relay = wake.try_clone()?;
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let rcfg = cfg.clone();
        let totals = Arc::new(relay::RelayTotals::default());
        let theirs = totals.clone();
        let thread = std::thread::Builder::new()
            .name(format!("media-relay-{}", cfg.range.start))
            .spawn(move || {
                if let Some(cpu) = rcfg.cpu {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                        tracing::warn!("could not pin relay to cpu {cpu}");
                    }
                }
                match relay::ring::Relay::new(rcfg, rx, etx, wake_relay, theirs) {
                    Ok(r) => {
                        let _ = ready_tx.send(Ok(()));
                        r.run();
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        ready_rx.recv().map_err(|_| io::Error::other("relay thread died"))??;
        Ok(RelayHandle {
            tx,
            events: erx,
            wake,
            ports: PortAllocator::starting_at(
                cfg.range,
                cfg.quarantine,
                cfg.first_pair.unwrap_or_else(rand::random::<usize>),
            ),
            cfg,
            next_id: 1,
            open: HashMap::new(),
            rtcp_bind_failures: 0,
            totals,
            thread: Some(thread),
            batch: std::cell::Cell::new(Batch::Off),
        })
    }

    fn send(&self, c: Command) -> bool {
        if self.tx.send(c).is_err() {
            return false;
        }
        if self.batch.get() != Batch::Off {
            self.batch.set(Batch::Dirty);
            return true;
        }
        self.wake_relay();
        true
    }

    /// Defer waking the relay until [`end_batch`](Self::end_batch).
    pub fn begin_batch(&self) {
        self.batch.set(Batch::Clean);
    }

    /// Wake the relay once if a command was queued since `begin_batch`.
    pub fn end_batch(&self) {
        if self.batch.replace(Batch::Off) == Batch::Dirty {
            self.wake_relay();
        }
    }

    fn wake_relay(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes to our eventfd
        unsafe { libc::write(self.wake.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
    }

    /// The relay's packets, bytes and drops as of its last tick.
    pub fn traffic(&self) -> relay::RelayTraffic {
        self.totals.load()
    }

    /// Reserve a port pair, bind it and hand it to the relay. `now` is the
    /// caller's clock: it decides which quarantined pairs are free again.
    pub fn open_leg(&mut self, cfg: RelayLegConfig, now: Instant) -> Result<RelayLegPorts, OpenError> {
        let mut last_err = None;
        for _ in 0..BIND_ATTEMPTS {
            let port = self.ports.allocate(now)?;
            let (rtp, rtcp) = match self.bind_pair(port, cfg.defer_rtcp) {
                Ok(socks) => socks,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    tracing::debug!("relay port pair {port} taken by another socket: {e}; trying the next");
                    self.ports.skip_taken(port, now);
                    last_err = Some(e);
                    continue;
                }
                Err(e) => {
                    // EMFILE and the like: another pair would fail the same
                    // way, and this one was never on the wire.
                    self.ports.unreserve(port);
                    return Err(OpenError::Bind(e));
                }
            };
            let id = RelayLegId(self.next_id);
            self.next_id += 1;
            let rtcp_deferred = rtcp.is_none();
            if !self.send(Command::Open { id, rtp, rtcp, cfg }) {
                self.ports.release(port, now);
                return Err(OpenError::RelayGone);
            }
            self.open.insert(id, OpenLeg { port, rtcp_deferred });
            return Ok(RelayLegPorts {
                id,
                rtp: SocketAddr::new(self.cfg.bind_ip, port),
                rtcp: SocketAddr::new(self.cfg.bind_ip, port.wrapping_add(1)),
            });
        }
        Err(OpenError::Bind(last_err.unwrap_or_else(|| io::Error::other("no port"))))
    }

    /// The RTP socket of the pair, and its RTCP socket unless deferred.
    fn bind_pair(&self, port: u16, defer_rtcp: bool) -> io::Result<(UdpSocket, Option<UdpSocket>)> {
        let rtp = relay::ring::bind_udp(self.cfg.bind_ip, port, self.cfg.rcvbuf)?;
        if defer_rtcp {
            return Ok((rtp, None));
        }
        let rtcp = relay::ring::bind_udp(self.cfg.bind_ip, port.wrapping_add(1), self.cfg.rcvbuf)?;
        Ok((rtp, Some(rtcp)))
    }

    /// Bind a deferred RTCP socket (at bridge time). A failure leaves the
    /// leg without RTCP: the audio path does not need it.
    fn attach_rtcp(&mut self, leg: RelayLegId) {
        let Some(o) = self.open.get_mut(&leg).filter(|o| o.rtcp_deferred) else { return };
        o.rtcp_deferred = false;
        let port = o.port.wrapping_add(1);
        match relay::ring::bind_udp(self.cfg.bind_ip, port, self.cfg.rcvbuf) {
            Ok(rtcp) => {
                self.send(Command::AttachRtcp { id: leg, rtcp });
            }
            Err(e) => {
                self.rtcp_bind_failures += 1;
                tracing::warn!("relay RTCP port {port} unusable at bridge time: {e}; the call goes on without RTCP");
            }
        }
    }

    /// Open two legs (e.g. customer side and agent side); all or nothing.
    pub fn open_pair(&mut self, a: RelayLegConfig, b: RelayLegConfig, now: Instant) -> Result<(RelayLegPorts, RelayLegPorts), OpenError> {
        let pa = self.open_leg(a, now)?;
        match self.open_leg(b, now) {
            Ok(pb) => Ok((pa, pb)),
            Err(e) => {
                self.close(pa.id, now);
                Err(e)
            }
        }
    }

    pub fn set_peer(&self, leg: RelayLegId, rtp: Option<SocketAddr>, rtcp: Option<SocketAddr>, strict: bool) {
        self.send(Command::SetPeer { id: leg, rtp, rtcp, strict });
    }
    pub fn start_hold(&self, leg: RelayLegId, audio: HoldAudio, pt: u8) {
        self.send(Command::StartHold { id: leg, audio, pt });
    }
    pub fn stop_hold(&self, leg: RelayLegId) {
        self.send(Command::StopHold { id: leg });
    }
    /// Also binds the legs' deferred RTCP sockets.
    pub fn bridge(&mut self, a: RelayLegId, b: RelayLegId) {
        self.attach_rtcp(a);
        self.attach_rtcp(b);
        self.send(Command::Bridge { a, b });
    }
    pub fn unbridge(&self, leg: RelayLegId) {
        self.send(Command::Unbridge { id: leg });
    }
    /// Close a leg; its port pair enters quarantine at `now`.
    pub fn close(&mut self, leg: RelayLegId, now: Instant) {
        if let Some(o) = self.open.remove(&leg) {
            self.ports.release(o.port, now);
        }
        self.send(Command::Close { id: leg });
    }
    pub fn request_stats(&self, leg: RelayLegId) {
        self.send(Command::Stats { id: leg });
    }
    pub fn request_counters(&self) {
        self.send(Command::Counters);
    }
    pub fn try_event(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }
    /// Blocking wait for an event (tests, tools; not for a shard).
    pub fn wait_event(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }
    /// The port allocator (for metrics: in use, quarantined, refusals).
    pub fn ports(&self) -> &PortAllocator {
        &self.ports
    }
    /// Deferred RTCP sockets that could not be bound at bridge time.
    pub fn rtcp_bind_failures(&self) -> u64 {
        self.rtcp_bind_failures
    }
    pub fn config(&self) -> &RelayConfig {
        &self.cfg
    }
    /// Stop the relay thread and wait for it.
    pub fn shutdown(mut self) {
        self.stop();
    }
    fn stop(&mut self) {
        self.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
