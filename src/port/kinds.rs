//! Opening a port, by kind and end, as what the adapters move data through:
//! a byte stream (an fd to `read(2)`/`write(2)`), a source of messages or a
//! sink of messages.
//!
//! | kind | `read` | `write` |
//! |---|---|---|
//! | `pipe`, `inherit` | stream (fd) | stream (fd) |
//! | `fifo` | stream (fd, or opens `path`) | stream (fd, or opens `path`) |
//! | `socketpair` stream | stream | stream, shut down at the end |
//! | `socketpair` seqpacket, dgram | messages | messages |
//! | `unix-listener` stream, seqpacket; `tcp` | the listener: accepts connections (concurrently, with poll) | the client: connects |
//! | `unix-listener` dgram; `udp` | the bound socket: datagrams | sends datagrams to `path` / `address` |
//! | `posix-mq` | `mq_receive` | `mq_send` |
//! | `sysv-mq` | `msgrcv` (any type) | `msgsnd` (type 1) |
//! | `posix-shm` with `layout=ring` | `ipc_run_child::ring::Consumer` | `ipc_run_child::ring::Producer`, closed at the end |
//!
//! Everything else (shared memory, semaphores, signals, rpc) carries no
//! data the adapters could copy: a usage error says so.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, Shutdown, SockFlag, SockType, UnixAddr, connect, recv, send, shutdown,
    socket as socket_fd,
};

use super::{Framing, PortError};
use crate::child::description::Slot;
use crate::child::{End, Kind, Params, Port, SocketType};

/// Largest UDP payload over IPv4 (65535 - 8 - 20).
pub const UDP_MAX: usize = 65_507;

/// Receive buffer for socket messages: above the default Unix socket
/// limits (`wmem_max`, 212992 bytes), so a message that fits the sender's
/// buffer fits ours; a larger one is reported, never cut.
const SOCKET_MESSAGE_BUFFER: usize = 1 << 20;

/// How long a receive may wait.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// Not at all: `Nothing` when no message is ready.
    Now,
    /// Until a message comes or the timeout (if any) passes.
    For(Option<Duration>),
}

/// What a receive gave.
#[derive(Debug)]
pub enum Recv<'a> {
    /// One message (or, from a stream listener, whole units of a stream).
    Message(&'a [u8]),
    /// Nothing ready (after `Wait::Now`) or the timeout passed.
    Nothing,
    /// The end: EOF of a seqpacket peer, or the last counted connection.
    End,
}

/// Where `read` takes messages from.
pub trait Source {
    /// Receives the next message.
    fn recv(&mut self, wait: Wait) -> Result<Recv<'_>, PortError>;
    /// True when messages are pieces of byte streams (connections to a
    /// stream listener), to be copied without framing.
    fn is_stream(&self) -> bool {
        false
    }
    /// True for listeners, where `--count` counts connections (the source
    /// ends by itself after them), not messages.
    fn counts_connections(&self) -> bool {
        false
    }
}

/// The largest message a sink takes, and where that limit comes from.
#[derive(Debug, Clone)]
pub struct Limit {
    /// Bytes.
    pub size: usize,
    /// E.g. `message_size=256 of posix-mq port jobs`.
    pub name: String,
}

/// Where `write` sends messages.
pub trait Sink {
    /// The largest message.
    fn limit(&self) -> Limit;
    /// Sends one message, whole.
    fn send(&mut self, message: &[u8]) -> Result<(), PortError>;
    /// Called once after the last message (shuts a socket down).
    fn finish(&mut self) {}
}

/// A port opened for `read`.
pub enum Input {
    /// A byte stream.
    Stream(OwnedFd),
    /// Messages.
    Messages(Box<dyn Source>),
}

/// A byte stream to write into.
pub struct StreamOut {
    /// The fd.
    pub fd: OwnedFd,
    /// A socket: shut down for writing at the end, so the peer sees EOF
    /// even while others hold the same socket.
    pub socket: bool,
}

impl StreamOut {
    /// Ends the stream.
    pub fn finish(self) {
        if self.socket {
            let _ = shutdown(self.fd.as_raw_fd(), Shutdown::Write);
        }
    }
}

/// A port opened for `write`.
pub enum Output {
    /// A byte stream.
    Stream(StreamOut),
    /// Messages.
    Messages(Box<dyn Sink>),
}

