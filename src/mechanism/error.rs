//! The launcher's error type. Messages are lowercase fragments that read
//! after "failed to …".
//!
//! It is defined here, below the launcher, because the mechanisms' launch
//! parts (`create`) return it; the launcher re-exports it as
//! `launch::LaunchError` (and `launch::SpawnError`).

use std::path::PathBuf;

use nix::errno::Errno;

use crate::sys::spawn::ChildStep;

/// Why a launch step failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A runtime directory that must be private is not.
    #[error("use {path} as a runtime directory: {reason}")]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file-system step on the run directory failed.
    #[error("{action} {path}: {errno}")]
    RunDir {
        /// What was being done, e.g. `create the run directory`.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The error.
        errno: Errno,
    },
    /// A named object already exists; it was neither adopted nor removed.
    #[error("create {kind} {name}: it already exists (left untouched, not adopted)")]
    Exists {
        /// Object kind (`posix-shm`, `fifo`, …).
        kind: &'static str,
        /// The name or path.
        name: String,
    },
    /// Creating or opening a channel resource failed.
    #[error("create {kind} {name} for channel {channel}: {errno}")]
    Resource {
        /// Channel id.
        channel: String,
        /// Object or socket kind.
        kind: &'static str,
        /// Name, path or address.
        name: String,
        /// The error.
        errno: Errno,
    },
    /// `mq_open` said EMFILE: the user's `RLIMIT_MSGQUEUE` (bytes of every
    /// POSIX queue of the user, across processes) is used up, or ipc-run's
    /// `RLIMIT_NOFILE`. Other runs' queues count, so no plan can rule it out.
    #[error(
        "create posix-mq {name} for channel {channel}: EMFILE: the queue needs about {bytes} \
         bytes and RLIMIT_MSGQUEUE allows {limit} bytes for all POSIX queues of this user \
         (other runs' queues count), or RLIMIT_NOFILE is reached"
    )]
    MqQuota {
        /// Channel id.
        channel: String,
        /// The queue name.
        name: String,
        /// `depth * message_size`, what the queue counts against the limit.
        bytes: u64,
        /// The soft `RLIMIT_MSGQUEUE` (`unknown` if it cannot be read).
        limit: String,
    },
    /// A TCP or UDP address is taken.
    #[error("bind {address} for channel {channel}: the address is already in use")]
    AddressInUse {
        /// Channel id.
        channel: String,
        /// The address.
        address: String,
    },
    /// A value in the plan cannot be used as given.
    #[error("use {what} {value:?}: {reason}")]
    BadValue {
        /// What the value is, e.g. `bind address of channel e1`.
        what: String,
        /// The value.
        value: String,
        /// Why not.
        reason: String,
    },
    /// A placeholder names something unknown or not yet known.
    #[error("substitute {placeholder} in {template:?}: {reason}")]
    Placeholder {
        /// The placeholder, braces included.
        placeholder: String,
        /// The template it appears in.
        template: String,
        /// Why it has no value.
        reason: String,
    },
    /// A `user` or `group` could not be resolved.
    #[error("run {instance} as its user: {reason}")]
    Identity {
        /// Instance name.
        instance: String,
        /// What went wrong.
        reason: String,
    },
    /// No instance of that name in the plan.
    #[error("find instance {0:?} in the plan")]
    UnknownInstance(String),
    /// A slot names a channel or end the plan does not provide.
    #[error("wire fd {fd} of {instance}: {reason}")]
    Wiring {
        /// Instance name.
        instance: String,
        /// The child fd.
        fd: i32,
        /// What is missing.
        reason: String,
    },
    /// A syscall the launcher needs failed.
    #[error("{action}: {errno}")]
    Sys {
        /// What was being done.
        action: String,
        /// The error.
        errno: Errno,
    },
    /// A program ipc-run starts on the topology's behalf (a managed
    /// broker) is not installed; found before any process starts.
    #[error(
        "start the {role} of channel {channel}: {program} is not installed (not found on PATH; \
         Debian package `{package}`)"
    )]
    MissingProgram {
        /// Channel id.
        channel: String,
        /// What it is, e.g. `broker`.
        role: &'static str,
        /// The program.
        program: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// The program could not be started.
    #[error("start {}: {}", .0.instance, .0)]
    Spawn(#[from] SpawnError),
}

/// An instance could not be started: reported by name and errno, distinct
/// from any exit status of the program (which never ran). The message
/// leaves the instance out; [`LaunchError::Spawn`] names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not {} {program}: {errno}", .step.map_or("find", ChildStep::describe))]
pub struct SpawnError {
    /// Instance name.
    pub instance: String,
    /// The program as resolved (or as written when not found).
    pub program: String,
    /// The step of the child path that failed; `None` for PATH lookup and
    /// parent-side failures.
    pub step: Option<ChildStep>,
    /// The errno.
    pub errno: Errno,
}

impl LaunchError {
    pub(crate) fn sys(action: impl Into<String>, errno: Errno) -> LaunchError {
        LaunchError::Sys {
            action: action.into(),
            errno,
        }
    }
}
