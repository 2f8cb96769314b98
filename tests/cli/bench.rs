//! `ipc-run bench`: the shape of its output (not the numbers), and that it
//! leaves nothing behind, also when interrupted with SIGINT.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support;

const MECHANISMS: [&str; 12] = [
    "pipe",
    "pipe-sized",
    "fifo",
    "socketpair-stream",
    "socketpair-seqpacket",
    "unix-stream",
    "tcp",
    "udp",
    "posix-mq",
    "sysv-mq",
    "signal",
    "shm-ring",
];

const SIZES: [u64; 4] = [64, 4096, 65536, 1 << 20];

fn bench() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ipc-run"));
    command
        .args(["--color", "never", "bench"])
        .env("IPC_RUN_LOG", "ipc_run::bench=debug")
        .env_remove("NO_COLOR");
    command
}

/// What the bench said it created (`created KIND NAME` debug lines).
fn created(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("created ").map(|(_, o)| o.trim().to_owned()))
        .collect()
}

/// Fails if anything in `objects` still exists.
fn assert_all_removed(objects: &[String]) {
    let msg_ids: BTreeSet<String> = std::fs::read_to_string("/proc/sysvipc/msg")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect();
    for object in objects {
        let (kind, name) = object.split_once(' ').expect("KIND NAME");
        match kind {
            "posix-mq" => {
                // /dev/mqueue need not be mounted: ask mq_open.
                let cname = std::ffi::CString::new(name).unwrap();
                let open = ipc_run::sys::ipc::mq_open_existing(&cname, false);
                assert_eq!(
                    open.err(),
                    Some(nix::errno::Errno::ENOENT),
                    "POSIX queue {name} left behind"
                );
            }
            "posix-shm" => {
                let file = format!("/dev/shm{name}");
                assert!(!std::path::Path::new(&file).exists(), "{file} left behind");
            }
            "sysv-mq" => {
                let id = name.strip_prefix("id=").expect("id=N");
                assert!(!msg_ids.contains(id), "System V queue {id} left behind");
            }
            "file" | "directory" => {
                assert!(!std::path::Path::new(name).exists(), "{name} left behind");
            }
            other => panic!("unknown object kind {other}"),
        }
    }
}

/// The bench's id, from its private directory's name.
fn bench_id(objects: &[String]) -> String {
    objects
        .iter()
        .find_map(|o| o.strip_prefix("directory "))
        .and_then(|d| d.rsplit_once("ipc-run-bench."))
        .map(|(_, id)| id.to_owned())
        .expect("the private directory is logged")
}

fn assert_no_entry_with(id: &str) {
    for dir in ["/dev/shm", "/dev/mqueue"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                assert!(!name.contains(id), "{dir}/{name} left behind");
            }
        }
    }
}

