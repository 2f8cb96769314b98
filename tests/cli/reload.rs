//! `ipc-run reload` against real processes (`docs/operate.md`, "Reload"):
//! a reload that adds, removes and changes processes while an untouched
//! writer keeps its pid and the changed reader, restarted on the kept pipe,
//! gets every line; a dry run, a refused change, a malformed file and an
//! unknown run, each leaving the run as it was. What the supervisor wires
//! per process, changed live: a health check, a watchdog and forwarded
//! signals that take effect; an added notify process whose dependents
//! start once it is ready and healthy; a signal edge that delivers once
//! added and not once removed; a per-connection edge added and removed; an
//! added server-bound endpoint probed before its client starts; a running
//! `restart = "never"` reader restarted on its pipe (and refused when it
//! gave its end away). The end-of-run summary without a removed process;
//! root reloading another user's run. Each waits on the run's events.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use super::control::{Detached, ipc, text, wait_until};
use crate::support::{Scratch, summary_line};

/// How many lines the writer writes, one every 10 ms, before it waits.
const LINES: usize = 400;

/// A writer of numbered lines into a pipe to a reader that appends each
/// line to OUT, tagged with its `GEN`; the reader ends at a line boundary
/// on SIGTERM, so a restart loses nothing it read. `old` only waits.
const TOPOLOGY: &str = r#"
name = "NAME"

[process.writer]
shell = 'i=0; while [ $i -lt COUNT ]; do i=$((i+1)); echo "$i"; sleep 0.01; done; exec sleep 1000'
restart = "on-failure"

[process.reader]
cmd = ["python3", "-c", '''
import os, signal
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
raw = open(0, "rb", buffering=0)
with open("OUT", "ab", buffering=0) as out:
    while not stop:
        line = raw.readline()
        if not line:
            break
        out.write(os.environb[b"GEN"] + b" " + line)
''']
env = { GEN = "1" }
restart = "on-failure"

[process.old]
cmd = ["sleep", "1000"]
restart = "on-failure"

[[edge]]
name = "lines"
from = "writer"
to = "reader"
"#;

/// The next version: the reader's `GEN` changes, `old` goes, `new` comes.
fn next_version(toml: &str) -> String {
    toml.replace("GEN = \"1\"", "GEN = \"2\"")
        .replace("[process.old]", "[process.new]")
}

fn lines_in(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn start(case: &str) -> (Scratch, Detached, std::path::PathBuf, String) {
    let mut scratch = Scratch::new(case);
    let out = scratch.dir.join("out");
    let toml = TOPOLOGY
        .replace("NAME", case)
        .replace("COUNT", &LINES.to_string())
        .replace("OUT", out.to_str().unwrap());
    let run = Detached::start(&mut scratch, &toml);
    (scratch, run, out, toml)
}

/// Names and pids of the run's processes, as `status` shows them.
pub(crate) fn pids(run: &Detached) -> Vec<(String, Value)> {
    run.status()["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["pid"].clone()))
        .collect()
}

#[test]
fn a_reload_adds_removes_and_changes_while_the_untouched_keep_running() {
    let (mut scratch, mut run, out, toml) = start("reload-live");
    wait_until("the reader to get lines", || lines_in(&out).len() >= 20);
    let writer_pid = run.process("writer")["pid"].clone();
    let reader_pid = run.process("reader")["pid"].clone();
    let mut events = run.subscribe_events();

    let file = scratch.topology(&next_version(&toml));
    let said = reload(&run, &file);
    assert!(said.contains("~ process reader: env GEN"), "{said}");
    assert!(said.contains("- process old"), "{said}");
    assert!(said.contains("+ process new"), "{said}");
    assert!(said.contains("started new (pid "), "{said}");

    wait_until("every line", || lines_in(&out).len() >= LINES);
    let lines = lines_in(&out);
    let numbers: Vec<usize> = lines
        .iter()
        .map(|l| l.split_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (1..=LINES).collect::<Vec<_>>(),
        "every line once, in order"
    );
    let first_new = lines.iter().position(|l| l.starts_with("2 ")).unwrap();
    assert!(
        lines[..first_new].iter().all(|l| l.starts_with("1 "))
            && lines[first_new..].iter().all(|l| l.starts_with("2 ")),
        "the old reader's lines, then the new one's: {lines:?}"
    );

    assert_eq!(run.process("writer")["pid"], writer_pid);
    let reader = run.process("reader");
    assert_ne!(reader["pid"], reader_pid);
    assert_eq!(reader["restarts"], 1, "{reader}");
    let names: Vec<String> = pids(&run).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["writer", "reader", "new"]);
    assert_eq!(run.process("new")["state"], "ready");

    let mut seen = Vec::new();
    while !["removed", "changed", "added"]
        .iter()
        .all(|e| seen.iter().any(|(event, _): &(String, String)| event == e))
    {
        let mut line = String::new();
        events
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("reload events ({e}), got {seen:?}"));
        let event: Value = serde_json::from_str(&line).unwrap();
        seen.push((
            event["event"]["event"].as_str().unwrap_or("").to_owned(),
            event["event"]["process"].as_str().unwrap_or("").to_owned(),
        ));
    }
    assert!(seen.contains(&("removed".to_owned(), "old".to_owned())));
    assert!(seen.contains(&("changed".to_owned(), "reader".to_owned())));
    assert!(seen.contains(&("added".to_owned(), "new".to_owned())));

    // The run remembers the new plan and its file: reloading it again
    // changes nothing, and after an edit a reload without a file plans
    // that file again.
    assert_eq!(reload(&run, &file), "no change\n");
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replace("GEN = \"2\"", "GEN = \"3\"");
    std::fs::write(&file, edited).unwrap();
    let own = run.ctl(&["reload", &run.run_id, "--dry-run"]);
    assert!(own.status.success(), "{}", text(&own.stderr));
    assert!(
        text(&own.stdout).starts_with("~ process reader: env GEN\n"),
        "{}",
        text(&own.stdout)
    );

    run.down();
    scratch.assert_left_nothing();
}

