//! What the endpoint and its transactions hand to the shell and the TU, and
//! the counters they keep. Its own module so that the transaction layer
//! (which queues retransmissions and timeouts) and the endpoint (which
//! drives the transactions) both depend on it instead of on each other.

use std::net::SocketAddr;

use bytes::Bytes;

use super::message::DropReason;
use super::msg::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxId(pub u64);

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this datagram.
    Transmit { dest: SocketAddr, data: Bytes },
    /// Hand the datagram to `shard`'s `handle_forwarded`.
    Forward {
        shard: u16,
        data: Bytes,
        src: SocketAddr,
    },
    /// A request the TU must answer with `respond(tx, ..)`.
    Request {
        tx: ServerTxId,
        request: Message,
        src: SocketAddr,
    },
    /// A CANCEL hit INVITE `tx` (200 to the CANCEL already sent): answer
    /// that INVITE 487.
    Cancelled { tx: ServerTxId },
    /// The ACK of the 2xx we sent on INVITE `tx`.
    Ack {
        tx: ServerTxId,
        request: Message,
        src: SocketAddr,
    },
    /// The 2xx on INVITE `tx` was never ACKed (64·T1): end the dialog.
    AckTimeout { tx: ServerTxId },
    /// A response to our request `tx` (provisional, final, or 2xx
    /// retransmission, which the TU must ACK again).
    Response {
        tx: ClientTxId,
        response: Message,
    },
    /// Timer B or F: no final response.
    ClientTimeout { tx: ClientTxId },
}

/// Plain counters; the shell publishes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
    pub keepalives: u64,
    pub forwarded: u64,
    pub requests_in: u64,
    pub responses_in: u64,
    /// Indexed by status class: `[1]` = 1xx … `[6]` = 6xx.
    pub responses_sent: [u64; 7],
    pub retransmissions_absorbed: u64,
    pub retransmissions_sent: u64,
    pub client_timeouts: u64,
    /// Client transactions ended by an ICMP error for their destination.
    pub client_transport_errors: u64,
    /// Timer H: a non-2xx final never ACKed.
    pub server_timeouts: u64,
    /// Non-INVITE requests the TU never answered within 64·T1.
    pub server_unanswered: u64,
}

impl Counters {
    pub fn drop(&mut self, reason: DropReason) {
        if let Some(c) = self.drops.get_mut(reason as usize) {
            *c += 1;
        }
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops.get(reason as usize).copied().unwrap_or(0)
    }

    pub fn count_response_sent(&mut self, status: u16) {
        if let Some(c) = self.responses_sent.get_mut(usize::from(status / 100)) {
            *c += 1;
        }
    }
}

