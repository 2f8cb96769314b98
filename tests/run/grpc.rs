//! gRPC through server-bound endpoints, with an unmodified grpcio server
//! and client (PyPI `grpcio`, `grpcio-health-checking`, from the venv
//! `scripts/test.sh` fills): over Unix and TCP, start order gated on the
//! health check, a restart on the held address, shutdown, SIGKILL of
//! ipc-run then `clean`, and the readiness timeout's message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{
    Scratch, clean_root, lines_of, names_containing, numbers_after, run_id_in, stacks,
    summary_line, wait_dead,
};

/// The server: `demo.Echo/Say` answers `TEXT from PID`, `demo.Echo/Quit`
/// stops it; the health service unless `HEALTH=0`. Binds the address its
/// port gives (`url=`), as any grpcio server does.
const SERVER: &str = r#"
import os, threading
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2_grpc
port = dict(kv.split("=", 1) for kv in os.environ["IPC_PORT_CALLS"].split())
# With GATE, every run after the first binds only once the gate is opened.
gate = os.environ.get("GATE")
if gate and os.path.exists(gate + ".seen"):
    print(f"waiting for the gate pid={os.getpid()}", flush=True)
    open(gate).read()
elif gate:
    open(gate + ".seen", "w").close()
quit = threading.Event()
def say(request, context):
    return request + f" from {os.getpid()}".encode()
def stop(request, context):
    quit.set()
    return b"bye"
