//! The unsafe half of the shared-memory ring (`docs/shm-ring.md`): a
//! `MAP_SHARED` mapping of a segment, atomic views of its header counters,
//! bounds-checked copies into and out of it, shared futex waits and wakes,
//! and the `fcntl` record lock among producers.
//!
//! Everything here checks offsets against the mapping, so the safe ring in
//! `child::ring` cannot reach outside it whatever a peer wrote into the
//! header. The bytes of the mapping are never turned into Rust references:
//! other processes write them concurrently, and the ring protocol (not the
//! type system) says who may touch which bytes when.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use nix::errno::Errno;

/// A read-write `MAP_SHARED` mapping of the first `len` bytes of a file,
/// unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory with no thread affinity; all
// access goes through atomics or raw copies that the ring protocol orders.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only offers atomic views and raw copies.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0, readable and writable, shared.
    pub fn new(fd: BorrowedFd<'_>, len: usize) -> Result<Mapping, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        // SAFETY: a fresh mapping chosen by the kernel (address null)
        // overlaps no Rust object; the fd is borrowed, hence open.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(Errno::EINVAL)?;
        Ok(Mapping { ptr, len })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: `new` refuses length 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, len: usize, align: usize) {
        assert!(
            offset % align == 0 && offset.checked_add(len).is_some_and(|end| end <= self.len),
            "ring mapping access out of bounds: {len} bytes at {offset} of {}",
            self.len
        );
    }

    /// The naturally aligned u64 at `offset` as an atomic.
    ///
    /// # Panics
    /// When `offset` is misaligned or out of the mapping: a programming
    /// error, as offsets are the header's constants.
    pub fn u64_at(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8, 8);
        // SAFETY: in bounds and 8-aligned (checked; mmap returns page-aligned
        // memory); the memory lives as long as `self`, and shared memory
        // that other processes change is what atomics are for.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
    }

    /// The naturally aligned u32 at `offset` as an atomic (see [`Mapping::u64_at`]).
    pub fn u32_at(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4, 4);
        // SAFETY: as in `u64_at`, with 4-byte alignment.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
    }

    /// Copies `data` into the mapping at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) {
        self.check(offset, data.len(), 1);
        // SAFETY: the destination is in bounds (checked) and cannot overlap
        // `data`, a Rust slice outside the mapping or a copy of it made by
        // `read`; no Rust reference to the mapping's bytes exists.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len());
        }
    }

    /// Copies `out.len()` bytes of the mapping at `offset` into `out`.
    pub fn read(&self, offset: usize, out: &mut [u8]) {
        self.check(offset, out.len(), 1);
        // SAFETY: the source is in bounds (checked); `out` is an exclusive
        // Rust slice, so it is not the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                out.as_mut_ptr(),
                out.len(),
            );
        }
    }

    /// Copies `data` into a circular area of `capacity` bytes starting at
    /// `base`, from position `pos` (taken modulo `capacity`), wrapping at its end.
    pub fn write_wrapped(&self, base: usize, capacity: usize, pos: u64, data: &[u8]) {
        assert!(data.len() <= capacity, "record larger than the ring");
        let start = (pos % capacity as u64) as usize;
        let first = data.len().min(capacity - start);
        self.write(base + start, &data[..first]);
        self.write(base, &data[first..]);
    }

    /// Copies `out.len()` bytes out of a circular area (see [`Mapping::write_wrapped`]).
    pub fn read_wrapped(&self, base: usize, capacity: usize, pos: u64, out: &mut [u8]) {
        assert!(out.len() <= capacity, "record larger than the ring");
        let start = (pos % capacity as u64) as usize;
        let first = out.len().min(capacity - start);
        let (head, tail) = out.split_at_mut(first);
        self.read(base + start, head);
        self.read(base, tail);
    }

    /// `FUTEX_WAIT` (shared) on the u32 at `offset` while it holds
    /// `expected`, for at most `timeout`. `Ok` on a wake-up, `EAGAIN` when
    /// the word differs, `EINTR`, `ETIMEDOUT`.
    pub fn futex_wait(
        &self,
        offset: usize,
        expected: u32,
        timeout: Option<Duration>,
    ) -> Result<(), Errno> {
        self.check(offset, 4, 4);
        let spec = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let spec_ptr = spec
            .as_ref()
            .map_or(std::ptr::null(), |s| s as *const libc::timespec);
        // SAFETY: the word is in bounds and aligned (checked) and stays
        // mapped during the call; the timespec (or null) outlives it.
        // FUTEX_WAIT without FUTEX_PRIVATE_FLAG: other processes wake it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.ptr.as_ptr().add(offset),
                libc::FUTEX_WAIT,
                expected,
                spec_ptr,
            )
        };
        if rc < 0 { Err(Errno::last()) } else { Ok(()) }
    }

    /// `FUTEX_WAKE` (shared) of every waiter on the u32 at `offset`.
    pub fn futex_wake(&self, offset: usize) {
        self.check(offset, 4, 4);
        // SAFETY: the word is in bounds and aligned (checked); a wake only
        // names the address. Its result (waiters woken) is not needed.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.ptr.as_ptr().add(offset),
                libc::FUTEX_WAKE,
                i32::MAX,
            );
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and nothing
        // borrowed from the mapping outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Takes (`lock`) or drops the POSIX record lock on byte 0 of `fd`
/// (`fcntl(F_SETLKW)` / `F_SETLK` with `F_UNLCK`), retrying on `EINTR`.
pub fn record_lock(fd: BorrowedFd<'_>, lock: bool) -> Result<(), Errno> {
    // SAFETY: `flock` is plain data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if lock { libc::F_WRLCK } else { libc::F_UNLCK } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 1;
    let cmd = if lock { libc::F_SETLKW } else { libc::F_SETLK };
    loop {
        // SAFETY: `fl` is a valid flock that outlives the call; the fd is
        // borrowed, hence open.
        let rc = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &fl as *const libc::flock) };
        if rc == 0 {
            return Ok(());
        }
        match Errno::last() {
            Errno::EINTR => continue,
            errno => return Err(errno),
        }
    }
}
