//! Relaying the unwired stdout and stderr of processes, line by line.
//!
//! Every record goes out as `name | bytes\n`, the name padded to the width of
//! the longest instance name. Bytes are passed through untouched (no UTF-8
//! decoding: lines are split with memchr). A line longer than [`CHUNK`] is cut
//! into records of `CHUNK` bytes; records that continue a line are marked
//! `name + bytes\n` instead of `name | `, so the original line is the
//! concatenation of its `|` record and the `+` records after it. A last line
//! without a newline is flushed at EOF with a newline added.
//!
//! A byte is copied once between the process's pipe and ipc-run's write: a
//! read lands in a scratch buffer, [`LineBuffer`] hands out records as
//! slices of it, and the writer copies each behind its prefix into the
//! output queue. Only a line that spans reads is collected in the stream's
//! `LineBuffer` (its start, then the bytes that complete it).
//!
//! Output never blocks the event loop. Records are queued per output stream
//! and written in batches of whole records, each with one `write(2)`, as
//! soon as a batch is full and as far as the output takes them before
//! ipc-run waits again; a chatty process costs one system call per batch
//! rather than per line. A batch is `PIPE_BUF` bytes where another writer
//! ipc-run knows of shares the output, 64 KiB elsewhere (the rule is at
//! [`batch_size`]): a batch on a pipe of at most `PIPE_BUF` is atomic, so
//! records never interleave with each other or with the writes of a process
//! wired to the same stream. A record longer than a batch is written on its
//! own. The supervisor writes
//! to a pipe or terminal through an open file description of its own, made
//! non-blocking (processes wired to the same stream keep theirs blocking),
//! and to a socket with `send(MSG_DONTWAIT)`, which does not block without
//! touching the O_NONBLOCK flag the socket's other holders share;
//! it waits for POLLOUT in its poll set while a queue is not empty, and
//! stops reading the processes' pipes while a queue holds more than
//! [`HIGH_WATER`] bytes, so a stalled reader holds the processes back
//! (losslessly) instead of ipc-run. Write errors (`/dev/full`, a closed
//! pipe: SIGPIPE is ignored in ipc-run) are counted and the record is
//! dropped; the run goes on.
//!
//! A pipe the relay finds full (a read of three quarters of its capacity
//! or more: its process waits for the relay) is grown, doubling, up to
//! [`PIPE_MAX`], so a chatty process and the relay wake each other once
//! per 256 KiB rather than once per 64 KiB; the run's growth is
//! bounded by the user's pipe limits ([`PipeRoom`]). A read takes no more
//! than the output has room for below its high water, and a large read's
//! lines are written as each batch fills.
//!
//! With a log directory (`ipc-run run --log-dir DIR`), each record also goes
//! to the instance's stream file, buffered and written once per batch
//! ([`super::logfile`]). With `--timestamps` each line starts with the time
//! of the read it came in (one clock read per read); with `--log-format
//! json` each record is a JSON object on ipc-run's stdout ([`LogFormat`]).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anstyle::{AnsiColor, Style};

pub use super::logfile::{LogDirError, LogFiles, Rotation};
use super::rank_lines::{Demux, Piece};
pub use super::rank_pipes::RankPipes;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

/// Longest record; a longer line is cut into records of this size.
pub const CHUNK: usize = 64 * 1024;

/// Largest batch of records written at once to an output another writer
/// shares: `PIPE_BUF`, so that a batch written to a pipe arrives whole.
const SHARED_BATCH: usize = 4096;

/// Largest batch of records written at once to an output ipc-run writes
/// alone (see [`batch_size`]).
const BATCH: usize = 64 * 1024;

/// Reads of one stream in a row, while each fills the read buffer, before
/// the event loop gets its turn again.
const READS_PER_TURN: usize = 4;

/// Bytes queued for one of ipc-run's outputs above which the supervisor
/// stops reading the processes' pipes that feed it.
pub const HIGH_WATER: usize = 256 * 1024;

/// The most a log pipe is grown to when the relay keeps finding it full
/// (see [`PipeRoom`]); `fs.pipe-max-size` may lower it. What one read
/// takes at most: a larger pipe could not be found full.
const PIPE_MAX: usize = READ_SIZE;

/// The read buffer the supervisor relays with: no more than an output
/// takes before its pipes are parked ([`HIGH_WATER`]), as a read never
/// takes more than the output has room for.
pub const READ_SIZE: usize = HIGH_WATER;

/// The bytes all log pipes of a run are grown by together, at most.
const PIPE_BUDGET: usize = 16 * 1024 * 1024;

/// A pipe's size before it is grown (`pipe(7)`).
const PIPE_DEFAULT: usize = 64 * 1024;

/// A read of at least this part of a pipe's capacity (in quarters) found
/// the pipe full, or nearly: its writer is ahead of the relay. Not all of
/// it, as a pipe counts pages, not bytes: each write may leave its last
/// page part empty, so a pipe that blocks its writer may hold less than
/// its capacity.
const PIPE_FULL_QUARTERS: usize = 3;

/// One record cut from a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The bytes, without the newline.
    pub bytes: &'a [u8],
    /// False when the record continues a line cut at [`CHUNK`].
    pub starts_line: bool,
}

/// Collects a stream's bytes and cuts them into records. Holds at most
/// [`CHUNK`] bytes between calls. Also keeps how far the stream's pipe was
/// grown ([`PipeSize`]).
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
    continuing: bool,
    pipe: PipeSize,
}

/// A log pipe's capacity as the relay last set or read it, and what it
/// was grown by (charged to the run's [`PipeRoom`] until it is closed).
#[derive(Debug, Default, Clone, Copy)]
struct PipeSize {
    /// Bytes; 0 until the first read that may have found it full.
    capacity: usize,
    /// Bytes over its size before growing, charged to the room.
    grown: usize,
    /// Growing failed (or its size could not be read): not tried again.
    fixed: bool,
}

/// How much the relay may grow its log pipes, for the whole run. A pipe
/// the relay finds full (its writer blocked, waiting for the relay) is
/// doubled, up to [`PIPE_MAX`] and `fs.pipe-max-size`, so that a chatty
/// process and the relay wake each other once per megabyte rather than
/// once per 64 KiB. The kernel charges pipe pages to the user
/// (`fs.pipe-user-pages-soft`; past it, an unprivileged user's new pipes
/// get one or two pages and growing fails), so the grown bytes together
/// stay within [`PIPE_BUDGET`] and a quarter of the soft limit, and a pipe
/// grows by no more than its share of that budget among the open log
/// pipes. So a run's log pipes, at their default size and grown, stay
/// within half the soft limit, and with more than 256 log pipes open
/// (128 processes, at the default limit) none grows: with many processes
/// one wake-up serves many pipes anyway, and large reads of each would
/// only take memory and cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PipeRoom {
    /// The largest size a pipe is grown to.
    max: usize,
    /// Bytes all pipes together may be grown by.
    budget: usize,
    /// Bytes the open pipes were grown by.
    grown: usize,
}

impl PipeRoom {
    /// The room limits leave: the largest size a pipe is grown to (the
    /// host's `pipe-max-size`, at most [`PIPE_MAX`]) in bytes and
    /// `pipe-user-pages-soft` in pages (0: no limit).
    fn new(largest: usize, soft_pages: usize) -> PipeRoom {
        let soft = soft_pages.saturating_mul(4096);
        let budget = if soft == 0 {
            PIPE_BUDGET
        } else {
            PIPE_BUDGET.min(soft / 4)
        };
        PipeRoom {
            max: largest,
            budget,
            grown: 0,
        }
    }

    /// The room on this host, from `/proc/sys/fs`; what cannot be read
    /// leaves none.
    fn of_host() -> PipeRoom {
        let read = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/fs/{name}"))
                .ok()
                .and_then(|text| text.trim().parse::<usize>().ok())
        };
        match (read("pipe-max-size"), read("pipe-user-pages-soft")) {
            (Some(max), Some(soft)) => PipeRoom::new(max.min(PIPE_MAX), soft),
            _ => PipeRoom::new(0, 0),
        }
    }

    /// The size to grow a pipe of `capacity` bytes to, after a read of
    /// `read` bytes from it, with `open` log pipes in the run; `None`: it
    /// keeps its size (it was not full, or there is no room). A pipe is
    /// taken to have started at the default size.
    fn next(&self, capacity: usize, read: usize, open: usize) -> Option<usize> {
        if read < capacity / 4 * PIPE_FULL_QUARTERS {
            return None;
        }
        let next = capacity.saturating_mul(2).min(self.max);
        let more = next.checked_sub(capacity).filter(|&more| more > 0)?;
        let grown = self.grown.saturating_add(more);
        let share = self.budget / open.max(1);
        (grown <= self.budget && next - PIPE_DEFAULT <= share).then_some(next)
    }
}

impl LineBuffer {
    /// Adds `data` and hands every complete record to `emit`. Records are
    /// slices of `data` itself; only a line that spans reads is collected
    /// here (its held start and the bytes that complete it), so most
    /// bytes are not copied on their way to the writer.
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(Record<'_>)) {
        let emit = &mut emit;
        let mut data = data;
        if !self.pending.is_empty() {
            let take = memchr::memchr(b'\n', data).map_or(data.len(), |nl| nl + 1);
            self.pending.extend_from_slice(&data[..take]);
            self.cut_pending(emit);
            data = &data[take..];
        }
        let mut start = 0;
        while let Some(offset) = memchr::memchr(b'\n', &data[start..]) {
            let end = start + offset;
            self.emit_line(&data[start..end], emit);
            start = end + 1;
        }
        // No newline in the rest: flush whole chunks of an overlong line.
        let mut rest = &data[start..];
        while rest.len() >= CHUNK {
            emit(Record {
                bytes: &rest[..CHUNK],
                starts_line: !self.continuing,
            });
            self.continuing = true;
            rest = &rest[CHUNK..];
        }
        self.pending.extend_from_slice(rest);
    }

