//! HTTP/JSON-RPC with a real socket-activated server: an unmodified
//! gunicorn (PyPI, from the test venv) adopts the listeners of two `rpc`
//! edges, one over Unix and one over TCP, through `LISTEN_FDS`/`LISTEN_PID`
//! and serves `examples/http/jsonrpc_app.py` from its workers; curl is the
//! client. A missing gunicorn or curl fails the test with what to install.
//!
//! Each case gives ipc-run (and so its children) a `HOME` and `TMPDIR` of
//! its own, so that anything gunicorn left there would be seen.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::*;

/// A gunicorn server `api` with two workers, ready when it says so
/// (`READY=1`, sent once `--preload` has imported the app), and a curl
/// client that asks which worker answers, four times over each transport,
/// prints `port URL` and then waits to be stopped.
fn topology(python: &Path, app: &str) -> String {
    let app_dir = Path::new(MANIFEST_DIR).join("examples/http");
    format!(
        r#"
name = "http-case"

[process.api]
cmd = ["{python}", "-m", "gunicorn", "--chdir", "{app_dir}", "--workers", "2", "--preload",
       "--graceful-timeout", "3", "--no-control-socket", "{app}"]
ready = "notify"

[process.client]
after = ["api"]
shell = '''
for kv in $IPC_PORT_LOCAL; do case $kv in address=*) sock=${{kv#address=}};; esac; done
for kv in $IPC_PORT_NET; do case $kv in url=*) url=${{kv#url=}};; esac; done
ask='{{"jsonrpc": "2.0", "id": 7, "method": "worker"}}'
for i in 1 2 3 4; do
  printf 'unix '; curl -sS --fail --unix-socket "$sock" http://localhost/ -d "$ask"; echo
  printf 'tcp '; curl -sS --fail "$url/" -d "$ask"; echo
done
echo "port $url"
exec sleep 600
'''

[[edge]]
name = "local"
from = "client"
to = "api"
traffic = "request"
protocol = "http"

[[edge]]
name = "net"
from = "client"
to = "api"
traffic = "request"
protocol = "http"
address = "127.0.0.1:0"
"#,
        python = python.display(),
        app_dir = app_dir.display(),
    )
}

/// A case's scratch directory, with the empty `HOME` and `TMPDIR` its run
/// gets.
fn scratch_with_home(case: &str) -> (Scratch, PathBuf, PathBuf) {
    let scratch = Scratch::new(case);
    let home = scratch.dir.join("home");
    let tmp = scratch.dir.join("tmp");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    (scratch, home, tmp)
}

/// `ipc-run run FILE` with the case's own `HOME` and `TMPDIR`.
fn run_at_home(scratch: &Scratch, file: &Path, home: &Path, tmp: &Path) -> std::process::Command {
    let mut command = scratch.run_command(file);
    command.env("HOME", home).env("TMPDIR", tmp);
    command
}

/// `ipc-run run` of the case's topology, with its own `HOME` and `TMPDIR`.
fn start(scratch: &mut Scratch, home: &Path, tmp: &Path) -> Live {
    let python = stacks::python_with("gunicorn");
    stacks::program("curl", "curl");
    let file = scratch.topology(&topology(&python, "jsonrpc_app:app"));
    let mut command = run_at_home(scratch, &file, home, tmp);
    command.env_remove("XDG_RUNTIME_DIR");
    Live::start(command)
}

/// What the run showed once the client has its eight answers.
struct Served {
    run_id: String,
    master: i32,
    workers: BTreeSet<i32>,
    tcp_port: u16,
}

