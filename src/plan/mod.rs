//! The planner: `(Topology, Limits) -> Plan`, pure, no syscalls.

pub mod limits;
pub mod model;

pub use limits::{Limit, Limits};
pub use model::*;
