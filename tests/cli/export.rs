//! `ipc-run export kubernetes|systemd`: the manifests and units of a plan
//! split into two host groups, pinned by snapshots, validated by the
//! engines' own offline checkers (`kubernetes-validate --strict` from the
//! test venv, `systemd-analyze verify`), and the export's errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ipc_run;
use crate::support::{IPC_RUN, Scratch, free_port, stacks};

/// The Kubernetes version the manifests are validated against (its
/// schemas ship with the pinned `kubernetes-validate`).
const KUBERNETES_VERSION: &str = "1.33.0";

/// Two groups: `front` (an API serving `orders`, and a cache sharing
/// memory with it, so the two stay together) and `batch` (a worker that
/// connects to `orders` and ends on its own). `FRONT` and `BATCH` stand for
/// the groups' names.
const SHOP: &str = r#"
name = "shop"

[process.api]
host = "FRONT"
cmd = ["sleep", "1000"]
restart = "always"
stop_timeout = "10s"
cpus = 1.5
memory = "512MiB"
health = { exec = ["true"], interval = "5s", timeout = "2s", retries = 4, start_period = "3s" }

[process.cache]
host = "FRONT"
cmd = ["sleep", "1000"]
restart = "always"
after = ["api"]

[process.worker]
host = "BATCH"
cmd = ["sleep", "1"]
restart = "on-failure"
ready = "notify"
watchdog = "10s"

[[edge]]
name = "orders"
from = "worker.orders"
to = "api.orders"
traffic = "request"

[[edge]]
name = "hot"
from = "api.hot"
to = "cache.hot"
traffic = "shared"
size = "8MiB"
"#;

/// [`SHOP`] with its groups named `front` and `batch`.
fn shop(scratch: &mut Scratch, front: &str, batch: &str) -> PathBuf {
    scratch.topology(&SHOP.replace("FRONT", front).replace("BATCH", batch))
}

/// `ipc-run export ARGS… FILE --limits default`: its exit code, stdout
/// and stderr.
fn export(args: &[&str], file: &Path) -> (Option<i32>, String, String) {
    let out = ipc_run()
        .args(["--color", "never", "export"])
        .args(args)
        .arg(file)
        .args(["--limits", "default"])
        .output()
        .unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
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
    let file = shop(&mut scratch, "front", "batch");
    let image = "registry.example:5000/shop/app:1.4";
    let (code, stdout, stderr) = export(
        &["kubernetes", "--image", image, "--namespace", "shop"],
        &file,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "");
    // The ConfigMap holds the plan as `plan --format json` prints it.
    let (config_map, objects) = stdout.split_once("---\n").unwrap();
    let plan = ipc_run()
        .args(["plan", "--format", "json", "--limits", "default"])
        .arg(&file)
        .output()
        .unwrap();
    let indented: String = text(&plan.stdout)
        .lines()
        .map(|line| format!("    {line}\n"))
        .collect();
    assert!(
        config_map.ends_with(&format!("  plan.json: |\n{indented}")),
        "{config_map}"
    );
    insta::assert_snapshot!("export_kubernetes_shop", objects);
}

#[test]
fn kubernetes_manifests_validate_strictly() {
    let python = stacks::python_with("kubernetes_validate");
    let mut scratch = Scratch::new("export-k8s-validate");
    let file = shop(&mut scratch, "front", "batch");
    let dir = scratch.dir.join("manifests");
    let out = dir.display().to_string();
    let (code, stdout, stderr) =
        export(&["kubernetes", "--image", "shop:1.4", "--out", &out], &file);
    assert_eq!((code, stdout.as_str()), (Some(0), ""), "{stderr}");
    let files = files_in(&dir, ".yaml");
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "1-shop-plan.configmap.yaml",
            "2-shop-front.service.yaml",
            "3-shop-batch.job.yaml",
            "3-shop-front.deployment.yaml",
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
    let file = shop(&mut scratch, "front", "batch");
    let (code, stdout, stderr) = export(&["systemd", "--ipc-run", "/usr/local/bin/ipc-run"], &file);
    assert_eq!(code, Some(0), "{stderr}");
    insta::assert_snapshot!("export_systemd_shop", stdout);
}

