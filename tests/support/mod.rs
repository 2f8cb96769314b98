//! Helpers shared by the tests that run the real `ipc-run` binary: a
//! private scratch directory and `--runtime-dir` per case, running and
//! following ipc-run, reading what it and the probes printed, and checking
//! that a run left nothing behind (`RunObjects`).
#![allow(dead_code, reason = "each test file uses a different subset")]

pub mod launch;
pub mod stacks;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

pub const IPC_RUN: &str = env!("CARGO_BIN_EXE_ipc-run");
pub const PROBE: &str = env!("CARGO_BIN_EXE_ipc-run-probe");
pub const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Longest any single run may take before the case fails (and kills it).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

// ----- scratch directories and commands ------------------------------------

/// A private directory for one case, removed when the case passes.
pub struct Scratch {
    pub dir: PathBuf,
    pub files: u32,
}

impl Scratch {
    pub fn new(case: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ipc-run-cli-{}-{case}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir, files: 0 }
    }

    /// The `--runtime-dir` of this case (created by ipc-run itself).
    pub fn runtime(&self) -> PathBuf {
        self.dir.join("rt")
    }

    /// Writes a topology; `PROBE` in it stands for the probe's path.
    pub fn topology(&mut self, toml: &str) -> PathBuf {
        self.files += 1;
        let path = self.dir.join(format!("topology-{}.toml", self.files));
        std::fs::write(&path, toml.replace("PROBE", PROBE)).unwrap();
        path
    }

    /// `ipc-run run FILE --runtime-dir RT`, with debug logs (they name the
    /// run id and every object created) and no colour.
    pub fn run_command(&self, file: &Path) -> Command {
        let mut command = Command::new(IPC_RUN);
        self.add_run_args(&mut command, file);
        command
    }

    /// `--color never run FILE --runtime-dir RT`, debug logs, no colour.
    fn add_run_args(&self, command: &mut Command, file: &Path) {
        add_bare_run_args(command, file, &self.runtime())
            .env("IPC_RUN_LOG", "debug")
            .env_remove("NO_COLOR");
    }

    pub fn run(&self, file: &Path) -> Finished {
        run_captured(&mut self.run_command(file))
    }

    pub fn live(&self, file: &Path) -> Live {
        Live::start(self.run_command(file))
    }

    /// Every entry left in the runtime directory.
    pub fn runtime_entries(&self) -> Vec<String> {
        match std::fs::read_dir(self.runtime()) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Scratch {
    /// The first (for a single run, the only) run directory in the runtime
    /// directory.
    pub fn first_run_dir(&self) -> PathBuf {
        std::fs::read_dir(self.runtime())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    }

    /// Asserts that the run left nothing in its runtime directory.
    pub fn assert_left_nothing(&self) {
        let left = self.runtime_entries();
        assert!(left.is_empty(), "the run left {left:?}");
    }

    /// Writes `toml`, runs it, and checks that it exited 0 (showing its
    /// stderr if not) and left nothing in its runtime directory.
    pub fn run_to_success(&mut self, toml: &str) -> Finished {
        let file = self.topology(toml);
        let finished = self.run(&file);
        assert_eq!(finished.code, 0, "{}", finished.stderr);
        self.assert_left_nothing();
        finished
    }
}

/// Runs `toml` in a fresh scratch directory of `case` and checks that the
/// run left nothing behind: (exit code, stdout, stderr).
pub fn run_topology(case: &str, toml: &str) -> (i32, String, String) {
    let mut scratch = Scratch::new(case);
    let file = scratch.topology(toml);
    let finished = scratch.run(&file);
    scratch.assert_left_nothing();
    (finished.code, finished.stdout_text(), finished.stderr)
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A run that ended.
pub struct Finished {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    /// The run that ended, its stderr shown in the test's captured output
    /// (printed only if the test fails).
    fn shown(code: i32, stdout: Vec<u8>, stderr: String, elapsed: Duration) -> Finished {
        eprintln!("--- ipc-run stderr (exit {code}) ---\n{stderr}---");
        Finished {
            code,
            stdout,
            stderr,
            elapsed,
        }
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

pub fn run_id_in(log: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains("run directory created"))
        .find_map(|l| l.split("run_id=").nth(1))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
}

/// Objects the debug log says were journaled, as (kind, name or id).
pub fn journaled(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|l| l.split("journal: ").nth(1))
        .map(|rest| {
            let mut words = rest.split_whitespace();
            (
                words.next().unwrap_or_default().to_owned(),
                words.next().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

pub fn read_in_thread<R: Read + Send + 'static>(mut from: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        bytes
    })
}

/// Waits for ipc-run (killing it by its pid after [`RUN_TIMEOUT`]).
pub fn wait_with_timeout(child: &mut Child, started: Instant) -> i32 {
    wait_within(child, started, RUN_TIMEOUT)
}

/// Waits for ipc-run, killing it by its pid after `limit`: for a case whose
/// run, if ipc-run misbehaves, would wait out a delay longer than `limit`.
pub fn wait_within(child: &mut Child, started: Instant, limit: Duration) -> i32 {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status
                .code()
                .unwrap_or_else(|| panic!("ipc-run itself died: {status:?}"));
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ipc-run did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Adds `--color never run FILE --runtime-dir RUNTIME` and a stdin from
/// /dev/null to `command`, leaving its environment as it is.
pub fn add_bare_run_args<'c>(
    command: &'c mut Command,
    file: &Path,
    runtime: &Path,
) -> &'c mut Command {
    command
        .args(["--color", "never", "run"])
        .arg(file)
        .arg("--runtime-dir")
        .arg(runtime)
        .stdin(Stdio::null())
}

/// `PROGRAM --color never run FILE --runtime-dir RUNTIME` (PROGRAM an
/// ipc-run binary), stdin from /dev/null, the environment as it is (no
/// debug logs): the bare run command line.
pub fn bare_run_command(
    program: impl AsRef<std::ffi::OsStr>,
    file: &Path,
    runtime: &Path,
) -> Command {
    let mut command = Command::new(program);
    add_bare_run_args(&mut command, file, runtime);
    command
}

/// `ipc-run --color never clean --runtime-dir ROOT`: (exit code, stdout,
/// stderr); asserts that it did not panic.
pub fn clean_root(root: &Path) -> (i32, String, String) {
    let output = Command::new(IPC_RUN)
        .args(["--color", "never", "clean", "--runtime-dir"])
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

/// Runs `command` to its end, its stdout and stderr captured.
pub fn run_captured(command: &mut Command) -> Finished {
    finish(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

pub fn finish(mut child: Child) -> Finished {
    let started = Instant::now();
    let out = read_in_thread(child.stdout.take().unwrap());
    let err = read_in_thread(child.stderr.take().unwrap());
    let code = wait_with_timeout(&mut child, started);
    let elapsed = started.elapsed();
    let stdout = out.join().unwrap();
    let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    Finished::shown(code, stdout, stderr, elapsed)
}

/// A running ipc-run whose stdout and stderr are followed line by line.
pub struct Live {
    pub child: Child,
    pub lines: mpsc::Receiver<(bool, String)>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
    pub readers: Vec<std::thread::JoinHandle<()>>,
}

impl Live {
    /// Starts `command` in a process group of its own, as a shell with job
    /// control starts a command: signals this test sends are then never
    /// "from the leader of ipc-run's process group", which ipc-run reads as
    /// a `timeout`-style repeat (the test harness may lead our group, as
    /// cargo-nextest's does).
    pub fn start(mut command: Command) -> Live {
        let mut child = command
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let mut readers = Vec::new();
        for (is_out, stream) in [
            (
                true,
                Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            ),
            (false, Box::new(child.stderr.take().unwrap())),
        ] {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((is_out, line)).is_err() {
                        break;
                    }
                }
            }));
        }
        Live {
            child,
            lines,
            stdout: Vec::new(),
            stderr: Vec::new(),
            readers,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn take(&mut self, (is_out, line): (bool, String)) {
        if is_out {
            self.stdout.push(line);
        } else {
            self.stderr.push(line);
        }
    }

    /// Waits until `count` stdout lines contain `text`.
    pub fn wait_for_count(&mut self, text: &str, count: usize) {
        self.wait_for_count_within(text, count, Duration::from_secs(15));
    }

    /// [`Live::wait_for_count`] with a bound of its own, for a run that
    /// launches thousands of processes on a loaded machine.
    pub fn wait_for_count_within(&mut self, text: &str, count: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.stdout.iter().filter(|l| l.contains(text)).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.take(line),
                Err(_) => {
                    self.kill();
                    panic!(
                        "never saw {count} x {text:?}; stdout {:?}, stderr {:?}",
                        self.stdout, self.stderr
                    )
                }
            }
        }
    }

    /// How many stdout lines seen so far contain `text`, without waiting.
    pub fn count_now(&mut self, text: &str) -> usize {
        while let Ok(line) = self.lines.try_recv() {
            self.take(line);
        }
        self.stdout.iter().filter(|l| l.contains(text)).count()
    }

    /// Waits until a stderr line contains `text`.
    pub fn wait_for_stderr(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.stderr.iter().any(|l| l.contains(text)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.take(line),
                Err(_) => {
                    self.kill();
                    panic!("never saw {text:?} on stderr: {:?}", self.stderr)
                }
            }
        }
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn finish(self) -> Finished {
        self.finish_within(RUN_TIMEOUT)
    }

    /// [`Live::finish`] with a shorter bound than [`RUN_TIMEOUT`].
    pub fn finish_within(mut self, limit: Duration) -> Finished {
        let started = Instant::now();
        let code = wait_within(&mut self.child, started, limit);
        let elapsed = started.elapsed();
        for reader in std::mem::take(&mut self.readers) {
            reader.join().unwrap();
        }
        while let Ok(line) = self.lines.try_recv() {
            self.take(line);
        }
        let mut stdout = self.stdout.join("\n").into_bytes();
        stdout.push(b'\n');
        let stderr = self.stderr.join("\n") + "\n";
        Finished::shown(code, stdout, stderr, elapsed)
    }
}

// ----- reading what ipc-run and the probes printed -------------------------

/// The relayed stdout lines of instance `name`, prefix removed.
pub fn lines_of(stdout: &[u8], name: &str) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| {
            let (prefix, text) = line.split_once(" | ")?;
            (prefix.trim_end() == name).then(|| text.to_owned())
        })
        .collect()
}

