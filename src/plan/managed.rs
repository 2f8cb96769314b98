//! Processes ipc-run adds to the plan on the topology's behalf
//! (`ProcessPlan.managed`): a broker its clients meet at (a private
//! `dbus-daemon` for a `dbus` edge that names no server) or a launcher.
//!
//! They are added to a copy of the topology before the passes run, as if
//! the file declared them ([`add_process`]): the process with its command,
//! readiness and working directory, the edge's `to` pointing at its port,
//! and the process in the `after` of every process of the edge's `from`.
//! Every pass then checks, wires and orders it like a declared process:
//! it starts first, its clients wait until it is ready, and reverse start
//! order stops it last. A topology without one is not copied. After the
//! passes, [`finish`] marks its instances as managed and gives the clients
//! the variables the protocol defines (`DBUS_SESSION_BUS_ADDRESS`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::model::{EndpointPlan, EnvVar, Managed, ManagedRole, Mechanism, Plan};
use super::{Sink, Span};
use crate::diagnostic::{Diagnostic, Label};
use crate::mechanism::{dbus, rpc};
use crate::topology::{
    EdgeRare, EndpointList, EndpointRef, EndpointShape, ProcessSpec, Spanned, Topology,
    TopologyFile, check_name,
};

/// A process to add on the topology's behalf, serving one edge.
pub(crate) struct Addition {
    /// Its process name.
    pub name: String,
    /// The process, as if written in the file.
    pub spec: ProcessSpec,
    /// Index of the edge it serves in the file's `edge` list.
    pub edge: usize,
    /// The port of the process the edge's `to` names.
    pub port: &'static str,
    /// The edge's `endpoint` shape, set on the edge.
    pub shape: EndpointShape,
    /// Where diagnostics about it point: the edge.
    pub span: Span,
}

/// What [`finish`] needs of one added process.
#[derive(Debug)]
pub(super) struct Added {
    /// Its process name.
    process: String,
    /// The channel it serves.
    channel: String,
    /// What it is, and why.
    role: ManagedRole,
    reason: &'static str,
}

/// The topology with every managed process added, or `None` when it needs
/// none; and what [`finish`] completes once the plan is made.
pub(super) fn add(topology: &Topology, sink: &mut Sink) -> (Option<Topology>, Vec<Added>) {
    let mut copy: Option<Topology> = None;
    let mut added = Vec::new();
    for (index, edge) in topology.file.edge.iter().enumerate() {
        let broker_written = edge
            .endpoint
            .as_ref()
            .filter(|e| *e.get_ref() == EndpointShape::Broker);
        let protocol = edge.protocol.as_ref().map(|p| p.get_ref().as_str());
        if let Some(written) = broker_written.filter(|_| protocol != Some(dbus::PROTOCOL)) {
            let protocol = protocol.unwrap_or_default();
            sink.push(
                Diagnostic::error(
                    "E0326",
                    format!("ipc-run has no broker to start for protocol `{protocol}`"),
                )
                .with_label(Label::primary(written.span(), "a broker edge"))
                .with_help(
                    "only `dbus` has one (a private dbus-daemon); declare the server as a process and name it in `to`",
                ),
            );
            continue;
        }
        if let Some(written) = broker_written.filter(|_| !edge.to.get_ref().0.is_empty()) {
            sink.push(
                Diagnostic::error("E0325", "a broker edge names no server in `to`")
                    .with_label(Label::primary(written.span(), "ipc-run starts the broker"))
                    .with_label(Label::secondary(edge.to.span(), "a server named here"))
                    .with_help("leave `to` out: every endpoint of a bus is a client (in `from`)"),
            );
            continue;
        }
        if !dbus::wants_broker(edge) {
            continue;
        }
        let id = match &edge.name {
            Some(name) if check_name(name.get_ref()).is_err() => continue, // E0101, later
            Some(name) => name.get_ref().clone(),
            None => format!("e{index}"),
        };
        let span = edge.from.span();
        let name = dbus::broker_name(&id);
        if !name_is_free(&topology.file, &name, &id, span.clone(), sink) {
            continue;
        }
        let addition = Addition {
            spec: dbus::broker_spec(&id, span.clone()),
            name: name.clone(),
            edge: index,
            port: "bus",
            shape: EndpointShape::Broker,
            span,
        };
        let file = &mut copy.get_or_insert_with(|| topology.clone()).file;
        add_process(file, addition);
        added.push(Added {
            process: name,
            channel: id,
            role: ManagedRole::Broker,
            reason: dbus::BROKER_REASON,
        });
    }
    (copy, added)
}

