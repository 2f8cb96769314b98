//! The plan round trip: a plan written as JSON reads back as the same plan,
//! `ipc-run run --plan` runs it as `run FILE` would, and a plan file that is
//! broken, foreign or too big for this host is refused (exit 1) before
//! anything is created.

use std::path::Path;
use std::process::Command;

use ipc_run::plan::{self, Limits, Plan};
use ipc_run::topology::Topology;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use crate::support::*;

// ----- plan -> json -> plan --------------------------------------------------

/// Writes the plan as `ipc-run plan --format json` does, reads it back as
/// `run --plan` does, and checks nothing changed.
fn assert_round_trip(plan: &Plan) -> Result<(), TestCaseError> {
    let json = serde_json::to_string_pretty(plan).expect("plans serialise");
    let read = plan::import::from_json(&json, &plan.limits)
        .unwrap_or_else(|e| panic!("{:?}\n{json}", e.diagnostics));
    prop_assert_eq!(&read.plan, plan);
    let again = serde_json::to_string_pretty(&read.plan).expect("plans serialise");
    prop_assert_eq!(again, json);
    prop_assert_eq!(read.warnings.len(), plan.warnings.len());
    Ok(())
}

#[test]
fn every_shipped_topology_round_trips() {
    let dir = Path::new(MANIFEST_DIR).join("topologies");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let topology = Topology::load(&file).unwrap();
        let planned = plan::plan(&topology, &Limits::default()).unwrap();
        assert_round_trip(&planned.plan).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

/// An instance's rarely set fields live out of line in the plan; its JSON
/// still has every field in place, in the order of the plan format, and
/// reads back as the same plan.
#[test]
fn rarely_set_instance_fields_keep_their_place_in_the_json() {
    let text = r#"
[process.db]
cmd = ["db"]
user = "nobody"
group = "nogroup"
forward_signals = ["SIGHUP"]
health = { exec = ["true"] }
watchdog = "5s"
restart_dependents = true
[process.app]
cmd = ["app"]
after = { db = "healthy" }
[[edge]]
from = "app"
to = "db"
"#;
    let topology = Topology::parse(Path::new("rare.toml"), text.to_owned()).unwrap();
    let planned = plan::plan(&topology, &Limits::default()).unwrap();
    assert_round_trip(&planned.plan).unwrap();
    let keys = |i: usize| -> Vec<String> {
        let json = serde_json::to_string(&planned.plan.processes[i]).unwrap();
        serde_json::from_str::<KeyOrder>(&json).unwrap().0
    };
    let common = "name process replica host argv shell cwd";
    let lifecycle =
        "fds ready ready_timeout_ms restart stop_signal stop_timeout_ms after forward_signals";
    assert_eq!(
        keys(0).join(" "),
        format!(
            "{common} user group env inherit_env {lifecycle} health watchdog_ms restart_dependents"
        )
    );
    assert_eq!(
        keys(1).join(" "),
        format!("{common} env inherit_env {lifecycle} conditions")
    );
    let db = &planned.plan.processes[0];
    assert_eq!(db.user.as_deref(), Some("nobody"));
    assert_eq!(db.watchdog_ms, Some(5000));
    assert!(planned.plan.processes[1].user.is_none());
}

/// `ProcessPlan` is written field by field: an instance with every field
/// set writes every property the plan schema gives an instance, so a field
/// cannot be left out of the JSON by accident.
/// The variables every instance has alike are one list shared by the plan's
/// instances: each instance still reads, changes and writes its environment
/// as one list of its own.
#[test]
fn an_instance_environment_is_one_list_of_its_own() {
    let text = "[process.a]\ncmd = [\"a\"]\n[process.b]\ncmd = [\"b\"]\n";
    let topology = Topology::parse(Path::new("shared.toml"), text.into()).expect("valid");
    let planned = plan::plan(&topology, &Limits::default()).expect("plans");
    let [a, b] = &planned.plan.processes[..] else {
        panic!("two instances")
    };
    let names = |p: &plan::ProcessPlan| -> Vec<String> {
        p.env.iter().map(|v| v.name.to_string()).collect()
    };
    assert_eq!(
        names(a)[..4],
        [
            "IPC_RUN_ID",
            "IPC_RUN_DIR",
            "IPC_RUN_TOPOLOGY",
            "IPC_RUN_PROCESS"
        ]
    );
    assert_eq!(a.env.len(), names(a).len());
    // A change to one instance's copy of a shared variable stays its own.
    let mut changed = a.clone();
    for var in changed.env.as_mut_slice() {
        if &*var.name == "IPC_RUN_TOPOLOGY" {
            var.value = "other".into();
        }
    }
    changed.env.push(plan::EnvVar {
        name: "EXTRA".into(),
        value: "1".into(),
    });
    let value = |p: &plan::ProcessPlan, name: &str| -> Option<String> {
        p.env
            .iter()
            .find(|v| &*v.name == name)
            .and_then(|v| v.value.as_text())
            .map(str::to_owned)
    };
    assert_eq!(
        value(&changed, "IPC_RUN_TOPOLOGY").as_deref(),
        Some("other")
    );
    assert_eq!(value(&changed, "EXTRA").as_deref(), Some("1"));
    assert_eq!(changed.env.iter().last().map(|v| &*v.name), Some("EXTRA"));
    assert_eq!(value(a, "IPC_RUN_TOPOLOGY").as_deref(), Some("shared"));
    assert_eq!(value(b, "IPC_RUN_TOPOLOGY").as_deref(), Some("shared"));
    // Written as the one list it reads as, and equal to it read back.
    let json = serde_json::to_value(&a.env).unwrap();
    let listed: Vec<&plan::EnvVar> = a.env.iter().collect();
    assert_eq!(json, serde_json::to_value(&listed).unwrap());
    let read: plan::Env = serde_json::from_value(json).unwrap();
    assert_eq!(read, a.env);
}

#[test]
fn an_instance_with_every_field_set_writes_every_schema_property() {
    let text = "[process.a]\ncmd = [\"a\"]\n[process.b]\ncmd = [\"b\"]\n[[edge]]\nfrom = \"a\"\nto = \"b\"\n";
    let topology = Topology::parse(Path::new("all.toml"), text.to_owned()).unwrap();
    let planned = plan::plan(&topology, &Limits::default()).unwrap();
    let mut instance = planned.plan.processes[0].clone();
    instance.user = Some("nobody".into());
    instance.group = Some("nogroup".into());
    instance.env_files = vec!["/etc/a.env".into()];
    instance.conditions = vec![plan::AfterCondition {
        instance: "b".into(),
        condition: ipc_run::topology::Condition::Healthy,
    }];
    instance.health = Some(plan::HealthPlan {
        check: plan::HealthCheck::Tcp {
            address: "127.0.0.1:1".into(),
        },
        interval_ms: 1,
        timeout_ms: 1,
        retries: 1,
        start_period_ms: 0,
    });
    instance.watchdog_ms = Some(1);
    instance.restart_dependents = true;
    instance.managed = Some(Box::new(plan::Managed {
        role: plan::ManagedRole::Broker,
        channel: "e0".into(),
        reason: "test".into(),
    }));
    let json = serde_json::to_string(&instance.in_plan(&planned.plan.channels)).unwrap();
    let mut written = serde_json::from_str::<KeyOrder>(&json).unwrap().0;
    written.sort();
    let schema: serde_json::Value =
        serde_json::from_str(&ipc_run::cli::schema(ipc_run::cli::SchemaKind::Plan)).unwrap();
    let mut properties: Vec<String> = schema["$defs"]["ProcessPlan"]["properties"]
        .as_object()
        .expect("the schema describes ProcessPlan")
        .keys()
        .cloned()
        .collect();
    properties.sort();
    assert_eq!(written, properties);
}

/// The keys of a JSON object in the order written.
struct KeyOrder(Vec<String>);

impl<'de> serde::Deserialize<'de> for KeyOrder {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = KeyOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<KeyOrder, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(key);
                }
                Ok(KeyOrder(keys))
            }
        }
        deserializer.deserialize_map(Keys)
    }
}

