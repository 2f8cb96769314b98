//! ipc-run's own `sd_notify` (`docs/supervision.md`, "ipc-run under a
//! service manager"): a socket the test binds stands for systemd, and reads
//! the raw datagrams.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

use nix::sys::signal::Signal;

use crate::support::{Live, RUN_TIMEOUT, Scratch, env_of, reports};

/// The manager's socket, bound by the test.
struct Manager {
    socket: UnixDatagram,
}

impl Manager {
    fn bind(path: &Path) -> Manager {
        let socket = UnixDatagram::bind(path).unwrap();
        socket.set_read_timeout(Some(RUN_TIMEOUT)).unwrap();
        Manager { socket }
    }

    /// The next datagram (the read times out after [`RUN_TIMEOUT`]).
    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("no sd_notify datagram from ipc-run");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// The next datagram that is not a watchdog ping.
    fn next_but_pings(&self) -> String {
        loop {
            let message = self.next();
            if message != "WATCHDOG=1" {
                return message;
            }
        }
    }
}

#[test]
fn the_manager_hears_ready_watchdog_and_stopping_and_children_hear_nothing() {
    let mut scratch = Scratch::new("sd-notify");
    let path = scratch.dir.join("manager.sock");
    let manager = Manager::bind(&path);
    let file = scratch.topology(
        r#"
[process.report]
cmd = ["PROBE", "report"]
inherit_env = ["WATCHDOG_USEC", "WATCHDOG_PID"]

[process.idle]
cmd = ["PROBE", "sleep", "60000"]
"#,
    );
    let mut command = scratch.run_command(&file);
    command
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID");
    let live = Live::start(command);
    assert_eq!(manager.next_but_pings(), "STATUS=starting 2 process(es)");
    assert_eq!(
        manager.next_but_pings(),
        "READY=1\nSTATUS=2 process(es) ready"
    );
    // Pings every half period while the run goes on.
    while manager.next() != "WATCHDOG=1" {}
    live.signal(Signal::SIGTERM);
    assert_eq!(manager.next_but_pings(), "STOPPING=1\nSTATUS=stopping");
    let finished = live.finish();
    assert_eq!(finished.code, 128 + 15, "{}", finished.stderr);
    let found = reports(&finished.stdout);
    for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        assert_eq!(
            env_of(&found["report"], name),
            None,
            "{name} reached a child"
        );
    }
    scratch.assert_left_nothing();
}

#[test]
fn no_ready_while_a_process_is_not_ready() {
    let mut scratch = Scratch::new("sd-notify-not-ready");
    let path = scratch.dir.join("manager.sock");
    let manager = Manager::bind(&path);
    // Never sends READY=1 on its own notify socket.
    let file = scratch.topology(
        r#"
[process.silent]
shell = "echo up; exec PROBE sleep 60000"
ready = "notify"
ready_timeout = "60s"
"#,
    );
    let mut command = scratch.run_command(&file);
    command
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "100000")
        .env("WATCHDOG_PID", std::process::id().to_string());
    let mut live = Live::start(command);
    assert_eq!(manager.next(), "STATUS=starting 1 process(es)");
    // Relayed after the pass that started it, which found it not ready.
    live.wait_for_count("up", 1);
    // WATCHDOG_PID names the test, not ipc-run: no pings; and no READY=1
    // while `silent` is not ready, up to the stop.
    live.signal(Signal::SIGTERM);
    assert_eq!(manager.next(), "STOPPING=1\nSTATUS=stopping");
    let finished = live.finish();
    assert_eq!(finished.code, 128 + 15, "{}", finished.stderr);
    scratch.assert_left_nothing();
}

#[test]
fn a_failure_is_told_as_status_before_stopping() {
    let mut scratch = Scratch::new("sd-notify-failure");
    let path = scratch.dir.join("manager.sock");
    let manager = Manager::bind(&path);
    let file = scratch.topology(
        r#"
[process.bad]
cmd = ["PROBE", "exit", "2"]
"#,
    );
    let mut command = scratch.run_command(&file);
    command.env("NOTIFY_SOCKET", &path);
    let finished = Live::start(command).finish();
    assert_eq!(finished.code, 2, "{}", finished.stderr);
    assert_eq!(manager.next(), "STATUS=starting 1 process(es)");
    // `ready = "started"`: ready once spawned, before its exit is seen.
    assert_eq!(manager.next(), "READY=1\nSTATUS=1 process(es) ready");
    assert_eq!(manager.next(), "STATUS=bad: exited 2");
    assert_eq!(manager.next(), "STOPPING=1\nSTATUS=stopping");
    scratch.assert_left_nothing();
}
