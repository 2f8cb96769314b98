//! The command line as a user meets it: exit codes, formats, colour; and
//! the `port` and `bench` commands.

#[path = "../support/mod.rs"]
mod support;

mod bench;
mod caps;
mod control;
mod control_logs;
mod export;
mod port;
mod port_hardening;
mod reload;
mod review;
mod review_control;
mod status_counts;

use assert_cmd::Command;
use predicates::prelude::*;

fn ipc_run() -> Command {
    let mut command = Command::cargo_bin("ipc-run").expect("the binary is built");
    command.env_remove("NO_COLOR").env_remove("IPC_RUN_LOG");
    command
}

fn corpus() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir("tests/invalid")
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn valid_topology_exits_0() {
    ipc_run()
        .args(["check", "topologies/pipeline.toml", "--limits", "default"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("ok: 3 process(es)"));
}

/// Every invalid file is rejected with exit 1 (never 101, a panic), with
/// `--deny warnings` so warning-only files fail too.
#[test]
fn every_invalid_file_exits_1() {
    for path in corpus() {
        let source = std::fs::read(&path).unwrap();
        if String::from_utf8_lossy(&source).contains("#:limits sysv_semmsl=") {
            // SEMMSL cannot be lowered from the command line; the plan
            // snapshots cover this file with the limit changed.
            continue;
        }
        let mut command = ipc_run();
        command.args(["check", "--deny", "warnings"]);
        if String::from_utf8_lossy(&source).contains("#:limits run_dir_len=80") {
            // The socket path rule needs a long run directory: use this
            // host's limits with an XDG_RUNTIME_DIR that makes it 80 bytes.
            let long = format!("/tmp/{}", "r".repeat(80 - 5 - "/ipc-run/".len() - 16));
            command
                .args(["--limits", "host"])
                .env("XDG_RUNTIME_DIR", long);
        } else {
            command.args(["--limits", "default"]);
        }
        // A `#:profile NAME` line: the file is checked with `--profile NAME`.
        let text = String::from_utf8_lossy(&source).into_owned();
        for name in text.lines().filter_map(|l| l.strip_prefix("#:profile ")) {
            command.args(["--profile", name.trim()]);
        }
        // A `#:hosts N` line: checked with `--hosts N`.
        for hosts in text.lines().filter_map(|l| l.strip_prefix("#:hosts ")) {
            command.args(["--hosts", hosts.trim()]);
        }
        let output = command.arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}: expected exit 1\n{stderr}",
            path.display()
        );
        let code = path.file_name().unwrap().to_string_lossy()[..5].to_owned();
        assert!(
            stderr.contains(&format!("[{code}]")),
            "{}: {code} not reported\n{stderr}",
            path.display()
        );
    }
}

#[test]
fn warnings_pass_without_deny_and_fail_with_it() {
    let file = "tests/invalid/W0201-shm-without-sync.toml";
    ipc_run()
        .args(["check", file, "--limits", "default"])
        .assert()
        .code(0)
        .stderr(predicate::str::contains("warning[W0201]"));
    ipc_run()
        .args(["check", file, "--limits", "default", "--deny", "warnings"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("denied by --deny warnings"));
}

#[test]
fn usage_errors_exit_2() {
    ipc_run().assert().code(2);
    ipc_run().args(["frobnicate"]).assert().code(2);
    ipc_run()
        .args(["check", "topologies/pipeline.toml", "--limits", "nope"])
        .assert()
        .code(2);
    ipc_run()
        .args(["check", "topologies/pipeline.toml", "--deny", "everything"])
        .assert()
        .code(2);
}

#[test]
fn missing_file_exits_1() {
    ipc_run()
        .args(["check", "topologies/does-not-exist.toml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does-not-exist.toml"));
}

#[test]
fn json_plans_validate_against_the_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("schemas/plan.schema.json").expect("schemas/plan.schema.json"),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let mut files: Vec<_> = std::fs::read_dir("topologies")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let output = ipc_run()
            .args(["plan", "--format", "json", "--limits", "default"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", path.display());
        let plan: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        let errors: Vec<String> = validator
            .iter_errors(&plan)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
}

#[test]
fn graphs_in_dot_and_mermaid() {
    for format in ["dot", "mermaid"] {
        let output = ipc_run()
            .args(["graph", "topologies/sockets.toml", "--limits", "default"])
            .args(["--format", format])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0));
        let text = String::from_utf8(output.stdout).unwrap();
        insta::assert_snapshot!(format!("graph_{format}"), text);
    }
}

#[test]
fn completions_and_man_page() {
    ipc_run()
        .args(["completions", "bash"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("ipc-run"));
    ipc_run()
        .arg("man")
        .assert()
        .code(0)
        .stdout(predicate::str::contains(".TH"));
}

const ESC: &str = "\u{1b}[";

#[test]
fn colour_follows_no_color_and_the_flag() {
    let file = "tests/invalid/E0102-dangling-endpoint.toml";
    let stderr =
        |command: &mut Command| String::from_utf8(command.output().unwrap().stderr).unwrap();
    let never = stderr(ipc_run().args(["check", file, "--color", "never"]));
    assert!(
        never.contains("error[E0102]") && !never.contains(ESC),
        "{never}"
    );
    let no_color = stderr(ipc_run().args(["check", file]).env("NO_COLOR", "1"));
    assert!(!no_color.contains(ESC), "{no_color}");
    let always = stderr(ipc_run().args(["check", file, "--color", "always"]));
    assert!(always.contains(ESC), "{always}");
}
