//! `ipc-run port read|write|tap` and `run --tap`, end to end: real
//! topologies whose processes run the adapters through `{ipc_run}`, one
//! pair of processes per port kind, and the output ipc-run relays.

mod support;

use std::process::Command;

use support::*;

/// A writer process feeding `input` (printf format) to `port write`.
fn writer(name: &str, input: &str, args: &str) -> String {
    format!("[process.{name}]\nshell = '''printf '{input}' | {{ipc_run}} port write {args}'''\n")
}

/// A reader process: `port read ARGS`.
fn reader(name: &str, args: &str) -> String {
    format!("[process.{name}]\nshell = '''{{ipc_run}} port read {args}'''\n")
}

fn edge(from: &str, to: &str, extra: &str) -> String {
    format!("[[edge]]\nfrom = \"{from}\"\nto = \"{to}\"\n{extra}\n")
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Every kind that carries data, read and written by the adapters, in one
/// run.
#[test]
fn every_kind_reads_and_writes() {
    let mut scratch = Scratch::new("port-kinds");
    let mut toml = String::from("name = \"kinds\"\n");
    // Streams: pipe, FIFO by fd and by path, stream socketpair. A last line
    // without a newline arrives as it is; the relay shows it as a line.
    for (kind, extra) in [
        ("pipe", "mechanism = \"pipe\""),
        ("fifo", "mechanism = \"fifo\""),
        ("fpath", "mechanism = \"fifo\"\ndeliver = \"path\""),
        ("spair", "mechanism = \"socketpair\""),
    ] {
        toml += &writer(&format!("{kind}-w"), "a\\nb\\nc", "out");
        toml += &reader(&format!("{kind}-r"), "in");
        toml += &edge(&format!("{kind}-w.out"), &format!("{kind}-r.in"), extra);
    }
    // Seqpacket socketpair: boundaries kept, EOF when the writer ends.
    toml += &writer("seq-w", "one\\ntwo words\\n", "out");
    toml += &reader("seq-r", "in");
    toml += &edge(
        "seq-w.out",
        "seq-r.in",
        "mechanism = \"socketpair\"\nsocket = \"seqpacket\"\ntraffic = \"messages\"",
    );
    // Datagram socketpair: no EOF, an end marker.
    toml += &writer("dg-w", "d1\\nd2\\n", "--end-marker out");
    toml += &reader("dg-r", "--end-markers 1 in");
    toml += &edge(
        "dg-w.out",
        "dg-r.in",
        "mechanism = \"socketpair\"\nsocket = \"dgram\"\ntraffic = \"messages\"",
    );
    // Stream listener: two clients, lines kept whole, read ends after two
    // connections.
    toml += "[process.ul-w]\nreplicas = 2\nshell = '''printf \"x$IPC_RUN_REPLICA\\ny$IPC_RUN_REPLICA\\n\" | {ipc_run} port write out'''\n";
    toml += &reader("ul-r", "--count 2 in");
    toml += &edge(
        "ul-w.out",
        "ul-r.in",
        "mechanism = \"unix-listener\"\ntraffic = \"request\"",
    );
    // Seqpacket listener: messages from two clients, two connections.
    toml += "[process.us-w]\nreplicas = 2\nshell = '''printf \"s$IPC_RUN_REPLICA\\n\" | {ipc_run} port write out'''\n";
    toml += &reader("us-r", "--count 2 in");
    toml += &edge(
        "us-w.out",
        "us-r.in",
        "mechanism = \"unix-listener\"\nsocket = \"seqpacket\"\ntraffic = \"messages\"",
    );
    // Datagram listener, two writers, two end markers.
    toml += "[process.ud-w]\nreplicas = 2\nshell = '''printf \"u$IPC_RUN_REPLICA\\n\" | {ipc_run} port write --end-marker out'''\n";
    toml += &reader("ud-r", "--end-markers 2 in");
    toml += &edge(
        "ud-w.out",
        "ud-r.in",
        "mechanism = \"unix-listener\"\nsocket = \"dgram\"\ntraffic = \"messages\"",
    );
    // TCP: one connection.
    toml += &writer("tcp-w", "t1\\nt2\\n", "out");
    toml += &reader("tcp-r", "--count 1 in");
    toml += &edge(
        "tcp-w.out",
        "tcp-r.in",
        "mechanism = \"tcp\"\ntraffic = \"request\"",
    );
    // UDP: an end marker.
    toml += &writer("udp-w", "p1\\np2\\n", "--end-marker out");
    toml += &reader("udp-r", "--end-markers 1 in");
    toml += &edge(
        "udp-w.out",
        "udp-r.in",
        "mechanism = \"udp\"\ntraffic = \"messages\"",
    );
    // POSIX queue: two writers, two end markers.
    toml += "[process.mq-w]\nreplicas = 2\nshell = '''printf \"q$IPC_RUN_REPLICA a\\nq$IPC_RUN_REPLICA b\\n\" | {ipc_run} port write --end-marker out'''\n";
    toml += &reader("mq-r", "--end-markers 2 in");
    toml += &edge(
        "mq-w.out",
        "mq-r.in",
        "mechanism = \"posix-mq\"\ntraffic = \"messages\"\nmessage_size = 64\ndepth = 4",
    );
    // System V queue.
    toml += &writer("sv-w", "v1\\nv2\\n", "--end-marker out");
    toml += &reader("sv-r", "--end-markers 1 in");
    toml += &edge(
        "sv-w.out",
        "sv-r.in",
        "mechanism = \"sysv-mq\"\ntraffic = \"messages\"\nmessage_size = 64",
    );
    let file = scratch.topology(&toml);
    let run = scratch.run(&file);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = &run.stdout;
    for kind in ["pipe", "fifo", "fpath", "spair"] {
        assert_eq!(
            lines_of(out, &format!("{kind}-r")),
            strings(&["a", "b", "c"]),
            "{kind}"
        );
    }
    assert_eq!(lines_of(out, "seq-r"), strings(&["one", "two words"]));
    assert_eq!(lines_of(out, "dg-r"), strings(&["d1", "d2"]));
    // Lines of one connection stay whole and in order.
    let ul = lines_of(out, "ul-r");
    assert_eq!(sorted(ul.clone()), strings(&["x0", "x1", "y0", "y1"]));
    for i in 0..2 {
        let x = ul.iter().position(|l| *l == format!("x{i}")).unwrap();
        let y = ul.iter().position(|l| *l == format!("y{i}")).unwrap();
        assert!(x < y, "{ul:?}");
    }
    assert_eq!(sorted(lines_of(out, "us-r")), strings(&["s0", "s1"]));
    assert_eq!(sorted(lines_of(out, "ud-r")), strings(&["u0", "u1"]));
    assert_eq!(lines_of(out, "tcp-r"), strings(&["t1", "t2"]));
    assert_eq!(lines_of(out, "udp-r"), strings(&["p1", "p2"]));
    assert_eq!(
        sorted(lines_of(out, "mq-r")),
        strings(&["q0 a", "q0 b", "q1 a", "q1 b"])
    );
    assert_eq!(lines_of(out, "sv-r"), strings(&["v1", "v2"]));
    assert!(
        scratch.runtime_entries().is_empty(),
        "{:?}",
        scratch.runtime_entries()
    );
}

/// `--framing length` is binary safe and keeps boundaries (a newline inside
/// a message); `raw` makes each read a message; `line` adds a missing
/// newline only.
#[test]
fn framings() {
    let mut scratch = Scratch::new("port-framing");
    let mut toml = String::from("name = \"framing\"\n");
    // Length in, length out: two messages, one holding a newline and a NUL.
    toml += &writer(
        "len-w",
        "\\000\\000\\000\\003a\\nb\\000\\000\\000\\002\\000z",
        "--framing length out",
    );
    toml += "[process.len-r]\nshell = '''{ipc_run} port read --framing length --count 2 in | od -An -tx1 | tr -d ' \\n'; echo'''\n";
    toml += &edge(
        "len-w.out",
        "len-r.in",
        "mechanism = \"posix-mq\"\ntraffic = \"messages\"\nmessage_size = 64",
    );
    // Raw in: one printf is one read, so one message; line out adds "\n"
    // once, also to a message that already ends with one.
    toml += &writer("raw-w", "r1 r2\\n", "--framing raw out");
    toml +=
        "[process.raw-r]\nshell = '''{ipc_run} port read --count 1 in | od -An -c | tr -s ' ''''\n";
    toml += &edge(
        "raw-w.out",
        "raw-r.in",
        "mechanism = \"posix-mq\"\ntraffic = \"messages\"\nmessage_size = 64",
    );
    // Raw out: messages back to back.
    toml += &writer("cat-w", "k\\nl\\nm\\n", "out");
    toml += "[process.cat-r]\nshell = '''{ipc_run} port read --framing raw --count 3 in; echo'''\n";
    toml += &edge(
        "cat-w.out",
        "cat-r.in",
        "mechanism = \"sysv-mq\"\ntraffic = \"messages\"\nmessage_size = 64",
    );
    let file = scratch.topology(&toml);
    let run = scratch.run(&file);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        lines_of(&run.stdout, "len-r"),
        strings(&["00000003610a6200000002007a"])
    );
    assert_eq!(lines_of(&run.stdout, "raw-r"), strings(&[" r 1 r 2 \\n"]));
    assert_eq!(lines_of(&run.stdout, "cat-r"), strings(&["klm"]));
}

