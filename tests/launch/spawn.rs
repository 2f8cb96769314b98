//! What a spawned child sees: fd table, signal state, process group,
//! environment; exec failures; readiness; SIGPIPE once ends are released.

use crate::support::launch as launch_common;

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::AsFd;

use ipc_run::launch::{LaunchError, LaunchOptions, prepare};
use launch_common::{field, finish, options, plan, root, two_probes};
use nix::errno::Errno;

fn one(cmd: &str, extra: &str) -> String {
    format!("[process.a]\ncmd = [\"PROBE\", {cmd}]\n{extra}\n")
}

#[test]
fn fd_table_is_exactly_stdio_plus_ports_and_state_is_clean() {
    // A stray inheritable fd in ipc-run must not reach the child (K1, F10).
    let stray = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    assert!(!ipc_run::sys::fd::is_cloexec(stray.as_fd()).unwrap());
    // A blocked signal in the spawning thread must not reach it either.
    let mut blocked = nix::sys::signal::SigSet::empty();
    blocked.add(nix::sys::signal::Signal::SIGUSR2);
    blocked.thread_block().unwrap();

    let plan = plan(&two_probes(""));
    let root = root();
    let mut launched = prepare(&plan, &options(&root)).unwrap();
    let a = launched.spawn("a").unwrap();
    let (code, out, err) = finish(a);
    blocked.thread_unblock().unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(field(&out, "fds"), "[0, 1, 2, 3, 4]", "{out}");
    assert_eq!(field(&out, "cloexec"), "[]", "{out}");
    // The probe's own mask; its dispositions are checked with grep below
    // (a Rust program ignores SIGPIPE before main).
    assert_eq!(field(&out, "sigblk"), "\"0000000000000000\"", "{out}");
    assert_eq!(field(&out, "pid"), field(&out, "pgid"), "own process group");
    assert_eq!(field(&out, "ppid"), std::process::id().to_string());
    drop(stray);
    assert!(launched.cleanup().is_clean());
}

#[test]
fn signal_mask_and_dispositions_are_reset() {
    // The test process (Rust) ignores SIGPIPE before main; block one more
    // signal in this thread.
    let mut blocked = nix::sys::signal::SigSet::empty();
    blocked.add(nix::sys::signal::Signal::SIGTERM);
    blocked.thread_block().unwrap();
    let plan = plan("[process.a]\ncmd = [\"grep\", \"^Sig\", \"/proc/self/status\"]\n");
    let root = root();
    let mut launched = prepare(&plan, &options(&root)).unwrap();
    let (code, out, err) = finish(launched.spawn("a").unwrap());
    blocked.thread_unblock().unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
    assert!(out.contains("SigIgn:\t0000000000000000"), "{out}");
    assert!(launched.cleanup().is_clean());
}

#[test]
fn environment_is_exactly_the_plan_and_pass_through() {
    let plan = plan(&one(
        "\"report\"",
        "env = { GREETING = \"hi {run_id}\" }\ninherit_env = [\"EXTRA\"]",
    ));
    let root = root();
    let base: Vec<(OsString, OsString)> = [
        ("PATH", "/usr/bin:/bin"),
        ("LC_TIME", "C"),
        ("EXTRA", "yes"),
        ("SECRET", "no"),
        ("LISTEN_FDS", "7"),
        ("LISTEN_PID", "1"),
        ("NOTIFY_SOCKET", "/run/x"),
    ]
    .iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    let mut launched = prepare(
        &plan,
        &LaunchOptions {
            base_env: Some(base),
            ..options(&root)
        },
    )
    .unwrap();
    let (code, out, err) = finish(launched.spawn("a").unwrap());
    assert_eq!(code, 0, "{err}");
    let env = &out[out.find("\"env\":").unwrap()..];
    for present in [
        "\"PATH\":\"/usr/bin:/bin\"",
        "\"LC_TIME\":\"C\"",
        "\"EXTRA\":\"yes\"",
        &format!("\"GREETING\":\"hi {}\"", launched.run_id),
        &format!("\"IPC_RUN_ID\":\"{}\"", launched.run_id),
    ] {
        assert!(env.contains(present), "{present} missing in {env}");
    }
    for absent in ["SECRET", "LISTEN_", "NOTIFY_SOCKET"] {
        assert!(!env.contains(absent), "{absent} leaked: {env}");
    }
    assert!(launched.cleanup().is_clean());
}

