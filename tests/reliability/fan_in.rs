//! Issue 13, item 14: what stays whole on a fan-in. Two writers of
//! 30,000-byte lines (above `PIPE_BUF`, 4096) through one pipe mix their
//! bytes, as `docs/mechanisms.md` ("Fan-in: what stays whole") says; the
//! mechanism `check` suggests instead, a seqpacket socket, keeps every line
//! whole.

use crate::support::{lines_of, run_topology};

/// Lines per writer, and each line's length without its newline.
const LINES: usize = 300;
const LENGTH: usize = 30_000;

/// Each replica prints `LINES` lines of `LENGTH` copies of its replica
/// number, `0` or `1`.
fn writer(pipe_into: &str) -> String {
    format!(
        r#"[process.w]
replicas = 2
shell = '''
awk -v c="$IPC_RUN_REPLICA" 'BEGIN {{ s = c; while (length(s) < {LENGTH}) s = s s; s = substr(s, 1, {LENGTH}); for (i = 0; i < {LINES}; i++) print s }}' {pipe_into}
'''
"#
    )
}

/// Prints `lines mixed`: how many lines arrived, and how many are not one
/// writer's whole line.
const COUNT: &str = r#"awk '{ n++; if (length($0) != 30000 || ($0 ~ /0/ && $0 ~ /1/)) bad++ } END { print n + 0, bad + 0 }'"#;

/// (lines, mixed) as the reader `r` printed them.
fn counted(stdout: &str) -> (usize, usize) {
    let lines = lines_of(stdout.as_bytes(), "r");
    let [line] = lines.as_slice() else {
        panic!("one count line expected from r, got:\n{stdout}");
    };
    let (n, bad) = line.split_once(' ').expect("two numbers");
    (n.parse().expect("a count"), bad.parse().expect("a count"))
}

#[test]
fn lines_above_pipe_buf_mix_on_a_pipe_and_stay_whole_on_seqpacket() {
    // A pipe: no `message_size`, so `check` accepts the fan-in, and lines
    // longer than PIPE_BUF arrive mixed. How they mix depends on the
    // scheduler, so a few runs are allowed to show it (one nearly always
    // does: 18 MB pass through a 64 KiB pipe).
    let pipe = format!(
        "exit_code_from = \"r\"\n{}[process.r]\nshell = \"{COUNT}\"\n\n[[edge]]\nfrom = \"w\"\nto = \"r\"\n",
        writer(""),
    );
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (code, stdout, stderr) = run_topology("fan-in-pipe", &pipe);
        assert_eq!(code, 0, "{stderr}");
        let (lines, mixed) = counted(&stdout);
        seen.push((lines, mixed));
        if mixed > 0 {
            break;
        }
    }
    assert!(
        seen.iter().any(|&(_, mixed)| mixed > 0),
        "no mixed line in {} runs (lines, mixed): {seen:?}",
        seen.len()
    );

    // A seqpacket listener: each line is one message, and arrives whole;
    // the reader ends after both connections ended.
    let seqpacket = format!(
        r#"exit_code_from = "r"
{}[process.r]
shell = "{{ipc_run}} port read --count 2 lines | {}"

[[edge]]
name = "lines"
from = "w.lines"
to = "r.lines"
traffic = "messages"
mechanism = "unix-listener"
socket = "seqpacket"
message_size = "30001"
"#,
        writer("| {ipc_run} port write lines"),
        COUNT.replace('"', "\\\""),
    );
    let (code, stdout, stderr) = run_topology("fan-in-seqpacket", &seqpacket);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(counted(&stdout), (2 * LINES, 0), "every line whole");
}
