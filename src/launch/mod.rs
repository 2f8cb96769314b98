//! The launcher: makes a [`Plan`] real.
//!
//! [`prepare`] creates the private run directory (with its lock and
//! journal), then every channel's resources in plan order; if creation `k`
//! fails, everything made before it is removed again, run directory
//! included (a drop guard). [`Launched::spawn`] then starts one instance at
//! a time with exactly fds 0-2 plus its declared ports (this module wires
//! the fds; `spawn` turns the process plan into the child's program,
//! argv and environment). [`Launched::cleanup`]
//! removes every named object and the run directory; dropping a
//! [`Launched`] does the same. [`clean`] removes what dead runs left.
//!
//! # Which channel ends the orchestrator holds, and for how long
//!
//! The launcher keeps its own CLOEXEC copy of every channel end (pipe and
//! FIFO ends, socketpair ends, listening sockets, shm and mq descriptors),
//! because a restarted process must find the *same* pipe, socket or queue:
//! a new pipe would lose what was buffered in the old one. But a held end
//! changes what the other side sees: while the launcher holds a pipe's read
//! end, a writer never gets SIGPIPE (a producer into `head -1` would run
//! forever), and while it holds the write end a reader never sees EOF.
//!
//! So an end is held exactly as long as some instance may still be (re)started
//! with it:
//! - every instance is *pending* until it has been spawned for the last time;
//! - [`Launched::spawn`] of an instance whose restart policy is `never` ends
//!   its pendency at once: after `head -1` is spawned nobody holds the read
//!   end but `head` itself, and when it exits the producer gets SIGPIPE;
//! - a restartable instance stays pending until the supervisor calls
//!   [`Launched::release_ends_of`] (its last run is over, restart limit
//!   reached, or shutdown); [`Launched::spawn_with`] with
//!   [`HoldEnds::Keep`] keeps even a `never` instance pending (a manual
//!   restart);
//! - after every change, ends no pending instance uses are closed, which
//!   is what lets readers see EOF once every writer is finished for good;
//! - a ring (`sync = "ring"`) has no EOF: when [`Launched::finished`] has
//!   been called for every writer of a ring channel, the launcher marks the
//!   end of the stream in the ring's header (it keeps the header mapped for
//!   that). A writer that is restarted finds the same segment and data;
//! - ends of a channel with a peer outside the topology (`External`) are
//!   held for the whole run: the outside peer may open a FIFO at any time,
//!   and holding its other end is what keeps a writer from an early EPIPE.
//!
//! Per-spawn fds are never held: the stdout/stderr relay pipes and the
//! readiness pipe are new for every process, and a client end of a listener
//! (`connect`) is a fresh connection each time.

mod cgroup;
pub mod clean;
pub mod group;
mod identity;
pub mod objects;
pub mod placeholder;
pub mod reload;
pub(crate) mod resources;
pub mod run_dir;
mod spawn;
pub mod traffic;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::resource::{Resource, getrlimit};
use nix::unistd::Pid;

pub use crate::mechanism::error::{LaunchError, SpawnError};
pub use clean::{CleanReport, clean};
pub use resources::CleanupReport;
pub use spawn::DEFAULT_PATH;
pub use traffic::ChannelTraffic;

use crate::plan::RestartPolicy;
use crate::plan::{EndpointPlan, FdRole, FdSlot, Plan, ProcessPlan, Readiness};
use crate::sys::fd::std_fd;
use crate::sys::spawn::{ChildSpec, SpawnFailure};
use placeholder::Values;
use resources::{Created, Handover, Held};

/// File name of the sd_notify socket in the run directory.
pub const NOTIFY_SOCKET_FILE: &str = "notify.sock";

