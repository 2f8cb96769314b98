//! Reliability: the security of what a run creates, and runs under stress
//! (signals, limits, crashes, leftovers). Malformed input is the `input`
//! test binary.

#[path = "../support/mod.rs"]
mod support;

mod run;
mod security;
