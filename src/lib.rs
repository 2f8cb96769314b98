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
//! [`mechanism`] is the registry beside the stages: one module per IPC
//! mechanism with its fitness, plan, host-limit recheck, creation, fd
//! handover and bench parts, dispatched from `src/mechanism/mod.rs`.
//!
//! `docs/architecture.md` describes the crates, the stages and the data
//! between them, and how to add a mechanism.
//!
//! # What is public
//!
//! The library serves the `ipc-run` binary and its tests; its public
//! surface is what they, the examples and the fuzz harness use:
//!
//! - [`topology`]: [`topology::Topology`] (load, parse) and its errors.
//! - [`plan`]: [`plan::plan`], the [`plan::Plan`] it returns, host
//!   [`plan::Limits`], and the text, JSON and graph renderings.
//! - [`launch`]: [`launch::prepare`] a plan's resources and spawn its
//!   processes; [`launch::LaunchError`].
//! - [`supervise`]: [`supervise::run`] a plan, or [`supervise::supervise`]
//!   one through your own [`supervise::Runtime`].
//! - [`child`]: the child crate `ipc_run_child`, re-exported: what a Rust
//!   child of a topology uses (ports, activation, readiness, the ring).
//! - [`mechanism`]: the registry of mechanisms ([`mechanism::Kind`]) and
//!   what each fits ([`mechanism::Profile`]).
//! - [`diagnostic`]: the diagnostics plans and parse errors carry.
//! - [`engine`]: the engines a placed plan runs on (`ipc-run slurm`).
//! - [`exit`]: the documented exit codes.
//! - [`cli`]: the binary's entry point and the JSON Schemas it prints.
//! - [`sys`]: the system-call wrappers that integration tests check fds and
//!   named objects with.
//!
//! The port adapters (`ipc-run port`), the benchmark (`ipc-run bench`) and
//! the host probing are crate-private.

#![deny(missing_docs)]

pub(crate) mod bench;
pub use ipc_run_child as child;
pub mod cli;
pub mod control;
pub mod diagnostic;
pub mod engine;
pub mod exit;
pub(crate) mod host;
pub mod launch;
pub mod mechanism;
pub mod plan;
pub(crate) mod port;
mod safe_file;
pub mod supervise;
pub mod sys;
pub mod topology;
