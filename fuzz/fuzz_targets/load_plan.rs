//! Arbitrary bytes as a topology file: load, plan, render. Never a panic.
#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code, reason = "each target uses part of the harness")]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::exercise(data.to_vec());
});
