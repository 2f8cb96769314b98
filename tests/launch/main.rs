//! The launcher in-process: object creation and modes, spawning, the fd
//! shuffle, and data over every mechanism between real children.

#[path = "../support/mod.rs"]
mod support;

mod fd_shuffle;
mod mechanisms;
mod modes;
mod objects;
mod small_table;
mod spawn;
