//! Operating a running topology: the control socket every run listens on,
//! its protocol, and the client the `ps`, `status`, `start`, `stop`,
//! `restart`, `signal` and `down` commands use.
//!
//! - [`protocol`]: the versioned JSON-lines requests and responses;
//! - [`server`]: the run's side, one more source in the supervisor's epoll
//!   loop (the supervisor answers the requests, `src/supervise/control.rs`);
//! - [`client`]: finding live runs and talking to one.
//!
//! The socket is [`SOCKET_FILE`] in the run's private directory (0700),
//! itself 0600, journaled like every file the run makes. `docs/operate.md`
//! documents the protocol and the commands.

pub mod client;
pub mod commands;
pub mod detach;
pub mod protocol;
pub mod server;

/// File name of the control socket in a run directory.
pub const SOCKET_FILE: &str = "control.sock";

/// Exit code of a control command whose run is not found: no live run,
/// several and none named, or the one named is not live.
pub const EXIT_UNKNOWN_RUN: i32 = 4;
/// Exit code of a control command naming a process the run does not have.
pub const EXIT_UNKNOWN_PROCESS: i32 = 5;
/// Exit code of a control command the run refused (its state, a bad
/// signal, a malformed request, another user).
pub const EXIT_REFUSED: i32 = 6;

pub use server::MAX_REQUEST;
