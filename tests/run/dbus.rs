//! A private D-Bus bus: a `dbus` edge without `to` runs the real
//! `dbus-daemon` as a managed broker. A jeepney service owns a name on it
//! and `dbus-send` and a jeepney client call it, over Unix and TCP; a
//! missing `dbus-daemon` is a launch error naming its package; after a
//! SIGKILL of ipc-run, `ipc-run clean` leaves no daemon and no file.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{IPC_RUN, RunObjects, Scratch, lines_of, plan_json, stacks, wait_dead};

/// Connects to `$DBUS_SESSION_BUS_ADDRESS` with jeepney, which speaks
/// only Unix addresses: over TCP the socket and the ANONYMOUS handshake
/// the private bus offers there are made here.
const CONNECT: &str = r#"
import os, socket
from jeepney.auth import make_auth_anonymous
from jeepney.io.blocking import DBusConnection, open_dbus_connection
def connect():
    address = os.environ["DBUS_SESSION_BUS_ADDRESS"]
    if not address.startswith("tcp:"):
        return open_dbus_connection("SESSION")
    keys = dict(kv.split("=", 1) for kv in address[4:].split(","))
    sock = socket.create_connection((keys["host"], int(keys["port"])))
    sock.sendall(b"\0" + make_auth_anonymous())
    assert sock.recv(4096).startswith(b"OK "), "ANONYMOUS refused"
    sock.sendall(b"BEGIN\r\n")
    return DBusConnection(sock)
"#;

/// Owns org.ipcrun.Greeter, says READY=1 once it does, answers `CALLS`
/// calls of Hello(s) and exits (or, with CALLS=0, forever).
const GREETER: &str = r#"
from jeepney import HeaderFields, MessageType, new_method_return
from jeepney.bus_messages import message_bus
bus = connect()
owned = bus.send_and_get_reply(message_bus.RequestName("org.ipcrun.Greeter", 4))
assert owned.body == (1,), f"could not own the name: {owned.body}"
notify = os.environ["NOTIFY_SOCKET"]
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(
    b"READY=1", "\0" + notify[1:] if notify.startswith("@") else notify)
served, calls = 0, int(os.environ["CALLS"])
while calls == 0 or served < calls:
    call = bus.receive()
    fields = call.header.fields
    if call.header.message_type == MessageType.method_call and fields.get(HeaderFields.member) == "Hello":
        bus.send(new_method_return(call, "s", (f"hello, {call.body[0]}",)))
        served += 1
print(f"greeter: answered {served} calls", flush=True)
"#;

const CALLER: &str = r#"
from jeepney import DBusAddress, new_method_call
bus = connect()
greeter = DBusAddress("/org/ipcrun/Greeter", bus_name="org.ipcrun.Greeter", interface="org.ipcrun.Greeter")
print(bus.send_and_get_reply(new_method_call(greeter, "Hello", "s", ("jeepney",))).body[0], flush=True)
"#;

/// The greeter, a dbus-send caller and a jeepney caller on a private bus;
/// `address` puts the bus on TCP; `calls = 0` keeps the greeter serving
/// and the callers sleeping after their call.
fn bus_topology(address: Option<&str>, calls: u32) -> String {
    stacks::program("dbus-daemon", "dbus-daemon");
    let dbus_send = stacks::program("dbus-send", "dbus-bin");
    let python = stacks::python_with("jeepney");
    let py = |script: &str| format!("{:?}", format!("{CONNECT}{script}"));
    // dbus-send ends its literal reply without a newline.
    let linger = if calls == 0 { "; echo; sleep 600" } else { "" };
    let address = address.map_or(String::new(), |a| format!("address = {a:?}"));
    format!(
        r#"
[process.greeter]
ready = "notify"
env = {{ CALLS = "{calls}" }}
cmd = ["{python}", "-c", {greeter}]

[process.shell-caller]
after = ["greeter"]
shell = '"{dbus_send}" --bus="$DBUS_SESSION_BUS_ADDRESS" --print-reply=literal --dest=org.ipcrun.Greeter /org/ipcrun/Greeter org.ipcrun.Greeter.Hello string:dbus-send{linger}'

[process.py-caller]
after = ["greeter"]
shell = '"{python}" -c "$SCRIPT"{linger}'
env = {{ SCRIPT = {caller} }}

[[edge]]
name = "bus"
from = ["greeter", "shell-caller", "py-caller"]
traffic = "request"
protocol = "dbus"
{address}
"#,
        python = python.display(),
        dbus_send = dbus_send.display(),
        greeter = py(GREETER),
        caller = py(CALLER),
    )
}

