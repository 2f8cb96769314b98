//! The real stacks the RPC and MPI tests run: system programs installed by
//! `scripts/test.sh` (apt) and the PyPI packages in its venv, and the MPI
//! examples built with them. A missing one fails the test with the package
//! to install; none is skipped.

use std::path::{Path, PathBuf};

use super::MANIFEST_DIR;

/// The venv `scripts/test.sh` fills from `tests/requirements.txt`:
/// `$IPC_RUN_TEST_VENV`, else `target/test-venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("IPC_RUN_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(MANIFEST_DIR).join("target/test-venv"))
}

/// The venv's python3, after checking that `module` imports there.
pub fn python_with(module: &str) -> PathBuf {
    let python = venv().join("bin/python3");
    let imports = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        imports,
        "the PyPI module `{module}` is missing from {}: run scripts/test.sh, which installs \
         tests/requirements.txt there",
        venv().display()
    );
    python
}

/// The path of a system program, after checking it is installed.
pub fn program(name: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{name}` is not installed: apt install {package} (scripts/test.sh does)")
    })
}

/// `PATH` with the venv's `bin` first: what a shipped topology's
/// `python3` (or `gunicorn`) finds, as its header says.
pub fn path_with_venv() -> PathBuf {
    let mut dirs = vec![venv().join("bin")];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    PathBuf::from(std::env::join_paths(dirs).unwrap())
}

/// `examples/mpi/NAME.c` built with Open MPI's `mpicc` into `dir/NAME`,
/// after checking that `mpirun` is installed too (the world needs it).
pub fn mpi_example(dir: &Path, name: &str) -> PathBuf {
    program("mpirun", "openmpi-bin");
    let mpicc = program("mpicc", "libopenmpi-dev");
    let out = dir.join(name);
    let status = std::process::Command::new(mpicc)
        .arg("-O2")
        .arg("-o")
        .arg(&out)
        .arg(Path::new(MANIFEST_DIR).join(format!("examples/mpi/{name}.c")))
        .status()
        .unwrap();
    assert!(status.success(), "mpicc failed on examples/mpi/{name}.c");
    out
}

/// The MPI world of `examples/mpi/lines.c` built at `program` (see
/// [`mpi_example`]): rank 0 `solver` (reading its stdin when
/// `solver_reads_stdin`) and `workers` ranks of `worker`, each writing
/// `lines` numbered lines, and the `world` edge. The processes and edges
/// that follow it are the case's.
pub fn mpi_lines_world(
    program: &Path,
    lines: u32,
    workers: u32,
    solver_reads_stdin: bool,
) -> String {
    let program = program.display();
    let stdin = if solver_reads_stdin {
        r#", "stdin""#
    } else {
        ""
    };
    let replicas = if workers > 1 {
        format!("replicas = {workers}\n")
    } else {
        String::new()
    };
    format!(
        r#"[process.solver]
cmd = ["{program}", "{lines}"{stdin}]
[process.worker]
cmd = ["{program}", "{lines}"]
{replicas}[[edge]]
name = "world"
mechanism = "mpi"
traffic = "messages"
from = "solver"
to = "worker"
"#
    )
}
