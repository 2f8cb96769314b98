//! The timed loops: one-way throughput (the peer sends, the parent
//! receives and times) and ping-pong round trips (the parent times each).
//!
//! Time is read with [`Instant`]. The throughput receiver starts its clock
//! once a warm-up has passed since the first message arrived and stops it at
//! the sender's end mark, so throughput is the bytes received in between
//! over that time. To keep the clock's cost out of small messages both
//! sides read it only every [`clock_every`] messages.

use std::io;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;

use super::link::{Link, is_timeout};

/// How many messages of `size` bytes pass between two clock reads: about
/// one per 64 KiB.
pub fn clock_every(size: usize) -> u64 {
    (65_536 / size.max(1)).max(1) as u64
}

/// What the receiver measured.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Bytes received after the warm-up.
    pub bytes: u64,
    /// Messages (or message-sized reads' worth on streams) after the warm-up.
    pub messages: u64,
    /// Messages received in all, warm-up included (UDP loss tally).
    pub received_total: u64,
    /// From the end of the warm-up to the end mark.
    pub elapsed: Duration,
}

impl Throughput {
    /// Bytes per second, in GB/s (10^9).
    pub fn gb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e9
    }
}

/// How long the throughput window is, and how to stop the sender.
pub struct Window<'a> {
    /// Unmeasured time from the first message.
    pub warmup: Duration,
    /// Measured time after the warm-up.
    pub length: Duration,
    /// Tells the sender to stop (it then sends its end mark).
    pub stop: &'a mut dyn FnMut() -> io::Result<()>,
}

/// Receives messages of `size` bytes and times the window that follows the
/// warm-up, entirely on the receiver's clock; then stops the sender and
/// drains the link to its end mark (or, for UDP, a quiet socket).
pub fn receive(
    link: &mut dyn Link,
    size: usize,
    window: Window<'_>,
    stream: bool,
    datagrams: bool,
) -> io::Result<Throughput> {
    let mut buf = vec![0u8; size];
    let every = if datagrams { 1 } else { clock_every(size) };
    let mut bytes: u64 = 0;
    let mut messages: u64 = 0;
    let mut first: Option<Instant> = None;
    let mut start: Option<(Instant, u64, u64)> = None;
    let mut measured: Option<(Duration, u64, u64)> = None;
    loop {
        let n = match link.recv(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if datagrams && is_timeout(&e) => break,
            Err(e) => return Err(e),
        };
        if !stream && n != size {
            return Err(io::Error::other(format!(
                "received a message of {n} bytes, expected {size}"
            )));
        }
        bytes += n as u64;
        messages += 1;
        if measured.is_some() || (first.is_some() && messages % every != 0) {
            continue;
        }
        let now = Instant::now();
        let since = *first.get_or_insert(now);
        match start {
            None if now - since >= window.warmup => start = Some((now, bytes, messages)),
            Some((at, b0, m0)) if now - at >= window.length => {
                measured = Some((now - at, bytes - b0, messages - m0));
                (window.stop)()?;
            }
            _ => {}
        }
    }
    let received_total = messages;
    let (elapsed, bytes, messages) =
        measured.ok_or_else(|| io::Error::other("the sender ended before the window was over"))?;
    if bytes == 0 || elapsed.is_zero() {
        return Err(io::Error::other("nothing was received in the window"));
    }
    Ok(Throughput {
        bytes,
        messages: if stream {
            bytes / size as u64
        } else {
            messages
        },
        received_total,
        elapsed,
    })
}

/// Sends messages of `size` bytes until `stopped` says so (asked every
/// [`clock_every`] messages) or `limit` has passed, then the end mark;
/// returns how many were sent.
pub fn send(
    link: &mut dyn Link,
    size: usize,
    limit: Duration,
    stopped: &mut dyn FnMut() -> io::Result<bool>,
) -> io::Result<u64> {
    let msg = vec![0xa5u8; size];
    let every = clock_every(size);
    let started = Instant::now();
    let mut sent: u64 = 0;
    loop {
        link.send(&msg)?;
        sent += 1;
        if sent % every == 0 && (stopped()? || started.elapsed() >= limit) {
            break;
        }
    }
    link.end()?;
    Ok(sent)
}

/// Round-trip times and how many round trips were lost (UDP).
#[derive(Debug, Clone, Default)]
pub struct RoundTrips {
    /// Each measured round trip, in nanoseconds.
    pub nanos: Vec<u64>,
    /// Round trips whose reply did not come (UDP only).
    pub lost: u64,
}

impl RoundTrips {
    /// The `p`-th percentile (0 < p <= 100) in microseconds, by nearest
    /// rank; `None` without samples.
    pub fn percentile_us(&self, p: f64) -> Option<f64> {
        percentile(&self.nanos, p).map(|ns| ns as f64 / 1000.0)
    }

    /// Keeps round trip number `round` (counted from 1), which started at
    /// `t0` and took `dt`, unless it is part of the warm-up. True once there
    /// are enough: `rounds.max`, or at least `MIN_ROUNDS` and `rounds.cap`
    /// passed since the first kept one (`since`, set here).
    fn keep(
        &mut self,
        round: usize,
        t0: Instant,
        dt: Duration,
        rounds: Rounds,
        since: &mut Option<Instant>,
    ) -> bool {
        if round <= rounds.warmup {
            return false;
        }
        let since = *since.get_or_insert(t0);
        self.nanos.push(dt.as_nanos() as u64);
        self.nanos.len() >= rounds.max
            || (self.nanos.len() >= MIN_ROUNDS && since.elapsed() >= rounds.cap)
    }
}