/// A queue has no EOF: `--idle-timeout` ends `read` (exit 0) once the
/// queue stays empty; a message over the queue's size is an error naming
/// the limit (exit 1); a kind without data and a wrong end are usage errors
/// (exit 2).
#[test]
fn ends_and_errors() {
    let mut scratch = Scratch::new("port-errors");
    let mut toml = String::from("name = \"errors\"\n");
    toml += &writer("idle-w", "i1\\ni2\\n", "out");
    toml += &reader("idle-r", "--idle-timeout 300ms in");
    toml += &edge(
        "idle-w.out",
        "idle-r.in",
        "mechanism = \"posix-mq\"\ntraffic = \"messages\"\nmessage_size = 64",
    );
    toml += &writer("big-w", "0123456789abcdefX\\n", "out");
    toml += &reader("big-r", "--idle-timeout 200ms in");
    toml += &edge(
        "big-w.out",
        "big-r.in",
        "mechanism = \"posix-mq\"\ntraffic = \"messages\"\nmessage_size = 16",
    );
    toml += &writer("vbig-w", "0123456789abcdefX\\n", "out");
    toml += &reader("vbig-r", "--idle-timeout 200ms in");
    toml += &edge(
        "vbig-w.out",
        "vbig-r.in",
        "mechanism = \"sysv-mq\"\ntraffic = \"messages\"\nmessage_size = 16",
    );
    toml += "[process.sem-a]\nshell = '''{ipc_run} port read s'''\n";
    toml += "[process.sem-b]\ncmd = [\"true\"]\n";
    toml += &edge(
        "sem-a.s",
        "sem-b.s",
        "mechanism = \"posix-sem\"\ntraffic = \"notify\"",
    );
    toml += "[process.wrong-w]\nshell = '''{ipc_run} port read out'''\n";
    toml += "[process.wrong-r]\ncmd = [\"cat\"]\n";
    toml += &edge("wrong-w.out", "wrong-r", "");
    let file = scratch.topology(&toml);
    let run = scratch.run(&file);
    let summary = |name: &str| summary_line(&run.stderr, name).to_owned();
    assert!(summary("idle-r").contains("exited 0"), "{}", run.stderr);
    assert_eq!(lines_of(&run.stdout, "idle-r"), strings(&["i1", "i2"]));
    assert!(summary("big-w").contains("exited 1"), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "a message of 17 bytes is larger than message_size=16 of posix-mq port `out`"
        ),
        "{}",
        run.stderr
    );
    assert!(summary("vbig-w").contains("exited 1"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("larger than message_size=16 of sysv-mq port `out`"),
        "{}",
        run.stderr
    );
    assert!(summary("sem-a").contains("exited 2"), "{}", run.stderr);
    assert!(
        run.stderr.contains("carries no data to copy"),
        "{}",
        run.stderr
    );
    assert!(summary("wrong-w").contains("exited 2"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("is the `write` end: `port read` needs `read`"),
        "{}",
        run.stderr
    );
}

/// Outside a topology the port variable is missing: a usage error.
#[test]
fn missing_port_is_a_usage_error() {
    let output = Command::new(IPC_RUN)
        .args(["port", "read", "nowhere"])
        .env_remove("IPC_PORT_NOWHERE")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("IPC_PORT_NOWHERE is not set"),
        "{output:?}"
    );
}

