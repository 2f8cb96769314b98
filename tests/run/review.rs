//! Hostile input to ipc-run's own `sd_notify` (`docs/supervision.md`,
//! "ipc-run under a service manager"), a finding of a review: text from
//! the topology in a `STATUS=` line must not become an assignment of its
//! own. A socket the test binds stands for systemd.

use std::os::unix::net::UnixDatagram;

use crate::support::{RUN_TIMEOUT, Scratch, run_captured};

/// A program whose path holds newlines: its spawn error, which names it,
/// is the `STATUS=` of the failure. Were it sent as it is, the manager
/// would read `MAINPID=1` and `READY=1` from it.
#[test]
fn a_status_line_carries_no_assignment_of_its_own() {
    let mut scratch = Scratch::new("review-sd-notify-status");
    let path = scratch.dir.join("manager.sock");
    let manager = UnixDatagram::bind(&path).unwrap();
    manager.set_read_timeout(Some(RUN_TIMEOUT)).unwrap();
    let file = scratch.topology(
        r#"
[process.broken]
cmd = ["/nonexistent\nMAINPID=1\nREADY=1"]
"#,
    );
    let mut command = scratch.run_command(&file);
    command.env("NOTIFY_SOCKET", &path);
    let finished = run_captured(&mut command);
    assert_eq!(finished.code, 3, "{}", finished.stderr);
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    // The last message of a run is its STOPPING=1.
    while !messages
        .iter()
        .any(|m: &String| m.starts_with("STOPPING=1"))
    {
        let n = manager.recv(&mut buf).expect("a datagram from ipc-run");
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let failure = messages
        .iter()
        .find(|m| m.contains("broken: failed to start"))
        .unwrap_or_else(|| panic!("no status of the failure in {messages:?}"));
    assert!(
        failure.starts_with("STATUS=") && !failure.contains('\n'),
        "one STATUS= line: {failure:?}"
    );
    assert!(failure.contains("/nonexistent\\nMAINPID=1"), "{failure:?}");
    for message in &messages {
        for line in message.lines() {
            assert!(
                !line.starts_with("MAINPID=") && !(line == "READY=1"),
                "an assignment from the topology reached the manager: {message:?}"
            );
        }
    }
    scratch.assert_left_nothing();
}
