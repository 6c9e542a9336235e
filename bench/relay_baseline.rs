//! Baseline for the relay benchmark: a minimal RTP relay written with plain
//! epoll + recvmmsg/sendmmsg (no io_uring, no validation beyond "has a
//! source"), the kind of loop most relays start from. Same socket layout as
//! `relay-bench relay`: stream i has socket A at base+4i (the load sends to
//! it) and socket B at base+4i+2 (which sends to --peer); B→A goes back to
//! the last source seen on A.
//!
//! usage: relay-baseline --streams N --base PORT --peer IP:PORT [--cpu C] [--secs T] [--batch 32]

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn storage(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let s2: socket2::SockAddr = (*a).into();
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    unsafe { std::ptr::copy_nonoverlapping(s2.as_ptr() as *const u8, &mut st as *mut _ as *mut u8, s2.len() as usize) };
    (st, s2.len())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let streams: usize = arg(&args, "--streams", 100);
    let base: u16 = arg(&args, "--base", 20000);
    let peer: SocketAddr = arg(&args, "--peer", "127.0.0.1:19000".parse().unwrap());
    let secs: u64 = arg(&args, "--secs", 3600);
    let batch: usize = arg::<usize>(&args, "--batch", 32).clamp(1, 1024);
    let cpu: i64 = arg(&args, "--cpu", -1);
    if cpu >= 0 {
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu as usize });
    }
    // socks[2i] = A_i, socks[2i+1] = B_i
    let mut socks = Vec::with_capacity(2 * streams);
    for i in 0..streams {
        for off in [0u16, 2] {
            let port = base + 4 * i as u16 + off;
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
            s.set_nonblocking(true).unwrap();
            s.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into()).unwrap_or_else(|e| panic!("bind {port}: {e}"));
            socks.push(UdpSocket::from(s));
        }
    }
    // destinations: for k = 2i (A) packets go out of B to peer; for k = 2i+1 (B) out of A to A's last source
    let (peer_st, peer_len) = storage(&peer);
    let mut a_src: Vec<(libc::sockaddr_storage, libc::socklen_t)> = vec![(unsafe { std::mem::zeroed() }, 0); streams];
    let ep = unsafe { libc::epoll_create1(0) };
    for (k, s) in socks.iter().enumerate() {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: k as u64 };
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
    }
    let mut bufs = vec![[0u8; 2048]; batch];
    let mut iovs: Vec<libc::iovec> = bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr() as *mut _, iov_len: b.len() }).collect();
    let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; batch];
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; batch];
    let mut events: Vec<libc::epoll_event> = vec![libc::epoll_event { events: 0, u64: 0 }; 512];
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut rx, mut tx) = (0u64, 0u64);
    eprintln!("relay-baseline pid {} streams {streams} base {base} peer {peer}", std::process::id());
    while Instant::now() < end {
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 200) };
        for e in events.iter().take(n.max(0) as usize) {
            let k = e.u64 as usize;
            let i = k / 2;
            let fd = socks[k].as_raw_fd();
            // prepare receive headers
            for j in 0..batch {
                iovs[j].iov_len = 2048;
                msgs[j].msg_hdr.msg_name = &mut names[j] as *mut _ as *mut _;
                msgs[j].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
                msgs[j].msg_hdr.msg_iov = &mut iovs[j];
                msgs[j].msg_hdr.msg_iovlen = 1;
                msgs[j].msg_len = 0;
            }
            let m = unsafe { libc::recvmmsg(fd, msgs.as_mut_ptr(), batch as u32, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
            if m <= 0 {
                continue;
            }
            let m = m as usize;
            rx += m as u64;
            let (out_fd, dest, dlen) = if k % 2 == 0 {
                // remember A's source (symmetric), forward via B to the peer
                a_src[i] = (names[m - 1], msgs[m - 1].msg_hdr.msg_namelen);
                (socks[k + 1].as_raw_fd(), peer_st, peer_len)
            } else {
                if a_src[i].1 == 0 {
                    continue;
                }
                (socks[k - 1].as_raw_fd(), a_src[i].0, a_src[i].1)
            };
            for j in 0..m {
                names[j] = dest;
                msgs[j].msg_hdr.msg_namelen = dlen;
                iovs[j].iov_len = msgs[j].msg_len as usize;
            }
            let s = unsafe { libc::sendmmsg(out_fd, msgs.as_mut_ptr(), m as u32, 0) };
            if s > 0 {
                tx += s as u64;
            }
        }
    }
    eprintln!("relay-baseline done rx {rx} tx {tx}");
}
