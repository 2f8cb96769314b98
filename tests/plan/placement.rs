//! Placement into host groups (`docs/distributed.md`, "Placement"): what
//! stays together and why, `--hosts N` packing, the edges between groups
//! with their ports, every error of an impossible split, and a placement
//! read back from JSON.

use std::path::Path;

use ipc_run::plan::{
    self, Limits, Mechanism, ObjectKind, PlacementOptions, PlacementSource, Plan, Planned,
    Transport,
};
use ipc_run::topology::Topology;

fn planned(text: &str, options: &PlacementOptions) -> Result<Planned, String> {
    let topology = Topology::parse(Path::new("t.toml"), text.into()).expect("valid TOML");
    plan::plan_placed(&topology, &Limits::default(), plan::MAX_INSTANCES, options).map_err(
        |error| {
            error
                .diagnostics
                .iter()
                .map(|d| d.render("t.toml", &topology.source, false))
                .collect()
        },
    )
}

fn declared(text: &str) -> Plan {
    planned(text, &PlacementOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .plan
}

fn partitioned(text: &str, hosts: u32) -> Planned {
    let options = PlacementOptions {
        hosts: Some(hosts),
        ..PlacementOptions::default()
    };
    planned(text, &options).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> String {
    match planned(text, &PlacementOptions::default()) {
        Ok(_) => panic!("planned:\n{text}"),
        Err(rendered) => rendered,
    }
}

/// The placement section of the text plan, as far as the first process.
fn placement_text(plan: &Plan) -> String {
    let text = plan::render::text(plan);
    let start = text.find("placement ").expect("a placement section");
    let end = text[start..]
        .find("\nprocess ")
        .map_or(text.len(), |i| start + i);
    text[start..end].to_owned()
}

/// Every way a process gets its group: declared, bound by a host-local
/// edge, joined over a network edge, and none of these (the first group).
const DECLARED: &str = r#"
[process.camera]
cmd = ["camera"]
host = "edge"
cpus = 0.5
memory = "256MiB"

[process.resize]
cmd = ["resize"]

[process.detect]
cmd = ["detect"]
host = "gpu"
cpus = 2
replicas = 2

[process.store]
cmd = ["store"]

[process.audit]
cmd = ["audit"]

[[edge]]
name = "raw"
from = "camera.frames"
to = "resize.frames"
traffic = "shared"
size = "1MiB"

[[edge]]
name = "small"
from = "resize.out"
to = "detect.in"
traffic = "messages"

[[edge]]
name = "found"
from = "detect.out"
to = "store.in"
"#;

#[test]
fn declared_groups_say_why_each_process_is_where_it_is() {
    let plan = declared(DECLARED);
    let hosts: Vec<(&str, &str)> = plan
        .processes
        .iter()
        .map(|p| (p.name.as_ref(), p.host.as_ref()))
        .collect();
    assert_eq!(
        hosts,
        [
            ("camera", "edge"),
            ("resize", "edge"),
            ("detect#0", "gpu"),
            ("detect#1", "gpu"),
            ("store", "gpu"),
            ("audit", "edge"),
        ]
    );
    let placement = plan.placement.as_ref().expect("placed");
    assert_eq!(placement.source, PlacementSource::Declared);
    assert_eq!(placement.groups[0].shm_bytes, 1 << 20);
    assert_eq!(placement.groups[1].cpus, Some(4.0));
    assert_eq!(placement.cross_edges.len(), 1);
    let small = plan.channels.iter().find(|c| &*c.id == "small").unwrap();
    assert!(
        matches!(&small.mechanism, Mechanism::Tcp(tcp) if tcp.bind == "0.0.0.0:47000"),
        "{:?}",
        small.mechanism
    );
    insta::assert_snapshot!(placement_text(&plan));
}

/// The same topology places the same way every time, whatever it is
/// planned beside.
#[test]
fn placement_is_deterministic() {
    let first = serde_json::to_string(&declared(DECLARED)).unwrap();
    for _ in 0..3 {
        assert_eq!(serde_json::to_string(&declared(DECLARED)).unwrap(), first);
    }
}

/// `--hosts 2`: components (processes joined by host-local edges) packed
/// first fit decreasing by declared cpus, then memory, then count.
const PACKED: &str = r#"
pipeline = ["read", "parse"]

[process.read]
cmd = ["read"]
cpus = 1

[process.parse]
cmd = ["parse"]
cpus = 1

[process.train]
cmd = ["train"]
cpus = 4
memory = "8GiB"

[process.serve]
cmd = ["serve"]
cpus = 1
replicas = 2

[process.log]
cmd = ["log"]

[[edge]]
name = "batches"
from = "parse.out"
to = "train.in"

[[edge]]
name = "model"
from = ["serve.ask"]
to = "train.ask"
traffic = "request"

[[edge]]
name = "lines"
from = ["read.log", "parse.log", "train.log", "serve.log"]
to = "log.in"
traffic = "messages"
"#;

#[test]
fn hosts_two_packs_components_first_fit_decreasing() {
    let planned = partitioned(PACKED, 2);
    let placement = planned.plan.placement.as_ref().expect("placed");
    assert_eq!(placement.source, PlacementSource::Partitioned { hosts: 2 });
    let groups: Vec<(&str, Vec<&str>)> = placement
        .groups
        .iter()
        .map(|g| (&*g.name, g.processes.iter().map(|p| &**p).collect()))
        .collect();
    // train (4 of the 8 cpus, 8 GiB) fits no group's half of the memory
    // and takes the least loaded; read|parse (2 cpus, bound by their pipe)
    // fits the other, serve (2 cpus, 2 instances) would pass half of the
    // instances there and goes to the less loaded group, which is the
    // same; log (no cpus) goes to the first with room for an instance.
    // Groups are numbered in file order.
    assert_eq!(
        groups,
        [
            ("host-1", vec!["read", "parse", "serve#0", "serve#1"]),
            ("host-2", vec!["train", "log"]),
        ]
    );
    assert!(planned.warnings.is_empty());
    insta::assert_snapshot!(placement_text(&planned.plan));
}

/// Asking for more groups than there are components gives fewer, with a
/// warning, not empty groups.
#[test]
fn more_hosts_than_components_gives_fewer_groups_and_a_warning() {
    let planned = partitioned(PACKED, 9);
    let placement = planned.plan.placement.as_ref().unwrap();
    assert_eq!(placement.groups.len(), 4);
    let codes: Vec<&str> = planned.warnings.iter().map(|w| w.code).collect();
    assert_eq!(codes, ["W0501"]);
    assert!(placement.groups.iter().all(|g| !g.processes.is_empty()));
}

/// Equal components fill the groups in order, so neighbours in the file
/// stay together, and the groups come out even.
#[test]
fn equal_components_fill_groups_evenly_in_file_order() {
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&format!("[process.p{i:04}]\ncmd = [\"w\"]\n"));
    }
    let planned = partitioned(&text, 8);
    let placement = planned.plan.placement.as_ref().unwrap();
    let sizes: Vec<usize> = placement.groups.iter().map(|g| g.processes.len()).collect();
    assert_eq!(sizes, [125; 8]);
    assert_eq!(&*placement.groups[1].processes[0], "p0125");
}