/// How [`prepare`] and [`Launched::spawn`] behave.
#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    /// Directory that holds run directories, instead of
    /// `$XDG_RUNTIME_DIR/ipc-run` or `/tmp/ipc-run-<uid>` (tests).
    pub runtime_root: Option<PathBuf>,
    /// Give an instance whose stdin is not wired ipc-run's own stdin
    /// instead of `/dev/null`.
    pub stdin_is_own: bool,
    /// `RLIMIT_NOFILE` (soft, hard) for children: the limits ipc-run found
    /// at start, before raising its own. `None` leaves them inherited.
    pub nofile: Option<(u64, u64)>,
    /// The environment pass-through reads from; `None` is ipc-run's own.
    pub base_env: Option<Vec<(OsString, OsString)>>,
    /// Channels whose listener runs on another host (`run --host`,
    /// [`group`]), by id, with the address they connect to: nothing of
    /// them is created here; a client handed a socket gets a connection
    /// to that address, and `{port:ID}` is its port.
    pub remote: HashMap<String, std::net::SocketAddr>,
    /// Channels whose listener here serves clients on other hosts: their
    /// listening socket gets `TCP_DEFER_ACCEPT`, so the readiness probe of
    /// a remote group (a connect reset without data) never reaches the
    /// server's `accept` (`docs/distributed.md`).
    pub cross_listeners: HashSet<String>,
}

/// Whether [`Launched::spawn_with`] keeps the instance's ends for a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HoldEnds {
    /// Keep them when the restart policy is not `never` (what `spawn` does).
    #[default]
    ByRestartPolicy,
    /// Keep them until [`Launched::release_ends_of`].
    Keep,
}

/// A started instance and the parent ends of its per-spawn pipes.
#[derive(Debug)]
pub struct SpawnedChild {
    /// Its pid, also its process group id.
    pub pid: Pid,
    /// Read end of its stdout when the plan does not wire stdout.
    pub stdout: Option<OwnedFd>,
    /// Read end of its stderr when the plan does not wire stderr.
    pub stderr: Option<OwnedFd>,
    /// Read end of its readiness pipe for `ready = { fd = N }`.
    pub ready_fd: Option<OwnedFd>,
}

/// A prepared run: run directory, resources, and the state to spawn.
#[derive(Debug)]
pub struct Launched {
    /// The run id (16 lowercase hex digits).
    pub run_id: String,
    /// The run directory.
    pub run_dir: PathBuf,
    plan: Plan,
    options: LaunchOptions,
    base_env: Vec<(OsString, OsString)>,
    values: Values,
    pending: HashSet<String>,
    /// Instance name -> index in `plan.processes`.
    process_index: HashMap<String, usize>,
    /// Channel id -> index in `plan.channels`.
    channel_index: HashMap<String, usize>,
    /// The held channel ends each process's slots use, by process index.
    held_needs: Vec<Vec<(usize, Held)>>,
    /// For each held end, how many slots of pending instances use it: an
    /// end is closed when its count falls to zero (unless pinned). Kept
    /// up to date on release, so a release costs the released instance's
    /// slots, not a pass over every process.
    need_count: HashMap<(usize, Held), usize>,
    /// The soft `RLIMIT_NOFILE` of the orchestrator, read once (it does
    /// not change during a run): the child closes fds below it when
    /// `close_range` is missing.
    fd_limit: i32,
    /// The orchestrator's ignored or handled signals, read once at
    /// preparation (it installs no handler during a run): only these are
    /// set back to SIG_DFL in each child before exec.
    reset_signals: u64,
    /// Instances that have ended for good ([`Launched::finished`]).
    ended: HashSet<String>,
    devnull: OwnedFd,
    created: Created,
    /// Resolved `user`/`group` by instance.
    identities: HashMap<String, identity::Identity>,
}