/// The nearest-rank percentile of `values` (need not be sorted).
pub fn percentile(values: &[u64], p: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// How many round trips to make.
#[derive(Debug, Clone, Copy)]
pub struct Rounds {
    /// Unmeasured round trips first.
    pub warmup: usize,
    /// At most this many measured.
    pub max: usize,
    /// And no longer than this once measuring (at least `MIN_ROUNDS`).
    pub cap: Duration,
}

const MIN_ROUNDS: usize = 20;
const MAX_LOST: u64 = 50;

/// Receives one whole message of `size` bytes; 0 when the other side ended.
pub fn recv_message(
    link: &mut dyn Link,
    buf: &mut [u8],
    size: usize,
    stream: bool,
) -> io::Result<usize> {
    if !stream {
        let n = link.recv(&mut buf[..])?;
        if n != 0 && n != size {
            return Err(io::Error::other(format!(
                "received a message of {n} bytes, expected {size}"
            )));
        }
        return Ok(n);
    }
    let mut got = 0;
    while got < size {
        match link.recv(&mut buf[got..size])? {
            0 if got == 0 => return Ok(0),
            0 => return Err(io::Error::other("the stream ended inside a message")),
            n => got += n,
        }
    }
    Ok(size)
}

/// Ping-pong: sends one message of `size` bytes and waits for it to come
/// back, `rounds` times; then the end mark.
pub fn round_trips(
    link: &mut dyn Link,
    size: usize,
    rounds: Rounds,
    stream: bool,
    datagrams: bool,
) -> io::Result<RoundTrips> {
    let mut msg = vec![0x5au8; size];
    let mut buf = vec![0u8; size];
    let mut out = RoundTrips {
        nanos: Vec::with_capacity(rounds.max.min(1 << 20)),
        lost: 0,
    };
    let mut measuring_since = None;
    let mut round: u64 = 0;
    loop {
        // A sequence number lets a late UDP reply be told from the current.
        if size >= 8 {
            msg[..8].copy_from_slice(&round.to_le_bytes());
        }
        let t0 = Instant::now();
        link.send(&msg)?;
        loop {
            match recv_message(link, &mut buf, size, stream) {
                Ok(0) => return Err(io::Error::other("the peer ended during a round trip")),
                Ok(_) if datagrams && size >= 8 && buf[..8] != msg[..8] => continue,
                Ok(_) => break,
                Err(e) if datagrams && is_timeout(&e) => {
                    out.lost += 1;
                    if out.lost > MAX_LOST {
                        return Err(io::Error::other(format!(
                            "more than {MAX_LOST} round trips were lost"
                        )));
                    }
                    link.send(&msg)?;
                }
                Err(e) => return Err(e),
            }
        }
        let dt = t0.elapsed();
        round += 1;
        if out.keep(round as usize, t0, dt, rounds, &mut measuring_since) {
            break;
        }
    }
    link.end()?;
    Ok(out)
}

/// The peer's side of a round trip: sends back every message until the
/// parent's end mark.
pub fn echo(link: &mut dyn Link, size: usize, stream: bool, datagrams: bool) -> io::Result<u64> {
    let mut buf = vec![0u8; size];
    let mut count = 0;
    loop {
        match recv_message(link, &mut buf, size, stream) {
            Ok(0) => return Ok(count),
            Ok(n) => {
                link.send(&buf[..n])?;
                count += 1;
            }
            Err(e) if datagrams && is_timeout(&e) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The signals of a signal round trip: the ping (both ways) and the end.
pub fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGUSR1);
    set.add(Signal::SIGUSR2);
    set
}

/// Signal ping-pong: `SIGUSR1` to the peer, which answers with `SIGUSR1`;
/// both wait with `sigwait` (the signals are blocked). Ends with `SIGUSR2`.
pub fn signal_round_trips(peer: Pid, rounds: Rounds) -> io::Result<RoundTrips> {
    let mut wait = SigSet::empty();
    wait.add(Signal::SIGUSR1);
    let mut out = RoundTrips::default();
    let mut measuring_since = None;
    let mut round = 0usize;
    loop {
        let t0 = Instant::now();
        kill(peer, Signal::SIGUSR1)?;
        wait.wait()?;
        let dt = t0.elapsed();
        round += 1;
        if out.keep(round, t0, dt, rounds, &mut measuring_since) {
            break;
        }
    }
    kill(peer, Signal::SIGUSR2)?;
    Ok(out)
}

/// The peer's side of the signal ping-pong (the signals must be blocked
/// before the parent is told the peer is ready).
pub fn signal_echo(parent: Pid) -> io::Result<u64> {
    let set = signal_set();
    let mut count = 0;
    loop {
        match set.wait()? {
            Signal::SIGUSR1 => {
                kill(parent, Signal::SIGUSR1)?;
                count += 1;
            }
            _ => return Ok(count),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn the_clock_is_read_about_once_per_64_kib() {
        assert_eq!(clock_every(64), 1024);
        assert_eq!(clock_every(65536), 1);
        assert_eq!(clock_every(1 << 20), 1);
    }
}
