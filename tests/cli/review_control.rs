//! Findings of a review of the supervisor's control plane, each a case
//! that failed before its fix (`docs/supervision.md`, `docs/operate.md`):
//! a notify datagram carrying fds (its sender's readiness lost, and its
//! `MAINPID=` able to speak for another process); a reload meeting the
//! unhandled exit of a `restart = "never"` process (a transient ESRCH); a
//! stale backoff timer left by a `restart` on request; a default runtime
//! directory others may write to; the watchdog cutting short a requested
//! stop's grace. Each waits on the run's state, not on time.

use std::io::BufRead;
use std::path::Path;

use serde_json::Value;

use super::control::{Detached, ipc, wait_until};
use crate::support::Scratch;

/// Python that sends its first argument on `NOTIFY_SOCKET` with a pipe's
/// two ends attached (as `sd_pid_notify_with_fds` does for `FDSTORE=1`),
/// then its second, if any, with none.
const SEND_WITH_FDS: &str = r#"
import os, socket, sys
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(addr)
r, w = os.pipe()
socket.send_fds(s, [sys.argv[1].encode()], [r, w])
if len(sys.argv) > 2:
    s.send(sys.argv[2].encode())
"#;

/// A notify process that says `READY=1` with fds attached (`FDSTORE=1`):
/// it is ready, its fds are not kept. `waiter` bounds the wait.
const FDSTORE: &str = r#"
name = "review-fdstore"

[process.waiter]
shell = 'exec sleep 1000'
restart = "on-failure"
after = ["server"]

[process.server]
shell = 'python3 -c "$SENDER" "$(printf "READY=1\nFDSTORE=1")" && exec sleep 1000'
ready = "notify"
ready_timeout = "20s"
restart = "on-failure"

[process.server.env]
SENDER = '''PYCODE'''
"#;

#[test]
fn a_ready_datagram_carrying_fds_makes_its_sender_ready() {
    let mut scratch = Scratch::new("review-notify-fdstore");
    let toml = FDSTORE.replace("PYCODE", SEND_WITH_FDS);
    let mut run = Detached::start(&mut scratch, &toml);
    let server = run.process("server");
    assert_eq!(server["state"], "ready", "{server}");
    run.down();
    scratch.assert_left_nothing();
}

/// `victim` writes its pid and waits, never ready on its own; `spoofer`
/// sends `READY=1` and `MAINPID=` that pid with fds attached, then says
/// its own `READY=1`.
const SPOOF: &str = r#"
name = "review-spoof"

[process.victim]
shell = 'echo $$ > PIDFILE.tmp && mv PIDFILE.tmp PIDFILE && exec sleep 1000'
ready = "notify"
ready_timeout = "60s"
restart = "on-failure"

[process.spoofer]
shell = 'while [ ! -s PIDFILE ]; do sleep 0.01; done; python3 -c "$SENDER" "$(printf "READY=1\nMAINPID=%s" "$(cat PIDFILE)")" READY=1 && exec sleep 1000'
ready = "notify"
ready_timeout = "20s"
restart = "on-failure"

[process.spoofer.env]
SENDER = '''PYCODE'''
"#;

