//! Supervisor hardening, through the real `ipc-run` binary: each case is a
//! finding of the hardening review (issue 13) that failed before its fix.
//! Cases synchronise on what the processes print or leave behind, never on
//! sleeps; a `sleep` inside a topology only widens a window that the fix
//! must close whatever its length.

use crate::support::{
    self, POKE_EDGE, SENDER_LEARNS_PID, Scratch, TARGET_UNTIL_USR1, chatty_yes, numbers_after,
    pid_in, summary_line,
};
use nix::sys::signal::Signal;

/// Item 16: a sender is (re)started only once its receiver is ready, on the
/// first start and on the restart that follows the receiver's restart. The
/// receiver installs its handler late (after a delay) and declares
/// readiness only then; a sender started earlier kills it with the signal.
#[test]
fn a_sender_waits_for_the_readiness_of_its_restarted_receiver() {
    let mut scratch = Scratch::new("ready-gate");
    let count = scratch.dir.join("sender-starts");
    let file = scratch.topology(&format!(
        r#"
name = "ready-gate"
exit_code_from = "sender"

[process.target]
restart = "on-failure"
restart_limit = 1
restart_backoff = "0ms"
ready = {{ fd = 5 }}
shell = '''
sleep 0.3
{TARGET_UNTIL_USR1}'''

[process.sender]
shell = '''
{SENDER_LEARNS_PID}
n=$(cat {count} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {count}
echo "sender knows $pid"
trap 'exit 0' TERM
kill -USR1 "$pid"
if [ $n = 1 ]; then
  # Stopped when the target restarts.
  while :; do sleep 0.02; done
fi
# The second target ends (restart limit reached) and stays a zombie while
# this sender knows its pid.
until [ "$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' /proc/$pid/status)" = Z ]; do sleep 0.01; done
'''
{POKE_EDGE}"#,
        count = count.display()
    ));
    let finished = scratch.run(&file);
    let (stdout, stderr) = (finished.stdout_text(), &finished.stderr);
    let targets = numbers_after(&stdout, "target up ");
    let trapped = stdout.lines().filter(|l| l.contains(" got USR1")).count();
    let known = numbers_after(&stdout, "sender knows ");
    assert_eq!(targets.len(), 2, "two targets:\n{stdout}\n{stderr}");
    assert_eq!(known, targets, "each sender knew the live, ready target");
    assert_eq!(
        trapped, 2,
        "each target trapped the signal:\n{stdout}\n{stderr}"
    );
    assert!(!stderr.contains("SIGUSR1"), "{stderr}");
    assert_eq!(finished.code, 0, "{stderr}");
    scratch.assert_left_nothing();
}

/// Item 5: SIGTERM while a process waits in its restart backoff: the run
/// was interrupted (143), the pending restart never happened (not counted),
/// and the process is reported as stopped, not as the failure that decides.
#[test]
fn sigterm_during_a_restart_backoff_exits_143_and_counts_no_restart() {
    let mut scratch = Scratch::new("backoff-term");
    let file = scratch.topology(
        r#"
name = "backoff-term"

[process.bad]
restart = "on-failure"
restart_backoff = "20s"
shell = 'echo "bad up"; exit 5'
"#,
    );
    let mut live = scratch.live(&file);
    live.wait_for_count("bad up", 1);
    live.wait_for_stderr("bad: exited 5; restarting in 20000ms");
    live.signal(Signal::SIGTERM);
    let finished = live.finish();
    assert_eq!(finished.code, 143, "{}", finished.stderr);
    let summary = summary_line(&finished.stderr, "bad");
    assert!(
        summary.starts_with("bad: exited 5 (stopped), restarts 0,"),
        "{summary}"
    );
    scratch.assert_left_nothing();
}

/// Item 6: the README's pipeline. `count` (the `exit_code_from` process)
/// ends once `sevens` closed its output, which `sevens` does while ending
/// on its own: it is reported as `exited 0`, never as stopped, every run.
#[test]
fn a_pipeline_stage_that_finishes_by_itself_is_reported_with_its_own_status() {
    let scratch = Scratch::new("pipeline-own-status");
    let file = std::path::Path::new(support::MANIFEST_DIR).join("topologies/pipeline.toml");
    for run in 0..20 {
        let finished = scratch.run(&file);
        assert_eq!(finished.code, 0, "run {run}: {}", finished.stderr);
        assert_eq!(finished.stdout_text().trim(), "40951");
        for name in ["numbers", "sevens", "count"] {
            let summary = summary_line(&finished.stderr, name);
            assert!(
                summary.starts_with(&format!("{name}: exited 0, ")),
                "run {run}: {summary}"
            );
        }
    }
    scratch.assert_left_nothing();
}