#[test]
fn a_dry_run_a_malformed_file_and_an_unknown_run_change_nothing() {
    let (mut scratch, mut run, out, toml) = start("reload-nothing");
    wait_until("the reader to get lines", || !lines_in(&out).is_empty());
    let before = pids(&run);

    let file = scratch.topology(&next_version(&toml));
    let dry = run.ctl(&["reload", &run.run_id, file.to_str().unwrap(), "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let said = text(&dry.stdout);
    assert!(said.contains("+ process new"), "{said}");
    assert!(said.contains("dry run, nothing changed"), "{said}");

    let bad = scratch.topology("name = \"x\"\n[process.a]\ncmd = [\"sleep\"\nrestart = 1\n");
    let malformed = try_reload(&run, &bad);
    assert_eq!(malformed.status.code(), Some(1));
    let stderr = text(&malformed.stderr);
    assert!(
        stderr.contains(&format!("--> {}:4:1", bad.display())),
        "{stderr}"
    );

    let unknown = run.ctl(&["reload", "no-such-run", file.to_str().unwrap()]);
    assert_eq!(unknown.status.code(), Some(4), "{}", text(&unknown.stderr));

    assert_eq!(pids(&run), before);
    assert_eq!(run.process("reader")["restarts"], 0);

    // A process that fails to start is an apply failure (exit 3), said
    // with what was applied; the run goes on, and a fixed file replaces it.
    let broken = format!("{toml}\n[process.broken]\ncmd = [\"/nonexistent/program\"]\n");
    let file = scratch.topology(&broken);
    let failed = try_reload(&run, &file);
    assert_eq!(failed.status.code(), Some(3), "{}", text(&failed.stderr));
    assert!(text(&failed.stdout).contains("+ process broken"));
    assert!(
        text(&failed.stderr)
            .contains("broken: failed to start: could not execute /nonexistent/program"),
        "{}",
        text(&failed.stderr)
    );
    assert_eq!(pids(&run)[..3], before[..]);
    let fixed = scratch.topology(&broken.replace("/nonexistent/program", "sleep\", \"1000"));
    assert!(reload(&run, &fixed).contains("~ process broken: argv"));
    assert_eq!(run.process("broken")["state"], "ready");
    run.down();
    scratch.assert_left_nothing();
}

/// Two processes sharing a segment of SIZE.
const SHM: &str = r#"
name = "reload-shm"
[process.a]
cmd = ["sleep", "1000"]
restart = "on-failure"
[process.b]
cmd = ["sleep", "1000"]
restart = "on-failure"
[[edge]]
name = "seg"
from = "a.seg"
to = "b.seg"
traffic = "shared"
size = "SIZE"
"#;

#[test]
fn a_shared_memory_size_change_is_refused_and_changes_nothing() {
    let mut scratch = Scratch::new("reload-shm");
    let mut run = Detached::start(&mut scratch, &SHM.replace("SIZE", "4KiB"));
    let before = pids(&run);
    let file = scratch.topology(&SHM.replace("SIZE", "8KiB"));
    let (said, stderr) = refused_reload(&run, &file, &before);
    assert!(
        said.contains("refused: channel seg: its shared-memory size changes (4096 -> 8192 bytes)"),
        "{said}"
    );
    assert!(stderr.contains("cannot reload live"));
    run.down();
    scratch.assert_left_nothing();
}

/// `a` writes into a FIFO read by READER.
const FIFOS: &str = r#"
name = "reload-fifos"
[process.a]
shell = 'exec sleep 1000'
restart = "on-failure"
[process.READER]
shell = 'exec cat > /dev/null'
restart = "on-failure"
[[edge]]
name = "READER-fifo"
from = "a.out"
to = "READER"
mechanism = "fifo"
"#;

#[test]
fn a_removed_channel_loses_its_object_and_an_added_one_gets_its_own() {
    let mut scratch = Scratch::new("reload-fifos");
    let mut run = Detached::start(&mut scratch, &FIFOS.replace("READER", "b"));
    let dir = run.runtime.join(&run.run_id);
    assert!(dir.join("b-fifo.fifo").exists());
    let file = scratch.topology(&FIFOS.replace("READER", "c"));
    let said = reload(&run, &file);
    assert!(
        said.contains("~ process a: env IPC_PORT_OUT, fd 3\n"),
        "{said}"
    );
    assert!(
        said.contains("- channel b-fifo\n+ channel c-fifo\n"),
        "{said}"
    );
    assert!(
        !dir.join("b-fifo.fifo").exists(),
        "the removed FIFO is gone"
    );
    assert!(dir.join("c-fifo.fifo").exists());
    let channels = run.status()["channels"].clone();
    assert_eq!(channels.as_array().unwrap().len(), 1, "{channels}");
    assert_eq!(channels[0]["name"], "c-fifo");
    run.down();
    scratch.assert_left_nothing();
}

/// The lifecycle events of a run, read in order from a subscription.
struct EventStream {
    reader: BufReader<UnixStream>,
    /// Every event read so far: (event, process, whole event).
    seen: Vec<(String, String, Value)>,
}

impl EventStream {
    fn of(run: &Detached) -> EventStream {
        EventStream {
            reader: run.subscribe_events(),
            seen: Vec::new(),
        }
    }

    /// Reads up to the next `event` of `process` that `also` accepts, and
    /// returns it; fails with what was seen if the run says nothing more.
    fn next(&mut self, event: &str, process: &str, also: impl Fn(&Value) -> bool) -> Value {
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line);
            if !matches!(read, Ok(n) if n > 0) {
                let seen: Vec<_> = self.seen.iter().map(|(e, p, _)| (e, p)).collect();
                panic!("no {event} of {process} ({read:?}); seen {seen:?}");
            }
            let whole: Value = serde_json::from_str(&line).unwrap();
            let e = whole["event"].clone();
            let name = e["event"].as_str().unwrap_or("").to_owned();
            let of = e["process"].as_str().unwrap_or("").to_owned();
            self.seen.push((name.clone(), of.clone(), e.clone()));
            if name == event && of == process && also(&e) {
                return e;
            }
        }
    }

    /// Reads until each of `wanted` (event, process) has been seen.
    fn all(&mut self, wanted: &[(&str, &str)]) {
        for &(event, process) in wanted {
            if self.position(event, process).is_none() {
                self.next(event, process, any);
            }
        }
    }

    /// The index in `seen` of the first `event` of `process`.
    fn position(&self, event: &str, process: &str) -> Option<usize> {
        self.seen
            .iter()
            .position(|(e, p, _)| e == event && p == process)
    }
}

