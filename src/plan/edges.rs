//! Second pass: edges resolved to ports, each port used by one edge, the
//! mechanism chosen (or the named one checked), host limits applied, and the
//! channel's named objects decided.

use std::collections::HashMap;
use std::sync::Arc;

use super::model::{
    ChannelHead, ChannelPlan, Choice, End, EndpointPlan, Mechanism, OwnStream, PortFd,
};
use super::placement::Groups;
use super::processes::ProcessDecl;
use super::select::{Traits, check_fit, choose, traffic_name};
use super::{Limits, Sink, Span};
use crate::diagnostic::{Diagnostic, Label};
use crate::mechanism::edge::{EdgeContext, Shape};
use crate::mechanism::{EdgeOption, Kind, posix_mq};
use crate::topology::{
    EdgeSpec, EndpointRef, EndpointTarget, Spanned, SyncKind, Topology, Traffic, check_name,
};

/// Process indices by name, for lookups that must not scan the whole list.
type ByName<'p> = HashMap<&'p str, usize>;

/// A channel with what the later passes need besides its plan.
#[derive(Debug, Clone)]
pub struct ChannelDecl {
    /// The channel as it appears in the plan (fds filled by `wiring`).
    pub plan: ChannelPlan,
    /// The span diagnostics about the whole edge point at.
    pub span: Span,
    /// Every port of an instance this channel touches.
    pub ports: Box<[PortEnd]>,
}

/// The channels as wiring takes them: their plans, already in the vector
/// the plan keeps, and beside them what only wiring reads (each channel's
/// port ends) in chunks of [`CHUNK`] channels, each
/// dropped once every port of its channels is wired. The declarations'
/// span and the room they took beside each plan are gone before wiring,
/// so at the plan's peak (the end of wiring) the channels are little more
/// than their plans.
pub struct Channels {
    plans: Vec<ChannelPlan>,
    chunks: Vec<Option<Box<[ChannelPorts]>>>,
    /// The channels of each chunk with a port not yet wired.
    open: Vec<u32>,
}

/// Channels to a chunk of [`Channels`]: the chunks are small enough to be
/// freed as wiring goes, and few enough to cost nothing to count.
const CHUNK: usize = 1024;

/// What wiring reads of one channel besides its plan.
#[derive(Debug, Default)]
struct ChannelPorts {
    /// Every port of an instance this channel touches.
    ports: Box<[PortEnd]>,
    /// Ports not yet wired: the ports go with the last.
    unwired: u32,
}

/// One channel as wiring reads it.
#[derive(Clone, Copy)]
pub struct ChannelView<'c> {
    /// The channel's plan.
    pub plan: &'c ChannelPlan,
    /// Every port of an instance the channel touches.
    pub ports: &'c [PortEnd],
}

impl ChannelView<'_> {
    /// The port name, as the shared name the plan's records hold.
    pub fn port(&self, end: &PortEnd) -> &Arc<str> {
        port_name(self.plan, end)
    }
}

/// The port name of a port end of `plan`.
fn port_name<'p>(plan: &'p ChannelPlan, end: &PortEnd) -> &'p Arc<str> {
    let side = if end.is_reader {
        plan.to()
    } else {
        plan.from()
    };
    match &side[end.slot()] {
        EndpointPlan::Port { port, .. } => port,
        _ => unreachable!("port ends point at port endpoints"),
    }
}

impl Channels {
    /// Takes the channels' declarations apart for wiring: their spans are
    /// dropped, their ports go into chunks, and their
    /// plans into a vector of their size ([`plans_of`]).
    pub fn for_wiring(mut channels: Vec<ChannelDecl>) -> Channels {
        let mut chunks = Vec::with_capacity(channels.len().div_ceil(CHUNK));
        let mut open = Vec::with_capacity(chunks.capacity());
        for block in channels.chunks_mut(CHUNK) {
            let chunk: Box<[ChannelPorts]> = block
                .iter_mut()
                .map(|channel| ChannelPorts {
                    // Bounded by the instance cap.
                    unwired: channel.ports.len() as u32,
                    ports: std::mem::take(&mut channel.ports),
                })
                .collect();
            let left = chunk.iter().filter(|c| c.unwired > 0).count() as u32;
            open.push(left);
            chunks.push((left > 0).then_some(chunk));
        }
        Channels {
            plans: plans_of(channels),
            chunks,
            open,
        }
    }

    /// The number of channels.
    pub fn len(&self) -> usize {
        self.plans.len()
    }

    fn ports_of_mut(&mut self, c: usize) -> &mut ChannelPorts {
        self.chunks[c / CHUNK]
            .as_mut()
            .map(|chunk| &mut chunk[c % CHUNK])
            .expect("a channel's ports are read before they are all wired")
    }