/// The datagram's fds once crowded out the credentials: the sender was
/// unknown, and `MAINPID=` of an unknown sender was taken at its word, so
/// one process could declare another ready.
#[test]
fn a_datagram_with_fds_cannot_speak_for_another_process() {
    let mut scratch = Scratch::new("review-notify-spoof");
    let pidfile = scratch.dir.join("victim.pid");
    let toml = SPOOF
        .replace("PIDFILE", pidfile.to_str().unwrap())
        .replace("PYCODE", SEND_WITH_FDS);
    let file = scratch.topology(&toml);
    let live = scratch.live(&file);
    let runtime = scratch.runtime();
    let state = |name: &str| -> Value {
        let out = ipc(&runtime, &["status", "review-spoof", "--format", "json"]);
        if !out.status.success() {
            return Value::Null;
        }
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        status["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map_or(Value::Null, |p| p["state"].clone())
    };
    // The spoofing datagram came first on the same socket: once the
    // spoofer is ready, it has been read.
    wait_until("the spoofer to be ready", || state("spoofer") == "ready");
    let victim = state("victim");
    live.signal(nix::sys::signal::Signal::SIGTERM);
    let finished = live.finish();
    assert_eq!(victim, "starting", "{}", finished.stderr);
    assert!(Path::new(&pidfile).exists());
    scratch.assert_left_nothing();
}

/// A `restart = "never"` reader on a pipe, which ends (0) once `flag`
/// exists, and its writer.
fn never_reader(flag: &Path) -> String {
    let wait = format!("while [ ! -e {} ]; do sleep 0.01; done", flag.display());
    super::reload::writer_and_never_reader("review-never-zombie", &wait)
}

/// A `never` process that exited, its exit not handled yet when a reload
/// that changes it comes (the request and the exit in one wake-up: ipc-run
/// is stopped meanwhile): the reload once tried to take its ends back from
/// the zombie and was refused with a transient ESRCH. Its exit is handled
/// first, and the reload is answered as it is a moment later.
#[test]
fn a_reload_meeting_an_unhandled_exit_of_a_never_process_is_not_refused() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::io::{BufRead, BufReader, Write};
    let mut scratch = Scratch::new("review-never-zombie");
    let flag = scratch.dir.join("flag");
    let toml = never_reader(&flag);
    let topology = scratch.topology(&toml.replace("GEN = \"1\"", "GEN = \"2\""));
    let plan = super::ipc_run()
        .args(["plan", "--format", "json"])
        .arg(&topology)
        .output()
        .unwrap();
    assert!(plan.status.success());
    let changed = scratch.dir.join("plan.json");
    std::fs::write(&changed, &plan.stdout).unwrap();
    std::fs::set_permissions(
        &changed,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let mut run = Detached::start(&mut scratch, &toml);
    let supervisor = Pid::from_raw(run.status()["run"]["pid"].as_i64().unwrap() as i32);
    let reader = run.process("reader")["pid"].as_i64().unwrap() as i32;
    kill(supervisor, Signal::SIGSTOP).unwrap();
    wait_until("ipc-run to stop", || {
        crate::support::state_of(supervisor.as_raw()) == Some('T')
    });
    std::fs::write(&flag, "").unwrap();
    wait_until("the reader to be a zombie", || {
        crate::support::state_of(reader) == Some('Z')
    });
    let mut stream = std::os::unix::net::UnixStream::connect(run.socket()).unwrap();
    let request = serde_json::json!({"v": 1, "cmd": "reload", "plan_file": changed});
    stream.write_all(format!("{request}\n").as_bytes()).unwrap();
    kill(supervisor, Signal::SIGCONT).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert!(!line.contains("ESRCH"), "{answer}");
    // The answer of the same reload once the exit is handled: the reader
    // finished for good, its pipe end with it.
    assert_eq!(run.process("reader")["state"], "exited");
    let later = run.ctl(&["reload", &run.run_id, topology.to_str().unwrap()]);
    let later = String::from_utf8_lossy(&later.stderr);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("ipc-run no longer holds this end"),
        "{message}"
    );
    assert!(later.contains(message), "{later}");
    run.down();
    scratch.assert_left_nothing();
}

/// A process that fails at once while `FLAG` exists, with a backoff long
/// enough for requests to come while it waits.
const FLAKY: &str = r#"
name = "review-backoff"

[process.flaky]
shell = 'if [ -e FLAG ]; then exit 1; fi; exec sleep 1000'
restart = "on-failure"
restart_backoff = "2s"
"#;

/// Milliseconds of the day of an event's RFC 3339 `time`.
fn millis_of_day(event: &Value) -> i64 {
    let time = event["time"].as_str().unwrap();
    let clock = &time[11..23];
    let field = |range: std::ops::Range<usize>| clock[range].parse::<i64>().unwrap();
    ((field(0..2) * 60 + field(3..5)) * 60 + field(6..8)) * 1000 + field(9..12)
}

/// The next event of `flaky` named `name` (a `restarting` one: after a
/// backoff, not on request).
fn next_event(events: &mut impl std::io::BufRead, name: &str) -> Value {
    loop {
        let mut line = String::new();
        assert!(events.read_line(&mut line).unwrap() > 0, "the stream ended");
        let event: Value = serde_json::from_str(&line).unwrap();
        let event = event["event"].clone();
        if event["event"] == name && event["process"] == "flaky" && event["delay_ms"] != 0 {
            return event;
        }
    }
}