/// Pids of the dbus-daemons working in a directory under `runtime` (the
/// broker runs in its run directory), whether or not it still exists.
fn daemons_under(runtime: &Path) -> Vec<i32> {
    let runtime = runtime.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            comm.trim() == "dbus-daemon" && cwd.to_string_lossy().starts_with(&runtime)
        })
        .collect()
}

/// Runs the finite bus topology and checks both callers were answered,
/// the broker was stopped, and nothing is left.
fn serves_both_callers(case: &str, address: Option<&str>) {
    let mut scratch = Scratch::new(case);
    let file = scratch.topology(&bus_topology(address, 2));
    let result = scratch.run(&file);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_eq!(
        lines_of(&result.stdout, "shell-caller"),
        ["   hello, dbus-send"]
    );
    assert_eq!(lines_of(&result.stdout, "py-caller"), ["hello, jeepney"]);
    assert_eq!(
        lines_of(&result.stdout, "greeter"),
        ["greeter: answered 2 calls"]
    );
    assert!(
        result.stderr.contains("bus-broker: exited 0 (stopped)"),
        "the broker is stopped once its clients are done: {}",
        result.stderr
    );
    let objects = RunObjects::of(&plan_json(&file), &Default::default(), &result.stderr);
    objects.assert_gone(false);
    scratch.assert_left_nothing();
    assert_eq!(daemons_under(&scratch.runtime()), Vec::<i32>::new());
}

#[test]
fn a_private_bus_over_unix_serves_dbus_send_and_jeepney() {
    serves_both_callers("dbus-unix", None);
}

#[test]
fn a_private_bus_over_tcp_serves_dbus_send_and_jeepney() {
    serves_both_callers("dbus-tcp", Some("127.0.0.1:0"));
}

#[test]
fn the_broker_is_stopped_after_its_clients_and_their_status_is_the_runs() {
    stacks::program("dbus-daemon", "dbus-daemon");
    let mut scratch = Scratch::new("dbus-status");
    let file = scratch.topology(
        r#"
[process.ok]
shell = 'test -n "$DBUS_SESSION_BUS_ADDRESS"'
[process.failing]
shell = 'exit 7'
[[edge]]
name = "bus"
from = ["ok", "failing"]
traffic = "request"
protocol = "dbus"
"#,
    );
    let result = scratch.run(&file);
    assert_eq!(result.code, 7, "{}", result.stderr);
    assert!(result.stderr.contains("ok: exited 0"), "{}", result.stderr);
    assert!(
        result.stderr.contains("bus-broker: exited 0 (stopped)"),
        "{}",
        result.stderr
    );
    scratch.assert_left_nothing();
}

#[test]
fn a_missing_dbus_daemon_is_a_launch_error_naming_its_package() {
    let mut scratch = Scratch::new("dbus-missing");
    let file = scratch.topology(
        r#"
[process.client]
cmd = ["true"]
[[edge]]
name = "bus"
from = "client"
traffic = "request"
protocol = "dbus"
"#,
    );
    // A PATH with no dbus-daemon on it.
    let empty = scratch.dir.join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let result = crate::support::run_captured(scratch.run_command(&file).env("PATH", &empty));
    assert_eq!(result.code, 3, "{}", result.stderr);
    assert!(
        result.stderr.contains(
            "start the broker of channel bus: dbus-daemon is not installed (not found on PATH; \
             Debian package `dbus-daemon`)"
        ),
        "{}",
        result.stderr
    );
    assert!(
        !result.stderr.contains("client: exited"),
        "{}",
        result.stderr
    );
    scratch.assert_left_nothing();
}

#[test]
fn after_sigkill_of_ipc_run_clean_leaves_no_daemon_and_no_file() {
    let mut scratch = Scratch::new("dbus-sigkill");
    let file = scratch.topology(&bus_topology(None, 0));
    let mut live = scratch.live(&file);
    live.wait_for_count("hello, jeepney", 1);
    live.wait_for_count("hello, dbus-send", 1);
    let daemons = daemons_under(&scratch.runtime());
    assert_eq!(daemons.len(), 1, "one broker: {daemons:?}");
    // The run id is in the debug log, which the reader thread may not have
    // taken in yet when the clients' lines have arrived on stdout.
    live.wait_for_stderr("run directory created");
    let objects = RunObjects::of(
        &plan_json(&file),
        &Default::default(),
        &live.stderr.join("\n"),
    );
    live.signal(Signal::SIGKILL);
    let _ = live.child.wait();
    let output = Command::new(IPC_RUN)
        .arg("clean")
        .arg("--runtime-dir")
        .arg(scratch.runtime())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        wait_dead(&daemons, Duration::from_secs(10)),
        Vec::<i32>::new(),
        "the broker outlived ipc-run and clean"
    );
    objects.assert_gone(false);
    scratch.assert_left_nothing();
    assert_eq!(daemons_under(&scratch.runtime()), Vec::<i32>::new());
}
