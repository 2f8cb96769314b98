//! Supervisor hardening, through the real `ipc-run` binary: each case is a
//! finding of the hardening review (issue 13) that failed before its fix.
//! Cases synchronise on what the processes print or leave behind, never on
//! sleeps; a `sleep` inside a topology only widens a window that the fix
//! must close whatever its length.

mod support;

use nix::sys::signal::Signal;
use support::{Scratch, summary_line};

fn numbers_after(text: &str, prefix: &str) -> Vec<i32> {
    text.lines()
        .filter_map(|line| line.split_once(prefix))
        .filter_map(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

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
trap 'echo "target $$ got USR1"; exit 3' USR1
echo "target up $$"
echo >&5
exec 5>&-
while :; do sleep 0.02; done
'''

[process.sender]
shell = '''
for kv in $IPC_PORT_POKE; do case "$kv" in pid=*) pid="${{kv#pid=}}" ;; esac; done
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

[[edge]]
name = "poke"
from = "sender.poke"
to = "target.poke"
traffic = "notify"
signal = "SIGUSR1"
"#,
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
    assert!(scratch.runtime_entries().is_empty());
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
    assert!(scratch.runtime_entries().is_empty());
}
