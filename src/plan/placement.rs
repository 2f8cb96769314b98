//! Placement: which host group each process runs in, and what crosses
//! between groups (`docs/distributed.md`, "Placement").
//!
//! Kernel IPC works within one host, so the edges that need it (pipes,
//! FIFOs, socketpairs, Unix sockets, shared memory, queues, semaphores,
//! signals, standard streams, an MPI world, a D-Bus bus) bind their
//! processes into one component (union-find over the edges, linear). The
//! groups come from the processes' `host` keys, a component taking the one
//! its members declare, or from `--hosts N`, which packs the components into
//! N groups, first fit decreasing. An edge left between groups can only be
//! a network edge: `auto` makes it TCP (rpc keeps its protocol over TCP) on
//! a port fixed in the plan.
//!
//! [`assign`] runs between the processes and edges passes, on the file as
//! written (it reads no mechanism the edges pass chooses); the edges pass
//! asks [`Groups::crossing`] of each channel; [`Groups::finish`] writes
//! the plan's `placement` and each instance's `host`. This module also
//! checks a placement read back from JSON (`run --plan`), trusted no more
//! than the rest of the plan.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

use super::Sink;
use super::model::{
    CrossEdgePlan, EndpointPlan, HostGroupPlan, LOCAL_GROUP, Mechanism, PlacementPlan,
    PlacementSource, Plan, Transport,
};
use super::processes::ProcessDecl;
use super::{Span, select::Reason};
use crate::diagnostic::{Diagnostic, Label};
use crate::mechanism::Kind;
use crate::topology::{
    EdgeSpec, EndpointRef, EndpointShape, MechanismName, Spanned, SyncKind, Topology, Traffic,
    check_name,
};

/// The first port given to a cross edge that declares none (`--base-port`).
pub const DEFAULT_BASE_PORT: u16 = 47000;

/// Names listed in a group's reason before "and N more": a group of a
/// million processes gets a reason of one line.
const NAMES_IN_REASON: usize = 6;

/// What the command line asks of placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementOptions {
    /// `--hosts N`: let the planner partition the topology into N groups.
    pub hosts: Option<u32>,
    /// `--base-port`: the first port assigned to a cross edge.
    pub base_port: u16,
}

impl Default for PlacementOptions {
    fn default() -> Self {
        PlacementOptions {
            hosts: None,
            base_port: DEFAULT_BASE_PORT,
        }
    }
}

/// Why an edge keeps its processes on one host, or `None` for an edge that
/// may become a network edge.
fn binding(spec: Option<&EdgeSpec>, std_stream: bool, outside: bool) -> Option<&'static str> {
    let Some(spec) = spec else {
        return Some("a pipeline's stages are joined by pipes on their standard streams");
    };
    let traffic = spec
        .traffic
        .as_ref()
        .map(|t| *t.get_ref())
        .unwrap_or_default();
    let broker = spec
        .endpoint
        .as_ref()
        .is_some_and(|e| *e.get_ref() == EndpointShape::Broker)
        || spec
            .protocol
            .as_ref()
            .is_some_and(|p| p.get_ref() == crate::mechanism::dbus::PROTOCOL);
    let named = spec.mechanism.as_ref().and_then(|m| m.get_ref().kind());
    match named {
        Some(Kind::Mpi) => {
            return Some("the ranks of an MPI world run under one mpirun, on one host");
        }
        Some(Kind::Udp) => {
            return Some("a udp edge stays on one host (an edge between groups is a TCP listener)");
        }
        Some(Kind::Tcp) => return None,
        Some(Kind::Rpc) if !broker => return None,
        Some(_) if !broker => return Some("its mechanism is host-local kernel IPC"),
        _ => {}
    }
    if broker {
        return Some("a D-Bus bus's clients meet at its broker, started on one host");
    }
    if outside {
        return Some(
            "an end at `@stdin`, `@stdout` or `@external` is on one host: ipc-run's own streams, or a peer that finds the channel by name",
        );
    }
    // Options that only a host-local mechanism takes: an edge that writes
    // one asked for that mechanism's behaviour, which TCP cannot give.
    let local_options = spec.depth.is_some()
        || spec.deliver.is_some()
        || spec.socket.is_some()
        || spec.initial.is_some()
        || spec.signal.is_some()
        || spec.mode.is_some();
    if local_options {
        return Some(
            "it writes an option of a host-local mechanism (`depth`, `deliver`, `socket`, `initial`, `signal` or `mode`)",
        );
    }
    if std_stream {
        return Some(
            "a standard stream end is a pipe: a program reading stdin or writing stdout cannot take a TCP listener",
        );
    }
    match traffic {
        Traffic::Shared => Some("shared memory is mapped by processes of one host"),
        Traffic::Notify => Some("a signal is sent to a pid of the same host"),
        _ if spec
            .sync
            .as_ref()
            .is_some_and(|s| *s.get_ref() == SyncKind::Ring) =>
        {
            Some("a ring lives in shared memory, mapped by processes of one host")
        }
        _ => None,
    }
}

/// The code and headline of a binding edge whose ends are declared in two
/// groups: what about the edge cannot cross hosts.
fn conflict_code(spec: Option<&EdgeSpec>) -> &'static str {
    let Some(spec) = spec else { return "E0502" };
    match spec.mechanism.as_ref().map(|m| *m.get_ref()) {
        Some(MechanismName::Mpi) => "E0505",
        Some(MechanismName::Auto) | None => match spec.traffic.as_ref().map(|t| *t.get_ref()) {
            Some(Traffic::Shared | Traffic::Notify) => "E0504",
            _ => "E0502",
        },
        Some(_) => "E0503",
    }
}

