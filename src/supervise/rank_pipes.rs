//! Pipes fed with an MPI rank's lines (`docs/supervision.md`, "Rank
//! output into a pipe").
//!
//! A rank is mpirun's child, not ipc-run's, and keeps no fd from ipc-run
//! (mpirun closes what it inherits); what it writes reaches ipc-run through
//! mpirun's stdout and stderr, each line tagged with its rank
//! (`--tag-output`). When the plan wires a rank's stdout or stderr to a
//! pipe (`mechanism::mpi::relays`), the log writer hands that rank's
//! records here instead of to the log: each line goes into the pipe
//! without its tag, whole, in the order mpirun wrote it.
//!
//! Nothing here blocks. ipc-run writes through an open file description
//! of its own (non-blocking, opened through `/proc/self/fd` from the
//! launcher's held write end, so the flag reaches no process that shares
//! the pipe), in batches of whole lines: of at most `PIPE_BUF` bytes where
//! the pipe has other writers, so lines stay whole beside them; of up to
//! 64 KiB where the relay is its only writer. What the pipe does
//! not take waits in a queue; above [`HIGH_WATER`] the supervisor stops
//! reading the launcher's stream until the pipe drains, and mpirun, then
//! its ranks, block on their writes: the back-pressure of a pipe, and no
//! line lost. ipc-run closes its copy when the launcher has ended for good
//! and its streams are drained, so the reader sees EOF when the world
//! exits. A pipe whose reader is gone (EPIPE) takes nothing more: its
//! lines are counted as lost, as a process would get SIGPIPE.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

/// Bytes queued for one pipe above which the launcher's stream that feeds
/// it is not read until the pipe drains.
pub const HIGH_WATER: usize = 64 * 1024;

/// Largest write to a pipe another writer shares: `PIPE_BUF`, so a batch
/// of lines is atomic on the pipe.
const SHARED_BATCH: usize = 4096;

/// Largest write to a pipe only this relay writes to: no one can come
/// between the pieces of a partial write, so lines stay whole anyway.
const BATCH: usize = 64 * 1024;

/// One pipe fed by the ranks of one launcher's stream.
#[derive(Debug)]
struct Pipe {
    /// The channel.
    channel: Arc<str>,
    /// The launcher, as indexed in the plan's processes.
    launcher: usize,
    /// The launcher's stream (0 stdout, 1 stderr) the lines come on.
    stream: usize,
    /// ipc-run's non-blocking write end; `None` once closed.
    fd: Option<OwnedFd>,
    /// Bytes not written yet, from `sent` on.
    queue: Vec<u8>,
    sent: usize,
    /// The last piece did not end its line: more of it follows.
    open_line: bool,
    /// The launcher's streams feeding it that are open.
    sources: usize,
    /// The launcher has ended for good: no stream will open again.
    ended: bool,
    /// The largest write: [`SHARED_BATCH`] or [`BATCH`].
    batch: usize,
    /// Lines handed to this pipe (queued, written or lost).
    lines: u64,
    /// Bytes written into the pipe, one add per write.
    written: u64,
    /// Lines this pipe did not take (also in [`RankPipes::lost`]).
    lost: u64,
}

/// What the relay did for one channel, for `ipc-run status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipeCounts {
    /// Lines written into the pipe.
    pub lines_written: u64,
    /// Bytes written into the pipe.
    pub bytes_written: u64,
    /// Lines waiting in ipc-run's queue for the pipe to take them.
    pub lines_queued: u64,
    /// Lines the pipe did not take (its reader was gone).
    pub lines_lost: u64,
}

/// The pipes of a run and which rank's records go to which.
#[derive(Debug, Default)]
pub struct RankPipes {
    pipes: Vec<Pipe>,
    /// Per instance (empty when no rank has a pipe): per stream, per rank,
    /// the pipe its records go to.
    routes: Vec<Option<[Vec<Option<usize>>; 2]>>,
    /// Lines a pipe did not take (its reader was gone).
    pub lost: u64,
}

