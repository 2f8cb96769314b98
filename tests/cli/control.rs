//! The control socket and the commands that act on a live run
//! (`docs/operate.md`): a run detached, listed, inspected, one process
//! restarted while its peer keeps reading the same pipe, stopped, started,
//! signalled, the run downed; bad input of every kind, with the run
//! undisturbed; another user kept out.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{IPC_RUN, Scratch};

/// A pipe from `writer` to `reader`; the reader appends what it reads to
/// OUT, the writer writes three lines tagged with its pid and waits.
const PIPE_TOPOLOGY: &str = r#"
name = "NAME"

[process.writer]
shell = 'for i in 1 2 3; do echo "$$ $i"; done; exec sleep 1000'
restart = "on-failure"

[process.reader]
shell = 'exec cat >> OUT'
restart = "on-failure"
after = ["writer"]

[[edge]]
name = "lines"
from = "writer"
to = "reader"
"#;

/// A run started with `run --detach`; downed (and waited for) on drop, so
/// a failing case leaves no run behind.
pub(super) struct Detached {
    pub(super) runtime: PathBuf,
    pub(super) run_id: String,
    pid: i32,
}

impl Detached {
    pub(super) fn start(scratch: &mut Scratch, toml: &str) -> Detached {
        Detached::start_with(scratch, toml, &[])
    }

    /// As [`Detached::start`], with more `run` options.
    pub(super) fn start_with(scratch: &mut Scratch, toml: &str, options: &[&str]) -> Detached {
        let file = scratch.topology(toml);
        let mut args = vec!["run", "--detach"];
        args.extend_from_slice(options);
        args.push(file.to_str().unwrap());
        let output = ipc(&scratch.runtime(), &args);
        assert!(
            output.status.success(),
            "run --detach failed: {}",
            text(&output.stderr)
        );
        let run_id = text(&output.stdout).trim().to_owned();
        assert_eq!(run_id.len(), 16, "a run id: {run_id:?}");
        let mut run = Detached {
            runtime: scratch.runtime(),
            run_id,
            pid: 0,
        };
        run.pid = run.status()["run"]["pid"].as_i64().unwrap() as i32;
        run
    }

    pub(super) fn ctl(&self, args: &[&str]) -> Output {
        ipc(&self.runtime, args)
    }

