//! Supervision with real processes: pipelines, SIGPIPE, restarts without
//! data loss, shutdown order and escalation, exit status, log relay,
//! reaping, idle CPU, readiness.
//!
//! Signals are process-wide, so each case runs the supervisor in a process
//! of its own, `ipc-run run FILE`, and drives and inspects it from outside.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{
    Finished, IPC_RUN, Live, PRODUCER_INTO_HEAD, Scratch, add_bare_run_args, bare_run_command,
    cpu_ticks, reaped_before, restarting_consumer, run_captured, summary_line, wait_gone_sh,
    wait_until, zombie_children,
};
use nix::sys::signal::Signal;

/// `ipc-run run`'s status when the topology could not be started.
const LAUNCH_FAILURE: i32 = ipc_run::supervise::LAUNCH_FAILURE;

// ----- helpers -------------------------------------------------------------

/// A scratch directory (removed when the case passes) for one run of a
/// case; a case may run several, and cases run in parallel.
fn run_scratch() -> Scratch {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Scratch::new(&format!("supervise-{n}"))
}

/// `ipc-run run` of `toml`, written into `scratch`: no debug logs (the
/// cases read the summary ipc-run prints on stderr), in a process group of
/// its own as [`Live::start`] explains.
fn runner(scratch: &mut Scratch, toml: &str) -> Command {
    let file = scratch.topology(toml);
    let mut command = bare_run_command(IPC_RUN, &file, &scratch.runtime());
    command
        .env_remove("NO_COLOR")
        .env_remove("IPC_RUN_LOG")
        .process_group(0);
    command
}

/// Runs a topology to its end (killed after the support module's
/// `RUN_TIMEOUT`).
fn run(toml: &str) -> Finished {
    let mut scratch = run_scratch();
    run_captured(&mut runner(&mut scratch, toml))
}

/// Starts a topology, its stdout and stderr followed line by line; the
/// scratch directory it runs in stays until the caller drops it.
fn start(toml: &str) -> (Scratch, Live) {
    let mut scratch = run_scratch();
    let live = Live::start(runner(&mut scratch, toml));
    (scratch, live)
}

fn shell(cmd: &str) -> Vec<u8> {
    Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .unwrap()
        .stdout
}

/// The relayed lines of `name` on stdout, prefixes removed (`+`
/// continuation records joined back to their line).
fn lines_of(stdout: &[u8], name: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for record in stdout.split(|&b| b == b'\n') {
        let Some(space) = record.iter().position(|&b| b == b' ') else {
            continue;
        };
        if &record[..space] != name.as_bytes() {
            continue;
        }
        let rest = &record[space..];
        let start = rest.iter().position(|&b| b != b' ').unwrap_or(0);
        let rest = &rest[start..];
        if let Some(text) = rest.strip_prefix(b"| ") {
            out.push(text.to_vec());
        } else if let Some(text) = rest.strip_prefix(b"+ ") {
            out.last_mut()
                .expect("a + record follows a line")
                .extend_from_slice(text);
        }
    }
    out
}

fn text_lines(stdout: &[u8], name: &str) -> Vec<String> {
    lines_of(stdout, name)
        .into_iter()
        .map(|l| String::from_utf8(l).unwrap())
        .collect()
}

// ----- cases ---------------------------------------------------------------

