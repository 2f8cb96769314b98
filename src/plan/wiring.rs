//! Third pass: each instance's fd table and environment.
//!
//! Fd numbers are allocated deterministically, systemd-style: fixed fds
//! first, then listening sockets from fd 3 in edge order (so `LISTEN_FDS`
//! counts them from 3 without gaps when nothing is pinned), then every other
//! port that is handed over as an fd, in edge order.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use super::edges::{ChannelView, Channels, PortEnd, is_std_stream, port_env_name};
use super::model::{
    ChannelPlan, Env, EnvValue, EnvVar, FdRole, FdSlot, LOCAL_GROUP, Mechanism, ObjectKind,
    PortRef, ProcessPlan, ProcessPlanRare, RUN_DIR, RUN_ID, RareFields, Readiness, port_value,
};
use super::processes::{
    BASE_INHERITED_ENV, DEFAULT_READY_TIMEOUT_MS, DEFAULT_STOP_TIMEOUT_MS, ProcessDecl,
};
use super::{Limits, Sink};
use crate::diagnostic::{Diagnostic, Label};

/// Path of the sd_notify socket, when some process uses `ready = "notify"`.
pub const NOTIFY_SOCKET_PATH: &str = "{run_dir}/notify.sock";

/// Builds every instance's plan and fills the fds into the channels.
/// `name` is the plan's name for the topology (`IPC_RUN_TOPOLOGY`).
pub fn wire(
    name: &str,
    limits: &Limits,
    processes: &[ProcessDecl],
    channels: &mut Channels,
    sink: &mut Sink,
) -> Vec<ProcessPlan> {
    check_notify_socket(limits, processes, sink);
    check_other_user_access(processes, channels, sink);
    let mut index = EndIndex::new(processes, channels);
    // Every instance of every process that adds no names shares one list.
    let base_inherit_env: Arc<[Cow<'static, str>]> = BASE_INHERITED_ENV
        .iter()
        .map(|s| Cow::Borrowed(*s))
        .collect();
    let mut out = Vec::with_capacity(index.total());
    let mut scratch = FdScratch::default();
    let mut values = Values::default();
    let shared = SharedEnv::new(name);
    for process in processes {
        let replicated = process.instances.len() > 1 || process.replicas;
        let inherit_env = inherited(&base_inherit_env, process);
        let own = OwnEnv::new(process);
        for (replica, instance) in process.instances.iter().enumerate() {
            // Instances are numbered in the order they are made.
            let number = out.len();
            let ends = index.of(number);
            assign_fds(
                process,
                instance,
                ends,
                channels,
                limits,
                &mut scratch,
                sink,
            );
            let table = fd_table(process, ends, channels, &mut scratch, &mut values);
            let ids = InstanceIds {
                shared: &shared,
                own: &own,
                instance,
                replica: replicated.then_some(replica),
            };
            let env = environment(&ids, process, table.port_vars, &table.listen, &mut values);
            out.push(instance_plan(
                &ids,
                process,
                processes,
                env,
                Arc::clone(&inherit_env),
                table.fds,
            ));
            // A channel's ports are dropped once its last one is wired, so
            // what wiring reads shrinks as the instances' plans grow (the
            // plan's peak is at the end of this pass).
            for &(c, _) in ends {
                channels.wired(c as usize);
            }
            index.done(number);
        }
    }
    out
}

/// The variables `process` passes through: the base list, shared, when it
/// adds none; else the base list and its own, one list for its replicas.
fn inherited(base: &Arc<[Cow<'static, str>]>, process: &ProcessDecl) -> Arc<[Cow<'static, str>]> {
    if process.spec.inherit_env.is_empty() {
        return Arc::clone(base);
    }
    let mut names = base.to_vec();
    for extra in &process.spec.inherit_env {
        if !names.iter().any(|name| name == extra.get_ref()) {
            names.push(extra.get_ref().clone().into());
        }
    }
    names.into()
}

/// E0607 when the notify socket's path would not fit `sun_path`.
fn check_notify_socket(limits: &Limits, processes: &[ProcessDecl], sink: &mut Sink) {
    let Some(process) = processes.iter().find(|p| p.ready == Readiness::Notify) else {
        return;
    };
    if limits.run_dir_len.value + "/notify.sock".len() as u64 >= limits.sun_path_max.value {
        sink.push(
            Diagnostic::error("E0607", "the notify socket path would not fit in sun_path")
                .with_label(Label::primary(
                    process.span.clone(),
                    "uses ready = \"notify\"",
                ))
                .with_note(format!(
                    "the run directory is {} bytes long ({})",
                    limits.run_dir_len.value, limits.run_dir_len.source
                )),
        );
    }
}

/// E0710 for `ready = "notify"` with `user =` (the child could never send
/// READY=1: refused), and W0701 for what such a process must open by name
/// but cannot: the run directory is 0700 and every named object is owned by
/// ipc-run's user, 0600 unless the edge's `mode` lets the group in. The
/// planner cannot know ipc-run's own user, so the named objects are warnings;
/// a notify readiness that cannot work is refused, as `ready = { fd = N }`
/// always can.
fn check_other_user_access(processes: &[ProcessDecl], channels: &Channels, sink: &mut Sink) {
    for process in processes {
        let Some(user) = &process.spec.user else {
            continue;
        };
        if process.ready == Readiness::Notify {
            let mut error = Diagnostic::error(
                "E0710",
                format!(
                    "`{}` runs as `{}` but cannot reach the notify socket, so it never becomes ready",
                    process.name,
                    user.get_ref()
                ),
            )
            .with_label(Label::primary(user.span(), "another user than ipc-run's"));
            if let Some(ready) = &process.spec.ready {
                error = error.with_label(Label::secondary(
                    ready.span(),
                    "READY=1 is sent to {run_dir}/notify.sock",
                ));
            }
            sink.push(
                error
                    .with_note("the notify socket is in the run directory, which is 0700 and owned by ipc-run's user")
                    .with_help("use `ready = { fd = N }` (an inherited pipe), or run the process as ipc-run's user"),
            );
        }
    }
    let mut warned = std::collections::BTreeSet::new();
    for channel in channels.iter() {
        for end in channel.ports.iter().filter(|end| !end.needs_fd) {
            let process = &processes[end.process()];
            let Some(user) = &process.spec.user else {
                continue;
            };
            let Some(object) = channel
                .plan
                .objects()
                .iter()
                .find(|o| denies_others(o.kind, o.mode))
            else {
                continue;
            };
            if !warned.insert((end.process(), channel.plan.id.as_ref())) {
                continue;
            }
            let why = if matches!(object.kind, ObjectKind::Fifo | ObjectKind::UnixSocket) {
                "it is in the run directory, which is 0700 and owned by ipc-run's user".to_owned()
            } else {
                format!(
                    "it is created with mode {:04o}, owned by ipc-run's user",
                    object.mode
                )
            };
            sink.push(
                Diagnostic::warning(
                    "W0701",
                    format!(
                        "`{}` runs as `{}` but opens `{}` ({}) by name, which that user cannot",
                        process.name,
                        user.get_ref(),
                        object.name,
                        channel.plan.mechanism.name()
                    ),
                )
                .with_label(Label::primary(end.span.clone(), format!("`{}` opens it by name", process.name)))
                .with_label(Label::secondary(user.span(), "another user than ipc-run's"))
                .with_note(why)
                .with_help("use a mechanism handed over as an fd (pipe, socketpair, a FIFO with deliver = \"fd\"), give the edge a `mode` that lets the process's group in (e.g. \"0660\") for objects outside the run directory, or run the process as ipc-run's user"),
            );
        }
    }
}

/// Whether another user than the owner is denied an object of `kind`
/// created with `mode`: always in the run directory (0700), else unless
/// the mode lets the group in.
fn denies_others(kind: ObjectKind, mode: u32) -> bool {
    matches!(kind, ObjectKind::Fifo | ObjectKind::UnixSocket) || mode & 0o060 == 0
}

/// Every instance's channel ends `(channel, port)`, found in one sweep with
/// edge order kept. There is one per port of every instance, as `u32`s:
/// they are kept in blocks of [`BLOCK`] instances, each dropped once its
/// instances are wired, so the index is gone by the end of wiring, where
/// the plan's peak is.
struct EndIndex {
    blocks: Vec<Option<EndBlock>>,
    total: usize,
}

/// The ends of [`BLOCK`] consecutive instances: the `i`th one's are
/// `ends[starts[i]..starts[i + 1]]`.
struct EndBlock {
    starts: Box<[u32]>,
    ends: Box<[(u32, u32)]>,
}

/// Instances to a block of [`EndIndex`].
const BLOCK: usize = 1024;

impl EndIndex {
    fn new(processes: &[ProcessDecl], channels: &Channels) -> EndIndex {
        // Instances are numbered in declaration order: process p's first
        // one is `first_instance[p]`.
        let mut first_instance = Vec::with_capacity(processes.len());
        let mut total = 0usize;
        for process in processes {
            first_instance.push(total);
            total += process.instances.len();
        }
        let number = |port: &PortEnd| first_instance[port.process()] + port.replica();
        // Each instance's count of ends, then where its next end goes.
        let mut at = vec![0u32; total];
        for channel in channels.iter() {
            for port in channel.ports {
                at[number(port)] += 1;
            }
        }
        let mut blocks = Vec::with_capacity(total.div_ceil(BLOCK));
        for counts in at.chunks_mut(BLOCK) {
            let mut starts = Vec::with_capacity(counts.len() + 1);
            let mut sum = 0u32;
            starts.push(sum);
            for count in counts.iter_mut() {
                let ends = *count;
                *count = sum;
                sum += ends;
                starts.push(sum);
            }
            blocks.push(Some(EndBlock {
                starts: starts.into(),
                ends: vec![(0, 0); sum as usize].into(),
            }));
        }
        for (c, channel) in channels.iter().enumerate() {
            for (p, port) in channel.ports.iter().enumerate() {
                let instance = number(port);
                let Some(block) = &mut blocks[instance / BLOCK] else {
                    unreachable!("every block is kept while the index is made");
                };
                let slot = &mut at[instance];
                // Channels and their ports are bounded by the instance cap.
                block.ends[*slot as usize] = (c as u32, p as u32);
                *slot += 1;
            }
        }
        EndIndex { blocks, total }
    }

    fn total(&self) -> usize {
        self.total
    }

    /// The ends of instance `number`, until its block is done.
    fn of(&self, number: usize) -> &[(u32, u32)] {
        let Some(block) = &self.blocks[number / BLOCK] else {
            unreachable!("an instance's ends are read before its block is done");
        };
        let i = number % BLOCK;
        &block.ends[block.starts[i] as usize..block.starts[i + 1] as usize]
    }

    /// Drops the block of instance `number` once it is the block's last.
    fn done(&mut self, number: usize) {
        if number % BLOCK == BLOCK - 1 || number + 1 == self.total {
            self.blocks[number / BLOCK] = None;
        }
    }
}

/// The values of per-instance variables, shared where instances have the
/// same: `LISTEN_FDS` counts, `LISTEN_FDNAMES` lists, replica numbers and
/// readiness fds repeat across instances; a large plan would otherwise hold
/// a copy of each per instance. (A port's value is no text at all: a
/// reference to its channel end, [`PortRef`].)
#[derive(Default)]
struct Values {
    made: std::collections::HashSet<Arc<str>>,
    /// `IPC_PORT_*` names by port name: each made once per plan.
    env_names: std::collections::HashMap<Arc<str>, Arc<str>>,
    text: String,
}

impl Values {
    /// A port variable's value: a reference to its channel end, or, for
    /// one that does not fit one, its text.
    fn port(channel: &ChannelPlan, index: usize, end: &PortEnd, fd: Option<i32>) -> EnvValue {
        match PortRef::new(index, end.is_reader, fd) {
            Some(port) => EnvValue::Port(port),
            None => port_value(channel, end.end, fd).into(),
        }
    }

    /// The shared `IPC_PORT_*` name of a port.
    fn env_name(&mut self, port: &Arc<str>) -> Arc<str> {
        if let Some(name) = self.env_names.get(port) {
            return Arc::clone(name);
        }
        let name: Arc<str> = port_env_name(port).into();
        self.env_names.insert(Arc::clone(port), Arc::clone(&name));
        name
    }

    /// The shared value with the text `write` puts in an empty buffer.
    fn get(&mut self, write: impl FnOnce(&mut String)) -> Arc<str> {
        self.text.clear();
        write(&mut self.text);
        if let Some(value) = self.made.get(self.text.as_str()) {
            return Arc::clone(value);
        }
        let value: Arc<str> = self.text.as_str().into();
        self.made.insert(Arc::clone(&value));
        value
    }
}

/// Per-instance scratch space, reused from one instance to the next.
#[derive(Default)]
struct FdScratch {
    /// Fds in use, sorted.
    taken: Vec<i32>,
    /// The fd of each end, when it gets one.
    assigned: Vec<Option<i32>>,
    /// End indices by fd.
    ordered: Vec<usize>,
}

/// Numbers the fds of one instance's ends into `scratch.assigned`.
fn assign_fds(
    process: &ProcessDecl,
    instance: &str,
    ends: &[(u32, u32)],
    channels: &Channels,
    limits: &Limits,
    scratch: &mut FdScratch,
    sink: &mut Sink,
) {
    let FdScratch {
        taken, assigned, ..
    } = scratch;
    taken.clear();
    assigned.clear();
    assigned.resize(ends.len(), None);
    if let Readiness::Fd { fd } = process.ready {
        take(taken, fd);
    }
    pin_fixed_fds(process, ends, channels, scratch, sink);
    refuse_signals_per_connection(process, ends, channels, sink);
    let FdScratch {
        taken, assigned, ..
    } = scratch;
    // Listeners from 3 up, then the other fd ports. Fds are handed out in
    // increasing order, so the search resumes where the last one was found.
    let mut next = 3;
    for listeners in [true, false] {
        for (e, &(c, p)) in ends.iter().enumerate() {
            let end = &channels.get(c as usize).ports[p as usize];
            if !end.needs_fd || end.listener != listeners || assigned[e].is_some() {
                continue;
            }
            while taken.binary_search(&next).is_ok() {
                next += 1;
            }
            take(taken, next);
            assigned[e] = Some(next);
        }
    }
    if let Some(&highest) = taken.last() {
        if highest as u64 >= limits.nofile_soft.value {
            sink.push(
                Diagnostic::error("E0204", format!("`{instance}` would need fd {highest}, at or above the soft RLIMIT_NOFILE of {}", limits.nofile_soft.value))
                    .with_label(Label::primary(process.span.clone(), format!("{} fds handed over", taken.len())))
                    .with_note(format!("RLIMIT_NOFILE is {} ({})", limits.nofile_soft.value, limits.nofile_soft.source)),
            );
        }
    }
}

/// Stdio and pinned fds first; a fixed fd on a port reached by name is an
/// error.
fn pin_fixed_fds(
    process: &ProcessDecl,
    ends: &[(u32, u32)],
    channels: &Channels,
    scratch: &mut FdScratch,
    sink: &mut Sink,
) {
    for (e, &(c, p)) in ends.iter().enumerate() {
        let channel = channels.get(c as usize);
        let end = &channel.ports[p as usize];
        let port: &str = channel.port(end);
        let declared = process
            .ports()
            .get(port)
            .and_then(|d| d.fd.as_ref().map(|(fd, _)| *fd));
        let fixed = match port {
            "stdin" => Some(0),
            "stdout" => Some(1),
            "stderr" => Some(2),
            // One instance per connection, the connection on fds 0 and 1.
            _ if per_connection(channel, end) => Some(0),
            _ => declared,
        };
        let Some(fd) = fixed else { continue };
        if fd == 0
            && !is_std_stream(port)
            && !socket_at_stdin(process, port, channel, end, declared, sink)
        {
            continue;
        }
        if end.needs_fd && fd < 3 && scratch.taken.binary_search(&fd).is_ok() {
            sink.push(
                Diagnostic::error("E0203", format!("fd {fd} of `{}` is asked for twice: by `{port}` and by another port or edge", process.name))
                    .with_label(Label::primary(end.span.clone(), format!("`{port}` at fd {fd}")))
                    .with_help("a socket on fd 0 replaces stdin: leave `stdin` (and, per connection, `stdout`) unwired"),
            );
        } else if end.needs_fd {
            if per_connection(channel, end) {
                // The connection is fd 1 as well.
                if scratch.taken.binary_search(&1).is_ok() {
                    sink.push(
                        Diagnostic::error("E0203", format!("fd 1 of `{}` is asked for twice: by `{port}`, served per connection, and by its `stdout`", process.name))
                            .with_label(Label::primary(end.span.clone(), "the connection is on fds 0 and 1"))
                            .with_help("a per-connection server answers on stdout: leave its `stdout` unwired"),
                    );
                }
                take(&mut scratch.taken, 1);
            }
            take(&mut scratch.taken, fd);
            scratch.assigned[e] = Some(fd);
        } else if fd > 2 {
            let span = process
                .ports()
                .get(port)
                .and_then(|d| d.fd.as_ref().map(|(_, s)| s.clone()))
                .unwrap_or(end.span.clone());
            sink.push(
                Diagnostic::error("E0206", format!("port `{}.{port}` has a fixed fd, but a {} reaches the process by name, not by fd", process.name, channel.plan.mechanism.name()))
                    .with_label(Label::primary(span, "no fd is handed over"))
                    .with_label(Label::secondary(end.span.clone(), "the edge using the port")),
            );
        } else {
            sink.push(
                Diagnostic::error("E0205", format!("port `{}.{port}` is a standard stream, but a {} reaches the process by name, not by fd", process.name, channel.plan.mechanism.name()))
                    .with_label(Label::primary(end.span.clone(), "name a port instead, e.g. `proc.data`")),
            );
        }
    }
}

/// Whether `end` is the server side of an rpc edge served one instance
/// per connection (`endpoint = "per-connection"`).
fn per_connection(channel: ChannelView<'_>, end: &PortEnd) -> bool {
    end.listener && channel.plan.mechanism.per_connection()
}

/// A per-connection server runs as many processes, none of them for good:
/// there is no one pid a signal edge could hand its sender (`E0334`).
fn refuse_signals_per_connection(
    process: &ProcessDecl,
    ends: &[(u32, u32)],
    channels: &Channels,
    sink: &mut Sink,
) {
    let mut ends = ends.iter().map(|&(c, p)| {
        let channel = channels.get(c as usize);
        (channel, &channel.ports[p as usize])
    });
    if !ends
        .clone()
        .any(|(channel, end)| per_connection(channel, end))
    {
        return;
    }
    if let Some((_, end)) = ends.find(|(channel, end)| {
        end.is_reader && matches!(channel.plan.mechanism, Mechanism::Signal { .. })
    }) {
        sink.push(
            Diagnostic::error("E0334", format!("`{}` is served per connection and cannot receive a signal edge", process.name))
                .with_label(Label::primary(end.span.clone(), "no one process to signal: each connection has its own"))
                .with_help("signal the instances from the server itself, or serve it with the default `endpoint`"),
        );
    }
}

/// Whether a named port may take fd 0 (inetd style): a listening socket
/// or a socketpair end, as inetd hands a `wait` service its socket on
/// stdin. Anything else there is `E0203`; a per-connection server's port
/// can be at no other fd (`E0330`).
fn socket_at_stdin(
    process: &ProcessDecl,
    port: &str,
    channel: ChannelView<'_>,
    end: &PortEnd,
    declared: Option<i32>,
    sink: &mut Sink,
) -> bool {
    let span = || {
        process
            .ports()
            .get(port)
            .and_then(|d| d.fd.as_ref().map(|(_, s)| s.clone()))
            .unwrap_or(end.span.clone())
    };
    if per_connection(channel, end) {
        if declared.is_some_and(|fd| fd != 0) {
            sink.push(
                Diagnostic::error("E0330", format!("port `{}.{port}` is served per connection, which puts the connection on fds 0 and 1", process.name))
                    .with_label(Label::primary(span(), "no other fd can be given"))
                    .with_help("remove `fd`, or write `fd = 0`"),
            );
            return false;
        }
        return true;
    }
    let socket = end.listener || matches!(channel.plan.mechanism, Mechanism::Socketpair { .. });
    if !socket {
        sink.push(
            Diagnostic::error(
                "E0203",
                format!(
                    "port `{}.{port}` asks for fd 0, but a {} end is not a socket",
                    process.name,
                    channel.plan.mechanism.name()
                ),
            )
            .with_label(Label::primary(
                span(),
                "fd 0 takes a listening socket or a socketpair end (inetd style)",
            ))
            .with_help("use fd 3 or above, or the port name `stdin` for a stream into stdin"),
        );
    }
    socket
}

/// The sockets an instance gets through `LISTEN_FDS`, by port name.
#[derive(Default)]
struct Listening {
    count: usize,
    names: String,
}

/// One instance's fd table and port variables.
struct FdTable {
    fds: Vec<FdSlot>,
    port_vars: Vec<EnvVar>,
    listen: Listening,
}

/// Writes each end's fd into its channel and builds the instance's fd
/// table (sorted by fd) and `IPC_PORT_*` variables.
fn fd_table(
    process: &ProcessDecl,
    ends: &[(u32, u32)],
    channels: &mut Channels,
    scratch: &mut FdScratch,
    values: &mut Values,
) -> FdTable {
    let FdScratch {
        taken,
        assigned,
        ordered,
    } = scratch;
    let mut fds = Vec::with_capacity(taken.len());
    let mut port_vars = Vec::new();
    let mut listen = Listening::default();
    ordered.clear();
    ordered.extend(0..ends.len());
    ordered.sort_by_key(|&e| assigned[e].unwrap_or(i32::MAX));
    for &e in ordered.iter() {
        let (c, p) = (ends[e].0 as usize, ends[e].1 as usize);
        let fd = assigned[e];
        let end = channels.get(c).ports[p].clone();
        channels.set_fd(c, &end, fd);
        let channel = channels.get(c);
        let port = Arc::clone(channel.port(&end));
        if let Some(fd) = fd {
            fds.push(FdSlot {
                fd,
                port: port.clone(),
                role: FdRole::Channel {
                    channel: channel.plan.id.clone(),
                    end: end.end,
                },
            });
            // A socket on stdin is found there (inetd style), not
            // through LISTEN_FDS, which counts from fd 3.
            if end.listener && fd >= 3 {
                if listen.count > 0 {
                    listen.names.push(':');
                }
                listen.names.push_str(&port);
                listen.count += 1;
            }
        }
        if !is_std_stream(&port) {
            port_vars.push(EnvVar {
                name: values.env_name(&port),
                value: Values::port(channel.plan, c, &end, fd),
            });
        }
    }
    if let Readiness::Fd { fd } = process.ready {
        fds.push(FdSlot {
            fd,
            port: "ready".into(),
            role: FdRole::Ready,
        });
    }
    fds.sort_by_key(|slot| slot.fd);
    FdTable {
        fds,
        port_vars,
        listen,
    }
}

/// Variables whose name and value are the same in many instances, made
/// once per plan and shared by every environment that has them.
struct SharedEnv {
    /// `IPC_RUN_ID`, `IPC_RUN_DIR` and `IPC_RUN_TOPOLOGY`: the head of every
    /// instance's environment, one list for the whole plan.
    head: Arc<[EnvVar]>,
    /// The host group of a plan without placement, shared by every instance.
    local: Arc<str>,
    listen_pid: EnvVar,
    notify_socket: EnvVar,
    process: Arc<str>,
    replica: Arc<str>,
    replicas: Arc<str>,
    listen_fds: Arc<str>,
    listen_fdnames: Arc<str>,
    ready_fd: Arc<str>,
}

impl SharedEnv {
    fn new(topology: &str) -> Self {
        let var = |name: &str, value: &str| EnvVar {
            name: name.into(),
            value: value.into(),
        };
        SharedEnv {
            head: Arc::from([
                var("IPC_RUN_ID", RUN_ID),
                var("IPC_RUN_DIR", RUN_DIR),
                var("IPC_RUN_TOPOLOGY", topology),
            ]),
            local: LOCAL_GROUP.into(),
            // LISTEN_PID is the child's own pid, known only in the child.
            listen_pid: var("LISTEN_PID", "{pid}"),
            notify_socket: var("NOTIFY_SOCKET", NOTIFY_SOCKET_PATH),
            process: "IPC_RUN_PROCESS".into(),
            replica: "IPC_RUN_REPLICA".into(),
            replicas: "IPC_RUN_REPLICAS".into(),
            listen_fds: "LISTEN_FDS".into(),
            listen_fdnames: "LISTEN_FDNAMES".into(),
            ready_fd: "IPC_RUN_READY_FD".into(),
        }
    }
}

/// What a process's instances have alike in their environment, made once
/// for all its replicas.
struct OwnEnv {
    /// `IPC_RUN_REPLICAS`'s value.
    replicas: Arc<str>,
    /// The process's own `env`, in order.
    vars: Vec<EnvVar>,
}

impl OwnEnv {
    fn new(process: &ProcessDecl) -> Self {
        let vars = process
            .spec
            .env()
            .iter()
            .map(|(key, value)| EnvVar {
                name: key.get_ref().as_str().into(),
                value: value.get_ref().as_str().into(),
            })
            .collect();
        OwnEnv {
            replicas: process.instances.len().to_string().into(),
            vars,
        }
    }
}

/// Who an instance is, as its environment says.
struct InstanceIds<'a> {
    /// The plan's shared variables, the topology's name among them.
    shared: &'a SharedEnv,
    /// What the instance shares with its replicas.
    own: &'a OwnEnv,
    /// The instance name.
    instance: &'a Arc<str>,
    /// The replica index, when the process is replicated.
    replica: Option<usize>,
}

/// The environment ipc-run sets, then the process's own `env`.
fn environment(
    ids: &InstanceIds<'_>,
    process: &ProcessDecl,
    mut port_vars: Vec<EnvVar>,
    listen: &Listening,
    values: &mut Values,
) -> Env {
    let shared = ids.shared;
    let var = |name: &Arc<str>, value: Arc<str>| EnvVar {
        name: Arc::clone(name),
        value: value.into(),
    };
    // Sized to what is pushed below: one vector per instance, so slack
    // left here is multiplied by the number of instances.
    let replica_vars = if ids.replica.is_some() { 2 } else { 0 };
    let listen_vars = if listen.count > 0 { 3 } else { 0 };
    let ready_vars = usize::from(!matches!(process.ready, Readiness::Started));
    let mut env = Vec::with_capacity(
        1 + replica_vars + port_vars.len() + listen_vars + ready_vars + ids.own.vars.len(),
    );
    env.push(var(&shared.process, Arc::clone(ids.instance)));
    if let Some(replica) = ids.replica {
        let value = values.get(|text| {
            let _ = write!(text, "{replica}");
        });
        env.push(var(&shared.replica, value));
        env.push(var(&shared.replicas, Arc::clone(&ids.own.replicas)));
    }
    port_vars.sort_by(|a, b| a.name.cmp(&b.name));
    env.extend(port_vars);
    if listen.count > 0 {
        env.push(shared.listen_pid.clone());
        let count = values.get(|text| {
            let _ = write!(text, "{}", listen.count);
        });
        env.push(var(&shared.listen_fds, count));
        let names = values.get(|text| text.push_str(&listen.names));
        env.push(var(&shared.listen_fdnames, names));
    }
    match process.ready {
        Readiness::Notify => env.push(shared.notify_socket.clone()),
        Readiness::Fd { fd } => {
            let value = values.get(|text| {
                let _ = write!(text, "{fd}");
            });
            env.push(var(&shared.ready_fd, value));
        }
        Readiness::Started => {}
    }
    env.extend(ids.own.vars.iter().cloned());
    debug_assert_eq!(
        env.len(),
        env.capacity(),
        "the environment's size is counted above"
    );
    Env::new(Arc::clone(&shared.head), env)
}

fn instance_plan(
    ids: &InstanceIds<'_>,
    process: &ProcessDecl,
    processes: &[ProcessDecl],
    env: Env,
    inherit_env: Arc<[Cow<'static, str>]>,
    fds: Vec<FdSlot>,
) -> ProcessPlan {
    let after = process
        .after()
        .iter()
        .flat_map(|&a| processes[a].instances.iter().cloned())
        .collect();
    ProcessPlan {
        name: ids.instance.clone(),
        process: process.name.clone(),
        replica: ids.replica.map(|r| r as u32),
        host: Arc::clone(&ids.shared.local),
        // Shared by every instance with the same command.
        argv: Arc::clone(&process.argv),
        shell: process.shell,
        cwd: process
            .spec
            .cwd
            .as_ref()
            .map(|c| c.get_ref().as_str().into()),
        env,
        inherit_env,
        fds: fds.into(),
        ready: process.ready,
        ready_timeout_ms: process
            .spec
            .ready_timeout
            .as_ref()
            .map_or(DEFAULT_READY_TIMEOUT_MS, |t| t.get_ref().0),
        restart: process.restart(),
        stop_signal: process.stop_signal(),
        stop_timeout_ms: process
            .spec
            .stop_timeout
            .as_ref()
            .map_or(DEFAULT_STOP_TIMEOUT_MS, |t| t.get_ref().0),
        after,
        managed: None,
        // Boxed only for an instance that sets one of them.
        rare: RareFields::new(ProcessPlanRare {
            user: process.spec.user.as_ref().map(|u| u.get_ref().clone()),
            group: process.spec.group.as_ref().map(|g| g.get_ref().clone()),
            env_files: process
                .spec
                .env_file
                .iter()
                .map(|f| f.get_ref().clone())
                .collect(),
            forward_signals: process.forward_signals().to_vec(),
            conditions: Vec::new(),
            health: None,
            watchdog_ms: None,
            restart_dependents: process
                .spec
                .restart_dependents
                .as_ref()
                .is_some_and(|r| *r.get_ref()),
        }),
    }
}

/// Marks an fd as used, keeping `taken` sorted.
fn take(taken: &mut Vec<i32>, fd: i32) {
    if let Err(at) = taken.binary_search(&fd) {
        taken.insert(at, fd);
    }
}