    /// Emits the complete lines `pending` holds and whole chunks of a
    /// line without its newline yet; keeps less than [`CHUNK`] bytes.
    fn cut_pending(&mut self, emit: &mut impl FnMut(Record<'_>)) {
        let pending = std::mem::take(&mut self.pending);
        let mut start = 0;
        while let Some(offset) = memchr::memchr(b'\n', &pending[start..]) {
            let end = start + offset;
            self.emit_line(&pending[start..end], emit);
            start = end + 1;
        }
        while pending.len() - start >= CHUNK {
            emit(Record {
                bytes: &pending[start..start + CHUNK],
                starts_line: !self.continuing,
            });
            self.continuing = true;
            start += CHUNK;
        }
        self.pending = pending;
        self.pending.drain(..start);
    }

    /// Emits a complete line (without its newline), cut at `CHUNK`.
    #[inline]
    fn emit_line(&mut self, line: &[u8], emit: &mut impl FnMut(Record<'_>)) {
        let mut pieces = line.chunks(CHUNK);
        // An empty line is one empty record.
        let first = pieces.next().unwrap_or_default();
        emit(Record {
            bytes: first,
            starts_line: !self.continuing,
        });
        for piece in pieces {
            emit(Record {
                bytes: piece,
                starts_line: false,
            });
        }
        self.continuing = false;
    }

    /// At EOF: emits a trailing partial line, if any.
    pub fn finish(&mut self, mut emit: impl FnMut(Record<'_>)) {
        if !self.pending.is_empty() {
            emit(Record {
                bytes: &self.pending,
                starts_line: !self.continuing,
            });
        }
        self.pending.clear();
        self.continuing = false;
    }

    /// Bytes held, waiting for a newline.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.pending.len()
    }
}

/// What reading a log stream gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// Bytes were read and relayed; more may be waiting.
    Data,
    /// Nothing to read now.
    Empty,
    /// End of file, or a read error: the stream is to be closed.
    Closed,
}

/// A process's stream being relayed: its pipe, its partial line, and
/// where its records go.
#[derive(Debug)]
pub struct LogSource<'a> {
    /// The read end of the process's pipe (non-blocking).
    pub fd: BorrowedFd<'a>,
    /// What the stream holds of a line that spans reads.
    pub buffer: &'a mut LineBuffer,
    /// The instance, as indexed in [`LogWriter::new`].
    pub instance: usize,
    /// The output its records go to.
    pub stream: Stream,
}

/// Whether a process of `plan` writes to ipc-run's own stdout (an
/// `@stdout` edge hands it ipc-run's stream).
pub fn plan_writes_stdout(plan: &crate::plan::Plan) -> bool {
    use crate::plan::{EndpointPlan, OwnStream};
    plan.channels.iter().any(|channel| {
        channel.to().iter().any(|end| {
            matches!(
                end,
                EndpointPlan::Own {
                    stream: OwnStream::Stdout
                }
            )
        })
    })
}

/// How relayed records are written to ipc-run's outputs (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `name | line`, each stream to ipc-run's own.
    #[default]
    Text,
    /// One JSON object per record, all on ipc-run's stdout.
    Json,
}

/// The last records of each instance, at most a fixed number of bytes each
/// (oldest dropped first, whole records only), for `ipc-run logs`. Every
/// record gets a sequence number, one counter for the whole run, so records
/// of several instances merge in the order they were read and a follower
/// (`logs -f`) asks for what came after the last one it was sent.
#[derive(Debug)]
pub struct Recent {
    /// Per instance: entries of a 38-byte head (stream, starts a line,
    /// length as u32 LE, sequence number as u64 LE, the RFC 3339 time)
    /// and the record's bytes.
    per: Vec<std::collections::VecDeque<u8>>,
    /// Per instance: the sequence number of its newest record plus one (0:
    /// none yet), so a follower skips instances with nothing new at once.
    newest: Vec<u64>,
    /// Per instance: the sequence number of its newest record no longer
    /// kept (pushed out for room, or too long to keep) plus one (0: none),
    /// so a follower can be told it missed records.
    dropped: Vec<u64>,
    next: u64,
    cap: usize,
}

/// One record kept by [`Recent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentRecord {
    /// Its place in the run's sequence of records.
    pub seq: u64,
    /// The stream it came on.
    pub stream: Stream,
    /// False when it continues a line cut at [`CHUNK`].
    pub starts_line: bool,
    /// When it was read, RFC 3339 with milliseconds.
    pub time: String,
    /// The bytes, without the newline.
    pub bytes: Vec<u8>,
}

const RECENT_HEAD: usize = 1 + 1 + 4 + 8 + 24;

/// `Recent::newest` of an instance whose records are no longer kept
/// ([`Recent::forget`]).
const FORGOTTEN: u64 = u64::MAX;

impl Recent {
    /// Room for `cap` bytes of records (with their heads) per instance.
    pub fn new(instances: usize, cap: usize) -> Self {
        Recent {
            per: (0..instances).map(|_| Default::default()).collect(),
            newest: vec![0; instances],
            dropped: vec![0; instances],
            next: 0,
            cap,
        }
    }

    /// Room for one more instance's records (a process a reload added).
    fn add_instance(&mut self) {
        self.per.push(Default::default());
        self.newest.push(0);
        self.dropped.push(0);
    }

    fn push(&mut self, instance: usize, stream: Stream, record: Record<'_>, time: &[u8]) {
        if self.newest.get(instance) == Some(&FORGOTTEN) {
            return;
        }
        let Some(ring) = self.per.get_mut(instance) else {
            return;
        };
        let len = record.bytes.len();
        let seq = self.next;
        self.next += 1;
        if RECENT_HEAD + len > self.cap {
            // Numbered all the same, so a follower waiting for it learns
            // it was not kept.
            self.dropped[instance] = self.next;
            return;
        }
        while ring.len() + RECENT_HEAD + len > self.cap {
            let mut head = [0; 14];
            for (i, b) in ring.range(..14).enumerate() {
                head[i] = *b;
            }
            let old =
                RECENT_HEAD + u32::from_le_bytes([head[2], head[3], head[4], head[5]]) as usize;
            let mut old_seq = [0; 8];
            old_seq.copy_from_slice(&head[6..14]);
            self.dropped[instance] = u64::from_le_bytes(old_seq) + 1;
            ring.drain(..old);
        }
        self.newest[instance] = self.next;
        // The head made whole first: extending from slices copies them as
        // blocks, not byte by byte.
        let mut head = [0u8; RECENT_HEAD];
        head[0] = stream as u8;
        head[1] = u8::from(record.starts_line);
        head[2..6].copy_from_slice(&(len as u32).to_le_bytes());
        head[6..14].copy_from_slice(&seq.to_le_bytes());
        let n = time.len().min(RECENT_HEAD - 14);
        head[14..14 + n].copy_from_slice(&time[..n]);
        ring.extend(&head);
        ring.extend(record.bytes);
    }

    /// Frees the records kept for `instance` and keeps none from now on:
    /// a process a reload removed, whose slot stays as a tombstone that
    /// `logs` never shows (each reload that removes a process would
    /// otherwise keep its last records for the rest of the run).
    pub fn forget(&mut self, instance: usize) {
        if let Some(ring) = self.per.get_mut(instance) {
            *ring = std::collections::VecDeque::new();
            self.newest[instance] = FORGOTTEN;
        }
    }

    /// Whether a record of `instance` numbered `from` or later is no longer
    /// kept: a follower that was sent everything before `from` missed it.
    pub fn dropped_since(&self, instance: usize, from: u64) -> bool {
        self.dropped
            .get(instance)
            .is_some_and(|&dropped| dropped > from)
    }

    /// The sequence number the next record will get: a follower that was
    /// sent everything before it has nothing to read.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// The records kept for `instance`, oldest first.
    #[cfg(test)]
    pub fn records(&mut self, instance: usize) -> Vec<RecentRecord> {
        self.records_from(instance, 0)
    }

    /// The records kept for `instance` numbered `from` or later, oldest
    /// first.
    pub fn records_from(&mut self, instance: usize, from: u64) -> Vec<RecentRecord> {
        if self
            .newest
            .get(instance)
            .is_none_or(|&newest| newest <= from)
        {
            return Vec::new();
        }
        let Some(ring) = self.per.get_mut(instance) else {
            return Vec::new();
        };
        let mut rest: &[u8] = ring.make_contiguous();
        let mut out = Vec::new();
        while rest.len() >= RECENT_HEAD {
            let len = u32::from_le_bytes([rest[2], rest[3], rest[4], rest[5]]) as usize;
            let mut seq = [0; 8];
            seq.copy_from_slice(&rest[6..14]);
            let seq = u64::from_le_bytes(seq);
            if seq >= from {
                out.push(RecentRecord {
                    seq,
                    stream: if rest[0] == 0 {
                        Stream::Stdout
                    } else {
                        Stream::Stderr
                    },
                    starts_line: rest[1] != 0,
                    time: String::from_utf8_lossy(&rest[14..RECENT_HEAD]).into_owned(),
                    bytes: rest[RECENT_HEAD..RECENT_HEAD + len].to_vec(),
                });
            }
            rest = &rest[RECENT_HEAD + len..];
        }
        out
    }
}