#[test]
fn pipeline_matches_the_shell() {
    let result = run(r#"
pipeline = ["gen", "filter", "count"]
[process.gen]
cmd = ["seq", "1", "100000"]
[process.filter]
cmd = ["grep", "7"]
[process.count]
cmd = ["wc", "-l"]
"#);
    let expected = shell("seq 1 100000 | grep 7 | wc -l");
    let expected = String::from_utf8(expected).unwrap();
    assert_eq!(
        text_lines(&result.stdout, "count"),
        vec![expected.trim_end().to_owned()]
    );
    assert_eq!(result.code, 0);
    assert!(summary_line(&result.stderr, "gen").contains("exited 0"));
}

#[test]
fn producer_into_head_ends_promptly() {
    let topology = PRODUCER_INTO_HEAD;
    let result = run(topology);
    assert_eq!(text_lines(&result.stdout, "take"), vec!["y"]);
    assert!(summary_line(&result.stderr, "yes").contains("killed by SIGPIPE"));
    assert_eq!(
        result.code,
        128 + 13,
        "the producer's death by SIGPIPE is a failure"
    );
    // Following the consumer: its exit ends the run and decides the status.
    let result = run(&format!("exit_code_from = \"take\"\n{topology}"));
    assert_eq!(result.code, 0);
}

#[test]
fn restarted_consumer_loses_no_data() {
    // The consumer takes 10 lines per life (the shell's `read` takes one
    // byte at a time from a pipe, so it never reads ahead) and fails; the
    // pipe, held by the supervisor, keeps the rest for the next life.
    let result = run(&restarting_consumer(100, 10, "exit 1", 20));
    let expected: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
    assert_eq!(text_lines(&result.stdout, "take"), expected);
    assert!(summary_line(&result.stderr, "take").contains("exited 0, restarts 10"));
    assert_eq!(result.code, 0);
}

const TRAPPING: &str = r#"trap 'echo stopping-$IPC_RUN_PROCESS; exit 0' TERM INT; echo up-$IPC_RUN_PROCESS; while :; do sleep 0.05; done"#;

#[test]
fn sigterm_stops_in_reverse_start_order() {
    let toml = format!(
        r#"
[process.a]
shell = "{TRAPPING}"
[process.b]
shell = "{TRAPPING}"
after = ["a"]
[process.c]
shell = "{TRAPPING}"
after = ["b"]
"#
    );
    let (_scratch, mut live) = start(&toml);
    for name in ["a", "b", "c"] {
        live.wait_for_count(&format!("up-{name}"), 1);
    }
    live.signal(Signal::SIGTERM);
    let result = live.finish();
    let out = result.stdout_text();
    let pos = |name: &str| {
        out.find(&format!("stopping-{name}"))
            .unwrap_or_else(|| panic!("{name} was not stopped: {out}"))
    };
    assert!(pos("c") < pos("b") && pos("b") < pos("a"), "{out}");
    assert_eq!(result.code, 143, "interrupted by SIGTERM");
    assert!(summary_line(&result.stderr, "a").contains("exited 0 (stopped)"));
}

#[test]
fn grace_period_then_sigkill() {
    let (_scratch, mut live) = start(
        r#"
[process.stubborn]
shell = "trap 'echo ignoring-term' TERM; echo stubborn-up; while :; do sleep 0.05; done"
stop_timeout = "400ms"
[process.polite]
shell = "trap 'exit 0' TERM; echo polite-up; while :; do sleep 0.05; done"
"#,
    );
    live.wait_for_count("stubborn-up", 1);
    live.wait_for_count("polite-up", 1);
    live.signal(Signal::SIGINT);
    // SIGTERM first (the process survives it), SIGKILL after the grace.
    live.wait_for_count("ignoring-term", 1);
    let result = live.finish();
    assert!(summary_line(&result.stderr, "stubborn").contains("killed by SIGKILL (stopped)"));
    assert!(result.stderr.contains("SIGKILL"));
    assert_eq!(result.code, 130);
}

#[test]
fn second_sigint_escalates() {
    let (_scratch, mut live) = start(
        r#"
[process.stubborn]
shell = "trap 'echo ignoring-stop' TERM INT; echo up; while :; do sleep 0.05; done"
stop_timeout = "60s"
"#,
    );
    live.wait_for_count("up", 1);
    live.signal(Signal::SIGINT);
    // The first SIGINT was handled: the process was asked to stop.
    live.wait_for_count("ignoring-stop", 1);
    live.signal(Signal::SIGINT);
    let result = live.finish();
    assert!(summary_line(&result.stderr, "stubborn").contains("killed by SIGKILL"));
    assert!(result.stderr.contains("again: killing every process"));
    assert_eq!(result.code, 130);
}

#[test]
fn exit_codes_are_passed_on() {
    for code in [0, 1, 42, 255] {
        let result = run(&format!(
            r#"
[process.ok]
cmd = ["true"]
[process.bad]
shell = "exit {code}"
"#
        ));
        assert_eq!(result.code, code);
        assert!(summary_line(&result.stderr, "bad").contains(&format!("exited {code}")));
    }
    // The first failure in time decides: `late` fails once `early` was
    // reaped.
    let scratch = Scratch::new("first-failure");
    let (early, late) = reaped_before(&scratch.dir.join("early.pid"));
    let result = run(&format!(
        r#"
[process.early]
shell = "{early}; exit 5"
[process.late]
shell = "{late}; exit 6"
"#
    ));
    assert_eq!(result.code, 5);
}

#[test]
fn death_by_signal_is_128_plus_n() {
    let result = run(r#"
[process.victim]
shell = "kill -USR2 $$"
"#);
    assert_eq!(result.code, 128 + 12);
    assert!(summary_line(&result.stderr, "victim").contains("killed by SIGUSR2"));
}

#[test]
fn exit_code_from_ends_the_run() {
    // `main` ends after `failing` was reaped: a failure seen first does not
    // decide.
    let scratch = Scratch::new("exit-code-from");
    let (failing, main) = reaped_before(&scratch.dir.join("failing.pid"));
    let result = run(&format!(
        r#"
exit_code_from = "main"
[process.main]
shell = "{main}; exit 4"
[process.server]
cmd = ["sleep", "60"]
[process.failing]
shell = "{failing}; exit 9"
"#
    ));
    assert_eq!(result.code, 4);
    assert!(summary_line(&result.stderr, "server").contains("killed by SIGTERM (stopped)"));
}

/// `replicas = 1` written out names the one instance `main#0`; the run
/// still follows it and stops the others when it ends.
#[test]
fn exit_code_from_follows_a_process_with_one_replica_written_out() {
    let result = run(r#"
exit_code_from = "main"
[process.main]
replicas = 1
shell = "exit 4"
[process.server]
cmd = ["sleep", "60"]
"#);
    assert_eq!(result.code, 4, "{}", result.stderr);
    assert!(summary_line(&result.stderr, "server").contains("killed by SIGTERM (stopped)"));
    assert!(
        result.stderr.contains("(exit_code_from)"),
        "{}",
        result.stderr
    );
}

#[test]
fn spawn_failure_is_a_launch_failure() {
    let result = run(r#"
[process.missing]
cmd = ["/nonexistent/program"]
[process.other]
cmd = ["sleep", "60"]
"#);
    assert_eq!(result.code, LAUNCH_FAILURE);
    let line = summary_line(&result.stderr, "missing");
    assert!(
        line.contains("failed to start: ")
            && line.contains("/nonexistent/program: ")
            && line.contains("No such file"),
        "{line}"
    );
}

#[test]
fn restart_limit_marks_failed() {
    let result = run(r#"
[process.flaky]
shell = "echo try; exit 3"
restart = "on-failure"
restart_limit = 3
restart_backoff = "10ms"
"#);
    assert_eq!(result.code, 3);
    assert_eq!(text_lines(&result.stdout, "flaky").len(), 4);
    assert!(summary_line(&result.stderr, "flaky").contains("exited 3, restarts 3"));
    assert!(result.stderr.contains("restart limit 3 reached"));
}

#[test]
fn what_is_left_of_an_exited_process_group_is_killed_with_it() {
    // `lead` leaves a background `sleep` in its process group and exits;
    // `watch` learns the sleep's pid and waits for it to end. Were the
    // group not killed when its leader exits, the sleep would hold `watch`
    // (and the run) until the safety timeout.
    let result = run(r#"
[process.lead]
shell = "sleep 300 & echo $!"

[process.watch]
shell = "read pid; tail --pid=$pid -f /dev/null; echo gone $pid"

[[edge]]
from = "lead.stdout"
to = "watch.stdin"
"#);
    assert_eq!(result.code, 0, "{}", result.stderr);
    let lines = text_lines(&result.stdout, "watch");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("gone "), "{lines:?}");
}

#[test]
fn log_relay_is_byte_exact() {
    // Non-UTF-8 lines, an empty line, a 1 MiB line, and a last line with no
    // newline, on stdout and stderr.
    let script = r#"
import os, sys
big = bytes((i * 7 + 1) % 255 + 1 for i in range(1 << 20)).replace(b"\n", b"x")
os.write(1, b"\xff\xfe plain\n\nlatin1 \xe9\n")
out = big + b"\nend"
while out:
    out = out[os.write(1, out[:100000]):]
os.write(2, b"err \x80\x81\n")
"#;
    let scratch = Scratch::new("log-relay-bytes");
    let file = scratch.dir.join("relay.py");
    std::fs::write(&file, script).unwrap();
    let result = run(&format!(
        r#"
[process.bytes]
cmd = ["python3", "{}"]
"#,
        file.display()
    ));
    let big: Vec<u8> = (0..(1usize << 20))
        .map(|i| ((i * 7 + 1) % 255 + 1) as u8)
        .map(|b| if b == b'\n' { b'x' } else { b })
        .collect();
    let lines = lines_of(&result.stdout, "bytes");
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0], b"\xff\xfe plain");
    assert_eq!(lines[1], b"");
    assert_eq!(lines[2], b"latin1 \xe9");
    assert!(lines[3] == big, "the 1 MiB line differs");
    assert_eq!(lines[4], b"end");
    assert!(result.stderr.contains("bytes | err \u{fffd}\u{fffd}"));
    assert_eq!(result.code, 0);
}

/// A log pipe the relay keeps finding full is grown, doubling, up to
/// the largest size the relay grows one to (256 KiB, or `fs.pipe-max-size`
/// if lower) and no further, and every line arrives whole and in order
/// across the grows. The reader of ipc-run's stdout reads only while the
/// process is blocked on its full pipe, so each of its reads lets the
/// relay find the pipe full once more. Before: the pipe stayed at 64 KiB.
#[test]
fn a_log_pipe_found_full_grows_to_its_limit_and_lines_stay_whole() {
    let script = r#"
import fcntl, os, sys
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
total, sizes, n = int(sys.argv[2]), [], 0
while n < total:
    end = min(n + 650, total)
    out = b"".join(b"%09d %s\n" % (i, b"x" * 89) for i in range(n, end))
    while out:
        out = out[os.write(1, out):]
    size = fcntl.fcntl(1, 1032)  # F_GETPIPE_SZ
    if not sizes or sizes[-1] != size:
        sizes.append(size)
    n = end
os.write(2, ("sizes " + " ".join(map(str, sizes)) + "\n").encode())
"#;
    let mut scratch = run_scratch();
    let (file, pid_file) = (scratch.dir.join("grow.py"), scratch.dir.join("grow.pid"));
    std::fs::write(&file, script).unwrap();
    let total = 200_000; // 20 MB
    let toml = format!(
        "[process.grow]\ncmd = [\"python3\", \"{}\", \"{}\", \"{total}\"]\n",
        file.display(),
        pid_file.display()
    );
    let mut child = runner(&mut scratch, &toml)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    let mut stdout = child.stdout.take().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let pid = loop {
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never started"
        );
        std::thread::yield_now();
    };
    // Whether the writer is blocked on its pipe (or gone).
    let blocked_or_gone = || {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        match crate::support::state_of(pid.parse().unwrap()) {
            None | Some('Z') => true,
            Some(state) => state == 'S' && wchan.contains("pipe_write"),
        }
    };
    let mut out = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        while !blocked_or_gone() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never blocked"
            );
            std::thread::yield_now();
        }
        // 1.5 MiB: room for the relay's queue and one read of the pipe.
        let goal = out.len() + 3 * 512 * 1024;
        let mut eof = false;
        while out.len() < goal {
            let n = stdout.read(&mut buf).unwrap();
            if n == 0 {
                eof = true;
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        if eof {
            break;
        }
    }
    let code = crate::support::wait_with_timeout(&mut child, started);
    let stderr = err.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    let lines = text_lines(&out, "grow");
    assert_eq!(lines.len(), total, "lines lost or broken");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            *line == format!("{i:09} {}", "x".repeat(89)),
            "line {i} broken: {line:?}"
        );
    }
    let max_size: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let limit = max_size.min(256 << 10);
    let sizes: Vec<usize> = stderr
        .lines()
        .find_map(|l| l.strip_prefix("grow | sizes "))
        .unwrap_or_else(|| panic!("no sizes: {stderr}"))
        .split(' ')
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(sizes.last(), Some(&limit), "grown to the limit: {sizes:?}");
    assert!(
        sizes.windows(2).all(|w| w[1] == 2 * w[0] || w[1] == limit),
        "doubling: {sizes:?}"
    );
}

