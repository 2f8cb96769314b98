//! `check` agrees with `run` and stays usable on hostile input: the cases of
//! issue 13 (items 10, 11, 12, 15) that are not a single diagnostic of the
//! invalid corpus.

use crate::support::Scratch;
use assert_cmd::Command;
use std::path::Path;
use std::process::Output;

/// `ipc-run check --limits default FILE`, without colour or logs.
fn check(file: &Path) -> Output {
    Command::cargo_bin("ipc-run")
        .expect("the binary is built")
        .env_remove("NO_COLOR")
        .env_remove("IPC_RUN_LOG")
        .args(["check", "--limits", "default"])
        .arg(file)
        .output()
        .expect("ipc-run runs")
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
    let mut scratch = Scratch::new("forty-thousand-errors");
    let file = scratch.topology(&text);
    let output = check(&file);
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

/// Item 15: a pipe cycle b -> c -> b beside a socket cycle a -> b -> a (one
/// strongly connected group whose shortest cycle through `a` is harmless)
/// gets its deadlock warning, and `run` shows it as `check` does.
#[test]
fn run_shows_the_deadlock_warning_of_a_pipe_cycle_beside_a_socket_cycle() {
    let mut scratch = Scratch::new("pipe-cycle-beside-socket-cycle");
    let file = scratch.topology(
        r#"
[process.a]
cmd = ["true"]
[process.b]
cmd = ["true"]
[process.c]
cmd = ["true"]

[[edge]]
name = "ab"
from = "a.to_b"
to = "b.from_a"
mechanism = "socketpair"

[[edge]]
name = "ba"
from = "b.to_a"
to = "a.from_b"
mechanism = "socketpair"

[[edge]]
name = "bc"
from = "b"
to = "c"

[[edge]]
name = "cb"
from = "c.back"
to = "b.back"
"#,
    );
    let checked = check(&file);
    let check_stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(
        check_stderr.contains("warning[W0301]: deadlock risk: data cycle b -> c -> b"),
        "check:\n{check_stderr}"
    );
    let finished = scratch.run(&file);
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .contains("warning[W0301]: deadlock risk: data cycle b -> c -> b"),
        "run:\n{}",
        finished.stderr
    );
}

/// Item 10: what `check` accepts `run` fills: `{pid:a}` of a process `b`
/// waits for, and `{{`/`}}` as literal braces.
#[test]
fn a_pid_placeholder_of_an_awaited_process_and_doubled_braces_are_filled() {
    let mut scratch = Scratch::new("placeholders-filled");
    let file = scratch.topology(
        r#"
[process.a]
shell = 'read -r line; echo "$$ got $line"'

[process.b]
shell = 'printf "%s %s\n" "$PEER" "$LITERAL"'
env = { PEER = "{pid:a}", LITERAL = "{{run_id}} {{pid}} {\"json\": 1}" }
after = ["a"]

[[edge]]
from = "b"
to = "a"
"#,
    );
    let checked = check(&file);
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let finished = scratch.run(&file);
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    let stdout = finished.stdout_text();
    let line = stdout
        .lines()
        .filter_map(|l| l.split_once(" | ").map(|(_, rest)| rest))
        .find(|l| l.contains(" got "))
        .unwrap_or_else(|| panic!("no line from a in:\n{stdout}"));
    let (pid, rest) = line.split_once(" got ").expect("pid got line");
    assert_eq!(rest, format!(r#"{pid} {{run_id}} {{pid}} {{"json": 1}}"#));
}
