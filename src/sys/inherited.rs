//! Taking ownership of fds a process inherited by number (the child side of
//! the fd protocol: `IPC_PORT_*` `fd=N`, `LISTEN_FDS`, `IPC_RUN_READY_FD`).

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Adopts inherited fd `fd` as an [`OwnedFd`] and sets FD_CLOEXEC on it, so
/// it does not leak further into the process's own children.
///
/// Returns `None` when `fd` is negative, a standard stream (0-2) or not open.
/// The caller must adopt each inherited fd at most once (the child module
/// takes the number out of its `Port` or the environment as it adopts):
/// two owners would close it twice. See fcntl(2).
pub fn adopt_inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    if fd < 3 {
        return None;
    }
    // SAFETY: F_GETFD only reads the flags of a descriptor number; an
    // invalid number yields EBADF, no memory is touched.
    let flags = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) };
    if flags < 0 {
        return None;
    }
    // SAFETY: as above, F_SETFD only changes the descriptor's flags.
    unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFD, flags | nix::libc::FD_CLOEXEC) };
    // SAFETY: `fd` is open (checked above) and was inherited by number from
    // the process that exec'd us; by this function's contract nothing else
    // in this process owns it, so the OwnedFd is its only owner.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}
