//! Telling the process's state: `sd_notify(3)` messages to
//! `$NOTIFY_SOCKET`, and ipc-run's readiness fd (`$IPC_RUN_READY_FD`, one
//! newline, as s6's notification-fd).

use std::io::Write;
use std::os::fd::RawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use crate::{ChildError, sys};

/// One state change of an `sd_notify` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State<'a> {
    /// `READY=1`: start-up is finished. Also writes the readiness fd.
    Ready,
    /// `STATUS=…`: a one-line status for humans.
    Status(&'a str),
    /// `WATCHDOG=1`: the process is alive (keep-alive ping).
    Watchdog,
    /// `STOPPING=1`: the process is shutting down.
    Stopping,
}

impl State<'_> {
    fn push_to(&self, message: &mut String) -> Result<(), ChildError> {
        match self {
            State::Ready => message.push_str("READY=1"),
            State::Watchdog => message.push_str("WATCHDOG=1"),
            State::Stopping => message.push_str("STOPPING=1"),
            State::Status(text) => {
                if text.contains('\n') {
                    return Err(ChildError::Malformed {
                        var: "STATUS".into(),
                        why: "a status is one line".into(),
                    });
                }
                message.push_str("STATUS=");
                message.push_str(text);
            }
        }
        Ok(())
    }
}

/// Tells ipc-run the process is ready: `READY=1` to `$NOTIFY_SOCKET` when
/// set, and a newline to `$IPC_RUN_READY_FD` when set. Does nothing when
/// neither is (the process is not run with a readiness protocol). The
/// readiness fd is written once and closed; later calls only use the socket.
pub fn notify_ready() -> Result<(), ChildError> {
    notify(&[State::Ready])
}

/// Sends one `sd_notify` message with `states` to `$NOTIFY_SOCKET` (a
/// path, or an abstract name written `@name`) when it is set; with
/// [`State::Ready`] also writes the readiness-fd newline.
pub fn notify(states: &[State<'_>]) -> Result<(), ChildError> {
    let mut message = String::with_capacity(32);
    for (i, state) in states.iter().enumerate() {
        if i > 0 {
            message.push('\n');
        }
        state.push_to(&mut message)?;
    }
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        send(path.as_encoded_bytes(), message.as_bytes()).map_err(ChildError::Notify)?;
    }
    if states.contains(&State::Ready)
        && let Ok(text) = std::env::var("IPC_RUN_READY_FD")
    {
        let fd: RawFd = text.parse().map_err(|_| ChildError::Malformed {
            var: "IPC_RUN_READY_FD".into(),
            why: format!("`{text}` is not an fd number"),
        })?;
        if let Some(owned) = sys::take_inherited(fd) {
            let mut file = std::fs::File::from(owned);
            file.write_all(b"\n").map_err(ChildError::Notify)?;
        }
    }
    Ok(())
}

fn send(socket: &[u8], message: &[u8]) -> std::io::Result<()> {
    let address = match socket.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(socket))?,
    };
    UnixDatagram::unbound()?.send_to_addr(message, &address)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(states: &[State<'_>]) -> String {
        let mut out = String::new();
        for state in states {
            state.push_to(&mut out).unwrap();
            out.push('|');
        }
        out
    }

    #[test]
    fn states_are_spelled_as_sd_notify_spells_them() {
        assert_eq!(
            message(&[
                State::Ready,
                State::Status("up"),
                State::Watchdog,
                State::Stopping
            ]),
            "READY=1|STATUS=up|WATCHDOG=1|STOPPING=1|"
        );
        assert!(
            State::Status("two\nlines")
                .push_to(&mut String::new())
                .is_err()
        );
    }

    #[test]
    fn sends_to_a_path_and_to_an_abstract_name() {
        let dir = std::env::temp_dir().join(format!("ipc-run-child-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str().as_bytes(), b"READY=1").unwrap();
        let mut buf = [0u8; 16];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_dir_all(&dir).unwrap();

        let name = format!("ipc-run-child-notify-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&address).unwrap();
        send(format!("@{name}").as_bytes(), b"STOPPING=1").unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
