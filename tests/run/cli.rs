//! `ipc-run run` end to end: the real binary on real processes, the way a
//! user runs it. Each case has its own scratch directory and its own
//! `--runtime-dir` under it, so cases run in parallel and can check that
//! nothing is left. Probe children (`ipc-run-probe`) report what they see.
//!
//! Case names follow the reliability bar (F2 … F7, K1, K2, S1, S3).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::*;

// ----- 1. every shipped topology -------------------------------------------

/// What a shipped topology must print: its exit code is 0 and these checks
/// hold on its stdout.
fn expected_output(name: &str, out: &[u8]) {
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let text = String::from_utf8_lossy(out);
    match name {
        "fifo" => assert_eq!(
            lines_of(out, "sink"),
            (1..=20).map(|i| format!("LINE {i}")).collect::<Vec<_>>()
        ),
        "log-fan-in" => {
            let lines = lines_of(out, "collector");
            assert_eq!(lines.len(), 15, "{lines:?}");
            for (i, line) in lines.iter().enumerate() {
                assert!(line.starts_with(&format!("{:3} ", i + 1)), "{line}");
            }
            let mut want = Vec::new();
            for i in 1..=5 {
                want.push(format!("web: request {i} served"));
                want.push(format!("db: query {i} done"));
                want.push(format!("cache: key {i} evicted"));
            }
            assert_eq!(
                sorted(lines.iter().map(|l| l[4..].to_owned()).collect()),
                sorted(want)
            );
        }
        "mq" => {
            let want = (0..3)
                .flat_map(|w| (0..5).map(move |n| format!("job {n} from writer {w}")))
                .collect();
            assert_eq!(sorted(lines_of(out, "reader")), sorted(want));
        }
        "mq-fan-in" => {
            let want = (0..3)
                .flat_map(|r| {
                    (1..=4)
                        .filter(move |i| (r + i) % 2 == 0)
                        .map(move |i| format!("sensor {r} reading {i}: alarm"))
                })
                .collect();
            assert_eq!(sorted(lines_of(out, "alarms")), sorted(want));
        }
        "onc-rpc" => assert_eq!(
            lines_of(out, "client"),
            (1..=3)
                .flat_map(|n| {
                    [
                        format!("inetd {n}: {n} + 40 = {}", n + 40),
                        format!("per-connection {n}: {n} + 100 = {}", n + 100),
                    ]
                })
                .collect::<Vec<_>>()
        ),
        "grpc" => {
            for i in 0..3 {
                assert_eq!(
                    lines_of(out, &format!("client#{i}")),
                    [format!("client {i} got hello, client {i}")]
                );
            }
        }
        "dbus" => {
            assert_eq!(lines_of(out, "shell-caller"), ["   hello, dbus-send"]);
            assert_eq!(lines_of(out, "py-caller"), ["hello, jeepney"]);
            assert_eq!(lines_of(out, "greeter"), ["greeter: answered 2 calls"]);
        }
        "http-gunicorn" => assert_eq!(
            lines_of(out, "client"),
            [
                r#"{"jsonrpc": "2.0", "id": 1, "result": 6}"#,
                r#"{"jsonrpc": "2.0", "id": 2, "result": ["over", "tcp"]}"#
            ]
        ),
        "distributed-pipeline" => {
            assert_eq!(lines_of(out, "total"), ["sum of 100 squares: 338350"]);
        }
        "mpi" => {
            for (rank, instance) in ["ping", "pong#0", "pong#1", "pong#2"].iter().enumerate() {
                let lines = lines_of(out, &format!("{instance}[{rank}]"));
                assert!(
                    lines
                        .iter()
                        .any(|l| l.ends_with("allreduce sum 6 (want 6)")),
                    "{instance}[{rank}]: {lines:?}"
                );
            }
        }
        "pipeline" => assert_eq!(text, "40951\n"),
        "request-reply" => {
            for i in 0..4 {
                assert_eq!(
                    lines_of(out, &format!("client#{i}")),
                    [format!("answer to 'question from client {i}': 42")]
                );
            }
        }
        "ring" => {} // prints on stderr; checked by the caller
        "ring-languages" => assert_eq!(
            lines_of(out, "reader"),
            ["c: 1000 in order, py: 1000 in order"]
        ),
        "rpc" => {
            for i in 0..3 {
                assert_eq!(
                    lines_of(out, &format!("client#{i}")),
                    [format!(
                        "client {i} got {{\"id\": {i}, \"result\": {}}}",
                        110 + i
                    )]
                );
            }
        }
        "semaphore" => {
            let lines = lines_of(out, "reporter");
            let want = (0..3)
                .flat_map(|a| (0..3).map(move |n| format!("appender {a}: entry {n}")))
                .collect();
            assert_eq!(sorted(lines.clone()), sorted(want));
            // Each appender's entries in order.
            for a in 0..3 {
                let mine: Vec<&String> = lines
                    .iter()
                    .filter(|l| l.starts_with(&format!("appender {a}:")))
                    .collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
            }
        }
        "shm-ring" => assert_eq!(lines_of(out, "sink"), ["10000 50005000"]),
        "shm-nosync" => assert_eq!(lines_of(out, "reader"), ["hello through /dev/shm"]),
        "shm" => assert_eq!(lines_of(out, "reader"), ["sum of 100 squares: 338350"]),
        "signals" => assert_eq!(lines_of(out, "sleeper"), ["sleeper: woken by SIGUSR1"]),
        "sockets" => {
            assert_eq!(
                lines_of(out, "client"),
                ["unix: HELLO OVER A UNIX SOCKET", "tcp:  HELLO OVER TCP"]
            );
            assert_eq!(lines_of(out, "server"), ["server: got quit"]);
        }
        "stdin-filter" => assert_eq!(text, "HELLO\nWORLD\n"),
        "sysv" => {
            let mut want = vec!["table sum: 2016".to_owned()];
            want.extend((0..5).map(|i| format!("event {i}")));
            assert_eq!(lines_of(out, "reader"), want);
            assert_eq!(lines_of(out, "writer"), ["reader finished"]);
        }
        other => panic!(
            "topologies/{other}.toml has no expected output here: add it (or, for a \
             long-running service, document why it is not run)"
        ),
    }
}