const TAPPED: &str = r#"
name = "tapped"
[process.numbers]
cmd = ["seq", "1", "200000"]
[process.count]
shell = 'wc -c'
[[edge]]
name = "nums"
from = "numbers"
to = "count"
[process.talker]
shell = '''printf 'hello\nworld\n' | {ipc_run} port write out'''
[process.listener]
shell = '''{ipc_run} port read in'''
[[edge]]
name = "talk"
from = "talker.out"
to = "listener.in"
traffic = "messages"
"#;

/// `run --tap`: the consumer still gets everything and the file is a
/// byte-identical copy (stream), or one line per message (seqpacket).
#[test]
fn tap_copies_an_edge() {
    let mut scratch = Scratch::new("port-tap");
    let file = scratch.topology(TAPPED);
    let copy = scratch.dir.join("nums.copy");
    let talk = scratch.dir.join("talk.copy");
    // An old copy is replaced, not appended to.
    std::fs::write(&copy, "stale").unwrap();
    let mut command = scratch.run_command(&file);
    command
        .arg("--tap")
        .arg(format!("nums={}", copy.display()))
        .arg("--tap")
        .arg(format!("talk={}", talk.display()));
    let run = finish(
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expected: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    assert_eq!(lines_of(&run.stdout, "count"), [expected.len().to_string()]);
    let copied = std::fs::read(&copy).unwrap();
    assert!(
        copied == expected.as_bytes(),
        "copy differs ({} bytes)",
        copied.len()
    );
    use std::os::unix::fs::PermissionsExt;
    // A new copy is private (an existing one keeps its mode).
    assert_eq!(
        std::fs::metadata(&talk).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        lines_of(&run.stdout, "listener"),
        strings(&["hello", "world"])
    );
    assert_eq!(std::fs::read_to_string(&talk).unwrap(), "hello\nworld\n");
    assert!(summary_line(&run.stderr, "tap-nums").contains("exited 0"));
}

/// `plan --tap` shows the inserted process and the split edge; a queue
/// cannot be tapped; an unknown edge is named.
#[test]
fn tap_in_plans_and_refusals() {
    let mut scratch = Scratch::new("port-tap-plan");
    let file = scratch.topology(TAPPED);
    let output = Command::new(IPC_RUN)
        .args([
            "plan",
            "--format",
            "json",
            "--limits",
            "default",
            "--tap",
            "nums=/tmp/x",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let tap = plan["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tap-nums")
        .expect("a tap process");
    let argv: Vec<&str> = tap["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(argv[..3], ["{ipc_run}", "port", "tap"]);
    assert!(argv.contains(&"/tmp/x"));
    let ids: Vec<&str> = plan["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"nums") && ids.contains(&"nums-tapped"),
        "{ids:?}"
    );

    let queue = scratch.topology(
        "[process.a]\ncmd = [\"true\"]\n[process.b]\ncmd = [\"true\"]\n[process.c]\ncmd = [\"true\"]\n\
         [[edge]]\nname = \"q\"\nfrom = [\"a.q\", \"c.q\"]\nto = \"b.q\"\ntraffic = \"messages\"\n",
    );
    for (tap, expected) in [
        (
            "q=/tmp/x",
            "cannot be tapped: a message queue has no end of stream",
        ),
        ("nope=/tmp/x", "no edge `nope`"),
    ] {
        let output = Command::new(IPC_RUN)
            .args(["plan", "--limits", "default", "--tap", tap])
            .arg(&queue)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(expected),
            "{output:?}"
        );
    }
}

/// An edge of `pipeline = [...]` is tapped by its id (`pipelineN`); the
/// last stage still prints to ipc-run's stdout.
#[test]
fn tap_on_a_pipeline_edge() {
    let scratch = Scratch::new("port-tap-pipeline");
    let copy = scratch.dir.join("sevens");
    let file = std::path::Path::new(MANIFEST_DIR).join("topologies/pipeline.toml");
    let mut command = scratch.run_command(&file);
    command
        .arg("--tap")
        .arg(format!("pipeline1={}", copy.display()));
    let run = finish(
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout_text(), "40951\n");
    let expected: String = (1..=100_000)
        .map(|i| i.to_string())
        .filter(|s| s.contains('7'))
        .map(|s| s + "\n")
        .collect();
    assert!(std::fs::read_to_string(&copy).unwrap() == expected);
}

/// The shared-memory ring: records are messages, `read` ends when every
/// producer is done; a record over the ring's largest is refused; a ring
/// edge can be tapped.
#[test]
fn ring_reads_writes_and_taps() {
    let mut scratch = Scratch::new("port-ring");
    let mut toml = String::from("name = \"ring\"\n");
    toml += "[process.rw]\nreplicas = 2\nshell = '''printf \"r$IPC_RUN_REPLICA one\\nr$IPC_RUN_REPLICA two\\n\" | {ipc_run} port write out'''\n";
    toml += &reader("rr", "in");
    toml += &edge(
        "rw.out",
        "rr.in",
        "name = \"frames\"\ntraffic = \"messages\"\nsync = \"ring\"\nsize = \"64KiB\"",
    );
    // 8 KiB: a 4096-byte data area, records of at most 4088 bytes.
    toml += "[process.big-w]\nshell = '''head -c 5000 /dev/zero | tr '\\\\0' x | {ipc_run} port write out'''\n";
    toml += &reader("big-r", "in");
    toml += &edge(
        "big-w.out",
        "big-r.in",
        "traffic = \"messages\"\nsync = \"ring\"\nsize = \"8KiB\"",
    );
    let file = scratch.topology(&toml);
    let copy = scratch.dir.join("frames.copy");
    let mut command = scratch.run_command(&file);
    command
        .arg("--tap")
        .arg(format!("frames={}", copy.display()));
    let run = finish(
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let want = strings(&["r0 one", "r0 two", "r1 one", "r1 two"]);
    assert_eq!(sorted(lines_of(&run.stdout, "rr")), want, "{}", run.stderr);
    let copied: Vec<String> = std::fs::read_to_string(&copy)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(sorted(copied), want);
    assert!(
        summary_line(&run.stderr, "rr").contains("exited 0"),
        "{}",
        run.stderr
    );
    assert!(summary_line(&run.stderr, "tap-frames").contains("exited 0"));
    assert!(
        summary_line(&run.stderr, "big-w").contains("exited 1"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("bytes is larger than the largest record (4088 bytes) of ring port `out`"),
        "{}",
        run.stderr
    );
    assert!(
        summary_line(&run.stderr, "big-r").contains("exited 0"),
        "{}",
        run.stderr
    );
}