impl RankPipes {
    /// The pipes `plan` relays ranks into, each opened by `open` (the
    /// channel's write end, non-blocking); a channel `open` cannot give is
    /// named in the returned list, and its ranks stay in the log.
    pub fn new(
        plan: &crate::plan::Plan,
        mut open: impl FnMut(&str) -> Option<OwnedFd>,
    ) -> (RankPipes, Vec<Arc<str>>) {
        let mut pipes = RankPipes::default();
        let mut missing = Vec::new();
        let mut relayed: Vec<usize> = Vec::new();
        for relay in crate::mechanism::mpi::relays(plan) {
            let Some(launcher) = plan.processes.iter().position(|p| p.name == relay.launcher)
            else {
                continue;
            };
            let stream = usize::from(relay.stderr);
            let existing = pipes.pipes.iter().position(|p| {
                p.launcher == launcher && p.stream == stream && p.channel == relay.channel
            });
            let k = match existing {
                Some(k) => k,
                None => {
                    let Some(fd) = open(&relay.channel) else {
                        missing.push(relay.channel.clone());
                        continue;
                    };
                    pipes.pipes.push(Pipe {
                        channel: relay.channel.clone(),
                        launcher,
                        stream,
                        fd: Some(fd),
                        queue: Vec::new(),
                        sent: 0,
                        open_line: false,
                        sources: 0,
                        ended: false,
                        batch: SHARED_BATCH,
                        lines: 0,
                        written: 0,
                        lost: 0,
                    });
                    relayed.push(0);
                    pipes.pipes.len() - 1
                }
            };
            if pipes.routes.is_empty() {
                pipes.routes = (0..plan.processes.len()).map(|_| None).collect();
            }
            let routes = pipes.routes[launcher].get_or_insert_with(Default::default);
            let by_rank = &mut routes[stream];
            if by_rank.len() <= relay.rank {
                by_rank.resize(relay.rank + 1, None);
            }
            by_rank[relay.rank] = Some(k);
            relayed[k] += 1;
        }
        // A pipe whose every writer is a rank relayed through it is written
        // by this relay alone.
        for (pipe, count) in pipes.pipes.iter_mut().zip(relayed) {
            let writers = plan
                .channels
                .iter()
                .find(|c| c.id == pipe.channel)
                .map_or(0, |c| c.from().len());
            if writers == count {
                pipe.batch = BATCH;
            }
        }
        (pipes, missing)
    }

    /// How many pipes there are.
    pub fn len(&self) -> usize {
        self.pipes.len()
    }

    /// The pipe the records of `rank` on `stream` of `instance` go to.
    #[inline]
    pub fn route(&self, instance: usize, stream: usize, rank: usize) -> Option<usize> {
        let routes = self.routes.get(instance)?.as_ref()?;
        *routes[stream].get(rank)?
    }

    /// Queues a rank's line (or a piece of a long one) for pipe `k`; the
    /// newline goes after the piece that ends the line.
    pub fn push(&mut self, k: usize, line: &[u8], starts_line: bool, ends_line: bool) {
        let pipe = &mut self.pipes[k];
        let ends = u64::from(ends_line);
        if pipe.fd.is_none() {
            self.lost += ends;
            pipe.lines += ends;
            pipe.lost += ends;
            return;
        }
        if starts_line && pipe.open_line {
            pipe.queue.push(b'\n');
            pipe.lines += 1;
        }
        pipe.lines += ends;
        pipe.queue.extend_from_slice(line);
        pipe.open_line = !ends_line;
        if ends_line {
            pipe.queue.push(b'\n');
        }
    }

    /// Whether a pipe fed by `stream` of `instance` holds more than
    /// [`HIGH_WATER`]: the stream is then not read until it drains.
    pub fn stalled(&self, instance: usize, stream: usize) -> bool {
        self.pipes.iter().any(|p| {
            p.launcher == instance && p.stream == stream && p.queue.len() - p.sent > HIGH_WATER
        })
    }

    /// Bytes pipe `k` has not taken yet.
    pub fn backlog(&self, k: usize) -> usize {
        let pipe = &self.pipes[k];
        if pipe.fd.is_none() {
            return 0;
        }
        pipe.queue.len() - pipe.sent
    }

    /// What the relay did for `channel`, over the pipes that feed it
    /// (a launcher's stdout and stderr); `None` when no rank feeds it.
    /// Lines queued are counted now, in what waits: nothing per line is
    /// counted on the way but the line itself.
    pub fn counts(&self, channel: &str) -> Option<PipeCounts> {
        let mut counts: Option<PipeCounts> = None;
        for pipe in self.pipes.iter().filter(|p| &*p.channel == channel) {
            let rest = &pipe.queue[pipe.sent.min(pipe.queue.len())..];
            let queued = memchr::memchr_iter(b'\n', rest).count() as u64;
            let c = counts.get_or_insert_with(PipeCounts::default);
            c.lines_written += pipe.lines.saturating_sub(queued + pipe.lost);
            c.bytes_written += pipe.written;
            c.lines_queued += queued;
            c.lines_lost += pipe.lost;
        }
        counts
    }

