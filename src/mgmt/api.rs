//! The routes of the management plane: the unversioned ones of the first
//! release (`/metrics`, `/agents`, `/queues`, `/health`) and REST v1.
//!
//! Handlers read the board's snapshots only; the one that acts (the log
//! filter) touches nothing a shard uses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::health::{self, Commits};
use super::log_level::{self, LogLevelError};
use super::server::AppState;

/// The OpenAPI 3 description of every route, kept in the repository.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Publishers tick every 100 ms; 500 ms covers a busy executor.
const FRESH_WITHIN: Duration = Duration::from_millis(500);

/// Longest log filter spec accepted.
const MAX_FILTER_LEN: usize = 1024;

/// Agent statuses, as the snapshots spell them.
const STATUSES: [&str; 8] = ["offline", "available", "ringing", "busy", "wrap-up", "paused", "logged-out", "unreachable"];

pub fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/agents", get(agents_lines))
        .route("/queues", get(queues_snapshot))
        .route("/v1/agents", get(agents))
        .route("/v1/agents/{id}", get(agent))
        .route("/v1/agents/{id}/pause", post(super::act::pause))
        .route("/v1/agents/{id}/unpause", post(super::act::unpause))
        .route("/v1/reload", post(super::act::reload))
        .route("/v1/agents/{id}/logout", post(super::act::logout))
        .route("/v1/agents/{id}/login", post(super::act::login))
        .route("/v1/queue-log", get(super::reports::queue_log))
        .route("/v1/cdrs", get(super::reports::cdrs))
        .route("/v1/events", get(super::sse::events))
        .route("/v1/queues", get(queues))
        .route("/v1/calls", get(calls))
        .route("/v1/calls/{id}/hangup", post(super::act::hangup))
        .route("/v1/queues/{name}", get(queue))
        .route("/v1/log-level", get(get_log_level).put(put_log_level))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/whoami", get(whoami))
        .merge(super::wallboard::routes())
        .fallback(not_found)
        .with_state(state)
}

/// `{"error": ..., "field": ...}` with `status`.
pub fn error(status: StatusCode, msg: impl Into<String>, field: Option<&str>) -> Response {
    let mut body = json!({ "error": msg.into() });
    if let (Some(f), Some(o)) = (field, body.as_object_mut()) {
        o.insert("field".into(), f.into());
    }
    (status, Json(body)).into_response()
}

/// Asks every publisher for a fresh snapshot and waits (bounded, without
/// blocking the runtime); a stalled executor shows its previous one.
async fn refresh(st: &AppState) -> bool {
    let r = st.board.ask();
    let deadline = Instant::now() + FRESH_WITHIN;
    while !st.board.all_answered(r) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    refresh(&st).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], st.metrics.render()).into_response()
}

async fn agents_lines(State(st): State<Arc<AppState>>) -> Response {
    refresh(&st).await;
    ([(header::CONTENT_TYPE, "application/x-ndjson")], st.board.render_agents(now_ms())).into_response()
}

async fn queues_snapshot(State(st): State<Arc<AppState>>) -> Response {
    refresh(&st).await;
    ([(header::CONTENT_TYPE, "application/json")], format!("{}\n", st.board.queues())).into_response()
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    let fresh = refresh(&st).await;
    let now = Instant::now();
    let mut reasons: Vec<String> = Vec::new();
    if let Ok(mut b) = st.beats.lock() {
        b.observe(now, st.heartbeats.iter().map(|h| h.load(std::sync::atomic::Ordering::Relaxed)));
        for (name, quiet) in b.stalled(now) {
            reasons.push(format!("executor {name}: no heartbeat for {:.1} s", quiet.as_secs_f64()));
        }
    }
    let commits = Commits {
        ok: st.board.total("cc_store_commits_total").unwrap_or(0),
        errors: st.board.total("cc_store_commit_errors_total").unwrap_or(0),
    };
    if let Ok(mut seen) = st.commits_seen.lock() {
        // Only a fresh snapshot moves the baseline: a stale one would hide
        // the failures between two looks.
        if health::store_failing(*seen, commits) {
            reasons.push(format!(
                "store: {} commit(s) failed since the last check and none succeeded",
                commits.errors.saturating_sub(seen.errors)
            ));
        }
        if fresh {
            *seen = commits;
        }
    }
    if let Some(why) = health::commit_stalled(st.board.total("cc_store_commit_running_ms").unwrap_or(0)) {
        reasons.push(why);
    }
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
    } else {
        tracing::warn!(reasons = ?reasons, "health check failing");
        let body = json!({ "status": "unavailable", "error": reasons.join("; "), "reasons": reasons });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// Every configured agent: its ACD state from the router's snapshot and
/// its registrations.
fn agents_v1(st: &AppState) -> Vec<Value> {
    let snap = st.board.queues();
    let bindings = st.board.agents();
    let now = now_ms();
    let Some(list) = snap.get("agents").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|a| {
            let mut a = a.clone();
            let id = a.get("id").and_then(Value::as_str).unwrap_or("").to_string();
            let regs: Vec<Value> = bindings
                .iter()
                .filter(|b| b.get("agent").and_then(Value::as_str) == Some(id.as_str()))
                .map(|b| {
                    let at = b.get("expires_at_ms").and_then(Value::as_u64).unwrap_or(0);
                    json!({
                        "contact": b.get("contact"),
                        "received": b.get("received"),
                        "user_agent": b.get("user_agent"),
                        "reachable": b.get("reachable"),
                        "expires_in": at.saturating_sub(now).div_ceil(1000),
                    })
                })
                .collect();
            let since = a.get("status_since_ms").and_then(Value::as_u64).unwrap_or(now);
            if let Some(o) = a.as_object_mut() {
                o.insert("registrations".into(), regs.into());
                o.insert("time_in_status_ms".into(), now.saturating_sub(since).into());
            }
            a
        })
        .collect()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFilter {
    status: Option<String>,
}

async fn agents(
    State(st): State<Arc<AppState>>,
    q: Result<Query<AgentFilter>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(StatusCode::BAD_REQUEST, "the only query parameter is status", Some("status"));
    };
    if let Some(s) = &q.status {
        if !STATUSES.contains(&s.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("status `{s}` is none of {}", STATUSES.join(", ")),
                Some("status"),
            );
        }
    }
    refresh(&st).await;
    let list: Vec<Value> = agents_v1(&st)
        .into_iter()
        .filter(|a| q.status.as_deref().is_none_or(|s| a.get("status").and_then(Value::as_str) == Some(s)))
        .collect();
    Json(json!({ "agents": list })).into_response()
}