/// Whether a managed process may take `name`: a valid name no declared
/// process has (E0327 otherwise).
fn name_is_free(file: &TopologyFile, name: &str, edge: &str, span: Span, sink: &mut Sink) -> bool {
    let why = match check_name(name) {
        Err(why) => why,
        Ok(())
            if file
                .process
                .contains_key(&Spanned::new(0..0, name.to_owned())) =>
        {
            format!("a process named `{name}` is declared")
        }
        Ok(()) => return true,
    };
    sink.push(
        Diagnostic::error(
            "E0327",
            format!("the broker of edge `{edge}` cannot be named `{name}`"),
        )
        .with_label(Label::primary(span, why))
        .with_help("rename the edge (its broker is named `EDGE-broker`) or the process"),
    );
    false
}

/// Adds `a` to `file` as if written: the process, the edge's `to` (its
/// port) and `endpoint`, and the process in the `after` of every process
/// of the edge's `from`. The one place a managed process enters a
/// topology, for brokers and launchers alike.
pub(crate) fn add_process(file: &mut TopologyFile, a: Addition) {
    let edge = &mut file.edge[a.edge];
    let to = format!("{}.{}", a.name, a.port);
    edge.to = Spanned::new(
        a.span.clone(),
        EndpointList(vec![Spanned::new(a.span.clone(), to)]),
    );
    let rare = edge
        .rare
        .get_or_insert_with(|| Box::new(EdgeRare::default()));
    rare.endpoint = Some(Spanned::new(a.span.clone(), a.shape));
    let clients: Vec<String> = edge
        .from
        .get_ref()
        .0
        .iter()
        .filter_map(|item| match EndpointRef::parse(item.get_ref()) {
            Ok(EndpointRef::Process { process, .. }) => Some(process.to_owned()),
            _ => None,
        })
        .collect();
    for client in clients {
        // A name that is not declared is reported by the edges pass.
        let key = Spanned::new(0..0, client);
        if let Some(spec) = file.process.get_mut(&key)
            && !spec.after.iter().any(|a2| a2.get_ref() == &a.name)
        {
            spec.after
                .push(Spanned::new(a.span.clone(), a.name.clone()));
        }
    }
    file.process
        .insert(Spanned::new(a.span.clone(), a.name.clone()), a.spec);
}

/// Marks the added processes' instances as managed, and gives each client
/// of a bus `DBUS_SESSION_BUS_ADDRESS` (unless its `env` sets it).
pub(super) fn finish(plan: &mut Plan, added: &[Added]) {
    if added.is_empty() {
        return;
    }
    let index: HashMap<Arc<str>, usize> = plan
        .processes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.clone(), i))
        .collect();
    for a in added {
        let managed = Managed {
            role: a.role,
            channel: a.channel.as_str().into(),
            reason: Cow::Borrowed(a.reason),
        };
        if let Some(&i) = index.get(a.process.as_str()) {
            plan.processes[i].managed = Some(Box::new(managed));
        }
        let Some(channel) = plan.channels.iter().find(|c| *c.id == *a.channel) else {
            continue;
        };
        let Mechanism::Rpc(params) = &channel.mechanism else {
            continue;
        };
        let (_, url) = rpc::address_and_url(
            &params.protocol,
            params.transport,
            &params.address,
            &channel.id,
        );
        let url: Arc<str> = url.into();
        let clients: Vec<usize> = channel
            .from()
            .iter()
            .filter_map(|e| match e {
                EndpointPlan::Port { process, .. } => index.get(process).copied(),
                _ => None,
            })
            .collect();
        for i in clients {
            let env = &mut plan.processes[i].env;
            if !env.iter().any(|v| &*v.name == BUS_ADDRESS) {
                env.push(EnvVar {
                    name: BUS_ADDRESS.into(),
                    value: url.clone().into(),
                });
            }
        }
    }
}

/// The variable D-Bus libraries read the session bus's address from.
const BUS_ADDRESS: &str = "DBUS_SESSION_BUS_ADDRESS";
