//! Call detail records and the other things the router asks the store to
//! keep: live calls (so a `kill -9` leaves a trace), round-robin positions,
//! pauses and no-answer counts.
//!
//! Every value here is plain data (serde JSON in the store) produced by the
//! sans-IO router and written by `store::Store::apply_ops`.
//!
//! Dispositions (one CDR per call, exactly one):
//! - `answered`: an agent answered; `overflowed_from` names the queue the
//!   caller asked for when the call was answered in its overflow queue.
//! - `abandoned`: the caller hung up before an agent answered.
//! - `rejected`: refused on arrival; `reason` is the status code (404, 480,
//!   486, 503). A call refused because the whole overflow chain was full is
//!   `rejected`, not `overflowed`.
//! - `timed-out`: waited `max_wait_s`.
//! - `failed`: the shard reported a failure, or the engine restarted while
//!   the call was live (`reason: "engine-restart"`).
//! - `overflowed`: reserved for a call handed to another node (multi-node
//!   plan); this router never emits it, because a call that overflows inside
//!   one engine keeps a single CDR carrying `overflowed_from`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::binding::Change;
use super::facts::{CallId, Party, RtpCounts};
use super::queue_log::QueueLogEntry;
use super::stats::{AgentCounters, QueueStats};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    Answered,
    Abandoned,
    Overflowed,
    Rejected,
    TimedOut,
    Failed,
}

/// One finished call. Times are wall-clock unix ms; `wait_s`/`talk_s` are
/// whole seconds, rounded to nearest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cdr {
    /// `CallId` as text (`shard-seq`).
    pub call_id: String,
    pub sip_call_id: String,
    /// The queue the call was in when it ended (the overflow queue if it overflowed).
    pub queue: String,
    #[serde(default)]
    pub overflowed_from: Option<String>,
    pub caller: String,
    /// The agent that answered; `None` if nobody did.
    #[serde(default)]
    pub agent: Option<String>,
    pub arrived_ms: u64,
    #[serde(default)]
    pub answered_ms: Option<u64>,
    pub ended_ms: u64,
    /// Arrival → answer, or arrival → end when unanswered.
    pub wait_s: u64,
    /// Answer → end; 0 when unanswered.
    pub talk_s: u64,
    pub disposition: Disposition,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub hangup: Option<Party>,
    #[serde(default)]
    pub rtp: RtpCounts,
}

/// What the store keeps about a call that has no CDR yet. Written on arrival
/// and on answer; removed with the CDR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCall {
    pub call: CallId,
    pub sip_call_id: String,
    pub queue: String,
    #[serde(default)]
    pub overflowed_from: Option<String>,
    pub caller: String,
    pub arrived_ms: u64,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub answered_ms: Option<u64>,
}

impl LiveCall {
    /// The CDR of a call that was live when the engine died: `failed`,
    /// reason `engine-restart`, ended at restart time (the real end is lost).
    pub fn restart_cdr(&self, now_ms: u64) -> Cdr {
        let ended_ms = now_ms.max(self.arrived_ms);
        let answered = self.answered_ms.map(|a| a.clamp(self.arrived_ms, ended_ms));
        Cdr {
            call_id: self.call.to_string(),
            sip_call_id: self.sip_call_id.clone(),
            queue: self.queue.clone(),
            overflowed_from: self.overflowed_from.clone(),
            caller: self.caller.clone(),
            agent: answered.and(self.agent.clone()),
            arrived_ms: self.arrived_ms,
            answered_ms: answered,
            ended_ms,
            wait_s: secs(answered.unwrap_or(ended_ms) - self.arrived_ms),
            talk_s: answered.map_or(0, |a| secs(ended_ms - a)),
            disposition: Disposition::Failed,
            reason: Some("engine-restart".into()),
            hangup: Some(Party::Engine),
            rtp: RtpCounts::default(),
        }
    }
}

/// Milliseconds → whole seconds, rounded to nearest.
pub fn secs(ms: u64) -> u64 {
    ms.saturating_add(500) / 1000
}

