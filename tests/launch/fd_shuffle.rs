//! The fd shuffle of the child path: swaps, collisions and self-maps. The
//! only test in its binary, because it places fds at fixed numbers.

use crate::support::launch as launch_common;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use ipc_run::sys::spawn::spawn;
use nix::fcntl::OFlag;
use nix::sys::wait::{WaitStatus, waitpid};

/// Moves `fd` to exactly `number` (CLOEXEC), as ipc-run's own fds are.
fn at(fd: OwnedFd, number: i32) -> OwnedFd {
    let moved = ipc_run::sys::fd::dup_cloexec_at_least(fd.as_fd(), number).unwrap();
    assert_eq!(moved.as_raw_fd(), number, "fd {number} is taken");
    moved
}

#[test]
fn swaps_collisions_and_self_maps() {
    // Four pipes whose write ends sit at 60..=63; the child gets:
    //   60 -> 61 and 61 -> 60 (a swap), 62 -> 62 (a self-map, CLOEXEC
    //   set), 63 -> 3 (a plain move), 3's old content irrelevant.
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    for n in 60..64 {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        reads.push(r);
        writes.push(at(w, n));
    }
    let moves: Vec<(BorrowedFd<'_>, i32)> = vec![
        (writes[0].as_fd(), 61),
        (writes[1].as_fd(), 60),
        (writes[2].as_fd(), 62),
        (writes[3].as_fd(), 3),
    ];
    let devnull = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let mut all = moves.clone();
    all.push((devnull.as_fd(), 0));
    all.push((out_w.as_fd(), 1));
    all.push((devnull.as_fd(), 2));
    let probe = env!("CARGO_BIN_EXE_ipc-run-probe");
    // Each port writes its own number; the report lists the fd table.
    let script =
        "report -- write 60 sixty -- write 61 sixty-one -- write 62 sixty-two -- write 3 three";
    let args: Vec<&str> = script.split(' ').collect();
    let spec = launch_common::bare_spec(probe, &args);
    let pid = spawn(&spec, &all).unwrap();
    drop(writes);
    drop(out_w);
    let mut report = String::new();
    std::fs::File::from(out_r)
        .read_to_string(&mut report)
        .unwrap();
    assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 0));
    assert!(
        report.contains("\"fds\":[0, 1, 2, 3, 60, 61, 62]"),
        "{report}"
    );
    assert!(report.contains("\"cloexec\":[]"), "{report}");
    let got: Vec<String> = reads
        .into_iter()
        .map(|r| {
            let mut s = String::new();
            std::fs::File::from(r).read_to_string(&mut s).unwrap();
            s
        })
        .collect();
    // Pipe 0's write end went to 61, pipe 1's to 60, pipe 2's stayed at 62,
    // pipe 3's went to 3.
    assert_eq!(got, ["sixty-one", "sixty", "sixty-two", "three"]);
}