/// One edge of the file as placement sees it: its processes, whether it
/// binds them, and where it is written.
struct EdgeEnds<'t> {
    id: EdgeId<'t>,
    spec: Option<&'t EdgeSpec>,
    span: Span,
    /// Indexes of the processes at its ends, `from` first, in order.
    processes: Vec<usize>,
    /// Why it binds its processes, if it does.
    binds: Option<&'static str>,
}

/// An edge's id as the plan spells it (its name, `eN` or `pipelineN`),
/// made into text only when a message or reason shows it.
#[derive(Debug, Clone, Copy)]
enum EdgeId<'t> {
    Named(&'t str),
    Index(usize),
    Pipeline(usize),
}

impl std::fmt::Display for EdgeId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EdgeId::Named(name) => f.write_str(name),
            EdgeId::Index(index) => write!(f, "e{index}"),
            EdgeId::Pipeline(index) => write!(f, "pipeline{index}"),
        }
    }
}

/// The edges of the file, with their process ends resolved by name; an
/// endpoint that does not resolve is left for the edges pass to report.
fn edge_ends<'t>(topology: &'t Topology, by_name: &HashMap<&str, usize>) -> Vec<EdgeEnds<'t>> {
    let file = &topology.file;
    let mut edges = Vec::with_capacity(file.edge.len() + file.pipeline.len());
    let mut resolve = |id: EdgeId<'t>,
                       spec: Option<&'t EdgeSpec>,
                       span: Span,
                       from: &'t [Spanned<String>],
                       to: &'t [Spanned<String>]| {
        let stream = spec
            .and_then(|s| s.traffic.as_ref())
            .is_none_or(|t| *t.get_ref() == Traffic::Stream);
        let (mut std_stream, mut outside) = (false, false);
        let mut processes = Vec::new();
        for item in from.iter().chain(to) {
            match EndpointRef::parse(item.get_ref()) {
                Ok(EndpointRef::Process { process, port }) => {
                    let Some(&index) = by_name.get(process) else {
                        continue;
                    };
                    processes.push(index);
                    std_stream |= match port {
                        Some(port) => super::edges::is_std_stream(port),
                        None => stream,
                    };
                }
                Ok(EndpointRef::Own(_) | EndpointRef::External) => outside = true,
                Err(_) => {}
            }
        }
        let binds = binding(spec, std_stream, outside);
        edges.push(EdgeEnds {
            id,
            spec,
            span,
            processes,
            binds,
        });
    };
    for (index, spec) in file.edge.iter().enumerate() {
        let id = spec
            .name
            .as_ref()
            .map_or(EdgeId::Index(index), |n| EdgeId::Named(n.get_ref()));
        let span = spec.from.span().start..spec.to.span().end.max(spec.from.span().end);
        resolve(
            id,
            Some(spec),
            span,
            &spec.from.get_ref().0,
            &spec.to.get_ref().0,
        );
    }
    for (index, pair) in file.pipeline.windows(2).enumerate() {
        let span = pair[0].span().start..pair[1].span().end;
        resolve(
            EdgeId::Pipeline(index),
            None,
            span,
            std::slice::from_ref(&pair[0]),
            std::slice::from_ref(&pair[1]),
        );
    }
    edges
}

/// A declared `host`: the group's index and the declaring process's.
type Declaration = Option<(u32, u32)>;

/// Union-find over process indexes, with path halving and union by size:
/// near-linear in the edges.
struct Components {
    parent: Vec<u32>,
    size: Vec<u32>,
    /// The declared group of a root's component, and the process that
    /// declared it.
    declared: Vec<Declaration>,
}

impl Components {
    fn new(declared: Vec<Declaration>) -> Self {
        let n = declared.len();
        Components {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
            declared,
        }
    }

    fn root(&mut self, mut x: usize) -> usize {
        while self.parent[x] as usize != x {
            let grand = self.parent[self.parent[x] as usize];
            self.parent[x] = grand;
            x = grand as usize;
        }
        x
    }

    /// Joins the components of `a` and `b`; when they declare two groups,
    /// leaves them apart and returns both declarations.
    fn join(&mut self, a: usize, b: usize) -> Result<(), [(u32, u32); 2]> {
        let (mut ra, mut rb) = (self.root(a), self.root(b));
        if ra == rb {
            return Ok(());
        }
        match (self.declared[ra], self.declared[rb]) {
            (Some(x), Some(y)) if x.0 != y.0 => return Err([x, y]),
            _ => {}
        }
        if self.size[ra] < self.size[rb] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb] = ra as u32;
        self.size[ra] += self.size[rb];
        self.declared[ra] = self.declared[ra].or(self.declared[rb]);
        Ok(())
    }
}

/// A list of names kept to its first few, with the count of all.
#[derive(Default)]
struct Capped {
    names: Vec<String>,
    total: usize,
}

impl Capped {
    fn push(&mut self, name: impl std::fmt::Display) {
        if self.names.len() < NAMES_IN_REASON {
            self.names.push(name.to_string());
        }
        self.total += 1;
    }

    fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl std::fmt::Display for Capped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (k, name) in self.names.iter().enumerate() {
            if k > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{name}`")?;
        }
        if self.total > self.names.len() {
            write!(f, " and {} more", self.total - self.names.len())?;
        }
        Ok(())
    }
}

/// The groups decided before the edges pass, and the cross edges that
/// pass finds.
#[derive(Debug)]
pub(crate) struct Groups {
    source: PlacementSource,
    names: Vec<Arc<str>>,
    reasons: Vec<String>,
    /// The group of each declared process, by index.
    of_process: Vec<u32>,
    /// Ports written in any edge's `address`: never assigned to another.
    declared_ports: HashSet<u16>,
    /// Ports taken by cross edges: the channel, and where it is written.
    taken: HashMap<u16, (String, Option<Span>)>,
    /// The next port to try for a cross edge without a declared port.
    next_port: u32,
    cross: Vec<CrossEdgePlan>,
}

/// The declared `host` of each process (group index, process index), the
/// group names in order of first appearance, and `cpus`/`memory` checked.
fn declared_groups(
    processes: &[ProcessDecl],
    sink: &mut Sink,
) -> (Vec<Arc<str>>, Vec<Declaration>) {
    let mut names: Vec<Arc<str>> = Vec::new();
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut declared = Vec::with_capacity(processes.len());
    for (p, process) in processes.iter().enumerate() {
        if let Some(cpus) = &process.spec.cpus {
            let value = *cpus.get_ref();
            if !(value.is_finite() && value > 0.0) {
                sink.push(
                    Diagnostic::error(
                        "E0507",
                        format!("`cpus` of `{}` must be a positive number", process.name),
                    )
                    .with_label(Label::primary(cpus.span(), "not a positive number of CPUs"))
                    .with_help("write `cpus = 2` or `cpus = 0.5`"),
                );
            }
        }
        if let Some(memory) = process.spec.memory.as_ref().filter(|m| m.get_ref().0 == 0) {
            sink.push(
                Diagnostic::error(
                    "E0507",
                    format!("`memory` of `{}` must be more than 0 bytes", process.name),
                )
                .with_label(Label::primary(memory.span(), "no memory"))
                .with_help("write a size such as `memory = \"512MiB\"`"),
            );
        }
        let Some(host) = &process.spec.host else {
            declared.push(None);
            continue;
        };
        if let Err(why) = check_name(host.get_ref()) {
            sink.push(
                Diagnostic::error(
                    "E0500",
                    format!(
                        "invalid host group name `{}`",
                        host.get_ref().escape_debug()
                    ),
                )
                .with_label(Label::primary(host.span(), why))
                .with_help(
                    "a group is named like a process: 1 to 48 characters of a-z, 0-9, `-` and `_`",
                ),
            );
            declared.push(None);
            continue;
        }
        let next = names.len() as u32;
        let group = *index.entry(host.get_ref().clone()).or_insert_with(|| {
            names.push(host.get_ref().as_str().into());
            next
        });
        declared.push(Some((group, p as u32)));
    }
    (names, declared)
}

/// Decides the groups, or `None` for a topology placed on one host (no
/// `host` key, no `--hosts`). Errors go to `sink`.
pub(crate) fn assign(
    topology: &Topology,
    processes: &[ProcessDecl],
    options: &PlacementOptions,
    sink: &mut Sink,
) -> Option<Groups> {
    let (names, declared) = declared_groups(processes, sink);
    if names.is_empty() && options.hosts.is_none() {
        return None;
    }
    if let (Some(hosts), Some(first)) = (
        options.hosts,
        processes.iter().find_map(|p| p.spec.host.as_ref()),
    ) {
        sink.push(
            Diagnostic::error("E0509", format!("`--hosts {hosts}` asks the planner to place the processes, but the topology places them with `host` keys"))
                .with_label(Label::primary(first.span(), "placed here"))
                .with_help("drop `--hosts`, or the `host` keys"),
        );
        return None;
    }
    let by_name: HashMap<&str, usize> = processes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_ref(), i))
        .collect();
    let edges = edge_ends(topology, &by_name);
    let mut components = Components::new(declared);
    join_bound(&mut components, &edges, processes, &names, sink);
    if sink.has_errors() {
        return None;
    }
    let (source, names, reasons, of_process) = match options.hosts {
        None => {
            let (of_process, reasons) = place_declared(&mut components, &edges, processes, &names);
            (PlacementSource::Declared, names, reasons, of_process)
        }
        Some(hosts) => {
            let (names, of_process, reasons) =
                partition(&mut components, &edges, processes, hosts, sink);
            (
                PlacementSource::Partitioned { hosts },
                names,
                reasons,
                of_process,
            )
        }
    };
    let declared_ports = edges
        .iter()
        .filter_map(|e| {
            e.spec?
                .address
                .as_ref()?
                .get_ref()
                .parse::<std::net::SocketAddr>()
                .ok()
        })
        .map(|a| a.port())
        .filter(|&port| port != 0)
        .collect();
    Some(Groups {
        source,
        names,
        reasons,
        of_process,
        declared_ports,
        taken: HashMap::new(),
        next_port: u32::from(options.base_port),
        cross: Vec::new(),
    })
}

