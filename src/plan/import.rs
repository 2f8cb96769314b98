//! Reading a JSON plan back, for `ipc-run run --plan`.
//!
//! A plan made elsewhere (another host, another `--limits`, a hand edit) is
//! trusted no more than a topology file. It is read strictly (unknown fields
//! and a foreign `format_version` are errors, `schemas/plan.schema.json`
//! describes the same shape), then checked for what the launcher relies on
//! (names it can find, fds it can install, an order naming every instance),
//! for what the planner refuses about order (a start-order cycle, an order
//! that starts an instance before what it waits for, notify readiness as
//! another user) and re-validated against this host's limits, with the planner's codes and
//! wording. Diagnostics carry no spans except for syntax errors: they say
//! where in the plan the problem is in a note instead.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Deserialize;

use super::model::{
    ChannelPlan, End, EndpointPlan, FdRole, Mechanism, NamedObject, ObjectKind,
    PLAN_FORMAT_VERSION, Plan, PortFd, ProcessPlan, RUN_DIR, Readiness,
};
use super::{Limits, MAX_INSTANCES, PlanError, Planned, Sink};
use crate::diagnostic::{Diagnostic, Label};
use crate::mechanism::host_limits::{run_dir_note, socket_path_len};

/// The warning codes a plan may record (`docs/topology.md`).
const WARNING_CODES: [&str; 6] = ["W0101", "W0201", "W0202", "W0301", "W0501", "W0701"];

/// Reads the JSON plan `text` and checks it against `limits`. The plan's
/// recorded limits become `limits`, which it was last validated against.
pub fn from_json(text: &str, limits: &Limits) -> Result<Planned, PlanError> {
    from_json_capped(text, limits, MAX_INSTANCES)
}

/// [`from_json`] with at most `max_instances` process instances
/// (`--max-processes`).
pub fn from_json_capped(
    text: &str,
    limits: &Limits,
    max_instances: usize,
) -> Result<Planned, PlanError> {
    let mut sink = Sink::default();
    let Some(mut plan) = parse(text, &mut sink) else {
        return Err(sink.into_error());
    };
    check_structure(&plan, max_instances, &mut sink);
    super::placement::check_imported(&plan, &mut sink);
    if sink.has_errors() {
        return Err(sink.into_error());
    }
    check_start(&plan, &mut sink);
    check_limits(&plan, limits, &mut sink);
    let warnings = recorded_warnings(&plan, &mut sink);
    if sink.has_errors() {
        return Err(sink.into_error());
    }
    plan.limits = limits.clone();
    Ok(Planned { plan, warnings })
}

/// The version alone, read first so that a plan of another format is
/// refused for its version, not for the fields it does not share.
#[derive(Deserialize)]
struct VersionOnly {
    format_version: Option<u32>,
}

fn parse(text: &str, sink: &mut Sink) -> Option<Plan> {
    let version = match serde_json::from_str::<VersionOnly>(text) {
        Ok(header) => header.format_version,
        Err(error) => {
            sink.push(syntax_error(text, &error));
            return None;
        }
    };
    if let Some(found) = version.filter(|&v| v != PLAN_FORMAT_VERSION) {
        sink.push(
            Diagnostic::error(
                "E0802",
                format!("the plan has format_version {found}; this ipc-run reads format {PLAN_FORMAT_VERSION}"),
            )
            .with_help("make the plan again with this ipc-run: `ipc-run plan FILE --format json`"),
        );
        return None;
    }
    match serde_json::from_str::<Plan>(text) {
        Ok(plan) => Some(plan),
        Err(error) => {
            sink.push(syntax_error(text, &error));
            None
        }
    }
}

