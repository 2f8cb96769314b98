//! Random topologies either plan or explain why not: never a panic, every
//! label inside the file, and the same text always gives the same plan.

use std::path::Path;

use ipc_run::plan::{self, Limits};
use ipc_run::topology::{Topology, TopologyError};
use proptest::prelude::*;

use crate::harness::{KNOWN_MECHANISMS as MECHANISMS, TRAFFIC};

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => "[a-d]",
        1 => "[a-z][a-z0-9_-]{0,6}",
        1 => ".{0,4}",
    ]
}

fn endpoint() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => name(),
        10 => (name(), "[a-z]{1,3}").prop_map(|(p, port)| format!("{p}.{port}")),
        1 => Just("@stdin".to_owned()),
        1 => Just("@stdout".to_owned()),
        1 => Just("@external".to_owned()),
        1 => ".{0,6}",
    ]
}

fn endpoints() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        12 => prop::collection::vec(endpoint(), 1..2),
        2 => prop::collection::vec(endpoint(), 2..4),
        1 => Just(Vec::new()),
    ]
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a JSON string is a TOML basic string")
}

fn toml_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
    format!("[{}]", items.join(", "))
}

#[derive(Debug, Clone)]
struct Edge {
    name: Option<String>,
    from: Vec<String>,
    to: Vec<String>,
    traffic: Option<usize>,
    mechanism: Option<usize>,
    size: Option<u64>,
    message_size: Option<u64>,
    depth: Option<i64>,
    in_flight: Option<u64>,
    duplex: Option<bool>,
    deliver_path: bool,
}

fn edge() -> impl Strategy<Value = Edge> {
    (
        prop::option::of(name()),
        endpoints(),
        endpoints(),
        prop::option::weighted(0.2, 0..TRAFFIC.len()),
        prop::option::weighted(0.2, 0..MECHANISMS.len()),
        prop::option::weighted(0.2, 0u64..1 << 34),
        prop::option::weighted(0.2, 0u64..20_000),
        prop::option::weighted(0.2, -2i64..20),
        prop::option::weighted(0.2, 0u64..300_000),
        prop::option::weighted(0.2, any::<bool>()),
        any::<bool>(),
    )
        .prop_map(|e| Edge {
            name: e.0,
            from: e.1,
            to: e.2,
            traffic: e.3,
            mechanism: e.4,
            size: e.5,
            message_size: e.6,
            depth: e.7,
            in_flight: e.8,
            duplex: e.9,
            deliver_path: e.10,
        })
}

#[derive(Debug, Clone)]
struct Process {
    name: String,
    after: Vec<String>,
    replicas: Option<i64>,
    fd: Option<(String, i64)>,
}

fn process() -> impl Strategy<Value = Process> {
    (
        name(),
        prop::collection::vec(name(), 0..2).prop_map(|mut after| {
            after.truncate(if after.len() > 1 { 1 } else { after.len() });
            after
        }),
        prop::option::weighted(0.3, -1i64..4),
        prop::option::weighted(0.2, ("[a-z]{1,3}", -1i64..1100)),
    )
        .prop_map(|(name, after, replicas, fd)| Process {
            name,
            after,
            replicas,
            fd,
        })
}