fn describe(port: &Port) -> String {
    format!("{} port `{}`", port.kind(), port.name())
}

fn usage(text: String) -> PortError {
    PortError::Usage(text)
}

fn need_fd(port: &mut Port) -> Result<OwnedFd, PortError> {
    let text = describe(port);
    match port.fd_number() {
        None => Err(usage(format!("{text} is not handed over as an fd"))),
        Some(n) => port.take_fd().ok_or_else(|| {
            usage(format!(
                "{text}: fd {n} is not open in this process (was the port wired to \
                 this process, and is it not a standard stream?)"
            ))
        }),
    }
}

fn no_data(port: &Port) -> PortError {
    let why = match port.kind() {
        Kind::Rpc => {
            "an rpc endpoint carries requests and their replies; the adapters move \
             one direction only: use mechanism = \"unix-listener\" or \"tcp\" for a \
             one-way stream"
        }
        Kind::PosixShm | Kind::SysvShm => {
            "shared memory is a region, not a stream or a queue (only a posix-shm \
             ring, `sync = \"ring\"`, carries records)"
        }
        Kind::PosixSem | Kind::SysvSem | Kind::Signal => "it carries events without data",
        _ => "the adapters do not know this kind",
    };
    usage(format!("{} carries no data to copy: {why}", describe(port)))
}

fn check_end(port: &Port, allowed: &[End], verb: &str) -> Result<(), PortError> {
    let end = port.end();
    if allowed.contains(&end) {
        Ok(())
    } else {
        Err(usage(format!(
            "{} is the `{end}` end: `port {verb}` needs {}",
            describe(port),
            allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        )))
    }
}

/// A FIFO handed over as an fd, or opened at its path.
fn fifo(port: &mut Port, path: &str, write: bool) -> Result<OwnedFd, PortError> {
    if port.fd_number().is_some() {
        return need_fd(port);
    }
    let file = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open(path)
        .map_err(|e| PortError::open(format!("FIFO {path}"), e))?;
    Ok(file.into())
}

/// Which way a port is opened; `read` also says how connections to a
/// stream listener interleave (whole units only) and how many it counts.
#[derive(Clone, Copy)]
enum Way {
    Read {
        framing: Framing,
        count: Option<u64>,
    },
    Write,
}

/// A port opened either way, before `open_input` or `open_output` says
/// which of the two it is.
enum Opened {
    Stream(StreamOut),
    Source(Box<dyn Source>),
    Sink(Box<dyn Sink>),
}

/// The ends `port read` (`way` is `Read`) or `port write` can open, by
/// kind: the table of the module comment. None for the kinds that carry no
/// data.
fn ends(params: &Params, way: Way) -> Option<&'static [End]> {
    let read = matches!(way, Way::Read { .. });
    Some(match params {
        Params::Socketpair { .. } if read => &[End::Read, End::Both],
        Params::Socketpair { .. } => &[End::Write, End::Both],
        Params::UnixListener { .. } | Params::Tcp { .. } if read => &[End::Listen],
        Params::UnixListener { .. } | Params::Tcp { .. } => &[End::Connect],
        Params::Udp { .. } if read => &[End::Listen, End::Read, End::Receive],
        Params::Udp { .. } => &[End::Connect, End::Write, End::Send],
        Params::Pipe
        | Params::Inherit
        | Params::Fifo { .. }
        | Params::PosixMq { .. }
        | Params::SysvMq { .. }
        | Params::PosixShm { ring: Some(_), .. } => {
            if read {
                &[End::Read]
            } else {
                &[End::Write]
            }
        }
        _ => return None,
    })
}

/// Opens `port` for `read`.
pub fn open_input(
    port: &mut Port,
    framing: Framing,
    count: Option<u64>,
) -> Result<Input, PortError> {
    Ok(match open(port, Way::Read { framing, count })? {
        Opened::Stream(stream) => Input::Stream(stream.fd),
        Opened::Source(source) => Input::Messages(source),
        Opened::Sink(_) => unreachable!("a port opened for read is never a sink"),
    })
}

