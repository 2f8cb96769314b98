//! The planner: `(Topology, Limits) -> Plan`, pure, no syscalls.
//!
//! It runs in passes that each add to one list of diagnostics:
//!
//! 0. [`managed`]: processes ipc-run adds on the topology's behalf (a
//!    bus edge's broker) enter a copy of the topology as if written, and
//!    are marked `managed` once the plan is made;
//! 1. [`processes`]: names, argv, env, replicas, ports, signals, readiness;
//!    then [`placement`]: the host groups, when the file names some (`host`)
//!    or `--hosts N` asks, from the edges that bind processes to one host;
//! 2. [`edges`]: endpoints resolved to ports, ports used once, mechanisms
//!    chosen or checked ([`select`]; TCP between host groups), host
//!    limits, named objects;
//! 3. [`wiring`]: each instance's fd table and environment;
//! 4. [`order`]: start and stop order, the three kinds of cycle, FIFO
//!    open-order deadlocks;
//! 5. [`placeholders`]: every placeholder in `env` and `cwd` can be filled
//!    when the process is spawned.
//!
//! Passes 4 and 5 read nothing wiring makes: they run before it, so their
//! graphs are gone before the instances' plans exist, and what they find
//! is reported after wiring's findings and only when wiring found none, as
//! if they ran after it.
//!
//! [`import`] reads a JSON plan back and checks it against this host.
//!
//! A pass that needs the previous one's results only runs when that pass
//! found no error, so every reported error is real and none is an echo.

mod conditions;
pub mod diff;
mod edges;
pub mod graph;
pub mod import;
pub(crate) mod managed;
mod order;
pub(crate) mod placeholders;
mod placement;
mod processes;
pub mod render;
pub mod select;
mod wiring;
mod world;

pub use crate::mechanism::{limits, model, signals};
pub use limits::{Limit, Limits};
pub use model::*;
pub use placement::{DEFAULT_BASE_PORT, PlacementOptions};

use crate::diagnostic::Diagnostic;
use crate::topology::Topology;

/// Most process instances one topology may have (replicas counted), unless
/// the CLI's `--max-processes` says otherwise ([`plan_capped`]).
pub const MAX_INSTANCES: usize = 100_000;

/// A valid plan and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The plan.
    pub plan: Plan,
    /// Warnings, with spans into the file.
    pub warnings: Vec<Diagnostic>,
}

/// The topology is invalid: at least one error, plus any warnings.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the topology is invalid: {} error(s)", self.error_count())]
pub struct PlanError {
    /// Errors and warnings, errors first.
    pub diagnostics: Vec<Diagnostic>,
}

impl PlanError {
    /// The number of errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
}

/// Plans a parsed topology against the given host limits, with at most
/// [`MAX_INSTANCES`] process instances.
pub fn plan(topology: &Topology, limits: &Limits) -> Result<Planned, PlanError> {
    plan_capped(topology, limits, MAX_INSTANCES)
}

/// [`plan`] with at most `max_instances` process instances
/// (`--max-processes`); more is error E0610.
pub fn plan_capped(
    topology: &Topology,
    limits: &Limits,
    max_instances: usize,
) -> Result<Planned, PlanError> {
    plan_placed(
        topology,
        limits,
        max_instances,
        &PlacementOptions::default(),
    )
}

/// [`plan_capped`] with placement options (`--hosts`, `--base-port`).
pub fn plan_placed(
    topology: &Topology,
    limits: &Limits,
    max_instances: usize,
    options: &PlacementOptions,
) -> Result<Planned, PlanError> {
    let mut sink = Sink::default();
    let profiles = profiles_plan(&topology.profiles, &topology.file);
    // Processes ipc-run adds (a private bus's broker) enter as if written.
    let (expanded, managed) = managed::add(topology, &mut sink);
    let topology = expanded.as_ref().unwrap_or(topology);
    let processes = declare_processes(topology, limits, max_instances, &mut sink)?;
    let groups = placement::assign(topology, &processes, options, &mut sink);
    let declared = declare_channels(topology, None, limits, sink, processes, groups, managed)?;
    wire_and_order(declared, limits, profiles)
}

/// [`plan_capped`] that takes the typed file out of `topology` and drops it
/// as the passes finish with it: its processes once they are declared, its
/// edges once they are channels, so the plan is never held beside the file
/// it came from. `topology` keeps its path and source text, which is what
/// diagnostics are rendered against (their spans are byte ranges into it);
/// its `file` is left empty.
pub fn plan_releasing(
    topology: &mut Topology,
    limits: &Limits,
    max_instances: usize,
) -> Result<Planned, PlanError> {
    plan_releasing_placed(
        topology,
        limits,
        max_instances,
        &PlacementOptions::default(),
    )
}

