//! The supervisor: runs a launched plan as one unit.
//!
//! One thread, one epoll set ([`events`]) in which every fd is registered
//! once: a signalfd (every catchable signal but job control and faults,
//! blocked in the calling thread), a pidfd per process (exits in the order
//! they happened), a timerfd for every deadline, the notify socket,
//! readiness pipes, the log pipes, and ipc-run's outputs while records wait
//! for them. Nothing wakes it but an event, so it uses no CPU while the
//! processes are idle, and no event costs a pass over every process: what
//! can start or stop next is found through the start graph ([`order`]).
//! `docs/supervision.md` states the semantics: start order and readiness,
//! restarts, shutdown, logs and the exit status rule ([`status`]).
//!
//! The launcher is seen through [`Runtime`], so the loop is independent of
//! how processes are wired and can be driven by a plain spawner in tests.

pub(crate) mod accept;
pub(crate) mod control;
pub(crate) mod cycles;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod logfile;
pub(crate) mod logs;
pub(crate) mod missing;
pub(crate) mod notify;
pub(crate) mod order;
pub(crate) mod policy;
mod probe;
pub(crate) mod rank_lines;
pub(crate) mod rank_pipes;
mod reload;
pub(crate) mod remote;
pub mod sd_notify;
pub(crate) mod signal_edges;
pub(crate) mod status;
pub(crate) mod timers;

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::epoll::EpollFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

use crate::plan::{End, FdRole, Plan, Readiness};
use crate::topology::Condition;
use cycles::CycleWatch;
use events::{Events, Token};
use logs::{LineBuffer, LogWriter, Stream};
use order::{Graph, StartQueue, StopLevels};
use policy::Decision;
use signal_edges::SignalEdges;
pub use status::{Ending, InstanceSummary, LAUNCH_FAILURE};
use status::{Failure, StatusInputs};
use timers::{Deadline, Timers};

/// How long log pipes are still read after the last process ended, when a
/// stray descendant keeps one open.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest a process whose turn to be stopped has come is left to end on
/// its own, when it has already closed every channel end it writes (a
/// pipeline stage finishing): at most its stop timeout.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

/// The relay's read buffer: a grown log pipe's worth (one read per pipe
/// per turn, so one chatty process cannot starve the others).
const READ_SIZE: usize = logs::READ_SIZE;

/// Signals ipc-run passes on to processes that ask for them; the planner
/// accepts the same ones in `forward_signals` ([`crate::plan::signals::FORWARDABLE`]).
const FORWARDABLE: [Signal; 4] = [
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Signals that stop the run gracefully, as SIGTERM does (exit status
/// 128+n): the interrupts, and the ones whose default action would end
/// ipc-run without cleanup but that mean "stop" (a quit key, an external
/// abort, a power failure, the soft CPU limit).
const STOP_SIGNALS: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGQUIT,
    Signal::SIGABRT,
    Signal::SIGPWR,
    Signal::SIGXCPU,
];

/// Signals left at their default action: job control (stopping and
/// continuing ipc-run is the shell's business) and the faults, which mean a
/// bug in ipc-run itself (a blocked fault signal kills anyway).
const DEFAULT_ACTION: [Signal; 8] = [
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGCONT,
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGILL,
];

/// The same stop signal again from the leader of ipc-run's process group
/// within this window is one request, not a second interrupt: `timeout`
/// signals its child and then its process group, which it leads.
const REPEAT_WINDOW: Duration = Duration::from_secs(1);

/// Whether to colour the name prefixes of relayed lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// When the stream is a terminal and `NO_COLOR` is unset or empty.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    fn resolve(self, stream: BorrowedFd<'_>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && nix::unistd::isatty(stream).unwrap_or(false)
            }
        }
    }
}

/// Options of a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Colour of the relayed log prefixes.
    pub color: ColorChoice,
    /// Where the run directory is created (the launcher's default if unset).
    pub runtime_root: Option<std::path::PathBuf>,
    /// Don't print the per-process summary on stderr at the end.
    pub quiet_summary: bool,
    /// Give processes whose stdin is not wired ipc-run's own stdin instead
    /// of `/dev/null`.
    pub stdin_is_own: bool,
    /// `RLIMIT_NOFILE` (soft, hard) as ipc-run found it at start, restored
    /// in every child.
    pub nofile: Option<(u64, u64)>,
    /// Also append each instance's relayed output to files in this
    /// directory, which must exist ([`logfile`]).
    pub log_dir: Option<std::path::PathBuf>,
    /// How the files in `log_dir` are rotated.
    pub log_rotation: logfile::Rotation,
    /// How relayed lines are written to ipc-run's outputs.
    pub log_format: logs::LogFormat,
    /// Relayed lines and log file lines start with an RFC 3339 timestamp.
    pub timestamps: bool,
    /// Bytes of each instance's last records kept in memory for `ipc-run
    /// logs` ([`logs::Recent`]); 0 keeps none.
    pub recent_log_bytes: usize,
    /// Print the summary as one JSON object on stderr instead of lines
    /// ([`status::summary_json`]).
    pub summary_json: bool,
    /// Where to write `ready RUN_ID` once every process is ready
    /// (`run --detach`, `docs/operate.md`).
    pub announce_ready: Option<Arc<OwnedFd>>,
    /// Speak `sd_notify` to the manager named by ipc-run's own
    /// `NOTIFY_SOCKET` ([`sd_notify`]); off in library use unless asked.
    pub notify_manager: bool,
    /// The host group this run is (`run --host`), for status lines.
    pub group: Option<String>,
    /// The listeners on other hosts this group reaches, with the address
    /// each was resolved to (`run --host`, [`crate::launch::group`]).
    pub remote_listeners: Vec<(crate::launch::group::RemoteListener, std::net::SocketAddr)>,
    /// Which instances wait for which of them before they start.
    pub remote_waits: Vec<crate::launch::group::RemoteWait>,
    /// The channels whose listener here serves other hosts' clients.
    pub cross_listeners: std::collections::HashSet<String>,
    /// What the plan was made from, for `ipc-run reload` without a file.
    pub source: Option<crate::control::protocol::RunSource>,
}

/// What a run came to.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// ipc-run's exit status, by the rule in [`status`].
    pub exit_code: i32,
    /// One record per instance, in plan order.
    pub summary: Vec<InstanceSummary>,
    /// Relayed log records that could not be written (`/dev/full`, EPIPE).
    pub log_write_errors: u64,
}

