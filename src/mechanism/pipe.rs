//! `pipe`: an anonymous pipe, one way, created by the launcher and handed
//! to both ends as fds.

use std::io;

use super::edge::{EdgeContext, Shape};
use super::{BASE, Profile, inherit};
use crate::mechanism::bench_link::{
    PeerReady, PeerSetup, Pending, Setup, fd_link, inherited, ready,
};
use crate::mechanism::build::{Build, Handover, Held};
use crate::mechanism::error::LaunchError;
use crate::mechanism::model::{End, Mechanism};
use crate::topology::Traffic;
use ipc_run_child::description::End as ChildEnd;
use ipc_run_child::description::Params;
use nix::fcntl::OFlag;

/// The mechanism's name.
pub const NAME: &str = ipc_run_child::description::Kind::Pipe.as_str();

/// One-way bytes; shared writes stay whole up to `PIPE_BUF`.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Stream],
    one_way: true,
    byte_pipe: true,
    own_stream: true,
    named: false,
    ..BASE
};

// ---- plan ----

/// A pipe buffers the host's pipe capacity; with ipc-run's own stream on one
/// side the stream itself is handed over instead.
pub(crate) fn plan(cx: &EdgeContext<'_>) -> Option<Shape> {
    if cx.traits.own_stream {
        return inherit::plan(cx);
    }
    let mechanism = Mechanism::Pipe {
        atomic_write: cx.limits.pipe_buf.value,
    };
    Some(Shape::blocking(
        mechanism,
        Some(cx.limits.pipe_capacity.value),
    ))
}

/// The description its ports get (`IPC_PORT_*`).
pub(crate) fn describe() -> Params {
    Params::Pipe
}

// ---- launch ----

/// Both ends, `O_CLOEXEC`.
pub(crate) fn create(b: &mut dyn Build) -> Result<(), LaunchError> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(b.error(NAME, b.id()))?;
    b.hold(Held::Read, read);
    b.hold(Held::Write, write);
    Ok(())
}

/// The write end to writers, the read end to readers.
pub(crate) fn handover(end: End) -> Handover {
    Handover::one_way(end)
}

// ---- bench ----

/// One pipe from the peer, and one to it for round trips.
pub(crate) fn bench_parent(b: &mut Setup<'_>) -> io::Result<Pending> {
    let (from_peer_r, from_peer_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    if b.round_trip {
        let (to_peer_r, to_peer_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        b.side.give(&to_peer_r, ChildEnd::Read, Params::Pipe)?;
        b.side.give(&from_peer_w, ChildEnd::Write, Params::Pipe)?;
        Ok(Pending::Ready(fd_link(
            Some(to_peer_w),
            Some(from_peer_r),
            false,
        )))
    } else {
        b.side.give(&from_peer_w, ChildEnd::Write, Params::Pipe)?;
        Ok(Pending::Ready(fd_link(None, Some(from_peer_r), false)))
    }
}

/// The peer's ends of the parent's pipes.
pub(crate) fn bench_peer(p: &PeerSetup<'_>) -> io::Result<PeerReady> {
    if p.round_trip {
        let rx = inherited(0)?;
        let tx = inherited(1)?;
        ready(fd_link(Some(tx), Some(rx), false))
    } else {
        ready(fd_link(Some(inherited(0)?), None, false))
    }
}
