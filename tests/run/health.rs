//! Health checks, the watchdog and `after` conditions, against real
//! processes: an unhealthy process restarted by its policy, a dependant
//! started only once its dependency is healthy or completed, a missed
//! watchdog aborted and restarted, and checks that cost nothing between
//! intervals.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{Scratch, cpu_ticks, lines_of, run_topology};

#[test]
fn a_failing_health_check_restarts_the_process() {
    let (code, stdout, stderr) = run_topology(
        "health-restart",
        r#"
[process.srv]
shell = "echo start; exec sleep 30"
health = { exec = ["false"], interval = "200ms", retries = 2 }
restart = "on-failure"
restart_limit = 1
"#,
    );
    assert_eq!(lines_of(stdout.as_bytes(), "srv"), ["start", "start"]);
    assert!(
        stderr.contains("srv: unhealthy: 2 health check(s) failed in a row"),
        "{stderr}"
    );
    assert_eq!(code, 128 + 9, "killed by SIGKILL, restart limit reached");
}

#[test]
fn a_dependant_starts_only_once_its_dependency_is_healthy() {
    let mut scratch = Scratch::new("health-gate");
    let flag = scratch.dir.join("db-ok");
    let file = scratch.topology(&format!(
        r#"
exit_code_from = "web"
[process.db]
shell = "echo db-start; sleep 0.3; touch {flag}; exec sleep 30"
health = {{ exec = ["test", "-e", "{flag}"], interval = "50ms", retries = 1000 }}
[process.web]
shell = "test -e {flag} && echo db-was-healthy"
after = {{ db = "healthy" }}
"#,
        flag = flag.display()
    ));
    let finished = scratch.run(&file);
    assert_eq!(
        lines_of(&finished.stdout, "web"),
        ["db-was-healthy"],
        "{}",
        finished.stderr
    );
    assert_eq!(finished.code, 0, "{}", finished.stderr);
}

#[test]
fn a_server_starts_after_its_migration_completed() {
    let mut scratch = Scratch::new("health-completed");
    let schema = scratch.dir.join("schema");
    let file = scratch.topology(&format!(
        r#"
exit_code_from = "server"
[process.migrate]
shell = "sleep 0.2; echo v2 > {schema}"
[process.server]
shell = "echo serving schema $(cat {schema})"
after = {{ migrate = "completed" }}
"#,
        schema = schema.display()
    ));
    let finished = scratch.run(&file);
    assert_eq!(
        lines_of(&finished.stdout, "server"),
        ["serving schema v2"],
        "{}",
        finished.stderr
    );
    assert_eq!(finished.code, 0);
}

#[test]
fn a_failed_migration_fails_its_dependant_with_the_reason() {
    let (code, stdout, stderr) = run_topology(
        "health-completed-failed",
        r#"
[process.migrate]
shell = "exit 1"
[process.server]
shell = "echo serving"
after = { migrate = "completed" }
"#,
    );
    assert!(lines_of(stdout.as_bytes(), "server").is_empty(), "{stdout}");
    assert!(
        stderr.contains("server: not started: migrate exited 1"),
        "{stderr}"
    );
    // The first failure decides the exit status: the migration's.
    assert_eq!(code, 1);
}

#[test]
fn a_missed_watchdog_aborts_and_restarts() {
    let (code, stdout, stderr) = run_topology(
        "health-watchdog",
        r#"
[process.dog]
shell = "echo usec=$WATCHDOG_USEC; exec sleep 30"
watchdog = "500ms"
restart = "on-failure"
restart_limit = 1
"#,
    );
    assert_eq!(
        lines_of(stdout.as_bytes(), "dog"),
        ["usec=500000", "usec=500000"]
    );
    assert!(
        stderr.contains("dog: watchdog: no WATCHDOG=1 within 500ms; aborting it (SIGABRT)"),
        "{stderr}"
    );
    assert_eq!(code, 128 + 6);
}

