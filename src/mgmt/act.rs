//! The routes that act: each sends a command to the routing shard through
//! the [`CommandLink`](super::command_link::CommandLink) and turns its
//! answer into HTTP (200, 400 naming the field, 404, 409 saying why, 503
//! when the shard does not answer in time).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::api::error;
use super::command_link::CommandError;
use super::server::AppState;
use crate::acd::command::{Command, CommandResult, NewConfig, DEFAULT_HANGUP_STATUS};
use crate::acd::facts::CallId;

/// Longest pause reason accepted; it is shown in snapshots and logs.
pub const MAX_REASON_LEN: usize = 256;

/// Sends `cmd` and maps its answer.
pub async fn run(st: &AppState, cmd: Command) -> Response {
    match st.control.commands.ask(cmd).await {
        Ok(CommandResult::Done { detail }) => Json(detail).into_response(),
        Ok(CommandResult::NotFound { what }) => {
            error(StatusCode::NOT_FOUND, format!("no {what}"), Some("id"))
        }
        Ok(CommandResult::Conflict { reason }) => error(StatusCode::CONFLICT, reason, None),
        Ok(CommandResult::Invalid { field, reason }) => {
            error(StatusCode::BAD_REQUEST, reason, Some(&field))
        }
        Err(e @ (CommandError::Timeout | CommandError::Busy | CommandError::Gone)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None)
        }
    }
}

/// The body of an action: empty, or a JSON object with only `allowed`
/// fields. Returns the object, or the 400 answer naming the field.
#[allow(clippy::result_large_err)]
fn body_object(body: &Bytes, allowed: &[&str]) -> Result<serde_json::Map<String, Value>, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    let field = allowed.first().copied();
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
            field,
        )
    })?;
    let Value::Object(obj) = v else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
            field,
        ));
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("unknown field `{k}`"),
            Some(k),
        ));
    }
    Ok(obj)
}

/// `POST /v1/agents/{id}/pause {"reason": "..."}`; the reason is optional
/// free text.
pub async fn pause(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let obj = match body_object(&body, &["reason"]) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let reason = match obj.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.len() > MAX_REASON_LEN || s.chars().any(char::is_control) {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("reason must be at most {MAX_REASON_LEN} bytes of printable text"),
                    Some("reason"),
                );
            }
            (!s.is_empty()).then(|| s.to_string())
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "reason must be a string",
                Some("reason"),
            )
        }
    };
    run(&st, Command::Pause { agent: id, reason }).await
}

/// `POST /v1/agents/{id}/logout` (no body, or `{}`).
pub async fn logout(State(st): State<Arc<AppState>>, Path(id): Path<String>, body: Bytes) -> Response {
    if let Err(r) = body_object(&body, &[]) {
        return r;
    }
    run(&st, Command::Logout { agent: id }).await
}

/// `POST /v1/agents/{id}/login` (no body, or `{}`).
pub async fn login(State(st): State<Arc<AppState>>, Path(id): Path<String>, body: Bytes) -> Response {
    if let Err(r) = body_object(&body, &[]) {
        return r;
    }
    run(&st, Command::Login { agent: id }).await
}

/// `POST /v1/agents/{id}/unpause` (no body, or `{}`).
pub async fn unpause(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = body_object(&body, &[]) {
        return r;
    }
    run(&st, Command::Unpause { agent: id }).await
}

/// `POST /v1/calls/{id}/hangup` (no body, or `{"status": 4xx..6xx}`):
/// ends a live call in any state. An unanswered caller gets `status`
/// (480 unless given) as the final response to its INVITE; the answer
/// comes once the routing shard has told the call's shard, and the CDR
/// (reason `operator-hangup`) follows when that shard has ended both legs.
pub async fn hangup(State(st): State<Arc<AppState>>, Path(id): Path<String>, body: Bytes) -> Response {
    let obj = match body_object(&body, &["status"]) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let status = match obj.get("status") {
        None | Some(Value::Null) => DEFAULT_HANGUP_STATUS,
        Some(v) => match v.as_u64().and_then(|s| u16::try_from(s).ok()).filter(|s| (400..=699).contains(s)) {
            Some(s) => s,
            None => {
                return error(StatusCode::BAD_REQUEST, "status must be a SIP final status from 400 to 699", Some("status"))
            }
        },
    };
    // Not in the engine's `shard-seq` form: no call could have that id.
    let Ok(call) = id.parse::<CallId>() else {
        return error(StatusCode::NOT_FOUND, format!("no live call {id}"), Some("id"));
    };
    run(&st, Command::Hangup { call, status }).await
}

/// `POST /v1/reload` (no body): reads the config file again and applies its
/// agents and queues live. A bad file is refused whole (400, with file, key
/// and reason) and the running config stays; keys that cannot change live
/// are listed in `needs_restart` and left as they are.
pub async fn reload(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    if let Err(r) = body_object(&body, &[]) {
        return r;
    }
    let Some(started) = st.control.started.get() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the engine is still starting", None);
    };
    let Some(file) = started.source.clone() else {
        return error(StatusCode::CONFLICT, "the engine was not started from a config file", None);
    };
    let base = started.clone();
    let read = tokio::task::spawn_blocking(move || crate::config::Reload::read(&file, &base)).await;
    match read {
        Ok(Ok(r)) => {
            st.control.tls_generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            run(&st, Command::Reload(NewConfig(Arc::new(r)))).await
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reload refused; the running config stays");
            let key = match &e {
                crate::config::ConfigError::Invalid { key, .. } => Some(key.clone()),
                _ => None,
            };
            error(StatusCode::BAD_REQUEST, e.to_string(), key.as_deref())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
    }
}
