//! `fifo`: a named pipe in the run directory, for a peer ipc-run does not
//! launch (or a process that opens it itself).

use std::io;

use crate::mechanism::bench_link::{
    PeerPending, PeerReady, PeerSetup, Pending, Setup, mkfifo, path,
};
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::edge::{EdgeContext, Shape};
use super::{BASE, EdgeOption, Profile};
use crate::diagnostic::{Diagnostic, Label};
use crate::mechanism::build::{Build, Handover, Held, Named, exists};
use crate::mechanism::error::LaunchError;
use crate::mechanism::model::{End, FifoParams, Mechanism, ObjectKind};
use crate::topology::{Delivery, Traffic};
use ipc_run_child::description::Params;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, openat};
use nix::sys::stat::{Mode, fchmod};

/// The mechanism's name.
pub const NAME: &str = ipc_run_child::description::Kind::Fifo.as_str();

/// One-way bytes with a name in the file system.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Stream],
    one_way: true,
    byte_pipe: true,
    options: &[EdgeOption::Deliver],
    ..BASE
};

/// How processes receive a FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Deliver {
    /// The launcher opens both ends and hands over fds.
    Fd,
    /// Processes get the path and open it themselves.
    Path,
}

impl Deliver {
    /// `fd` or `path`.
    pub fn as_str(self) -> &'static str {
        match self {
            Deliver::Fd => "fd",
            Deliver::Path => "path",
        }
    }
}

impl fmt::Display for Deliver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---- plan ----

/// A FIFO at `{run_dir}/ID.fifo`; delivered as fds unless a peer outside
/// the topology must open it (then by path, as ipc-run could not open it
/// without blocking until that peer comes).
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let external = cx.traits.external;
    let deliver = match cx.spec.and_then(|s| s.deliver.as_ref()) {
        Some(d) if *d.get_ref() == Delivery::Fd && external => {
            cx.report(
                Diagnostic::error(
                    "E0313",
                    "`deliver = \"fd\"` does not apply to a FIFO with an @external peer",
                )
                .with_label(Label::primary(
                    d.span(),
                    "ipc-run cannot open it without blocking until the outside peer comes",
                ))
                .with_help("leave `deliver` unset: the process gets the path and opens it itself"),
            );
            return None;
        }
        Some(d) if *d.get_ref() == Delivery::Fd => Deliver::Fd,
        Some(_) => Deliver::Path,
        None if external => Deliver::Path,
        None => Deliver::Fd,
    };
    let path = cx.run_path(NAME);
    cx.object(ObjectKind::Fifo, path.clone());
    Some(Shape::blocking(
        Mechanism::Fifo(Box::new(FifoParams { path, deliver })),
        Some(cx.limits.pipe_capacity.value),
    ))
}

/// The description its ports get (`IPC_PORT_*`).
pub(crate) fn describe(path: &str) -> Params {
    Params::Fifo {
        path: path.to_owned(),
    }
}

// ---- launch ----

/// The FIFO, created exclusively in the run directory and set to its mode;
/// with `deliver = "fd"` both ends opened: the read end first and
/// non-blocking, so neither open waits for the other (the FIFO open-order
/// deadlock), then the write end.
pub(crate) fn create(b: &mut dyn Build, path: &str, deliver: Deliver) -> Result<(), LaunchError> {
    let path = b.fill(path)?;
    let name = b.file_in_run_dir(&path)?;
    let record = Named::Fifo(name.clone());
    b.intend(&record)?;
    let error = b.error(NAME, &path);
    let dir = b.run_dir_fd();
    match nix::unistd::mkfifoat(dir, name.as_str(), Mode::from_bits_truncate(0o600)) {
        Ok(()) => b.record(record),
        Err(Errno::EEXIST) => return Err(exists(NAME, &path)),
        Err(errno) => return Err(error(errno)),
    }
    let dir = b.run_dir_fd();
    let flags = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let read = openat(
        dir,
        name.as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | flags,
        Mode::empty(),
    )
    .map_err(&error)?;
    let mode = b.mode(ObjectKind::Fifo);
    fchmod(&read, Mode::from_bits_truncate(mode as libc::mode_t)).map_err(&error)?;
    if deliver == Deliver::Path {
        return Ok(());
    }
    let write =
        openat(dir, name.as_str(), OFlag::O_WRONLY | flags, Mode::empty()).map_err(&error)?;
    fcntl(&read, FcntlArg::F_SETFL(OFlag::empty())).map_err(&error)?;
    b.hold(Held::Read, read);
    b.hold(Held::Write, write);
    Ok(())
}

/// The write end to writers, the read end to readers (`deliver = "fd"`).
pub(crate) fn handover(end: End) -> Handover {
    Handover::one_way(end)
}

// ---- bench ----

/// One FIFO from the peer, and one to it for round trips; both are
/// opened once the peer runs.
pub(crate) fn bench_parent(b: &mut Setup<'_>) -> io::Result<Pending> {
    let (from_peer, guard) = mkfifo(b.place, "from-peer.fifo")?;
    b.side.guards.push(guard);
    if b.round_trip {
        let (to_peer, guard) = mkfifo(b.place, "to-peer.fifo")?;
        b.side.guards.push(guard);
        b.side.endpoint.paths = vec![to_peer.clone(), from_peer.clone()];
        Ok(Pending::Fifo(Some(to_peer), from_peer))
    } else {
        b.side.endpoint.paths = vec![from_peer.clone()];
        Ok(Pending::Fifo(None, from_peer))
    }
}

/// The parent's FIFOs, to open once the parent knows the peer is ready.
pub(crate) fn bench_peer(p: &PeerSetup<'_>) -> io::Result<PeerReady> {
    let pending = if p.round_trip {
        PeerPending::Fifo(Some(path(p.endpoint, 0)?), path(p.endpoint, 1)?)
    } else {
        PeerPending::Fifo(None, path(p.endpoint, 0)?)
    };
    Ok((pending, None))
}
