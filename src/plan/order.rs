//! Fourth pass: start and stop order, and the three kinds of cycle.
//!
//! 1. Start-order cycles (`after`, plus "a signal's receiver starts before
//!    its sender", since the sender is handed the receiver's pid) are errors,
//!    reported as a whole path `a -> b -> c -> a` found with `tarjan_scc`.
//! 2. Data cycles whose channels all block when full (pipes, FIFOs, queues)
//!    are allowed but analysed: the cycle's buffer capacity is compared with
//!    the bytes its edges declare in flight.
//! 3. Data cycles through a socket, shared memory or a signal are harmless
//!    (the processes' own protocol governs them) and only listed.
//!
//! A FIFO handed over as a path is opened by the processes themselves; an
//! open blocks until the other side opens too, so two processes that open
//! their FIFOs in crossing orders deadlock before exchanging a byte. That is
//! simulated here and rejected.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::edges::{ChannelDecl, PortEnd};
use super::model::{CycleVerdict, DataCycle, Deliver, End, Mechanism};
use super::processes::ProcessDecl;
use super::{Sink, Span};
use crate::diagnostic::{Diagnostic, Label};

/// The orders and cycles of a plan.
pub struct Ordering {
    /// Instances in start order.
    pub start_order: Vec<Arc<str>>,
    /// Instances in stop order.
    pub stop_order: Vec<Arc<str>>,
    /// Data cycles with verdicts.
    pub cycles: Vec<DataCycle>,
}

/// Why process `b` starts after `a`.
#[derive(Clone)]
struct Dependency {
    span: Span,
    why: String,
}

/// Computes orders and cycles; pushes errors for start-order cycles and
/// FIFO open-order deadlocks, warnings for risky data cycles.
pub fn analyse(processes: &[ProcessDecl], channels: &[ChannelDecl], sink: &mut Sink) -> Ordering {
    let start = start_graph(processes, channels);
    let cyclic = report_start_cycles(&start, processes, sink);
    check_fifo_open_order(processes, channels, sink);
    let cycles = data_cycles(processes, channels, sink);
    if cyclic {
        return Ordering {
            start_order: Vec::new(),
            stop_order: Vec::new(),
            cycles,
        };
    }
    let start_order = start_order(&start, processes);
    let stop_order = start_order.iter().rev().cloned().collect();
    Ordering {
        start_order,
        stop_order,
        cycles,
    }
}

/// Start graph: edge a -> b means a must start (and be ready) before b.
/// Node i is process i.
fn start_graph(processes: &[ProcessDecl], channels: &[ChannelDecl]) -> DiGraph<usize, Dependency> {
    let mut start: DiGraph<usize, Dependency> = DiGraph::with_capacity(processes.len(), 0);
    let nodes: Vec<NodeIndex> = (0..processes.len()).map(|i| start.add_node(i)).collect();
    for (b, process) in processes.iter().enumerate() {
        // Every name in `after` is a process here (checked by the first pass).
        // Each name resolved to the process of that name.
        for (after, &a) in process.spec.after().iter().zip(process.after()) {
            start.add_edge(
                nodes[a],
                nodes[b],
                Dependency {
                    span: after.clone(),
                    why: format!(
                        "`{}` waits for `{}` (after)",
                        process.name, processes[a].name
                    ),
                },
            );
        }
    }
    for channel in channels {
        let Mechanism::Signal(params) = &channel.plan.mechanism else {
            continue;
        };
        let signal = &params.signal;
        // By name, the order the dependencies are reported in.
        let senders = processes_by_name(processes, channel, |end| end == End::Send);
        let receivers = processes_by_name(processes, channel, |end| end == End::Receive);
        for &receiver in &receivers {
            for &sender in senders.iter().filter(|&&sender| sender != receiver) {
                start.add_edge(
                    nodes[receiver],
                    nodes[sender],
                    Dependency {
                        span: channel.span.clone(),
                        why: format!(
                            "`{}` needs the pid of `{}` ({} edge `{}`)",
                            processes[sender].name,
                            processes[receiver].name,
                            signal.name,
                            channel.plan.id
                        ),
                    },
                );
            }
        }
    }
    start
}

