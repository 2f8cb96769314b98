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

/// One pipe from the peer, and one to it for round trips; for
/// `pipe-sized`, grown to the bench ring's capacity.
pub(crate) fn bench_parent(b: &mut Setup<'_>) -> io::Result<Pending> {
    let grow = (b.mechanism == crate::mechanism::bench_kinds::Mechanism::PipeSized)
        .then(|| super::posix_shm::bench_capacity(b.size));
    let pipe = || -> io::Result<_> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        if let Some(capacity) = grow {
            grow_pipe(&w, capacity)?;
        }
        Ok((r, w))
    };
    let (from_peer_r, from_peer_w) = pipe()?;
    if b.round_trip {
        let (to_peer_r, to_peer_w) = pipe()?;
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

/// Grows a pipe to exactly `capacity` bytes (`F_SETPIPE_SZ`), saying why
/// not when the host's `fs.pipe-max-size` stops an unprivileged user.
fn grow_pipe(fd: &std::os::fd::OwnedFd, capacity: u64) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, fcntl};
    let asked = i32::try_from(capacity).map_err(io::Error::other)?;
    let got = fcntl(fd, FcntlArg::F_SETPIPE_SZ(asked)).map_err(|e| {
        let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size").unwrap_or_default();
        io::Error::other(format!(
            "growing a pipe to {capacity} bytes: {e} (fs.pipe-max-size is {})",
            max.trim()
        ))
    })?;
    if i64::from(got) != capacity as i64 {
        return Err(io::Error::other(format!(
            "asked a pipe for {capacity} bytes, got {got}"
        )));
    }
    Ok(())
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
