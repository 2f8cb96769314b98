//! The real launcher behind [`super::Runtime`]: prepare, supervise, clean up.
//!
//! [`run`] prepares every resource of the plan with [`crate::launch`], hands
//! the prepared run to [`super::supervise`], and removes every named object
//! and the run directory on every path out: success, failure, interrupt, or
//! a supervision set-up error.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::signal::SigmaskHow;

use super::{RunOptions, RunOutcome, Runtime, Spawned, StartError, SuperviseError};
use crate::launch::{self, LaunchOptions, Launched};
use crate::plan::Plan;

/// [`Launched`] as the supervisor sees it.
struct LaunchedRuntime {
    launched: Launched,
}

impl Runtime for LaunchedRuntime {
    fn spawn(&mut self, instance: &str) -> Result<Spawned, StartError> {
        let child = self.launched.spawn(instance)?;
        Ok(Spawned {
            pid: child.pid,
            stdout: child.stdout,
            stderr: child.stderr,
            ready_fd: child.ready_fd,
        })
    }

    fn release_ends_of(&mut self, instance: &str) {
        // The supervisor calls this once the instance is finished for good.
        self.launched.finished(instance);
    }

    fn reaped(&mut self, instance: &str) {
        self.launched.forget_pid(instance);
    }

    fn notify_socket(&self) -> Option<BorrowedFd<'_>> {
        self.launched.notify_socket()
    }

    fn connection_listener(&self, instance: &str) -> Option<BorrowedFd<'_>> {
        self.launched.connection_listener(instance)
    }

    fn spawn_connection(
        &mut self,
        instance: &str,
        connection: OwnedFd,
    ) -> Result<Spawned, StartError> {
        let child = self.launched.spawn_connection(instance, connection)?;
        Ok(Spawned {
            pid: child.pid,
            stdout: child.stdout,
            stderr: child.stderr,
            ready_fd: child.ready_fd,
        })
    }

    fn spawn_check(&self, instance: &str, argv: &[String]) -> Result<nix::unistd::Pid, String> {
        self.launched
            .spawn_check(instance, argv)
            .map_err(|e| e.to_string())
    }

    fn fill(&self, template: &str) -> Option<String> {
        self.launched.values().fill(template).ok()
    }

    fn control_socket(
        &mut self,
    ) -> Result<Option<(String, std::os::fd::OwnedFd)>, crate::launch::LaunchError> {
        match self
            .launched
            .bind_control_socket(crate::control::SOCKET_FILE)
        {
            Ok(socket) => Ok(Some((self.launched.run_id.clone(), socket))),
            // A --runtime-dir too deep for a socket address: the run goes
            // on, without the commands of docs/operate.md.
            Err(crate::launch::LaunchError::Resource {
                errno: nix::errno::Errno::ENAMETOOLONG,
                ..
            }) => {
                tracing::warn!(
                    "no control socket: {} is too long for a socket path",
                    self.launched.run_dir.display()
                );
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    fn can_respawn(&self, instance: &str) -> bool {
        self.launched.can_respawn(instance)
    }

    fn take_back_ends(&mut self, instance: &str, pid: nix::unistd::Pid) -> Result<(), String> {
        self.launched
            .take_back_ends(instance, pid)
            .map_err(|e| e.to_string())
    }

    fn check_reload(
        &mut self,
        plan: &Plan,
        slots: &crate::launch::reload::Slots,
    ) -> Result<(), String> {
        self.launched
            .check_reload(plan, slots)
            .map_err(|e| e.to_string())
    }

    fn reload(&mut self, plan: &Plan, slots: &crate::launch::reload::Slots) -> Result<(), String> {
        self.launched
            .reload(plan.clone(), slots)
            .map_err(|e| e.to_string())
    }

    fn relay_end(&self, channel: &str) -> Option<OwnedFd> {
        // An open file description of ipc-run's own, made non-blocking:
        // O_NONBLOCK on the held one would reach every process handed it.
        let fd = self.launched.held_write_end(channel)?;
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let flags = OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        nix::fcntl::open(path.as_str(), flags, nix::sys::stat::Mode::empty()).ok()
    }

    fn pipe_fill(&self, channel: &str) -> Option<(u64, u64)> {
        let fd = self.launched.held_read_end(channel)?;
        crate::sys::pipe::fill(fd).ok()
    }

    fn traffic(&self, channel: &str) -> Option<crate::launch::ChannelTraffic> {
        self.launched.traffic(channel)
    }
}

/// Prepares the plan's resources, supervises the run, and always cleans up.
///
/// The supervised signals are blocked from before the first object is
/// created until after the last one is removed: a SIGINT or SIGTERM that
/// arrives while the run is being prepared stays pending and stops the run
/// through the normal shutdown (with cleanup) once supervision reads it,
/// instead of killing ipc-run and leaving the run's objects behind.
pub fn run(plan: &Plan, options: &RunOptions) -> Result<RunOutcome, SuperviseError> {
    let mask = super::supervised_signals();
    let old_mask = mask
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .map_err(super::setup("blocking signals"))?;
    let result = run_blocked(plan, options);
    super::discard_pending(&mask);
    let _ = old_mask.thread_set_mask();
    result
}

fn run_blocked(plan: &Plan, options: &RunOptions) -> Result<RunOutcome, SuperviseError> {
    let launch_options = LaunchOptions {
        runtime_root: options.runtime_root.clone(),
        stdin_is_own: options.stdin_is_own,
        nofile: options.nofile,
        base_env: None,
        remote: options
            .remote_listeners
            .iter()
            .map(|(listener, address)| (listener.channel.to_string(), *address))
            .collect(),
        cross_listeners: options.cross_listeners.clone(),
    };
    let launched = launch::prepare(plan, &launch_options)?;
    tracing::debug!(run_id = %launched.run_id, run_dir = %launched.run_dir.display(), "prepared");
    let mut runtime = LaunchedRuntime { launched };
    let result = super::supervise(plan, options, &mut runtime);
    let report = runtime.launched.cleanup();
    for failure in &report.failed {
        tracing::warn!("cleanup: could not remove {failure}");
    }
    for leftover in &report.leftovers {
        tracing::warn!(
            "cleanup: left the run directory in place: it holds {leftover}, which ipc-run did not create"
        );
    }
    result
}