#[test]
fn chatty_children_interleave_whole_lines() {
    let toml = r#"
[process.one]
shell = "seq -f 'one-%g' 1 50000"
[process.two]
shell = "seq -f 'two-%g' 1 50000 >&2; seq -f 'two-%g' 1 50000"
[process.quiet]
shell = "sleep 0.2; echo still-here"
"#;
    let result = run(toml);
    let want = |name: &str| -> Vec<String> { (1..=50000).map(|i| format!("{name}-{i}")).collect() };
    assert_eq!(text_lines(&result.stdout, "one"), want("one"));
    assert_eq!(text_lines(&result.stdout, "two"), want("two"));
    assert_eq!(text_lines(&result.stdout, "quiet"), vec!["still-here"]);
    let err_lines: Vec<&str> = result
        .stderr
        .lines()
        .filter(|l| l.starts_with("two   | "))
        .collect();
    assert_eq!(err_lines.len(), 50000);
    assert_eq!(result.code, 0);
}

/// A process wired to ipc-run's stdout writes into the same pipe as the
/// relay: the relay's batches stay within `PIPE_BUF` there, so its records
/// and the process's own lines (one write each) both arrive whole.
#[test]
fn relayed_records_stay_whole_beside_a_process_on_own_stdout() {
    let toml = r#"
[process.wired]
shell = "i=0; while [ $i -lt 20000 ]; do echo wired-$i; i=$((i+1)); done"
[process.chat]
shell = "seq -f 'chat-%g' 1 100000"
[[edge]]
from = "wired"
to = "@stdout"
"#;
    let result = run(toml);
    let text = String::from_utf8(result.stdout).unwrap();
    let mut wired = 0;
    let mut chat = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("chat  | ") {
            chat.push(rest.to_owned());
        } else {
            assert_eq!(line, format!("wired-{wired}"), "a broken line");
            wired += 1;
        }
    }
    assert_eq!(wired, 20000);
    let want: Vec<String> = (1..=100000).map(|i| format!("chat-{i}")).collect();
    assert!(chat == want, "the relayed lines differ");
    assert_eq!(result.code, 0);
}

