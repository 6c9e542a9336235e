//! Starting and stopping the engine: sockets bound up front (so a busy port
//! is an error before anything runs), one pinned glommio executor per
//! signalling shard plus the routing shard, the channel mesh between them,
//! the management thread, and the main thread waiting for signals while it
//! pings the systemd watchdog.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use glommio::{LocalExecutorBuilder, Placement};

use super::shared::{ExitNotice, Shared};
use super::{notify, routing, signalling, unix_signals as signals};
use crate::engine::{Forwarded, FromRouting, ToRouting};
use crate::acd::{Store, StoreError};
use crate::call::HoldLibrary;
use crate::config::Config;
use crate::media::{RelayConfig, RelayHandle};
use crate::mgmt::{self, Board, Control};

/// Capacity of each cross-executor channel. A full channel back-pressures
/// the sender (it awaits) rather than dropping.
const CHANNEL_CAPACITY: usize = 4096;

/// How long start-up may take before we call it failed.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the engine could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot bind SIP socket {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot bind management listener {addr}: {source}")]
    Mgmt { addr: SocketAddr, source: mgmt::ServeError },
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start executor {name}: {reason}")]
    Executor { name: String, reason: String },
    #[error("not ready within {START_TIMEOUT:?}: {0}")]
    StartTimeout(String),
    #[error("cannot start the RTP relay of shard {shard} (ports {range}): {source}")]
    Relay { shard: u16, range: String, source: std::io::Error },
    #[error("media.rtp_port_min..rtp_port_max has no port pair for shard {0}")]
    NoPorts(u16),
    #[error("hold audio of queue {queue}: {reason}")]
    HoldAudio { queue: String, reason: String },
}