/// Waits (on /proc, bounded) until `pid` is in `state` (`Z`: a zombie,
/// `T`: stopped).
fn wait_for_state(pid: i32, state: char) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while support::state_of(pid) != Some(state) {
        assert!(
            std::time::Instant::now() < deadline,
            "{pid} never reached state {state}"
        );
        std::thread::yield_now();
    }
}

/// Whether every pid of `pids` is the data of an item of one of `owner`'s
/// epoll sets (`/proc/PID/fdinfo` lists them: `tfd: … data: <hex>`).
fn watches_exits_of(owner: i32, pids: &[i32]) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{owner}/fdinfo")) else {
        return false;
    };
    let mut data = Vec::new();
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines().filter(|l| l.starts_with("tfd:")) {
            if let Some((_, rest)) = line.split_once("data:")
                && let Some(word) = rest.split_whitespace().next()
                && let Ok(value) = i64::from_str_radix(word, 16)
            {
                data.push(value);
            }
        }
    }
    pids.iter().all(|&pid| data.contains(&i64::from(pid)))
}

/// Waits (on /proc, bounded) until `owner` watches the exits of `pids`.
fn wait_for_exit_watch(owner: i32, pids: &[i32]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !watches_exits_of(owner, pids) {
        assert!(
            std::time::Instant::now() < deadline,
            "{owner} never watched the exits of {pids:?}"
        );
        std::thread::yield_now();
    }
}

/// Item 6: exits reaped in one wake-up are handled in the order they
/// happened. ipc-run is held with SIGSTOP while `late` (spawned first)
/// exits 5 after `early` (spawned second) exited 7; the first failure in
/// time is `early`'s. Before the pidfd ordering: 5 on every run.
///
/// The guarantee is for processes ipc-run has finished starting: a pidfd
/// enters epoll's ready list when the process exits, or when it is
/// registered if the process had already exited by then. The case used to
/// send SIGSTOP as soon as `early` had written its pid, which could be
/// while ipc-run was still inside `early`'s spawn (journalling it, before
/// `pidfd_open`): `early` then exited before it was watched and its pidfd
/// was queued behind `late`'s at SIGCONT (`early` reported with a runtime
/// of 0.00s; 6 runs in 100 under a 2-core busy load). It now stops ipc-run
/// once both pids are in its epoll set (`/proc/PID/fdinfo`): 0 in 200.
#[test]
fn exits_reaped_together_are_handled_in_the_order_they_happened() {
    let mut scratch = Scratch::new("exit-order");
    let dir = scratch.dir.clone();
    let file = scratch.topology(&format!(
        r#"
name = "exit-order"

[process.late]
shell = '''
echo $$ > {dir}/late.pid.tmp && mv {dir}/late.pid.tmp {dir}/late.pid
until [ -e {dir}/early.pid ]; do sleep 0.01; done
read -r early < {dir}/early.pid
# Shell builtins only from here: no child of this process may exit (and
# wake its pidfd) while ipc-run is stopped.
while :; do
  read -r stat < /proc/$early/stat
  state=${{stat##*) }}
  case "$state" in Z*) break ;; esac
done
exit 5
'''

[process.early]
shell = '''
echo $$ > {dir}/early.pid.tmp && mv {dir}/early.pid.tmp {dir}/early.pid
until [ -e {dir}/go ]; do sleep 0.01; done
exit 7
'''
"#,
        dir = dir.display()
    ));
    let live = scratch.live(&file);
    let late = pid_in(&dir.join("late.pid"));
    let early = pid_in(&dir.join("early.pid"));
    // ipc-run orders the exits of the processes it has finished starting:
    // stop it only once both are in its epoll set of pidfds, not while it
    // is still inside `early`'s spawn.
    wait_for_exit_watch(live.pid().as_raw(), &[late, early]);
    live.signal(Signal::SIGSTOP);
    wait_for_state(live.pid().as_raw(), 'T');
    std::fs::write(dir.join("go"), "").unwrap();
    wait_for_state(early, 'Z');
    wait_for_state(late, 'Z');
    live.signal(Signal::SIGCONT);
    let finished = live.finish();
    assert_eq!(finished.code, 7, "{}", finished.stderr);
    scratch.assert_left_nothing();
}

