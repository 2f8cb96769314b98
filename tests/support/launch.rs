//! Helpers for the launcher tests: plans from TOML, a private runtime root,
//! and reading a probe's output.

use std::cell::RefCell;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use ipc_run::launch::{LaunchOptions, SpawnedChild};
use ipc_run::plan::Plan;
use ipc_run::sys::spawn::ChildSpec;
use nix::sys::wait::{WaitStatus, waitpid};

use super::Scratch;

/// The probe binary.
pub fn probe() -> &'static str {
    env!("CARGO_BIN_EXE_ipc-run-probe")
}

/// Plans a topology given as TOML; `PROBE` in it stands for the probe path.
pub fn plan(toml: &str) -> Plan {
    let source = toml.replace("PROBE", probe());
    let topology = ipc_run::topology::Topology::parse(Path::new("test.toml"), source)
        .unwrap_or_else(|e| panic!("topology: {e:?}"));
    match ipc_run::plan::plan(&topology, &ipc_run::plan::Limits::default()) {
        Ok(planned) => planned.plan,
        Err(e) => panic!(
            "plan: {:#?}",
            e.diagnostics.iter().map(|d| &d.message).collect::<Vec<_>>()
        ),
    }
}

/// Two probes joined both ways: `a` with its ports on the fixed fds 4 (`x`)
/// and 3 (`y`) and `a_keys` besides, `b` with its ports wherever they land.
pub fn two_probes(a_keys: &str) -> String {
    format!(
        r#"
[process.a]
cmd = ["PROBE", "report"]
ports.x = {{ fd = 4 }}
ports.y = {{ fd = 3 }}
{a_keys}
[process.b]
cmd = ["PROBE", "report"]
ports.x = {{}}
ports.y = {{}}
[[edge]]
from = "a.x"
to = "b.x"
[[edge]]
from = "b.y"
to = "a.y"
"#
    )
}

/// Cases of one process that create host-wide objects (/dev/shm, SysV)
/// take turns, so a case that compares listings of them sees only its own.
static HOST_OBJECTS: Mutex<()> = Mutex::new(());

thread_local! {
    /// This test thread's turn, held until the thread (the case) ends.
    static TURN: RefCell<Option<MutexGuard<'static, ()>>> = const { RefCell::new(None) };
}

/// Waits for this case's turn at creating host-wide objects; held until the
/// case ends (libtest runs each case on a thread of its own). Idempotent.
pub fn take_turn_with_host_objects() {
    TURN.with(|turn| {
        let mut turn = turn.borrow_mut();
        if turn.is_none() {
            *turn = Some(HOST_OBJECTS.lock().unwrap_or_else(|e| e.into_inner()));
        }
    });
}

/// A private root for run directories, inside a scratch directory that is
/// removed with it when the case passes (a run the case left behind goes
/// with it). Used as the root's path.
pub struct RunRoot {
    path: PathBuf,
    _scratch: Scratch,
}

impl std::ops::Deref for RunRoot {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for RunRoot {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// A fresh private root for run directories, not created yet (the launcher
/// creates it). The case takes its turn with host-wide objects.
pub fn root() -> RunRoot {
    take_turn_with_host_objects();
    static N: AtomicU32 = AtomicU32::new(0);
    let scratch = Scratch::new(&format!(
        "launch-root-{}",
        N.fetch_add(1, Ordering::Relaxed)
    ));
    RunRoot {
        path: scratch.runtime(),
        _scratch: scratch,
    }
}

/// Options with a private root.
pub fn options(root: &Path) -> LaunchOptions {
    LaunchOptions {
        runtime_root: Some(root.to_owned()),
        ..LaunchOptions::default()
    }
}

pub fn read_all(fd: Option<OwnedFd>) -> String {
    let mut s = String::new();
    if let Some(fd) = fd {
        std::fs::File::from(fd).read_to_string(&mut s).unwrap();
    }
    s
}

/// Waits for the child; returns (exit code, stdout, stderr).
pub fn finish(child: SpawnedChild) -> (i32, String, String) {
    let err_fd = child.stderr;
    let err = std::thread::spawn(move || read_all(err_fd));
    let out = read_all(child.stdout);
    let err = err.join().unwrap();
    let code = match waitpid(child.pid, None).unwrap() {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        other => panic!("unexpected {other:?}"),
    };
    (code, out, err)
}

/// Extracts `"key":VALUE` (a number, string or array) from a probe report.
pub fn field<'a>(report: &'a str, key: &str) -> &'a str {
    let start = report
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {report}"))
        + key.len()
        + 3;
    let rest = &report[start..];
    let end = if rest.starts_with('[') {
        rest.find(']').unwrap() + 1
    } else if let Some(stripped) = rest.strip_prefix('"') {
        stripped.find('"').unwrap() + 2
    } else {
        rest.find([',', '}']).unwrap()
    };
    &rest[..end]
}

/// Every object name of the plan, placeholders filled for this run.
pub fn posix_names(plan: &Plan, run_id: &str) -> Vec<String> {
    plan.channels
        .iter()
        .flat_map(|c| c.objects().iter())
        .filter(|o| o.name.starts_with('/'))
        .map(|o| o.name.replace("{run_id}", run_id))
        .collect()
}

/// A child spec that runs `program` with `args`: empty environment, no
/// identity, cgroup, rlimit or signal changes. Cases set what they test
/// with struct update syntax.
pub fn bare_spec(program: &str, args: &[&str]) -> ChildSpec {
    let program = std::ffi::CString::new(program).unwrap();
    let mut argv = vec![program.clone()];
    argv.extend(args.iter().map(|a| std::ffi::CString::new(*a).unwrap()));
    ChildSpec {
        program,
        argv,
        env: vec![],
        listen_pid: false,
        cwd: None,
        nofile: None,
        fd_limit: 1024,
        credentials: None,
        reset_signals: None,
        cgroup_dir: None,
        cgroup_procs: None,
    }
}
