//! The committed JSON Schemas match what the binary generates.

use ipc_run::cli::{SchemaKind, schema};

fn check(kind: SchemaKind, file: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let name = if kind == SchemaKind::Topology {
        "topology"
    } else {
        "plan"
    };
    assert!(
        committed == schema(kind),
        "{file} is out of date with the code; regenerate it with\n\n    cargo run -- schema {name} > {file}\n"
    );
}

#[test]
fn topology_schema_is_up_to_date() {
    check(SchemaKind::Topology, "schemas/topology.schema.json");
}

#[test]
fn plan_schema_is_up_to_date() {
    check(SchemaKind::Plan, "schemas/plan.schema.json");
}