pub fn summary_line<'a>(stderr: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}: ");
    stderr
        .lines()
        .rfind(|l| l.starts_with(&prefix) && l.contains(", restarts "))
        .unwrap_or_else(|| panic!("no summary line for {name} in:\n{stderr}"))
}

/// The probes' `report` lines, by instance name.
pub fn reports(stdout: &[u8]) -> BTreeMap<String, Value> {
    let mut found = BTreeMap::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let Some((prefix, text)) = line.split_once(" | ") else {
            continue;
        };
        if text.starts_with("{\"fds\"") {
            let report: Value = serde_json::from_str(text).unwrap();
            found.insert(prefix.trim_end().to_owned(), report);
        }
    }
    found
}

pub fn env_of<'a>(report: &'a Value, name: &str) -> Option<&'a str> {
    report["env"][name].as_str()
}

/// The `key=value` pairs of every `IPC_PORT_*` of a report.
pub fn ports_of(report: &Value) -> Vec<BTreeMap<String, String>> {
    report["env"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("IPC_PORT_"))
        .map(|(_, v)| {
            v.as_str()
                .unwrap()
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// The plan of a file as JSON.
pub fn plan_json(file: &Path) -> Value {
    let output = Command::new(IPC_RUN)
        .args(["plan", "--format", "json"])
        .arg(file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

// ----- what a run may leave behind (K2) ------------------------------------

/// What one run created, to be checked for leftovers.
#[derive(Debug, Default)]
pub struct RunObjects {
    pub run_id: String,
    /// POSIX queue names (from the plan, run id filled in).
    pub mq_names: Vec<String>,
    /// (`/proc/sysvipc` file, id).
    pub sysv: Vec<(&'static str, i32)>,
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
    /// Pids of the run's processes.
    pub pids: Vec<i32>,
}

impl RunObjects {
    /// From the plan, the probes' reports, and the debug log.
    pub fn of(plan: &Value, reports: &BTreeMap<String, Value>, log: &str) -> RunObjects {
        let run_id = run_id_in(log)
            .or_else(|| {
                reports
                    .values()
                    .find_map(|r| env_of(r, "IPC_RUN_ID").map(str::to_owned))
            })
            .expect("a run id");
        let mut objects = RunObjects {
            run_id: run_id.clone(),
            ..RunObjects::default()
        };
        for channel in plan["channels"].as_array().unwrap() {
            for object in channel["objects"].as_array().unwrap() {
                if object["kind"] == "posix-mq" {
                    let name = object["name"].as_str().unwrap();
                    objects.mq_names.push(name.replace("{run_id}", &run_id));
                }
            }
        }
        for (kind, name) in journaled(log) {
            let file = match kind.as_str() {
                "sysv-shm" => "shm",
                "sysv-mq" => "msg",
                "sysv-sem" => "sem",
                _ => continue,
            };
            objects.sysv.push((file, name.parse().unwrap()));
        }
        for report in reports.values() {
            objects.pids.push(report["pid"].as_i64().unwrap() as i32);
            for port in ports_of(report) {
                let kind = port["kind"].as_str();
                let address_port = || {
                    port.get("address")
                        .and_then(|a| a.rsplit_once(':'))
                        .and_then(|(_, p)| p.parse::<u16>().ok())
                };
                match kind {
                    "sysv-shm" => {
                        objects.sysv.push(("shm", port["id"].parse().unwrap()));
                        objects.sysv.push(("sem", port["sem_id"].parse().unwrap()));
                    }
                    "sysv-mq" => objects.sysv.push(("msg", port["id"].parse().unwrap())),
                    "sysv-sem" => objects.sysv.push(("sem", port["id"].parse().unwrap())),
                    "tcp" => objects.tcp_ports.extend(address_port()),
                    "udp" => objects.udp_ports.extend(address_port()),
                    "rpc" if port.get("transport").map(String::as_str) == Some("tcp") => {
                        objects.tcp_ports.extend(address_port())
                    }
                    _ => {}
                }
            }
        }
        objects.mq_names.sort();
        objects.mq_names.dedup();
        objects.sysv.sort();
        objects.sysv.dedup();
        for ports in [&mut objects.tcp_ports, &mut objects.udp_ports] {
            ports.sort_unstable();
            ports.dedup();
        }
        objects
    }

    /// Entries of /dev/shm (shm segments, `sem.*` semaphores) of this run.
    pub fn shm_entries(&self) -> Vec<String> {
        names_containing("/dev/shm", &self.run_id)
    }

    pub fn live_sysv(&self) -> Vec<(&'static str, i32)> {
        self.sysv
            .iter()
            .copied()
            .filter(|&(file, id)| sysv_perms(file, id).is_some())
            .collect()
    }

    pub fn live_mqs(&self) -> Vec<String> {
        self.mq_names
            .iter()
            .filter(|name| mq_exists(name))
            .cloned()
            .collect()
    }

    /// Asserts that none of the run's named objects, sockets or ports
    /// remain; with `processes`, also that its processes are gone and
    /// reaped (not zombies).
    pub fn assert_gone(&self, processes: bool) {
        assert_eq!(self.shm_entries(), Vec::<String>::new(), "left in /dev/shm");
        if Path::new("/dev/mqueue").is_dir() {
            assert_eq!(
                names_containing("/dev/mqueue", &self.run_id),
                Vec::<String>::new()
            );
        }
        assert_eq!(self.live_mqs(), Vec::<String>::new(), "POSIX queues left");
        assert_eq!(self.live_sysv(), vec![], "System V objects left");
        let unix = std::fs::read_to_string("/proc/net/unix").unwrap();
        assert!(
            !unix.lines().any(|l| l.contains(&self.run_id)),
            "a Unix socket of the run is still bound"
        );
        for port in &self.tcp_ports {
            assert!(!tcp_listening(*port), "TCP port {port} still listening");
        }
        for port in &self.udp_ports {
            assert!(!udp_bound(*port), "UDP port {port} still bound");
        }
        if processes {
            for &pid in &self.pids {
                assert_eq!(process_state(pid), None, "process {pid} left (or a zombie)");
            }
        }
    }
}

pub fn names_containing(dir: &str, text: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(text))
        .collect();
    names.sort();
    names
}

/// The permission column of a System V object in /proc/sysvipc/`file`.
pub fn sysv_perms(file: &str, id: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sysvipc/{file}"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols[1] == id.to_string())
        .map(|cols| cols[2].to_owned())
}

pub fn mq_exists(name: &str) -> bool {
    match ipc_run::sys::ipc::mq_open_existing(&CString::new(name).unwrap(), false) {
        Ok(_) => true,
        Err(nix::errno::Errno::ENOENT) => false,
        Err(errno) => panic!("mq_open {name}: {errno}"),
    }
}

pub fn mq_mode(name: &str) -> u32 {
    let fd = ipc_run::sys::ipc::mq_open_existing(&CString::new(name).unwrap(), false).unwrap();
    nix::sys::stat::fstat(&fd).unwrap().st_mode & 0o7777
}

/// Local ports in `/proc/net/{tcp,tcp6}` in state LISTEN.
/// A TCP port free now on every address (the kernel's pick), for a case
/// that must not meet another run's fixed port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn tcp_listening(port: u16) -> bool {
    socket_table_has(&["/proc/net/tcp", "/proc/net/tcp6"], port, Some("0A"))
}

pub fn udp_bound(port: u16) -> bool {
    socket_table_has(&["/proc/net/udp", "/proc/net/udp6"], port, None)
}

pub fn socket_table_has(files: &[&str], port: u16, state: Option<&str>) -> bool {
    let hex = format!(":{port:04X}");
    files.iter().any(|file| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .any(|cols| cols[1].ends_with(&hex) && state.is_none_or(|s| cols[3] == s))
    })
}

/// The state letter of `pid` if it is still one of our processes (running
/// or a zombie); `None` once it is gone.
///
/// Ours means started under some ipc-run: every child of a run, and what
/// those start (gunicorn's workers, an mpirun's ranks), has `IPC_RUN_ID` in
/// its environment; a pid recycled by an unrelated process has not. A
/// zombie's environment is gone, so a zombie counts whatever it was.
pub fn process_state(pid: i32) -> Option<char> {
    let state = state_of(pid)?;
    if state == 'Z' {
        return Some(state);
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let ours = environ
        .split(|&byte| byte == 0)
        .any(|var| var.starts_with(b"IPC_RUN_ID="));
    ours.then_some(state)
}

/// The state letter of any process `pid` (`R`, `S`, `Z`, ...), from
/// `/proc/<pid>/stat`; `None` once it is gone.
pub fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    stat[close + 2..].chars().next()
}

/// Waits up to `limit` for every pid to be dead (gone, or a zombie of
/// another parent); returns the ones still running.
pub fn wait_dead(pids: &[i32], limit: Duration) -> Vec<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let running: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|&pid| matches!(process_state(pid), Some(s) if s != 'Z'))
            .collect();
        if running.is_empty() || Instant::now() > deadline {
            return running;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The first word after `prefix` on every line of `text` that has it, as a
/// number (lines whose word is not a number are passed over).
pub fn numbers_after(text: &str, prefix: &str) -> Vec<i32> {
    text.lines()
        .filter_map(|line| line.split_once(prefix))
        .filter_map(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Reads a pid a process wrote to `path` (waiting for it, bounded).
pub fn pid_in(path: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.strip_suffix('\n')?.parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no pid in {path:?}");
        std::thread::yield_now();
    }
}

/// Sends SIGTERM to `child` (an ipc-run) and waits, bounded, for its exit
/// code.
pub fn sigterm_and_wait(child: &mut Child) -> i32 {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    wait_with_timeout(child, Instant::now())
}

/// Writes a topology `name` of one process, `chatty`, that writes its pid
/// to a file and then relays `yes` without end: (topology, pid file).
pub fn chatty_yes(scratch: &mut Scratch, name: &str) -> (PathBuf, PathBuf) {
    let pid_file = scratch.dir.join("chatty.pid");
    let file = scratch.topology(&format!(
        r#"
name = "{name}"

[process.chatty]
shell = 'echo $$ > {pid}.tmp && mv {pid}.tmp {pid} && exec yes a-line-of-relayed-output'
"#,
        pid = pid_file.display()
    ));
    (file, pid_file)
}

impl Scratch {
    /// Starts `ipc-run run FILE` with `stdout` as its stdout and its stderr
    /// written to the file `stderr` of the scratch directory (read it with
    /// [`Scratch::stderr_written`]).
    pub fn spawn_to_stderr_file(&self, file: &Path, stdout: Stdio) -> Child {
        let stderr = std::fs::File::create(self.dir.join("stderr")).unwrap();
        self.run_command(file)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    /// What a run started by [`Scratch::spawn_to_stderr_file`] wrote to its
    /// stderr.
    pub fn stderr_written(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap()
    }
}

// ----- a signal edge and its two ends ---------------------------------------

/// A signal edge: `sender` pokes `target` with SIGUSR1.
pub const POKE_EDGE: &str = r#"
[[edge]]
name = "poke"
from = "sender.poke"
to = "target.poke"
traffic = "notify"
signal = "SIGUSR1"
"#;

/// The body of a `target` shell of [`POKE_EDGE`]: says `target up PID`,
/// declares readiness on fd 5 and waits; on SIGUSR1 it says `target PID got
/// USR1` and exits 3.
pub const TARGET_UNTIL_USR1: &str = r#"trap 'echo "target $$ got USR1"; exit 3' USR1
echo "target up $$"
echo >&5
exec 5>&-
while :; do sleep 0.02; done
"#;

/// A `sender` shell line of [`POKE_EDGE`]: the target's pid from the
/// port description into `$pid`.
pub const SENDER_LEARNS_PID: &str =
    r#"for kv in $IPC_PORT_POKE; do case "$kv" in pid=*) pid="${kv#pid=}" ;; esac; done"#;

// ----- a topology with every mechanism -------------------------------------

/// The one definition of the every-mechanism topology: per port name, the
/// body of the edge `a.PORT -> b.PORT` (what follows `from` and `to`), in
/// the order of [`every_mechanism`]. Its subsets are [`probe_pair`]s.
pub const MECHANISM_EDGES: [(&str, &str); 15] = [
    ("pipe", "mechanism = \"pipe\""),
    ("fifo", "mechanism = \"fifo\""),
    ("fpath", "mechanism = \"fifo\"\ndeliver = \"path\""),
    ("pair", "mechanism = \"socketpair\"\nduplex = true"),
    (
        "sock",
        "mechanism = \"unix-listener\"\ntraffic = \"request\"",
    ),
    ("tcp", "mechanism = \"tcp\"\ntraffic = \"request\""),
    ("udp", "mechanism = \"udp\"\ntraffic = \"messages\""),
    (
        "shm",
        "mechanism = \"posix-shm\"\ntraffic = \"shared\"\nsize = \"4KiB\"",
    ),
    (
        "vshm",
        "mechanism = \"sysv-shm\"\ntraffic = \"shared\"\nsize = \"4KiB\"",
    ),
    ("mq", "mechanism = \"posix-mq\"\ntraffic = \"messages\""),
    ("vmq", "mechanism = \"sysv-mq\"\ntraffic = \"messages\""),
    ("sem", "mechanism = \"posix-sem\"\ntraffic = \"notify\""),
    ("vsem", "mechanism = \"sysv-sem\"\ntraffic = \"notify\""),
    ("sig", "mechanism = \"signal\"\ntraffic = \"notify\""),
    (
        "rpc",
        "mechanism = \"rpc\"\ntraffic = \"request\"\nprotocol = \"http\"",
    ),
];

/// A probe that exits 0 at once: the process body of a [`probe_pair`]
/// whose processes only need to be planned or launched.
pub const EXIT_0: &str = r#"cmd = ["PROBE", "exit", "0"]"#;

/// Processes `a` and `b` (their TOML bodies, without `ports`) joined by
/// the edges of [`MECHANISM_EDGES`] named by `ports`, in that order (it
/// decides the channel numbers `e0`, `e1`, ...). The last table is the last
/// edge, so a caller may append lines to it.
pub fn probe_pair(a: &str, b: &str, ports: &[&str]) -> String {
    let declared = ports
        .iter()
        .map(|p| format!("{p} = {{}}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut toml = format!(
        "[process.a]\n{a}\nports = {{ {declared} }}\n[process.b]\n{b}\nports = {{ {declared} }}\n"
    );
    for port in ports {
        let (_, body) = MECHANISM_EDGES
            .iter()
            .find(|(name, _)| name == port)
            .unwrap_or_else(|| panic!("no mechanism edge for port {port:?}"));
        toml.push_str(&format!(
            "[[edge]]\nfrom = \"a.{port}\"\nto = \"b.{port}\"\n{body}\n"
        ));
    }
    toml
}

/// Two probes joined by one edge of every mechanism, plus both readiness
/// kinds (the notify socket is a file of the run too). `b` starts first
/// (it receives `a`'s signal edge) and is ready by fd 20. `A` and `B` are
/// their commands after `report`.
pub fn every_mechanism(a: &str, b: &str) -> String {
    let ports = MECHANISM_EDGES.map(|(port, _)| port);
    let pair = probe_pair(
        &format!("cmd = [\"PROBE\", \"report\", \"--\", {a}]\nready = \"notify\""),
        &format!(
            "cmd = [\"PROBE\", \"report\", \"--\", \"write\", \"20\", \"\\n\", \"--\", {b}]\nready = {{ fd = 20 }}"
        ),
        &ports,
    );
    format!("name = \"every\"\n{pair}")
}

/// Commands that run once and exit: `a` writes a line into the pipe, which
/// `b` waits for (so `b` is still running when `a` needs its pid).
pub fn every_mechanism_finite() -> String {
    every_mechanism(
        r#""write", "@pipe.fd", "go\n""#,
        r#""readline", "@pipe.fd""#,
    )
}

/// Commands that wait for SIGTERM (blocked first, so it cannot arrive
/// before the wait) after printing `up`.
pub fn every_mechanism_waiting() -> String {
    let wait = r#""block", "15", "--", "println", "up", "--", "wait-signal", "15""#;
    every_mechanism(wait, wait)
}

/// Starts the waiting topology and returns it once both probes are up,
/// with their reports.
pub fn start_waiting(scratch: &Scratch, file: &Path) -> (Live, BTreeMap<String, Value>) {
    let mut live = scratch.live(file);
    live.wait_for_count("| up", 2);
    let stdout = live.stdout.join("\n").into_bytes();
    let found = reports(&stdout);
    assert_eq!(found.len(), 2, "{:?}", live.stdout);
    (live, found)
}

/// Zombies whose parent is `pid`.
pub fn zombie_children(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let fields: Vec<&str> = after.split(' ').collect();
        if fields[0] == "Z" && fields[1] == pid.to_string() {
            found.push(child);
        }
    }
    found
}

impl Scratch {
    /// `WRAPPER... ipc-run run FILE --runtime-dir RT`: ipc-run started by
    /// another program (`prlimit`, `unshare`, `strace`, a Python wrapper)
    /// that ends by exec'ing it, with debug logs and no colour.
    pub fn wrapped_command(&self, wrapper: &[&str], file: &Path) -> Command {
        let (program, args) = wrapper.split_first().expect("a wrapper program");
        let mut command = Command::new(program);
        command.args(args).arg(IPC_RUN);
        self.add_run_args(&mut command, file);
        command
    }
}

impl Finished {
    /// Asserts that ipc-run reported no panic (a clean error exit is fine).
    pub fn assert_no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked"),
            "ipc-run panicked:\n{}",
            self.stderr
        );
    }
}

// ----- what /proc says about a process -------------------------------------

/// A field of `/proc/<pid>/status` as a number (the kB values, `Threads`).
pub fn status_number(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// How many fds `pid` has open.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The pipe inodes among `pid`'s open fds.
pub fn pipe_inodes(pid: i32) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with("pipe:"))
        .collect()
}

/// How many pipe ends `pid` holds open for writing whose pipe one of its
/// children holds too: a child's stdout or stderr write end that ipc-run
/// has not closed yet, between the child's `execve` and the end of the
/// spawn (the child may already run meanwhile).
pub fn write_ends_shared_with_children(pid: i32) -> usize {
    let held: Vec<String> = children_of(pid).into_iter().flat_map(pipe_inodes).collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| {
            let target = std::fs::read_link(fd.path())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            let write_only = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                .is_some_and(|flags| flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32);
            write_only && held.contains(&target)
        })
        .count()
}

/// How many of `pid`'s pipes have no other holder among its children and
/// this test process: the ends of exited children's pipes ipc-run has not
/// yet read to EOF. Zero, with no [`write_ends_shared_with_children`],
/// means its fd table is settled.
pub fn orphan_pipes(pid: i32) -> usize {
    let mut held = pipe_inodes(std::process::id() as i32);
    for child in children_of(pid) {
        held.extend(pipe_inodes(child));
    }
    pipe_inodes(pid)
        .iter()
        .filter(|inode| !held.contains(inode))
        .count()
}

/// `utime + stime` of `pid` in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // Field 3 (state) is fields[0]: utime is field 14, stime field 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The command name of `pid` (`/proc/<pid>/comm`).
pub fn comm_of(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned())
}