/// E0801 at the line and column serde_json reports.
fn syntax_error(text: &str, error: &serde_json::Error) -> Diagnostic {
    let whole = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let message = whole.strip_suffix(&suffix).unwrap_or(&whole);
    let diagnostic = Diagnostic::error("E0801", format!("not a valid plan: {message}"));
    if error.line() == 0 {
        return diagnostic;
    }
    let offset = byte_offset(text, error.line(), error.column());
    let end = text[offset..]
        .chars()
        .next()
        .map_or(offset, |c| offset + c.len_utf8());
    diagnostic.with_label(Label::primary(offset..end, "here"))
}

/// The byte offset of a 1-based line and 1-based byte column, clamped to
/// the text.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let mut offset = (start + column.saturating_sub(1)).min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// E0803: the plan contradicts itself where the launcher would trust it.
fn inconsistent(message: String, at: String) -> Diagnostic {
    Diagnostic::error("E0803", message).with_note(format!("at {at}"))
}

/// Instance names, channel ids and order lists name what exists, once.
fn check_structure(plan: &Plan, max_instances: usize, sink: &mut Sink) {
    let mut instances = HashMap::new();
    for (i, process) in plan.processes.iter().enumerate() {
        if instances.insert(process.name.as_ref(), i).is_some() {
            let message = format!("two processes are named `{}`", process.name);
            sink.push(inconsistent(message, format!("processes[{i}]")));
        }
    }
    if plan.processes.len() > max_instances {
        sink.push(
            Diagnostic::error(
                "E0610",
                format!(
                    "the plan has {} process instances, more than {max_instances}",
                    plan.processes.len()
                ),
            )
            .with_help("`--max-processes N` raises the cap"),
        );
    }
    let mut channels = HashMap::new();
    for (c, channel) in plan.channels.iter().enumerate() {
        if channels.insert(channel.id.as_ref(), c).is_some() {
            let message = format!("two channels have the id `{}`", channel.id);
            sink.push(inconsistent(message, format!("channels[{c}]")));
        }
    }
    check_order(plan, "start_order", &plan.start_order, &instances, sink);
    check_order(plan, "stop_order", &plan.stop_order, &instances, sink);
    if let Some(name) = &plan.exit_code_from {
        if !plan.processes.iter().any(|p| *p.process == **name) {
            let message = format!("exit_code_from names `{name}`, which is not a process");
            sink.push(inconsistent(message, "exit_code_from".into()));
        }
    }
    for (i, process) in plan.processes.iter().enumerate() {
        check_process(plan, i, process, &instances, &channels, sink);
    }
    for (c, channel) in plan.channels.iter().enumerate() {
        let ends = channel.ends().iter();
        for endpoint in ends {
            check_endpoint(plan, c, endpoint, &instances, sink);
        }
        for object in channel.objects() {
            check_object_name(c, &channel.id, object, sink);
        }
    }
}

/// An order lists every instance exactly once.
fn check_order(
    plan: &Plan,
    field: &str,
    order: &[Arc<str>],
    instances: &HashMap<&str, usize>,
    sink: &mut Sink,
) {
    let mut seen = HashSet::new();
    for (k, name) in order.iter().enumerate() {
        if !instances.contains_key(&**name) {
            let message = format!("{field} names `{name}`, which is not a process");
            sink.push(inconsistent(message, format!("{field}[{k}]")));
        } else if !seen.insert(&**name) {
            let message = format!("{field} lists `{name}` twice");
            sink.push(inconsistent(message, format!("{field}[{k}]")));
        }
    }
    if let Some(missing) = plan
        .processes
        .iter()
        .find(|p| !seen.contains(p.name.as_ref()))
    {
        let message = format!("{field} leaves out `{}`", missing.name);
        sink.push(inconsistent(message, field.to_owned()));
    }
}

