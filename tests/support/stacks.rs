//! The real stacks the RPC and MPI tests run: system programs installed by
//! `scripts/test.sh` (apt) and the PyPI packages in its venv. A missing one
//! fails the test with the package to install; none is skipped.

use std::path::PathBuf;

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
