//! The planner: `(Topology, Limits) -> Plan`, pure, no syscalls.
//!
//! It runs in passes that each add to one list of diagnostics:
//!
//! 0. [`managed`]: processes ipc-run adds on the topology's behalf (a
//!    bus edge's broker) enter a copy of the topology as if written, and
//!    are marked `managed` once the plan is made;
//! 1. [`processes`]: names, argv, env, replicas, ports, signals, readiness;
//! 2. [`edges`]: endpoints resolved to ports, ports used once, mechanisms
//!    chosen or checked ([`select`]), host limits, named objects;
//! 3. [`wiring`]: each instance's fd table and environment;
//! 4. [`order`]: start and stop order, the three kinds of cycle, FIFO
//!    open-order deadlocks;
//! 5. [`placeholders`]: every placeholder in `env` and `cwd` can be filled
//!    when the process is spawned.
//!
//! [`import`] reads a JSON plan back and checks it against this host.
//!
//! A pass that needs the previous one's results only runs when that pass
//! found no error, so every reported error is real and none is an echo.

mod conditions;
mod edges;
pub mod graph;
pub mod import;
pub(crate) mod managed;
mod order;
pub(crate) mod placeholders;
mod processes;
pub mod render;
pub mod select;
mod wiring;

pub use crate::mechanism::{limits, model, signals};
pub use limits::{Limit, Limits};
pub use model::*;

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
    let mut sink = Sink::default();
    // Processes ipc-run adds (a private bus's broker) enter as if written.
    let (expanded, managed) = managed::add(topology, &mut sink);
    let topology = expanded.as_ref().unwrap_or(topology);
    let processes = processes::resolve(topology, limits, max_instances, &mut sink);
    if sink.has_errors() {
        return Err(sink.into_error());
    }
    let channels = edges::resolve(topology, limits, &processes, &mut sink);
    if sink.has_errors() {
        return Err(sink.into_error());
    }
    let mut channels = channels;
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
    let mut instances = wiring::wire(&name, limits, &processes, &mut channels, &mut sink);
    conditions::resolve(&processes, &channels, &mut instances, &mut sink);
    if sink.has_errors() {
        return Err(sink.into_error());
    }
    let ordering = order::analyse(&processes, &channels, &mut sink);
    if sink.has_errors() {
        return Err(sink.into_error());
    }
    placeholders::check(&processes, &channels, &ordering.start_order, &mut sink);
    if sink.has_errors() {
        return Err(sink.into_error());
    }
    let exit_code_from = topology
        .file
        .exit_code_from
        .as_ref()
        .map(|n| n.get_ref().clone());
    let mut plan = Plan {
        format_version: PLAN_FORMAT_VERSION,
        name,
        processes: instances,
        channels: channels.into_iter().map(|c| c.plan).collect(),
        start_order: ordering.start_order,
        stop_order: ordering.stop_order,
        cycles: ordering.cycles,
        exit_code_from,
        warnings: sink.diagnostics.iter().map(PlanWarning::from).collect(),
        limits: limits.clone(),
    };
    managed::finish(&mut plan, &managed);
    Ok(Planned {
        plan,
        warnings: sink.diagnostics,
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
