//! `inherit`: ipc-run's own stdin or stdout handed to a process as it is;
//! nothing copies. Chosen for a pipe edge with `@stdin` or `@stdout`.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::edge::{EdgeContext, Shape};
use super::{Profile, pipe};
use crate::mechanism::build::{Build, Handover, Held};
use crate::mechanism::error::LaunchError;
use crate::mechanism::model::Mechanism;
use crate::sys::fd::{dup_cloexec_at_least, std_fd};
use ipc_run_child::description::Params;
use nix::errno::Errno;

/// The mechanism's name.
pub const NAME: &str = ipc_run_child::description::Kind::Inherit.as_str();

/// Never named in a file: a `pipe` with one of ipc-run's streams becomes
/// one, so it is a pipe in every other respect.
pub const PROFILE: Profile = Profile {
    name: NAME,
    ..pipe::PROFILE
};

/// Which of ipc-run's streams is handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OwnStream {
    /// ipc-run's stdin, read by the process.
    Stdin,
    /// ipc-run's stdout, written by the process.
    Stdout,
}

impl OwnStream {
    /// `stdin` or `stdout`.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnStream::Stdin => "stdin",
            OwnStream::Stdout => "stdout",
        }
    }

    /// The fd of the stream in ipc-run.
    pub fn fd(self) -> i32 {
        match self {
            OwnStream::Stdin => 0,
            OwnStream::Stdout => 1,
        }
    }
}

impl fmt::Display for OwnStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---- plan ----

/// The stream on the side ipc-run holds.
pub(crate) fn plan(cx: &EdgeContext<'_>) -> Option<Shape> {
    let stream = if cx.from_own_stdin {
        OwnStream::Stdin
    } else {
        OwnStream::Stdout
    };
    Some(Shape::blocking(Mechanism::Inherit { stream }, None))
}

/// The description its ports get (`IPC_PORT_*`).
pub(crate) fn describe() -> Params {
    Params::Inherit
}

// ---- launch ----

/// A copy of ipc-run's stream, above the standard fds.
pub(crate) fn create(b: &mut dyn Build, stream: OwnStream) -> Result<(), LaunchError> {
    let error = b.error("inherited stream", stream.as_str());
    let fd = std_fd(stream.fd())
        .ok_or_else(|| error(Errno::EBADF))
        .and_then(|fd| dup_cloexec_at_least(fd, 3).map_err(&error))?;
    b.hold(Held::Inherited, fd);
    Ok(())
}

/// Its ends are the copy of ipc-run's stream the launcher holds.
pub(crate) fn handover() -> Handover {
    Handover::Held(Held::Inherited)
}
