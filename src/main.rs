//! The `ipc-run` binary; everything lives in the library's `cli` module.

fn main() {
    std::process::exit(ipc_run::cli::main());
}