/// E0401 for each start-order cycle; whether there was one.
fn report_start_cycles(
    start: &DiGraph<usize, Dependency>,
    processes: &[ProcessDecl],
    sink: &mut Sink,
) -> bool {
    let mut cyclic = false;
    for component in tarjan_scc(start) {
        let self_loop = component.len() == 1 && start.contains_edge(component[0], component[0]);
        if component.len() < 2 && !self_loop {
            continue;
        }
        cyclic = true;
        let members: BTreeSet<NodeIndex> = component.iter().copied().collect();
        let first = *members
            .iter()
            .min_by_key(|n| start[**n])
            .expect("non-empty component");
        let path = shortest_cycle(start, first, &members);
        let names: Vec<&str> = path
            .iter()
            .map(|n| processes[start[*n]].name.as_ref())
            .collect();
        let mut diagnostic = Diagnostic::error(
            "E0401",
            format!("start-order cycle: {} -> {}", names.join(" -> "), names[0]),
        )
        .with_help(
            "remove one `after`, or turn a signal edge around, so some process can start first",
        );
        for (i, pair) in path.iter().zip(path.iter().cycle().skip(1)).enumerate() {
            if let Some(edge) = start.find_edge(*pair.0, *pair.1) {
                let dependency = &start[edge];
                diagnostic = diagnostic.with_label(if i == 0 {
                    Label::primary(dependency.span.clone(), dependency.why.clone())
                } else {
                    Label::secondary(dependency.span.clone(), dependency.why.clone())
                });
            }
        }
        sink.push(diagnostic);
    }
    cyclic
}

/// Kahn's algorithm, always taking the earliest-declared ready process so
/// the order is deterministic and close to the file's; instances of a
/// process start together.
fn start_order(start: &DiGraph<usize, Dependency>, processes: &[ProcessDecl]) -> Vec<Arc<str>> {
    let mut indegree: Vec<usize> = start
        .node_indices()
        .map(|n| {
            start
                .neighbors_directed(n, petgraph::Direction::Incoming)
                .count()
        })
        .collect();
    let mut ready: BTreeSet<usize> = (0..processes.len()).filter(|i| indegree[*i] == 0).collect();
    // Made at its size: the order is part of the plan, held to its end.
    let mut order = Vec::with_capacity(processes.iter().map(|p| p.instances.len()).sum());
    while let Some(next) = ready.pop_first() {
        order.extend(processes[next].instances.iter().cloned());
        let node = NodeIndex::new(next);
        for neighbour in start.neighbors_directed(node, petgraph::Direction::Outgoing) {
            let i = start[neighbour];
            indegree[i] -= 1;
            if indegree[i] == 0 {
                ready.insert(i);
            }
        }
    }
    order
}

/// The shortest cycle through `first` inside one strongly connected component
/// (also used on a read-back plan's start graph, `import.rs`).
pub(super) fn shortest_cycle<E>(
    graph: &DiGraph<usize, E>,
    first: NodeIndex,
    members: &BTreeSet<NodeIndex>,
) -> Vec<NodeIndex> {
    let mut previous: BTreeMap<NodeIndex, NodeIndex> = BTreeMap::new();
    let mut queue = VecDeque::from([first]);
    while let Some(node) = queue.pop_front() {
        let mut neighbours: Vec<NodeIndex> = graph
            .neighbors(node)
            .filter(|n| members.contains(n))
            .collect();
        neighbours.sort_by_key(|n| graph[*n]);
        for next in neighbours {
            if next == first {
                let mut path = vec![node];
                let mut cursor = node;
                while cursor != first {
                    cursor = previous[&cursor];
                    path.push(cursor);
                }
                path.reverse();
                return path;
            }
            if let std::collections::btree_map::Entry::Vacant(entry) = previous.entry(next) {
                entry.insert(node);
                queue.push_back(next);
            }
        }
    }
    vec![first]
}

