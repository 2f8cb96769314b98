//! One host group per ipc-run (`run --host`, `docs/distributed.md`): two
//! groups on loopback, the same two across two network namespaces joined
//! by a veth pair (the cross-group edge over a real link, not loopback),
//! and the errors that come before anything is created.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::stacks::program;
use crate::support::{
    Finished, IPC_RUN, Live, RUN_TIMEOUT, Scratch, free_port, lines_of, run_captured,
};

/// The server: accepts one connection, prints the peer's address, then
/// the lines. One connection only: the client group's wait for this
/// listener must not be seen here.
const SERVER: &str = r#"
import socket
listener = socket.socket(fileno=3)
conn, peer = listener.accept()
print("peer", peer[0])
print(conn.makefile().read(), end="", flush=True)
"#;

/// The client: connects where its port description says, sends two lines.
const CLIENT: &str = r#"
import os, socket
address = os.environ["IPC_PORT_OUT"].split("address=")[1].split()[0]
host, port = address.rsplit(":", 1)
print("to", address, flush=True)
conn = socket.create_connection((host.strip("[]"), int(port)))
conn.sendall(b"hello\nworld\n")
conn.close()
"#;

/// A topology of `server` in group `a` and `client` in group `b`, joined by
/// the edge `link`, which the planner makes TCP across the groups: the
/// Python programs `server` and `client`, with more keys for each.
fn two_groups(
    scratch: &mut Scratch,
    [server, client]: [&str; 2],
    server_keys: &str,
    client_keys: &str,
) -> PathBuf {
    let python = program("python3", "python3");
    for (name, text) in [("server.py", server), ("client.py", client)] {
        std::fs::write(scratch.dir.join(name), text).unwrap();
    }
    scratch.topology(&format!(
        r#"
[process.server]
cmd = ["{python}", "{dir}/server.py"]
host = "a"
{server_keys}

[process.client]
cmd = ["{python}", "{dir}/client.py"]
host = "b"
{client_keys}

[[edge]]
name = "link"
from = "client.out"
to = "server.in"
"#,
        python = python.display(),
        dir = scratch.dir.display(),
    ))
}

/// The JSON plan of [`two_groups`] with `link` on `port`, as engines run
/// it (`ipc-run plan FILE --format json`).
fn placed_plan(scratch: &mut Scratch, port: u16, server_ready_timeout_ms: u64) -> PathBuf {
    let timeout = format!("ready_timeout = \"{server_ready_timeout_ms}ms\"");
    let file = two_groups(scratch, [SERVER, CLIENT], &timeout, "");
    let output = Command::new(IPC_RUN)
        .args(["plan", "--format", "json", "--base-port", &port.to_string()])
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["placement"]["cross_edges"][0]["port"], port);
    let path = scratch.dir.join("placed.json");
    std::fs::write(&path, &output.stdout).unwrap();
    path
}

/// `ipc-run run --plan PLAN --host GROUP --runtime-dir RT ARGS…`, behind
/// `prefix` (e.g. `ip netns exec NS`).
fn group_command(
    prefix: &[&str],
    plan: &Path,
    group: &str,
    runtime: &Path,
    args: &[&str],
) -> Command {
    let mut command = match prefix.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg(IPC_RUN);
            command
        }
        None => Command::new(IPC_RUN),
    };
    command
        .args(["--color", "never", "run", "--plan"])
        .arg(plan)
        .args(["--host", group, "--runtime-dir"])
        .arg(runtime)
        .args(args)
        .stdin(Stdio::null());
    command
}

/// `ipc-run run FILE --host GROUP --base-port PORT --runtime-dir RT ARGS…`:
/// the group planned from the file with the plan options.
fn file_group_command(
    file: &Path,
    group: &str,
    port: u16,
    runtime: &Path,
    args: &[&str],
) -> Command {
    let mut command = Command::new(IPC_RUN);
    command
        .args(["--color", "never", "run"])
        .arg(file)
        .args(["--host", group, "--base-port", &port.to_string()])
        .arg("--runtime-dir")
        .arg(runtime)
        .args(args)
        .stdin(Stdio::null());
    command
}

/// Group `group` of `plan` run here (no prefix) to its end.
fn run_group(plan: &Path, group: &str, runtime: &Path, args: &[&str]) -> Finished {
    run_captured(&mut group_command(&[], plan, group, runtime, args))
}

