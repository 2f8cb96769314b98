//! Engines: hand a placed plan to the infrastructure people already run,
//! instead of growing a cluster manager of ipc-run's own.
//!
//! Each engine turns the plan's host groups (`Plan::placement`; a plan
//! without placement is one group, `local`) into that engine's units of
//! work, each of which runs one group's `ipc-run run --plan PLAN --host G`
//! (docs/distributed.md). Engines read the plan and never change it.

pub(crate) mod export;
pub(crate) mod kubernetes;
pub mod slurm;
pub(crate) mod systemd;
pub(crate) mod yaml;
