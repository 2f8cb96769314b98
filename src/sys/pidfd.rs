//! Process file descriptors (`pidfd_open(2)`): an fd that becomes readable
//! when the process exits. The supervisor registers one per child in an
//! epoll set, whose ready list keeps the order in which the exits happened
//! (`epoll(7)`), so exits reaped in one wake-up are handled in that order.
//! A pidfd registered after its process exited is queued at registration,
//! not at the exit: the order holds for processes watched before they exit.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// Opens a pidfd for `pid` (CLOEXEC, as every pidfd is). The caller must
/// not have reaped `pid`, or the number may name another process; a zombie
/// is fine. See pidfd_open(2) (Linux 5.3).
pub fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new fd
    // or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this fd, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A duplicate (CLOEXEC) of fd number `target` of the process behind
/// `pidfd`: the same open file description the process holds there. See
/// pidfd_getfd(2) (Linux 5.6); the caller needs ptrace access to the
/// process, which a parent of the same user (or root) has.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target: i32) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes two fds and a flags word (0) and returns a
    // new fd or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this fd, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