#[test]
fn a_pinged_watchdog_leaves_the_process_alone() {
    let mut scratch = Scratch::new("health-watchdog-pinged");
    let script = scratch.dir.join("dog.py");
    std::fs::write(
        &script,
        r#"
import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for n in range(20):
    s.sendto(b"WATCHDOG=1\nSTATUS=round %d" % n, os.environ["NOTIFY_SOCKET"])
    time.sleep(0.05)
print("done", flush=True)
"#,
    )
    .unwrap();
    let file = scratch.topology(&format!(
        r#"
[process.dog]
cmd = ["python3", "{}"]
watchdog = "500ms"
"#,
        script.display()
    ));
    let finished = scratch.run(&file);
    assert_eq!(lines_of(&finished.stdout, "dog"), ["done"]);
    assert!(!finished.stderr.contains("SIGABRT"), "{}", finished.stderr);
    assert_eq!(finished.code, 0, "{}", finished.stderr);
}

#[test]
fn health_checks_cost_no_cpu_between_intervals() {
    let mut scratch = Scratch::new("health-idle");
    let file = scratch.topology(
        r#"
[process.idle]
shell = "echo idle; exec sleep 30"
health = { tcp = "127.0.0.1:9", interval = "1s", timeout = "200ms", retries = 1000 }
watchdog = "1h"
"#,
    );
    let mut live = scratch.live(&file);
    live.wait_for_count("idle", 1);
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_ticks(live.pid().as_raw());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(live.pid().as_raw()) - before;
    // Clock ticks are 10 ms: a polling loop would show many; two checks
    // (one connect each) show none.
    assert!(
        used <= 2,
        "supervisor used {used} ticks with idle health checks"
    );
    live.signal(Signal::SIGTERM);
    let _ = live.finish();
}