fn render(processes: &[Process], edges: &[Edge], pipeline: &[String]) -> String {
    let mut text = String::new();
    if !pipeline.is_empty() {
        text.push_str(&format!("pipeline = {}\n", toml_list(pipeline)));
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in processes {
        // A repeated table is a TOML error found elsewhere; keep most
        // cases past the parser.
        if !seen.insert(p.name.clone()) {
            continue;
        }
        text.push_str(&format!(
            "\n[process.{}]\ncmd = [\"run\"]\n",
            toml_string(&p.name)
        ));
        if !p.after.is_empty() {
            text.push_str(&format!("after = {}\n", toml_list(&p.after)));
        }
        if let Some(r) = p.replicas {
            text.push_str(&format!("replicas = {r}\n"));
        }
        if let Some((port, fd)) = &p.fd {
            text.push_str(&format!(
                "[process.{}.ports.{port}]\nfd = {fd}\n",
                toml_string(&p.name)
            ));
        }
    }
    for e in edges {
        text.push_str("\n[[edge]]\n");
        if let Some(name) = &e.name {
            text.push_str(&format!("name = {}\n", toml_string(name)));
        }
        text.push_str(&format!(
            "from = {}\nto = {}\n",
            toml_list(&e.from),
            toml_list(&e.to)
        ));
        if let Some(t) = e.traffic {
            text.push_str(&format!("traffic = \"{}\"\n", TRAFFIC[t]));
        }
        if let Some(m) = e.mechanism {
            text.push_str(&format!("mechanism = \"{}\"\n", MECHANISMS[m]));
        }
        if let Some(v) = e.size {
            text.push_str(&format!("size = {v}\n"));
        }
        if let Some(v) = e.message_size {
            text.push_str(&format!("message_size = {v}\n"));
        }
        if let Some(v) = e.depth {
            text.push_str(&format!("depth = {v}\n"));
        }
        if let Some(v) = e.in_flight {
            text.push_str(&format!("in_flight = {v}\n"));
        }
        if let Some(v) = e.duplex {
            text.push_str(&format!("duplex = {v}\n"));
        }
        if e.deliver_path {
            text.push_str("deliver = \"path\"\n");
        }
    }
    text
}

fn topology_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(process(), 0..5),
        prop::collection::vec(edge(), 0..5),
        prop_oneof![4 => Just(Vec::new()), 1 => prop::collection::vec(endpoint(), 1..4)],
    )
        .prop_map(|(extra, edges, pipeline)| {
            // The usual names are always declared, so most endpoints resolve.
            let mut processes: Vec<Process> = ["a", "b", "c", "d"]
                .iter()
                .map(|n| Process {
                    name: (*n).to_owned(),
                    after: Vec::new(),
                    replicas: None,
                    fd: None,
                })
                .collect();
            for p in extra {
                match processes.iter_mut().find(|q| q.name == p.name) {
                    Some(q) => *q = p,
                    None => processes.push(p),
                }
            }
            render(&processes, &edges, &pipeline)
        })
}

/// Plans the text; returns the text and JSON plans, or checks the errors.
fn plan_once(text: &str) -> Option<(String, String)> {
    let topology = match Topology::parse(Path::new("random.toml"), text.to_owned()) {
        Ok(topology) => topology,
        Err(TopologyError::Parse {
            diagnostic,
            source_text,
            ..
        }) => {
            for label in &diagnostic.labels {
                assert!(label.span.end <= source_text.len(), "{diagnostic:?}");
            }
            let _ = diagnostic.render("random.toml", &source_text, false);
            return None;
        }
        Err(other) => panic!("{other}"),
    };
    match plan::plan(&topology, &Limits::default()) {
        Ok(planned) => Some((
            plan::render::text(&planned.plan),
            serde_json::to_string(&planned.plan).expect("plans serialise"),
        )),
        Err(error) => {
            assert!(error.error_count() > 0);
            for diagnostic in &error.diagnostics {
                if diagnostic.is_error() {
                    assert!(!diagnostic.labels.is_empty(), "{diagnostic:?}\n{text}");
                }
                for label in &diagnostic.labels {
                    assert!(
                        label.span.start <= label.span.end && label.span.end <= text.len(),
                        "label outside the file: {diagnostic:?}\n{text}"
                    );
                    assert!(text.is_char_boundary(label.span.start));
                }
                let _ = diagnostic.render("random.toml", text, false);
            }
            None
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_topologies_plan_or_explain_deterministically(text in topology_text()) {
        let first = plan_once(&text);
        let second = plan_once(&text);
        prop_assert_eq!(first, second);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let _ = plan_once(&text);
    }

    #[test]
    fn toml_like_noise_never_panics(text in "[\\[\\]a-z.=\"{}, \n0-9@#-]{0,200}") {
        let _ = plan_once(&text);
    }
}