/// Runs the engine until SIGTERM/SIGINT. Returns once everything is stopped
/// and the state is committed.
pub fn run(cfg: Config) -> Result<(), RunError> {
    signals::block();
    let shards = cfg.engine.shards.resolve().max(1);
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default();
    let state_dir: PathBuf = cfg.engine.state_dir.clone();
    let store = Store::open_with_cache(&state_dir, cfg.engine.db_cache_mib as usize * (1 << 20))?;

    // Bind every shard's socket before starting anything.
    let mut sockets = Vec::with_capacity(shards as usize);
    // SO_REUSEPORT would let us share the port with another engine run by
    // the same user; a plain bind first makes "address in use" an error.
    // After a `kill -9` the dead process's sockets live on for a moment
    // (io_uring tears its rings down asynchronously; ~200 ms measured here),
    // so an immediate restart (systemd's RestartSec is 100 ms) retries for
    // up to 2 s before calling the port taken.
    let probe_deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match std::net::UdpSocket::bind(cfg.sip.listen) {
            Ok(s) => break drop(s),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && std::time::Instant::now() < probe_deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(source) => return Err(RunError::Bind { addr: cfg.sip.listen, source }),
        }
    }
    for _ in 0..shards {
        sockets.push(bind_reuseport(cfg.sip.listen).map_err(|source| RunError::Bind {
            addr: cfg.sip.listen,
            source,
        })?);
    }

    let hold = load_hold_audio(&cfg)?;
    let ranges = crate::media::ports::split_range(cfg.media.rtp_port_min, cfg.media.rtp_port_max, shards as usize);
    let mut relays = Vec::with_capacity(shards as usize);
    for (i, range) in ranges.into_iter().enumerate() {
        if range.pairs() == 0 {
            return Err(RunError::NoPorts(i as u16));
        }
        let rc = RelayConfig {
            bind_ip: cfg.media.address,
            range,
            // Same CPU as its shard: the shard's control messages and the
            // relay's packets stay in one core's cache.
            cpu: (cfg.engine.pin_cpus && !cpus.is_empty()).then(|| cpus[i % cpus.len()]),
            ..RelayConfig::default()
        };
        let relay = RelayHandle::spawn(rc).map_err(|source| RunError::Relay {
            shard: i as u16,
            range: range.to_string(),
            source,
        })?;
        relays.push(relay);
    }
    let (ready_tx, ready_rx) = mpsc::channel();
    let (exited_tx, exited_rx) = mpsc::channel();
    let shared = Shared {
        board: Arc::new(Board::new(shards as usize + 1)),
        control: Arc::new(Control::with_event_buffer(cfg.mgmt.event_buffer)),
        shutdown: Arc::new(AtomicBool::new(false)),
        heartbeats: Arc::new((0..=shards).map(|_| AtomicU64::new(0)).collect()),
        ready: ready_tx,
        exited: exited_tx,
    };

    let _ = shared.control.started.set(cfg.clone());

    // Channels: shard → routing, routing → shard, and a full shard mesh.
    let mut to_routing_tx = Vec::new();
    let mut to_routing_rx = Vec::new();
    let mut from_routing_tx = Vec::new();
    let mut from_routing_rx = Vec::new();
    for _ in 0..shards {
        let (t, r) = shared_channel::new_bounded::<ToRouting>(CHANNEL_CAPACITY);
        to_routing_tx.push(t);
        to_routing_rx.push(r);
        let (t, r) = shared_channel::new_bounded::<FromRouting>(CHANNEL_CAPACITY);
        from_routing_tx.push(t);
        from_routing_rx.push(r);
    }
    // mesh_tx[i][j]: i sends to j; mesh_rx[j][i]: j receives from i.
    let mut mesh_tx: Vec<Vec<Option<SharedSender<Forwarded>>>> =
        (0..shards).map(|_| (0..shards).map(|_| None).collect()).collect();
    let mut mesh_rx: Vec<Vec<SharedReceiver<Forwarded>>> = (0..shards).map(|_| Vec::new()).collect();
    for i in 0..shards as usize {
        for j in 0..shards as usize {
            if i != j {
                let (t, r) = shared_channel::new_bounded::<Forwarded>(CHANNEL_CAPACITY);
                mesh_tx[i][j] = Some(t);
                mesh_rx[j].push(r);
            }
        }
    }

    let placement = |n: usize| -> Placement {
        if cfg.engine.pin_cpus && !cpus.is_empty() {
            Placement::Fixed(cpus[n % cpus.len()])
        } else {
            Placement::Unbound
        }
    };
    let io_memory = cfg.engine.io_memory_kib as usize * 1024;
    let mut handles = Vec::new();

    // The routing shard takes the next CPU after the shards'. When that
    // CPU is a shard's anyway (shards >= CPUs), it runs as tasks in that
    // shard's executor: a message to routing and its answer are then
    // function calls between tasks, not two thread switches and two
    // eventfd wake-ups (measured: bench/RESULTS.md, "Routing placement").
    let pinned = if cfg.engine.pin_cpus { cpus.len() } else { 0 };
    let routing_ctx = routing::Context {
        cfg: cfg.clone(),
        store,
        inbox: to_routing_rx,
        outbox: from_routing_tx,
        shared: shared.clone(),
        slot: shards as usize,
    };
    let mut routing_guest = None;
    let host = match pinned {
        0 => 0,
        n => Some(shards as usize % n).filter(|h| *h < shards as usize).unwrap_or(0),
    };
    if cfg.engine.routing_executor.shared(shards, pinned) {
        tracing::info!(shard = host, "routing shard runs in a signalling shard's executor");
        routing_guest = Some(routing_ctx);
    } else {
        let name = "cc-routing".to_string();
        let ctx = routing_ctx;
        let h = LocalExecutorBuilder::new(placement(shards as usize))
            .name(&name)
            .io_memory(io_memory)
            .spawn(move || async move {
                let _notice = ExitNotice::new("routing", &ctx.shared);
                routing::run(ctx).await
            })
            .map_err(|e| RunError::Executor { name: name.clone(), reason: e.to_string() })?;
        handles.push(h);
    }
    for (i, (((sock, relay), to_r), (from_r, (m_tx, m_rx)))) in sockets
        .into_iter()
        .zip(relays)
        .zip(to_routing_tx)
        .zip(from_routing_rx.into_iter().zip(mesh_tx.into_iter().zip(mesh_rx)))
        .enumerate()
    {
        let name = format!("cc-shard-{i}");
        let ctx = signalling::Context {
            id: i as u16,
            shards,
            cfg: cfg.clone(),
            socket: sock,
            relay,
            hold: hold.clone(),
            to_routing: to_r,
            from_routing: from_r,
            mesh_tx: m_tx,
            mesh_rx: m_rx,
            shared: shared.clone(),
        };
        let guest = if i == host { routing_guest.take() } else { None };
        let h = LocalExecutorBuilder::new(placement(i))
            .name(&name)
            .io_memory(io_memory)
            .spawn(move || async move {
                let _notice = ExitNotice::new(&format!("shard {i}"), &ctx.shared);
                let routing = guest.map(|r| {
                    glommio::spawn_local(async move {
                        let _notice = ExitNotice::new("routing", &r.shared);
                        routing::run(r).await
                    })
                });
                signalling::run(ctx).await;
                // The executor ends with its main future: the routing
                // tasks' final commit and database close must run first.
                if let Some(r) = routing {
                    r.await;
                }
            })
            .map_err(|e| RunError::Executor { name: name.clone(), reason: e.to_string() })?;
        handles.push(h);
    }

    let mgmt = match cfg.mgmt.listen {
        Some(addr) => Some(
            mgmt::serve(
                addr,
                &cfg.mgmt,
                shared.board.clone(),
                shared.control.clone(),
                shared.heartbeats.clone(),
                shared.shutdown.clone(),
            )
                .map_err(|source| RunError::Mgmt { addr, source })?,
        ),
        None => None,
    };

    // Wait until every executor has connected its channels and sockets.
    let deadline = Instant::now() + START_TIMEOUT;
    let mut pending: Vec<String> = (0..shards).map(|i| format!("shard {i}")).collect();
    pending.push("routing".into());
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match ready_rx.recv_timeout(left) {
            Ok(name) => pending.retain(|p| *p != name),
            Err(_) => {
                shared.shutdown.store(true, Ordering::Relaxed);
                return Err(RunError::StartTimeout(pending.join(", ")));
            }
        }
    }
    tracing::info!(
        listen = %cfg.sip.listen, shards, state_dir = %state_dir.display(),
        mgmt = ?cfg.mgmt.listen, "cc-engine ready"
    );
    let notifier = notify::Notifier::from_env();
    if let Some(n) = &notifier {
        n.ready();
    }

    let watchdog = notify::watchdog_interval();
    let tick = watchdog.unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(1));
    let mut last_beats: Vec<u64> = vec![0; shards as usize + 1];
    loop {
        if let Some(sig) = signals::wait(tick) {
            if signals::is_reload(sig) {
                reload(&cfg, &shared);
                continue;
            }
            tracing::info!(signal = sig, "shutting down");
            break;
        }
        if let Ok(name) = exited_rx.try_recv() {
            tracing::error!(executor = %name, "executor stopped unexpectedly; shutting down");
            break;
        }
        if let (Some(n), Some(_)) = (&notifier, watchdog) {
            let beats: Vec<u64> =
                shared.heartbeats.iter().map(|b| b.load(Ordering::Relaxed)).collect();
            // Feed the watchdog only while every executor makes progress.
            if beats.iter().zip(&last_beats).all(|(now, before)| now != before) {
                n.watchdog();
                last_beats = beats;
            }
        }
    }
    if let Some(n) = &notifier {
        n.stopping();
    }
    shared.shutdown.store(true, Ordering::Relaxed);
    for h in handles {
        if h.join().is_err() {
            tracing::error!("an executor panicked during shutdown");
        }
    }
    if let Some(m) = mgmt {
        let _ = m.join();
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: reads the config file again and hands its agents and queues
/// to the routing shard; a bad file is refused whole and logged, and the
/// running config stays. Always compared with the config the engine
/// started with: what cannot change live never changes before a restart.
fn reload(started: &Config, shared: &Shared) {
    let Some(file) = &started.source else {
        tracing::warn!("SIGHUP: the engine was not started from a config file; nothing to reload");
        return;
    };
    match crate::config::Reload::read(file, started) {
        Ok(r) => {
            shared.control.tls_generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let cmd = crate::acd::command::Command::Reload(crate::acd::command::NewConfig(Arc::new(r)));
            // The routing shard logs what it applied; nobody waits here.
            if let Err(e) = shared.control.commands.submit(cmd) {
                tracing::error!(error = %e, "SIGHUP: reload not applied");
            }
        }
        Err(e) => tracing::error!(error = %e, "SIGHUP: config refused; the running config stays"),
    }
}

/// A UDP socket with SO_REUSEPORT so every shard binds the same port and the
/// kernel spreads remote addresses across them.
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    // Bursts of REGISTERs must not overflow the kernel queue while a shard
    // is busy; 4 MiB is a few thousand datagrams.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    // ICMP errors for our requests (a dead agent's closed port) reach the
    // shard instead of being dropped: see shard/icmp.rs. Not fatal: without
    // it an unreachable agent is still found by the ring timeout.
    if let Err(e) = super::icmp::enable(std::os::fd::AsRawFd::as_raw_fd(&s), addr.is_ipv6()) {
        tracing::warn!(error = %e, "IP_RECVERR unavailable; unreachable agents are found by the ring timeout only");
    }
    Ok(s)
}

/// Hold audio for every queue that names a file, plus the generated default
/// tone for the others. Read once at start: a bad file stops the engine
/// here rather than leaving callers in silence.
fn load_hold_audio(cfg: &Config) -> Result<HoldLibrary, RunError> {
    let mut lib = HoldLibrary::default();
    lib.insert("", &crate::media::wav::default_hold_pcm());
    lib.insert(crate::call::FEATURE_TONE, &crate::media::wav::confirm_tone_pcm());
    for q in &cfg.queues {
        if let Some(path) = &q.hold_audio {
            let pcm = crate::media::wav::load(path)
                .map_err(|e| RunError::HoldAudio { queue: q.name.clone(), reason: e.to_string() })?;
            lib.insert(&q.name, &pcm);
        }
    }
    Ok(lib)
}
