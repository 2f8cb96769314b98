//! The run's side of the control socket: a listening Unix socket and its
//! connections, all in one inner epoll set that the supervisor registers
//! once in its own (one token), as it does the log streams. The supervisor
//! calls [`Server::serve`] when that set is readable; nothing here blocks,
//! sleeps or runs on a timer, so an idle socket costs no CPU.
//!
//! Bounded whatever a client does:
//! - at most [`MAX_CLIENTS`] connections; one more evicts the one idle the
//!   longest (a client that connected and went quiet, or never reads),
//!   so no client can lock the others out;
//! - a request line is at most [`MAX_REQUEST`] bytes (longer: `too-large`,
//!   and the connection is closed once the answer is out);
//! - at most [`MAX_OUTPUT`] bytes of answers wait for a client that does
//!   not read: past that its requests are not read either, until it reads;
//! - per wake-up, each connection gets one read and at most
//!   [`REQUESTS_PER_WAKE`] requests, so a flood from one client delays the
//!   run's other events by a bounded amount.
//!
//! A connection whose request asked for a stream (`logs` with `follow`,
//! `events`) carries only that stream from then on: the supervisor hands
//! new lines to [`Server::publish`] once per pass of its loop, and they are
//! written as the socket takes them. At most [`STREAM_OUTPUT`] bytes wait
//! for such a client: one that falls further behind is dropped with a
//! `too-slow` line, so a follower that does not read never holds back the
//! relay or the run, and costs at most that much memory.
//!
//! Peer credentials (`SO_PEERCRED`) are checked on accept: the run's own
//! effective uid, or root, may use it; anyone else gets one
//! `permission-denied` line and is disconnected. The socket is 0600 in a
//! 0700 run directory, so another user cannot even connect; the check
//! still holds if the socket's fd is handed on.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{MsgFlags, getsockopt, send, sockopt};

use super::protocol::{self, ErrorCode, Request, Response, Subscription};

/// Most connections open at once.
pub const MAX_CLIENTS: usize = 32;
/// Longest request line, in bytes.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Most answer bytes waiting for one client.
pub const MAX_OUTPUT: usize = 16 << 20;
/// Most requests answered per connection per wake-up.
pub const REQUESTS_PER_WAKE: usize = 16;
/// Most bytes of a stream (`logs -f`, `events`) waiting for one client:
/// past it the client is dropped.
pub const STREAM_OUTPUT: usize = 1 << 20;

/// Bytes read per connection per wake-up.
const READ_CHUNK: usize = 16 * 1024;
/// Events taken from the inner set per wake-up.
const BATCH: usize = 64;
/// The inner set's data for the listener; a connection's is its slot.
const LISTENER: u64 = u64::MAX;

#[derive(Debug)]
struct Connection {
    stream: UnixStream,
    input: Vec<u8>,
    /// Answers and stream lines not written yet: a ring, so that writing
    /// the front (a socket takes a part at a time from a client that
    /// reads slowly) does not move what is behind it, up to
    /// [`MAX_OUTPUT`] bytes, at every wake-up.
    output: VecDeque<u8>,
    /// When it last did something (a sequence number, not a clock).
    active: u64,
    /// Its interest in the inner set as registered.
    interest: EpollFlags,
    /// Close once the output is out: the peer hung up, or sent a request
    /// too large to resynchronise after.
    closing: bool,
    /// The stream it carries, once it asked for one.
    subscription: Option<Subscription>,
}

/// The listening socket and its clients.
#[derive(Debug)]
pub struct Server {
    epoll: Epoll,
    listener: UnixListener,
    connections: Vec<Option<Connection>>,
    tick: u64,
    uid: u32,
    buffer: Vec<EpollEvent>,
}

impl Server {
    /// Serves `listener` (a bound, listening stream socket).
    pub fn new(listener: OwnedFd) -> nix::Result<Server> {
        let listener = UnixListener::from(listener);
        listener
            .set_nonblocking(true)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
        Ok(Server {
            epoll,
            listener,
            connections: Vec::new(),
            tick: 0,
            uid: nix::unistd::geteuid().as_raw(),
            buffer: vec![EpollEvent::empty(); BATCH],
        })
    }