echo = grpc.method_handlers_generic_handler("demo.Echo", {
    "Say": grpc.unary_unary_rpc_method_handler(say),
    "Quit": grpc.unary_unary_rpc_method_handler(stop),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[echo])
if os.environ.get("HEALTH", "1") == "1":
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
server.add_insecure_port(port["url"])
server.start()
print(f"serving pid={os.getpid()} url={port['url']}", flush=True)
quit.wait()
server.stop(grace=1).wait()
"#;

/// The client, by `MODE`: `once` calls Say, then Quit; `restart` calls
/// Say, then again (waiting for the channel to be ready) until another
/// server process answers, then Quit; `hold` calls Say and waits forever.
const CLIENT: &str = r#"
import os, threading
import grpc
port = dict(kv.split("=", 1) for kv in os.environ["IPC_PORT_CALLS"].split())
mode = os.environ["MODE"]
with grpc.insecure_channel(port["url"]) as channel:
    say = channel.unary_unary("/demo.Echo/Say")
    quit = channel.unary_unary("/demo.Echo/Quit")
    # No wait_for_ready: the first call must find the server serving.
    first = say(b"hello", timeout=10).decode()
    print("first:", first, flush=True)
    if mode == "hold":
        print("called", flush=True)
        threading.Event().wait()
    if mode == "restart":
        while True:
            try:
                again = say(b"again", timeout=30, wait_for_ready=True).decode()
            except grpc.RpcError as e:
                continue
            if again.split()[-1] != first.split()[-1]:
                print("second:", again, flush=True)
                break
    quit(b"", timeout=10)
"#;

struct Stack {
    python: PathBuf,
    server: PathBuf,
    client: PathBuf,
}

fn stack(scratch: &Scratch) -> Stack {
    let python = stacks::python_with("grpc");
    stacks::python_with("grpc_health.v1.health");
    let server = scratch.dir.join("grpc_server.py");
    let client = scratch.dir.join("grpc_client.py");
    std::fs::write(&server, SERVER).unwrap();
    std::fs::write(&client, CLIENT).unwrap();
    Stack {
        python,
        server,
        client,
    }
}

/// A server and one client `after` it, joined by a grpc edge with `extra`
/// keys; `server_keys` go to the server process.
fn topology(s: &Stack, mode: &str, server_keys: &str, extra: &str) -> String {
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    format!(
        r#"
exit_code_from = "client"
[process.server]
cmd = [{py}, {server}]
{server_keys}
[process.client]
cmd = [{py}, {client}]
after = ["server"]
env = {{ MODE = "{mode}" }}
[[edge]]
name = "calls"
from = "client.calls"
to = "server.calls"
traffic = "request"
protocol = "grpc"
{extra}
"#,
        py = q(&s.python),
        server = q(&s.server),
        client = q(&s.client),
    )
}

#[test]
fn a_grpcio_client_after_its_server_calls_it_over_unix_and_tcp() {
    let cases = [
        ("unix, health check", ""),
        ("tcp, health check", r#"address = "127.0.0.1:0""#),
        (
            "tcp, connect probe",
            "address = \"127.0.0.1:0\"\nprobe = \"connect\"",
        ),
    ];
    for (case, extra) in cases {
        let mut scratch = Scratch::new("grpc-calls");
        let s = stack(&scratch);
        let file = scratch.topology(&topology(&s, "once", "", extra));
        let run = scratch.run(&file);
        assert_eq!(run.code, 0, "{case}: {}", run.stderr);
        let served = lines_of(&run.stdout, "server");
        assert_eq!(served.len(), 1, "{case}: {served:?}");
        let pid = numbers_after(&served[0], "pid=");
        assert_eq!(
            lines_of(&run.stdout, "client"),
            [format!("first: hello from {}", pid[0])],
            "{case}"
        );
        let url = served[0].split("url=").nth(1).unwrap();
        if extra.is_empty() {
            assert!(
                url.starts_with("unix:/") && url.ends_with("/calls.sock"),
                "{url}"
            );
        } else {
            let port: u16 = url.strip_prefix("127.0.0.1:").unwrap().parse().unwrap();
            assert_ne!(port, 0, "{case}");
        }
        scratch.assert_left_nothing();
    }
}

#[test]
fn a_killed_grpc_server_restarts_on_the_same_held_port_and_the_client_calls_again() {
    let mut scratch = Scratch::new("grpc-restart");
    let s = stack(&scratch);
    let toml = topology(
        &s,
        "restart",
        "restart = \"on-failure\"",
        r#"address = "127.0.0.1:0""#,
    );
    let file = scratch.topology(&toml);
    let mut live = scratch.live(&file);
    live.wait_for_count("first: hello from", 1);
    let first = live
        .stdout
        .iter()
        .find(|l| l.contains("first:"))
        .unwrap()
        .clone();
    let pid = numbers_after(&first, "from ")[0];
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let run = live.finish();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let served = lines_of(&run.stdout, "server");
    assert_eq!(served.len(), 2, "two server runs: {served:?}");
    let url = |line: &str| line.split("url=").nth(1).unwrap().to_owned();
    assert_eq!(
        url(&served[0]),
        url(&served[1]),
        "the same address after the restart"
    );
    let second = lines_of(&run.stdout, "client");
    let new_pid = numbers_after(&served[1], "pid=")[0];
    assert_eq!(second[1], format!("second: again from {new_pid}"));
    // The client's end stops the run, and the server with it.
    assert!(
        summary_line(&run.stderr, "server").contains("restarts 1"),
        "{}",
        run.stderr
    );
    scratch.assert_left_nothing();
}

#[test]
fn after_sigkill_of_ipc_run_clean_leaves_nothing_of_a_grpc_run() {
    let mut scratch = Scratch::new("grpc-sigkill");
    let s = stack(&scratch);
    let file = scratch.topology(&topology(&s, "hold", "", ""));
    let mut live = scratch.live(&file);
    live.wait_for_count("called", 1);
    // The client may call (and say so) before the server's own line is in.
    live.wait_for_count("serving", 1);
    let served = live.stdout.iter().find(|l| l.contains("serving")).unwrap();
    let server = numbers_after(served, "pid=")[0];
    let client_line = live.stdout.iter().find(|l| l.contains("first:")).unwrap();
    assert!(client_line.contains(&server.to_string()));
    let run_dir = scratch.first_run_dir();
    assert!(
        run_dir.join("calls.sock").exists(),
        "the server bound its socket"
    );
    live.wait_for_stderr("prepared");
    let run_id = run_id_in(&live.stderr.join("\n")).unwrap();
    live.signal(Signal::SIGKILL);
    let _ = live.child.wait();
    assert_eq!(
        wait_dead(&[server], Duration::from_secs(10)),
        Vec::<i32>::new()
    );
    let (code, stdout, stderr) = clean_root(&scratch.runtime());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("calls.sock"),
        "the socket file is the run's: {stdout}"
    );
    scratch.assert_left_nothing();
    assert_eq!(names_containing("/dev/shm", &run_id), Vec::<String>::new());
    assert_eq!(names_containing("/tmp", &run_id), Vec::<String>::new());
}

#[test]
fn a_grpc_server_without_the_health_service_times_out_naming_endpoint_address_and_failure() {
    let mut scratch = Scratch::new("grpc-timeout");
    let s = stack(&scratch);
    // The server binds within a fraction of a second; the timeout leaves
    // it 5 s, so even a loaded machine sees the health check's answer.
    let keys = "ready_timeout = \"5s\"\nenv = { HEALTH = \"0\" }";
    let file = scratch.topology(&topology(&s, "once", keys, ""));
    let run = scratch.run(&file);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let why = run
        .stderr
        .lines()
        .find(|l| l.starts_with("server: not ready:"))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(why.contains("endpoint `calls` at /"), "{why}");
    assert!(
        why.contains("calls.sock not served within 5000ms (probe grpc-health)"),
        "{why}"
    );
    assert!(
        why.contains("last attempt: the server ended the call without a health status"),
        "{why}"
    );
    assert!(
        lines_of(&run.stdout, "client").is_empty(),
        "the client never started"
    );
    scratch.assert_left_nothing();
}

#[test]
fn the_port_hold_lets_grpcio_bind_and_refuses_other_binds() {
    let python = stacks::python_with("grpc");
    stacks::program("setpriv", "util-linux");
    let script =
        std::path::Path::new(crate::support::MANIFEST_DIR).join("tests/run/grpc_port_hold.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "plain bind: refused",
            "connect to the hold alone: refused",
            "other uid, SO_REUSEPORT: refused",
            "grpcio first: served",
            "grpcio restarted: served",
        ],
    );
}

