//! A stand-in launcher for supervision tests: anonymous pipes on stdio
//! ports, relayed stdout/stderr, the notify socket. It implements the same
//! `Runtime` contract as the real launcher (held channel ends, released when
//! an instance is finished for good) and nothing more.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ipc_run::plan::{EndpointPlan, Mechanism, Plan};
use ipc_run::supervise::{Runtime, Spawned, StartError};
use nix::fcntl::OFlag;
use nix::unistd::Pid;

const RESET_AND_EXEC: &str = "import os, signal, sys\n\
signal.pthread_sigmask(signal.SIG_SETMASK, [])\n\
signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n\
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n\
try:\n    os.execvp(sys.argv[1], sys.argv[1:])\n\
except OSError as e:\n    sys.stderr.write(f'{sys.argv[1]}: {e.strerror}\\n')\n    os._exit(127)\n";

pub struct PipeRuntime {
    plan: Plan,
    run_dir: PathBuf,
    /// (instance, fd in the child) -> the held end.
    ends: HashMap<(String, i32), OwnedFd>,
    notify: Option<UnixDatagram>,
}

impl PipeRuntime {
    pub fn new(plan: &Plan, run_dir: PathBuf) -> Self {
        let mut ends = HashMap::new();
        for channel in &plan.channels {
            assert!(
                matches!(channel.mechanism, Mechanism::Pipe { .. }),
                "the test runtime only wires pipes"
            );
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
            let port = |e: &EndpointPlan| match e {
                EndpointPlan::Port { process, fd, .. } => (process.clone(), fd.unwrap()),
                other => panic!("unsupported endpoint {other:?}"),
            };
            let [from] = channel.from.as_slice() else {
                panic!("one writer")
            };
            let [to] = channel.to.as_slice() else {
                panic!("one reader")
            };
            ends.insert(port(from), write);
            ends.insert(port(to), read);
        }
        let notify = plan
            .processes
            .iter()
            .any(|p| p.ready == ipc_run::plan::Readiness::Notify)
            .then(|| UnixDatagram::bind(run_dir.join("notify.sock")).unwrap());
        PipeRuntime {
            plan: plan.clone(),
            run_dir,
            ends,
            notify,
        }
    }
}

impl Runtime for PipeRuntime {
    fn spawn(&mut self, instance: &str) -> Result<Spawned, StartError> {
        let process = self
            .plan
            .processes
            .iter()
            .find(|p| p.name == instance)
            .unwrap();
        // std's Command passes the supervisor's blocked signals on; the real
        // launcher clears the mask between fork and exec. Without `unsafe`
        // here, a tiny exec wrapper does it (and undoes Python's own SIG_IGN
        // of SIGPIPE and SIGXFSZ).
        let mut command = Command::new("python3");
        command
            .args(["-c", RESET_AND_EXEC])
            .args(&process.argv)
            .process_group(0)
            .env_clear();
        for name in &process.inherit_env {
            let name: &str = name;
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        for var in &process.env {
            let value = var
                .value
                .replace("{run_dir}", &self.run_dir.display().to_string())
                .replace("{run_id}", "0000000000000000");
            command.env(&*var.name, value);
        }
        let end = |fd: i32| {
            self.ends
                .get(&(instance.to_owned(), fd))
                .map(|end| Stdio::from(end.try_clone().unwrap()))
        };
        command.stdin(end(0).unwrap_or_else(Stdio::null));
        command.stdout(end(1).unwrap_or_else(Stdio::piped));
        command.stderr(end(2).unwrap_or_else(Stdio::piped));
        let program = process.argv[0].clone();
        if !executable_exists(&program) {
            let source = std::io::Error::from_raw_os_error(nix::libc::ENOENT);
            return Err(StartError::Program { program, source });
        }
        let mut child = command
            .spawn()
            .map_err(|source| StartError::Program { program, source })?;
        Ok(Spawned {
            pid: Pid::from_raw(child.id() as i32),
            stdout: child.stdout.take().map(OwnedFd::from),
            stderr: child.stderr.take().map(OwnedFd::from),
            ready_fd: None,
        })
    }

    fn release_ends_of(&mut self, instance: &str) {
        self.ends.retain(|(name, _), _| name != instance);
    }

    fn notify_socket(&self) -> Option<BorrowedFd<'_>> {
        self.notify.as_ref().map(|s| s.as_fd())
    }
}

/// Whether `program` names an existing file, directly or through PATH (the
/// wrapper would otherwise turn a missing program into exit 127).
fn executable_exists(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