fn any(_: &Value) -> bool {
    true
}

/// `reload RUN FILE` of `run`, as it ended.
fn try_reload(run: &Detached, file: &Path) -> Output {
    run.ctl(&["reload", &run.run_id, file.to_str().unwrap()])
}

/// A reload of `run` with `file` that succeeds; what it said on stdout.
fn reload(run: &Detached, file: &Path) -> String {
    let reload = try_reload(run, file);
    assert!(
        reload.status.success(),
        "{}{}",
        text(&reload.stdout),
        text(&reload.stderr)
    );
    text(&reload.stdout)
}

/// A reload of `run` with `file` refused as not doable live (exit 6), the
/// run's processes left as they were (`before`, from [`pids`]); what it
/// said on stdout and stderr.
pub(crate) fn refused_reload(
    run: &Detached,
    file: &Path,
    before: &[(String, Value)],
) -> (String, String) {
    let refused = try_reload(run, file);
    assert_eq!(refused.status.code(), Some(6), "{}", text(&refused.stderr));
    assert_eq!(pids(run), before);
    (text(&refused.stdout), text(&refused.stderr))
}

/// A detached run of `toml` in a scratch directory of `case`, and its
/// lifecycle events from now on.
fn start_with_events(case: &str, toml: &str) -> (Scratch, Detached, EventStream) {
    let mut scratch = Scratch::new(case);
    let run = Detached::start(&mut scratch, toml);
    let events = EventStream::of(&run);
    (scratch, run, events)
}