/// A grpcio client calls the health check of the tonic example server,
/// which adopts the listener ipc-run hands over (`endpoint = "handover"`).
const HEALTH_CLIENT: &str = r#"
import os
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
port = dict(kv.split("=", 1) for kv in os.environ["IPC_PORT_CALLS"].split())
# grpcio sends the socket path as :authority over Unix, which tonic's HTTP/2
# layer refuses (RST_STREAM, PROTOCOL_ERROR): name a plain host instead.
options = [("grpc.default_authority", "localhost")]
with grpc.insecure_channel(port["url"], options=options) as channel:
    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    print("health:", health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status), flush=True)
"#;

#[test]
fn a_tonic_server_adopts_the_handed_over_listener_and_a_grpcio_client_calls_it() {
    let root = Path::new(crate::support::MANIFEST_DIR);
    // scripts/test.sh builds the example (tonic and tokio are not ipc-run's
    // dependencies, and their build is set-up, not the test).
    let target = root.join("target/tonic-handover");
    let server = target.join("debug/ipc-run-example-tonic-handover");
    assert!(
        server.is_file(),
        "{} is not built: run scripts/test.sh, which builds examples/tonic-handover",
        server.display()
    );
    let mut scratch = Scratch::new("grpc-tonic");
    let python = stacks::python_with("grpc_health.v1.health");
    let client = scratch.dir.join("health_client.py");
    std::fs::write(&client, HEALTH_CLIENT).unwrap();
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let file = scratch.topology(&format!(
        r#"
exit_code_from = "client"
[process.server]
cmd = [{server}]
[process.client]
cmd = [{python}, {client}]
[[edge]]
name = "calls"
from = "client.calls"
to = "server.calls"
traffic = "request"
protocol = "grpc"
endpoint = "handover"
"#,
        server = q(&server),
        python = q(&python),
        client = q(&client),
    ));
    let run = scratch.run(&file);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(lines_of(&run.stdout, "client"), ["health: SERVING"]);
    assert_eq!(
        lines_of(&run.stdout, "server"),
        ["tonic serving on the inherited listener"]
    );
    scratch.assert_left_nothing();
}

