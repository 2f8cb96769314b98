//! Signal edges against pid reuse, through the real `ipc-run` binary: a
//! sender is restarted with the new pid when its receiver restarts, and a
//! receiver that ended stays a zombie (its pid reserved) while a sender that
//! knows its pid still runs.

use crate::support::{
    POKE_EDGE, SENDER_LEARNS_PID, TARGET_UNTIL_USR1, numbers_after, run_topology,
};

#[test]
fn a_sender_is_restarted_with_the_new_pid_of_its_restarted_receiver() {
    let (code, stdout, stderr) = run_topology(
        "follow",
        &format!(
            r#"
name = "follow"
exit_code_from = "sender"

[process.target]
restart = "on-failure"
restart_limit = 1
restart_backoff = "10ms"
ready = {{ fd = 5 }}
shell = '''
{TARGET_UNTIL_USR1}'''

[process.sender]
shell = '''
{SENDER_LEARNS_PID}
echo "sender knows $pid"
kill -USR1 "$pid"
trap 'exit 0' TERM
# The first sender is stopped long before this ends, when the target restarts.
sleep 3 & wait
'''

{POKE_EDGE}"#
        ),
    );
    let targets = numbers_after(&stdout, "target up ");
    let known = numbers_after(&stdout, "sender knows ");
    assert_eq!(
        targets.len(),
        2,
        "two target processes:\n{stdout}\n{stderr}"
    );
    assert_ne!(targets[0], targets[1]);
    assert_eq!(
        known, targets,
        "each sender knew the live target:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("restarting to learn the new pid"),
        "{stderr}"
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn an_ended_receiver_stays_a_zombie_while_a_sender_knows_its_pid() {
    let (code, stdout, stderr) = run_topology(
        "reserve",
        &format!(
            r#"
name = "reserve"

[process.target]
ready = {{ fd = 5 }}
shell = '''
echo >&5
exit 0
'''

[process.sender]
shell = '''
{SENDER_LEARNS_PID}
# Wait for the target to end; its pid must then be a zombie, not free.
for _ in $(seq 200); do
  state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' /proc/$pid/status 2>/dev/null)
  case "$state" in Z) echo "pid $pid reserved"; exit 0 ;; "") echo "pid $pid freed"; exit 1 ;; esac
  sleep 0.02
done
echo "target never ended"; exit 2
'''

{POKE_EDGE}"#
        ),
    );
    assert!(stdout.contains("reserved"), "{stdout}\n{stderr}");
    assert_eq!(code, 0, "{stdout}\n{stderr}");
}