/// A service without a health check; HEALTH is where one goes.
const HEALTH: &str = r#"
name = "reload-health"
[process.svc]
cmd = ["sleep", "1000"]
restart = "on-failure"
HEALTH
"#;

#[test]
fn a_health_check_given_by_a_reload_takes_effect() {
    let (mut scratch, mut run, mut events) =
        start_with_events("reload-health", &HEALTH.replace("HEALTH", ""));
    let failing = "health = { exec = [\"false\"], interval = \"50ms\", retries = 1 }";
    let file = scratch.topology(&HEALTH.replace("HEALTH", failing));
    reload(&run, &file);
    events.next("changed", "svc", any);
    let started = events.next("started", "svc", any);
    let unhealthy = events.next("unhealthy", "svc", any);
    assert_eq!(unhealthy["pid"], started["pid"], "{unhealthy}");
    let killed = events.next("exited", "svc", |e| e["pid"] == started["pid"]);
    assert_eq!(killed["status"], "killed by SIGKILL", "{killed}");
    events.next("restarting", "svc", any);

    // And a passing one, given by the next reload, makes it healthy.
    let passing = failing.replace("false", "true");
    let file = scratch.topology(&HEALTH.replace("HEALTH", &passing));
    reload(&run, &file);
    events.next("changed", "svc", any);
    let started = events.next("started", "svc", any);
    events.next("healthy", "svc", |e| e["pid"] == started["pid"]);
    run.down();
    scratch.assert_left_nothing();
}

/// Run `name` where `base` runs alone, or with `added`.
fn base_and(name: &str, added: &str) -> String {
    format!(
        r#"
name = "{name}"
[process.base]
cmd = ["sleep", "1000"]
restart = "on-failure"
{added}
"#
    )
}

/// A process that says READY=1 on $NOTIFY_SOCKET, with a health check, and
/// one that waits for it to be ready and one for it to be healthy.
const NOTIFY_ADDED: &str = r#"
[process.n]
cmd = ["python3", "-c", '''
import os, signal, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(os.environ["NOTIFY_SOCKET"])
s.send(b"READY=1")
signal.pause()
''']
ready = "notify"
restart = "on-failure"
health = { exec = ["true"], interval = "50ms" }
[process.dep]
cmd = ["sleep", "1000"]
after = ["n"]
[process.checked]
cmd = ["sleep", "1000"]
after = { n = "healthy" }
"#;

#[test]
fn an_added_notify_process_becomes_ready_and_its_dependents_start() {
    let mut scratch = Scratch::new("reload-notify");
    let mut run = Detached::start(&mut scratch, &base_and("reload-notify", ""));
    let dir = run.runtime.join(&run.run_id);
    assert!(!dir.join("notify.sock").exists(), "no process needs it yet");
    let base = run.process("base")["pid"].clone();
    let mut events = EventStream::of(&run);
    let file = scratch.topology(&base_and("reload-notify", NOTIFY_ADDED));
    let said = reload(&run, &file);
    assert!(
        said.contains("added dep (starts once what it waits for is ready)"),
        "{said}"
    );
    events.all(&[
        ("ready", "n"),
        ("healthy", "n"),
        ("started", "dep"),
        ("started", "checked"),
    ]);
    let at = |event, process| events.position(event, process).unwrap();
    assert!(at("started", "dep") > at("ready", "n"), "{:?}", events.seen);
    assert!(at("started", "checked") > at("healthy", "n"));
    assert!(dir.join("notify.sock").exists());
    assert_eq!(run.process("base")["pid"], base, "base is untouched");
    assert_eq!(run.process("n")["state"], "ready");
    run.down();
    scratch.assert_left_nothing();
}