#[test]
fn a_probe_attempt_that_gets_no_answer_is_dropped_and_the_loop_goes_on() {
    // A server that listens on its address and never answers: each health
    // check is accepted and then left hanging, so each attempt ends on its
    // own time bound, while the loop keeps relaying the other process.
    let (code, stdout, stderr) = crate::support::run_topology(
        "grpc-silent",
        r#"
exit_code_from = "server"
[process.server]
ready_timeout = "5s"
cmd = ["python3", "-c", '''
import os, socket, time
port = dict(kv.split("=", 1) for kv in os.environ["IPC_PORT_CALLS"].split())
s = socket.socket(socket.AF_UNIX)
s.bind(port["address"])
s.listen(16)
print("listening", flush=True)
time.sleep(60)
''']
[process.ticker]
cmd = ["sh", "-c", "echo tick; exec sleep 60"]
[process.client]
cmd = ["true"]
after = ["server"]
[[edge]]
name = "calls"
from = "client.calls"
to = "server.calls"
traffic = "request"
protocol = "grpc"
"#,
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stdout.contains("ticker | tick"), "{stdout}");
    let why = stderr
        .lines()
        .find(|l| l.starts_with("server: not ready:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        why.contains("last attempt: no answer within 1000ms"),
        "{why}"
    );
}

#[test]
fn a_restarted_server_bound_server_is_probed_again_before_a_dependent_starts() {
    let mut scratch = Scratch::new("grpc-reprobe");
    let s = stack(&scratch);
    let gate = scratch.dir.join("gate");
    let trigger = scratch.dir.join("trigger");
    for fifo in [&gate, &trigger] {
        nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    // `late` waits for the server and for `trigger`, which the test makes
    // ready only once the server has been killed and runs again, not
    // serving yet (it waits for `gate`).
    let toml = format!(
        r#"
exit_code_from = "late"
[process.server]
cmd = [{py}, {server}]
restart = "on-failure"
env = {{ GATE = {gate} }}
[process.trigger]
ready = {{ fd = 5 }}
shell = 'read go < {trigger}; echo >&5'
[process.late]
cmd = [{py}, {client}]
after = ["server", "trigger"]
env = {{ MODE = "once" }}
[[edge]]
name = "calls"
from = "late.calls"
to = "server.calls"
traffic = "request"
protocol = "grpc"
"#,
        py = q(&s.python),
        server = q(&s.server),
        client = q(&s.client),
        gate = q(&gate),
        trigger = q(&trigger),
    );
    let file = scratch.topology(&toml);
    let mut live = scratch.live(&file);
    live.wait_for_count("serving pid=", 1);
    // Its first run's endpoint was probed and served.
    wait_for_state(&scratch, "server", &["ready"]);
    let first = numbers_after(&live.stdout.join("\n"), "serving pid=")[0];
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    live.wait_for_count("waiting for the gate", 1);
    std::fs::write(&trigger, "go\n").unwrap();
    // Once `trigger` is ready, `late` would start in the same pass: it
    // must wait for the new run's endpoint to be served.
    let states = wait_for_state(&scratch, "trigger", &["ready", "exited"]);
    assert_eq!(states["late"], "pending", "{states:?}");
    std::fs::write(&gate, "go\n").unwrap();
    let run = live.finish();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let served = lines_of(&run.stdout, "server");
    let second = numbers_after(served.last().unwrap(), "pid=")[0];
    assert_eq!(
        lines_of(&run.stdout, "late"),
        [format!("first: hello from {second}")]
    );
    scratch.assert_left_nothing();
}

/// Asks `ipc-run status` until `process` is in one of `states`; every
/// process's state then. Bounded by a number of asks, not by time.
fn wait_for_state(
    scratch: &Scratch,
    process: &str,
    states: &[&str],
) -> std::collections::BTreeMap<String, String> {
    let mut last = std::collections::BTreeMap::new();
    for _ in 0..2000 {
        let output = std::process::Command::new(crate::support::IPC_RUN)
            .args(["status", "--format", "json", "--runtime-dir"])
            .arg(scratch.runtime())
            .env_remove("IPC_RUN_LOG")
            .output()
            .unwrap();
        let Ok(status) = serde_json::from_slice::<serde_json::Value>(&output.stdout) else {
            continue;
        };
        last = status["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let name = p["name"].as_str().unwrap_or_default().to_owned();
                (name, p["state"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        if last
            .get(process)
            .is_some_and(|s| states.contains(&s.as_str()))
        {
            return last;
        }
    }
    panic!("{process} never became {states:?}: {last:?}");
}
