//! The shared-memory ring of docs/shm-ring.md from C and Python, as real
//! processes: `examples/ring/ipc_ring.h` (through `ring_send`, `ring_recv`
//! and `ring_format`, built here with `cc`) and `examples/ring/ipc_ring.py`
//! (its `send`, `recv` and `format` commands) write and read the same
//! segments, a file in /dev/shm that each case makes and removes. Every pair
//! of languages exchanges records of the edge sizes byte for byte, wrapping
//! the ring many times; a C and a Python producer share one ring; the stream
//! ends once both closed; a sleeping reader wakes for a record and for the
//! end; a producer killed with the writer lock held does not wedge the
//! other; an empty ring times out; an oversized record is refused. The unit
//! tests of each (`examples/ring/test_ipc_ring.c` and `test_ipc_ring.py`)
//! run from here too, and so does ipc-run itself, with a C, a Python and a
//! Rust producer on one `sync = "ring"` edge.
//!
//! Needs a C compiler and python3 (`scripts/test.sh` installs them); a case
//! without them says SKIP loudly.

use crate::support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use support::MANIFEST_DIR;
const HEADER: usize = 4096;

fn ring_dir() -> PathBuf {
    Path::new(MANIFEST_DIR).join("examples/ring")
}

fn python_module() -> PathBuf {
    ring_dir().join("ipc_ring.py")
}

fn skip(case: &str, reason: &str) {
    eprintln!("\n*** SKIP {case}: {reason} !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n");
}

// ----- the C programs, built once per test binary ---------------------------

/// The built C programs.
struct CTools {
    send: PathBuf,
    recv: PathBuf,
    format: PathBuf,
    /// `test_ipc_ring.c`: the header's unit tests.
    unit_tests: PathBuf,
}

fn build(dir: &Path, source: &str, out: &str, extra: &[&str]) -> Result<PathBuf, String> {
    let target = dir.join(out);
    // Build under a private name, then rename: parallel test binaries never
    // run a half-written program.
    let partial = dir.join(format!("{out}.{}", std::process::id()));
    let result = Command::new("cc")
        .args(["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror"])
        .args(extra)
        .arg("-o")
        .arg(&partial)
        .arg(ring_dir().join(source))
        .output()
        .map_err(|e| format!("cc: {e}"))?;
    if !result.status.success() {
        return Err(format!(
            "cc {source} failed:\n{}",
            String::from_utf8_lossy(&result.stderr)
        ));
    }
    std::fs::rename(&partial, &target).map_err(|e| e.to_string())?;
    Ok(target)
}

/// The C programs, or None (and a loud SKIP) when there is no C compiler.
/// A compiler that fails on the sources fails the case.
fn c_tools(case: &str) -> Option<&'static CTools> {
    static TOOLS: OnceLock<Option<CTools>> = OnceLock::new();
    let tools = TOOLS.get_or_init(|| {
        if Command::new("cc").arg("--version").output().is_err() {
            return None;
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ring-languages");
        std::fs::create_dir_all(&dir).unwrap();
        let built = (|| {
            Ok::<_, String>(CTools {
                send: build(&dir, "ring_send.c", "ring_send", &[])?,
                recv: build(&dir, "ring_recv.c", "ring_recv", &[])?,
                format: build(&dir, "ring_format.c", "ring_format", &[])?,
                unit_tests: build(&dir, "test_ipc_ring.c", "test_ipc_ring", &[])?,
            })
        })();
        Some(built.unwrap_or_else(|e| panic!("{e}")))
    });
    if tools.is_none() {
        skip(case, "no C compiler (`cc`); scripts/test.sh installs gcc");
    }
    tools.as_ref()
}

fn have_python(case: &str) -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    let present = *PRESENT.get_or_init(|| {
        Command::new("python3")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !present {
        skip(case, "no python3; scripts/test.sh installs it");
    }
    present
}

/// Both languages, or None after a SKIP line.
fn both(case: &str) -> Option<&'static CTools> {
    let tools = c_tools(case)?;
    have_python(case).then_some(tools)
}

// ----- segments --------------------------------------------------------------

/// A ring segment: a file in /dev/shm with a unique name, removed on drop.
struct Segment {
    name: String,
}