    /// Channel `c`; its ports are empty once they are all wired.
    pub fn get(&self, c: usize) -> ChannelView<'_> {
        ChannelView {
            plan: &self.plans[c],
            ports: self.chunks[c / CHUNK]
                .as_ref()
                .map_or(&[], |chunk| &chunk[c % CHUNK].ports),
        }
    }

    /// Every channel, in order.
    pub fn iter(&self) -> impl Iterator<Item = ChannelView<'_>> {
        (0..self.len()).map(|c| self.get(c))
    }

    /// Records the fd a port end of channel `c` gets in the plan.
    pub fn set_fd(&mut self, c: usize, end: &PortEnd, fd: Option<i32>) {
        let plan = &mut self.plans[c];
        let side = if end.is_reader {
            plan.to_mut()
        } else {
            plan.from_mut()
        };
        if let EndpointPlan::Port { fd: slot, .. } = &mut side[end.slot()] {
            *slot = fd.into();
        }
    }

    /// Counts one port of channel `c` as wired: its ports go with its last, and its chunk with the last such channel in it.
    pub fn wired(&mut self, c: usize) {
        let ports = self.ports_of_mut(c);
        ports.unwired -= 1;
        if ports.unwired > 0 {
            return;
        }
        *ports = ChannelPorts::default();
        let open = &mut self.open[c / CHUNK];
        *open -= 1;
        if *open == 0 {
            self.chunks[c / CHUNK] = None;
        }
    }

    /// The channels' plans, fds filled in.
    pub fn into_plans(self) -> Vec<ChannelPlan> {
        self.plans
    }
}

/// Each port name once: endpoints and fd slots of every channel share
/// them, as most ports of a large topology have one of a few names.
/// Each name also has a number, in the order names were first seen, so
/// the port-use map can key a port by two numbers.
#[derive(Default)]
struct PortNames {
    made: HashMap<Arc<str>, u32>,
}

impl PortNames {
    /// The shared port name.
    fn get(&mut self, port: &str) -> Arc<str> {
        self.made_name(port).0
    }

    /// The number of a port name, made with the name if it is new.
    fn id(&mut self, port: &str) -> u32 {
        self.made_name(port).1
    }

    /// The number of a port name already made, if any.
    fn existing_id(&self, port: &str) -> Option<u32> {
        self.made.get(port).copied()
    }

    fn made_name(&mut self, port: &str) -> (Arc<str>, u32) {
        if let Some((name, id)) = self.made.get_key_value(port) {
            return (Arc::clone(name), *id);
        }
        let name: Arc<str> = port.into();
        // Names are bounded by the ports of the instance cap.
        let id = self.made.len() as u32;
        self.made.insert(Arc::clone(&name), id);
        (name, id)
    }
}

impl ChannelDecl {
    /// The port name, as the shared name the plan's records hold.
    pub fn port(&self, end: &PortEnd) -> &Arc<str> {
        port_name(&self.plan, end)
    }
}

/// The channels' plans, in a vector of their size: the declarations'
/// buffer is reused in place (each plan moves to the front of its slot)
/// and then shrunk, so the plan holds no room for what only the planner
/// needed.
fn plans_of(channels: Vec<ChannelDecl>) -> Vec<ChannelPlan> {
    let mut plans: Vec<ChannelPlan> = channels.into_iter().map(|c| c.plan).collect();
    plans.shrink_to_fit();
    plans
}

/// One port of one instance on a channel. Names are looked up by index: the
/// process in the planner's process list, the port in the channel's plan.
/// The indices are `u32` (read through the methods of the same names):
/// there is one of these per port of every instance, beside the plan.
#[derive(Debug, Clone)]
pub struct PortEnd {
    /// Index of the declared process.
    process: u32,
    /// Index of the instance among the process's instances.
    replica: u32,
    /// Index of its endpoint in the plan's `from` (or `to`, for readers).
    slot: u32,
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

impl PortEnd {
    /// Index of the declared process.
    pub fn process(&self) -> usize {
        self.process as usize
    }

    /// Index of the instance among the process's instances.
    pub fn replica(&self) -> usize {
        self.replica as usize
    }

    /// Index of its endpoint in the plan's `from` (or `to`, for readers).
    pub fn slot(&self) -> usize {
        self.slot as usize
    }
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

/// An edge as written, or two neighbouring stages of a pipeline. There is
/// one per edge of the file, alive through the pass: what can be read from
/// the spec again is not copied here.
struct EdgeInput<'a> {
    /// The channel id, shared with the channel's plan.
    id: Arc<str>,
    spec: Option<Spec<'a>>,
    /// The two stages, for a pipeline's edge (no spec).
    stages: &'a [Spanned<String>],
    span: Span,
}

/// An edge's spec: borrowed from the typed file, or owned when the pass
/// drops each edge as soon as its channel is made ([`resolve`] given the
/// edges by value).
enum Spec<'a> {
    Borrowed(&'a EdgeSpec),
    Owned(Box<EdgeSpec>),
}

impl std::ops::Deref for Spec<'_> {
    type Target = EdgeSpec;
    fn deref(&self) -> &EdgeSpec {
        match self {
            Spec::Borrowed(spec) => spec,
            Spec::Owned(spec) => spec,
        }
    }
}