#[test]
fn log_sink_dev_full_does_not_kill() {
    let mut scratch = run_scratch();
    let child = runner(
        &mut scratch,
        r#"
[process.talker]
shell = "seq 1 1000; exit 0"
"#,
    )
    .stdout(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap(),
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut child = child;
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    eprintln!("{stderr}");
    assert_eq!(
        status.code(),
        Some(0),
        "not killed, status of the processes"
    );
    assert!(
        stderr.contains("1000 log record(s) could not be written"),
        "{stderr}"
    );
}

#[test]
fn orphaned_grandchild_is_reaped() {
    // The grandchild ends once its parent was reaped: orphaned first.
    let (_scratch, mut live) = start(&format!(
        r#"
[process.parent]
shell = "p=$$; ({}; exit 0) & echo spawned $!"
[process.keeper]
shell = "trap 'exit 0' TERM; echo keeping; while :; do sleep 0.05; done"
"#,
        wait_gone_sh("$p")
    ));
    live.wait_for_count("spawned", 1);
    live.wait_for_count("keeping", 1);
    let grandchild: i32 = live
        .stdout
        .iter()
        .find_map(|l| l.split("spawned ").nth(1))
        .and_then(|pid| pid.trim().parse().ok())
        .expect("the grandchild's pid");
    // The grandchild is orphaned at once, reparented to the supervisor
    // (subreaper), and exits once its parent is reaped: reaped in turn, it
    // leaves /proc (a zombie would stay). When the parent's process group
    // is killed as it exits, a command the grandchild was running (its
    // `seq`, a `sleep`) is orphaned to the supervisor too and may still be
    // unreaped when the grandchild has gone: every such zombie must go,
    // reaped as it comes.
    let proc_entry = PathBuf::from(format!("/proc/{grandchild}"));
    let supervisor = live.pid().as_raw();
    let reaped = || !proc_entry.exists() && zombie_children(supervisor).is_empty();
    if !wait_until(Duration::from_secs(20), reaped) {
        let (left, zombies) = (proc_entry.exists(), zombie_children(supervisor));
        live.kill();
        panic!("not reaped: grandchild {grandchild} (still there: {left}), zombies {zombies:?}");
    }
    // The keeper holds the supervisor up until here: a grandchild it did
    // not reap would still be its zombie above.
    live.signal(Signal::SIGTERM);
    let result = live.finish();
    assert_eq!(result.code, 143);
}

#[test]
fn idle_supervisor_uses_no_cpu() {
    let (_scratch, mut live) = start(
        r#"
[process.idle]
shell = "echo idle; sleep 3"
[process.idle2]
cmd = ["sleep", "3"]
ready = "notify"
"#,
    );
    live.wait_for_count("idle", 1);
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_ticks(live.pid().as_raw());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(live.pid().as_raw()) - before;
    // Clock ticks are 10 ms: a polling loop would show many.
    assert!(used <= 2, "supervisor used {used} ticks while idle");
    live.signal(Signal::SIGTERM);
    let _ = live.finish();
}

fn notify_script(dir: &Path) -> PathBuf {
    let file = dir.join("notify.py");
    std::fs::write(
        &file,
        r#"
import os, socket, sys, time
time.sleep(float(sys.argv[1]))
print("sending-ready", flush=True)
if sys.argv[2] == "yes":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"STATUS=warm\nREADY=1", os.environ["NOTIFY_SOCKET"])
time.sleep(float(sys.argv[3]))
"#,
    )
    .unwrap();
    file
}

