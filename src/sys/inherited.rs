//! Adopting the fds `ipc-run bench` hands the peer it re-executes (their
//! numbers travel in the peer's endpoint). Children of a topology use the
//! child crate instead (`ipc_run_child`), which adopts the fds the
//! `IPC_PORT_*`, `LISTEN_FDS` and `IPC_RUN_READY_FD` variables name.

use std::collections::BTreeSet;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// Fd numbers adopted so far through this function.
static ADOPTED: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());

/// Adopts fd `fd`, inherited across `execve` by number, as an [`OwnedFd`]
/// made close-on-exec, at most once per number. `None` when it is a
/// standard stream (0-2), not open, or adopted already. See fcntl(2).
///
/// Crate-private: only the bench peer calls it, with the numbers its
/// parent passed it (the parent's non-close-on-exec duplicates), which
/// nothing else in the peer opens or adopts.
pub(crate) fn adopt_inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    if fd < 3 {
        return None;
    }
    let mut adopted = ADOPTED.lock().unwrap_or_else(|p| p.into_inner());
    if adopted.contains(&fd) {
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
    adopted.insert(fd);
    // SAFETY: `fd` is open (checked), was inherited by number from the
    // bench parent (the callers' contract above), and the registry makes
    // this its only adoption, so the OwnedFd is its one owner.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}