#[test]
fn every_shipped_topology_runs_to_completion_and_leaves_nothing() {
    let scratch = Scratch::new("shipped");
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(MANIFEST_DIR).join("topologies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 14, "{files:?}");
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let mut command = scratch.run_command(&file);
        command.current_dir(&scratch.dir);
        if name == "dbus" {
            // Its services use jeepney, from the test venv.
            stacks::python_with("jeepney");
            command.env("PATH", stacks::path_with_venv());
        }
        if name == "ring-languages" || name == "onc-rpc" || name == "mpi" {
            // Their commands name examples/ from the repository root.
            command.current_dir(MANIFEST_DIR);
        }
        if name == "grpc" {
            // Its python3 is the one with grpcio, as its header says.
            stacks::python_with("grpc_health.v1.health");
            command.env("PATH", stacks::path_with_venv());
        }
        if name == "http-gunicorn" {
            // gunicorn from the test venv's bin; the app in examples/http/.
            stacks::python_with("gunicorn");
            stacks::program("curl", "curl");
            command
                .current_dir(MANIFEST_DIR)
                .env("PATH", stacks::path_with_venv());
        }
        let result = if name == "stdin-filter" {
            command.stdin(Stdio::piped());
            let mut child = command
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"hello\nworld\n").unwrap();
            drop(stdin);
            finish(child)
        } else {
            run_captured(&mut command)
        };
        assert_eq!(result.code, 0, "{name}: exit code\n{}", result.stderr);
        expected_output(&name, &result.stdout);
        if name == "ring" {
            assert!(
                result.stderr.contains("a | a: token came back as 32"),
                "{}",
                result.stderr
            );
        }
        let objects = RunObjects::of(&plan_json(&file), &BTreeMap::new(), &result.stderr);
        objects.assert_gone(false);
        assert_eq!(scratch.runtime_entries(), Vec::<String>::new(), "{name}");
    }
}

// ----- 2. pipelines --------------------------------------------------------

