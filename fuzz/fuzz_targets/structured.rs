//! Bytes turned into a mostly well-formed topology, so that the planner's
//! validation, selection, fd allocation and cycle analysis are explored.
#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code, reason = "each target uses part of the harness")]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::exercise(harness::topology(data).into_bytes());
});
