//! The shared-memory ring (`sync = "ring"`, docs/shm-ring.md) across real
//! processes: probes exchanging records under `ipc-run run`, the end of the
//! stream marked by ipc-run, a writer restart, and a writer killed in the
//! middle of a record. `ring_throughput` (ignored) prints a rough
//! comparison with a pipe.

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use ipc_run::child::ring::{self, Consumer, Producer, Received};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::support::*;

#[test]
fn probes_exchange_records_and_ipc_run_marks_the_end() {
    let mut scratch = Scratch::new("ring-basic");
    // `closer` closes its producer; `leaver` just exits: only ipc-run can
    // tell the reader that the stream is over.
    let result = scratch.run_to_success(
        r#"
exit_code_from = "sink"
[process.closer]
cmd = ["PROBE", "ring-send", "r", "closer", "3000", "100", "close"]
[process.leaver]
cmd = ["PROBE", "ring-send", "r", "leaver", "500", "3000", "exit"]
[process.sink]
cmd = ["PROBE", "ring-recv", "r"]

[[edge]]
name = "r"
from = ["closer.r", "leaver.r"]
to = "sink.r"
traffic = "messages"
sync = "ring"
size = "64KiB"
"#,
    );
    assert_eq!(
        lines_of(&result.stdout, "sink"),
        ["ring: closer=3000 leaver=500"]
    );
}

#[test]
fn a_restarted_writer_finds_the_ring_and_the_end_waits_for_it() {
    let mut scratch = Scratch::new("ring-restart");
    let marker = scratch.dir.join("first-run-done");
    // The first run sends `a` records and fails; the restart sends `b` and
    // ends for good. The reader must get both, and no end in between.
    let toml = r#"
exit_code_from = "sink"
[process.writer]
shell = "if [ -e MARKER ]; then exec PROBE ring-send r b 200 1000 exit; else touch MARKER; PROBE ring-send r a 200 1000 exit; exit 1; fi"
restart = "on-failure"
restart_backoff = "300ms"
[process.sink]
cmd = ["PROBE", "ring-recv", "r"]

[[edge]]
name = "r"
from = "writer.r"
to = "sink.r"
traffic = "shared"
sync = "ring"
size = "16KiB"
"#
    .replace("MARKER", &marker.to_string_lossy());
    let file = scratch.topology(&toml);
    let result = scratch.run(&file);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_eq!(lines_of(&result.stdout, "sink"), ["ring: a=200 b=200"]);
}

/// A formatted ring segment outside ipc-run, unlinked on drop.
struct Segment {
    name: String,
    fd: OwnedFd,
    size: u64,
    producers: u32,
}

impl Segment {
    fn new(tag: &str, size: u64, producers: u32) -> Segment {
        let name = format!("/ipc-run-test-ring-{}-{tag}", std::process::id());
        let fd = nix::sys::mman::shm_open(
            name.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        nix::unistd::ftruncate(&fd, size as libc::off_t).unwrap();
        ring::format(std::os::fd::AsFd::as_fd(&fd), size, producers).unwrap();
        Segment {
            name,
            fd,
            size,
            producers,
        }
    }

    fn fd(&self) -> OwnedFd {
        self.fd.try_clone().unwrap()
    }

    fn port(&self) -> String {
        format!(
            "kind=posix-shm channel=r end=write name={} size={} layout=ring capacity={} producers={}",
            self.name,
            self.size,
            ring::capacity_for(self.size).unwrap(),
            self.producers
        )
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = nix::sys::mman::shm_unlink(self.name.as_str());
    }
}

#[test]
fn a_writer_killed_mid_record_tears_nothing_and_wedges_no_one() {
    let segment = Segment::new("torn", 4096 + 4096, 2);
    let mut consumer = Consumer::from_fd(segment.fd()).unwrap();
    // The probe takes the writer lock, writes 1000 of 3000 bytes past head,
    // says so and sleeps.
    let mut dying = Command::new(PROBE)
        .args(["ring-torn", "r", "3000", "1000"])
        .env("IPC_PORT_R", segment.port())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(dying.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "torn\n");
    let mut buf = Vec::new();
    assert!(matches!(
        consumer.recv(&mut buf, Some(Duration::ZERO)),
        Err(ring::RingError::TimedOut)
    ));
    // Another producer waits for the lock...
    let fd = segment.fd();
    let other = std::thread::spawn(move || {
        let mut producer = Producer::from_fd(fd).unwrap();
        producer
            .send(b"whole record", Some(Duration::from_secs(30)))
            .unwrap();
    });
    // ... blocked on the record lock the dying probe holds.
    let ino = nix::sys::stat::fstat(segment.fd()).unwrap().st_ino;
    wait_for_lock(ino, true, "the second producer");
    assert!(!other.is_finished(), "the lock did not hold");
    // ...until the holder dies: the kernel drops its lock.
    dying.kill().unwrap();
    dying.wait().unwrap();
    other.join().unwrap();
    assert_eq!(
        consumer
            .recv(&mut buf, Some(Duration::from_secs(30)))
            .unwrap(),
        Received::Record(12)
    );
    assert_eq!(buf, b"whole record");
    assert!(matches!(
        consumer.recv(&mut buf, Some(Duration::ZERO)),
        Err(ring::RingError::TimedOut)
    ));
}

#[test]
fn producers_in_two_processes_keep_their_order() {
    let segment = Segment::new("procs", 4096 + 8192, 2);
    let mut consumer = Consumer::from_fd(segment.fd()).unwrap();
    let senders: Vec<_> = ["x", "y"]
        .iter()
        .map(|tag| {
            Command::new(PROBE)
                .args(["ring-send", "r", tag, "5000", "200", "close"])
                .env("IPC_PORT_R", segment.port())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut next = [0u32; 2];
    let mut buf = Vec::new();
    while let Received::Record(_) = consumer
        .recv(&mut buf, Some(Duration::from_secs(30)))
        .unwrap()
    {
        let text = String::from_utf8(buf.clone()).unwrap();
        let mut parts = text.splitn(3, ':');
        let which = usize::from(parts.next() == Some("y"));
        let i: u32 = parts.next().unwrap().parse().unwrap();
        assert_eq!(i, next[which]);
        let fill = b'a' + (i % 26) as u8;
        assert!(
            parts.next().unwrap().bytes().all(|b| b == fill),
            "torn: {text}"
        );
        next[which] += 1;
    }
    assert_eq!(next, [5000, 5000]);
    for mut sender in senders {
        assert!(sender.wait().unwrap().success());
    }
}
