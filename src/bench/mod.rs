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

pub mod measure;
pub mod report;

pub(crate) use crate::mechanism::{
    bench_cleanup as cleanup, bench_kinds as mechanism, bench_link as link,
};

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::SigSet;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::exit::ExitCode;
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
    /// A termination signal ended the bench; what it made is removed.
    #[error("ipc-run bench: interrupted by {signal}; removed {removed} object(s) it had made")]
    Interrupted {
        /// The signal.
        signal: nix::sys::signal::Signal,
        /// How many objects were removed.
        removed: usize,
    },
    /// A peer hung past its deadline and even killing it did not unblock
    /// the measurement; what the bench made is removed.
    #[error("ipc-run bench: {what} did not finish; gave up and removed {removed} object(s)")]
    GaveUp {
        /// The measurement.
        what: String,
        /// How many objects were removed.
        removed: usize,
    },
}

impl BenchError {
    /// The exit code: usage errors 2, an interruption 128+signal, anything
    /// else a launch failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            BenchError::Usage(_) | BenchError::Spec(_) => ExitCode::Usage.code(),
            BenchError::Interrupted { signal, .. } => crate::exit::signaled(*signal as i32),
            BenchError::Setup(_) | BenchError::Output(_) | BenchError::GaveUp { .. } => {
                ExitCode::Launch.code()
            }
        }
    }

    /// Whether the bench was stopped rather than failed (reported without
    /// an `error:` prefix).
    pub fn is_interruption(&self) -> bool {
        matches!(self, BenchError::Interrupted { .. })
    }
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
    /// Seconds each measurement runs in each round: the throughput window
    /// (after a warm-up of a fifth of it, at most 0.1 s) and the cap on
    /// round trips (at most 1,000,000 a round); default 0.5, or 0.01 with
    /// --quick. Windows much shorter than 0.1 s give results that vary from
    /// one round to the next by tens of percent.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// How many times each measurement is made, rounds interleaved (the
    /// machine may be busy); each value is the median of the rounds and
    /// `spread_pct` says how far they were apart. Default 5, or 1 with
    /// --quick.
    #[arg(long, value_name = "N")]
    pub rounds: Option<usize>,
    /// Pin the measuring side to CPU `A` and its peer to CPU `B`, e.g.
    /// `0,0` (one CPU: they take turns) or `0,1` (one each). Unpinned by
    /// default.
    #[arg(long, value_name = "A,B", value_parser = parse_pin)]
    pub pin: Option<(usize, usize)>,
}