/// [`plan_releasing`] with placement options (`--hosts`, `--base-port`).
pub fn plan_releasing_placed(
    topology: &mut Topology,
    limits: &Limits,
    max_instances: usize,
    options: &PlacementOptions,
) -> Result<Planned, PlanError> {
    let mut typed = Topology {
        path: std::mem::take(&mut topology.path),
        source: std::mem::take(&mut topology.source),
        file: std::mem::take(&mut topology.file),
        files: std::mem::take(&mut topology.files),
        profiles: std::mem::take(&mut topology.profiles),
    };
    let mut sink = Sink::default();
    let profiles = profiles_plan(&typed.profiles, &typed.file);
    // Processes ipc-run adds (a private bus's broker) enter as if written:
    // the expanded copy's file replaces the one read.
    let (expanded, managed) = managed::add(&typed, &mut sink);
    if let Some(expanded) = expanded {
        typed.file = expanded.file;
    }
    let declared =
        declare_processes(&typed, limits, max_instances, &mut sink).and_then(|processes| {
            let groups = placement::assign(&typed, &processes, options, &mut sink);
            // The edges pass reads the process declarations, not the specs.
            drop(std::mem::take(&mut typed.file.process));
            // It takes the edges by value, to drop each once it is planned.
            let edges = Some(std::mem::take(&mut typed.file.edge));
            declare_channels(&typed, edges, limits, sink, processes, groups, managed)
        });
    // Only the path and the text are still needed: give them back and drop
    // the rest of the typed file (the edges and their strings).
    let Topology {
        path,
        source,
        file,
        files,
        profiles: composed,
    } = typed;
    topology.path = path;
    topology.source = source;
    topology.files = files;
    topology.profiles = composed;
    drop(file);
    wire_and_order(declared?, limits, profiles)
}

/// What the first two passes leave for the rest: owned, with no borrow of
/// the topology.
struct Declared {
    sink: Sink,
    name: String,
    exit_code_from: Option<String>,
    processes: Vec<processes::ProcessDecl>,
    channels: Vec<edges::ChannelDecl>,
    /// The processes ipc-run added, completed once the plan is made.
    managed: Vec<managed::Added>,
    /// The host groups, when the topology is placed on several.
    groups: Option<placement::Groups>,
}

/// The first pass, the only one that reads the processes' specs.
fn declare_processes(
    topology: &Topology,
    limits: &Limits,
    max_instances: usize,
    sink: &mut Sink,
) -> Result<Vec<processes::ProcessDecl>, PlanError> {
    let processes = processes::resolve(topology, limits, max_instances, sink);
    if sink.has_errors() {
        return Err(std::mem::take(sink).into_error());
    }
    Ok(processes)
}

