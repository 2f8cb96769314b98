//! Health checks, the sd_notify watchdog and the conditions of `after`.
//!
//! A process with `health = { … }` is checked every `interval` from its
//! start: a connection to one of its own listeners (`connect`), to a TCP
//! address (`tcp`), an HTTP `GET` answered 2xx (`http`) — these reuse the
//! non-blocking [`probe::Attempt`] of readiness probes, watched by the
//! epoll set as [`Token::Health`] — or a command that exits 0 (`exec`),
//! a child of ipc-run reaped like the others. Each check is bounded by
//! `timeout`. Between checks a process costs one timer and nothing else.
//!
//! States ([`HealthState`]): `starting` until the first check passes
//! (failures within `start_period` of the start do not count), `healthy`,
//! and `unhealthy` after `retries` failures in a row. An unhealthy process
//! is killed (SIGKILL) and its restart policy decides as for any failed
//! exit, which is what compose's autoheal and systemd's watchdog do.
//!
//! `watchdog = "5s"` gives the child `WATCHDOG_USEC`; a run that sends no
//! `WATCHDOG=1` within the period is unhealthy and gets SIGABRT (as from
//! systemd), then its policy decides. Neither checks nor the watchdog act
//! on a process that ipc-run is stopping: its stop grace is its own. One timer per process: a ping only
//! records when it came, and the timer, when it fires, re-arms itself for
//! the period after the last ping.
//!
//! The per-instance outcome lives in [`HealthStatus`] (with the last
//! `STATUS=` text), for the status command to show.

use std::collections::{HashMap, HashSet};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::control::Lifecycle;
use super::events::Token;
use super::probe::{Ask, Attempt, Step, Target};
use super::status::Ending;
use super::timers::Deadline;
use super::{Runtime, State, Supervisor};
use crate::plan::{HealthCheck, Mechanism, Plan, Transport};
use crate::topology::Condition;

/// Where a process's health stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum HealthState {
    /// No check has passed in this run yet.
    #[default]
    Starting,
    /// The last check passed.
    Healthy,
    /// `retries` checks failed in a row, or the watchdog was missed.
    Unhealthy,
}

impl HealthState {
    /// The word `status` shows.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HealthState::Starting => "starting",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
        }
    }
}

/// The health of one instance, as `status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HealthStatus {
    /// Its state in the current run.
    pub state: HealthState,
    /// Consecutive failed checks that counted.
    pub failures: u32,
    /// Why the last check failed, while the last one did.
    pub last_failure: Option<String>,
    /// The last `STATUS=` text it sent on the notify socket.
    pub status_text: Option<String>,
}

/// A check under way.
#[derive(Debug, Default)]
enum InFlight {
    /// None: the next is due at the timer.
    #[default]
    Idle,
    /// A connection, and the interest it is registered with, if any.
    Conn(Attempt, Option<bool>),
    /// An `exec` child.
    Exec(Pid),
}

/// The health checks of a run.
#[derive(Debug, Default)]
pub(crate) struct Health {
    status: Vec<HealthStatus>,
    checks: Vec<InFlight>,
    /// The sequence number of each instance's armed deadline: any other is stale.
    seq: Vec<u64>,
    next_seq: u64,
    /// When each instance's current run started.
    started: Vec<Option<Instant>>,
    /// Some run passed a check: sticky, what `after = { x = "healthy" }` waits for.
    healthy_once: Vec<bool>,
    /// When the watchdog was last pinged in the current run.
    pinged: Vec<Option<Instant>>,
    /// `exec` children, by pid.
    exec_pids: HashMap<Pid, usize>,
    /// Listener address templates by channel id: (unix, address).
    listeners: HashMap<String, (bool, String)>,
}

impl Health {
    /// The tables of a reloaded `plan` (`src/supervise/reload.rs`): room
    /// for its added slots, and the listeners its checks connect to found
    /// again among its live channels (not in `removed_channels`). The checks
    /// themselves are read from the plan at each start, so a changed
    /// instance is checked as its new plan says from its next start.
    pub(crate) fn rewire(&mut self, plan: &Plan, removed_channels: &HashSet<usize>) {
        let count = plan.processes.len();
        self.status.resize_with(count, HealthStatus::default);
        self.checks.resize_with(count, || InFlight::Idle);
        self.seq.resize(count, 0);
        self.started.resize(count, None);
        self.healthy_once.resize(count, false);
        self.pinged.resize(count, None);
        self.listeners = listeners_of(plan, removed_channels);
    }

    /// Instance `i` has a new plan (a reload changed it): what waits for it
    /// to be healthy waits for a check of its new plan to pass, as what
    /// waits for it to be ready waits for its new run.
    pub(crate) fn respecified(&mut self, i: usize) {
        self.healthy_once[i] = false;
    }

