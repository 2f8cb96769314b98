//! `socketpair`: a connected pair of Unix sockets joining exactly two
//! processes; stream or seqpacket, one way or duplex.

use std::io;

use super::edge::{EdgeContext, Shape};
use super::{BASE, Peers, Profile, Sockets};
use crate::mechanism::bench_kinds::HostLimits;
use crate::mechanism::bench_kinds::Mechanism as BenchMechanism;
use crate::mechanism::bench_link::{
    PeerReady, PeerSetup, Pending, Setup, duplex, fd_link, fit_sndbuf, inherited, peer_stream,
    ready,
};
use crate::mechanism::build::{Build, Handover, Held, sock_type};
use crate::mechanism::error::LaunchError;
use crate::mechanism::model::Mechanism;
use crate::mechanism::model::SocketType;
use crate::topology::Traffic;
use ipc_run_child::description::Params;
use ipc_run_child::description::{End as ChildEnd, SocketType as ChildSocket};
use nix::sys::socket::SockType;
use nix::sys::socket::{AddressFamily, SockFlag, socketpair};

/// The mechanism's name.
pub const NAME: &str = ipc_run_child::description::Kind::Socketpair.as_str();

/// Two processes, bytes or messages, either direction.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Stream, Traffic::Messages],
    named: false,
    peers: Peers::Pair,
    sockets: Sockets::Any,
    ..BASE
};

// ---- plan ----

/// Seqpacket for messages (boundaries kept), stream otherwise.
pub(crate) fn plan(cx: &EdgeContext<'_>) -> Option<Shape> {
    let socket = cx
        .traits
        .socket
        .map(SocketType::from)
        .unwrap_or(match cx.traits.traffic {
            Traffic::Messages => SocketType::Seqpacket,
            _ => SocketType::Stream,
        });
    Some(Shape::unbounded(Mechanism::Socketpair { socket }))
}

/// The description its ports get (`IPC_PORT_*`).
pub(crate) fn describe(socket: SocketType) -> Params {
    Params::Socketpair {
        socket: super::child_socket(socket),
    }
}

// ---- launch ----

/// The pair, `SOCK_CLOEXEC`: one end per side.
pub(crate) fn create(b: &mut dyn Build, socket: SocketType) -> Result<(), LaunchError> {
    let (a, z) = socketpair(
        AddressFamily::Unix,
        sock_type(socket),
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(b.error(NAME, b.id()))?;
    b.hold(Held::PairFrom, a);
    b.hold(Held::PairTo, z);
    Ok(())
}

// ---- bench ----

/// A seqpacket message must fit the sender's socket buffer, which an
/// unprivileged process can raise to `wmem_max` (the kernel doubles the
/// value; 32 bytes go to overhead).
pub(crate) fn bench_refusal_seqpacket(limits: &HostLimits, size: u64) -> Option<String> {
    let max = limits
        .wmem_max
        .unwrap_or(212_992)
        .saturating_mul(2)
        .saturating_sub(32);
    (size > max).then(|| {
        format!(
            "a seqpacket message must fit the socket send buffer: at most {max} B \
             (2 x /proc/sys/net/core/wmem_max - 32)"
        )
    })
}

/// One end of the pair to each side.
pub(crate) fn handover(on_from_side: bool) -> Handover {
    Handover::Held(if on_from_side {
        Held::PairFrom
    } else {
        Held::PairTo
    })
}

// ---- bench ----

/// A pair of the measured type; the peer inherits one end.
pub(crate) fn bench_parent(b: &mut Setup<'_>) -> io::Result<Pending> {
    let seqpacket = b.mechanism == BenchMechanism::SocketpairSeqpacket;
    let (ty, socket) = if seqpacket {
        (SockType::SeqPacket, ChildSocket::Seqpacket)
    } else {
        (SockType::Stream, ChildSocket::Stream)
    };
    let (mine, theirs) = socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC)?;
    if seqpacket {
        fit_sndbuf(&mine, b.size)?;
    }
    b.side
        .give(&theirs, ChildEnd::Both, Params::Socketpair { socket })?;
    Ok(Pending::Ready(if b.round_trip {
        duplex(mine)?
    } else {
        fd_link(None, Some(mine), false)
    }))
}

/// The peer's end of the pair.
pub(crate) fn bench_peer(p: &PeerSetup<'_>) -> io::Result<PeerReady> {
    let fd = inherited(0)?;
    if p.mechanism == BenchMechanism::SocketpairSeqpacket {
        fit_sndbuf(&fd, p.size)?;
    }
    ready(peer_stream(fd, p.round_trip)?)
}
