//! Every mechanism carries data (or a signal) between two spawned probes.

use crate::support::launch as launch_common;

use ipc_run::launch::prepare;
use launch_common::{finish, options, plan, root};

/// Runs the topology: spawns every instance in start order, waits for all,
/// cleans up; returns each instance's stdout by name.
fn run(toml: &str) -> Vec<(String, String)> {
    let plan = plan(toml);
    let root = root();
    let mut launched = prepare(&plan, &options(&root)).expect("prepare");
    let mut children = Vec::new();
    for name in plan.start_order.clone() {
        children.push((name.to_string(), launched.spawn(&name).expect("spawn")));
    }
    let mut outputs = Vec::new();
    for (name, child) in children {
        let (code, out, err) = finish(child);
        assert_eq!(code, 0, "{name} failed: {err}\nstdout: {out}");
        outputs.push((name, out));
    }
    let report = launched.cleanup();
    assert!(report.is_clean(), "{report:?}");
    outputs
}

fn output_of<'a>(outputs: &'a [(String, String)], name: &str) -> &'a str {
    &outputs.iter().find(|(n, _)| n == name).unwrap().1
}

fn pair(mechanism: &str, extra: &str, a: &str, b: &str) -> String {
    format!(
        r#"
[process.a]
cmd = ["PROBE", {a}]
ports.out = {{}}
[process.b]
cmd = ["PROBE", {b}]
ports.inp = {{}}
[[edge]]
from = "a.out"
to = "b.inp"
mechanism = "{mechanism}"
{extra}
"#
    )
}

fn args(words: &str) -> String {
    words
        .split(' ')
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check(mechanism: &str, extra: &str, a: &str, b: &str, expected: &str) {
    let out = run(&pair(mechanism, extra, &args(a), &args(b)));
    let got = output_of(&out, "b");
    assert!(
        got.contains(expected),
        "{mechanism}: b printed {got:?}, all: {out:?}"
    );
}

#[test]
fn pipe() {
    check(
        "pipe",
        "",
        "write @out.fd hello",
        "read @inp.fd",
        "read: hello",
    );
}

#[test]
fn fifo_by_fd() {
    check(
        "fifo",
        "",
        "write @out.fd hello",
        "read @inp.fd",
        "read: hello",
    );
}

#[test]
fn fifo_by_path() {
    check(
        "fifo",
        "deliver = \"path\"",
        "write-path @out.path hello",
        "read-path @inp.path",
        "read: hello",
    );
}

#[test]
fn socketpair_stream() {
    check(
        "socketpair",
        "duplex = true",
        "send @out.fd hello",
        "recv @inp.fd",
        "recv: hello",
    );
}

#[test]
fn socketpair_seqpacket() {
    check(
        "socketpair",
        "duplex = true\nsocket = \"seqpacket\"\ntraffic = \"messages\"",
        "send @out.fd hello",
        "recv @inp.fd",
        "recv: hello",
    );
}

#[test]
fn unix_listener() {
    check(
        "unix-listener",
        "traffic = \"request\"",
        "connect @out.path hello",
        "accept @inp.fd",
        "accept: hello",
    );
}

#[test]
fn unix_listener_dgram() {
    check(
        "unix-listener",
        "traffic = \"messages\"\nsocket = \"dgram\"",
        "dgram @out.path hello",
        "recv @inp.fd",
        "recv: hello",
    );
}

#[test]
fn tcp() {
    check(
        "tcp",
        "traffic = \"request\"",
        "tcp @out.address hello",
        "accept @inp.fd",
        "accept: hello",
    );
}

#[test]
fn udp() {
    check(
        "udp",
        "traffic = \"messages\"",
        "udp @out.address hello",
        "recv @inp.fd",
        "recv: hello",
    );
}

#[test]
fn posix_shm_with_semaphores() {
    check(
        "posix-shm",
        "traffic = \"shared\"\nsize = \"4KiB\"",
        "shm-write @out.name hello -- sem-post @out.ready",
        "sem-wait @inp.ready -- shm-read @inp.name",
        "shm: hello",
    );
}

#[test]
fn sysv_shm_with_semaphore_set() {
    check(
        "sysv-shm",
        "traffic = \"shared\"\nsize = \"4KiB\"",
        "sysv-shm-write @out.id hello -- semop @out.sem_id 1 1",
        "semop @inp.sem_id 1 -1 -- sysv-shm-read @inp.id",
        "shm: hello",
    );
}

#[test]
fn posix_mq() {
    check(
        "posix-mq",
        "traffic = \"messages\"",
        "mq-send @out.name hello",
        "mq-recv @inp.name",
        "recv: hello",
    );
}

#[test]
fn sysv_mq() {
    check(
        "sysv-mq",
        "traffic = \"messages\"",
        "msg-send @out.id hello",
        "msg-recv @inp.id",
        "msg: hello",
    );
}

#[test]
fn posix_sem() {
    check(
        "posix-sem",
        "traffic = \"notify\"",
        "sem-post @out.name",
        "sem-wait @inp.name",
        "sem: acquired",
    );
}

#[test]
fn sysv_sem() {
    check(
        "sysv-sem",
        "traffic = \"notify\"",
        "semop @out.id 0 1",
        "semop @inp.id 0 -1",
        "semop: done",
    );
}

#[test]
fn signal() {
    check(
        "signal",
        "traffic = \"notify\"\nsignal = \"SIGUSR1\"",
        "sleep 300 -- kill @out.pid 10",
        "wait-signal 10",
        "signal: 10",
    );
}

#[test]
fn rpc_over_unix() {
    check(
        "rpc",
        "traffic = \"request\"\nprotocol = \"http\"",
        "connect @out.address hello",
        "accept @inp.fd",
        "accept: hello",
    );
}