/// The children of `pid` (every thread's `children` list).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        found.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    found.sort_unstable();
    found
}

/// Waits up to `limit` for `condition`, polling; false if it never held.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A pipeline `gen -> take` where `gen` writes the numbers 1 to `lines` at
/// once and exits, and `take` relays `per_life` lines per life (the shell's
/// `read` takes one byte at a time from a pipe, so it never reads ahead),
/// then ends by `death` (a shell command that fails it) and is restarted up
/// to `limit` times: what is still in the pipe must reach the next life.
pub fn restarting_consumer(lines: u32, per_life: u32, death: &str, limit: u32) -> String {
    format!(
        r#"
pipeline = ["gen", "take"]
[process.gen]
cmd = ["seq", "1", "{lines}"]
[process.take]
shell = 'i=0; while [ $i -lt {per_life} ] && IFS= read -r line; do echo "$line"; i=$((i+1)); done; [ $i -lt {per_life} ] && exit 0; {death}'
restart = "on-failure"
restart_limit = {limit}
restart_backoff = "1ms"
"#
    )
}

/// `yes | head -1` as a pipeline: the producer dies of SIGPIPE once the
/// consumer took its line and ended.
pub const PRODUCER_INTO_HEAD: &str = r#"
pipeline = ["yes", "take"]
[process.yes]
cmd = ["yes"]
[process.take]
cmd = ["head", "-1"]
"#;