impl EdgeInput<'_> {
    /// The edge as written; `None` for a pipeline's.
    fn spec(&self) -> Option<&EdgeSpec> {
        self.spec.as_deref()
    }

    /// The `from` endpoints as written.
    fn from(&self) -> &[Spanned<String>] {
        match self.spec() {
            Some(spec) => &spec.from.get_ref().0,
            None => &self.stages[..1],
        }
    }

    /// The `to` endpoints as written.
    fn to(&self) -> &[Spanned<String>] {
        match self.spec() {
            Some(spec) => &spec.to.get_ref().0,
            None => &self.stages[1..],
        }
    }

    /// Where the edge's name is written, when it is.
    fn id_span(&self) -> Option<Span> {
        self.spec().and_then(|s| s.name.as_ref()).map(Spanned::span)
    }

    /// Drops an owned spec, its endpoint lists and strings, once the edge
    /// is planned: nothing reads it again (where its endpoints are written
    /// is kept in [`EndpointSpans`]).
    fn release(&mut self) {
        if matches!(self.spec, Some(Spec::Owned(_))) {
            self.spec = None;
        }
    }
}

/// Where every endpoint of every input is written, by a number per
/// endpoint: the port-use map finds a port's first use through it after
/// that edge's spec is dropped.
struct EndpointSpans {
    /// The number of each input's first `from` endpoint; its `to`
    /// endpoints follow its `from` ones.
    first: Vec<u32>,
    spans: Vec<Span>,
}