/// Opens `port` for `write`.
pub fn open_output(port: &mut Port) -> Result<Output, PortError> {
    Ok(match open(port, Way::Write)? {
        Opened::Stream(stream) => Output::Stream(stream),
        Opened::Sink(sink) => Output::Messages(sink),
        Opened::Source(_) => unreachable!("a port opened for write is never a source"),
    })
}

/// Opens `port` the way `way` says, after checking that its end is one
/// that way can open.
fn open(port: &mut Port, way: Way) -> Result<Opened, PortError> {
    let params = port.description().params.clone();
    let Some(ends) = ends(&params, way) else {
        return Err(no_data(port));
    };
    let read = matches!(way, Way::Read { .. });
    check_end(port, ends, if read { "read" } else { "write" })?;
    let bytes = |fd| Opened::Stream(StreamOut { fd, socket: false });
    let source = |source: Box<dyn Source>| Opened::Source(source);
    let sink = |sink: Box<dyn Sink>| Opened::Sink(sink);
    Ok(match (params, way) {
        (Params::Pipe | Params::Inherit, _) => bytes(need_fd(port)?),
        (Params::Fifo { path }, _) => bytes(fifo(port, &path, !read)?),
        (Params::Socketpair { socket }, _) => {
            let name = describe(port);
            connected(need_fd(port)?, socket, way, &name)
        }
        (Params::UnixListener { socket, .. }, Way::Read { framing, count }) => {
            source(listener(need_fd(port)?, socket, framing, count))
        }
        (Params::Tcp { .. }, Way::Read { framing, count }) => {
            source(listener(need_fd(port)?, SocketType::Stream, framing, count))
        }
        (Params::UnixListener { socket, path }, Way::Write) => {
            let name = describe(port);
            connected(connect_unix(&name, socket, &path)?, socket, way, &name)
        }
        (Params::Tcp { address }, Way::Write) => Opened::Stream(connect_tcp(port, &address)?),
        (Params::Udp { .. }, Way::Read { .. }) => {
            source(Box::new(SocketSource::new(need_fd(port)?, false)))
        }
        (Params::Udp { address }, Way::Write) => sink(Box::new(udp_sink(port, &address)?)),
        (Params::PosixMq { name, .. }, Way::Read { .. }) => {
            source(Box::new(MqSource::open(port, &name)?))
        }
        (Params::PosixMq { name, .. }, Way::Write) => sink(Box::new(MqSink::open(port, &name)?)),
        (
            Params::SysvMq {
                id, message_size, ..
            },
            Way::Read { .. },
        ) => source(Box::new(SysvSource::open(port, &id, message_size)?)),
        (
            Params::SysvMq {
                id, message_size, ..
            },
            Way::Write,
        ) => sink(Box::new(SysvSink::open(port, &id, message_size)?)),
        (Params::PosixShm { .. }, Way::Read { .. }) => {
            source(Box::new(super::ring::RingSource::open(port)?))
        }
        (Params::PosixShm { .. }, Way::Write) => sink(Box::new(super::ring::RingSink::open(port)?)),
        // `ends` has refused every other kind.
        _ => return Err(no_data(port)),
    })
}

/// A listening socket's messages: datagrams, or what the connections it
/// accepts send.
fn listener(
    fd: OwnedFd,
    socket: SocketType,
    framing: Framing,
    count: Option<u64>,
) -> Box<dyn Source> {
    match socket {
        SocketType::Dgram => Box::new(SocketSource::new(fd, false)),
        socket => Box::new(ListenerSource::new(
            fd,
            socket == SocketType::Seqpacket,
            framing,
            count,
        )),
    }
}

/// A connected socket of type `socket`: a stream (shut down for writing at
/// the end), or one message per `recv` or `send`.
fn connected(fd: OwnedFd, socket: SocketType, way: Way, name: &str) -> Opened {
    match (socket, way) {
        (SocketType::Stream, _) => Opened::Stream(StreamOut { fd, socket: true }),
        (socket, Way::Read { .. }) => Opened::Source(Box::new(SocketSource::new(
            fd,
            socket == SocketType::Seqpacket,
        ))),
        (socket, Way::Write) => {
            Opened::Sink(Box::new(SocketSink::new(fd, name, socket.as_str(), None)))
        }
    }
}