const IDLE: &str = r#"
name = "idle"

[process.idle]
shell = 'echo "idle up"; trap "exit 0" TERM; while :; do sleep 0.02; done'
"#;

/// Sends signal number `signo` to `pid` (real-time ones included).
fn send(pid: nix::unistd::Pid, signo: i32) {
    // nix's `Signal` has no real-time signals: kill(1) takes any number.
    let rc = std::process::Command::new("kill")
        .arg(format!("-{signo}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(rc.success(), "kill -{signo} {pid}");
}

/// Item 4: signals that used to kill ipc-run on the spot (leaving the run
/// directory behind) either stop the run gracefully, with 128+n and full
/// cleanup, or are ignored.
#[test]
fn every_catchable_signal_stops_gracefully_or_is_ignored() {
    let stops = [
        ("SIGQUIT", libc::SIGQUIT),
        ("SIGABRT", libc::SIGABRT),
        ("SIGPWR", libc::SIGPWR),
        ("SIGXCPU", libc::SIGXCPU),
    ];
    let ignored = [
        ("SIGALRM", libc::SIGALRM),
        ("SIGXFSZ", libc::SIGXFSZ),
        ("SIGVTALRM", libc::SIGVTALRM),
        ("SIGPROF", libc::SIGPROF),
        ("SIGIO", libc::SIGIO),
        ("SIGSTKFLT", libc::SIGSTKFLT),
        ("SIGSYS", libc::SIGSYS),
        ("SIGTRAP", libc::SIGTRAP),
        ("SIGRTMIN", libc::SIGRTMIN()),
        ("SIGRTMIN+5", libc::SIGRTMIN() + 5),
        ("SIGRTMAX", libc::SIGRTMAX()),
    ];
    let mut scratch = Scratch::new("signals");
    let file = scratch.topology(IDLE);
    for (name, signo) in stops {
        let mut live = scratch.live(&file);
        live.wait_for_count("idle up", 1);
        send(live.pid(), signo);
        let finished = live.finish();
        assert_eq!(finished.code, 128 + signo, "{name}: {}", finished.stderr);
        assert!(
            finished.stderr.contains(&format!("{name}: stopping")),
            "{name}: {}",
            finished.stderr
        );
        assert_eq!(scratch.runtime_entries(), Vec::<String>::new(), "{name}");
    }
    for (name, signo) in ignored {
        let mut live = scratch.live(&file);
        live.wait_for_count("idle up", 1);
        send(live.pid(), signo);
        live.signal(Signal::SIGTERM);
        let finished = live.finish();
        assert_eq!(finished.code, 143, "{name}: {}", finished.stderr);
        assert_eq!(scratch.runtime_entries(), Vec::<String>::new(), "{name}");
    }
}

/// Newcomer item: `timeout ipc-run …` signals ipc-run and then its process
/// group (which `timeout` leads), so ipc-run gets the same SIGTERM twice. A
/// shell leading ipc-run's group does the same here, the second time once
/// ipc-run has read the first (`slow` runs its trap): not an escalation to
/// SIGKILL. The forwarded SIGUSR1 sent next shows the second was read.
#[test]
fn the_same_sigterm_from_the_group_leader_twice_does_not_escalate() {
    use std::os::unix::process::CommandExt;
    let mut scratch = Scratch::new("no-escalation");
    let dir = scratch.dir.clone();
    let file = scratch.topology(&format!(
        r#"
name = "no-escalation"

[process.witness]
forward_signals = ["SIGUSR1"]
shell = '''
trap 'touch {dir}/witness-got-usr1' USR1
trap 'exit 0' TERM
touch {dir}/witness-up
while :; do sleep 0.01; done
'''

# Waits for witness, so it is stopped first and witness runs until it ends.
[process.slow]
after = ["witness"]
shell = '''
trap 'touch {dir}/slow-got-term; until [ -e {dir}/release ]; do sleep 0.01; done; exit 0' TERM
touch {dir}/slow-up
while :; do sleep 0.01; done
'''
"#,
        dir = dir.display()
    ));
    let script = format!(
        r#"
trap 'true' TERM
"$0" --color never run {file} --runtime-dir {rt} 2>{dir}/stderr &
pid=$!
until [ -e {dir}/witness-up ] && [ -e {dir}/slow-up ]; do sleep 0.01; done
kill -TERM $pid
until [ -e {dir}/slow-got-term ]; do sleep 0.01; done
kill -TERM 0
kill -USR1 $pid
until [ -e {dir}/witness-got-usr1 ]; do sleep 0.01; done
touch {dir}/release
wait $pid
"#,
        file = file.display(),
        rt = scratch.runtime().display(),
        dir = dir.display(),
    );
    let mut leader = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(support::IPC_RUN)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let code = support::wait_with_timeout(&mut leader, std::time::Instant::now());
    let stderr = scratch.stderr_written();
    eprintln!("--- ipc-run stderr ---\n{stderr}---");
    assert!(!stderr.contains("again"), "{stderr}");
    let summary = summary_line(&stderr, "slow");
    assert!(summary.starts_with("slow: exited 0 (stopped)"), "{summary}");
    assert_eq!(code, 143, "{stderr}");
    scratch.assert_left_nothing();
}

/// Item 3 (and issue 14's non-blocking relay): a reader that stops reading
/// ipc-run's stdout does not stop ipc-run from handling signals. The
/// producer blocks on its own pipe (back-pressure, nothing lost), and
/// SIGTERM still stops the run and cleans up.
#[test]
fn a_stalled_stdout_reader_does_not_stop_sigterm_from_working() {
    use std::process::Stdio;
    let mut scratch = Scratch::new("stalled-stdout");
    let (file, pid_file) = chatty_yes(&mut scratch, "stalled-stdout");
    // stdout is a pipe nobody reads; it fills and stays full.
    let mut child = scratch.spawn_to_stderr_file(&file, Stdio::piped());
    let chatty = pid_in(&pid_file);
    // `yes` blocks writing once every buffer between it and the stalled
    // reader is full.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let wchan = std::fs::read_to_string(format!("/proc/{chatty}/wchan")).unwrap_or_default();
        let state = support::state_of(chatty);
        if wchan == "pipe_write" || (state == Some('S') && wchan.contains("pipe")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "yes never blocked: {wchan}"
        );
        std::thread::yield_now();
    }
    let code = support::sigterm_and_wait(&mut child);
    drop(child.stdout.take());
    let stderr = scratch.stderr_written();
    assert_eq!(code, 143, "{stderr}");
    assert!(scratch.runtime_entries().is_empty(), "{stderr}");
}

/// Newcomer item: a readiness timeout says what was awaited and what was
/// seen, once (not `not ready: not ready within …`).
#[test]
fn a_readiness_timeout_says_what_was_awaited_and_what_was_seen() {
    let mut scratch = Scratch::new("ready-why");
    let file = scratch.topology(
        r#"
name = "ready-why"

[process.quiet]
ready = "notify"
ready_timeout = "300ms"
shell = 'exec sleep 30'

[process.partial]
ready = { fd = 5 }
ready_timeout = "300ms"
shell = 'printf abc >&5; exec 5>&-; exec sleep 30'

[process.client]
after = ["quiet", "partial"]
cmd = ["true"]
"#,
    );
    let finished = scratch.run(&file);
    assert_eq!(finished.code, 3, "{}", finished.stderr);
    assert!(
        !finished.stderr.contains("not ready: not ready"),
        "{}",
        finished.stderr
    );
    let timed_out = |name: &str| {
        let summary = summary_line(&finished.stderr, name);
        summary.contains("not ready: ").then_some(summary)
    };
    let quiet = timed_out("quiet");
    let partial = timed_out("partial");
    assert!(quiet.is_some() || partial.is_some(), "{}", finished.stderr);
    if let Some(quiet) = quiet {
        assert!(
            quiet.contains("no READY=1 on $NOTIFY_SOCKET within 300ms")
                && quiet.contains("received nothing"),
            "{quiet}"
        );
    }
    if let Some(partial) = partial {
        assert!(
            partial.contains("no newline on fd 5 within 300ms")
                && partial.contains("3 bytes without a newline, then fd 5 was closed"),
            "{partial}"
        );
    }
}

/// Newcomer finding: exit status 1 is both "invalid topology" and "a
/// process exited 1". A run's summary now ends with the cause of its exit
/// status, and `--summary-format json` prints the summary as one JSON
/// object. Before: no such line, and no such option (exit 2, usage).
#[test]
fn the_summary_states_the_cause_of_the_exit_status() {
    let mut scratch = Scratch::new("exit-cause");
    let file = scratch.topology(
        r#"
name = "exit-cause"

[process.x]
shell = 'exit 1'
"#,
    );
    let finished = scratch.run(&file);
    assert_eq!(finished.code, 1, "{}", finished.stderr);
    assert_eq!(
        finished.stderr.lines().last(),
        Some("ipc-run: exit 1: process `x` exited 1 (first failure)"),
        "{}",
        finished.stderr
    );
    let mut command = scratch.run_command(&file);
    command.args(["--summary-format", "json"]);
    let finished = support::run_captured(&mut command);
    assert_eq!(finished.code, 1, "{}", finished.stderr);
    let last = finished.stderr.lines().last().unwrap_or_default();
    let summary: serde_json::Value = serde_json::from_str(last).expect(&finished.stderr);
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(
        summary["cause"],
        "exit 1: process `x` exited 1 (first failure)"
    );
    assert_eq!(summary["processes"][0]["name"], "x");
    assert_eq!(summary["processes"][0]["ending"], "exited");
    assert_eq!(summary["processes"][0]["code"], 1);
    assert!(!finished.stderr.contains("x: exited 1, restarts"));
    scratch.assert_left_nothing();
}

/// The edges of a data cycle: `b` writes to `c` (`bc`), `c` to `b` (`cb`).
const B_AND_C_WRITE_TO_EACH_OTHER: &str = r#"[[edge]]
name = "bc"
from = "b"
to = "c"

[[edge]]
name = "cb"
from = "c"
to = "b"
"#;

/// Item 15 (run time): two processes that each write to the other and
/// never read fill both pipes and block for good. ipc-run used to wait
/// silently; it now says once that the cycle is stuck, in the words of
/// W0301, and still stops on SIGTERM. One cycle is measured on the held
/// ends (`b` has a restart policy, so ipc-run keeps its channel ends), the
/// other through its reader's own end.
#[test]
fn a_data_cycle_that_deadlocks_at_run_time_is_reported() {
    let mut scratch = Scratch::new("stuck-cycle");
    let file = scratch.topology(&format!(
        r#"
name = "stuck-cycle"

[process.b]
shell = "yes b"
restart = "on-failure"

[process.c]
shell = "yes c"

{B_AND_C_WRITE_TO_EACH_OTHER}"#
    ));
    let mut live = scratch.live(&file);
    live.wait_for_stderr("ipc-run: deadlock: data cycle b -> c -> b over blocking channels");
    live.signal(Signal::SIGTERM);
    let finished = live.finish();
    assert_eq!(finished.code, 143, "{}", finished.stderr);
    let reports: Vec<&str> = finished
        .stderr
        .lines()
        .filter(|l| l.starts_with("ipc-run: deadlock:"))
        .collect();
    assert_eq!(reports.len(), 1, "reported once:\n{}", finished.stderr);
    assert!(reports[0].contains("the cycle buffers"), "{}", reports[0]);
    assert!(reports[0].contains("bc (pipe)"), "{}", reports[0]);
    assert!(reports[0].contains("cb (pipe)"), "{}", reports[0]);
    scratch.assert_left_nothing();
}

/// The same pair with a cycle that moves (each side reads what the other
/// writes) is never reported.
#[test]
fn a_data_cycle_that_flows_is_not_reported() {
    let mut scratch = Scratch::new("flowing-cycle");
    let file = scratch.topology(&format!(
        r#"
name = "flowing-cycle"
exit_code_from = "b"

[process.b]
shell = '''
echo go
n=0
while read line; do
  n=$((n + 1))
  [ $n -ge 3000 ] && exit 0
  echo "$line"
done
'''

[process.c]
shell = "cat"

{B_AND_C_WRITE_TO_EACH_OTHER}"#
    ));
    let finished = scratch.run(&file);
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert!(
        !finished.stderr.contains("deadlock:"),
        "{}",
        finished.stderr
    );
}

/// Newcomer item: a `shell` process whose script calls a program that is
/// not installed (here `socat`, hidden by an empty `PATH`) used to exit 127
/// while the service waited for it forever: the run hung until killed. It
/// is now a launch failure (exit 3) naming the program and its package.
#[test]
fn a_shell_process_calling_a_missing_program_fails_the_launch() {
    let mut scratch = Scratch::new("missing-helper");
    let file = scratch.topology(
        r#"
name = "missing-helper"
exit_code_from = "service"

[process.service]
cmd = ["sleep", "60"]

[process.client]
env = { PATH = "/nonexistent" }
shell = '''
for kv in $IPC_PORT_ASK; do case "$kv" in path=*) path="${kv#path=}" ;; esac; done
echo "question" | socat -t 5 - "UNIX-CONNECT:$path"
'''

[[edge]]
name = "ask"
from = "client.ask"
to = "service.ask"
traffic = "request"
"#,
    );
    let finished = scratch.run(&file);
    let stderr = &finished.stderr;
    assert_eq!(finished.code, 3, "{stderr}");
    assert!(
        summary_line(stderr, "client").contains(
            "failed to start: command not found: socat (exit status 127; usually in the Debian package `socat`)"
        ),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("ipc-run: exit 3: launch failure: process `client`")),
        "{stderr}"
    );
    scratch.assert_left_nothing();
}