impl EndpointSpans {
    fn new(inputs: &[EdgeInput<'_>], endpoints: usize) -> EndpointSpans {
        let mut first = Vec::with_capacity(inputs.len());
        let mut spans = Vec::with_capacity(endpoints);
        for input in inputs {
            // Bounded by the file size cap: far below 2^32 endpoints.
            first.push(spans.len() as u32);
            spans.extend(input.from().iter().chain(input.to()).map(Spanned::span));
        }
        EndpointSpans { first, spans }
    }

    /// The number of endpoint `position` of a side of input `input`.
    fn number(
        &self,
        inputs: &[EdgeInput<'_>],
        input: usize,
        is_from: bool,
        position: usize,
    ) -> u32 {
        let before = if is_from {
            0
        } else {
            inputs[input].from().len()
        };
        self.first[input] + (before + position) as u32
    }
}

/// Which edge uses each port: [`port_key`] (process index, port name's
/// number) -> where, as a [`UseAt`]: there is one entry per port of a
/// large file, so the span is found again from the edge's input instead of
/// being stored, and the key is one number, not a name.
type PortUse = HashMap<u64, UseAt>;

/// The key of a port of a process in [`PortUse`].
fn port_key(process: usize, name: u32) -> u64 {
    ((process as u64) << 32) | u64::from(name)
}

/// An endpoint of an edge input: the input's index, and the endpoint's
/// number in [`EndpointSpans`].
#[derive(Debug, Clone, Copy)]
struct UseAt {
    input: u32,
    endpoint: u32,
}

impl UseAt {
    fn input(self) -> usize {
        self.input as usize
    }

    /// Where the endpoint is written.
    fn span(self, spans: &EndpointSpans) -> Span {
        spans.spans[self.endpoint as usize].clone()
    }
}

/// Resolves, checks and plans every edge. Given the typed file's edges
/// by value (`edges`, taken out of `topology`), it drops each one as soon
/// as its channel is made, so the pass never holds every edge as written
/// beside every channel made from them; otherwise it reads
/// `topology.file.edge`.
pub fn resolve(
    topology: &Topology,
    edges: Option<Vec<EdgeSpec>>,
    limits: &Limits,
    processes: &[ProcessDecl],
    mut placement: Option<&mut Groups>,
    sink: &mut Sink,
) -> Vec<ChannelDecl> {
    let mut inputs = collect_inputs(topology, edges, sink);
    let by_name: ByName<'_> = processes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_ref(), i))
        .collect();
    // One entry per endpoint written, reserved at once: growing the map
    // would hold the old table beside the new one at the pass's peak.
    let endpoints = inputs.iter().map(|i| i.from().len() + i.to().len()).sum();
    let spans = EndpointSpans::new(&inputs, endpoints);
    let mut used: PortUse = HashMap::with_capacity(endpoints);
    let mut channels = Vec::with_capacity(inputs.len());
    let mut posix_queues = 0u64;
    let mut names = PortNames::default();
    for index in 0..inputs.len() {
        let mut pass = Pass {
            limits,
            processes,
            posix_queues: &mut posix_queues,
            names: &mut names,
            placement: placement.as_deref_mut(),
        };
        let ports = (&mut used, &spans);
        if let Some(channel) = edge_channel(&inputs, index, &by_name, ports, &mut pass, sink) {
            channels.push(channel);
        }
        inputs[index].release();
    }
    let first_queue = channels
        .iter()
        .find(|c| matches!(c.plan.mechanism, Mechanism::PosixMq { .. }))
        .map(|c| c.span.clone());
    if let Some(error) = posix_mq::queue_count_error(posix_queues, limits, first_queue) {
        sink.push(error);
    }
    warn_unused_ports(processes, &used, &names, sink);
    channels
}

/// One edge resolved, its ports claimed, and its channel planned; `None`
/// (with errors) when one of those fails.
fn edge_channel(
    inputs: &[EdgeInput<'_>],
    index: usize,
    by_name: &ByName<'_>,
    (used, spans): (&mut PortUse, &EndpointSpans),
    pass: &mut Pass<'_>,
    sink: &mut Sink,
) -> Option<ChannelDecl> {
    let input = &inputs[index];
    let traffic = input
        .spec()
        .and_then(|s| s.traffic.as_ref())
        .map(|t| *t.get_ref())
        .unwrap_or_default();
    let [from, to] = resolve_sides(input, traffic, by_name, pass.processes, sink)?;
    let claimed = claim_ports(inputs, index, [&from, &to], (used, pass.names, spans), sink);
    if !claimed {
        return None;
    }
    plan_channel(input, traffic, &from, &to, pass, sink)
}

/// Both sides of an edge resolved, or `None` when an endpoint did not
/// resolve or a side is empty (with an error).
fn resolve_sides<'a>(
    input: &'a EdgeInput<'_>,
    traffic: Traffic,
    by_name: &ByName<'_>,
    processes: &[ProcessDecl],
    sink: &mut Sink,
) -> Option<[Vec<Resolved<'a>>; 2]> {
    let mut resolve_side = |items: &'a [Spanned<String>], is_from: bool| -> Vec<Resolved<'a>> {
        items
            .iter()
            .filter_map(|item| {
                resolve_endpoint(item, is_from, traffic, input, by_name, processes, sink)
            })
            .collect()
    };
    let from = resolve_side(input.from(), true);
    let to = resolve_side(input.to(), false);
    if from.len() != input.from().len() || to.len() != input.to().len() {
        return None;
    }
    if from.is_empty() || to.is_empty() {
        sink.push(empty_side(input, from.is_empty()));
        return None;
    }
    Some([from, to])
}

/// E0103 for an edge with an empty side, pointing at it when written; a
/// `to` left out is only for a bus (`plan::managed` gives a `dbus` edge
/// its broker before this pass).
fn empty_side(input: &EdgeInput<'_>, from_is_empty: bool) -> Diagnostic {
    let side = input
        .spec()
        .map(|s| if from_is_empty { &s.from } else { &s.to });
    let error = Diagnostic::error(
        "E0103",
        format!(
            "edge `{}` needs at least one endpoint on each side",
            input.id
        ),
    );
    match side {
        Some(side) if side.span() == (0..0) => error
            .with_label(Label::primary(input.span.clone(), "this edge has no `to`"))
            .with_help(
                "name the readers or servers in `to`; only a `protocol = \"dbus\"` edge may leave it out (a private bus ipc-run starts)",
            ),
        Some(side) => error.with_label(Label::primary(side.span(), "empty endpoint list")),
        None => error.with_label(Label::primary(input.span.clone(), "empty endpoint list")),
    }
}

/// Marks the ports of edge `index` as used; `false` (with errors) when a
/// port is already used or is a standard stream used the wrong way.
fn claim_ports(
    inputs: &[EdgeInput<'_>],
    index: usize,
    [from, to]: [&[Resolved<'_>]; 2],
    (used, names, spans): (&mut PortUse, &mut PortNames, &EndpointSpans),
    sink: &mut Sink,
) -> bool {
    let input = &inputs[index];
    let mut ok = true;
    for (side, list) in [(true, from), (false, to)] {
        // Every endpoint of the side resolved, so positions are the input's.
        for (position, r) in list.iter().enumerate() {
            let (EndpointRef::Process { process, .. }, Some(index_of), Some(port)) =
                (r.endpoint, r.process, r.port)
            else {
                continue;
            };
            let key = port_key(index_of, names.id(port));
            if let Some(&at) = used.get(&key) {
                let (other, other_span) = (at.input(), at.span(spans));
                let other_edge = &inputs[other].id;
                let by = if other == index {
                    "both sides of one edge".to_owned()
                } else {
                    format!("two edges, `{other_edge}` and `{}`", input.id)
                };
                sink.push(
                    Diagnostic::error("E0201", format!("port `{process}.{port}` is used by {by}"))
                        .with_label(Label::primary(r.span.clone(), format!("used here by `{}`", input.id)))
                        .with_label(Label::secondary(other_span.clone(), format!("first used here by `{other_edge}`")))
                        .with_help("a port belongs to one edge; give the process another port, or list several peers in one edge's `from`/`to`"),
                );
                ok = false;
            } else {
                let endpoint = spans.number(inputs, index, side, position);
                used.insert(
                    key,
                    UseAt {
                        input: index as u32,
                        endpoint,
                    },
                );
            }
            if !check_stdio_direction(process, port, side, r, input, sink) {
                ok = false;
            }
        }
    }
    ok
}

/// A declared port no edge uses is a warning.
fn warn_unused_ports(
    processes: &[ProcessDecl],
    used: &PortUse,
    names: &PortNames,
    sink: &mut Sink,
) {
    for (index, process) in processes.iter().enumerate() {
        for (port, declared) in process.ports() {
            let key = names.existing_id(port).map(|id| port_key(index, id));
            if key.is_some_and(|key| used.contains_key(&key)) {
                continue;
            }
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

fn collect_inputs<'a>(
    topology: &'a Topology,
    edges: Option<Vec<EdgeSpec>>,
    sink: &mut Sink,
) -> Vec<EdgeInput<'a>> {
    let count = edges.as_ref().map_or(topology.file.edge.len(), Vec::len);
    let mut inputs = Vec::with_capacity(count + topology.file.pipeline.len());
    // Each edge owned by its input when given by value (boxed, so that
    // dropping it gives back all of it), else borrowed from the file.
    let specs: Box<dyn Iterator<Item = Spec<'a>>> = match edges {
        Some(edges) => Box::new(edges.into_iter().map(|e| Spec::Owned(Box::new(e)))),
        None => Box::new(topology.file.edge.iter().map(Spec::Borrowed)),
    };
    for (index, spec) in specs.enumerate() {
        let id = match &spec.name {
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
                name.get_ref().as_str().into()
            }
            None => format!("e{index}").into(),
        };
        let span = spec.from.span().start..spec.to.span().end.max(spec.from.span().end);
        inputs.push(EdgeInput {
            id,
            spec: Some(spec),
            stages: &[],
            span,
        });
    }
    for (index, pair) in topology.file.pipeline.windows(2).enumerate() {
        let span = pair[0].span().start..pair[1].span().end;
        inputs.push(EdgeInput {
            id: format!("pipeline{index}").into(),
            spec: None,
            stages: pair,
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
        match ids.get(&*input.id) {
            Some(previous) => {
                let mut diagnostic =
                    Diagnostic::error("E0105", format!("two edges are named `{}`", input.id));
                diagnostic = diagnostic.with_label(Label::primary(
                    input.id_span().unwrap_or(input.span.clone()),
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
                ids.insert(&input.id, input.id_span().or(Some(input.span.clone())));
            }
        }
    }
    inputs
}

fn resolve_endpoint<'a>(
    item: &'a Spanned<String>,
    is_from: bool,
    traffic: Traffic,
    input: &'a EdgeInput<'_>,
    by_name: &ByName<'_>,
    processes: &[ProcessDecl],
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
            let index = process_index(process, endpoint, span.clone(), by_name, processes, sink)?;
            let port = match port {
                Some(port) => port,
                None => default_port(process, is_from, traffic, input, span.clone(), sink)?,
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

/// The index of the process an endpoint names (an error when none has
/// that name).
fn process_index(
    process: &str,
    endpoint: EndpointRef<'_>,
    span: Span,
    by_name: &ByName<'_>,
    processes: &[ProcessDecl],
    sink: &mut Sink,
) -> Option<usize> {
    if let Some(&index) = by_name.get(process) {
        return Some(index);
    }
    let mut known: Vec<&str> = processes.iter().map(|p| p.name.as_ref()).collect();
    known.truncate(12);
    let mut diagnostic = Diagnostic::error(
        "E0102",
        format!("dangling endpoint `{endpoint}`: no process named `{process}`"),
    )
    .with_label(Label::primary(span, "no such process"));
    if !known.is_empty() {
        diagnostic = diagnostic.with_note(format!("the processes are: {}", known.join(", ")));
    }
    sink.push(diagnostic);
    None
}

/// The port of an endpoint written without one: stdout/stdin for a
/// stream, else the edge's name (an error when the edge has none).
fn default_port<'a>(
    process: &str,
    is_from: bool,
    traffic: Traffic,
    input: &'a EdgeInput<'_>,
    span: Span,
    sink: &mut Sink,
) -> Option<&'a str> {
    if traffic == Traffic::Stream {
        return Some(if is_from { "stdout" } else { "stdin" });
    }
    if let Some(name) = input.spec().and_then(|s| s.name.as_ref()) {
        return Some(name.get_ref().as_str());
    }
    sink.push(
        Diagnostic::error(
            "E0103",
            format!("endpoint `{process}` needs a port for non-stream traffic"),
        )
        .with_label(Label::primary(span, "which port?"))
        .with_help(format!(
            "write `{process}.<port>`, or name the edge so the port takes its name"
        )),
    );
    None
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
        .spec()
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

/// What planning one channel needs from the whole pass.
struct Pass<'a> {
    limits: &'a Limits,
    processes: &'a [ProcessDecl],
    /// POSIX queues planned so far.
    posix_queues: &'a mut u64,
    /// Port names shared between channels.
    names: &'a mut PortNames,
    /// The host groups, when the topology is placed on several.
    placement: Option<&'a mut Groups>,
}

/// Plans one edge whose endpoints resolved: its mechanism (chosen or
/// checked), the mechanism's parameters and objects, and its endpoints.
fn plan_channel(
    input: &EdgeInput<'_>,
    traffic: Traffic,
    from: &[Resolved<'_>],
    to: &[Resolved<'_>],
    pass: &mut Pass<'_>,
    sink: &mut Sink,
) -> Option<ChannelDecl> {
    let traits = edge_traits(input, traffic, from, to, pass.processes, sink)?;
    // Between host groups only a network mechanism reaches the other side.
    let crossing = match pass.placement.as_deref_mut() {
        Some(groups) => {
            let writers = from.iter().filter_map(|r| r.process);
            let readers = to.iter().filter_map(|r| r.process);
            groups
                .crossing(&input.id, input.spec(), &input.span, writers, readers, sink)
                .ok()?
        }
        None => None,
    };
    let (kind, reason, choice) = match (&crossing, pass.placement.as_deref()) {
        (Some(crossing), Some(groups)) => groups.pick(crossing, input.spec(), traffic),
        _ => pick(input, &traits, pass.limits, sink)?,
    };
    check_options_apply(kind, &traits, input, sink);
    let mode = parse_mode(input.spec(), sink)?;
    let mut cx = EdgeContext {
        id: &input.id,
        spec: input.spec(),
        span: input.span.clone(),
        id_span: input.id_span(),
        traits: &traits,
        limits: pass.limits,
        mode,
        from_own_stdin: from
            .iter()
            .any(|r| matches!(r.endpoint, EndpointRef::Own(_))),
        diagnostics: Vec::new(),
        objects: Vec::new(),
        posix_queues: pass.posix_queues,
    };
    let shape = kind.plan(&mut cx);
    for diagnostic in cx.diagnostics {
        sink.push(diagnostic);
    }
    let Shape {
        mut mechanism,
        blocking,
        capacity,
    } = shape?;
    let mut objects = cx.objects;
    if let (Some(crossing), Some(groups)) = (crossing, pass.placement.as_deref_mut()) {
        groups.open(&input.id, crossing, &mut mechanism, &mut objects);
    }
    warn_unsynchronised(input, traffic, sink);
    warn_outside_writers(input, kind, &traits, from, pass.limits, sink);
    let ends = plan_endpoints(&mechanism, &traits, [from, to], pass);
    let in_flight = input
        .spec()
        .and_then(|s| s.in_flight.as_ref())
        .map(|v| v.get_ref().0);
    Some(ChannelDecl {
        plan: ChannelPlan::new(
            ChannelHead {
                id: Arc::clone(&input.id),
                traffic: traffic.into(),
                mechanism,
                choice,
                reason,
                objects: objects.into_boxed_slice(),
                blocking,
                capacity,
                in_flight,
            },
            ends.ends,
            ends.from_len,
        ),
        span: input.span.clone(),
        ports: ends.ports.into_boxed_slice(),
    })
}

/// What the planner knows about an edge, from its options and endpoints.
fn edge_traits(
    input: &EdgeInput<'_>,
    traffic: Traffic,
    from: &[Resolved<'_>],
    to: &[Resolved<'_>],
    processes: &[ProcessDecl],
    sink: &mut Sink,
) -> Option<Traits> {
    let spec = input.spec();
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
    let any = |test: fn(&EndpointRef<'_>) -> bool| from.iter().chain(to).any(|r| test(&r.endpoint));
    Some(Traits {
        traffic,
        duplex: spec
            .and_then(|s| s.duplex.as_ref())
            .is_some_and(|d| *d.get_ref()),
        writers: from.iter().map(instances).sum(),
        readers: to.iter().map(instances).sum(),
        external: any(|e| matches!(e, EndpointRef::External)),
        own_stream: any(|e| matches!(e, EndpointRef::Own(_))),
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
    })
}

/// The mechanism named in the file (checked to fit) or chosen for `auto`,
/// with the reason recorded in the plan.
fn pick(
    input: &EdgeInput<'_>,
    traits: &Traits,
    limits: &Limits,
    sink: &mut Sink,
) -> Option<(Kind, super::select::Reason, Choice)> {
    let spec = input.spec();
    let traffic_span = spec.and_then(|s| s.traffic.as_ref().map(|t| t.span()));
    let explicit = spec
        .and_then(|s| s.mechanism.as_ref())
        .and_then(|m| Some((m.get_ref().kind()?, m.span())));
    let Some((kind, span)) = explicit else {
        return match choose(traits, limits) {
            Ok((kind, reason)) => Some((kind, reason, Choice::Auto)),
            Err(misfit) => {
                let blame = traffic_span.unwrap_or(input.span.clone());
                let mut diagnostic = Diagnostic::error(
                    misfit.code,
                    format!("no mechanism fits edge `{}`: {}", input.id, misfit.message),
                )
                .with_label(Label::primary(blame, "for this edge"));
                if let Some(help) = misfit.help {
                    diagnostic = diagnostic.with_help(help);
                }
                sink.push(diagnostic);
                None
            }
        };
    };
    if let Err(misfit) = check_fit(kind, traits, limits) {
        let mut diagnostic = Diagnostic::error(misfit.code, misfit.message).with_label(
            Label::primary(span, format!("edge `{}` asks for `{kind}`", input.id)),
        );
        if let Some(traffic_span) = traffic_span {
            diagnostic =
                diagnostic.with_label(Label::secondary(traffic_span, "the traffic it must carry"));
        }
        if let Some(help) = misfit.help {
            diagnostic = diagnostic.with_help(help);
        }
        sink.push(diagnostic);
        return None;
    }
    let reason = format!(
        "named in the topology; fits {} traffic with {} writer(s) and {} reader(s)",
        traffic_name(traits.traffic),
        traits.writers,
        traits.readers
    );
    Some((kind, reason.into(), Choice::Explicit))
}

/// Shared memory with `sync = "none"` is allowed, with a warning.
fn warn_unsynchronised(input: &EdgeInput<'_>, traffic: Traffic, sink: &mut Sink) {
    let Some(sync) = input.spec().and_then(|s| s.sync.as_ref()) else {
        return;
    };
    if traffic != Traffic::Shared || *sync.get_ref() != SyncKind::None {
        return;
    }
    sink.push(
        Diagnostic::warning(
            "W0201",
            format!(
                "race risk: shared memory of edge `{}` has no synchronisation",
                input.id
            ),
        )
        .with_label(Label::primary(sync.span(), "no semaphores created"))
        .with_note(
            "concurrent readers and writers must bring their own protocol (atomics, a ring, a lock)",
        ),
    );
}

/// A FIFO written by `@external` is open to any number of outside
/// writers: records above `PIPE_BUF` stay whole only while one of them
/// writes at a time, so it is allowed, with a warning. (Several writers the
/// planner can count are refused instead, `E0306`.)
fn warn_outside_writers(
    input: &EdgeInput<'_>,
    kind: Kind,
    traits: &Traits,
    from: &[Resolved<'_>],
    limits: &Limits,
    sink: &mut Sink,
) {
    let pipe_buf = limits.pipe_buf.value;
    let outside_writer = from
        .iter()
        .any(|r| matches!(r.endpoint, EndpointRef::External));
    let (Some(size), Some(spec)) = (traits.message_size, input.spec()) else {
        return;
    };
    if kind != Kind::Fifo || !outside_writer || size <= pipe_buf {
        return;
    }
    let span = spec
        .message_size
        .as_ref()
        .map_or(input.span.clone(), |v| v.span());
    sink.push(
        Diagnostic::warning(
            "W0302",
            format!(
                "records of edge `{}` may interleave: any number of outside writers can open its FIFO, and records of {size} bytes exceed PIPE_BUF ({pipe_buf})",
                input.id
            ),
        )
        .with_label(Label::primary(span, "larger than PIPE_BUF"))
        .with_note(format!(
            "a FIFO keeps a record whole only if it is at most PIPE_BUF ({pipe_buf}) bytes and written with one write(2); larger records of two writers arrive mixed"
        ))
        .with_help(
            "if several outside peers may write, use traffic = \"messages\" (a POSIX queue, opened by name, keeps each message whole; or mechanism = \"unix-listener\" with socket = \"seqpacket\"), or keep records within PIPE_BUF",
        ),
    );
}

/// A channel's endpoints in the plan, and the port ends behind them.
struct Endpoints {
    /// Both sides, `from` first, as the plan holds them.
    ends: Vec<EndpointPlan>,
    /// How many of `ends` are the `from` side's.
    from_len: usize,
    ports: Vec<PortEnd>,
}

/// Every endpoint of both sides, replicas expanded, with the ends they
/// hold.
fn plan_endpoints(
    mechanism: &Mechanism,
    traits: &Traits,
    [from, to]: [&[Resolved<'_>]; 2],
    pass: &mut Pass<'_>,
) -> Endpoints {
    let processes = pass.processes;
    let (from_ends, to_ends) = crate::mechanism::ends(mechanism, traits.duplex);
    let mut ends = Endpoints {
        ends: Vec::with_capacity(traits.writers + traits.readers),
        from_len: 0,
        ports: Vec::with_capacity(traits.writers + traits.readers),
    };
    for (list, end, is_reader) in [(from, from_ends, false), (to, to_ends, true)] {
        let (needs_fd, listener) = crate::mechanism::fd_need(mechanism, end);
        if is_reader {
            ends.from_len = ends.ends.len();
        }
        // A side's slots count from its first endpoint.
        let first = ends.from_len;
        for r in list {
            let out = &mut ends.ends;
            let (process, port) = match (r.endpoint, r.process, r.port) {
                (EndpointRef::Own(target), ..) => {
                    let stream = match target {
                        EndpointTarget::Stdin => OwnStream::Stdin,
                        EndpointTarget::Stdout => OwnStream::Stdout,
                    };
                    out.push(EndpointPlan::Own { stream });
                    continue;
                }
                (EndpointRef::External, ..) => {
                    out.push(EndpointPlan::External);
                    continue;
                }
                (EndpointRef::Process { .. }, Some(process), port) => {
                    (process, port.unwrap_or_default())
                }
                (EndpointRef::Process { .. }, None, _) => {
                    unreachable!("resolved process endpoints carry their index")
                }
            };
            let port_name = pass.names.get(port);
            for (replica, instance) in processes[process].instances.iter().enumerate() {
                // Bounded by the instance cap and the endpoints of one edge.
                ends.ports.push(PortEnd {
                    process: process as u32,
                    replica: replica as u32,
                    slot: (out.len() - first) as u32,
                    end,
                    needs_fd,
                    listener,
                    span: r.span.clone(),
                    is_reader,
                });
                out.push(EndpointPlan::Port {
                    process: instance.clone(),
                    port: port_name.clone(),
                    end,
                    fd: PortFd::NONE,
                });
            }
        }
    }
    ends
}

/// Options that only make sense for some mechanisms are rejected elsewhere,
/// so a typo in intent ("size" on a pipe) never passes silently.
fn check_options_apply(kind: Kind, traits: &Traits, input: &EdgeInput<'_>, sink: &mut Sink) {
    let Some(spec) = input.spec() else { return };
    let applies = kind.profile().options;
    let written = [
        (
            EdgeOption::Size,
            "size",
            spec.size.as_ref().map(|v| v.span()),
            "shared memory",
        ),
        (
            EdgeOption::Sync,
            "sync",
            spec.sync.as_ref().map(|v| v.span()),
            "shared memory",
        ),
        (
            EdgeOption::Signal,
            "signal",
            spec.signal.as_ref().map(|v| v.span()),
            "signal edges",
        ),
        (
            EdgeOption::Initial,
            "initial",
            spec.initial.as_ref().map(|v| v.span()),
            "semaphore edges",
        ),
        (
            EdgeOption::Deliver,
            "deliver",
            spec.deliver.as_ref().map(|v| v.span()),
            "FIFOs",
        ),
        (
            EdgeOption::Protocol,
            "protocol",
            spec.protocol.as_ref().map(|v| v.span()),
            "rpc edges (traffic = \"request\")",
        ),
        (
            EdgeOption::Address,
            "address",
            spec.address.as_ref().map(|v| v.span()),
            "tcp, udp and rpc edges",
        ),
        (
            EdgeOption::Depth,
            "depth",
            spec.depth.as_ref().map(|v| v.span()),
            "message queues",
        ),
        (
            EdgeOption::Endpoint,
            "endpoint",
            spec.endpoint.as_ref().map(|v| v.span()),
            "rpc edges",
        ),
        (
            EdgeOption::MaxConnections,
            "max_connections",
            spec.max_connections.as_ref().map(|v| v.span()),
            "rpc edges",
        ),
        (
            EdgeOption::Probe,
            "probe",
            spec.probe.as_ref().map(|v| v.span()),
            "rpc edges",
        ),
    ];
    for (option, key, span, where_) in written {
        let Some(span) = span else { continue };
        // A payload size on a notify edge is a misfit of its own (E0303).
        let excused = option == EdgeOption::Size && traits.traffic == Traffic::Notify;
        if applies.contains(&option) || excused {
            continue;
        }
        sink.push(
            Diagnostic::error(
                "E0313",
                format!("`{key}` does not apply to a `{kind}` edge"),
            )
            .with_label(Label::primary(
                span,
                format!("`{key}` is ignored by a {kind}"),
            ))
            .with_help(format!("`{key}` applies to {where_}")),
        );
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

pub use crate::mechanism::model::port_env_name;

/// Whether a port is a standard stream, which has no `IPC_PORT_*` variable.
pub fn is_std_stream(port: &str) -> bool {
    matches!(port, "stdin" | "stdout" | "stderr")
}
