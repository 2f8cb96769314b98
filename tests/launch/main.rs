//! The launcher in-process: object creation and modes, spawning, the fd
//! shuffle, the run's cgroup, and data over every mechanism between real
//! children.

#[path = "../support/mod.rs"]
mod support;

mod cgroup;
mod fd_shuffle;
mod mechanisms;
mod modes;
mod objects;
mod small_table;
mod spawn;
