//! Findings of a review of the newest commands, each a case that failed
//! before its fix (`docs/distributed.md`, `docs/operate.md`,
//! `docs/supervision.md`): a topology name (or `--time`) that tries to add
//! a line to what the engines generate (a shell command to a Slurm batch
//! script, a directive to a systemd unit); `export --out` over a planted
//! link; a reload file that is not the run's own (a FIFO, a symbolic link,
//! another user's); reloads that leaked log fds or kept output; a reload
//! applied up to a start that could not be wired; a reload that undid a
//! stop in progress; a `restart = "never"` process taken back on another
//! pipe; an identity kept after a reload dropped `user`. Each waits on the
//! run's state, not on time.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::control::{Detached, wait_until};
use super::ipc_run;
use super::reload::{pids, refused_reload};
use crate::support::Scratch;

/// A topology whose `name` holds newlines: each line after the first
/// would be a command of the batch script, or a directive of a unit, were
/// the name written as it is. `%n` is a systemd specifier.
const INJECTING: &str = r#"
name = "x\n[Service]\nExecStartPre=/bin/touch PWNED %n\ntouch PWNED\n"

[process.a]
host = "one"
cmd = ["true"]
"#;

fn output_of(args: &[&str], file: &Path) -> String {
    let out = ipc_run()
        .args(["--color", "never"])
        .args(args)
        .args(["--limits", "default"])
        .arg(file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_topology_name_adds_no_command_to_the_slurm_script() {
    let mut scratch = Scratch::new("review-slurm-name");
    let file = scratch.topology(INJECTING);
    // `--time` is the caller's, but a newline there must not either.
    let script = output_of(
        &["slurm", "--script-only", "--time", "1\ntouch PWNED"],
        &file,
    );
    for line in script.lines() {
        assert!(
            !line.starts_with("touch") && !line.starts_with("ExecStartPre"),
            "a line of the name became a line of the script: {line:?}\n{script}"
        );
    }
    assert!(script.contains("topology `x\\n[Service]"), "{script}");
    let path = scratch.dir.join("job.sh");
    std::fs::write(&path, &script).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}\n{script}",
        String::from_utf8_lossy(&syntax.stderr)
    );
}

#[test]
fn a_topology_name_adds_no_directive_to_the_systemd_units() {
    let mut scratch = Scratch::new("review-systemd-name");
    let file = scratch.topology(INJECTING);
    let units = output_of(&["export", "systemd"], &file);
    assert_eq!(
        units.matches("[Service]\n").count(),
        1,
        "one [Service] section in the one unit:\n{units}"
    );
    for line in units.lines() {
        assert!(
            !line.starts_with("ExecStartPre") && !line.starts_with("touch"),
            "a line of the name became a line of the unit: {line:?}\n{units}"
        );
        if let Some(description) = line.strip_prefix("Description=") {
            // Specifiers are expanded there: `%n` stays text.
            assert!(description.contains("%%n"), "{line}");
        }
    }
}

/// One process that waits: a run to hand reload files to.
const WAITING: &str = r#"
name = "NAME"

[process.sleeper]
cmd = ["sleep", "1000"]
restart = "on-failure"
"#;

/// Sends one request line and reads the answer within `limit`; `None`
/// when none came in that time.
fn answer_within(socket: &Path, request: &str, limit: Duration) -> Option<Value> {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).ok()?;
    Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
}

fn reload_request(plan_file: &Path) -> String {
    serde_json::json!({"v": 1, "cmd": "reload", "plan_file": plan_file}).to_string()
}

