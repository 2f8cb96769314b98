//! `ipc-run port read|write|tap` and `run --tap`, end to end: real
//! topologies whose processes run the adapters through `{ipc_run}`, one
//! pair of processes per port kind, and the output ipc-run relays.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// A writer process, `FEED | port write WRITE`, and a reader process,
/// `port read READ` (`READ` is the rest of its shell line), joined by an
/// edge from the writer's `out` to the reader's `in` with the `edge`
/// options.
struct Pair<'a> {
    writer: String,
    reader: String,
    /// Copies of the writer (1: no `replicas` key).
    replicas: u32,
    feed: String,
    write: &'a str,
    read: &'a str,
    edge: &'a str,
}

/// The pair `NAME-w` -> `NAME-r`, the writer fed by `printf 'INPUT'`.
fn pair<'a>(name: &str, input: &str, write: &'a str, read: &'a str, edge: &'a str) -> Pair<'a> {
    Pair::new(name, format!("printf '{input}'"), write, read, edge)
}

/// The pair `NAME-w` -> `NAME-r` with two writers fed by `printf "INPUT"`:
/// double quotes, so that `$IPC_RUN_REPLICA` in `input` tells them apart.
fn replicated<'a>(
    name: &str,
    input: &str,
    write: &'a str,
    read: &'a str,
    edge: &'a str,
) -> Pair<'a> {
    Pair {
        replicas: 2,
        ..Pair::new(name, format!("printf \"{input}\""), write, read, edge)
    }
}

impl<'a> Pair<'a> {
    /// The pair `NAME-w` -> `NAME-r`, one writer fed by the shell command
    /// `feed`.
    fn new(name: &str, feed: String, write: &'a str, read: &'a str, edge: &'a str) -> Self {
        Pair {
            writer: format!("{name}-w"),
            reader: format!("{name}-r"),
            replicas: 1,
            feed,
            write,
            read,
            edge,
        }
    }

    /// Other names for the writer and the reader.
    fn named(mut self, writer: &str, reader: &str) -> Self {
        writer.clone_into(&mut self.writer);
        reader.clone_into(&mut self.reader);
        self
    }

    fn toml(&self) -> String {
        let (writer, reader) = (&self.writer, &self.reader);
        let replicas = match self.replicas {
            1 => String::new(),
            n => format!("replicas = {n}\n"),
        };
        format!(
            "[process.{writer}]\n{replicas}shell = '''{} | {{ipc_run}} port write {}'''\n\
             [process.{reader}]\nshell = '''{{ipc_run}} port read {}'''\n{}",
            self.feed,
            self.write,
            self.read,
            edge(&format!("{writer}.out"), &format!("{reader}.in"), self.edge),
        )
    }
}

/// A topology named `name` of `pairs`, in order.
fn topology(name: &str, pairs: &[Pair]) -> String {
    let mut toml = format!("name = \"{name}\"\n");
    for pair in pairs {
        toml += &pair.toml();
    }
    toml
}

fn edge(from: &str, to: &str, extra: &str) -> String {
    format!("[[edge]]\nfrom = \"{from}\"\nto = \"{to}\"\n{extra}\n")
}

/// Edge options of a POSIX queue of 64-byte messages.
const POSIX_MQ: &str = "mechanism = \"posix-mq\"\ntraffic = \"messages\"\nmessage_size = 64";
/// Edge options of a System V queue of 64-byte messages.
const SYSV_MQ: &str = "mechanism = \"sysv-mq\"\ntraffic = \"messages\"\nmessage_size = 64";

/// `scratch.run(file)` with `--tap EDGE=FILE` for each of `taps`.
fn run_tapped(scratch: &Scratch, file: &Path, taps: &[(&str, &Path)]) -> Finished {
    let mut command = scratch.run_command(file);
    for (edge, copy) in taps {
        command
            .arg("--tap")
            .arg(format!("{edge}={}", copy.display()));
    }
    run_captured(&mut command)
}