/// Orders two children of one run by a file handshake instead of a sleep:
/// (a shell line for the first, a shell line for the second). The first
/// records its pid in `file`; the second waits (polling, at most 30 s) for
/// that record and then until the first is reaped by ipc-run (its `/proc`
/// entry gone), so ipc-run sees the first one end before the second. Both
/// are free of double quotes, to sit in a TOML basic string.
pub fn reaped_before(file: &Path) -> (String, String) {
    let file = file.display();
    let first = format!("echo $$ > {file}.new && mv {file}.new {file}");
    let second = format!(
        "for _ in $(seq 3000); do [ -s {file} ] && break; sleep 0.01; done; \
         first=$(cat {file}); {}",
        wait_gone_sh("$first")
    );
    (first, second)
}

/// A shell line that waits (polling, at most 30 s) until process `pid`
/// (a shell word) is gone from `/proc`: reaped, not a zombie.
pub fn wait_gone_sh(pid: &str) -> String {
    format!("for _ in $(seq 3000); do [ -e /proc/{pid} ] || break; sleep 0.01; done")
}

/// Whether `program` can be run here (`program ARGS` exits 0); the reason
/// it cannot otherwise.
pub fn tool_works(program: &str, args: &[&str]) -> Result<(), String> {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(e) => Err(format!("`{program}` cannot be run: {e}")),
    }
}

// ----- record locks ---------------------------------------------------------

/// Whether `/proc/locks` shows a record lock on inode `ino`: a granted one
/// (`waiting = false`) or a request blocked on it (`waiting = true`, the
/// kernel's `->` lines).
pub fn lock_on_inode(ino: u64, waiting: bool) -> bool {
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    locks.lines().any(|line| {
        let blocked = line.contains(" -> ");
        // Fields: `N: [->] KIND ADVISORY MODE PID MAJ:MIN:INO START END`.
        let on_inode = line
            .split_whitespace()
            .any(|f| f.rsplit(':').next() == Some(&ino.to_string()) && f.matches(':').count() == 2);
        on_inode && blocked == waiting
    })
}

/// Waits (bounded) until `/proc/locks` shows a lock of that kind on `ino`.
pub fn wait_for_lock(ino: u64, waiting: bool, what: &str) {
    let deadline = Instant::now() + RUN_TIMEOUT;
    while !lock_on_inode(ino, waiting) {
        assert!(
            Instant::now() < deadline,
            "{what}: no such lock on inode {ino}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
