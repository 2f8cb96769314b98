//! Second pass: edges resolved to ports, each port used by one edge, the
//! mechanism chosen (or the named one checked), host limits applied, and the
//! channel's named objects and per-port descriptions decided.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use super::model::{
    ChannelPlan, Choice, End, EndpointPlan, Mechanism, NamedObject, ObjectKind, RUN_DIR,
    RUN_DIR_PCT, RUN_ID, RingPlan, percent_encode_into,
};
use super::processes::ProcessDecl;
use super::select::{Traits, check_fit, choose};
use super::signals::{known, parse_signal};
use super::{Limits, Sink, Span};
use crate::diagnostic::{Diagnostic, Label};
use crate::topology::{
    Delivery, EdgeSpec, EndpointRef, EndpointTarget, MechanismName, SocketType, Spanned, SyncKind,
    Topology, Traffic, check_name,
};
use ipc_run_child as child;

/// Process indices by name, for lookups that must not scan the whole list.
type ByName<'p> = HashMap<&'p str, usize>;

/// Listen backlog of every listener.
pub const LISTEN_BACKLOG: u32 = 128;
/// Largest value of a System V semaphore (`SEMVMX`).
pub const SYSV_SEMVMX: u64 = 32_767;

/// A channel with what the later passes need besides its plan.
#[derive(Debug, Clone)]
pub struct ChannelDecl {
    /// The channel as it appears in the plan (fds filled by `wiring`).
    pub plan: ChannelPlan,
    /// The span diagnostics about the whole edge point at.
    pub span: Span,
    /// Every port of an instance this channel touches.
    pub ports: Vec<PortEnd>,
    /// Value of the `IPC_PORT_*` variable of a `from` port and of a `to`
    /// port, without the fd (added in wiring): the same for every port on a
    /// side.
    pub descriptions: [String; 2],
}

impl ChannelDecl {
    /// The plan's endpoint of a port end.
    fn endpoint(&self, end: &PortEnd) -> &EndpointPlan {
        let side = if end.is_reader {
            &self.plan.to
        } else {
            &self.plan.from
        };
        &side[end.slot]
    }

    /// The port name and its `IPC_PORT_*` variable name.
    pub fn port(&self, end: &PortEnd) -> (&str, &str) {
        match self.endpoint(end) {
            EndpointPlan::Port { port, env, .. } => (port, env),
            _ => unreachable!("port ends point at port endpoints"),
        }
    }

    /// The `IPC_PORT_*` value of a port end, without its fd.
    pub fn description(&self, end: &PortEnd) -> &str {
        &self.descriptions[usize::from(end.is_reader)]
    }

    /// Records the fd a port end gets in the plan.
    pub fn set_fd(&mut self, end: &PortEnd, fd: Option<i32>) {
        let side = if end.is_reader {
            &mut self.plan.to
        } else {
            &mut self.plan.from
        };
        if let EndpointPlan::Port { fd: slot, .. } = &mut side[end.slot] {
            *slot = fd;
        }
    }
}

/// One port of one instance on a channel. Names are looked up by index: the
/// process in the planner's process list, the port in the channel's plan.
#[derive(Debug, Clone)]
pub struct PortEnd {
    /// Index of the declared process.
    pub process: usize,
    /// Index of the instance among the process's instances.
    pub replica: usize,
    /// Index of its endpoint in the plan's `from` (or `to`, for readers).
    pub slot: usize,
    /// The end it holds.
    pub end: End,
    /// Whether the child gets an fd for it.
    pub needs_fd: bool,
    /// Whether that fd is a listening socket (systemd `LISTEN_FDS` order).
    pub listener: bool,
    /// Where the endpoint is written.
    pub span: Span,
    /// The channel writes into this process (it is on the `to` side).
    pub is_reader: bool,
}

/// One endpoint as written, resolved.
#[derive(Debug, Clone)]
struct Resolved<'a> {
    endpoint: EndpointRef<'a>,
    span: Span,
    /// Index of the process, for a process endpoint.
    process: Option<usize>,
    port: Option<&'a str>,
}

struct EdgeInput<'a> {
    id: String,
    id_span: Option<Span>,
    spec: Option<&'a EdgeSpec>,
    from: &'a [Spanned<String>],
    to: &'a [Spanned<String>],
    span: Span,
}