/// Now, as RFC 3339 with milliseconds and a space.
fn now_stamp() -> [u8; 25] {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut stamp = [b' '; 25];
    stamp[..24].copy_from_slice(&super::logfile::rfc3339_ms(since));
    stamp
}

/// Which of ipc-run's streams a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// ipc-run's stdout.
    Stdout,
    /// ipc-run's stderr.
    Stderr,
}

const PALETTE: [AnsiColor; 6] = [
    AnsiColor::Cyan,
    AnsiColor::Yellow,
    AnsiColor::Green,
    AnsiColor::Magenta,
    AnsiColor::Blue,
    AnsiColor::BrightRed,
];

/// The prefix pair of `rank` of the MPI world `instance` launches.
fn rank_prefix(
    ranks: &[Option<Vec<Prefix>>],
    instance: usize,
    rank: Option<usize>,
) -> Option<&Prefix> {
    ranks.get(instance)?.as_ref()?.get(rank?)
}

/// A record prefix, plain and coloured.
type Prefix = [Box<[u8]>; 2];

/// `name | ` padded to `width`, plain and in the `i`th colour.
fn prefix_pair(name: &str, i: usize, width: usize) -> Prefix {
    let padded = format!("{name:<width$} | ");
    let style = Style::new().fg_color(Some(PALETTE[i % PALETTE.len()].into()));
    let coloured = format!("{style}{name:<width$}{style:#} | ");
    [padded.into_bytes().into(), coloured.into_bytes().into()]
}

/// A short prefix in a block of fixed size: appended as the whole block
/// and cut back, a copy of known size the compiler does inline, where a
/// copy of the prefix's own length is a call per record.
struct Padded {
    block: [u8; Padded::SIZE],
    len: usize,
}

impl Padded {
    const SIZE: usize = 32;

    fn new(prefix: &[u8]) -> Option<Padded> {
        let mut block = [0; Padded::SIZE];
        block.get_mut(..prefix.len())?.copy_from_slice(prefix);
        Some(Padded {
            block,
            len: prefix.len(),
        })
    }

    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        let end = out.len() + self.len;
        out.extend_from_slice(&self.block);
        out.truncate(end);
    }
}

/// Copies the lines of `data` (which ends with a newline) into `out`, each
/// behind the prefix `put` appends, the line ends given by `newlines`;
/// returns the number of lines.
#[inline(always)]
fn copy_lines(
    out: &mut Vec<u8>,
    data: &[u8],
    newlines: impl Iterator<Item = usize>,
    put: impl Fn(&mut Vec<u8>),
) -> u64 {
    let mut start = 0;
    let mut count = 0;
    for end in newlines {
        put(out);
        out.extend_from_slice(&data[start..=end]);
        start = end + 1;
        count += 1;
    }
    count
}

/// Writes records to ipc-run's stdout and stderr with name prefixes.
#[derive(Debug)]
pub struct LogWriter {
    out: [OwnedFd; 2],
    color: [bool; 2],
    /// The log files, with `--log-dir`.
    files: Option<LogFiles>,
    /// How records are written to ipc-run's outputs.
    format: LogFormat,
    /// Lines carry a timestamp (`--timestamps`).
    timestamps: bool,
    /// The time of the read being relayed, RFC 3339, and a space.
    stamp: [u8; 25],
    /// Per instance, with `--log-format json`: its `"process"` and
    /// `"instance"` members, rendered once.
    json_names: Vec<Box<[u8]>>,
    /// Per stream of a process: the output slot its records go to (with
    /// JSON both go to stdout).
    route: [usize; 2],
    /// The last records of each instance, when kept.
    recent: Option<Recent>,
    /// None of files, timestamps, JSON or recent records is asked for.
    plain: bool,
    /// Per instance: the padded name followed by ` | `, plain and
    /// coloured; a continuation record takes the name and ` + `.
    prefixes: Vec<[Box<[u8]>; 2]>,
    /// Per instance (empty when no MPI world runs): the prefixes of a
    /// launcher's ranks, `name[rank] | `.
    ranks: Vec<Option<Vec<Prefix>>>,
    /// Per instance (empty when no MPI world runs): a launcher's stdout
    /// and stderr, split into its ranks' lines ([`Demux`]).
    demux: Vec<Option<[Demux; 2]>>,
    /// Per output stream: whole records not written yet, from `sent` on.
    queue: [Vec<u8>; 2],
    sent: [usize; 2],
    /// Per output stream: it is a socket, written with `MSG_DONTWAIT`.
    socket: [bool; 2],
    /// Per output stream: the largest batch written at once.
    batch: [usize; 2],
    /// Per output stream: the last write found it full; it is written
    /// again only on the event loop's flush, not after every read.
    blocked: [bool; 2],
    /// Records that could not be written (EPIPE, ENOSPC, ...).
    pub write_errors: u64,
    /// The pipes MPI ranks' lines go to instead of the log.
    pipes: RankPipes,
    /// Per instance, per stream: what was read from it ([`StreamCounts`]).
    counts: Vec<[StreamCounts; 2]>,
    /// How much the log pipes may still grow; read from the host when a
    /// pipe is first found full.
    pipe_room: Option<PipeRoom>,
    /// Log pipes open ([`LogWriter::opened`], less those closed).
    open_pipes: usize,
}

/// Lines and bytes read from one process stream over all its runs, for
/// `ipc-run status`: one add per read, not per line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCounts {
    /// Lines (a last one without its newline included).
    pub lines: u64,
    /// Bytes, newlines included.
    pub bytes: u64,
}

impl LogWriter {
    /// A writer for instances `names` (indexed as given), writing to
    /// `stdout`/`stderr`, colouring each as told.
    pub fn new(names: &[&str], stdout: OwnedFd, stderr: OwnedFd, color: [bool; 2]) -> Self {
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        let prefixes = names
            .iter()
            .enumerate()
            .map(|(i, name)| prefix_pair(name, i, width))
            .collect();
        let socket = [is_socket(stdout.as_fd()), is_socket(stderr.as_fd())];
        let batch = [
            batch_size(stdout.as_fd(), stderr.as_fd(), false),
            batch_size(stderr.as_fd(), stdout.as_fd(), false),
        ];
        LogWriter {
            socket,
            batch,
            blocked: [false, false],
            out: [stdout, stderr],
            color,
            files: None,
            format: LogFormat::Text,
            timestamps: false,
            stamp: now_stamp(),
            json_names: Vec::new(),
            route: [0, 1],
            recent: None,
            plain: true,
            prefixes,
            ranks: Vec::new(),
            demux: Vec::new(),
            queue: [Vec::new(), Vec::new()],
            sent: [0, 0],
            write_errors: 0,
            pipes: RankPipes::default(),
            counts: Vec::new(),
            pipe_room: None,
            open_pipes: 0,
        }
    }

    /// A log pipe was opened, to be relayed: it counts towards the pipes
    /// the run holds when pipes are grown ([`PipeRoom`]) until it is
    /// closed ([`LogWriter::close`]).
    pub fn opened(&mut self) {
        self.open_pipes += 1;
    }

    /// Tells the writer whether a process of the plan writes to ipc-run's
    /// stdout itself (an `@stdout` edge): batches there are then kept to
    /// `PIPE_BUF`, see [`batch_size`].
    pub fn with_stdout_shared(mut self, shared: bool) -> Self {
        let [stdout, stderr] = &self.out;
        self.batch[0] = batch_size(stdout.as_fd(), stderr.as_fd(), shared);
        self
    }