/// Waits for the client's answers and checks them against gunicorn's own
/// log: it listens on the run's socket and port (the listeners it
/// adopted, nothing of its own), and the workers it booted answered.
fn served(live: &mut Live) -> Served {
    live.wait_for_count("port ", 1);
    // A worker's boot line may be relayed after its first answer: the two
    // streams are relayed independently.
    wait_for_stderr_count(live, "Booting worker with pid: ", 2);
    let url = live
        .stdout
        .iter()
        .find_map(|l| l.split_once("port ").map(|(_, url)| url.to_owned()))
        .unwrap();
    let tcp_port: u16 = url.rsplit_once(':').unwrap().1.parse().unwrap();
    let mut answered = BTreeSet::new();
    for transport in ["unix", "tcp"] {
        let answers = lines_of(&(live.stdout.join("\n") + "\n").into_bytes(), "client");
        let mine: Vec<&str> = answers
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{transport} ")))
            .collect();
        assert_eq!(mine.len(), 4, "{answers:?}");
        for answer in mine {
            let answer: Value = serde_json::from_str(answer).unwrap();
            assert_eq!(answer["id"], 7, "{answer}");
            answered.insert(answer["result"].as_i64().unwrap() as i32);
        }
    }
    let log = live.stderr.join("\n");
    let listening = log
        .lines()
        .find_map(|l| l.split_once("Listening at: "))
        .unwrap_or_else(|| panic!("gunicorn never listened: {log}"))
        .1;
    let run_id = run_id_in(&log).unwrap();
    assert!(
        listening.starts_with("unix:/")
            && listening.contains(&format!(
                "{run_id}/local.sock,http://127.0.0.1:{tcp_port} ("
            )),
        "gunicorn listens on {listening}, not on the run's listeners"
    );
    let master = master_in(listening);
    let workers: BTreeSet<i32> = numbers_after(&log, "Booting worker with pid: ")
        .into_iter()
        .collect();
    assert_eq!(workers.len(), 2, "{log}");
    assert!(answered.is_subset(&workers), "{answered:?} {workers:?}");
    for worker in &workers {
        assert_eq!(parent_of(*worker), Some(master), "worker {worker}");
    }
    Served {
        run_id,
        master,
        workers,
        tcp_port,
    }
}

/// The parent pid of a live process.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    stat[close + 2..].split_whitespace().nth(1)?.parse().ok()
}

/// Nothing of the run is left: no process, no listener, no bound
/// socket, nothing in the runtime directory, the case's `HOME` or `TMPDIR`.
fn assert_nothing_left(scratch: &Scratch, served: &Served, home: &Path, tmp: &Path) {
    // Checked first: the moment the run ended, not once its processes are.
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap();
    assert!(
        !unix.contains(&served.run_id),
        "a socket of the run is still bound"
    );
    let mut pids: Vec<i32> = served.workers.iter().copied().collect();
    pids.push(served.master);
    assert_eq!(wait_dead(&pids, Duration::from_secs(10)), Vec::<i32>::new());
    assert!(!tcp_listening(served.tcp_port), "port {}", served.tcp_port);
    scratch.assert_left_nothing();
    assert_empty(home, tmp);
}

/// Asserts that the case's `HOME` and `TMPDIR` hold nothing.
fn assert_empty(home: &Path, tmp: &Path) {
    for dir in [home, tmp] {
        let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
        assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
    }
}

#[test]
fn gunicorn_serves_json_rpc_on_the_adopted_unix_and_tcp_listeners_and_stops_on_sigterm() {
    let (mut scratch, home, tmp) = scratch_with_home("http-gunicorn");
    let mut live = start(&mut scratch, &home, &tmp);
    let served = served(&mut live);

    live.signal(Signal::SIGTERM);
    let result = live.finish();
    assert_eq!(result.code, 143, "{}", result.stderr);
    // Graceful: gunicorn handles the TERM, its workers exit, then the
    // master, with status 0, within the stop timeout.
    let gunicorn: Vec<&str> = result
        .stderr
        .lines()
        .filter(|l| l.starts_with("api "))
        .collect();
    assert!(
        gunicorn.iter().any(|l| l.contains("Handling signal: term")),
        "{gunicorn:?}"
    );
    assert_eq!(
        gunicorn
            .iter()
            .filter(|l| l.contains("Worker exiting"))
            .count(),
        2,
        "{gunicorn:?}"
    );
    assert!(
        summary_line(&result.stderr, "api").starts_with("api: exited 0 (stopped)"),
        "{}",
        result.stderr
    );
    assert_nothing_left(&scratch, &served, &home, &tmp);
}

#[test]
fn after_sigkill_of_ipc_run_and_clean_no_gunicorn_process_or_file_is_left() {
    let (mut scratch, home, tmp) = scratch_with_home("http-gunicorn-kill");
    let mut live = start(&mut scratch, &home, &tmp);
    let served = served(&mut live);

    live.signal(Signal::SIGKILL);
    live.child.wait().unwrap();
    // The master dies with ipc-run (parent-death signal); its workers
    // may outlive it until `clean` kills the run's process groups.
    assert_eq!(
        wait_dead(&[served.master], Duration::from_secs(10)),
        Vec::<i32>::new()
    );
    let (code, stdout, stderr) = clean_root(&scratch.runtime());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "cleaned {}",
            scratch.runtime().join(&served.run_id).display()
        )),
        "{stdout}"
    );
    assert_nothing_left(&scratch, &served, &home, &tmp);
}