/// Finds data cycles between processes and judges each.
///
/// Each strongly connected group of processes is listed with one cycle (the
/// shortest through its earliest process). That cycle may pass through a
/// socket and be harmless while other cycles of the group are all pipes, so
/// the groups joined by blocking channels alone are judged too: every one
/// not already judged through an all-blocking cycle above gets its own
/// cycle and verdict, and so its own W0301 when it risks a deadlock.
fn data_cycles(
    processes: &[ProcessDecl],
    channels: &[ChannelDecl],
    sink: &mut Sink,
) -> Vec<DataCycle> {
    let graph = data_graph(processes, channels, |_| true);
    let mut cycles = Vec::new();
    for component in cyclic_components(&graph) {
        cycles.push(judge_cycle(&graph, &component, processes, channels, sink));
    }
    // Done with: the blocking channels' graph is built in its place, not
    // beside it (each is a node per process and an edge per channel).
    drop(graph);
    let blocking = data_graph(processes, channels, |channel| channel.plan.blocking);
    for component in cyclic_components(&blocking) {
        let members: BTreeSet<&str> = component
            .iter()
            .map(|n| processes[blocking[*n]].name.as_ref())
            .collect();
        let judged = cycles.iter().any(|cycle| {
            cycle.capacity.is_some() && cycle.path.iter().all(|p| members.contains(p.as_str()))
        });
        if !judged {
            cycles.push(judge_cycle(
                &blocking, &component, processes, channels, sink,
            ));
        }
    }
    cycles
}

/// The strongly connected components of `graph` that hold a cycle (two
/// processes or more, or one writing to itself), ordered by their earliest
/// process.
fn cyclic_components(graph: &DiGraph<usize, usize>) -> Vec<Vec<NodeIndex>> {
    let mut components: Vec<Vec<NodeIndex>> = tarjan_scc(graph)
        .into_iter()
        .filter(|c| c.len() > 1 || graph.contains_edge(c[0], c[0]))
        .collect();
    components.sort_by_key(|c| c.iter().map(|n| graph[*n]).min());
    components
}

/// The shortest cycle through the earliest process of `component`, with its
/// verdict; W0301 when it risks a deadlock.
fn judge_cycle(
    graph: &DiGraph<usize, usize>,
    component: &[NodeIndex],
    processes: &[ProcessDecl],
    channels: &[ChannelDecl],
    sink: &mut Sink,
) -> DataCycle {
    let members: BTreeSet<NodeIndex> = component.iter().copied().collect();
    let first = *members
        .iter()
        .min_by_key(|n| graph[**n])
        .expect("non-empty component");
    let path = shortest_cycle(graph, first, &members);
    let hops: Vec<usize> = path
        .iter()
        .zip(path.iter().cycle().skip(1))
        .filter_map(|(a, b)| graph.find_edge(*a, *b).map(|e| graph[e]))
        .collect();
    let mut names: Vec<String> = path
        .iter()
        .map(|n| processes[graph[*n]].name.to_string())
        .collect();
    names.push(names[0].clone());
    let all_blocking = hops.iter().all(|&c| channels[c].plan.blocking);
    let capacity: u64 = hops
        .iter()
        .filter_map(|&c| channels[c].plan.capacity())
        .sum();
    let in_flight: Option<u64> = hops.iter().map(|&c| channels[c].plan.in_flight()).sum();
    let verdict = if !all_blocking {
        CycleVerdict::Harmless
    } else if in_flight.is_some_and(|bytes| bytes < capacity) {
        CycleVerdict::BoundedFits
    } else {
        CycleVerdict::DeadlockRisk
    };
    if verdict == CycleVerdict::DeadlockRisk {
        sink.push(deadlock_warning(
            &names, &hops, channels, capacity, in_flight,
        ));
    }
    DataCycle {
        path: names,
        channels: hops
            .iter()
            .map(|&c| channels[c].plan.id.to_string())
            .collect(),
        verdict,
        capacity: all_blocking.then_some(capacity),
        in_flight,
    }
}