/// `a` on host `left` and `b` on host `right`: the cases below add the
/// edges between them.
const A_LEFT_B_RIGHT: &str = r#"
[process.a]
cmd = ["a"]
host = "left"

[process.b]
cmd = ["b"]
host = "right"
"#;

#[test]
fn conflicting_declared_hosts_name_both_groups_and_the_edge() {
    insta::assert_snapshot!(errors(
        r#"
[process.a]
cmd = ["a"]
host = "left"

[process.middle]
cmd = ["m"]

[process.b]
cmd = ["b"]
host = "right"

[[edge]]
name = "first"
from = "a"
to = "middle"

[[edge]]
name = "second"
from = "middle"
to = "b"
"#
    ));
}

#[test]
fn host_local_mechanism_across_groups_is_an_error() {
    insta::assert_snapshot!(errors(&format!(
        r#"{A_LEFT_B_RIGHT}
[[edge]]
name = "calls"
from = "a.api"
to = "b.api"
traffic = "request"
mechanism = "unix-listener"
"#
    )));
}

#[test]
fn shared_memory_across_groups_is_an_error() {
    insta::assert_snapshot!(errors(&format!(
        r#"{A_LEFT_B_RIGHT}
[[edge]]
name = "table"
from = "a.table"
to = "b.table"
traffic = "shared"
size = "4KiB"
"#
    )));
}

