//! Reliability: the security of what a run creates, and runs under stress
//! (signals, limits, crashes, leftovers), and `check` agreeing with `run`. Malformed input is the `input`
//! test binary.

#[path = "../support/mod.rs"]
mod support;

mod check;
mod fan_in;
mod launch;
mod run;
mod scale;
mod security;