/// A process's command, dependencies and fd table.
fn check_process(
    plan: &Plan,
    i: usize,
    process: &ProcessPlan,
    instances: &HashMap<&str, usize>,
    channels: &HashMap<&str, usize>,
    sink: &mut Sink,
) {
    let at = |field: &str| format!("processes[{i}].{field} (`{}`)", process.name);
    if process.argv.is_empty() || process.argv[0].is_empty() {
        let message = format!("`{}` has an empty command", process.name);
        sink.push(Diagnostic::error("E0702", message).with_note(format!("at {}", at("argv"))));
    }
    // The values as the launcher reads them: a port's rendered.
    let mut env_has_nul = false;
    for var in process.env.vars(&plan.channels) {
        match var {
            Ok(var) => env_has_nul |= var.name.contains('\0') || var.value.contains('\0'),
            Err(error) => sink.push(inconsistent(error.to_string(), at("env"))),
        }
    }
    let has_nul = env_has_nul
        || process
            .argv
            .iter()
            .map(String::as_str)
            .chain(process.cwd.as_deref())
            .any(|text| text.contains('\0'));
    if has_nul {
        let message = format!(
            "an argument or variable of `{}` contains a NUL byte",
            process.name
        );
        sink.push(Diagnostic::error("E0703", message).with_note(format!("at {}", at("argv"))));
    }
    for dep in &process.after {
        if !instances.contains_key(&**dep) {
            let message = format!(
                "`{}` waits for `{dep}`, which is not a process",
                process.name
            );
            sink.push(inconsistent(message, at("after")));
        }
    }
    check_fd_table(plan, i, process, channels, sink);
}

/// Each fd once, not negative, and standing for what the plan says.
fn check_fd_table(
    plan: &Plan,
    i: usize,
    process: &ProcessPlan,
    channels: &HashMap<&str, usize>,
    sink: &mut Sink,
) {
    let at = format!("processes[{i}].fds (`{}`)", process.name);
    let mut fds = HashSet::new();
    for slot in &process.fds {
        if !fds.insert(slot.fd) {
            let message = format!("`{}` has fd {} twice", process.name, slot.fd);
            sink.push(inconsistent(message, at.clone()));
        }
        if slot.fd < 0 {
            let message = format!("`{}` has a negative fd {}", process.name, slot.fd);
            sink.push(inconsistent(message, at.clone()));
        }
        match &slot.role {
            FdRole::Ready if process.ready != (Readiness::Fd { fd: slot.fd }) => {
                let message = format!(
                    "fd {} of `{}` is a readiness pipe, but its readiness is not that fd",
                    slot.fd, process.name
                );
                sink.push(inconsistent(message, at.clone()));
            }
            FdRole::Ready => {}
            FdRole::Channel { channel, .. } => {
                let holds = channels.get(channel.as_ref()).is_some_and(|&c| {
                    let c = &plan.channels[c];
                    c.ends().iter().any(|e| {
                        matches!(e, EndpointPlan::Port { process: p, port, .. }
                            if *p == process.name && *port == slot.port)
                    })
                });
                if !holds {
                    let message = format!(
                        "fd {} of `{}` is port `{}` of channel `{channel}`, which has no such endpoint",
                        slot.fd, process.name, slot.port
                    );
                    sink.push(inconsistent(message, at.clone()));
                }
            }
        }
    }
    if let Readiness::Fd { fd } = process.ready {
        if !process
            .fds
            .iter()
            .any(|s| s.fd == fd && s.role == FdRole::Ready)
        {
            let message = format!(
                "`{}` is ready on fd {fd}, which its fd table does not hold",
                process.name
            );
            sink.push(inconsistent(message, format!("processes[{i}].ready")));
        }
    }
}

