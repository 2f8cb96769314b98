//! Children are born in the run's cgroup (`clone3(CLONE_INTO_CGROUP)`), on
//! their first start and on every restart, and none writes `cgroup.procs`;
//! the fallback (`clone`, each child moving itself in, forced with
//! `IPC_RUN_SPAWN_CLONE3=0` in debug builds) puts them there too; a failing
//! exec still reports its step and errno. Where no cgroup can be made, or
//! `strace` cannot run, the cases say so and check what they can.

use crate::support::launch as launch_common;
use crate::support::{Scratch, run_captured, tool_works};

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use ipc_run::launch::prepare;
use ipc_run::sys::spawn::{ChildSpec, ChildStep, SpawnFailure, spawn};
use launch_common::{options, plan, read_all, root};
use nix::errno::Errno;
use nix::fcntl::OFlag;

/// A process that prints its cgroup v2 line and fails, restarted twice.
const RESTARTED: &str = r#"
[process.a]
cmd = ["sh", "-c", "grep '^0::' /proc/self/cgroup; exit 1"]
restart = "on-failure"
restart_limit = 2
restart_backoff = "0ms"
"#;

/// What a run of [`RESTARTED`] under `strace -f` showed.
struct Traced {
    /// The run's cgroup, relative to the v2 mount (`/ipc-run-ID`), if made.
    cgroup: Option<String>,
    /// The cgroup line of each life of `a`.
    lives: Vec<String>,
    /// The strace log, when strace could run.
    trace: Option<String>,
}

fn run_restarted(case: &str, clone3: bool) -> Traced {
    let mut scratch = Scratch::new(case);
    let file = scratch.topology(RESTARTED);
    let log = scratch.dir.join("strace.log");
    let strace = tool_works("strace", &["-f", "-o", "/dev/null", "true"]);
    let mut command = match &strace {
        Ok(()) => {
            let log = log.to_str().unwrap();
            let wrapper = [
                "strace",
                "-f",
                "-qq",
                "-e",
                "trace=openat,clone,clone3",
                "-o",
                log,
            ];
            scratch.wrapped_command(&[&wrapper[..], &["--"]].concat(), &file)
        }
        Err(why) => {
            eprintln!("\n*** NOTE {case}: strace is not usable ({why}) ***\n");
            scratch.run_command(&file)
        }
    };
    if !clone3 {
        command.env("IPC_RUN_SPAWN_CLONE3", "0");
    }
    let result = run_captured(&mut command);
    assert_eq!(result.code, 1, "{}", result.stderr);
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        result.stderr
    );
    let cgroup = output
        .lines()
        .find_map(|l| {
            l.split_once("run cgroup created cgroup=")
                .map(|(_, p)| p.trim())
        })
        .and_then(|path| Some(format!("/{}", path.rsplit('/').next()?)));
    let lives = output
        .lines()
        .filter_map(|l| l.strip_prefix("a | 0::"))
        .map(str::to_owned)
        .collect();
    let trace = strace
        .is_ok()
        .then(|| std::fs::read_to_string(&log).unwrap());
    Traced {
        cgroup,
        lives,
        trace,
    }
}

/// Checks the three lives ran in the run's cgroup; `None` (with a note)
/// where the run had no cgroup.
fn assert_lives_in_cgroup(case: &str, traced: &Traced) -> Option<()> {
    assert_eq!(traced.lives.len(), 3, "a first start and two restarts");
    let Some(cgroup) = &traced.cgroup else {
        eprintln!("\n*** NOTE {case}: no run cgroup here: only the spawns were checked ***\n");
        return None;
    };
    for life in &traced.lives {
        assert_eq!(life, cgroup, "a life of `a` outside the run's cgroup");
    }
    Some(())
}

/// The strace lines that open a `cgroup.procs` for writing.
fn procs_writes(trace: &str) -> usize {
    trace
        .lines()
        .filter(|l| {
            l.contains(" openat(") && l.contains("/cgroup.procs\"") && l.contains("O_WRONLY")
        })
        .count()
}