/// A socket of type `socket` connected to the Unix listener at `path`.
fn connect_unix(name: &str, socket: SocketType, path: &str) -> Result<OwnedFd, PortError> {
    let ty = match socket {
        SocketType::Seqpacket => SockType::SeqPacket,
        SocketType::Dgram => SockType::Datagram,
        SocketType::Stream => SockType::Stream,
    };
    let fd = socket_fd(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| PortError::open("a Unix socket", e))?;
    let addr = UnixAddr::new(path).map_err(|e| PortError::open(path.to_owned(), e))?;
    connect_retrying(fd.as_raw_fd(), &addr)
        .map_err(|e| PortError::open(format!("{name} at {path}"), e))?;
    Ok(fd)
}

/// A TCP connection to `address`, without Nagle's delay.
fn connect_tcp(port: &Port, address: &str) -> Result<StreamOut, PortError> {
    let stream = std::net::TcpStream::connect(address)
        .map_err(|e| PortError::open(format!("{} at {address}", describe(port)), e))?;
    let _ = stream.set_nodelay(true);
    Ok(StreamOut {
        fd: stream.into(),
        socket: true,
    })
}

/// A UDP socket connected to `address`, from any port of its family.
fn udp_sink(port: &Port, address: &str) -> Result<SocketSink, PortError> {
    let name = describe(port);
    let bind = if address.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let udp = std::net::UdpSocket::bind(bind)
        .and_then(|s| s.connect(address).map(|()| s))
        .map_err(|e| PortError::open(format!("{name} at {address}"), e))?;
    Ok(SocketSink::new(
        udp.into(),
        &name,
        Kind::Udp.as_str(),
        Some(UDP_MAX),
    ))
}

/// Connects, retrying briefly while the listener's backlog is full.
fn connect_retrying(fd: i32, addr: &UnixAddr) -> Result<(), Errno> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match connect(fd, addr) {
            Err(Errno::EAGAIN | Errno::EINTR) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Receives with `MSG_DONTWAIT`, waiting with poll as `wait` allows;
/// `Ok(None)` when nothing came in time.
fn recv_waiting(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: MsgFlags,
    wait: Wait,
) -> Result<Option<usize>, PortError> {
    loop {
        match recv(fd.as_raw_fd(), buf, flags | MsgFlags::MSG_DONTWAIT) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => match wait {
                Wait::Now => return Ok(None),
                Wait::For(timeout) => {
                    if !super::wait_readable(fd, timeout).map_err(|e| PortError::io("poll", e))? {
                        return Ok(None);
                    }
                }
            },
            Err(errno) => return Err(PortError::io("receive from the port", errno)),
        }
    }
}

/// A datagram or seqpacket socket: one `recv` is one message.
struct SocketSource {
    fd: OwnedFd,
    /// Seqpacket: a zero-length read with the peer gone is EOF.
    seqpacket: bool,
    buf: Vec<u8>,
}

impl SocketSource {
    fn new(fd: OwnedFd, seqpacket: bool) -> SocketSource {
        SocketSource {
            fd,
            seqpacket,
            buf: vec![0; SOCKET_MESSAGE_BUFFER],
        }
    }
}

/// Whether the peer of a connected socket has hung up.
fn hung_up(fd: BorrowedFd<'_>) -> bool {
    crate::sys::fd::peer_hung_up(fd)
}

impl Source for SocketSource {
    fn recv(&mut self, wait: Wait) -> Result<Recv<'_>, PortError> {
        let Some(n) = recv_waiting(self.fd.as_fd(), &mut self.buf, MsgFlags::MSG_TRUNC, wait)?
        else {
            return Ok(Recv::Nothing);
        };
        if n > self.buf.len() {
            return Err(PortError::TooLarge {
                size: n.to_string(),
                limit: format!("the adapter's receive buffer ({} bytes)", self.buf.len()),
            });
        }
        // A seqpacket read of 0 is EOF or an empty message; only a hung-up
        // peer makes it EOF (an empty last message is then lost).
        if n == 0 && self.seqpacket && hung_up(self.fd.as_fd()) {
            return Ok(Recv::End);
        }
        Ok(Recv::Message(&self.buf[..n]))
    }
}

/// A connected socket that sends one message per `send`.
struct SocketSink {
    fd: OwnedFd,
    name: String,
    limit: Option<usize>,
}

