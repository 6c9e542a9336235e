//! UDP sockets with kernel receive timestamps (SO_TIMESTAMPNS), batched
//! receive (recvmmsg), plain libc: no executor in the load generator.
//!
//! Every latency figure cc-bench prints is `kernel receive time of the
//! answer − CLOCK_REALTIME read just before the request was sent` (or a send
//! time carried in an RTP payload). Both are CLOCK_REALTIME, so they compare
//! across threads and across the engine/bench process boundary.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

/// Wall-clock nanoseconds (CLOCK_REALTIME, the clock SO_TIMESTAMPNS uses).
pub fn now_ns() -> u64 {
    let mut ts: libc::timespec = unsafe { zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub struct Sock {
    pub sock: UdpSocket,
    pub local: SocketAddr,
}

pub const BATCH: usize = 32;
pub const MAX_DGRAM: usize = 4096;

/// One received datagram in a [`RecvBatch`].
pub struct Dgram<'a> {
    pub data: &'a [u8],
    pub from: SocketAddr,
    /// Kernel receive timestamp (ns, CLOCK_REALTIME); user-space time if the
    /// kernel gave none.
    pub ts: u64,
}

/// Reusable buffers for recvmmsg.
pub struct RecvBatch {
    bufs: Vec<[u8; MAX_DGRAM]>,
    addrs: Vec<libc::sockaddr_in>,
    ctrl: Vec<[u64; 8]>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    n: usize,
    /// Datagrams that arrived without a kernel timestamp (should stay 0).
    pub no_kernel_ts: u64,
}

// SAFETY: the raw pointers in `iov`/`hdrs` point into this struct's own
// heap buffers and are rewritten before every recvmmsg; moving the struct to
// another thread moves those buffers with it.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        RecvBatch {
            bufs: vec![[0u8; MAX_DGRAM]; BATCH],
            addrs: vec![unsafe { zeroed() }; BATCH],
            ctrl: vec![[0u64; 8]; BATCH],
            iov: vec![unsafe { zeroed() }; BATCH],
            hdrs: vec![unsafe { zeroed() }; BATCH],
            n: 0,
            no_kernel_ts: 0,
        }
    }

    pub fn get(&mut self, i: usize) -> Dgram<'_> {
        let h = &self.hdrs[i];
        let len = h.msg_len as usize;
        let a = &self.addrs[i];
        let from = SocketAddr::V4(SocketAddrV4::new(
            u32::from_be(a.sin_addr.s_addr).into(),
            u16::from_be(a.sin_port),
        ));
        let mut ts = 0;
        unsafe {
            let mh = &h.msg_hdr;
            let mut c = libc::CMSG_FIRSTHDR(mh);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let t: libc::timespec =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const _);
                    ts = t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
                }
                c = libc::CMSG_NXTHDR(mh, c);
            }
        }
        if ts == 0 {
            self.no_kernel_ts += 1;
            ts = now_ns();
        }
        Dgram {
            data: &self.bufs[i][..len],
            from,
            ts,
        }
    }
}