/// The data graph over the channels that pass `keep`: edge w -> r (weighted
/// by a channel index) when process w writes to process r. Node i is
/// process i.
fn data_graph(
    processes: &[ProcessDecl],
    channels: &[ChannelDecl],
    keep: impl Fn(&ChannelDecl) -> bool,
) -> DiGraph<usize, usize> {
    let mut graph: DiGraph<usize, usize> = DiGraph::with_capacity(processes.len(), channels.len());
    let nodes: Vec<NodeIndex> = (0..processes.len()).map(|i| graph.add_node(i)).collect();
    // Process pairs already joined; the first channel between two processes
    // stands for all of them.
    let mut seen: HashSet<(usize, usize)> = HashSet::with_capacity(channels.len());
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for (c, channel) in channels.iter().enumerate() {
        if !keep(channel) {
            continue;
        }
        writers.clear();
        readers.clear();
        for port in &channel.ports {
            match port.end {
                End::Write | End::Connect | End::Send => writers.push(port.process()),
                End::Read | End::Listen | End::Receive => readers.push(port.process()),
                End::Both => {}
            }
        }
        for list in [&mut writers, &mut readers] {
            list.sort_unstable();
            list.dedup();
        }
        for &w in &writers {
            for &r in &readers {
                if seen.insert((w, r)) {
                    graph.add_edge(nodes[w], nodes[r], c);
                }
            }
        }
    }
    graph
}

/// W0301 for a cycle of blocking channels (`hops`) whose bytes in flight
/// are unknown or do not fit.
fn deadlock_warning(
    names: &[String],
    hops: &[usize],
    channels: &[ChannelDecl],
    capacity: u64,
    in_flight: Option<u64>,
) -> Diagnostic {
    let per_channel: Vec<String> = hops
        .iter()
        .map(|&c| {
            let channel = &channels[c].plan;
            format!(
                "{} ({}) {} bytes",
                channel.id,
                channel.mechanism.name(),
                channel.capacity().unwrap_or(0)
            )
        })
        .collect();
    let flight = match in_flight {
        Some(bytes) => format!(
            "the edges declare {bytes} bytes in flight, at least the {capacity} bytes the cycle can buffer"
        ),
        None => {
            let missing: Vec<&str> = hops
                .iter()
                .filter(|&&c| channels[c].plan.in_flight().is_none())
                .map(|&c| channels[c].plan.id.as_ref())
                .collect();
            format!(
                "bytes in flight are not declared on {}, so they may exceed the {capacity} bytes the cycle can buffer",
                missing.join(", ")
            )
        }
    };
    let mut diagnostic = Diagnostic::warning("W0301", format!("deadlock risk: data cycle {} over blocking channels", names.join(" -> ")))
        .with_note(format!("the cycle buffers {capacity} bytes: {}", per_channel.join(", ")))
        .with_note(flight)
        .with_help("declare `in_flight` on each edge of the cycle below its capacity, or break the cycle with a socket");
    for (i, &c) in hops.iter().enumerate() {
        let label = format!(
            "`{}` blocks when {} bytes are buffered",
            channels[c].plan.id,
            channels[c].plan.capacity().unwrap_or(0)
        );
        diagnostic = diagnostic.with_label(if i == 0 {
            Label::primary(channels[c].span.clone(), label)
        } else {
            Label::secondary(channels[c].span.clone(), label)
        });
    }
    diagnostic
}

/// Whether a channel is a FIFO its processes open by path.
fn is_path_fifo(channel: &ChannelDecl) -> bool {
    matches!(&channel.plan.mechanism, Mechanism::Fifo(fifo) if fifo.deliver == Deliver::Path)
}

/// The instance holding a channel end.
fn instance_of<'p>(processes: &'p [ProcessDecl], port: &PortEnd) -> &'p str {
    processes[port.process()].instances[port.replica()].as_ref()
}

