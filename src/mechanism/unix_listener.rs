//! `unix-listener`: a Unix socket bound (and listening) in the run
//! directory before the server starts, passed to it by `LISTEN_FDS`;
//! clients connect to the path.

use std::io;
use std::os::fd::OwnedFd;

use super::edge::{EdgeContext, LISTEN_BACKLOG, Shape};
use super::host_limits;
use super::{BASE, Peers, Profile, Sockets};
use crate::diagnostic::Diagnostic;
use crate::mechanism::bench_link::{
    PeerReady, PeerSetup, Pending, Setup, path, peer_stream, ready, unlinked_path,
};
use crate::mechanism::build::{Build, ConnectTarget, Handover, Held};
use crate::mechanism::error::LaunchError;
use crate::mechanism::limits::Limits;
use crate::mechanism::model::SocketType;
use crate::mechanism::model::{End, Mechanism, ObjectKind, UnixListenerParams};
use crate::topology::Traffic;
use ipc_run_child::description::Params;

/// The mechanism's name.
pub const NAME: &str = ipc_run_child::description::Kind::UnixListener.as_str();

/// One server, any number of clients.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Stream, Traffic::Messages, Traffic::Request],
    peers: Peers::OneServer,
    sockets: Sockets::Connected,
    ..BASE
};

// ---- plan ----

/// Datagrams for one-way messages, seqpacket for duplex ones, a stream
/// otherwise; the socket file at `{run_dir}/ID.sock`.
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let socket = cx
        .traits
        .socket
        .map(SocketType::from)
        .unwrap_or(match cx.traits.traffic {
            Traffic::Messages if cx.traits.duplex => SocketType::Seqpacket,
            Traffic::Messages => SocketType::Dgram,
            _ => SocketType::Stream,
        });
    let path = cx.socket_path()?;
    cx.object(ObjectKind::UnixSocket, path.clone());
    Some(Shape::unbounded(Mechanism::UnixListener(Box::new(
        UnixListenerParams {
            socket,
            path,
            backlog: LISTEN_BACKLOG,
        },
    ))))
}

/// The description its ports get (`IPC_PORT_*`).
pub(crate) fn describe(socket: SocketType, path: &str) -> Params {
    Params::UnixListener {
        socket: super::child_socket(socket),
        path: path.to_owned(),
    }
}

/// Re-checks a plan read back against this host: the socket path fits.
pub(crate) fn recheck(id: &str, path: &str, limits: &Limits, sink: &mut Vec<Diagnostic>) {
    host_limits::socket_path(id, path, limits, sink);
}

// ---- launch ----

/// The socket bound at its path (set to its mode) and listening.
pub(crate) fn create(
    b: &mut dyn Build,
    socket: SocketType,
    path: &str,
    backlog: u32,
) -> Result<(), LaunchError> {
    let path = b.fill(path)?;
    let mode = b.mode(ObjectKind::UnixSocket);
    let fd = b.unix_bind(&path, socket, backlog, mode)?;
    b.hold(Held::Listen, fd);
    b.connect_to(ConnectTarget::Unix { path, socket });
    Ok(())
}

/// The bound socket to the server side, a new connection to each client.
pub(crate) fn handover(end: End) -> Handover {
    Handover::listener(end)
}

// ---- bench ----

/// A stream listener in the bench's private directory.
pub(crate) fn bench_parent(b: &mut Setup<'_>) -> io::Result<Pending> {
    let (path, guard) = unlinked_path(b.place, "stream.sock")?;
    b.side.guards.push(guard);
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    b.side.endpoint.paths = vec![path];
    Ok(Pending::Unix(listener))
}

/// A connection to the parent's listener.
pub(crate) fn bench_peer(p: &PeerSetup<'_>) -> io::Result<PeerReady> {
    let stream = std::os::unix::net::UnixStream::connect(path(p.endpoint, 0)?)?;
    ready(peer_stream(OwnedFd::from(stream), p.round_trip)?)
}
