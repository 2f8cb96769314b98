//! Live reload (`ipc-run reload`, `docs/operate.md`): the run takes a new
//! plan without stopping.
//!
//! The client plans the file and hands the plan over; the supervisor never
//! trusts it: it reads the plan again as `run --plan` does (checked against
//! the run's limits), diffs it against the plan it runs
//! ([`crate::plan::diff`]) and refuses the whole reload, changing nothing,
//! when a change cannot be made live or an instance to change cannot be
//! restarted (a running `restart = "never"` one takes back the channel
//! ends it was handed first). Only then does it apply it, in one pass of
//! the event loop:
//!
//! 1. the launcher makes the new channels (the only step that can fail;
//!    on failure it removes what it made and nothing else has changed),
//!    gives up the removed instances' held ends and removes the removed
//!    channels' objects;
//! 2. the removed and changed instances that run get their old stop
//!    signal (a removed one is finished for good when it exits, a changed
//!    one starts again with its new plan on its kept channels);
//! 3. the plan is swapped and the tables grow for the added instances:
//!    slots are stable, an added instance takes a new slot at the end and a
//!    removed one stays as a tombstone `status` does not show, so every
//!    index an fd, timer or stream holds stays valid; what is wired per
//!    instance from the plan (signal edges, probes, the listeners of
//!    health checks) is rebuilt from the new one, and a notify socket the
//!    launcher made for the first process that needs one is watched;
//! 4. the start graph and queue are rebuilt (once per reload, not per
//!    event) and the added instances whose `after` is met are started at
//!    once, so the answer can say whether they started.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::control::{Intent, Lifecycle};
use super::order::{Graph, StartQueue};
use super::{Ending, Instance, Runtime, State, Supervisor, is_broker};
use crate::control::protocol::{ErrorCode, Request, Response, RunSource};
use crate::launch::reload::Slots;
use crate::plan::diff::{ChangeKind, PlanDiff};
use crate::plan::{Plan, PortRefError, ProcessPlan, RestartPolicy};
use crate::topology::Condition;

/// The largest plan file a reload reads.
const MAX_PLAN_FILE: u64 = 256 * 1024 * 1024;

/// What the run keeps for reloads.
#[derive(Debug, Default)]
pub(super) struct Reloads {
    /// What the plan was made from (`run`, then the last reload).
    pub source: Option<RunSource>,
    /// The plan of the last reload, as made: what the next one diffs
    /// against (the supervisor's own plan also holds the tombstones).
    pub current: Option<Plan>,
    /// Removed instances' slots.
    pub removed: HashSet<usize>,
    /// Removed channels' slots.
    pub removed_channels: HashSet<usize>,
    /// Instances added by a reload and not spawned yet: a failed first
    /// start is reported, and does not stop the run.
    pub added: HashSet<usize>,
    /// Added instances that failed to start, with why, for the answer.
    pub failed: Vec<(usize, String)>,
}

/// An answer with the diff.
fn with_diff(mut response: Response, diff: PlanDiff) -> Response {
    response.diff = Some(diff);
    response
}

