//! The management plane's HTTP(S) server: axum on hyper, in a tokio
//! current-thread runtime on its own (unpinned) thread, so neither a slow
//! client nor a burst of them takes time from a shard.
//!
//! Bounded everywhere: connections (a limit, then closed at once), request
//! heads (hyper's limits, a header read timeout), bodies
//! ([`MAX_BODY`]), and each request's handling ([`REQUEST_TIMEOUT`]).

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::auth::{self, Tokens};
use super::health::{Beats, Commits};
use super::metrics::Metrics;
use super::{api, Board, Control};
use crate::config::{MgmtRole, MgmtSection};

/// Largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 64 * 1024;
/// Longest a request may take, body included (408 beyond).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a request head, or to stay idle
/// between requests on a kept-alive connection.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 512;
/// How often the server looks at the stop flag and the heartbeats.
const TICK: Duration = Duration::from_millis(100);

/// Everything a handler may read.
pub struct AppState {
    pub board: Arc<Board>,
    pub control: Arc<Control>,
    pub tokens: Tokens,
    pub open_metrics: bool,
    pub metrics: Metrics,
    pub heartbeats: Arc<Vec<AtomicU64>>,
    pub beats: Mutex<Beats>,
    pub commits_seen: Mutex<Commits>,
}

/// The peer of a connection, for the log of a refused request.
#[derive(Clone, Copy)]
struct Peer(SocketAddr);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("mgmt.tls_cert / mgmt.tls_key: {0}")]
    Tls(String),
}

/// Binds `addr` now (a busy port is an error at start-up) and serves on a
/// thread of its own until `stop` is set. `heartbeats` are the executors'
/// (signalling shards in order, then routing).
pub fn serve(
    addr: SocketAddr,
    cfg: &MgmtSection,
    board: Arc<Board>,
    control: Arc<Control>,
    heartbeats: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, ServeError> {
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => Some(TlsAcceptor::from(super::tls::load(c, k).map_err(|e| match e {
            super::tls::TlsError::Cert(r) | super::tls::TlsError::Key(r) => ServeError::Tls(r),
        })?)),
        _ => None,
    };
    let tokens = Tokens::new(&cfg.tokens);
    if tokens.is_empty() {
        tracing::warn!("no [[mgmt.tokens]]: the management API refuses every request but the open ones");
    }
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let n = heartbeats.len();
    let names = (0..n).map(|i| if i + 1 == n { "routing".to_string() } else { format!("shard {i}") }).collect();
    let state = Arc::new(AppState {
        metrics: Metrics::new(board.clone()),
        board,
        control,
        tokens,
        open_metrics: cfg.open_metrics,
        heartbeats,
        beats: Mutex::new(Beats::new(names, Instant::now())),
        commits_seen: Mutex::new(Commits::default()),
    });
    let thread = std::thread::Builder::new().name("cc-mgmt".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "management plane: no runtime; it stays off");
                return;
            }
        };
        rt.block_on(run(listener, state, tls, stop));
        // Connections still open are dropped, not waited for.
        rt.shutdown_background();
    })?;
    Ok(thread)
}

async fn run(listener: TcpListener, state: Arc<AppState>, tls: Option<TlsAcceptor>, stop: Arc<AtomicBool>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "management plane: cannot listen");
            return;
        }
    };
    let app = api::routes(state.clone())
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(middleware::from_fn_with_state(state.clone(), finish));
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut tick = tokio::time::interval(TICK);
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors, most likely: back off a little.
                        tracing::warn!(error = %e, "management accept failed");
                        tokio::time::sleep(TICK).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    state.metrics.refused.inc();
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let app = app.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tls {
                        None => connection(tcp, peer, app).await,
                        Some(acc) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acc.accept(tcp)).await {
                            Ok(Ok(s)) => connection(s, peer, app).await,
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "management TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "management TLS handshake timed out"),
                        },
                    }
                });
            }
            _ = tick.tick() => {
                // Heartbeats are sampled here as well as on /health, so a
                // stall is timed from when it began.
                if let Ok(mut b) = state.beats.lock() {
                    b.observe(Instant::now(), state.heartbeats.iter().map(|h| h.load(Ordering::Relaxed)));
                }
            }
        }
    }
}

async fn connection<I>(io: I, peer: SocketAddr, app: axum::Router)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(Peer(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "management connection ended");
    }
}

/// Bearer authentication and roles: reading needs a viewer token, acting
/// an admin one; `/metrics` and `/health` may be open by config.
async fn authorize(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let open = st.open_metrics && matches!(path, "/metrics" | "/health");
    if !open {
        let needed = if matches!(*req.method(), Method::GET | Method::HEAD) { MgmtRole::Viewer } else { MgmtRole::Admin };
        let peer = req.extensions().get::<Peer>().map(|p| p.0.to_string()).unwrap_or_default();
        let refused = match st.tokens.check(req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes())) {
            Err(e) => {
                tracing::warn!(%peer, method = %req.method(), path, reason = e.label(), "management API: authentication failed");
                st.metrics.count_auth_failure(e.label());
                let mut r = api::error(StatusCode::UNAUTHORIZED, "a valid bearer token is needed", None);
                let challenge = match e {
                    auth::AuthError::Missing => "Bearer realm=\"cc-engine\"",
                    auth::AuthError::Invalid => "Bearer realm=\"cc-engine\", error=\"invalid_token\"",
                };
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
                Some(r)
            }
            Ok(role) if !auth::allows(role, needed) => {
                tracing::warn!(%peer, method = %req.method(), path, "management API: a viewer token may not act");
                st.metrics.count_auth_failure("forbidden");
                Some(api::error(StatusCode::FORBIDDEN, "this token may read, not act (role viewer)", None))
            }
            Ok(_) => None,
        };
        if let Some(r) = refused {
            return r;
        }
    }
    next.run(req).await
}

/// The outermost layer: every error answer is JSON, whichever layer made
/// it (axum's 405, the body limit's 413, the timeout's 408), and every
/// answer is counted by status.
async fn finish(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    st.metrics.count_request(status.as_u16());
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let reason = status.canonical_reason().unwrap_or("error").to_ascii_lowercase();
        let mut r = api::error(status, reason, None);
        for (k, v) in resp.headers() {
            if k == header::WWW_AUTHENTICATE || k == header::ALLOW || k == header::RETRY_AFTER {
                r.headers_mut().insert(k.clone(), v.clone());
            }
        }
        return r;
    }
    resp
}