impl SocketSink {
    fn new(fd: OwnedFd, name: &str, kind: &str, limit: Option<usize>) -> SocketSink {
        SocketSink {
            fd,
            name: format!("{name} ({kind})"),
            limit,
        }
    }

    fn sndbuf(&self) -> Option<usize> {
        nix::sys::socket::getsockopt(&self.fd, nix::sys::socket::sockopt::SndBuf).ok()
    }
}

impl Sink for SocketSink {
    fn limit(&self) -> Limit {
        match self.limit {
            Some(size) => Limit {
                size,
                name: format!("the {size}-byte datagram limit of {}", self.name),
            },
            // The kernel's limit depends on the socket buffer; the deframer
            // only needs a bound, and `send` names the real one (EMSGSIZE).
            None => Limit {
                size: SOCKET_MESSAGE_BUFFER,
                name: format!("the adapter's {SOCKET_MESSAGE_BUFFER}-byte message buffer"),
            },
        }
    }

    fn send(&mut self, message: &[u8]) -> Result<(), PortError> {
        loop {
            match send(self.fd.as_raw_fd(), message, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(Errno::EMSGSIZE) => {
                    return Err(PortError::TooLarge {
                        size: message.len().to_string(),
                        limit: format!(
                            "what {} takes (EMSGSIZE; its send buffer SO_SNDBUF is {} bytes)",
                            self.name,
                            self.sndbuf().map_or("?".into(), |n| n.to_string())
                        ),
                    });
                }
                Err(errno) => return Err(super::broken_port(&self.name, errno)),
            }
        }
    }

    fn finish(&mut self) {
        let _ = shutdown(self.fd.as_raw_fd(), Shutdown::Write);
    }
}

/// One accepted connection of a listener.
struct Connection {
    fd: OwnedFd,
    /// Bytes read and not yet given out (stream connections).
    pending: Vec<u8>,
    /// How much of `pending` is known to end no unit: only the bytes after
    /// it are searched again, so a long line costs linear time.
    searched: usize,
    eof: bool,
}

/// A stream or seqpacket listener: accepts any number of connections and
/// reads them concurrently (poll), giving out whole units (lines, frames,
/// messages) so connections interleave only between units.
struct ListenerSource {
    listener: OwnedFd,
    seqpacket: bool,
    framing: Framing,
    connections: Vec<Connection>,
    /// Connections that ended.
    ended: u64,
    /// End after this many connections.
    most: Option<u64>,
    buf: Vec<u8>,
    unit: Vec<u8>,
    /// Where the next search for a ready unit starts (fairness).
    next: usize,
}

impl ListenerSource {
    fn new(listener: OwnedFd, seqpacket: bool, framing: Framing, most: Option<u64>) -> Self {
        ListenerSource {
            listener,
            seqpacket,
            framing,
            connections: Vec::new(),
            ended: 0,
            most,
            buf: vec![
                0;
                if seqpacket {
                    SOCKET_MESSAGE_BUFFER
                } else {
                    super::STREAM_BUFFER
                }
            ],
            unit: Vec::new(),
            next: 0,
        }
    }

    /// Moves a ready unit into `self.unit`; drops finished connections.
    fn take_ready(&mut self) -> Result<bool, PortError> {
        let count = self.connections.len();
        for step in 0..count {
            let i = (self.next + step) % count;
            let connection = &mut self.connections[i];
            let whole = if connection.eof {
                connection.pending.len()
            } else if self.framing == Framing::Line {
                // A line ends at the last newline: search what came since.
                let from = connection.searched;
                match self.framing.whole_prefix(&connection.pending[from..]) {
                    0 => 0,
                    n => from + n,
                }
            } else {
                self.framing.whole_prefix(&connection.pending)
            };
            connection.searched = connection.pending.len() - whole;
            if whole > 0 {
                self.unit.clear();
                if whole == connection.pending.len() {
                    // All of it: handed over, not copied.
                    std::mem::swap(&mut self.unit, &mut connection.pending);
                } else {
                    self.unit
                        .try_reserve(whole)
                        .map_err(|_| PortError::memory(whole, "a line or frame of a connection"))?;
                    self.unit.extend_from_slice(&connection.pending[..whole]);
                    connection.pending.drain(..whole);
                }
                self.next = i + 1;
                return Ok(true);
            }
        }
        let before = self.connections.len();
        self.connections.retain(|c| !c.eof);
        self.ended += (before - self.connections.len()) as u64;
        Ok(false)
    }

