//! ONC RPC with the real rpcgen and libtirpc (apt `rpcsvc-proto`,
//! `libtirpc-dev`), and the inetd styles it is served in: a listener on
//! fd 0 (`wait`) and one instance per connection (`endpoint =
//! "per-connection"`, `nowait`), the latter also with a plain program.
//! examples/onc is built by each case into its scratch directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::stacks;
use crate::support::*;

/// Builds examples/onc into `dir/onc` with make, rpcgen, cc and libtirpc;
/// fails naming the package when one is missing.
fn build_example(dir: &Path) -> PathBuf {
    stacks::program("rpcgen", "rpcsvc-proto");
    stacks::program("make", "make");
    stacks::program("cc", "gcc");
    assert!(
        Path::new("/usr/include/tirpc/rpc/rpc.h").is_file(),
        "libtirpc's headers are missing: apt install libtirpc-dev (scripts/test.sh does)"
    );
    let out = dir.join("onc");
    let built = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(Path::new(MANIFEST_DIR).join("examples/onc"))
        .arg(format!("OUT={}", out.display()))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "building examples/onc failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

/// The distinct pids the `instance PID` lines of `name` on stderr name.
fn instances(stderr: &str, name: &str) -> BTreeSet<String> {
    let prefix = format!("{name} ");
    stderr
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.split("| instance ").nth(1))
        .map(str::to_owned)
        .collect()
}

/// [`instances`] as pids.
fn instance_pids(stderr: &str, name: &str) -> Vec<i32> {
    instances(stderr, name)
        .iter()
        .map(|pid| pid.parse().unwrap())
        .collect()
}

/// Asserts that `name` ran `count` instances, one per connection.
fn assert_instances(run: &Finished, name: &str, count: usize) {
    assert_eq!(
        instances(&run.stderr, name).len(),
        count,
        "one instance per connection: {}",
        run.stderr
    );
}

#[test]
fn rpcgen_server_serves_the_listener_on_fd_0_and_clients_call_it_directly() {
    let mut scratch = Scratch::new("onc-inetd");
    let bin = build_example(&scratch.dir);
    let file = scratch.topology(&format!(
        r#"
exit_code_from = "client"
[process.calc]
cmd = ["{bin}/calc_server"]
[process.calc.ports.calc]
fd = 0
[process.client]
shell = 'for n in 0 1 2; do {bin}/calc_client "client $n" "$n" 40 || exit; done'
[[edge]]
name = "calc"
from = "client.calc"
to = "calc.calc"
traffic = "request"
protocol = "onc-rpc"
address = "127.0.0.1:0"
"#,
        bin = bin.display()
    ));
    let plan = plan_json(&file);
    let calc = &plan["processes"][0];
    assert_eq!(calc["fds"][0]["fd"], 0, "{calc}");
    let env = calc["env"].to_string();
    assert!(
        !env.contains("LISTEN_FDS"),
        "a socket on fd 0 is not in LISTEN_FDS: {env}"
    );
    let result = scratch.run(&file);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_eq!(
        lines_of(&result.stdout, "client"),
        (0..3)
            .map(|n| format!("client {n}: {n} + 40 = {}", n + 40))
            .collect::<Vec<_>>(),
        "{}",
        result.stderr
    );
    scratch.assert_left_nothing();
}

#[test]
fn per_connection_onc_server_gives_each_client_an_instance_of_its_own() {
    let mut scratch = Scratch::new("onc-per-connection");
    let bin = build_example(&scratch.dir);
    let result = scratch.run_to_success(&format!(
        r#"
exit_code_from = "clients"
[process.adder]
shell = 'echo "instance $$" >&2; exec {bin}/calc_conn_server'
[process.clients]
shell = '''
for n in 0 1 2 3; do {bin}/calc_client "client $n" "$n" 100 & pids="$pids $!"; done
for pid in $pids; do wait "$pid" || exit 1; done
'''
[[edge]]
name = "calc"
from = "clients.calc"
to = "adder.calc"
traffic = "request"
protocol = "onc-rpc"
endpoint = "per-connection"
"#,
        bin = bin.display()
    ));
    let mut answers = lines_of(&result.stdout, "clients");
    answers.sort();
    assert_eq!(
        answers,
        (0..4)
            .map(|n| format!("client {n}: {n} + 100 = {}", n + 100))
            .collect::<Vec<_>>()
    );
    assert_instances(&result, "adder", 4);
}

#[test]
fn per_connection_serves_a_plain_program_on_stdin_and_stdout() {
    let mut scratch = Scratch::new("per-connection-cat");
    let result = scratch.run_to_success(
        r#"
exit_code_from = "driver"
[process.echo]
shell = 'echo "instance $$" >&2; exec cat'
[process.driver]
cmd = ["python3", "-c", '''
import os, socket
port = dict(kv.split("=", 1) for kv in os.environ["IPC_PORT_CALLS"].split())
# Every connection is open before any is answered: each has its own cat.
socks = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(5)]
for s in socks:
    s.connect(port["address"])
for k, s in enumerate(socks):
    s.sendall(b"line %d\n" % k)
    s.shutdown(socket.SHUT_WR)
for s in socks:
    print("echoed", s.makefile().read().strip(), flush=True)
''']
[[edge]]
name = "calls"
from = "driver.calls"
to = "echo.calls"
traffic = "request"
protocol = "lines"
endpoint = "per-connection"
"#,
    );
    assert_eq!(
        lines_of(&result.stdout, "driver"),
        (0..5)
            .map(|k| format!("echoed line {k}"))
            .collect::<Vec<_>>()
    );
    assert_instances(&result, "echo", 5);
}