/// A channel end names a process of the plan and, with an fd, a slot of it.
fn check_endpoint(
    plan: &Plan,
    c: usize,
    endpoint: &EndpointPlan,
    instances: &HashMap<&str, usize>,
    sink: &mut Sink,
) {
    let id = &plan.channels[c].id;
    let at = format!("channels[{c}] (`{id}`)");
    match endpoint {
        EndpointPlan::Port {
            process, port, fd, ..
        } => {
            let Some(&i) = instances.get(process.as_ref()) else {
                if *fd == PortFd::NONE && is_rank(plan, process, instances) {
                    return;
                }
                let message =
                    format!("channel `{id}` has an end at `{process}`, which is not a process");
                sink.push(inconsistent(message, at));
                return;
            };
            let Some(fd) = fd.get() else { return };
            let slot = plan.processes[i].fds.iter().find(|s| s.fd == fd);
            let matches = slot.is_some_and(|s| {
                s.port == *port
                    && matches!(&s.role, FdRole::Channel { channel, .. } if channel == id)
            });
            if !matches {
                let message = format!(
                    "channel `{id}` hands fd {fd} to `{process}`, whose fd table does not hold it"
                );
                sink.push(inconsistent(message, at));
            }
        }
        EndpointPlan::Own { .. } | EndpointPlan::External => {}
    }
}

/// Whether `instance` is a rank of an MPI world whose launcher is a
/// process of the plan: ranks are ends of channels without being
/// processes (`plan::world`).
fn is_rank(plan: &Plan, instance: &str, instances: &HashMap<&str, usize>) -> bool {
    plan.channels.iter().any(|c| {
        matches!(&c.mechanism, Mechanism::Mpi(mpi)
            if instances.contains_key(mpi.launcher.as_str()) && mpi.ranks.iter().any(|r| r == instance))
    })
}

/// FIFOs and socket files live in the run directory, which is removed at
/// the end: a name elsewhere would create, then delete, a file outside it.
fn check_object_name(c: usize, id: &str, object: &NamedObject, sink: &mut Sink) {
    if !matches!(object.kind, ObjectKind::Fifo | ObjectKind::UnixSocket) {
        return;
    }
    if !in_run_dir(&object.name) {
        let message = format!(
            "channel `{id}` creates `{}` outside the run directory",
            object.name
        );
        sink.push(inconsistent(message, format!("channels[{c}].objects")));
    }
}

/// `{run_dir}/NAME` with NAME a single path component.
fn in_run_dir(path: &str) -> bool {
    path.strip_prefix(RUN_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| !name.is_empty() && !name.contains('/') && name != "..")
}

/// What the planner's order pass refuses, on the plan's data: a cycle
/// through `after` and signal edges (E0401, nothing could start first, so
/// nothing would), a `start_order` that starts an instance before one it
/// waits for (E0803), and `ready = "notify"` with `user =` (E0710, the
/// child could never reach the notify socket).
fn check_start(plan: &Plan, sink: &mut Sink) {
    for (i, process) in plan.processes.iter().enumerate() {
        let Some(user) = &process.user else { continue };
        if process.ready == Readiness::Notify {
            sink.push(
                Diagnostic::error(
                    "E0710",
                    format!(
                        "`{}` runs as `{user}` but cannot reach the notify socket, so it never becomes ready",
                        process.name
                    ),
                )
                .with_note(format!("at processes[{i}].user (`{}`)", process.name))
                .with_note("the notify socket is in the run directory, which is 0700 and owned by ipc-run's user")
                .with_help("use `ready = { fd = N }` (an inherited pipe), or run the process as ipc-run's user"),
            );
        }
    }
    let start = start_graph(plan);
    if report_start_cycles(plan, &start, sink) {
        return;
    }
    let position: HashMap<&str, usize> = plan
        .start_order
        .iter()
        .enumerate()
        .map(|(k, name)| (&**name, k))
        .collect();
    for edge in start.edge_indices() {
        let (first, then) = start.edge_endpoints(edge).expect("an edge of the graph");
        let (first, then) = (
            &plan.processes[start[first]].name,
            &plan.processes[start[then]].name,
        );
        if position[first.as_ref()] > position[then.as_ref()] {
            let message = format!(
                "start_order starts `{then}` before `{first}`, but {}",
                start[edge]
            );
            sink.push(inconsistent(message, "start_order".into()));
        }
    }
}

