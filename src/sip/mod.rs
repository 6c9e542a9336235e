//! SIP: message parsing and validation, transactions (RFC 3261 §17),
//! the per-shard endpoint, and digest authentication.

pub mod auth;
