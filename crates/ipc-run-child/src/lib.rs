//! The child side of [ipc-run](https://github.com/ipc-run/ipc-run): what a
//! program run by ipc-run uses to find its ports, adopt the fds it was
//! handed, tell readiness and use the shared-memory ring.
//!
//! ipc-run describes each named port of a process in an environment
//! variable `IPC_PORT_<NAME>` (name upper-cased, `-` as `_`). Its value is
//! a [`Description`]: the mechanism ([`Kind`]), the channel, the end and
//! the mechanism's own fields, e.g.
//! `kind=pipe channel=frames end=write fd=3`.
//!
//! This crate depends on `libc` only.

#![deny(missing_docs)]

pub mod description;

pub use description::{Description, DescriptionError, End, Kind, Params, SocketType, Transport};