/// Item 3, the socket case: ipc-run's stdout is a socket whose peer stops
/// reading. ipc-run used to write to it blocking and then serviced no
/// signal; it now sends with `MSG_DONTWAIT` (the socket's shared O_NONBLOCK
/// flag is left alone), the producer is held back on its own pipe, and
/// SIGTERM still stops the run and cleans up.
#[test]
fn a_stalled_socket_as_stdout_does_not_stop_sigterm_from_working() {
    use std::os::fd::OwnedFd;
    use std::process::Stdio;
    let mut scratch = Scratch::new("stalled-socket");
    let (file, pid_file) = chatty_yes(&mut scratch, "stalled-socket");
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    // The command, and with it our copy of `theirs`, is gone once spawned.
    let mut child = scratch.spawn_to_stderr_file(&file, Stdio::from(OwnedFd::from(theirs)));
    let chatty = pid_in(&pid_file);
    // `yes` never sleeps but on a full pipe: once it sleeps, every buffer
    // between it and the socket's silent peer is full.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{chatty}/comm")).unwrap_or_default();
        if comm.trim() == "yes" && support::state_of(chatty) == Some('S') {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "yes never blocked: {comm}"
        );
        std::thread::yield_now();
    }
    let code = support::sigterm_and_wait(&mut child);
    drop(ours);
    let stderr = scratch.stderr_written();
    assert_eq!(code, 143, "{stderr}");
    assert!(scratch.runtime_entries().is_empty(), "{stderr}");
}

