//! ICMP errors for datagrams we sent, from the SIP socket's error queue.
//!
//! An agent whose softphone died leaves a binding that points at a closed
//! port; the kernel answers our INVITE there with ICMP port unreachable.
//! Without `IP_RECVERR` an unconnected UDP socket drops that news and the
//! call rings into nothing until the ring timeout. With it, the kernel
//! queues the error (with the destination it was for) and makes the next
//! receive fail, so the shard can end that client transaction at once
//! (RFC 3261 §8.1.3.1) and the call goes to another agent.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

/// At most this many errors are read per call: the queue is bounded by the
/// socket's receive buffer, and a flood of ICMP must not stall the shard.
pub const DRAIN_MAX: usize = 64;

/// Asks the kernel to queue ICMP errors on `fd` (IPv4 or IPv6 socket).
pub fn enable(fd: RawFd, v6: bool) -> io::Result<()> {
    let one: libc::c_int = 1;
    let (level, opt) = if v6 { (libc::IPPROTO_IPV6, libc::IPV6_RECVERR) } else { (libc::IPPROTO_IP, libc::IP_RECVERR) };
    // SAFETY: setsockopt with a valid int option value and its size.
    let r = unsafe {
        libc::setsockopt(fd, level, opt, &one as *const libc::c_int as *const libc::c_void, size_of::<libc::c_int>() as libc::socklen_t)
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Whether an error from a socket call means "look at the error queue".
pub fn is_unreachable(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH))
}

/// Reads queued errors without blocking; returns the destinations reported
/// unreachable (port, host or network), in order. Other queued errors
/// (e.g. a path MTU report) are read and dropped.
pub fn drain_unreachable(fd: RawFd) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for _ in 0..DRAIN_MAX {
        // SAFETY: plain C structs, zero is a valid bit pattern for each.
        let mut name: libc::sockaddr_storage = unsafe { zeroed() };
        let mut data = [0u8; 64];
        let mut control = [0u64; 64];
        let mut iov = libc::iovec { iov_base: data.as_mut_ptr() as *mut libc::c_void, iov_len: data.len() };
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = &mut name as *mut libc::sockaddr_storage as *mut libc::c_void;
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = size_of::<[u64; 64]>();
        // SAFETY: msg points at buffers that live across the call.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if n < 0 {
            break; // EAGAIN: the queue is empty
        }
        if !reports_unreachable(&msg) {
            continue;
        }
        if let Some(a) = sockaddr_of(&name) {
            out.push(a);
        }
    }
    out
}

/// The extended error in the control data says ECONNREFUSED/EHOSTUNREACH/
/// ENETUNREACH.
fn reports_unreachable(msg: &libc::msghdr) -> bool {
    // SAFETY: CMSG_* walk the control buffer the kernel filled, within
    // msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let h = &*c;
            let ours = (h.cmsg_level == libc::IPPROTO_IP && h.cmsg_type == libc::IP_RECVERR)
                || (h.cmsg_level == libc::IPPROTO_IPV6 && h.cmsg_type == libc::IPV6_RECVERR);
            if ours && h.cmsg_len as usize >= libc::CMSG_LEN(size_of::<libc::sock_extended_err>() as u32) as usize {
                let ee = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::sock_extended_err);
                let e = ee.ee_errno as i32;
                return e == libc::ECONNREFUSED || e == libc::EHOSTUNREACH || e == libc::ENETUNREACH;
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    false
}

fn sockaddr_of(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), 0, a.sin6_scope_id)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    /// A datagram to a closed loopback port comes back as an unreachable
    /// report naming that port.
    #[test]
    fn closed_port_is_reported_with_its_address() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        enable(s.as_raw_fd(), false).expect("IP_RECVERR");
        let closed = {
            let t = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            t.local_addr().expect("addr")
        };
        s.send_to(b"INVITE", closed).expect("send");
        s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < deadline {
            let mut buf = [0u8; 16];
            if let Err(e) = s.recv_from(&mut buf) {
                if is_unreachable(&e) {
                    got = drain_unreachable(s.as_raw_fd());
                }
            }
        }
        assert_eq!(got, vec![closed]);
        assert!(drain_unreachable(s.as_raw_fd()).is_empty(), "the queue is drained");
    }
}