    /// The inner epoll set, to register in the supervisor's (readable when
    /// a client connects, writes, hangs up or can take more output).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }

    /// Connections open now.
    pub fn clients(&self) -> usize {
        self.connections.iter().flatten().count()
    }

    /// Connections carrying a stream: (of log records, of events).
    pub fn subscribers(&self) -> (usize, usize) {
        let mut counts = (0, 0);
        for conn in self.connections.iter().flatten() {
            match conn.subscription {
                Some(Subscription::Logs { .. }) => counts.0 += 1,
                Some(Subscription::Events) => counts.1 += 1,
                None => {}
            }
        }
        counts
    }

    /// Gives every stream its new lines (`lines` makes them; nothing when
    /// there are none) and writes what the sockets take. A client with
    /// more than [`STREAM_OUTPUT`] bytes waiting is sent a `too-slow` line
    /// and closed once it is out (or evicted as idle).
    pub fn publish(&mut self, lines: &mut dyn FnMut(&mut Subscription) -> Vec<u8>) {
        for slot in 0..self.connections.len() {
            let Some(Some(conn)) = self.connections.get_mut(slot) else {
                continue;
            };
            let Some(subscription) = conn.subscription.as_mut() else {
                continue;
            };
            let new = lines(subscription);
            if new.is_empty() {
                continue;
            }
            if conn.output.len() + new.len() > STREAM_OUTPUT {
                conn.subscription = None;
                conn.closing = true;
                conn.input.clear();
                conn.output.extend(
                    Response::error(
                        ErrorCode::TooSlow,
                        format!(
                            "more than {STREAM_OUTPUT} bytes were waiting for this client; it is dropped"
                        ),
                    )
                    .to_line(),
                );
            } else {
                conn.output.extend(new);
                self.tick += 1;
                conn.active = self.tick;
            }
            self.flush(slot);
            self.settle(slot);
        }
    }

