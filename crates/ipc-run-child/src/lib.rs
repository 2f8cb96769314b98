//! The child side of ipc-run: what a program run by ipc-run uses to find
//! its ports, adopt the fds it was handed, tell its readiness and use the
//! shared-memory ring. It depends on `libc` only.
//!
//! - [`port`] reads a port: ipc-run describes each named port of a
//!   process in an environment variable `IPC_PORT_<NAME>` (name
//!   upper-cased, `-` as `_`) whose value is a [`Description`], e.g.
//!   `kind=pipe channel=frames end=write fd=3`. [`Port::take_fd`] adopts
//!   the port's fd.
//! - [`listen_fds`] takes the socket-activation fds (systemd's
//!   `LISTEN_FDS` protocol).
//! - [`notify`] and [`notify_ready`] tell ipc-run (or systemd) the
//!   process's state (`sd_notify(3)`).
//! - [`ring`] is the shared-memory ring of a `sync = "ring"` edge.
//!
//! Inherited fds are adopted once each per process, whichever function
//! asks, and made close-on-exec; every fd this crate hands out is an
//! [`OwnedFd`](std::os::fd::OwnedFd) with exactly one owner.
//!
//! ```no_run
//! let mut port = ipc_run_child::port("frames")?;
//! let fd = port.take_fd().expect("frames is handed over as an fd");
//! ipc_run_child::notify_ready()?;
//! # drop(fd);
//! # Ok::<(), ipc_run_child::ChildError>(())
//! ```

#![deny(missing_docs)]

mod activation;
pub mod description;
mod notify;
mod port;
pub mod ring;
mod sys;

use std::fmt;
use std::io;

pub use activation::{ListenFd, listen_fds};
pub use description::{Description, DescriptionError, End, Kind, Params, SocketType, Transport};
pub use notify::{State, notify, notify_ready};
pub use port::{Port, port, port_variable};

/// Why a port or protocol variable could not be used.
#[derive(Debug)]
pub enum ChildError {
    /// The variable is not set: the program is not run by ipc-run, or the
    /// port is not wired.
    Missing(String),
    /// The variable is malformed.
    Malformed {
        /// The variable.
        var: String,
        /// What is wrong.
        why: String,
    },
    /// What the variable hands over was taken already (each is taken once
    /// per process).
    Taken(String),
    /// Telling the state failed.
    Notify(io::Error),
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildError::Missing(var) => write!(
                f,
                "{var} is not set (is this process run by ipc-run with that port wired?)"
            ),
            ChildError::Malformed { var, why } => write!(f, "{var} is malformed: {why}"),
            ChildError::Taken(var) => write!(f, "the fds of {var} were taken already"),
            ChildError::Notify(error) => write!(f, "failed to notify readiness: {error}"),
        }
    }
}

impl std::error::Error for ChildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChildError::Notify(error) => Some(error),
            _ => None,
        }
    }
}