/// A FIFO named as the plan file: the run answers at once that it is
/// not a regular file, and goes on answering, instead of waiting in
/// `open` for a writer that never comes (the whole event loop with it).
#[test]
fn a_reload_file_that_is_a_fifo_does_not_stall_the_run() {
    let mut scratch = Scratch::new("review-reload-fifo");
    let run = Detached::start(&mut scratch, &WAITING.replace("NAME", "review-fifo"));
    let fifo = scratch.dir.join("plan.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let answer = answer_within(
        &run.socket(),
        &reload_request(&fifo),
        Duration::from_secs(5),
    );
    if answer.is_none() {
        // Unblock the stalled run so that it can be downed.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
    }
    let answer = answer.expect("the run answers a reload whose file is a FIFO");
    assert_eq!(answer["error"]["code"], "bad-request", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("not a regular file"), "{message}");
    assert_eq!(run.process("sleeper")["restarts"], 0);
}

/// A plan file that is a symbolic link, or that another user owns or
/// may write, is refused, naming why; the run is as it was.
#[test]
fn a_reload_file_not_the_runs_own_is_refused() {
    let mut scratch = Scratch::new("review-reload-owner");
    let toml = WAITING.replace("NAME", "review-owner");
    let topology = scratch.topology(&toml);
    let run = Detached::start(&mut scratch, &toml);
    let plan = ipc_run()
        .args(["plan", "--format", "json"])
        .arg(&topology)
        .output()
        .unwrap();
    assert!(plan.status.success());
    let real = scratch.dir.join("plan.json");
    let write = |path: &Path, mode: u32| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .unwrap();
        file.write_all(&plan.stdout).unwrap();
    };
    write(&real, 0o600);
    // The run's own file is taken (the same plan: nothing to change).
    let ok = answer_within(
        &run.socket(),
        &reload_request(&real),
        Duration::from_secs(15),
    );
    assert_eq!(ok.as_ref().unwrap()["ok"], true, "{ok:?}");
    let link = scratch.dir.join("link.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let writable = scratch.dir.join("writable.json");
    write(&writable, 0o600);
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o622)).unwrap();
    let mut cases = vec![(link, "symbolic link"), (writable, "not the run's own")];
    if nix::unistd::geteuid().is_root() {
        let foreign = scratch.dir.join("foreign.json");
        write(&foreign, 0o600);
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::chown(&foreign, Some(nobody), None).unwrap();
        cases.push((foreign, "not the run's own"));
    }
    for (path, why) in cases {
        let answer = answer_within(
            &run.socket(),
            &reload_request(&path),
            Duration::from_secs(15),
        )
        .expect("an answer");
        assert_eq!(answer["error"]["code"], "bad-request", "{path:?}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{path:?}: {message}");
    }
    assert_eq!(run.process("sleeper")["restarts"], 0);
}

/// A pipe from `writer` to `reader` and a process `extra` that reload
/// after reload is removed and added back (`VERSION` swaps it for
/// `other`).
const RELOADED: &str = r#"
name = "NAME"

[process.writer]
cmd = ["sleep", "1000"]
restart = "on-failure"

[process.reader]
cmd = ["sleep", "1000"]
restart = "on-failure"

[process.EXTRA]
shell = 'echo started; exec sleep 1000'
restart = "on-failure"

[[edge]]
name = "lines"
from = "writer"
to = "reader"
"#;

