//! Engines: the host groups of a placed plan handed to systems people
//! already run (`docs/distributed.md`). Each engine turns a [`Plan`] into
//! what that system takes (manifests, units, a batch script) whose every
//! part runs one group's ipc-run (`run --plan … --host G`); none of them
//! launches anything on a remote host itself.
//!
//! [`Plan`]: crate::plan::Plan

pub(crate) mod export;
pub(crate) mod kubernetes;
pub(crate) mod systemd;
pub(crate) mod yaml;
