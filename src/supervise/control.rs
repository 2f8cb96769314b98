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

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use nix::sys::signal::Signal;

use super::{Ending, Runtime, State, Supervisor, signal_group};
use crate::control::protocol::{
    ChannelStatus, Command, ErrorBody, ErrorCode, Event, LogRecord, ProcessStatus, Request,
    Response, RunInfo, Subscription,
};
use crate::control::server::Server;
use crate::plan::EndpointPlan;
use crate::supervise::logs::{RecentRecord, Stream};

/// What an operator asked of an instance, carried out when it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Intent {
    /// Keep it stopped (its channels kept).
    Stop,
    /// Start it again.
    Restart,
    /// Removed by a reload: finished for good when it exits.
    Remove,
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
    /// Lifecycle events not published yet; kept only while some client
    /// streams them.
    pub events: Vec<Event>,
    /// Some client streams events.
    pub watch_events: bool,
    /// Some client follows log records.
    pub follow_logs: bool,
    /// Log records numbered below this were handed to the followers.
    pub published: u64,
    /// What reloads need and leave ([`super::reload`]).
    pub reloads: super::reload::Reloads,
}

/// A lifecycle event, as the supervisor reports it ([`Supervisor::lifecycle`]).
#[derive(Debug, Clone)]
pub(super) enum Lifecycle {
    /// Spawned (and, when ready at once, ready too).
    Started,
    /// Declared ready.
    Ready,
    /// Exited, as told.
    Exited(Ending),
    /// Starts again after this delay.
    Restarting(std::time::Duration),
    /// Stopped on request, its channels kept.
    Stopped,
    /// Its health check passed after it had not (or had not yet).
    Healthy,
    /// Its health checks failed `retries` times in a row, or its watchdog
    /// was missed; the reason.
    Unhealthy(String),
    /// A reload added it.
    Added,
    /// A reload removed it (it is stopped if it runs).
    Removed,
    /// A reload gave it a new plan (it is restarted into it if it runs).
    Changed,
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
        let (logs, events) = server.subscribers();
        self.control.server = Some(server);
        self.control.follow_logs = logs > 0;
        self.control.watch_events = events > 0;
    }

    /// Hands the streams what happened since the last pass: lifecycle
    /// events and new log records. Once per pass of the event loop, and
    /// nothing to do (two comparisons) when no client streams anything.
    pub(super) fn publish_control(&mut self) {
        let next = self.writer.recent().map_or(0, |r| r.next_seq());
        let new_logs = self.control.follow_logs && next > self.control.published;
        if !new_logs && self.control.events.is_empty() {
            return;
        }
        let Some(mut server) = self.control.server.take() else {
            return;
        };
        let events: Vec<u8> = std::mem::take(&mut self.control.events)
            .into_iter()
            .flat_map(|event| {
                Response {
                    event: Some(event),
                    ..Response::ok()
                }
                .to_line()
            })
            .collect();
        server.publish(&mut |subscription| match subscription {
            Subscription::Events => events.clone(),
            Subscription::Logs { instances, next } => {
                let records = self.records_of(instances, *next, None, None);
                let dropped = self.dropped_of(instances, *next);
                *next = self.writer.recent().map_or(0, |r| r.next_seq());
                if records.is_empty() && dropped.is_none() {
                    return Vec::new();
                }
                Response {
                    records: Some(records),
                    dropped,
                    ..Response::ok()
                }
                .to_line()
            }
        });
        let (logs, events) = server.subscribers();
        self.control.server = Some(server);
        self.control.follow_logs = logs > 0;
        self.control.watch_events = events > 0;
        self.control.published = next;
    }

    /// Records `what` of instance `i` for the event streams, if any.
    pub(super) fn lifecycle(&mut self, i: usize, what: Lifecycle) {
        if !self.control.watch_events {
            return;
        }
        let pid = match self.instances[i].state {
            State::Running { pid, .. } => Some(pid.as_raw()),
            _ => None,
        };
        let event = |name: &str| Event {
            time: now_rfc3339(),
            event: name.to_owned(),
            process: self.name(i).to_owned(),
            pid,
            status: None,
            exit_code: None,
            delay_ms: None,
        };
        let events = match what {
            Lifecycle::Started if self.instances[i].ready_now => {
                vec![event("started"), event("ready")]
            }
            Lifecycle::Started => vec![event("started")],
            Lifecycle::Ready => vec![event("ready")],
            Lifecycle::Exited(ending) => vec![Event {
                status: Some(ending.to_string()),
                exit_code: match ending {
                    Ending::Exited(code) => Some(code),
                    _ => None,
                },
                ..event("exited")
            }],
            Lifecycle::Restarting(delay) => vec![Event {
                delay_ms: Some(millis(delay)),
                pid: None,
                ..event("restarting")
            }],
            Lifecycle::Stopped => vec![Event {
                pid: None,
                ..event("stopped")
            }],
            Lifecycle::Healthy => vec![event("healthy")],
            Lifecycle::Unhealthy(why) => vec![Event {
                status: Some(why),
                ..event("unhealthy")
            }],
            Lifecycle::Added => vec![event("added")],
            Lifecycle::Removed => vec![event("removed")],
            Lifecycle::Changed => vec![event("changed")],
        };
        self.control.events.extend(events);
    }

    /// `logs`: the records kept of the named instances; with `follow`,
    /// the connection goes on to carry new ones.
    fn logs(&mut self, request: &Request) -> Response {
        let targets = match self.targets(&request.procs) {
            Ok(targets) => targets,
            Err(error) => return error.into(),
        };
        let Some(next) = self.writer.recent().map(|r| r.next_seq()) else {
            return error(
                ErrorCode::Refused,
                "this run keeps no log records in memory (it was started with --log-memory 0)",
            );
        };
        let since = request.since_ms.map(|ms| {
            let stamp = crate::supervise::logfile::rfc3339_ms(std::time::Duration::from_millis(ms));
            String::from_utf8_lossy(&stamp).into_owned()
        });
        let records = self.records_of(&targets, 0, request.lines, since.as_deref());
        Response {
            instances: Some(targets.iter().map(|&i| self.name(i).to_owned()).collect()),
            records: Some(records),
            subscribe: request.follow.then_some(Subscription::Logs {
                instances: targets,
                next,
            }),
            ..Response::ok()
        }
    }

    /// The kept records of `instances` numbered `from` or later, merged
    /// in the order they were read: of each instance only its last
    /// `lines` lines, and only those read at `since` or later.
    fn records_of(
        &mut self,
        instances: &[usize],
        from: u64,
        lines: Option<usize>,
        since: Option<&str>,
    ) -> Vec<LogRecord> {
        let Some(recent) = self.writer.recent() else {
            return Vec::new();
        };
        let mut all: Vec<(usize, RecentRecord)> = Vec::new();
        for &i in instances {
            let mut records = recent.records_from(i, from);
            if let Some(since) = since {
                records.retain(|r| r.time.as_str() >= since);
            }
            if let Some(lines) = lines {
                // From the start of the `lines`-th line from the end (with
                // its continuations); none for 0, as `tail -n 0`.
                let mut starts = 0;
                let mut keep = records.len();
                while keep > 0 && starts < lines {
                    keep -= 1;
                    starts += usize::from(records[keep].starts_line);
                }
                records.drain(..keep);
            }
            all.extend(records.into_iter().map(|r| (i, r)));
        }
        all.sort_by_key(|(_, r)| r.seq);
        all.into_iter()
            .map(|(i, r)| self.log_record(i, r))
            .collect()
    }

    /// The names of `instances` with a record numbered `from` or later
    /// that is no longer kept; `None` when there is none.
    fn dropped_of(&mut self, instances: &[usize], from: u64) -> Option<Vec<String>> {
        let recent = self.writer.recent()?;
        let dropped: Vec<usize> = instances
            .iter()
            .copied()
            .filter(|&i| recent.dropped_since(i, from))
            .collect();
        (!dropped.is_empty()).then(|| dropped.iter().map(|&i| self.name(i).to_owned()).collect())
    }

    fn log_record(&self, i: usize, record: RecentRecord) -> LogRecord {
        let line = match String::from_utf8(record.bytes) {
            Ok(text) => serde_json::Value::String(text),
            Err(e) => e
                .into_bytes()
                .into_iter()
                .map(serde_json::Value::from)
                .collect(),
        };
        LogRecord {
            time: record.time,
            process: self.plan.processes[i].process.to_string(),
            instance: self.name(i).to_owned(),
            stream: match record.stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            }
            .to_owned(),
            continued: !record.starts_line,
            line,
        }
    }

    /// Writes `ready RUN_ID` for `run --detach` once every instance is
    /// ready or has finished without failing.
    pub(super) fn announce_if_ready(&mut self) {
        let manager_waits = self.service.waits_for_ready();
        if (self.control.announce.is_none() && !manager_waits) || !self.all_ready_so_far() {
            return;
        }
        if let Some(fd) = self.control.announce.take() {
            let line = format!("ready {}\n", self.control.run_id);
            let _ = nix::unistd::write(fd.as_fd(), line.as_bytes());
        }
        if manager_waits {
            let status = self.ready_status();
            self.service.ready(&status);
        }
    }

    /// [`Self::all_ready`], at a cost that does not grow with the number
    /// of calls: this is asked after every pass of the loop until the
    /// announcements are made, and a pass over every instance each time
    /// would make a large run's start quadratic. Instances before the
    /// cursor were ready when it passed them; the answer `true` is only
    /// given after a full pass confirms it.
    fn all_ready_so_far(&mut self) -> bool {
        if self.shutdown.is_some() {
            return false;
        }
        let count = self.instances.len();
        while self.ready_cursor < count && self.counts_as_ready(self.ready_cursor) {
            self.ready_cursor += 1;
        }
        if self.ready_cursor < count {
            return false;
        }
        match (0..count).find(|&i| !self.counts_as_ready(i)) {
            Some(i) => {
                self.ready_cursor = i;
                false
            }
            None => true,
        }
    }

    fn all_ready(&self) -> bool {
        self.shutdown.is_none() && (0..self.instances.len()).all(|i| self.counts_as_ready(i))
    }

    /// Whether instance `i` is as ready as it will be for the run to count
    /// as running.
    fn counts_as_ready(&self, i: usize) -> bool {
        let inst = &self.instances[i];
        match inst.state {
            State::Running { .. } => inst.ready_now,
            // A per-connection server is ready once it accepts.
            State::Accepting { .. } => true,
            State::Finished => !inst.failed,
            // Stopped on request: as it was asked to be.
            State::Backoff => inst.held,
            State::Pending => false,
        }
    }

    fn answer(&mut self, request: Request) -> Response {
        match request.cmd {
            Command::Info => Response {
                run: Some(self.run_info()),
                ..Response::ok()
            },
            Command::Status => self.status(&request.procs),
            Command::Down => self.down(),
            Command::Logs => self.logs(&request),
            Command::Events => Response {
                subscribe: Some(Subscription::Events),
                ..Response::ok()
            },
            Command::Source => self.source_answer(),
            Command::Reload => self.reload(&request),
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
            processes: self.instances.len() - self.control.reloads.removed.len(),
        }
    }

    /// The instances `names` name (instance or process names), in plan
    /// order; every instance when `names` is empty.
    fn targets(&self, names: &[String]) -> Result<Vec<usize>, ErrorBody> {
        let removed = &self.control.reloads.removed;
        if names.is_empty() {
            return Ok((0..self.instances.len())
                .filter(|i| !removed.contains(i))
                .collect());
        }
        // One pass over the instances, then one look-up per name: a
        // request may name thousands (up to 64 KiB of them), and a scan
        // of every instance per name would hold the loop for seconds in
        // a large run.
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, process) in self.plan.processes.iter().enumerate() {
            if removed.contains(&i) {
                continue;
            }
            by_name.entry(&process.name).or_default().push(i);
            if *process.process != *process.name {
                by_name.entry(&process.process).or_default().push(i);
            }
        }
        let mut chosen = vec![false; self.instances.len()];
        for name in names {
            let Some(found) = by_name.get(name.as_str()) else {
                return Err(fail(
                    ErrorCode::UnknownProcess,
                    format!("no process `{name}` in this run"),
                ));
            };
            for &i in found {
                chosen[i] = true;
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
        let named: Option<HashSet<&str>> =
            (!names.is_empty()).then(|| targets.iter().map(|&i| self.name(i)).collect());
        let channels = self
            .plan
            .channels
            .iter()
            .enumerate()
            .filter(|(c, _)| !self.control.reloads.removed_channels.contains(c))
            .map(|(_, channel)| channel)
            .filter(|channel| {
                named.as_ref().is_none_or(|named| {
                    channel.ends().iter().any(|end| {
                        matches!(end, EndpointPlan::Port { process, .. } if named.contains(&**process))
                    })
                })
            })
            .map(|channel| self.channel_status(channel))
            .collect();
        Response {
            run: Some(self.run_info()),
            processes: Some(processes),
            channels: Some(channels),
            ..Response::ok()
        }
    }

    /// One channel: its ends, and what ipc-run sees of its traffic
    /// (`docs/operate.md`, "status").
    fn channel_status(&self, channel: &crate::plan::ChannelPlan) -> ChannelStatus {
        let fill = self.runtime.pipe_fill(&channel.id);
        let seen = self.runtime.traffic(&channel.id).unwrap_or_default();
        let relayed = self.writer.rank_pipes_ref().counts(&channel.id);
        ChannelStatus {
            name: channel.id.to_string(),
            mechanism: channel.mechanism.name().to_string(),
            from: channel.from().iter().map(endpoint_label).collect(),
            to: channel.to().iter().map(endpoint_label).collect(),
            buffered: fill.map(|(bytes, _)| bytes),
            capacity: fill.map(|(_, capacity)| capacity),
            bytes_written: seen.bytes_written.or(relayed.map(|r| r.bytes_written)),
            bytes_read: seen.bytes_read,
            bytes_waiting: seen.bytes_waiting,
            messages_waiting: seen.messages_waiting,
            lines_written: relayed.map(|r| r.lines_written),
            lines_queued: relayed.map(|r| r.lines_queued),
            lines_lost: relayed.map(|r| r.lines_lost),
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
        let [out, err] = self.writer.counts(i);
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
            stdout_lines: (out.bytes > 0).then_some(out.lines),
            stdout_bytes: (out.bytes > 0).then_some(out.bytes),
            stderr_lines: (err.bytes > 0).then_some(err.lines),
            stderr_bytes: (err.bytes > 0).then_some(err.bytes),
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
    pub(super) fn check_respawn(&self, i: usize) -> Result<(), ErrorBody> {
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
    pub(super) fn requeue(&mut self, i: usize) {
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
                self.lifecycle(i, Lifecycle::Stopped);
            }
            Intent::Restart => {
                self.message(&format!("{name}: {ending}; restarting on request"));
                self.requeue(i);
                self.lifecycle(i, Lifecycle::Restarting(std::time::Duration::ZERO));
            }
            Intent::Remove => {
                self.message(&format!("{name}: {ending}; removed by a reload"));
                self.finish_counting(i, ending, true, false);
                self.forget_removed(i);
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

/// Now, RFC 3339 in UTC with milliseconds.
fn now_rfc3339() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    String::from_utf8_lossy(&crate::supervise::logfile::rfc3339_ms(since)).into_owned()
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
