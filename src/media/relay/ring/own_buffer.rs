//! The fallback without a provided buffer ring (`RecvMode::OwnBuffer`,
//! chosen when the kernel refuses the ring; also the benchmarks' comparison
//! point): every socket receives into a buffer of its own and sends from it,
//! so it has one datagram in flight and re-arms its receive when the send
//! completes.

use std::time::Instant;

use io_uring::{opcode, types};

use super::{from_storage, to_storage, ud, zeroed_storage, Relay, TAG_SEND_OWN};
use crate::media::relay::table::NO_SOCKET;

/// A socket's own buffer: one datagram in flight per socket.
pub(super) struct OwnBuf {
    pub(super) buf: Vec<u8>,
    dest: libc::sockaddr_storage,
    out_sock: u32,
}

impl OwnBuf {
    pub(super) fn new(size: usize) -> OwnBuf {
        OwnBuf { buf: vec![0u8; size], dest: zeroed_storage(), out_sock: NO_SOCKET }
    }
}

impl Relay {
    /// The datagram is in socket `s`'s own buffer: forward it from there
    /// and re-arm the receive when the send completes.
    pub(super) fn on_recv_own(&mut self, s: u32, res: i32, now: Instant) {
        let Some(Some(sock)) = self.socks.get_mut(s as usize) else { return };
        sock.armed = false;
        sock.inflight = sock.inflight.saturating_sub(1);
        if sock.closing || res < 0 {
            if res < 0 && -res != libc::ECANCELED {
                self.counters.recv_errors += 1;
                self.arm_recv(s);
            }
            self.maybe_free(s);
            return;
        }
        self.counters.rx += 1;
        let (leg, kind) = (sock.leg, sock.kind);
        let src = from_storage(&sock.meta.addr, sock.meta.hdr.msg_namelen);
        let trunc = sock.meta.hdr.msg_flags & libc::MSG_TRUNC != 0;
        let Some(own) = sock.own.as_ref() else { return };
        let len = (res as usize).min(own.buf.len());
        let data = own.buf.get(..len).unwrap_or(&[]);
        let Some((out, dest)) = self.table.on_packet(leg, kind, src, trunc, data, now) else {
            self.arm_recv(s);
            return;
        };
        let (out_fixed, out_fd) = match self.socks.get(out as usize) {
            Some(Some(o)) if !o.closing => (o.fixed, o.fd),
            _ => {
                self.arm_recv(s);
                return;
            }
        };
        let Some(Some(sock)) = self.socks.get_mut(s as usize) else { return };
        let Some(own) = sock.own.as_mut() else { return };
        let nl = to_storage(&dest, &mut own.dest);
        own.out_sock = out;
        let ptr = own.buf.as_ptr();
        let addr = &own.dest as *const _ as *const libc::sockaddr;
        sock.inflight += 1;
        let e = if out_fixed {
            opcode::Send::new(types::Fixed(out), ptr, len as u32).dest_addr(addr).dest_addr_len(nl).build()
        } else {
            opcode::Send::new(types::Fd(out_fd), ptr, len as u32).dest_addr(addr).dest_addr_len(nl).build()
        };
        self.counters.tx += 1;
        self.inline_sends += 1;
        self.push(e.user_data(ud(TAG_SEND_OWN, s, 0)));
    }

    pub(super) fn on_send_own(&mut self, s: u32, res: i32) {
        let out = match self.socks.get_mut(s as usize) {
            Some(Some(sock)) => {
                sock.inflight = sock.inflight.saturating_sub(1);
                sock.own.as_ref().map(|o| o.out_sock).unwrap_or(NO_SOCKET)
            }
            _ => return,
        };
        if res < 0 {
            self.count_tx_error(out);
        } else {
            self.count_tx(out, res as u64);
        }
        self.arm_recv(s);
        self.maybe_free(s);
    }
}