#[test]
fn shell_pipeline_output_is_byte_identical_to_bash() {
    let mut scratch = Scratch::new("pipeline");
    // Input with every byte value, no trailing newline.
    let input: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let input_file = scratch.dir.join("input.bin");
    std::fs::write(&input_file, &input).unwrap();
    let file = scratch.topology(
        r#"
exit_code_from = "count"
pipeline = ["@stdin", "squeeze", "sorted", "count", "@stdout"]
[process.squeeze]
cmd = ["tr", "-s", "\\000-\\037", "\\n"]
[process.sorted]
cmd = ["sort"]
env = { LC_ALL = "C" }
[process.count]
cmd = ["uniq", "-c"]
"#,
    );
    let expected = Command::new("bash")
        .arg("-c")
        .arg("set -o pipefail; tr -s '\\000-\\037' '\\n' < \"$1\" | LC_ALL=C sort | uniq -c")
        .arg("bash")
        .arg(&input_file)
        .output()
        .unwrap();
    assert!(expected.status.success());
    assert!(expected.stdout.len() > 1000);
    let mut command = scratch.run_command(&file);
    let result = finish(
        command
            .stdin(std::fs::File::open(&input_file).unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(result.code, 0);
    assert!(
        result.stdout == expected.stdout,
        "output differs from bash's"
    );
    scratch.assert_left_nothing();
}

#[test]
fn stdin_filter_is_a_stage_of_a_shell_pipeline() {
    let scratch = Scratch::new("stdin-filter");
    let topology = Path::new(MANIFEST_DIR).join("topologies/stdin-filter.toml");
    // `ipc-run FILE` (the default command) between two shell stages.
    let output = Command::new("bash")
        .arg("-c")
        .arg(
            "set -o pipefail; printf 'hello\\nworld\\nabc\\n' | \"$1\" --color never \"$2\" \
             --runtime-dir \"$3\" -q | sort -r",
        )
        .arg("bash")
        .arg(IPC_RUN)
        .arg(&topology)
        .arg(scratch.runtime())
        .env_remove("IPC_RUN_LOG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(output.stdout, b"WORLD\nHELLO\nABC\n");
    assert_eq!(output.stderr, b"", "nothing but the data");

    // `ipc-run FILE < in > out`.
    let input = scratch.dir.join("in.txt");
    let out = scratch.dir.join("out.txt");
    std::fs::write(&input, "some\nMixed case\nlast line without newline").unwrap();
    let status = Command::new(IPC_RUN)
        .arg(&topology)
        .arg("--runtime-dir")
        .arg(scratch.runtime())
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{status:?}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"SOME\nMIXED CASE\nLAST LINE WITHOUT NEWLINE"
    );
    assert!(
        String::from_utf8_lossy(&status.stderr).contains("upper: exited 0"),
        "{status:?}"
    );
    scratch.assert_left_nothing();
}

// ----- 3. F4: SIGPIPE and held ends ----------------------------------------

#[test]
fn f4_producer_into_head_dies_of_sigpipe_promptly() {
    let mut scratch = Scratch::new("f4-head");
    let topology = PRODUCER_INTO_HEAD;
    let file = scratch.topology(topology);
    let result = scratch.run(&file);
    assert_eq!(lines_of(&result.stdout, "take"), ["y"]);
    assert!(
        summary_line(&result.stderr, "yes").contains("killed by SIGPIPE"),
        "{}",
        result.stderr
    );
    assert_eq!(result.code, 128 + 13, "the producer's SIGPIPE is a failure");
    // Following the consumer makes it a success.
    let file = scratch.topology(&format!("exit_code_from = \"take\"\n{topology}"));
    let result = scratch.run(&file);
    assert_eq!(result.code, 0);
    scratch.assert_left_nothing();
}

#[test]
fn f4_restartable_consumer_killed_mid_stream_loses_no_data() {
    let mut scratch = Scratch::new("f4-restart");
    // The producer writes 1000 lines at once and exits; the consumer takes
    // 250 lines per life (the shell's `read` takes one byte at a time from a
    // pipe, never more than the line) and then SIGKILLs itself. What is
    // still in the pipe must reach the next life.
    let file = scratch.topology(&restarting_consumer(1000, 250, "kill -KILL $$", 10));
    let result = scratch.run(&file);
    let want: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
    assert_eq!(lines_of(&result.stdout, "take"), want);
    assert!(
        summary_line(&result.stderr, "take").contains("exited 0, restarts 4"),
        "{}",
        result.stderr
    );
    assert_eq!(result.code, 0);
    scratch.assert_left_nothing();
}

// ----- 4. shutdown by signal -----------------------------------------------

#[test]
fn sigterm_stops_in_reverse_start_order_with_stop_signal_then_sigkill() {
    let mut scratch = Scratch::new("stop-order");
    // a starts first and ignores its stop signal; b stops on SIGUSR1; c on
    // SIGTERM. Each prints the signal it got when asked to stop.
    let file = scratch.topology(
        r#"
[process.a]
cmd = ["PROBE", "block", "15", "--", "println", "up", "--", "sleep", "60000"]
stop_timeout = "300ms"
[process.b]
cmd = ["PROBE", "block", "10", "--", "println", "up", "--", "wait-signal", "10"]
stop_signal = "SIGUSR1"
after = ["a"]
[process.c]
cmd = ["PROBE", "block", "15", "--", "println", "up", "--", "wait-signal", "15"]
after = ["b"]
"#,
    );
    let mut live = scratch.live(&file);
    live.wait_for_count("| up", 3);
    live.signal(Signal::SIGTERM);
    let result = live.finish();
    let out = result.stdout_text();
    let c = out.find("c | signal: 15").expect(&out);
    let b = out.find("b | signal: 10").expect(&out);
    assert!(c < b, "c stops before b:\n{out}");
    assert!(
        summary_line(&result.stderr, "c").contains("exited 0 (stopped)"),
        "{}",
        result.stderr
    );
    assert!(summary_line(&result.stderr, "b").contains("exited 0 (stopped)"));
    assert!(
        summary_line(&result.stderr, "a").contains("killed by SIGKILL (stopped)"),
        "{}",
        result.stderr
    );
    assert_eq!(result.code, 143);
    scratch.assert_left_nothing();
}

#[test]
fn second_sigint_escalates_at_once() {
    let mut scratch = Scratch::new("sigint-twice");
    let file = scratch.topology(
        r#"
[process.stubborn]
cmd = ["PROBE", "block", "15", "--", "block", "2", "--", "println", "up", "--", "sleep", "60000"]
stop_timeout = "60s"
[process.other]
cmd = ["PROBE", "block", "15", "--", "println", "up", "--", "sleep", "60000"]
stop_timeout = "60s"
"#,
    );
    let mut live = scratch.live(&file);
    live.wait_for_count("| up", 2);
    live.signal(Signal::SIGINT);
    live.wait_for_stderr("SIGINT: stopping");
    // Both processes wait out a 60 s grace: the run ends (within the
    // runner's timeout) only if the second SIGINT kills at once.
    live.signal(Signal::SIGINT);
    let result = live.finish();
    assert!(result.stderr.contains("again: killing every process"));
    for name in ["stubborn", "other"] {
        assert!(
            summary_line(&result.stderr, name).contains("killed by SIGKILL"),
            "{}",
            result.stderr
        );
    }
    assert_eq!(result.code, 130);
    scratch.assert_left_nothing();
}

// ----- 5. F2: spawn errors -------------------------------------------------

#[test]
fn f2_missing_binary_eacces_enoexec_exit_3_and_leave_nothing() {
    let mut scratch = Scratch::new("f2");
    let script = scratch.dir.join("not-executable.sh");
    std::fs::write(&script, "echo hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let garbage = scratch.dir.join("garbage");
    std::fs::write(&garbage, b"\x00\x01\x02 not a program").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cases = [
        ("/nonexistent/program".to_owned(), "ENOENT"),
        ("no-such-program-on-path".to_owned(), "ENOENT"),
        (script.display().to_string(), "EACCES"),
        (scratch.dir.display().to_string(), "EACCES"),
        (garbage.display().to_string(), "ENOEXEC"),
    ];
    for (program, errno) in cases {
        // `first` is started before the failing one and owns objects too.
        let file = scratch.topology(&format!(
            r#"
[process.first]
cmd = ["PROBE", "block", "15", "--", "wait-signal", "15"]
ports = {{ shm = {{}}, q = {{}} }}
[process.broken]
cmd = ["{program}"]
after = ["first"]
ports = {{ shm = {{}}, q = {{}} }}
[process.never]
cmd = ["PROBE", "exit", "0"]
after = ["broken"]
[[edge]]
from = "first.shm"
to = "broken.shm"
traffic = "shared"
size = "4KiB"
[[edge]]
from = "first.q"
to = "broken.q"
mechanism = "sysv-mq"
traffic = "messages"
"#
        ));
        let result = scratch.run(&file);
        assert_eq!(result.code, 3, "{program}: {}", result.stderr);
        let line = summary_line(&result.stderr, "broken");
        assert!(
            line.contains("failed to start") && line.contains(&program) && line.contains(errno),
            "{program}: {line}"
        );
        assert!(summary_line(&result.stderr, "never").contains("not started"));
        assert!(summary_line(&result.stderr, "first").contains("(stopped)"));
        let objects = RunObjects::of(&plan_json(&file), &BTreeMap::new(), &result.stderr);
        assert_eq!(objects.sysv.len(), 1, "{objects:?}");
        objects.assert_gone(false);
        scratch.assert_left_nothing();
    }
    // A shell that could not find its command exits 127: without a
    // restart policy that is a launch failure naming the program
    // (docs/supervision.md, "A missing program").
    let file = scratch.topology(
        r#"
[process.shell]
shell = "exec /nonexistent/program"
"#,
    );
    let result = scratch.run(&file);
    assert_eq!(result.code, 3);
    let line = summary_line(&result.stderr, "shell");
    assert!(
        line.contains("failed to start: command not found: /nonexistent/program"),
        "{line}"
    );
}

// ----- 6. F3: exit status --------------------------------------------------

#[test]
fn f3_exit_status_follows_the_documented_rule() {
    let mut scratch = Scratch::new("f3");
    let dir = scratch.dir.clone();
    let mut check = |toml: &str, code: i32, summaries: &[(&str, &str)]| {
        let file = scratch.topology(toml);
        let result = scratch.run(&file);
        assert_eq!(result.code, code, "{toml}\n{}", result.stderr);
        for (name, text) in summaries {
            let line = summary_line(&result.stderr, name);
            assert!(line.contains(text), "{line}");
        }
    };
    for code in [0, 1, 42, 255] {
        check(
            &format!(
                "[process.ok]\ncmd = [\"PROBE\", \"exit\", \"0\"]\n\
                 [process.bad]\ncmd = [\"PROBE\", \"exit\", \"{code}\"]\n"
            ),
            code,
            &[("bad", &format!("exited {code}")), ("ok", "exited 0")],
        );
    }
    // The first failure in time decides, not the last or the largest:
    // `late` fails once `early` was reaped.
    let (early, late) = reaped_before(&dir.join("early.pid"));
    check(
        &format!(
            r#"
[process.early]
shell = "{early}; exec PROBE exit 5"
[process.late]
shell = "{late}; exec PROBE exit 200"
"#
        ),
        5,
        &[("early", "exited 5"), ("late", "exited 200")],
    );
    // A death by signal n is 128+n.
    check(
        "[process.victim]\nshell = \"kill -USR2 $$\"\n",
        128 + 12,
        &[("victim", "killed by SIGUSR2")],
    );
    check(
        "[process.victim]\nshell = \"kill -SEGV $$\"\n",
        128 + 11,
        &[("victim", "killed by SIGSEGV")],
    );
    // exit_code_from: that process's status, even when another failed
    // first; the others are stopped when it ends.
    let (failing, main) = reaped_before(&dir.join("failing.pid"));
    check(
        &format!(
            r#"
exit_code_from = "main"
[process.main]
shell = "{main}; exec PROBE exit 4"
[process.failing]
shell = "{failing}; exec PROBE exit 9"
[process.server]
cmd = ["PROBE", "sleep", "60000"]
"#
        ),
        4,
        &[
            ("main", "exited 4"),
            ("failing", "exited 9"),
            ("server", "killed by SIGTERM (stopped)"),
        ],
    );
    check(
        r#"
exit_code_from = "main"
[process.main]
cmd = ["PROBE", "exit", "0"]
[process.failing]
cmd = ["PROBE", "exit", "9"]
"#,
        0,
        &[("main", "exited 0")],
    );
    check(
        r#"
exit_code_from = "main"
[process.main]
shell = "sleep 0.1; kill -TERM $$"
[process.server]
cmd = ["PROBE", "sleep", "60000"]
"#,
        128 + 15,
        &[("main", "killed by SIGTERM"), ("server", "(stopped)")],
    );
    scratch.assert_left_nothing();
}

// ----- 7. K2: nothing left -------------------------------------------------

#[test]
fn k2_normal_exit_leaves_nothing() {
    let mut scratch = Scratch::new("k2-exit");
    let file = scratch.topology(&every_mechanism_finite());
    let result = scratch.run(&file);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_eq!(lines_of(&result.stdout, "b").last().unwrap(), "line: go");
    let found = reports(&result.stdout);
    assert_eq!(found.len(), 2);
    let objects = RunObjects::of(&plan_json(&file), &found, &result.stderr);
    assert_eq!(objects.mq_names.len(), 1, "{objects:?}");
    assert_eq!(objects.sysv.len(), 4, "{objects:?}");
    assert_eq!((objects.tcp_ports.len(), objects.udp_ports.len()), (1, 1));
    objects.assert_gone(true);
    scratch.assert_left_nothing();
}

/// Runs the waiting topology, checks that the objects exist while it runs,
/// stops it with `signal`, and checks that nothing is left.
fn stopped_by_signal_leaves_nothing(case: &str, signal: Signal, code: i32) {
    let mut scratch = Scratch::new(case);
    let file = scratch.topology(&every_mechanism_waiting());
    let (mut live, found) = start_waiting(&scratch, &file);
    live.wait_for_stderr("prepared");
    let log = live.stderr.join("\n");
    let objects = RunObjects::of(&plan_json(&file), &found, &log);
    // They exist while the run is alive: the checks below are not vacuous.
    assert_eq!(objects.shm_entries().len(), 4, "{objects:?}");
    assert_eq!(objects.live_mqs().len(), 1);
    assert_eq!(objects.live_sysv().len(), 4);
    assert!(tcp_listening(objects.tcp_ports[0]));
    assert!(udp_bound(objects.udp_ports[0]));
    assert_eq!(
        scratch.runtime_entries(),
        std::slice::from_ref(&objects.run_id)
    );
    assert_eq!(zombie_children(live.pid().as_raw()), Vec::<i32>::new());
    live.signal(signal);
    let result = live.finish();
    assert_eq!(result.code, code);
    for name in ["a", "b"] {
        assert!(
            summary_line(&result.stderr, name).contains("exited 0 (stopped)"),
            "{}",
            result.stderr
        );
    }
    objects.assert_gone(true);
    scratch.assert_left_nothing();
}

#[test]
fn k2_sigterm_leaves_nothing() {
    stopped_by_signal_leaves_nothing("k2-sigterm", Signal::SIGTERM, 143);
}

#[test]
fn k2_sigint_leaves_nothing() {
    stopped_by_signal_leaves_nothing("k2-sigint", Signal::SIGINT, 130);
}

#[test]
fn k2_sigterm_while_preparing_leaves_nothing() {
    let mut scratch = Scratch::new("k2-preparing");
    // Sixty semaphores, each journaled and synced before it is created:
    // preparing takes long enough for the signal to land in the middle.
    let mut toml = String::from(
        r#"
[process.a]
cmd = ["PROBE", "block", "15", "--", "wait-signal", "15"]
[process.b]
cmd = ["PROBE", "block", "15", "--", "wait-signal", "15"]
"#,
    );
    for i in 0..60 {
        toml.push_str(&format!(
            "[[edge]]\nfrom = \"a.s{i}\"\nto = \"b.s{i}\"\nmechanism = \"posix-sem\"\ntraffic = \"notify\"\n"
        ));
    }
    let file = scratch.topology(&toml);
    let mut live = scratch.live(&file);
    live.wait_for_stderr("run directory created");
    live.signal(Signal::SIGTERM);
    let result = live.finish();
    let objects = RunObjects::of(&plan_json(&file), &BTreeMap::new(), &result.stderr);
    let after_signal = result
        .stderr
        .lines()
        .skip_while(|l| !l.contains("run directory created"))
        .filter(|l| l.contains("journal: "))
        .count();
    eprintln!("{after_signal} of 60 objects journaled after the signal was sent");
    assert_eq!(result.code, 143, "stopped, not killed: {}", result.stderr);
    assert!(result.stderr.contains("SIGTERM: stopping"));
    objects.assert_gone(false);
    scratch.assert_left_nothing();
}

// ----- 8. F5: SIGKILL of ipc-run, then clean -------------------------------

#[test]
fn f5_sigkill_kills_every_child_and_clean_removes_only_that_run() {
    let mut scratch = Scratch::new("f5");
    let file = scratch.topology(&every_mechanism_waiting());
    let plan = plan_json(&file);
    let (mut doomed, doomed_reports) = start_waiting(&scratch, &file);
    let (mut alive, alive_reports) = start_waiting(&scratch, &file);
    doomed.wait_for_stderr("prepared");
    alive.wait_for_stderr("prepared");
    let doomed_objects = RunObjects::of(&plan, &doomed_reports, &doomed.stderr.join("\n"));
    let alive_objects = RunObjects::of(&plan, &alive_reports, &alive.stderr.join("\n"));
    assert_ne!(doomed_objects.run_id, alive_objects.run_id);

    doomed.signal(Signal::SIGKILL);
    let killed = Instant::now();
    let status = doomed.child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let running = wait_dead(&doomed_objects.pids, Duration::from_secs(10));
    assert_eq!(
        running,
        Vec::<i32>::new(),
        "children still running {:?} after SIGKILL of ipc-run",
        killed.elapsed()
    );
    // Its objects survive it ...
    assert_eq!(doomed_objects.shm_entries().len(), 4);
    assert_eq!(doomed_objects.live_sysv().len(), 4);
    let doomed_dir = scratch.runtime().join(&doomed_objects.run_id);
    let alive_dir = scratch.runtime().join(&alive_objects.run_id);
    assert!(doomed_dir.is_dir());

    // ... until `ipc-run clean`, which leaves the live run alone.
    let output = Command::new(IPC_RUN)
        .arg("clean")
        .arg("--runtime-dir")
        .arg(scratch.runtime())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        stdout.contains(&format!("cleaned {}", doomed_dir.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("live {} (left alone)", alive_dir.display())),
        "{stdout}"
    );
    // fifo x2, unix sockets x2 + notify, posix shm + 2 semaphores, posix
    // sem, mq, sysv shm + sem set, sysv mq, sysv sem; the control socket.
    assert_eq!(stdout.matches("  removed ").count(), 15, "{stdout}");
    assert_eq!(
        stdout.matches(alive_objects.run_id.as_str()).count(),
        1,
        "only the `live` line names the live run: {stdout}"
    );
    doomed_objects.assert_gone(false);
    assert!(!doomed_dir.exists());
    assert_eq!(alive_objects.shm_entries().len(), 4);
    assert_eq!(alive_objects.live_mqs().len(), 1);
    assert_eq!(alive_objects.live_sysv().len(), 4);
    assert!(alive_dir.join("lock").exists() && alive_dir.join("journal").exists());
    assert!(tcp_listening(alive_objects.tcp_ports[0]));

    // The live run is still fine and cleans up after itself.
    alive.signal(Signal::SIGTERM);
    let result = alive.finish();
    assert_eq!(result.code, 143);
    alive_objects.assert_gone(true);
    scratch.assert_left_nothing();
}

// ----- 9. S1: modes under umask 000 ----------------------------------------

#[test]
fn s1_every_object_is_0600_and_the_run_dir_0700_under_umask_000_and_022() {
    for umask in ["000", "022"] {
        let mut scratch = Scratch::new(&format!("s1-{umask}"));
        let file = scratch.topology(&every_mechanism_waiting());
        let umasked = format!("umask {umask}; exec \"$0\" \"$@\"");
        let command = scratch.wrapped_command(&["sh", "-c", &umasked], &file);
        let mut live = Live::start(command);
        live.wait_for_count("| up", 2);
        live.wait_for_stderr("prepared");
        let found = reports(&(live.stdout.join("\n").into_bytes()));
        let objects = RunObjects::of(&plan_json(&file), &found, &live.stderr.join("\n"));
        let mode = |path: &Path| std::fs::symlink_metadata(path).unwrap().mode() & 0o7777;

        assert_eq!(
            mode(&scratch.runtime()),
            0o700,
            "umask {umask}: runtime dir"
        );
        let run_dir = scratch.runtime().join(&objects.run_id);
        assert_eq!(mode(&run_dir), 0o700, "umask {umask}: run dir");
        let mut files = BTreeSet::new();
        for entry in std::fs::read_dir(&run_dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            assert_eq!(
                meta.mode() & 0o7777,
                0o600,
                "umask {umask}: {:?}",
                entry.path()
            );
            assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
            files.insert(entry.file_name().to_string_lossy().into_owned());
        }
        let want: BTreeSet<String> = [
            "e1.fifo",
            "e2.fifo",
            "e4.sock",
            "e14.sock",
            "control.sock",
            "journal",
            "lock",
            "notify.sock",
        ]
        .map(String::from)
        .into();
        assert_eq!(files, want);
        let shm = objects.shm_entries();
        assert_eq!(shm.len(), 4, "{shm:?}");
        for name in &shm {
            assert_eq!(
                mode(&Path::new("/dev/shm").join(name)),
                0o600,
                "umask {umask}: {name}"
            );
        }
        for name in &objects.mq_names {
            assert_eq!(mq_mode(name), 0o600, "umask {umask}: {name}");
        }
        assert_eq!(objects.sysv.len(), 4);
        for &(file, id) in &objects.sysv {
            assert_eq!(
                sysv_perms(file, id).as_deref(),
                Some("600"),
                "umask {umask}: {file} {id}"
            );
        }
        live.signal(Signal::SIGTERM);
        let result = live.finish();
        assert_eq!(result.code, 143);
        objects.assert_gone(true);
        scratch.assert_left_nothing();
    }
}

// ----- 10. F7 and S3: taken names ------------------------------------------

#[test]
fn f7_port_in_use_fails_closed_with_exit_3_and_rolls_back() {
    let mut scratch = Scratch::new("f7");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    // Objects of every kind are created before the TCP edge, the last one.
    // The TCP edge is the pair's last table: the address goes into it.
    let file = scratch.topology(&format!(
        "{}address = \"127.0.0.1:{port}\"\n",
        probe_pair(EXIT_0, EXIT_0, &["fifo", "shm", "mq", "vmq", "vsem", "tcp"])
    ));
    let result = scratch.run(&file);
    assert_eq!(result.code, 3, "{}", result.stderr);
    assert!(
        result.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.to_lowercase().contains("in use"),
        "{}",
        result.stderr
    );
    assert_eq!(result.stdout, b"", "nothing ran");
    // Everything made before the failure was journaled, then removed.
    let objects = RunObjects::of(&plan_json(&file), &BTreeMap::new(), &result.stderr);
    let made = journaled(&result.stderr);
    assert_eq!(
        made.len(),
        7,
        "fifo, shm + 2 sems, mq, sysv mq, sysv sem: {made:?}"
    );
    assert_eq!(objects.sysv.len(), 2);
    objects.assert_gone(false);
    scratch.assert_left_nothing();
    // The other listener is untouched: it still accepts.
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.write_all(b"still mine").unwrap();
    drop(client);
    let (mut conn, _) = taken.accept().unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).unwrap();
    assert_eq!(got, "still mine");
}

#[test]
fn s3_unsafe_runtime_dir_is_refused_and_left_untouched() {
    let mut scratch = Scratch::new("s3");
    let file = scratch.topology("[process.a]\ncmd = [\"PROBE\", \"exit\", \"0\"]\n");
    let target = scratch.dir.join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A symlink in place of the runtime directory.
    std::os::unix::fs::symlink(&target, scratch.runtime()).unwrap();
    let result = scratch.run(&file);
    assert_eq!(result.code, 3, "{}", result.stderr);
    assert!(result.stderr.contains("symlink"), "{}", result.stderr);
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    assert!(scratch.runtime().is_symlink());
    std::fs::remove_file(scratch.runtime()).unwrap();
    // A world-writable one.
    std::fs::create_dir(scratch.runtime()).unwrap();
    std::fs::set_permissions(scratch.runtime(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let result = scratch.run(&file);
    assert_eq!(result.code, 3, "{}", result.stderr);
    assert!(result.stderr.contains("writable"), "{}", result.stderr);
    scratch.assert_left_nothing();
    let mode = std::fs::metadata(scratch.runtime()).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o777, "its mode is not changed");
}

// ----- 11. K1: the child's fd table ----------------------------------------

#[test]
fn k1_probe_fds_are_exactly_stdio_and_declared_ports() {
    let mut scratch = Scratch::new("k1");
    let file = scratch.topology(&every_mechanism_finite());
    let plan = plan_json(&file);
    // ipc-run itself starts with a stray fd 9 (no CLOEXEC): it must not
    // reach the children.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("exec 9</dev/null; exec \"$0\" \"$@\"")
        .arg(IPC_RUN)
        .arg("run")
        .arg(&file)
        .arg("--runtime-dir")
        .arg(scratch.runtime())
        .stdin(Stdio::null());
    let result = run_captured(&mut command);
    assert_eq!(result.code, 0, "{}", result.stderr);
    let found = reports(&result.stdout);
    for process in plan["processes"].as_array().unwrap() {
        let name = process["name"].as_str().unwrap();
        let mut want: Vec<i64> = vec![0, 1, 2];
        want.extend(
            process["fds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|slot| slot["fd"].as_i64().unwrap())
                .filter(|fd| *fd > 2),
        );
        want.sort_unstable();
        let report = &found[name];
        let fds: Vec<i64> = report["fds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|fd| fd.as_i64().unwrap())
            .collect();
        assert_eq!(fds, want, "{name}: /proc/self/fd");
        assert_eq!(report["cloexec"], serde_json::json!([]), "{name}");
        assert_eq!(report["sigblk"], "0000000000000000", "{name}");
    }
    // Declared fds are not trivially empty.
    assert_eq!(found["a"]["fds"].as_array().unwrap().len(), 6);
    assert_eq!(found["b"]["fds"].as_array().unwrap().len(), 11);
}