#[test]
fn a_port_declared_twice_between_groups_is_an_error() {
    insta::assert_snapshot!(errors(&format!(
        r#"{A_LEFT_B_RIGHT}
[[edge]]
name = "one"
from = "a.one"
to = "b.one"
address = "0.0.0.0:9000"
allow_remote = true

[[edge]]
name = "two"
from = "a.two"
to = "b.two"
address = "0.0.0.0:9000"
allow_remote = true
"#
    )));
}

/// Ports: a declared one is kept; the others come from `--base-port` in
/// edge order, skipping every declared port.
#[test]
fn ports_are_declared_or_assigned_from_the_base_port() {
    let text = format!(
        r#"{A_LEFT_B_RIGHT}
[[edge]]
name = "one"
from = "a.one"
to = "b.one"

[[edge]]
name = "two"
from = "a.two"
to = "b.two"
address = "127.0.0.1:5001"

[[edge]]
name = "three"
from = "a.three"
to = "b.three"
"#
    );
    let options = PlacementOptions {
        hosts: None,
        base_port: 5000,
    };
    let plan = planned(&text, &options).unwrap().plan;
    let ports: Vec<(&str, u16)> = plan
        .placement
        .as_ref()
        .unwrap()
        .cross_edges
        .iter()
        .map(|e| (&*e.channel, e.port))
        .collect();
    assert_eq!(ports, [("one", 5000), ("two", 5001), ("three", 5002)]);
}