/// Simulates the opens of path-delivered FIFOs. Each instance opens its FIFO
/// ports in the order the process declares them under `[process.x.ports]`
/// (the order its program opens them), then any undeclared ones in the order
/// their edges appear in the file; an open completes when every process on
/// the FIFO has reached it.
fn check_fifo_open_order(processes: &[ProcessDecl], channels: &[ChannelDecl], sink: &mut Sink) {
    if !channels.iter().any(is_path_fifo) {
        return;
    }
    let mut queues = fifo_open_queues(processes, channels);
    // An @external peer is not simulated: it is assumed to open when asked,
    // so only the instances on a FIFO must have reached it.
    loop {
        let mut progressed = false;
        for (c, channel) in channels.iter().enumerate() {
            if !is_path_fifo(channel) {
                continue;
            }
            let participants: BTreeSet<&str> = channel
                .ports
                .iter()
                .map(|port| instance_of(processes, port))
                .collect();
            // A FIFO with only @external ends has nobody to simulate (and
            // would otherwise "progress" forever).
            if !participants.is_empty()
                && participants
                    .iter()
                    .all(|p| queues.get(p).and_then(|q| q.front()) == Some(&c))
            {
                for p in participants {
                    if let Some(queue) = queues.get_mut(p) {
                        queue.pop_front();
                    }
                }
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    let stuck: Vec<(&str, usize)> = queues
        .iter()
        .filter_map(|(instance, q)| q.front().map(|c| (*instance, *c)))
        .collect();
    if !stuck.is_empty() {
        sink.push(fifo_deadlock(&stuck, processes, channels));
    }
}

/// Each instance's path-delivered FIFOs (channel indices) in the order it
/// opens them.
fn fifo_open_queues<'p>(
    processes: &'p [ProcessDecl],
    channels: &[ChannelDecl],
) -> BTreeMap<&'p str, VecDeque<usize>> {
    // (instance) -> [(declaration position, channel)], sorted below.
    let mut opens: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for (c, channel) in channels.iter().enumerate() {
        if !is_path_fifo(channel) {
            continue;
        }
        for port in &channel.ports {
            let position = processes[port.process()]
                .ports()
                .get(&**channel.port(port))
                .map_or(usize::MAX, |d| d.span.start);
            opens
                .entry(instance_of(processes, port))
                .or_default()
                .push((position, c));
        }
    }
    opens
        .into_iter()
        .map(|(instance, mut list)| {
            list.sort();
            (instance, list.into_iter().map(|(_, c)| c).collect())
        })
        .collect()
}

/// E0501 for the instances `stuck` opening a FIFO (instance, channel).
fn fifo_deadlock(
    stuck: &[(&str, usize)],
    processes: &[ProcessDecl],
    channels: &[ChannelDecl],
) -> Diagnostic {
    let description: Vec<String> = stuck
        .iter()
        .map(|(instance, c)| format!("`{instance}` blocks opening `{}`", channels[*c].plan.id))
        .collect();
    let mut diagnostic = Diagnostic::error("E0501", format!("FIFO open-order deadlock: {}", description.join(", ")))
        .with_note("opening a FIFO blocks until its other end is opened; processes that open their FIFOs in crossing orders wait for each other forever")
        .with_help("declare the FIFO ports in the same order in every process (the order of `[process.x.ports]` is the order it opens them), or use `deliver = \"fd\"` so ipc-run opens them");
    let mut labelled = BTreeSet::new();
    for (i, (_, c)) in stuck.iter().enumerate() {
        if labelled.insert(*c) {
            let label = format!("FIFO `{}`", channels[*c].plan.id);
            diagnostic = diagnostic.with_label(if i == 0 {
                Label::primary(channels[*c].span.clone(), label)
            } else {
                Label::secondary(channels[*c].span.clone(), label)
            });
        }
    }
    // Point at the port declarations that set each blocked process's order.
    let mut shown = BTreeSet::new();
    for (blocked, c) in stuck {
        let channel = &channels[*c];
        let Some(end) = channel
            .ports
            .iter()
            .find(|p| instance_of(processes, p) == *blocked)
        else {
            continue;
        };
        let process = &processes[end.process()];
        let port_name: &str = channel.port(end);
        let Some(port) = process.ports().get(port_name) else {
            continue;
        };
        if shown.insert(port.span.start) {
            diagnostic = diagnostic.with_label(Label::secondary(
                port.span.clone(),
                format!("`{}` opens `{port_name}` first", process.name),
            ));
        }
    }
    diagnostic
}

/// The distinct processes holding an end of a channel that matches, sorted
/// by name.
fn processes_by_name(
    processes: &[ProcessDecl],
    channel: &ChannelDecl,
    matches: impl Fn(End) -> bool,
) -> Vec<usize> {
    let mut found: Vec<usize> = channel
        .ports
        .iter()
        .filter(|p| matches(p.end))
        .map(PortEnd::process)
        .collect();
    found.sort_unstable_by_key(|&p| processes[p].name.as_ref());
    found.dedup();
    found
}
