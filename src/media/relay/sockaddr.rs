//! `SocketAddr` ⇄ `libc::sockaddr_storage`, without allocation (the ring
//! reads and writes socket addresses in the kernel's layout).

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

/// Length of a `sockaddr_storage`: the name space of a receive.
pub(crate) const STORAGE_LEN: usize = std::mem::size_of::<libc::sockaddr_storage>();

/// The address in `st`, if its family is IPv4 or IPv6 and `len` covers it.
pub(crate) fn from_storage(st: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match st.ss_family as i32 {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in;
            // sockaddr_storage is larger than and aligned at least as
            // strictly as sockaddr_in, and the borrow is read-only.
            let a = unsafe { &*(st as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(u32::from_be(a.sin_addr.s_addr).into(), u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6 (also smaller than the storage).
            let a = unsafe { &*(st as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Write `a` into `st`; returns the length to pass to the kernel.
pub(crate) fn to_storage(a: &SocketAddr, st: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is larger than and aligned at least as
            // strictly as sockaddr_in; every field written is plain data, and
            // the exclusive borrow of `st` covers the cast.
            let s = unsafe { &mut *(st as *mut libc::sockaddr_storage as *mut libc::sockaddr_in) };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = v4.port().to_be();
            s.sin_addr = libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() };
            s.sin_zero = [0; 8];
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let s = unsafe { &mut *(st as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6) };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = v6.port().to_be();
            s.sin6_addr = libc::in6_addr { s6_addr: v6.ip().octets() };
            s.sin6_flowinfo = v6.flowinfo();
            s.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// An all-zero `sockaddr_storage` (family `AF_UNSPEC`).
pub(crate) fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain integers and byte arrays: all-zero
    // is a valid value.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn round_trip(a: SocketAddr) -> (SocketAddr, libc::socklen_t) {
        let mut st = zeroed_storage();
        let len = to_storage(&a, &mut st);
        (from_storage(&st, len).unwrap(), len)
    }

    #[test]
    fn ipv4_round_trip_in_network_order() {
        let a: SocketAddr = "127.0.0.1:30002".parse().unwrap();
        let (b, len) = round_trip(a);
        assert_eq!(b, a);
        assert_eq!(len as usize, std::mem::size_of::<libc::sockaddr_in>());
        let mut st = zeroed_storage();
        to_storage(&a, &mut st);
        // SAFETY (test): written as a sockaddr_in just above.
        let sin = unsafe { &*(&st as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
        assert_eq!(sin.sin_port.to_ne_bytes(), 30002u16.to_be_bytes());
        assert_eq!(sin.sin_addr.s_addr.to_ne_bytes(), [127, 0, 0, 1]);
    }

    #[test]
    fn ipv6_round_trip_keeps_flowinfo_and_scope() {
        let a = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 1, 2, 3, 4), 40000, 7, 3));
        let (b, len) = round_trip(a);
        assert_eq!(b, a);
        let SocketAddr::V6(b6) = b else { panic!("family") };
        assert_eq!((b6.flowinfo(), b6.scope_id()), (7, 3));
        assert_eq!(len as usize, std::mem::size_of::<libc::sockaddr_in6>());
        let l: SocketAddr = "[::1]:5004".parse().unwrap();
        assert_eq!(round_trip(l).0, l);
    }

    #[test]
    fn short_length_or_unknown_family_is_none() {
        let mut st = zeroed_storage();
        let len = to_storage(&"10.0.0.1:9".parse().unwrap(), &mut st);
        assert_eq!(from_storage(&st, len - 1), None);
        let mut st6 = zeroed_storage();
        let len6 = to_storage(&"[::1]:9".parse().unwrap(), &mut st6);
        assert_eq!(from_storage(&st6, len6 - 1), None);
        assert_eq!(from_storage(&zeroed_storage(), STORAGE_LEN as libc::socklen_t), None, "AF_UNSPEC");
    }

    #[test]
    fn a_v4_written_over_a_v6_reads_back_as_v4() {
        let mut st = zeroed_storage();
        to_storage(&"[2001:db8::1]:1".parse().unwrap(), &mut st);
        let v4: SocketAddr = "192.0.2.7:65535".parse().unwrap();
        let len = to_storage(&v4, &mut st);
        assert_eq!(from_storage(&st, len), Some(v4));
    }
}