    /// Relays the lines of each MPI world's launcher under its ranks'
    /// names: mpirun (`--tag-output`) starts every line of rank `r` with
    /// `[JOB,r]<stdout>:`, which becomes `instance[r] | ` (the rank map of
    /// the world's channel). Untagged lines are mpirun's own.
    pub fn with_ranks(mut self, plan: &crate::plan::Plan) -> Self {
        use crate::plan::{ManagedRole, Mechanism};
        let mut worlds = Vec::new();
        for (i, process) in plan.processes.iter().enumerate() {
            let Some(managed) = &process.managed else {
                continue;
            };
            if managed.role != ManagedRole::Launcher {
                continue;
            }
            let channel = plan.channels.iter().find(|c| c.id == managed.channel);
            if let Some(Mechanism::Mpi(mpi)) = channel.map(|c| &c.mechanism) {
                let labels: Vec<String> = mpi
                    .ranks
                    .iter()
                    .enumerate()
                    .map(|(rank, name)| format!("{name}[{rank}]"))
                    .collect();
                worlds.push((i, labels));
            }
        }
        if worlds.is_empty() {
            return self;
        }
        let names: Vec<&str> = plan.processes.iter().map(|p| p.name.as_ref()).collect();
        let labels = worlds
            .iter()
            .flat_map(|(_, l)| l.iter().map(String::as_str));
        let width = names
            .iter()
            .copied()
            .chain(labels)
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0);
        for (i, name) in names.iter().enumerate() {
            self.prefixes[i] = prefix_pair(name, i, width);
        }
        self.ranks = vec![None; names.len()];
        self.demux = (0..names.len()).map(|_| None).collect();
        for (i, labels) in worlds {
            let prefixes = labels
                .iter()
                .enumerate()
                .map(|(rank, label)| prefix_pair(label, i + rank + 1, width))
                .collect();
            self.ranks[i] = Some(prefixes);
            self.demux[i] = Some([Demux::new(labels.len()), Demux::new(labels.len())]);
        }
        self
    }

    /// Writes the lines of the ranks the plan wires to pipes into those
    /// pipes instead of the log ([`RankPipes`]).
    pub fn with_rank_pipes(mut self, pipes: RankPipes) -> Self {
        self.pipes = pipes;
        self
    }

    /// The pipes fed with ranks' lines.
    pub fn rank_pipes(&mut self) -> &mut RankPipes {
        &mut self.pipes
    }

    /// Also appends every instance's records to `dir/<name>.stdout.log` and
    /// `dir/<name>.stderr.log`, rotated as told; `dir` must exist
    /// ([`LogFiles::open`]).
    pub fn with_log_dir(
        mut self,
        dir: &Path,
        names: &[&str],
        rotation: Rotation,
    ) -> Result<Self, LogDirError> {
        self.files = Some(LogFiles::open(dir, names, rotation)?);
        self.set_plain();
        Ok(self)
    }

    /// Writes records as `format`, each line with a timestamp when
    /// `timestamps` is set (always in JSON); `processes` are the declared
    /// process of each instance, indexed as in [`LogWriter::new`].
    pub fn with_format(
        mut self,
        format: LogFormat,
        timestamps: bool,
        instances: &[&str],
        processes: &[&str],
    ) -> Self {
        self.format = format;
        self.timestamps = timestamps;
        if format == LogFormat::Json {
            self.route = [0, 0];
            self.json_names = instances
                .iter()
                .zip(processes)
                .map(|(instance, process)| {
                    let mut member = b",\"process\":".to_vec();
                    let _ = serde_json::to_writer(&mut member, process);
                    member.extend_from_slice(b",\"instance\":");
                    let _ = serde_json::to_writer(&mut member, instance);
                    member.into()
                })
                .collect();
        }
        self.set_plain();
        self
    }

    /// Also keeps the last `bytes` of records of each of `instances`
    /// instances in memory ([`Recent`]); 0 keeps none.
    pub fn with_recent(mut self, instances: usize, bytes: usize) -> Self {
        self.recent = (bytes > 0).then(|| Recent::new(instances, bytes));
        self.set_plain();
        self
    }

    /// Relays one more instance, the next index (an instance a reload
    /// adds): its prefix, JSON names, kept records and log files.
    pub fn add_instance(&mut self, name: &str, process: &str) -> Result<(), LogDirError> {
        let i = self.prefixes.len();
        // The others' width (names are ASCII), so columns stay aligned.
        let width = self
            .prefixes
            .first()
            .map_or(0, |p| p[0].len().saturating_sub(3));
        self.prefixes.push(prefix_pair(name, i, width));
        if self.format == LogFormat::Json {
            let mut member = b",\"process\":".to_vec();
            let _ = serde_json::to_writer(&mut member, process);
            member.extend_from_slice(b",\"instance\":");
            let _ = serde_json::to_writer(&mut member, name);
            self.json_names.push(member.into());
        }
        if !self.ranks.is_empty() {
            self.ranks.push(None);
        }
        if let Some(recent) = &mut self.recent {
            recent.add_instance();
        }
        match &mut self.files {
            Some(files) => files.add(name),
            None => Ok(()),
        }
    }

    /// The records kept in memory, if any are ([`LogWriter::with_recent`]).
    pub fn recent(&mut self) -> Option<&mut Recent> {
        self.recent.as_mut()
    }

    /// Writes one record of `instance` to `stream`.
    #[inline]
    pub fn write(&mut self, instance: usize, stream: Stream, record: Record<'_>) {
        if self.demux.get(instance).is_some_and(Option::is_some) {
            return self.write_launcher(instance, stream, record);
        }
        self.write_as(instance, None, stream, record, record);
    }

    /// Writes `record` under `rank`'s prefix (or the instance's); `raw` is
    /// the record as files, JSON and recent records keep it.
    #[inline]
    fn write_as(
        &mut self,
        instance: usize,
        rank: Option<usize>,
        stream: Stream,
        record: Record<'_>,
        raw: Record<'_>,
    ) {
        if !self.plain {
            return self.write_more(instance, rank, stream, record, raw);
        }
        let slot = stream as usize;
        let bytes = record.bytes;
        let colour = usize::from(self.color[slot]);
        let prefix = match rank_prefix(&self.ranks, instance, rank) {
            Some(pair) => &pair[colour],
            None => &self.prefixes[instance][colour],
        };
        let out = &mut self.queue[slot];
        out.reserve(prefix.len() + bytes.len() + 1);
        if record.starts_line {
            out.extend_from_slice(prefix);
        } else {
            out.extend_from_slice(&prefix[..prefix.len() - 3]);
            out.extend_from_slice(b" + ");
        }
        out.extend_from_slice(bytes);
        out.push(b'\n');
    }

    /// A record of an MPI world's launcher (`--tag-output`): its ranks'
    /// lines, put together again ([`Demux`]), go to their pipes or under
    /// their ranks' prefixes; mpirun's own under the launcher's.
    #[inline(never)]
    fn write_launcher(&mut self, instance: usize, stream: Stream, record: Record<'_>) {
        let Some(Some(demux)) = self.demux.get_mut(instance) else {
            return;
        };
        let mut demux = std::mem::take(&mut demux[stream as usize]);
        demux.push(record, &mut |piece| {
            self.write_piece(instance, stream, piece)
        });
        if let Some(Some(slot)) = self.demux.get_mut(instance) {
            slot[stream as usize] = demux;
        }
    }

    /// At the end of a launcher's stream: the lines its ranks left open.
    fn finish_launcher(&mut self, instance: usize, stream: Stream) {
        let Some(Some(demux)) = self.demux.get_mut(instance) else {
            return;
        };
        let mut demux = std::mem::take(&mut demux[stream as usize]);
        demux.finish(&mut |piece| self.write_piece(instance, stream, piece));
        if let Some(Some(slot)) = self.demux.get_mut(instance) {
            slot[stream as usize] = demux;
        }
    }

    /// One line of a rank (or of mpirun): into the rank's pipe, if it has
    /// one, else to the log (files keep it with its tag).
    fn write_piece(&mut self, instance: usize, stream: Stream, piece: Piece<'_>) {
        let slot = stream as usize;
        if let Some(k) = piece
            .rank
            .and_then(|rank| self.pipes.route(instance, slot, rank))
        {
            return self
                .pipes
                .push(k, piece.line, piece.starts_line, piece.ends_line);
        }
        let record = Record {
            bytes: piece.line,
            starts_line: piece.starts_line,
        };
        if self.plain {
            return self.write_as(instance, piece.rank, stream, record, record);
        }
        let mut tagged = Vec::with_capacity(piece.tag.len() + piece.line.len());
        if piece.starts_line {
            tagged.extend_from_slice(piece.tag);
        }
        tagged.extend_from_slice(piece.line);
        let raw = Record {
            bytes: &tagged,
            starts_line: piece.starts_line,
        };
        self.write_more(instance, piece.rank, stream, record, raw);
    }

    /// [`LogWriter::write`] with files, timestamps, JSON or recent records:
    /// out of line, so the plain relay stays as tight as without them.
    #[inline(never)]
    fn write_more(
        &mut self,
        instance: usize,
        rank: Option<usize>,
        stream: Stream,
        record: Record<'_>,
        raw: Record<'_>,
    ) {
        let slot = stream as usize;
        let bytes = record.bytes;
        // Files and JSON keep mpirun's rank tag; the relayed text shows the
        // rank in its prefix.
        let stamp: &[u8] = if self.timestamps { &self.stamp } else { b"" };
        if let Some(files) = &mut self.files {
            files.write(instance, slot, raw, stamp);
        }
        if let Some(recent) = &mut self.recent {
            recent.push(instance, stream, raw, &self.stamp[..24]);
        }
        if self.format == LogFormat::Json {
            return self.write_json(instance, stream, raw);
        }
        let colour = usize::from(self.color[slot]);
        let prefix = match rank_prefix(&self.ranks, instance, rank) {
            Some(pair) => &pair[colour],
            None => &self.prefixes[instance][colour],
        };
        let out = &mut self.queue[slot];
        out.reserve(prefix.len() + stamp.len() + bytes.len() + 1);
        if record.starts_line {
            out.extend_from_slice(prefix);
            out.extend_from_slice(stamp);
        } else {
            out.extend_from_slice(&prefix[..prefix.len() - 3]);
            out.extend_from_slice(b" + ");
        }
        out.extend_from_slice(bytes);
        out.push(b'\n');
    }

    /// Whether records go out as they did before files, timestamps, JSON
    /// and recent records: prefixed, to their own stream, and nowhere else.
    fn set_plain(&mut self) {
        self.plain = self.files.is_none()
            && self.recent.is_none()
            && !self.timestamps
            && self.format == LogFormat::Text;
    }

    /// One record as a JSON object on its own line. A line that is not
    /// UTF-8 is written as an array of its byte values (as `journalctl -o
    /// json` does), so every line round-trips exactly.
    fn write_json(&mut self, instance: usize, stream: Stream, record: Record<'_>) {
        let out = &mut self.queue[self.route[stream as usize]];
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(&self.stamp[..24]);
        out.push(b'"');
        out.extend_from_slice(&self.json_names[instance]);
        out.extend_from_slice(match stream {
            Stream::Stdout => b",\"stream\":\"stdout\"",
            Stream::Stderr => b",\"stream\":\"stderr\"",
        });
        if !record.starts_line {
            out.extend_from_slice(b",\"continued\":true");
        }
        out.extend_from_slice(b",\"line\":");
        match std::str::from_utf8(record.bytes) {
            Ok(text) => {
                let _ = serde_json::to_writer(&mut *out, text);
            }
            Err(_) => {
                out.push(b'[');
                for (i, byte) in record.bytes.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let _ = std::io::Write::write_fmt(out, format_args!("{byte}"));
                }
                out.push(b']');
            }
        }
        out.extend_from_slice(b"}\n");
    }

    /// Reads what `source`'s pipe holds (a few reads while each fills
    /// `scratch`) and relays its records, each copied once, from `scratch`
    /// into the output queue; `observe`, if any, sees every record. A queue that
    /// reached a batch is written at once, while its bytes are fresh.
    pub fn relay(
        &mut self,
        source: LogSource<'_>,
        scratch: &mut [u8],
        mut observe: Option<&mut dyn FnMut(Record<'_>)>,
    ) -> Relayed {
        let LogSource {
            fd,
            buffer,
            instance,
            stream,
        } = source;
        let out = self.route[stream as usize];
        // Records kept in memory for `logs` reach followers once per pass
        // of the event loop, from a ring of a few records per instance:
        // reads of a pipe's default size keep what a pass relays within
        // reach of that ring, as before pipes grew. Such a run's pipes are
        // not grown.
        let keeps_records = self.recent.is_some();
        let size = if keeps_records {
            CHUNK.min(scratch.len())
        } else {
            scratch.len()
        };
        let scratch = &mut scratch[..size];
        let mut relayed = Relayed::Empty;
        for _ in 0..READS_PER_TURN {
            // No more than the output has room for below its high water:
            // when it is a pipe its reader takes 64 KiB at a time, and a
            // megabyte read ahead of it leaves the writer and the reader
            // waiting on ipc-run by turns instead of running beside it.
            let room = HIGH_WATER
                .saturating_sub(self.queued(out))
                .clamp(CHUNK.min(scratch.len()), scratch.len());
            let n = match nix::unistd::read(fd, &mut scratch[..room]) {
                Ok(0) => return Relayed::Closed,
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(_) => return Relayed::Closed,
            };
            relayed = Relayed::Data;
            self.relay_bytes(instance, stream, buffer, &scratch[..n], &mut observe);
            if self.queued(out) >= self.batch[out].min(BATCH) && !self.blocked[out] {
                self.flush_stream(out);
            }
            if n >= PIPE_DEFAULT / 4 * PIPE_FULL_QUARTERS && !keeps_records {
                self.grow_if_full(fd, &mut buffer.pipe, n);
            }
            // A short read emptied the pipe; a stalled output takes no more.
            if n < room || self.stalled(stream) || self.pipes.stalled(instance, stream as usize) {
                break;
            }
        }
        relayed
    }

    /// At the end of `source`: reads what is left without blocking (at
    /// most `budget` bytes: a stray descendant may still be writing),
    /// relays it with the last line, and flushes.
    pub fn close(
        &mut self,
        source: LogSource<'_>,
        scratch: &mut [u8],
        budget: usize,
        mut observe: Option<&mut dyn FnMut(Record<'_>)>,
    ) {
        let LogSource {
            fd,
            buffer,
            instance,
            stream,
        } = source;
        let mut budget = budget;
        while budget > 0 {
            match nix::unistd::read(fd, scratch) {
                Ok(0) => break,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.relay_bytes(instance, stream, buffer, &scratch[..n], &mut observe);
                }
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        self.stamp_now();
        let mut lines = 0;
        buffer.finish(|record| {
            lines += u64::from(record.starts_line);
            if let Some(observe) = observe.as_mut() {
                observe(record);
            }
            self.write(instance, stream, record);
        });
        self.count(instance, stream, lines, 0);
        self.open_pipes = self.open_pipes.saturating_sub(1);
        if let Some(room) = &mut self.pipe_room {
            room.grown = room.grown.saturating_sub(buffer.pipe.grown);
        }
        buffer.pipe = PipeSize::default();
        self.finish_launcher(instance, stream);
        self.pipes.closed(instance, stream as usize);
        self.flush();
    }

    /// After a read of `read` bytes from the pipe `fd`: grows the pipe if
    /// the read found it full and there is room ([`PipeRoom`]). Its size is
    /// read once, at the first read that may have found it full.
    #[inline(never)]
    fn grow_if_full(&mut self, fd: BorrowedFd<'_>, pipe: &mut PipeSize, read: usize) {
        use nix::fcntl::{FcntlArg, fcntl};
        if pipe.fixed {
            return;
        }
        if pipe.capacity == 0 {
            match fcntl(fd, FcntlArg::F_GETPIPE_SZ) {
                Ok(capacity) if capacity > 0 => pipe.capacity = capacity as usize,
                _ => {
                    pipe.fixed = true;
                    return;
                }
            }
        }
        let room = self.pipe_room.get_or_insert_with(PipeRoom::of_host);
        let Some(next) = room.next(pipe.capacity, read, self.open_pipes) else {
            return;
        };
        // The kernel may round the size up (to a power of two pages).
        match fcntl(fd, FcntlArg::F_SETPIPE_SZ(next as libc::c_int)) {
            Ok(got) if got as usize > pipe.capacity => {
                let more = got as usize - pipe.capacity;
                room.grown += more;
                pipe.grown += more;
                pipe.capacity = got as usize;
            }
            // EPERM past the user's limits, ENOMEM: it stays as it is.
            _ => pipe.fixed = true,
        }
    }

    fn relay_bytes(
        &mut self,
        instance: usize,
        stream: Stream,
        buffer: &mut LineBuffer,
        data: &[u8],
        observe: &mut Option<&mut dyn FnMut(Record<'_>)>,
    ) {
        let read = data.len();
        let (data, mut lines) = match observe {
            None => self.relay_pieces(instance, stream, buffer, data),
            Some(_) => (data, 0),
        };
        // One clock read per read: its records arrived together.
        self.stamp_now();
        buffer.push(data, |record| {
            lines += u64::from(record.starts_line);
            if let Some(observe) = observe.as_mut() {
                observe(record);
            }
            self.write(instance, stream, record);
        });
        self.count(instance, stream, lines, read);
    }

    #[inline]
    fn count(&mut self, instance: usize, stream: Stream, lines: u64, bytes: usize) {
        if self.counts.len() <= instance {
            self.counts.resize(instance + 1, Default::default());
        }
        let counts = &mut self.counts[instance][stream as usize];
        counts.lines += lines;
        counts.bytes += bytes as u64;
    }

    /// What was read from `instance`'s stdout and stderr so far.
    pub fn counts(&self, instance: usize) -> [StreamCounts; 2] {
        self.counts.get(instance).copied().unwrap_or_default()
    }

    /// The pipes MPI ranks' lines go to, to read their counts.
    pub fn rank_pipes_ref(&self) -> &RankPipes {
        &self.pipes
    }

    /// [`LogWriter::relay_whole_lines`] over a read of any size, in pieces
    /// of at most [`CHUNK`] bytes that start where a line starts: a line
    /// that fits in a piece is shorter than a record. A piece without a
    /// newline (a line longer than a record) and what follows go to
    /// [`LineBuffer::push`].
    #[inline]
    fn relay_pieces<'d>(
        &mut self,
        instance: usize,
        stream: Stream,
        buffer: &LineBuffer,
        data: &'d [u8],
    ) -> (&'d [u8], u64) {
        let mut rest = data;
        let mut lines = 0;
        while rest.len() > CHUNK {
            let (tail, count) = self.relay_whole_lines(instance, stream, buffer, &rest[..CHUNK]);
            if count == 0 {
                return (rest, lines);
            }
            lines += count;
            rest = &rest[CHUNK - tail.len()..];
            // Written as it fills, so the queue stays small and in cache
            // while a large read is relayed.
            let slot = stream as usize;
            if self.queued(slot) >= self.batch[slot].min(BATCH) && !self.blocked[slot] {
                self.flush_stream(slot);
            }
        }
        let (tail, count) = self.relay_whole_lines(instance, stream, buffer, rest);
        (tail, lines + count)
    }

    /// The plain relay's fast path: while no line of `instance` spans
    /// reads, the whole lines of `data` go to the queue as they came, each
    /// behind its prefix, its newline copied with it; what follows the last
    /// newline is returned for [`LineBuffer::push`], with the number of
    /// lines relayed here (for `status`). The records are those
    /// `push` would cut (a line within one read of at most [`CHUNK`] bytes
    /// is shorter than a record), without making each one: at 100-byte
    /// lines the per-record steps cost as much as the copy.
    #[inline]
    fn relay_whole_lines<'d>(
        &mut self,
        instance: usize,
        stream: Stream,
        buffer: &LineBuffer,
        data: &'d [u8],
    ) -> (&'d [u8], u64) {
        if !self.plain
            || data.len() > CHUNK
            || !buffer.pending.is_empty()
            || buffer.continuing
            || self.demux.get(instance).is_some_and(Option::is_some)
        {
            return (data, 0);
        }
        let Some(last) = memchr::memrchr(b'\n', data) else {
            return (data, 0);
        };
        let slot = stream as usize;
        let prefix = &self.prefixes[instance][usize::from(self.color[slot])];
        let out = &mut self.queue[slot];
        let lines = &data[..=last];
        let count = match Padded::new(prefix) {
            #[cfg(target_arch = "x86_64")]
            Some(pad) if let Some(avx2) = memchr::arch::x86_64::avx2::memchr::One::new(b'\n') => {
                copy_lines(out, lines, avx2.iter(lines), |out| pad.put(out))
            }
            Some(pad) => copy_lines(out, lines, memchr::memchr_iter(b'\n', lines), |out| {
                pad.put(out)
            }),
            None => copy_lines(out, lines, memchr::memchr_iter(b'\n', lines), |out| {
                out.extend_from_slice(prefix)
            }),
        };
        (&data[last + 1..], count)
    }

    /// Sets the stamp to now, when lines are stamped.
    #[inline]
    fn stamp_now(&mut self) {
        if !self.plain {
            self.stamp = now_stamp();
        }
    }

    /// Bytes queued for output `stream`, not written yet.
    pub fn backlog(&self, stream: Stream) -> usize {
        self.queued(stream as usize)
    }

    fn queued(&self, slot: usize) -> usize {
        self.queue[slot].len() - self.sent[slot]
    }

    /// Whether the output that the processes' `stream` pipes feed holds
    /// more than [`HIGH_WATER`]: those pipes are not read until it drains.
    pub fn stalled(&self, stream: Stream) -> bool {
        self.queued(self.route[stream as usize]) > HIGH_WATER
    }

    /// The fd of output `stream`, to wait for POLLOUT on.
    pub fn output(&self, stream: Stream) -> BorrowedFd<'_> {
        self.out[stream as usize].as_fd()
    }

    /// Writes what the outputs take now, without blocking on a
    /// non-blocking output; call before waiting for more.
    pub fn flush(&mut self) {
        if let Some(files) = &mut self.files {
            files.flush();
            self.write_errors += std::mem::take(&mut files.errors);
        }
        self.blocked = [false, false];
        self.flush_stream(0);
        self.flush_stream(1);
        self.pipes.flush();
        self.write_errors += std::mem::take(&mut self.pipes.lost);
    }

    fn flush_stream(&mut self, slot: usize) {
        loop {
            let rest = &self.queue[slot][self.sent[slot]..];
            if rest.is_empty() {
                self.queue[slot].clear();
                self.sent[slot] = 0;
                return;
            }
            // Whole records of at most a batch; a longer record alone.
            // The queue ends with a whole record, so a rest that fits is
            // written as it is.
            let batch = self.batch[slot];
            let len = if rest.len() <= batch {
                rest.len()
            } else {
                match memchr::memrchr(b'\n', &rest[..batch]) {
                    Some(end) => end + 1,
                    None => memchr::memchr(b'\n', rest).map_or(rest.len(), |end| end + 1),
                }
            };
            match write_out(self.out[slot].as_fd(), &rest[..len], self.socket[slot]) {
                Ok(0) => self.drop_queue(slot),
                Ok(n) => self.sent[slot] += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    self.blocked[slot] = true;
                    // Compact once the written part dominates.
                    if self.sent[slot] > self.queue[slot].len() / 2 {
                        self.queue[slot].drain(..self.sent[slot]);
                        self.sent[slot] = 0;
                    }
                    return;
                }
                Err(_) => self.drop_queue(slot),
            }
        }
    }

    /// The output failed: the queued records are dropped and counted.
    fn drop_queue(&mut self, slot: usize) {
        let rest = &self.queue[slot][self.sent[slot]..];
        self.write_errors += memchr::memchr_iter(b'\n', rest).count() as u64;
        self.queue[slot].clear();
        self.sent[slot] = 0;
    }

    /// Writes what is queued, waiting for the outputs until `deadline`;
    /// what is left then is dropped and counted (a reader that stopped
    /// reading must not keep ipc-run from ending and cleaning up).
    pub fn finish(&mut self, deadline: std::time::Instant) {
        if let Some(mut files) = self.files.take() {
            files.finish();
            self.write_errors += files.errors;
        }
        for slot in 0..2 {
            self.flush_stream(slot);
            while self.sent[slot] < self.queue[slot].len() {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
                if left.is_zero() {
                    break;
                }
                let mut fds = [PollFd::new(self.out[slot].as_fd(), PollFlags::POLLOUT)];
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(_) | Err(Errno::EINTR) => self.flush_stream(slot),
                    Err(_) => break,
                }
            }
            if self.sent[slot] < self.queue[slot].len() {
                self.drop_queue(slot);
            }
        }
        self.pipes.finish(deadline);
        self.write_errors += std::mem::take(&mut self.pipes.lost);
    }

    /// Queues a line of ipc-run's own (a summary, a message) for stderr.
    pub fn message(&mut self, line: &str) {
        let out = &mut self.queue[1];
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        self.flush();
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.finish(std::time::Instant::now() + super::DRAIN_TIMEOUT);
    }
}

