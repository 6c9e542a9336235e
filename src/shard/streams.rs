//! A signalling shard's SIP connections (TCP; TLS in `tls.rs`): accept,
//! frame (`sip::stream`), feed each whole message to the integrator as
//! `Input::Stream`, and write back what it sends to the connection's far
//! end.
//!
//! A connection belongs to the shard that accepted it (DESIGN.md,
//! "Affinity"): it is known only here, by its far end's address. A shard
//! asked to send over a stream it does not hold passes the bytes round the
//! other shards (`Forwarded::StreamSend`); when none holds it the origin is
//! told the destination is unreachable, so the transaction fails at once
//! (the offer to an agent whose connection is gone moves on).
//!
//! Each connection has a reader task (this file's `serve`) and a writer task
//! fed by a bounded queue: a peer that does not read its responses is cut
//! off when the queue is full, it never blocks the shard.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpStream;

use super::signalling::{step, Core, Io};
use super::tls::TlsSession;
use super::wake::Wake;
use crate::config::SipSection;
use crate::engine::Input;
use crate::mgmt::Sample;
use crate::sip::stream::{Frame, FrameError, Framer};
use crate::sip::transport::{top_via_transport, Transport};

/// Messages queued for one connection's writer before the peer counts as
/// not reading.
const OUT_QUEUE: usize = 256;
const READ_BUF: usize = 16 * 1024;

/// The limits of every connection (config `sip.tcp_*`).
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Open connections from one source IP on one shard.
    pub max_per_ip: u32,
    /// A connection with nothing received for this long is closed.
    pub idle: Duration,
    /// A message must be complete this long after its first byte.
    pub partial: Duration,
    pub max_message: usize,
}

impl StreamLimits {
    pub fn from_config(sip: &SipSection) -> StreamLimits {
        StreamLimits {
            max_per_ip: sip.tcp_max_connections_per_ip,
            idle: Duration::from_secs(sip.tcp_idle_timeout_s),
            partial: Duration::from_millis(sip.tcp_partial_timeout_ms),
            max_message: sip.tcp_max_message,
        }
    }
}

/// Why a connection ended (the label of `cc_sip_connections_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The peer closed it.
    Peer,
    IoError,
    IdleTimeout,
    /// A message stayed incomplete past `tcp_partial_timeout_ms`.
    PartialTimeout,
    Framing(FrameError),
    /// The peer did not read what we sent.
    Backlog,
    Tls,
}

impl Close {
    fn as_str(self) -> &'static str {
        match self {
            Close::Peer => "peer",
            Close::IoError => "io_error",
            Close::IdleTimeout => "idle_timeout",
            Close::PartialTimeout => "partial_timeout",
            Close::Framing(e) => e.as_str(),
            Close::Backlog => "backlog",
            Close::Tls => "tls_error",
        }
    }
}

struct Conn {
    id: u64,
    transport: Transport,
    tx: Rc<LocalSender<Bytes>>,
    fd: RawFd,
    close: Rc<Cell<Option<Close>>>,
}

impl Conn {
    /// Ends the connection from outside its reader: the reader's pending
    /// read returns and it cleans up.
    fn kill(&self, why: Close) {
        if self.close.get().is_none() {
            self.close.set(Some(why));
        }
        // SAFETY: the fd is open while the connection is in the table (its
        // reader removes it before dropping the stream); shutdown does not
        // close the descriptor.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
    }
}

#[derive(Default)]
struct Stats {
    accepted: [u64; 2],
    refused_per_ip: [u64; 2],
    closed: HashMap<(Transport, &'static str), u64>,
    pongs: u64,
    relayed_out: u64,
}

fn slot(t: Transport) -> usize {
    usize::from(t == Transport::Tls)
}

/// The connections this shard accepted, by far end.
pub struct Streams {
    limits: StreamLimits,
    conns: RefCell<HashMap<SocketAddr, Conn>>,
    per_ip: RefCell<HashMap<IpAddr, u32>>,
    next_id: Cell<u64>,
    stats: RefCell<Stats>,
}

impl Streams {
    pub fn new(limits: StreamLimits) -> Streams {
        Streams {
            limits,
            conns: RefCell::new(HashMap::new()),
            per_ip: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            stats: RefCell::new(Stats::default()),
        }
    }

    /// Takes a new connection from `ip` unless that source is at its limit.
    fn admit(&self, ip: IpAddr, t: Transport) -> bool {
        let mut per_ip = self.per_ip.borrow_mut();
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.limits.max_per_ip {
            if let Some(r) = self.stats.borrow_mut().refused_per_ip.get_mut(slot(t)) {
                *r += 1;
            }
            return false;
        }
        *n += 1;
        if let Some(a) = self.stats.borrow_mut().accepted.get_mut(slot(t)) {
            *a += 1;
        }
        true
    }

