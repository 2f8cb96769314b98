//! The supervisor with thousands of processes: a restart beside thousands
//! of idle siblings happens, a SIGTERM stops every one of them, and
//! nothing is left behind (processes, fds, run directory). Behaviour only:
//! the timings are benchmarks (`bench/scale/shutdown.sh`, `restart.sh`).

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

/// Idle siblings, in groups of at most 1024 (the `replicas` bound).
const GROUPS: usize = 2;
const PER_GROUP: usize = 1000;

/// How long the launch of them all may take: spawning slows down with the
/// fds ipc-run holds, and the machine may be busy.
const LAUNCH_BOUND: Duration = Duration::from_secs(120);

#[test]
fn a_restart_beside_thousands_of_idle_siblings_then_sigterm_stops_all() {
    let mut scratch = Scratch::new("scale-restart");
    let marker = scratch.dir.join("first-life-ran");
    let mut toml = String::new();
    for g in 0..GROUPS {
        toml.push_str(&format!(
            "[process.idle{g}]\ncmd = [\"sleep\", \"600\"]\nreplicas = {PER_GROUP}\n"
        ));
    }
    // Started last, after every idle sibling: its first life fails, the
    // next one idles; one restart, backoff 0.
    toml.push_str(&format!(
        r#"[process.flaky]
shell = "if [ -e '{m}' ]; then echo second-life; exec sleep 600; fi; : > '{m}'; echo first-life; exit 1"
restart = "on-failure"
restart_backoff = "0ms"
after = ["idle{last}"]
"#,
        m = marker.display(),
        last = GROUPS - 1,
    ));
    let file = scratch.topology(&toml);
    let mut live = scratch.live(&file);
    live.wait_for_count_within("| second-life", 1, LAUNCH_BOUND);
    let ipc_run = live.pid().as_raw();
    let children = children_of(ipc_run);
    assert_eq!(children.len(), GROUPS * PER_GROUP + 1, "every process runs");
    // Three fds per process (stdout, stderr, pidfd), whichever run of
    // flaky it is: the first run's were closed when it ended.
    let fds = fd_count(ipc_run);
    assert!(fds >= 3 * children.len(), "{fds} fds");
    assert!(fds < 4 * children.len(), "{fds} fds: some leaked");
    live.signal(Signal::SIGTERM);
    let result = live.finish();
    result.assert_no_panic();
    assert_eq!(result.code, 143, "{}", result.stderr);
    assert!(
        summary_line(&result.stderr, "flaky").contains("restarts 1"),
        "{}",
        summary_line(&result.stderr, "flaky")
    );
    for g in 0..GROUPS {
        let last = format!("idle{g}#{}", PER_GROUP - 1);
        assert!(
            summary_line(&result.stderr, &last).contains("(stopped)"),
            "{}",
            summary_line(&result.stderr, &last)
        );
    }
    assert_eq!(
        wait_dead(&children, Duration::from_secs(10)),
        Vec::<i32>::new(),
        "processes outlived the run"
    );
    scratch.assert_left_nothing();
}

/// A process that ignores its stop signal for a long grace, beside a chain
/// `base <- mid <- top` (`after`): the chain is stopped top first, each
/// once the one above it has ended, without waiting for the stubborn
/// process, which got its stop signal together with `top`. Serial stop
/// order would hold the chain behind it for its whole grace.
#[test]
fn dependents_stop_first_and_independent_processes_together() {
    const TRAP: &str = "trap 'echo stopping-$IPC_RUN_PROCESS; exit 0' TERM; echo up-$IPC_RUN_PROCESS; while :; do sleep 0.05; done";
    let mut scratch = Scratch::new("stop-levels");
    let file = scratch.topology(&format!(
        r#"
[process.base]
shell = "{TRAP}"
[process.mid]
shell = "{TRAP}"
after = ["base"]
[process.top]
shell = "{TRAP}"
after = ["mid"]
[process.stubborn]
shell = "trap 'echo stubborn-got-term' TERM; echo up-stubborn; while :; do sleep 0.05; done"
stop_timeout = "120s"
"#
    ));
    let mut live = scratch.live(&file);
    for name in ["base", "mid", "top", "stubborn"] {
        live.wait_for_count(&format!("up-{name}"), 1);
    }
    live.signal(Signal::SIGTERM);
    live.wait_for_count("stubborn-got-term", 1);
    // The whole chain stops while the stubborn process still runs.
    live.wait_for_count("stopping-base", 1);
    live.signal(Signal::SIGTERM);
    let result = live.finish();
    let out = result.stdout_text();
    let pos = |text: &str| out.find(text).unwrap_or_else(|| panic!("{text}: {out}"));
    assert!(
        pos("stopping-top") < pos("stopping-mid") && pos("stopping-mid") < pos("stopping-base"),
        "{out}"
    );
    assert!(
        summary_line(&result.stderr, "stubborn").contains("killed by SIGKILL (stopped)"),
        "{}",
        result.stderr
    );
    for name in ["base", "mid", "top"] {
        assert!(summary_line(&result.stderr, name).contains("exited 0 (stopped)"));
    }
    assert_eq!(result.code, 143);
    scratch.assert_left_nothing();
}