#[test]
fn children_are_born_in_the_runs_cgroup_on_start_and_restart() {
    let case = "cgroup-clone3";
    let traced = run_restarted(case, true);
    if assert_lives_in_cgroup(case, &traced).is_none() {
        return;
    }
    let Some(trace) = &traced.trace else { return };
    let into = |l: &&str| l.contains(" clone3(") && l.contains("CLONE_INTO_CGROUP");
    let refused = trace.lines().filter(into).any(|l| l.contains("= -1 E"));
    if refused {
        // An old kernel or seccomp: the fallback is checked instead.
        eprintln!("\n*** NOTE {case}: clone3(CLONE_INTO_CGROUP) is refused here ***\n");
        assert_eq!(procs_writes(trace), 3, "{trace}");
        return;
    }
    assert_eq!(trace.lines().filter(into).count(), 3, "{trace}");
    assert_eq!(procs_writes(trace), 0, "a child migrated itself:\n{trace}");
}

#[test]
fn with_the_fallback_each_child_moves_itself_into_the_cgroup() {
    let case = "cgroup-fallback";
    let traced = run_restarted(case, false);
    if assert_lives_in_cgroup(case, &traced).is_none() {
        return;
    }
    let Some(trace) = &traced.trace else { return };
    assert!(!trace.contains(" clone3("), "{trace}");
    assert_eq!(procs_writes(trace), 3, "{trace}");
}

/// The run's cgroup (journaled as `cgroup PATH`), if it has one.
fn journaled_cgroup(run_dir: &std::path::Path) -> Option<PathBuf> {
    let journal = std::fs::read_to_string(run_dir.join("journal")).unwrap();
    journal
        .lines()
        .find_map(|l| l.strip_prefix("cgroup "))
        .map(PathBuf::from)
}

fn spec(program: &str, dir: Option<Arc<OwnedFd>>, procs: Option<CString>) -> ChildSpec {
    ChildSpec {
        cgroup_dir: dir,
        cgroup_procs: procs,
        ..launch_common::bare_spec(program, &["/proc/self/cgroup"])
    }
}

/// Spawns `spec` with stdout on a pipe; its cgroup v2 line, once it exited.
fn cgroup_of_child(spec: &ChildSpec) -> Result<String, SpawnFailure> {
    let devnull = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let fds = [
        (devnull.as_fd(), 0),
        (out_w.as_fd(), 1),
        (devnull.as_fd(), 2),
    ];
    let pid = spawn(spec, &fds)?;
    drop(out_w);
    let out = read_all(Some(out_r));
    nix::sys::wait::waitpid(pid, None).unwrap();
    Ok(out
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("")
        .to_owned())
}

#[test]
fn each_spawn_path_puts_the_child_in_the_cgroup_and_reports_failures() {
    let root = root();
    let launched = prepare(&plan("[process.a]\ncmd = [\"true\"]\n"), &options(&root)).unwrap();
    let Some(path) = journaled_cgroup(&launched.run_dir) else {
        eprintln!("\n*** NOTE: no run cgroup here: spawn paths into it not tested ***\n");
        assert!(launched.cleanup().is_clean());
        return;
    };
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let dir = Arc::new(nix::fcntl::open(&path, flags, nix::sys::stat::Mode::empty()).unwrap());
    let procs = CString::new(path.join("cgroup.procs").to_str().unwrap()).unwrap();
    let expected = format!("/{}", path.file_name().unwrap().to_str().unwrap());
    // clone3 into the directory (or, where refused, the write as well).
    let born = spec("/bin/cat", Some(dir.clone()), Some(procs.clone()));
    assert_eq!(cgroup_of_child(&born).unwrap(), expected);
    // No directory: the child writes cgroup.procs itself.
    let moved = spec("/bin/cat", None, Some(procs.clone()));
    assert_eq!(cgroup_of_child(&moved).unwrap(), expected);
    // A failing exec after clone3 reports its step and errno.
    let missing = spec("/nonexistent/ipc-run-test-program", Some(dir), Some(procs));
    assert_eq!(
        cgroup_of_child(&missing).unwrap_err(),
        SpawnFailure::Child {
            step: ChildStep::Exec,
            errno: Errno::ENOENT
        }
    );
    assert!(launched.cleanup().is_clean());
}