    fn insert(&self, peer: SocketAddr, conn: Conn) {
        // A far end has one connection to us per listening port; the newer
        // one wins if a TCP and a TLS one share an address.
        self.conns.borrow_mut().insert(peer, conn);
    }

    fn remove(&self, peer: SocketAddr, id: u64, t: Transport, why: Close) {
        let mut conns = self.conns.borrow_mut();
        if conns.get(&peer).is_some_and(|c| c.id == id) {
            conns.remove(&peer);
        }
        let mut per_ip = self.per_ip.borrow_mut();
        if let Some(n) = per_ip.get_mut(&peer.ip()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.remove(&peer.ip());
            }
        }
        *self.stats.borrow_mut().closed.entry((t, why.as_str())).or_insert(0) += 1;
    }

    /// Queues `data` for the connection whose far end is `dest`; gives it
    /// back when this shard holds no such connection.
    pub fn send(&self, dest: SocketAddr, data: Bytes) -> Result<(), Bytes> {
        let conns = self.conns.borrow();
        // Every datagram the shard sends asks here first: without any
        // connection that costs no hashing.
        if conns.is_empty() {
            return Err(data);
        }
        let Some(c) = conns.get(&dest) else { return Err(data) };
        if c.tx.try_send(patch_via(data, c.transport)).is_err() {
            c.kill(Close::Backlog);
        }
        Ok(())
    }

    /// A send another shard passed on (see the module doc), counted.
    pub fn note_relayed(&self) {
        self.stats.borrow_mut().relayed_out += 1;
    }

    pub fn samples(&self) -> Vec<Sample> {
        let s = self.stats.borrow();
        let mut v = Vec::with_capacity(16);
        let open = |t: Transport| self.conns.borrow().values().filter(|c| c.transport == t).count() as u64;
        for t in [Transport::Tcp, Transport::Tls] {
            let l = format!("transport=\"{}\"", t.as_str());
            v.push(Sample::new("cc_sip_connections", l.clone(), open(t)));
            v.push(Sample::new("cc_sip_connections_accepted_total", l.clone(), s.accepted.get(slot(t)).copied().unwrap_or(0)));
            v.push(Sample::new(
                "cc_sip_connections_refused_total",
                format!("{l},reason=\"per_ip_limit\""),
                s.refused_per_ip.get(slot(t)).copied().unwrap_or(0),
            ));
        }
        for ((t, why), n) in &s.closed {
            v.push(Sample::new("cc_sip_connections_closed_total", format!("transport=\"{}\",reason=\"{why}\"", t.as_str()), *n));
        }
        v.push(Sample::new("cc_sip_stream_pongs_total", "", s.pongs));
        v.push(Sample::new("cc_sip_stream_relayed_total", "", s.relayed_out));
        v
    }
}

/// A request we send over a stream says so in its Via (RFC 3261 §18.1.1):
/// one the core wrote for UDP (its peer's Contact named no transport) is
/// corrected in place. A response carries the peer's Via, left alone.
fn patch_via(data: Bytes, t: Transport) -> Bytes {
    if data.starts_with(b"SIP/2.0 ") {
        return data;
    }
    match top_via_transport(&data) {
        Some((v, at)) if v != t => {
            let mut m = data.to_vec();
            // Every token is three letters: UDP, TCP, TLS.
            if let Some(tok) = m.get_mut(at..at + 3) {
                tok.copy_from_slice(t.via_token().as_bytes());
            }
            Bytes::from(m)
        }
        _ => data,
    }
}

/// Whether bytes the core sends are meant for a stream (their Via says
/// TCP or TLS), so they must not fall back to the datagram socket.
pub fn wants_stream(data: &[u8]) -> bool {
    top_via_transport(data).is_some_and(|(t, _)| t.is_stream())
}

async fn read_some(s: &RefCell<TcpStream>, buf: &mut [u8]) -> std::io::Result<usize> {
    futures_lite::future::poll_fn(|cx| Pin::new(&mut *s.borrow_mut()).poll_read(cx, buf)).await
}

async fn write_all(s: &RefCell<TcpStream>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = futures_lite::future::poll_fn(|cx| Pin::new(&mut *s.borrow_mut()).poll_write(cx, data)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        data = data.get(n..).unwrap_or(&[]);
    }
    Ok(())
}

