//! The supervisor's answers on the control socket ([`crate::control`]):
//! reads of its state (`info`, `status`) and the actions it takes on
//! request (`start`, `stop`, `restart`, `signal`, `down`). Everything runs
//! on the event loop's thread, between events, like any other wake-up;
//! the socket's fds are one inner epoll set, [`Token::Control`].
//!
//! A requested stop keeps the instance's channels: it waits, stopped,
//! until `start` (or the run's end), as an instance between automatic
//! restarts does. A requested restart goes through the start queue, so an
//! instance starts again only once what it waits for (`after`) is ready;
//! restarting with dependents makes them wait for the restarted one.
//!
//! [`Token::Control`]: super::events::Token::Control

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use nix::sys::signal::Signal;

use super::{Ending, Runtime, State, Supervisor, signal_group};
use crate::control::protocol::{
    ChannelStatus, Command, ErrorBody, ErrorCode, ProcessStatus, Request, Response, RunInfo,
};
use crate::control::server::Server;
use crate::plan::EndpointPlan;

/// What an operator asked of an instance, carried out when it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Intent {
    /// Keep it stopped (its channels kept).
    Stop,
    /// Start it again.
    Restart,
}

/// The control socket's state in the supervisor.
#[derive(Debug, Default)]
pub(super) struct Control {
    /// The socket's server; `None` in runs without a run directory (the
    /// supervisor's own tests) or when the socket could not be made.
    pub server: Option<Server>,
    /// The run id.
    pub run_id: String,
    /// When supervision began.
    pub started: Option<Instant>,
    /// Where `ready RUN_ID` is written once every process is ready
    /// (`run --detach`); dropped once written.
    pub announce: Option<Arc<OwnedFd>>,
}

fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::error(code, message)
}

fn fail(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, message)
}

/// Why a per-connection server is not stopped or restarted on request:
/// ipc-run runs one instance per connection, under pids of their own.
const PER_CONNECTION: &str = "a per-connection server: ipc-run accepts for it and runs one instance per connection; stop the run (`ipc-run down`) to stop it";