/// A process that is ready once its trap is set (a line on fd 5), then
/// waits; TRAP is where the trap goes. It stands for TRAPPED in the
/// topologies below.
const READY_ONCE_TRAPPED: &str = r#"ready = { fd = 5 }
restart = "on-failure"
shell = '''
TRAP
echo >&5
exec 5>&-
while :; do sleep 0.05; done
'''"#;

/// `toml` with its TRAPPED process setting `trap`.
fn trapped(toml: &str, trap: &str) -> String {
    toml.replace("TRAPPED", &READY_ONCE_TRAPPED.replace("TRAP", trap))
}

/// `sleeper` exits 0 on SIGUSR1 (a delivered signal); `waker` sends it
/// SIGUSR1 when it was given its pid, and otherwise exits 0 at once.
/// EDGE is where the signal edge goes.
const SIGNAL_EDGE: &str = r#"
name = "reload-signals"
[process.sleeper]
TRAPPED
[process.waker]
restart = "on-failure"
shell = '''
for kv in $IPC_PORT_WAKE; do case "$kv" in pid=*) pid="${kv#pid=}" ;; esac; done
[ -n "$pid" ] || exit 0
kill -USR1 "$pid"
exec sleep 1000
'''
EDGE
"#;

const EDGE: &str = r#"
[[edge]]
name = "wake"
from = "waker.wake"
to = "sleeper.wake"
traffic = "notify"
signal = "SIGUSR1"
"#;

#[test]
fn an_added_signal_edge_delivers_and_a_removed_one_no_longer_does() {
    let toml = trapped(SIGNAL_EDGE, "trap 'exit 0' USR1");
    let (mut scratch, mut run, mut events) =
        start_with_events("reload-signals", &toml.replace("EDGE", ""));
    let sleeper = run.process("sleeper")["pid"].clone();

    let file = scratch.topology(&toml.replace("EDGE", EDGE));
    reload(&run, &file);
    // The old sleeper is stopped, the new one starts, then the waker
    // (the edge orders it after the sleeper) wakes it.
    let stopped = events.next("exited", "sleeper", |e| e["pid"] == sleeper);
    assert_eq!(stopped["status"], "killed by SIGTERM", "{stopped}");
    let started = events.next("started", "sleeper", any);
    events.next("started", "waker", any);
    let woken = events.next("exited", "sleeper", |e| e["pid"] == started["pid"]);
    assert_eq!(woken["exit_code"], 0, "woken by the signal: {woken}");

    // Without the edge the waker is not given a pid: started again, it
    // exits at once, and the sleeper started anew keeps running.
    let file = scratch.topology(&toml.replace("EDGE", ""));
    reload(&run, &file);
    let waker = events.next("started", "waker", any);
    let exited = events.next("exited", "waker", |e| e["pid"] == waker["pid"]);
    assert_eq!(exited["exit_code"], 0, "{exited}");
    let sleeper = run.process("sleeper");
    assert_eq!(sleeper["state"], "ready", "{sleeper}");
    run.down();
    scratch.assert_left_nothing();
}

#[test]
fn a_running_never_process_is_restarted_on_its_channels_by_a_reload() {
    let never = |toml: &str| {
        toml.replace(
            "env = { GEN = \"1\" }\nrestart = \"on-failure\"",
            "env = { GEN = \"1\" }\nrestart = \"never\"",
        )
    };
    let mut scratch = Scratch::new("reload-never");
    let out = scratch.dir.join("out");
    let toml = never(
        &TOPOLOGY
            .replace("NAME", "reload-never")
            .replace("COUNT", &LINES.to_string())
            .replace("OUT", out.to_str().unwrap()),
    );
    assert!(toml.contains("restart = \"never\""));
    let mut run = Detached::start(&mut scratch, &toml);
    wait_until("the reader to get lines", || lines_in(&out).len() >= 20);
    let reader = run.process("reader")["pid"].clone();
    let mut events = EventStream::of(&run);

    let file = scratch.topology(&next_version(&toml));
    reload(&run, &file);
    let stopped = events.next("exited", "reader", |e| e["pid"] == reader);
    assert_eq!(
        stopped["exit_code"], 0,
        "ended at a line on SIGTERM: {stopped}"
    );
    events.next("started", "reader", any);

    wait_until("every line", || lines_in(&out).len() >= LINES);
    let numbers: Vec<usize> = lines_in(&out)
        .iter()
        .map(|l| l.split_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (1..=LINES).collect::<Vec<_>>(),
        "every line once, in order"
    );
    assert!(lines_in(&out).last().unwrap().starts_with("2 "));
    run.down();
    scratch.assert_left_nothing();
}