/// The second pass, the last that reads the typed file (its edges, name and
/// `exit_code_from`); `edges`, when given, are the file's edges taken out of
/// it, dropped one by one as they become channels.
fn declare_channels(
    topology: &Topology,
    edges: Option<Vec<crate::topology::EdgeSpec>>,
    limits: &Limits,
    mut sink: Sink,
    processes: Vec<processes::ProcessDecl>,
    mut groups: Option<placement::Groups>,
    managed: Vec<managed::Added>,
) -> Result<Declared, PlanError> {
    if sink.has_errors() {
        return Err(sink.into_error());
    }
    let channels = edges::resolve(
        topology,
        edges,
        limits,
        &processes,
        groups.as_mut(),
        &mut sink,
    );
    if sink.has_errors() {
        return Err(sink.into_error());
    }
    let mut channels = channels;
    world::assign_ranks(&processes, &mut channels, &mut sink);
    if sink.has_errors() {
        return Err(sink.into_error());
    }
    // The name children see in IPC_RUN_TOPOLOGY is the plan's.
    let name = topology
        .file
        .name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .or_else(|| {
            topology
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "topology".into());
    let exit_code_from = topology
        .file
        .exit_code_from
        .as_ref()
        .map(|n| n.get_ref().clone());
    Ok(Declared {
        sink,
        name,
        exit_code_from,
        processes,
        channels,
        managed,
        groups,
    })
}

/// The passes after the typed file: wiring, order, placeholders.
fn wire_and_order(
    declared: Declared,
    limits: &Limits,
    profiles: Option<crate::mechanism::model::ProfilesPlan>,
) -> Result<Planned, PlanError> {
    let Declared {
        mut sink,
        name,
        exit_code_from,
        mut processes,
        channels,
        managed,
        groups,
    } = declared;
    // Order and placeholders read nothing wiring makes: they run first, so
    // their graphs and maps are gone before the instances' plans exist
    // (the plan's peak is then the wired plan beside the declarations).
    // What they find is reported as if they ran after wiring: only when
    // wiring found no error, and after what wiring found.
    let mut later = Sink::default();
    let ordering = order::analyse(&processes, &channels, &mut later);
    if !later.has_errors() {
        placeholders::check(&processes, &channels, &ordering.start_order, &mut later);
    }
    // Wiring takes the plans apart from what only it reads, which it
    // drops as it goes: its end, with every instance made, is the peak.
    let mut wiring = edges::Channels::for_wiring(channels);
    let mut instances = wiring::wire(&name, limits, &processes, &mut wiring, &mut sink);
    let channels = wiring.into_plans();
    conditions::resolve(&processes, &channels, &mut instances, &mut sink);
    if sink.has_errors() {
        return Err(sink.into_error());
    }
    sink.diagnostics.append(&mut later.diagnostics);
    if sink.has_errors() {
        return Err(sink.into_error());
    }
    processes::wired(&mut processes);
    let mut plan = Plan {
        format_version: PLAN_FORMAT_VERSION,
        name,
        processes: instances,
        channels,
        start_order: ordering.start_order,
        stop_order: ordering.stop_order,
        cycles: ordering.cycles,
        exit_code_from,
        warnings: sink.diagnostics.iter().map(PlanWarning::from).collect(),
        limits: limits.clone(),
        profiles,
        placement: None,
    };
    world::launch_worlds(
        &mut plan.channels,
        world::Launch {
            instances: &mut plan.processes,
            start_order: &mut plan.start_order,
            stop_order: &mut plan.stop_order,
            exit_code_from: &mut plan.exit_code_from,
        },
        &mut sink,
    );
    if sink.has_errors() {
        return Err(sink.into_error());
    }
    if let Some(groups) = groups {
        groups.finish(&mut plan, &processes);
    }
    managed::finish(&mut plan, &managed);
    Ok(Planned {
        plan,
        warnings: sink.diagnostics,
    })
}

/// What the plan says of profiles: only for a topology that has some, or
/// when one was asked for.
fn profiles_plan(
    profiles: &crate::topology::Profiles,
    file: &crate::topology::TopologyFile,
) -> Option<crate::mechanism::model::ProfilesPlan> {
    let declared = file.process.values().any(|p| !p.profiles.is_empty());
    (declared || !profiles.active.is_empty() || !profiles.left_out.is_empty()).then(|| {
        crate::mechanism::model::ProfilesPlan {
            active: profiles.active.clone(),
            left_out: profiles.left_out.clone(),
            dropped_edges: profiles.dropped_edges.clone(),
        }
    })
}

// The plan owns its vocabulary; the topology's words map onto it here,
// where the planner reads one and writes the other.

impl From<crate::topology::RestartPolicy> for RestartPolicy {
    fn from(policy: crate::topology::RestartPolicy) -> Self {
        use crate::topology::RestartPolicy as Declared;
        match policy {
            Declared::Never => RestartPolicy::Never,
            Declared::OnFailure => RestartPolicy::OnFailure,
            Declared::Always => RestartPolicy::Always,
        }
    }
}

impl From<crate::topology::Traffic> for Traffic {
    fn from(traffic: crate::topology::Traffic) -> Self {
        use crate::topology::Traffic as Declared;
        match traffic {
            Declared::Stream => Traffic::Stream,
            Declared::Messages => Traffic::Messages,
            Declared::Shared => Traffic::Shared,
            Declared::Request => Traffic::Request,
            Declared::Notify => Traffic::Notify,
        }
    }
}

/// Collects diagnostics across passes.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    diagnostics: Vec<Diagnostic>,
}

impl Sink {
    fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    fn into_error(mut self) -> PlanError {
        // Stable: errors first, each group in the order found.
        self.diagnostics.sort_by_key(|d| !d.is_error());
        PlanError {
            diagnostics: self.diagnostics,
        }
    }
}

pub(crate) use crate::mechanism::model::Span;
