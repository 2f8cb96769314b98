//! Replays the fuzzers' committed corpora and every input that once crashed
//! them (`tests/fuzz_regressions/`) through the same harness the fuzz
//! targets run: load, plan, render, diagnostics inside the file.

use crate::harness;

use std::path::Path;

fn inputs(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| (path.display().to_string(), std::fs::read(&path).unwrap()))
        .collect()
}

fn replay(dir: &str, run: impl Fn(Vec<u8>)) {
    let inputs = inputs(dir);
    assert!(!inputs.is_empty(), "{dir} holds no input");
    for (name, bytes) in inputs {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(bytes)));
        assert!(outcome.is_ok(), "{name} panicked");
    }
}

#[test]
fn load_plan_corpus() {
    replay("fuzz/corpus/load_plan", harness::exercise);
}

#[test]
fn structured_corpus() {
    replay("fuzz/corpus/structured", |bytes| {
        harness::exercise(harness::topology(&bytes).into_bytes())
    });
}

#[test]
fn former_crashes() {
    replay("tests/fuzz_regressions", harness::exercise);
}
