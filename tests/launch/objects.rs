//! Named objects: a pre-existing name fails closed and is left untouched
//! (F7) with everything created before it rolled back (F6); `clean`
//! removes a dead run's objects and skips a live run (F5).

use crate::support::launch as launch_common;
use crate::support::{EXIT_0, names_containing, probe_pair};

use std::os::unix::fs::PermissionsExt;

use ipc_run::launch::{LaunchError, clean, prepare};
use ipc_run::plan::{Mechanism, Plan};
use launch_common::{options, plan, root};

fn topology() -> String {
    probe_pair(EXIT_0, EXIT_0, &["fifo", "mq", "shm", "sem", "vmq"])
}

fn shm_files() -> Vec<String> {
    names_containing("/dev/shm", "ipc-run")
}

/// `plan` with every run-id placeholder in its object names followed by
/// `marker`, so that this case's objects are told from those that cases
/// running at the same time (cargo-nextest runs them in parallel
/// processes) create and remove in /dev/shm.
fn with_marked_names(plan: &Plan, marker: &str) -> Plan {
    let json = serde_json::to_string(plan).unwrap();
    assert!(
        json.contains("{run_id}"),
        "the plan names objects by run id"
    );
    serde_json::from_str(&json.replace("{run_id}", &format!("{{run_id}}{marker}"))).unwrap()
}

#[test]
fn a_pre_existing_name_fails_closed_and_everything_before_it_is_rolled_back() {
    launch_common::take_turn_with_host_objects();
    let marker = format!("-squat{}", std::process::id());
    let base = with_marked_names(&plan(&topology()), &marker);
    for victim in ["shm", "sem"] {
        let squatted = format!("/ipc-run-squat-{}-{victim}", std::process::id());
        let mut plan: Plan = base.clone();
        let file = match victim {
            "shm" => {
                let Mechanism::PosixShm(shm) = &mut plan.channels[2].mechanism else {
                    panic!()
                };
                shm.name = squatted.clone();
                format!("/dev/shm{squatted}")
            }
            _ => {
                let Mechanism::PosixSem(sem) = &mut plan.channels[3].mechanism else {
                    panic!()
                };
                sem.name = squatted.clone();
                format!("/dev/shm/sem.{}", &squatted[1..])
            }
        };
        // Someone else's object, world-readable, with content.
        std::fs::write(&file, b"not yours").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let root = root();
        let err = prepare(&plan, &options(&root)).unwrap_err();
        assert!(
            matches!(&err, LaunchError::Exists { name, .. } if *name == squatted),
            "{err}"
        );
        assert!(err.to_string().contains(&squatted), "{err}");
        // Untouched: same content and mode.
        assert_eq!(std::fs::read(&file).unwrap(), b"not yours");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666);
        // Rolled back: no run directory, no object of ours.
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "run dir left");
        let left: Vec<String> = shm_files()
            .into_iter()
            .filter(|name| name.contains(&marker))
            .collect();
        assert!(left.is_empty(), "objects left in /dev/shm: {left:?}");
        std::fs::remove_file(&file).unwrap();
    }
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let plan = plan(&format!(
        r#"
[process.a]
cmd = ["PROBE", "exit", "0"]
ports.web = {{}}
[process.b]
cmd = ["PROBE", "exit", "0"]
ports.web = {{}}
[[edge]]
from = "a.web"
to = "b.web"
mechanism = "tcp"
traffic = "request"
address = "127.0.0.1:{port}"
"#
    ));
    let root = root();
    let err = prepare(&plan, &options(&root)).unwrap_err();
    assert!(matches!(err, LaunchError::AddressInUse { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn clean_removes_a_dead_run_and_skips_a_live_one() {
    // Compares listings of /dev/shm: no other case may create objects.
    launch_common::take_turn_with_host_objects();
    let plan = plan(&topology());
    let root = root();
    let live = prepare(&plan, &options(&root)).unwrap();
    let dead = prepare(&plan, &options(&root)).unwrap();
    let (live_id, dead_id) = (live.run_id.clone(), dead.run_id.clone());
    let dead_dir = dead.run_dir.clone();
    let dead_sysv = dead.sysv_id_of("e4").unwrap();
    dead.abandon();
    let count = |id: &str| shm_files().iter().filter(|n| n.contains(id)).count();
    assert_eq!(count(&dead_id), 4, "{:?}", shm_files());

    let report = clean(Some(&[root.to_path_buf()]));
    assert_eq!(report.live, [root.join(&live_id)], "{report:?}");
    let [cleaned] = report.cleaned.as_slice() else {
        panic!("{report:?}")
    };
    assert_eq!(cleaned.path, dead_dir);
    assert!(
        cleaned.dir_removed && cleaned.failed.is_empty(),
        "{cleaned:?}"
    );
    // fifo, mq, shm + 2 semaphores, sem, sysv-mq.
    assert_eq!(cleaned.removed.len(), 7, "{cleaned:?}");
    assert!(!dead_dir.exists());
    assert_eq!(count(&dead_id), 0);
    assert!(
        !std::fs::read_to_string("/proc/sysvipc/msg")
            .unwrap()
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&dead_sysv.to_string())),
        "sysv queue left"
    );
    // The live run is intact.
    assert_eq!(count(&live_id), 4);
    assert!(live.run_dir.join("journal").exists());
    assert!(live.cleanup().is_clean());
}

#[test]
fn the_runtime_root_must_be_private() {
    let root = root();
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    let plan = plan("[process.a]\ncmd = [\"PROBE\"]\n");
    let err = prepare(&plan, &options(&root)).unwrap_err();
    assert!(matches!(err, LaunchError::UnsafeDirectory { .. }), "{err}");
    std::fs::remove_dir(&root).unwrap();
    // A symlink in place of the root is refused too.
    std::os::unix::fs::symlink("/tmp", &root).unwrap();
    let err = prepare(&plan, &options(&root)).unwrap_err();
    assert!(matches!(err, LaunchError::UnsafeDirectory { .. }), "{err}");
    std::fs::remove_file(&root).unwrap();
}

#[test]
fn every_example_topology_prepares_and_cleans_up() {
    launch_common::take_turn_with_host_objects();
    // By run id: other cases may create and remove objects meanwhile.
    let mut run_ids = Vec::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/topologies");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let topology = ipc_run::topology::Topology::parse(&path, source).unwrap();
        let Ok(planned) = ipc_run::plan::plan(&topology, &ipc_run::plan::Limits::default()) else {
            continue; // invalid examples are the planner's business
        };
        let root = root();
        let launched = prepare(&planned.plan, &options(&root))
            .unwrap_or_else(|e| panic!("{}: failed to {e}", path.display()));
        run_ids.push(launched.run_id.clone());
        let report = launched.cleanup();
        assert!(report.is_clean(), "{}: {report:?}", path.display());
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }
    let left: Vec<String> = shm_files()
        .into_iter()
        .filter(|name| run_ids.iter().any(|id| name.contains(id.as_str())))
        .collect();
    assert!(left.is_empty(), "objects left in /dev/shm: {left:?}");
}
