//! Reliability: hostile and malformed input, the security of what a run
//! creates, and runs under stress (signals, limits, crashes, leftovers).

#[path = "../support/mod.rs"]
mod support;

mod input;
mod run;
mod security;
