//! The one module of this crate with `unsafe`: the system calls std does
//! not wrap, each block with the reason it is sound.
//!
//! - [`take_inherited`]: adopting an fd inherited by number, at most once
//!   per process (`fcntl(2)`).
//! - [`Mapping`]: a `MAP_SHARED` mapping with atomic views, bounds-checked
//!   copies and shared futex waits (`mmap(2)`, `futex(2)`), for the ring.
//! - [`record_lock`], [`fstat`], [`pwrite_all`], [`shm_open`]: the ring's
//!   writer lock and segment handling (`fcntl(2)`, `fstat(2)`,
//!   `pwrite(2)`, `shm_open(3)`).
//! - [`current_cpu`], [`online_cpus`]: where this thread runs and how many
//!   CPUs the machine has, for the ring's adaptive spinning
//!   (`sched_getcpu(3)`, `sysconf(3)`).

#![expect(
    unsafe_code,
    reason = "this module wraps the system calls std leaves out"
)]

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

/// Fd numbers adopted so far by this process (through this crate).
static ADOPTED: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());

/// Adopts fd `fd`, inherited across `execve` by number, as an [`OwnedFd`]
/// made close-on-exec. `None` when it is a standard stream (0-2), not
/// open, close-on-exec already (so not inherited), or adopted already.
///
/// Only this crate calls it, and only with numbers the process's protocol
/// variables name at start (`IPC_PORT_*` `fd=`, `LISTEN_FDS`,
/// `IPC_RUN_READY_FD`): by that protocol the fd was handed to the process
/// for the port, and nothing in the process opened it. The registry makes
/// each number adopted at most once, so no fd gets two owners through us.
pub(crate) fn take_inherited(fd: RawFd) -> Option<OwnedFd> {
    if fd < 3 {
        return None;
    }
    let mut adopted = ADOPTED.lock().unwrap_or_else(|p| p.into_inner());
    if adopted.contains(&fd) {
        return None;
    }
    // SAFETY: F_GETFD only reads the flags of a descriptor number; a
    // number that is not open yields EBADF, no memory is touched.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // An fd that crossed `execve` has FD_CLOEXEC clear (else exec would
    // have closed it); one with it set was opened in this process after
    // exec (std opens everything close-on-exec), e.g. by a grandchild that
    // inherited the variable but not the fd: not ours to adopt.
    if flags < 0 || flags & libc::FD_CLOEXEC != 0 {
        return None;
    }
    // SAFETY: as above; F_SETFD only changes the descriptor's flags.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    adopted.insert(fd);
    // SAFETY: `fd` is open (checked) and was inherited by number (the
    // contract of this crate-private function, see above); the registry
    // guarantees this is its first and only adoption, so the OwnedFd is
    // its one owner.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The error of the last failed call.
fn last() -> io::Error {
    io::Error::last_os_error()
}

/// A read-write `MAP_SHARED` mapping of the first `len` bytes of a file,
/// unmapped on drop. The bytes are never turned into Rust references:
/// other processes write them concurrently, and the ring protocol (not the
/// type system) says who may touch which bytes when. Every access checks
/// its offset against the mapping, so a peer's corrupt header can at worst
/// make the ring refuse to work, never reach outside.
#[derive(Debug)]
pub(crate) struct Mapping {
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
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
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
            return Err(last());
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        Ok(Mapping { ptr, len })
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
    pub(crate) fn u64_at(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8, 8);
        // SAFETY: in bounds and 8-aligned (checked; mmap returns page-aligned
        // memory); the memory lives as long as `self`, and shared memory
        // that other processes change is what atomics are for.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
    }

    /// The naturally aligned u32 at `offset` as an atomic (see [`Mapping::u64_at`]).
    pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4, 4);
        // SAFETY: as in `u64_at`, with 4-byte alignment.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
    }

    /// Copies `data` into the mapping at `offset`.
    pub(crate) fn write(&self, offset: usize, data: &[u8]) {
        self.check(offset, data.len(), 1);
        // SAFETY: the destination is in bounds (checked) and cannot overlap
        // `data`, a Rust slice outside the mapping or a copy of it made by
        // `read`; no Rust reference to the mapping's bytes exists.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len());
        }
    }

    /// Copies `out.len()` bytes of the mapping at `offset` into `out`.
    pub(crate) fn read(&self, offset: usize, out: &mut [u8]) {
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
    pub(crate) fn write_wrapped(&self, base: usize, capacity: usize, pos: u64, data: &[u8]) {
        assert!(data.len() <= capacity, "record larger than the ring");
        let start = (pos % capacity as u64) as usize;
        let first = data.len().min(capacity - start);
        self.write(base + start, &data[..first]);
        self.write(base, &data[first..]);
    }

    /// Copies `out.len()` bytes out of a circular area (see [`Mapping::write_wrapped`]).
    pub(crate) fn read_wrapped(&self, base: usize, capacity: usize, pos: u64, out: &mut [u8]) {
        assert!(out.len() <= capacity, "record larger than the ring");
        let start = (pos % capacity as u64) as usize;
        let first = out.len().min(capacity - start);
        let (head, tail) = out.split_at_mut(first);
        self.read(base + start, head);
        self.read(base, tail);
    }

    /// `FUTEX_WAIT` (shared) on the u32 at `offset` while it holds
    /// `expected`, for at most `timeout`. `Ok` on a wake-up; `EAGAIN` when
    /// the word differs, `EINTR`, `ETIMEDOUT` as errors.
    pub(crate) fn futex_wait(
        &self,
        offset: usize,
        expected: u32,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
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
        if rc < 0 { Err(last()) } else { Ok(()) }
    }

    /// `FUTEX_WAKE` (shared) of every waiter on the u32 at `offset`.
    pub(crate) fn futex_wake(&self, offset: usize) {
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
pub(crate) fn record_lock(fd: BorrowedFd<'_>, lock: bool) -> io::Result<()> {
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
        let error = last();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// What [`fstat`] tells of a file.
pub(crate) struct FileStat {
    /// Size in bytes.
    pub(crate) size: u64,
    /// Device and inode: which file it is.
    pub(crate) id: (u64, u64),
}

/// `fstat(2)`.
#[allow(
    clippy::unnecessary_cast,
    reason = "st_dev and st_ino are u64 on 64-bit Linux only"
)]
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<FileStat> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `stat` is a writable buffer of the right type for the call;
    // the fd is borrowed, hence open.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) };
    if rc < 0 {
        return Err(last());
    }
    // SAFETY: fstat succeeded, so it filled the buffer.
    let stat = unsafe { stat.assume_init() };
    Ok(FileStat {
        size: stat.st_size as u64,
        id: (stat.st_dev as u64, stat.st_ino as u64),
    })
}