impl Sock {
    /// Binds a port above the kernel's ephemeral range (61000–65535 by
    /// default), so the bench never takes a port the engine's RTP relay
    /// range (and anyone's ephemeral sockets) may need. Falls back to any
    /// port when that range is full.
    pub fn bind_high(ip: std::net::IpAddr) -> io::Result<Sock> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let lo = high_range_start();
        let span = 65536 - lo as u32;
        let seed = std::process::id().wrapping_mul(2654435761);
        for _ in 0..span {
            let k = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = lo as u32 + (seed.wrapping_add(k)) % span;
            if let Ok(s) = Sock::bind(SocketAddr::new(ip, port as u16)) {
                return Ok(s);
            }
        }
        Sock::bind(SocketAddr::new(ip, 0))
    }

    /// Binds `addr` (port 0 = any) with a large receive buffer and kernel
    /// receive timestamps, non-blocking.
    pub fn bind(addr: SocketAddr) -> io::Result<Sock> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        let _ = s.set_recv_buffer_size(8 << 20);
        let _ = s.set_send_buffer_size(8 << 20);
        s.bind(&addr.into())?;
        s.set_nonblocking(true)?;
        let one: libc::c_int = 1;
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                &one as *const _ as *const libc::c_void,
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let sock: UdpSocket = s.into();
        let local = sock.local_addr()?;
        Ok(Sock { sock, local })
    }

    pub fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.sock.send_to(data, to)
    }

    /// Sends `pkts[i]` to `dsts[i]` with sendmmsg (one syscall per 64).
    /// Returns how many were handed to the kernel.
    pub fn send_batch(&self, pkts: &[Vec<u8>], dsts: &[SocketAddr]) -> usize {
        let mut sent = 0;
        for (pc, dc) in pkts.chunks(64).zip(dsts.chunks(64)) {
            let mut addrs: Vec<libc::sockaddr_in> = dc
                .iter()
                .map(|d| {
                    let mut a: libc::sockaddr_in = unsafe { zeroed() };
                    a.sin_family = libc::AF_INET as libc::sa_family_t;
                    a.sin_port = d.port().to_be();
                    if let std::net::IpAddr::V4(v4) = d.ip() {
                        a.sin_addr.s_addr = u32::from(v4).to_be();
                    }
                    a
                })
                .collect();
            let mut iov: Vec<libc::iovec> = pc
                .iter()
                .map(|p| libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                })
                .collect();
            let mut hdrs: Vec<libc::mmsghdr> = (0..pc.len())
                .map(|i| {
                    let mut h: libc::mmsghdr = unsafe { zeroed() };
                    h.msg_hdr.msg_name = &mut addrs[i] as *mut _ as *mut libc::c_void;
                    h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                    h.msg_hdr.msg_iov = &mut iov[i];
                    h.msg_hdr.msg_iovlen = 1;
                    h
                })
                .collect();
            let mut off = 0;
            while off < hdrs.len() {
                let n = unsafe {
                    libc::sendmmsg(
                        self.sock.as_raw_fd(),
                        hdrs[off..].as_mut_ptr(),
                        (hdrs.len() - off) as libc::c_uint,
                        0,
                    )
                };
                if n <= 0 {
                    break;
                }
                off += n as usize;
            }
            sent += off;
        }
        sent
    }

    /// Receives up to [`BATCH`] datagrams without blocking; 0 when none.
    pub fn recv_batch(&self, b: &mut RecvBatch) -> io::Result<usize> {
        for i in 0..BATCH {
            b.iov[i] = libc::iovec {
                iov_base: b.bufs[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: MAX_DGRAM,
            };
            let mh = &mut b.hdrs[i].msg_hdr;
            mh.msg_name = &mut b.addrs[i] as *mut _ as *mut libc::c_void;
            mh.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            mh.msg_iov = &mut b.iov[i];
            mh.msg_iovlen = 1;
            mh.msg_control = b.ctrl[i].as_mut_ptr() as *mut libc::c_void;
            mh.msg_controllen = size_of::<[u64; 8]>() as _;
            mh.msg_flags = 0;
            b.hdrs[i].msg_len = 0;
        }
        let n = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                b.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            b.n = 0;
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(0);
            }
            // ICMP port-unreachable from an earlier send surfaces here.
            if e.raw_os_error() == Some(libc::ECONNREFUSED) {
                return Ok(0);
            }
            return Err(e);
        }
        b.n = n as usize;
        Ok(b.n)
    }
}

/// First port above the ephemeral range (`ip_local_port_range`).
fn high_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u32>().ok())
        })
        .map(|hi| (hi + 1).min(65000) as u16)
        .unwrap_or(61000)
}

/// Waits until one of `fds` is readable or `timeout_ns` passes.
pub fn wait_readable(fds: &[i32], timeout_ns: u64) {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    unsafe {
        libc::ppoll(
            p.as_mut_ptr(),
            p.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
}

/// Raises RLIMIT_NOFILE to its hard limit (many sockets per worker).
pub fn raise_nofile() {
    unsafe {
        let mut r: libc::rlimit = zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// The cores this process may run on (respects `taskset`).
pub fn allowed_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

pub fn pin(core: usize) {
    core_affinity::set_for_current(core_affinity::CoreId { id: core });
}