    /// `status RUN --format json`, checked to succeed.
    pub(super) fn status(&self) -> Value {
        let output = self.ctl(&["status", &self.run_id, "--format", "json"]);
        assert!(output.status.success(), "status: {}", text(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// The status of process `name`.
    pub(super) fn process(&self, name: &str) -> Value {
        let status = self.status();
        status["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    }

    pub(super) fn socket(&self) -> PathBuf {
        self.runtime.join(&self.run_id).join("control.sock")
    }

    /// A subscription to the run's lifecycle events, answered (so every
    /// event from now on is sent on it).
    pub(super) fn subscribe_events(&self) -> BufReader<UnixStream> {
        let mut stream = UnixStream::connect(self.socket()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        stream.write_all(b"{\"v\":1,\"cmd\":\"events\"}\n").unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), r#"{"v":1,"ok":true}"#);
        reader
    }

    /// `down`, then waits for ipc-run to be gone.
    pub(super) fn down(&mut self) {
        if self.pid == 0 {
            return;
        }
        let _ = self.ctl(&["down", &self.run_id]);
        let pid = self.pid;
        wait_until("the run to end", || {
            !Path::new(&format!("/proc/{pid}")).exists()
        });
        self.pid = 0;
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if self.pid != 0 {
            let _ = self.ctl(&["down", &self.run_id]);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `ipc-run ARGS --runtime-dir RUNTIME`.
pub(super) fn ipc(runtime: &Path, args: &[&str]) -> Output {
    Command::new(IPC_RUN)
        .args(args)
        .arg("--runtime-dir")
        .arg(runtime)
        .env_remove("IPC_RUN_LOG")
        .output()
        .unwrap()
}

pub(super) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `ready` until it holds (the run acts on its own time; what is
/// awaited is a state it reports, not a delay), failing after 15 s.
pub(super) fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lines_in(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn pipe_run(case: &str) -> (Scratch, Detached, PathBuf) {
    let mut scratch = Scratch::new(case);
    let out = scratch.dir.join("out");
    let toml = PIPE_TOPOLOGY
        .replace("NAME", case)
        .replace("OUT", out.to_str().unwrap());
    let run = Detached::start(&mut scratch, &toml);
    (scratch, run, out)
}

#[test]
fn a_detached_run_is_listed_inspected_restarted_and_downed() {
    let (scratch, mut run, out) = pipe_run("control-life");
    wait_until("the reader to get three lines", || {
        lines_in(&out).len() == 3
    });

    let ps = run.ctl(&["ps", "--format", "json"]);
    let runs: Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["run_id"], run.run_id.as_str());
    assert_eq!(runs[0]["name"], "control-life");
    assert_eq!(runs[0]["state"], "running");
    let ps_text = text(&run.ctl(&["ps"]).stdout);
    assert!(ps_text.starts_with("NAME "), "{ps_text}");
    assert!(ps_text.contains(&run.run_id), "{ps_text}");

    // Text status names every process and channel; RUN defaults to the
    // only live run.
    let status = run.ctl(&["status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let status = text(&status.stdout);
    assert!(status.contains("run control-life"), "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("writer ") && l.contains("ready")),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("lines ") && l.contains("pipe")),
        "{status}"
    );

    // The writer restarted: the reader, same pid, reads the new writer's
    // lines from the same pipe after the old one's, nothing lost.
    let reader_pid = run.process("reader")["pid"].clone();
    let writer_pid = run.process("writer")["pid"].as_i64().unwrap();
    let restarted = run.ctl(&["restart", &run.run_id, "writer"]);
    assert!(restarted.status.success(), "{}", text(&restarted.stderr));
    wait_until("the new writer's lines", || lines_in(&out).len() == 6);
    let writer = run.process("writer");
    assert_eq!(writer["restarts"], 1, "{writer}");
    assert_eq!(writer["last_exit"], "killed by SIGTERM");
    let new_pid = writer["pid"].as_i64().unwrap();
    assert_eq!(run.process("reader")["pid"], reader_pid);
    let expected: Vec<String> = [writer_pid, new_pid]
        .iter()
        .flat_map(|pid| (1..=3).map(move |i| format!("{pid} {i}")))
        .collect();
    assert_eq!(lines_in(&out), expected);

    // Stopped, it waits with its channel kept; started, it reads on.
    assert!(
        run.ctl(&["stop", "control-life", "reader"])
            .status
            .success()
    );
    wait_until("the reader to be stopped", || {
        run.process("reader")["state"] == "stopped"
    });
    assert!(
        run.ctl(&["restart", &run.run_id, "writer"])
            .status
            .success()
    );
    wait_until("the third writer", || {
        run.process("writer")["restarts"] == 2
    });
    assert_eq!(
        lines_in(&out).len(),
        6,
        "nothing is read while the reader is stopped"
    );
    assert!(run.ctl(&["start", &run.run_id, "reader"]).status.success());
    wait_until("the third writer's lines", || lines_in(&out).len() == 9);

    // A signal reaches the process group; the restart policy answers.
    let signalled = run.ctl(&["signal", &run.run_id, "writer", "SIGUSR1"]);
    assert!(signalled.status.success(), "{}", text(&signalled.stderr));
    wait_until("the writer restarted after SIGUSR1", || {
        let writer = run.process("writer");
        writer["restarts"] == 3 && writer["state"] == "ready"
    });
    assert_eq!(run.process("writer")["last_exit"], "killed by SIGUSR1");

    run.down();
    let ps = run.ctl(&["ps", "--format", "json"]);
    assert_eq!(text(&ps.stdout).trim(), "[]");
    scratch.assert_left_nothing();
}

#[test]
fn bad_input_gets_clear_errors_and_leaves_the_run_undisturbed() {
    let (_scratch, mut run, out) = pipe_run("control-bad");
    wait_until("the reader to get three lines", || {
        lines_in(&out).len() == 3
    });
    let before = run.status();

    let unknown_run = run.ctl(&["status", "no-such-run"]);
    assert_eq!(unknown_run.status.code(), Some(4));
    let message = text(&unknown_run.stderr);
    assert!(message.contains("no live run `no-such-run`"), "{message}");
    assert!(
        message.contains(&run.run_id),
        "lists the live runs: {message}"
    );

    let unknown_process = run.ctl(&["restart", &run.run_id, "nope"]);
    assert_eq!(unknown_process.status.code(), Some(5));
    assert!(text(&unknown_process.stderr).contains("no process `nope` in this run"));

    let bad_signal = run.ctl(&["signal", &run.run_id, "writer", "SIGNOPE"]);
    assert_eq!(bad_signal.status.code(), Some(6));
    assert!(text(&bad_signal.stderr).contains("unknown signal `SIGNOPE`"));

    // Raw clients: one silent, one sending half a line, then malformed
    // requests, all while others are served.
    let silent = UnixStream::connect(run.socket()).unwrap();
    let mut partial = UnixStream::connect(run.socket()).unwrap();
    partial.write_all(b"{\"v\":1,\"cmd\":").unwrap();
    for (request, code) in [
        ("garbage\n", "bad-request"),
        ("\u{1}\u{2}\u{ff}\n", "bad-request"),
        ("{\"cmd\":\"status\"}\n", "bad-request"),
        ("{\"v\":2,\"cmd\":\"status\"}\n", "unsupported-version"),
        ("{\"v\":1,\"cmd\":\"reboot\"}\n", "bad-request"),
        ("{\"v\":1,\"cmd\":\"stop\"}\n", "bad-request"),
    ] {
        let answer = raw_request(&run.socket(), request.as_bytes());
        assert_eq!(answer["ok"], false, "{request}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{request}: {answer}");
    }
    let too_large = raw_request(&run.socket(), &vec![b'x'; 80 * 1024]);
    assert_eq!(too_large["error"]["code"], "too-large", "{too_large}");

    // Many clients at once, each answered (or, past the cap, told why).
    let socket = run.socket();
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || raw_request(&socket, b"{\"v\":1,\"cmd\":\"status\"}\n"))
        })
        .collect();
    for client in clients {
        let answer = client.join().unwrap();
        assert!(
            answer["ok"] == true || answer["error"]["code"] == "busy",
            "{answer}"
        );
    }
    drop((silent, partial));

    // Undisturbed: the same processes, never restarted, still served.
    let after = run.status();
    for (b, a) in before["processes"]
        .as_array()
        .unwrap()
        .iter()
        .zip(after["processes"].as_array().unwrap())
    {
        assert_eq!(b["pid"], a["pid"], "{a}");
        assert_eq!(a["restarts"], 0, "{a}");
    }
    assert_eq!(lines_in(&out).len(), 3);
    run.down();
}

/// Sends `bytes` on a fresh connection and reads one answer line.
pub(super) fn raw_request(socket: &Path, bytes: &[u8]) -> Value {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    // A too-large request is cut off by the run mid-write: that is fine.
    let _ = stream.write_all(bytes);
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

#[test]
fn another_user_cannot_use_the_control_socket() {
    let (_scratch, mut run, _out) = pipe_run("control-user");
    let as_nobody = |args: &[&str]| {
        let mut command = Command::new(IPC_RUN);
        command
            .args(args)
            .arg("--runtime-dir")
            .arg(&run.runtime)
            .uid(65534)
            .gid(65534);
        command.output().unwrap()
    };
    // The runtime and run directories are 0700: the run is not even seen.
    let output = as_nobody(&["status", &run.run_id]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    let output = as_nobody(&["down", &run.run_id]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));

    // With the directories and socket opened up (as by a mistake), the
    // run still refuses the peer by its credentials.
    for (path, mode) in [
        (run.runtime.clone(), 0o711),
        (run.runtime.join(&run.run_id), 0o711),
        (run.socket(), 0o666),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let output = as_nobody(&["down", &run.run_id]);
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("accepts only its own user"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(run.status()["run"]["state"], "running");
    let info = raw_request(&run.socket(), b"{\"v\":1,\"cmd\":\"info\"}\n");
    assert_eq!(info["ok"], true, "root is allowed: {info}");
    run.down();
}

#[test]
fn restart_with_dependents_restarts_them_after_their_dependency() {
    let mut scratch = Scratch::new("control-deps");
    let toml = r#"
name = "control-deps"

[process.db]
shell = 'exec sleep 1000'
restart = "on-failure"
ready = { fd = 3 }
restart_dependents = true

[process.api]
shell = 'exec sleep 1000'
restart = "on-failure"
after = ["db"]

[process.other]
shell = 'exec sleep 1000'
restart = "on-failure"
"#;
    // db declares readiness a moment after it starts, so its dependent
    // can only be seen waiting for it if the order is kept; asked to stop,
    // it takes a moment too, so api always exits first and must not start
    // again on db's old readiness.
    let toml = toml.replace(
        "shell = 'exec sleep 1000'\nrestart = \"on-failure\"\nready",
        "shell = 'sleep 0.3; echo >&3; trap \"sleep 0.3; exit 0\" TERM; sleep 1000 & wait'\nrestart = \"on-failure\"\nready",
    );
    let mut run = Detached::start(&mut scratch, &toml);
    let other = run.process("other")["pid"].clone();
    let api = run.process("api")["pid"].clone();
    let restarted = run.ctl(&["restart", &run.run_id, "db", "--format", "json"]);
    assert!(restarted.status.success(), "{}", text(&restarted.stderr));
    let answer: Value = serde_json::from_slice(&restarted.stdout).unwrap();
    assert_eq!(answer["done"], serde_json::json!(["db", "api"]));
    wait_until("db and api to run again", || {
        let status = run.status();
        let processes = status["processes"].as_array().unwrap().clone();
        let by = |name: &str| {
            processes
                .iter()
                .find(|p| p["name"] == name)
                .unwrap()
                .clone()
        };
        let (db, api) = (by("db"), by("api"));
        // While db is not ready again, api has not started again.
        assert!(
            !(api["state"] == "ready" && api["restarts"] == 1 && db["state"] != "ready"),
            "api started before db was ready: {status}"
        );
        db["restarts"] == 1
            && db["state"] == "ready"
            && api["restarts"] == 1
            && api["state"] == "ready"
    });
    assert_ne!(run.process("api")["pid"], api);
    assert_eq!(
        run.process("other")["pid"],
        other,
        "not a dependent: untouched"
    );
    run.down();
}

#[test]
fn a_detached_run_that_fails_says_why() {
    let mut scratch = Scratch::new("control-detach-fail");
    let file = scratch.topology(
        r#"
name = "control-detach-fail"

[process.bad]
cmd = ["/nonexistent/program"]
"#,
    );
    let output = ipc(
        &scratch.runtime(),
        &["run", "--detach", file.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let message = text(&output.stderr);
    assert!(
        message.contains("the run failed before every process was ready")
            && message.contains("/nonexistent/program"),
        "{message}"
    );
    assert!(
        output.stdout.is_empty(),
        "no run id: {}",
        text(&output.stdout)
    );
    wait_until("the failed run to clean up", || {
        scratch.runtime_entries().is_empty()
    });
}

/// `run --detach FILE` in `scratch`'s runtime directory, its stdout and
/// stderr piped.
fn detach(scratch: &Scratch, file: &std::path::Path) -> std::process::Child {
    Command::new(IPC_RUN)
        .args(["run", "--detach", file.to_str().unwrap(), "--runtime-dir"])
        .arg(scratch.runtime())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn run_detach_fails_when_a_process_never_reports_ready() {
    // Nothing waits for `mute` through `after`: only `run --detach` does.
    // Its readiness is bounded by its ready_timeout as a dependant's wait
    // would be, and the run fails (status 3) instead of the command waiting
    // forever.
    let mut scratch = Scratch::new("control-detach-never-ready");
    let file = scratch.topology(
        r#"
name = "control-detach-never-ready"

[process.mute]
cmd = ["sleep", "1000"]
ready = "notify"
ready_timeout = "300ms"
"#,
    );
    let mut child = detach(&scratch, &file);
    let code = crate::support::wait_within(&mut child, Instant::now(), Duration::from_secs(20));
    let mut message = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut message).unwrap();
    assert_eq!(code, 3, "{message}");
    assert!(
        message.contains("mute") && message.contains("not ready"),
        "{message}"
    );
    wait_until("the failed run to clean up", || {
        scratch.runtime_entries().is_empty()
    });
}

#[test]
fn run_detach_returns_once_silent_processes_are_ready() {
    // Nothing the processes do wakes the supervisor after they start: the
    // announcement must not wait for an event.
    let mut scratch = Scratch::new("control-detach-silent");
    let file = scratch.topology(
        r#"
name = "control-detach-silent"

[process.quiet]
cmd = ["sleep", "1000"]
replicas = 3
"#,
    );
    let mut child = detach(&scratch, &file);
    let code = crate::support::wait_within(&mut child, Instant::now(), Duration::from_secs(20));
    assert_eq!(code, 0);
    let mut run_id = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut run_id).unwrap();
    let mut run = Detached {
        runtime: scratch.runtime(),
        run_id: run_id.trim().to_owned(),
        pid: 0,
    };
    run.pid = run.status()["run"]["pid"].as_i64().unwrap() as i32;
    assert_eq!(run.status()["run"]["state"], "running");
    run.down();
}

#[test]
fn ps_does_not_list_the_directory_of_a_dead_run() {
    let scratch = Scratch::new("control-stale");
    // What a run killed with SIGKILL leaves: its directory and a socket
    // file that nobody listens on.
    let dead = scratch.runtime().join("0123456789abcdef");
    std::fs::create_dir_all(&dead).unwrap();
    drop(std::os::unix::net::UnixListener::bind(dead.join("control.sock")).unwrap());
    let ps = ipc(&scratch.runtime(), &["ps"]);
    assert!(ps.status.success(), "{}", text(&ps.stderr));
    assert_eq!(text(&ps.stdout), "no live runs\n");
    let status = ipc(&scratch.runtime(), &["status", "0123456789abcdef"]);
    assert_eq!(status.status.code(), Some(4));
    assert!(
        text(&status.stderr).contains("Connection refused"),
        "{}",
        text(&status.stderr)
    );
}

#[test]
fn status_shows_health_and_the_status_text() {
    let mut scratch = Scratch::new("control-health");
    let toml = r#"
name = "control-health"

[process.svc]
cmd = ["python3", "-c", '''
import os, socket, time
path = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\nSTATUS=serving 3 clients", "\0" + path[1:] if path.startswith("@") else path)
time.sleep(1000)
''']
ready = "notify"
health = { exec = ["true"], interval = "50ms" }

[process.plain]
cmd = ["sleep", "1000"]
"#;
    let mut run = Detached::start(&mut scratch, toml);
    wait_until("svc to be healthy", || {
        run.process("svc")["health"] == "healthy"
    });
    let svc = run.process("svc");
    assert_eq!(svc["status_text"], "serving 3 clients", "{svc}");
    assert!(svc.get("health_failure").is_none(), "{svc}");
    // A process with no check says nothing of health.
    assert!(run.process("plain").get("health").is_none());
    let text = run.ctl(&["status", &run.run_id]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("ready, healthy"), "{text}");
    assert!(text.contains("svc: serving 3 clients"), "{text}");
    run.down();
}