/// Resolves, checks and plans every edge.
pub fn resolve<'a>(
    topology: &'a Topology,
    limits: &Limits,
    processes: &[ProcessDecl<'_>],
    sink: &mut Sink,
) -> Vec<ChannelDecl> {
    let inputs = collect_inputs(topology, sink);
    let by_name: ByName<'_> = processes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    // (process index, port) -> (index of the edge using it, where).
    let mut used: HashMap<(usize, &str), (usize, Span)> = HashMap::with_capacity(inputs.len() * 2);
    let mut channels = Vec::with_capacity(inputs.len());
    let mut posix_queues = 0u64;
    for (index, input) in inputs.iter().enumerate() {
        let traffic = input
            .spec
            .and_then(|s| s.traffic.as_ref())
            .map(|t| *t.get_ref())
            .unwrap_or_default();
        let resolve_side =
            |items: &'a [Spanned<String>], is_from: bool, sink: &mut Sink| -> Vec<Resolved<'a>> {
                items
                    .iter()
                    .filter_map(|item| {
                        resolve_endpoint(item, is_from, traffic, input, &by_name, processes, sink)
                    })
                    .collect()
            };
        let from = resolve_side(input.from, true, sink);
        let to = resolve_side(input.to, false, sink);
        if from.len() != input.from.len() || to.len() != input.to.len() {
            continue;
        }
        if from.is_empty() || to.is_empty() {
            // Point at the empty side when the edge is written out.
            let empty = input
                .spec
                .map(|s| {
                    if from.is_empty() {
                        s.from.span()
                    } else {
                        s.to.span()
                    }
                })
                .unwrap_or(input.span.clone());
            sink.push(
                Diagnostic::error(
                    "E0103",
                    format!(
                        "edge `{}` needs at least one endpoint on each side",
                        input.id
                    ),
                )
                .with_label(Label::primary(empty, "empty endpoint list")),
            );
            continue;
        }
        let mut ok = true;
        for (side, list) in [(true, &from), (false, &to)] {
            for r in list.iter() {
                if let (EndpointRef::Process { process, .. }, Some(index_of), Some(port)) =
                    (r.endpoint, r.process, r.port)
                {
                    if let Some((other, other_span)) = used.get(&(index_of, port)) {
                        let other_edge = &inputs[*other].id;
                        let same = *other == index;
                        sink.push(
                            Diagnostic::error("E0201", format!("port `{process}.{port}` is used by {}", if same { "both sides of one edge".to_owned() } else { format!("two edges, `{other_edge}` and `{}`", input.id) }))
                                .with_label(Label::primary(r.span.clone(), format!("used here by `{}`", input.id)))
                                .with_label(Label::secondary(other_span.clone(), format!("first used here by `{other_edge}`")))
                                .with_help("a port belongs to one edge; give the process another port, or list several peers in one edge's `from`/`to`"),
                        );
                        ok = false;
                    } else {
                        used.insert((index_of, port), (index, r.span.clone()));
                    }
                    if !check_stdio_direction(process, port, side, r, input, sink) {
                        ok = false;
                    }
                }
            }
        }
        if !ok {
            continue;
        }
        if let Some(channel) = plan_channel(
            input,
            traffic,
            &from,
            &to,
            limits,
            processes,
            &mut posix_queues,
            sink,
        ) {
            channels.push(channel);
        }
    }
    if posix_queues > limits.mq_queues_max.value {
        let first = channels
            .iter()
            .find(|c| matches!(c.plan.mechanism, Mechanism::PosixMq { .. }));
        let mut diagnostic = Diagnostic::error(
            "E0603",
            format!(
                "the topology creates {posix_queues} POSIX message queues, the host allows {}",
                limits.mq_queues_max.value
            ),
        )
        .with_note(format!(
            "queues_max is {} ({})",
            limits.mq_queues_max.value, limits.mq_queues_max.source
        ));
        if let Some(first) = first {
            diagnostic =
                diagnostic.with_label(Label::primary(first.span.clone(), "the first queue"));
        }
        sink.push(diagnostic);
    }
    for (index, process) in processes.iter().enumerate() {
        for (port, declared) in &process.ports {
            if !used.contains_key(&(index, port.as_str())) {
                sink.push(
                    Diagnostic::warning(
                        "W0101",
                        format!(
                            "port `{}.{port}` is declared but no edge uses it",
                            process.name
                        ),
                    )
                    .with_label(Label::primary(declared.span.clone(), "unused port")),
                );
            }
        }
    }
    channels
}

fn collect_inputs<'a>(topology: &'a Topology, sink: &mut Sink) -> Vec<EdgeInput<'a>> {
    let mut inputs = Vec::with_capacity(topology.file.edge.len() + topology.file.pipeline.len());
    for (index, spec) in topology.file.edge.iter().enumerate() {
        let (id, id_span) = match &spec.name {
            Some(name) => {
                if let Err(why) = check_name(name.get_ref()) {
                    sink.push(
                        Diagnostic::error(
                            "E0101",
                            format!("invalid edge name `{}`", name.get_ref().escape_debug()),
                        )
                        .with_label(Label::primary(name.span(), why)),
                    );
                    continue;
                }
                (name.get_ref().clone(), Some(name.span()))
            }
            None => (format!("e{index}"), None),
        };
        let span = spec.from.span().start..spec.to.span().end.max(spec.from.span().end);
        inputs.push(EdgeInput {
            id,
            id_span,
            spec: Some(spec),
            from: &spec.from.get_ref().0,
            to: &spec.to.get_ref().0,
            span,
        });
    }
    for (index, pair) in topology.file.pipeline.windows(2).enumerate() {
        let span = pair[0].span().start..pair[1].span().end;
        inputs.push(EdgeInput {
            id: format!("pipeline{index}"),
            id_span: None,
            spec: None,
            from: std::slice::from_ref(&pair[0]),
            to: std::slice::from_ref(&pair[1]),
            span,
        });
    }
    if topology.file.pipeline.len() == 1 {
        let only = &topology.file.pipeline[0];
        sink.push(
            Diagnostic::error("E0103", "a pipeline needs at least two stages")
                .with_label(Label::primary(only.span(), "only one stage")),
        );
    }
    let mut ids: HashMap<&str, Option<Span>> = HashMap::with_capacity(inputs.len());
    for input in &inputs {
        match ids.get(input.id.as_str()) {
            Some(previous) => {
                let mut diagnostic =
                    Diagnostic::error("E0105", format!("two edges are named `{}`", input.id));
                diagnostic = diagnostic.with_label(Label::primary(
                    input.id_span.clone().unwrap_or(input.span.clone()),
                    "second edge with this name",
                ));
                if let Some(previous) = previous {
                    diagnostic = diagnostic.with_label(Label::secondary(
                        previous.clone(),
                        "first edge with this name",
                    ));
                }
                sink.push(diagnostic);
            }
            None => {
                ids.insert(
                    &input.id,
                    input.id_span.clone().or(Some(input.span.clone())),
                );
            }
        }
    }
    inputs
}

fn resolve_endpoint<'a>(
    item: &'a Spanned<String>,
    is_from: bool,
    traffic: Traffic,
    input: &EdgeInput<'a>,
    by_name: &ByName<'_>,
    processes: &[ProcessDecl<'_>],
    sink: &mut Sink,
) -> Option<Resolved<'a>> {
    let span = item.span();
    let endpoint = match EndpointRef::parse(item.get_ref()) {
        Ok(endpoint) => endpoint,
        Err(why) => {
            sink.push(
                Diagnostic::error(
                    "E0103",
                    format!("invalid endpoint `{}`", item.get_ref().escape_debug()),
                )
                .with_label(Label::primary(span, why)),
            );
            return None;
        }
    };
    match endpoint {
        EndpointRef::Own(EndpointTarget::Stdin) if !is_from => {
            sink.push(
                Diagnostic::error("E0308", "@stdin can only be a source")
                    .with_label(Label::primary(span, "ipc-run's stdin is read, not written"))
                    .with_help("put @stdin in `from`"),
            );
            None
        }
        EndpointRef::Own(EndpointTarget::Stdout) if is_from => {
            sink.push(
                Diagnostic::error("E0308", "@stdout can only be a sink")
                    .with_label(Label::primary(
                        span,
                        "ipc-run's stdout is written, not read",
                    ))
                    .with_help("put @stdout in `to`"),
            );
            None
        }
        EndpointRef::Own(_) | EndpointRef::External => Some(Resolved {
            endpoint,
            span,
            process: None,
            port: None,
        }),
        EndpointRef::Process { process, port } => {
            let Some(&index) = by_name.get(process) else {
                let mut known: Vec<&str> = processes.iter().map(|p| p.name.as_str()).collect();
                known.truncate(12);
                let mut diagnostic = Diagnostic::error(
                    "E0102",
                    format!("dangling endpoint `{endpoint}`: no process named `{process}`"),
                )
                .with_label(Label::primary(span, "no such process"));
                if !known.is_empty() {
                    diagnostic =
                        diagnostic.with_note(format!("the processes are: {}", known.join(", ")));
                }
                sink.push(diagnostic);
                return None;
            };
            let port = match (port, traffic) {
                (Some(port), _) => port,
                (None, Traffic::Stream) => {
                    if is_from {
                        "stdout"
                    } else {
                        "stdin"
                    }
                }
                (None, _) => match input.spec.and_then(|s| s.name.as_ref()) {
                    Some(name) => name.get_ref().as_str(),
                    None => {
                        sink.push(
                            Diagnostic::error("E0103", format!("endpoint `{process}` needs a port for non-stream traffic"))
                                .with_label(Label::primary(span, "which port?"))
                                .with_help(format!("write `{process}.<port>`, or name the edge so the port takes its name")),
                        );
                        return None;
                    }
                },
            };
            Some(Resolved {
                endpoint,
                span,
                process: Some(index),
                port: Some(port),
            })
        }
    }
}