    /// Accepts one connection: the listener itself is blocking (it is
    /// shared with nobody, but its flags are not ours to change), so one
    /// accept per readiness.
    fn accept_one(&mut self) -> Result<(), PortError> {
        match nix::sys::socket::accept4(
            self.listener.as_fd(),
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        ) {
            Ok(fd) => {
                self.connections.push(Connection {
                    fd,
                    pending: Vec::new(),
                    searched: 0,
                    eof: false,
                });
                Ok(())
            }
            Err(Errno::EAGAIN | Errno::ECONNABORTED | Errno::EINTR) => Ok(()),
            Err(errno) => Err(PortError::io("accept a connection", errno)),
        }
    }

    /// Reads what one connection has; a seqpacket message becomes the unit
    /// directly (returns true).
    fn read_connection(&mut self, i: usize) -> Result<bool, PortError> {
        let connection = &mut self.connections[i];
        let flags = if self.seqpacket {
            MsgFlags::MSG_TRUNC
        } else {
            MsgFlags::empty()
        };
        let n = match recv(
            connection.fd.as_raw_fd(),
            &mut self.buf,
            flags | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(false),
            // A client that reset its connection ended it.
            Err(Errno::ECONNRESET) => {
                connection.eof = true;
                return Ok(false);
            }
            Err(errno) => return Err(PortError::io("read a connection", errno)),
        };
        if self.seqpacket {
            if n > self.buf.len() {
                return Err(PortError::TooLarge {
                    size: n.to_string(),
                    limit: format!("the adapter's receive buffer ({} bytes)", self.buf.len()),
                });
            }
            if n == 0 && hung_up(connection.fd.as_fd()) {
                connection.eof = true;
                return Ok(false);
            }
            self.unit.clear();
            self.unit.extend_from_slice(&self.buf[..n]);
            return Ok(true);
        }
        if n == 0 {
            connection.eof = true;
        } else {
            // A peer decides how long a line or frame is: the memory for
            // it may not be there.
            let pending = &mut connection.pending;
            pending.try_reserve(n).map_err(|_| {
                PortError::memory(
                    pending.len().saturating_add(n),
                    "a line or frame of a connection",
                )
            })?;
            pending.extend_from_slice(&self.buf[..n]);
        }
        Ok(false)
    }
}

impl Source for ListenerSource {
    fn is_stream(&self) -> bool {
        !self.seqpacket
    }

    fn counts_connections(&self) -> bool {
        true
    }

    fn recv(&mut self, wait: Wait) -> Result<Recv<'_>, PortError> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let deadline = match wait {
            Wait::Now => Some(Instant::now()),
            Wait::For(timeout) => timeout.map(|t| Instant::now() + t),
        };
        loop {
            if self.take_ready()? {
                return Ok(Recv::Message(&self.unit));
            }
            if self.most.is_some_and(|most| self.ended >= most) {
                return Ok(Recv::End);
            }
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                }
            };
            let ready: Vec<usize>;
            let listener_ready;
            {
                let mut fds = Vec::with_capacity(self.connections.len() + 1);
                // Stop accepting once the counted connections have come.
                let accepting = self
                    .most
                    .is_none_or(|most| self.ended + (self.connections.len() as u64) < most);
                if accepting {
                    fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
                }
                for connection in &self.connections {
                    fds.push(PollFd::new(connection.fd.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Ok(0) => return Ok(Recv::Nothing),
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(errno) => return Err(PortError::io("poll", errno)),
                }
                // Bits nix does not know make `revents` None: count them as ready.
                let revents = |fd: &PollFd| fd.revents().is_none_or(|r| !r.is_empty());
                let offset = usize::from(accepting);
                listener_ready = accepting && revents(&fds[0]);
                ready = fds[offset..]
                    .iter()
                    .enumerate()
                    .filter(|(_, fd)| revents(fd))
                    .map(|(i, _)| i)
                    .collect();
            }
            for i in ready {
                if self.read_connection(i)? {
                    return Ok(Recv::Message(&self.unit));
                }
            }
            if listener_ready {
                self.accept_one()?;
            }
        }
    }
}

