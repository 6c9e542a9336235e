//! Reading what the store keeps while the engine runs: the queue log.
//! The read runs on the store thread (see `Control::read`), never on a
//! shard, and the handler waits for it without blocking the runtime.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::api::error;
use super::server::AppState;
use crate::acd::{parse_since, CdrCursor};

/// Lines answered when `limit` is not given, and at most.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueLogQuery {
    since: Option<String>,
    limit: Option<String>,
}

/// `GET /v1/queue-log?since=&limit=`: lines in Asterisk's queue_log format
/// (`epoch|callid|queue|agent|event|data1|data2|...`), oldest first, and
/// each parsed.
pub async fn queue_log(
    State(st): State<Arc<AppState>>,
    q: Result<Query<QueueLogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(StatusCode::BAD_REQUEST, "the query parameters are since and limit", Some("query"));
    };
    let since = match q.since.as_deref().map(parse_since) {
        None => None,
        Some(Ok(ms)) => Some(ms),
        Some(Err(e)) => {
            return error(StatusCode::BAD_REQUEST, format!("since: {e} (unix seconds or RFC 3339)"), Some("since"))
        }
    };
    let limit = match q.limit.as_deref().map(|s| s.trim().parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        _ => return error(StatusCode::BAD_REQUEST, format!("limit must be 1..={MAX_LIMIT}"), Some("limit")),
    };
    match st.control.read(move |s| s.queue_log(since, limit)).await {
        Ok(Ok(lines)) => {
            let entries: Vec<Value> = lines.iter().map(|l| parse_line(l)).collect();
            Json(json!({ "lines": lines, "entries": entries })).into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None),
    }
}

/// One queue log line as JSON.
pub fn parse_line(line: &str) -> Value {
    let mut f = line.split('|');
    let mut next = || f.next().unwrap_or("").to_string();
    let epoch = next();
    let (callid, queue, agent, event) = (next(), next(), next(), next());
    let data: Vec<String> = line.split('|').skip(5).map(str::to_string).collect();
    json!({
        "epoch": epoch.parse::<u64>().ok(),
        "callid": callid,
        "queue": queue,
        "agent": agent,
        "event": event,
        "data": data,
    })
}

/// CDRs answered at most per page, and when `limit` is not given.
const CDR_MAX_LIMIT: usize = 1000;
const CDR_DEFAULT_LIMIT: usize = 100;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdrQuery {
    since: Option<String>,
    until: Option<String>,
    queue: Option<String>,
    agent: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /v1/cdrs?since=&until=&queue=&agent=&limit=&cursor=`: CDRs by end
/// time, oldest first, a page at a time; `next_cursor` fetches the next
/// page with the same filters (absent on the last page).
pub async fn cdrs(
    State(st): State<Arc<AppState>>,
    q: Result<Query<CdrQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "the query parameters are since, until, queue, agent, limit and cursor",
            Some("query"),
        );
    };
    let time = |v: &Option<String>, field: &str| match v.as_deref().map(parse_since) {
        None => Ok(None),
        Some(Ok(ms)) => Ok(Some(ms)),
        Some(Err(e)) => {
            Err(error(StatusCode::BAD_REQUEST, format!("{field}: {e} (unix seconds or RFC 3339)"), Some(field)))
        }
    };
    let since = match time(&q.since, "since") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let until = match time(&q.until, "until") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let limit = match q.limit.as_deref().map(|s| s.trim().parse::<usize>()) {
        None => CDR_DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=CDR_MAX_LIMIT).contains(&n) => n,
        _ => return error(StatusCode::BAD_REQUEST, format!("limit must be 1..={CDR_MAX_LIMIT}"), Some("limit")),
    };
    let after = match q.cursor.as_deref().map(CdrCursor::from_hex) {
        None => None,
        Some(Some(c)) => Some(c),
        Some(None) => return error(StatusCode::BAD_REQUEST, "cursor is not one this API gave", Some("cursor")),
    };
    let (queue, agent) = (q.queue, q.agent);
    // A range scan of [since, until) from the cursor on, stopping at a
    // full page: the cost follows the page, not the table.
    let read = st
        .control
        .read(move |s| {
            s.cdr_page(since, until, after, limit, |c| {
                queue.as_deref().is_none_or(|qn| c.queue == qn)
                    && agent.as_deref().is_none_or(|a| c.agent.as_deref() == Some(a))
            })
        })
        .await;
    match read {
        Ok(Ok((page, next))) => {
            let page: Vec<Value> = page.iter().map(|c| serde_json::to_value(c).unwrap_or(Value::Null)).collect();
            let mut body = json!({ "cdrs": page });
            if let (Some(next), Some(o)) = (next, body.as_object_mut()) {
                o.insert("next_cursor".into(), next.to_hex().into());
            }
            Json(body).into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None),
    }
}