/// Creates the run directory, its journal and lock, and every channel's
/// resources; on failure nothing is left behind.
pub fn prepare(plan: &Plan, options: &LaunchOptions) -> Result<Launched, LaunchError> {
    // Before the table grows with the run's objects: spawns then copy
    // only the fds below these low slots (`sys::fd_slots`).
    crate::sys::fd_slots::reserve();
    let root = options
        .runtime_root
        .clone()
        .unwrap_or_else(run_dir::default_root);
    // Names first: an unknown user fails before anything is created.
    let identities = resolve_identities(plan)?;
    let dir = run_dir::RunDir::create(&root)?;
    let mut values = Values {
        run_id: dir.id.clone(),
        run_dir: dir.path.to_string_lossy().into_owned(),
        // The binary itself, for `{ipc_run}` (port adapters, taps).
        ipc_run: std::env::current_exe()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        ..Values::default()
    };
    let run_id = dir.id.clone();
    let run_dir = dir.path.clone();
    // From here, an early return drops `created`, which removes everything.
    let mut created = Created::new(dir);
    create_resources(plan, &options.remote, &mut created, &mut values, &run_dir)?;
    defer_accept(plan, &options.cross_listeners, &created)?;
    let devnull = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| LaunchError::sys("open /dev/null", e))?;
    let base_env = options
        .base_env
        .clone()
        .unwrap_or_else(|| std::env::vars_os().collect());
    let mut launched = Launched {
        run_id,
        run_dir,
        plan: plan.clone(),
        options: options.clone(),
        base_env,
        values,
        pending: plan.processes.iter().map(|p| p.name.to_string()).collect(),
        process_index: index_by_name(plan.processes.iter().map(|p| &*p.name)),
        channel_index: index_by_name(plan.channels.iter().map(|c| &*c.id)),
        held_needs: Vec::with_capacity(plan.processes.len()),
        need_count: HashMap::new(),
        fd_limit: soft_nofile_limit(),
        reset_signals: crate::sys::spawn::non_default_dispositions(),
        ended: HashSet::new(),
        devnull,
        created,
        identities,
    };
    launched.count_held_needs()?;
    launched.prune();
    Ok(launched)
}

/// The resolved `user`/`group` of every process that names one.
fn resolve_identities(plan: &Plan) -> Result<HashMap<String, identity::Identity>, LaunchError> {
    let mut identities = HashMap::new();
    for process in &plan.processes {
        if process.user.is_some() || process.group.is_some() {
            let resolved = identity::resolve(
                &process.name,
                process.user.as_deref(),
                process.group.as_deref(),
            )?;
            identities.insert(process.name.to_string(), resolved);
        }
    }
    Ok(identities)
}

/// Every channel's resources in plan order (but those of listeners on
/// other hosts), then the notify socket when a process uses
/// `ready = "notify"`. What is made is recorded in `created`,
/// whose drop removes it again if a later step fails.
fn create_resources(
    plan: &Plan,
    remote: &HashMap<String, std::net::SocketAddr>,
    created: &mut Created,
    values: &mut Values,
    run_dir: &std::path::Path,
) -> Result<(), LaunchError> {
    for (index, channel) in plan.channels.iter().enumerate() {
        if let Some(&address) = remote.get(&*channel.id) {
            // Its listener is another host's: only where to connect.
            created
                .connect
                .insert(index, resources::ConnectTarget::Tcp(address));
            values.ports.insert(channel.id.to_string(), address.port());
            continue;
        }
        resources::create_channel(created, values, index, channel)?;
    }
    if plan
        .processes
        .iter()
        .any(|p| p.ready == Readiness::Notify || p.watchdog_ms.is_some())
    {
        let path = run_dir.join(NOTIFY_SOCKET_FILE);
        let fd = resources::notify_socket(created, &path.to_string_lossy())?;
        created.notify = Some(fd);
    }
    Ok(())
}

/// Sets `TCP_DEFER_ACCEPT` on the listeners of `cross` (a connection
/// reaches `accept` once it carries data, or after about a second).
fn defer_accept(
    plan: &Plan,
    cross: &HashSet<String>,
    created: &Created,
) -> Result<(), LaunchError> {
    if cross.is_empty() {
        return Ok(());
    }
    for (index, channel) in plan.channels.iter().enumerate() {
        if !cross.contains(&*channel.id) {
            continue;
        }
        if let Some(fd) = created.held.get(&(index, Held::Listen)) {
            crate::sys::fd::tcp_defer_accept(fd.as_fd(), 1).map_err(|errno| {
                LaunchError::Resource {
                    channel: channel.id.to_string(),
                    kind: "tcp listener",
                    name: "TCP_DEFER_ACCEPT".into(),
                    errno,
                }
            })?;
        }
    }
    Ok(())
}

