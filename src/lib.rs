//! ipc-run: a declarative process-topology orchestrator for Linux.
//!
//! A TOML file describes processes and the IPC edges between them. The crate
//! is organised as stages that only call forward:
//!
//! ```text
//! topology  TOML -> typed model with source spans
//! plan      pure decisions: mechanisms, validation, cycles, fds, env, order
//! launch    makes the plan real: run dir, resources, fd wiring, spawn
//! supervise runs it: events, readiness, restarts, logs, shutdown, cleanup
//! ```
//!
//! `port` holds the adapters (`ipc-run port read|write|tap`) that a process
//! of a topology runs to bridge a port to stdin/stdout.
//!
//! `docs/architecture.md` describes the stages and the data between them.

pub mod bench;
pub mod child;
pub mod cli;
pub mod diagnostic;
pub mod exit;
pub mod host;
pub mod launch;
pub mod plan;
pub mod port;
pub mod supervise;
pub mod sys;
pub mod topology;