/// Serves one accepted connection until it ends; `tls` when it is a TLS
/// one (the handshake runs inside the same loop).
pub(super) async fn serve(
    core: Rc<RefCell<Core>>,
    io: Rc<Io>,
    wake: Rc<Wake>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsSession>,
) {
    let transport = if tls.is_some() { Transport::Tls } else { Transport::Tcp };
    let streams = io.streams.clone();
    if !streams.admit(peer.ip(), transport) {
        tracing::debug!(%peer, "connection refused: per-IP limit");
        return;
    }
    let _ = stream.set_nodelay(true);
    let limits = streams.limits.clone();
    let fd = stream.as_raw_fd();
    let stream = Rc::new(RefCell::new(stream));
    let tls = tls.map(|t| Rc::new(RefCell::new(t)));
    let (tx, rx) = local_channel::new_bounded::<Bytes>(OUT_QUEUE);
    let tx = Rc::new(tx);
    let close: Rc<Cell<Option<Close>>> = Rc::new(Cell::new(None));
    let id = streams.next_id.get();
    streams.next_id.set(id + 1);
    streams.insert(peer, Conn { id, transport, tx: tx.clone(), fd, close: close.clone() });
    tracing::debug!(%peer, transport = transport.as_str(), "connection accepted");

    // The writer: plaintext from the queue, through TLS when there is one.
    {
        let (stream, close, tls) = (stream.clone(), close.clone(), tls.clone());
        glommio::spawn_local(async move {
            while let Some(data) = rx.recv().await {
                let written = match &tls {
                    Some(t) => {
                        let sealed = t.borrow_mut().seal(&data);
                        match sealed {
                            Ok(w) => write_all(&stream, &w).await,
                            Err(()) => {
                                fail(&close, fd, Close::Tls);
                                break;
                            }
                        }
                    }
                    None => write_all(&stream, &data).await,
                };
                if written.is_err() {
                    fail(&close, fd, Close::IoError);
                    break;
                }
            }
        })
        .detach();
    }

    let mut framer = Framer::new(limits.max_message);
    let mut buf = vec![0u8; READ_BUF];
    let mut plain = Vec::new();
    let mut effects = Vec::new();
    let mut last = Instant::now();
    let why = 'conn: loop {
        if let Some(why) = close.get() {
            break why;
        }
        let now = Instant::now();
        let (deadline, on_expiry) = match framer.partial_since() {
            Some(t) => (t + limits.partial, Close::PartialTimeout),
            None => (last + limits.idle, Close::IdleTimeout),
        };
        let Some(left) = deadline.checked_duration_since(now).filter(|d| !d.is_zero()) else {
            break on_expiry;
        };
        let _ = stream.borrow().set_read_timeout(Some(left));
        let n = match read_some(&stream, &mut buf).await {
            // A kill (backlog, writer error) shows up here as an end.
            Ok(0) => break close.get().unwrap_or(Close::Peer),
            Ok(n) => n,
            // The deadline is checked at the top of the loop.
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(_) => break close.get().unwrap_or(Close::IoError),
        };
        let now = Instant::now();
        last = now;
        let got = buf.get(..n).unwrap_or(&[]);
        match &tls {
            Some(t) => {
                plain.clear();
                let opened = t.borrow_mut().open(got, &mut plain);
                match opened {
                    // TLS has bytes of its own to send (the handshake): an
                    // empty message makes the writer flush them, in order.
                    Ok(true) => {
                        if tx.try_send(Bytes::new()).is_err() {
                            break Close::Backlog;
                        }
                    }
                    Ok(false) => {}
                    Err(()) => break Close::Tls,
                }
                framer.push(&plain, now);
            }
            None => framer.push(got, now),
        }
        loop {
            match framer.poll(now) {
                Ok(Some(Frame::Message(m))) => {
                    step(&core, &io, &wake, &mut effects, |c, now, wall| {
                        c.handle(Input::Stream { data: &m, src: peer, transport }, now, wall)
                    })
                    .await;
                }
                Ok(Some(Frame::Ping)) => {
                    streams.stats.borrow_mut().pongs += 1;
                    if tx.try_send(Bytes::from_static(b"\r\n")).is_err() {
                        break 'conn Close::Backlog;
                    }
                }
                Ok(None) => break,
                Err(e) => break 'conn Close::Framing(e),
            }
        }
    };
    tracing::debug!(%peer, transport = transport.as_str(), reason = why.as_str(), "connection closed");
    streams.remove(peer, id, transport, why);
    if why != Close::Peer {
        // Nothing more goes out on a connection we gave up on.
        // SAFETY: the stream (and so the fd) is still alive here.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
    // Dropping the last sender ends the writer once its queue is written.
}

fn fail(close: &Cell<Option<Close>>, fd: RawFd, why: Close) {
    if close.get().is_none() {
        close.set(Some(why));
    }
    // SAFETY: called by the writer, which holds the stream: the fd is open.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}
