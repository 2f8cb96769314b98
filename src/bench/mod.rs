//! `ipc-run bench`: throughput and round-trip latency of every IPC
//! mechanism on this host, measured between two real processes.
//!
//! For each measurement the bench creates the objects (pipes, FIFOs,
//! sockets, queues) itself, then starts its peer by re-executing its own
//! binary (`/proc/self/exe bench-peer SPEC`, a hidden subcommand) in a
//! process group of its own; the peer inherits fds or opens the named
//! objects, says `ready` on its stdout, and sends (throughput) or echoes
//! (round trip). The bench never forks a copy of itself: it has a watcher
//! thread, and only `exec` is safe after `fork` in a threaded process.
//!
//! Named objects are private: mode 0600, a random 64-bit id in every name,
//! FIFOs and sockets in a 0700 directory of their own; all are registered
//! with [`cleanup`] and removed at the end, on SIGINT/SIGTERM/SIGHUP, and
//! when a peer hangs. A peer dies with the bench (`PR_SET_PDEATHSIG`).
//!
//! - [`mechanism`]: the mechanisms and the host limits on message sizes.
//! - [`link`]: each mechanism's two halves behind one send/receive trait.
//! - [`measure`]: the timed loops and percentiles.
//! - [`report`]: records, the machine, text and JSON.
//! - [`cleanup`]: the registry of objects and the signal watcher.

pub mod cleanup;
pub mod link;
pub mod measure;
pub mod mechanism;
pub mod report;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::SigSet;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use cleanup::Object;
use link::{Connected, Endpoint, ParentSide, Place, Test};
use measure::Rounds;
use mechanism::{HostLimits, Mechanism};
use report::{Host, Metric, Record, Report};

/// Why the bench could not run (a single measurement that fails becomes an
/// n/a record instead).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The private directory or the watcher could not be set up.
    #[error("could not prepare the bench: {0}")]
    Setup(String),
    /// A bad option value.
    #[error("{0}")]
    Usage(String),
    /// The peer subcommand got a spec it cannot read.
    #[error("bench-peer: bad spec: {0}")]
    Spec(String),
    /// Writing the output failed.
    #[error("failed to write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Output format of `ipc-run bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchFormat {
    /// Tables.
    Text,
    /// One JSON document: host, settings and an array of records.
    Json,
}

/// Options of `ipc-run bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// A smoke run for CI: a few milliseconds per measurement (well under
    /// 5 s in all); the numbers are rough.
    #[arg(long)]
    pub quick: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = BenchFormat::Text)]
    pub format: BenchFormat,
    /// Measure only these mechanisms (repeat or separate with commas).
    #[arg(long = "mechanism", value_name = "NAME", value_enum, value_delimiter = ',', num_args = 1..)]
    pub mechanisms: Vec<Mechanism>,
    /// Message sizes for throughput, e.g. `64,4K,64K,1M`; round trips use
    /// those up to 4 KiB (or the smallest).
    #[arg(long, value_name = "SIZES", value_delimiter = ',', value_parser = parse_size, num_args = 1..)]
    pub sizes: Vec<usize>,
    /// Seconds each measurement runs (throughput window, and the cap on
    /// round trips); default 0.1, or 0.01 with --quick.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

/// Largest message size accepted.
const MAX_SIZE: usize = 64 << 20;

/// Parses `64`, `4K`, `4KiB`, `1M`, `1MiB` (binary units).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 64, 4K or 1M"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        _ => return Err(format!("`{text}`: unknown unit (use B, K or M)")),
    };
    let size = n
        .checked_mul(scale)
        .filter(|s| (1..=MAX_SIZE).contains(s))
        .ok_or_else(|| format!("`{text}`: a size must be 1 B to 64 MiB"))?;
    Ok(size)
}

/// The default message sizes.
pub const DEFAULT_SIZES: [usize; 4] = [64, 4096, 65536, 1 << 20];

/// How long the parts of each measurement run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Settings {
    /// Throughput: unmeasured time after the first message.
    pub warmup: Duration,
    /// Throughput: measured time.
    pub window: Duration,
    /// Round trips: unmeasured first round trips.
    pub rounds_warmup: usize,
    /// Round trips: at most this many measured.
    pub rounds_max: usize,
    /// Round trips: and for at most this long.
    pub rounds_cap: Duration,
}