/// A `restart` during a restart backoff starts the process at once; when
/// that run fails too, its new (doubled) backoff is waited out in full.
/// The first backoff's timer, still armed, once started it when the first
/// delay was over, as if no request had come between.
#[test]
fn a_restart_during_backoff_leaves_no_stale_timer_behind() {
    let mut scratch = Scratch::new("review-backoff");
    let flag = scratch.dir.join("flag");
    let toml = FLAKY.replace("FLAG", flag.to_str().unwrap());
    let mut run = Detached::start(&mut scratch, &toml);
    let mut events = run.subscribe_events();
    std::fs::write(&flag, "").unwrap();
    let restart = run.ctl(&["restart", &run.run_id, "flaky"]);
    assert!(restart.status.success(), "{restart:?}");
    let first = next_event(&mut events, "restarting");
    assert_eq!(first["delay_ms"], 2000, "{first}");
    let restart = run.ctl(&["restart", &run.run_id, "flaky"]);
    assert!(restart.status.success(), "{restart:?}");
    let second = next_event(&mut events, "restarting");
    assert_eq!(second["delay_ms"], 4000, "{second}");
    std::fs::remove_file(&flag).unwrap();
    let started = next_event(&mut events, "started");
    let waited = (millis_of_day(&started) - millis_of_day(&second)).rem_euclid(86_400_000);
    assert!(
        waited >= 4000,
        "started {waited} ms after a backoff of 4000 ms: {started}"
    );
    run.down();
    scratch.assert_left_nothing();
}

/// A default runtime directory another user could write to (here mode
/// 0777) holding a run that answers `info`, as a planted one would: the
/// client once listed it and would act on it (a `reload` hands the plan
/// over into its directory, chowned to its owner). It is ignored, with a
/// warning naming it.
#[test]
fn a_default_runtime_directory_others_may_write_is_not_trusted() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;
    let scratch = Scratch::new("review-planted-root");
    let root = scratch.dir.join("xdg").join("ipc-run");
    let run_id = "0123456789abcdef";
    std::fs::create_dir_all(root.join(run_id)).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    let listener = UnixListener::bind(root.join(run_id).join("control.sock")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let planted = std::thread::spawn(move || {
        let mut answered = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            let answer = serde_json::json!({"v": 1, "ok": true, "run": {
                "name": "planted", "run_id": run_id, "pid": 1, "uptime_ms": 1,
                "state": "running", "processes": 1}});
            (&stream)
                .write_all(format!("{answer}\n").as_bytes())
                .unwrap();
            answered += 1;
        }
        answered
    });
    let ps = super::ipc_run()
        .args(["ps", "--format", "json"])
        .env("XDG_RUNTIME_DIR", scratch.dir.join("xdg"))
        .output()
        .unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = planted.join().unwrap();
    let stdout = String::from_utf8_lossy(&ps.stdout);
    let stderr = String::from_utf8_lossy(&ps.stderr);
    assert!(!stdout.contains("planted"), "{stdout}");
    assert_eq!(answered, 0, "the planted run was asked");
    assert!(
        stderr.contains(&format!("ignoring runtime directory {}", root.display()))
            && stderr.contains("writable"),
        "{stderr}"
    );
}

/// Python that pings the watchdog every 100 ms until SIGTERM, then takes
/// its time to stop (no pings while it does), and exits 0.
const GRACEFUL: &str = r#"
import os, signal, socket, time
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(addr)
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
print("pinging", flush=True)
while not stopping:
    s.send(b"WATCHDOG=1")
    time.sleep(0.1)
time.sleep(2.5)
"#;

const WATCHED: &str = r#"
name = "review-watchdog-stop"

[process.slow]
cmd = ["python3", "-c", "PYCODE"]
watchdog = "1s"
stop_timeout = "30s"
restart = "on-failure"
"#;

/// A process stopping on request within its `stop_timeout` sends no
/// more watchdog pings, nor answers health checks, as systemd's services
/// do while deactivating: it once got SIGABRT from the watchdog a period
/// into its grace, its orderly stop cut short.
#[test]
fn a_process_stopping_on_request_keeps_its_grace_from_the_watchdog() {
    let mut scratch = Scratch::new("review-watchdog-stop");
    let code = serde_json::to_string(GRACEFUL).unwrap();
    let toml = WATCHED.replace("\"PYCODE\"", &code);
    let mut run = Detached::start(&mut scratch, &toml);
    wait_until("slow to handle SIGTERM", || {
        let logs = run.ctl(&["logs", &run.run_id, "slow"]);
        String::from_utf8_lossy(&logs.stdout).contains("pinging")
    });
    let mut events = run.subscribe_events();
    let stop = run.ctl(&["stop", &run.run_id, "slow"]);
    assert!(stop.status.success(), "{stop:?}");
    let exited = loop {
        let mut line = String::new();
        assert!(events.read_line(&mut line).unwrap() > 0, "the stream ended");
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["event"]["event"] == "exited" {
            break event["event"].clone();
        }
    };
    assert_eq!(exited["exit_code"], 0, "{exited}");
    run.down();
    scratch.assert_left_nothing();
}
