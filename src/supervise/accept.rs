//! Per-connection servers: the server of an rpc edge with `endpoint =
//! "per-connection"` (inetd's `nowait`, systemd's `Accept=yes`).
//!
//! ipc-run keeps the listener, registered once in the supervisor's epoll
//! set ([`Token::Accept`]), accepts without blocking, and starts one
//! instance of the server per connection, with the connection on fds 0 and
//! 1 and its stderr relayed as usual. Instances are named `NAME@N` in
//! ipc-run's messages (N counts from 1), are reaped like any process and
//! are never restarted: a connection is not served twice. At most
//! `max_connections` run at once; at the cap the listener leaves the epoll
//! set, and further connections wait in its backlog (the kernel's queue,
//! which costs ipc-run nothing) until an instance ends.
//!
//! The server's own entry is ready as soon as it accepts (the listener was
//! bound before anything started), so `after` on it holds at once. Stopping
//! it stops accepting and sends each running instance the process's stop
//! signal; it is finished when its last instance has ended. An instance's
//! failure is reported but does not decide the run's exit status: one bad
//! connection is the client's business, as under inetd.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::socket::{SockFlag, accept4};
use nix::unistd::Pid;

use super::events::Token;
use super::timers::Deadline;
use super::{Ending, Runtime, State, Supervisor, set_nonblocking, signal_group};
use crate::plan::Mechanism;

/// One per-connection server.
#[derive(Debug)]
pub(super) struct Acceptor {
    /// ipc-run's copy of the listener (non-blocking); dropped once the
    /// server is being stopped.
    listener: Option<OwnedFd>,
    /// In the epoll set: not while at the cap.
    armed: bool,
    max: u32,
    active: u32,
    /// Instances started so far, the last one's number.
    started: u64,
}

/// The per-connection servers and their running instances.
#[derive(Debug, Default)]
pub(super) struct Connections {
    acceptors: HashMap<usize, Acceptor>,
    /// Each running instance: its server's process index and number.
    by_pid: HashMap<Pid, (usize, u64)>,
}

impl Connections {
    /// The running instances of per-connection server `i`.
    pub(super) fn pids_of(&self, i: usize) -> impl Iterator<Item = Pid> + '_ {
        self.by_pid
            .iter()
            .filter(move |(_, (server, _))| *server == i)
            .map(|(pid, _)| *pid)
    }

    /// Every running instance, for signals sent to all processes.
    pub(super) fn all_pids(&self) -> impl Iterator<Item = (usize, Pid)> + '_ {
        self.by_pid.iter().map(|(pid, (server, _))| (*server, *pid))
    }
}

/// The cap of process `i`'s per-connection edge, if it serves one.
fn max_connections(plan: &crate::plan::Plan, i: usize) -> Option<u32> {
    plan.processes[i].fds.iter().find_map(|slot| {
        let crate::plan::FdRole::Channel { channel, .. } = &slot.role else {
            return None;
        };
        let channel = plan.channels.iter().find(|c| c.id == *channel)?;
        match &channel.mechanism {
            Mechanism::Rpc(rpc) if channel.mechanism.per_connection() && slot.fd == 0 => Some(
                rpc.endpoint
                    .max_connections
                    .unwrap_or(crate::mechanism::rpc::MAX_CONNECTIONS),
            ),
            _ => None,
        }
    })
}

