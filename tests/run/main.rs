//! `ipc-run run` and supervision with real processes: the CLI run, the
//! supervisor (each case in a runner process of its own, signals being
//! process-wide), signal edges, users, the ring from every language, and
//! HTTP/JSON-RPC served by gunicorn, and topologies run as Slurm jobs.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod compose;
mod dbus;
mod distributed;
mod grpc;
mod hardening;
mod health;
mod http;
mod logfiles;
mod mpi;
mod onc;
mod review;
mod ring;
mod ring_languages;
mod service_notify;
mod signal_edges;
mod slurm;
mod supervise;
mod user;