impl<R: Runtime> Supervisor<'_, R> {
    /// `source`: what the plan was made from.
    pub(super) fn source_answer(&self) -> Response {
        Response {
            source: self.control.reloads.source.clone(),
            ..Response::ok()
        }
    }

    /// `reload`: validates the plan in `plan_file` against the run, then
    /// (unless `dry_run`) applies it.
    pub(super) fn reload(&mut self, request: &Request) -> Response {
        if self.shutdown.is_some() {
            return Response::error(ErrorCode::Refused, "the run is stopping");
        }
        // A new plan would have to be cut down to the group again, with
        // its peers: not done live.
        if let Some(group) = &self.group {
            let why = format!("the run is host group `{group}` of a placed plan (run --host)");
            return Response::error(ErrorCode::Refused, why);
        }
        let Some(path) = &request.plan_file else {
            return Response::error(ErrorCode::BadRequest, "`reload` needs `plan_file`");
        };
        self.reap_exited_ends_holders();
        if self.shutdown.is_some() {
            return Response::error(ErrorCode::Refused, "the run is stopping");
        }
        let new = match self.read_plan(path) {
            Ok(plan) => plan,
            Err((code, why)) => return Response::error(code, why),
        };
        let base = self.control.reloads.current.as_ref().unwrap_or(&*self.plan);
        let mut diff = crate::plan::diff::diff(base, &new);
        diff.refused.extend(self.state_refusals(&diff));
        if !diff.refused.is_empty() {
            let why = format!("cannot reload live: {}", diff.refused.join("; "));
            return with_diff(Response::error(ErrorCode::Refused, why), diff);
        }
        if request.dry_run || diff.is_empty() {
            if !request.dry_run {
                self.remember(new, request.source.clone());
            }
            return with_diff(Response::ok(), diff);
        }
        if let Err(why) = self.take_back_ends(&diff) {
            let why = format!("cannot reload live: {why}");
            diff.refused.push(why.clone());
            return with_diff(Response::error(ErrorCode::Refused, why), diff);
        }
        let (merged, slots) = match self.lay_out(&new, &diff) {
            Ok(laid_out) => laid_out,
            Err(why) => {
                let why = format!("cannot reload live: {why}");
                diff.refused.push(why.clone());
                return with_diff(Response::error(ErrorCode::Refused, why), diff);
            }
        };
        if let Err(why) = self.runtime.check_reload(&merged, &slots) {
            let why = format!("cannot reload live: {why}");
            diff.refused.push(why.clone());
            return with_diff(Response::error(ErrorCode::Refused, why), diff);
        }
        match self.apply(merged, &slots) {
            Ok(done) => {
                self.remember(new, request.source.clone());
                with_diff(
                    Response {
                        done: Some(done),
                        ..Response::ok()
                    },
                    diff,
                )
            }
            Err((done, why)) => {
                // Applied up to the failure: the run now runs the new plan
                // but for what failed.
                if !done.is_empty() {
                    self.remember(new, request.source.clone());
                }
                let mut response = Response::error(ErrorCode::ApplyFailed, why);
                response.done = Some(done);
                with_diff(response, diff)
            }
        }
    }

    fn remember(&mut self, plan: Plan, source: Option<RunSource>) {
        self.control.reloads.current = Some(plan);
        if source.is_some() {
            self.control.reloads.source = source;
        }
    }

    /// The plan in `path`, read as `run --plan` reads one.
    fn read_plan(&self, path: &str) -> Result<Plan, (ErrorCode, String)> {
        let text = read_private(path).map_err(|why| (ErrorCode::BadRequest, why))?;
        match crate::plan::import::from_json(&text, &self.plan.limits) {
            Ok(planned) => Ok(planned.plan),
            Err(error) => {
                let first: Vec<String> = error
                    .diagnostics
                    .iter()
                    .filter(|d| d.is_error())
                    .take(3)
                    .map(|d| d.message.clone())
                    .collect();
                Err((
                    ErrorCode::Refused,
                    format!("the new plan is not valid here: {}", first.join("; ")),
                ))
            }
        }
    }

    /// Each live (not removed) instance by name.
    fn live_slots(&self) -> HashMap<&str, usize> {
        self.plan
            .processes
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.control.reloads.removed.contains(i))
            .map(|(i, p)| (&*p.name, i))
            .collect()
    }

    /// Each live channel by id.
    fn live_channels(&self) -> HashMap<&str, usize> {
        self.plan
            .channels
            .iter()
            .enumerate()
            .filter(|(c, _)| !self.control.reloads.removed_channels.contains(c))
            .map(|(c, channel)| (&*channel.id, c))
            .collect()
    }

    /// Why the instances `diff` changes cannot be, in their state: running
    /// without holding their channel ends; or an instance added under the
    /// name of a removed one still stopping.
    fn state_refusals(&self, diff: &PlanDiff) -> Vec<String> {
        let live = self.live_slots();
        let mut refused = Vec::new();
        for name in diff.processes_of(ChangeKind::Changed) {
            let Some(&i) = live.get(name) else { continue };
            // A running one whose ends were given up takes them back
            // ([`Supervisor::take_back_ends`]).
            if self.instances[i].state == State::Backoff
                && let Err(error) = self.check_respawn(i)
            {
                refused.push(error.message);
            }
        }
        for name in diff.processes_of(ChangeKind::Added) {
            let stopping = self.plan.processes.iter().enumerate().any(|(i, p)| {
                *p.name == *name
                    && self.control.reloads.removed.contains(&i)
                    && self.instances[i].state != State::Finished
            });
            if stopping {
                refused.push(format!(
                    "process {name}: removed by the last reload and still stopping; reload again once it has exited"
                ));
            }
        }
        refused
    }

    /// Handles now the exits, not handled yet, of the running processes
    /// whose ends a reload may take back ([`Self::take_back_ends`]): one
    /// that exited in the same wake-up as the request (its pidfd event
    /// queued behind the control socket's) is a zombie, from which no end
    /// can be taken (ESRCH). The reload is then answered as if it had come
    /// a moment later, the exit handled. Alive ones are left as they are.
    fn reap_exited_ends_holders(&mut self) {
        let pids: Vec<_> = (0..self.instances.len())
            .filter_map(|i| match self.instances[i].state {
                State::Running { pid, .. }
                    if self.plan.processes[i].restart.policy == RestartPolicy::Never
                        || !self.runtime.can_respawn(self.name(i)) =>
                {
                    Some(pid)
                }
                _ => None,
            })
            .collect();
        for pid in pids {
            if self.pidfds.contains_key(&pid) {
                self.reap_tracked(pid);
            }
        }
    }

    /// The changed instances that run without the channel ends ipc-run
    /// gave up at their spawn (`restart = "never"`) take them back from
    /// their process, so they can be stopped and started anew with their
    /// new plan on the same channels, as a changed restartable one is. The
    /// last step of validation: one whose process no longer holds an end
    /// where it was handed refuses the reload.
    fn take_back_ends(&mut self, diff: &PlanDiff) -> Result<(), String> {
        let live = self.live_slots();
        let mut running = Vec::new();
        for name in diff.processes_of(ChangeKind::Changed) {
            // Every running `never` one: its ends are counted for it
            // again even when ipc-run still held them all (for another
            // process), so its next spawn gives them up as its first did.
            if let Some(&i) = live.get(name)
                && let State::Running { pid, .. } = self.instances[i].state
                && (self.plan.processes[i].restart.policy == RestartPolicy::Never
                    || !self.runtime.can_respawn(name))
            {
                running.push((name.to_owned(), pid));
            }
        }
        for (name, pid) in running {
            self.runtime
                .take_back_ends(&name, pid)
                .map_err(|why| format!("process {name}: {why}"))?;
        }
        Ok(())
    }

    /// Applies a validated diff, `merged` laid out as `slots` say
    /// ([`Self::lay_out`]): what was done, or that and why the first step
    /// that failed did.
    fn apply(&mut self, merged: Plan, slots: &Slots) -> Result<Vec<String>, (Vec<String>, String)> {
        if let Err(why) = self.runtime.reload(&merged, slots) {
            return Err((Vec::new(), format!("nothing changed: {why}")));
        }
        self.message(&format!(
            "reload: {} process(es) added, {} removed, {} changed",
            slots.added.len(),
            slots.removed.len(),
            slots.respecified.len() - slots.added.len()
        ));
        let mut done = Vec::new();
        // Failures of earlier reloads' instances were said when they came.
        self.control.reloads.failed.clear();
        // Stopped as their old plan says.
        for &i in slots.removed.iter().chain(&slots.respecified) {
            // Added instances have no slot yet.
            let Some(state) = self.instances.get(i).map(|inst| inst.state) else {
                continue;
            };
            if !matches!(state, State::Running { .. } | State::Accepting { .. }) {
                continue;
            }
            let removed = slots.removed.contains(&i);
            let inst = &mut self.instances[i];
            // One being stopped on request stays stopped, as it would had
            // its stop ended before the reload: its next start (`start`)
            // uses the new plan.
            let stopping = inst.operator == Some(Intent::Stop) && inst.stop_requested;
            inst.operator = Some(if removed {
                Intent::Remove
            } else if stopping {
                Intent::Stop
            } else {
                Intent::Restart
            });
            if !removed {
                // What waits for it waits for its run with the new plan.
                inst.ready = false;
                inst.ready_now = false;
            }
            match state {
                State::Running { pid, .. } if !inst.stop_requested => self.send_stop(i, pid, false),
                // Its connections' processes are stopped; when the last
                // is gone, the server is removed or started anew.
                State::Accepting { .. } => self.stop_accepting(i, false),
                _ => {}
            }
        }
        let old_count = self.instances.len();
        self.plan = Cow::Owned(merged);
        for &c in &slots.removed_channels {
            self.control.reloads.removed_channels.insert(c);
        }
        self.grow(old_count);
        self.take_notify_socket();
        for &i in &slots.removed {
            self.control.reloads.removed.insert(i);
            done.push(self.remove_instance(i));
        }
        for &i in &slots.respecified {
            if slots.added.contains(&i) {
                self.control.reloads.added.insert(i);
                self.lifecycle(i, Lifecycle::Added);
                continue;
            }
            done.push(self.respecify(i));
        }
        self.rewire();
        self.start_ready_instances();
        let mut failed = Vec::new();
        for &i in &slots.added {
            let name = self.name(i).to_owned();
            if let Some(k) = self
                .control
                .reloads
                .failed
                .iter()
                .position(|(f, _)| *f == i)
            {
                let (_, why) = self.control.reloads.failed.remove(k);
                failed.push(format!("{name}: failed to start: {why}"));
                continue;
            }
            done.push(match self.instances[i].state {
                State::Running { pid, .. } => format!("started {name} (pid {pid})"),
                _ => format!("added {name} (starts once what it waits for is ready)"),
            });
        }
        if failed.is_empty() {
            Ok(done)
        } else {
            Err((done, failed.join("; ")))
        }
    }

    /// `new` laid out on the slots of the plan run now, and which slots
    /// change ([`crate::launch::reload`]).
    fn lay_out(&self, new: &Plan, diff: &PlanDiff) -> Result<(Plan, Slots), PortRefError> {
        let live = self.live_slots();
        let channels = self.live_channels();
        let mut merged: Plan = (*self.plan).clone();
        // Port values become text before channels are replaced or added:
        // the merged plan's channels are laid out as neither plan's.
        merged.render_ports()?;
        let moved = |process: &ProcessPlan| {
            let mut process = process.clone();
            process.env.render_ports(&new.channels).map(|()| process)
        };
        let mut slots = Slots::default();
        let new_process = |name: &str| new.processes.iter().find(|p| *p.name == *name);
        for change in &diff.processes {
            match change.change {
                ChangeKind::Removed => slots.removed.push(live[&*change.name]),
                ChangeKind::Changed
                    if self.instances[live[&*change.name]].state != State::Finished =>
                {
                    let i = live[&*change.name];
                    if let Some(process) = new_process(&change.name) {
                        merged.processes[i] = moved(process)?;
                    }
                    slots.respecified.push(i);
                }
                // Finished for good (it exited, or failed to start): its
                // slot is left as a tombstone and it starts anew in another.
                ChangeKind::Changed | ChangeKind::Added => {
                    if change.change == ChangeKind::Changed {
                        slots.removed.push(live[&*change.name]);
                    }
                    if let Some(process) = new_process(&change.name) {
                        slots.respecified.push(merged.processes.len());
                        slots.added.push(merged.processes.len());
                        merged.processes.push(moved(process)?);
                    }
                }
            }
        }
        let new_channel = |id: &str| new.channels.iter().find(|c| *c.id == *id);
        for change in &diff.channels {
            match change.change {
                ChangeKind::Removed => slots.removed_channels.push(channels[&*change.name]),
                ChangeKind::Changed => {
                    if let Some(channel) = new_channel(&change.name) {
                        merged.channels[channels[&*change.name]] = channel.clone();
                    }
                }
                ChangeKind::Added => {
                    if let Some(channel) = new_channel(&change.name) {
                        slots.added_channels.push(merged.channels.len());
                        merged.channels.push(channel.clone());
                    }
                }
            }
        }
        merged.start_order = new.start_order.clone();
        merged.stop_order = new.stop_order.clone();
        merged.cycles = new.cycles.clone();
        merged.warnings = new.warnings.clone();
        merged.exit_code_from = new.exit_code_from.clone();
        merged.profiles = new.profiles.clone();
        Ok((merged, slots))
    }

    /// Room in every per-instance table for the slots past `old_count`.
    fn grow(&mut self, old_count: usize) {
        let count = self.plan.processes.len();
        for i in old_count..count {
            self.instances.push(Instance::pending(false, false));
            self.streams.stderr_of.push(None);
            let process = &self.plan.processes[i];
            if !is_broker(process) {
                self.declared_left += 1;
            }
            let (name, declared) = (process.name.clone(), process.process.clone());
            if let Err(error) = self.writer.add_instance(&name, &declared) {
                tracing::warn!("{name}: its output is not written to --log-dir: {error}");
            }
        }
        let removed = &self.control.reloads.removed_channels;
        self.health.rewire(&self.plan, removed);
        self.probes.rewire(&self.plan, removed);
        self.signal_edges.rewire(&self.plan, removed);
    }

    /// The notify socket the launcher made for the first process of the
    /// run that needs one, when a reload added it: watched from now on.
    fn take_notify_socket(&mut self) {
        if self.notify.is_some() {
            return;
        }
        match super::own_notify_socket(&*self.runtime) {
            Ok(Some(socket)) => {
                if let Err(errno) = self.events.add(&socket, super::events::Token::Notify) {
                    tracing::warn!("reload: the notify socket cannot be watched: {errno}");
                    return;
                }
                self.notify = Some(socket);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!("reload: the notify socket cannot be used: {error}"),
        }
    }

    /// Instance `i` is removed: stopped if it runs (finished when it
    /// exits), finished now otherwise.
    fn remove_instance(&mut self, i: usize) -> String {
        let name = self.name(i).to_owned();
        self.lifecycle(i, Lifecycle::Removed);
        match self.instances[i].state {
            State::Running { .. } | State::Accepting { .. } => format!("stopping {name} (removed)"),
            State::Finished => {
                self.forget_removed(i);
                format!("removed {name}")
            }
            State::Pending | State::Backoff => {
                let why = "removed by a reload".to_owned();
                self.finish_counting(i, Ending::NotStarted(why), true, false);
                self.forget_removed(i);
                format!("removed {name}")
            }
        }
    }

    /// Removed instance `i` has finished: its slot is a tombstone, and
    /// the output kept of it for `logs` (which shows live instances only)
    /// is freed, so that reloads do not pile it up.
    pub(super) fn forget_removed(&mut self, i: usize) {
        if let Some(recent) = self.writer.recent() {
            recent.forget(i);
        }
    }

    /// Instance `i` has a new plan: restarted into it if it runs (its stop
    /// was sent), started with it when due otherwise.
    fn respecify(&mut self, i: usize) -> String {
        let name = self.name(i).to_owned();
        self.lifecycle(i, Lifecycle::Changed);
        self.health.respecified(i);
        match self.instances[i].state {
            State::Running { .. } if self.instances[i].operator == Some(Intent::Stop) => {
                format!("changed {name} (stopping on request; its next start uses its new plan)")
            }
            State::Running { .. } | State::Accepting { .. } => {
                format!("restarting {name} with its new plan")
            }
            State::Backoff if !self.instances[i].held => {
                self.requeue(i);
                format!("restarting {name} with its new plan")
            }
            _ => format!("changed {name} (its next start uses its new plan)"),
        }
    }

    /// The start graph, queue and stop sequence of the new plan, and what
    /// each instance waits for: rebuilt once per reload.
    fn rewire(&mut self) {
        let live = self.live_slots();
        let indices = |names: &[std::sync::Arc<str>]| -> Vec<usize> {
            names
                .iter()
                .filter_map(|n| live.get(&**n).copied())
                .collect()
        };
        let start = indices(&self.plan.start_order);
        let mut stop = indices(&self.plan.stop_order);
        let count = self.plan.processes.len();
        let mut after = vec![Vec::new(); count];
        let mut conditions = vec![Vec::new(); count];
        for (i, process) in self.plan.processes.iter().enumerate() {
            if self.control.reloads.removed.contains(&i) {
                continue;
            }
            after[i] = indices(&process.after);
            conditions[i] = process
                .after
                .iter()
                .map(|n| condition_of(process, n))
                .collect();
        }
        let mut awaited = vec![false; count];
        for (deps, conds) in after.iter().zip(&conditions) {
            for (&dep, &condition) in deps.iter().zip(conds) {
                awaited[dep] |= condition == Condition::Ready;
            }
        }
        for (i, (inst, awaited)) in self.instances.iter_mut().zip(awaited).enumerate() {
            // A receiver of signals is awaited: its senders start once it runs.
            inst.signalled = !self.signal_edges.senders_of(i).is_empty();
            inst.awaited = awaited || inst.signalled;
        }
        let edges = &self.signal_edges;
        self.graph = Graph::new(count, |i| {
            let mut waits = after[i].clone();
            waits.extend_from_slice(edges.receivers_of(i));
            waits
        });
        self.start_queue = StartQueue::new(count, start);
        // Removed instances still stopping are stopped by a shutdown too.
        stop.extend(
            self.control
                .reloads
                .removed
                .iter()
                .copied()
                .filter(|&i| self.instances[i].state != State::Finished),
        );
        self.stop_sequence = stop;
        self.after = after;
        self.conditions = conditions;
    }
}