/// Asserts that a run ended with `code` and said `message` on stderr.
fn assert_said(run: &Finished, code: i32, message: &str) {
    assert_eq!(run.code, code, "{}", run.stderr);
    assert!(run.stderr.contains(message), "{}", run.stderr);
}

/// Asserts that `runtime` holds nothing (or does not exist).
fn assert_nothing_in(runtime: &Path) {
    let left: Vec<_> = std::fs::read_dir(runtime).map_or(Vec::new(), |d| d.collect());
    assert!(left.is_empty(), "{} holds {left:?}", runtime.display());
}

/// Checks what the two groups' runs said: the lines arrived from `client_at`
/// (the client's own address as the server saw it), sent to `server_at`.
fn assert_lines_flowed(a: &Finished, b: &Finished, client_at: &str, server_at: &str) {
    assert_eq!(a.code, 0, "group a: {}", a.stderr);
    assert_eq!(b.code, 0, "group b: {}", b.stderr);
    assert_eq!(
        lines_of(&a.stdout, "server"),
        [format!("peer {client_at}"), "hello".into(), "world".into()],
        "group a: {}",
        a.stderr
    );
    assert_eq!(lines_of(&b.stdout, "client"), [format!("to {server_at}")]);
}

#[test]
fn two_groups_on_loopback_carry_lines_end_to_end() {
    let mut scratch = Scratch::new("hostrun-loopback");
    let port = free_port();
    let plan = placed_plan(&mut scratch, port, 30_000);
    let (rt_a, rt_b) = (scratch.dir.join("rt-a"), scratch.dir.join("rt-b"));
    // The client's group first: it waits for the listener by itself, and
    // tells its manager (a socket of the test's) once its client ran.
    let manager_path = scratch.dir.join("manager.sock");
    let manager = UnixDatagram::bind(&manager_path).unwrap();
    manager.set_read_timeout(Some(RUN_TIMEOUT)).unwrap();
    let mut command = group_command(&[], &plan, "b", &rt_b, &["--peer", "a=127.0.0.1"]);
    command.env("NOTIFY_SOCKET", &manager_path);
    let b = Live::start(command);
    let mut buf = [0u8; 512];
    let mut heard = || {
        let n = manager.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(heard(), "STATUS=starting 1 process(es)");
    // Group a planned from the file with the plan options, as `ipc-run
    // run FILE --host a` does.
    let file = scratch.dir.join("topology-1.toml");
    let a = run_captured(&mut file_group_command(&file, "a", port, &rt_a, &[]));
    let b = b.finish();
    assert_lines_flowed(&a, &b, "127.0.0.1", &format!("127.0.0.1:{port}"));
    assert_eq!(heard(), "READY=1\nSTATUS=group b: 1 process(es) ready");
    assert_eq!(heard(), "STOPPING=1\nSTATUS=group b: stopping");
    for rt in [rt_a, rt_b] {
        assert_nothing_in(&rt);
    }
}

#[test]
fn an_unknown_group_is_refused_with_the_plans_groups() {
    let mut scratch = Scratch::new("hostrun-unknown");
    let plan = placed_plan(&mut scratch, free_port(), 30_000);
    let rt = scratch.dir.join("rt");
    let run = run_group(&plan, "c", &rt, &[]);
    assert_said(
        &run,
        2,
        "error[E0510]: the plan has no host group `c`; its groups: a, b",
    );
    assert!(!rt.exists(), "a run directory was made");
}

#[test]
fn a_group_reaching_another_needs_its_peer_before_anything_is_made() {
    let mut scratch = Scratch::new("hostrun-peer");
    let plan = placed_plan(&mut scratch, free_port(), 30_000);
    let rt = scratch.dir.join("rt");
    let run = run_group(&plan, "b", &rt, &[]);
    assert_said(&run, 2, "error[E0511]: group `b` connects to group(s) `a`");
    assert_said(&run, 2, "--peer a=HOST");
    let bad = run_group(&plan, "b", &rt, &["--peer", "z=h"]);
    assert_said(
        &bad,
        2,
        "error[E0512]: --peer z=h: the plan has no group `z`",
    );
    assert!(!rt.exists(), "a run directory was made");
}

#[test]
fn a_client_whose_remote_listener_never_accepts_fails_in_its_ready_timeout() {
    let mut scratch = Scratch::new("hostrun-never");
    // Nothing listens on it: group a is never started.
    let port = free_port();
    let plan = placed_plan(&mut scratch, port, 300);
    let rt = scratch.dir.join("rt");
    let run = run_group(&plan, "b", &rt, &["--peer", "a=127.0.0.1"]);
    let expected = format!(
        "client: not started: listener `link` of group `a` (`server`) at 127.0.0.1:{port} \
         did not accept a connection within 300ms"
    );
    assert_said(&run, 3, &expected);
    assert_nothing_in(&rt);
}

/// Two network namespaces joined by a veth pair, with addresses of their
/// own; everything the test made is deleted in `Drop`, whether the test
/// passed or not (deleting a namespace deletes its end of the veth, and
/// the pair with it).
struct TwoHosts {
    ip: PathBuf,
    namespaces: [String; 2],
    veth: [String; 2],
    addresses: [String; 2],
    /// ipc-run processes started in them, killed on drop if still there.
    pids: Vec<u32>,
    /// Their runtime directories, removed on drop (a killed run leaves
    /// its run directory).
    run_dirs: Vec<PathBuf>,
}

impl TwoHosts {
    fn new() -> TwoHosts {
        let ip = program("ip", "iproute2");
        let pid = std::process::id();
        // Unique per test run; inside their own namespaces the addresses
        // meet nothing else.
        let subnet = pid % 250;
        let hosts = TwoHosts {
            ip,
            namespaces: [format!("ipcrun-a-{pid}"), format!("ipcrun-b-{pid}")],
            veth: [format!("irva{pid}"), format!("irvb{pid}")],
            addresses: [format!("10.231.{subnet}.1"), format!("10.231.{subnet}.2")],
            pids: Vec::new(),
            run_dirs: Vec::new(),
        };
        for ns in &hosts.namespaces {
            hosts.ip(&["netns", "add", ns]);
        }
        let [va, vb] = &hosts.veth;
        hosts.ip(&["link", "add", va, "type", "veth", "peer", "name", vb]);
        for k in 0..2 {
            let (ns, dev) = (&hosts.namespaces[k], &hosts.veth[k]);
            hosts.ip(&["link", "set", dev, "netns", ns]);
            let cidr = format!("{}/30", hosts.addresses[k]);
            hosts.ip(&["-n", ns, "addr", "add", &cidr, "dev", dev]);
            hosts.ip(&["-n", ns, "link", "set", dev, "up"]);
            hosts.ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        hosts
    }

    /// Runs `ip ARGS`, which must succeed.
    fn ip(&self, args: &[&str]) {
        let out = Command::new(&self.ip).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {}: {} (the test needs root, as CI has)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ip netns exec NS` for host `k`.
    fn exec_prefix(&self, k: usize) -> [&str; 4] {
        let ip = self.ip.to_str().unwrap();
        [ip, "netns", "exec", &self.namespaces[k]]
    }

    /// What of the test's making still exists: namespaces, links.
    fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for ns in &self.namespaces {
            if Path::new("/run/netns").join(ns).exists() {
                left.push(format!("namespace {ns}"));
            }
        }
        for dev in &self.veth {
            if Path::new("/sys/class/net").join(dev).exists() {
                left.push(format!("link {dev}"));
            }
        }
        for pid in &self.pids {
            if Path::new(&format!("/proc/{pid}")).exists() {
                left.push(format!("process {pid}"));
            }
        }
        for dir in &self.run_dirs {
            if dir.exists() {
                left.push(format!("runtime directory {}", dir.display()));
            }
        }
        left
    }

    /// Every process that lives in one of the namespaces (`ip netns pids`).
    fn pids_inside(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for ns in &self.namespaces {
            let Ok(out) = Command::new(&self.ip).args(["netns", "pids", ns]).output() else {
                continue;
            };
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
        pids
    }

    fn tear_down(&mut self) {
        // The runs, and anything of theirs still in a namespace (after a
        // failure, ipc-run killed here leaves its children behind).
        let inside = self.pids_inside();
        let ours = self.pids.iter().map(|&p| p as i32);
        for pid in ours.chain(inside) {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for ns in &self.namespaces {
            let _ = Command::new(&self.ip).args(["netns", "del", ns]).output();
        }
        for dir in &self.run_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        // Gone with its namespace; deleted here should a step have failed
        // before it was moved into one.
        let _ = Command::new(&self.ip)
            .args(["link", "del", &self.veth[0]])
            .stderr(Stdio::null())
            .output();
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        self.tear_down();
    }
}

#[test]
fn two_groups_in_two_network_namespaces_talk_over_the_veth_link() {
    let mut scratch = Scratch::new("hostrun-netns");
    let port = 47000;
    let plan = placed_plan(&mut scratch, port, 30_000);
    let (rt_a, rt_b) = (scratch.dir.join("rt-a"), scratch.dir.join("rt-b"));
    let mut hosts = TwoHosts::new();
    hosts.run_dirs = vec![rt_a.clone(), rt_b.clone()];
    let [addr_a, addr_b] = hosts.addresses.clone();
    let peer = format!("a={addr_a}");
    let b = Live::start(group_command(
        &hosts.exec_prefix(1),
        &plan,
        "b",
        &rt_b,
        &["--peer", &peer],
    ));
    hosts.pids.push(b.child.id());
    let a = Live::start(group_command(
        &hosts.exec_prefix(0),
        &plan,
        "a",
        &rt_a,
        &["--bind-address", &addr_a],
    ));
    hosts.pids.push(a.child.id());
    let (a, b) = (a.finish(), b.finish());
    // The server saw the client's veth address: the lines crossed the link.
    assert_lines_flowed(&a, &b, &addr_b, &format!("{addr_a}:{port}"));
    for rt in [&rt_a, &rt_b] {
        assert_nothing_in(rt);
    }
    let inside = hosts.pids_inside();
    assert!(
        inside.is_empty(),
        "processes left in the namespaces: {inside:?}"
    );
    hosts.tear_down();
    let left = hosts.leftovers();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn what_one_host_cannot_see_or_reach_is_refused_before_anything_is_made() {
    let mut scratch = Scratch::new("hostrun-refused");
    let port = free_port();
    let plan = placed_plan(&mut scratch, port, 30_000);
    let rt = scratch.dir.join("rt");
    // A name that cannot resolve, without asking a DNS server.
    let run = run_group(&plan, "b", &rt, &["--peer", "a=bad..host"]);
    assert_said(
        &run,
        3,
        "error[E0514]: host `bad..host` of group `a` does not resolve",
    );
    // `completed` of a process on another host cannot be seen from here.
    let text = std::fs::read_to_string(&plan).unwrap();
    let mut json: Value = serde_json::from_str(&text).unwrap();
    let client = json["processes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["name"] == "client")
        .unwrap();
    client["after"] = serde_json::json!(["server"]);
    client["conditions"] = serde_json::json!([{"instance": "server", "condition": "completed"}]);
    std::fs::write(&plan, serde_json::to_vec(&json).unwrap()).unwrap();
    let run = run_group(&plan, "b", &rt, &["--peer", "a=127.0.0.1"]);
    assert_said(
        &run,
        1,
        "error[E0513]: `client` waits for `server` (completed) in group `a`: only `started` and `ready`",
    );
    assert!(!rt.exists(), "a run directory was made");
}

#[test]
fn a_run_of_one_group_refuses_a_reload() {
    let mut scratch = Scratch::new("hostrun-reload");
    let plan = placed_plan(&mut scratch, free_port(), 30_000);
    let rt = scratch.dir.join("rt");
    let started = run_group(&plan, "a", &rt, &["--detach"]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    let run_id = started.stdout_text().trim().to_owned();
    let control = |args: &[&str]| {
        let mut command = Command::new(IPC_RUN);
        command
            .args(args)
            .arg("--runtime-dir")
            .arg(&rt)
            .arg(&run_id);
        run_captured(&mut command)
    };
    let mut reload = Command::new(IPC_RUN);
    reload
        .args(["reload", "--runtime-dir"])
        .arg(&rt)
        .arg(&run_id)
        .arg(scratch.dir.join("topology-1.toml"));
    let refused = run_captured(&mut reload);
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("the run is host group `a` of a placed plan (run --host)"),
        "{}",
        refused.stderr
    );
    let listed = run_captured(
        Command::new(IPC_RUN)
            .args(["ps", "--format", "json", "--runtime-dir"])
            .arg(&rt),
    );
    let runs: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let pid = runs[0]["pid"].as_u64().unwrap();
    assert_eq!(control(&["down"]).code, 0);
    // Gone before the scratch directory is: `down` does not wait.
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(std::time::Instant::now() < deadline, "the run never ended");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A server that accepts connections until stopped, printing each one's
/// first line: only real clients reach it (the waits' probes do not).
const LOOP_SERVER: &str = r#"
import socket
listener = socket.socket(fileno=3)
while True:
    conn, _ = listener.accept()
    print("got", conn.makefile().readline().strip(), flush=True)
    conn.close()
"#;

/// A client that connects once per start, says so, and stays up.
const STAYING_CLIENT: &str = r#"
import os, socket, time
address = os.environ["IPC_PORT_OUT"].split("address=")[1].split()[0]
host, port = address.rsplit(":", 1)
conn = socket.create_connection((host, int(port)))
conn.sendall(b"hello\n")
print("sent", flush=True)
time.sleep(3600)
"#;

/// The id of the only run in `runtime` (`ps`).
fn run_id_in_runtime(runtime: &Path) -> String {
    let ps = run_captured(
        Command::new(IPC_RUN)
            .args(["ps", "--format", "json", "--runtime-dir"])
            .arg(runtime),
    );
    let runs: Value = serde_json::from_slice(&ps.stdout).unwrap();
    runs[0]["run_id"].as_str().unwrap().to_owned()
}

/// The state of process `name` in the only run in `runtime` (`status`).
fn state_of(runtime: &Path, name: &str) -> String {
    let run_id = run_id_in_runtime(runtime);
    let status = run_captured(
        Command::new(IPC_RUN)
            .args(["status", &run_id, "--format", "json", "--runtime-dir"])
            .arg(runtime),
    );
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let process = status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {status}"));
    process["state"].as_str().unwrap().to_owned()
}

/// The group runs a test started: stopped (SIGTERM, so each cleans up) if
/// the test panics before it waited for them, so a failure leaves none.
struct StopOnPanic(Vec<nix::unistd::Pid>);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for &pid in &self.0 {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            }
        }
    }
}

#[test]
fn a_restarted_client_waits_again_for_its_remote_listener() {
    let mut scratch = Scratch::new("hostrun-restart");
    let file = two_groups(
        &mut scratch,
        [LOOP_SERVER, STAYING_CLIENT],
        "restart = \"always\"\nready_timeout = \"30s\"",
        "restart = \"always\"",
    );
    let port = free_port();
    let group = |name: &str, runtime: &Path, peer: &[&str]| {
        Live::start(file_group_command(&file, name, port, runtime, peer))
    };
    let (rt_a, rt_b) = (scratch.dir.join("rt-a"), scratch.dir.join("rt-b"));
    let mut a = group("a", &rt_a, &[]);
    let mut b = group("b", &rt_b, &["--peer", "a=127.0.0.1"]);
    let mut guard = StopOnPanic(vec![a.pid(), b.pid()]);
    a.wait_for_count("got hello", 1);
    // The listener's group goes away, listener and all.
    a.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(a.finish().code, 143);
    let run_id = run_id_in_runtime(&rt_b);
    let restart = run_captured(
        Command::new(IPC_RUN)
            .args(["restart", &run_id, "client", "--runtime-dir"])
            .arg(&rt_b),
    );
    assert_eq!(restart.code, 0, "{}", restart.stderr);
    b.wait_for_stderr("restarting on request");
    // Without its listener it is not started: a start now would only
    // see its connection refused.
    assert_eq!(state_of(&rt_b, "client"), "pending");
    assert_eq!(b.count_now("sent"), 1);
    // The listener's group is back: the client starts and connects.
    let mut a = group("a", &rt_a, &[]);
    guard.0.push(a.pid());
    a.wait_for_count("got hello", 1);
    b.wait_for_count("sent", 2);
    assert_ne!(state_of(&rt_b, "client"), "pending");
    for live in [&a, &b] {
        live.signal(nix::sys::signal::Signal::SIGTERM);
    }
    let (a, b) = (a.finish(), b.finish());
    assert_eq!((a.code, b.code), (143, 143), "{}\n{}", a.stderr, b.stderr);
    for rt in [rt_a, rt_b] {
        assert_nothing_in(&rt);
    }
}
