//! Parses a topology file and does nothing else, so the planning benchmark
//! (`bench/plan/run.sh`) can time the parse apart from planning.
//!
//! ```text
//! cargo run --release --example parse_only -- table FILE     # toml::Table, untyped
//! cargo run --release --example parse_only -- topology FILE  # Topology::load, typed with spans
//! ```
//!
//! Like `ipc-run check`, it leaks the parsed value instead of freeing it just
//! before exiting, so both measure the same kind of work.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, file] = args.as_slice() else {
        eprintln!("usage: parse_only table|topology FILE");
        return ExitCode::from(2);
    };
    match mode.as_str() {
        "table" => {
            let text = match std::fs::read_to_string(file) {
                Ok(text) => text,
                Err(err) => {
                    eprintln!("failed to read {file}: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match toml::from_str::<toml::Table>(&text) {
                Ok(table) => std::mem::forget((text, table)),
                Err(err) => {
                    eprintln!("failed to parse {file}: {err}");
                    return ExitCode::FAILURE;
                }
            }
        }
        "topology" => match ipc_run::topology::Topology::load(Path::new(file)) {
            Ok(topology) => std::mem::forget(topology),
            Err(err) => {
                eprintln!("{err}");
                return ExitCode::FAILURE;
            }
        },
        _ => {
            eprintln!("usage: parse_only table|topology FILE");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