/// ipc-run's open fds.
fn fd_count(pid: i64) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Reload after reload, with `--log-dir`, removes a process and adds it
/// back (and another in its place): ipc-run's fd count stays the same,
/// as every added name writes to the log files its name has open, and
/// both runs of `extra` are in its one file.
#[test]
fn reloads_with_a_log_dir_keep_the_fd_count_flat() {
    let mut scratch = Scratch::new("review-reload-fds");
    let logs = scratch.dir.join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o700)).unwrap();
    let toml = RELOADED.replace("NAME", "review-fds");
    let first = scratch.topology(&toml.replace("EXTRA", "extra"));
    let second = scratch.topology(&toml.replace("EXTRA", "other"));
    let run = Detached::start_with(
        &mut scratch,
        &toml.replace("EXTRA", "extra"),
        &["--log-dir", logs.to_str().unwrap()],
    );
    let pid = run.status()["run"]["pid"].as_i64().unwrap();
    let reload = |file: &Path| {
        // Refused while the process it adds back is still stopping.
        wait_until("the reload to be taken", || {
            run.ctl(&["reload", &run.run_id, file.to_str().unwrap()])
                .status
                .success()
        });
    };
    reload(&second);
    reload(&first);
    // Read at once: a removed process still stopping may hold a pidfd and
    // its two streams here for a moment, which only raises the mark.
    let base = fd_count(pid);
    for pair in 2..=4 {
        reload(&second);
        reload(&first);
        wait_until(
            &format!("ipc-run's fds after {pair} pairs of reloads to be back at {base}"),
            || fd_count(pid) <= base,
        );
    }
    let extra = logs.join("extra.stdout.log");
    wait_until("the last extra to write its line", || {
        std::fs::read_to_string(&extra)
            .unwrap_or_default()
            .lines()
            .count()
            == 5
    });
}

/// `keep` waits; `EXTRA` writes 1 MB of lines, then waits.
const CHATTY: &str = r#"
name = "NAME"

[process.keep]
cmd = ["sleep", "1000"]

[process.EXTRA]
shell = 'head -c 1000000 /dev/zero | tr "\0" x | fold -w 99; exec sleep 1000'
"#;

/// ipc-run's resident memory, in KiB.
fn rss_kib(pid: i64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A process a reload removes leaves a tombstone `logs` never shows: the
/// output kept of it for `logs` (`--log-memory`) is freed, so ten
/// remove/add-back pairs of a process that wrote 1 MB leave ipc-run's
/// memory where it was, not 10 x 2 x 1 MiB higher.
#[test]
fn reloads_do_not_pile_up_the_output_kept_of_removed_processes() {
    let mut scratch = Scratch::new("review-reload-memory");
    let toml = CHATTY.replace("NAME", "review-memory");
    let first = scratch.topology(&toml.replace("EXTRA", "extra"));
    let second = scratch.topology(&toml.replace("EXTRA", "other"));
    let run = Detached::start_with(
        &mut scratch,
        &toml.replace("EXTRA", "extra"),
        &["--log-memory", "1MiB"],
    );
    let pid = run.status()["run"]["pid"].as_i64().unwrap();
    let swap = |file: &Path, name: &str| {
        wait_until("the reload to be taken", || {
            run.ctl(&["reload", &run.run_id, file.to_str().unwrap()])
                .status
                .success()
        });
        // All of its output kept before it is removed again.
        wait_until(&format!("{name}'s 1 MB to be read"), || {
            run.process(name)["stdout_bytes"].as_u64() == Some(1_010_101)
        });
    };
    let pair = || {
        swap(&second, "other");
        swap(&first, "extra");
    };
    pair();
    pair();
    let before = rss_kib(pid);
    for _ in 0..10 {
        pair();
    }
    let after = rss_kib(pid);
    assert!(
        after < before + 4096,
        "ipc-run grew from {before} KiB to {after} KiB over 10 pairs of reloads"
    );
}

/// A writer into a pipe to a reader, both `restart = "never"`: ipc-run
/// gives up its copies of the pipe's ends once they are spawned.
/// `WRITERS` is the edge's `from`.
const NEVER_PIPE: &str = r#"
name = "NAME"

[process.writer]
shell = 'echo one; exec sleep 1000'

[process.second]
shell = 'echo two; exec sleep 1000'

[process.reader]
shell = 'exec cat > OUT'

[[edge]]
name = "lines"
from = WRITERS
to = "reader"
"#;

/// A reload that adds a second writer to that pipe cannot wire it (ipc-run
/// no longer holds the write end): it is refused before anything changes
/// (exit 6, the reason named), not applied up to a start that fails
/// (exit 3, the run then listing a process that never ran).
#[test]
fn a_reload_that_cannot_wire_an_added_process_is_refused_first() {
    let mut scratch = Scratch::new("review-reload-unheld");
    let out = scratch.dir.join("out");
    let toml = NEVER_PIPE
        .replace("NAME", "review-unheld")
        .replace("OUT", out.to_str().unwrap());
    let one = toml.replace("WRITERS", "\"writer\"").replace(
        "[process.second]\nshell = 'echo two; exec sleep 1000'\n",
        "",
    );
    let two = scratch.topology(&toml.replace("WRITERS", "[\"writer\", \"second\"]"));
    let run = Detached::start(&mut scratch, &one);
    let writer = run.process("writer")["pid"].clone();
    let (_, stderr) = refused_reload(&run, &two, &pids(&run));
    assert!(
        stderr.contains("no longer holds this end of channel lines"),
        "{stderr}"
    );
    let status = run.status();
    let names: Vec<&str> = status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["writer", "reader"], "{status}");
    assert_eq!(run.process("writer")["pid"], writer);
}

