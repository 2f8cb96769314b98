//! TCP listeners handed to ipc-run itself by socket activation
//! (`LISTEN_FDS`, `sd_listen_fds(3)`): a systemd `.socket` unit written by
//! `ipc-run export systemd` holds a cross edge's port while the group's
//! ipc-run starts, restarts or is not running yet, and hands the listening
//! socket over. A TCP listener the plan binds on the same address is then
//! taken from them instead of bound again (which would fail: the port is
//! the socket unit's), and handed to its server as any listener is.
//!
//! The fds are read once, at the first TCP bind of the process, through the
//! child crate's [`listen_fds`](crate::child::listen_fds) (only when
//! `LISTEN_PID` is ipc-run's pid); the ones no channel asks for stay
//! unused. Children never see `LISTEN_*` of ipc-run: their environment is
//! the plan's.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

use nix::sys::socket::{SockType, SockaddrStorage, getsockname, getsockopt, sockopt};

/// The inherited listening TCP sockets not taken yet, with their addresses;
/// `None` until read.
static INHERITED: Mutex<Option<Vec<(SocketAddr, OwnedFd)>>> = Mutex::new(None);

/// The inherited listener bound to `want`, if there is one: the same port,
/// and the same address, or both the unspecified address of their family
/// (`0.0.0.0` and `[::]` both listen on every address). A port of 0 (the
/// kernel chooses) is never inherited.
pub(crate) fn take(want: SocketAddr) -> Option<OwnedFd> {
    if want.port() == 0 {
        return None;
    }
    let mut inherited = INHERITED.lock().unwrap_or_else(|p| p.into_inner());
    let listeners = inherited.get_or_insert_with(read_inherited);
    let i = listeners.iter().position(|(addr, _)| serves(*addr, want))?;
    let (addr, fd) = listeners.swap_remove(i);
    tracing::debug!("adopted the inherited listener on {addr} for {want}");
    Some(fd)
}

/// Whether a socket bound to `addr` is the listener the plan binds at
/// `want`.
fn serves(addr: SocketAddr, want: SocketAddr) -> bool {
    addr.port() == want.port()
        && (addr.ip() == want.ip() || (addr.ip().is_unspecified() && want.ip().is_unspecified()))
}

/// The listening TCP sockets among ipc-run's socket-activation fds.
fn read_inherited() -> Vec<(SocketAddr, OwnedFd)> {
    let fds = match crate::child::listen_fds() {
        Ok(fds) => fds,
        Err(error) => {
            tracing::warn!("ignoring the socket-activation fds: {error}");
            return Vec::new();
        }
    };
    fds.into_iter()
        .filter_map(|listen| {
            let addr = tcp_listener_addr(&listen.fd);
            if addr.is_none() {
                tracing::warn!(
                    "ignoring socket-activation fd `{}`: not a listening TCP socket",
                    listen.name
                );
            }
            addr.map(|addr| (addr, listen.fd))
        })
        .collect()
}

/// The local address of a listening TCP socket; `None` for anything else.
fn tcp_listener_addr(fd: &OwnedFd) -> Option<SocketAddr> {
    let stream = getsockopt(fd, sockopt::SockType).ok()? == SockType::Stream;
    let listening = getsockopt(fd, sockopt::AcceptConn).ok()?;
    if !(stream && listening) {
        return None;
    }
    let local: SockaddrStorage = getsockname(fd.as_raw_fd()).ok()?;
    if let Some(v4) = local.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    local
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_taken_for_its_own_address_only() {
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert!(serves(addr("0.0.0.0:47000"), addr("0.0.0.0:47000")));
        assert!(serves(addr("[::]:47000"), addr("0.0.0.0:47000")));
        assert!(serves(addr("127.0.0.1:47000"), addr("127.0.0.1:47000")));
        assert!(!serves(addr("127.0.0.1:47000"), addr("0.0.0.0:47000")));
        assert!(!serves(addr("0.0.0.0:47001"), addr("0.0.0.0:47000")));
        assert!(take(addr("0.0.0.0:0")).is_none());
    }
}