#[test]
fn systemd_units_verify() {
    let systemd_analyze = stacks::program("systemd-analyze", "systemd");
    let mut scratch = Scratch::new("export-systemd-verify");
    let file = shop(&mut scratch, "front", "batch");
    let dir = scratch.dir.join("units");
    let out = dir.display().to_string();
    let args = [
        "systemd",
        "--prefix",
        "shop",
        "--ipc-run",
        IPC_RUN,
        "--out",
        &out,
    ];
    let (code, stdout, stderr) = export(&args, &file);
    assert_eq!((code, stdout.as_str()), (Some(0), ""), "{stderr}");
    let mut units = files_in(&dir, ".service");
    units.extend(files_in(&dir, ".socket"));
    let names: Vec<_> = units.iter().map(|u| u.file_name().unwrap()).collect();
    assert_eq!(
        names,
        [
            "shop-batch.service",
            "shop-front.service",
            "shop-front.socket"
        ]
    );
    // The plan is beside the units, and it is the plan they name.
    let plan_file = dir.join("shop.plan.json");
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    assert_eq!(plan["placement"]["groups"][1]["name"], "batch");
    let batch = std::fs::read_to_string(dir.join("shop-batch.service")).unwrap();
    let exec = format!(
        "ExecStart={IPC_RUN} run --plan {} --host batch --peer front=127.0.0.1\n",
        plan_file.display()
    );
    assert!(batch.contains(&exec), "{batch}");
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
fn a_json_plan_exports_as_its_topology() {
    let mut scratch = Scratch::new("export-json-plan");
    let file = shop(&mut scratch, "front", "batch");
    let plan = ipc_run()
        .args(["plan", "--format", "json", "--limits", "default"])
        .arg(&file)
        .output()
        .unwrap();
    let json = scratch.dir.join("shop.plan.json");
    std::fs::write(&json, &plan.stdout).unwrap();
    for engine in [
        &["kubernetes", "--image", "app"][..],
        &["systemd", "--ipc-run", "/bin/true"],
    ] {
        let from_topology = export(engine, &file);
        let out = ipc_run()
            .arg("export")
            .args(engine)
            .arg("--plan")
            .arg(&json)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        // The ConfigMap's plan differs in its limits, which a plan read back
        // takes from this host; the objects are the same.
        let objects = |stdout: &str| stdout.split_once("---\n").map(|(_, rest)| rest.to_owned());
        let stdout = text(&out.stdout);
        assert!(
            objects(&stdout) == objects(&from_topology.1)
                && stdout.starts_with("# ") == from_topology.1.starts_with("# "),
            "{engine:?}"
        );
        if engine[0] == "systemd" {
            assert!(stdout == from_topology.1, "{stdout}");
        }
    }
}

#[test]
fn a_plan_without_placement_is_one_group_named_local() {
    let (code, stdout, stderr) = export(
        &["kubernetes", "--image", "app"],
        Path::new("topologies/pipeline.toml"),
    );
    assert_eq!(code, Some(0), "{stderr}");
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
    let file = shop(&mut scratch, "front", "batch");
    // An unknown engine and a bad image are usage errors.
    let (code, _, stderr) = export(&["nomad"], &file);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("unrecognized subcommand 'nomad'"),
        "{stderr}"
    );
    let (code, _, stderr) = export(&["kubernetes", "--image", "Shop App"], &file);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("[E0520] `Shop App` is not an image reference"),
        "{stderr}"
    );
    let (code, _, stderr) = export(
        &["kubernetes", "--image", "app", "--ipc-run", "bin/ipc-run"],
        &file,
    );
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("[E0520] `bin/ipc-run` is not an absolute path"),
        "{stderr}"
    );
    let (code, _, stderr) = export(&["systemd", "--ipc-run", "ipc-run"], &file);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("[E0524] `ipc-run` is not an absolute path"),
        "{stderr}"
    );
    // An --out that cannot be made (its parent is a file).
    let blocker = scratch.dir.join("file");
    std::fs::write(&blocker, "").unwrap();
    let out = blocker.join("units").display().to_string();
    let (code, _, stderr) = export(&["systemd", "--out", &out], &file);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("error[E0521]: failed to write `"),
        "{stderr}"
    );
    assert!(stderr.contains("Not a directory"), "{stderr}");
    // A plan too large for a ConfigMap.
    let mut big =
        String::from("name = \"big\"\n[process.worker]\ncmd = [\"true\"]\nreplicas = 1024\n");
    big.push_str(&format!("env = {{ PAD = \"{}\" }}\n", "x".repeat(1024)));
    let big = scratch.topology(&big);
    let (code, _, stderr) = export(&["kubernetes", "--image", "app"], &big);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error[E0523]: the plan JSON is "),
        "{stderr}"
    );
    // Two groups Kubernetes would give one name.
    let file = shop(&mut scratch, "front_end", "front-end");
    let (code, _, stderr) = export(&["kubernetes", "--image", "app"], &file);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "error[E0522]: groups `front_end` and `front-end` would both be named \
         `shop-front-end` in Kubernetes (`_` becomes `-`): rename one\n"
    );
}

/// The words of a unit's `ExecStart=` (the exported paths hold no spaces).
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("an ExecStart= line");
    line.split(' ').map(str::to_owned).collect()
}

