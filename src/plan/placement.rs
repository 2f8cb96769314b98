//! Placement: which host group each process runs in, and what crosses
//! between groups (`docs/distributed.md`, "Placement").
//!
//! This module owns the `placement` part of a plan: making it in the
//! planner, and checking one read back from JSON (`run --plan`), where it
//! is trusted no more than the rest of the plan.

use std::collections::{HashMap, HashSet};

use super::Sink;
use super::model::{EndpointPlan, LOCAL_GROUP, Mechanism, Plan, Transport};
use crate::diagnostic::Diagnostic;

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
            if process.host != LOCAL_GROUP {
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
        for end in channel.from.iter().chain(&channel.to) {
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
            || matches!(mechanism, Mechanism::Rpc { transport, .. } if *transport == Transport::Tcp);
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