fn check_stdio_direction(
    process: &str,
    port: &str,
    is_from: bool,
    r: &Resolved,
    input: &EdgeInput<'_>,
    sink: &mut Sink,
) -> bool {
    let wrong = match port {
        "stdin" => is_from,
        "stdout" | "stderr" => !is_from,
        _ => return true,
    };
    let duplex = input
        .spec
        .and_then(|s| s.duplex.as_ref())
        .is_some_and(|d| *d.get_ref());
    if wrong || duplex {
        let why = if duplex {
            format!("`{port}` is one-way and cannot be on a duplex edge")
        } else if port == "stdin" {
            "stdin is read by the process; it can only be a sink (`to`)".to_owned()
        } else {
            format!("{port} is written by the process; it can only be a source (`from`)")
        };
        sink.push(
            Diagnostic::error(
                "E0205",
                format!("port `{process}.{port}` is used in the wrong direction"),
            )
            .with_label(Label::primary(r.span.clone(), why))
            .with_help("name a port instead, e.g. `proc.data`"),
        );
        return false;
    }
    true
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the pieces are the pass's state"
)]
fn plan_channel(
    input: &EdgeInput<'_>,
    traffic: Traffic,
    from: &[Resolved<'_>],
    to: &[Resolved<'_>],
    limits: &Limits,
    processes: &[ProcessDecl<'_>],
    posix_queues: &mut u64,
    sink: &mut Sink,
) -> Option<ChannelDecl> {
    let spec = input.spec;
    let opt = |f: fn(&EdgeSpec) -> Option<Span>| spec.and_then(f);
    let instances =
        |r: &Resolved<'_>| -> usize { r.process.map_or(1, |p| processes[p].instances.len()) };
    let message_size = spec
        .and_then(|s| s.message_size.as_ref())
        .map(|v| v.get_ref().0);
    let size = spec.and_then(|s| s.size.as_ref()).map(|v| v.get_ref().0);
    let depth = match spec.and_then(|s| s.depth.as_ref()) {
        Some(d) if *d.get_ref() < 1 => {
            sink.push(
                Diagnostic::error("E0005", "`depth` must be at least 1")
                    .with_label(Label::primary(d.span(), "no room for a message")),
            );
            return None;
        }
        Some(d) => Some(*d.get_ref() as u64),
        None => None,
    };
    let traits = Traits {
        traffic,
        duplex: spec
            .and_then(|s| s.duplex.as_ref())
            .is_some_and(|d| *d.get_ref()),
        writers: from.iter().map(instances).sum(),
        readers: to.iter().map(instances).sum(),
        external: from
            .iter()
            .chain(to)
            .any(|r| matches!(r.endpoint, EndpointRef::External)),
        own_stream: from
            .iter()
            .chain(to)
            .any(|r| matches!(r.endpoint, EndpointRef::Own(_))),
        message_size,
        depth,
        size,
        protocol: spec.and_then(|s| s.protocol.as_ref()).is_some(),
        address: spec.and_then(|s| s.address.as_ref()).is_some(),
        socket: spec.and_then(|s| s.socket.as_ref()).map(|s| *s.get_ref()),
        payload: traffic == Traffic::Notify && (message_size.is_some() || size.is_some()),
        ring: spec
            .and_then(|s| s.sync.as_ref())
            .is_some_and(|s| *s.get_ref() == SyncKind::Ring),
    };
    let explicit = spec
        .and_then(|s| s.mechanism.as_ref())
        .filter(|m| *m.get_ref() != MechanismName::Auto);
    let blame = explicit
        .map(|m| m.span())
        .or_else(|| opt(|s| s.traffic.as_ref().map(|t| t.span())))
        .unwrap_or(input.span.clone());
    let (name, reason, choice) = match explicit {
        Some(mechanism) => match check_fit(*mechanism.get_ref(), &traits, limits) {
            Ok(()) => (
                *mechanism.get_ref(),
                format!(
                    "named in the topology; fits {} traffic with {} writer(s) and {} reader(s)",
                    traffic_name(traffic),
                    traits.writers,
                    traits.readers
                ),
                Choice::Explicit,
            ),
            Err(misfit) => {
                let mut diagnostic =
                    Diagnostic::error(misfit.code, misfit.message).with_label(Label::primary(
                        mechanism.span(),
                        format!("edge `{}` asks for `{}`", input.id, mechanism.get_ref()),
                    ));
                if let Some(traffic_span) = opt(|s| s.traffic.as_ref().map(|t| t.span())) {
                    diagnostic = diagnostic
                        .with_label(Label::secondary(traffic_span, "the traffic it must carry"));
                }
                if let Some(help) = misfit.help {
                    diagnostic = diagnostic.with_help(help);
                }
                sink.push(diagnostic);
                return None;
            }
        },
        None => match choose(&traits, limits) {
            Ok((name, reason)) => (name, reason, Choice::Auto),
            Err(misfit) => {
                let mut diagnostic = Diagnostic::error(
                    misfit.code,
                    format!("no mechanism fits edge `{}`: {}", input.id, misfit.message),
                )
                .with_label(Label::primary(blame.clone(), "for this edge"));
                if let Some(help) = misfit.help {
                    diagnostic = diagnostic.with_help(help);
                }
                sink.push(diagnostic);
                return None;
            }
        },
    };
    check_options_apply(name, &traits, input, sink);
    let mode = parse_mode(spec, sink)?;
    let id = input.id.clone();
    let posix_name = || format!("/ipc-run.{RUN_ID}.{id}");
    let run_path = |suffix: &str| format!("{RUN_DIR}/{id}.{suffix}");
    let mut objects = Vec::new();
    let mut object =
        |kind: ObjectKind, name: String| objects.push(NamedObject { kind, name, mode });
    let socket_path_ok = |sink: &mut Sink, path: &str| -> bool {
        let length = limits.run_dir_len.value + (path.len() - RUN_DIR.len()) as u64;
        if length >= limits.sun_path_max.value {
            sink.push(
                Diagnostic::error("E0607", format!("the socket path of edge `{id}` would be {length} bytes; sun_path holds {} with its NUL", limits.sun_path_max.value))
                    .with_label(Label::primary(input.id_span.clone().unwrap_or(input.span.clone()), "this edge's socket"))
                    .with_note(format!("the run directory is {} bytes long ({})", limits.run_dir_len.value, limits.run_dir_len.source))
                    .with_help("shorten the edge name, or set XDG_RUNTIME_DIR to a shorter directory"),
            );
            return false;
        }
        true
    };
    // A System V semaphore set holds at most SEMMSL semaphores.
    let sem_set_fits = |sink: &mut Sink, count: u64| -> bool {
        let semmsl = &limits.sysv_semmsl;
        if count <= semmsl.value {
            return true;
        }
        let span = opt(|s| s.mechanism.as_ref().map(|m| m.span())).unwrap_or(input.span.clone());
        sink.push(
            limit_error(
                "E0611",
                format!(
                    "edge `{id}` needs a System V semaphore set of {count}; a set on this host holds at most {}",
                    semmsl.value
                ),
                span,
                semmsl,
                "semmsl",
            )
            .with_help("use posix-shm/posix-sem, or raise the first field of /proc/sys/kernel/sem"),
        );
        false
    };
    let socket = traits.socket;
    let address = spec.and_then(|s| s.address.as_ref());
    let (mechanism, blocking, capacity) = match name {
        MechanismName::Auto => unreachable_auto(),
        MechanismName::Pipe if traits.own_stream => {
            let stream = if from
                .iter()
                .any(|r| matches!(r.endpoint, EndpointRef::Own(_)))
            {
                "stdin"
            } else {
                "stdout"
            };
            (
                Mechanism::Inherit {
                    stream: stream.into(),
                },
                true,
                None,
            )
        }
        MechanismName::Pipe => (
            Mechanism::Pipe {
                atomic_write: limits.pipe_buf.value,
            },
            true,
            Some(limits.pipe_capacity.value),
        ),
        MechanismName::Fifo => {
            let deliver = match spec.and_then(|s| s.deliver.as_ref()) {
                Some(d) if *d.get_ref() == Delivery::Fd && traits.external => {
                    sink.push(
                        Diagnostic::error(
                            "E0313",
                            "`deliver = \"fd\"` does not apply to a FIFO with an @external peer",
                        )
                        .with_label(Label::primary(
                            d.span(),
                            "ipc-run cannot open it without blocking until the outside peer comes",
                        ))
                        .with_help(
                            "leave `deliver` unset: the process gets the path and opens it itself",
                        ),
                    );
                    return None;
                }
                Some(d) => *d.get_ref(),
                None if traits.external => Delivery::Path,
                None => Delivery::Fd,
            };
            let path = run_path("fifo");
            object(ObjectKind::Fifo, path.clone());
            let deliver = if deliver == Delivery::Fd {
                "fd"
            } else {
                "path"
            };
            (
                Mechanism::Fifo {
                    path,
                    deliver: deliver.into(),
                },
                true,
                Some(limits.pipe_capacity.value),
            )
        }
        MechanismName::Socketpair => {
            let socket = socket.unwrap_or(if traffic == Traffic::Messages {
                SocketType::Seqpacket
            } else {
                SocketType::Stream
            });
            (Mechanism::Socketpair { socket }, false, None)
        }
        MechanismName::UnixListener => {
            let socket = socket.unwrap_or(match traffic {
                Traffic::Messages if traits.duplex => SocketType::Seqpacket,
                Traffic::Messages => SocketType::Dgram,
                _ => SocketType::Stream,
            });
            let path = run_path("sock");
            if !socket_path_ok(sink, &path) {
                return None;
            }
            object(ObjectKind::UnixSocket, path.clone());
            (
                Mechanism::UnixListener {
                    socket,
                    path,
                    backlog: LISTEN_BACKLOG,
                },
                false,
                None,
            )
        }
        MechanismName::Tcp | MechanismName::Udp => {
            let bind = check_address(address, spec, sink)?;
            if name == MechanismName::Tcp {
                (
                    Mechanism::Tcp {
                        bind,
                        backlog: LISTEN_BACKLOG,
                    },
                    false,
                    None,
                )
            } else {
                (Mechanism::Udp { bind }, false, None)
            }
        }
        MechanismName::PosixShm => {
            let size = size.unwrap_or(0);
            if size == 0 || size > limits.posix_shm_max.value {
                sink.push(size_error(
                    "E0609",
                    &id,
                    size,
                    limits.posix_shm_max.value,
                    &limits.posix_shm_max.source,
                    "/dev/shm",
                    spec,
                ));
                return None;
            }
            let sync = spec
                .and_then(|s| s.sync.as_ref())
                .map(|s| *s.get_ref())
                .unwrap_or(SyncKind::Semaphores);
            let ring = if sync == SyncKind::Ring {
                let blame = spec
                    .and_then(|s| s.size.as_ref().map(|v| v.span()))
                    .unwrap_or(input.span.clone());
                let Some(capacity) = crate::child::ring::capacity_for(size) else {
                    sink.push(
                        Diagnostic::error(
                            "E0612",
                            format!("edge `{id}` is a ring of {size} bytes; a ring needs at least 4160 (a 4096-byte header and 64 bytes of data)"),
                        )
                        .with_label(Label::primary(blame, "too small for a ring"))
                        .with_help("make `size` at least the header (4 KiB) plus room for a few records"),
                    );
                    return None;
                };
                if let Some(largest) = message_size
                    && largest > capacity - 8
                {
                    let span = spec
                        .and_then(|s| s.message_size.as_ref().map(|v| v.span()))
                        .unwrap_or(blame);
                    sink.push(
                        Diagnostic::error(
                            "E0612",
                            format!("edge `{id}` sends records of {largest} bytes; its ring of {size} bytes takes records of at most {} (capacity {capacity} less 8)", capacity - 8),
                        )
                        .with_label(Label::primary(span, "does not fit the ring"))
                        .with_help(format!("make `size` at least {}", (largest + 8).div_ceil(64) * 64 + crate::child::ring::HEADER_SIZE)),
                    );
                    return None;
                }
                Some(RingPlan {
                    capacity,
                    producers: u32::try_from(traits.writers).unwrap_or(u32::MAX),
                })
            } else {
                None
            };
            let posix_name = posix_name();
            object(ObjectKind::PosixShm, posix_name.clone());
            let semaphores = if sync == SyncKind::Semaphores {
                let names = vec![format!("{posix_name}.lock"), format!("{posix_name}.ready")];
                for sem in &names {
                    object(ObjectKind::PosixSem, sem.clone());
                }
                names
            } else {
                Vec::new()
            };
            (
                Mechanism::PosixShm {
                    name: posix_name,
                    size,
                    semaphores,
                    ring,
                },
                false,
                None,
            )
        }
        MechanismName::SysvShm => {
            let size = size.unwrap_or(0);
            if size == 0 || size > limits.sysv_shmmax.value {
                sink.push(size_error(
                    "E0604",
                    &id,
                    size,
                    limits.sysv_shmmax.value,
                    &limits.sysv_shmmax.source,
                    "shmmax",
                    spec,
                ));
                return None;
            }
            let sync = spec
                .and_then(|s| s.sync.as_ref())
                .map(|s| *s.get_ref())
                .unwrap_or(SyncKind::Semaphores);
            if sync == SyncKind::Semaphores && !sem_set_fits(sink, 2) {
                return None;
            }
            object(ObjectKind::SysvShm, format!("{{sysv_id:{id}}}"));
            if sync == SyncKind::Semaphores {
                object(ObjectKind::SysvSem, format!("{{sysv_sem_id:{id}}}"));
            }
            (
                Mechanism::SysvShm {
                    size,
                    semaphore_set: sync == SyncKind::Semaphores,
                },
                false,
                None,
            )
        }
        MechanismName::PosixMq => {
            let message_size = message_size.unwrap_or(limits.mq_msgsize_default.value);
            let depth = depth.unwrap_or(limits.mq_msg_default.value);
            if message_size > limits.mq_msgsize_max.value || message_size == 0 {
                sink.push(limit_error("E0601", format!("edge `{id}` sends messages of {message_size} bytes; a POSIX queue on this host takes at most {}", limits.mq_msgsize_max.value), spec.and_then(|s| s.message_size.as_ref().map(|v| v.span())).unwrap_or(input.span.clone()), &limits.mq_msgsize_max, "msgsize_max"));
                return None;
            }
            if depth > limits.mq_msg_max.value {
                sink.push(limit_error("E0602", format!("edge `{id}` asks for a queue of depth {depth}; a POSIX queue on this host holds at most {}", limits.mq_msg_max.value), spec.and_then(|s| s.depth.as_ref().map(|v| v.span())).unwrap_or(input.span.clone()), &limits.mq_msg_max, "msg_max"));
                return None;
            }
            *posix_queues += 1;
            let posix_name = posix_name();
            object(ObjectKind::PosixMq, posix_name.clone());
            (
                Mechanism::PosixMq {
                    name: posix_name,
                    depth,
                    message_size,
                },
                true,
                Some(depth * message_size),
            )
        }
        MechanismName::SysvMq => {
            let message_size = message_size.unwrap_or(limits.sysv_msgmax.value.min(8192));
            if message_size > limits.sysv_msgmax.value || message_size == 0 {
                sink.push(limit_error("E0605", format!("edge `{id}` sends messages of {message_size} bytes; a System V message on this host has at most {}", limits.sysv_msgmax.value), spec.and_then(|s| s.message_size.as_ref().map(|v| v.span())).unwrap_or(input.span.clone()), &limits.sysv_msgmax, "msgmax"));
                return None;
            }
            let queue_bytes = match depth {
                Some(depth) => depth.saturating_mul(message_size),
                None => limits.sysv_msgmnb.value,
            };
            if queue_bytes > limits.sysv_msgmnb.value {
                sink.push(limit_error("E0605", format!("edge `{id}` needs a queue of {queue_bytes} bytes; a System V queue on this host holds at most {}", limits.sysv_msgmnb.value), spec.and_then(|s| s.depth.as_ref().map(|v| v.span())).unwrap_or(input.span.clone()), &limits.sysv_msgmnb, "msgmnb"));
                return None;
            }
            object(ObjectKind::SysvMq, format!("{{sysv_id:{id}}}"));
            (
                Mechanism::SysvMq {
                    queue_bytes,
                    message_size,
                },
                true,
                Some(queue_bytes),
            )
        }
        MechanismName::PosixSem | MechanismName::SysvSem => {
            let max = if name == MechanismName::PosixSem {
                limits.sem_value_max.value
            } else {
                SYSV_SEMVMX
            };
            let initial = match spec.and_then(|s| s.initial.as_ref()) {
                None => 0,
                Some(v) if (0..=max as i64).contains(v.get_ref()) => *v.get_ref() as u32,
                Some(v) => {
                    sink.push(
                        Diagnostic::error(
                            "E0606",
                            format!(
                                "a `{name}` starts between 0 and {max}, edge `{id}` asks for {}",
                                v.get_ref()
                            ),
                        )
                        .with_label(Label::primary(v.span(), "initial value out of range")),
                    );
                    return None;
                }
            };
            if name == MechanismName::PosixSem {
                let posix_name = posix_name();
                object(ObjectKind::PosixSem, posix_name.clone());
                (
                    Mechanism::PosixSem {
                        name: posix_name,
                        initial,
                    },
                    false,
                    None,
                )
            } else {
                let count = 1;
                if !sem_set_fits(sink, u64::from(count)) {
                    return None;
                }
                object(ObjectKind::SysvSem, format!("{{sysv_id:{id}}}"));
                (Mechanism::SysvSem { count, initial }, false, None)
            }
        }
        MechanismName::Signal => {
            let signal = match spec.and_then(|s| s.signal.as_ref()) {
                None => known("SIGUSR1"),
                Some(text) => match parse_signal(text.get_ref()) {
                    Ok(signal) if matches!(signal.name, "SIGKILL" | "SIGSTOP") => {
                        sink.push(
                            Diagnostic::error(
                                "E0304",
                                format!(
                                    "{} cannot be a notification: it cannot be caught",
                                    signal.name
                                ),
                            )
                            .with_label(Label::primary(
                                text.span(),
                                "the receiver would be killed or stopped",
                            ))
                            .with_help("use SIGUSR1 or SIGUSR2 (real-time signals, SIGRTMIN+n, are not accepted)"),
                        );
                        return None;
                    }
                    Ok(signal) => signal,
                    Err(why) => {
                        sink.push(
                            Diagnostic::error("E0304", "invalid `signal`")
                                .with_label(Label::primary(text.span(), why)),
                        );
                        return None;
                    }
                },
            };
            (Mechanism::Signal { signal }, false, None)
        }
        MechanismName::Rpc => {
            let protocol = spec
                .and_then(|s| s.protocol.as_ref())
                .map(|p| p.get_ref().clone())
                .unwrap_or_default();
            if protocol.is_empty()
                || !protocol
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
            {
                let span = spec
                    .and_then(|s| s.protocol.as_ref().map(|p| p.span()))
                    .unwrap_or(input.span.clone());
                sink.push(
                    Diagnostic::error("E0311", "invalid protocol label").with_label(
                        Label::primary(span, "a label such as grpc, json-rpc, http or dbus"),
                    ),
                );
                return None;
            }
            let (transport, address) = if address.is_some() {
                ("tcp", check_address(address, spec, sink)?)
            } else {
                let path = run_path("sock");
                if !socket_path_ok(sink, &path) {
                    return None;
                }
                object(ObjectKind::UnixSocket, path.clone());
                ("unix", path)
            };
            (
                Mechanism::Rpc {
                    protocol,
                    transport: transport.into(),
                    address,
                    backlog: LISTEN_BACKLOG,
                },
                false,
                None,
            )
        }
    };
    if traffic == Traffic::Shared
        && spec
            .and_then(|s| s.sync.as_ref())
            .is_some_and(|s| *s.get_ref() == SyncKind::None)
    {
        let span = spec
            .and_then(|s| s.sync.as_ref().map(|v| v.span()))
            .unwrap_or(input.span.clone());
        sink.push(
            Diagnostic::warning("W0201", format!("race risk: shared memory of edge `{id}` has no synchronisation"))
                .with_label(Label::primary(span, "no semaphores created"))
                .with_note("concurrent readers and writers must bring their own protocol (atomics, a ring, a lock)"),
        );
    }
    let (from_ends, to_ends) = ends_of(&mechanism, traits.duplex);
    let mut ports = Vec::with_capacity(traits.writers + traits.readers);
    let mut plan_from = Vec::with_capacity(traits.writers);
    let mut plan_to = Vec::with_capacity(traits.readers);
    let mut descriptions = [String::new(), String::new()];
    for (list, end, is_reader, out) in [
        (from, from_ends, false, &mut plan_from),
        (to, to_ends, true, &mut plan_to),
    ] {
        let (needs_fd, listener) = fd_need(&mechanism, end);
        for r in list {
            match (r.endpoint, r.process, r.port) {
                (EndpointRef::Own(EndpointTarget::Stdin), ..) => out.push(EndpointPlan::Own {
                    stream: "stdin".into(),
                }),
                (EndpointRef::Own(EndpointTarget::Stdout), ..) => out.push(EndpointPlan::Own {
                    stream: "stdout".into(),
                }),
                (EndpointRef::External, ..) => out.push(EndpointPlan::External),
                (EndpointRef::Process { .. }, Some(process), port) => {
                    let port = port.unwrap_or_default();
                    let env = port_env_name(port);
                    let description = &mut descriptions[usize::from(is_reader)];
                    if description.is_empty() {
                        *description = describe(&mechanism, &id, end, to, processes);
                    }
                    for (replica, instance) in processes[process].instances.iter().enumerate() {
                        ports.push(PortEnd {
                            process,
                            replica,
                            slot: out.len(),
                            end,
                            needs_fd,
                            listener,
                            span: r.span.clone(),
                            is_reader,
                        });
                        out.push(EndpointPlan::Port {
                            process: instance.clone(),
                            port: port.to_owned(),
                            end,
                            fd: None,
                            env: env.clone(),
                        });
                    }
                }
                (EndpointRef::Process { .. }, None, _) => {
                    unreachable!("resolved process endpoints carry their index")
                }
            }
        }
    }
    let in_flight = spec
        .and_then(|s| s.in_flight.as_ref())
        .map(|v| v.get_ref().0);
    Some(ChannelDecl {
        plan: ChannelPlan {
            id,
            traffic: traffic.into(),
            mechanism,
            choice,
            reason,
            from: plan_from,
            to: plan_to,
            objects,
            blocking,
            capacity,
            in_flight,
        },
        span: input.span.clone(),
        ports,
        descriptions,
    })
}

fn unreachable_auto() -> ! {
    panic!("`auto` is resolved by choose() before parameters are planned")
}

fn traffic_name(traffic: Traffic) -> &'static str {
    match traffic {
        Traffic::Stream => "stream",
        Traffic::Messages => "messages",
        Traffic::Shared => "shared",
        Traffic::Request => "request",
        Traffic::Notify => "notify",
    }
}

/// Options that only make sense for some mechanisms are rejected elsewhere,
/// so a typo in intent ("size" on a pipe) never passes silently.
fn check_options_apply(
    name: MechanismName,
    traits: &Traits,
    input: &EdgeInput<'_>,
    sink: &mut Sink,
) {
    let Some(spec) = input.spec else { return };
    use MechanismName as M;
    let mut reject = |key: &str, span: Span, applies: &str| {
        sink.push(
            Diagnostic::error(
                "E0313",
                format!("`{key}` does not apply to a `{name}` edge"),
            )
            .with_label(Label::primary(
                span,
                format!("`{key}` is ignored by a {name}"),
            ))
            .with_help(format!("`{key}` applies to {applies}")),
        );
    };
    if let Some(v) = &spec.size {
        if !matches!(name, M::PosixShm | M::SysvShm) && traits.traffic != Traffic::Notify {
            reject("size", v.span(), "shared memory");
        }
    }
    if let Some(v) = &spec.sync {
        if !matches!(name, M::PosixShm | M::SysvShm) {
            reject("sync", v.span(), "shared memory");
        }
    }
    if let Some(v) = &spec.signal {
        if name != M::Signal {
            reject("signal", v.span(), "signal edges");
        }
    }
    if let Some(v) = &spec.initial {
        if !matches!(name, M::PosixSem | M::SysvSem) {
            reject("initial", v.span(), "semaphore edges");
        }
    }
    if let Some(v) = &spec.deliver {
        if name != M::Fifo {
            reject("deliver", v.span(), "FIFOs");
        }
    }
    if let Some(v) = &spec.protocol {
        if name != M::Rpc {
            reject("protocol", v.span(), "rpc edges (traffic = \"request\")");
        }
    }
    if let Some(v) = &spec.address {
        if !matches!(name, M::Tcp | M::Udp | M::Rpc) {
            reject("address", v.span(), "tcp, udp and rpc edges");
        }
    }
    if let Some(v) = &spec.depth {
        if !matches!(name, M::PosixMq | M::SysvMq) {
            reject("depth", v.span(), "message queues");
        }
    }
}

fn parse_mode(spec: Option<&EdgeSpec>, sink: &mut Sink) -> Option<u32> {
    let Some(text) = spec.and_then(|s| s.mode.as_ref()) else {
        return Some(0o600);
    };
    let digits = text.get_ref().trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode & 0o600 == 0o600 && mode & 0o7117 == 0 => Some(mode),
        Ok(mode) => {
            sink.push(
                Diagnostic::error(
                    "E0314",
                    format!("mode {mode:04o} is not allowed for IPC objects"),
                )
                .with_label(Label::primary(
                    text.span(),
                    "owner read/write required; no access for others, no execute, no special bits",
                ))
                .with_help("use \"0600\" (the default), or \"0640\"/\"0660\" to let the group in"),
            );
            None
        }
        Err(_) => {
            sink.push(
                Diagnostic::error("E0314", "invalid mode").with_label(Label::primary(
                    text.span(),
                    "an octal mode such as \"0600\"",
                )),
            );
            None
        }
    }
}

fn check_address(
    address: Option<&Spanned<String>>,
    spec: Option<&EdgeSpec>,
    sink: &mut Sink,
) -> Option<String> {
    let Some(address) = address else {
        return Some("127.0.0.1:0".into());
    };
    match address.get_ref().parse::<SocketAddr>() {
        Ok(parsed) => {
            let allowed = spec
                .and_then(|s| s.allow_remote.as_ref())
                .is_some_and(|a| *a.get_ref());
            if !parsed.ip().is_loopback() && !allowed {
                sink.push(
                    Diagnostic::warning(
                        "W0202",
                        format!("`{parsed}` is reachable beyond this machine"),
                    )
                    .with_label(Label::primary(address.span(), "not a loopback address"))
                    .with_help(
                        "bind 127.0.0.1 or ::1, or set allow_remote = true to say this is intended",
                    ),
                );
            }
            Some(parsed.to_string())
        }
        Err(_) => {
            sink.push(
                Diagnostic::error("E0312", format!("invalid address `{}`", address.get_ref()))
                    .with_label(Label::primary(
                        address.span(),
                        "expected an IP address and a port, e.g. 127.0.0.1:8080 or [::1]:0",
                    )),
            );
            None
        }
    }
}

fn size_error(
    code: &'static str,
    id: &str,
    size: u64,
    max: u64,
    source: &str,
    what: &str,
    spec: Option<&EdgeSpec>,
) -> Diagnostic {
    let span = spec
        .and_then(|s| s.size.as_ref().map(|v| v.span()))
        .or_else(|| spec.map(|s| s.from.span()))
        .unwrap_or(0..0);
    if size == 0 {
        return Diagnostic::error(
            "E0310",
            format!("shared edge `{id}` needs a size above zero"),
        )
        .with_label(Label::primary(span, "empty region"));
    }
    Diagnostic::error(
        code,
        format!("edge `{id}` asks for {size} bytes of shared memory; {what} allows {max}"),
    )
    .with_label(Label::primary(span, "too large for this host"))
    .with_note(format!("{what} is {max} ({source})"))
}

fn limit_error(
    code: &'static str,
    message: String,
    span: Span,
    limit: &super::Limit,
    what: &str,
) -> Diagnostic {
    Diagnostic::error(code, message)
        .with_label(Label::primary(span, format!("above {what}")))
        .with_note(format!("{what} is {} ({})", limit.value, limit.source))
}

/// Which end each side holds.
fn ends_of(mechanism: &Mechanism, duplex: bool) -> (End, End) {
    match mechanism {
        Mechanism::Inherit { .. }
        | Mechanism::Pipe { .. }
        | Mechanism::Fifo { .. }
        | Mechanism::PosixMq { .. }
        | Mechanism::SysvMq { .. } => (End::Write, End::Read),
        Mechanism::Socketpair { .. } if duplex => (End::Both, End::Both),
        Mechanism::Socketpair { .. } => (End::Write, End::Read),
        Mechanism::UnixListener { .. }
        | Mechanism::Tcp { .. }
        | Mechanism::Udp { .. }
        | Mechanism::Rpc { .. } => (End::Connect, End::Listen),
        Mechanism::PosixShm { ring: Some(_), .. } => (End::Write, End::Read),
        Mechanism::PosixShm { .. } | Mechanism::SysvShm { .. } => (End::Both, End::Both),
        Mechanism::PosixSem { .. } | Mechanism::SysvSem { .. } | Mechanism::Signal { .. } => {
            (End::Send, End::Receive)
        }
    }
}

/// Whether an end is handed over as an fd, and whether that fd listens.
fn fd_need(mechanism: &Mechanism, end: End) -> (bool, bool) {
    match mechanism {
        Mechanism::Inherit { .. } | Mechanism::Pipe { .. } | Mechanism::Socketpair { .. } => {
            (true, false)
        }
        Mechanism::Fifo { deliver, .. } => (deliver == "fd", false),
        Mechanism::UnixListener { .. }
        | Mechanism::Tcp { .. }
        | Mechanism::Udp { .. }
        | Mechanism::Rpc { .. } => {
            let listening = end == End::Listen;
            (listening, listening)
        }
        _ => (false, false),
    }
}

/// The environment variable that describes a port.
pub fn port_env_name(port: &str) -> String {
    let mut name = String::with_capacity("IPC_PORT_".len() + port.len());
    name.push_str("IPC_PORT_");
    name.extend(port.chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    name
}

/// The plan's end as the port description spells it.
fn child_end(end: End) -> child::End {
    match end {
        End::Write => child::End::Write,
        End::Read => child::End::Read,
        End::Both => child::End::Both,
        End::Listen => child::End::Listen,
        End::Connect => child::End::Connect,
        End::Send => child::End::Send,
        End::Receive => child::End::Receive,
    }
}

/// The description of one end of a channel (`IPC_PORT_*`, see
/// [`child::Description`]), with its placeholders; `fd=` is added by wiring.
fn describe(
    mechanism: &Mechanism,
    id: &str,
    end: End,
    to: &[Resolved<'_>],
    processes: &[ProcessDecl<'_>],
) -> String {
    use child::description::{Params, RingLayout, ShmSemaphores, Slot, Transport};
    fn socket_type(socket: SocketType) -> child::SocketType {
        match socket {
            SocketType::Stream => child::SocketType::Stream,
            SocketType::Seqpacket => child::SocketType::Seqpacket,
            SocketType::Dgram => child::SocketType::Dgram,
        }
    }
    let placeholder = |what: &str, of: &str| Slot::Placeholder(format!("{{{what}:{of}}}"));
    let ip_address = |bind: &str| {
        let mut address = String::with_capacity(bind.len() + id.len() + 8);
        push_ip_address(&mut address, bind, id);
        address
    };
    let params = match mechanism {
        Mechanism::Inherit { .. } => Params::Inherit,
        Mechanism::Pipe { .. } => Params::Pipe,
        Mechanism::Fifo { path, .. } => Params::Fifo { path: path.clone() },
        Mechanism::Socketpair { socket } => Params::Socketpair {
            socket: socket_type(*socket),
        },
        Mechanism::UnixListener { socket, path, .. } => Params::UnixListener {
            socket: socket_type(*socket),
            path: path.clone(),
        },
        Mechanism::Tcp { bind, .. } => Params::Tcp {
            address: ip_address(bind),
        },
        Mechanism::Udp { bind } => Params::Udp {
            address: ip_address(bind),
        },
        Mechanism::PosixShm {
            name,
            size,
            semaphores,
            ring,
        } => Params::PosixShm {
            name: name.clone(),
            size: *size,
            ring: ring.as_ref().map(|ring| RingLayout {
                capacity: ring.capacity,
                producers: ring.producers,
            }),
            semaphores: match semaphores.as_slice() {
                [lock, ready] => Some(ShmSemaphores {
                    lock: lock.clone(),
                    ready: ready.clone(),
                }),
                _ => None,
            },
        },
        Mechanism::SysvShm {
            size,
            semaphore_set,
        } => Params::SysvShm {
            id: placeholder("sysv_id", id),
            size: *size,
            sem_id: semaphore_set.then(|| placeholder("sysv_sem_id", id)),
        },
        Mechanism::PosixMq {
            name,
            depth,
            message_size,
        } => Params::PosixMq {
            name: name.clone(),
            depth: *depth,
            message_size: *message_size,
        },
        Mechanism::SysvMq {
            queue_bytes,
            message_size,
        } => Params::SysvMq {
            id: placeholder("sysv_id", id),
            queue_bytes: *queue_bytes,
            message_size: *message_size,
        },
        Mechanism::PosixSem { name, initial } => Params::PosixSem {
            name: name.clone(),
            initial: *initial,
        },
        Mechanism::SysvSem { count, initial } => Params::SysvSem {
            id: placeholder("sysv_id", id),
            count: *count,
            initial: *initial,
        },
        Mechanism::Signal { signal } => Params::Signal {
            signal: signal.name.to_owned(),
            signo: signal.number,
            pid: (end == End::Send).then(|| {
                to.iter()
                    .filter_map(|r| r.process)
                    .flat_map(|p| processes[p].instances.iter())
                    .map(|instance| placeholder("pid", instance))
                    .collect()
            }),
        },
        Mechanism::Rpc {
            protocol,
            transport,
            address,
            ..
        } => {
            let (transport, address) = if transport == "tcp" {
                (Transport::Tcp, ip_address(address))
            } else {
                (Transport::Unix, address.clone())
            };
            let mut url = String::with_capacity(address.len() + 16);
            push_rpc_url(&mut url, protocol, transport.as_str(), &address);
            Params::Rpc {
                protocol: protocol.clone(),
                transport,
                address,
                url,
            }
        }
    };
    child::Description {
        channel: id.to_owned(),
        end: child_end(end),
        params,
        fd: None,
    }
    .to_string()
}

/// An address with a kernel-chosen port shows the placeholder for it.
fn push_ip_address(out: &mut String, bind: &str, id: &str) {
    match bind.rsplit_once(':') {
        Some((host, "0")) => {
            let _ = write!(out, "{host}:{{port:{id}}}");
        }
        _ => out.push_str(bind),
    }
}

/// The address in the form each framework expects.
fn push_rpc_url(out: &mut String, protocol: &str, transport: &str, address: &str) {
    let _ = match (protocol, transport) {
        ("grpc", "unix") => write!(out, "unix:{address}"),
        ("grpc", _) => write!(out, "{address}"),
        ("http", "unix") => {
            // The socket path is the URL's host, percent-encoded whole; the
            // run directory is encoded by the launcher when it fills it in.
            out.push_str("http+unix://");
            let rest = match address.strip_prefix(RUN_DIR) {
                Some(rest) => {
                    out.push_str(RUN_DIR_PCT);
                    rest
                }
                None => address,
            };
            percent_encode_into(out, rest);
            Ok(())
        }
        ("http", _) => write!(out, "http://{address}"),
        ("dbus", "unix") => write!(out, "unix:path={address}"),
        ("dbus", _) => {
            let (host, port) = address.rsplit_once(':').unwrap_or((address, ""));
            write!(out, "tcp:host={host},port={port}")
        }
        (_, "unix") => write!(out, "unix:{address}"),
        (_, _) => write!(out, "tcp://{address}"),
    };
}