impl Settings {
    fn new(quick: bool, duration: Option<f64>) -> Result<Settings, BenchError> {
        let mut s = if quick {
            Settings {
                warmup: Duration::from_millis(2),
                window: Duration::from_millis(10),
                rounds_warmup: 10,
                rounds_max: 200,
                rounds_cap: Duration::from_millis(10),
            }
        } else {
            Settings {
                warmup: Duration::from_millis(20),
                window: Duration::from_millis(100),
                rounds_warmup: 100,
                rounds_max: 20_000,
                rounds_cap: Duration::from_millis(100),
            }
        };
        if let Some(secs) = duration {
            if !(0.001..=600.0).contains(&secs) {
                return Err(BenchError::Usage(format!(
                    "--duration {secs}: give 0.001 to 600 seconds"
                )));
            }
            s.window = Duration::from_secs_f64(secs);
            s.rounds_cap = s.window;
            s.rounds_max = s.rounds_max.max((secs * 200_000.0) as usize);
        }
        Ok(s)
    }

    fn describe(&self) -> String {
        format!(
            "throughput {} ms per size after {} ms warm-up; round trips: {} warm-up, then up to {} or {} ms",
            self.window.as_millis(),
            self.warmup.as_millis(),
            self.rounds_warmup,
            self.rounds_max,
            self.rounds_cap.as_millis()
        )
    }
}

/// What the peer is told, as JSON in its one argument.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerSpec {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// Send (throughput) or echo (round trip).
    pub test: Test,
    /// Message size in bytes.
    pub size: usize,
    /// How long a throughput sender sends.
    pub send_for: Duration,
    /// Where the objects are.
    pub endpoint: Endpoint,
    /// The bench's pid (signals go there; the peer quits if it is gone).
    pub parent: i32,
}

/// The sentence printed for the shared-memory ring while it is not in this
/// build.
pub const RING_NOT_BUILT: &str = "shm-ring: not built in this version (the shared-memory ring is not merged yet), so it has no row";

/// `ipc-run bench`: measures, prints, cleans up; returns the exit code.
pub fn run(args: &BenchArgs) -> Result<i32, BenchError> {
    let settings = Settings::new(args.quick, args.duration)?;
    let mechanisms: Vec<Mechanism> = if args.mechanisms.is_empty() {
        Mechanism::ALL.to_vec()
    } else {
        let mut m: Vec<Mechanism> = Vec::new();
        for &mechanism in &args.mechanisms {
            if !m.contains(&mechanism) {
                m.push(mechanism);
            }
        }
        m
    };
    let mut sizes = if args.sizes.is_empty() {
        DEFAULT_SIZES.to_vec()
    } else {
        args.sizes.clone()
    };
    sizes.sort_unstable();
    sizes.dedup();
    let mut rtt_sizes: Vec<usize> = sizes.iter().copied().filter(|&s| s <= 4096).collect();
    if rtt_sizes.is_empty() {
        rtt_sizes.push(sizes[0]);
    }

    let host = Host::describe();
    // Block the termination signals and the ping-pong signals before any
    // thread exists, so every thread inherits the mask: the watcher takes
    // the former with sigtimedwait, the main thread the latter with sigwait.
    let mut blocked = cleanup::termination_signals();
    for signal in measure::signal_set().iter() {
        blocked.add(signal);
    }
    blocked
        .thread_block()
        .map_err(|e| BenchError::Setup(format!("blocking signals: {e}")))?;
    cleanup::start_watcher().map_err(|e| BenchError::Setup(format!("watcher thread: {e}")))?;

    let mut random = [0u8; 8];
    crate::sys::fd::fill_random(&mut random)
        .map_err(|e| BenchError::Setup(format!("getrandom: {e}")))?;
    let id: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("ipc-run-bench.{id}"));
    let (_, dir_guard) = cleanup::create(|| {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map(|()| ((), Object::Dir(dir.clone())))
    })
    .map_err(|e| BenchError::Setup(format!("creating {}: {e}", dir.display())))?;
    tracing::debug!("bench id {id}");
    let place = Place {
        dir: dir.clone(),
        id,
        limits: HostLimits::read(),
    };

    let mut records = Vec::new();
    for &mechanism in &mechanisms {
        let name = mechanism.name();
        for &size in &sizes {
            if let Some(reason) = place.limits.refuses(mechanism, size) {
                records.push(Record::na(name, size, Metric::Throughput, &reason));
                continue;
            }
            match measure_one(&place, mechanism, Test::Throughput, size, &settings) {
                Ok(Measured::Throughput { through, sent }) => {
                    records.push(Record::value(
                        name,
                        size,
                        Metric::Throughput,
                        through.gb_per_s(),
                        through.messages,
                    ));
                    if mechanism == Mechanism::Udp {
                        records.push(match sent {
                            Some(sent) => Record::value(
                                name,
                                size,
                                Metric::Lost,
                                sent.saturating_sub(through.received_total) as f64,
                                sent,
                            ),
                            None => Record::na(
                                name,
                                size,
                                Metric::Lost,
                                "the sender did not report its count",
                            ),
                        });
                    }
                }
                Ok(Measured::RoundTrips(_)) => unreachable!("a throughput test"),
                Err(reason) => {
                    records.push(Record::na(
                        name,
                        size,
                        Metric::Throughput,
                        &format!("failed: {reason}"),
                    ));
                }
            }
        }
        let round_trip_sizes: &[usize] = if mechanism == Mechanism::Signal {
            &[0]
        } else {
            &rtt_sizes
        };
        for &size in round_trip_sizes {
            let refused = if mechanism == Mechanism::Signal {
                None
            } else {
                place.limits.refuses(mechanism, size)
            };
            let result = match refused {
                Some(reason) => Err(reason),
                None => match measure_one(&place, mechanism, Test::RoundTrip, size, &settings) {
                    Ok(Measured::RoundTrips(trips)) if !trips.nanos.is_empty() => Ok(trips),
                    Ok(_) => Err("failed: no round trip completed".into()),
                    Err(reason) => Err(format!("failed: {reason}")),
                },
            };
            match result {
                Ok(trips) => {
                    let n = trips.nanos.len() as u64;
                    for (metric, p) in [(Metric::RoundTripP50, 50.0), (Metric::RoundTripP99, 99.0)]
                    {
                        let value = trips.percentile_us(p).unwrap_or_default();
                        records.push(Record::value(name, size, metric, value, n));
                    }
                }
                Err(reason) => {
                    records.push(Record::na(name, size, Metric::RoundTripP50, &reason));
                    records.push(Record::na(name, size, Metric::RoundTripP99, &reason));
                }
            }
        }
    }
    drop(dir_guard);

    let report = Report {
        host,
        settings: settings.describe(),
        not_built: vec![RING_NOT_BUILT.to_owned()],
        records,
    };
    let mut stdout = std::io::stdout().lock();
    match args.format {
        BenchFormat::Text => stdout.write_all(report.text().as_bytes())?,
        BenchFormat::Json => stdout.write_all(report.json().as_bytes())?,
    }
    stdout.flush()?;
    Ok(crate::cli::EXIT_OK)
}