/// Why a run could not be supervised at all.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// Setting up the event loop failed.
    #[error("failed to set up supervision: {what}: {errno}")]
    Setup {
        /// The step that failed.
        what: &'static str,
        /// The error.
        errno: Errno,
    },
    /// Preparing the run (resources, run directory) failed.
    #[error("failed to prepare the run: {0}")]
    Prepare(#[from] crate::launch::LaunchError),
    /// A `--log-dir` directory or file could not be used.
    #[error("failed to prepare the run: {0}")]
    LogFile(#[from] logs::LogDirError),
}

/// Why the runtime could not start an instance. The message reads after
/// "INSTANCE: failed to start: ", so it does not name the instance.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The launcher could not start it (the program by name and errno, or
    /// the step that failed).
    #[error("{}", launch_cause(.0))]
    Launch(#[from] crate::launch::LaunchError),
    /// A plain spawner could not execute the program.
    #[error("{program}: {source}")]
    Program {
        /// The program as written.
        program: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A launch error without the instance's name, which the supervisor puts
/// in front itself.
fn launch_cause(error: &crate::launch::LaunchError) -> String {
    match error {
        crate::launch::LaunchError::Spawn(spawn) => spawn.to_string(),
        other => other.to_string(),
    }
}

impl SuperviseError {
    /// The exit code the CLI should use: always [`LAUNCH_FAILURE`].
    pub fn exit_code(&self) -> i32 {
        LAUNCH_FAILURE
    }
}

/// The most a closing log stream reads before it is closed: the largest a
/// pipe holds by default (`/proc/sys/fs/pipe-max-size`), so everything its
/// writers had written is relayed, and a writer that goes on cannot keep
/// the loop reading.
const MAX_CLOSING_DRAIN: usize = 1 << 20;

fn setup(what: &'static str) -> impl FnOnce(Errno) -> SuperviseError {
    move |errno| SuperviseError::Setup { what, errno }
}

/// A process as the launcher hands it over.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid; it leads its own process group.
    pub pid: Pid,
    /// Read end of its stdout, when that is not wired to a channel.
    pub stdout: Option<OwnedFd>,
    /// Read end of its stderr, when that is not wired to a channel.
    pub stderr: Option<OwnedFd>,
    /// Read end of its readiness pipe (`ready = { fd = N }`).
    pub ready_fd: Option<OwnedFd>,
}

/// The launcher as the supervisor uses it.
pub trait Runtime {
    /// Spawns (or respawns) `instance`; the error names program and errno.
    fn spawn(&mut self, instance: &str) -> Result<Spawned, StartError>;
    /// `instance` is finished for good: drop the held copies of its channel
    /// ends, so its peers see EOF.
    fn release_ends_of(&mut self, instance: &str);
    /// The process of `instance` has been reaped: its pid may be reused, so
    /// nothing may resolve to it any more.
    fn reaped(&mut self, _instance: &str) {}
    /// The sd_notify socket, when some process uses `ready = "notify"`.
    fn notify_socket(&self) -> Option<BorrowedFd<'_>>;
    /// The listener ipc-run accepts on for `instance`, when it is a
    /// per-connection server ([`accept`]).
    fn connection_listener(&self, _instance: &str) -> Option<BorrowedFd<'_>> {
        None
    }
    /// Spawns one instance of the per-connection server `instance` with
    /// `connection` on fds 0 and 1.
    fn spawn_connection(
        &mut self,
        instance: &str,
        _connection: OwnedFd,
    ) -> Result<Spawned, StartError> {
        self.spawn(instance)
    }
    /// How full the pipe or FIFO `channel` is, (bytes buffered, capacity),
    /// read on a read end the runtime holds; `None` when it holds none.
    fn pipe_fill(&self, _channel: &str) -> Option<(u64, u64)> {
        None
    }
    /// What ipc-run sees of `channel`'s traffic (a ring's positions, the
    /// messages in a queue); `None` when the runtime sees nothing.
    fn traffic(&self, _channel: &str) -> Option<crate::launch::ChannelTraffic> {
        None
    }
    /// Spawns `argv`, the `exec` health check of `instance`, in its own
    /// process group with stdio on `/dev/null`, and returns its pid (the
    /// supervisor reaps it). The launcher runs it as `instance` runs
    /// (environment, working directory, identity); this default, for a
    /// runtime that knows none of that, runs it as ipc-run runs.
    fn spawn_check(&self, _instance: &str, argv: &[String]) -> Result<Pid, String> {
        health::spawn_plain(argv)
    }
    /// `template` with the run's placeholders filled in (the address a
    /// readiness probe reaches); `None` when the runtime has no values.
    fn fill(&self, _template: &str) -> Option<String> {
        None
    }

    /// The run id and the run's control socket, bound and listening
    /// ([`crate::control`]); `None` where the runtime has no run directory
    /// or its path is too long for a socket address.
    fn control_socket(&mut self) -> Result<Option<(String, OwnedFd)>, crate::launch::LaunchError> {
        Ok(None)
    }
    /// A non-blocking write end of its own on the pipe `channel`, into
    /// which an MPI rank's lines are relayed ([`rank_pipes`]).
    fn relay_end(&self, _channel: &str) -> Option<OwnedFd> {
        None
    }

    /// Whether `instance` can be started again with its channels (the
    /// runtime still holds its channel ends).
    fn can_respawn(&self, _instance: &str) -> bool {
        true
    }
    /// Takes back from the running `pid` of `instance` the channel ends the
    /// runtime gave up at its spawn, so it can be restarted
    /// ([`crate::launch::Launched::take_back_ends`]).
    fn take_back_ends(&mut self, _instance: &str, _pid: Pid) -> Result<(), String> {
        Err("this run cannot take channel ends back".to_owned())
    }
    /// Takes a new plan laid out on the current one's slots (`ipc-run
    /// reload`, [`reload`]): makes the added channels, removes the removed
    /// ones. On error nothing has changed.
    fn reload(
        &mut self,
        _plan: &Plan,
        _slots: &crate::launch::reload::Slots,
    ) -> Result<(), String> {
        Err("this run cannot take a new plan".to_owned())
    }
    /// Why a new plan laid out on the current one's slots cannot be wired
    /// ([`crate::launch::Launched::check_reload`]); nothing is changed.
    fn check_reload(
        &mut self,
        _plan: &Plan,
        _slots: &crate::launch::reload::Slots,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not started yet (waiting for its turn or its dependencies).
    Pending,
    /// Running as `pid` since `since`.
    Running { pid: Pid, since: Instant },
    /// A per-connection server accepting since `since` ([`accept`]): its
    /// instances run under their own pids.
    Accepting { since: Instant },
    /// Waiting to be restarted.
    Backoff,
    /// Done for good.
    Finished,
}

#[derive(Debug)]
struct Instance {
    state: State,
    /// Some run of it declared readiness: sticky, what `after` waits for.
    ready: bool,
    /// Its current run declared readiness: what the senders of its signals
    /// wait for, on their first start and on every restart.
    ready_now: bool,
    restarts: u32,
    /// Restarts since the last run that lasted [`policy::STABLE_RUN`]: what
    /// the backoff and `restart_limit` count.
    streak: u32,
    generation: u64,
    runtime: Duration,
    ending: Option<Ending>,
    stop_requested: bool,
    stopped: bool,
    failed: bool,
    ready_pipe: Option<OwnedFd>,
    /// What its current run showed of readiness, for a timeout's message.
    ready_seen: ReadySeen,
    /// Someone waits on its readiness (`after`, or a sender of signals).
    awaited: bool,
    /// Some process signals it: the readiness of each of its runs is
    /// awaited, not only the first.
    signalled: bool,
    /// Being stopped because a receiver of its signals was restarted: it is
    /// started again at once, with the new pid.
    follow_receiver: bool,
    /// Its restart waits for a receiver of its signals to run again.
    waiting_for_receiver: bool,
    /// The program its shell said it could not find, in the current run
    /// ([`missing`]).
    not_found: Option<String>,
    /// What the control socket asked of its current run ([`control`]).
    operator: Option<control::Intent>,
    /// Stopped on request: waits, channels kept, for a `start`.
    held: bool,
    /// When its automatic restart is due, while it waits for it.
    backoff_until: Option<Instant>,
}

impl Instance {
    /// An instance not started yet; `awaited` when another waits on its
    /// readiness.
    fn pending(awaited: bool, signalled: bool) -> Instance {
        Instance {
            state: State::Pending,
            ready: false,
            ready_now: false,
            restarts: 0,
            streak: 0,
            generation: 0,
            runtime: Duration::ZERO,
            ending: None,
            stop_requested: false,
            stopped: false,
            failed: false,
            ready_pipe: None,
            ready_seen: ReadySeen::default(),
            awaited: awaited || signalled,
            signalled,
            follow_receiver: false,
            waiting_for_receiver: false,
            not_found: None,
            operator: None,
            held: false,
            backoff_until: None,
        }
    }
}

/// What a run showed of its readiness before it was ready.
#[derive(Debug, Default)]
struct ReadySeen {
    /// Bytes read from the readiness fd, none of them a newline.
    bytes: usize,
    /// The readiness fd was closed (EOF).
    closed: bool,
    /// Notify datagrams without `READY=1`.
    datagrams: u32,
    /// The last `STATUS=` among them.
    status: Option<String>,
}

impl ReadySeen {
    /// Why a run was not ready within `timeout_ms`: what was awaited, and
    /// what was seen instead.
    fn why(&self, ready: &Readiness, timeout_ms: u64) -> String {
        let within = format!("{timeout_ms}ms");
        let seen = self.seen(ready);
        match ready {
            Readiness::Notify => format!("no READY=1 on $NOTIFY_SOCKET within {within}; {seen}"),
            Readiness::Fd { fd } => format!("no newline on fd {fd} within {within}; {seen}"),
            Readiness::Started => format!("not started within {within}"),
        }
    }

    /// What was seen instead of the readiness awaited.
    fn seen(&self, ready: &Readiness) -> String {
        match ready {
            Readiness::Notify => match (self.datagrams, &self.status) {
                (0, _) => "received nothing".to_owned(),
                (n, None) => format!("received {n} datagram(s) without READY=1"),
                (n, Some(status)) => {
                    format!("received {n} datagram(s) without READY=1, the last STATUS={status}")
                }
            },
            Readiness::Fd { fd } => {
                let mut seen = match self.bytes {
                    0 => "nothing written".to_owned(),
                    n => format!("{n} bytes without a newline"),
                };
                if self.closed {
                    seen.push_str(&format!(", then fd {fd} was closed"));
                }
                seen
            }
            Readiness::Started => String::new(),
        }
    }
}

#[derive(Debug)]
struct LogStream {
    instance: usize,
    stream: Stream,
    fd: OwnedFd,
    buffer: LineBuffer,
}

/// Shutdown by level ([`StopLevels`]): an instance gets its stop signal
/// once every instance that waits for it is finished; the others are
/// stopped together.
#[derive(Debug, Default)]
struct Shutdown {
    levels: StopLevels,
    /// Stopping released instances now: a finish on the way only adds to
    /// the released ones, which the running pass takes.
    advancing: bool,
    escalated: bool,
}

/// The log streams by slot; a closed stream's slot is reused, so a slot
/// number (its epoll token) names one stream while it is open.
#[derive(Debug, Default)]
struct Streams {
    slots: Vec<Option<LogStream>>,
    free: Vec<usize>,
    open: usize,
    /// Each instance's current stderr stream, for [`Supervisor::drain_stderr_of`].
    stderr_of: Vec<Option<usize>>,
    /// Per output: its streams are parked (not read) while it is stalled,
    /// armed again when it drains.
    parked: [bool; 2],
}

impl Streams {
    fn insert(&mut self, stream: LogStream) -> usize {
        self.open += 1;
        let (instance, kind) = (stream.instance, stream.stream);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(stream);
                slot
            }
            None => {
                self.slots.push(Some(stream));
                self.slots.len() - 1
            }
        };
        if kind == Stream::Stderr {
            self.stderr_of[instance] = Some(slot);
        }
        slot
    }

    fn take(&mut self, slot: usize) -> Option<LogStream> {
        let stream = self.slots.get_mut(slot)?.take()?;
        self.open -= 1;
        self.free.push(slot);
        if self.stderr_of[stream.instance] == Some(slot) {
            self.stderr_of[stream.instance] = None;
        }
        Some(stream)
    }

    fn get(&self, slot: usize) -> Option<&LogStream> {
        self.slots.get(slot)?.as_ref()
    }
}

struct Supervisor<'a, R: Runtime> {
    /// The plan run: the one given, until a reload lays a new one on its
    /// slots ([`reload`]).
    plan: std::borrow::Cow<'a, Plan>,
    runtime: &'a mut R,
    instances: Vec<Instance>,
    /// Each instance's `after` as indices, resolved once.
    after: Vec<Vec<usize>>,
    /// Who waits for whom (`after` and signal edges), both ways.
    graph: Graph,
    /// Pending instances to look at again, in start order.
    start_queue: StartQueue,
    /// `plan.stop_order` as instance indices.
    stop_sequence: Vec<usize>,
    /// How many instances are finished for good.
    finished: usize,
    /// How many instances other than brokers ([`is_broker`]) are not
    /// finished yet: at zero, the brokers (a private bus) have no one left
    /// to serve and are stopped.
    declared_left: usize,
    by_pid: HashMap<Pid, usize>,
    /// A pidfd per running process, registered in `events` as
    /// [`Token::Exit`]: epoll's ready list keeps the order in which exits
    /// happened.
    pidfds: HashMap<Pid, OwnedFd>,
    events: Events,
    streams: Streams,
    /// Which outputs are registered for EPOLLOUT (while records wait).
    output_armed: [bool; 2],
    /// Which rank pipes are registered for EPOLLOUT ([`rank_pipes`]).
    pipe_armed: Vec<bool>,
    /// Log streams not read while a rank pipe they feed is full.
    pipe_parked: Vec<usize>,
    /// Outputs epoll cannot watch (a regular file): always writable, so a
    /// backlog there makes the loop poll instead of sleep.
    output_unwatchable: [bool; 2],
    /// A SIGCHLD batch stopped at a supervised zombie whose pidfd event is
    /// still queued: look for orphans again after that exit is handled.
    orphans_behind: bool,
    timers: Timers,
    signals: SignalFd,
    timer: TimerFd,
    /// The deadline the timerfd is armed for, so that an unchanged one is
    /// not armed again on every wake-up.
    armed: Option<Instant>,
    notify: Option<OwnedFd>,
    writer: LogWriter,
    failures: Vec<Failure>,
    shutdown: Option<Shutdown>,
    interrupted_by: Option<i32>,
    /// The last stop signal read: its number, its sender's pid (0 from the
    /// kernel, e.g. a terminal's ^C) and when.
    last_stop_signal: Option<(i32, u32, Instant)>,
    drain_deadline: Option<Instant>,
    scratch: Vec<u8>,
    signal_edges: SignalEdges,
    cycles: CycleWatch,
    /// Per-connection servers and their instances.
    connections: accept::Connections,
    /// Readiness probes of server-bound endpoints ([`probe`]).
    probes: probe::Probes,
    control: control::Control,
    /// What each instance waits for of each of its `after`, in that order.
    conditions: Vec<Vec<Condition>>,
    /// Health checks and watchdogs ([`health`]).
    health: health::Health,
    /// The manager that started ipc-run, if it listens ([`sd_notify`]).
    service: sd_notify::ServiceNotify,
    /// Instances before this one were ready when last looked at
    /// (`control::all_ready_so_far`).
    ready_cursor: usize,
    /// The host group this run is, for status lines.
    group: Option<String>,
    /// Listeners on other hosts that instances wait for ([`remote`]).
    remote: remote::Remote,
}