#[test]
fn quick_json_has_every_mechanism_and_leaves_nothing_behind() {
    let output = bench()
        .args(["--quick", "--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let doc: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    for key in ["kernel", "cpu_model", "cpus", "load_average"] {
        assert!(!doc["host"][key].is_null(), "host.{key} missing");
    }
    let records = doc["records"].as_array().expect("records is an array");
    for record in records {
        for key in [
            "mechanism",
            "size",
            "metric",
            "value",
            "unit",
            "samples",
            "na_reason",
        ] {
            assert!(record.get(key).is_some(), "{key} missing in {record}");
        }
        let metric = record["metric"].as_str().unwrap();
        assert!(
            [
                "throughput",
                "round_trip_p50",
                "round_trip_p99",
                "lost",
                "round_trip_p50_ratio"
            ]
            .contains(&metric),
            "{record}"
        );
        match record["value"].as_f64() {
            Some(v) if metric == "lost" => assert!(v >= 0.0, "{record}"),
            Some(v) => assert!(v > 0.0 && v.is_finite(), "{record}"),
            None => {
                let reason = record["na_reason"].as_str().unwrap_or_default();
                assert!(!reason.is_empty(), "no value and no reason: {record}");
                // A limit of the host or the mechanism, never a failed run.
                assert!(!reason.starts_with("failed"), "{record}");
            }
        }
    }
    let has = |m: &str, metric: &str, size: u64| {
        records
            .iter()
            .any(|r| r["mechanism"] == m && r["metric"] == metric && r["size"] == size)
    };
    for m in MECHANISMS {
        for size in SIZES {
            assert!(has(m, "throughput", size), "{m} throughput at {size}");
        }
        let small = if m == "signal" { 0 } else { 64 };
        assert!(has(m, "round_trip_p50", small), "{m} round trip p50");
        assert!(has(m, "round_trip_p99", small), "{m} round trip p99");
    }
    // rpc: round trips only, with their ratio to the socket beneath.
    assert!(has("rpc", "round_trip_p50", 64) && has("rpc", "round_trip_p50_ratio", 64));
    assert!(!has("rpc", "throughput", 64));
    // Limits of this kind are reasons, not failures.
    let na = |m: &str, size: u64| {
        records
            .iter()
            .find(|r| r["mechanism"] == m && r["metric"] == "throughput" && r["size"] == size)
            .and_then(|r| r["na_reason"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(na("udp", 65536).contains("65507"), "{}", na("udp", 65536));
    assert!(na("signal", 64).contains("no payload"));
    assert!(has("udp", "lost", 64));

    let objects = created(&stderr);
    assert!(
        objects.iter().any(|o| o.starts_with("sysv-mq "))
            && objects.iter().any(|o| o.starts_with("posix-mq "))
            && objects.iter().any(|o| o.starts_with("file "))
            && objects.iter().any(|o| o.starts_with("posix-shm ")),
        "objects logged: {objects:?}"
    );
    assert_all_removed(&objects);
    assert_no_entry_with(&bench_id(&objects));
}

#[test]
fn text_header_describes_the_machine() {
    let output = bench()
        .args(["--quick", "--mechanism", "pipe", "--sizes", "64"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let release = nix::sys::utsname::uname().unwrap();
    let release = release.release().to_string_lossy();
    let header = text.lines().nth(1).unwrap_or_default();
    assert!(header.starts_with("host: Linux "), "{text}");
    assert!(header.contains(release.as_ref()), "{text}");
    assert!(header.contains("CPU(s)"), "{text}");
    assert!(text.contains("throughput, GB/s"), "{text}");
    assert!(text.contains("round trip, µs"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("pipe ")), "{text}");
}

/// Both processes pinned to one CPU (`--pin C,C`): the ring's round trips
/// and the equal-capacity pipe's throughput complete and give values.
#[test]
fn both_ends_pinned_to_one_cpu_complete() {
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
    let cpu = (0..nix::sched::CpuSet::count())
        .find(|&c| allowed.is_set(c).unwrap_or(false))
        .expect("some CPU is allowed");
    let pin = format!("{cpu},{cpu}");
    let output = bench()
        .args([
            "--quick", "--format", "json", "--sizes", "64", "--pin", &pin,
        ])
        .args(["--mechanism", "shm-ring,pipe-sized"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let doc: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let value = |m: &str, metric: &str| {
        doc["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["mechanism"] == m && r["metric"] == metric)
            .and_then(|r| r["value"].as_f64())
    };
    for m in ["shm-ring", "pipe-sized"] {
        for metric in ["throughput", "round_trip_p50"] {
            assert!(
                value(m, metric).is_some_and(|v| v > 0.0),
                "{m} {metric}: {doc}"
            );
        }
    }
}

/// `--mechanism rpc` alone still measures the raw Unix socket beneath it,
/// in the same rounds, and sets the two side by side.
#[test]
fn the_rpc_row_comes_with_the_unix_socket_beneath_it() {
    let output = bench()
        .args([
            "--quick",
            "--rounds",
            "2",
            "--sizes",
            "64,4K",
            "--mechanism",
            "rpc",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let text = String::from_utf8(output.stdout).unwrap();
    for size in ["64 B", "4 KiB"] {
        let row = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{size}  rpc ")))
            .unwrap_or_else(|| panic!("no rpc line at {size}: {text}"));
        assert!(
            row.contains(" us, unix-stream ") && row.ends_with('x'),
            "{row}"
        );
    }
    assert!(
        text.lines().any(|l| l.starts_with("unix-stream ")),
        "{text}"
    );
    let objects = created(&stderr);
    assert!(
        objects.iter().any(|o| o.ends_with("rpc.sock")),
        "{objects:?}"
    );
    assert_all_removed(&objects);
    assert_no_entry_with(&bench_id(&objects));
}

#[test]
fn bad_options_are_usage_errors() {
    let output = bench().args(["--sizes", "1G"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = bench().args(["--duration", "0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = bench().args(["--pin", "0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// Interrupts a long measurement of `mechanism` once its objects exist.
fn interrupt_during(mechanism: &str, kind: &str) {
    let mut child = bench()
        .args(["--mechanism", mechanism, "--sizes", "64", "--duration", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let mut peer = None;
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("the bench ended before the peer started: {log}");
        }
        log.push_str(&line);
        if let Some((_, rest)) = line.split_once("started peer pid ") {
            peer = rest.split_whitespace().next().map(str::to_owned);
        }
        if peer.is_some() && log.contains(&format!("created {kind}")) {
            break;
        }
    }
    // Mid-measurement: the peer runs as `bench-peer`, past its exec.
    let peer_pid: i32 = peer.as_deref().unwrap().parse().unwrap();
    let peer_runs = || {
        std::fs::read(format!("/proc/{peer_pid}/cmdline"))
            .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == b"bench-peer"))
            && matches!(support::state_of(peer_pid), Some('R' | 'S'))
    };
    assert!(
        support::wait_until(support::RUN_TIMEOUT, peer_runs),
        "the peer never ran: {log}"
    );
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    log.push_str(&rest);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("interrupted by SIGINT"), "{log}");
    let objects = created(&log);
    assert_all_removed(&objects);
    assert_no_entry_with(&bench_id(&objects));
    // The peer was killed: gone, or a zombie waiting for a reaper. A
    // SIGKILL takes effect asynchronously, so give it a moment on a busy
    // machine before calling it a survivor.
    let peer_dead = support::wait_until(Duration::from_secs(5), || {
        matches!(support::state_of(peer_pid), None | Some('Z' | 'X'))
    });
    assert!(
        peer_dead,
        "peer {peer_pid} still running 5 s after the bench ended: {:?}",
        support::state_of(peer_pid)
    );
}

#[test]
fn sigint_mid_run_removes_everything() {
    interrupt_during("posix-mq", "posix-mq");
    interrupt_during("sysv-mq", "sysv-mq");
    interrupt_during("fifo", "file");
    interrupt_during("shm-ring", "posix-shm");
}