#[test]
fn notify_readiness_orders_start() {
    let scratch = run_scratch();
    let script = notify_script(&scratch.dir);
    let result = run(&format!(
        r#"
[process.server]
cmd = ["python3", "{0}", "0.3", "yes", "0.5"]
ready = "notify"
[process.client]
cmd = ["echo", "client-started"]
after = ["server"]
"#,
        script.display()
    ));
    let out = result.stdout_text();
    let sent = out.find("sending-ready").expect(&out);
    let started = out.find("client-started").expect(&out);
    assert!(sent < started, "{out}");
    assert_eq!(result.code, 0);
}

#[test]
fn readiness_timeout_fails_the_run() {
    let scratch = run_scratch();
    let script = notify_script(&scratch.dir);
    let result = run(&format!(
        r#"
[process.server]
cmd = ["python3", "{0}", "0", "no", "30"]
ready = "notify"
ready_timeout = "500ms"
[process.client]
cmd = ["echo", "client-started"]
after = ["server"]
"#,
        script.display()
    ));
    assert_eq!(result.code, LAUNCH_FAILURE);
    assert!(!result.stdout_text().contains("client-started"));
    assert!(
        result
            .stderr
            .contains("server: not ready within 500ms (ready = notify)")
    );
    assert!(summary_line(&result.stderr, "client").contains("not started"));
}