impl Segment {
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/shm{}", self.name))
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Lang {
    C,
    Python,
}

/// A fresh ring of `size` bytes for `producers`, formatted by `by`.
fn segment(tools: &CTools, by: Lang, size: usize, producers: u32) -> Segment {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "/ipc-ring-langtest.{}.{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    );
    let mut command = match by {
        Lang::C => Command::new(&tools.format),
        Lang::Python => {
            let mut c = Command::new("python3");
            c.arg(python_module()).arg("format");
            c
        }
    };
    let out = command
        .args([&name, &size.to_string(), &producers.to_string()])
        .output()
        .unwrap();
    let segment = Segment { name };
    assert!(
        out.status.success(),
        "format by {by:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    segment
}

fn capacity_of(size: usize) -> usize {
    (size - HEADER) / 64 * 64
}

// ----- the programs ----------------------------------------------------------

/// `send` (stdin -> ring) or `recv` (ring -> stdout) in a language.
fn program(tools: &CTools, lang: Lang, send: bool, args: &[&str]) -> Command {
    let mut command = match lang {
        Lang::C => Command::new(if send { &tools.send } else { &tools.recv }),
        Lang::Python => {
            let mut c = Command::new("python3");
            c.arg(python_module())
                .arg(if send { "send" } else { "recv" });
            c
        }
    };
    command.args(args);
    command
}

/// A running program whose stdout and stderr are drained as it runs (a
/// reader blocked on a full stdout pipe would stop draining the ring).
struct Running {
    child: Child,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

fn spawn(mut command: Command, stdin: Stdio) -> Running {
    let mut child = command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = support::read_in_thread(child.stdout.take().unwrap());
    let stderr = support::read_in_thread(child.stderr.take().unwrap());
    Running {
        child,
        stdout,
        stderr,
    }
}

/// Feed `input` to a spawned sender from a thread (it may block on a full
/// ring while the reader drains it).
fn feed(running: &mut Running, input: Vec<u8>) -> std::thread::JoinHandle<()> {
    let mut stdin = running.child.stdin.take().unwrap();
    std::thread::spawn(move || {
        stdin.write_all(&input).unwrap();
    })
}

/// Wait for a program, killing it after `limit`.
fn finish(mut running: Running, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = running.child.kill();
            let _ = running.child.wait();
            let stderr = running.stderr.join().unwrap();
            panic!(
                "{what} still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: running.stdout.join().unwrap(),
        stderr: running.stderr.join().unwrap(),
    }
}

fn check(status: ExitStatus, out: &Output, what: &str) {
    assert!(
        status.success(),
        "{what}: {status}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Records framed as the programs' `-f` option takes them.
fn framed(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&u32::try_from(r.len()).unwrap().to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// `n` bytes different for every record (a small linear congruential generator).
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

const LIMIT: Duration = Duration::from_secs(20);

// ----- the cases -------------------------------------------------------------

#[test]
fn c_and_python_format_the_same_header_of_layout_version_1() {
    let case = "c_and_python_format_the_same_header_of_layout_version_1";
    let Some(tools) = both(case) else { return };
    let size = HEADER + 10_000;
    let by_c = segment(tools, Lang::C, size, 2);
    let by_python = segment(tools, Lang::Python, size, 2);
    let c = std::fs::read(by_c.path()).unwrap();
    let py = std::fs::read(by_python.path()).unwrap();
    assert_eq!(c.len(), size);
    assert_eq!(py.len(), size);
    assert_eq!(&c[..HEADER], &py[..HEADER]);
    let u32_at = |o: usize| u32::from_le_bytes(c[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(c[o..o + 8].try_into().unwrap());
    assert_eq!(&c[0..8], b"ipc-ring");
    assert_eq!(u32_at(8), 1, "version");
    assert_eq!(u32_at(12), 4096, "data offset");
    assert_eq!(u64_at(16), 9984, "capacity: 10000 rounded down to 64");
    assert_eq!(u64_at(24), 9976, "largest record");
    assert_eq!(u32_at(32), 2, "producers");
    assert!(c[36..HEADER].iter().all(|&b| b == 0), "the rest is zero");
}

/// Records of the edge sizes, then enough varied ones to wrap the ring many
/// times, from `writer` to `reader`, byte for byte.
fn exchange(tools: &CTools, writer: Lang, reader: Lang) {
    let size = HEADER + 8192;
    let capacity = capacity_of(size);
    let ring = segment(tools, writer, size, 1);
    let mut records: Vec<Vec<u8>> = [0, 1, 7, 8, 9, 4095, capacity - 8, 0, capacity - 8]
        .iter()
        .enumerate()
        .map(|(i, &n)| bytes(n, i as u64))
        .collect();
    let mut total: usize = records.iter().map(Vec::len).sum();
    let mut seed = 100;
    while total < 40 * capacity {
        let n = (seed as usize * 7919) % 3000;
        records.push(bytes(n, seed));
        total += n;
        seed += 1;
    }
    let input = framed(&records);

    let what = format!("{writer:?} -> {reader:?}");
    let recv = spawn(
        program(tools, reader, false, &["-f", &ring.name]),
        Stdio::null(),
    );
    let mut send = spawn(
        program(tools, writer, true, &["-f", &ring.name]),
        Stdio::piped(),
    );
    let feeder = feed(&mut send, input.clone());
    let sent = finish(send, LIMIT, &format!("{what}: sender"));
    feeder.join().unwrap();
    check(sent.status, &sent, &format!("{what}: sender"));
    let got = finish(recv, LIMIT, &format!("{what}: reader"));
    check(got.status, &got, &format!("{what}: reader"));
    assert_eq!(got.stdout.len(), input.len(), "{what}: bytes out");
    assert!(got.stdout == input, "{what}: records differ");
}

#[test]
fn every_pair_of_languages_exchanges_records_of_every_size_byte_exact() {
    let case = "every_pair_of_languages_exchanges_records_of_every_size_byte_exact";
    let Some(tools) = both(case) else { return };
    std::thread::scope(|s| {
        for writer in [Lang::C, Lang::Python] {
            for reader in [Lang::C, Lang::Python] {
                s.spawn(move || exchange(tools, writer, reader));
            }
        }
    });
}

/// Lines "<tag> <n>" from one producer.
fn lines(tag: &str, count: usize) -> Vec<u8> {
    (0..count)
        .flat_map(|i| format!("{tag} {i:05} {}\n", "x".repeat(i % 90)).into_bytes())
        .collect()
}

/// Check that `out` holds both producers' lines, each in its own order.
fn check_two_producers(out: &[u8], count: usize, what: &str) {
    let text = String::from_utf8(out.to_vec()).unwrap();
    for tag in ["c", "py"] {
        let mine: Vec<&str> = text
            .lines()
            .filter(|l| l.split(' ').next() == Some(tag))
            .collect();
        assert_eq!(mine.len(), count, "{what}: lines from {tag}");
        for (i, line) in mine.iter().enumerate() {
            assert_eq!(
                *line,
                format!("{tag} {i:05} {}", "x".repeat(i % 90)),
                "{what}: {tag}'s order"
            );
        }
    }
    assert_eq!(text.lines().count(), 2 * count, "{what}: nothing else");
}

#[test]
fn a_c_and_a_python_producer_share_one_ring_and_end_it_together() {
    let case = "a_c_and_a_python_producer_share_one_ring_and_end_it_together";
    let Some(tools) = both(case) else { return };
    let count = 3000;
    for reader in [Lang::Python, Lang::C] {
        let what = format!("C + Python -> {reader:?}");
        // A small ring: the producers wait for space and for each other.
        let ring = segment(tools, Lang::C, HEADER + 1024, 2);
        let recv = spawn(program(tools, reader, false, &[&ring.name]), Stdio::null());
        let mut c = spawn(program(tools, Lang::C, true, &[&ring.name]), Stdio::piped());
        let mut py = spawn(
            program(tools, Lang::Python, true, &[&ring.name]),
            Stdio::piped(),
        );
        let feed_c = feed(&mut c, lines("c", count));
        let feed_py = feed(&mut py, lines("py", count));
        for (child, who) in [(c, "C producer"), (py, "Python producer")] {
            let out = finish(child, LIMIT, &format!("{what}: {who}"));
            check(out.status, &out, &format!("{what}: {who}"));
        }
        feed_c.join().unwrap();
        feed_py.join().unwrap();
        // The reader ends by itself: both producers closed.
        let got = finish(recv, Duration::from_secs(5), &format!("{what}: reader"));
        check(got.status, &got, &format!("{what}: reader"));
        check_two_producers(&got.stdout, count, &what);
    }
}

/// The ring header's count of readers waiting (layout version 1).
const OFF_READERS_WAITING: u64 = 72;

/// Waits (bounded) until `reader` sleeps in the ring's futex wait: the
/// ring counts a waiting reader and the process is in state `S` (it counts
/// itself before the wait, and spins running before it sleeps).
fn wait_until_reader_sleeps(ring: &Segment, reader: &Running, what: &str) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(ring.path()).unwrap();
    let pid = reader.child.id() as i32;
    let asleep = support::wait_until(LIMIT, || {
        let mut word = [0u8; 4];
        file.read_exact_at(&mut word, OFF_READERS_WAITING).unwrap();
        u32::from_le_bytes(word) != 0 && support::state_of(pid) == Some('S')
    });
    assert!(asleep, "{what}: the reader never slept on the empty ring");
}

#[test]
fn a_sleeping_reader_wakes_for_the_record_and_for_the_end() {
    let case = "a_sleeping_reader_wakes_for_the_record_and_for_the_end";
    let Some(tools) = both(case) else { return };
    for reader in [Lang::C, Lang::Python] {
        for writer in [Lang::C, Lang::Python] {
            let what = format!("{writer:?} -> sleeping {reader:?}");
            let ring = segment(tools, Lang::C, HEADER + 4096, 1);
            let recv = spawn(program(tools, reader, false, &[&ring.name]), Stdio::null());
            // The reader is asleep on the empty ring when the record and the
            // close come.
            wait_until_reader_sleeps(&ring, &recv, &what);
            let mut send = spawn(program(tools, writer, true, &[&ring.name]), Stdio::piped());
            feed(&mut send, b"one\n".to_vec()).join().unwrap();
            let sent = finish(send, LIMIT, &what);
            check(sent.status, &sent, &what);
            // A reader that missed the wake-up would sleep on without a
            // timeout: ending at all (within the bound) is the check.
            let got = finish(recv, LIMIT, &what);
            check(got.status, &got, &what);
            assert_eq!(got.stdout, b"one\n", "{what}");
        }
    }
}

#[test]
fn recv_on_an_empty_ring_times_out() {
    let case = "recv_on_an_empty_ring_times_out";
    let Some(tools) = both(case) else { return };
    for reader in [Lang::C, Lang::Python] {
        let ring = segment(tools, Lang::Python, HEADER + 4096, 1);
        let start = Instant::now();
        let out = program(tools, reader, false, &["-t", "200", &ring.name])
            .output()
            .unwrap();
        let took = start.elapsed();
        assert_eq!(
            out.status.code(),
            Some(3),
            "{reader:?}: exit 3 means timed out; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty());
        // A timeout cannot end early however busy the machine; how late it
        // ends is not asserted.
        assert!(took >= Duration::from_millis(200), "{reader:?}: {took:?}");
    }
}

#[test]
fn a_record_larger_than_the_ring_is_refused() {
    let case = "a_record_larger_than_the_ring_is_refused";
    let Some(tools) = both(case) else { return };
    for writer in [Lang::C, Lang::Python] {
        let size = HEADER + 256;
        let largest = capacity_of(size) - 8;
        let ring = segment(tools, Lang::C, size, 1);
        // The largest record fits (it fills the ring); one byte more does not.
        let input = framed(&[bytes(largest, 1), bytes(largest + 1, 2)]);
        let mut send = spawn(
            program(tools, writer, true, &["-f", &ring.name]),
            Stdio::piped(),
        );
        feed(&mut send, input).join().unwrap();
        let sent = finish(send, LIMIT, "sender");
        assert_eq!(
            sent.status.code(),
            Some(4),
            "{writer:?}: exit 4 means too large; stderr: {}",
            String::from_utf8_lossy(&sent.stderr)
        );
        // The sender closed its producer on the way out: the reader gets the
        // one record, then the end.
        let got = program(tools, Lang::C, false, &["-f", "-t", "2000", &ring.name])
            .output()
            .unwrap();
        check(got.status, &got, "reader");
        assert!(got.stdout == framed(&[bytes(largest, 1)]), "{writer:?}");
    }
}

#[test]
fn ports_open_from_the_environment_by_fd_and_by_name() {
    let case = "ports_open_from_the_environment_by_fd_and_by_name";
    let Some(tools) = both(case) else { return };
    let size = HEADER + 4096;
    let ring = segment(tools, Lang::C, size, 2);
    let value = format!(
        "kind=posix-shm channel=c end=write name={} size={size} layout=ring capacity={} producers=2",
        ring.name,
        capacity_of(size)
    );
    // Both producers reach the ring as ipc-run gives it: the C one through
    // an fd its shell opened, the Python one by name.
    let by_fd = format!(
        "exec 7<>'{}'; IPC_PORT_OUT_PORT=\"{value} fd=7\" exec \"$0\" out-port",
        ring.path().display()
    );
    let mut by_c = Command::new("sh");
    by_c.args(["-c", &by_fd]).arg(&tools.send);
    let mut by_name = Command::new("python3");
    by_name
        .arg(python_module())
        .args(["send", "OUT-PORT"])
        .env("IPC_PORT_OUT_PORT", &value);
    for (command, line) in [(by_c, "from C\n"), (by_name, "from Python\n")] {
        let mut child = spawn(command, Stdio::piped());
        feed(&mut child, line.as_bytes().to_vec()).join().unwrap();
        let out = finish(child, LIMIT, line);
        check(out.status, &out, line);
    }
    let got = Command::new(&tools.recv)
        .args(["-t", "2000", "IN"])
        .env("IPC_PORT_IN", value.replace("end=write", "end=read"))
        .output()
        .unwrap();
    check(got.status, &got, "reader");
    assert_eq!(got.stdout, b"from C\nfrom Python\n");
}

#[test]
fn c_unit_tests_pass() {
    let Some(tools) = c_tools("c_unit_tests_pass") else {
        return;
    };
    let out = Command::new(&tools.unit_tests).output().unwrap();
    assert!(
        out.status.success(),
        "examples/ring/test_ipc_ring.c:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_unit_tests_pass() {
    if !have_python("python_unit_tests_pass") {
        return;
    }
    let out = Command::new("python3")
        .arg(ring_dir().join("test_ipc_ring.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "examples/ring/test_ipc_ring.py:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ----- end to end: ipc-run formats the ring and launches the languages ------

/// The probe's record (`TAG:i:` then a filler letter), which its
/// `ring-recv` checks; the C and Python producers write the same.
fn probe_record(tag: &str, i: usize, size: usize) -> String {
    let mut record = format!("{tag}:{i}:");
    let fill = char::from(b'a' + (i % 26) as u8);
    while record.len() < size {
        record.push(fill);
    }
    record
}

/// Lines of probe records for producer `tag`, sizes 10 to 99, by awk.
fn awk_records(tag: &str, count: usize) -> String {
    format!(
        r#"awk 'BEGIN {{ for (i = 0; i < {count}; i++) {{ r = "{tag}:" i ":"; f = substr("abcdefghijklmnopqrstuvwxyz", i % 26 + 1, 1); while (length(r) < 10 + i % 90) r = r f; print r }} }}'"#
    )
}

/// Three producers into one `sync = "ring"` edge: C (closes at the end of
/// its input), Python (exits without closing: ipc-run marks the end once
/// every writer is gone) and the Rust probe (closes); read by `consumer`
/// (the Rust probe when None).
fn e2e_topology(tools: &CTools, consumer: Option<Lang>, count: usize) -> String {
    let module = python_module().display().to_string();
    let consumer_cmd = match consumer {
        Some(Lang::C) => format!("[{:?}, \"samples\"]", tools.recv.display().to_string()),
        Some(Lang::Python) => format!("[\"python3\", {module:?}, \"recv\", \"samples\"]"),
        None => format!("[{:?}, \"ring-recv\", \"samples\"]", support::PROBE),
    };
    format!(
        r#"
name = "ring-languages-e2e"
exit_code_from = "consumer"

[process.c-producer]
shell = '''{c_records} | {send} samples'''

[process.py-producer]
shell = '''{py_records} | python3 {module} send -k samples'''

[process.rust-producer]
cmd = [{probe:?}, "ring-send", "samples", "rs", "{count}", "200", "close"]

[process.consumer]
cmd = {consumer_cmd}

[[edge]]
name = "samples"
from = ["c-producer.samples", "py-producer.samples", "rust-producer.samples"]
to = "consumer.samples"
traffic = "messages"
sync = "ring"
size = "8KiB"
message_size = "256"
"#,
        c_records = awk_records("c", count),
        py_records = awk_records("py", count),
        send = tools.send.display(),
        probe = support::PROBE,
    )
}

#[test]
fn ipc_run_launches_c_python_and_rust_producers_into_one_ring_edge() {
    let case = "ipc_run_launches_c_python_and_rust_producers_into_one_ring_edge";
    let Some(tools) = both(case) else { return };
    let count = 1500;
    for consumer in [None, Some(Lang::Python), Some(Lang::C)] {
        let what = format!("{consumer:?} consumer");
        let mut scratch = support::Scratch::new(&format!("ring-e2e-{consumer:?}"));
        let file = scratch.topology(&e2e_topology(tools, consumer, count));
        let result = scratch.run(&file);
        assert_eq!(result.code, 0, "{what}:\n{}", result.stderr);
        let lines = support::lines_of(&result.stdout, "consumer");
        if consumer.is_none() {
            // The probe checked every record itself.
            assert_eq!(lines, [format!("ring: c={count} py={count} rs={count}")]);
        } else {
            for tag in ["c", "py", "rs"] {
                let mine: Vec<&String> = lines
                    .iter()
                    .filter(|l| l.starts_with(&format!("{tag}:")))
                    .collect();
                assert_eq!(mine.len(), count, "{what}: records from {tag}");
                for (i, line) in mine.iter().enumerate() {
                    let size = if tag == "rs" { 200 } else { 10 + i % 90 };
                    assert_eq!(**line, probe_record(tag, i, size), "{what}: {tag}'s order");
                }
            }
            assert_eq!(lines.len(), 3 * count, "{what}: nothing else");
        }
        assert_eq!(scratch.runtime_entries(), Vec::<String>::new(), "{what}");
    }
}

#[test]
fn a_producer_killed_while_it_holds_the_writer_lock_does_not_wedge_the_others() {
    let case = "a_producer_killed_while_it_holds_the_writer_lock_does_not_wedge_the_others";
    let Some(tools) = both(case) else { return };
    // A 1 KiB ring that no one reads yet: the C producer fills it and waits
    // for space with the writer lock held; the Python producer waits for
    // the lock.
    let ring = segment(tools, Lang::C, HEADER + 1024, 2);
    let mut c = spawn(program(tools, Lang::C, true, &[&ring.name]), Stdio::piped());
    let feed_c = feed(&mut c, lines("c", 500));
    let ino = std::fs::metadata(ring.path())
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    support::wait_for_lock(ino, false, "the C producer holds the writer lock");
    let mut py = spawn(
        program(tools, Lang::Python, true, &[&ring.name]),
        Stdio::piped(),
    );
    let feed_py = feed(&mut py, lines("py", 50));
    support::wait_for_lock(ino, true, "the Python producer waits for the lock");
    assert!(c.child.try_wait().unwrap().is_none(), "C producer waits");
    assert!(
        py.child.try_wait().unwrap().is_none(),
        "Python producer waits"
    );
    // Killed, it never closes: the kernel drops its record lock.
    c.child.kill().unwrap();
    let killed = finish(c, LIMIT, "C producer");
    assert!(!killed.status.success());
    let _ = feed_c.join(); // its stdin broke
    // The reader drains the ring; the Python producer takes the lock, writes
    // and closes. The C producer never closed, so the stream does not end:
    // the reader stops on its timeout.
    let recv = spawn(
        program(tools, Lang::Python, false, &["-t", "700", &ring.name]),
        Stdio::null(),
    );
    let sent = finish(py, LIMIT, "Python producer");
    feed_py.join().unwrap();
    check(sent.status, &sent, "Python producer");
    let got = finish(recv, LIMIT, "reader");
    assert_eq!(got.status.code(), Some(3), "timed out: C never closed");
    let text = String::from_utf8(got.stdout).unwrap();
    let from_c: Vec<&str> = text.lines().filter(|l| l.starts_with("c ")).collect();
    let from_py: Vec<&str> = text.lines().filter(|l| l.starts_with("py ")).collect();
    assert!(
        !from_c.is_empty(),
        "the C records published before the kill"
    );
    for (i, line) in from_c.iter().enumerate() {
        assert_eq!(*line, format!("c {i:05} {}", "x".repeat(i % 90)));
    }
    for (i, line) in from_py.iter().enumerate() {
        assert_eq!(*line, format!("py {i:05} {}", "x".repeat(i % 90)));
    }
    assert_eq!(from_py.len(), 50, "every Python record");
    assert_eq!(text.lines().count(), from_c.len() + 50, "nothing torn");
}