/// An HTTP server on the listener ipc-run hands over: 503 to its first two
/// requests, then 200; it counts the requests in a file.
const COUNTING_SERVER: &str = r#"
import socket, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
count = [0]
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        count[0] += 1
        with open(sys.argv[1], "w") as f:
            f.write(str(count[0]))
        self.send_response(200 if count[0] >= 3 and self.path == "/healthz" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
class Adopted(HTTPServer):
    def server_bind(self):
        pass
    def server_activate(self):
        pass
server = Adopted(("", 0), Handler, bind_and_activate=False)
server.socket = socket.socket(fileno=3)
server.serve_forever()
"#;

#[test]
fn an_http_check_over_the_processs_own_listener_wants_a_2xx() {
    let mut scratch = Scratch::new("health-http");
    let script = scratch.dir.join("server.py");
    std::fs::write(&script, COUNTING_SERVER).unwrap();
    let count = scratch.dir.join("count");
    let file = scratch.topology(&format!(
        r#"
exit_code_from = "web"
[process.srv]
cmd = ["python3", "{script}", "{count}"]
health = {{ http = "api/healthz", interval = "50ms", retries = 100 }}
ports.api = {{ fd = 3 }}
[process.web]
shell = "test $(cat {count}) -ge 3 && echo healthy after the third request"
after = {{ srv = "healthy" }}
[[edge]]
from = "@external"
to = "srv.api"
traffic = "request"
protocol = "http"
"#,
        script = script.display(),
        count = count.display()
    ));
    let finished = scratch.run(&file);
    assert_eq!(
        lines_of(&finished.stdout, "web"),
        ["healthy after the third request"],
        "{}",
        finished.stderr
    );
    assert_eq!(finished.code, 0);
}

#[test]
fn a_dependency_that_can_no_longer_turn_healthy_fails_its_dependant() {
    let (code, stdout, stderr) = run_topology(
        "health-never-healthy",
        r#"
[process.db]
shell = "exec sleep 30"
health = { exec = ["false"], interval = "50ms", retries = 1 }
[process.web]
shell = "echo web"
after = { db = "healthy" }
"#,
    );
    assert!(lines_of(stdout.as_bytes(), "web").is_empty(), "{stdout}");
    assert!(
        stderr.contains("web: not started: db ended before it was healthy"),
        "{stderr}"
    );
    assert_ne!(code, 0);
}

#[test]
fn started_does_not_wait_for_readiness() {
    let (code, stdout, stderr) = run_topology(
        "health-started",
        r#"
exit_code_from = "web"
[process.db]
shell = "exec sleep 30"
ready = "notify"
ready_timeout = "1h"
[process.web]
shell = "echo web"
after = { db = "started" }
"#,
    );
    assert_eq!(lines_of(stdout.as_bytes(), "web"), ["web"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_check_that_outlives_its_timeout_fails_and_is_killed() {
    let (code, _, stderr) = run_topology(
        "health-timeout",
        r#"
[process.db]
shell = "exec sleep 30"
health = { exec = ["sleep", "20"], interval = "10ms", timeout = "100ms", retries = 1 }
"#,
    );
    assert!(
        stderr.contains(
            "db: unhealthy: 1 health check(s) failed in a row, the last: no answer within 100ms"
        ),
        "{stderr}"
    );
    assert_eq!(code, 128 + 9);
}

#[test]
fn a_connect_check_reaches_the_listener_of_the_processs_own_port() {
    let (code, stdout, stderr) = run_topology(
        "health-connect",
        r#"
exit_code_from = "web"
[process.srv]
shell = "exec sleep 30"
health = { connect = "api", interval = "20ms" }
[process.web]
shell = "echo web"
after = { srv = "healthy" }
[[edge]]
from = "@external"
to = "srv.api"
mechanism = "unix-listener"
"#,
    );
    assert_eq!(lines_of(stdout.as_bytes(), "web"), ["web"], "{stderr}");
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn an_exec_check_runs_with_its_processs_env_ports_and_cwd() {
    let mut scratch = Scratch::new("health-where");
    let home = scratch.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("marker"), "").unwrap();
    // Passes only as srv: its own `env`, the description of its port and
    // its `cwd` (a relative `test -f`).
    let file = scratch.topology(&format!(
        r#"
exit_code_from = "web"
[process.srv]
shell = "exec sleep 30"
cwd = "{home}"
env = {{ TOKEN = "s3cret-{{run_id}}" }}
health = {{ exec = ["sh", "-c", "case $TOKEN in s3cret-?*) ;; *) exit 1;; esac; test -n \"$IPC_PORT_API\" && test -n \"$IPC_RUN_PROCESS\" && test -f marker"], interval = "20ms", retries = 1 }}
[process.web]
shell = "echo web"
after = {{ srv = "healthy" }}
[[edge]]
from = "@external"
to = "srv.api"
mechanism = "unix-listener"
"#,
        home = home.display()
    ));
    let finished = scratch.run(&file);
    assert_eq!(
        lines_of(&finished.stdout, "web"),
        ["web"],
        "{}",
        finished.stderr
    );
    assert_eq!(finished.code, 0, "{}", finished.stderr);
}

#[test]
fn an_exec_check_runs_as_its_processs_user() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP an_exec_check_runs_as_its_processs_user: switching users needs root");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let (code, stdout, stderr) = run_topology(
        "health-user",
        &format!(
            r#"
exit_code_from = "web"
[process.srv]
shell = "exec sleep 30"
user = "nobody"
health = {{ exec = ["sh", "-c", "test \"$(id -u)\" = {uid} && test \"$USER\" = nobody"], interval = "20ms", retries = 1 }}
[process.web]
shell = "echo web"
after = {{ srv = "healthy" }}
"#,
            uid = nobody.uid
        ),
    );
    assert_eq!(lines_of(stdout.as_bytes(), "web"), ["web"], "{stderr}");
    assert_eq!(code, 0, "{stderr}");
}