/// `export systemd --ipc-run IPC_RUN --out DIR --base-port PORT FILE`,
/// which must succeed, with the cross edges from `port` on: the units
/// are in `dir`.
fn export_units(dir: &Path, port: u16, file: &Path) {
    let out = dir.display().to_string();
    let port = port.to_string();
    let args = [
        "systemd",
        "--ipc-run",
        IPC_RUN,
        "--out",
        &out,
        "--base-port",
        &port,
    ];
    let (code, _, stderr) = export(&args, file);
    assert_eq!(code, Some(0), "{stderr}");
}

/// What `unit`'s `ExecStart=` runs, behind `prefix` (the words of what
/// plays the unit, if anything), with the runtime directory `runtime` and
/// its output piped.
fn unit_command(prefix: &[&str], unit: &str, runtime: &Path) -> Command {
    let mut words: Vec<String> = prefix.iter().map(|word| word.to_string()).collect();
    words.extend(exec_start(unit));
    let mut command = Command::new(&words[0]);
    command
        .args(&words[1..])
        .arg("--runtime-dir")
        .arg(runtime)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
fn the_exported_command_lines_run_the_groups() {
    stacks::program("python3", "python3");
    let scratch = Scratch::new("export-systemd-run");
    let dir = scratch.dir.join("units");
    // A port of this test's own for the cross edge (the plan's default,
    // 47000, may be taken by another run on this machine).
    let topology = Path::new("topologies/distributed-pipeline.toml");
    export_units(&dir, free_port(), topology);
    // Each group's ipc-run as its unit starts it (systemd itself is not
    // run here), in a runtime directory of the test's own.
    let start = |group: &str| {
        let unit = dir.join(format!("ipc-run-distributed-pipeline-{group}.service"));
        let unit = std::fs::read_to_string(unit).unwrap();
        unit_command(&[], &unit, &scratch.runtime())
            .spawn()
            .unwrap()
    };
    let core = start("core");
    let edge = start("edge");
    let edge = crate::support::finish(edge);
    let core = crate::support::finish(core);
    assert_eq!(
        (edge.code, core.code),
        (0, 0),
        "{}\n{}",
        edge.stderr,
        core.stderr
    );
    assert!(
        text(&core.stdout).contains("sum of 100 squares: 338350"),
        "{}",
        text(&core.stdout)
    );
    scratch.assert_left_nothing();
}

/// A server in group `a` that accepts until a connection brings data,
/// and a client in group `b` that sends one line. The client group's wait
/// for the listener is a connection too, reset at once; a socket unit
/// (`DeferAcceptSec=`) never queues it, but `systemd-socket-activate`,
/// which plays the unit here, cannot defer accepting: there it is the
/// first connection, the one that starts the group.
const ACTIVATED: &str = r#"
name = "activated"
exit_code_from = "server"

[process.server]
host = "a"
cmd = ["python3", "-c", '''
import os, socket
port = dict(kv.split("=", 1) for kv in os.environ["IPC_PORT_IN"].split())
listener = socket.socket(fileno=int(port["fd"]))
while True:
    conn, _ = listener.accept()
    try:
        data = conn.makefile("rb").read()
    except ConnectionResetError:
        continue
    if data:
        print("got", data.decode().strip(), flush=True)
        break
''']

[process.client]
host = "b"
cmd = ["python3", "-c", '''
import os, socket
port = dict(kv.split("=", 1) for kv in os.environ["IPC_PORT_OUT"].split())
host, _, number = port["address"].rpartition(":")
with socket.create_connection((host, int(number))) as sock:
    sock.sendall(b"hello\n")
''']

[[edge]]
from = "client.out"
to = "server.in"
"#;

#[test]
fn a_socket_unit_hands_the_listener_to_the_group() {
    stacks::program("python3", "python3");
    let activate = stacks::program("systemd-socket-activate", "systemd");
    let mut scratch = Scratch::new("export-systemd-socket");
    let topology = scratch.topology(ACTIVATED);
    let dir = scratch.dir.join("units");
    let port = free_port();
    export_units(&dir, port, &topology);
    let unit = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let socket = unit("ipc-run-activated-a.socket");
    let listen = format!("ListenStream=0.0.0.0:{port}\n");
    assert!(socket.contains(&listen), "{socket}");
    assert!(!dir.join("ipc-run-activated-b.socket").exists());
    // The socket unit's part, as systemd-socket-activate plays it: it
    // binds the port and, on the first connection (the client group's
    // wait for the listener), execs the group's ipc-run with the socket as
    // LISTEN_FDS. ipc-run binding the port itself would fail: it is taken.
    let listen = format!("0.0.0.0:{port}");
    let activator = [activate.to_str().unwrap(), "--listen", &listen, "--"];
    let runtime = scratch.runtime();
    let server = unit_command(&activator, &unit("ipc-run-activated-a.service"), &runtime)
        .spawn()
        .unwrap();
    let client = unit_command(&[], &unit("ipc-run-activated-b.service"), &runtime)
        .spawn()
        .unwrap();
    let client = crate::support::finish(client);
    let server = crate::support::finish(server);
    assert_eq!(
        (client.code, server.code),
        (0, 0),
        "{}\n{}",
        client.stderr,
        server.stderr
    );
    assert!(
        text(&server.stdout).contains("server | got hello"),
        "{}",
        text(&server.stdout)
    );
    scratch.assert_left_nothing();
}

/// The probe commands of a workload exported with `--ipc-run IPC_RUN`
/// (this ipc-run), pointed at the test's runtime directory.
fn probe_commands(stdout: &str, runtime: &Path) -> (String, Vec<String>) {
    let here = |word: &str| word.replace("/run/ipc-run/runs", &runtime.display().to_string());
    let readiness = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix(&format!("- \"{IPC_RUN} ps ")))
        .map(|rest| serde_json::from_str::<String>(&format!("\"{IPC_RUN} ps {rest}")).unwrap())
        .expect("a readiness probe");
    let liveness = [IPC_RUN, "status", "--runtime-dir", "/run/ipc-run/runs"]
        .iter()
        .map(|word| here(word))
        .collect();
    assert!(
        stdout.contains(&format!(
            "                - {IPC_RUN}\n                - status\n"
        )),
        "{stdout}"
    );
    (here(&readiness), liveness)
}

