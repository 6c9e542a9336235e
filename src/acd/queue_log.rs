//! The queue log: one line per queue event in Asterisk's `queue_log`
//! vocabulary and field order, so the reporting tools that read
//! Asterisk's file read ours:
//!
//! `epoch|callid|queue|agent|event|data1|data2|data3`
//!
//! `callid` is the caller's SIP Call-ID (the CDR's `sip_call_id`), `agent`
//! the agent id, `NONE` where Asterisk writes it (no queue or no agent).
//! Data fields per event, as app_queue writes them:
//!
//! | event | data1 | data2 | data3 |
//! |---|---|---|---|
//! | ENTERQUEUE | url (empty) | caller | position |
//! | CONNECT | hold time s | bridged call id | ring time s |
//! | RINGNOANSWER | ring time ms | | |
//! | COMPLETECALLER / COMPLETEAGENT | hold time s | call time s | original position |
//! | ABANDON / EXITWITHTIMEOUT / EXITEMPTY | position | original position | wait s |
//! | FULL / JOINEMPTY | caller | | |
//! | PAUSE / UNPAUSE | reason | | |
//! | AGENTLOGIN / AGENTLOGOFF | contact | | |
//!
//! Two events of our own, which Asterisk does not have:
//! - `FAILED` (position, original position, wait s, reason), for a call
//!   the engine lost (engine restart, an agent leg that failed after the
//!   answer is still COMPLETEAGENT).
//! - `OPERATORHANGUP`, for a call an operator ended over the API: data as
//!   the line the call would otherwise have ended with (waiting or
//!   ringing: position, original position, wait s, like ABANDON; bridged:
//!   hold time s, call time s, original position, like COMPLETEAGENT),
//!   then the state it was in (`waiting`, `ringing`, `talking`). A name of
//!   its own, because tools count ABANDON as the caller's choice and
//!   COMPLETE* as a call served to its end; tools that do not know it
//!   skip the line.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum QueueEvent {
    EnterQueue,
    Connect,
    RingNoAnswer,
    CompleteCaller,
    CompleteAgent,
    Abandon,
    ExitWithTimeout,
    ExitEmpty,
    Full,
    JoinEmpty,
    Transfer,
    Pause,
    Unpause,
    AgentLogin,
    AgentLogoff,
    AddMember,
    RemoveMember,
    Failed,
    OperatorHangup,
}

impl QueueEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueEvent::EnterQueue => "ENTERQUEUE",
            QueueEvent::Connect => "CONNECT",
            QueueEvent::RingNoAnswer => "RINGNOANSWER",
            QueueEvent::CompleteCaller => "COMPLETECALLER",
            QueueEvent::CompleteAgent => "COMPLETEAGENT",
            QueueEvent::Abandon => "ABANDON",
            QueueEvent::ExitWithTimeout => "EXITWITHTIMEOUT",
            QueueEvent::ExitEmpty => "EXITEMPTY",
            QueueEvent::Full => "FULL",
            QueueEvent::JoinEmpty => "JOINEMPTY",
            QueueEvent::Transfer => "TRANSFER",
            QueueEvent::Pause => "PAUSE",
            QueueEvent::Unpause => "UNPAUSE",
            QueueEvent::AgentLogin => "AGENTLOGIN",
            QueueEvent::AgentLogoff => "AGENTLOGOFF",
            QueueEvent::AddMember => "ADDMEMBER",
            QueueEvent::RemoveMember => "REMOVEMEMBER",
            QueueEvent::Failed => "FAILED",
            QueueEvent::OperatorHangup => "OPERATORHANGUP",
        }
    }
}

/// One queue log record; `line()` is its text form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueLogEntry {
    pub time_ms: u64,
    /// The caller's SIP Call-ID, or `NONE`.
    pub callid: String,
    pub queue: String,
    pub agent: String,
    pub event: QueueEvent,
    pub data: Vec<String>,
}

pub const NONE: &str = "NONE";

impl QueueLogEntry {
    pub fn new(time_ms: u64, callid: &str, queue: &str, agent: Option<&str>, event: QueueEvent) -> QueueLogEntry {
        QueueLogEntry {
            time_ms,
            callid: callid.to_string(),
            queue: queue.to_string(),
            agent: agent.unwrap_or(NONE).to_string(),
            event,
            data: Vec::new(),
        }
    }

    /// An agent event that belongs to no queue and no call.
    pub fn agent(time_ms: u64, agent: &str, event: QueueEvent) -> QueueLogEntry {
        QueueLogEntry::new(time_ms, NONE, NONE, Some(agent), event)
    }

    pub fn with(mut self, data: impl IntoIterator<Item = impl ToString>) -> QueueLogEntry {
        self.data.extend(data.into_iter().map(|d| d.to_string()));
        self
    }

    /// `epoch|callid|queue|agent|event|data1|data2|data3[|…]`: at least
    /// three data fields, as the reporting tools expect; `|` and line
    /// breaks inside a field (a Call-ID or a pause reason can carry them)
    /// become `_` so a line always splits into the same fields.
    pub fn line(&self) -> String {
        let mut out = format!(
            "{}|{}|{}|{}|{}",
            self.time_ms / 1000,
            clean(&self.callid),
            clean(&self.queue),
            clean(&self.agent),
            self.event.as_str()
        );
        for i in 0..self.data.len().max(3) {
            out.push('|');
            if let Some(d) = self.data.get(i) {
                out.push_str(&clean(d));
            }
        }
        out
    }
}

fn clean(s: &str) -> String {
    s.replace(['|', '\n', '\r'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_asterisks_field_order_and_at_least_three_data_fields() {
        let e = QueueLogEntry::new(1_366_720_340_500, "abc@host", "support", None, QueueEvent::EnterQueue)
            .with(["", "sip:c@x", "1"]);
        assert_eq!(e.line(), "1366720340|abc@host|support|NONE|ENTERQUEUE||sip:c@x|1");
        let e = QueueLogEntry::new(1_000, "c1", "q", Some("alice"), QueueEvent::RingNoAnswer).with([15000]);
        assert_eq!(e.line(), "1|c1|q|alice|RINGNOANSWER|15000||");
        let e = QueueLogEntry::agent(2_000, "bob", QueueEvent::Pause).with(["coffee|break\nnow"]);
        assert_eq!(e.line(), "2|NONE|NONE|bob|PAUSE|coffee_break_now||");
        assert_eq!(e.line().split('|').count(), 8);
    }
}
