//! One call's state: the customer leg, the current agent leg (or offer), relay legs,
//! the agreed codec. The transitions live in `table.rs`, which owns the
//! indexes that find a call from a transaction, dialog or relay leg.

use std::time::Instant;
use crate::acd::facts::{OfferResult, Party};
use crate::config::AnswerMode;
use crate::media::sdp::{Chosen, Direction};
use crate::media::RelayLegPorts;
use crate::sip::{ClientTxId, ServerTxId};

use super::dialog::Dialog;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Customer,
    Agent,
}

impl Side {
    pub fn party(self) -> Party {
        match self {
            Side::Customer => Party::Caller,
            Side::Agent => Party::Agent,
        }
    }
}

#[derive(Debug)]
pub struct Customer {
    /// The INVITE server transaction, until it is answered finally.
    pub invite_tx: ServerTxId,
    /// Final status sent on the INVITE.
    pub final_sent: Option<u16>,
    pub ringing_sent: bool,
    pub dialog: Dialog,
    pub sdp_version: u64,
    /// Our re-INVITE on this leg, pending.
    pub reinvite: Option<ClientTxId>,
    /// A direction to offer once `reinvite` ends (it changed meanwhile).
    pub queued_dir: Option<Direction>,
}

/// One more contact rung in parallel with the one in [`Agent`] (of the
/// same agent, or of another one in a ring-all offer); each is its own
/// INVITE and would-be dialog.
#[derive(Debug)]
pub struct Fork {
    /// The agent whose contact this is.
    pub agent: String,
    pub tx: ClientTxId,
    pub invite_cseq: u32,
    pub dialog: Dialog,
}

/// The offer of a call to one agent's phones, or to several agents' at
/// once (ring-all); once answered, the bridged agent leg.
#[derive(Debug)]
pub struct Agent {
    /// The agent of the contact in `tx` / `dialog`: the winner once answered.
    pub name: String,
    /// The agent-side relay leg, opened for this offer and closed with it
    /// (`CallTable::take_agent`).
    pub leg: RelayLegPorts,
    /// The INVITE client transaction (of the contact that answered, once
    /// one has; until then of any contact still ringing).
    pub tx: ClientTxId,
    pub invite_cseq: u32,
    pub dialog: Dialog,
    /// 2xx received: the dialog is confirmed and bridged.
    pub answered: bool,
    /// Offer number, to match the ring timer.
    pub seq: u64,
    pub sdp_version: u64,
    pub reinvite: Option<ClientTxId>,
    pub queued_dir: Option<Direction>,
    /// The other contacts still ringing (empty once answered).
    pub forks: Vec<Fork>,
    /// Per agent, the most telling failure among its contacts that gave up
    /// so far.
    pub failures: Vec<(String, OfferResult)>,
}

impl Agent {
    /// Whether `tx` is the INVITE of one of this offer's contacts.
    pub fn rings_on(&self, tx: ClientTxId) -> bool {
        !self.answered && (self.tx == tx || self.forks.iter().any(|f| f.tx == tx))
    }

    /// The agent whose contact `tx` is.
    pub fn agent_of(&self, tx: ClientTxId) -> Option<&str> {
        if self.tx == tx {
            return Some(&self.name);
        }
        self.forks.iter().find(|f| f.tx == tx).map(|f| f.agent.as_str())
    }

    /// Whether a contact of `agent` still rings.
    pub fn rings_for(&self, agent: &str) -> bool {
        !self.answered && (self.name == agent || self.forks.iter().any(|f| f.agent == agent))
    }

    /// The agents with a contact still ringing, each once, in ring order.
    pub fn ringing_agents(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        if self.answered {
            return v;
        }
        for a in std::iter::once(&self.name).chain(self.forks.iter().map(|f| &f.agent)) {
            if !v.contains(a) {
                v.push(a.clone());
            }
        }
        v
    }

    /// Keeps `result` as `agent`'s failure if it says more than the one
    /// kept so far.
    pub fn note_failure(&mut self, agent: &str, result: OfferResult) {
        match self.failures.iter_mut().find(|(a, _)| a == agent) {
            Some((_, kept)) => {
                if failure_rank(&result) > failure_rank(kept) {
                    *kept = result;
                }
            }
            None => self.failures.push((agent.to_owned(), result)),
        }
    }

    /// `agent`'s most telling failure (a transport failure if none was kept).
    pub fn failure_of(&self, agent: &str) -> OfferResult {
        self.failures
            .iter()
            .find(|(a, _)| a == agent)
            .map_or(OfferResult::Failed { status: None }, |(_, r)| r.clone())
    }
}

/// How much a failed contact says about the agent, to pick the one result
/// the router hears when every contact failed. A phone that rang out means
/// the person did not take the call (it counts toward auto-pause); a busy
/// or DND phone means they are occupied; a decline is a choice about this
/// call; a transport or other error says only that a device is gone. So the
/// rank is no-answer > busy > declined > failed; a relay shortage (never
/// per contact) ranks last.
pub fn failure_rank(r: &OfferResult) -> u8 {
    match r {
        OfferResult::Answered => 5,
        OfferResult::NoAnswer => 4,
        OfferResult::Busy => 3,
        OfferResult::Declined => 2,
        OfferResult::Failed { .. } => 1,
        OfferResult::MediaUnavailable | OfferResult::Cancelled => 0,
    }
}

#[derive(Debug)]
pub struct Call {
    /// When the customer's INVITE arrived (the shard's clock).
    pub arrived: Instant,
    pub queue: String,
    pub mode: AnswerMode,
    pub caller_display: String,
    pub cust: Customer,
    pub agent: Option<Agent>,
    /// The customer-side relay leg (the agent's is in `agent`).
    pub leg: RelayLegPorts,
    /// The agreed codecs: one audio codec, maybe telephone-event.
    pub chosen: Vec<Chosen>,
    pub ptime: u32,
    /// Our SDP answer to the customer's offer.
    pub cust_sdp: String,
    pub session_id: u64,
    pub hold_on: bool,
    pub queued: bool,
    pub offers: u64,
    /// Every transaction and dialog key this call ever indexed (cleanup).
    pub srv: Vec<ServerTxId>,
    pub cli: Vec<ClientTxId>,
    pub dialog_keys: Vec<(String, String)>,
}

impl Call {
    pub fn bridged(&self) -> bool {
        self.agent.as_ref().is_some_and(|a| a.answered)
    }

    pub fn ringing(&self) -> bool {
        self.agent.as_ref().is_some_and(|a| !a.answered)
    }

    pub fn audio_pt(&self) -> u8 {
        self.chosen.iter().find(|c| !c.codec.is_dtmf()).map_or(0, |c| c.pt)
    }

    pub fn dialog_mut(&mut self, side: Side) -> Option<&mut Dialog> {
        match side {
            Side::Customer => Some(&mut self.cust.dialog),
            Side::Agent => self.agent.as_mut().filter(|a| a.answered).map(|a| &mut a.dialog),
        }
    }

    pub fn leg(&self, side: Side) -> Option<RelayLegPorts> {
        match side {
            Side::Customer => Some(self.leg),
            Side::Agent => self.agent.as_ref().map(|a| a.leg),
        }
    }
}