/// Asserts that `name`'s line in the run's summary says `status`.
fn assert_summary(run: &Finished, name: &str, status: &str) {
    assert!(
        summary_line(&run.stderr, name).contains(status),
        "{name}: {}",
        run.stderr
    );
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
    // Streams: pipe, FIFO by fd and by path, stream socketpair. A last line
    // without a newline arrives as it is; the relay shows it as a line.
    let mut pairs: Vec<Pair> = [
        ("pipe", "mechanism = \"pipe\""),
        ("fifo", "mechanism = \"fifo\""),
        ("fpath", "mechanism = \"fifo\"\ndeliver = \"path\""),
        ("spair", "mechanism = \"socketpair\""),
    ]
    .into_iter()
    .map(|(kind, extra)| pair(kind, "a\\nb\\nc", "out", "in", extra))
    .collect();
    pairs.extend([
        // Seqpacket socketpair: boundaries kept, EOF when the writer ends.
        pair(
            "seq",
            "one\\ntwo words\\n",
            "out",
            "in",
            "mechanism = \"socketpair\"\nsocket = \"seqpacket\"\ntraffic = \"messages\"",
        ),
        // Datagram socketpair: no EOF, an end marker.
        pair(
            "dg",
            "d1\\nd2\\n",
            "--end-marker out",
            "--end-markers 1 in",
            "mechanism = \"socketpair\"\nsocket = \"dgram\"\ntraffic = \"messages\"",
        ),
        // Stream listener: two clients, lines kept whole, read ends after
        // two connections.
        replicated(
            "ul",
            "x$IPC_RUN_REPLICA\\ny$IPC_RUN_REPLICA\\n",
            "out",
            "--count 2 in",
            "mechanism = \"unix-listener\"\ntraffic = \"request\"",
        ),
        // Seqpacket listener: messages from two clients, two connections.
        replicated(
            "us",
            "s$IPC_RUN_REPLICA\\n",
            "out",
            "--count 2 in",
            "mechanism = \"unix-listener\"\nsocket = \"seqpacket\"\ntraffic = \"messages\"",
        ),
        // Datagram listener, two writers, two end markers.
        replicated(
            "ud",
            "u$IPC_RUN_REPLICA\\n",
            "--end-marker out",
            "--end-markers 2 in",
            "mechanism = \"unix-listener\"\nsocket = \"dgram\"\ntraffic = \"messages\"",
        ),
        // TCP: one connection.
        pair(
            "tcp",
            "t1\\nt2\\n",
            "out",
            "--count 1 in",
            "mechanism = \"tcp\"\ntraffic = \"request\"",
        ),
        // UDP: an end marker.
        pair(
            "udp",
            "p1\\np2\\n",
            "--end-marker out",
            "--end-markers 1 in",
            "mechanism = \"udp\"\ntraffic = \"messages\"",
        ),
        // POSIX queue: two writers, two end markers.
        replicated(
            "mq",
            "q$IPC_RUN_REPLICA a\\nq$IPC_RUN_REPLICA b\\n",
            "--end-marker out",
            "--end-markers 2 in",
            "mechanism = \"posix-mq\"\ntraffic = \"messages\"\nmessage_size = 64\ndepth = 4",
        ),
        // System V queue.
        pair(
            "sv",
            "v1\\nv2\\n",
            "--end-marker out",
            "--end-markers 1 in",
            SYSV_MQ,
        ),
    ]);
    let run = scratch.run_to_success(&topology("kinds", &pairs));
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
}

