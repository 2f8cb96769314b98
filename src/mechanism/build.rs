//! What a mechanism's launch part (`create`, `handover`) works with.
//!
//! The launcher (`crate::launch`) creates a run's channels by calling each
//! mechanism's `create` with its build context. That context is the
//! [`Build`] trait, defined here and implemented by the launcher, so the
//! mechanisms depend on nothing above them: the launcher keeps its run
//! directory, journal and placeholder values, and a mechanism asks for what
//! it needs through the trait. The plain data a mechanism returns or hands
//! to the launcher ([`Handover`], [`Held`], [`ConnectTarget`], [`Named`])
//! and the helpers the modules share live here too; the launcher re-exports
//! them from `launch::resources`.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{Backlog, SockType, listen};

use crate::child::ring::Header;
use crate::mechanism::error::LaunchError;
use crate::mechanism::model::{ChannelPlan, End, ObjectKind, SocketType};
use crate::sys::ipc::SysvKind;

/// Which of a channel's held fds an end refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Held {
    /// Pipe or FIFO write end.
    Write,
    /// Pipe or FIFO read end.
    Read,
    /// Socketpair end of the `from` side.
    PairFrom,
    /// Socketpair end of the `to` side.
    PairTo,
    /// A bound (listening) socket.
    Listen,
    /// A POSIX shared memory fd.
    Shm,
    /// POSIX mq descriptors.
    MqRead,
    /// See [`Held::MqRead`].
    MqWrite,
    /// See [`Held::MqRead`].
    MqBoth,
    /// A copy of ipc-run's own stdin or stdout.
    Inherited,
}

/// How the launcher hands one end of a channel to a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handover {
    /// As a copy of an end the launcher holds (the same for a restart).
    Held(Held),
    /// As a new connection to the channel's listener, made for each spawn.
    Connect,
    /// Not at all: the end asked for is the wrong way for a one-way channel.
    OneWay,
    /// Not as an fd: the process opens the channel by name or id.
    ByName,
}

impl Handover {
    /// A one-way byte channel (pipe, FIFO): its write or read end.
    pub(crate) fn one_way(end: End) -> Handover {
        match end {
            End::Write | End::Send | End::Connect => Handover::Held(Held::Write),
            End::Read | End::Receive | End::Listen => Handover::Held(Held::Read),
            End::Both => Handover::OneWay,
        }
    }

    /// A bound socket: the listener itself, or a connection to it.
    pub(crate) fn listener(end: End) -> Handover {
        if writes(end) {
            Handover::Connect
        } else {
            Handover::Held(Held::Listen)
        }
    }
}

/// Whether an end writes, sends or connects (the `from` side's ends).
pub(crate) fn writes(end: End) -> bool {
    matches!(end, End::Write | End::Send | End::Connect)
}

/// Where a client end connects, when it is handed a connected socket.
#[derive(Debug, Clone)]
pub(crate) enum ConnectTarget {
    Unix { path: String, socket: SocketType },
    Tcp(SocketAddr),
    Udp(SocketAddr),
}

/// A named object a mechanism creates, journaled before it is made (the
/// launcher's journal record of it is `launch::objects::ObjectRecord`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Named {
    /// A FIFO: its file name in the run directory.
    Fifo(String),
    /// A regular file: its file name in the run directory.
    File(String),
    /// A POSIX shared memory object.
    PosixShm(String),
    /// A POSIX message queue.
    PosixMq(String),
    /// A POSIX named semaphore.
    PosixSem(String),
    /// A socket file in the run directory that a server binds itself
    /// (a server-bound rpc endpoint): its file name.
    UnixSocket(String),
}

/// One channel being created, as a mechanism's `create` sees it: the
/// launcher implements it over its run (objects, fds, run directory,
/// journal, placeholder values).
pub(crate) trait Build {
    /// The channel.
    fn channel(&self) -> &ChannelPlan;

    /// `template` with its placeholders filled in.
    fn fill(&self, template: &str) -> Result<String, LaunchError>;

    /// The file name of `path`, which must lie directly inside the run
    /// directory.
    fn file_in_run_dir(&self, path: &str) -> Result<String, LaunchError>;

    /// The run directory.
    fn run_dir_fd(&self) -> BorrowedFd<'_>;

    /// Journals `object` (before creating it).
    fn intend(&mut self, object: &Named) -> Result<(), LaunchError>;

    /// Records `object` as created (removed on rollback and cleanup).
    fn record(&mut self, object: Named);

    /// Keeps an fd of the channel until the processes that get it start.
    fn hold(&mut self, which: Held, fd: OwnedFd);

    /// Where a client end connects.
    fn connect_to(&mut self, target: ConnectTarget);

    /// Keeps a ring's mapped header, to mark the end of its stream.
    fn keep_ring(&mut self, header: Header, producers: u32);

