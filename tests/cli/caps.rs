//! `--max-file-size` and `--max-processes`: the caps on what one topology
//! may be, their errors naming the flag that raises them, and clap's
//! refusal of values that are not caps.

use super::ipc_run;
use super::support::Scratch;
use predicates::prelude::*;

/// Six processes, about 150 bytes.
const SIX: &str = "[process.a]\ncmd = [\"true\"]\n[process.b]\ncmd = [\"true\"]\n\
[process.c]\ncmd = [\"true\"]\n[process.d]\ncmd = [\"true\"]\n\
[process.e]\ncmd = [\"true\"]\n[process.f]\ncmd = [\"true\"]\n";

#[test]
fn too_many_processes_names_the_flag_and_the_flag_raises_the_cap() {
    let mut scratch = Scratch::new("caps-processes");
    let file = scratch.topology(SIX);
    ipc_run()
        .args(["check", "--limits", "default", "--max-processes", "5"])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "error[E0610]: the topology has 6 process instances, more than the 5 ipc-run supervises",
        ))
        .stderr(predicate::str::contains("--max-processes N"));
    for cap in ["6", "100"] {
        ipc_run()
            .args(["check", "--limits", "default", "--max-processes", cap])
            .arg(&file)
            .assert()
            .code(0)
            .stdout(predicate::str::contains("ok: 6 process(es)"));
    }
    // `plan` (and every command that plans) takes the same cap.
    ipc_run()
        .args(["plan", "--format", "json", "--limits", "default"])
        .args(["--max-processes", "5"])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("E0610"));
}

#[test]
fn too_large_a_file_names_the_flag_and_the_flag_raises_the_cap() {
    let mut scratch = Scratch::new("caps-file-size");
    let file = scratch.topology(SIX);
    let size = std::fs::metadata(&file).expect("written").len();
    ipc_run()
        .args(["check", "--limits", "default", "--max-file-size", "100"])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "error[E0002]: the file is {size} bytes, more than the 100 a topology may have"
        )))
        .stderr(predicate::str::contains(
            "`--max-file-size SIZE` raises the cap",
        ));
    for cap in [size.to_string(), "1KiB".to_owned()] {
        ipc_run()
            .args(["check", "--limits", "default", "--max-file-size", &cap])
            .arg(&file)
            .assert()
            .code(0);
    }
}

/// Values that are not caps are usage errors (exit 2) that say why.
#[test]
fn invalid_cap_values_are_usage_errors() {
    let cases = [
        ("--max-processes", "0", "0 is not in 1.."),
        ("--max-processes", "many", "invalid digit"),
        ("--max-file-size", "0", "at least 1 byte"),
        ("--max-file-size", "12parsecs", "unknown unit `parsecs`"),
    ];
    for (flag, value, why) in cases {
        ipc_run()
            .args(["check", "topologies/pipeline.toml", flag, value])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!(
                "invalid value '{value}' for '{flag}"
            )))
            .stderr(predicate::str::contains(why));
    }
}

/// The caps and their defaults are in `--help` (and so in the man page and
/// completions, which clap makes from the same definitions).
#[test]
fn the_caps_are_documented_in_help() {
    ipc_run()
        .args(["check", "--help"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("--max-file-size <SIZE>"))
        .stdout(predicate::str::contains("[default: 16MiB]"))
        .stdout(predicate::str::contains("--max-processes <N>"))
        .stdout(predicate::str::contains("[default: 100000]"));
}
