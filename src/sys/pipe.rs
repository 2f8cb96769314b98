//! How full a pipe or FIFO is: the bytes waiting in it (`FIONREAD`,
//! `ioctl(2)`) and its capacity (`F_GETPIPE_SZ`, `fcntl(2)`). The
//! supervisor reads them on the read ends it holds to tell a data cycle
//! that is stuck (`docs/supervision.md`, "Deadlocked data cycles").

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};

/// How full the pipe whose read end is `fd` is: (bytes buffered, capacity).
pub fn fill(fd: BorrowedFd<'_>) -> nix::Result<(u64, u64)> {
    let mut buffered: libc::c_int = 0;
    // SAFETY: FIONREAD stores one int through the pointer, which points to
    // a live, writable c_int for the duration of the call; `fd` is open.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut buffered) };
    if rc < 0 {
        return Err(Errno::last());
    }
    let capacity = fcntl(fd, FcntlArg::F_GETPIPE_SZ)?;
    Ok((
        u64::try_from(buffered).unwrap_or(0),
        u64::try_from(capacity).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn counts_what_waits_in_a_pipe() {
        let (read, write) = nix::unistd::pipe().unwrap();
        assert_eq!(nix::unistd::write(&write, b"hello").unwrap(), 5);
        let (buffered, capacity) = fill(read.as_fd()).unwrap();
        assert_eq!(buffered, 5);
        assert!(capacity >= 4096, "{capacity}");
    }
}