    /// Binds (and, but for a datagram socket, listens on) a socket file in
    /// the run directory, journaled and set to `mode`.
    fn unix_bind(
        &mut self,
        path: &str,
        socket: SocketType,
        backlog: u32,
        mode: u32,
    ) -> Result<OwnedFd, LaunchError>;

    /// Creates a System V object with `make` under a random key journaled
    /// first, then journals its id.
    fn create_sysv(
        &mut self,
        kind: SysvKind,
        mode: u32,
        error: &dyn Fn(Errno) -> LaunchError,
        make: &dyn Fn(libc::key_t) -> Result<i32, Errno>,
    ) -> Result<i32, LaunchError>;

    /// The port the kernel chose for the channel's socket (`{port:ID}`).
    fn set_port(&mut self, port: u16);

    /// The id of the channel's System V object (`{sysv:ID}`).
    fn set_sysv_id(&mut self, id: i32);

    /// The id of the channel's System V semaphore set, beside its segment.
    fn set_sysv_sem_id(&mut self, id: i32);

    /// The channel id.
    fn id(&self) -> &str {
        &self.channel().id
    }

    /// The error for a failed system call on one of the channel's resources.
    fn error(&self, kind: &'static str, name: &str) -> Box<dyn Fn(Errno) -> LaunchError> {
        let (channel, name) = (self.id().to_owned(), name.to_owned());
        Box::new(move |errno: Errno| LaunchError::Resource {
            channel: channel.clone(),
            kind,
            name: name.clone(),
            errno,
        })
    }

    /// The permission bits of the channel's object of this kind.
    fn mode(&self, kind: ObjectKind) -> u32 {
        self.channel()
            .objects()
            .iter()
            .find(|o| o.kind == kind)
            .map_or(0o600, |o| o.mode & 0o777)
    }
}

pub(crate) fn exists(kind: &'static str, name: &str) -> LaunchError {
    LaunchError::Exists {
        kind,
        name: name.to_owned(),
    }
}

pub(crate) fn posix_name(channel: &str, name: &str) -> Result<String, LaunchError> {
    let ok = name.len() >= 2
        && name.len() <= 251
        && name.starts_with('/')
        && !name[1..].contains(['/', '\0'])
        && !name.contains(char::is_whitespace)
        && name != "/."
        && name != "/..";
    if ok {
        Ok(name.to_owned())
    } else {
        Err(LaunchError::BadValue {
            what: format!("POSIX object name of channel {channel}"),
            value: name.to_owned(),
            reason: "expected /NAME with no further slash, whitespace or NUL, at most 251 bytes"
                .into(),
        })
    }
}

pub(crate) fn sock_type(socket: SocketType) -> SockType {
    match socket {
        SocketType::Stream => SockType::Stream,
        SocketType::Seqpacket => SockType::SeqPacket,
        SocketType::Dgram => SockType::Datagram,
    }
}

pub(crate) fn backlog(n: u32) -> Backlog {
    Backlog::new(n.min(4096) as i32).unwrap_or(Backlog::MAXCONN)
}

pub(crate) fn parse_addr(channel: &str, bind: &str) -> Result<SocketAddr, LaunchError> {
    let bind = if bind.is_empty() { "127.0.0.1:0" } else { bind };
    if let Ok(addr) = bind.parse() {
        return Ok(addr);
    }
    if let Some(port) = bind
        .strip_prefix("localhost:")
        .and_then(|p| p.parse::<u16>().ok())
    {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(LaunchError::BadValue {
        what: format!("bind address of channel {channel}"),
        value: bind.to_owned(),
        reason: "expected IP:PORT, [IPv6]:PORT or localhost:PORT".into(),
    })
}

pub(crate) fn bind_error(channel: &str, bind: &str, e: std::io::Error) -> LaunchError {
    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    if errno == Errno::EADDRINUSE {
        LaunchError::AddressInUse {
            channel: channel.to_owned(),
            address: bind.to_owned(),
        }
    } else {
        LaunchError::Resource {
            channel: channel.to_owned(),
            kind: "socket",
            name: bind.to_owned(),
            errno,
        }
    }
}

pub(crate) fn tcp_bind(
    channel: &str,
    bind: &str,
    n: u32,
) -> Result<(OwnedFd, SocketAddr), LaunchError> {
    let want = parse_addr(channel, bind)?;
    // A socket unit may hold the port and have handed it to ipc-run: the
    // listener is then that socket, already listening.
    if let Some(fd) = super::activation::take(want) {
        return Ok((fd, want));
    }
    let listener = TcpListener::bind(want).map_err(|e| bind_error(channel, bind, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| bind_error(channel, bind, e))?;
    let fd = OwnedFd::from(listener);
    listen(&fd, backlog(n)).map_err(|errno| LaunchError::Resource {
        channel: channel.to_owned(),
        kind: "tcp listener",
        name: bind.to_owned(),
        errno,
    })?;
    Ok((fd, addr))
}