/// A System V id, filled in by the launcher.
fn sysv_id(port: &Port, id: &Slot<i32>) -> Result<i32, PortError> {
    id.value()
        .ok_or_else(|| usage(format!("{}: `id={id}` is not a number", describe(port))))
}

/// Where the kernel says how large a System V message may be.
const MSGMAX: &str = "/proc/sys/kernel/msgmax";

/// The largest System V message this host takes: `msgmax`, or, where it
/// cannot be read, the most it can ever be (the kernel keeps it in an `int`).
fn sysv_message_max() -> u64 {
    std::fs::read_to_string(MSGMAX)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(i32::MAX as u64)
        .min(i32::MAX as u64)
}

/// The `message_size` of a System V queue as a buffer length: at most the
/// host's `msgmax` (the planner refuses more, E0605), so a description
/// cannot make the adapter ask for more memory than a message can need.
fn message_size(port: &Port, size: u64) -> Result<usize, PortError> {
    let max = sysv_message_max();
    if size > max {
        return Err(usage(format!(
            "{}: `message_size={size}` is more than a System V message on this host \
             can hold (msgmax={max}, {MSGMAX})",
            describe(port)
        )));
    }
    usize::try_from(size).map_err(|_| {
        usage(format!(
            "{}: `message_size={size}` is too large",
            describe(port)
        ))
    })
}

/// The System V queue of `port`: its id, a zeroed frame for a message of
/// `size` bytes, and that limit.
fn open_sysv(port: &Port, id: &Slot<i32>, size: u64) -> Result<(i32, Vec<u8>, Limit), PortError> {
    let id = sysv_id(port, id)?;
    let size = message_size(port, size)?;
    Ok((id, sysv_frame(port, size)?, limit(port, size)))
}

/// A System V frame (the `long` type, then `size` bytes of text), zeroed.
fn sysv_frame(port: &Port, size: usize) -> Result<Vec<u8>, PortError> {
    let len = MTYPE.checked_add(size).ok_or_else(|| {
        usage(format!(
            "{}: `message_size={size}` is too large",
            describe(port)
        ))
    })?;
    super::zeroed(len, &format!("a message of {}", describe(port)))
}

/// The largest message of `port`, `size` bytes, as a sink names it.
fn limit(port: &Port, size: usize) -> Limit {
    Limit {
        size,
        name: format!("message_size={size} of {}", describe(port)),
    }
}

/// The POSIX queue `name` opened for writing (blocking when full) or for
/// reading (non-blocking: its fd is polled), and its message size.
fn open_mq(port: &Port, name: &str, write: bool) -> Result<(OwnedFd, usize), PortError> {
    let name =
        CString::new(name).map_err(|_| usage(format!("{}: the name holds NUL", describe(port))))?;
    let fd = crate::sys::ipc::mq_open_port(&name, write, !write).map_err(|e| {
        PortError::open(
            format!("{} ({})", describe(port), name.to_string_lossy()),
            e,
        )
    })?;
    let size = crate::sys::ipc::mq_message_size(&fd)
        .map_err(|e| PortError::open("the queue's attributes", e))?;
    Ok((fd, size))
}

/// A POSIX queue opened read-only and non-blocking (its fd is pollable).
struct MqSource {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl MqSource {
    fn open(port: &Port, name: &str) -> Result<MqSource, PortError> {
        let (fd, size) = open_mq(port, name, false)?;
        let buf = super::zeroed(size.max(1), &format!("a message of {}", describe(port)))?;
        Ok(MqSource { fd, buf })
    }
}

impl Source for MqSource {
    fn recv(&mut self, wait: Wait) -> Result<Recv<'_>, PortError> {
        loop {
            match crate::sys::ipc::mq_receive(&self.fd, &mut self.buf) {
                Ok(n) => return Ok(Recv::Message(&self.buf[..n])),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => match wait {
                    Wait::Now => return Ok(Recv::Nothing),
                    Wait::For(timeout) => {
                        if !super::wait_readable(self.fd.as_fd(), timeout)
                            .map_err(|e| PortError::io("poll the queue", e))?
                        {
                            return Ok(Recv::Nothing);
                        }
                    }
                },
                Err(errno) => return Err(PortError::io("mq_receive", errno)),
            }
        }
    }
}