/// `--framing length` is binary safe and keeps boundaries (a newline inside
/// a message); `raw` makes each read a message; `line` adds a missing
/// newline only.
#[test]
fn framings() {
    let mut scratch = Scratch::new("port-framing");
    let pairs = [
        // Length in, length out: two messages, one holding a newline and a
        // NUL.
        pair(
            "len",
            "\\000\\000\\000\\003a\\nb\\000\\000\\000\\002\\000z",
            "--framing length out",
            "--framing length --count 2 in | od -An -tx1 | tr -d ' \\n'; echo",
            POSIX_MQ,
        ),
        // Raw in: one printf is one read, so one message; line out adds "\n"
        // once, also to a message that already ends with one.
        pair(
            "raw",
            "r1 r2\\n",
            "--framing raw out",
            "--count 1 in | od -An -c | tr -s ' '",
            POSIX_MQ,
        ),
        // Raw out: messages back to back.
        pair(
            "cat",
            "k\\nl\\nm\\n",
            "out",
            "--framing raw --count 3 in; echo",
            SYSV_MQ,
        ),
    ];
    let file = scratch.topology(&topology("framing", &pairs));
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
    let mut toml = topology(
        "errors",
        &[
            pair(
                "idle",
                "i1\\ni2\\n",
                "out",
                "--idle-timeout 300ms in",
                POSIX_MQ,
            ),
            pair(
                "big",
                "0123456789abcdefX\\n",
                "out",
                "--idle-timeout 200ms in",
                "mechanism = \"posix-mq\"\ntraffic = \"messages\"\nmessage_size = 16",
            ),
            pair(
                "vbig",
                "0123456789abcdefX\\n",
                "out",
                "--idle-timeout 200ms in",
                "mechanism = \"sysv-mq\"\ntraffic = \"messages\"\nmessage_size = 16",
            ),
        ],
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
    assert_summary(&run, "idle-r", "exited 0");
    assert_eq!(lines_of(&run.stdout, "idle-r"), strings(&["i1", "i2"]));
    assert_summary(&run, "big-w", "exited 1");
    assert!(
        run.stderr.contains(
            "a message of 17 bytes is larger than message_size=16 of posix-mq port `out`"
        ),
        "{}",
        run.stderr
    );
    assert_summary(&run, "vbig-w", "exited 1");
    assert!(
        run.stderr
            .contains("larger than message_size=16 of sysv-mq port `out`"),
        "{}",
        run.stderr
    );
    assert_summary(&run, "sem-a", "exited 2");
    assert!(
        run.stderr.contains("carries no data to copy"),
        "{}",
        run.stderr
    );
    assert_summary(&run, "wrong-w", "exited 2");
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

/// A port whose object is gone (or never was) cannot be opened: exit 3,
/// for a ring as for a FIFO.
#[test]
fn an_object_that_cannot_be_opened_is_exit_3() {
    for value in [
        "kind=posix-shm channel=c end=read name=/ipc-run-test.absent size=8192 layout=ring capacity=4096 producers=1",
        "kind=fifo channel=c end=read path=/nonexistent/ipc-run-test.fifo",
    ] {
        let output = Command::new(IPC_RUN)
            .args(["port", "read", "gone"])
            .env("IPC_PORT_GONE", value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(3), "{value}: {output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("cannot open"),
            "{output:?}"
        );
    }
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
    let run = run_tapped(&scratch, &file, &[("nums", &copy), ("talk", &talk)]);
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
    assert_summary(&run, "tap-nums", "exited 0");
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
    let file = Path::new(MANIFEST_DIR).join("topologies/pipeline.toml");
    let run = run_tapped(&scratch, &file, &[("pipeline1", &copy)]);
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
    let pairs = [
        replicated(
            "r",
            "r$IPC_RUN_REPLICA one\\nr$IPC_RUN_REPLICA two\\n",
            "out",
            "in",
            "name = \"frames\"\ntraffic = \"messages\"\nsync = \"ring\"\nsize = \"64KiB\"",
        )
        .named("rw", "rr"),
        // 8 KiB: a 4096-byte data area, records of at most 4088 bytes.
        Pair::new(
            "big",
            "head -c 5000 /dev/zero | tr '\\\\0' x".to_owned(),
            "out",
            "in",
            "traffic = \"messages\"\nsync = \"ring\"\nsize = \"8KiB\"",
        ),
    ];
    let file = scratch.topology(&topology("ring", &pairs));
    let copy = scratch.dir.join("frames.copy");
    let run = run_tapped(&scratch, &file, &[("frames", &copy)]);
    let want = strings(&["r0 one", "r0 two", "r1 one", "r1 two"]);
    assert_eq!(sorted(lines_of(&run.stdout, "rr")), want, "{}", run.stderr);
    let copied: Vec<String> = std::fs::read_to_string(&copy)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(sorted(copied), want);
    assert_summary(&run, "rr", "exited 0");
    assert_summary(&run, "tap-frames", "exited 0");
    assert_summary(&run, "big-w", "exited 1");
    assert!(
        run.stderr
            .contains("bytes is larger than the largest record (4088 bytes) of ring port `out`"),
        "{}",
        run.stderr
    );
    assert_summary(&run, "big-r", "exited 0");
}
