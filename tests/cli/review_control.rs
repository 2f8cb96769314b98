//! Findings of a review of the supervisor's control plane (the notify
//! socket, the control socket, reloads racing exits), each a case that
//! failed before its fix (`docs/supervision.md`, `docs/operate.md`). Each
//! waits on the run's state, not on time.

use std::path::Path;

use serde_json::Value;

use super::control::{Detached, ipc, wait_until};
use crate::support::Scratch;

/// Python that sends its first argument on `NOTIFY_SOCKET` with a pipe's
/// two ends attached (as `sd_pid_notify_with_fds` does for `FDSTORE=1`),
/// then its second, if any, with none.
const SEND_WITH_FDS: &str = r#"
import os, socket, sys
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(addr)
r, w = os.pipe()
socket.send_fds(s, [sys.argv[1].encode()], [r, w])
if len(sys.argv) > 2:
    s.send(sys.argv[2].encode())
"#;

/// A notify process that says `READY=1` with fds attached (`FDSTORE=1`):
/// it is ready, its fds are not kept. `waiter` bounds the wait.
const FDSTORE: &str = r#"
name = "review-fdstore"

[process.waiter]
shell = 'exec sleep 1000'
restart = "on-failure"
after = ["server"]

[process.server]
shell = 'python3 -c "$SENDER" "$(printf "READY=1\nFDSTORE=1")" && exec sleep 1000'
ready = "notify"
ready_timeout = "20s"
restart = "on-failure"

[process.server.env]
SENDER = '''PYCODE'''
"#;

#[test]
fn a_ready_datagram_carrying_fds_makes_its_sender_ready() {
    let mut scratch = Scratch::new("review-notify-fdstore");
    let toml = FDSTORE.replace("PYCODE", SEND_WITH_FDS);
    let mut run = Detached::start(&mut scratch, &toml);
    let server = run.process("server");
    assert_eq!(server["state"], "ready", "{server}");
    run.down();
    scratch.assert_left_nothing();
}

/// `victim` writes its pid and waits, never ready on its own; `spoofer`
/// sends `READY=1` and `MAINPID=` that pid with fds attached, then says
/// its own `READY=1`.
const SPOOF: &str = r#"
name = "review-spoof"

[process.victim]
shell = 'echo $$ > PIDFILE.tmp && mv PIDFILE.tmp PIDFILE && exec sleep 1000'
ready = "notify"
ready_timeout = "60s"
restart = "on-failure"

[process.spoofer]
shell = 'while [ ! -s PIDFILE ]; do sleep 0.01; done; python3 -c "$SENDER" "$(printf "READY=1\nMAINPID=%s" "$(cat PIDFILE)")" READY=1 && exec sleep 1000'
ready = "notify"
ready_timeout = "20s"
restart = "on-failure"

[process.spoofer.env]
SENDER = '''PYCODE'''
"#;

/// The datagram's fds once crowded out the credentials: the sender was
/// unknown, and `MAINPID=` of an unknown sender was taken at its word, so
/// one process could declare another ready.
#[test]
fn a_datagram_with_fds_cannot_speak_for_another_process() {
    let mut scratch = Scratch::new("review-notify-spoof");
    let pidfile = scratch.dir.join("victim.pid");
    let toml = SPOOF
        .replace("PIDFILE", pidfile.to_str().unwrap())
        .replace("PYCODE", SEND_WITH_FDS);
    let file = scratch.topology(&toml);
    let live = scratch.live(&file);
    let runtime = scratch.runtime();
    let state = |name: &str| -> Value {
        let out = ipc(&runtime, &["status", "review-spoof", "--format", "json"]);
        if !out.status.success() {
            return Value::Null;
        }
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        status["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map_or(Value::Null, |p| p["state"].clone())
    };
    // The spoofing datagram came first on the same socket: once the
    // spoofer is ready, it has been read.
    wait_until("the spoofer to be ready", || state("spoofer") == "ready");
    let victim = state("victim");
    live.signal(nix::sys::signal::Signal::SIGTERM);
    let finished = live.finish();
    assert_eq!(victim, "starting", "{}", finished.stderr);
    assert!(Path::new(&pidfile).exists());
    scratch.assert_left_nothing();
}