/// A request edge with a protocol stays rpc across groups, over TCP,
/// without the socket file it would have had on one host.
#[test]
fn rpc_across_groups_keeps_its_protocol_over_tcp() {
    let plan = declared(
        r#"
[process.client]
cmd = ["c"]
host = "left"

[process.server]
cmd = ["s"]
host = "right"

[[edge]]
name = "api"
from = "client.api"
to = "server.api"
traffic = "request"
protocol = "json-rpc"
"#,
    );
    let channel = &plan.channels[0];
    match &channel.mechanism {
        Mechanism::Rpc(rpc) => {
            assert_eq!(rpc.transport, Transport::Tcp);
            assert_eq!(rpc.address, "0.0.0.0:47000");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !channel
            .objects()
            .iter()
            .any(|o| o.kind == ObjectKind::UnixSocket)
    );
    let edge = &plan.placement.as_ref().unwrap().cross_edges[0];
    assert_eq!((&*edge.listener_group, edge.port), ("right", 47000));
    assert_eq!(edge.client_groups.len(), 1);
    assert_eq!(&*edge.client_groups[0], "left");
}

/// Engines see the groups of any plan: the placement's, or one `local`
/// group of every process.
#[test]
fn host_groups_of_plans_with_and_without_placement() {
    let plan = declared(DECLARED);
    let groups = plan.host_groups();
    let names: Vec<&str> = groups.iter().map(|g| g.name).collect();
    assert_eq!(names, ["edge", "gpu"]);
    assert_eq!(groups[0].processes.len(), 3);
    assert_eq!(groups[1].listens.len(), 1);
    assert_eq!(groups[0].connects.len(), 1);
    let local = declared("[process.a]\ncmd = [\"a\"]\n[process.b]\ncmd = [\"b\"]\n");
    assert!(local.placement.is_none());
    let groups = local.host_groups();
    assert_eq!(groups.len(), 1);
    assert_eq!((groups[0].name, groups[0].processes.len()), ("local", 2));
}

/// A change made to a JSON plan.
type Edit = fn(&mut serde_json::Value);

/// A placement read back from JSON is checked like the rest of the plan.
#[test]
fn an_inconsistent_placement_is_refused_on_import() {
    let plan = declared(DECLARED);
    let json = serde_json::to_value(&plan).unwrap();
    let breaks: [(&str, Edit); 5] = [
        ("a host no group has", |j| {
            j["processes"][0]["host"] = "elsewhere".into()
        }),
        ("a group listing another's process", |j| {
            j["processes"][0]["host"] = "gpu".into()
        }),
        ("port 0", |j| {
            j["placement"]["cross_edges"][0]["port"] = 0.into()
        }),
        ("a crossing channel left out", |j| {
            j["placement"]["cross_edges"] = serde_json::json!([])
        }),
        ("no placement but a host", |j| {
            j.as_object_mut().unwrap().remove("placement");
        }),
    ];
    for (what, edit) in breaks {
        let mut broken = json.clone();
        edit(&mut broken);
        let text = serde_json::to_string(&broken).unwrap();
        let error = plan::import::from_json(&text, &Limits::default())
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        let codes: Vec<&str> = error.diagnostics.iter().map(|d| d.code).collect();
        assert!(codes.contains(&"E0803"), "{what}: {codes:?}");
    }
    let text = serde_json::to_string(&json).unwrap();
    let read = plan::import::from_json(&text, &Limits::default()).expect("as planned");
    assert_eq!(read.plan, plan);
}

/// An edge with an end outside the topology (an `@external` peer, which
/// finds the channel by name on one host) keeps its processes together.
#[test]
fn an_edge_to_an_external_peer_keeps_its_writers_together() {
    let planned = partitioned(
        r#"
[process.a]
cmd = ["a"]

[process.b]
cmd = ["b"]

[[edge]]
name = "report"
from = ["a.report", "b.report"]
to = "@external"
"#,
        2,
    );
    let placement = planned.plan.placement.as_ref().unwrap();
    assert_eq!(placement.groups.len(), 1);
    assert!(placement.cross_edges.is_empty());
}

/// `--hosts` splits only what can be split: an `auto` messages edge that
/// writes a queue's `depth` asked for a queue, so it binds its ends.
#[test]
fn an_option_of_a_host_local_mechanism_keeps_the_edge_on_one_host() {
    let text = r#"
[process.a]
cmd = ["a"]

[process.b]
cmd = ["b"]

[process.c]
cmd = ["c"]

[[edge]]
name = "jobs"
from = ["a.jobs", "c.jobs"]
to = "b.jobs"
traffic = "messages"
depth = 8
"#;
    let placement = partitioned(text, 2).plan.placement.unwrap();
    assert_eq!(placement.groups.len(), 1);
    let without_depth = text.replace("depth = 8\n", "");
    let placement = partitioned(&without_depth, 2).plan.placement.unwrap();
    assert_eq!(placement.groups.len(), 2);
    assert_eq!(placement.cross_edges.len(), 1);
}

/// `graph` draws each host group of a placed plan as a cluster (DOT) or a
/// subgraph (Mermaid) of its processes.
#[test]
fn graphs_draw_host_groups() {
    let plan = declared(DECLARED);
    let dot = plan::graph::dot(&plan);
    assert!(
        dot.contains(
            "subgraph \"cluster_gpu\" {\n    label=\"host group gpu\";\n    \"detect#0\";"
        ),
        "{dot}"
    );
    let mermaid = plan::graph::mermaid(&plan);
    assert!(
        mermaid.contains("subgraph g1[\"host group gpu\"]"),
        "{mermaid}"
    );
    let local = declared("[process.a]\ncmd = [\"a\"]\n");
    assert!(!plan::graph::dot(&local).contains("subgraph"));
    assert!(!plan::graph::mermaid(&local).contains("subgraph"));
}
