//! Spawn cost of ipc-run's child path vs std `Command`.
//!
//! `cargo run --release --example spawn_bench -- [N] [BLOAT_MIB]`
//!
//! Each sample is spawn + wait of `/bin/true`; prints the median per method:
//! - `std-posix-spawn`: `Command::new("/bin/true").status()` (posix_spawn);
//! - `std-pre-exec`: the same with an empty `pre_exec` hook (std then forks);
//! - `ipc-run`: `sys::spawn::spawn` with the work ipc-run does in the child
//!   (signal reset, setpgid, pdeathsig, fd shuffle of stdio, close_range).
//!
//! BLOAT_MIB touches that much memory in the parent first, since fork cost
//! grows with the parent's page tables.
#![allow(
    unsafe_code,
    reason = "an empty pre_exec hook, to measure std's fork path"
)]

use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use ipc_run::sys::spawn::{ChildSpec, spawn};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let bloat_mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let bloat: Vec<u8> = vec![1; bloat_mib << 20];
    // Touch every page so it is resident.
    let touched: usize = bloat.iter().step_by(4096).map(|b| *b as usize).sum();

    let devnull = std::fs::File::open("/dev/null").unwrap();
    let spec = ChildSpec {
        program: CString::new("/bin/true").unwrap(),
        argv: vec![CString::new("true").unwrap()],
        env: vec![CString::new("PATH=/usr/bin:/bin").unwrap()],
        listen_pid: false,
        cwd: None,
        nofile: None,
        fd_limit: 1024,
        credentials: None,
        reset_signals: None,
        cgroup_dir: None,
        cgroup_procs: None,
    };
    let fds = [
        (devnull.as_fd(), 0),
        (devnull.as_fd(), 1),
        (devnull.as_fd(), 2),
    ];

    let methods: [(&str, &dyn Fn()); 3] = [
        ("std-posix-spawn", &|| {
            Command::new("/bin/true").status().unwrap();
        }),
        ("std-pre-exec", &|| {
            let mut cmd = Command::new("/bin/true");
            // SAFETY: the hook does nothing; it only makes std fork.
            unsafe { cmd.pre_exec(|| Ok(())) };
            cmd.status().unwrap();
        }),
        ("ipc-run", &|| {
            let pid = spawn(&spec, &fds).unwrap();
            nix::sys::wait::waitpid(pid, None).unwrap();
        }),
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); methods.len()];
    // Interleave the methods so drift on a noisy machine hits all alike.
    for _ in 0..n {
        for (i, (_, run)) in methods.iter().enumerate() {
            let start = Instant::now();
            run();
            samples[i].push(start.elapsed());
        }
    }
    let medians: Vec<Duration> = samples.into_iter().map(median).collect();
    println!("parent bloat {bloat_mib} MiB (touched {touched} pages), n = {n}");
    for ((name, _), m) in methods.iter().zip(&medians) {
        println!(
            "{name:<16} median {:>8.1} us  ({:.2}x std-posix-spawn)",
            m.as_secs_f64() * 1e6,
            m.as_secs_f64() / medians[0].as_secs_f64()
        );
    }
}