/// One group, `one`, of a process that ends.
const ONE_GROUP: &str = r#"
name = "review-out"

[process.a]
host = "one"
cmd = ["true"]
"#;

/// `export systemd --out DIR` into a directory where a symbolic link
/// waits at a unit's name: the link is not followed (the file it points
/// at is neither truncated nor written), the export fails naming the
/// path (E0521). Written afresh, the units are 0644 and the plan, which
/// holds the processes' environment, 0600.
#[test]
fn export_out_follows_no_planted_link_and_keeps_the_plan_private() {
    let mut scratch = Scratch::new("review-export-out");
    let file = scratch.topology(ONE_GROUP);
    let out = scratch.dir.join("units");
    std::fs::create_dir(&out).unwrap();
    let victim = scratch.dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let unit = out.join("ipc-run-review-out-one.service");
    std::os::unix::fs::symlink(&victim, &unit).unwrap();
    let export = |out: &Path| {
        ipc_run()
            .args([
                "--color", "never", "export", "systemd", "--limits", "default",
            ])
            .arg("--out")
            .arg(out)
            .arg(&file)
            .output()
            .unwrap()
    };
    let planted = export(&out);
    let stderr = String::from_utf8_lossy(&planted.stderr);
    assert_eq!(planted.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("E0521") && stderr.contains("symbolic link"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let fresh = scratch.dir.join("fresh");
    let written = export(&fresh);
    assert!(written.status.success(), "{written:?}");
    let mode = |name: &str| {
        std::fs::metadata(fresh.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("ipc-run-review-out-one.service"), 0o644);
    assert_eq!(mode("ipc-run-review-out.plan.json"), 0o600);
}

/// A process that appends its `GEN` to OUT when it starts, and, asked to
/// stop, exits only once the file GO exists.
const SLOW_STOP: &str = r#"
name = "review-stopping"

[process.slow]
shell = 'echo "$GEN" >> OUT; trap "while [ ! -e GO ]; do sleep 0.01; done; exit 0" TERM; while :; do sleep 0.01; done'
restart = "on-failure"
env = { GEN = "1" }
"#;

/// `stop` of a process, then, while it is still stopping, a reload that
/// changes it: it stays stopped, as it would had its stop ended before
/// the reload, and its next `start` runs the new plan. (The reload used to
/// override the stop: the process was started again once it exited.)
#[test]
fn a_reload_does_not_undo_a_stop_in_progress() {
    let mut scratch = Scratch::new("review-reload-stopping");
    let out = scratch.dir.join("out");
    let go = scratch.dir.join("go");
    let toml = SLOW_STOP
        .replace("OUT", out.to_str().unwrap())
        .replace("GO", go.to_str().unwrap());
    let changed = scratch.topology(&toml.replace("GEN = \"1\"", "GEN = \"2\""));
    let run = Detached::start(&mut scratch, &toml);
    wait_until("slow to start", || lines_in(&out) == ["1"]);
    assert!(run.ctl(&["stop", &run.run_id, "slow"]).status.success());
    assert_eq!(run.process("slow")["state"], "stopping");
    let reload = run.ctl(&["reload", &run.run_id, changed.to_str().unwrap()]);
    assert!(reload.status.success(), "{reload:?}");
    std::fs::write(&go, "").unwrap();
    wait_until("slow's stop to end", || {
        run.process("slow")["state"] != "stopping"
    });
    let slow = run.process("slow");
    assert_eq!(slow["state"], "stopped", "{slow}");
    assert_eq!(lines_in(&out), ["1"]);
    assert!(run.ctl(&["start", &run.run_id, "slow"]).status.success());
    wait_until("slow to start with its new plan", || {
        lines_in(&out) == ["1", "2"]
    });
}

fn lines_in(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A writer and a reader, both `restart = "never"` (ipc-run gives up
/// both ends of their pipe), the reader having put another pipe where
/// its own was.
const SWAPPED: &str = r#"
name = "review-swapped"

[process.writer]
shell = 'exec sleep 1000'

[process.reader]
cmd = ["bash", "-c", 'exec 0< <(exec sleep 1000); echo swapped; exec sleep 1000']
env = { GEN = "1" }

[[edge]]
name = "lines"
from = "writer"
to = "reader"
"#;

/// A reload that changes that reader must take its end back: what it
/// has at fd 0 is a pipe read end, but not the channel's, and ipc-run,
/// holding neither end, cannot compare it with the other one. It is
/// refused (exit 6), rather than restarting the reader on the other pipe
/// with the channel's end lost.
#[test]
fn a_never_process_holding_another_pipe_is_refused() {
    let mut scratch = Scratch::new("review-reload-swapped");
    let changed = scratch.topology(&SWAPPED.replace("GEN = \"1\"", "GEN = \"2\""));
    let run = Detached::start(&mut scratch, SWAPPED);
    let reader = run.process("reader")["pid"].clone();
    wait_until("the reader to swap its stdin", || {
        run.process("reader")["stdout_lines"] == 1
    });
    let (_, stderr) = refused_reload(&run, &changed, &pids(&run));
    assert!(
        stderr.contains(
            "wire fd 0 of reader: the running process no longer holds it there: another pipe"
        ),
        "{stderr}"
    );
    assert_eq!(run.process("reader")["pid"], reader);
}

/// A process that says which uid it runs as, then waits; `USER` is its
/// `user =` line (or nothing).
const WHO: &str = r#"
name = "review-who"

[process.who]
shell = 'echo "uid $(id -u)"; exec sleep 1000'
restart = "on-failure"
USER
"#;

/// The uids `who` printed, from the run's kept output.
fn uids(run: &Detached) -> Vec<String> {
    let logs = run.ctl(&["logs", &run.run_id, "who", "--format", "json"]);
    String::from_utf8_lossy(&logs.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|r| r["line"].as_str().map(str::to_owned))
        .filter(|l| l.starts_with("uid "))
        .collect()
}

/// A reload that drops `user =` from a process restarts it as ipc-run's
/// own user (root here), as its new plan says: the identity its old plan
/// resolved is not kept for it.
#[test]
fn a_reload_that_drops_user_runs_the_process_as_ipc_runs_user() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this case needs root: it runs a process as `nobody`");
    }
    let mut scratch = Scratch::new("review-reload-user");
    let own = scratch.topology(&WHO.replace("USER", ""));
    let run = Detached::start(&mut scratch, &WHO.replace("USER", "user = \"nobody\""));
    wait_until("who to say its uid", || uids(&run).len() == 1);
    let reload = run.ctl(&["reload", &run.run_id, own.to_str().unwrap()]);
    assert!(reload.status.success(), "{reload:?}");
    wait_until("who to say its uid again", || uids(&run).len() == 2);
    assert_eq!(uids(&run), ["uid 65534", "uid 0"]);
}