#[test]
fn sigkill_of_ipc_run_with_connections_open_then_clean_leaves_nothing() {
    let mut scratch = Scratch::new("onc-sigkill");
    let bin = build_example(&scratch.dir);
    let file = scratch.topology(&format!(
        r#"
[process.calc]
cmd = ["{bin}/calc_server"]
[process.calc.ports.calc]
fd = 0
[process.adder]
shell = 'echo "instance $$" >&2; exec {bin}/calc_conn_server'
[process.client]
replicas = 2
cmd = ["python3", "-c", '''
import os, socket, time
port = dict(kv.split("=", 1) for kv in os.environ["IPC_PORT_ADDER"].split())
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(port["address"])
print("connected", flush=True)
time.sleep(600)
''']
[[edge]]
name = "calc"
from = "client.calc"
to = "calc.calc"
traffic = "request"
protocol = "onc-rpc"
address = "127.0.0.1:0"
[[edge]]
name = "adder"
from = "client.adder"
to = "adder.adder"
traffic = "request"
protocol = "onc-rpc"
endpoint = "per-connection"
"#,
        bin = bin.display()
    ));
    let mut live = scratch.live(&file);
    live.wait_for_count("connected", 2);
    while instances(&live.stderr.join("\n"), "adder").len() < 2 {
        let line = live
            .lines
            .recv_timeout(Duration::from_secs(15))
            .expect("two adder instances start");
        live.take(line);
    }
    let pids = instance_pids(&live.stderr.join("\n"), "adder");
    live.signal(Signal::SIGKILL);
    let _ = live.child.wait();
    assert_eq!(
        wait_dead(&pids, Duration::from_secs(10)),
        Vec::<i32>::new(),
        "per-connection instances outlived ipc-run"
    );
    let (code, stdout, stderr) = clean_root(&scratch.runtime());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("cleaned "), "{stdout}");
    scratch.assert_left_nothing();
}

#[test]
fn per_connection_cap_keeps_further_connections_in_the_backlog() {
    let mut scratch = Scratch::new("per-connection-cap");
    let slots = scratch.dir.join("slots");
    std::fs::create_dir(&slots).unwrap();
    // Each instance makes its file, says how many instances run (one file
    // each), then echoes its connection; its file goes before it exits.
    let result = scratch.run_to_success(&format!(
        r#"
exit_code_from = "driver"
[process.echo]
shell = 'touch "$SLOTS/$$"; ls "$SLOTS" | wc -l; cat; rm "$SLOTS/$$"'
env = {{ SLOTS = "{slots}" }}
[process.driver]
cmd = ["python3", "-c", '''
import os, socket
port = dict(kv.split("=", 1) for kv in os.environ["IPC_PORT_CALLS"].split())
def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(port["address"])
    return s, s.makefile()
(a, ra), (b, rb) = connect(), connect()
print("a sees", ra.readline().strip(), "b sees", rb.readline().strip(), flush=True)
# Two run: a third connection waits in the backlog until one of them ends.
c, rc = connect()
c.sendall(b"from c\n")
c.shutdown(socket.SHUT_WR)
# Not served while two run: an instance would answer at once.
c.settimeout(1.0)
try:
    print("c served early:", c.recv(64), flush=True)
except socket.timeout:
    print("c waits", flush=True)
c.settimeout(None)
a.shutdown(socket.SHUT_WR)
ra.read()
print("c sees", rc.readline().strip(), "then", rc.read().strip(), flush=True)
b.close()
''']
[[edge]]
name = "calls"
from = "driver.calls"
to = "echo.calls"
traffic = "request"
protocol = "lines"
endpoint = "per-connection"
max_connections = 2
"#,
        slots = slots.display()
    ));
    let lines = lines_of(&result.stdout, "driver");
    assert_eq!(lines.len(), 3, "{lines:?}\n{}", result.stderr);
    assert_eq!(lines[1], "c waits", "{lines:?}");
    // Without the cap the third would have run beside both others (3).
    assert_eq!(
        lines[2], "c sees 2 then from c",
        "the third instance starts only once the first ended"
    );
}

#[test]
fn sigterm_stops_accepting_and_the_running_instances() {
    let mut scratch = Scratch::new("per-connection-sigterm");
    let file = scratch.topology(
        r#"
[process.echo]
shell = 'echo "instance $$" >&2; exec cat'
[process.client]
cmd = ["python3", "-c", '''
import os, socket, time
port = dict(kv.split("=", 1) for kv in os.environ["IPC_PORT_CALLS"].split())
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(port["address"])
s.sendall(b"ping\n")
print("echoed", s.makefile().readline().strip(), flush=True)
time.sleep(600)
''']
[[edge]]
name = "calls"
from = "client.calls"
to = "echo.calls"
traffic = "request"
protocol = "lines"
endpoint = "per-connection"
"#,
    );
    let mut live = scratch.live(&file);
    live.wait_for_count("echoed ping", 1);
    live.signal(Signal::SIGTERM);
    let result = live.finish();
    assert_eq!(result.code, 143, "{}", result.stderr);
    assert!(
        summary_line(&result.stderr, "echo").contains("exited 0 (stopped)"),
        "{}",
        result.stderr
    );
    let pids = instance_pids(&result.stderr, "echo");
    assert_eq!(pids.len(), 1, "{}", result.stderr);
    assert_eq!(wait_dead(&pids, Duration::from_secs(5)), Vec::<i32>::new());
    scratch.assert_left_nothing();
}