    /// Handles what is ready, answering each request with `answer`.
    pub fn serve(&mut self, answer: &mut dyn FnMut(Request) -> Response) {
        let n = loop {
            match self.epoll.wait(&mut self.buffer, EpollTimeout::ZERO) {
                Err(Errno::EINTR) => continue,
                Err(_) => return,
                Ok(n) => break n,
            }
        };
        let ready: Vec<(u64, EpollFlags)> = self.buffer[..n]
            .iter()
            .map(|e| (e.data(), e.events()))
            .collect();
        for (data, events) in ready {
            if data == LISTENER {
                self.accept(answer);
                continue;
            }
            let Ok(slot) = usize::try_from(data) else {
                continue;
            };
            if events.contains(EpollFlags::EPOLLOUT) {
                self.flush(slot);
            }
            if events.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR)
            {
                self.read(slot, answer);
            } else if let Some(Some(conn)) = self.connections.get_mut(slot) {
                // Woken for output only: requests left from an earlier
                // wake-up get their turn.
                answer_lines(conn, answer);
                self.flush(slot);
            }
            self.settle(slot);
        }
    }

    /// Accepts every pending connection, and answers what each has sent
    /// already: a client that connects and asks at once is served before
    /// the next one can take its place.
    fn accept(&mut self, answer: &mut dyn FnMut(Request) -> Response) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // WouldBlock, or a connection gone before it was taken.
                Err(_) => return,
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if !self.allowed(&stream) {
                let line = Response::error(
                    ErrorCode::PermissionDenied,
                    "this run accepts only its own user (and root)",
                )
                .to_line();
                let _ = send_some(stream.as_fd(), &line);
                continue;
            }
            if let Some(slot) = self.insert(stream) {
                self.read(slot, answer);
                self.settle(slot);
            }
        }
    }

    /// Whether the peer of `stream` may use the run.
    fn allowed(&self, stream: &UnixStream) -> bool {
        match getsockopt(stream, sockopt::PeerCredentials) {
            Ok(credentials) => {
                let uid = credentials.uid();
                uid == self.uid || uid == 0
            }
            Err(_) => false,
        }
    }

    /// Adds a client, evicting the one idle the longest when full (it is
    /// told why); its slot.
    fn insert(&mut self, stream: UnixStream) -> Option<usize> {
        if self.clients() >= MAX_CLIENTS
            && let Some(oldest) = self
                .connections
                .iter()
                .enumerate()
                .filter_map(|(k, c)| c.as_ref().map(|c| (c.active, k)))
                .min()
                .map(|(_, k)| k)
        {
            if let Some(Some(conn)) = self.connections.get(oldest) {
                let line = Response::error(
                    ErrorCode::Busy,
                    format!(
                        "{MAX_CLIENTS} clients are connected; this one, idle the longest, is closed"
                    ),
                )
                .to_line();
                let _ = send_some(conn.stream.as_fd(), &line);
            }
            self.close(oldest);
        }
        self.tick += 1;
        let slot = match self.connections.iter().position(Option::is_none) {
            Some(slot) => slot,
            None => {
                self.connections.push(None);
                self.connections.len() - 1
            }
        };
        let interest = EpollFlags::EPOLLIN;
        if self
            .epoll
            .add(&stream, EpollEvent::new(interest, slot as u64))
            .is_err()
        {
            return None;
        }
        self.connections[slot] = Some(Connection {
            stream,
            input: Vec::new(),
            output: VecDeque::new(),
            active: self.tick,
            interest,
            closing: false,
            subscription: None,
        });
        Some(slot)
    }

    /// Reads once from `slot` and answers the complete requests in it.
    fn read(&mut self, slot: usize, answer: &mut dyn FnMut(Request) -> Response) {
        self.tick += 1;
        let tick = self.tick;
        let Some(Some(conn)) = self.connections.get_mut(slot) else {
            return;
        };
        if conn.output.len() >= MAX_OUTPUT {
            // Not reading its answers: nothing more is taken from it.
            return;
        }
        conn.active = tick;
        if !conn.closing {
            let mut chunk = [0u8; READ_CHUNK];
            match conn.stream.read(&mut chunk) {
                Ok(0) => conn.closing = true,
                Ok(n) => conn.input.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(_) => {
                    self.close(slot);
                    return;
                }
            }
        }
        answer_lines(conn, answer);
        self.flush(slot);
    }

    /// Writes what waits for `slot` without blocking.
    fn flush(&mut self, slot: usize) {
        let Some(Some(conn)) = self.connections.get_mut(slot) else {
            return;
        };
        while !conn.output.is_empty() {
            match send_some(conn.stream.as_fd(), conn.output.as_slices().0) {
                Ok(n) => {
                    conn.output.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    self.close(slot);
                    return;
                }
            }
        }
    }

    /// Registers `slot` for what it waits for now; closes it when done.
    fn settle(&mut self, slot: usize) {
        let Some(Some(conn)) = self.connections.get_mut(slot) else {
            return;
        };
        let pending = memchr::memchr(b'\n', &conn.input).is_some();
        if conn.closing && conn.output.is_empty() && !pending {
            self.close(slot);
            return;
        }
        let mut interest = EpollFlags::empty();
        if !conn.closing && conn.output.len() < MAX_OUTPUT {
            interest |= EpollFlags::EPOLLIN;
        }
        // Complete requests left over (more than one wake-up's share) ask
        // for a wake-up as waiting answers do: the socket is writable, so
        // it comes at once, after the run's other events.
        let backlog = conn.output.len() < MAX_OUTPUT && pending;
        if !conn.output.is_empty() || backlog {
            interest |= EpollFlags::EPOLLOUT;
        }
        if interest != conn.interest {
            let mut event = EpollEvent::new(interest, slot as u64);
            if self.epoll.modify(&conn.stream, &mut event).is_ok() {
                conn.interest = interest;
            }
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(conn) = self.connections.get_mut(slot).and_then(Option::take) {
            let _ = self.epoll.delete(&conn.stream);
        }
    }
}

