//! `ipc-run export kubernetes|systemd`: the manifests and units of a plan
//! split into two host groups, pinned by snapshots, validated by the
//! engines' own offline checkers (`kubernetes-validate --strict` from the
//! test venv, `systemd-analyze verify`), and the export's errors.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::ipc_run;
use crate::support::{Scratch, stacks};

/// The Kubernetes version the manifests are validated against (its
/// schemas ship with the pinned `kubernetes-validate`).
const KUBERNETES_VERSION: &str = "1.33.0";

/// Two groups: `front` (an API serving `orders` over TCP, and a cache
/// sharing memory with it, so the two stay together) and `batch` (a
/// worker that connects to `orders` and ends on its own).
const SHOP: &str = r#"
name = "shop"

[process.api]
cmd = ["sleep", "1000"]
restart = "always"
stop_timeout = "10s"
health = { exec = ["true"], interval = "5s", timeout = "2s", retries = 4, start_period = "3s" }

[process.cache]
cmd = ["sleep", "1000"]
restart = "always"
after = ["api"]

[process.worker]
cmd = ["sleep", "1"]
restart = "on-failure"
ready = "notify"
watchdog = "10s"

[[edge]]
name = "orders"
from = "worker.orders"
to = "api.orders"
traffic = "request"
mechanism = "tcp"
address = "0.0.0.0:47000"
allow_remote = true

[[edge]]
name = "hot"
from = "api.hot"
to = "cache.hot"
traffic = "shared"
size = "8MiB"
"#;