/// Name -> position, for names in plan order.
fn index_by_name<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    names
        .enumerate()
        .map(|(i, name)| (name.to_owned(), i))
        .collect()
}

/// The soft `RLIMIT_NOFILE` of the orchestrator, as an fd number bound.
fn soft_nofile_limit() -> i32 {
    getrlimit(Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft.min(i32::MAX as u64) as i32)
        .unwrap_or(1024)
}

/// Where a child fd comes from.
enum Source {
    Held(usize, Held),
    Connect(usize),
    Ready,
}

impl Launched {
    /// The plan being run.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The values placeholders resolve to (run id, ports, ids, pids).
    pub fn values(&self) -> &Values {
        &self.values
    }

    /// The port bound for a TCP, UDP or RPC-over-TCP channel.
    pub fn port_of(&self, channel: &str) -> Option<u16> {
        self.values.ports.get(channel).copied()
    }

    /// The id of a System V channel's object.
    pub fn sysv_id_of(&self, channel: &str) -> Option<i32> {
        self.values.sysv_ids.get(channel).copied()
    }

    /// The run's lock fd (held until cleanup).
    pub fn lock_fd(&self) -> Option<BorrowedFd<'_>> {
        self.created.run_dir.as_ref().map(|d| d.lock_fd())
    }

    /// The `SOCK_DGRAM` socket bound at `{run_dir}/notify.sock` (non-blocking,
    /// `SO_PASSCRED` on, so each datagram carries the sender's pid), if any
    /// process has `ready = notify`.
    pub fn notify_socket(&self) -> Option<BorrowedFd<'_>> {
        self.created.notify.as_ref().map(|fd| fd.as_fd())
    }

    /// Path of the notify socket, if any.
    pub fn notify_socket_path(&self) -> Option<PathBuf> {
        self.created
            .notify
            .as_ref()
            .map(|_| self.run_dir.join(NOTIFY_SOCKET_FILE))
    }

    /// Binds the stream socket `{run_dir}/FILE` (0600, listening), journaled
    /// like the run's other files so a run killed before cleanup leaves it
    /// to `ipc-run clean`: the control socket (`src/control/`).
    pub fn bind_control_socket(&mut self, file: &str) -> Result<OwnedFd, LaunchError> {
        let path = self.run_dir.join(file);
        resources::unix_bind(
            &mut self.created,
            "control",
            &path.to_string_lossy(),
            crate::plan::SocketType::Stream,
            64,
            0o600,
        )
    }

    /// Spawns the instance named `instance` ([`ProcessPlan::name`]) with its
    /// fds wired; its held ends follow its restart policy (module docs).
    pub fn spawn(&mut self, instance: &str) -> Result<SpawnedChild, LaunchError> {
        self.spawn_with(instance, HoldEnds::ByRestartPolicy)
    }

    /// [`Launched::spawn`], choosing whether its ends stay held.
    pub fn spawn_with(
        &mut self,
        instance: &str,
        hold: HoldEnds,
    ) -> Result<SpawnedChild, LaunchError> {
        let child = self.spawn_tracked(instance, None)?;
        let process = &self.plan.processes[self.process_index[instance]];
        let done = match hold {
            HoldEnds::Keep => false,
            HoldEnds::ByRestartPolicy => process.restart.policy == RestartPolicy::Never,
        };
        self.values.pids.insert(instance.to_owned(), child.pid);
        if done {
            self.release_ends_of(instance);
        }
        Ok(child)
    }

    /// Spawns `argv`, an `exec` health check of `instance`, as `instance`
    /// itself would be spawned (environment, working directory, identity,
    /// cgroup, a process group of its own), with stdio on `/dev/null`.
    /// Its pid is not journaled: it dies with ipc-run (parent-death
    /// signal) and the supervisor kills its group at its timeout.
    pub fn spawn_check(&self, instance: &str, argv: &[String]) -> Result<Pid, LaunchError> {
        let index = *self
            .process_index
            .get(instance)
            .ok_or_else(|| LaunchError::UnknownInstance(instance.to_owned()))?;
        let process = &self.plan.processes[index];
        let context = self.spec_context();
        let spec = spawn::check_spec(process, self.identities.get(instance), &context, argv)?;
        let null = self.devnull.as_fd();
        start(instance, &spec, &[(null, 0), (null, 1), (null, 2)])
    }

    /// Spawns one instance of the per-connection server `instance` for an
    /// accepted `connection`: the connection on fds 0 and 1 where the
    /// listener would be, every other fd as for [`Launched::spawn`]. The
    /// listener and the other ends stay held for the next connection, until
    /// [`Launched::release_ends_of`].
    pub fn spawn_connection(
        &mut self,
        instance: &str,
        connection: OwnedFd,
    ) -> Result<SpawnedChild, LaunchError> {
        self.spawn_tracked(instance, Some(connection))
    }

    /// Spawns `instance` (with `connection` on fds 0 and 1 for a
    /// per-connection server) and journals its process group.
    fn spawn_tracked(
        &mut self,
        instance: &str,
        connection: Option<OwnedFd>,
    ) -> Result<SpawnedChild, LaunchError> {
        let index = *self
            .process_index
            .get(instance)
            .ok_or_else(|| LaunchError::UnknownInstance(instance.to_owned()))?;
        let child = self.spawn_process(&self.plan.processes[index], connection)?;
        if let Some(run_dir) = self.created.run_dir.as_mut() {
            run_dir.track_process(child.pid);
        }
        Ok(child)
    }

    /// The listener ipc-run accepts on for the per-connection server
    /// `instance`, if it is one.
    pub fn connection_listener(&self, instance: &str) -> Option<BorrowedFd<'_>> {
        let process = &self.plan.processes[*self.process_index.get(instance)?];
        process.fds.iter().find_map(|slot| {
            let Ok(Source::Held(channel, Held::Listen)) = self.source_of(process, slot) else {
                return None;
            };
            if !self.plan.channels[channel].mechanism.per_connection() {
                return None;
            }
            self.created
                .held
                .get(&(channel, Held::Listen))
                .map(|fd| fd.as_fd())
        })
    }

    /// Declares `instance` finished for good: the orchestrator's copies of
    /// channel ends no other pending instance needs are closed, so readers
    /// see EOF and writers SIGPIPE.
    pub fn release_ends_of(&mut self, instance: &str) {
        if !self.pending.remove(instance) {
            return;
        }
        let Some(&index) = self.process_index.get(instance) else {
            return;
        };
        for key in &self.held_needs[index] {
            let Some(count) = self.need_count.get_mut(key) else {
                continue;
            };
            *count -= 1;
            if *count == 0 {
                self.need_count.remove(key);
                if !self.created.pinned.contains(key) {
                    self.created.held.remove(key);
                }
            }
        }
    }

    /// Whether `instance` can be spawned again with the same channels: the
    /// orchestrator still holds every channel end it is handed. An instance
    /// with `restart = "never"` gives them up at its spawn (module docs).
    pub fn can_respawn(&self, instance: &str) -> bool {
        self.process_index.get(instance).is_some_and(|&index| {
            self.held_needs[index]
                .iter()
                .all(|key| self.created.held.contains_key(key))
        })
    }

    /// Declares `instance` ended for good: its process has exited (or never
    /// started) and will not be restarted. Releases its held ends as
    /// [`Launched::release_ends_of`] does, and marks the end of the stream
    /// of every ring whose writers have now all ended (`docs/shm-ring.md`):
    /// a ring reader learns it from the header, not from EOF.
    pub fn finished(&mut self, instance: &str) {
        self.release_ends_of(instance);
        self.ended.insert(instance.to_owned());
        let plan = &self.plan;
        let ended = &self.ended;
        for ring in self.created.rings.iter_mut().filter(|r| !r.marked) {
            let writers_ended = plan.channels[ring.channel].from().iter().all(|e| match e {
                EndpointPlan::Port { process, .. } => ended.contains(&**process),
                // A peer outside the topology may always write more.
                EndpointPlan::Own { .. } | EndpointPlan::External => false,
            });
            if writers_ended {
                crate::child::ring::mark_end(&ring.header, ring.producers);
                ring.marked = true;
            }
        }
    }

    /// ipc-run's held read end of the pipe or FIFO `channel`, while it is
    /// held: the supervisor reads how full the pipe is through it.
    pub fn held_read_end(&self, channel: &str) -> Option<BorrowedFd<'_>> {
        self.held_end(channel, Held::Read)
    }

    /// ipc-run's held write end of the pipe `channel`, while it is held:
    /// the supervisor relays an MPI rank's output into it.
    pub fn held_write_end(&self, channel: &str) -> Option<BorrowedFd<'_>> {
        self.held_end(channel, Held::Write)
    }

    /// The end `held` of `channel` that ipc-run holds, while it holds it.
    fn held_end(&self, channel: &str, held: Held) -> Option<BorrowedFd<'_>> {
        let &index = self.channel_index.get(channel)?;
        self.created.held.get(&(index, held)).map(|fd| fd.as_fd())
    }

    /// Forgets the pid of an instance whose process has been reaped, so a
    /// `{pid:…}` placeholder never resolves to a stale pid.
    pub fn forget_pid(&mut self, instance: &str) {
        self.values.pids.remove(instance);
    }

    /// Removes every named object and the run directory.
    pub fn cleanup(mut self) -> CleanupReport {
        self.created.cleanup()
    }

    /// Leaves every object and the run directory in place and releases the
    /// lock, as a SIGKILL of ipc-run would: for tests of [`clean`].
    #[doc(hidden)]
    pub fn abandon(mut self) {
        self.created.objects.clear();
        self.created.run_dir = None;
    }

    /// Validates every slot now, so a wiring error fails before any spawn,
    /// and counts which held ends each process needs.
    ///
    /// An MPI world's launcher also needs the write end of each pipe its
    /// ranks' output is relayed into (`mechanism::mpi::relays`): the
    /// supervisor writes there for it, from a copy taken before any spawn.
    fn count_held_needs(&mut self) -> Result<(), LaunchError> {
        let relays = crate::mechanism::mpi::relays(&self.plan);
        for process in &self.plan.processes {
            let mut needs = Vec::new();
            for slot in &process.fds {
                if let Source::Held(channel, held) = self.source_of(process, slot)? {
                    needs.push((channel, held));
                    *self.need_count.entry((channel, held)).or_insert(0) += 1;
                }
            }
            for relay in relays.iter().filter(|r| r.launcher == process.name) {
                let Some(&channel) = self.channel_index.get(&*relay.channel) else {
                    continue;
                };
                if !needs.contains(&(channel, Held::Write)) {
                    needs.push((channel, Held::Write));
                    *self.need_count.entry((channel, Held::Write)).or_insert(0) += 1;
                }
            }
            self.held_needs.push(needs);
        }
        Ok(())
    }

    /// Closes every held end that no pending instance uses and that is not
    /// pinned (at preparation: ends nobody is wired to).
    fn prune(&mut self) {
        let needed = &self.need_count;
        let pinned = &self.created.pinned;
        self.created
            .held
            .retain(|key, _| needed.contains_key(key) || pinned.contains(key));
    }

    fn source_of(&self, process: &ProcessPlan, slot: &FdSlot) -> Result<Source, LaunchError> {
        let wiring = |reason: String| LaunchError::Wiring {
            instance: process.name.to_string(),
            fd: slot.fd,
            reason,
        };
        let (channel_id, end) = match &slot.role {
            FdRole::Ready => return Ok(Source::Ready),
            FdRole::Channel { channel, end } => (channel, *end),
        };
        let index = *self
            .channel_index
            .get(channel_id.as_ref())
            .ok_or_else(|| wiring(format!("the plan has no channel {channel_id}")))?;
        let channel = &self.plan.channels[index];
        let is_port = |e: &EndpointPlan| {
            matches!(e, EndpointPlan::Port { process: p, port, .. }
                if *p == process.name && *port == slot.port)
        };
        // A socketpair's side is the port's; an end the plan lists on
        // neither side goes by its direction.
        let on_from_side = if channel.from().iter().any(is_port) {
            true
        } else if channel.to().iter().any(is_port) {
            false
        } else {
            resources::writes(end)
        };
        let held = match crate::mechanism::handover(&channel.mechanism, end, on_from_side) {
            Handover::Held(held) => held,
            Handover::Connect => return Ok(Source::Connect(index)),
            Handover::OneWay => return Err(wiring(format!("channel {channel_id} is one-way"))),
            Handover::ByName => {
                return Err(wiring(format!(
                    "a {} channel ({channel_id}) is handed over by name or id, not as an fd",
                    channel.mechanism.name()
                )));
            }
        };
        Ok(Source::Held(index, held))
    }

    /// What every child spec of this run shares.
    fn spec_context(&self) -> spawn::SpecContext<'_> {
        spawn::SpecContext {
            channels: &self.plan.channels,
            values: &self.values,
            base_env: &self.base_env,
            nofile: self.options.nofile,
            fd_limit: self.fd_limit,
            reset_signals: self.reset_signals,
            cgroup_dir: self.created.run_dir.as_ref().and_then(|d| d.cgroup_dir()),
            cgroup_procs: self.created.run_dir.as_ref().and_then(|d| d.cgroup_procs()),
        }
    }

    fn spawn_process(
        &self,
        process: &ProcessPlan,
        connection: Option<OwnedFd>,
    ) -> Result<SpawnedChild, LaunchError> {
        let instance = process.name.as_ref();
        let mut child = SpawnedChild {
            pid: Pid::from_raw(0),
            stdout: None,
            stderr: None,
            ready_fd: None,
        };
        // Fds first, as a wiring error is the plan's fault and says more
        // than a failed program lookup would.
        let mut fds = ChildFds::default();
        self.wire_slots(process, &mut fds, &mut child)?;
        if let Some(connection) = connection {
            fds.connection(process, connection)?;
        }
        self.default_std_fds(process, &mut fds, &mut child)?;
        let context = self.spec_context();
        let spec = spawn::child_spec(process, self.identities.get(instance), &context)?;
        let moves = fds.moves(&self.created.held);
        child.pid = start(instance, &spec, &moves)?;
        Ok(child)
    }

    /// Collects the fd of every slot of `process`: held ends by key, and
    /// per-spawn fds (client connections, the readiness pipe) owned.
    fn wire_slots(
        &self,
        process: &ProcessPlan,
        fds: &mut ChildFds,
        child: &mut SpawnedChild,
    ) -> Result<(), LaunchError> {
        let instance = process.name.as_ref();
        for slot in &process.fds {
            match self.source_of(process, slot)? {
                Source::Held(channel, held) => {
                    if !self.created.held.contains_key(&(channel, held)) {
                        return Err(LaunchError::Wiring {
                            instance: instance.to_owned(),
                            fd: slot.fd,
                            reason: format!(
                                "the orchestrator no longer holds this end of channel {} \
                                 (every user of it was released)",
                                self.plan.channels[channel].id
                            ),
                        });
                    }
                    fds.held.push(((channel, held), slot.fd));
                }
                Source::Connect(channel) => {
                    let target = &self.created.connect[&channel];
                    let fd = resources::connect_to(target).map_err(sys_for(
                        instance,
                        &format!("connect to channel {}", self.plan.channels[channel].id),
                    ))?;
                    fds.owned.push((fd, slot.fd));
                }
                Source::Ready => {
                    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
                        .map_err(sys_for(instance, "create the readiness pipe"))?;
                    fds.owned.push((write, slot.fd));
                    child.ready_fd = Some(read);
                }
            }
        }
        Ok(())
    }

    /// Fds 0-2 the plan does not wire: stdin from `/dev/null` (or ipc-run's
    /// own, when asked), stdout and stderr into new pipes the supervisor
    /// relays.
    fn default_std_fds(
        &self,
        process: &ProcessPlan,
        fds: &mut ChildFds,
        child: &mut SpawnedChild,
    ) -> Result<(), LaunchError> {
        let instance = process.name.as_ref();
        let owned: Vec<i32> = fds.owned.iter().map(|(_, target)| *target).collect();
        let wired = |fd: i32| process.fds.iter().any(|s| s.fd == fd) || owned.contains(&fd);
        if !wired(0) {
            let fd = match std_fd(0).filter(|_| self.options.stdin_is_own) {
                Some(own) => own.try_clone_to_owned(),
                None => self.devnull.try_clone(),
            }
            .map_err(|e| LaunchError::sys(format!("open stdin for {instance}"), io_errno(&e)))?;
            fds.owned.push((fd, 0));
        }
        for (fd, out) in [(1, &mut child.stdout), (2, &mut child.stderr)] {
            if !wired(fd) {
                let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
                    .map_err(sys_for(instance, "create an output pipe"))?;
                fds.owned.push((write, fd));
                *out = Some(read);
            }
        }
        Ok(())
    }
}