/// Runs one `shell` process named `name` as a topology of its own, checks
/// the run exits `code` with `name` reported as `exited {code}` and leaves
/// nothing behind, and returns ipc-run's stderr.
fn run_one_shell(case: &str, name: &str, shell: &str, code: i32) -> String {
    let mut scratch = Scratch::new(case);
    let file = scratch.topology(&format!("[process.{name}]\nshell = {shell:?}\n"));
    let finished = scratch.run(&file);
    assert_eq!(finished.code, code, "{}", finished.stderr);
    assert!(
        summary_line(&finished.stderr, name).contains(&format!("exited {code}")),
        "{}",
        finished.stderr
    );
    scratch.assert_left_nothing();
    finished.stderr
}

/// A process that leaves a chatty descendant behind (`yes &`) keeps its
/// log pipe open and full after it exits: ipc-run drains what the pipe
/// holds at the drain deadline, closes it, and ends, instead of reading
/// for as long as the descendant writes.
#[test]
fn a_descendant_that_keeps_writing_does_not_keep_the_run_alive() {
    run_one_shell(
        "chatty-descendant",
        "parent",
        "yes descendant-line & exit 0",
        0,
    );
}

/// A script that exits 127 for reasons of its own (no `NAME: not found`
/// from its shell) is an ordinary exit, not a missing program.
#[test]
fn a_shell_exiting_127_by_itself_is_an_ordinary_exit() {
    let stderr = run_one_shell("exit-127", "script", "echo on purpose >&2; exit 127", 127);
    assert!(!stderr.contains("command not found"), "{stderr}");
}