/// Per traffic: the mechanisms that can carry it (`auto` first).
const MECHANISMS: &[(&str, &[&str])] = &[
    (
        "stream",
        &["auto", "pipe", "fifo", "socketpair", "unix-listener", "tcp"],
    ),
    (
        "messages",
        &[
            "auto",
            "posix-mq",
            "sysv-mq",
            "socketpair",
            "unix-listener",
            "udp",
        ],
    ),
    ("shared", &["auto", "posix-shm", "sysv-shm"]),
    ("request", &["auto", "unix-listener", "tcp", "rpc"]),
    ("notify", &["auto", "signal", "posix-sem", "sysv-sem"]),
];
const READY: &[&str] = &["\"started\"", "\"notify\"", "{ fd = 60 }"];
const RESTART: &[&str] = &["never", "on-failure", "always"];

/// One process table: replicas, readiness, restart policy, env, signals.
/// `a` is never replicated: it may be `exit_code_from`.
fn process_table() -> impl Strategy<Value = String> {
    (
        prop::option::weighted(0.3, 2u32..4),
        prop::option::weighted(0.3, 0..READY.len()),
        prop::option::weighted(0.3, 0..RESTART.len()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(replicas, ready, restart, env, signals)| {
            let mut text = String::from("cmd = [\"run\", \"--flag\"]\n");
            if let Some(r) = replicas {
                text.push_str(&format!("REPLICAS = {r}\n"));
            }
            if let Some(r) = ready {
                text.push_str(&format!("ready = {}\n", READY[r]));
            }
            if let Some(r) = restart {
                text.push_str(&format!("restart = \"{}\"\n", RESTART[r]));
            }
            if env {
                text.push_str(
                    "env = { MODE = \"fast\", EMPTY = \"\" }\ninherit_env = [\"HOME\"]\n",
                );
            }
            if signals {
                text.push_str("stop_signal = \"SIGINT\"\nforward_signals = [\"SIGHUP\"]\n");
            }
            text
        })
}

/// One edge between two of the processes `a` to `d`, on ports named after
/// the edge, with a mechanism that can carry its traffic and the options
/// that mechanism takes.
fn edge_table() -> impl Strategy<Value = (usize, usize, usize, usize, u64, bool)> {
    (
        0usize..4,
        0usize..4,
        0..MECHANISMS.len(),
        0usize..6,
        64u64..1 << 16,
        any::<bool>(),
    )
}

fn render_edge(
    i: usize,
    (from, to, traffic, mechanism, number, flag): (usize, usize, usize, usize, u64, bool),
) -> String {
    let names = ["a", "b", "c", "d"];
    let to = if to == from { (to + 1) % 4 } else { to };
    let (traffic, choices) = MECHANISMS[traffic];
    let mechanism = choices[mechanism % choices.len()];
    let mut text = format!(
        "\n[[edge]]\nname = \"e{i}x\"\nfrom = \"{}.o{i}\"\nto = \"{}.i{i}\"\ntraffic = \"{traffic}\"\nmechanism = \"{mechanism}\"\n",
        names[from], names[to]
    );
    match (traffic, mechanism) {
        ("shared", _) => text.push_str(&format!("size = {}\n", number * 64)),
        ("messages", "posix-mq" | "sysv-mq") => {
            text.push_str(&format!(
                "message_size = {}\ndepth = {}\n",
                number % 4096 + 1,
                number % 8 + 1
            ));
        }
        ("request", "rpc") => text.push_str("protocol = \"http\"\n"),
        ("stream", "socketpair") if flag => text.push_str("duplex = true\n"),
        _ => {}
    }
    if flag && traffic == "stream" {
        text.push_str(&format!("in_flight = {number}\n"));
    }
    text
}

fn topology_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(process_table(), 4),
        prop::collection::vec(edge_table(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(processes, edges, exit_code_from)| {
            let mut text = String::from("name = \"random\"\n");
            if exit_code_from {
                text.push_str("exit_code_from = \"a\"\n");
            }
            for (name, table) in ["a", "b", "c", "d"].iter().zip(processes) {
                text.push_str(&format!("\n[process.{name}]\n"));
                let replicas = if *name == "a" {
                    "# replicas"
                } else {
                    "replicas"
                };
                text.push_str(&table.replace("REPLICAS", replicas));
            }
            for (i, edge) in edges.into_iter().enumerate() {
                text.push_str(&render_edge(i, edge));
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn plan_json_plan_is_identity(text in topology_text()) {
        let topology = Topology::parse(Path::new("random.toml"), text.clone())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        if let Ok(planned) = plan::plan(&topology, &Limits::default()) {
            assert_round_trip(&planned.plan)?;
        }
    }
}

/// `exit_code_from` names the declared process, whose one instance is
/// `a#0` when it says `replicas = 1`.
#[test]
fn exit_code_from_a_single_replica_round_trips() {
    let text = "exit_code_from = \"a\"\n[process.a]\ncmd = [\"run\"]\nreplicas = 1\n";
    let topology = Topology::parse(Path::new("one.toml"), text.to_owned()).unwrap();
    let planned = plan::plan(&topology, &Limits::default()).unwrap();
    assert_eq!(&*planned.plan.processes[0].name, "a#0");
    assert_round_trip(&planned.plan).unwrap();
}

/// The generator reaches valid plans, not only errors: otherwise the
/// property above would hold vacuously.
#[test]
fn the_generator_makes_valid_plans() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = topology_text();
    let valid = (0..200)
        .filter(|_| {
            let text = strategy.new_tree(&mut runner).unwrap().current();
            let topology = Topology::parse(Path::new("random.toml"), text).unwrap();
            plan::plan(&topology, &Limits::default()).is_ok_and(|p| !p.plan.channels.is_empty())
        })
        .count();
    assert!(
        valid >= 100,
        "only {valid} of 200 generated topologies plan"
    );
}

// ----- run --plan ------------------------------------------------------------

/// `ipc-run plan FILE --format json` into the scratch directory.
fn write_plan(scratch: &Scratch, topology: &Path, name: &str) -> std::path::PathBuf {
    let output = Command::new(IPC_RUN)
        .args(["plan", "--format", "json"])
        .arg(topology)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let path = scratch.dir.join(name);
    std::fs::write(&path, &output.stdout).unwrap();
    path
}

/// `ipc-run run --plan PLAN --runtime-dir RT -q`.
fn run_plan(scratch: &Scratch, plan: &Path) -> Finished {
    run_captured(
        Command::new(IPC_RUN)
            .args(["--color", "never", "run", "-q", "--plan"])
            .arg(plan)
            .arg("--runtime-dir")
            .arg(scratch.runtime()),
    )
}

#[test]
fn run_plan_prints_what_run_file_prints() {
    let scratch = Scratch::new("run-plan-same");
    let topology = Path::new(MANIFEST_DIR).join("topologies/pipeline.toml");
    let plan = write_plan(&scratch, &topology, "pipeline.json");
    let from_plan = run_plan(&scratch, &plan);
    let from_file = run_captured(
        Command::new(IPC_RUN)
            .args(["--color", "never", "run", "-q"])
            .arg(&topology)
            .arg("--runtime-dir")
            .arg(scratch.runtime()),
    );
    assert_eq!(from_file.code, 0, "{}", from_file.stderr);
    assert_eq!(from_plan.code, from_file.code, "{}", from_plan.stderr);
    assert_eq!(from_plan.stdout_text(), "40951\n");
    assert_eq!(from_plan.stdout, from_file.stdout);
    scratch.assert_left_nothing();
}

/// A plan file that must be refused: exit 1, `code` on stderr with `what`,
/// and no run directory.
fn assert_refused(case: &str, edit: impl Fn(&str) -> String, code: &str, what: &str) {
    let scratch = Scratch::new(case);
    let topology = Path::new(MANIFEST_DIR).join("topologies/mq.toml");
    let good = write_plan(&scratch, &topology, "good.json");
    let text = edit(&std::fs::read_to_string(good).unwrap());
    let bad = scratch.dir.join("bad.json");
    std::fs::write(&bad, text).unwrap();
    let finished = run_plan(&scratch, &bad);
    assert_eq!(finished.code, 1, "{}", finished.stderr);
    assert!(finished.stdout.is_empty());
    let headline = format!("error[{code}]: ");
    assert!(finished.stderr.contains(&headline), "{}", finished.stderr);
    assert!(finished.stderr.contains(what), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("bad.json`: "),
        "no summary line: {}",
        finished.stderr
    );
    assert!(
        !scratch.runtime().exists(),
        "a refused plan created its runtime directory"
    );
}

#[test]
fn malformed_json_is_refused_at_its_line() {
    assert_refused(
        "plan-malformed",
        |text| text.replacen("\"processes\": [", "\"processes\": [,", 1),
        "E0801",
        "bad.json:4:",
    );
}

#[test]
fn an_unknown_field_is_refused() {
    assert_refused(
        "plan-unknown-field",
        |text| text.replacen("\"name\": ", "\"colour\": 1,\n  \"name\": ", 1),
        "E0801",
        "unknown field `colour`",
    );
}

#[test]
fn another_format_version_is_refused() {
    assert_refused(
        "plan-version",
        |text| text.replacen("\"format_version\": 1", "\"format_version\": 2", 1),
        "E0802",
        "format_version 2",
    );
}

#[test]
fn a_queue_deeper_than_this_host_allows_is_refused() {
    // 100 000 is above the kernel's own ceiling for msg_max (65 536).
    assert_refused(
        "plan-limit",
        |text| {
            let plan: serde_json::Value = serde_json::from_str(text).unwrap();
            let mut plan = plan;
            for channel in plan["channels"].as_array_mut().unwrap() {
                if channel["mechanism"]["kind"] == "posix-mq" {
                    channel["mechanism"]["depth"] = 100_000.into();
                }
            }
            serde_json::to_string_pretty(&plan).unwrap()
        },
        "E0602",
        "a POSIX queue on this host holds at most",
    );
}

#[test]
fn an_order_naming_an_unknown_process_is_refused() {
    assert_refused(
        "plan-order",
        |text| {
            let mut plan: serde_json::Value = serde_json::from_str(text).unwrap();
            plan["start_order"][0] = "ghost".into();
            serde_json::to_string_pretty(&plan).unwrap()
        },
        "E0803",
        "start_order names `ghost`",
    );
}

/// The plan `text` with `edit` applied to its JSON value.
fn edit_json(text: &str, edit: impl Fn(&mut serde_json::Value)) -> String {
    let mut plan: serde_json::Value = serde_json::from_str(text).unwrap();
    edit(&mut plan);
    serde_json::to_string_pretty(&plan).unwrap()
}

#[test]
fn an_after_cycle_is_refused() {
    // Nothing could start first: a run would start nothing and wait forever.
    assert_refused(
        "plan-after-cycle",
        |text| {
            edit_json(text, |plan| {
                plan["processes"][0]["after"] = serde_json::json!(["reader"]);
                plan["processes"][3]["after"] = serde_json::json!(["writer#0"]);
            })
        },
        "E0401",
        "start-order cycle: writer#0 -> reader -> writer#0",
    );
}

#[test]
fn a_start_order_that_contradicts_after_is_refused() {
    // `reader` is last in start_order, so `writer#0` would start before it.
    assert_refused(
        "plan-order-after",
        |text| {
            edit_json(text, |plan| {
                plan["processes"][0]["after"] = serde_json::json!(["reader"]);
            })
        },
        "E0803",
        "start_order starts `writer#0` before `reader`, but `writer#0` waits for `reader` (after)",
    );
}

#[test]
fn notify_readiness_as_another_user_is_refused() {
    assert_refused(
        "plan-notify-user",
        |text| {
            edit_json(text, |plan| {
                plan["processes"][3]["user"] = "nobody".into();
                plan["processes"][3]["ready"] = serde_json::json!({ "kind": "notify" });
            })
        },
        "E0710",
        "`reader` runs as `nobody` but cannot reach the notify socket",
    );
}

/// Instances that add no variable of their own share one `inherit_env`
/// list (and replicas share their process's), which is what keeps a large
/// plan small; the JSON is the same as a list per instance.
#[test]
fn instances_share_their_inherit_env_list() {
    let text = "[process.a]\ncmd = [\"x\"]\n[process.b]\ncmd = [\"y\"]\n\
                [process.c]\ncmd = [\"z\"]\nreplicas = 2\ninherit_env = [\"EXTRA\"]\n";
    let topology = Topology::parse(Path::new("t.toml"), text.to_owned()).expect("parses");
    let plan = plan::plan(&topology, &Limits::default())
        .expect("plans")
        .plan;
    let list = |name: &str| {
        let p = plan.processes.iter().find(|p| &*p.name == name);
        std::sync::Arc::clone(&p.expect("an instance").inherit_env)
    };
    assert!(std::sync::Arc::ptr_eq(&list("a"), &list("b")));
    assert!(std::sync::Arc::ptr_eq(&list("c#0"), &list("c#1")));
    assert!(!std::sync::Arc::ptr_eq(&list("a"), &list("c#0")));
    assert_eq!(list("c#0").last().map(|n| &**n), Some("EXTRA"));
    let json = serde_json::to_value(&plan).expect("serializes");
    assert_eq!(json["processes"][0]["inherit_env"][0], "PATH");
}

/// Replicas, and processes run with the same command, share one argv list;
/// the JSON is the same as a list per instance.
#[test]
fn instances_with_one_command_share_their_argv() {
    let text = "[process.a]\ncmd = [\"worker\", \"-v\"]\n[process.b]\ncmd = [\"worker\", \"-v\"]\n\
                [process.c]\ncmd = [\"other\"]\nreplicas = 2\n";
    let topology = Topology::parse(Path::new("t.toml"), text.to_owned()).expect("parses");
    let plan = plan::plan(&topology, &Limits::default())
        .expect("plans")
        .plan;
    let argv = |name: &str| {
        let p = plan.processes.iter().find(|p| &*p.name == name);
        std::sync::Arc::clone(&p.expect("an instance").argv)
    };
    assert!(std::sync::Arc::ptr_eq(&argv("a"), &argv("b")));
    assert!(std::sync::Arc::ptr_eq(&argv("c#0"), &argv("c#1")));
    assert!(!std::sync::Arc::ptr_eq(&argv("a"), &argv("c#0")));
    let json = serde_json::to_value(&plan).expect("serializes");
    assert_eq!(
        json["processes"][0]["argv"],
        serde_json::json!(["worker", "-v"])
    );
}

/// Wiring reads the channels' ports from chunks of 1024 channels and each
/// instance's ends from blocks of 1024 instances, dropping each once it is
/// wired: over several of both, with one channel open from the first
/// process to the last, every endpoint still gets the fd its instance's
/// table has.
#[test]
fn fds_are_wired_across_chunks_of_channels_and_instances() {
    use ipc_run::plan::{EndpointPlan, FdRole};
    let n = 2500;
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!("[process.p{i}]\ncmd = [\"w\"]\n"));
    }
    text.push_str(&format!(
        "[[edge]]\nfrom = \"p0.far\"\nto = \"p{}.far\"\n",
        n - 1
    ));
    for i in 0..n - 1 {
        text.push_str(&format!("[[edge]]\nfrom = \"p{i}\"\nto = \"p{}\"\n", i + 1));
        text.push_str(&format!(
            "[[edge]]\nfrom = \"p{i}.tx\"\nto = \"p{}.rx\"\n",
            i + 1
        ));
    }
    let topology = Topology::parse(Path::new("t.toml"), text).expect("parses");
    let plan = plan::plan_capped(&topology, &Limits::default(), n)
        .expect("plans")
        .plan;
    assert_eq!(plan.channels.len(), 2 * (n - 1) + 1);
    let mut checked = 0;
    for channel in &plan.channels {
        for endpoint in channel.ends() {
            let EndpointPlan::Port { process, fd, .. } = endpoint else {
                panic!("every endpoint is a process's port");
            };
            let instance = plan.processes.iter().find(|p| p.name == *process);
            let in_table = instance.expect("an instance").fds.iter().find(|slot| {
                matches!(&slot.role, FdRole::Channel { channel: id, .. } if *id == channel.id)
            });
            assert_eq!(
                fd.get().expect("handed over as an fd"),
                in_table.expect("in its table").fd
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * plan.channels.len());
}

/// A reason that is fixed text is borrowed, not copied into every channel.
#[test]
fn fixed_reasons_are_not_copied_per_channel() {
    let text = "[process.a]\ncmd = [\"x\"]\n[process.b]\ncmd = [\"y\"]\n\
                [[edge]]\nfrom = \"a\"\nto = \"b\"\n";
    let topology = Topology::parse(Path::new("t.toml"), text.to_owned()).expect("parses");
    let plan = plan::plan(&topology, &Limits::default())
        .expect("plans")
        .plan;
    let reason = &plan.channels[0].reason;
    assert!(matches!(reason, std::borrow::Cow::Borrowed(_)), "{reason}");
}
