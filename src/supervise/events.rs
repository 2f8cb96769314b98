//! The supervisor's one epoll set. Every fd it waits on is registered once,
//! when it appears, with a [`Token`] saying what it is, and removed when it
//! is closed, so a wake-up costs the events it brings and not the number of
//! processes. Level-triggered: what is not read now is reported again.
//!
//! epoll's ready list keeps the order in which its entries became ready
//! (`epoll(7)`), so the pidfds registered here report exits in the order
//! they happened, among themselves and across wake-ups.
//!
//! Log streams are not in the main set itself but in one inner epoll set
//! per output they feed (stdout, stderr), each inner set registered in the
//! main one ([`Token::Logs`]). While an output is stalled its inner set
//! asks the main set for no event ([`Events::park_logs`]) and its streams
//! wait on their pipes (back-pressure): parking and re-arming cost one
//! `epoll_ctl` whatever the number of streams, where taking each stream
//! out and back cost one per stream, at every stall of a busy output.
//!
//! The streams an inner set reports are served from a list kept here, one
//! at a time, and the set is asked again only once the list is empty. A
//! wake-up stops before the end of the list once its output is stalled
//! ([`super::logs::HIGH_WATER`]); the streams it did not read keep their
//! place for the next one. Asking the set again instead would hand out
//! the same first streams again (epoll puts the level-triggered entries it
//! reports back at the end of its ready list, in the order reported), and
//! reading every reported stream whatever the output's backlog queued a
//! pipe's worth per stream, 16 MiB at 256 writers, out of the cache by
//! the time it was written.

use std::collections::VecDeque;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::unistd::Pid;

use super::logs::Stream;

/// Events read per wait; more stay queued, in order, for the next one.
const BATCH: usize = 256;

/// What a registered fd is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    /// The signalfd.
    Signals,
    /// The timerfd.
    Timer,
    /// The notify socket.
    Notify,
    /// One of ipc-run's outputs, while records wait for it (EPOLLOUT).
    Output(Stream),
    /// The readiness pipe of an instance.
    Ready(usize),
    /// The inner set of the log streams that feed this output.
    Logs(Stream),
    /// The pidfd of a supervised process.
    Exit(Pid),
    /// The listener of a per-connection server (by process index).
    Accept(usize),
    /// The readiness probe socket of an instance, watched for writing
    /// (`true`) or reading.
    Probe(usize, bool),
    /// The control socket's inner set ([`crate::control::server`]).
    Control,
    /// The health check socket of an instance, as for [`Token::Probe`].
    Health(usize, bool),
    /// A pipe fed with an MPI rank's lines, while lines wait for it
    /// (EPOLLOUT; [`super::rank_pipes`]).
    RankPipe(usize),
    /// The probe socket of a listener on another host (by its index,
    /// [`super::remote`]), as for [`Token::Probe`].
    Remote(usize, bool),
}

const KIND_SHIFT: u32 = 32;

impl Token {
    fn encode(self) -> u64 {
        let (kind, value): (u64, u64) = match self {
            // A pidfd's data is its pid, as `/proc/PID/fdinfo` shows it.
            Token::Exit(pid) => (0, u64::from(pid.as_raw() as u32)),
            Token::Signals => (1, 0),
            Token::Timer => (2, 0),
            Token::Notify => (3, 0),
            Token::Output(stream) => (4, stream as u64),
            Token::Ready(i) => (5, i as u64),
            Token::Logs(stream) => (6, stream as u64),
            Token::Accept(i) => (7, i as u64),
            Token::Probe(i, write) => (8, (i as u64) << 1 | u64::from(write)),
            Token::Control => (9, 0),
            Token::Health(i, write) => (10, (i as u64) << 1 | u64::from(write)),
            Token::RankPipe(k) => (11, k as u64),
            Token::Remote(l, write) => (12, (l as u64) << 1 | u64::from(write)),
        };
        (kind << KIND_SHIFT) | (value & u64::from(u32::MAX))
    }

    fn decode(data: u64) -> Option<Token> {
        let value = data & u64::from(u32::MAX);
        let index = usize::try_from(value).ok()?;
        Some(match data >> KIND_SHIFT {
            0 => Token::Exit(Pid::from_raw(value as u32 as i32)),
            1 => Token::Signals,
            2 => Token::Timer,
            3 => Token::Notify,
            4 if value == 0 => Token::Output(Stream::Stdout),
            4 => Token::Output(Stream::Stderr),
            5 => Token::Ready(index),
            6 if value == 0 => Token::Logs(Stream::Stdout),
            6 => Token::Logs(Stream::Stderr),
            7 => Token::Accept(index),
            8 => Token::Probe(index >> 1, index & 1 == 1),
            9 => Token::Control,
            10 => Token::Health(index >> 1, index & 1 == 1),
            11 => Token::RankPipe(index),
            12 => Token::Remote(index >> 1, index & 1 == 1),
            _ => return None,
        })
    }
}