/// Joins the processes of every binding edge; an edge that would join two
/// declared groups is an error naming both and the edge.
fn join_bound(
    components: &mut Components,
    edges: &[EdgeEnds<'_>],
    processes: &[ProcessDecl],
    names: &[Arc<str>],
    sink: &mut Sink,
) {
    for edge in edges {
        let Some(why) = edge.binds else { continue };
        let Some((&first, rest)) = edge.processes.split_first() else {
            continue;
        };
        for &other in rest {
            let Err([x, y]) = components.join(first, other) else {
                continue;
            };
            sink.push(conflict(edge, why, [x, y], processes, names));
            break;
        }
    }
}

/// E0502–E0505: a binding edge between two declared groups.
fn conflict(
    edge: &EdgeEnds<'_>,
    why: &str,
    sides: [(u32, u32); 2],
    processes: &[ProcessDecl],
    names: &[Arc<str>],
) -> Diagnostic {
    let [(ga, pa), (gb, pb)] = sides;
    let (ga, gb) = (&names[ga as usize], &names[gb as usize]);
    let code = conflict_code(edge.spec);
    let what = match (code, edge.spec.and_then(|s| s.mechanism.as_ref())) {
        ("E0503", Some(m)) => format!("`{}` is host-local", m.get_ref()),
        _ => "it must stay on one host".to_owned(),
    };
    let mut diagnostic = Diagnostic::error(
        code,
        format!(
            "edge `{}` joins host groups `{ga}` and `{gb}`, but {what}",
            edge.id
        ),
    )
    .with_label(Label::primary(
        edge.span.clone(),
        format!("joins group `{ga}` to group `{gb}`"),
    ))
    .with_note(why);
    for (p, group) in [(pa, ga), (pb, gb)] {
        let process = &processes[p as usize];
        if let Some(host) = &process.spec.host {
            diagnostic = diagnostic.with_label(Label::secondary(
                host.span(),
                format!("`{}` is in group `{group}`", process.name),
            ));
        }
    }
    let help = match code {
        "E0503" => {
            "leave `mechanism` to `auto` (the planner makes an edge between groups TCP), name `tcp` or an `rpc` protocol, or put both ends in one group"
        }
        "E0504" => {
            "shared memory and signals do not cross hosts: put these processes in one group, or carry the data or the event over a TCP edge (`traffic = \"stream\"` or `\"request\"`)"
        }
        "E0505" => {
            "ipc-run runs an MPI world under one mpirun on one host and writes no hostfile: put every rank in one group"
        }
        _ => {
            "put these processes in one group, or make the edge one that crosses hosts (`traffic = \"stream\"`, `\"messages\"` or `\"request\"` between named ports)"
        }
    };
    diagnostic.with_help(help)
}

/// Each process's component root.
fn roots(components: &mut Components) -> Vec<u32> {
    (0..components.parent.len())
        .map(|p| components.root(p) as u32)
        .collect()
}

/// The network (non-binding) edges between components, as adjacency lists
/// in one buffer (by counting): root -> (other root, edge index).
struct Adjacency {
    offsets: Vec<u32>,
    links: Vec<(u32, u32)>,
}

impl Adjacency {
    fn new(roots: &[u32], edges: &[EdgeEnds<'_>]) -> Self {
        let pairs = || {
            edges
                .iter()
                .enumerate()
                .filter(|(_, e)| e.binds.is_none())
                .flat_map(|(k, e)| {
                    let first = e.processes.first().map(|&p| roots[p]);
                    e.processes.iter().skip(1).filter_map(move |&p| {
                        let (a, b) = (first?, roots[p]);
                        (a != b).then_some((a, b, k as u32))
                    })
                })
        };
        let mut offsets = vec![0u32; roots.len() + 1];
        for (a, b, _) in pairs() {
            offsets[a as usize + 1] += 1;
            offsets[b as usize + 1] += 1;
        }
        for k in 1..offsets.len() {
            offsets[k] += offsets[k - 1];
        }
        let mut fill = offsets.clone();
        let mut links = vec![(0, 0); *offsets.last().unwrap_or(&0) as usize];
        for (a, b, e) in pairs() {
            for (from, to) in [(a, b), (b, a)] {
                links[fill[from as usize] as usize] = (to, e);
                fill[from as usize] += 1;
            }
        }
        Adjacency { offsets, links }
    }

    fn of(&self, root: u32) -> &[(u32, u32)] {
        let r = root as usize;
        &self.links[self.offsets[r] as usize..self.offsets[r + 1] as usize]
    }
}

/// Declared groups: a component takes the group one of its processes
/// declares; a component with none takes the group of a component it has a
/// network edge with (breadth first from the declared ones, so a chain of
/// undeclared processes follows its placed neighbour), else the first
/// group. Returns each process's group and each group's reason.
fn place_declared(
    components: &mut Components,
    edges: &[EdgeEnds<'_>],
    processes: &[ProcessDecl],
    names: &[Arc<str>],
) -> (Vec<u32>, Vec<String>) {
    let roots = roots(components);
    let mut group: Vec<Option<u32>> = vec![None; roots.len()];
    let mut joined: Vec<Option<u32>> = vec![None; roots.len()];
    // Seeded in file order (of each component's first process), so an
    // undeclared component between two groups joins the earlier one.
    let mut queue = VecDeque::new();
    let mut seeded = vec![false; roots.len()];
    for &root in &roots {
        let r = root as usize;
        if !seeded[r] {
            seeded[r] = true;
            group[r] = components.declared[r].map(|d| d.0);
            if group[r].is_some() {
                queue.push_back(root);
            }
        }
    }
    let adjacency = Adjacency::new(&roots, edges);
    while let Some(root) = queue.pop_front() {
        for &(next, edge) in adjacency.of(root) {
            if group[next as usize].is_none() {
                group[next as usize] = group[root as usize];
                joined[next as usize] = Some(edge);
                queue.push_back(next);
            }
        }
    }
    let of_process: Vec<u32> = roots
        .iter()
        .map(|&r| group[r as usize].unwrap_or(0))
        .collect();
    let mut why: Vec<DeclaredWhy> = names.iter().map(|_| DeclaredWhy::default()).collect();
    for (p, process) in processes.iter().enumerate() {
        let (root, g) = (roots[p] as usize, of_process[p] as usize);
        if process.spec.host.is_some() {
            why[g].declared.push(&process.name);
        } else if components.declared[root].is_some() {
            why[g].bound.push(&process.name);
        } else if let Some(edge) = joined[root] {
            why[g].joined.push(&process.name);
            if root == p {
                why[g].joined_edges.push(edges[edge as usize].id);
            }
        } else {
            why[g].defaulted.push(&process.name);
        }
    }
    for edge in edges
        .iter()
        .filter(|e| e.binds.is_some() && e.processes.len() > 1)
    {
        why[of_process[edge.processes[0]] as usize]
            .bound_edges
            .push(edge.id);
    }
    let reasons = names
        .iter()
        .zip(why)
        .map(|(name, why)| why.text(name))
        .collect();
    (of_process, reasons)
}

/// What a declared group's reason says.
#[derive(Default)]
struct DeclaredWhy {
    declared: Capped,
    bound: Capped,
    bound_edges: Capped,
    joined: Capped,
    joined_edges: Capped,
    defaulted: Capped,
}

impl DeclaredWhy {
    fn text(&self, name: &str) -> String {
        let mut parts = Vec::new();
        if !self.declared.is_empty() {
            parts.push(format!("`host = \"{name}\"` on {}", self.declared));
        }
        if !self.bound_edges.is_empty() {
            parts.push(format!(
                "host-local edge(s) {} keep their ends here",
                self.bound_edges
            ));
        }
        if !self.bound.is_empty() {
            parts.push(format!(
                "{} (no `host` key) bound here by host-local edges",
                self.bound
            ));
        }
        if !self.joined.is_empty() {
            parts.push(format!(
                "{} (no `host` key) joined over network edge(s) {} to a process of the group",
                self.joined, self.joined_edges
            ));
        }
        if !self.defaulted.is_empty() {
            parts.push(format!(
                "{} (no `host` key, no edge to a placed process) in the first group",
                self.defaulted
            ));
        }
        parts.join("; ")
    }
}

/// What a component or group needs: declared cpus, memory, instances.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Weight {
    cpus: f64,
    memory: u64,
    count: u64,
}

impl Weight {
    fn add(&mut self, other: Weight) {
        self.cpus += other.cpus;
        self.memory = self.memory.saturating_add(other.memory);
        self.count += other.count;
    }

    /// Heavier first: cpus, then memory, then instances.
    fn heavier(&self, other: &Weight) -> std::cmp::Ordering {
        other
            .cpus
            .total_cmp(&self.cpus)
            .then(other.memory.cmp(&self.memory))
            .then(other.count.cmp(&self.count))
    }

    /// Whether `item` fits beside `self` under `cap`, in every dimension
    /// the item needs.
    fn fits(&self, item: &Weight, cap: &Weight) -> bool {
        (item.cpus == 0.0 || self.cpus + item.cpus <= cap.cpus * (1.0 + 1e-9))
            && (item.memory == 0 || self.memory.saturating_add(item.memory) <= cap.memory)
            && (item.count == 0 || self.count + item.count <= cap.count)
    }
}

/// A process's weight: its declared `cpus` and `memory` times its
/// instances.
fn weight(process: &ProcessDecl) -> Weight {
    let instances = process.instances.len() as u64;
    Weight {
        cpus: process.spec.cpus.as_ref().map_or(0.0, |c| *c.get_ref()) * instances as f64,
        memory: process
            .spec
            .memory
            .as_ref()
            .map_or(0, |m| m.get_ref().0.saturating_mul(instances)),
        count: instances,
    }
}

/// `--hosts N`: each component its own group when there are at most N,
/// else the components packed into N groups, first fit decreasing (by cpus, then memory, then instances; ties in order of
/// appearance) under a capacity of 1/N of the total in each dimension,
/// the least loaded group when none fits. Groups are numbered `host-1`,
/// `host-2`, … in order of their first process.
fn partition(
    components: &mut Components,
    edges: &[EdgeEnds<'_>],
    processes: &[ProcessDecl],
    hosts: u32,
    sink: &mut Sink,
) -> (Vec<Arc<str>>, Vec<u32>, Vec<String>) {
    let roots = roots(components);
    let mut component_of = vec![u32::MAX; roots.len()];
    let mut weights: Vec<Weight> = Vec::new();
    for (p, &root) in roots.iter().enumerate() {
        let c = &mut component_of[root as usize];
        if *c == u32::MAX {
            *c = weights.len() as u32;
            weights.push(Weight::default());
        }
        weights[*c as usize].add(weight(&processes[p]));
    }
    let bins = (hosts as usize).min(weights.len()).max(1);
    // With a group for each component there is nothing to pack.
    let bin_of = if weights.len() <= hosts as usize {
        (0..weights.len() as u32).collect()
    } else {
        pack(&weights, bins)
    };
    let mut number = vec![u32::MAX; bins];
    let mut used = 0u32;
    let mut of_process = Vec::with_capacity(roots.len());
    for &root in &roots {
        let bin = bin_of[component_of[root as usize] as usize] as usize;
        if number[bin] == u32::MAX {
            number[bin] = used;
            used += 1;
        }
        of_process.push(number[bin]);
    }
    if used < hosts {
        sink.push(
            Diagnostic::warning(
                "W0501",
                format!("`--hosts {hosts}` asked for {hosts} groups; the topology makes {used}"),
            )
            .with_note(format!(
                "{} component(s) of processes joined by host-local edges, each kept on one host",
                weights.len()
            )),
        );
    }
    let names = (1..=used).map(|k| Arc::from(format!("host-{k}"))).collect();
    let mut counts = vec![0usize; used as usize];
    for &bin in &bin_of {
        counts[number[bin as usize] as usize] += 1;
    }
    let mut bound: Vec<Capped> = (0..used).map(|_| Capped::default()).collect();
    for edge in edges
        .iter()
        .filter(|e| e.binds.is_some() && e.processes.len() > 1)
    {
        bound[of_process[edge.processes[0]] as usize].push(edge.id);
    }
    let reasons = counts
        .iter()
        .zip(bound)
        .map(|(count, bound)| {
            let mut reason = format!("`--hosts {hosts}`: {count} component(s) packed first fit decreasing by declared cpus, then memory, then process count");
            if !bound.is_empty() {
                let _ = write!(reason, "; host-local edge(s) {bound} keep their ends together");
            }
            reason
        })
        .collect();
    (names, of_process, reasons)
}

/// First fit decreasing of `weights` into `bins` bins: each weight's bin.
fn pack(weights: &[Weight], bins: usize) -> Vec<u32> {
    let mut total = Weight::default();
    for w in weights {
        total.add(*w);
    }
    let cap = Weight {
        cpus: total.cpus / bins as f64,
        memory: total.memory.div_ceil(bins as u64),
        count: total.count.div_ceil(bins as u64),
    };
    let mut order: Vec<u32> = (0..weights.len() as u32).collect();
    order.sort_by(|&a, &b| weights[a as usize].heavier(&weights[b as usize]));
    let mut loads = vec![Weight::default(); bins];
    let mut bin_of = vec![0u32; weights.len()];
    // Bins before `open` are full in instances: a weight of at least one
    // instance fits none of them.
    let mut open = 0;
    for k in order {
        let w = &weights[k as usize];
        let bin = (open..bins)
            .find(|&b| loads[b].fits(w, &cap))
            .unwrap_or_else(|| {
                (0..bins)
                    .min_by(|&a, &b| loads[b].heavier(&loads[a]))
                    .unwrap_or(0)
            });
        loads[bin].add(*w);
        bin_of[k as usize] = bin as u32;
        while open < bins && loads[open].count >= cap.count {
            open += 1;
        }
    }
    bin_of
}

/// A channel whose ends are in more than one group.
#[derive(Debug, Clone)]
pub(crate) struct Crossing {
    listener: u32,
    clients: Vec<u32>,
    port: u16,
}

impl Groups {
    /// The group names as a list, for messages.
    fn list(&self, groups: impl IntoIterator<Item = u32>) -> String {
        let names: Vec<String> = groups
            .into_iter()
            .map(|g| format!("`{}`", self.names[g as usize]))
            .collect();
        names.join(", ")
    }

    /// Whether a channel's process ends (`from`, `to`: process indexes)
    /// are in more than one group, with its listener group and port: `None`
    /// when they are in one. A channel whose readers are in two groups, or
    /// whose port is taken, is an error (`Err`, reported to `sink`).
    pub(crate) fn crossing(
        &mut self,
        id: &str,
        spec: Option<&EdgeSpec>,
        span: &Span,
        from: impl Iterator<Item = usize>,
        to: impl Iterator<Item = usize> + Clone,
        sink: &mut Sink,
    ) -> Result<Option<Crossing>, ()> {
        // Nothing is collected for the usual channel, all in one group.
        let mut groups = to.clone().map(|p| self.of_process[p]);
        let Some(listener) = groups.next() else {
            return Ok(None);
        };
        if groups.any(|g| g != listener) {
            let mut readers: Vec<u32> = to.map(|p| self.of_process[p]).collect();
            readers.sort_unstable();
            readers.dedup();
            sink.push(
                Diagnostic::error("E0508", format!("edge `{id}` has readers in groups {}: an edge between groups is one TCP listener, in one group", self.list(readers)))
                    .with_label(Label::primary(span.clone(), "readers on more than one host"))
                    .with_help("split it into one edge per group of readers"),
            );
            return Err(());
        }
        let mut clients: Vec<u32> = Vec::new();
        for p in from {
            let g = self.of_process[p];
            if g != listener && !clients.contains(&g) {
                clients.push(g);
            }
        }
        if clients.is_empty() {
            return Ok(None);
        }
        let port = self.port_for(id, spec, span, sink)?;
        Ok(Some(Crossing {
            listener,
            clients,
            port,
        }))
    }

    /// The edge's declared port, else the next free one from
    /// `--base-port`; E0506 when a port is taken twice or none is left.
    fn port_for(
        &mut self,
        id: &str,
        spec: Option<&EdgeSpec>,
        span: &Span,
        sink: &mut Sink,
    ) -> Result<u16, ()> {
        let written = spec.and_then(|s| s.address.as_ref());
        let declared = written
            .and_then(|a| a.get_ref().parse::<std::net::SocketAddr>().ok())
            .map(|a| a.port())
            .filter(|&port| port != 0);
        let port = match declared {
            Some(port) => port,
            None => {
                loop {
                    let Ok(port) = u16::try_from(self.next_port) else {
                        sink.push(
                        Diagnostic::error("E0506", format!("no port is left for edge `{id}` between groups"))
                            .with_label(Label::primary(span.clone(), "needs a port"))
                            .with_help("give `--base-port` a lower port, or the edge an `address` with a port"),
                    );
                        return Err(());
                    };
                    self.next_port += 1;
                    if !self.declared_ports.contains(&port) && !self.taken.contains_key(&port) {
                        break port;
                    }
                }
            }
        };
        let at = written.map(Spanned::span);
        if let Some((other, other_at)) = self.taken.get(&port) {
            let mut diagnostic = Diagnostic::error(
                "E0506",
                format!("edges `{other}` and `{id}` between groups both listen on port {port}"),
            )
            .with_label(Label::primary(
                at.unwrap_or(span.clone()),
                format!("`{id}` on port {port}"),
            ));
            if let Some(other_at) = other_at {
                diagnostic = diagnostic.with_label(Label::secondary(
                    other_at.clone(),
                    format!("`{other}` on port {port}"),
                ));
            }
            sink.push(diagnostic.with_help("each listener between groups has its own port: change one `address`, or leave its port to the planner (`:0`)"));
            return Err(());
        }
        self.taken.insert(port, (id.to_owned(), at));
        Ok(port)
    }

    /// The mechanism of an edge between groups: `auto` picks TCP, or rpc
    /// over TCP for a request edge with a protocol; `tcp` and `rpc` named
    /// in the file are kept (nothing else reaches here: every other
    /// mechanism binds its ends into one group).
    pub(crate) fn pick(
        &self,
        crossing: &Crossing,
        spec: Option<&EdgeSpec>,
        traffic: Traffic,
    ) -> (Kind, Reason, super::model::Choice) {
        use super::model::Choice;
        let listener = &self.names[crossing.listener as usize];
        let ends = format!(
            "ends in groups `{listener}` and {}",
            self.list(crossing.clients.iter().copied())
        );
        let port = crossing.port;
        let named = spec
            .and_then(|s| s.mechanism.as_ref())
            .and_then(|m| m.get_ref().kind());
        if let Some(kind) = named {
            let reason = format!(
                "named in the topology; {ends}: it listens on 0.0.0.0:{port} in `{listener}`"
            );
            return (kind, reason.into(), Choice::Explicit);
        }
        if spec.is_some_and(|s| s.protocol.is_some()) {
            let reason = format!(
                "{ends}: kernel IPC stays within a host, so the rpc server listens over TCP on 0.0.0.0:{port} in `{listener}`, the protocol unchanged"
            );
            return (Kind::Rpc, reason.into(), Choice::Auto);
        }
        let framing = if traffic == Traffic::Messages {
            "; TCP is a byte stream, so the programs delimit their messages"
        } else {
            ""
        };
        let reason = format!(
            "{ends}: kernel IPC stays within a host, so a TCP listener on 0.0.0.0:{port} in `{listener}`{framing}"
        );
        (Kind::Tcp, reason.into(), Choice::Auto)
    }

    /// Makes a planned channel reachable from other hosts: its listener on
    /// `0.0.0.0:PORT` (rpc over TCP, without its socket file), and records
    /// the cross edge.
    pub(crate) fn open(
        &mut self,
        id: &str,
        crossing: Crossing,
        mechanism: &mut Mechanism,
        objects: &mut Vec<super::model::NamedObject>,
    ) {
        let address = format!("0.0.0.0:{}", crossing.port);
        match mechanism {
            Mechanism::Tcp(tcp) => tcp.bind = address,
            Mechanism::Rpc(rpc) => {
                rpc.transport = Transport::Tcp;
                rpc.address = address;
                objects.retain(|o| o.kind != super::model::ObjectKind::UnixSocket);
            }
            _ => {}
        }
        let listener = Arc::clone(&self.names[crossing.listener as usize]);
        let clients: Vec<Arc<str>> = crossing
            .clients
            .iter()
            .map(|&g| Arc::clone(&self.names[g as usize]))
            .collect();
        let discovery = format!(
            "the ipc-run of {} is told the host of group `{listener}` with `--peer {listener}=HOST` and connects to HOST:{}; engines give HOST: Slurm a node of the job, Kubernetes the Service's name, systemd on one server 127.0.0.1",
            if clients.len() == 1 {
                format!("group `{}`", clients[0])
            } else {
                format!("groups {}", self.list(crossing.clients.iter().copied()))
            },
            crossing.port
        );
        self.cross.push(CrossEdgePlan {
            channel: id.into(),
            listener_group: listener,
            client_groups: clients,
            port: crossing.port,
            discovery,
        });
    }

    /// Writes the placement into the plan: each instance's `host`, and
    /// the groups with their processes, needs and shared memory, in order.
    /// `processes` are the planner's declarations, whose instances name
    /// the plan's; an instance ipc-run added (an MPI world's launcher) is
    /// in the group of its channel's processes.
    pub(crate) fn finish(self, plan: &mut Plan, processes: &[ProcessDecl]) {
        let mut group_of: HashMap<&str, u32> = HashMap::with_capacity(plan.processes.len());
        for (p, process) in processes.iter().enumerate() {
            for instance in &process.instances {
                group_of.insert(instance, self.of_process[p]);
            }
        }
        let channel_group = |channel: &super::model::ChannelPlan| -> Option<u32> {
            channel
                .from()
                .iter()
                .chain(channel.to())
                .find_map(|e| match e {
                    EndpointPlan::Port { process, .. } => group_of.get(process.as_ref()).copied(),
                    _ => None,
                })
        };
        let by_id = |id: &str| plan.channels.iter().find(|c| *c.id == *id);
        let hosts: Vec<u32> = plan
            .processes
            .iter()
            .map(|p| {
                group_of
                    .get(p.name.as_ref())
                    .copied()
                    .or_else(|| {
                        p.managed
                            .as_ref()
                            .and_then(|m| channel_group(by_id(&m.channel)?))
                    })
                    .unwrap_or(0)
            })
            .collect();
        let mut groups: Vec<HostGroupPlan> = self
            .names
            .iter()
            .zip(self.reasons)
            .map(|(name, reason)| HostGroupPlan {
                name: Arc::clone(name),
                processes: Vec::new(),
                reason,
                cpus: None,
                memory: None,
                shm_bytes: 0,
            })
            .collect();
        for (p, process) in processes.iter().enumerate() {
            let group = &mut groups[self.of_process[p] as usize];
            let w = weight(process);
            if process.spec.cpus.is_some() {
                *group.cpus.get_or_insert(0.0) += w.cpus;
            }
            if process.spec.memory.is_some() {
                let memory = group.memory.get_or_insert(0);
                *memory = memory.saturating_add(w.memory);
            }
        }
        for channel in &plan.channels {
            let size = match &channel.mechanism {
                Mechanism::PosixShm(shm) => shm.size,
                Mechanism::SysvShm(shm) => shm.size,
                _ => continue,
            };
            if let Some(g) = channel_group(channel) {
                let shm = &mut groups[g as usize].shm_bytes;
                *shm = shm.saturating_add(size);
            }
        }
        for (process, &g) in plan.processes.iter_mut().zip(&hosts) {
            process.host = Arc::clone(&self.names[g as usize]);
            groups[g as usize].processes.push(Arc::clone(&process.name));
        }
        plan.placement = Some(PlacementPlan {
            source: self.source,
            groups,
            cross_edges: self.cross,
        });
    }
}

/// E0803 with where in the plan.
fn inconsistent(message: String, at: String) -> Diagnostic {
    Diagnostic::error("E0803", message).with_note(format!("at {at}"))
}

/// Checks a plan's placement read back from JSON: every process is in one
/// group that exists and lists it, every channel whose ends are in two
/// groups is a cross edge over TCP, and ports are not shared.
pub(crate) fn check_imported(plan: &Plan, sink: &mut Sink) {
    let Some(placement) = &plan.placement else {
        for (i, process) in plan.processes.iter().enumerate() {
            if &*process.host != LOCAL_GROUP {
                let message = format!(
                    "`{}` runs in group `{}`, but the plan has no placement",
                    process.name, process.host
                );
                sink.push(inconsistent(message, format!("processes[{i}].host")));
            }
        }
        return;
    };
    let mut groups = HashMap::new();
    for (g, group) in placement.groups.iter().enumerate() {
        if let Err(why) = crate::topology::check_name(&group.name) {
            let message = format!("group name `{}` is not a valid name: {why}", group.name);
            sink.push(inconsistent(message, format!("placement.groups[{g}].name")));
        }
        if groups.insert(group.name.as_ref(), g).is_some() {
            let message = format!("two groups are named `{}`", group.name);
            sink.push(inconsistent(message, format!("placement.groups[{g}]")));
        }
    }
    check_members(plan, &groups, sink);
    check_cross_edges(plan, &groups, sink);
}

/// Each process is listed by the group its `host` names, and by no other.
fn check_members(plan: &Plan, groups: &HashMap<&str, usize>, sink: &mut Sink) {
    let Some(placement) = &plan.placement else {
        return;
    };
    let mut listed: HashMap<&str, &str> = HashMap::new();
    for (g, group) in placement.groups.iter().enumerate() {
        for name in &group.processes {
            if listed.insert(name.as_ref(), group.name.as_ref()).is_some() {
                let message = format!("`{name}` is listed by two groups");
                sink.push(inconsistent(
                    message,
                    format!("placement.groups[{g}].processes"),
                ));
            }
        }
    }
    for (i, process) in plan.processes.iter().enumerate() {
        let at = format!("processes[{i}].host");
        if !groups.contains_key(process.host.as_ref()) {
            let message = format!(
                "`{}` runs in group `{}`, which the placement does not have",
                process.name, process.host
            );
            sink.push(inconsistent(message, at));
        } else if listed.remove(process.name.as_ref()) != Some(process.host.as_ref()) {
            let message = format!(
                "`{}` runs in group `{}`, which does not list it",
                process.name, process.host
            );
            sink.push(inconsistent(message, at));
        }
    }
    if let Some(name) = listed.keys().min() {
        let message = format!("a group lists `{name}`, which is not a process");
        sink.push(inconsistent(message, "placement.groups".into()));
    }
}

/// Cross edges are exactly the channels with ends in two groups; each is
/// a TCP listener in its listener group, on a port of its own.
fn check_cross_edges(plan: &Plan, groups: &HashMap<&str, usize>, sink: &mut Sink) {
    let Some(placement) = &plan.placement else {
        return;
    };
    let host_of: HashMap<&str, &str> = plan
        .processes
        .iter()
        .map(|p| (p.name.as_ref(), p.host.as_ref()))
        .collect();
    let mut crossing: HashMap<&str, usize> = HashMap::new();
    for (c, channel) in plan.channels.iter().enumerate() {
        let mut seen: HashSet<&str> = HashSet::new();
        for end in channel.ends() {
            if let EndpointPlan::Port { process, .. } = end {
                seen.extend(host_of.get(process.as_ref()).copied());
            }
        }
        if seen.len() > 1 {
            crossing.insert(channel.id.as_ref(), c);
        }
    }
    let mut ports = HashMap::new();
    for (k, edge) in placement.cross_edges.iter().enumerate() {
        let at = format!("placement.cross_edges[{k}]");
        let named = [&edge.listener_group]
            .into_iter()
            .chain(&edge.client_groups);
        for group in named {
            if !groups.contains_key(group.as_ref()) {
                let message = format!(
                    "cross edge `{}` names group `{group}`, which the placement does not have",
                    edge.channel
                );
                sink.push(inconsistent(message, at.clone()));
            }
        }
        if edge.port == 0 {
            let message = format!("cross edge `{}` has port 0", edge.channel);
            sink.push(inconsistent(message, at.clone()));
        } else if let Some(first) = ports.insert(edge.port, edge.channel.as_ref()) {
            let message = format!(
                "cross edges `{first}` and `{}` both use port {}",
                edge.channel, edge.port
            );
            sink.push(inconsistent(message, at.clone()));
        }
        let Some(c) = crossing.remove(edge.channel.as_ref()) else {
            let message = format!(
                "cross edge `{}` is not a channel with ends in two groups",
                edge.channel
            );
            sink.push(inconsistent(message, at));
            continue;
        };
        let mechanism = &plan.channels[c].mechanism;
        let networked = matches!(mechanism, Mechanism::Tcp { .. })
            || matches!(mechanism, Mechanism::Rpc(rpc) if rpc.transport == Transport::Tcp);
        if !networked {
            let message = format!(
                "cross edge `{}` is a {} channel, which does not reach another host",
                edge.channel,
                mechanism.name()
            );
            sink.push(inconsistent(message, at));
        }
    }
    if let Some(id) = crossing.keys().min() {
        let message = format!("channel `{id}` has ends in two groups but is not a cross edge");
        sink.push(inconsistent(message, "placement.cross_edges".into()));
    }
}