#[test]
fn socket_activation_variables_name_the_child() {
    let plan = plan(
        r#"
[process.server]
cmd = ["PROBE", "report"]
ports.api = {}
[process.client]
cmd = ["PROBE", "exit", "0"]
ports.api = {}
[[edge]]
from = "client.api"
to = "server.api"
mechanism = "unix-listener"
traffic = "request"
"#,
    );
    let root = root();
    let mut launched = prepare(&plan, &options(&root)).unwrap();
    let (code, out, err) = finish(launched.spawn("server").unwrap());
    assert_eq!(code, 0, "{err}");
    let pid = field(&out, "pid");
    assert!(out.contains(&format!("\"LISTEN_PID\":\"{pid}\"")), "{out}");
    assert!(out.contains("\"LISTEN_FDS\":\"1\""), "{out}");
    assert!(out.contains("\"LISTEN_FDNAMES\":\"api\""), "{out}");
    assert_eq!(field(&out, "fds"), "[0, 1, 2, 3]");
    assert!(launched.cleanup().is_clean());
}

fn spawn_error(program: &str) -> ipc_run::launch::SpawnError {
    let plan = plan(&format!("[process.a]\ncmd = [\"{program}\"]\n"));
    let root = root();
    let mut launched = prepare(&plan, &options(&root)).unwrap();
    let err = match launched.spawn("a") {
        Err(LaunchError::Spawn(e)) => e,
        other => panic!("expected a spawn error, got {other:?}"),
    };
    let report = launched.cleanup();
    assert!(report.is_clean(), "{report:?}");
    assert!(!root.read_dir().unwrap().any(|_| true), "run dir left");
    err
}

#[test]
fn exec_failures_are_reported_with_errno() {
    let dir = root();
    std::fs::create_dir_all(&dir).unwrap();
    let not_exec = dir.join("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    let garbage = dir.join("garbage");
    std::fs::write(&garbage, [0u8, 1, 2, 3, 0xff, 0xfe, 7, 7]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&not_exec, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).unwrap();

    let e = spawn_error("/nonexistent/program");
    assert_eq!(e.errno, Errno::ENOENT, "{e}");
    assert!(e.to_string().contains("/nonexistent/program"), "{e}");
    assert_eq!(spawn_error(not_exec.to_str().unwrap()).errno, Errno::EACCES);
    assert_eq!(spawn_error(garbage.to_str().unwrap()).errno, Errno::ENOEXEC);
    let e = spawn_error("no-such-program-anywhere");
    assert_eq!((e.errno, e.step), (Errno::ENOENT, None), "{e}");
}

#[test]
fn producer_into_head_dies_of_sigpipe() {
    let plan = plan(
        r#"
[process.yes]
cmd = ["yes"]
[process.head]
cmd = ["head", "-1"]
[[edge]]
from = "yes"
to = "head"
"#,
    );
    let root = root();
    let mut launched = prepare(&plan, &options(&root)).unwrap();
    let yes = launched.spawn("yes").unwrap();
    let head = launched.spawn("head").unwrap();
    let (code, out, _) = finish(head);
    assert_eq!((code, out.as_str()), (0, "y\n"));
    let (code, _, _) = finish(yes);
    assert_eq!(code, 128 + libc::SIGPIPE, "yes must die of SIGPIPE");
    assert!(launched.cleanup().is_clean());
}

#[test]
fn readiness_fd_and_notify_socket() {
    let plan = plan(
        r#"
[process.byfd]
cmd = ["PROBE", "write", "$IPC_RUN_READY_FD", "ready\n"]
ready = { fd = 7 }
[process.bynotify]
cmd = ["PROBE", "dgram", "$NOTIFY_SOCKET", "READY=1"]
ready = "notify"
"#,
    );
    let root = root();
    let mut launched = prepare(&plan, &options(&root)).unwrap();
    let mut child = launched.spawn("byfd").unwrap();
    let mut ready = String::new();
    std::fs::File::from(child.ready_fd.take().unwrap())
        .read_to_string(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n");
    assert_eq!(finish(child).0, 0);
    let (code, _, err) = finish(launched.spawn("bynotify").unwrap());
    assert_eq!(code, 0, "{err}");
    let mut buf = [0u8; 64];
    let n = nix::sys::socket::recv(
        std::os::fd::AsRawFd::as_raw_fd(&launched.notify_socket().unwrap()),
        &mut buf,
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    assert!(launched.cleanup().is_clean());
}
