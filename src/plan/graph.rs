//! The plan as a graph for people: Graphviz DOT or Mermaid. Processes are
//! nodes; channels are edges labelled with their mechanism and the fds at
//! each end. Both renderings are written by hand so labels stay ours and
//! the output is deterministic.

use std::fmt::Write as _;

use super::model::{EndpointPlan, Mechanism, Plan};

/// One drawn edge: from node, to node, label.
fn edges(plan: &Plan) -> Vec<(String, String, String)> {
    let node = |end: &EndpointPlan| -> (String, String) {
        match end {
            EndpointPlan::Port {
                process, port, fd, ..
            } => (
                process.to_string(),
                fd.get()
                    .map_or(port.to_string(), |fd| format!("{port}@{fd}")),
            ),
            EndpointPlan::Own { stream } => (format!("@{stream}"), String::new()),
            EndpointPlan::External => ("@external".to_owned(), String::new()),
        }
    };
    let mut out = Vec::new();
    for channel in &plan.channels {
        for from in channel.from() {
            for to in channel.to() {
                let (a, a_port) = node(from);
                let (b, b_port) = node(to);
                let ports = match (a_port.is_empty(), b_port.is_empty()) {
                    (true, true) => String::new(),
                    _ => format!(" {a_port}->{b_port}"),
                };
                out.push((
                    a,
                    b,
                    format!("{}: {}{ports}", channel.id, channel.mechanism.name()),
                ));
            }
        }
    }
    out
}

/// The ranks of MPI worlds: nodes of their own, though their launcher is
/// the process that runs (`plan::world`).
fn rank_nodes(plan: &Plan) -> impl Iterator<Item = &str> {
    plan.channels
        .iter()
        .flat_map(|c| match &c.mechanism {
            Mechanism::Mpi(mpi) => mpi.ranks.as_slice(),
            _ => &[],
        })
        .map(String::as_str)
}

fn special_nodes(plan: &Plan) -> Vec<String> {
    let mut nodes: Vec<String> = edges(plan)
        .into_iter()
        .flat_map(|(a, b, _)| [a, b])
        .filter(|n| n.starts_with('@'))
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// Graphviz DOT.
pub fn dot(plan: &Plan) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(&plan.name));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [shape=box];");
    // A placed plan draws each host group as a cluster of its processes.
    for group in plan.host_groups() {
        let indent = if group.group.is_some() {
            let _ = writeln!(
                out,
                "  subgraph {} {{",
                quote(&format!("cluster_{}", group.name))
            );
            let _ = writeln!(
                out,
                "    label={};",
                quote(&format!("host group {}", group.name))
            );
            "    "
        } else {
            "  "
        };
        for &p in &group.processes {
            let _ = writeln!(out, "{indent}{};", quote(&plan.processes[p].name));
        }
        if group.group.is_some() {
            out.push_str("  }\n");
        }
    }
    for rank in rank_nodes(plan) {
        let _ = writeln!(out, "  {} [style=rounded];", quote(rank));
    }
    for special in special_nodes(plan) {
        let _ = writeln!(out, "  {} [shape=ellipse, style=dashed];", quote(&special));
    }
    for (a, b, label) in edges(plan) {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}];",
            quote(&a),
            quote(&b),
            quote(&label)
        );
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart.
pub fn mermaid(plan: &Plan) -> String {
    // Mermaid ids must be plain words; names carry '#' and '@', so number them.
    let mut names: Vec<String> = plan.processes.iter().map(|p| p.name.to_string()).collect();
    names.extend(rank_nodes(plan).map(str::to_owned));
    names.extend(special_nodes(plan));
    let index: std::collections::HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let id = |name: &str| format!("n{}", index.get(name).copied().unwrap_or(0));
    let mut out = String::from("flowchart LR\n");
    // A placed plan draws each host group as a subgraph of its processes.
    let placed = plan.placement.is_some();
    for (g, group) in plan.host_groups().iter().enumerate().filter(|_| placed) {
        let _ = writeln!(out, "  subgraph g{g}[\"host group {}\"]", group.name);
        for &p in &group.processes {
            let _ = writeln!(out, "    {}", id(&plan.processes[p].name));
        }
        out.push_str("  end\n");
    }
    for name in &names {
        let shape = if name.starts_with('@') {
            format!("([\"{name}\"])")
        } else {
            format!("[\"{name}\"]")
        };
        let _ = writeln!(out, "  {}{shape}", id(name));
    }
    for (a, b, label) in edges(plan) {
        let _ = writeln!(
            out,
            "  {} -->|\"{}\"| {}",
            id(&a),
            label.replace('"', "#quot;"),
            id(&b)
        );
    }
    out
}