async fn agent(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    refresh(&st).await;
    match agents_v1(&st).into_iter().find(|a| a.get("id").and_then(Value::as_str) == Some(id.as_str())) {
        Some(a) => Json(a).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no agent `{id}`"), Some("id")),
    }
}

fn queue_list(st: &AppState) -> Vec<Value> {
    st.board.queues().get("queues").and_then(Value::as_array).cloned().unwrap_or_default()
}

async fn queues(State(st): State<Arc<AppState>>) -> Response {
    refresh(&st).await;
    Json(json!({ "queues": queue_list(&st) })).into_response()
}

async fn queue(State(st): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    refresh(&st).await;
    match queue_list(&st).into_iter().find(|q| q.get("name").and_then(Value::as_str) == Some(name.as_str())) {
        Some(q) => Json(q).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no queue `{name}`"), Some("name")),
    }
}

/// `GET /v1/calls[?queue=&agent=&state=]`: live calls from the router's
/// snapshot, in arrival order.
async fn calls(
    State(st): State<Arc<AppState>>,
    q: Result<Query<CallsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(StatusCode::BAD_REQUEST, "query parameters are queue, agent and state", Some("query"));
    };
    if let Some(s) = q.state.as_deref() {
        if !["waiting", "ringing", "talking"].contains(&s) {
            return error(StatusCode::BAD_REQUEST, format!("state `{s}` is not waiting, ringing or talking"), Some("state"));
        }
    }
    refresh(&st).await;
    let all = st.board.queues().get("calls").and_then(Value::as_array).cloned().unwrap_or_default();
    let keep = |c: &Value, field: &str, want: &Option<String>| {
        want.as_deref().is_none_or(|w| c.get(field).and_then(Value::as_str) == Some(w))
    };
    let list: Vec<Value> = all
        .into_iter()
        .filter(|c| keep(c, "queue", &q.queue) && keep(c, "agent", &q.agent) && keep(c, "state", &q.state))
        .collect();
    Json(json!({ "calls": list })).into_response()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CallsQuery {
    queue: Option<String>,
    agent: Option<String>,
    state: Option<String>,
}

async fn get_log_level() -> Response {
    match log_level::current() {
        Some(l) => Json(json!({ "level": l })).into_response(),
        None => error(StatusCode::SERVICE_UNAVAILABLE, LogLevelError::NotInstalled.to_string(), None),
    }
}

/// `PUT /v1/log-level {"level": "info,cc_engine::sip=debug"}`.
async fn put_log_level(body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}"), Some("level")),
    };
    let Some(obj) = v.as_object() else {
        return error(StatusCode::BAD_REQUEST, "the body must be a JSON object", Some("level"));
    };
    if let Some(k) = obj.keys().find(|k| *k != "level") {
        return error(StatusCode::BAD_REQUEST, format!("unknown field `{k}`"), Some(k));
    }
    let Some(spec) = obj.get("level").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "level must be a string such as \"info\"", Some("level"));
    };
    let spec = spec.trim();
    if spec.is_empty() || spec.len() > MAX_FILTER_LEN {
        return error(StatusCode::BAD_REQUEST, format!("level must be 1..={MAX_FILTER_LEN} characters"), Some("level"));
    }
    match log_level::set(spec) {
        Ok(()) => {
            tracing::warn!(level = spec, "log filter changed from the management API");
            Json(json!({ "level": spec })).into_response()
        }
        Err(e @ LogLevelError::Invalid(_)) => error(StatusCode::BAD_REQUEST, e.to_string(), Some("level")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None),
    }
}

/// The caller's role, so a page shows the actions its token may take.
async fn whoami(role: Option<axum::Extension<crate::config::MgmtRole>>) -> Response {
    let role = match role.map(|r| r.0) {
        Some(crate::config::MgmtRole::Admin) => "admin",
        _ => "viewer",
    };
    Json(json!({ "role": role })).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("no route {}", uri.path()), None)
}