/// Runs `plan`: launches it, supervises it until it ends, cleans up.
pub fn run(plan: &Plan, options: &RunOptions) -> Result<RunOutcome, SuperviseError> {
    launcher::run(plan, options)
}

mod launcher;

/// Supervises `plan` with processes spawned by `runtime` until the run ends.
/// The caller prepares and cleans up the runtime.
///
/// Blocks every catchable signal but job control and faults
/// ([`supervised_signals`]) in the calling thread for the duration and
/// reads them from a signalfd:
/// call it from the main thread before any other thread exists (as the CLI
/// does), or those signals may be delivered to another thread and missed.
/// Makes the process a child subreaper and reaps every child it gets
/// (`waitpid(-1)`), orphaned grandchildren included.
pub fn supervise<R: Runtime>(
    plan: &Plan,
    options: &RunOptions,
    runtime: &mut R,
) -> Result<RunOutcome, SuperviseError> {
    crate::sys::signals::prepare_supervisor_dispositions().map_err(setup("signal dispositions"))?;
    nix::sys::prctl::set_child_subreaper(true).map_err(setup("PR_SET_CHILD_SUBREAPER"))?;
    let mask = supervised_signals();
    let old_mask = mask
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .map_err(setup("blocking signals"))?;
    let result = supervise_blocked(plan, options, runtime, &mask);
    discard_pending(&mask);
    let _ = old_mask.thread_set_mask();
    result
}

/// The signals the supervisor blocks and reads from its signalfd: every
/// catchable one (real-time signals included) but those left at their
/// default action. Each read signal stops the run ([`STOP_SIGNALS`]), is
/// forwarded ([`FORWARDABLE`]), reaps (SIGCHLD) or is ignored; none can
/// end ipc-run without cleanup.
fn supervised_signals() -> SigSet {
    let mut mask = SigSet::all();
    for signal in DEFAULT_ACTION
        .into_iter()
        .chain([Signal::SIGKILL, Signal::SIGSTOP])
    {
        mask.remove(signal);
    }
    mask
}

/// Consumes pending signals of `mask` (blocked in this thread), so that
/// unblocking them does not act on signals that were already handled.
fn discard_pending(mask: &SigSet) {
    if let Ok(fd) = SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        while let Ok(Some(_)) = fd.read_signal() {}
    }
}

fn supervise_blocked<R: Runtime>(
    plan: &Plan,
    options: &RunOptions,
    runtime: &mut R,
    mask: &SigSet,
) -> Result<RunOutcome, SuperviseError> {
    let signals = SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(setup("signalfd"))?;
    let timer = TimerFd::new(
        ClockId::CLOCK_MONOTONIC,
        TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK,
    )
    .map_err(setup("timerfd"))?;
    let events = Events::new().map_err(setup("epoll"))?;
    events
        .add(&signals, Token::Signals)
        .map_err(setup("epoll_ctl"))?;
    events
        .add(&timer, Token::Timer)
        .map_err(setup("epoll_ctl"))?;
    let notify = own_notify_socket(runtime)?;
    if let Some(socket) = &notify {
        events
            .add(socket, Token::Notify)
            .map_err(setup("epoll_ctl"))?;
    }
    let mut writer = log_writer(plan, options)?;
    let (pipes, missing) = logs::RankPipes::new(plan, |channel| runtime.relay_end(channel));
    for channel in missing {
        writer.message(&format!(
            "ipc-run: channel {channel}: no write end to relay a rank's lines into; they stay in the log"
        ));
    }
    let writer = writer.with_rank_pipes(pipes);
    let control = control_server(runtime, &events, options)?;
    let mut supervisor = Supervisor::new(plan, runtime, signals, timer, notify, writer, events);
    supervisor.control = control;
    supervisor.group = options.group.clone();
    if options.announce_ready.is_some() {
        supervisor.await_every_readiness();
    }
    if !options.remote_waits.is_empty() {
        let index: HashMap<&str, usize> = plan
            .processes
            .iter()
            .enumerate()
            .map(|(i, p)| (&*p.name, i))
            .collect();
        supervisor.remote = remote::Remote::new(
            plan.processes.len(),
            &options.remote_listeners,
            &options.remote_waits,
            |name| index.get(name).copied(),
        );
    }
    if options.notify_manager {
        supervisor.service = sd_notify::ServiceNotify::from_env();
        let count = plan.processes.len();
        supervisor
            .service
            .status(&format!("starting {count} process(es)"));
        supervisor.start_manager_watchdog();
    }
    // A SIGINT or SIGTERM that came while the run was being prepared stops
    // it before anything starts.
    supervisor.read_signals(&[]);
    supervisor.start_ready_instances();
    if supervisor.cycles.active() {
        supervisor.timers.add(
            Instant::now() + cycles::CHECK_INTERVAL,
            Deadline::CycleCheck,
        );
    }
    supervisor.event_loop()?;
    // Every process ended without a stop being asked: the run stops now.
    supervisor.tell_manager_stopping();
    Ok(supervisor.outcome(options))
}

/// The control socket's server, registered in `events` ([`control`]).
/// Failing to make it fails the run, as any other object of the run does.
fn control_server<R: Runtime>(
    runtime: &mut R,
    events: &Events,
    options: &RunOptions,
) -> Result<control::Control, SuperviseError> {
    let mut control = control::Control {
        started: Some(Instant::now()),
        announce: options.announce_ready.clone(),
        ..control::Control::default()
    };
    control.reloads.source = options.source.clone();
    if let Some((run_id, socket)) = runtime.control_socket()? {
        control.run_id = run_id;
        let server =
            crate::control::server::Server::new(socket).map_err(setup("control socket"))?;
        events
            .add(server.fd(), Token::Control)
            .map_err(setup("epoll_ctl"))?;
        control.server = Some(server);
    }
    Ok(control)
}

/// Like [`setup`], for the `std::io::Error` of a std call.
fn setup_io(what: &'static str) -> impl FnOnce(std::io::Error) -> SuperviseError {
    move |e| SuperviseError::Setup {
        what,
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
    }
}

/// The supervisor's own copy of the runtime's notify socket, set up to
/// report each sender's pid and never to block the loop.
fn own_notify_socket<R: Runtime>(runtime: &R) -> Result<Option<OwnedFd>, SuperviseError> {
    let Some(fd) = runtime.notify_socket() else {
        return Ok(None);
    };
    let owned = fd.try_clone_to_owned().map_err(setup_io("notify socket"))?;
    notify::enable_credentials(owned.as_fd()).map_err(setup("SO_PASSCRED"))?;
    set_nonblocking(owned.as_fd());
    Ok(Some(owned))
}

/// The writer of relayed lines and messages, on copies of ipc-run's
/// stdout and stderr (and into `log_dir` when set).
fn log_writer(plan: &Plan, options: &RunOptions) -> Result<LogWriter, SuperviseError> {
    let stdout = own_output(std::io::stdout().as_fd())?;
    let stderr = own_output(std::io::stderr().as_fd())?;
    let color = [
        options.color.resolve(stdout.as_fd()),
        options.color.resolve(stderr.as_fd()),
    ];
    let names: Vec<&str> = plan.processes.iter().map(|p| p.name.as_ref()).collect();
    let processes: Vec<&str> = plan.processes.iter().map(|p| p.process.as_ref()).collect();
    let mut writer = LogWriter::new(&names, stdout, stderr, color)
        .with_stdout_shared(logs::plan_writes_stdout(plan))
        .with_format(options.log_format, options.timestamps, &names, &processes)
        .with_recent(names.len(), options.recent_log_bytes)
        .with_ranks(plan);
    if let Some(dir) = &options.log_dir {
        writer = writer.with_log_dir(dir, &names, options.log_rotation)?;
    }
    Ok(writer)
}

/// ipc-run's own handle on one of its outputs. A pipe or terminal is
/// opened again through `/proc/self/fd`, which gives an open file
/// description of ipc-run's own, made non-blocking: O_NONBLOCK on the
/// shared one would reach the processes wired to the same stream. Anything
/// else (a regular file, which does not block; a socket, which the writer
/// sends to with `MSG_DONTWAIT`; a pipe without a reader, which cannot be
/// opened) is duplicated as it is.
fn own_output(fd: BorrowedFd<'_>) -> Result<OwnedFd, SuperviseError> {
    use nix::sys::stat::SFlag;
    use std::os::fd::AsRawFd;
    if let Ok(stat) = nix::sys::stat::fstat(fd) {
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFIFO || kind == SFlag::S_IFCHR {
            let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
            let flags = OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
            if let Ok(own) = nix::fcntl::open(path.as_str(), flags, nix::sys::stat::Mode::empty()) {
                return Ok(own);
            }
        }
    }
    fd.try_clone_to_owned()
        .map_err(setup_io("duplicating stdout/stderr"))
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
        let _ = fcntl(fd, FcntlArg::F_SETFL(flags));
    }
}

fn ending_of(status: WaitStatus) -> Option<(Pid, Ending)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid, Ending::Exited(code))),
        WaitStatus::Signaled(pid, signal, core_dumped) => Some((
            pid,
            Ending::Signaled {
                signal: signal as i32,
                core_dumped,
            },
        )),
        _ => None,
    }
}