/// The plan's start graph over instances: edge a -> b (labelled with why)
/// when a must start before b, for `after` and, as the planner orders them,
/// for signal edges (the sender is handed the receiver's pid). Node i is
/// process i; replicas of one process do not order each other.
fn start_graph(plan: &Plan) -> DiGraph<usize, String> {
    let index: HashMap<&str, usize> = plan
        .processes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_ref(), i))
        .collect();
    let mut start = DiGraph::with_capacity(plan.processes.len(), 0);
    let nodes: Vec<NodeIndex> = (0..plan.processes.len())
        .map(|i| start.add_node(i))
        .collect();
    for (b, process) in plan.processes.iter().enumerate() {
        // Every name in `after` is an instance (checked by `check_structure`).
        for dep in &process.after {
            let why = format!("`{}` waits for `{dep}` (after)", process.name);
            start.add_edge(nodes[index[&**dep]], nodes[b], why);
        }
    }
    for channel in &plan.channels {
        let Mechanism::Signal(params) = &channel.mechanism else {
            continue;
        };
        let signal = &params.signal;
        let ends = |end: End| -> Vec<usize> {
            let mut found: Vec<usize> = channel
                .from()
                .iter()
                .chain(channel.to())
                .filter_map(|e| match e {
                    EndpointPlan::Port {
                        process, end: e, ..
                    } if *e == end => index.get(process.as_ref()).copied(),
                    _ => None,
                })
                .collect();
            found.sort_unstable_by_key(|&p| plan.processes[p].name.as_ref());
            found.dedup();
            found
        };
        let senders = ends(End::Send);
        for receiver in ends(End::Receive) {
            for &sender in &senders {
                if plan.processes[sender].process == plan.processes[receiver].process {
                    continue;
                }
                let why = format!(
                    "`{}` needs the pid of `{}` ({} edge `{}`)",
                    plan.processes[sender].name,
                    plan.processes[receiver].name,
                    signal.name,
                    channel.id
                );
                start.add_edge(nodes[receiver], nodes[sender], why);
            }
        }
    }
    start
}

/// E0401 for each start-order cycle, with its path and, in notes, why
/// each step waits; whether there was one.
fn report_start_cycles(plan: &Plan, start: &DiGraph<usize, String>, sink: &mut Sink) -> bool {
    let mut cyclic = false;
    for component in tarjan_scc(start) {
        let self_loop = component.len() == 1 && start.contains_edge(component[0], component[0]);
        if component.len() < 2 && !self_loop {
            continue;
        }
        cyclic = true;
        let members: std::collections::BTreeSet<NodeIndex> = component.iter().copied().collect();
        let first = *members
            .iter()
            .min_by_key(|n| start[**n])
            .expect("non-empty component");
        let path = super::order::shortest_cycle(start, first, &members);
        let names: Vec<&str> = path
            .iter()
            .map(|n| plan.processes[start[*n]].name.as_ref())
            .collect();
        let mut diagnostic = Diagnostic::error(
            "E0401",
            format!("start-order cycle: {} -> {}", names.join(" -> "), names[0]),
        )
        .with_help(
            "remove one `after`, or turn a signal edge around, so some process can start first",
        );
        for (a, b) in path.iter().zip(path.iter().cycle().skip(1)) {
            if let Some(edge) = start.find_edge(*a, *b) {
                diagnostic = diagnostic.with_note(start[edge].clone());
            }
        }
        sink.push(diagnostic);
    }
    cyclic
}