/// The epoll set, the inner sets of log streams and a read buffer.
#[derive(Debug)]
pub(crate) struct Events {
    epoll: Epoll,
    /// Log streams by the output they feed, [`Stream`] as index; the data
    /// of each entry is the stream's slot.
    logs: [Epoll; 2],
    /// Per output: the slots its inner set reported that were not served
    /// yet, in the order reported. A slot closed meanwhile may still be
    /// here (or be here for the stream that took the slot over): reading
    /// it is a non-blocking read that finds nothing or that stream's
    /// bytes, and a slot is never here twice, as the list is filled only
    /// when empty.
    ready: [VecDeque<usize>; 2],
    buffer: Vec<EpollEvent>,
}

impl Events {
    /// An empty set (CLOEXEC), with both inner sets of log streams armed.
    pub fn new() -> nix::Result<Events> {
        let events = Events {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            logs: [
                Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
                Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            ],
            ready: [
                VecDeque::with_capacity(BATCH),
                VecDeque::with_capacity(BATCH),
            ],
            buffer: vec![EpollEvent::empty(); BATCH],
        };
        for stream in [Stream::Stdout, Stream::Stderr] {
            events.add(&events.logs[stream as usize].0, Token::Logs(stream))?;
        }
        Ok(events)
    }

    /// Registers log stream `slot`, which feeds `output`.
    pub fn add_log(&self, fd: impl AsFd, output: Stream, slot: usize) -> nix::Result<()> {
        self.logs[output as usize].add(fd, EpollEvent::new(EpollFlags::EPOLLIN, slot as u64))
    }

    /// Removes a log stream that feeds `output` (before it is closed).
    pub fn remove_log(&self, fd: impl AsFd, output: Stream) {
        let _ = self.logs[output as usize].delete(fd);
    }

    /// Fills the list of log streams feeding `output` to be served, when
    /// it is empty: the slots of those that have bytes or have hung up,
    /// without waiting; at most one batch (epoll hands out the others next
    /// time, in turn).
    pub fn fill_logs(&mut self, output: Stream) {
        let ready = &mut self.ready[output as usize];
        if !ready.is_empty() {
            return;
        }
        let n = loop {
            match self.logs[output as usize].wait(&mut self.buffer, EpollTimeout::ZERO) {
                Err(Errno::EINTR) => continue,
                Err(_) => break 0,
                Ok(n) => break n,
            }
        };
        ready.extend(
            self.buffer[..n]
                .iter()
                .filter_map(|event| usize::try_from(event.data()).ok()),
        );
    }

    /// The next log stream feeding `output` to be served, from the list
    /// [`Events::fill_logs`] filled.
    pub fn next_log(&mut self, output: Stream) -> Option<usize> {
        self.ready[output as usize].pop_front()
    }

    /// Stops waking for the log streams feeding `output`: their inner set
    /// stays in the main set, asking for no event. An epoll set only ever
    /// reports itself readable (never a hang-up, which epoll would report
    /// whatever was asked), so it is then silent, whatever its streams do.
    /// Modifying the entry is cheap where adding an epoll set to another
    /// is not: the kernel then walks the inner set's entries to rule out
    /// loops, a cost per stream at every stall of a busy output.
    pub fn park_logs(&self, output: Stream) {
        let mut event = EpollEvent::new(EpollFlags::empty(), Token::Logs(output).encode());
        let _ = self.epoll.modify(&self.logs[output as usize].0, &mut event);
    }

    /// Wakes for the log streams feeding `output` again (at once if one
    /// has bytes).
    pub fn unpark_logs(&self, output: Stream) -> nix::Result<()> {
        let mut event = EpollEvent::new(EpollFlags::EPOLLIN, Token::Logs(output).encode());
        self.epoll.modify(&self.logs[output as usize].0, &mut event)
    }

    /// Registers `fd` as `token`, waiting for input.
    pub fn add(&self, fd: impl AsFd, token: Token) -> nix::Result<()> {
        self.add_for(fd, token, EpollFlags::EPOLLIN)
    }

    /// Registers `fd` as `token`, waiting for `flags`.
    pub fn add_for(&self, fd: impl AsFd, token: Token, flags: EpollFlags) -> nix::Result<()> {
        self.epoll.add(fd, EpollEvent::new(flags, token.encode()))
    }

    /// Watches a probe's socket for what its protocol waits on next:
    /// writable (`write`) or readable, as `token`; `watched` is what it is
    /// registered for now, if it is.
    pub fn rewatch(
        &self,
        fd: impl AsFd,
        token: Token,
        write: bool,
        watched: Option<bool>,
    ) -> nix::Result<()> {
        if watched.is_some() {
            self.remove(fd.as_fd());
        }
        let flags = if write {
            EpollFlags::EPOLLOUT
        } else {
            EpollFlags::EPOLLIN
        };
        self.add_for(fd, token, flags)
    }