#[test]
fn forwarded_signal_reaches_process() {
    let (_scratch, mut live) = start(
        r#"
[process.reloader]
shell = "trap 'echo reloaded' USR1; trap 'exit 0' TERM; echo reloader-up; while :; do sleep 0.05; done"
forward_signals = ["SIGUSR1"]
[process.bystander]
shell = "trap 'echo wrongly-got-usr1' USR1; trap 'exit 0' TERM; echo up-too; while :; do sleep 0.05; done"
"#,
    );
    live.wait_for_count("reloader-up", 1);
    live.wait_for_count("up-too", 1);
    live.signal(Signal::SIGUSR1);
    live.wait_for_count("reloaded", 1);
    live.signal(Signal::SIGTERM);
    let result = live.finish();
    assert!(!result.stdout_text().contains("wrongly"));
    assert_eq!(result.code, 143);
}

#[test]
fn inherited_sigchld_ignore_and_blocked_sigterm() {
    // Start the runner with SIGCHLD ignored and SIGTERM blocked: exit
    // statuses must still be seen, and SIGTERM must still stop the run.
    let mut scratch = Scratch::new("inherited-sigchld-ignore");
    // `waiter` is up once `code` was reaped: SIGTERM comes after its exit.
    let (code, waiter) = reaped_before(&scratch.dir.join("code.pid"));
    let file = scratch.topology(&format!(
        r#"
[process.code]
shell = "{code}; exit 7"
[process.waiter]
shell = "trap 'exit 0' TERM; {waiter}; echo up; while :; do sleep 0.05; done"
"#,
    ));
    let wrapper = "import os, signal, sys\n\
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n\
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])\n\
        os.execv(sys.argv[1], sys.argv[1:])\n";
    let mut python = Command::new("python3");
    python.arg("-c").arg(wrapper).arg(IPC_RUN);
    add_bare_run_args(&mut python, &file, &scratch.runtime())
        .env_remove("NO_COLOR")
        .env_remove("IPC_RUN_LOG");
    let mut live = Live::start(python);
    live.wait_for_count("| up", 1);
    live.signal(Signal::SIGTERM);
    let result = live.finish();
    assert_eq!(result.code, 7, "the exit of `code` was seen");
    assert!(summary_line(&result.stderr, "code").contains("exited 7"));
    assert!(summary_line(&result.stderr, "waiter").contains("(stopped)"));
}