/// Every limit the planner checks, checked again against this host.
fn check_limits(plan: &Plan, limits: &Limits, sink: &mut Sink) {
    for process in &plan.processes {
        check_process_limits(process, &plan.channels, limits, sink);
    }
    let variable = "IPC_RUN_TOPOLOGY=".len() + plan.name.len();
    if variable as u64 >= limits.arg_strlen_max.value {
        sink.push(
            Diagnostic::error("E0608", format!("the topology `name` is {} bytes, too long for exec", plan.name.len()))
                .with_note(format!("every child gets IPC_RUN_TOPOLOGY=<name>; the kernel accepts strings shorter than {} ({})", limits.arg_strlen_max.value, limits.arg_strlen_max.source)),
        );
    }
    if plan.processes.iter().any(|p| p.ready == Readiness::Notify) {
        let path = super::wiring::NOTIFY_SOCKET_PATH;
        if socket_path_len(path, limits) >= limits.sun_path_max.value {
            sink.push(
                Diagnostic::error("E0607", "the notify socket path would not fit in sun_path")
                    .with_note(run_dir_note(limits)),
            );
        }
    }
    let mut posix_queues = 0u64;
    for channel in &plan.channels {
        if matches!(channel.mechanism, Mechanism::PosixMq { .. }) {
            posix_queues += 1;
        }
        let mut found = Vec::new();
        crate::mechanism::recheck(&channel.id, &channel.mechanism, limits, &mut found);
        for diagnostic in found {
            sink.push(diagnostic);
        }
    }
    let queues = &limits.mq_queues_max;
    if posix_queues > queues.value {
        sink.push(
            Diagnostic::error(
                "E0603",
                format!(
                    "the topology creates {posix_queues} POSIX message queues, the host allows {}",
                    queues.value
                ),
            )
            .with_note(format!(
                "queues_max is {} ({})",
                queues.value, queues.source
            )),
        );
    }
}

fn check_process_limits(
    process: &ProcessPlan,
    channels: &[ChannelPlan],
    limits: &Limits,
    sink: &mut Sink,
) {
    let name = &process.name;
    let strlen = &limits.arg_strlen_max;
    if let Some(arg) = process.argv.iter().find(|a| a.len() as u64 >= strlen.value) {
        sink.push(
            Diagnostic::error(
                "E0608",
                format!(
                    "an argument of `{name}` is {} bytes, the kernel accepts less than {}",
                    arg.len(),
                    strlen.value
                ),
            )
            .with_note(format!("the limit is {} ({})", strlen.value, strlen.source)),
        );
    }
    // One naming no port of the plan is reported by `check_process`.
    for var in process.env.vars(channels).flatten() {
        if (var.name.len() + var.value.len() + 1) as u64 >= strlen.value {
            sink.push(
                Diagnostic::error(
                    "E0608",
                    format!("the variable `{}` is too long for exec", var.name),
                )
                .with_note(format!("in the environment of `{name}`")),
            );
        }
    }
    let nofile = &limits.nofile_soft;
    if let Readiness::Fd { fd } = process.ready {
        if fd < 3 || fd as u64 >= nofile.value {
            sink.push(
                Diagnostic::error(
                    "E0707",
                    format!(
                        "`ready = {{ fd = {fd} }}` must name an fd from 3 to {}",
                        nofile.value.saturating_sub(1)
                    ),
                )
                .with_note(format!("in `{name}`")),
            );
        }
    }
    if let Some(highest) = process.fds.iter().map(|s| s.fd).max() {
        if highest >= 0 && highest as u64 >= nofile.value {
            sink.push(
                Diagnostic::error("E0204", format!("`{name}` would need fd {highest}, at or above the soft RLIMIT_NOFILE of {}", nofile.value))
                    .with_note(format!("RLIMIT_NOFILE is {} ({})", nofile.value, nofile.source)),
            );
        }
    }
}

/// The plan's warnings as diagnostics, printed as a run of the topology
/// would print them; a code ipc-run does not know is an error.
fn recorded_warnings(plan: &Plan, sink: &mut Sink) -> Vec<Diagnostic> {
    let mut warnings = Vec::new();
    for (w, warning) in plan.warnings.iter().enumerate() {
        let Some(code) = WARNING_CODES.iter().find(|&&c| c == warning.code) else {
            let message = format!("unknown warning code `{}`", warning.code);
            sink.push(inconsistent(message, format!("warnings[{w}]")));
            continue;
        };
        let mut diagnostic = Diagnostic::warning(code, warning.message.clone());
        diagnostic.notes = warning.notes.clone();
        warnings.push(diagnostic);
    }
    warnings
}