/// An agent's persisted router state. Pauses and no-answer counts survive
/// a restart so an agent paused for not answering stays paused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPersist {
    #[serde(default)]
    pub paused: Option<Pause>,
    #[serde(default)]
    pub no_answer: u32,
    #[serde(default)]
    pub counters: AgentCounters,
    /// Logged out by an operator: no offers until logged in again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logged_out: bool,
    /// Logged out during a call whose end has not been seen: the logoff
    /// is written at the next start if the engine died first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logout_pending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub reason: Option<String>,
    pub since_ms: u64,
    /// When the router lifts this pause by itself (`auto_unpause_s` after
    /// a no-answer pause); `None` for a pause only a person lifts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

/// One mutation for the store, in order. `Binding` lets the registrar's
/// changes share the router's group commit (one transaction for both).
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    Binding(Change),
    Cdr(Cdr),
    CallLive(LiveCall),
    CallDone(CallId),
    /// The agent a round-robin queue offered to last.
    RoundRobin {
        queue: String,
        last_agent: String,
    },
    Agent {
        agent: String,
        state: AgentPersist,
    },
    /// A queue's reporting counters after a change.
    QueueStats {
        queue: String,
        stats: QueueStats,
    },
    /// One queue log line (append only).
    QueueLog(QueueLogEntry),
}

/// What `Router::new` gets back from the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterRestore {
    pub rr_last: BTreeMap<String, String>,
    pub agents: BTreeMap<String, AgentPersist>,
    pub queue_stats: BTreeMap<String, QueueStats>,
    pub live_calls: Vec<LiveCall>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is neither unix seconds nor an RFC 3339 time (e.g. 2026-11-24T06:00:00Z)")]
pub struct BadTime(pub String);

/// Parses `--since`: unix seconds (`1764000000`) or RFC 3339
/// (`2026-11-24T06:00:00Z`, `2026-11-24T07:00:00.5+01:00`, `T` or space).
/// Returns unix milliseconds.
pub fn parse_since(s: &str) -> Result<u64, BadTime> {
    let bad = || BadTime(s.to_string());
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .ok()
            .and_then(|v| v.checked_mul(1000))
            .ok_or_else(bad);
    }
    parse_rfc3339(t).ok_or_else(bad)
}

fn parse_rfc3339(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = t.get(start..i)?;
        let ms3: String = digits.chars().chain("000".chars()).take(3).collect();
        frac_ms = ms3.parse().ok()?;
    }
    let offset_s = match t.get(i..)? {
        "Z" | "z" => 0,
        off if off.len() == 6 && matches!(&off[..1], "+" | "-") && &off[3..4] == ":" => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let v = oh * 3600 + om * 60;
            if off.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let unix_s = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    let ms = unix_s.checked_mul(1000)?.checked_add(frac_ms)?;
    u64::try_from(ms).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_parses_both_forms() {
        assert_eq!(parse_since("0"), Ok(0));
        assert_eq!(parse_since("1764000000"), Ok(1_764_000_000_000));
        assert_eq!(parse_since("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_since("2026-11-24T06:00:00Z"), Ok(1_795_500_000_000));
        assert_eq!(parse_since("2000-03-01T00:00:00Z"), Ok(951_868_800_000));
        assert_eq!(
            parse_since("2000-03-01 01:00:00.25+01:00"),
            Ok(951_868_800_250)
        );
        assert_eq!(
            parse_since("1999-12-31T19:00:00-05:00"),
            Ok(946_684_800_000)
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-24T06:00:00",
            "-5",
            "1.5",
        ] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn restart_cdr_is_failed_engine_restart() {
        let live = LiveCall {
            call: CallId::new(1, 7),
            sip_call_id: "x".into(),
            queue: "q".into(),
            overflowed_from: None,
            caller: "sip:c@h".into(),
            arrived_ms: 1_000,
            agent: Some("a".into()),
            answered_ms: Some(3_000),
        };
        let c = live.restart_cdr(10_000);
        assert_eq!(c.disposition, Disposition::Failed);
        assert_eq!(c.reason.as_deref(), Some("engine-restart"));
        assert_eq!((c.wait_s, c.talk_s, c.call_id.as_str()), (2, 7, "1-7"));
        assert_eq!(c.agent.as_deref(), Some("a"));
    }
}