/// While ipc-run's stdout is stalled, the log pipes feeding it are parked:
/// `big` blocks on its full pipe, and `small`, which wrote its lines and
/// ended while parked, does not make the loop spin on its hang-up. Once
/// the reader reads again, every line of both comes through.
#[test]
fn streams_parked_on_a_stalled_output_cost_nothing_and_lose_nothing() {
    use std::io::Read;
    use std::process::Stdio;
    let mut scratch = Scratch::new("parked");
    let done = scratch.dir.join("small-done");
    let big_pid = scratch.dir.join("big-pid");
    let file = scratch.topology(&format!(
        r#"
[process.big]
shell = "echo $$ > '{pid}'; i=0; while [ $i -lt 20000 ]; do echo big-line-$i-padding-padding-padding-padding-padding-padding-padding; i=$((i+1)); done"
[process.small]
shell = "while [ ! -s '{pid}' ]; do sleep 0.01; done; sleep 0.3; i=0; while [ $i -lt 10 ]; do echo small-line-$i; i=$((i+1)); done; : > '{done}'"
[process.idle]
cmd = ["sleep", "600"]
"#,
        pid = big_pid.display(),
        done = done.display()
    ));
    let mut child = scratch.spawn_to_stderr_file(&file, Stdio::piped());
    let ipc_run = child.id() as i32;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let wait = |what: &dyn Fn() -> bool, why: &str| {
        while !what() {
            assert!(std::time::Instant::now() < deadline, "{why}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait(
        &|| std::fs::read_to_string(&big_pid).is_ok_and(|s| s.trim().parse::<i32>().is_ok()),
        "big never started",
    );
    let big: i32 = std::fs::read_to_string(&big_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait(
        &|| std::fs::read_to_string(format!("/proc/{big}/wchan")).is_ok_and(|w| w.contains("pipe")),
        "big never blocked on its pipe",
    );
    wait(&|| done.exists(), "small never ended");
    // small's exit and hang-up are seen; then the loop has nothing to do.
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_ticks(ipc_run);
    std::thread::sleep(Duration::from_millis(1000));
    let spent = cpu_ticks(ipc_run) - before;
    assert!(
        spent <= 20,
        "ipc-run spent {spent} ticks while its output was stalled"
    );
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        stdout.read_to_string(&mut all).unwrap();
        all
    });
    // Every line of big comes through once the reader reads again.
    wait(
        &|| state_of(big).is_none_or(|s| s == 'Z'),
        "big never finished",
    );
    let code = sigterm_and_wait(&mut child);
    let all = reader.join().unwrap();
    let stderr = scratch.stderr_written();
    assert_eq!(code, 143, "{stderr}");
    assert_eq!(
        all.lines().filter(|l| l.contains("| big-line-")).count(),
        20000
    );
    assert_eq!(
        all.lines().filter(|l| l.contains("| small-line-")).count(),
        10
    );
    scratch.assert_left_nothing();
}

/// ipc-run's peak resident memory, in KiB.
fn peak_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Many writers with full pipes behind a stalled output: when the reader
/// reads again, ipc-run reads the pipes in turn only while its queue for
/// the output is under its bound (256 KiB), not one pipe's worth of each
/// at once (64 pipes of 64 KiB: 4 MiB), and every line comes through.
#[test]
fn a_stalled_output_queues_within_its_bound_whatever_the_writers() {
    use std::io::Read;
    use std::process::Stdio;
    const WRITERS: usize = 64;
    const LINES: usize = 2000;
    let mut scratch = Scratch::new("bounded");
    let pids = scratch.dir.join("pids");
    std::fs::create_dir(&pids).unwrap();
    // The writers start writing together, once all run and the test has
    // taken ipc-run's peak memory: opening `go` waits for its writer.
    let go = scratch.dir.join("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let line = "x".repeat(98);
    let file = scratch.topology(&format!(
        r#"
[process.w]
replicas = {WRITERS}
shell = "echo > '{pids}'/$$; : < '{go}'; i=0; while [ $i -lt {LINES} ]; do echo {line}; i=$((i+1)); done"
[process.idle]
cmd = ["sleep", "600"]
"#,
        pids = pids.display(),
        go = go.display(),
    ));
    let mut child = scratch.spawn_to_stderr_file(&file, Stdio::piped());
    let ipc_run = child.id() as i32;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let wait = |what: &dyn Fn() -> bool, why: &str| {
        while !what() {
            assert!(std::time::Instant::now() < deadline, "{why}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let writers = || -> Vec<i32> {
        std::fs::read_dir(&pids)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    };
    wait(&|| writers().len() == WRITERS, "not every writer started");
    let before = peak_kib(ipc_run);
    let _go = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&go)
        .unwrap();
    // Every writer blocked on its full pipe, or done: ipc-run's output is
    // stalled and the pipes feeding it parked. A writer whose pipe ipc-run
    // read more often before its queue filled can finish all its lines
    // within what the queue and the output pipe take (320 KiB), and exit.
    wait(
        &|| {
            writers().iter().all(|&pid| {
                std::fs::read_to_string(format!("/proc/{pid}/wchan"))
                    .is_ok_and(|w| w.contains("pipe"))
                    || state_of(pid).is_none_or(|s| s == 'Z')
            })
        },
        "not every writer blocked on its pipe",
    );
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = vec![0; 1 << 16];
        let want = WRITERS * LINES;
        let mut seen = 0;
        while seen < want {
            let n = stdout.read(&mut buf).unwrap();
            assert!(n > 0, "ipc-run's stdout ended after {seen} lines");
            seen += memchr::memchr_iter(b'\n', &buf[..n]).count();
            all.extend_from_slice(&buf[..n]);
        }
        (all, stdout)
    });
    let (all, _stdout) = reader.join().unwrap();
    let grown = peak_kib(ipc_run).saturating_sub(before);
    let code = sigterm_and_wait(&mut child);
    assert_eq!(code, 143, "{}", scratch.stderr_written());
    let whole = String::from_utf8_lossy(&all)
        .lines()
        .filter(|l| l.ends_with(&format!("| {line}")))
        .count();
    assert_eq!(whole, WRITERS * LINES);
    assert!(
        grown < 2048,
        "ipc-run's peak memory grew by {grown} KiB once its output was read again"
    );
    scratch.assert_left_nothing();
}
