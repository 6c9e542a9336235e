//! The relay's buffer pool: one anonymous mapping of `count × size` bytes,
//! handed to the kernel through a provided buffer ring, so an armed receive
//! holds no buffer until a datagram arrives.
//!
//! Ownership of a buffer moves between the kernel and user space: it is the
//! kernel's while its id sits in the provided ring; a receive completion
//! that selected it hands it to user space; [`Pool::recycle`] puts it back.
//! User space reads a buffer only between those two points.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

pub(crate) struct Pool {
    mem: *mut u8,
    mem_len: usize,
    size: usize,
    count: usize,
    ring: *mut BufRingEntry,
    ring_len: usize,
    mask: u16,
    tail: u16,
    /// Buffers currently owned by user space or in flight on a send.
    pub(crate) out: usize,
    /// Also registered as one fixed buffer (for `SEND_ZC`).
    pub(crate) registered: bool,
}

impl Pool {
    /// Map `count` buffers of `size` bytes (count clamped to 8..=32768) and
    /// the ring that lists them. No buffer is in the ring yet.
    pub(crate) fn new(count: usize, size: usize) -> io::Result<Pool> {
        let count = count.clamp(8, 32768);
        let entries = count.next_power_of_two();
        let mem_len = count * size;
        let ring_len = (entries * std::mem::size_of::<BufRingEntry>()).max(4096);
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choosing touches no existing memory; failure is checked below.
        let mem = unsafe {
            libc::mmap(std::ptr::null_mut(), mem_len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if mem == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above. The mapping is page-aligned, as a provided
        // buffer ring must be, and zero-filled (tail 0 = empty ring).
        let ring = unsafe {
            libc::mmap(std::ptr::null_mut(), ring_len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if ring == libc::MAP_FAILED {
            let err = io::Error::last_os_error();
            // SAFETY: `mem` is the mapping of `mem_len` bytes made above,
            // not yet shared with anyone.
            unsafe { libc::munmap(mem, mem_len) };
            return Err(err);
        }
        Ok(Pool {
            mem: mem as *mut u8,
            mem_len,
            size,
            count,
            ring: ring as *mut BufRingEntry,
            ring_len,
            mask: (entries - 1) as u16,
            tail: 0,
            out: count,
            registered: false,
        })
    }

    /// Address of the provided buffer ring (for `register_buf_ring`).
    pub(crate) fn ring_addr(&self) -> u64 {
        self.ring as u64
    }
    /// Slots of the provided ring (a power of two ≥ `count`).
    pub(crate) fn entries(&self) -> u16 {
        self.mask.wrapping_add(1)
    }
    pub(crate) fn count(&self) -> usize {
        self.count
    }
    /// Bytes per buffer.
    pub(crate) fn size(&self) -> usize {
        self.size
    }
    /// The whole buffer area as one iovec (for `register_buffers`).
    #[cfg(feature = "relay-bench-modes")]
    pub(crate) fn iovec(&self) -> libc::iovec {
        libc::iovec { iov_base: self.mem as *mut libc::c_void, iov_len: self.mem_len }
    }
    #[cfg(feature = "relay-bench-modes")]
    pub(crate) fn mem_len(&self) -> usize {
        self.mem_len
    }

    /// Start of buffer `bid` (computed, not dereferenced: callers check
    /// [`valid`](Self::valid) before handing it to the kernel or reading).
    #[inline]
    pub(crate) fn buf(&self, bid: u16) -> *mut u8 {
        self.mem.wrapping_add(bid as usize * self.size)
    }

    #[inline]
    pub(crate) fn valid(&self, bid: u16) -> bool {
        (bid as usize) < self.count
    }

    /// Bytes `off..off + len` of buffer `bid`, clamped to the buffer; empty
    /// for an invalid id. Only for a buffer user space owns (a receive
    /// completion selected it and it is not recycled yet).
    #[inline]
    pub(crate) fn bytes(&self, bid: u16, off: usize, len: usize) -> &[u8] {
        if !self.valid(bid) || off > self.size {
            return &[];
        }
        let len = len.min(self.size - off);
        // SAFETY: bid < count and off + len ≤ size, so the range lies inside
        // the mapping of count × size bytes, which lives as long as `self`.
        // The buffer is user space's (see the module docs), so the kernel
        // does not write it while this borrow lives.
        unsafe { std::slice::from_raw_parts(self.mem.add(bid as usize * self.size + off), len) }
    }

    /// Give buffer `bid` back to the kernel (visible after [`publish`](Self::publish)).
    #[inline]
    pub(crate) fn recycle(&mut self, bid: u16) {
        if !self.valid(bid) {
            return;
        }
        // SAFETY: the ring mapping holds `entries` slots (ring_len ≥
        // entries × entry size) and the index is masked to entries − 1. The
        // kernel reads slots only up to the published tail, and this slot
        // is past it until `publish`.
        let e = unsafe { &mut *self.ring.add((self.tail & self.mask) as usize) };
        e.set_addr(self.buf(bid) as u64);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.out = self.out.saturating_sub(1);
    }

    /// Hand every buffer recycled so far to the kernel.
    #[inline]
    pub(crate) fn publish(&self) {
        // SAFETY: the ring's tail is a u16 overlaying the reserved field of
        // entry 0 (the kernel ABI), inside the mapping and 2-byte aligned,
        // so it may be viewed as an AtomicU16. The release store makes the
        // entries written by `recycle` visible before the new tail.
        unsafe {
            let t = BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*t).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: both regions are the mappings made in `new`, unmapped once.
        // The relay drops its ring (which unregisters the buffer ring and
        // ends every operation) before its pool, so the kernel no longer
        // uses them.
        unsafe {
            libc::munmap(self.mem as *mut libc::c_void, self.mem_len);
            libc::munmap(self.ring as *mut libc::c_void, self.ring_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycle_counts_and_bounds() {
        let mut p = Pool::new(3, 256).unwrap();
        assert_eq!(p.count(), 8, "clamped to at least 8");
        assert_eq!(p.entries(), 8);
        assert_eq!(p.out, 8, "every buffer starts in user space");
        for bid in 0..8 {
            p.recycle(bid);
        }
        p.publish();
        assert_eq!(p.out, 0);
        p.recycle(8); // invalid id: ignored
        assert_eq!(p.out, 0);
        assert!(p.bytes(8, 0, 10).is_empty());
        assert_eq!(p.bytes(1, 250, 100).len(), 6, "clamped to the buffer");
        assert!(p.bytes(1, 300, 1).is_empty());
    }
}