/// Parses `--pin A,B`.
fn parse_pin(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{text}`: give two CPU numbers, e.g. 0,1");
    let (a, b) = text.split_once(',').ok_or_else(bad)?;
    let cpu = |s: &str| s.trim().parse::<usize>().map_err(|_| bad());
    Ok((cpu(a)?, cpu(b)?))
}

/// Pins the calling thread (and what it spawns afterwards) to `cpu`.
fn pin_to(cpu: usize) -> std::io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set)?;
    Ok(())
}

/// Largest message size accepted.
const MAX_SIZE: usize = 64 << 20;

/// Parses a message size by the topology's rule
/// ([`crate::topology::ByteSize`]: `64`, `4K`/`4KiB`, `1M`/`1MiB`, decimal
/// `kB`, `MB`), from 1 B to 64 MiB.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let size = crate::topology::ByteSize::parse(text)?;
    usize::try_from(size.bytes())
        .ok()
        .filter(|s| (1..=MAX_SIZE).contains(s))
        .ok_or_else(|| format!("`{text}`: a size must be 1 B to 64 MiB"))
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
    /// How many times each measurement is made (rounds interleaved).
    pub rounds: usize,
}

impl Settings {
    fn new(
        quick: bool,
        duration: Option<f64>,
        rounds: Option<usize>,
    ) -> Result<Settings, BenchError> {
        let mut s = if quick {
            Settings {
                warmup: Duration::from_millis(2),
                window: Duration::from_millis(10),
                rounds_warmup: 10,
                rounds_max: 200,
                rounds_cap: Duration::from_millis(10),
                rounds: 1,
            }
        } else {
            // Half-second windows: at 30 ms the ring's rates were bimodal
            // (a window fits a few scheduler ticks, and where they fall
            // decides the figure); see docs/performance.md.
            Settings {
                warmup: Duration::from_millis(100),
                window: Duration::from_millis(500),
                rounds_warmup: 1000,
                rounds_max: 1_000_000,
                rounds_cap: Duration::from_millis(500),
                rounds: 5,
            }
        };
        if let Some(secs) = duration {
            if !(0.001..=600.0).contains(&secs) {
                return Err(BenchError::Usage(format!(
                    "--duration {secs}: give 0.001 to 600 seconds"
                )));
            }
            s.window = Duration::from_secs_f64(secs);
            s.warmup = (s.window / 5).min(Duration::from_millis(100));
            s.rounds_cap = s.window;
            s.rounds_max = s.rounds_max.max((secs * 2_000_000.0) as usize);
        }
        if let Some(rounds) = rounds {
            if !(1..=100).contains(&rounds) {
                return Err(BenchError::Usage(format!(
                    "--rounds {rounds}: give 1 to 100"
                )));
            }
            s.rounds = rounds;
        }
        Ok(s)
    }

    fn describe(&self) -> String {
        format!(
            "{} round(s), interleaved; throughput {} ms per size after {} ms warm-up, median of the rounds; \
             round trips: {} warm-up, then up to {} or {} ms per round, p50 the median of the rounds' p50s, \
             p99 of all rounds",
            self.rounds,
            self.window.as_millis(),
            self.warmup.as_millis(),
            self.rounds_warmup,
            self.rounds_max,
            self.rounds_cap.as_millis()
        )
    }
}

/// The signal that tells a throughput sender to stop.
const STOP: nix::sys::signal::Signal = nix::sys::signal::Signal::SIGUSR2;

/// How long a throughput sender goes on when no stop comes (a safety net;
/// the parent stops it after its window).
const SEND_LIMIT: Duration = Duration::from_secs(30);

/// What the peer is told, as JSON in its one argument.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerSpec {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// Send (throughput) or echo (round trip).
    pub test: Test,
    /// Message size in bytes.
    pub size: usize,
    /// How long a throughput sender sends at most without a stop.
    pub send_for: Duration,
    /// Where the objects are.
    pub endpoint: Endpoint,
    /// The bench's pid (signals go there; the peer quits if it is gone).
    pub parent: i32,
    /// The CPU the peer pins itself to (`--pin`).
    #[serde(default)]
    pub cpu: Option<usize>,
}

/// `ipc-run bench`: measures, prints, cleans up.
///
/// The measurements run on a thread of their own while this one waits for
/// the first of: the measurements finished, a termination signal, or a
/// peer that hung past its deadline. On the last two the watcher has
/// already removed every object; the stuck measurement thread is left to
/// end with the process, and the error goes back to `main`.
pub fn run(args: &BenchArgs) -> Result<(), BenchError> {
    let settings = Settings::new(args.quick, args.duration, args.rounds)?;
    let mechanisms = chosen_mechanisms(&args.mechanisms);
    let (sizes, rtt_sizes) = chosen_sizes(&args.sizes);
    let format = args.format;
    let pin = args.pin;

    let host = Host::describe();
    // Block the termination signals and the ping-pong signals before any
    // thread exists, so every thread inherits the mask: the watcher takes
    // the former with sigtimedwait, the measuring thread the latter with
    // sigwait.
    let mut blocked = cleanup::termination_signals();
    for signal in measure::signal_set().iter() {
        blocked.add(signal);
    }
    blocked
        .thread_block()
        .map_err(|e| BenchError::Setup(format!("blocking signals: {e}")))?;
    let (events, ended) = std::sync::mpsc::channel();
    cleanup::start_watcher(events.clone())
        .map_err(|e| BenchError::Setup(format!("watcher thread: {e}")))?;
    let (place, dir_guard) = make_place()?;

    let measuring = move || {
        if let Some((cpu, _)) = pin
            && let Err(e) = pin_to(cpu)
        {
            let _ = events.send(cleanup::End::Finished(Err(BenchError::Usage(format!(
                "--pin: cannot run on CPU {cpu}: {e}"
            )))));
            return;
        }
        let mut jobs = plan_jobs(&mechanisms, &sizes, &rtt_sizes, &place.limits);
        measure_all(&place, &mut jobs, &settings, pin.map(|p| p.1));
        let mut records: Vec<Record> = jobs.iter().flat_map(Job::records).collect();
        records.extend(report::rpc_ratios(&records));
        drop(dir_guard);
        let report = Report {
            host,
            settings: settings.describe(),
            records,
        };
        let _ = events.send(cleanup::End::Finished(write_report(&report, format)));
    };
    std::thread::Builder::new()
        .name("bench-measure".into())
        .spawn(measuring)
        .map_err(|e| BenchError::Setup(format!("measuring thread: {e}")))?;
    match ended.recv() {
        Ok(cleanup::End::Finished(result)) => result,
        Ok(cleanup::End::Interrupted { signal, removed }) => {
            Err(BenchError::Interrupted { signal, removed })
        }
        Ok(cleanup::End::GaveUp { what, removed }) => Err(BenchError::GaveUp { what, removed }),
        Err(std::sync::mpsc::RecvError) => Err(BenchError::Setup(
            "the measuring thread ended without a result".to_owned(),
        )),
    }
}

/// The mechanisms asked for, in order, without repeats; all by default.
fn chosen_mechanisms(asked: &[Mechanism]) -> Vec<Mechanism> {
    if asked.is_empty() {
        return Mechanism::ALL.to_vec();
    }
    let mut m: Vec<Mechanism> = Vec::new();
    for &mechanism in asked {
        if !m.contains(&mechanism) {
            m.push(mechanism);
        }
    }
    m
}

/// The throughput sizes (sorted, without repeats) and the round-trip sizes
/// (those up to 4 KiB, or the smallest).
fn chosen_sizes(asked: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut sizes = if asked.is_empty() {
        DEFAULT_SIZES.to_vec()
    } else {
        asked.to_vec()
    };
    sizes.sort_unstable();
    sizes.dedup();
    let mut rtt_sizes: Vec<usize> = sizes.iter().copied().filter(|&s| s <= 4096).collect();
    if rtt_sizes.is_empty() {
        rtt_sizes.push(sizes[0]);
    }
    (sizes, rtt_sizes)
}

/// The private directory (registered for cleanup) and the names' id.
fn make_place() -> Result<(Place, cleanup::Guard), BenchError> {
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
        dir,
        id,
        limits: HostLimits::read(),
    };
    Ok((place, dir_guard))
}

/// Every measurement to make, in output order.
fn plan_jobs(
    mechanisms: &[Mechanism],
    sizes: &[usize],
    rtt_sizes: &[usize],
    limits: &HostLimits,
) -> Vec<Job> {
    let mut jobs: Vec<Job> = Vec::new();
    for &mechanism in mechanisms {
        if mechanism.round_trips_only() {
            for &size in rtt_sizes {
                jobs.push(Job::new(mechanism, Test::RoundTrip, size, limits));
            }
            continue;
        }
        for &size in sizes {
            jobs.push(Job::new(mechanism, Test::Throughput, size, limits));
        }
        if mechanism == Mechanism::Signal {
            jobs.push(Job::new(mechanism, Test::RoundTrip, 0, limits));
        } else {
            for &size in rtt_sizes {
                jobs.push(Job::new(mechanism, Test::RoundTrip, size, limits));
            }
        }
    }
    // The rpc row is read against the socket beneath it, measured in the
    // same rounds: its round trips are added when not asked for.
    if mechanisms.contains(&Mechanism::Rpc) && !mechanisms.contains(&Mechanism::UnixStream) {
        for &size in rtt_sizes {
            jobs.push(Job::new(
                Mechanism::UnixStream,
                Test::RoundTrip,
                size,
                limits,
            ));
        }
    }
    jobs
}

/// Each round makes every job once, starting at a rotated place; the
/// records take the median (throughput) or the pooled percentiles (round
/// trips).
fn measure_all(place: &Place, jobs: &mut [Job], settings: &Settings, peer_cpu: Option<usize>) {
    let rounds = settings.rounds;
    for round in 0..rounds {
        let count = jobs.len();
        let first = round * count / rounds;
        for k in 0..count {
            let job = &mut jobs[(first + k) % count];
            if job.refused.is_some() {
                continue;
            }
            match measure_one(place, job, settings, peer_cpu) {
                Ok(measured) => job.results.push(measured),
                Err(reason) => {
                    tracing::warn!(
                        "{} {}: {reason}",
                        job.mechanism.name(),
                        report::size_label(job.size)
                    );
                    job.failed.push(format!("failed: {reason}"));
                }
            }
        }
    }
}

fn write_report(report: &Report, format: BenchFormat) -> Result<(), BenchError> {
    let mut stdout = std::io::stdout().lock();
    match format {
        BenchFormat::Text => stdout.write_all(report.text().as_bytes())?,
        BenchFormat::Json => stdout.write_all(report.json().as_bytes())?,
    }
    stdout.flush()?;
    Ok(())
}

enum Measured {
    Throughput {
        through: measure::Throughput,
        sent: Option<u64>,
    },
    RoundTrips(measure::RoundTrips),
}

/// One measurement to make in every round, and what the rounds gave.
struct Job {
    mechanism: Mechanism,
    test: Test,
    size: usize,
    /// A host limit rules it out.
    refused: Option<String>,
    /// Why rounds failed (a job with no result reports the first).
    failed: Vec<String>,
    results: Vec<Measured>,
}

impl Job {
    fn new(mechanism: Mechanism, test: Test, size: usize, limits: &HostLimits) -> Job {
        let refused = if mechanism == Mechanism::Signal && test == Test::RoundTrip {
            None
        } else {
            limits.refuses(mechanism, size)
        };
        Job {
            mechanism,
            test,
            size,
            refused,
            failed: Vec::new(),
            results: Vec::new(),
        }
    }

    fn records(&self) -> Vec<Record> {
        let name = self.mechanism.name();
        let size = self.size;
        let metrics: &[Metric] = match self.test {
            Test::Throughput if self.mechanism == Mechanism::Udp => {
                &[Metric::Throughput, Metric::Lost]
            }
            Test::Throughput => &[Metric::Throughput],
            Test::RoundTrip => &[Metric::RoundTripP50, Metric::RoundTripP99],
        };
        let reason = self.refused.clone().or_else(|| {
            self.results.is_empty().then(|| {
                self.failed
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "not measured".to_owned())
            })
        });
        if let Some(reason) = reason {
            // A limit rules out the loss tally too; show only the main metric.
            let shown = if self.refused.is_some() {
                &metrics[..1]
            } else {
                metrics
            };
            return shown
                .iter()
                .map(|&m| Record::na(name, size, m, &reason))
                .collect();
        }
        match self.test {
            Test::Throughput => self.throughput_records(),
            Test::RoundTrip => self.round_trip_records(),
        }
    }

    /// The median rate of the rounds, and for UDP the datagrams lost.
    fn throughput_records(&self) -> Vec<Record> {
        let (name, size) = (self.mechanism.name(), self.size);
        let mut rates = Vec::new();
        let (mut messages, mut sent, mut received) = (0, Some(0u64), 0);
        for result in &self.results {
            if let Measured::Throughput { through, sent: s } = result {
                rates.push(through.gb_per_s());
                messages += through.messages;
                received += through.received_total;
                sent = sent.zip(*s).map(|(a, b)| a + b);
            }
        }
        let mut out = vec![
            Record::value(name, size, Metric::Throughput, median(&mut rates), messages)
                .with_spread(spread(&mut rates)),
        ];
        if self.mechanism == Mechanism::Udp {
            out.push(match sent {
                Some(sent) => Record::value(
                    name,
                    size,
                    Metric::Lost,
                    sent.saturating_sub(received) as f64,
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
        out
    }

    /// The median of the rounds' p50s (a round that the machine slowed
    /// moves it less than pooling would), and the p99 of every round's
    /// round trips pooled (the tail is what the rounds share).
    fn round_trip_records(&self) -> Vec<Record> {
        let (name, size) = (self.mechanism.name(), self.size);
        let mut pooled = measure::RoundTrips::default();
        let mut p50s = Vec::new();
        for result in &self.results {
            if let Measured::RoundTrips(trips) = result {
                p50s.extend(trips.percentile_us(50.0));
                pooled.nanos.extend_from_slice(&trips.nanos);
                pooled.lost += trips.lost;
            }
        }
        let n = pooled.nanos.len() as u64;
        let p50 = (!p50s.is_empty()).then(|| median(&mut p50s));
        let p99 = pooled.percentile_us(99.0);
        [
            (Metric::RoundTripP50, p50, spread(&mut p50s)),
            (Metric::RoundTripP99, p99, None),
        ]
        .into_iter()
        .map(|(metric, value, spread)| match value {
            Some(v) => Record::value(name, size, metric, v, n).with_spread(spread),
            None => Record::na(name, size, metric, "no round trip completed"),
        })
        .collect()
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// How far apart the rounds were: (largest - smallest) / median, in
/// percent; `None` with fewer than two rounds.
fn spread(values: &mut [f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let mid = median(values);
    let (lo, hi) = (values[0], values[values.len() - 1]);
    (mid > 0.0).then(|| (hi - lo) / mid * 100.0)
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
    job: &Job,
    settings: &Settings,
    cpu: Option<usize>,
) -> Result<Measured, String> {
    let (mechanism, test, size) = (job.mechanism, job.test, job.size);
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
        send_for: settings.warmup + settings.window + SEND_LIMIT,
        endpoint: side.endpoint.clone(),
        parent: std::process::id() as i32,
        cpu,
    };
    let mut child = start_peer(&spec, &side.ports)?;
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

    let (measured, guards) = match side.connect(test, size, peer_port) {
        Ok((connected, guards)) => {
            let measured = parent_measure(connected, test, size, pid, settings, mechanism);
            (measured, Some(guards))
        }
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

/// Starts the peer (`/proc/self/exe bench-peer SPEC`) in a process group
/// of its own, its stdout piped, its inherited fds described in `ports`.
fn start_peer(spec: &PeerSpec, ports: &[(String, String)]) -> Result<Child, String> {
    let spec = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    Command::new("/proc/self/exe")
        .arg("bench-peer")
        .arg(spec)
        .envs(ports.iter().map(|(var, value)| (var, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting the peer: {e}"))
}

/// The parent's side of one measurement once connected.
fn parent_measure(
    connected: Connected,
    test: Test,
    size: usize,
    pid: Pid,
    settings: &Settings,
    mechanism: Mechanism,
) -> std::io::Result<Measured> {
    let rounds = Rounds {
        warmup: settings.rounds_warmup,
        max: settings.rounds_max,
        cap: settings.rounds_cap,
    };
    let stream = mechanism.is_stream();
    let datagrams = mechanism == Mechanism::Udp;
    match (connected, test) {
        (Connected::Signal, _) => {
            measure::signal_round_trips(pid, rounds).map(Measured::RoundTrips)
        }
        (Connected::Link(mut link), Test::Throughput) => {
            let mut stop = || -> std::io::Result<()> { Ok(nix::sys::signal::kill(pid, STOP)?) };
            let window = measure::Window {
                warmup: settings.warmup,
                length: settings.window,
                stop: &mut stop,
            };
            let through = measure::receive(link.as_mut(), size, window, stream, datagrams)?;
            Ok(Measured::Throughput {
                through,
                sent: None,
            })
        }
        (Connected::Link(mut link), Test::RoundTrip) => {
            measure::round_trips(link.as_mut(), size, rounds, stream, datagrams)
                .map(Measured::RoundTrips)
        }
    }
}

/// `ipc-run bench-peer SPEC`: the other process of one measurement.
/// Prints `ready`, then `done sent=N`, or `error MESSAGE`; returns the exit
/// code.
pub fn peer_main(spec: &str) -> i32 {
    let spec: PeerSpec = match serde_json::from_str(spec) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("error: {}", BenchError::Spec(e.to_string()));
            return ExitCode::Usage.code();
        }
    };
    // The size is allocated (twice for a round trip): only what the bench
    // itself accepts, or 0 for a mechanism that carries no payload (signal).
    if spec.size > MAX_SIZE {
        let why = format!("size {} is above 64 MiB", spec.size);
        eprintln!("error: {}", BenchError::Spec(why));
        return ExitCode::Usage.code();
    }
    match peer(&spec) {
        Ok(()) => ExitCode::Success.code(),
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
    if let Some(cpu) = spec.cpu {
        pin_to(cpu).map_err(|e| std::io::Error::other(format!("pinning to CPU {cpu}: {e}")))?;
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
            // The parent's stop arrives as a blocked signal, looked for
            // without waiting every 64 KiB or so.
            let mut stop_set = SigSet::empty();
            stop_set.add(STOP);
            stop_set.thread_block()?;
            let mut stopped = || -> std::io::Result<bool> {
                Ok(crate::sys::bench::sigtimedwait(&stop_set, Duration::ZERO)?.is_some())
            };
            let sent = measure::send(link.as_mut(), spec.size, spec.send_for, &mut stopped)?;
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
    fn sizes_parse_by_the_topology_rule() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("4KB"), Ok(4000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1G").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("128M").is_err());
    }

    #[test]
    fn duration_is_checked() {
        assert!(Settings::new(false, Some(0.0), None).is_err());
        assert!(Settings::new(true, Some(0.5), None).is_ok());
        assert!(Settings::new(true, None, Some(0)).is_err());
        assert_eq!(parse_pin("0,1"), Ok((0, 1)));
        assert!(parse_pin("0").is_err());
        assert!(parse_pin("a,1").is_err());
    }

    /// A spec whose size no bench would send is refused before the peer
    /// does anything (it used to allocate it: u64::MAX panicked, 1 TiB
    /// aborted). The parent pid 0 is never ours, so a spec that got past
    /// the check would fail with 1, not 2.
    #[test]
    fn peer_refuses_a_size_beyond_the_maximum() {
        for size in [usize::MAX, 1 << 40, MAX_SIZE + 1] {
            let spec = PeerSpec {
                mechanism: Mechanism::Pipe,
                test: Test::Throughput,
                size,
                send_for: Duration::from_secs(1),
                endpoint: link::Endpoint::default(),
                parent: 0,
                cpu: None,
            };
            let json = serde_json::to_string(&spec).expect("serialises");
            assert_eq!(peer_main(&json), ExitCode::Usage.code(), "size {size}");
        }
    }

    #[test]
    fn median_of_rounds() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(spread(&mut [2.0]), None);
        assert_eq!(spread(&mut [3.0, 1.0, 2.0]), Some(100.0));
    }
}