impl<R: Runtime> Supervisor<'_, R> {
    /// The control socket's inner set is readable: serves its clients.
    pub(super) fn serve_control(&mut self) {
        let Some(mut server) = self.control.server.take() else {
            return;
        };
        server.serve(&mut |request| self.answer(request));
        self.control.server = Some(server);
    }

    /// Writes `ready RUN_ID` for `run --detach` once every instance is
    /// ready or has finished without failing.
    pub(super) fn announce_if_ready(&mut self) {
        if self.control.announce.is_none() || !self.all_ready() {
            return;
        }
        if let Some(fd) = self.control.announce.take() {
            let line = format!("ready {}\n", self.control.run_id);
            let _ = nix::unistd::write(fd.as_fd(), line.as_bytes());
        }
    }

    fn all_ready(&self) -> bool {
        self.shutdown.is_none()
            && self.instances.iter().all(|inst| match inst.state {
                State::Running { .. } => inst.ready_now,
                // A per-connection server is ready once it accepts.
                State::Accepting { .. } => true,
                State::Finished => !inst.failed,
                // Stopped on request: as it was asked to be.
                State::Backoff => inst.held,
                State::Pending => false,
            })
    }

    fn answer(&mut self, request: Request) -> Response {
        match request.cmd {
            Command::Info => Response {
                run: Some(self.run_info()),
                ..Response::ok()
            },
            Command::Status => self.status(&request.procs),
            Command::Down => self.down(),
            Command::Start | Command::Stop | Command::Restart | Command::Signal => {
                if self.shutdown.is_some() {
                    return error(ErrorCode::Refused, "the run is stopping");
                }
                // An empty list means every process to `status` only.
                if request.procs.is_empty() {
                    return error(ErrorCode::BadRequest, "name at least one process");
                }
                let targets = match self.targets(&request.procs) {
                    Ok(targets) => targets,
                    Err(error) => return error.into(),
                };
                let done = match request.cmd {
                    Command::Start => self.start_requested(&targets),
                    Command::Stop => self.stop_requested(&targets),
                    Command::Restart => self.restart_requested(&targets, request.with_dependents),
                    _ => self.signal_requested(&targets, request.signal.as_deref()),
                };
                match done {
                    Ok(done) => Response {
                        done: Some(done.into_iter().map(|i| self.name(i).to_owned()).collect()),
                        ..Response::ok()
                    },
                    Err(error) => error.into(),
                }
            }
        }
    }

    fn run_info(&self) -> RunInfo {
        let state = if self.shutdown.is_some() {
            "stopping"
        } else if self.all_ready() {
            "running"
        } else {
            "starting"
        };
        RunInfo {
            name: self.plan.name.clone(),
            run_id: self.control.run_id.clone(),
            pid: std::process::id(),
            uptime_ms: self.control.started.map_or(0, |at| millis(at.elapsed())),
            state: state.to_owned(),
            processes: self.instances.len(),
        }
    }

    /// The instances `names` name (instance or process names), in plan
    /// order; every instance when `names` is empty.
    fn targets(&self, names: &[String]) -> Result<Vec<usize>, ErrorBody> {
        if names.is_empty() {
            return Ok((0..self.instances.len()).collect());
        }
        let mut chosen = vec![false; self.instances.len()];
        for name in names {
            let mut found = false;
            for (i, process) in self.plan.processes.iter().enumerate() {
                if *process.name == **name || *process.process == **name {
                    chosen[i] = true;
                    found = true;
                }
            }
            if !found {
                return Err(fail(
                    ErrorCode::UnknownProcess,
                    format!("no process `{name}` in this run"),
                ));
            }
        }
        Ok((0..chosen.len()).filter(|&i| chosen[i]).collect())
    }

    fn status(&self, names: &[String]) -> Response {
        let targets = match self.targets(names) {
            Ok(targets) => targets,
            Err(error) => return error.into(),
        };
        let now = Instant::now();
        let processes = targets
            .iter()
            .map(|&i| self.process_status(i, now))
            .collect();
        let named: Option<Vec<&str>> =
            (!names.is_empty()).then(|| targets.iter().map(|&i| self.name(i)).collect());
        let channels = self
            .plan
            .channels
            .iter()
            .filter(|channel| {
                named.as_ref().is_none_or(|named| {
                    channel.from.iter().chain(&channel.to).any(|end| {
                        matches!(end, EndpointPlan::Port { process, .. } if named.contains(&&**process))
                    })
                })
            })
            .map(|channel| {
                let fill = self.runtime.pipe_fill(&channel.id);
                ChannelStatus {
                    name: channel.id.to_string(),
                    mechanism: channel.mechanism.name().to_string(),
                    from: channel.from.iter().map(endpoint_label).collect(),
                    to: channel.to.iter().map(endpoint_label).collect(),
                    buffered: fill.map(|(bytes, _)| bytes),
                    capacity: fill.map(|(_, capacity)| capacity),
                }
            })
            .collect();
        Response {
            run: Some(self.run_info()),
            processes: Some(processes),
            channels: Some(channels),
            ..Response::ok()
        }
    }

    fn process_status(&self, i: usize, now: Instant) -> ProcessStatus {
        let inst = &self.instances[i];
        let (state, pid, uptime) = match inst.state {
            State::Pending => ("pending", None, None),
            State::Running { pid, since } => {
                let state = if inst.stop_requested {
                    "stopping"
                } else if inst.ready_now {
                    "ready"
                } else {
                    "starting"
                };
                (state, Some(pid.as_raw()), Some(millis(now - since)))
            }
            State::Accepting { since } => ("accepting", None, Some(millis(now - since))),
            State::Backoff if inst.held => ("stopped", None, None),
            State::Backoff => ("backoff", None, None),
            State::Finished if inst.failed => ("failed", None, None),
            State::Finished => ("exited", None, None),
        };
        let restart_in = match inst.state {
            State::Backoff if !inst.held => inst
                .backoff_until
                .map(|at| millis(at.saturating_duration_since(now))),
            _ => None,
        };
        let process = &self.plan.processes[i];
        let checked = process.health.is_some() || process.watchdog_ms.is_some();
        let health = self.health_of(i);
        ProcessStatus {
            name: self.name(i).to_owned(),
            state: state.to_owned(),
            pid,
            restarts: inst.restarts,
            uptime_ms: uptime,
            restart_in_ms: restart_in,
            last_exit: inst.ending.as_ref().map(Ending::to_string),
            exit_code: match inst.ending {
                Some(Ending::Exited(code)) => Some(code),
                _ => None,
            },
            health: checked.then(|| health.state.as_str().to_owned()),
            health_failure: health.last_failure.clone(),
            status_text: health.status_text.clone(),
        }
    }

    fn down(&mut self) -> Response {
        if self.shutdown.is_none() {
            self.interrupted_by = Some(Signal::SIGTERM as i32);
            self.message("stop requested (ipc-run down): stopping");
            self.begin_shutdown();
        }
        Response {
            done: Some(Vec::new()),
            ..Response::ok()
        }
    }

    /// A refusal naming instance `i` and its state.
    fn refuse(&self, i: usize, why: &str) -> ErrorBody {
        fail(ErrorCode::Refused, format!("{}: {why}", self.name(i)))
    }

    fn start_requested(&mut self, targets: &[usize]) -> Result<Vec<usize>, ErrorBody> {
        if let Some(&i) = targets
            .iter()
            .find(|&&i| self.instances[i].state == State::Finished)
        {
            return Err(self.refuse(
                i,
                "finished for good, its channels closed; it cannot be started in this run",
            ));
        }
        // Running, waiting to start or to be restarted: nothing to do.
        let held: Vec<usize> = targets
            .iter()
            .copied()
            .filter(|&i| self.instances[i].held)
            .collect();
        for &i in &held {
            let inst = &mut self.instances[i];
            inst.held = false;
            inst.state = State::Pending;
            self.start_queue.push(i);
        }
        Ok(targets.to_vec())
    }

    /// Refuses when `i` could not be started again with its channels.
    fn check_respawn(&self, i: usize) -> Result<(), ErrorBody> {
        if self.runtime.can_respawn(self.name(i)) {
            return Ok(());
        }
        Err(self.refuse(
            i,
            "ipc-run does not hold its channel ends (restart = \"never\" gives them up at start, so its peers see EOF when it ends); give it restart = \"on-failure\" or \"always\" to stop or restart it",
        ))
    }

    fn stop_requested(&mut self, targets: &[usize]) -> Result<Vec<usize>, ErrorBody> {
        for &i in targets {
            match self.instances[i].state {
                State::Pending => return Err(self.refuse(i, "not started yet")),
                State::Finished => return Err(self.refuse(i, "already finished")),
                State::Accepting { .. } => return Err(self.refuse(i, PER_CONNECTION)),
                State::Running { .. } | State::Backoff => self.check_respawn(i)?,
            }
        }
        for &i in targets {
            match self.instances[i].state {
                State::Running { pid, .. } => {
                    self.instances[i].operator = Some(Intent::Stop);
                    if !self.instances[i].stop_requested {
                        self.send_stop(i, pid, false);
                    }
                }
                _ => {
                    let inst = &mut self.instances[i];
                    inst.held = true;
                    inst.backoff_until = None;
                }
            }
        }
        Ok(targets.to_vec())
    }

    fn restart_requested(
        &mut self,
        targets: &[usize],
        with_dependents: bool,
    ) -> Result<Vec<usize>, ErrorBody> {
        let mut chosen = vec![false; self.instances.len()];
        let mut queue: Vec<usize> = targets.to_vec();
        while let Some(i) = queue.pop() {
            if std::mem::replace(&mut chosen[i], true) {
                continue;
            }
            if with_dependents || self.plan.processes[i].restart_dependents {
                queue.extend(self.dependents_of(i));
            }
        }
        let all: Vec<usize> = (0..chosen.len()).filter(|&i| chosen[i]).collect();
        for &i in &all {
            match self.instances[i].state {
                State::Pending => return Err(self.refuse(i, "not started yet")),
                State::Accepting { .. } => return Err(self.refuse(i, PER_CONNECTION)),
                State::Finished => {
                    return Err(self.refuse(
                        i,
                        "finished for good, its channels closed; it cannot be restarted in this run",
                    ));
                }
                State::Running { .. } | State::Backoff => self.check_respawn(i)?,
            }
        }
        for &i in &all {
            match self.instances[i].state {
                State::Running { pid, .. } => {
                    // What waits for it waits for its next run from now
                    // on: a dependent that exits first must not start on
                    // this run's readiness.
                    let inst = &mut self.instances[i];
                    inst.operator = Some(Intent::Restart);
                    inst.ready = false;
                    inst.ready_now = false;
                    if !self.instances[i].stop_requested {
                        self.send_stop(i, pid, false);
                    }
                }
                _ => self.requeue(i),
            }
        }
        Ok(all)
    }

    /// The instances that wait for `i` to be ready (`after`).
    fn dependents_of(&self, i: usize) -> Vec<usize> {
        (0..self.after.len())
            .filter(|&d| self.after[d].contains(&i))
            .collect()
    }

    /// Puts `i`, not running, back in the start queue as a restart: it
    /// starts once what it waits for is ready, and what waits for it
    /// waits for its new run.
    fn requeue(&mut self, i: usize) {
        let inst = &mut self.instances[i];
        inst.held = false;
        inst.backoff_until = None;
        inst.state = State::Pending;
        inst.ready = false;
        inst.ready_now = false;
        inst.restarts += 1;
        self.start_queue.push(i);
    }

    /// Instance `i`, stopped on request, exited with `ending`.
    pub(super) fn operator_exit(&mut self, i: usize, name: &str, ending: Ending, intent: Intent) {
        self.instances[i].ending = Some(ending.clone());
        match intent {
            Intent::Stop => {
                let inst = &mut self.instances[i];
                inst.state = State::Backoff;
                inst.held = true;
                inst.ready_now = false;
                self.message(&format!("{name}: {ending}; stopped on request"));
            }
            Intent::Restart => {
                self.message(&format!("{name}: {ending}; restarting on request"));
                self.requeue(i);
            }
        }
    }

    fn signal_requested(
        &mut self,
        targets: &[usize],
        signal: Option<&str>,
    ) -> Result<Vec<usize>, ErrorBody> {
        let Some(text) = signal else {
            return Err(fail(ErrorCode::BadRequest, "`signal` needs a signal"));
        };
        let signal = crate::plan::signals::parse_signal(text)
            .ok()
            .and_then(|s| Signal::try_from(s.number).ok())
            .ok_or_else(|| fail(ErrorCode::Refused, format!("unknown signal `{text}`")))?;
        let mut pids = Vec::new();
        for &i in targets {
            match self.instances[i].state {
                State::Running { pid, .. } => pids.push(pid),
                _ => return Err(self.refuse(i, "not running")),
            }
        }
        for pid in pids {
            signal_group(pid, signal);
        }
        Ok(targets.to_vec())
    }
}

/// An endpoint as `status` shows it.
fn endpoint_label(end: &EndpointPlan) -> String {
    match end {
        EndpointPlan::Port { process, port, .. } => format!("{process}.{port}"),
        EndpointPlan::Own { stream } => format!("ipc-run {}", stream.as_str()),
        EndpointPlan::External => "external".to_owned(),
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