impl<R: Runtime> Supervisor<'_, R> {
    /// Starts accepting for `i` instead of spawning it, when it is a
    /// per-connection server; false otherwise.
    pub(super) fn start_accepting(&mut self, i: usize) -> bool {
        let Some(max) = max_connections(&self.plan, i) else {
            return false;
        };
        let name = self.plan.processes[i].name.clone();
        let listener = self
            .runtime
            .connection_listener(&name)
            .map(|fd| fd.try_clone_to_owned());
        let listener = match listener {
            Some(Ok(listener)) => listener,
            Some(Err(e)) => {
                let why = format!("could not take its listener: {e}");
                self.message(&format!("{name}: failed to start: {why}"));
                self.fail_launch(i, Ending::FailedToStart(why));
                return true;
            }
            None => {
                let why = "the launcher holds no listener for it".to_owned();
                self.message(&format!("{name}: failed to start: {why}"));
                self.fail_launch(i, Ending::FailedToStart(why));
                return true;
            }
        };
        // Only ipc-run accepts on it, so the shared O_NONBLOCK reaches no
        // one else.
        set_nonblocking(listener.as_fd());
        let armed = self.events.add(&listener, Token::Accept(i)).is_ok();
        self.connections.acceptors.insert(
            i,
            Acceptor {
                listener: Some(listener),
                armed,
                max: max.max(1),
                active: 0,
                started: 0,
            },
        );
        let inst = &mut self.instances[i];
        inst.state = State::Accepting {
            since: Instant::now(),
        };
        inst.generation += 1;
        inst.ready = true;
        inst.ready_now = true;
        self.start_queue.changed(&self.graph, i);
        true
    }

    /// The listener of `i` has connections: starts an instance for each,
    /// up to the cap.
    pub(super) fn accept_connections(&mut self, i: usize) {
        loop {
            let Some(acceptor) = self.connections.acceptors.get_mut(&i) else {
                return;
            };
            if acceptor.active >= acceptor.max {
                if acceptor.armed
                    && let Some(listener) = &acceptor.listener
                {
                    self.events.remove(listener);
                    acceptor.armed = false;
                }
                return;
            }
            let Some(listener) = &acceptor.listener else {
                return;
            };
            let connection = match accept4(listener.as_fd(), SockFlag::SOCK_CLOEXEC) {
                Ok(connection) => connection,
                Err(Errno::EINTR | Errno::ECONNABORTED | Errno::EPROTO) => continue,
                // Out of fds or memory: the listener, still readable, would
                // wake the loop at once again. While instances run it waits
                // out of the set for one of them to end (and free its fds);
                // otherwise it is tried again at the next wake-up.
                Err(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
                    if acceptor.active > 0 =>
                {
                    self.events.remove(listener);
                    acceptor.armed = false;
                    return;
                }
                // EAGAIN: none left.
                Err(_) => return,
            };
            acceptor.started += 1;
            let n = acceptor.started;
            self.spawn_connection(i, n, connection);
        }
    }

    /// Starts instance `n` of `i` for `connection`.
    fn spawn_connection(&mut self, i: usize, n: u64, connection: OwnedFd) {
        let name = self.plan.processes[i].name.clone();
        let spawned = match self.runtime.spawn_connection(&name, connection) {
            Ok(spawned) => spawned,
            Err(why) => {
                // The connection is closed: its client sees EOF.
                self.message(&format!("{name}@{n}: failed to start: {why}"));
                return;
            }
        };
        let pid = spawned.pid;
        if let Some(acceptor) = self.connections.acceptors.get_mut(&i) {
            acceptor.active += 1;
        }
        self.connections.by_pid.insert(pid, (i, n));
        if let Ok(pidfd) = crate::sys::pidfd::pidfd_open(pid)
            && self.events.add(&pidfd, Token::Exit(pid)).is_ok()
        {
            self.pidfds.insert(pid, pidfd);
        }
        self.relay_output(i, spawned.stdout, spawned.stderr);
    }

    /// A reaped pid that is no supervised instance: if it served a
    /// connection, counts it out and accepts again below the cap. Returns
    /// whether it was one.
    pub(super) fn connection_exited(&mut self, pid: Pid, ending: &Ending) -> bool {
        let Some((i, n)) = self.connections.by_pid.remove(&pid) else {
            return false;
        };
        if !ending.is_success() && self.shutdown.is_none() {
            let name = self.plan.processes[i].name.clone();
            self.message(&format!("{name}@{n}: {ending}"));
        }
        let Some(acceptor) = self.connections.acceptors.get_mut(&i) else {
            return true;
        };
        acceptor.active -= 1;
        match &acceptor.listener {
            Some(listener) if !acceptor.armed => {
                acceptor.armed = self.events.add(listener, Token::Accept(i)).is_ok();
            }
            Some(_) => {}
            None if acceptor.active == 0 => self.acceptor_done(i),
            None => {}
        }
        true
    }

    /// The turn of per-connection server `i` to stop: no more accepting;
    /// its instances get the stop signal (SIGKILL once escalated) and a
    /// grace; it is finished once none is left.
    pub(super) fn stop_accepting(&mut self, i: usize, escalated: bool) {
        let Some(acceptor) = self.connections.acceptors.get_mut(&i) else {
            return;
        };
        if let Some(listener) = acceptor.listener.take()
            && acceptor.armed
        {
            self.events.remove(&listener);
        }
        acceptor.armed = false;
        if acceptor.active == 0 {
            self.acceptor_done(i);
            return;
        }
        let process = &self.plan.processes[i];
        let signal = if escalated {
            Signal::SIGKILL
        } else {
            Signal::try_from(process.stop_signal.number).unwrap_or(Signal::SIGTERM)
        };
        for pid in self.connections.pids_of(i) {
            signal_group(pid, signal);
        }
        self.instances[i].stop_requested = true;
        self.timers.add(
            Instant::now() + Duration::from_millis(process.stop_timeout_ms),
            Deadline::StopGrace {
                instance: i,
                generation: self.instances[i].generation,
            },
        );
    }

    /// The stop grace of per-connection server `i` is over: SIGKILL to
    /// what is left of its instances.
    pub(super) fn connections_grace_over(&mut self, i: usize) {
        let pids: Vec<Pid> = self.connections.pids_of(i).collect();
        if pids.is_empty() {
            return;
        }
        let name = self.name(i).to_owned();
        let grace = self.plan.processes[i].stop_timeout_ms;
        self.message(&format!(
            "{name}: {} instance(s) still running {grace}ms after the stop signal: SIGKILL",
            pids.len()
        ));
        for pid in pids {
            signal_group(pid, Signal::SIGKILL);
        }
    }

    /// `i` stopped accepting and its last instance ended.
    fn acceptor_done(&mut self, i: usize) {
        self.connections.acceptors.remove(&i);
        if let State::Accepting { since } = self.instances[i].state {
            self.instances[i].runtime += since.elapsed();
        }
        // Stopped by a reload: removed, or started again with its new plan
        // (accepting again if it still serves per connection); a shutdown
        // meanwhile finishes it as any other.
        if let Some(intent) = self.instances[i].operator.take()
            && self.shutdown.is_none()
        {
            let name = self.name(i).to_owned();
            self.operator_exit(i, &name, Ending::Exited(0), intent);
            return;
        }
        self.finish(i, Ending::Exited(0), true);
    }
}