impl<'a, R: Runtime> Supervisor<'a, R> {
    /// A supervisor with every instance pending and nothing started yet.
    fn new(
        plan: &'a Plan,
        runtime: &'a mut R,
        signals: SignalFd,
        timer: TimerFd,
        notify: Option<OwnedFd>,
        writer: LogWriter,
        events: Events,
    ) -> Supervisor<'a, R> {
        let index: HashMap<&str, usize> = plan
            .processes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_ref(), i))
            .collect();
        let indices_of = |names: &'a [Arc<str>]| -> Vec<usize> {
            names
                .iter()
                .filter_map(|name| index.get(&**name).copied())
                .collect()
        };
        let count = plan.processes.len();
        let after: Vec<Vec<usize>> = plan
            .processes
            .iter()
            .map(|p| indices_of(&p.after))
            .collect();
        let conditions: Vec<Vec<Condition>> = plan
            .processes
            .iter()
            .map(|p| {
                p.after
                    .iter()
                    .map(|name| {
                        p.conditions
                            .iter()
                            .find(|c| c.instance == *name)
                            .map_or(Condition::Ready, |c| c.condition)
                    })
                    .collect()
            })
            .collect();
        // Only a wait for `ready` is bounded by the dependency's ready_timeout.
        let mut awaited = vec![false; count];
        for (deps, conds) in after.iter().zip(&conditions) {
            for (&dep, &condition) in deps.iter().zip(conds) {
                awaited[dep] |= condition == Condition::Ready;
            }
        }
        let signal_edges = SignalEdges::new(plan);
        // A sender waits for its receivers as for its `after`.
        let graph = Graph::new(count, |i| {
            let mut waits = after[i].clone();
            waits.extend_from_slice(signal_edges.receivers_of(i));
            waits
        });
        let start_queue = StartQueue::new(count, indices_of(&plan.start_order));
        let stop_sequence = indices_of(&plan.stop_order);
        let instances = awaited
            .into_iter()
            .enumerate()
            .map(|(i, awaited)| Instance::pending(awaited, !signal_edges.senders_of(i).is_empty()))
            .collect();
        Supervisor {
            plan: std::borrow::Cow::Borrowed(plan),
            runtime,
            instances,
            after,
            graph,
            start_queue,
            stop_sequence,
            finished: 0,
            declared_left: plan.processes.iter().filter(|p| !is_broker(p)).count(),
            by_pid: HashMap::new(),
            pidfds: HashMap::new(),
            events,
            streams: Streams {
                stderr_of: vec![None; count],
                ..Streams::default()
            },
            output_armed: [false; 2],
            pipe_armed: Vec::new(),
            pipe_parked: Vec::new(),
            output_unwatchable: [false; 2],
            orphans_behind: false,
            timers: Timers::default(),
            signals,
            timer,
            armed: None,
            notify,
            writer,
            failures: Vec::new(),
            shutdown: None,
            interrupted_by: None,
            last_stop_signal: None,
            drain_deadline: None,
            scratch: vec![0; READ_SIZE],
            signal_edges,
            cycles: CycleWatch::new(plan),
            connections: accept::Connections::default(),
            probes: probe::Probes::new(plan),
            control: control::Control::default(),
            conditions,
            health: health::Health::new(plan),
            service: sd_notify::ServiceNotify::default(),
            ready_cursor: 0,
            group: None,
            remote: remote::Remote::default(),
        }
    }
}

