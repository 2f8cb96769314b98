use super::*;
use crate::plan::Limits;
use crate::topology::Topology;

fn plan_of(text: &str) -> Plan {
    let topology = Topology::parse(std::path::Path::new("t.toml"), text.to_owned()).unwrap();
    crate::plan::plan(&topology, &Limits::default())
        .unwrap()
        .plan
}

const BASE: &str = r#"
name = "demo"
[process.writer]
shell = "exec seq 10"
restart = "on-failure"
[process.reader]
shell = "exec cat"
restart = "on-failure"
env = { LEVEL = "1" }
[process.old]
cmd = ["sleep", "100"]
[[edge]]
name = "lines"
from = "writer"
to = "reader"
"#;

#[test]
fn the_same_plan_differs_in_nothing() {
    let plan = plan_of(BASE);
    let diff = diff(&plan, &plan);
    assert!(diff.is_empty());
    assert!(diff.refused.is_empty());
    assert_eq!(diff.render(), "no change\n");
}

#[test]
fn added_removed_and_changed_processes_are_named_with_what_changed() {
    let new = BASE
        .replace("LEVEL = \"1\"", "LEVEL = \"2\"")
        .replace("[process.old]", "[process.new]");
    let diff = diff(&plan_of(BASE), &plan_of(&new));
    assert_eq!(
        diff.render(),
        "~ process reader: env LEVEL\n- process old\n+ process new\n"
    );
    assert!(diff.refused.is_empty(), "{:?}", diff.refused);
    assert_eq!(
        diff.processes_of(ChangeKind::Changed).collect::<Vec<_>>(),
        ["reader"]
    );
}

#[test]
fn a_new_channel_changes_the_fds_of_its_ends() {
    let new =
        format!("{BASE}\n[[edge]]\nname = \"more\"\nfrom = \"writer.extra\"\nto = \"old.extra\"\n");
    let diff = diff(&plan_of(BASE), &plan_of(&new));
    assert_eq!(
        diff.channels_of(ChangeKind::Added).collect::<Vec<_>>(),
        ["more"]
    );
    let changed: Vec<&Change> = diff
        .processes
        .iter()
        .filter(|c| c.change == ChangeKind::Changed)
        .collect();
    assert_eq!(changed.len(), 2, "{}", diff.render());
    assert!(
        changed[0].what.iter().any(|w| w.starts_with("fd ")),
        "{}",
        diff.render()
    );
}

const SHM: &str = r#"
name = "shm"
[process.a]
cmd = ["sleep", "100"]
[process.b]
cmd = ["sleep", "100"]
[[edge]]
name = "seg"
from = "a.seg"
to = "b.seg"
traffic = "shared"
size = "SIZE"
"#;

#[test]
fn a_shared_memory_size_change_is_refused_with_the_reason() {
    let diff = diff(
        &plan_of(&SHM.replace("SIZE", "4KiB")),
        &plan_of(&SHM.replace("SIZE", "8KiB")),
    );
    assert_eq!(diff.refused.len(), 1, "{:?}", diff.refused);
    assert!(
        diff.refused[0].contains("shared-memory size changes (4096 -> 8192"),
        "{:?}",
        diff.refused
    );
    assert!(diff.render().contains("refused: channel seg"));
}

#[test]
fn a_mechanism_change_and_a_new_name_are_refused() {
    let new = BASE.replace("name = \"demo\"", "name = \"other\"").replace(
        "to = \"reader\"",
        "to = \"reader\"\nmechanism = \"socketpair\"",
    );
    let diff = diff(&plan_of(BASE), &plan_of(&new));
    let refused = diff.refused.join("\n");
    assert!(refused.contains("the run's name changes"), "{refused}");
    assert!(
        refused.contains("channel lines: its mechanism changes (pipe -> socketpair)"),
        "{refused}"
    );
}

#[test]
fn an_added_process_with_a_health_check_is_taken_live() {
    let new = format!(
        "{BASE}\n[process.checked]\ncmd = [\"sleep\", \"100\"]\nhealth = {{ exec = [\"true\"] }}\n"
    );
    let diff = diff(&plan_of(BASE), &plan_of(&new));
    assert!(diff.refused.is_empty(), "{:?}", diff.refused);
    assert_eq!(
        diff.processes_of(ChangeKind::Added).collect::<Vec<_>>(),
        ["checked"]
    );
}

#[test]
fn the_diff_round_trips_as_json() {
    let new = BASE.replace("LEVEL = \"1\"", "LEVEL = \"2\"");
    let diff = diff(&plan_of(BASE), &plan_of(&new));
    let json = serde_json::to_string(&diff).unwrap();
    assert_eq!(
        json,
        r#"{"processes":[{"change":"changed","name":"reader","what":["env LEVEL"]}],"channels":[]}"#
    );
    assert_eq!(serde_json::from_str::<PlanDiff>(&json).unwrap(), diff);
}

const SIGNALS: &str = r#"
name = "signals"
[process.waker]
cmd = ["sleep", "100"]
[process.sleeper]
cmd = ["sleep", "100"]
"#;

#[test]
fn a_signal_edge_added_or_removed_changes_its_ends() {
    let with_edge = format!(
        "{SIGNALS}[[edge]]\nname = \"wake\"\nfrom = \"waker.wake\"\nto = \"sleeper.wake\"\ntraffic = \"notify\"\nsignal = \"SIGUSR1\"\n"
    );
    for (old, new) in [(SIGNALS, with_edge.as_str()), (&with_edge, SIGNALS)] {
        let diff = diff(&plan_of(old), &plan_of(new));
        assert!(diff.refused.is_empty(), "{:?}", diff.refused);
        let changed: Vec<&str> = diff.processes_of(ChangeKind::Changed).collect();
        assert_eq!(changed, ["waker", "sleeper"]);
    }
}

#[test]
fn a_changed_health_check_and_readiness_are_taken_live() {
    let new = BASE.replace(
        "env = { LEVEL = \"1\" }",
        "env = { LEVEL = \"1\" }\nready = \"notify\"\nhealth = { exec = [\"true\"] }",
    );
    let diff = diff(&plan_of(BASE), &plan_of(&new));
    assert!(diff.refused.is_empty(), "{:?}", diff.refused);
    assert!(
        diff.render().contains("~ process reader"),
        "{}",
        diff.render()
    );
}

#[test]
fn port_values_compare_by_their_text_not_by_their_channel_index() {
    let ports = "[process.a]\ncmd = [\"a\"]\n[process.b]\ncmd = [\"b\"]\n\
                 [[edge]]\nname = \"link\"\nfrom = \"a.out\"\nto = \"b.in\"\n";
    let plan = plan_of(ports);
    // The planner's values are references, the JSON's text.
    let json = serde_json::to_string(&plan).unwrap();
    let read = crate::plan::import::from_json(&json, &Limits::default())
        .unwrap()
        .plan;
    assert!(diff(&plan, &read).is_empty());
    assert!(diff(&read, &plan).is_empty());
    // An edge declared first moves `link` to another index; a's and b's
    // values read the same.
    let moved = ports.replace(
        "[[edge]]\nname = \"link\"",
        "[process.c]\ncmd = [\"c\"]\n[process.d]\ncmd = [\"d\"]\n\
         [[edge]]\nname = \"first\"\nfrom = \"c.out\"\nto = \"d.in\"\n\
         [[edge]]\nname = \"link\"",
    );
    assert_eq!(
        diff(&plan, &plan_of(&moved)).render(),
        "+ process c\n+ process d\n+ channel first\n"
    );
}