    /// Nothing checked yet, for the instances of `plan`.
    pub(crate) fn new(plan: &Plan) -> Health {
        let count = plan.processes.len();
        let listeners = listeners_of(plan, &HashSet::new());
        Health {
            status: vec![HealthStatus::default(); count],
            checks: (0..count).map(|_| InFlight::Idle).collect(),
            seq: vec![0; count],
            next_seq: 0,
            started: vec![None; count],
            healthy_once: vec![false; count],
            pinged: vec![None; count],
            exec_pids: HashMap::new(),
            listeners,
        }
    }
}

/// The address template of each channel some check of `plan` connects to,
/// by channel id: (unix, address). The channels are collected once: a large
/// plan is not scanned once per channel.
fn listeners_of(plan: &Plan, removed_channels: &HashSet<usize>) -> HashMap<String, (bool, String)> {
    let wanted: HashSet<&str> = plan
        .processes
        .iter()
        .filter_map(|p| match &p.health.as_ref()?.check {
            HealthCheck::Connect { channel, .. }
            | HealthCheck::Http {
                channel: Some(channel),
                ..
            } => Some(&**channel),
            _ => None,
        })
        .collect();
    let mut listeners = HashMap::new();
    for (c, channel) in plan.channels.iter().enumerate() {
        if removed_channels.contains(&c) || !wanted.contains(&*channel.id) {
            continue;
        }
        let with_port = |a: &str| crate::mechanism::edge::address_with_port(a, &channel.id);
        let at = match &channel.mechanism {
            Mechanism::Rpc(rpc) if rpc.transport == Transport::Unix => (true, rpc.address.clone()),
            Mechanism::Rpc(rpc) => (false, with_port(&rpc.address)),
            Mechanism::UnixListener(unix) => (true, unix.path.clone()),
            Mechanism::Tcp(tcp) => (false, with_port(&tcp.bind)),
            _ => continue,
        };
        listeners.insert(channel.id.to_string(), at);
    }
    listeners
}

/// Whether a dependency's condition is met.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Met {
    /// Met.
    Yes,
    /// Not yet.
    Waiting,
    /// Never will be, for this reason.
    Never(String),
}