/// Writes all of `data` at `offset` of `fd` (`pwrite(2)`), retrying on
/// `EINTR` and short writes.
pub(crate) fn pwrite_all(fd: BorrowedFd<'_>, data: &[u8], offset: u64) -> io::Result<()> {
    let mut written = 0;
    while written < data.len() {
        let rest = &data[written..];
        // SAFETY: `rest` is a readable slice of `rest.len()` bytes that
        // outlives the call; the fd is borrowed, hence open.
        let n = unsafe {
            libc::pwrite(
                fd.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                (offset + written as u64) as libc::off_t,
            )
        };
        match n {
            0 => return Err(io::Error::from_raw_os_error(libc::EIO)),
            n if n > 0 => written += n as usize,
            _ => {
                let error = last();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}

/// Opens the POSIX shared-memory object `name` read-write, close-on-exec
/// (`shm_open(3)`).
pub(crate) fn shm_open(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::shm_open(name.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: shm_open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An anonymous memory file of `size` bytes (`memfd_create(2)`), for tests.
#[cfg(test)]
pub(crate) fn memfd(size: u64) -> io::Result<OwnedFd> {
    // SAFETY: the name is a NUL-terminated literal.
    let fd = unsafe { libc::memfd_create(c"ipc-run-child-test".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    std::fs::File::from(fd.try_clone()?).set_len(size)?;
    Ok(fd)
}

/// Clears FD_CLOEXEC on `fd`, as a parent handing it over across `execve`
/// does: for tests that stand in for the inheriting process.
#[cfg(test)]
pub(crate) fn clear_cloexec(fd: std::os::fd::BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    // SAFETY: F_SETFD on a descriptor the caller borrows (so open) only
    // changes its flags; no memory is touched.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) };
}

/// The CPU this thread runs on now (`sched_getcpu(3)`, a vDSO read on
/// x86-64), `None` where the kernel cannot say.
pub(crate) fn current_cpu() -> Option<u32> {
    // SAFETY: sched_getcpu takes no arguments and touches no memory of ours.
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).ok()
}

/// CPUs online on this machine (`sysconf(_SC_NPROCESSORS_ONLN)`), at least 1.
pub(crate) fn online_cpus() -> u32 {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).unwrap_or(1).max(1)
}

/// Pins the calling thread to `cpu` (`sched_setaffinity(2)`), for tests
/// that put both ends of a ring on one CPU.
#[cfg(test)]
pub(crate) fn pin_thread(cpu: u32) -> io::Result<()> {
    // SAFETY: `cpu_set_t` is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit of the set we own; `cpu` is below
    // CPU_SETSIZE (checked by the caller's choice from the current mask).
    unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    // SAFETY: the set outlives the call and its size is passed; pid 0 is
    // the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc < 0 { Err(last()) } else { Ok(()) }
}
