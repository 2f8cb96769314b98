//! Spawning from a small fd table (`sys::fd_slots`): a child started while
//! ipc-run holds many fds gets exactly its own, stays ipc-run's child and
//! joins the run's cgroup; the reserved slots are back on `/dev/null` after
//! every spawn, failed or not; a child with more fds than slots takes the
//! old path with the same result.

use crate::support::launch as launch_common;

use std::fmt::Write as _;
use std::os::fd::{AsFd, OwnedFd};

use ipc_run::launch::prepare;
use ipc_run::sys::fd_slots;
use ipc_run::sys::spawn::{ChildStep, SpawnFailure, spawn};
use launch_common::{field, finish, options, plan, read_all, root, two_probes};
use nix::errno::Errno;
use nix::fcntl::OFlag;

/// Many fds in this process, half of them inheritable: none may reach a child.
fn clutter(pairs: usize) -> Vec<OwnedFd> {
    let mut fds = Vec::with_capacity(2 * pairs);
    for i in 0..pairs {
        let flags = if i % 2 == 0 {
            OFlag::O_CLOEXEC
        } else {
            OFlag::empty()
        };
        let (r, w) = nix::unistd::pipe2(flags).unwrap();
        fds.extend([r, w]);
    }
    fds
}

/// Checks, with the slots locked, that each placeholder is `/dev/null`.
fn assert_slots_restored() {
    let links = fd_slots::inspect(|numbers| {
        numbers
            .iter()
            .map(|n| std::fs::read_link(format!("/proc/self/fd/{n}")).unwrap())
            .collect::<Vec<_>>()
    })
    .expect("prepare reserves the slots");
    assert_eq!(links.len(), fd_slots::SLOT_COUNT);
    for link in links {
        assert_eq!(link, std::path::Path::new("/dev/null"));
    }
}

#[test]
fn a_child_beside_many_fds_sees_only_its_own_every_time_it_starts() {
    let plan = plan(&two_probes("restart = \"always\""));
    let root = root();
    let mut launched = prepare(&plan, &options(&root)).unwrap();
    let extra = clutter(500);
    // A first start and two restarts: the supervisor restarts through the
    // same `Launched::spawn`.
    for _ in 0..3 {
        let (code, out, err) = finish(launched.spawn("a").unwrap());
        assert_eq!(code, 0, "{err}");
        assert_eq!(field(&out, "fds"), "[0, 1, 2, 3, 4]", "{out}");
        assert_eq!(field(&out, "cloexec"), "[]", "{out}");
        assert_eq!(field(&out, "ppid"), std::process::id().to_string());
        assert_slots_restored();
    }
    drop(extra);
    assert!(launched.cleanup().is_clean());
}

#[test]
fn a_child_joins_the_runs_cgroup_where_there_is_one() {
    let plan = plan("[process.a]\ncmd = [\"cat\", \"/proc/self/cgroup\"]\n");
    let root = root();
    let mut launched = prepare(&plan, &options(&root)).unwrap();
    let journal = std::fs::read_to_string(launched.run_dir.join("journal")).unwrap();
    // A first start and two restarts (the supervisor's path).
    for _ in 0..3 {
        let (code, out, err) = finish(launched.spawn("a").unwrap());
        assert_eq!(code, 0, "{err}");
        let line = out.lines().find(|l| l.starts_with("0::")).unwrap_or("");
        if journal.lines().any(|l| l.starts_with("cgroup ")) {
            let run_cgroup = format!("/ipc-run-{}", launched.run_id);
            assert!(line.ends_with(&run_cgroup), "{line:?} not in {run_cgroup}");
        }
    }
    assert!(launched.cleanup().is_clean());
}

#[test]
fn a_child_with_more_fds_than_slots_gets_them_all() {
    let ports = fd_slots::SLOT_COUNT + 2;
    let mut toml = String::from("[process.a]\ncmd = [\"PROBE\", \"report\"]\n");
    for i in 0..ports {
        writeln!(toml, "ports.p{i} = {{}}").unwrap();
    }
    toml.push_str("[process.b]\ncmd = [\"PROBE\", \"report\"]\n");
    for i in 0..ports {
        writeln!(toml, "ports.p{i} = {{}}").unwrap();
    }
    for i in 0..ports {
        writeln!(toml, "[[edge]]\nfrom = \"a.p{i}\"\nto = \"b.p{i}\"").unwrap();
    }
    let plan = plan(&toml);
    let root = root();
    let mut launched = prepare(&plan, &options(&root)).unwrap();
    let extra = clutter(200);
    let (code, out, err) = finish(launched.spawn("a").unwrap());
    assert_eq!(code, 0, "{err}");
    let expected: Vec<String> = (0..3 + ports).map(|fd| fd.to_string()).collect();
    assert_eq!(
        field(&out, "fds"),
        format!("[{}]", expected.join(", ")),
        "{out}"
    );
    assert_slots_restored();
    drop(extra);
    assert!(launched.cleanup().is_clean());
}

#[test]
fn a_failed_spawn_reports_its_step_and_leaves_the_slots_restored() {
    // The slots exist once any run was prepared in this process.
    let root = root();
    let launched = prepare(&plan("[process.a]\ncmd = [\"true\"]\n"), &options(&root)).unwrap();
    let devnull = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let spec = launch_common::bare_spec("/nonexistent/ipc-run-test-program", &[]);
    let fds = [
        (devnull.as_fd(), 0),
        (out_w.as_fd(), 1),
        (devnull.as_fd(), 2),
    ];
    let failure = spawn(&spec, &fds).unwrap_err();
    assert_eq!(
        failure,
        SpawnFailure::Child {
            step: ChildStep::Exec,
            errno: Errno::ENOENT
        }
    );
    assert_slots_restored();
    // The slot that held the pipe's write end no longer does: EOF.
    drop(out_w);
    assert_eq!(read_all(Some(out_r)), "");
    assert!(launched.cleanup().is_clean());
}