/// A writer and a `restart = "never"` reader running `reader` (a shell
/// line without single quotes), joined by the pipe `lines`; the reader's
/// `GEN = "1"` is what a reload changes.
pub(crate) fn writer_and_never_reader(name: &str, reader: &str) -> String {
    format!(
        r#"
name = "{name}"
[process.writer]
shell = 'exec sleep 1000'
restart = "on-failure"
[process.reader]
shell = '{reader}'
restart = "never"
env = {{ GEN = "1" }}
[[edge]]
name = "lines"
from = "writer"
to = "reader"
"#
    )
}

/// A `never` reader that put /dev/null where its pipe was.
fn moved() -> String {
    writer_and_never_reader("reload-moved", "exec 0</dev/null; exec sleep 1000")
}

#[test]
fn a_never_process_that_gave_its_channel_end_away_is_refused() {
    let mut scratch = Scratch::new("reload-moved");
    let mut run = Detached::start(&mut scratch, &moved());
    let before = pids(&run);
    let file = scratch.topology(&moved().replace("GEN = \"1\"", "GEN = \"2\""));
    let (_, stderr) = refused_reload(&run, &file, &before);
    assert!(
        stderr.contains("process reader: wire fd 0 of reader: the running process no longer holds it there: another kind of file"),
        "{stderr}"
    );
    run.down();
    scratch.assert_left_nothing();
}

/// `kept` stays; `gone` is removed by the reload.
const SUMMARY: &str = r#"
name = "reload-summary"
[process.kept]
shell = 'echo up; exec sleep 1000'
restart = "on-failure"
[process.gone]
shell = 'echo up; exec sleep 1000'
restart = "on-failure"
"#;

