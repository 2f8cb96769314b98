//! The pure stages: topology parsing and planning (snapshots of every
//! example and of the invalid corpus, properties), the schemas, and the
//! fuzz corpus replayed.

#[path = "../../fuzz/harness.rs"]
mod harness;

mod fuzz_corpus;
mod properties;
mod schema_drift;
mod snapshots;