/// The text of the plan file at `path`, as the client writes it: a
/// regular file (not a link: `O_NOFOLLOW`), owned by the run's user and
/// writable by no one else, at most [`MAX_PLAN_FILE`] bytes. Opened
/// non-blocking, so that a FIFO named there is refused instead of
/// stopping the event loop until someone writes to it; the size and the
/// owner are those of the file opened, not of the path looked at before.
fn read_private(path: &str) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let cannot = |e: std::io::Error| match e.raw_os_error() {
        Some(libc::ELOOP) => format!("plan file {path} is a symbolic link"),
        _ => format!("cannot read plan file {path}: {e}"),
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.file_type().is_file() {
        return Err(format!("plan file {path} is not a regular file"));
    }
    if meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "plan file {path} is not the run's own (owner uid {}, mode {:o}): it must belong to uid {me} and be writable by no one else",
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    if meta.len() > MAX_PLAN_FILE {
        return Err(format!(
            "plan file {path} is larger than {MAX_PLAN_FILE} bytes"
        ));
    }
    let mut text = String::new();
    file.take(MAX_PLAN_FILE + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    Ok(text)
}

/// What `process` waits for of `name`, one of its `after`.
fn condition_of(process: &ProcessPlan, name: &str) -> Condition {
    process
        .conditions
        .iter()
        .find(|c| *c.instance == *name)
        .map_or(Condition::Ready, |c| c.condition)
}