enum Measured {
    Throughput {
        through: measure::Throughput,
        sent: Option<u64>,
    },
    RoundTrips(measure::RoundTrips),
}

/// The peer's stdout, line by line.
struct PeerOut(BufReader<ChildStdout>);

impl PeerOut {
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.0.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end().to_owned()),
        }
    }
}

/// Ends the peer (killing it unless `clean`) and returns what it said last.
fn finish_peer(mut child: Child, out: &mut PeerOut, clean: bool) -> (Vec<String>, bool) {
    if !clean {
        let _ = child.kill();
    }
    let mut lines = Vec::new();
    while let Some(line) = out.line() {
        lines.push(line);
    }
    let ok = child.wait().map(|s| s.success()).unwrap_or(false);
    cleanup::peer_gone();
    (lines, ok)
}

fn peer_error(lines: &[String]) -> Option<String> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("error ").map(str::to_owned))
}

/// One measurement with a fresh peer; `Err` is the reason it failed.
fn measure_one(
    place: &Place,
    mechanism: Mechanism,
    test: Test,
    size: usize,
    settings: &Settings,
) -> Result<Measured, String> {
    let what = format!(
        "{} {:?} {}",
        mechanism.name(),
        test,
        report::size_label(size)
    );
    tracing::debug!("measuring {what}");
    let mut side =
        ParentSide::new(place, mechanism, test, size).map_err(|e| format!("setup: {e}"))?;
    let spec = PeerSpec {
        mechanism,
        test,
        size,
        send_for: settings.warmup + settings.window,
        endpoint: side.endpoint.clone(),
        parent: std::process::id() as i32,
    };
    let spec = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
    let mut child = Command::new("/proc/self/exe")
        .arg("bench-peer")
        .arg(spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting the peer: {e}"))?;
    // The peer has its copies now.
    drop(std::mem::take(&mut side.pass));
    let pid = Pid::from_raw(child.id() as i32);
    tracing::debug!("started peer pid {pid} for {what}");
    let budget = match test {
        Test::Throughput => settings.warmup + settings.window,
        Test::RoundTrip => settings.rounds_cap * 2,
    };
    cleanup::watch_peer(
        pid,
        Instant::now() + budget + Duration::from_secs(10),
        &what,
    );
    let mut out = PeerOut(BufReader::new(
        child.stdout.take().expect("stdout is piped"),
    ));
    let ready = out.line().unwrap_or_default();
    let Some(rest) = ready.strip_prefix("ready") else {
        let (mut lines, _) = finish_peer(child, &mut out, false);
        lines.insert(0, ready);
        return Err(peer_error(&lines).unwrap_or_else(|| "the peer did not start".into()));
    };
    let peer_port = rest
        .trim()
        .strip_prefix("port=")
        .and_then(|p| p.parse().ok());

    let rounds = Rounds {
        warmup: settings.rounds_warmup,
        max: settings.rounds_max,
        cap: settings.rounds_cap,
    };
    let stream = mechanism.is_stream();
    let datagrams = mechanism == Mechanism::Udp;
    let result =
        side.connect(test, size, peer_port)
            .map(|(connected, guards)| {
                let measured = match (connected, test) {
                    (Connected::Signal, _) => {
                        measure::signal_round_trips(pid, rounds).map(Measured::RoundTrips)
                    }
                    (Connected::Link(mut link), Test::Throughput) => {
                        measure::receive(link.as_mut(), size, settings.warmup, stream, datagrams)
                            .map(|through| Measured::Throughput {
                                through,
                                sent: None,
                            })
                    }
                    (Connected::Link(mut link), Test::RoundTrip) => {
                        measure::round_trips(link.as_mut(), size, rounds, stream, datagrams)
                            .map(Measured::RoundTrips)
                    }
                };
                (measured, guards)
            });
    let (measured, guards) = match result {
        Ok((measured, guards)) => (measured, Some(guards)),
        Err(e) => (Err(e), None),
    };
    let (lines, ok) = finish_peer(child, &mut out, measured.is_ok());
    drop(guards);
    let mut measured = match measured {
        Ok(m) => m,
        Err(e) => return Err(peer_error(&lines).unwrap_or_else(|| e.to_string())),
    };
    if let Some(reason) = peer_error(&lines) {
        return Err(format!("peer: {reason}"));
    }
    if !ok {
        return Err("the peer failed".into());
    }
    if let Measured::Throughput { sent, .. } = &mut measured {
        *sent = lines
            .iter()
            .find_map(|l| l.strip_prefix("done sent="))
            .and_then(|n| n.parse().ok());
    }
    Ok(measured)
}

/// `ipc-run bench-peer SPEC`: the other process of one measurement.
/// Prints `ready`, then `done sent=N`, or `error MESSAGE`; returns the exit
/// code.
pub fn peer_main(spec: &str) -> i32 {
    let spec: PeerSpec = match serde_json::from_str(spec) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("error: {}", BenchError::Spec(e.to_string()));
            return crate::cli::EXIT_USAGE;
        }
    };
    match peer(&spec) {
        Ok(()) => crate::cli::EXIT_OK,
        Err(e) => {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "error {e}");
            let _ = stdout.flush();
            1
        }
    }
}

