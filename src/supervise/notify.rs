//! The sd_notify protocol, receiving side.
//!
//! A datagram holds newline-separated `KEY=VALUE` assignments. ipc-run acts on
//! `READY=1` and `WATCHDOG=1` (a ping of the watchdog, `watchdog = "5s"`); `MAINPID=` says which process the message is about, and
//! `STATUS=` is kept for messages. The sender is identified by the kernel's
//! SCM_CREDENTIALS (SO_PASSCRED is set on the socket), so a child cannot
//! speak for another; `MAINPID=` is only honoured for a process of the
//! sender's own instance (see `supervise::Supervisor::on_notify`).
//!
//! A datagram may carry fds (`FDSTORE=1`, `sd_pid_notify_with_fds`):
//! ipc-run keeps none, so each is closed as soon as it is received. The
//! control buffer has room for as many as one datagram can carry
//! (`SCM_MAX_FD`), so they never crowd out the credentials: a truncated
//! control part would leave the sender unknown, and an unknown sender is
//! what `MAINPID=` speaks for.
//!
//! A datagram longer than [`MAX_DATAGRAM`] bytes is ignored whole, as
//! systemd ignores one: what fits would end in a cut assignment.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg, setsockopt, sockopt,
};

/// Largest datagram read; systemd uses the same bound (PIPE_BUF*2 is plenty).
const MAX_DATAGRAM: usize = 4096;

/// Most fds one datagram carries (the kernel's `SCM_MAX_FD`).
const MAX_FDS: usize = 253;

/// The sender of a datagram whose control part was cut short: not known,
/// and not taken as "no credentials" either (`MAINPID=` is not honoured).
pub const UNKNOWN_SENDER: i32 = -1;

/// What one datagram said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NotifyMessage {
    /// `READY=1` was present.
    pub ready: bool,
    /// `MAINPID=` value, when valid.
    pub main_pid: Option<i32>,
    /// `STATUS=` text.
    pub status: Option<String>,
    /// `WATCHDOG=1` was present: the sender is alive.
    pub watchdog: bool,
}

/// Parses a datagram; unknown or malformed assignments are ignored.
pub fn parse(datagram: &[u8]) -> NotifyMessage {
    let mut message = NotifyMessage::default();
    for line in datagram.split(|&b| b == b'\n') {
        let Some(eq) = memchr::memchr(b'=', line) else {
            continue;
        };
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        match key {
            b"READY" => message.ready = value == b"1",
            b"MAINPID" => {
                message.main_pid = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<i32>().ok())
                    .filter(|&pid| pid > 0);
            }
            b"WATCHDOG" => message.watchdog = value == b"1",
            b"STATUS" => message.status = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }
    message
}

/// Asks the kernel to attach the sender's credentials to every datagram.
pub fn enable_credentials(socket: BorrowedFd<'_>) -> nix::Result<()> {
    setsockopt(&socket, sockopt::PassCred, &true)
}

/// Reads one pending datagram without blocking: `Ok(None)` when none is
/// waiting. Returns the sender's pid (0 when the kernel gave none,
/// [`UNKNOWN_SENDER`] when the control part was cut short). Fds passed
/// along are closed.
pub fn receive(socket: BorrowedFd<'_>) -> nix::Result<Option<(i32, NotifyMessage)>> {
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut cmsg = nix::cmsg_space!(UnixCredentials, [std::os::fd::RawFd; MAX_FDS]);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut pid = UNKNOWN_SENDER;
                if let Ok(cmsgs) = msg.cmsgs() {
                    pid = 0;
                    for c in cmsgs {
                        match c {
                            ControlMessageOwned::ScmCredentials(cred) => pid = cred.pid(),
                            ControlMessageOwned::ScmRights(fds) => {
                                for fd in fds {
                                    let _ = nix::unistd::close(fd);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                // Longer than a datagram may be: cut at the buffer's end,
                // a last assignment would read as another value
                // (`READY=10` as `READY=1`). Ignored whole, as systemd
                // ignores one.
                if msg.flags.contains(MsgFlags::MSG_TRUNC) {
                    tracing::debug!("notify: a datagram over {MAX_DATAGRAM} bytes, ignored");
                    return Ok(Some((pid, NotifyMessage::default())));
                }
                let len = msg.bytes;
                return Ok(Some((pid, parse(&buf[..len]))));
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(None),
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn parses_ready_and_mainpid() {
        assert_eq!(
            parse(b"READY=1\nMAINPID=42\nSTATUS=warming up"),
            NotifyMessage {
                ready: true,
                main_pid: Some(42),
                status: Some("warming up".into()),
                watchdog: false,
            }
        );
    }

    #[test]
    fn ignores_noise() {
        let m = parse(b"READY=0\nMAINPID=-3\ngarbage\n\xff=1\nWATCHDOG=trigger");
        assert_eq!(m, NotifyMessage::default());
        assert!(parse(b"WATCHDOG=1").watchdog);
        assert!(parse(b"STOPPING=1\nREADY=1\n").ready);
    }

    /// A datagram socketpair whose second end receives credentials.
    fn credential_pair() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        enable_credentials(b.as_fd()).unwrap();
        (a, b)
    }

    #[test]
    fn receives_with_credentials() {
        let (a, b) = credential_pair();
        assert_eq!(receive(b.as_fd()).unwrap(), None);
        nix::unistd::write(&a, b"READY=1").unwrap();
        let (pid, msg) = receive(b.as_fd()).unwrap().unwrap();
        assert_eq!(pid, std::process::id() as i32);
        assert!(msg.ready);
    }

    #[test]
    fn an_oversized_datagram_is_ignored_whole() {
        let (a, b) = credential_pair();
        // Cut at the buffer's end, the last line would read `READY=1`.
        let mut datagram = b"STATUS=".to_vec();
        datagram.resize(MAX_DATAGRAM - b"\nREADY=1".len(), b'x');
        datagram.extend_from_slice(b"\nREADY=10");
        nix::unistd::write(&a, &datagram).unwrap();
        let (pid, msg) = receive(b.as_fd()).unwrap().unwrap();
        assert_eq!(pid, std::process::id() as i32);
        assert_eq!(msg, NotifyMessage::default());
    }

    #[test]
    fn fds_passed_along_are_closed_and_the_sender_still_known() {
        use nix::sys::socket::{ControlMessage, sendmsg};
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;
        let (a, b) = credential_pair();
        let (r, w) = nix::unistd::pipe().unwrap();
        let fds = [r.as_raw_fd(), w.as_raw_fd()];
        sendmsg::<()>(
            a.as_raw_fd(),
            &[IoSlice::new(b"READY=1\nFDSTORE=1")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        drop(r);
        let (pid, msg) = receive(b.as_fd()).unwrap().unwrap();
        assert_eq!(pid, std::process::id() as i32);
        assert!(msg.ready);
        // Every copy of the read end was closed: the write end has no reader.
        assert_eq!(nix::unistd::write(&w, b"x"), Err(Errno::EPIPE));
    }
}
