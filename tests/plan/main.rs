//! The pure stages: topology parsing and planning (snapshots of every
//! example and of the invalid corpus, properties), the schemas, and the
//! fuzz corpus replayed; the plan round trip (`plan -> json -> plan`,
//! `run --plan`).

#[path = "../../fuzz/harness.rs"]
mod harness;

mod architecture;
mod fuzz_corpus;
mod placement;
mod properties;
mod roundtrip;
mod schema_drift;
mod snapshots;
#[path = "../support/mod.rs"]
mod support;