fn say(line: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}

fn peer(spec: &PeerSpec) -> std::io::Result<()> {
    // Die with the bench; and if it is already gone, do nothing.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    let parent = Pid::from_raw(spec.parent);
    if nix::unistd::getppid() != parent {
        return Err(std::io::Error::other("the bench is gone"));
    }
    if spec.mechanism == Mechanism::Signal {
        let set: SigSet = measure::signal_set();
        set.thread_block()?;
        say("ready")?;
        let count = measure::signal_echo(parent)?;
        return say(&format!("done echoed={count}"));
    }
    let (pending, port) = link::peer_side(spec.mechanism, spec.test, spec.size, &spec.endpoint)?;
    match port {
        Some(port) => say(&format!("ready port={port}"))?,
        None => say("ready")?,
    }
    let mut link = pending
        .open()?
        .ok_or_else(|| std::io::Error::other("no link"))?;
    let stream = spec.mechanism.is_stream();
    let datagrams = spec.mechanism == Mechanism::Udp;
    match spec.test {
        Test::Throughput => {
            let sent = measure::send(link.as_mut(), spec.size, spec.send_for)?;
            drop(link);
            say(&format!("done sent={sent}"))
        }
        Test::RoundTrip => {
            let count = measure::echo(link.as_mut(), spec.size, stream, datagrams)?;
            say(&format!("done echoed={count}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1G").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("128M").is_err());
    }

    #[test]
    fn duration_is_checked() {
        assert!(Settings::new(false, Some(0.0)).is_err());
        assert!(Settings::new(true, Some(0.5)).is_ok());
    }
}
