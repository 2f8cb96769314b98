//! `pipe`: an anonymous pipe, one way, created by the launcher and handed
//! to both ends as fds.

use super::edge::{EdgeContext, Shape};
use super::{BASE, Profile, inherit};
use crate::launch::LaunchError;
use crate::launch::resources::{ChannelBuild, Handover, Held};
use crate::plan::{End, Mechanism};
use crate::topology::Traffic;
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
pub(crate) fn create(b: &mut ChannelBuild<'_>) -> Result<(), LaunchError> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(b.error(NAME, b.id()))?;
    b.hold(Held::Read, read);
    b.hold(Held::Write, write);
    Ok(())
}

/// The write end to writers, the read end to readers.
pub(crate) fn handover(end: End) -> Handover {
    Handover::one_way(end)
}
