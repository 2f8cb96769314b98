//! iceoryx2 beside ipc-run's ring: 64 B round trips and 64 KiB one-way
//! throughput between two processes, one measurement per run, printed as
//! one JSON document with the record shape of `ipc-run bench --format json`
//! (`bench/ring/compare.sh` runs it interleaved with the ring and pipes).
//!
//! ```text
//! ipc-run-bench-iceoryx2 rtt SIZE SECS [PARENT_CPU,PEER_CPU] [copy-out]
//! ipc-run-bench-iceoryx2 throughput SIZE SECS [PARENT_CPU,PEER_CPU] [copy-out]
//! ```
//!
//! Both use publish-subscribe over `ipc::Service` (two services for a round
//! trip, one per direction). Publish-subscribe has no blocking receive:
//! like iceoryx2's own benchmarks, a receiver polls; after 256 empty polls
//! it calls `sched_yield`, so two processes on one CPU still take turns
//! (pure spinning there would cost a scheduler tick per message). The
//! publisher's backpressure is `RetryUntilDelivered` and safe overflow is
//! off, so nothing is lost; the subscriber holds 16 samples, 1 MiB at
//! 64 KiB, the capacity of the ring and of the `pipe-sized` pipe.
//!
//! The sender writes each message into its loaned sample (one copy, as
//! into the ring); the receiver reads the sample in place (zero-copy,
//! touching its first and last byte), or with `copy-out` copies it out as
//! the ring's and the pipe's receivers do.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use iceoryx2::prelude::*;

type Error = Box<dyn std::error::Error>;

/// Samples a subscriber holds: 16 x 64 KiB = the ring's 1 MiB.
const BUFFER: usize = 16;
/// Unmeasured round trips first.
const WARMUP_TRIPS: usize = 1000;
/// At most this many measured round trips.
const MAX_TRIPS: usize = 1_000_000;
/// Empty polls before a `sched_yield`.
const SPINS: u32 = 256;