/// The fds one spawn places, each with its target number.
#[derive(Default)]
struct ChildFds {
    /// Ends the launcher holds, by key into [`Created::held`].
    held: Vec<((usize, Held), i32)>,
    /// Per-spawn fds, closed in the parent once the child has exec'd.
    owned: Vec<(OwnedFd, i32)>,
}

impl ChildFds {
    /// An accepted connection on fds 0 and 1 in place of the listener the
    /// plan puts at fd 0.
    fn connection(
        &mut self,
        process: &ProcessPlan,
        connection: OwnedFd,
    ) -> Result<(), LaunchError> {
        let instance = process.name.as_ref();
        self.held.retain(|&(_, target)| target != 0);
        let copy = connection.try_clone().map_err(|e| {
            LaunchError::sys(
                format!("duplicate the connection for {instance}"),
                io_errno(&e),
            )
        })?;
        self.owned.push((connection, 0));
        self.owned.push((copy, 1));
        Ok(())
    }

    /// The `(source, target)` pairs [`crate::sys::spawn::spawn`] takes.
    fn moves<'a>(
        &'a self,
        held: &'a HashMap<(usize, Held), OwnedFd>,
    ) -> Vec<(BorrowedFd<'a>, i32)> {
        let held_moves = self
            .held
            .iter()
            .map(|(key, target)| (held[key].as_fd(), *target));
        let owned_moves = self.owned.iter().map(|(fd, target)| (fd.as_fd(), *target));
        held_moves.chain(owned_moves).collect()
    }
}

/// Maps an errno to a [`LaunchError::Sys`] that names `action` and the
/// instance it was for.
fn sys_for(instance: &str, action: &str) -> impl FnOnce(Errno) -> LaunchError {
    let action = format!("{action} for {instance}");
    move |errno| LaunchError::sys(action, errno)
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Spawns `spec` for `instance`; when it does not start, the error names
/// the instance, the program and the step of the child that failed.
fn start(
    instance: &str,
    spec: &ChildSpec,
    fds: &[(BorrowedFd<'_>, i32)],
) -> Result<Pid, LaunchError> {
    crate::sys::spawn::spawn(spec, fds).map_err(|failure| {
        let (step, errno) = match failure {
            SpawnFailure::Parent(errno) => (None, errno),
            SpawnFailure::Child { step, errno } => (Some(step), errno),
        };
        SpawnError {
            instance: instance.to_owned(),
            program: spec.program.to_string_lossy().into_owned(),
            step,
            errno,
        }
        .into()
    })
}