    /// Pipe `k`'s fd, to wait for POLLOUT on, while it is open.
    pub fn fd(&self, k: usize) -> Option<BorrowedFd<'_>> {
        self.pipes[k].fd.as_ref().map(|fd| fd.as_fd())
    }

    /// A new run's `stream` of `instance` is relayed.
    pub fn opened(&mut self, instance: usize, stream: usize) {
        for pipe in self.feeding(instance, stream) {
            pipe.sources += 1;
        }
    }

    /// `stream` of `instance` reached its end: a line it left open ends.
    pub fn closed(&mut self, instance: usize, stream: usize) {
        for pipe in self.feeding(instance, stream) {
            pipe.sources = pipe.sources.saturating_sub(1);
            if pipe.open_line && pipe.fd.is_some() {
                pipe.queue.push(b'\n');
                pipe.lines += 1;
                pipe.open_line = false;
            }
        }
    }

    /// `instance` has ended for good: its pipes close once drained.
    pub fn ended(&mut self, instance: usize) {
        for k in 0..self.pipes.len() {
            if self.pipes[k].launcher == instance {
                self.pipes[k].ended = true;
                // Its streams may have closed already: EOF now.
                self.flush_pipe(k);
            }
        }
    }

    fn feeding(&mut self, instance: usize, stream: usize) -> impl Iterator<Item = &mut Pipe> {
        self.pipes
            .iter_mut()
            .filter(move |p| p.launcher == instance && p.stream == stream)
    }

    /// Writes what each pipe takes now; closes the pipes that are done.
    pub fn flush(&mut self) {
        for k in 0..self.pipes.len() {
            self.flush_pipe(k);
        }
    }

    fn flush_pipe(&mut self, k: usize) {
        let pipe = &mut self.pipes[k];
        while let Some(fd) = &pipe.fd {
            let rest = &pipe.queue[pipe.sent..];
            if rest.is_empty() {
                pipe.queue.clear();
                pipe.sent = 0;
                break;
            }
            // Whole lines of at most a batch; a longer line alone.
            let batch = pipe.batch;
            let len = if rest.len() <= batch {
                rest.len()
            } else {
                match memchr::memrchr(b'\n', &rest[..batch]) {
                    Some(end) => end + 1,
                    None => memchr::memchr(b'\n', rest).map_or(rest.len(), |end| end + 1),
                }
            };
            match nix::unistd::write(fd, &rest[..len]) {
                Ok(n) => {
                    pipe.sent += n;
                    pipe.written += n as u64;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    if pipe.sent > pipe.queue.len() / 2 {
                        pipe.queue.drain(..pipe.sent);
                        pipe.sent = 0;
                    }
                    return;
                }
                Err(_) => {
                    // The reader is gone: what is left is lost.
                    let rest = &pipe.queue[pipe.sent..];
                    let lost = memchr::memchr_iter(b'\n', rest).count() as u64;
                    self.lost += lost;
                    pipe.lost += lost;
                    pipe.queue = Vec::new();
                    pipe.sent = 0;
                    pipe.fd = None;
                    return;
                }
            }
        }
        if pipe.ended && pipe.sources == 0 && !pipe.open_line {
            // EOF for the reader, once the launcher's copy is gone too.
            pipe.fd = None;
        }
    }

    /// At the end of the run: writes what is queued, waiting for each pipe
    /// until `deadline`; what is left then is lost, and every pipe closes.
    pub fn finish(&mut self, deadline: std::time::Instant) {
        for k in 0..self.pipes.len() {
            self.flush_pipe(k);
            while self.backlog(k) > 0 {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let Some(fd) = self.pipes[k].fd.as_ref() else {
                    break;
                };
                if left.is_zero() {
                    break;
                }
                let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(_) | Err(Errno::EINTR) => self.flush_pipe(k),
                    Err(_) => break,
                }
            }
            let pipe = &mut self.pipes[k];
            let rest = &pipe.queue[pipe.sent.min(pipe.queue.len())..];
            let lost = memchr::memchr_iter(b'\n', rest).count() as u64;
            self.lost += lost;
            pipe.lost += lost;
            pipe.queue.clear();
            pipe.sent = 0;
            pipe.fd = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One pipe fed by stream 0 of instance 0, and the read end of its pipe.
    fn one_pipe() -> (RankPipes, OwnedFd) {
        let (read, write) = nix::unistd::pipe().unwrap();
        let pipe = Pipe {
            channel: Arc::from("lines"),
            launcher: 0,
            stream: 0,
            fd: Some(write),
            queue: Vec::new(),
            sent: 0,
            open_line: false,
            sources: 1,
            ended: false,
            batch: BATCH,
            lines: 0,
            written: 0,
            lost: 0,
        };
        let pipes = RankPipes {
            pipes: vec![pipe],
            ..RankPipes::default()
        };
        (pipes, read)
    }

    #[test]
    fn counts_lines_written_queued_and_lost() {
        let (mut pipes, read) = one_pipe();
        assert_eq!(pipes.counts("other"), None);
        pipes.push(0, b"one", true, true);
        pipes.push(0, b"tw", true, false);
        pipes.push(0, b"o", false, true);
        let queued = pipes.counts("lines").unwrap();
        assert_eq!((queued.lines_written, queued.lines_queued), (0, 2));
        pipes.flush();
        let counts = pipes.counts("lines").unwrap();
        assert_eq!(
            counts,
            PipeCounts {
                lines_written: 2,
                bytes_written: 8,
                lines_queued: 0,
                lines_lost: 0,
            }
        );
        // The reader is gone: the next lines are lost, and counted so.
        drop(read);
        pipes.push(0, b"three", true, true);
        pipes.flush();
        pipes.push(0, b"four", true, true);
        let counts = pipes.counts("lines").unwrap();
        assert_eq!((counts.lines_written, counts.lines_lost), (2, 2));
        assert_eq!(counts.lines_queued, 0);
        assert_eq!(pipes.lost, 2);
    }
}