/// The plan of [`SHOP`] with its placement: planned by `ipc-run plan`, then
/// split into `front` and `batch` as the planner's placement would.
fn shop_plan(scratch: &mut Scratch, front: &str, batch: &str) -> PathBuf {
    let topology = scratch.topology(SHOP);
    let out = ipc_run()
        .args(["plan", "--format", "json", "--limits", "default"])
        .arg(&topology)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    for process in plan["processes"].as_array_mut().unwrap() {
        let group = if process["name"] == "worker" {
            batch
        } else {
            front
        };
        process["host"] = json!(group);
    }
    plan["placement"] = json!({
        "source": {"kind": "declared"},
        "groups": [
            {"name": front, "processes": ["api", "cache"],
             "reason": "declared; `hot` (posix-shm) joins api and cache",
             "cpus": 1.5, "memory": 536870912u64, "shm_bytes": 8388608u64},
            {"name": batch, "processes": ["worker"], "reason": "declared",
             "cpus": null, "memory": null, "shm_bytes": 0},
        ],
        "cross_edges": [
            {"channel": "orders", "listener_group": front, "client_groups": [batch],
             "port": 47000, "discovery": "the engine's name for the listener group's host"},
        ],
    });
    let path = scratch.dir.join("shop.plan.json");
    std::fs::write(&path, serde_json::to_string_pretty(&plan).unwrap()).unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Files of `dir` ending in `suffix`, sorted.
fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_of_two_groups() {
    let mut scratch = Scratch::new("export-k8s");
    let plan = shop_plan(&mut scratch, "front", "batch");
    let out = ipc_run()
        .args([
            "export",
            "kubernetes",
            "--plan",
            "--image",
            "registry.example:5000/shop/app:1.4",
        ])
        .args(["--namespace", "shop"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    // The ConfigMap holds the plan as `plan --format json` prints it.
    let stdout = text(&out.stdout);
    let (config_map, objects) = stdout.split_once("---\n").unwrap();
    assert!(config_map.contains("  plan.json: |\n    {\n      \"format_version\": 1,"));
    insta::assert_snapshot!("export_kubernetes_shop", objects);
}

#[test]
fn kubernetes_manifests_validate_strictly() {
    let python = stacks::python_with("kubernetes_validate");
    let mut scratch = Scratch::new("export-k8s-validate");
    let plan = shop_plan(&mut scratch, "front", "batch");
    let dir = scratch.dir.join("manifests");
    let out = ipc_run()
        .args([
            "export",
            "kubernetes",
            "--plan",
            "--image",
            "shop:1.4",
            "--out",
        ])
        .arg(&dir)
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let files = files_in(&dir, ".yaml");
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "shop-batch.job.yaml",
            "shop-front.deployment.yaml",
            "shop-front.service.yaml",
            "shop-plan.configmap.yaml"
        ]
    );
    let check = std::process::Command::new(python)
        .args(["-m", "kubernetes_validate", "--strict", "--no-warn"])
        .args(["--kubernetes-version", KUBERNETES_VERSION])
        .args(&files)
        .output()
        .unwrap();
    let report = text(&check.stdout) + &text(&check.stderr);
    assert!(
        check.status.success(),
        "kubernetes-validate failed:\n{report}"
    );
    assert_eq!(
        report.matches(" passed for resource ").count(),
        4,
        "{report}"
    );
}

#[test]
fn systemd_units_of_two_groups() {
    let mut scratch = Scratch::new("export-systemd");
    let plan = shop_plan(&mut scratch, "front", "batch");
    let out = ipc_run()
        .args([
            "export",
            "systemd",
            "--plan",
            "--ipc-run",
            "/usr/local/bin/ipc-run",
        ])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    insta::assert_snapshot!("export_systemd_shop", text(&out.stdout));
}

#[test]
fn systemd_units_verify() {
    let systemd_analyze = stacks::program("systemd-analyze", "systemd");
    let mut scratch = Scratch::new("export-systemd-verify");
    let plan = shop_plan(&mut scratch, "front", "batch");
    let dir = scratch.dir.join("units");
    let out = ipc_run()
        .args([
            "export",
            "systemd",
            "--plan",
            "--prefix",
            "shop",
            "--ipc-run",
        ])
        .arg(crate::support::IPC_RUN)
        .arg("--out")
        .arg(&dir)
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let units = files_in(&dir, ".service");
    assert_eq!(units.len(), 2, "{units:?}");
    // The plan is beside the units, and it is the plan they name.
    let plan_file = dir.join("shop.plan.json");
    assert!(plan_file.is_file());
    let batch = std::fs::read_to_string(dir.join("shop-batch.service")).unwrap();
    assert!(
        batch.contains(&format!(
            "--plan {} --host batch --peer front=127.0.0.1\n",
            plan_file.display()
        )),
        "{batch}"
    );
    // It exits 0 on warnings too: only silence is a pass.
    let check = std::process::Command::new(systemd_analyze)
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    let report = text(&check.stdout) + &text(&check.stderr);
    assert!(
        check.status.success() && report.is_empty(),
        "systemd-analyze verify:\n{report}"
    );
}

#[test]
fn a_plan_without_placement_is_one_group_named_local() {
    let out = ipc_run()
        .args([
            "export",
            "kubernetes",
            "--image",
            "app",
            "--limits",
            "default",
        ])
        .arg("topologies/pipeline.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("kind: Job\n"), "{stdout}");
    assert!(
        stdout.contains("            - --host\n            - local\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("kind: Service\n"), "{stdout}");
}

#[test]
fn export_errors_have_codes_and_exit_statuses() {
    let mut scratch = Scratch::new("export-errors");
    let plan = shop_plan(&mut scratch, "front", "batch");
    // An unknown engine and a bad image are usage errors.
    let out = ipc_run()
        .args(["export", "nomad"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unrecognized subcommand 'nomad'"));
    let out = ipc_run()
        .args(["export", "kubernetes", "--plan", "--image", "Shop App"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("[E0520] `Shop App` is not an image reference"),
        "{}",
        text(&out.stderr)
    );
    // An --out that cannot be made (its parent is a file).
    let file = scratch.dir.join("file");
    std::fs::write(&file, "").unwrap();
    let out = ipc_run()
        .args(["--color", "never", "export", "systemd", "--plan", "--out"])
        .arg(file.join("units"))
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error[E0521]: failed to write `"),
        "{stderr}"
    );
    assert!(stderr.contains("Not a directory"), "{stderr}");
    // Two groups Kubernetes would give one name.
    let plan = shop_plan(&mut scratch, "front_end", "front-end");
    let out = ipc_run()
        .args([
            "--color",
            "never",
            "export",
            "kubernetes",
            "--plan",
            "--image",
            "app",
        ])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error[E0522]: groups `front_end` and `front-end` would both be named \
         `shop-front-end` in Kubernetes (`_` becomes `-`): rename one\n"
    );
}