    /// Removes `fd` (before it is closed: a copy of it elsewhere would keep
    /// the registration alive).
    pub fn remove(&self, fd: impl AsFd) {
        let _ = self.epoll.delete(fd);
    }

    /// Waits for events (without blocking when `poll_only`) and returns
    /// them in the order the kernel queued them.
    pub fn wait(&mut self, poll_only: bool) -> Result<Vec<Token>, Errno> {
        let timeout = if poll_only {
            EpollTimeout::ZERO
        } else {
            EpollTimeout::NONE
        };
        let n = loop {
            match self.epoll.wait(&mut self.buffer, timeout) {
                Err(Errno::EINTR) => continue,
                other => break other?,
            }
        };
        Ok(self.buffer[..n]
            .iter()
            .filter_map(|event| Token::decode(event.data()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for token in [
            Token::Signals,
            Token::Timer,
            Token::Notify,
            Token::Output(Stream::Stdout),
            Token::Output(Stream::Stderr),
            Token::Ready(7),
            Token::Logs(Stream::Stdout),
            Token::Logs(Stream::Stderr),
            Token::Exit(Pid::from_raw(4_194_304)),
            Token::Accept(3),
            Token::Probe(5, true),
            Token::Probe(6, false),
            Token::Remote(3, true),
            Token::Remote(4, false),
            Token::RankPipe(9),
            Token::Health(2, true),
            Token::Control,
        ] {
            assert_eq!(Token::decode(token.encode()), Some(token));
        }
    }

    #[test]
    fn events_come_in_the_order_they_became_ready() {
        use nix::unistd::{pipe, write};
        let events = Events::new();
        let mut events = events.unwrap();
        let pipes: Vec<_> = (0..3).map(|_| pipe().unwrap()).collect();
        for (k, (read, _)) in pipes.iter().enumerate() {
            events.add(read, Token::Ready(k)).unwrap();
        }
        for k in [2, 0, 1] {
            write(&pipes[k].1, b"x").unwrap();
        }
        assert_eq!(
            events.wait(true).unwrap(),
            vec![Token::Ready(2), Token::Ready(0), Token::Ready(1)]
        );
        events.remove(&pipes[0].0);
        let again = events.wait(true).unwrap();
        assert_eq!(again.len(), 2, "a removed fd is not reported: {again:?}");
    }

    #[test]
    fn parked_log_streams_wake_nothing_until_unparked() {
        use nix::unistd::{pipe, write};
        let mut events = Events::new().unwrap();
        let (reads, mut writes): (Vec<_>, Vec<_>) = (0..3).map(|_| pipe().unwrap()).unzip();
        for (k, read) in reads.iter().enumerate() {
            events.add_log(read, Stream::Stdout, k).unwrap();
        }
        write(&writes[1], b"x").unwrap();
        assert_eq!(
            events.wait(true).unwrap(),
            vec![Token::Logs(Stream::Stdout)]
        );
        assert_eq!(ready_logs(&mut events, Stream::Stdout), vec![1]);
        assert!(ready_logs(&mut events, Stream::Stderr).is_empty());
        events.park_logs(Stream::Stdout);
        // A hang-up while parked wakes nothing either.
        drop(writes.remove(2));
        assert!(events.wait(true).unwrap().is_empty(), "parked: no wake-up");
        events.unpark_logs(Stream::Stdout).unwrap();
        assert_eq!(
            events.wait(true).unwrap(),
            vec![Token::Logs(Stream::Stdout)]
        );
        assert_eq!(ready_logs(&mut events, Stream::Stdout), vec![1, 2]);
    }

    /// Every slot of one fill, served.
    fn ready_logs(events: &mut Events, output: Stream) -> Vec<usize> {
        events.fill_logs(output);
        std::iter::from_fn(|| events.next_log(output)).collect()
    }

    #[test]
    fn streams_not_served_keep_their_turn() {
        use nix::unistd::{pipe, write};
        let mut events = Events::new().unwrap();
        let pipes: Vec<_> = (0..4).map(|_| pipe().unwrap()).collect();
        for (k, (read, write_end)) in pipes.iter().enumerate() {
            events.add_log(read, Stream::Stdout, k).unwrap();
            write(write_end, b"x").unwrap();
        }
        // A wake-up that serves two of the four (nothing is read: all
        // stay ready), then the next ones: the other two come first.
        events.fill_logs(Stream::Stdout);
        let first: Vec<_> = (0..2)
            .filter_map(|_| events.next_log(Stream::Stdout))
            .collect();
        events.fill_logs(Stream::Stdout);
        let next: Vec<_> = (0..2)
            .filter_map(|_| events.next_log(Stream::Stdout))
            .collect();
        let mut all = [first.clone(), next.clone()].concat();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3], "{first:?} then {next:?}");
        // The list is empty: the set is asked again, and has all four.
        assert_eq!(ready_logs(&mut events, Stream::Stdout).len(), 4);
    }
}
