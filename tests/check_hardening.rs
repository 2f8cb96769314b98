//! `check` agrees with `run` and stays usable on hostile input: the cases of
//! issue 13 (items 10, 11, 12, 15) that are not a single diagnostic of the
//! invalid corpus.

mod support;

use std::path::PathBuf;

use assert_cmd::Command;

fn ipc_run() -> Command {
    let mut command = Command::cargo_bin("ipc-run").expect("the binary is built");
    command.env_remove("NO_COLOR").env_remove("IPC_RUN_LOG");
    command
}

/// A file written to a fresh directory that is removed afterwards.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(case: &str, text: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!(
            "ipc-run-check-hardening-{case}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join(format!("{case}.toml"));
        std::fs::write(&path, text).expect("the topology is written");
        TempFile { dir, path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Item 12: 40,000 errors are found and counted, but only the first ones are
/// printed, followed by one line giving the number of the rest; the time per
/// diagnostic does not grow with their number (measured in
/// `docs/reliability.md`, not asserted here).
#[test]
fn forty_thousand_errors_print_a_capped_list_and_a_count() {
    const ERRORS: usize = 40_000;
    let mut text = String::with_capacity(ERRORS * 64);
    for i in 0..ERRORS {
        text.push_str(&format!(
            "[process.p{i}]\ncmd = [\"true\"]\nstop_signal = \"SIGNOPE\"\n\n"
        ));
    }
    let file = TempFile::new("forty-thousand", &text);
    let output = ipc_run()
        .args(["check", "--limits", "default"])
        .arg(&file.path)
        .output()
        .expect("ipc-run runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    let shown = stderr.matches("error[E0706]").count();
    assert!(
        (1..=100).contains(&shown),
        "{shown} diagnostics printed, expected at most 100"
    );
    let rest = ERRORS - shown;
    assert!(
        stderr.contains(&format!("{rest} more diagnostic(s) not shown")),
        "no count of the rest in:\n{}",
        &stderr[stderr.len().saturating_sub(2000)..]
    );
    assert!(
        stderr.contains(&format!("{ERRORS} error(s), 0 warning(s)")),
        "the summary counts every error"
    );
}
