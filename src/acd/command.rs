//! Commands from the management plane (HTTP API, wallboard, scripts) to
//! the routing shard, and their answers. Plain data: they cross from the
//! management thread to the routing executor.

use serde::Serialize;

/// What an operator asks the routing shard to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// No new offers for the agent; calls in progress carry on.
    Pause { agent: String, reason: Option<String> },
    Unpause { agent: String },
    /// No new offers; a call in progress ends normally. Persisted.
    Logout { agent: String },
    Login { agent: String },
    /// Apply a reloaded config's agents and queues (`config::Reload`).
    Reload(NewConfig),
    /// End a live call in whatever state it is; an unanswered caller gets
    /// `status` as the final response to its INVITE.
    Hangup { call: crate::acd::facts::CallId, status: u16 },
}

/// The final response an operator's hangup gives an unanswered caller
/// unless the request names another: Temporarily Unavailable, which
/// phones show as "try later", not as an error of the number.
pub const DEFAULT_HANGUP_STATUS: u16 = 480;

/// A reloaded config, shared as is (two are equal only if they are the
/// same reload: a config has no meaningful equality).
#[derive(Debug, Clone)]
pub struct NewConfig(pub std::sync::Arc<crate::config::Reload>);

impl PartialEq for NewConfig {
    fn eq(&self, other: &NewConfig) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The answer to a [`Command`], shaped like the HTTP answer it becomes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum CommandResult {
    /// Done; `detail` is the new state of what was changed.
    Done { detail: serde_json::Value },
    /// No such agent, queue or call (404).
    NotFound { what: String },
    /// Not possible in the present state, and why (409).
    Conflict { reason: String },
    /// A field of the command is not acceptable (400).
    Invalid { field: String, reason: String },
}
