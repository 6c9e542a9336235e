//! `GET /v1/events`: the live event stream as Server-Sent Events.
//!
//! Each event carries its number as the SSE `id:`; a client that
//! reconnects with `Last-Event-ID` (or `?since=N`) gets every event after
//! it once, in order, or first an `event: gap` when the ring no longer
//! holds them all. Without either it starts with what happens next.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::api::error;
use super::events::{After, Event};
use super::server::AppState;

/// A comment line this often keeps proxies from closing a quiet stream
/// and lets the server notice a client that went away.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events written in one chunk at most.
const BATCH: usize = 256;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    since: Option<String>,
}

pub async fn events(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(StatusCode::BAD_REQUEST, "the only query parameter is since", Some("since"));
    };
    let since = match &q.since {
        Some(s) => match s.trim().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return error(StatusCode::BAD_REQUEST, "since must be an event number", Some("since")),
        },
        None => None,
    };
    let last_id = match headers.get("last-event-id") {
        Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            Some(n) => Some(n),
            None => {
                return error(StatusCode::BAD_REQUEST, "Last-Event-ID must be an event number", Some("Last-Event-ID"))
            }
        },
        None => None,
    };
    let start = last_id.or(since).unwrap_or_else(|| st.control.events.last());
    let hello = format!(": cc-engine events after {start}\n\n");
    let stream = futures_lite::stream::unfold((st, start, Some(hello)), |(st, last, hello)| async move {
        if let Some(h) = hello {
            return Some((Ok::<String, Infallible>(h), (st, last, None)));
        }
        let (chunk, next) = loop {
            // Created before looking, so an event published in between
            // still wakes it.
            let notified = st.control.events.notify.notified();
            match st.control.events.after(last, BATCH) {
                After::Events(e) if e.is_empty() => {
                    if tokio::time::timeout(KEEP_ALIVE, notified).await.is_err() {
                        break (": keep-alive\n\n".to_string(), last);
                    }
                }
                After::Events(e) => break render(&e, None, last),
                After::Gap { first, events } => break render(&events, Some(first), last),
            }
        };
        Some((Ok(chunk), (st, next, None)))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// SSE text for `events` (after a gap event if `gap_first`); returns the
/// text and the number of the last event in it.
fn render(events: &[Event], gap_first: Option<u64>, last: u64) -> (String, u64) {
    let mut s = String::new();
    if let Some(first) = gap_first {
        let data = serde_json::json!({ "after": last, "first": first, "missed": first.saturating_sub(last + 1) });
        let _ = write!(s, "event: gap\ndata: {data}\n\n");
    }
    let mut next = gap_first.map_or(last, |f| f.saturating_sub(1));
    for e in events {
        let mut data = e.data.clone();
        if let Some(o) = data.as_object_mut() {
            o.insert("seq".into(), e.seq.into());
            o.insert("type".into(), e.kind.into());
        }
        let _ = write!(s, "id: {}\nevent: {}\ndata: {data}\n\n", e.seq, e.kind);
        next = e.seq;
    }
    (s, next)
}