#[test]
fn the_probes_fail_until_the_group_runs_and_is_ready() {
    let mut scratch = Scratch::new("export-probes");
    let file = shop(&mut scratch, "front", "batch");
    let (code, stdout, stderr) = export(
        &["kubernetes", "--image", "app", "--ipc-run", IPC_RUN],
        &file,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("command:\n            - {IPC_RUN}\n")),
        "{stdout}"
    );
    let (readiness, liveness) = probe_commands(&stdout, &scratch.runtime());
    let probe = |name: &str| {
        let status = if name == "readiness" {
            std::process::Command::new("/bin/sh")
                .args(["-c", &readiness])
                .output()
                .unwrap()
                .status
        } else {
            std::process::Command::new(&liveness[0])
                .args(&liveness[1..])
                .output()
                .unwrap()
                .status
        };
        status.success()
    };
    assert!(!probe("readiness") && !probe("liveness"), "no run yet");
    // `run --detach` returns once every process is ready.
    let mut run = super::control::Detached::start(
        &mut scratch,
        "[process.server]\ncmd = [\"sleep\", \"1000\"]\n",
    );
    assert!(probe("readiness") && probe("liveness"), "{readiness}");
    run.down();
    assert!(!probe("readiness") && !probe("liveness"), "the run ended");
}

/// The container runs as non-root unless a process of its group is to be
/// started as another `user` or `group` (which takes root); it never
/// escalates, and writes only its `emptyDir`s. `--ipc-run` is the
/// command and the probes' program, quoted for the readiness shell.
#[test]
fn kubernetes_security_context_follows_what_ipc_run_needs() {
    let mut scratch = Scratch::new("export-k8s-security");
    let text = SHOP
        .replace("FRONT", "front")
        .replace("BATCH", "batch")
        .replace("[process.cache]\n", "[process.cache]\nuser = \"nobody\"\n");
    let file = scratch.topology(&text);
    let path = "/opt/ipc run/ipc-run";
    let (code, stdout, stderr) =
        export(&["kubernetes", "--image", "app", "--ipc-run", path], &file);
    assert_eq!(code, Some(0), "{stderr}");
    let workload = |name: &str| {
        let header = format!("metadata:\n  name: {name}\n");
        let found = stdout
            .split("---\n")
            .find(|doc| doc.contains(&header) && !doc.starts_with("apiVersion: v1\nkind: Service"));
        found.unwrap_or_else(|| panic!("no workload {name}: {stdout}"))
    };
    let (batch, front) = (workload("shop-batch"), workload("shop-front"));
    let locked = "allowPrivilegeEscalation: false\n            readOnlyRootFilesystem: true\n            seccompProfile:\n              type: RuntimeDefault\n";
    let no_caps = "capabilities:\n              drop:\n                - ALL\n";
    assert!(
        batch.contains(&format!(
            "securityContext:\n            runAsNonRoot: true\n            {no_caps}            {locked}"
        )),
        "{batch}"
    );
    assert!(
        front.contains(&format!("securityContext:\n            {locked}")),
        "{front}"
    );
    for workload in [batch, front] {
        assert!(
            workload.contains("command:\n            - \"/opt/ipc run/ipc-run\"\n"),
            "{workload}"
        );
        assert!(
            workload.contains("- \"'/opt/ipc run/ipc-run' ps --runtime-dir "),
            "{workload}"
        );
    }
}