impl<R: Runtime> Supervisor<'_, R> {
    fn message(&mut self, text: &str) {
        self.writer.message(&format!("ipc-run: {text}"));
    }

    fn name(&self, instance: usize) -> &str {
        &self.plan.processes[instance].name
    }

    /// `run --detach` waits for every instance to be ready, so each one's
    /// readiness is awaited as an `after` dependant's is: bounded by its
    /// `ready_timeout`, past which the run fails (status 3, the reason on
    /// the waiting command's stderr), where a process that never reported
    /// ready held the command forever.
    fn await_every_readiness(&mut self) {
        for (inst, process) in self.instances.iter_mut().zip(&self.plan.processes) {
            inst.awaited |= process.ready != Readiness::Started;
        }
    }

    /// Whether instance `i` is the one `exit_code_from` follows: the plan
    /// names the declared process, whose one instance is `name#0` when
    /// `replicas = 1` is written out.
    fn is_followed(&self, i: usize) -> bool {
        // A slot a reload left behind is not the process any more.
        self.plan.exit_code_from.as_deref() == Some(self.plan.processes[i].process.as_ref())
            && !self.control.reloads.removed.contains(&i)
    }

    /// True once every declared instance is finished for good while a
    /// managed one (a broker) is not: the run is over, and the managed
    /// ones are stopped like a shutdown stops anything.
    fn only_managed_left(&self) -> bool {
        self.declared_left == 0 && !self.all_finished()
    }

    /// True once every instance is finished for good.
    fn all_finished(&self) -> bool {
        self.finished == self.instances.len()
    }

    fn event_loop(&mut self) -> Result<(), SuperviseError> {
        loop {
            // What the last pass did goes to the control streams, before
            // sleeping or ending (the last exits are news too).
            self.publish_control();
            if self.all_finished() {
                if self.streams.open == 0 {
                    return Ok(());
                }
                if self.drain_deadline.is_none() {
                    let deadline = Instant::now() + DRAIN_TIMEOUT;
                    self.drain_deadline = Some(deadline);
                    self.timers.add(deadline, Deadline::Drain);
                }
            }
            // Before sleeping: the last process may have become ready in
            // the pass that started it, with no event to follow.
            self.announce_if_ready();
            self.arm_timer()?;
            self.watch_outputs();
            let busy = (0..2).any(|k| self.output_unwatchable[k] && self.output_armed[k]);
            let tokens = self.events.wait(busy).map_err(setup("epoll_wait"))?;
            self.handle(&tokens);
            if self
                .drain_deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                // The drain deadline passed: flush what is buffered and stop.
                for s in 0..self.streams.slots.len() {
                    if self.streams.get(s).is_some() {
                        self.close_log(s);
                    }
                }
            }
            self.start_ready_instances();
        }
    }

    /// Handles one batch of events. Readiness and logs before exits: a
    /// child that wrote its newline or datagram and exited is seen ready
    /// first; exits in the order epoll queued them.
    fn handle(&mut self, tokens: &[Token]) {
        let mut exits = Vec::new();
        let mut signals_ready = false;
        let mut timer_ready = false;
        for &token in tokens {
            match token {
                Token::Signals => signals_ready = true,
                Token::Exit(pid) => exits.push(pid),
                Token::Timer => timer_ready = true,
                Token::Notify => self.read_notify(),
                Token::Ready(i) => self.read_ready_pipe(i),
                Token::Probe(i, write) => self.probe_event(i, write),
                Token::Health(i, _) => self.health_event(i),
                Token::Logs(output) => self.logs_readable(output),
                Token::Output(_) | Token::RankPipe(_) => {}
                Token::Accept(i) => self.accept_connections(i),
                Token::Control => self.serve_control(),
                Token::Remote(l, write) => self.remote_event(l, write),
            }
        }
        // Whatever was relayed goes out before ipc-run waits again.
        self.writer.flush();
        if signals_ready || !exits.is_empty() || self.orphans_behind {
            self.read_signals(&exits);
        }
        if timer_ready {
            let _ = self.timer.wait();
        }
        self.fire_due_timers();
    }

    /// Log streams feeding `output` have bytes (or hung up): relays a
    /// chunk of each, in turn, until `output` is stalled, or parks them all
    /// while it is (their processes then wait on their pipes,
    /// back-pressure, while everything else goes on).
    fn logs_readable(&mut self, output: Stream) {
        if self.writer.stalled(output) {
            self.events.park_logs(output);
            self.streams.parked[output as usize] = true;
            return;
        }
        self.events.fill_logs(output);
        while !self.writer.stalled(output) {
            let Some(s) = self.events.next_log(output) else {
                return;
            };
            self.read_log(s);
        }
    }

    /// Registers each output for EPOLLOUT exactly while records wait for
    /// it, and arms the streams parked on an output that is no longer
    /// stalled: work only when a state changes.
    fn watch_outputs(&mut self) {
        for kind in [Stream::Stdout, Stream::Stderr] {
            let k = kind as usize;
            let want = self.writer.backlog(kind) > 0;
            if want != self.output_armed[k] {
                self.output_armed[k] = want;
                let fd = self.writer.output(kind);
                if !want {
                    if !self.output_unwatchable[k] {
                        self.events.remove(fd);
                    }
                } else if !self.output_unwatchable[k]
                    && let Err(errno) =
                        self.events
                            .add_for(fd, Token::Output(kind), EpollFlags::EPOLLOUT)
                {
                    // EPERM: a regular file, which is always writable.
                    self.output_unwatchable[k] = errno == Errno::EPERM;
                }
            }
            if self.streams.parked[k] && !self.writer.stalled(kind) {
                self.streams.parked[k] = false;
                let _ = self.events.unpark_logs(kind);
            }
        }
        self.watch_rank_pipes();
    }

    /// Stops reading log stream `s` (a launcher's) while a pipe it feeds
    /// is over its bound ([`rank_pipes`]): mpirun, then the ranks, wait.
    fn park_for_pipe(&mut self, s: usize) {
        if let Some(stream) = self.streams.get(s)
            && !self.pipe_parked.contains(&s)
        {
            self.events.remove_log(&stream.fd, stream.stream);
            self.pipe_parked.push(s);
        }
    }

    /// Registers each rank pipe for EPOLLOUT exactly while lines wait for
    /// it, and reads again the streams whose pipes drained.
    fn watch_rank_pipes(&mut self) {
        let pipes = self.writer.rank_pipes();
        self.pipe_armed.resize(pipes.len(), false);
        for k in 0..pipes.len() {
            let want = pipes.backlog(k) > 0;
            if want == self.pipe_armed[k] {
                continue;
            }
            self.pipe_armed[k] = want;
            // A pipe closed while armed left the set with its fd.
            if let Some(fd) = pipes.fd(k) {
                if want {
                    let _ = self
                        .events
                        .add_for(fd, Token::RankPipe(k), EpollFlags::EPOLLOUT);
                } else {
                    self.events.remove(fd);
                }
            }
        }
        let mut k = 0;
        while k < self.pipe_parked.len() {
            let s = self.pipe_parked[k];
            match self.streams.get(s) {
                Some(open)
                    if self
                        .writer
                        .rank_pipes()
                        .stalled(open.instance, open.stream as usize) =>
                {
                    k += 1;
                }
                Some(open) => {
                    let _ = self.events.add_log(&open.fd, open.stream, s);
                    self.pipe_parked.swap_remove(k);
                }
                None => {
                    self.pipe_parked.swap_remove(k);
                }
            }
        }
    }

    fn arm_timer(&mut self) -> Result<(), SuperviseError> {
        let earliest = self.timers.earliest();
        if earliest == self.armed && earliest.is_none_or(|at| at > Instant::now()) {
            return Ok(());
        }
        self.armed = earliest;
        match self.timers.next_in(Instant::now()) {
            Some(delay) => {
                let delay = delay.max(Duration::from_nanos(1));
                self.timer
                    .set(
                        Expiration::OneShot(TimeSpec::from_duration(delay)),
                        TimerSetTimeFlags::empty(),
                    )
                    .map_err(setup("timerfd_settime"))
            }
            None => self.timer.unset().map_err(setup("timerfd_settime")),
        }
    }

    /// Drops the readiness pipe of `i`, out of the epoll set first.
    fn close_ready_pipe(&mut self, i: usize) {
        if let Some(fd) = self.instances[i].ready_pipe.take() {
            self.events.remove(&fd);
        }
    }

    // ----- starting -------------------------------------------------------

    /// Starts, in start order, every pending instance whose dependencies are
    /// ready. Fails the run when a dependency ended without becoming ready.
    /// Looks only at the candidates of the [`StartQueue`]: at first every
    /// instance, then the dependents of one that became ready or finished.
    fn start_ready_instances(&mut self) {
        loop {
            if self.shutdown.is_some() {
                return;
            }
            let Some(i) = self.start_queue.pop() else {
                return;
            };
            if self.instances[i].state != State::Pending {
                continue;
            }
            let name = self.plan.processes[i].name.clone();
            let mut waiting = false;
            let mut dead_dependency = None;
            for (k, &d) in self.after[i].iter().enumerate() {
                match self.condition_met(d, self.conditions[i][k]) {
                    health::Met::Yes => {}
                    health::Met::Waiting => waiting = true,
                    health::Met::Never(why) => {
                        waiting = true;
                        dead_dependency = Some(why);
                    }
                }
            }
            // A sender is handed its receivers' pids: it starts once they
            // run and are ready, or fails to start if one ended for good.
            if self.receiver_not_ready(i) {
                waiting = true;
            }
            // Listeners on other hosts it reaches or waits for accept.
            match self.remote_met(i) {
                health::Met::Yes => {}
                health::Met::Waiting => waiting = true,
                health::Met::Never(why) => dead_dependency = Some(why),
            }
            if let Some(why) = dead_dependency {
                self.message(&format!("{name}: not started: {why}"));
                self.fail_launch(i, Ending::NotStarted(why));
                return;
            }
            if !waiting {
                self.spawn(i);
                self.relay_between_spawns();
            }
        }
    }

    /// While processes are started one after the other, relays what the
    /// pipes of those started before hold, without waiting: each spawn
    /// waits for its child's `execve`, and the processes already running
    /// would otherwise block on their full pipes until the last spawn,
    /// leaving the other CPUs idle. One `epoll_wait` per output and spawn
    /// when no pipe has bytes.
    fn relay_between_spawns(&mut self) {
        for output in [Stream::Stdout, Stream::Stderr] {
            if !self.streams.parked[output as usize] {
                self.logs_readable(output);
            }
        }
        self.writer.flush();
    }

    fn spawn(&mut self, i: usize) {
        if self.start_accepting(i) {
            return;
        }
        let name = self.plan.processes[i].name.clone();
        match self.runtime.spawn(&name) {
            Ok(spawned) => {
                let now = Instant::now();
                let inst = &mut self.instances[i];
                // A restart counts once it happened, not when scheduled.
                if inst.state == State::Backoff {
                    inst.restarts += 1;
                }
                inst.generation += 1;
                inst.state = State::Running {
                    pid: spawned.pid,
                    since: now,
                };
                inst.stop_requested = false;
                inst.waiting_for_receiver = false;
                inst.ready_now = false;
                inst.ready_seen = ReadySeen::default();
                inst.not_found = None;
                self.by_pid.insert(spawned.pid, i);
                let pid = spawned.pid;
                // Without a pidfd (a kernel before 5.3) the exit is still
                // reaped, in pid order instead of exit order.
                if let Ok(pidfd) = crate::sys::pidfd::pidfd_open(pid)
                    && self.events.add(&pidfd, Token::Exit(pid)).is_ok()
                {
                    self.pidfds.insert(pid, pidfd);
                }
                if let Some(fd) = spawned.ready_fd {
                    set_nonblocking(fd.as_fd());
                    // Unwatched, it is read when the process exits.
                    let _ = self.events.add(&fd, Token::Ready(i));
                    inst.ready_pipe = Some(fd);
                }
                self.relay_output(i, spawned.stdout, spawned.stderr);
                self.health_spawned(i);
                let process = &self.plan.processes[i];
                let inst = &mut self.instances[i];
                // A server-bound server is ready once its endpoint is
                // served, when someone waits for that: in every run, as a
                // restarted server binds its address again, and what
                // starts after the restart must find it served.
                let probed = self.probes.has(i) && (inst.awaited || inst.signalled);
                self.probes.spawned(i, probed);
                if process.ready == Readiness::Started && !probed {
                    inst.ready = true;
                    inst.ready_now = true;
                    self.start_queue.changed(&self.graph, i);
                } else if (inst.awaited && !inst.ready) || inst.signalled || probed {
                    self.timers.add(
                        now + Duration::from_millis(process.ready_timeout_ms),
                        Deadline::ReadyTimeout {
                            instance: i,
                            generation: inst.generation,
                        },
                    );
                }
                if probed && process.ready == Readiness::Started {
                    self.probe_gates(i);
                }
                // Dependants of an instance ready at spawn are candidates now,
                // started by the pass that goes on after it (or the next).
                self.track_signal_pids(i, pid);
                self.lifecycle(i, control::Lifecycle::Started);
            }
            Err(why) => {
                self.message(&format!("{name}: failed to start: {why}"));
                let first_start = self.instances[i].restarts == 0;
                let ending = Ending::FailedToStart(why.to_string());
                // Added by a reload: reported to it, the run goes on.
                if self.control.reloads.added.remove(&i) {
                    self.control.reloads.failed.push((i, why.to_string()));
                    self.finish_counting(i, ending, false, false);
                } else if first_start {
                    self.fail_launch(i, ending);
                } else {
                    self.finish(i, ending, false);
                }
            }
        }
    }

    /// A launch failure: the instance is finished as failed, and the run
    /// stops.
    fn fail_launch(&mut self, i: usize, ending: Ending) {
        self.finish(i, ending, false);
        self.begin_shutdown();
    }

    /// `i` is finished for good with `ending`.
    fn finish(&mut self, i: usize, ending: Ending, stopped: bool) {
        self.finish_counting(i, ending, stopped, true);
    }

    /// `i` is finished for good with `ending`; unless `decides`, a failure
    /// is reported but does not count for the exit status.
    fn finish_counting(&mut self, i: usize, ending: Ending, stopped: bool, decides: bool) {
        let name = self.plan.processes[i].name.clone();
        self.set_finished(i);
        self.close_ready_pipe(i);
        self.stop_probe(i);
        self.health_stopped(i);
        let inst = &mut self.instances[i];
        if let Some(Ending::NotReady(_)) = inst.ending {
            // Its failure (not ready in time) is recorded; how it then died
            // on ipc-run's stop signal is not news.
            inst.failed = true;
        } else {
            inst.stopped = stopped;
            inst.failed = decides && !stopped && !ending.is_success();
            if inst.failed {
                self.failures.push(Failure {
                    instance: name.to_string(),
                    code: ending.code(),
                    what: ending.to_string(),
                });
                self.service.status(&format!("{name}: {ending}"));
            }
            inst.ending = Some(ending);
        }
        self.runtime.release_ends_of(&name);
        // Senders waiting for it now fail to start, rather than wait forever.
        self.start_waiting_senders(i);
        if self.is_followed(i) || self.only_managed_left() {
            self.begin_shutdown();
        }
        self.advance_shutdown();
    }

    /// Marks `i` finished for good, once: counted, its dependents are
    /// candidates to start (or to fail to), and during a shutdown what
    /// waited for it to stop may be stopped.
    fn set_finished(&mut self, i: usize) {
        if self.instances[i].state == State::Finished {
            return;
        }
        self.instances[i].state = State::Finished;
        self.finished += 1;
        self.writer.rank_pipes().ended(i);
        if !is_broker(&self.plan.processes[i]) {
            self.declared_left -= 1;
        }
        self.start_queue.changed(&self.graph, i);
        if let Some(shutdown) = &mut self.shutdown {
            shutdown.levels.finished(&self.graph, i);
        }
    }

    // ----- readiness ------------------------------------------------------

    fn mark_ready(&mut self, i: usize) {
        let inst = &mut self.instances[i];
        if inst.ready_now || !matches!(inst.state, State::Running { .. }) {
            return;
        }
        if self.probe_gates(i) {
            return;
        }
        let inst = &mut self.instances[i];
        inst.ready_now = true;
        let first = !inst.ready;
        inst.ready = true;
        self.start_queue.changed(&self.graph, i);
        self.start_waiting_senders(i);
        self.lifecycle(i, control::Lifecycle::Ready);
        if first || self.instances[i].signalled {
            self.start_ready_instances();
        }
    }

    fn read_ready_pipe(&mut self, i: usize) {
        let mut buf = [0u8; 512];
        loop {
            let Some(fd) = self.instances[i].ready_pipe.as_ref() else {
                return;
            };
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => {
                    self.close_ready_pipe(i);
                    self.instances[i].ready_seen.closed = true;
                    return;
                }
                Ok(n) => {
                    if buf[..n].contains(&b'\n') {
                        // Readiness is told once; the pipe has served.
                        self.close_ready_pipe(i);
                        self.mark_ready(i);
                        return;
                    }
                    self.instances[i].ready_seen.bytes += n;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    self.close_ready_pipe(i);
                    return;
                }
            }
        }
    }

    fn read_notify(&mut self) {
        loop {
            let Some(socket) = self.notify.as_ref() else {
                return;
            };
            match notify::receive(socket.as_fd()) {
                Ok(Some((pid, message))) => {
                    let Some(i) = self.instance_of_sender(pid, message.main_pid) else {
                        continue;
                    };
                    self.health_notified(i, message.watchdog, message.status.as_deref());
                    if message.ready {
                        self.mark_ready(i);
                    } else if !self.instances[i].ready_now {
                        let seen = &mut self.instances[i].ready_seen;
                        seen.datagrams += 1;
                        if message.status.is_some() {
                            seen.status = message.status;
                        }
                    }
                }
                Ok(None) => return,
                Err(errno) => {
                    if let Some(socket) = self.notify.take() {
                        self.events.remove(&socket);
                    }
                    self.message(&format!(
                        "notify socket failed, readiness by notify is lost: {errno}"
                    ));
                    return;
                }
            }
        }
    }

    /// The instance a notify datagram speaks for: the sender's own, found by
    /// pid or, for a helper process, by process group; `MAINPID=` is used
    /// when the kernel gave no credentials.
    fn instance_of_sender(&self, pid: i32, main_pid: Option<i32>) -> Option<usize> {
        let by = |pid: i32| -> Option<usize> {
            if pid <= 0 {
                return None;
            }
            let pid = Pid::from_raw(pid);
            if let Some(&i) = self.by_pid.get(&pid) {
                return Some(i);
            }
            let group = nix::unistd::getpgid(Some(pid)).ok()?;
            self.by_pid.get(&group).copied()
        };
        by(pid).or_else(|| {
            if pid == 0 {
                main_pid.and_then(by)
            } else {
                None
            }
        })
    }

    // ----- signals and exits ----------------------------------------------

    /// Reads the pending signals; handles the exits of `exits` (readable
    /// pidfds, in the order they were queued) and reaps when a SIGCHLD came.
    fn read_signals(&mut self, exits: &[Pid]) {
        let mut reap = !exits.is_empty() || self.orphans_behind;
        let mut others = Vec::new();
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => reap = true,
                Ok(signal) => others.push((signal, info.ssi_pid)),
                // Real-time signals: ignored.
                Err(_) => {}
            }
        }
        if reap {
            // Exits that happened before an interrupt are taken as they
            // were, not as stops; a child may also have told readiness just
            // before exiting.
            self.read_notify();
            self.reap(exits);
        }
        for (signal, sender) in others {
            if STOP_SIGNALS.contains(&signal) {
                if !self.is_repeat(signal, sender) {
                    self.on_interrupt(signal);
                }
            } else if FORWARDABLE.contains(&signal) {
                self.forward(signal);
            }
            // Any other signal is ignored (docs/supervision.md, "Signals").
        }
    }

    /// Whether stop signal `signal` from process `sender` repeats the last
    /// one as a process-group signal does: same signal, from the same
    /// process, which leads ipc-run's process group (`timeout`), within
    /// [`REPEAT_WINDOW`]. A second ^C (from the kernel) or a signal from
    /// any other process is a second interrupt. Records it either way.
    fn is_repeat(&mut self, signal: Signal, sender: u32) -> bool {
        let now = Instant::now();
        let group_leader = nix::unistd::getpgrp();
        let repeat = self.last_stop_signal.is_some_and(|(last, from, at)| {
            last == signal as i32
                && from == sender
                && i32::try_from(sender).is_ok_and(|pid| pid == group_leader.as_raw())
                && group_leader != nix::unistd::getpid()
                && now - at < REPEAT_WINDOW
        });
        self.last_stop_signal = Some((signal as i32, sender, now));
        repeat
    }

    fn forward(&mut self, signal: Signal) {
        for (i, process) in self.plan.processes.iter().enumerate() {
            if let State::Running { pid, .. } = self.instances[i].state
                && process
                    .forward_signals
                    .iter()
                    .any(|s| s.number == signal as i32)
            {
                let _ = kill(pid, signal);
            }
        }
        for (i, pid) in self.connections.all_pids() {
            if self.plan.processes[i]
                .forward_signals
                .iter()
                .any(|s| s.number == signal as i32)
            {
                let _ = kill(pid, signal);
            }
        }
    }

    fn on_interrupt(&mut self, signal: Signal) {
        if self.shutdown.is_some() {
            if self.interrupted_by.is_some() && !self.shutdown.as_ref().is_some_and(|s| s.escalated)
            {
                self.message(&format!("{} again: killing every process", signal.as_str()));
                self.escalate();
                return;
            }
            if self.interrupted_by.is_none() {
                self.interrupted_by = Some(signal as i32);
            }
            return;
        }
        self.interrupted_by = Some(signal as i32);
        self.message(&format!("{}: stopping", signal.as_str()));
        self.begin_shutdown();
    }

    /// SIGKILL to every running process group at once.
    fn escalate(&mut self) {
        if let Some(shutdown) = &mut self.shutdown {
            shutdown.escalated = true;
        }
        for i in 0..self.instances.len() {
            if let State::Running { pid, .. } = self.instances[i].state {
                self.instances[i].stop_requested = true;
                signal_group(pid, Signal::SIGKILL);
            }
        }
        for (_, pid) in self.connections.all_pids() {
            signal_group(pid, Signal::SIGKILL);
        }
    }

    /// Reaps what exited: first the supervised processes of `exits`, in
    /// the order they exited, then orphans and the rest.
    fn reap(&mut self, exits: &[Pid]) {
        for &pid in exits {
            if self.pidfds.contains_key(&pid) {
                self.reap_tracked(pid);
            }
        }
        self.orphans_behind = false;
        if self.signal_edges.careful_reaping() {
            self.reap_child_by_child();
            return;
        }
        loop {
            // Look before reaping: a supervised process found here exited
            // after this batch was read; its pidfd event is queued behind
            // the others, where it keeps its place in the exit order. It is
            // handled at the next wake-up (at once), and what is behind it
            // then.
            let peek = waitid(
                Id::All,
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            );
            let pid = match peek {
                Ok(status) => match status.pid() {
                    Some(pid) => pid,
                    None => return,
                },
                Err(Errno::EINTR) => continue,
                Err(_) => return,
            };
            if self.pidfds.contains_key(&pid) {
                self.orphans_behind = true;
                return;
            }
            match waitpid(pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(status) => {
                    if let Some((pid, ending)) = ending_of(status) {
                        // Unknown pids are orphaned descendants: reaped, done.
                        if let Some(i) = self.by_pid.remove(&pid) {
                            self.on_exit(i, ending);
                        } else {
                            self.other_child_exited(pid, &ending);
                        }
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    /// Reaps the supervised process `pid` (observes it only, when its pid
    /// is reserved for a signal sender) and handles its exit.
    fn reap_tracked(&mut self, pid: Pid) {
        let reserved = self.signal_edges.is_reserved(pid);
        // What is left of its process group goes with it, as systemd's
        // control-group kill mode and docker do: a restarted server must not
        // meet its predecessor's workers on the same listener. Now, while
        // the leader is an unreaped zombie, the group id is still its own.
        if matches!(
            waitid(
                Id::Pid(pid),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            ),
            Ok(status) if status.pid().is_some()
        ) {
            let _ = killpg(pid, Signal::SIGKILL);
        }
        let status = if reserved {
            waitid(
                Id::Pid(pid),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            )
        } else {
            waitpid(pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL))
        };
        let ending = match status {
            Ok(status) => match ending_of(status) {
                Some((_, ending)) => ending,
                // Still running: a stale event.
                None => return,
            },
            Err(Errno::EINTR) => return,
            Err(_) => {
                self.forget_pidfd(pid);
                return;
            }
        };
        self.forget_pidfd(pid);
        if reserved {
            self.signal_edges.hold(pid);
        }
        self.signal_edges.process_reaped(pid);
        if let Some(i) = self.by_pid.remove(&pid) {
            self.on_exit(i, ending);
        } else {
            self.other_child_exited(pid, &ending);
        }
    }

    /// Relays a new process's stdout and stderr pipes (those it has) as
    /// instance `i`'s log streams.
    fn relay_output(&mut self, i: usize, stdout: Option<OwnedFd>, stderr: Option<OwnedFd>) {
        for (fd, stream) in [(stdout, Stream::Stdout), (stderr, Stream::Stderr)] {
            let Some(fd) = fd else { continue };
            set_nonblocking(fd.as_fd());
            let s = self.streams.insert(LogStream {
                instance: i,
                stream,
                fd,
                buffer: LineBuffer::default(),
            });
            if let Some(stream) = self.streams.get(s) {
                let _ = self.events.add_log(&stream.fd, stream.stream, s);
            }
            self.writer.rank_pipes().opened(i, stream as usize);
            self.writer.opened();
        }
    }

    /// Closes the pidfd of `pid`, out of the epoll set first.
    fn forget_pidfd(&mut self, pid: Pid) {
        if let Some(fd) = self.pidfds.remove(&pid) {
            self.events.remove(&fd);
        }
    }

    /// Reaping while some pid is reserved for a signal sender
    /// ([`signal_edges`]): `waitpid(-1)` could free a reserved pid, so every
    /// child is waited for by pid, reserved ones without being reaped.
    fn reap_child_by_child(&mut self) {
        let mut pids: Vec<Pid> = self.by_pid.keys().copied().collect();
        for pid in signal_edges::children_of_self() {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        for pid in pids {
            // Those with a pidfd are taken from the ready list, in order.
            if self.signal_edges.is_held(pid) || self.pidfds.contains_key(&pid) {
                continue;
            }
            let reserved = self.signal_edges.is_reserved(pid);
            let status = if reserved {
                waitid(
                    Id::Pid(pid),
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
                )
            } else {
                waitpid(pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL))
            };
            let Ok(status) = status else { continue };
            let Some((pid, ending)) = ending_of(status) else {
                continue;
            };
            if reserved {
                self.signal_edges.hold(pid);
            }
            self.signal_edges.process_reaped(pid);
            if let Some(i) = self.by_pid.remove(&pid) {
                self.on_exit(i, ending);
            } else {
                self.other_child_exited(pid, &ending);
            }
        }
        for pid in self.signal_edges.take_releasable() {
            let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL));
        }
    }

    /// Whether a receiver of `i`'s signals is not running, or not ready
    /// in its current run, while it may still be: a sender is handed the
    /// pid of a process that has installed its handlers. A receiver
    /// finished for good does not make `i` wait (it cannot be given a pid,
    /// so its start fails).
    fn receiver_not_ready(&self, i: usize) -> bool {
        self.signal_edges.receivers_of(i).iter().any(|&r| {
            let receiver = &self.instances[r];
            receiver.state != State::Finished
                && !(matches!(receiver.state, State::Running { .. }) && receiver.ready_now)
        })
    }

    /// Receiver `r` is ready in its current run: senders whose restart
    /// waited for it start now, with its pid.
    fn start_waiting_senders(&mut self, r: usize) {
        let senders = self.signal_edges.senders_of(r).to_vec();
        for s in senders {
            if self.shutdown.is_none()
                && self.instances[s].state == State::Backoff
                && self.instances[s].waiting_for_receiver
                && !self.receiver_not_ready(s)
            {
                self.spawn(s);
            }
        }
    }

    /// `i` was spawned as `pid`: records the receiver pids it was given and
    /// stops the running senders that know an older pid of `i`; they start
    /// again once `i` is ready ([`Self::start_waiting_senders`]).
    fn track_signal_pids(&mut self, i: usize, pid: Pid) {
        if !self.signal_edges.any() {
            return;
        }
        let given = self
            .signal_edges
            .receivers_of(i)
            .iter()
            .filter_map(|&r| match self.instances[r].state {
                State::Running { pid, .. } => Some(pid),
                _ => None,
            })
            .collect();
        self.signal_edges.sender_started(pid, given);
        let senders = self.signal_edges.senders_of(i).to_vec();
        for s in senders {
            if let State::Running { pid: sender, .. } = self.instances[s].state
                && !self.signal_edges.knows(sender, pid)
                && !self.instances[s].follow_receiver
            {
                let process = &self.plan.processes[s];
                let signal =
                    Signal::try_from(process.stop_signal.number).unwrap_or(Signal::SIGTERM);
                let grace = Duration::from_millis(process.stop_timeout_ms);
                let inst = &mut self.instances[s];
                inst.follow_receiver = true;
                inst.stop_requested = true;
                signal_group(sender, signal);
                self.timers.add(
                    Instant::now() + grace,
                    Deadline::StopGrace {
                        instance: s,
                        generation: inst.generation,
                    },
                );
            }
        }
        // A receiver ready at spawn lets waiting senders start at once.
        if self.instances[i].ready_now {
            self.start_waiting_senders(i);
        }
    }

    fn on_exit(&mut self, i: usize, ending: Ending) {
        let State::Running { since, .. } = self.instances[i].state else {
            return;
        };
        self.lifecycle(i, control::Lifecycle::Exited(ending.clone()));
        self.read_ready_pipe(i);
        self.close_ready_pipe(i);
        self.stop_probe(i);
        self.health_stopped(i);
        let name = self.plan.processes[i].name.clone();
        self.runtime.reaped(&name);
        let inst = &mut self.instances[i];
        let ran_for = since.elapsed();
        inst.runtime += ran_for;
        if ran_for >= policy::STABLE_RUN {
            inst.streak = 0;
        }
        if inst.follow_receiver && self.shutdown.is_none() {
            self.follow_receiver(i, &name, ending);
            return;
        }
        if let Some(intent) = inst.operator.take()
            && self.shutdown.is_none()
        {
            self.operator_exit(i, &name, ending, intent);
            return;
        }
        let stopping = self.shutdown.is_some() || inst.stop_requested;
        if !stopping && self.not_found(i, &name, &ending) {
            return;
        }
        let inst = &self.instances[i];
        let decision = policy::decide(
            &self.plan.processes[i].restart,
            &ending,
            inst.streak,
            stopping,
        );
        match decision {
            Decision::Restart(delay) => self.schedule_restart(i, &name, ending, delay),
            Decision::Finished { exhausted } => self.finish_after_exit(i, &name, ending, exhausted),
        }
    }

    /// A `shell` process that exited 127 on its own after its shell said
    /// `NAME: not found` on stderr: says so, naming the program. Without a
    /// restart policy this is a launch failure that stops the run (exit
    /// 3), and returns true; with one, the policy decides as for any exit.
    /// An exit 127 without the shell's own words is an ordinary exit: a
    /// script may exit 127 for reasons of its own.
    fn not_found(&mut self, i: usize, name: &str, ending: &Ending) -> bool {
        let process = &self.plan.processes[i];
        if !process.shell || *ending != Ending::Exited(missing::NOT_FOUND) {
            return false;
        }
        self.drain_stderr_of(i);
        if self.instances[i].not_found.is_none() {
            return false;
        }
        let why = missing::why(self.instances[i].not_found.as_deref());
        if self.plan.processes[i].restart.policy != crate::plan::RestartPolicy::Never {
            self.message(&format!("{name}: {why}"));
            return false;
        }
        self.message(&format!("{name}: failed to start: {why}"));
        self.fail_launch(i, Ending::FailedToStart(why));
        true
    }

    /// Instance `i` was stopped because a receiver of its signals was
    /// restarted: it starts again (outside the restart policy, so its
    /// streak is untouched) as soon as that receiver is ready, to be given
    /// its new pid.
    fn follow_receiver(&mut self, i: usize, name: &str, ending: Ending) {
        let inst = &mut self.instances[i];
        inst.follow_receiver = false;
        inst.state = State::Backoff;
        inst.backoff_until = None;
        inst.ending = Some(ending.clone());
        self.message(&format!(
            "{name}: {ending}; restarting to learn the new pid of the process it signals"
        ));
        self.lifecycle(i, control::Lifecycle::Restarting(Duration::ZERO));
        self.timers
            .add(Instant::now(), Deadline::Restart { instance: i });
    }

    /// The restart policy restarts instance `i` after `delay`.
    fn schedule_restart(&mut self, i: usize, name: &str, ending: Ending, delay: Duration) {
        let inst = &mut self.instances[i];
        inst.state = State::Backoff;
        inst.backoff_until = Some(Instant::now() + delay);
        inst.streak += 1;
        inst.ending = Some(ending.clone());
        self.message(&format!(
            "{name}: {ending}; restarting in {}ms",
            delay.as_millis()
        ));
        self.lifecycle(i, control::Lifecycle::Restarting(delay));
        self.timers
            .add(Instant::now() + delay, Deadline::Restart { instance: i });
    }

    /// Instance `i` is not restarted: it is finished for good, which may
    /// let others start.
    fn finish_after_exit(&mut self, i: usize, name: &str, ending: Ending, exhausted: bool) {
        // Ending on its own during a shutdown is reported as it ended, but
        // a failure then does not decide the exit status: a peer being
        // stopped (EPIPE, EOF) is the likely cause, and what ended the run
        // is already known.
        let stopped = self.instances[i].stop_requested;
        let decides = stopped || self.shutdown.is_none();
        if exhausted {
            let limit = self.plan.processes[i].restart.limit;
            self.message(&format!(
                "{name}: {ending}; restart limit {limit} reached, not restarting"
            ));
        }
        self.finish_counting(i, ending, stopped, decides);
        self.start_ready_instances();
    }

    // ----- deadlines ------------------------------------------------------

    fn fire_due_timers(&mut self) {
        for deadline in self.timers.take_due(Instant::now()) {
            match deadline {
                Deadline::ReadyTimeout {
                    instance,
                    generation,
                } => self.ready_timed_out(instance, generation),
                Deadline::Restart { instance } => self.restart_due(instance),
                Deadline::StopGrace {
                    instance,
                    generation,
                } => self.stop_grace_over(instance, generation),
                Deadline::Settle {
                    instance,
                    generation,
                } => self.settle_over(instance, generation),
                Deadline::Probe {
                    instance,
                    generation,
                    attempt,
                } => self.probe_due(instance, generation, attempt),
                Deadline::Health { instance, seq } => self.health_due(instance, seq),
                Deadline::Watchdog {
                    instance,
                    generation,
                } => self.watchdog_due(instance, generation),
                Deadline::Drain => {}
                Deadline::ManagerWatchdog => self.manager_watchdog_due(),
                Deadline::RemoteProbe { listener, attempt } => {
                    self.remote_probe_due(listener, attempt);
                }
                Deadline::RemoteGiveUp { listener } => self.remote_gave_up(listener),
                Deadline::CycleCheck => self.check_cycles(),
            }
        }
    }

    /// Reports the data cycles now stuck, and checks again later while
    /// some may still get stuck and the run is not stopping.
    fn check_cycles(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        let instances = &self.instances;
        let runtime = &*self.runtime;
        let messages = self.cycles.check(
            &self.plan,
            |i| match instances[i].state {
                State::Running { pid, .. } => Some(pid),
                _ => None,
            },
            |channel| runtime.pipe_fill(channel),
        );
        for message in messages {
            self.message(&message);
        }
        if self.cycles.active() {
            self.timers.add(
                Instant::now() + cycles::CHECK_INTERVAL,
                Deadline::CycleCheck,
            );
        }
    }

    /// Run `generation` of instance `i` was not ready in time: a launch
    /// failure that stops the run. A stale deadline (another run, already
    /// ready, gone, or a shutdown under way) does nothing.
    fn ready_timed_out(&mut self, i: usize, generation: u64) {
        let inst = &self.instances[i];
        if inst.generation != generation
            || inst.ready_now
            || self.shutdown.is_some()
            || !matches!(inst.state, State::Running { .. })
        {
            return;
        }
        let process = &self.plan.processes[i];
        let mut why = inst
            .ready_seen
            .why(&process.ready, process.ready_timeout_ms);
        let mut seen = inst.ready_seen.seen(&process.ready);
        let address = self.probes.address_of(i, &*self.runtime);
        if let Some(probe) = self.probes.why_not(i, address, process.ready_timeout_ms) {
            // The declared readiness came, or was `started`: the probe is
            // what did not.
            why.clone_from(&probe);
            seen = probe;
        }
        let name = process.name.clone();
        self.message(&format!(
            "{name}: not ready within {}ms (ready = {}): {seen}",
            process.ready_timeout_ms,
            match process.ready {
                Readiness::Started => "started".to_owned(),
                Readiness::Notify => "notify".to_owned(),
                Readiness::Fd { fd } => format!("{{ fd = {fd} }}"),
            }
        ));
        let ending = Ending::NotReady(why);
        self.failures.push(Failure {
            instance: name.to_string(),
            code: LAUNCH_FAILURE,
            what: ending.to_string(),
        });
        self.instances[i].ending = Some(ending);
        self.begin_shutdown();
    }

    /// The backoff of instance `i` is over: restart it, unless the run is
    /// shutting down or a receiver of its signals is not running.
    fn restart_due(&mut self, i: usize) {
        // Stopped on request, or restarted on request meanwhile. A timer
        // of an earlier backoff (a restart or start on request came
        // between, and that run failed too) is stale: the current backoff
        // has a timer of its own, for its own end.
        let inst = &self.instances[i];
        if inst.state != State::Backoff
            || inst.held
            || inst.backoff_until.is_some_and(|at| at > Instant::now())
        {
            return;
        }
        if self.shutdown.is_some() {
            self.abandon_restart(i);
        } else if self.receiver_not_ready(i) {
            // Resumed by `start_waiting_senders` when it is ready again.
            self.instances[i].waiting_for_receiver = true;
        } else if self.waits_for_remote(i) {
            // Waits for its listeners on other hosts, as its first start
            // did: pending, then started by `start_ready_instances`.
            self.requeue(i);
        } else {
            self.spawn(i);
        }
    }

    /// Run `generation` of instance `i` outlived its stop grace: SIGKILL.
    fn stop_grace_over(&mut self, i: usize, generation: u64) {
        if matches!(self.instances[i].state, State::Accepting { .. }) {
            self.connections_grace_over(i);
            return;
        }
        if self.instances[i].generation == generation
            && let State::Running { pid, .. } = self.instances[i].state
        {
            let name = self.name(i).to_owned();
            let grace = self.plan.processes[i].stop_timeout_ms;
            self.message(&format!(
                "{name}: still running {grace}ms after its stop signal: SIGKILL"
            ));
            signal_group(pid, Signal::SIGKILL);
        }
    }

    // ----- shutdown -------------------------------------------------------

    fn begin_shutdown(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        let instances = &self.instances;
        let levels = StopLevels::new(&self.graph, &self.stop_sequence, |i| {
            instances[i].state == State::Finished
        });
        self.shutdown = Some(Shutdown {
            levels,
            advancing: false,
            escalated: false,
        });
        self.tell_manager_stopping();
        self.advance_shutdown();
    }

    /// Stops every instance whose turn has come: each is stopped once all
    /// that wait for it are finished. Instances that never ran or wait for
    /// a restart are finished on the way, which may release more.
    fn advance_shutdown(&mut self) {
        match self.shutdown.as_mut() {
            Some(shutdown) if !shutdown.advancing => shutdown.advancing = true,
            _ => return,
        }
        while let Some(i) = self.shutdown.as_mut().and_then(|s| s.levels.next()) {
            self.stop_released(i);
        }
        if let Some(shutdown) = self.shutdown.as_mut() {
            shutdown.advancing = false;
        }
    }

    /// The turn of `i` to be stopped has come.
    fn stop_released(&mut self, i: usize) {
        let escalated = self.shutdown.as_ref().is_some_and(|s| s.escalated);
        match self.instances[i].state {
            State::Running { pid, .. } => {
                if !escalated && self.finished_its_output(i, pid) {
                    // Ending on its own: left to do so, for a while.
                    let process = &self.plan.processes[i];
                    let settle = SETTLE_TIMEOUT.min(Duration::from_millis(process.stop_timeout_ms));
                    self.timers.add(
                        Instant::now() + settle,
                        Deadline::Settle {
                            instance: i,
                            generation: self.instances[i].generation,
                        },
                    );
                } else {
                    self.send_stop(i, pid, escalated);
                }
            }
            State::Pending => {
                self.set_finished(i);
                if self.instances[i].ending.is_none() {
                    self.instances[i].ending =
                        Some(Ending::NotStarted("the run was stopping".into()));
                }
                let name = self.name(i).to_owned();
                self.runtime.release_ends_of(&name);
            }
            State::Backoff => self.abandon_restart(i),
            State::Accepting { .. } => self.stop_accepting(i, escalated),
            State::Finished => {}
        }
    }

    /// Sends instance `i` (running as `pid`) its stop signal (SIGKILL once
    /// escalated) and arms its grace.
    fn send_stop(&mut self, i: usize, pid: Pid, escalated: bool) {
        let process = &self.plan.processes[i];
        let inst = &mut self.instances[i];
        inst.stop_requested = true;
        let signal = if escalated {
            Signal::SIGKILL
        } else {
            Signal::try_from(process.stop_signal.number).unwrap_or(Signal::SIGTERM)
        };
        signal_group(pid, signal);
        self.timers.add(
            Instant::now() + Duration::from_millis(process.stop_timeout_ms),
            Deadline::StopGrace {
                instance: i,
                generation: inst.generation,
            },
        );
    }

    /// Whether `i` (running as `pid`) has closed every channel end it
    /// writes, as a pipeline stage does while it ends: its readers may
    /// already have seen EOF and ended, and a stop signal now would kill a
    /// process that is finishing on its own. Read from `/proc/PID/fd`; an
    /// fd that cannot be read (another user's process) counts as open.
    fn finished_its_output(&self, i: usize, pid: Pid) -> bool {
        let mut writes = self.plan.processes[i]
            .fds
            .iter()
            .filter(|slot| {
                matches!(
                    slot.role,
                    FdRole::Channel {
                        end: End::Write,
                        ..
                    }
                )
            })
            .peekable();
        writes.peek().is_some()
            && writes.all(|slot| {
                std::fs::symlink_metadata(format!("/proc/{pid}/fd/{}", slot.fd))
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            })
    }

    /// Run `generation` of `i` was left to end on its own during a
    /// shutdown and did not: it gets its stop signal now.
    fn settle_over(&mut self, i: usize, generation: u64) {
        if self.instances[i].generation != generation {
            return;
        }
        let State::Running { pid, .. } = self.instances[i].state else {
            return;
        };
        let escalated = self.shutdown.as_ref().is_some_and(|s| s.escalated);
        if !self.instances[i].stop_requested {
            self.send_stop(i, pid, escalated);
        }
    }

    /// The run stops while `i` waits to be restarted: it is finished with
    /// the ending of its last run, as stopped. Its restart policy had
    /// answered that run's failure with a restart, so the failure decides
    /// nothing; the stop, which cancels the restart, is ipc-run's doing.
    fn abandon_restart(&mut self, i: usize) {
        let ending = self.instances[i]
            .ending
            .clone()
            .unwrap_or_else(|| Ending::NotStarted("the run was stopping".into()));
        self.set_finished(i);
        let inst = &mut self.instances[i];
        inst.failed = false;
        inst.stopped = true;
        self.instances[i].ending = Some(ending);
        let name = self.name(i).to_owned();
        self.runtime.release_ends_of(&name);
        self.advance_shutdown();
    }

    // ----- logs -----------------------------------------------------------

    /// Reads what log stream `s` holds (a few reads at most, see
    /// [`LogWriter::relay`]) and relays its lines. Returns whether bytes
    /// were read (more may be waiting).
    fn read_log(&mut self, s: usize) -> bool {
        let Some(open) = self.streams.get(s) else {
            return false;
        };
        let (instance, stream) = (open.instance, open.stream);
        let watch = self.watch_not_found(instance, stream);
        let Some(Some(LogStream { fd, buffer, .. })) = self.streams.slots.get_mut(s) else {
            return false;
        };
        let source = logs::LogSource {
            fd: fd.as_fd(),
            buffer,
            instance,
            stream,
        };
        let mut found = None;
        let mut note = |record: logs::Record<'_>| note_not_found(true, record, &mut found);
        let observe: Option<&mut dyn FnMut(logs::Record<'_>)> = watch.then_some(&mut note);
        let relayed = self.writer.relay(source, &mut self.scratch, observe);
        if found.is_some() {
            self.instances[instance].not_found = found;
        }
        match relayed {
            logs::Relayed::Closed => {
                self.close_log(s);
                false
            }
            _ if self.writer.rank_pipes().stalled(instance, stream as usize) => {
                self.park_for_pipe(s);
                false
            }
            logs::Relayed::Data => true,
            logs::Relayed::Empty => false,
        }
    }

    /// Where to note a missing program named on `stream` of `instance`:
    /// the stderr of a `shell` process.
    fn watch_not_found(&self, instance: usize, stream: Stream) -> bool {
        stream == Stream::Stderr && self.plan.processes[instance].shell
    }

    /// Relays what instance `i`'s stderr still holds, so that a shell's
    /// last words (`NAME: not found`) are seen before its exit is handled;
    /// bounded, for a descendant that keeps writing.
    fn drain_stderr_of(&mut self, i: usize) {
        for _ in 0..16 {
            let Some(s) = self.streams.stderr_of[i] else {
                return;
            };
            if !self.read_log(s) {
                return;
            }
        }
    }

    /// Reads what is left without blocking, flushes, and closes the stream.
    /// The read is bounded by [`MAX_CLOSING_DRAIN`]: at the drain deadline a
    /// stray descendant may still be writing into the pipe, and draining
    /// until EOF would then never end.
    fn close_log(&mut self, s: usize) {
        let Some(mut stream) = self.streams.take(s) else {
            return;
        };
        self.pipe_parked.retain(|&p| p != s);
        self.events.remove_log(&stream.fd, stream.stream);
        let watch = self.watch_not_found(stream.instance, stream.stream);
        let mut found = None;
        let source = logs::LogSource {
            fd: stream.fd.as_fd(),
            buffer: &mut stream.buffer,
            instance: stream.instance,
            stream: stream.stream,
        };
        let mut note = |record: logs::Record<'_>| note_not_found(true, record, &mut found);
        let observe: Option<&mut dyn FnMut(logs::Record<'_>)> = watch.then_some(&mut note);
        self.writer
            .close(source, &mut self.scratch, MAX_CLOSING_DRAIN, observe);
        if found.is_some() {
            self.instances[stream.instance].not_found = found;
        }
    }

    // ----- the end --------------------------------------------------------

    fn outcome(mut self, options: &RunOptions) -> RunOutcome {
        let summary: Vec<InstanceSummary> = self
            .plan
            .processes
            .iter()
            .zip(&self.instances)
            .enumerate()
            // A slot a reload removed (or replaced) is not in the run any more.
            .filter(|(i, _)| !self.control.reloads.removed.contains(i))
            .map(|(_, (process, inst))| InstanceSummary {
                name: process.name.to_string(),
                ending: inst
                    .ending
                    .clone()
                    .unwrap_or_else(|| Ending::NotStarted("the run ended first".into())),
                stopped: inst.stopped,
                failed: inst.failed,
                restarts: inst.restarts,
                runtime: inst.runtime,
            })
            .collect();
        // A launch failure that stopped the run before the followed
        // process ended on its own decides: the followed status is then
        // ipc-run's stop signal, not the process's own.
        let launch_failed = self
            .failures
            .first()
            .is_some_and(|f| f.code == LAUNCH_FAILURE && !f.what.starts_with("exited"));
        let followed = (0..self.plan.processes.len())
            .find(|&i| self.is_followed(i))
            .and_then(|i| {
                summary
                    .iter()
                    .find(|s| *s.name == *self.plan.processes[i].name)
            })
            .filter(|s| !(s.stopped && launch_failed))
            .map(|s| s.ending.clone());
        let inputs = StatusInputs {
            failures: &self.failures,
            followed: followed.as_ref(),
            interrupted_by: self.interrupted_by,
        };
        let exit_code = status::exit_code(&inputs);
        let cause = status::exit_cause(&inputs, self.plan.exit_code_from.as_deref(), exit_code);
        if !options.quiet_summary && !options.summary_json {
            for line in &summary {
                self.writer.message(&line.to_string());
            }
            self.message(&cause);
        }
        // A stalled reader gets a bounded wait, then what it did not take
        // is counted as lost: ipc-run still ends and cleans up.
        self.writer.finish(Instant::now() + DRAIN_TIMEOUT);
        if self.writer.write_errors > 0 && !options.summary_json {
            let errors = self.writer.write_errors;
            self.message(&format!("{errors} log record(s) could not be written"));
        }
        if options.summary_json {
            let json = status::summary_json(&summary, exit_code, &cause, self.writer.write_errors);
            self.writer.message(&json);
            self.writer.finish(Instant::now() + DRAIN_TIMEOUT);
        }
        RunOutcome {
            exit_code,
            summary,
            log_write_errors: self.writer.write_errors,
        }
    }
}

/// Notes in `found` the program a shell's stderr line says it could not
/// find, when `watch`ing that stream.
fn note_not_found(watch: bool, record: logs::Record<'_>, found: &mut Option<String>) {
    if watch
        && record.starts_line
        && let Some(name) = missing::not_found_in(record.bytes)
    {
        *found = Some(name);
    }
}

/// Whether `process` is a broker ipc-run added (a private bus): it serves
/// the declared processes and is stopped once they are all done. A launcher
/// (an MPI world's mpirun) stands for declared processes, its ranks, and
/// counts as one of them.
fn is_broker(process: &crate::mechanism::model::ProcessPlan) -> bool {
    process
        .managed
        .as_ref()
        .is_some_and(|m| m.role == crate::mechanism::model::ManagedRole::Broker)
}

/// Sends `signal` to the process group led by `pid`; called only while the
/// leader is not yet reaped, so the id cannot have been reused. Falls back
/// to the process itself when it leads no group.
fn signal_group(pid: Pid, signal: Signal) {
    if killpg(pid, signal) == Err(Errno::ESRCH) {
        let _ = kill(pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_exactly_what_the_planner_accepts() {
        let names: Vec<&str> = FORWARDABLE.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, crate::plan::signals::FORWARDABLE);
    }
}