/// Answers up to [`REQUESTS_PER_WAKE`] complete lines of `conn`'s input.
fn answer_lines(conn: &mut Connection, answer: &mut dyn FnMut(Request) -> Response) {
    for _ in 0..REQUESTS_PER_WAKE {
        if conn.subscription.is_some() {
            // A stream's connection carries only the stream: what its
            // client sends is read (to see it close) and dropped.
            conn.input.clear();
            return;
        }
        let Some(end) = memchr::memchr(b'\n', &conn.input) else {
            if conn.input.len() > MAX_REQUEST {
                conn.input.clear();
                conn.output.extend(
                    Response::error(
                        ErrorCode::TooLarge,
                        format!("a request line is at most {MAX_REQUEST} bytes"),
                    )
                    .to_line(),
                );
                conn.closing = true;
            }
            return;
        };
        let line: Vec<u8> = conn.input.drain(..=end).collect();
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let response = if line.len() > MAX_REQUEST {
            Response::error(
                ErrorCode::TooLarge,
                format!("a request line is at most {MAX_REQUEST} bytes"),
            )
        } else {
            match protocol::parse_request(line) {
                Ok(request) => answer(request),
                Err(error) => Response::from(error),
            }
        };
        let mut response = response;
        conn.subscription = response.subscribe.take().filter(|_| response.ok);
        conn.output.extend(response.to_line());
        if conn.output.len() >= MAX_OUTPUT {
            return;
        }
    }
}

/// `send(2)` without blocking and without SIGPIPE.
fn send_some(fd: BorrowedFd<'_>, bytes: &[u8]) -> nix::Result<usize> {
    use std::os::fd::AsRawFd;
    send(
        fd.as_raw_fd(),
        bytes,
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
    )
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::{UnixListener, UnixStream};

    use super::*;
    use crate::control::protocol::Command;

    fn server(case: &str) -> (Server, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("ipc-run-server-{}-{case}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        (Server::new(OwnedFd::from(listener)).unwrap(), dir)
    }

    fn answer(request: Request) -> Response {
        match request.cmd {
            Command::Info => Response::ok(),
            _ => Response::error(ErrorCode::Refused, "no"),
        }
    }

    fn read_line(stream: &UnixStream) -> String {
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        line
    }

    #[test]
    fn past_the_cap_the_client_idle_the_longest_is_told_and_closed() {
        let (mut server, dir) = server("cap");
        let path = dir.join("control.sock");
        let silent: Vec<UnixStream> = (0..MAX_CLIENTS)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        server.serve(&mut answer);
        assert_eq!(server.clients(), MAX_CLIENTS);
        let mut late = UnixStream::connect(&path).unwrap();
        late.write_all(b"{\"v\":1,\"cmd\":\"info\"}\n").unwrap();
        server.serve(&mut answer);
        assert_eq!(server.clients(), MAX_CLIENTS);
        assert!(read_line(&late).contains("\"ok\":true"));
        let evicted = read_line(&silent[0]);
        assert!(evicted.contains("\"code\":\"busy\""), "{evicted}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn requests_are_answered_in_order_a_share_per_wake_up() {
        let (mut server, dir) = server("share");
        let mut client = UnixStream::connect(dir.join("control.sock")).unwrap();
        let mut burst = Vec::new();
        for _ in 0..REQUESTS_PER_WAKE + 4 {
            burst.extend_from_slice(b"{\"v\":1,\"cmd\":\"info\"}\n");
        }
        burst.extend_from_slice(b"{\"v\":1,\"cmd\":\"down\"}\n");
        client.write_all(&burst).unwrap();
        let mut answered = 0;
        server.serve(&mut |r| {
            answered += 1;
            answer(r)
        });
        assert_eq!(answered, REQUESTS_PER_WAKE, "one share per wake-up");
        // The rest asks for a wake-up of its own, which comes at once.
        server.serve(&mut |r| {
            answered += 1;
            answer(r)
        });
        assert_eq!(answered, REQUESTS_PER_WAKE + 5);
        let reader = BufReader::new(&client);
        let lines: Vec<String> = reader
            .lines()
            .take(REQUESTS_PER_WAKE + 5)
            .map(Result::unwrap)
            .collect();
        assert!(
            lines[..REQUESTS_PER_WAKE + 4]
                .iter()
                .all(|l| l.contains("\"ok\":true"))
        );
        assert!(lines[REQUESTS_PER_WAKE + 4].contains("refused"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
