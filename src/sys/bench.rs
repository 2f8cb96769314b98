//! System calls `ipc-run bench` needs that nix leaves unsafe or lacks:
//! POSIX message queue send/receive on a plain fd, System V `msgsnd`/
//! `msgrcv`, and `sigtimedwait(2)`.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};

/// Sends `msg` on the POSIX message queue `fd` at priority 0
/// (`mq_send(3)`), retrying on EINTR.
pub fn mq_send(fd: BorrowedFd<'_>, msg: &[u8]) -> Result<(), Errno> {
    loop {
        // SAFETY: on Linux an mqd_t is the fd, which is borrowed hence
        // open; the pointer and length describe the readable slice `msg`.
        let rc = unsafe { libc::mq_send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        match Errno::result(rc) {
            Err(Errno::EINTR) => continue,
            other => return other.map(drop),
        }
    }
}

/// Receives one message from the POSIX message queue `fd` into `buf`
/// (`mq_receive(3)`; `buf` must hold at least the queue's `mq_msgsize`),
/// retrying on EINTR. Returns the message length.
pub fn mq_receive(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: as for mq_send; the pointer and length describe the
        // writable slice `buf`, and the priority pointer may be null.
        let rc = unsafe {
            libc::mq_receive(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                std::ptr::null_mut(),
            )
        };
        match Errno::result(rc) {
            Err(Errno::EINTR) => continue,
            other => return other.map(|n| n as usize),
        }
    }
}

/// A System V message buffer (`struct msgbuf`: a `long` type followed by
/// the text), aligned for the `long`.
#[derive(Debug)]
pub struct SysvMessage {
    words: Vec<libc::c_long>,
    capacity: usize,
}

const LONG: usize = std::mem::size_of::<libc::c_long>();

impl SysvMessage {
    /// A buffer whose text holds up to `capacity` bytes.
    pub fn new(capacity: usize) -> SysvMessage {
        SysvMessage {
            words: vec![0; 1 + capacity.div_ceil(LONG)],
            capacity,
        }
    }

    /// The text area, `capacity` bytes.
    pub fn text_mut(&mut self) -> &mut [u8] {
        // SAFETY: the Vec holds 1 + ceil(capacity / LONG) longs, so the
        // `capacity` bytes after the first long are inside the allocation;
        // u8 has no alignment or validity requirement, and the borrow of
        // `self` keeps the Vec alive and unaliased for the slice's life.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.words.as_mut_ptr().add(1).cast::<u8>(),
                self.capacity,
            )
        }
    }

    /// The text area, `capacity` bytes.
    pub fn text(&self) -> &[u8] {
        // SAFETY: as for `text_mut`, shared.
        unsafe {
            std::slice::from_raw_parts(self.words.as_ptr().add(1).cast::<u8>(), self.capacity)
        }
    }

    /// Sends the first `len` bytes of the text with type `mtype`
    /// (`msgsnd(2)`, blocking), retrying on EINTR.
    pub fn send(&mut self, id: i32, mtype: i64, len: usize) -> Result<(), Errno> {
        if len > self.capacity || mtype <= 0 {
            return Err(Errno::EINVAL);
        }
        self.words[0] = mtype as libc::c_long;
        loop {
            // SAFETY: the buffer starts with the long type and holds at
            // least `len` text bytes after it (checked above).
            let rc = unsafe { libc::msgsnd(id, self.words.as_ptr().cast(), len, 0) };
            match Errno::result(rc) {
                Err(Errno::EINTR) => continue,
                other => return other.map(drop),
            }
        }
    }

    /// Receives the first message of type `mtype` into the text
    /// (`msgrcv(2)`, blocking), retrying on EINTR; returns its length.
    pub fn recv(&mut self, id: i32, mtype: i64) -> Result<usize, Errno> {
        loop {
            // SAFETY: the kernel writes one long and at most `capacity`
            // text bytes, which the buffer holds.
            let rc = unsafe {
                libc::msgrcv(
                    id,
                    self.words.as_mut_ptr().cast(),
                    self.capacity,
                    mtype as libc::c_long,
                    0,
                )
            };
            match Errno::result(rc) {
                Err(Errno::EINTR) => continue,
                other => return other.map(|n| n as usize),
            }
        }
    }
}

/// Waits up to `timeout` for one of the (blocked) signals in `set`
/// (`sigtimedwait(2)`); `None` when the time ran out or a handler
/// interrupted the wait.
pub fn sigtimedwait(set: &SigSet, timeout: Duration) -> Result<Option<Signal>, Errno> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    let raw: &libc::sigset_t = set.as_ref();
    // SAFETY: `raw` and `ts` are valid for the call; a null siginfo
    // pointer is allowed.
    let rc = unsafe { libc::sigtimedwait(raw, std::ptr::null_mut(), &ts) };
    match Errno::result(rc) {
        Ok(signo) => Signal::try_from(signo).map(Some),
        Err(Errno::EAGAIN | Errno::EINTR) => Ok(None),
        Err(errno) => Err(errno),
    }
}
