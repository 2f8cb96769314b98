//! `ipc-run port read|write` with crafted `IPC_PORT_*` descriptions and
//! segments: every input ends in a documented exit status and a message,
//! never in a panic (exit 101) or an abort (SIGABRT, 134 from a shell).
//!
//! The binary runs under `sh -c 'ulimit -v …; exec …'` where an allocation
//! must fail the same way on every host: with an address-space limit, an
//! allocation too large for it fails whatever the host's overcommit policy.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::support::{Scratch, bare_run_command};

const BIN: &str = env!("CARGO_BIN_EXE_ipc-run");

/// Exit statuses, as `docs/ports.md` lists them.
const EXIT_OK: i32 = 0;
const EXIT_DATA: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_RESOURCE: i32 = 3;

/// How one adapter run ended.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
}

/// Runs `ipc-run port ARGS` with `IPC_PORT_P=description`, `stdin` on its
/// stdin and, if given, an address-space limit in KiB.
fn adapter(args: &[&str], description: &str, stdin: &[u8], limit_kib: Option<u64>) -> Outcome {
    let mut command = match limit_kib {
        Some(kib) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -v {kib} && exec \"$0\" port \"$@\""))
                .arg(BIN);
            c
        }
        None => {
            let mut c = Command::new(BIN);
            c.arg("port");
            c
        }
    };
    command
        .args(args)
        .env("IPC_PORT_P", description)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn ipc-run");
    let mut input = child.stdin.take().expect("stdin");
    // The adapter may fail before reading: a closed pipe is fine here.
    let _ = input.write_all(stdin);
    drop(input);
    let output = child.wait_with_output().expect("wait for ipc-run");
    use std::os::unix::process::ExitStatusExt as _;
    Outcome {
        code: output.status.code(),
        signal: output.status.signal(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Asserts a clean end with `code` and every one of `words` in stderr.
#[track_caller]
fn expect(what: &str, outcome: &Outcome, code: i32, words: &[&str]) {
    assert!(
        outcome.code != Some(101) && outcome.code != Some(134) && outcome.signal.is_none(),
        "{what}: panicked or aborted: {outcome:?}"
    );
    assert!(
        !outcome.stderr.contains("panicked") && !outcome.stderr.contains("memory allocation"),
        "{what}: {outcome:?}"
    );
    assert_eq!(outcome.code, Some(code), "{what}: {outcome:?}");
    for word in words {
        assert!(
            outcome.stderr.contains(word),
            "{what}: stderr lacks `{word}`: {outcome:?}"
        );
    }
}

/// The host's largest System V message, as the kernel reports it.
fn msgmax() -> u64 {
    std::fs::read_to_string("/proc/sys/kernel/msgmax")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(8192)
}

#[test]
fn sysv_message_sizes_beyond_the_host_limit_are_usage_errors() {
    let over = (msgmax() + 1).to_string();
    let sizes = [
        "18446744073709551615", // u64::MAX: `8 + size` overflowed
        "18446744073709551608",
        "9223372036854775807", // isize::MAX: capacity overflow
        "4611686018427387904",
        "1099511627776", // 1 TiB: the allocation aborted
        "4294967296",
        "2147483648", // above any msgmax (an int)
        over.as_str(),
    ];
    for size in sizes {
        for (verb, end) in [("read", "read"), ("write", "write")] {
            let description = format!(
                "kind=sysv-mq channel=c end={end} id=1 queue_bytes=16384 message_size={size}"
            );
            let outcome = adapter(&[verb, "p"], &description, b"x\n", Some(4 << 20));
            expect(
                &format!("{verb} message_size={size}"),
                &outcome,
                EXIT_USAGE,
                &[&format!("message_size={size}"), "msgmax"],
            );
        }
    }
}

#[test]
fn the_largest_sysv_message_size_the_host_allows_is_taken() {
    // Nothing to send, so the (made-up) queue id is never used.
    let description = format!(
        "kind=sysv-mq channel=c end=write id=1 queue_bytes=16384 message_size={}",
        msgmax()
    );
    let outcome = adapter(&["write", "p"], &description, b"", Some(4 << 20));
    expect("write at msgmax", &outcome, EXIT_OK, &[]);
}

/// A POSIX shared-memory segment holding a ring header, removed on drop.
struct Segment {
    path: PathBuf,
    name: String,
}

impl Segment {
    /// A sparse segment with a version-1 ring of `capacity` data bytes.
    fn ring(tag: &str, capacity: u64) -> Segment {
        let name = format!("/ipc-run-test-hardening-{}-{tag}", std::process::id());
        let path = PathBuf::from(format!("/dev/shm{name}"));
        let mut header = vec![0u8; 4096];
        header[..8].copy_from_slice(b"ipc-ring");
        header[8..12].copy_from_slice(&1u32.to_le_bytes());
        header[12..16].copy_from_slice(&4096u32.to_le_bytes());
        header[16..24].copy_from_slice(&capacity.to_le_bytes());
        header[24..32].copy_from_slice(&(capacity - 8).to_le_bytes());
        header[32..36].copy_from_slice(&1u32.to_le_bytes());
        let file = std::fs::File::create(&path).expect("create the segment");
        (&file).write_all(&header).expect("write the header");
        file.set_len(4096 + capacity).expect("size the segment");
        Segment { path, name }
    }

    /// Writes `bytes` at `offset` of the segment.
    fn poke(&self, offset: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt as _;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .expect("open the segment");
        file.write_all_at(bytes, offset).expect("write the segment");
    }

    fn description(&self, end: &str) -> String {
        format!(
            "kind=posix-shm channel=c end={end} name={} size=8192 layout=ring capacity=4096 \
             producers=1",
            self.name
        )
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn a_writer_on_a_huge_ring_allocates_what_its_input_needs() {
    // A 1 TiB ring (sparse): the largest record is about 1 TiB, and the
    // writer used to allocate a buffer that large before reading anything.
    let segment = Segment::ring("huge", 1 << 40);
    let outcome = adapter(
        &["write", "p"],
        &segment.description("write"),
        b"hi\n",
        None,
    );
    expect("write to a 1 TiB ring", &outcome, EXIT_OK, &[]);
}

#[test]
fn a_reader_that_cannot_allocate_a_record_says_so() {
    // A ring of 4 GiB + 64 bytes whose first record claims 4 GiB - 1: the
    // reader needs a buffer that large, and under a 6 GiB address-space
    // limit (the ring's mapping takes 4 GiB of it) cannot have it.
    let capacity = (1u64 << 32) + 64;
    let segment = Segment::ring("claim", capacity);
    let len = u32::MAX;
    let footprint = 8 + u64::from(len).div_ceil(8) * 8;
    segment.poke(64, &footprint.to_le_bytes()); // head
    segment.poke(4096, &len.to_le_bytes()); // the record's length
    let outcome = adapter(
        &["read", "p"],
        &segment.description("read"),
        b"",
        Some(6 << 20),
    );
    expect(
        "read a 4 GiB record without the memory",
        &outcome,
        EXIT_RESOURCE,
        &["cannot allocate", "4294967295"],
    );
}

/// Descriptions of every kind with extreme or malformed values: each is
/// refused or handled, none crashes. Both adapters, every framing.
#[test]
fn crafted_descriptions_never_crash_the_adapters() {
    let huge = "18446744073709551615";
    let descriptions = [
        "".to_owned(),
        "kind=".to_owned(),
        "kind=pipe".to_owned(),
        "kind=pipe channel=c end=read fd=2147483647".to_owned(),
        "kind=pipe channel=c end=write fd=-1".to_owned(),
        "kind=pipe channel=c end=read fd=99999999999999999999".to_owned(),
        "kind=fifo channel=c end=read path=".to_owned(),
        "kind=socketpair channel=c end=both socket=seqpacket fd=1000".to_owned(),
        "kind=unix-listener channel=c end=connect socket=dgram path=/nonexistent/x.sock".to_owned(),
        format!(
            "kind=unix-listener channel=c end=connect socket=stream path={}",
            "x".repeat(300)
        ),
        "kind=tcp channel=c end=connect address=256.0.0.1:99999".to_owned(),
        "kind=udp channel=c end=send address=[::1]:0".to_owned(),
        format!(
            "kind=posix-mq channel=c end=read name=/ipc-run-nonexistent depth={huge} message_size={huge}"
        ),
        format!(
            "kind=posix-mq channel=c end=write name=/ipc-run-nonexistent depth={huge} message_size={huge}"
        ),
        "kind=posix-mq channel=c end=write name=noslash depth=1 message_size=1".to_owned(),
        format!(
            "kind=sysv-mq channel=c end=read id={{sysv_id:c}} queue_bytes={huge} message_size=1"
        ),
        format!("kind=sysv-mq channel=c end=read id=-1 queue_bytes={huge} message_size=0"),
        "kind=sysv-mq channel=c end=write id=2147483647 queue_bytes=0 message_size=0".to_owned(),
        format!(
            "kind=posix-shm channel=c end=read name=/ipc-run-nonexistent size={huge} layout=ring capacity={huge} producers=4294967295"
        ),
        format!("kind=posix-shm channel=c end=write name=/ipc-run-nonexistent size={huge}"),
        format!("kind=sysv-shm channel=c end=both id=1 size={huge}"),
        "kind=signal channel=c end=send signal=SIGUSR1 signo=10 pid=1,,2".to_owned(),
        "kind=rpc channel=c end=connect protocol=x transport=unix address=/x url=x".to_owned(),
    ];
    for description in &descriptions {
        for framing in ["line", "length", "raw"] {
            for verb in ["read", "write"] {
                let args = [verb, "p", "--framing", framing];
                let outcome = adapter(&args, description, b"\xff\xff\xff\xffab\n", Some(4 << 20));
                let what = format!("{verb} --framing {framing} with `{description}`");
                assert!(
                    matches!(
                        outcome.code,
                        Some(EXIT_OK | EXIT_DATA | EXIT_USAGE | EXIT_RESOURCE)
                    ) && !outcome.stderr.contains("panicked"),
                    "{what}: {outcome:?}"
                );
            }
        }
    }
}

#[test]
fn a_listener_that_cannot_hold_a_line_says_so() {
    // A client sends 400 MB without a newline to a stream listener read
    // with `--framing line`: the reader holds the unfinished line, and under
    // a 256 MiB address-space limit it cannot. The run ends; the reader
    // reports the allocation it could not make.
    let scratch = Scratch::new("port-long-line");
    let topology = scratch.dir.join("topology.toml");
    std::fs::write(
        &topology,
        "name = \"long-line\"\n\
         [process.w]\n\
         shell = '''head -c 400000000 /dev/zero | {ipc_run} port write out'''\n\
         [process.r]\n\
         shell = '''ulimit -v 262144 && exec {ipc_run} port read in'''\n\
         [[edge]]\nfrom = \"w.out\"\nto = \"r.in\"\n\
         mechanism = \"unix-listener\"\ntraffic = \"request\"\n",
    )
    .expect("write the topology");
    let output = bare_run_command(BIN, &topology, &scratch.dir.join("rt"))
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run ipc-run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stderr
        .lines()
        .rfind(|l| l.starts_with("r: ") && l.contains(", restarts "))
        .unwrap_or_else(|| panic!("no summary line for r in:\n{stderr}"));
    assert!(summary.contains("exited 3"), "{stderr}");
    assert!(
        stderr.contains("cannot allocate") && stderr.contains("a line or frame of a connection"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("SIGABRT"),
        "{stderr}"
    );
}

#[test]
fn a_large_record_goes_to_stdout_without_a_second_copy() {
    // A 256 MiB ring holding one 200 MiB record, its producer done. The
    // reader needs the mapping and the record's buffer; under a 600 MiB
    // address-space limit there is no room for a framed copy of it too.
    let capacity = 256u64 << 20;
    let len = 200u32 << 20;
    let segment = Segment::ring("large", capacity);
    segment.poke(64, &(8 + u64::from(len)).to_le_bytes()); // head
    segment.poke(192, &1u32.to_le_bytes()); // producers done
    segment.poke(4096, &len.to_le_bytes());
    for framing in ["line", "length", "raw"] {
        let outcome = adapter(
            &["read", "p", "--framing", framing],
            &segment.description("read"),
            b"",
            Some(600 << 10),
        );
        expect(
            &format!("read a 200 MiB record, --framing {framing}"),
            &outcome,
            EXIT_OK,
            &[],
        );
    }
}