#[test]
fn the_end_of_run_summary_does_not_list_a_removed_process() {
    let mut scratch = Scratch::new("reload-summary");
    let file = scratch.topology(SUMMARY);
    let mut live = scratch.live(&file);
    live.wait_for_count("up", 2);
    let runtime = scratch.runtime();
    let ps = ipc(&runtime, &["ps", "--format", "json"]);
    let runs: Value = serde_json::from_slice(&ps.stdout).unwrap();
    let run_id = runs[0]["run_id"].as_str().unwrap().to_owned();
    let without = scratch.topology(&SUMMARY.replace("[process.gone]", "[process.kept2]"));
    let reload = ipc(&runtime, &["reload", &run_id, without.to_str().unwrap()]);
    assert!(reload.status.success(), "{}", text(&reload.stderr));
    live.wait_for_count("up", 3);
    let down = ipc(&runtime, &["down", &run_id]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    let finished = live.finish();
    let summary = summary_line(&finished.stderr, "kept");
    assert!(summary.contains("restarts 0"), "{summary}");
    summary_line(&finished.stderr, "kept2");
    assert!(
        !finished.stderr.lines().any(|l| l.starts_with("gone: ")),
        "{}",
        finished.stderr
    );
    scratch.assert_left_nothing();
}

#[test]
fn root_reloads_another_users_run() {
    use std::os::unix::process::CommandExt;
    let mut scratch = Scratch::new("reload-other-user");
    let runtime = scratch.dir.join("nobody-rt");
    std::fs::create_dir(&runtime).unwrap();
    std::os::unix::fs::chown(&runtime, Some(65534), Some(65534)).unwrap();
    let toml = "name = \"reload-other-user\"\n[process.a]\ncmd = [\"sleep\", \"1000\"]\nrestart = \"on-failure\"\nenv = { GEN = \"1\" }\n";
    let file = scratch.topology(toml);
    let started = std::process::Command::new(crate::support::IPC_RUN)
        .args(["run", "--detach", file.to_str().unwrap(), "--runtime-dir"])
        .arg(&runtime)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(started.status.success(), "{}", text(&started.stderr));
    let run_id = text(&started.stdout).trim().to_owned();
    let status = |what: &str| -> Value {
        let out = ipc(&runtime, &["status", &run_id, "--format", "json"]);
        assert!(out.status.success(), "{what}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let pid = status("before")["run"]["pid"].as_i64().unwrap();

    let changed = scratch.topology(&toml.replace("GEN = \"1\"", "GEN = \"2\""));
    let reload = ipc(&runtime, &["reload", &run_id, changed.to_str().unwrap()]);
    assert!(
        reload.status.success(),
        "{}{}",
        text(&reload.stdout),
        text(&reload.stderr)
    );
    assert!(text(&reload.stdout).contains("~ process a: env GEN"));
    assert_eq!(status("after")["processes"][0]["restarts"], 1);
    let leftovers: Vec<_> = std::fs::read_dir(runtime.join(&run_id))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("reload-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the plan file is removed: {leftovers:?}"
    );

    let down = ipc(&runtime, &["down", &run_id]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    wait_until("the run to end", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
}

/// `echo` and `client` wait; CALLS is where a per-connection edge from
/// `client` to `echo` goes.
const PER_CONNECTION: &str = r#"
name = "reload-per-connection"
[process.echo]
shell = 'ECHO'
restart = "on-failure"
[process.client]
restart = "on-failure"
CLIENT
"#;

const CALLS: &str = r#"
[[edge]]
name = "calls"
from = "client.calls"
to = "echo.calls"
traffic = "request"
protocol = "lines"
endpoint = "per-connection"
"#;

/// A client that sends a line on its connection and exits 0 once it is
/// echoed back.
const ECHO_CLIENT: &str = r#"cmd = ["python3", "-c", '''
import os, socket, sys
port = dict(kv.split("=", 1) for kv in os.environ["IPC_PORT_CALLS"].split())
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(port["address"])
s.sendall(b"hello\n")
s.shutdown(socket.SHUT_WR)
sys.exit(0 if s.makefile().read() == "hello\n" else 1)
''']"#;

#[test]
fn a_per_connection_edge_is_added_and_removed_live() {
    let plain = PER_CONNECTION
        .replace("ECHO", "exec sleep 1000")
        .replace("CLIENT", "cmd = [\"sleep\", \"1000\"]");
    let served = format!(
        "{}{CALLS}",
        PER_CONNECTION
            .replace("ECHO", "exec cat")
            .replace("CLIENT", ECHO_CLIENT)
    );
    let (mut scratch, mut run, mut events) = start_with_events("reload-per-connection", &plain);

    // Added: ipc-run accepts for `echo`, one `cat` per connection.
    reload(&run, &scratch.topology(&served));
    let client = events.next("started", "client", any);
    let done = events.next("exited", "client", |e| e["pid"] == client["pid"]);
    assert_eq!(done["exit_code"], 0, "the line came back: {done}");
    assert_eq!(run.process("echo")["state"], "accepting");

    // Removed: `echo` stops accepting and starts again as one process.
    reload(&run, &scratch.topology(&plain));
    events.next("restarting", "echo", any);
    let echo = events.next("started", "echo", any);
    assert!(echo["pid"].is_number(), "{echo}");
    assert_eq!(run.process("echo")["state"], "ready");
    run.down();
    scratch.assert_left_nothing();
}

/// A server-bound endpoint added beside `base`: `srv` writes MARK, then
/// binds its address, so a probe can pass only after MARK exists; `cli`
/// waits for it.
const SERVER: &str = r#"
[process.srv]
restart = "on-failure"
cmd = ["python3", "-c", '''
import os, signal, socket, time
port = dict(kv.split("=", 1) for kv in os.environ["IPC_PORT_API"].split())
time.sleep(0.2)
open("MARK", "w").close()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(port["address"])
s.listen(8)
while True:
    s.accept()[0].close()
''']
[process.cli]
cmd = ["sleep", "1000"]
after = ["srv"]
[[edge]]
name = "api"
from = "cli.api"
to = "srv.api"
traffic = "request"
protocol = "http"
endpoint = "server-bound"
probe = "connect"
"#;

#[test]
fn an_added_server_bound_endpoint_is_probed_before_its_client_starts() {
    let (mut scratch, mut run, mut events) =
        start_with_events("reload-server-bound", &base_and("reload-server-bound", ""));
    let mark = scratch.dir.join("mark");
    let with = base_and(
        "reload-server-bound",
        &SERVER.replace("MARK", mark.to_str().unwrap()),
    );
    reload(&run, &scratch.topology(&with));
    events.next("ready", "srv", any);
    assert!(
        mark.exists(),
        "ready only once it serves: {:?}",
        events.seen
    );
    events.next("started", "cli", any);
    run.down();
    scratch.assert_left_nothing();
}

#[test]
fn a_watchdog_given_by_a_reload_takes_effect() {
    let (mut scratch, mut run, mut events) =
        start_with_events("reload-watchdog", &HEALTH.replace("HEALTH", ""));
    let dir = run.runtime.join(&run.run_id);
    // `sleep` never pings: the watchdog finds it hung.
    let file = scratch.topology(&HEALTH.replace("HEALTH", "watchdog = \"100ms\""));
    reload(&run, &file);
    assert!(dir.join("notify.sock").exists(), "made for the watchdog");
    let started = events.next("started", "svc", any);
    events.next("unhealthy", "svc", |e| e["pid"] == started["pid"]);
    let killed = events.next("exited", "svc", |e| e["pid"] == started["pid"]);
    assert_eq!(killed["status"], "killed by SIGABRT", "{killed}");
    run.down();
    scratch.assert_left_nothing();
}

/// `svc` exits 3 on SIGUSR2, which ipc-run forwards to it only with
/// FORWARD.
const FORWARD: &str = r#"
name = "reload-forward"
[process.svc]
TRAPPED
FORWARD
"#;

#[test]
fn signals_forwarded_to_a_process_change_with_a_reload() {
    let toml = trapped(FORWARD, "trap 'exit 3' USR2");
    let (mut scratch, mut run, mut events) =
        start_with_events("reload-forward", &toml.replace("FORWARD", ""));
    let ipc_run = nix::unistd::Pid::from_raw(run.status()["run"]["pid"].as_i64().unwrap() as i32);
    let with = toml.replace("FORWARD", "forward_signals = [\"SIGUSR2\"]");
    reload(&run, &scratch.topology(&with));
    let ready = events.next("ready", "svc", any);
    nix::sys::signal::kill(ipc_run, nix::sys::signal::Signal::SIGUSR2).unwrap();
    let exited = events.next("exited", "svc", |e| e["pid"] == ready["pid"]);
    assert_eq!(exited["exit_code"], 3, "it got SIGUSR2: {exited}");
    run.down();
    scratch.assert_left_nothing();
}

/// Two writers into one pipe: `w1` (`never`) and `w2`, which ends on
/// SIGUSR1; `reader` ends at EOF, once neither can write any more.
const FAN_IN: &str = r#"
name = "reload-fan-in"
[process.w1]
shell = 'W1'
restart = "never"
[process.w2]
TRAPPED
[process.reader]
shell = 'exec cat > /dev/null'
restart = "on-failure"
[[edge]]
name = "lines"
from = ["w1", "w2"]
to = "reader"
"#;

#[test]
fn a_never_process_restarted_by_a_reload_still_lets_its_reader_see_eof() {
    let toml = trapped(FAN_IN, "trap 'exit 0' USR1");
    let (mut scratch, mut run, mut events) =
        start_with_events("reload-fan-in", &toml.replace("W1", "exec sleep 1000"));
    let w1 = run.process("w1")["pid"].clone();
    // ipc-run still holds the write end for w2: nothing to take back, but
    // the restarted w1 must give it up again when it starts.
    reload(&run, &scratch.topology(&toml.replace("W1", "echo one")));
    events.next("exited", "w1", |e| e["pid"] == w1);
    let started = events.next("started", "w1", any);
    events.next("exited", "w1", |e| e["pid"] == started["pid"]);
    let signal = run.ctl(&["signal", &run.run_id, "w2", "SIGUSR1"]);
    assert!(signal.status.success(), "{}", text(&signal.stderr));
    events.next("exited", "w2", any);
    let eof = events.next("exited", "reader", any);
    assert_eq!(eof["exit_code"], 0, "the reader saw EOF: {eof}");
    run.down();
    scratch.assert_left_nothing();
}