/// A POSIX queue opened write-only, blocking when full.
struct MqSink {
    fd: OwnedFd,
    limit: Limit,
}

impl MqSink {
    fn open(port: &Port, name: &str) -> Result<MqSink, PortError> {
        let (fd, size) = open_mq(port, name, true)?;
        Ok(MqSink {
            fd,
            limit: limit(port, size),
        })
    }
}

impl Sink for MqSink {
    fn limit(&self) -> Limit {
        self.limit.clone()
    }

    fn send(&mut self, message: &[u8]) -> Result<(), PortError> {
        match crate::sys::ipc::mq_send(&self.fd, message) {
            Ok(()) => Ok(()),
            Err(Errno::EMSGSIZE) => Err(PortError::TooLarge {
                size: message.len().to_string(),
                limit: self.limit.name.clone(),
            }),
            Err(errno) => Err(PortError::io("mq_send", errno)),
        }
    }
}

const MTYPE: usize = crate::sys::ipc::MSG_TYPE_LEN;

/// A System V queue: any message type is received.
struct SysvSource {
    id: i32,
    frame: Vec<u8>,
    limit: String,
}

impl SysvSource {
    fn open(port: &Port, id: &Slot<i32>, size: u64) -> Result<SysvSource, PortError> {
        let (id, frame, limit) = open_sysv(port, id, size)?;
        Ok(SysvSource {
            id,
            frame,
            limit: limit.name,
        })
    }

    fn receive(&mut self, nowait: bool) -> Result<Option<usize>, PortError> {
        loop {
            match crate::sys::ipc::msg_receive(self.id, &mut self.frame, nowait) {
                Ok(n) => return Ok(Some(n)),
                Err(Errno::EINTR) => {}
                Err(Errno::ENOMSG) => return Ok(None),
                Err(Errno::E2BIG) => {
                    return Err(PortError::TooLarge {
                        size: "more than the limit".into(),
                        limit: self.limit.clone(),
                    });
                }
                Err(errno) => return Err(PortError::io("msgrcv", errno)),
            }
        }
    }
}

impl Source for SysvSource {
    fn recv(&mut self, wait: Wait) -> Result<Recv<'_>, PortError> {
        let got = match wait {
            Wait::Now => self.receive(true)?,
            Wait::For(None) => self.receive(false)?,
            // System V queues cannot be polled: look again with a growing
            // pause (up to 10 ms) until the deadline.
            Wait::For(Some(timeout)) => {
                let deadline = Instant::now() + timeout;
                let mut pause = Duration::from_micros(100);
                loop {
                    if let Some(n) = self.receive(true)? {
                        break Some(n);
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        break None;
                    }
                    std::thread::sleep(pause.min(deadline - now));
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
            }
        };
        Ok(match got {
            Some(n) => Recv::Message(&self.frame[MTYPE..MTYPE + n]),
            None => Recv::Nothing,
        })
    }
}

/// A System V queue: messages are sent with type 1.
struct SysvSink {
    id: i32,
    frame: Vec<u8>,
    limit: Limit,
}

impl SysvSink {
    fn open(port: &Port, id: &Slot<i32>, size: u64) -> Result<SysvSink, PortError> {
        let (id, mut frame, limit) = open_sysv(port, id, size)?;
        frame.truncate(MTYPE);
        frame.copy_from_slice(&(1 as libc::c_long).to_ne_bytes());
        Ok(SysvSink { id, frame, limit })
    }
}

impl Sink for SysvSink {
    fn limit(&self) -> Limit {
        self.limit.clone()
    }

    fn send(&mut self, message: &[u8]) -> Result<(), PortError> {
        if message.len() > self.limit.size {
            return Err(PortError::TooLarge {
                size: message.len().to_string(),
                limit: self.limit.name.clone(),
            });
        }
        self.frame.truncate(MTYPE);
        self.frame.extend_from_slice(message);
        match crate::sys::ipc::msg_send(self.id, &self.frame) {
            Ok(()) => Ok(()),
            Err(Errno::EINVAL) if !message.is_empty() => Err(PortError::TooLarge {
                size: message.len().to_string(),
                limit: format!(
                    "the host's msgmax (EINVAL from msgsnd) or {}",
                    self.limit.name
                ),
            }),
            Err(errno) => Err(PortError::io("msgsnd", errno)),
        }
    }
}
