//! File-descriptor helpers: `flock(2)`, `getrandom(2)`, `O_CLOEXEC` dups.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// Tries to take an exclusive `flock(2)` on `fd` without blocking.
///
/// Returns `Ok(false)` when another open file description holds it.
pub fn try_lock_exclusive(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    // SAFETY: flock only reads the fd number; `fd` is borrowed, hence open.
    let rc = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    match Errno::last() {
        Errno::EWOULDBLOCK => Ok(false),
        errno => Err(errno),
    }
}

/// Fills `buf` from the kernel's CSPRNG (`getrandom(2)`, blocking until the
/// pool is initialised).
pub fn fill_random(buf: &mut [u8]) -> Result<(), Errno> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe the writable slice `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let errno = Errno::last();
            if errno == Errno::EINTR {
                continue;
            }
            return Err(errno);
        }
        filled += n as usize;
    }
    Ok(())
}

/// Duplicates `fd` to the lowest free number `>= min`, with `O_CLOEXEC`
/// (`fcntl(F_DUPFD_CLOEXEC)`).
pub fn dup_cloexec_at_least(fd: BorrowedFd<'_>, min: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new fd and touches no memory.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `new` was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Borrows one of the process's standard fds (0, 1 or 2) if it is open.
pub fn std_fd(fd: i32) -> Option<BorrowedFd<'static>> {
    debug_assert!((0..=2).contains(&fd));
    // SAFETY: F_GETFD only inspects the fd table.
    let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
    // SAFETY: fds 0-2 are never closed by ipc-run, so the borrow outlives
    // any use; checked open just above.
    open.then(|| unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Whether `fd` has `FD_CLOEXEC` set.
pub fn is_cloexec(fd: impl AsFd) -> Result<bool, Errno> {
    // SAFETY: F_GETFD only inspects the fd table.
    let flags = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_GETFD) };
    if flags < 0 {
        return Err(Errno::last());
    }
    Ok(flags & libc::FD_CLOEXEC != 0)
}

/// Whether the peer of connected socket `fd` has shut down its sending
/// side or closed it (`POLLRDHUP` / `POLLHUP` without waiting). nix cannot
/// report `POLLRDHUP` (its flag set lacks it), hence the direct call.
pub fn peer_hung_up(fd: BorrowedFd<'_>) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1, zero timeout; poll only writes
    // `revents` of that struct.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// Moves up to `len` bytes from `from` to `to` with `splice(2)`
/// (`SPLICE_F_MOVE`), one of them being a pipe; returns the bytes moved,
/// 0 at the end of the input. `EINVAL` when the kernel cannot splice
/// between these two (no pipe, a terminal, a file opened for appending).
pub fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> Result<usize, Errno> {
    // SAFETY: two borrowed (open) fds, null offsets (both files' own
    // positions are used); splice touches no memory of this process.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE,
        )
    };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// Duplicates up to `len` bytes from pipe `from` into pipe `to` without
/// consuming them (`tee(2)`); 0 at the end of the input, `EINVAL` when
/// either is not a pipe.
pub fn tee(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> Result<usize, Errno> {
    // SAFETY: two borrowed (open) fds; tee touches no memory of this
    // process.
    let n = unsafe { libc::tee(from.as_raw_fd(), to.as_raw_fd(), len, 0) };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// Sets `TCP_DEFER_ACCEPT` on the listening TCP socket `fd` (`tcp(7)`):
/// a connection is queued for `accept` once data arrives on it, or after
/// about `seconds` of SYN-ACK retransmissions. nix has no such option.
pub fn tcp_defer_accept(fd: BorrowedFd<'_>, seconds: i32) -> Result<(), Errno> {
    let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: passes a live c_int and its size; the kernel reads only
    // that many bytes and keeps no pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&seconds).cast(),
            size,
        )
    };
    Errno::result(rc).map(drop)
}
