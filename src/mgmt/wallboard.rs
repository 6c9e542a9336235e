//! The wallboard: one page and its script and style, built into the
//! binary so it works offline and cannot drift from the engine serving it.
//!
//! The page itself is open (it holds no data); it asks for a token and
//! reads the REST API and the event stream with it.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("wallboard/index.html");
const APP_JS: &str = include_str!("wallboard/app.js");
const STYLE: &str = include_str!("wallboard/style.css");

/// The paths served without a token.
pub fn is_open(path: &str) -> bool {
    matches!(path, "/" | "/wallboard" | "/wallboard/" | "/wallboard/app.js" | "/wallboard/style.css")
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/wallboard") }))
        .route("/wallboard", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/wallboard/", get(|| async { Redirect::to("/wallboard") }))
        .route("/wallboard/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/wallboard/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Nothing but this engine: a script injected through a name or a
    // pause reason could not load or send anything elsewhere.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for text in [INDEX, APP_JS, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"), "an external reference");
        }
        assert!(INDEX.contains("/wallboard/app.js") && INDEX.contains("/wallboard/style.css"));
        assert!(APP_JS.contains("sessionStorage") && !APP_JS.contains("localStorage"));
    }

    #[test]
    fn only_the_page_is_open() {
        assert!(is_open("/wallboard") && is_open("/") && is_open("/wallboard/app.js"));
        assert!(!is_open("/v1/agents") && !is_open("/wallboard/../v1/agents") && !is_open("/metrics"));
    }
}
