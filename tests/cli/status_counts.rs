//! What `status --format json` shows of the traffic ipc-run sees
//! (`docs/operate.md`, "status"): a shared-memory ring's positions, the
//! messages waiting in POSIX and System V queues, the lines and bytes the
//! log relay read from each process stream, and what the relay wrote into
//! an MPI rank's pipe. Each case waits for its writers to have exited (a
//! state `status` reports), then checks the exact counts.

use serde_json::Value;

use crate::control::{Detached, text, wait_until};
use crate::support::Scratch;

/// The channel `name` in a `status` answer.
fn channel(status: &Value, name: &str) -> Value {
    status["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no channel {name} in {status}"))
}

/// Waits until each of `names` has exited (for good: `restart = "never"`).
fn wait_exited(run: &Detached, names: &[&str]) {
    for name in names {
        wait_until(&format!("{name} to exit"), || {
            run.process(name)["state"] == "exited"
        });
    }
}

#[test]
fn status_counts_ring_bytes_queued_messages_and_relayed_lines() {
    let mut scratch = Scratch::new("status-counts");
    let out = scratch.dir.join("ring-out");
    // Three records of 1, 2 and 3 bytes: 8 bytes of record header each,
    // padded to 8, so 16 bytes each in the ring.
    let toml = r#"
name = "status-counts"

[process.rw]
shell = '''printf 'a\nbb\nccc\n' | {ipc_run} port write out'''
restart = "never"
[process.rr]
shell = '''{ipc_run} port read in > OUT'''
restart = "never"

[process.pw]
shell = '''printf 'a\nbb\nccc\n' | {ipc_run} port write out'''
restart = "never"
[process.pr]
cmd = ["sleep", "1000"]

[process.sw]
shell = '''printf 'a\nbb\nccc\n' | {ipc_run} port write out'''
restart = "never"
[process.sr]
cmd = ["sleep", "1000"]

[process.talk]
shell = '''printf 'a\nbb\n'; printf 'ccc' >&2'''
restart = "never"

[process.keep]
cmd = ["sleep", "1000"]

[[edge]]
name = "ring"
from = "rw.out"
to = "rr.in"
traffic = "messages"
sync = "ring"
size = "64KiB"
message_size = 64

[[edge]]
name = "pq"
from = "pw.out"
to = "pr.in"
mechanism = "posix-mq"
traffic = "messages"
message_size = 64

[[edge]]
name = "sq"
from = "sw.out"
to = "sr.in"
mechanism = "sysv-mq"
traffic = "messages"
message_size = 64
"#
    .replace("OUT", out.to_str().unwrap());
    let mut run = Detached::start(&mut scratch, &toml);
    // The ring's reader exits once the writer is done and the ring empty.
    wait_exited(&run, &["rw", "rr", "pw", "sw", "talk"]);
    let status = run.status();

    let ring = channel(&status, "ring");
    assert_eq!(ring["mechanism"], "posix-shm", "{ring}");
    assert_eq!(ring["bytes_written"], 48, "{ring}");
    assert_eq!(ring["bytes_read"], 48, "{ring}");
    assert_eq!(ring["bytes_waiting"], 0, "{ring}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "a\nbb\nccc\n");

    let pq = channel(&status, "pq");
    assert_eq!(pq["messages_waiting"], 3, "{pq}");
    assert!(pq.get("bytes_written").is_none(), "{pq}");
    let sq = channel(&status, "sq");
    assert_eq!(sq["messages_waiting"], 3, "{sq}");
    assert_eq!(sq["bytes_waiting"], 6, "{sq}");

    let talk = run.process("talk");
    assert_eq!(talk["stdout_lines"], 2, "{talk}");
    assert_eq!(talk["stdout_bytes"], 5, "{talk}");
    // A last line without its newline is a line.
    assert_eq!(talk["stderr_lines"], 1, "{talk}");
    assert_eq!(talk["stderr_bytes"], 3, "{talk}");
    // A process that wrote nothing shows no counts.
    assert!(run.process("keep").get("stdout_lines").is_none());

    let table = text(&run.ctl(&["status", &run.run_id]).stdout);
    assert!(
        table.contains("written 48 B, read 48 B, waiting 0 B"),
        "{table}"
    );
    assert!(table.contains("waiting 3 msgs, 6 B"), "{table}");
    assert!(table.contains("3 lines, 8 B"), "{table}");
    run.down();
}

/// Without kept records (`--log-memory 0`) the relay copies whole lines
/// straight to its output (its fast path): they are counted all the same.
#[test]
fn status_counts_the_lines_of_the_plain_relay() {
    let mut scratch = Scratch::new("status-counts-plain");
    let toml = r#"
name = "status-counts-plain"

[process.talk]
shell = "seq 1000; printf tail"
restart = "never"

[process.keep]
cmd = ["sleep", "1000"]
"#;
    let mut run = Detached::start_with(&mut scratch, toml, &["--log-memory", "0"]);
    wait_exited(&run, &["talk"]);
    let talk = run.process("talk");
    // 1000 numbered lines and one without its newline.
    assert_eq!(talk["stdout_lines"], 1001, "{talk}");
    assert_eq!(talk["stdout_bytes"], 3893 + 4, "{talk}");
    run.down();
}

#[test]
fn status_counts_the_lines_relayed_into_a_rank_pipe() {
    let mut scratch = Scratch::new("status-counts-mpi");
    let program = crate::support::stacks::mpi_example(&scratch.dir, "lines");
    let world = crate::support::stacks::mpi_lines_world(&program, 3, 3, false);
    let out = scratch.dir.join("count-out");
    // Rank 0 (`solver`) writes 3 numbered lines and a sum into the pipe
    // to `count`, which copies them and exits at EOF: once the world
    // has ended and ipc-run has written every line.
    let toml = format!(
        r#"
name = "status-counts-mpi"
{world}[process.count]
shell = 'cat > {out}'
restart = "never"
[process.keep]
cmd = ["sleep", "1000"]
[[edge]]
name = "lines"
from = "solver"
to = "count"
"#,
        out = out.display(),
    );
    let mut run = Detached::start(&mut scratch, &toml);
    wait_exited(&run, &["count"]);
    let copied = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        copied,
        "line 1 of 3\nline 2 of 3\nline 3 of 3\nsum 6 of 4 ranks\n"
    );
    let lines = channel(&run.status(), "lines");
    assert_eq!(lines["lines_written"], 4, "{lines}");
    assert_eq!(lines["bytes_written"], copied.len(), "{lines}");
    assert_eq!(lines["lines_queued"], 0, "{lines}");
    assert_eq!(lines["lines_lost"], 0, "{lines}");
    run.down();
}
