//! `ipc-run run` and supervision with real processes: the CLI run, the
//! supervisor (each case in a runner process of its own, signals being
//! process-wide), signal edges, users, and the ring from every language.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod hardening;
mod mpi;
mod ring;
mod ring_languages;
mod signal_edges;
mod supervise;
mod user;