/// The largest batch written at once to output `fd`, `other` being
/// ipc-run's other output. A write to a pipe of at most `PIPE_BUF` bytes
/// is atomic: no other writer's bytes land inside it. That matters where
/// another writer ipc-run knows of shares the output: a process of the
/// plan wired to it (`shared`), or ipc-run's other stream on the same
/// pipe, socket or terminal (`2>&1`, a terminal for both). There a batch
/// is `PIPE_BUF`, as a batch that is cut by a partial write could let the
/// other writer in mid-record. Everywhere else (a regular file, `/dev/null`,
/// a pipe only ipc-run writes to) it is [`BATCH`]: fewer system calls, and
/// records stay whole because no one else writes between them.
fn batch_size(fd: BorrowedFd<'_>, other: BorrowedFd<'_>, shared: bool) -> usize {
    use nix::sys::stat::SFlag;
    let Ok(stat) = nix::sys::stat::fstat(fd) else {
        return SHARED_BATCH;
    };
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    let interleaves = kind == SFlag::S_IFIFO
        || kind == SFlag::S_IFSOCK
        || nix::unistd::isatty(fd).unwrap_or(false);
    if !interleaves {
        return BATCH;
    }
    let same = nix::sys::stat::fstat(other)
        .is_ok_and(|o| o.st_dev == stat.st_dev && o.st_ino == stat.st_ino);
    if shared || same { SHARED_BATCH } else { BATCH }
}