fn main() {
    if let Err(e) = run() {
        eprintln!("ipc-run-bench-iceoryx2: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Error> {
    set_log_level(LogLevel::Error);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    if arg(0) == "peer" {
        // peer TEST NAME SIZE CPU|-
        pin(arg(4).parse().ok())?;
        let size = arg(3).parse()?;
        return match arg(1) {
            "rtt" => echo(arg(2), size),
            _ => send(arg(2), size),
        };
    }
    let usage =
        "usage: ipc-run-bench-iceoryx2 rtt|throughput SIZE SECS [PARENT_CPU,PEER_CPU] [copy-out]";
    let test = arg(0);
    let size: usize = arg(1).parse().map_err(|_| usage)?;
    let secs: f64 = arg(2).parse().map_err(|_| usage)?;
    let (own_cpu, peer_cpu) = match arg(3).split_once(',') {
        Some((a, b)) => (Some(a.parse::<usize>()?), Some(b.parse::<usize>()?)),
        None => (None, None),
    };
    let copy_out = args.iter().any(|a| a == "copy-out");
    pin(own_cpu)?;
    let name = format!("ipc-run-bench/{}/{test}", std::process::id());
    let window = Duration::from_secs_f64(secs);
    let mechanism = if copy_out {
        "iceoryx2-copy"
    } else {
        "iceoryx2"
    };
    let records = match test {
        "rtt" => round_trips(&name, size, window, peer_cpu, copy_out)?
            .into_iter()
            .map(|(metric, v, n)| record(mechanism, size, metric, "us", v, n))
            .collect(),
        "throughput" => {
            let (gbps, n) = throughput(&name, size, window, peer_cpu, copy_out)?;
            vec![record(mechanism, size, "throughput", "GB/s", gbps, n)]
        }
        _ => return Err(usage.into()),
    };
    println!("{{\"records\": [{}]}}", records.join(", "));
    Ok(())
}

fn record(mechanism: &str, size: usize, metric: &str, unit: &str, v: f64, n: u64) -> String {
    format!(
        "{{\"mechanism\": \"{mechanism}\", \"size\": {size}, \"metric\": \"{metric}\", \
         \"value\": {v}, \"unit\": \"{unit}\", \"samples\": {n}, \"na_reason\": null, \"spread_pct\": null}}"
    )
}

/// Pins this process to `cpu` (`sched_setaffinity`), when given.
fn pin(cpu: Option<usize>) -> Result<(), Error> {
    let Some(cpu) = cpu else { return Ok(()) };
    // SAFETY: cpu_set_t is plain data, all-zero is the empty set; CPU_SET
    // writes one bit of our set; the set outlives sched_setaffinity, which
    // reads size_of bytes of it for this process (pid 0).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set)
    };
    if rc != 0 {
        return Err(format!("pinning to CPU {cpu}: {}", std::io::Error::last_os_error()).into());
    }
    Ok(())
}

type PubSub =
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>;

fn service(node: &Node<ipc::Service>, name: &str) -> Result<PubSub, Error> {
    Ok(node
        .service_builder(&name.try_into()?)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(BUFFER)
        .enable_safe_overflow(false)
        .open_or_create()?)
}

fn publisher(
    service: &PubSub,
    size: usize,
) -> Result<iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>, Error> {
    Ok(service
        .publisher_builder()
        .initial_max_slice_len(size)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()?)
}

fn subscriber(
    service: &PubSub,
) -> Result<iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>, Error> {
    Ok(service.subscriber_builder().buffer_size(BUFFER).create()?)
}

/// Polls until a sample arrives, yielding the CPU after [`SPINS`] empty
/// polls; hands its payload to `take`.
fn receive_one<R>(
    sub: &iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>,
    mut take: impl FnMut(&[u8]) -> R,
) -> Result<R, Error> {
    let mut empty = 0;
    loop {
        if let Some(sample) = sub.receive()? {
            return Ok(take(sample.payload()));
        }
        empty += 1;
        if empty % SPINS == 0 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

fn start_peer(test: &str, name: &str, size: usize, cpu: Option<usize>) -> Result<Child, Error> {
    let cpu = cpu.map_or("-".to_owned(), |c| c.to_string());
    Ok(Command::new("/proc/self/exe")
        .args(["peer", test, name, &size.to_string(), &cpu])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?)
}

/// Waits for the peer's `ready` line.
fn await_ready(child: &mut Child) -> Result<(), Error> {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().ok_or("no stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(format!("the peer did not start: {line:?}").into());
    }
    Ok(())
}

/// Round trips of `size` bytes: the p50 and p99 in µs, and how many.
fn round_trips(
    name: &str,
    size: usize,
    window: Duration,
    peer_cpu: Option<usize>,
    copy_out: bool,
) -> Result<Vec<(&'static str, f64, u64)>, Error> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let ping = service(&node, &format!("{name}/ping"))?;
    let pong = service(&node, &format!("{name}/pong"))?;
    let tx = publisher(&ping, size)?;
    let rx = subscriber(&pong)?;
    let mut child = start_peer("rtt", name, size, peer_cpu)?;
    await_ready(&mut child)?;
    let message = vec![7u8; size];
    let mut buf = vec![0u8; size];
    let mut nanos = Vec::new();
    let mut started = None;
    for trip in 0.. {
        let t0 = Instant::now();
        tx.loan_slice_uninit(size)?
            .write_from_slice(&message)
            .send()?;
        receive_one(&rx, |p| {
            if copy_out {
                buf.copy_from_slice(p);
            } else {
                std::hint::black_box((p[0], p[p.len() - 1]));
            }
        })?;
        let dt = t0.elapsed();
        if trip >= WARMUP_TRIPS {
            nanos.push(dt.as_nanos() as u64);
            let since = *started.get_or_insert(t0);
            if nanos.len() >= MAX_TRIPS || since.elapsed() >= window {
                break;
            }
        }
    }
    // An empty message ends the echo.
    tx.loan_slice_uninit(0)?.write_from_slice(&[]).send()?;
    child.wait()?;
    nanos.sort_unstable();
    let at = |p: f64| {
        let rank = ((p / 100.0) * nanos.len() as f64).ceil() as usize;
        nanos[rank.clamp(1, nanos.len()) - 1] as f64 / 1000.0
    };
    let n = nanos.len() as u64;
    Ok(vec![
        ("round_trip_p50", at(50.0), n),
        ("round_trip_p99", at(99.0), n),
    ])
}

/// The peer of a round trip: echoes every message until an empty one.
fn echo(name: &str, size: usize) -> Result<(), Error> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let ping = service(&node, &format!("{name}/ping"))?;
    let pong = service(&node, &format!("{name}/pong"))?;
    let rx = subscriber(&ping)?;
    let tx = publisher(&pong, size)?;
    say_ready()?;
    let mut buf = vec![0u8; size];
    loop {
        let n = receive_one(&rx, |p| {
            buf[..p.len()].copy_from_slice(p);
            p.len()
        })?;
        if n == 0 {
            return Ok(());
        }
        tx.loan_slice_uninit(n)?
            .write_from_slice(&buf[..n])
            .send()?;
    }
}

fn say_ready() -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    Ok(())
}

/// One-way throughput: the peer publishes, this process receives for a
/// warm-up of a fifth of the window (at most 0.1 s), then times `window`.
fn throughput(
    name: &str,
    size: usize,
    window: Duration,
    peer_cpu: Option<usize>,
    copy_out: bool,
) -> Result<(f64, u64), Error> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let stream = service(&node, name)?;
    let rx = subscriber(&stream)?;
    let mut child = start_peer("throughput", name, size, peer_cpu)?;
    await_ready(&mut child)?;
    let mut buf = vec![0u8; size];
    let mut take = |p: &[u8]| {
        if copy_out {
            buf[..p.len()].copy_from_slice(p);
        } else {
            std::hint::black_box((p[0], p[p.len() - 1]));
        }
        p.len() as u64
    };
    receive_one(&rx, &mut take)?;
    let warmup = (window / 5).min(Duration::from_millis(100));
    let first = Instant::now();
    while first.elapsed() < warmup {
        receive_one(&rx, &mut take)?;
    }
    let (start, mut bytes, mut messages) = (Instant::now(), 0u64, 0u64);
    let elapsed = loop {
        for _ in 0..16 {
            bytes += receive_one(&rx, &mut take)?;
            messages += 1;
        }
        let elapsed = start.elapsed();
        if elapsed >= window {
            break elapsed;
        }
    };
    // Closing its stdin stops the sender; drain until it is gone, so a
    // sender retrying a full buffer is never stuck.
    drop(child.stdin.take());
    while child.try_wait()?.is_none() {
        while rx.receive()?.is_some() {}
        std::thread::yield_now();
    }
    Ok((bytes as f64 / elapsed.as_secs_f64() / 1e9, messages))
}

/// The peer of a throughput run: publishes until its stdin closes.
fn send(name: &str, size: usize) -> Result<(), Error> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let stream = service(&node, name)?;
    let tx = publisher(&stream, size)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_line(&mut String::new());
        flag.store(true, Ordering::Relaxed);
    });
    say_ready()?;
    let message = vec![7u8; size];
    while !stop.load(Ordering::Relaxed) {
        tx.loan_slice_uninit(size)?
            .write_from_slice(&message)
            .send()?;
    }
    Ok(())
}