#[test]
fn an_app_that_fails_to_import_fails_the_run_before_any_client_starts() {
    let (mut scratch, home, tmp) = scratch_with_home("http-gunicorn-bad-app");
    let python = stacks::python_with("gunicorn");
    let file = scratch.topology(&topology(&python, "no_such_module:app"));
    let result = run_captured(&mut run_at_home(&scratch, &file, &home, &tmp));
    // `--preload` imports the app before READY=1: gunicorn exits without
    // ever being ready, and the client, started `after` it, never starts;
    // the first failure, gunicorn's exit 1, is the run's.
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains("No module named 'no_such_module'"),
        "{}",
        result.stderr
    );
    assert!(
        summary_line(&result.stderr, "client")
            .contains("not started: api ended before it was ready"),
        "{}",
        result.stderr
    );
    assert_eq!(lines_of(&result.stdout, "client"), Vec::<String>::new());
    scratch.assert_left_nothing();
}

/// Waits until `count` stderr lines contain `text`.
fn wait_for_stderr_count(live: &mut Live, text: &str, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while live.stderr.iter().filter(|l| l.contains(text)).count() < count {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match live.lines.recv_timeout(left) {
            Ok(line) => live.take(line),
            Err(_) => {
                live.kill();
                panic!("never saw {count} x {text:?}: {:?}", live.stderr)
            }
        }
    }
}

/// One JSON-RPC `worker` call over the Unix socket at `path`, HTTP/1.0 by
/// hand: the pid of the worker that answered.
fn worker_over(path: &Path) -> i32 {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    let body = r#"{"jsonrpc": "2.0", "id": 1, "method": "worker"}"#;
    write!(
        stream,
        "POST / HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (_, json) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{response}"));
    let answer: Value = serde_json::from_str(json).unwrap();
    answer["result"].as_i64().unwrap() as i32
}

/// The pid in the last `Listening at: ... (PID)` line of gunicorn's log.
fn last_master(live: &Live) -> i32 {
    let line = live
        .stderr
        .iter()
        .rfind(|l| l.contains("Listening at: "))
        .unwrap();
    master_in(line)
}

/// The master's pid that ends gunicorn's `Listening at: … (PID)` line.
fn master_in(line: &str) -> i32 {
    line.rsplit_once('(')
        .and_then(|(_, pid)| pid.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no master pid in {line}"))
}

#[test]
fn a_restarted_gunicorn_serves_on_the_same_listener_and_its_old_workers_leave() {
    let (mut scratch, home, tmp) = scratch_with_home("http-gunicorn-restart");
    let python = stacks::python_with("gunicorn");
    let app_dir = Path::new(MANIFEST_DIR).join("examples/http");
    let file = scratch.topology(&format!(
        r#"
[process.api]
cmd = ["{python}", "-m", "gunicorn", "--chdir", "{app_dir}", "--workers", "2",
       "--timeout", "4", "--graceful-timeout", "3", "--no-control-socket", "jsonrpc_app:app"]
restart = "on-failure"

[process.client]
cmd = ["sleep", "600"]

[[edge]]
name = "local"
from = "client"
to = "api"
traffic = "request"
protocol = "http"
"#,
        python = python.display(),
        app_dir = app_dir.display(),
    ));
    let mut live = Live::start(run_at_home(&scratch, &file, &home, &tmp));
    wait_for_stderr_count(&mut live, "Booting worker with pid: ", 2);
    let socket = scratch.first_run_dir().join("local.sock");
    let first = last_master(&live);
    let old_workers = numbers_after(&live.stderr.join("\n"), "Booting worker with pid: ");
    assert!(old_workers.contains(&worker_over(&socket)));

    // The master dies without a word: ipc-run restarts it on the listener
    // it holds (LISTEN_PID the new pid). The old workers, in the dead
    // leader's group, are killed with it before the restart.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), Signal::SIGKILL).unwrap();
    wait_for_stderr_count(&mut live, "Booting worker with pid: ", 4);
    let second = last_master(&live);
    assert_ne!(first, second);
    assert_eq!(
        wait_dead(&old_workers, Duration::from_secs(10)),
        Vec::<i32>::new()
    );
    let all_workers = numbers_after(&live.stderr.join("\n"), "Booting worker with pid: ");
    let answered = worker_over(&socket);
    assert!(
        all_workers[2..].contains(&answered),
        "{answered} {all_workers:?}: {:#?}",
        live.stderr
    );

    live.signal(Signal::SIGTERM);
    let result = live.finish();
    assert_eq!(result.code, 143, "{}", result.stderr);
    assert!(
        summary_line(&result.stderr, "api").contains("restarts 1"),
        "{}",
        result.stderr
    );
    let mut pids = all_workers;
    pids.push(second);
    assert_eq!(wait_dead(&pids, Duration::from_secs(10)), Vec::<i32>::new());
    scratch.assert_left_nothing();
    assert_empty(&home, &tmp);
}