impl<R: Runtime> Supervisor<'_, R> {
    /// The health of instance `i`: what the status command shows.
    pub(crate) fn health_of(&self, i: usize) -> &HealthStatus {
        &self.health.status[i]
    }

    /// Whether dependency `d` meets `condition` now.
    pub(super) fn condition_met(&self, d: usize, condition: Condition) -> Met {
        let dep = &self.instances[d];
        let name = &self.plan.processes[d].name;
        let finished = dep.state == State::Finished;
        match condition {
            Condition::Started
                if dep.generation > 0 || matches!(dep.state, State::Accepting { .. }) =>
            {
                Met::Yes
            }
            Condition::Ready if dep.ready && (finished || self.probes.serving(d)) => Met::Yes,
            Condition::Healthy if self.health.healthy_once[d] => Met::Yes,
            Condition::Completed if finished && dep.ending == Some(Ending::Exited(0)) => Met::Yes,
            _ if !finished => Met::Waiting,
            Condition::Completed => Met::Never(match &dep.ending {
                Some(ending) => format!("{name} {ending}"),
                None => format!("{name} ended"),
            }),
            other => Met::Never(format!(
                "{name} ended before it was {}",
                if other == Condition::Started {
                    "started"
                } else {
                    other.as_str()
                }
            )),
        }
    }

    /// A new run of `i` started: its checks and watchdog start over.
    pub(super) fn health_spawned(&mut self, i: usize) {
        let now = Instant::now();
        let process = &self.plan.processes[i];
        self.health.status[i] = HealthStatus {
            status_text: self.health.status[i].status_text.take(),
            ..HealthStatus::default()
        };
        self.health.started[i] = Some(now);
        // Dependants waiting for it to be started may start.
        self.start_queue.changed(&self.graph, i);
        let watchdog_ms = process.watchdog_ms;
        if let Some(health) = &process.health {
            let interval = Duration::from_millis(health.interval_ms);
            self.arm_health(i, now + interval);
        }
        if let Some(ms) = watchdog_ms {
            self.health.pinged[i] = Some(now);
            self.timers.add(
                now + Duration::from_millis(ms),
                Deadline::Watchdog {
                    instance: i,
                    generation: self.instances[i].generation,
                },
            );
        }
    }

    /// `i`'s run ended: the check under way is dropped (an `exec` child is
    /// killed), and its deadlines are stale.
    pub(super) fn health_stopped(&mut self, i: usize) {
        self.health.seq[i] = 0;
        self.health.pinged[i] = None;
        self.drop_check(i);
    }

    fn drop_check(&mut self, i: usize) {
        match std::mem::take(&mut self.health.checks[i]) {
            InFlight::Idle => {}
            InFlight::Conn(conn, watched) => {
                if watched.is_some() {
                    self.events.remove(conn.fd());
                }
            }
            // Reaped when it exits; its pid stays known until then.
            InFlight::Exec(pid) => {
                let _ = killpg(pid, Signal::SIGKILL);
            }
        }
    }

    /// Arms `i`'s one health deadline at `at`; any earlier one is stale.
    fn arm_health(&mut self, i: usize, at: Instant) {
        self.health.next_seq += 1;
        let seq = self.health.next_seq;
        self.health.seq[i] = seq;
        self.timers.add(at, Deadline::Health { instance: i, seq });
    }

    /// `i`'s health deadline: the next check is due, or the one under way
    /// took longer than `timeout`.
    pub(super) fn health_due(&mut self, i: usize, seq: u64) {
        // A process stopping (on request, or for a restart) is in its
        // grace: not checked, as systemd does not while deactivating.
        if self.health.seq[i] != seq
            || self.shutdown.is_some()
            || self.instances[i].stop_requested
            || !matches!(self.instances[i].state, State::Running { .. })
        {
            return;
        }
        let Some(health) = &self.plan.processes[i].health else {
            return;
        };
        if matches!(self.health.checks[i], InFlight::Idle) {
            let timeout = Duration::from_millis(health.timeout_ms);
            self.arm_health(i, Instant::now() + timeout);
            self.start_check(i);
        } else {
            let why = format!("no answer within {}ms", health.timeout_ms);
            self.drop_check(i);
            self.check_done(i, Err(why));
        }
    }

    fn start_check(&mut self, i: usize) {
        let Some(health) = &self.plan.processes[i].health else {
            return;
        };
        let (target, ask) = match &health.check {
            HealthCheck::Exec { argv } => {
                // Where the process runs: its environment, cwd and user.
                let instance = &self.plan.processes[i].name;
                match self.runtime.spawn_check(instance, argv) {
                    Ok(pid) => {
                        self.health.exec_pids.insert(pid, i);
                        self.health.checks[i] = InFlight::Exec(pid);
                    }
                    Err(why) => self.check_done(i, Err(why)),
                }
                return;
            }
            HealthCheck::Tcp { address } => (Target::parse(false, address), Ask::Connect),
            HealthCheck::Connect { channel, .. } => (self.listener_target(channel), Ask::Connect),
            HealthCheck::Http {
                channel,
                address,
                path,
            } => {
                let target = match (channel, address) {
                    (Some(c), _) => self.listener_target(c),
                    (None, Some(a)) => Target::parse(false, a),
                    (None, None) => None,
                };
                let host = match &target {
                    Some(Target::Tcp(a)) => a.to_string(),
                    _ => "localhost".to_owned(),
                };
                let path = path.clone();
                (target, Ask::Http { path, host })
            }
        };
        let Some(target) = target else {
            self.check_done(i, Err("the address could not be resolved".into()));
            return;
        };
        match Attempt::start(&target, ask) {
            Ok((conn, step)) => {
                self.health.checks[i] = InFlight::Conn(conn, None);
                self.health_step(i, step);
            }
            Err(why) => self.check_done(i, Err(why)),
        }
    }

    /// The filled-in address of a listener `channel`.
    fn listener_target(&self, channel: &str) -> Option<Target> {
        let (unix, template) = self.health.listeners.get(channel)?;
        let address = self.runtime.fill(template)?;
        Target::parse(*unix, &address)
    }

    /// The health socket of `i` is ready (`write`: for writing).
    pub(super) fn health_event(&mut self, i: usize) {
        let step = match &mut self.health.checks[i] {
            InFlight::Conn(conn, _) => conn.advance(),
            _ => return,
        };
        self.health_step(i, step);
    }

    fn health_step(&mut self, i: usize, step: Step) {
        match step {
            Step::Wait { write } => {
                let InFlight::Conn(conn, watched) = &mut self.health.checks[i] else {
                    return;
                };
                if *watched == Some(write) {
                    return;
                }
                let was = watched.replace(write);
                let token = Token::Health(i, write);
                if self.events.rewatch(conn.fd(), token, write, was).is_err() {
                    self.drop_check(i);
                    self.check_done(i, Err("the check socket could not be watched".into()));
                }
            }
            Step::Served => {
                self.drop_check(i);
                self.check_done(i, Ok(()));
            }
            Step::Failed(why) => {
                self.drop_check(i);
                self.check_done(i, Err(why));
            }
        }
    }

    /// A child ipc-run did not spawn as an instance exited: an `exec` check
    /// (the outcome of its check) or a per-connection server instance.
    pub(super) fn other_child_exited(&mut self, pid: Pid, ending: &Ending) {
        let Some(i) = self.health.exec_pids.remove(&pid) else {
            self.connection_exited(pid, ending);
            return;
        };
        if !matches!(self.health.checks[i], InFlight::Exec(p) if p == pid) {
            return; // dropped: its run ended or it timed out
        }
        self.health.checks[i] = InFlight::Idle;
        let result = if ending.is_success() {
            Ok(())
        } else {
            Err(format!("the check {ending}"))
        };
        self.check_done(i, result);
    }

    /// A check of `i` ended: the next is due after the interval; the state
    /// moves.
    fn check_done(&mut self, i: usize, result: Result<(), String>) {
        let Some(health) = &self.plan.processes[i].health else {
            return;
        };
        // Ended while its process stops: neither counted nor followed by
        // another (its next run's checks start with it).
        if self.instances[i].stop_requested {
            return;
        }
        let (interval, retries) = (Duration::from_millis(health.interval_ms), health.retries);
        let start_period = Duration::from_millis(health.start_period_ms);
        self.arm_health(i, Instant::now() + interval);
        let name = self.plan.processes[i].name.clone();
        let status = &mut self.health.status[i];
        let why = match result {
            Ok(()) => {
                status.failures = 0;
                status.last_failure = None;
                if status.state != HealthState::Healthy {
                    tracing::debug!("{name}: {} -> healthy", status.state.as_str());
                    status.state = HealthState::Healthy;
                    self.lifecycle(i, Lifecycle::Healthy);
                }
                if !std::mem::replace(&mut self.health.healthy_once[i], true) {
                    self.start_queue.changed(&self.graph, i);
                    self.start_ready_instances();
                }
                return;
            }
            Err(why) => why,
        };
        let in_start_period = status.state == HealthState::Starting
            && self.health.started[i].is_some_and(|t| t.elapsed() < start_period);
        status.last_failure = Some(why.clone());
        if in_start_period || status.state == HealthState::Unhealthy {
            return;
        }
        status.failures += 1;
        if status.failures < retries {
            return;
        }
        status.state = HealthState::Unhealthy;
        self.message(&format!(
            "{name}: unhealthy: {retries} health check(s) failed in a row, the last: {why}; killing it (SIGKILL)"
        ));
        self.lifecycle(i, Lifecycle::Unhealthy(why));
        if let State::Running { pid, .. } = self.instances[i].state {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }

    /// A notify datagram from `i`: `WATCHDOG=1` and `STATUS=`.
    pub(super) fn health_notified(&mut self, i: usize, watchdog: bool, status: Option<&str>) {
        if watchdog && self.health.pinged[i].is_some() {
            self.health.pinged[i] = Some(Instant::now());
        }
        if let Some(text) = status {
            tracing::debug!("{}: STATUS={text}", self.plan.processes[i].name);
            self.health.status[i].status_text = Some(text.to_owned());
        }
    }

    /// `i`'s watchdog timer: re-armed for a period after the last ping, or,
    /// when that period is over, the process is unhealthy: SIGABRT.
    pub(super) fn watchdog_due(&mut self, i: usize, generation: u64) {
        let (Some(ms), Some(last)) = (self.plan.processes[i].watchdog_ms, self.health.pinged[i])
        else {
            return;
        };
        let State::Running { pid, .. } = self.instances[i].state else {
            return;
        };
        // Its grace, when stopping, is not cut short by a missed ping.
        if self.instances[i].generation != generation
            || self.shutdown.is_some()
            || self.instances[i].stop_requested
        {
            return;
        }
        let due = last + Duration::from_millis(ms);
        if Instant::now() < due {
            self.timers.add(
                due,
                Deadline::Watchdog {
                    instance: i,
                    generation,
                },
            );
            return;
        }
        self.health.pinged[i] = None;
        self.health.status[i].state = HealthState::Unhealthy;
        let name = self.plan.processes[i].name.clone();
        self.message(&format!(
            "{name}: watchdog: no WATCHDOG=1 within {ms}ms; aborting it (SIGABRT)"
        ));
        self.lifecycle(
            i,
            Lifecycle::Unhealthy(format!("no WATCHDOG=1 within {ms}ms")),
        );
        let _ = kill(pid, Signal::SIGABRT);
    }
}

/// Spawns the `exec` check `argv` as ipc-run itself runs (its environment,
/// cwd and user), in a process group of its own, stdio on `/dev/null`: for
/// a runtime that cannot run it as its process ([`Runtime::spawn_check`]).
pub(super) fn spawn_plain(argv: &[String]) -> Result<Pid, String> {
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    // The supervisor reaps it by pid (`other_child_exited`).
    Ok(Pid::from_raw(child.id() as i32))
}
