//! Supervision with real processes: pipelines, SIGPIPE, restarts without
//! data loss, shutdown order and escalation, exit status, log relay,
//! reaping, idle CPU, readiness.
//!
//! Signals are process-wide, so each case runs the supervisor in a process
//! of its own: this binary (harness = false) re-executes itself in "runner"
//! mode with a topology file, the way `ipc-run run FILE` runs one, and the
//! case drives and inspects that process from outside.

#[path = "supervise_support/runtime.rs"]
mod pipe_runtime;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipc_run::supervise::{ColorChoice, RunOptions};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const RUNNER_ENV: &str = "IPC_RUN_TEST_RUNNER_TOML";

fn main() {
    if let Some(path) = std::env::var_os(RUNNER_ENV) {
        std::process::exit(runner(Path::new(&path)));
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let cases: &[(&str, fn())] = &[
        ("pipeline_matches_the_shell", pipeline_matches_the_shell),
        (
            "producer_into_head_ends_promptly",
            producer_into_head_ends_promptly,
        ),
        (
            "restarted_consumer_loses_no_data",
            restarted_consumer_loses_no_data,
        ),
        (
            "sigterm_stops_in_reverse_start_order",
            sigterm_stops_in_reverse_start_order,
        ),
        ("grace_period_then_sigkill", grace_period_then_sigkill),
        ("second_sigint_escalates", second_sigint_escalates),
        ("exit_codes_are_passed_on", exit_codes_are_passed_on),
        (
            "death_by_signal_is_128_plus_n",
            death_by_signal_is_128_plus_n,
        ),
        ("exit_code_from_ends_the_run", exit_code_from_ends_the_run),
        (
            "spawn_failure_is_a_launch_failure",
            spawn_failure_is_a_launch_failure,
        ),
        ("restart_limit_marks_failed", restart_limit_marks_failed),
        ("log_relay_is_byte_exact", log_relay_is_byte_exact),
        (
            "chatty_children_interleave_whole_lines",
            chatty_children_interleave_whole_lines,
        ),
        (
            "log_sink_dev_full_does_not_kill",
            log_sink_dev_full_does_not_kill,
        ),
        (
            "orphaned_grandchild_is_reaped",
            orphaned_grandchild_is_reaped,
        ),
        ("idle_supervisor_uses_no_cpu", idle_supervisor_uses_no_cpu),
        (
            "notify_readiness_orders_start",
            notify_readiness_orders_start,
        ),
        (
            "readiness_timeout_fails_the_run",
            readiness_timeout_fails_the_run,
        ),
        (
            "forwarded_signal_reaches_process",
            forwarded_signal_reaches_process,
        ),
        (
            "inherited_sigchld_ignore_and_blocked_sigterm",
            inherited_sigchld_ignore_and_blocked_sigterm,
        ),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in cases {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        let result = std::panic::catch_unwind(case);
        let elapsed = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({elapsed:.2}s)");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED ({elapsed:.2}s)");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

/// Runner mode: plan the file and supervise it, like `ipc-run run FILE`.
fn runner(path: &Path) -> i32 {
    let source = std::fs::read_to_string(path).unwrap();
    let topology = ipc_run::topology::Topology::parse(path, source).unwrap();
    let planned = match ipc_run::plan::plan(&topology, &ipc_run::plan::Limits::default()) {
        Ok(planned) => planned,
        Err(err) => panic!("invalid test topology: {err:?}"),
    };
    let run_dir = path.parent().unwrap().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let mut runtime = pipe_runtime::PipeRuntime::new(&planned.plan, run_dir);
    let options = RunOptions {
        color: ColorChoice::Never,
        ..Default::default()
    };
    match ipc_run::supervise::supervise(&planned.plan, &options, &mut runtime) {
        Ok(outcome) => outcome.exit_code,
        Err(err) => {
            eprintln!("runner: {err}");
            ipc_run::supervise::LAUNCH_FAILURE
        }
    }
}

// ----- helpers -------------------------------------------------------------

fn scratch_dir() -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ipc-run-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn runner_command(toml: &str) -> Command {
    let dir = scratch_dir();
    let file = dir.join("topology.toml");
    std::fs::write(&file, toml).unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(RUNNER_ENV, &file).env_remove("NO_COLOR");
    command
}

struct Finished {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
    elapsed: Duration,
}

impl Finished {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs a topology to completion (with a safety timeout).
fn run(toml: &str) -> Finished {
    let started = Instant::now();
    let child = runner_command(toml)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child, started, Duration::from_secs(60))
}

fn finish(mut child: Child, started: Instant, timeout: Duration) -> Finished {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).unwrap();
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        stderr.read_to_end(&mut v).unwrap();
        String::from_utf8_lossy(&v).into_owned()
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            panic!("runner did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    eprintln!("--- runner stderr ---\n{stderr}---");
    Finished {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
        elapsed,
    }
}

/// A runner whose stdout is followed line by line while it runs.
struct Live {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    started: Instant,
}

impl Live {
    fn start(toml: &str) -> Live {
        let started = Instant::now();
        let mut child = runner_command(toml)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Live {
            child,
            lines,
            seen: Vec::new(),
            started,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits until a line containing `text` was printed.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.seen.iter().any(|l| l.contains(text)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("never saw {text:?}; saw {:?}", self.seen),
            }
        }
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    fn finish(mut self) -> Finished {
        let mut stderr = self.child.stderr.take().unwrap();
        let err = std::thread::spawn(move || {
            let mut v = Vec::new();
            stderr.read_to_end(&mut v).unwrap();
            String::from_utf8_lossy(&v).into_owned()
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "runner did not finish");
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = self.started.elapsed();
        let mut seen = self.seen;
        seen.extend(self.lines.iter());
        let stderr = err.join().unwrap();
        eprintln!("--- runner stderr ---\n{stderr}---");
        let mut stdout = seen.join("\n").into_bytes();
        stdout.push(b'\n');
        Finished {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
            elapsed,
        }
    }
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

fn summary_line<'a>(stderr: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}: ");
    stderr
        .lines()
        .rfind(|l| l.starts_with(&prefix) && l.contains(", restarts "))
        .unwrap_or_else(|| panic!("no summary line for {name} in:\n{stderr}"))
}

// ----- cases ---------------------------------------------------------------

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

fn producer_into_head_ends_promptly() {
    let topology = r#"
pipeline = ["yes", "take"]
[process.yes]
cmd = ["yes"]
[process.take]
cmd = ["head", "-1"]
"#;
    let result = run(topology);
    assert_eq!(text_lines(&result.stdout, "take"), vec!["y"]);
    assert!(
        result.elapsed < Duration::from_secs(10),
        "{:?}",
        result.elapsed
    );
    assert!(summary_line(&result.stderr, "yes").contains("killed by SIGPIPE"));
    assert_eq!(
        result.code,
        128 + 13,
        "the producer's death by SIGPIPE is a failure"
    );
    // Following the consumer: its exit ends the run and decides the status.
    let result = run(&format!("exit_code_from = \"take\"\n{topology}"));
    assert_eq!(result.code, 0);
    assert!(
        result.elapsed < Duration::from_secs(10),
        "{:?}",
        result.elapsed
    );
}

fn restarted_consumer_loses_no_data() {
    // The consumer takes 10 lines per life (the shell's `read` takes one
    // byte at a time from a pipe, so it never reads ahead) and fails; the
    // pipe, held by the supervisor, keeps the rest for the next life.
    let result = run(r#"
pipeline = ["gen", "take"]
[process.gen]
cmd = ["seq", "1", "100"]
[process.take]
shell = 'i=0; while [ $i -lt 10 ] && IFS= read -r line; do echo "$line"; i=$((i+1)); done; [ $i -lt 10 ] && exit 0; exit 1'
restart = "on-failure"
restart_limit = 20
restart_backoff = "1ms"
"#);
    let expected: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
    assert_eq!(text_lines(&result.stdout, "take"), expected);
    assert!(summary_line(&result.stderr, "take").contains("exited 0, restarts 10"));
    assert_eq!(result.code, 0);
}

const TRAPPING: &str = r#"trap 'echo stopping-$IPC_RUN_PROCESS; exit 0' TERM INT; echo up-$IPC_RUN_PROCESS; while :; do sleep 0.05; done"#;

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
    let mut live = Live::start(&toml);
    for name in ["a", "b", "c"] {
        live.wait_for(&format!("up-{name}"));
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

fn grace_period_then_sigkill() {
    let mut live = Live::start(
        r#"
[process.stubborn]
shell = "trap '' TERM; echo stubborn-up; while :; do sleep 0.05; done"
stop_timeout = "400ms"
[process.polite]
shell = "trap 'exit 0' TERM; echo polite-up; while :; do sleep 0.05; done"
"#,
    );
    live.wait_for("stubborn-up");
    live.wait_for("polite-up");
    let sent = Instant::now();
    live.signal(Signal::SIGINT);
    let result = live.finish();
    let took = sent.elapsed();
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(summary_line(&result.stderr, "stubborn").contains("killed by SIGKILL (stopped)"));
    assert!(result.stderr.contains("SIGKILL"));
    assert_eq!(result.code, 130);
}

fn second_sigint_escalates() {
    let mut live = Live::start(
        r#"
[process.stubborn]
shell = "trap '' TERM INT; echo up; while :; do sleep 0.05; done"
stop_timeout = "60s"
"#,
    );
    live.wait_for("up");
    live.signal(Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    let second = Instant::now();
    live.signal(Signal::SIGINT);
    let result = live.finish();
    assert!(second.elapsed() < Duration::from_secs(10));
    assert!(summary_line(&result.stderr, "stubborn").contains("killed by SIGKILL"));
    assert!(result.stderr.contains("again: killing every process"));
    assert_eq!(result.code, 130);
}

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
    // The first failure in time decides.
    let result = run(r#"
[process.early]
shell = "exit 5"
[process.late]
shell = "sleep 0.5; exit 6"
"#);
    assert_eq!(result.code, 5);
}

fn death_by_signal_is_128_plus_n() {
    let result = run(r#"
[process.victim]
shell = "kill -USR2 $$"
"#);
    assert_eq!(result.code, 128 + 12);
    assert!(summary_line(&result.stderr, "victim").contains("killed by SIGUSR2"));
}

fn exit_code_from_ends_the_run() {
    let result = run(r#"
exit_code_from = "main"
[process.main]
shell = "sleep 0.2; exit 4"
[process.server]
cmd = ["sleep", "60"]
[process.failing]
shell = "exit 9"
"#);
    assert_eq!(result.code, 4);
    assert!(result.elapsed < Duration::from_secs(20));
    assert!(summary_line(&result.stderr, "server").contains("killed by SIGTERM (stopped)"));
}

fn spawn_failure_is_a_launch_failure() {
    let result = run(r#"
[process.missing]
cmd = ["/nonexistent/program"]
[process.other]
cmd = ["sleep", "60"]
"#);
    assert_eq!(result.code, ipc_run::supervise::LAUNCH_FAILURE);
    let line = summary_line(&result.stderr, "missing");
    assert!(
        line.contains("failed to start: /nonexistent/program: No such file"),
        "{line}"
    );
    assert!(result.elapsed < Duration::from_secs(20));
}

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
    let dir = scratch_dir();
    let file = dir.join("relay.py");
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

fn log_sink_dev_full_does_not_kill() {
    let started = Instant::now();
    let child = runner_command(
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
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Zombie children of `pid`.
fn zombies_of(pid: Pid) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let fields: Vec<&str> = after.split(' ').collect();
        if fields[0] == "Z" && fields[1] == pid.as_raw().to_string() {
            found.push(child);
        }
    }
    found
}

fn orphaned_grandchild_is_reaped() {
    let mut live = Live::start(
        r#"
[process.parent]
shell = "(sleep 0.3; exit 0) & echo spawned"
[process.keeper]
shell = "echo keeping; sleep 2"
"#,
    );
    live.wait_for("spawned");
    live.wait_for("keeping");
    // The grandchild is orphaned at once, reparented to the supervisor
    // (subreaper), and exits after 0.3 s.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(zombies_of(live.pid()), Vec::<i32>::new());
    let result = live.finish();
    assert_eq!(result.code, 0);
}

fn cpu_ticks(pid: Pid) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // utime and stime are fields 14 and 15 (1-based); `after` starts at 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn idle_supervisor_uses_no_cpu() {
    let mut live = Live::start(
        r#"
[process.idle]
shell = "echo idle; sleep 3"
[process.idle2]
cmd = ["sleep", "3"]
ready = "notify"
"#,
    );
    live.wait_for("idle");
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_ticks(live.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(live.pid()) - before;
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

fn notify_readiness_orders_start() {
    let script = notify_script(&scratch_dir());
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

fn readiness_timeout_fails_the_run() {
    let script = notify_script(&scratch_dir());
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
    assert_eq!(result.code, ipc_run::supervise::LAUNCH_FAILURE);
    assert!(!result.stdout_text().contains("client-started"));
    assert!(
        result
            .stderr
            .contains("server: not ready within 500ms (ready = notify)")
    );
    assert!(summary_line(&result.stderr, "client").contains("not started"));
    assert!(result.elapsed < Duration::from_secs(20));
}

fn forwarded_signal_reaches_process() {
    let mut live = Live::start(
        r#"
[process.reloader]
shell = "trap 'echo reloaded' USR1; trap 'exit 0' TERM; echo reloader-up; while :; do sleep 0.05; done"
forward_signals = ["SIGUSR1"]
[process.bystander]
shell = "trap 'echo wrongly-got-usr1' USR1; trap 'exit 0' TERM; echo up-too; while :; do sleep 0.05; done"
"#,
    );
    live.wait_for("reloader-up");
    live.wait_for("up-too");
    live.signal(Signal::SIGUSR1);
    live.wait_for("reloaded");
    live.signal(Signal::SIGTERM);
    let result = live.finish();
    assert!(!result.stdout_text().contains("wrongly"));
    assert_eq!(result.code, 143);
}

fn inherited_sigchld_ignore_and_blocked_sigterm() {
    // Start the runner with SIGCHLD ignored and SIGTERM blocked: exit
    // statuses must still be seen, and SIGTERM must still stop the run.
    let dir = scratch_dir();
    let file = dir.join("topology.toml");
    std::fs::write(
        &file,
        r#"
[process.code]
shell = "exit 7"
[process.waiter]
shell = "trap 'exit 0' TERM; sleep 0.5; echo up; while :; do sleep 0.05; done"
"#,
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let wrapper = "import os, signal, sys\n\
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n\
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])\n\
        os.execv(sys.argv[1], sys.argv[1:])\n";
    let started = Instant::now();
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(wrapper)
        .arg(&exe)
        .env(RUNNER_ENV, &file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("up"), "{line}");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    child.stdout = Some(reader.into_inner());
    let result = finish(child, started, Duration::from_secs(30));
    assert_eq!(result.code, 7, "the exit of `code` was seen");
    assert!(summary_line(&result.stderr, "code").contains("exited 7"));
    assert!(summary_line(&result.stderr, "waiter").contains("(stopped)"));
}