/// Whether `fd` is a socket.
fn is_socket(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::stat::SFlag;
    nix::sys::stat::fstat(fd).is_ok_and(|stat| {
        SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK
    })
}

/// One write of `buf` to an output; a socket is sent to without blocking,
/// whatever its (shared) O_NONBLOCK flag says, and without SIGPIPE.
fn write_out(fd: BorrowedFd<'_>, buf: &[u8], socket: bool) -> Result<usize, Errno> {
    use nix::sys::socket::{MsgFlags, send};
    use std::os::fd::AsRawFd;
    if socket {
        send(
            fd.as_raw_fd(),
            buf,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        )
    } else {
        nix::unistd::write(fd, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut buffer = LineBuffer::default();
        let mut out = Vec::new();
        let mut emit = |r: Record<'_>| out.push((r.bytes.to_vec(), r.starts_line));
        for chunk in chunks {
            buffer.push(chunk, &mut emit);
            assert!(buffer.held() < CHUNK);
        }
        buffer.finish(&mut emit);
        out
    }

    #[test]
    fn splits_lines_across_reads() {
        let out = records(&[b"ab", b"c\nde\n\nf", b"g"]);
        assert_eq!(
            out,
            vec![
                (b"abc".to_vec(), true),
                (b"de".to_vec(), true),
                (b"".to_vec(), true),
                (b"fg".to_vec(), true),
            ]
        );
    }

    #[test]
    fn non_utf8_passes_through() {
        let out = records(&[b"\xff\xfe\x00x\n\xc3"]);
        assert_eq!(
            out,
            vec![(b"\xff\xfe\x00x".to_vec(), true), (b"\xc3".to_vec(), true)]
        );
    }

    #[test]
    fn long_lines_are_cut_and_rejoin_exactly() {
        let line: Vec<u8> = (0..(CHUNK * 3 + 17)).map(|i| (i % 251) as u8 | 1).collect();
        let line: Vec<u8> = line
            .into_iter()
            .map(|b| if b == b'\n' { b'x' } else { b })
            .collect();
        let mut input = line.clone();
        input.extend_from_slice(b"\nnext\n");
        for step in [1000, 4096, CHUNK, CHUNK + 1, input.len()] {
            let parts: Vec<&[u8]> = input.chunks(step).collect();
            let out = records(&parts);
            let first = &out[0];
            assert!(first.1);
            let mut joined = Vec::new();
            let mut n = 0;
            for (bytes, starts) in &out {
                if *starts && n > 0 {
                    break;
                }
                assert!(bytes.len() <= CHUNK);
                joined.extend_from_slice(bytes);
                n += 1;
            }
            assert_eq!(joined, line, "step {step}");
            assert_eq!(out[n], (b"next".to_vec(), true));
        }
    }

    #[test]
    fn writer_prefixes_and_pads() {
        let (r1, w1) = nix::unistd::pipe().unwrap();
        let (r2, w2) = nix::unistd::pipe().unwrap();
        let mut writer = LogWriter::new(&["a", "long"], w1, w2, [false, false]);
        writer.write(
            0,
            Stream::Stdout,
            Record {
                bytes: b"hi",
                starts_line: true,
            },
        );
        writer.write(
            1,
            Stream::Stderr,
            Record {
                bytes: b"\xff",
                starts_line: false,
            },
        );
        drop(writer);
        let read = |fd: OwnedFd| {
            let mut f = std::fs::File::from(fd);
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut v).unwrap();
            v
        };
        assert_eq!(read(r1), b"a    | hi\n");
        assert_eq!(read(r2), b"long + \xff\n");
    }

    #[test]
    fn log_files_hold_each_stream_byte_exact() {
        let dir = std::env::temp_dir().join(format!("ipc-run-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let null = || -> OwnedFd {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .unwrap()
                .into()
        };
        let mut writer = LogWriter::new(&["a"], null(), null(), [false, false])
            .with_log_dir(&dir, &["a"], Rotation::default())
            .unwrap();
        let long: Vec<u8> = vec![b'x'; CHUNK * 2 + 3];
        let mut input = b"first\n\xff\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast");
        let mut buffer = LineBuffer::default();
        for part in input.chunks(1000) {
            buffer.push(part, |r: Record<'_>| writer.write(0, Stream::Stdout, r));
        }
        buffer.finish(|r: Record<'_>| writer.write(0, Stream::Stdout, r));
        writer.write(
            0,
            Stream::Stderr,
            Record {
                bytes: b"oops",
                starts_line: true,
            },
        );
        drop(writer);
        let mut expected = input.clone();
        expected.push(b'\n');
        assert_eq!(std::fs::read(dir.join("a.stdout.log")).unwrap(), expected);
        assert_eq!(std::fs::read(dir.join("a.stderr.log")).unwrap(), b"oops\n");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join("a.stdout.log"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recent_keeps_the_last_whole_records_within_its_size() {
        let mut writer =
            LogWriter::new(&["a", "b"], null(), null(), [false, false]).with_recent(2, 150);
        fn line(bytes: &[u8]) -> Record<'_> {
            Record {
                bytes,
                starts_line: true,
            }
        }
        for i in 0..10u8 {
            let ten = [b'0' + i; 10];
            writer.write(0, Stream::Stdout, line(&ten));
        }
        writer.write(0, Stream::Stderr, line(b"err"));
        let long = [b'x'; 200];
        writer.write(1, Stream::Stdout, line(&long));
        let recent = writer.recent().unwrap();
        let kept = recent.records(0);
        let bytes: Vec<&[u8]> = kept.iter().map(|r| r.bytes.as_slice()).collect();
        assert_eq!(bytes, [b"8888888888".as_slice(), b"9999999999", b"err"]);
        assert_eq!(kept[2].stream, Stream::Stderr);
        assert_eq!(kept[0].time.len(), 24);
        // A record larger than the whole room is not kept.
        assert!(recent.records(1).is_empty());
        // Numbered in the order read, across instances; a follower asks
        // for what came after what it was sent.
        assert_eq!(kept.iter().map(|r| r.seq).collect::<Vec<_>>(), [8, 9, 10]);
        // The record too long to keep was numbered 11 all the same.
        assert_eq!(recent.next_seq(), 12);
        let after: Vec<u64> = recent.records_from(0, 10).iter().map(|r| r.seq).collect();
        assert_eq!(after, [10]);
        assert!(recent.records_from(0, 11).is_empty());
        // A follower sent everything before 7 missed record 7 (pushed out);
        // one sent everything before 8 missed nothing of `a`; `b`'s record
        // 11 was never kept.
        assert!(recent.dropped_since(0, 7));
        assert!(!recent.dropped_since(0, 8));
        assert!(recent.dropped_since(1, 11));
        assert!(!recent.dropped_since(1, 12));
    }

    #[test]
    fn write_errors_are_counted() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let (_r, w) = nix::unistd::pipe().unwrap();
        let mut writer = LogWriter::new(&["a"], full.into(), w, [true, true]);
        writer.write(
            0,
            Stream::Stdout,
            Record {
                bytes: b"x",
                starts_line: true,
            },
        );
        writer.flush();
        assert_eq!(writer.write_errors, 1);
    }

    /// The record splitter as it was before records were taken straight
    /// from the read: every byte collected, then cut.
    #[derive(Default)]
    struct OldLineBuffer {
        pending: Vec<u8>,
        continuing: bool,
    }

    impl OldLineBuffer {
        fn push(&mut self, data: &[u8], out: &mut Vec<(Vec<u8>, bool)>) {
            self.pending.extend_from_slice(data);
            let mut start = 0;
            while let Some(offset) = memchr::memchr(b'\n', &self.pending[start..]) {
                let end = start + offset;
                let mut piece = start;
                loop {
                    let piece_end = end.min(piece + CHUNK);
                    out.push((self.pending[piece..piece_end].to_vec(), !self.continuing));
                    self.continuing = true;
                    piece = piece_end;
                    if piece >= end {
                        break;
                    }
                }
                self.continuing = false;
                start = end + 1;
            }
            while self.pending.len() - start >= CHUNK {
                out.push((
                    self.pending[start..start + CHUNK].to_vec(),
                    !self.continuing,
                ));
                self.continuing = true;
                start += CHUNK;
            }
            self.pending.drain(..start);
        }

        fn finish(&mut self, out: &mut Vec<(Vec<u8>, bool)>) {
            if !self.pending.is_empty() {
                out.push((self.pending.clone(), !self.continuing));
            }
        }
    }

    /// Input made of lines of random lengths (some over [`CHUNK`], some an
    /// exact multiple of it), the last one maybe without its newline.
    fn input() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let len = prop_oneof![
            8 => 0usize..200,
            1 => Just(CHUNK),
            1 => (CHUNK - 2)..(CHUNK + 2),
            1 => 0usize..(3 * CHUNK),
        ];
        (
            prop::collection::vec((len, any::<u8>()), 0..8),
            any::<bool>(),
        )
            .prop_map(|(lines, newline_at_end)| {
                let mut input = Vec::new();
                for (len, byte) in lines {
                    let byte = if byte == b'\n' { b'x' } else { byte };
                    input.extend(std::iter::repeat_n(byte, len));
                    input.push(b'\n');
                }
                if !newline_at_end {
                    input.pop();
                }
                input
            })
    }

    /// `input` cut into consecutive parts of the lengths in `cuts`, taken
    /// in turn again and again (the last part what is left).
    fn cut_into<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut parts = Vec::new();
        let mut rest = input;
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (part, tail) = rest.split_at((*cut).min(rest.len()));
            parts.push(part);
            rest = tail;
        }
        parts
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn records_match_the_old_splitter_for_any_chunking(
            input in input(),
            cuts in proptest::collection::vec(1usize..(2 * CHUNK), 1..16),
        ) {
            let parts = cut_into(&input, &cuts);
            let mut old = OldLineBuffer::default();
            let mut expected = Vec::new();
            for part in &parts {
                old.push(part, &mut expected);
            }
            old.finish(&mut expected);
            proptest::prop_assert_eq!(records(&parts), expected);
        }
    }

    /// A seqpacket socket pair: each write of the writer arrives as one
    /// message, so batches can be seen.
    fn packets() -> (OwnedFd, OwnedFd) {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    fn received(fd: &OwnedFd) -> Vec<Vec<u8>> {
        use nix::sys::socket::{MsgFlags, recv};
        use std::os::fd::AsRawFd;
        let mut out = Vec::new();
        let mut buf = vec![0; 4 * CHUNK];
        while let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    fn null() -> OwnedFd {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap()
            .into()
    }

    /// Relays `chunks`, written one by one into a pipe, as instance 0.
    fn relay_through_pipe(writer: &mut LogWriter, chunks: &[&[u8]]) {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut buffer = LineBuffer::default();
        let mut scratch = vec![0; CHUNK];
        let mut seen = 0;
        for chunk in chunks {
            nix::unistd::write(&w, chunk).unwrap();
            let source = LogSource {
                fd: r.as_fd(),
                buffer: &mut buffer,
                instance: 0,
                stream: Stream::Stdout,
            };
            let got = writer.relay(source, &mut scratch, Some(&mut |_| seen += 1));
            assert_eq!(got, Relayed::Data);
        }
        drop(w);
        let source = LogSource {
            fd: r.as_fd(),
            buffer: &mut buffer,
            instance: 0,
            stream: Stream::Stdout,
        };
        assert_eq!(
            writer.relay(source, &mut scratch, Some(&mut |_| seen += 1)),
            Relayed::Closed
        );
        let source = LogSource {
            fd: r.as_fd(),
            buffer: &mut buffer,
            instance: 0,
            stream: Stream::Stdout,
        };
        writer.close(source, &mut scratch, CHUNK, Some(&mut |_| seen += 1));
        assert!(seen > 0);
    }

    /// What relaying `parts` as instance 0 of a plain writer puts out, each
    /// part written into a pipe and read at once: record by record (with an
    /// observer) or through the fast path for whole lines (without).
    fn relayed(parts: &[&[u8]], observed: bool) -> Vec<u8> {
        static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ipc-run-relayed-{}-{n}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = LogWriter::new(&["a", "bcd"], file.into(), null(), [false, false]);
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut buffer = LineBuffer::default();
        let mut scratch = vec![0; CHUNK];
        let mut seen = 0;
        let mut relay = |writer: &mut LogWriter, buffer: &mut LineBuffer, end: bool| {
            let source = LogSource {
                fd: r.as_fd(),
                buffer,
                instance: 0,
                stream: Stream::Stdout,
            };
            let mut note = |_: Record<'_>| seen += 1;
            let observe: Option<&mut dyn FnMut(Record<'_>)> = observed.then_some(&mut note);
            if end {
                writer.close(source, &mut scratch, CHUNK, observe);
            } else {
                writer.relay(source, &mut scratch, observe);
            }
        };
        for part in parts {
            nix::unistd::write(&w, part).unwrap();
            relay(&mut writer, &mut buffer, false);
        }
        drop(w);
        relay(&mut writer, &mut buffer, true);
        drop(writer);
        let out = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        out
    }

    /// What relaying `input` as one read (of any size) puts out, through
    /// the fast path for whole lines or record by record (`observed`).
    fn relayed_in_one_read(input: &[u8], observed: bool) -> Vec<u8> {
        let path = std::env::temp_dir().join(format!(
            "ipc-run-one-read-{}-{observed}",
            std::process::id()
        ));
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = LogWriter::new(&["a", "bcd"], file.into(), null(), [false, false]);
        let mut buffer = LineBuffer::default();
        let mut seen = 0;
        let mut note = |_: Record<'_>| seen += 1;
        let mut observe: Option<&mut dyn FnMut(Record<'_>)> = observed.then_some(&mut note);
        writer.relay_bytes(0, Stream::Stdout, &mut buffer, input, &mut observe);
        buffer.finish(|record| writer.write(0, Stream::Stdout, record));
        drop(writer);
        let out = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
        #[test]
        fn whole_lines_relay_as_their_records_do(
            input in input(),
            cuts in proptest::collection::vec(1usize..60_000, 1..16),
        ) {
            let parts = cut_into(&input, &cuts);
            proptest::prop_assert_eq!(relayed(&parts, false), relayed(&parts, true));
        }
    }

    #[test]
    fn whole_lines_relay_with_their_prefix_and_newline() {
        let out = relayed(&[b"one\ntw", b"o\n\nthr", b"ee\nfour\n", b"five"], false);
        assert_eq!(
            out,
            b"a   | one\na   | two\na   | \na   | three\na   | four\na   | five\n"
        );
    }

    #[test]
    fn prefixes_go_before_records_that_span_reads() {
        let (rx, tx) = packets();
        let mut writer = LogWriter::new(&["a", "bcd"], tx, null(), [false, false]);
        relay_through_pipe(&mut writer, &[b"one\ntw", b"o", b"\n\nthr", b"ee"]);
        let out: Vec<u8> = received(&rx).concat();
        assert_eq!(out, b"a   | one\na   | two\na   | \na   | three\n");
    }

    #[test]
    fn batches_are_whole_records_and_pipe_buf_when_shared() {
        let line = |n: usize| {
            let mut v = vec![b'y'; n];
            v.push(b'\n');
            v
        };
        let mut input = Vec::new();
        for _ in 0..100 {
            input.extend(line(90));
        }
        input.extend(line(10_000));
        for _ in 0..100 {
            input.extend(line(90));
        }
        for (shared, limit) in [(true, SHARED_BATCH), (false, BATCH)] {
            let (rx, tx) = packets();
            let mut writer =
                LogWriter::new(&["a"], tx, null(), [false, false]).with_stdout_shared(shared);
            relay_through_pipe(&mut writer, &[&input]);
            let batches = received(&rx);
            let mut expected = Vec::new();
            for l in input.split_inclusive(|&b| b == b'\n') {
                expected.extend_from_slice(b"a | ");
                expected.extend_from_slice(l);
            }
            assert_eq!(batches.concat(), expected, "shared {shared}");
            for batch in &batches {
                assert_eq!(batch.last(), Some(&b'\n'));
                // Only the record larger than a batch goes out alone.
                assert!(
                    batch.len() <= limit || memchr::memchr_iter(b'\n', batch).count() == 1,
                    "a batch of {} with shared {shared}",
                    batch.len()
                );
            }
            if shared {
                assert!(batches.len() > 4);
            }
        }
    }

    #[test]
    fn only_an_at_stdout_edge_shares_ipc_runs_stdout() {
        let plan_of = |text: &str| {
            let topology =
                crate::topology::Topology::parse(Path::new("t.toml"), text.into()).expect("valid");
            crate::plan::plan(&topology, &crate::plan::Limits::default())
                .expect("valid")
                .plan
        };
        let two = "[process.a]\ncmd = [\"a\"]\n[process.b]\ncmd = [\"b\"]\n";
        let piped = format!("{two}[[edge]]\nfrom = \"a\"\nto = \"b\"\n");
        let wired = format!("{two}[[edge]]\nfrom = \"a\"\nto = \"@stdout\"\n");
        assert!(!plan_writes_stdout(&plan_of(two)));
        assert!(!plan_writes_stdout(&plan_of(&piped)));
        assert!(plan_writes_stdout(&plan_of(&wired)));
    }

    #[test]
    fn a_pipe_found_full_doubles_up_to_the_largest_size() {
        let room = PipeRoom::new(1 << 20, 16384);
        let k = 1024;
        // Not full: a read of less than three quarters of its capacity.
        assert_eq!(room.next(64 * k, 47 * k, 2), None);
        assert_eq!(room.next(64 * k, 64 * k, 2), Some(128 * k));
        assert_eq!(room.next(64 * k, 48 * k, 2), Some(128 * k));
        assert_eq!(room.next(512 * k, 512 * k, 2), Some(1024 * k));
        assert_eq!(
            room.next(1024 * k, 1024 * k, 2),
            None,
            "at the largest size"
        );
        // A smaller largest size (fs.pipe-max-size) bounds it.
        let small = PipeRoom::new(256 * k, 16384);
        assert_eq!(small.next(128 * k, 128 * k, 2), Some(256 * k));
        assert_eq!(small.next(256 * k, 256 * k, 2), None);
        assert_eq!(PipeRoom::new(0, 0).next(64 * k, 64 * k, 1), None);
    }

    #[test]
    fn pipes_grow_within_the_run_budget_and_their_share_of_it() {
        let k = 1024;
        let mut room = PipeRoom::new(1 << 20, 16384);
        // 16384 pages: 64 MiB soft; the budget is a quarter, 16 MiB.
        assert_eq!(room.budget, PIPE_BUDGET);
        room.grown = PIPE_BUDGET - 64 * k;
        assert_eq!(room.next(64 * k, 64 * k, 2), Some(128 * k));
        assert_eq!(room.next(128 * k, 128 * k, 2), None, "over the budget");
        // A quarter of a small soft limit (1024 pages, 4 MiB): 1 MiB.
        let mut small = PipeRoom::new(1 << 20, 1024);
        assert_eq!(small.budget, 1 << 20);
        small.grown = (1 << 20) - 64 * k;
        assert_eq!(small.next(64 * k, 64 * k, 2), Some(128 * k));
        small.grown += 64 * k;
        assert_eq!(small.next(64 * k, 64 * k, 2), None);
        // A pipe's share of the budget among the open ones: 16 MiB over
        // 100 pipes is 160 KiB, room to double once; over more than 256
        // pipes (128 processes) less than a doubling.
        let room = PipeRoom::new(1 << 20, 16384);
        assert_eq!(room.next(64 * k, 64 * k, 100), Some(128 * k));
        assert_eq!(room.next(128 * k, 128 * k, 100), None);
        assert_eq!(room.next(64 * k, 64 * k, 256), Some(128 * k));
        assert_eq!(room.next(64 * k, 64 * k, 257), None);
        // No soft limit (0): the budget alone bounds it.
        let free = PipeRoom::new(1 << 20, 0);
        assert_eq!(free.next(512 * k, 512 * k, 2), Some(1024 * k));
        assert_eq!(free.budget, PIPE_BUDGET);
    }

    #[test]
    fn reads_larger_than_a_record_relay_as_their_records_do() {
        // Lines of every length around CHUNK, in one read of 1 MiB.
        let mut input = Vec::new();
        let mut len = 0;
        while input.len() < (1 << 20) - 3 * CHUNK {
            input.extend(std::iter::repeat_n(b'a' + (len % 26) as u8, len));
            input.push(b'\n');
            len = if len > CHUNK + 2 { 0 } else { len * 3 + 1 };
        }
        input.extend(std::iter::repeat_n(b'z', CHUNK - 1));
        input.push(b'\n');
        input.extend(b"tail");
        let fast = relayed_in_one_read(&input, false);
        let records = relayed_in_one_read(&input, true);
        assert!(fast == records, "the fast path and the records differ");
    }

    #[test]
    fn batch_size_follows_who_shares_the_output() {
        let (_r, w) = nix::unistd::pipe().unwrap();
        let (_r2, w2) = nix::unistd::pipe().unwrap();
        let null = null();
        assert_eq!(batch_size(null.as_fd(), null.as_fd(), true), BATCH);
        assert_eq!(batch_size(w.as_fd(), w2.as_fd(), false), BATCH);
        assert_eq!(batch_size(w.as_fd(), w2.as_fd(), true), SHARED_BATCH);
        let again = w.try_clone().unwrap();
        assert_eq!(batch_size(w.as_fd(), again.as_fd(), false), SHARED_BATCH);
    }
}
