//! Channel resources: what a mechanism's `create` (in `src/mechanism/`)
//! works on and the helpers it shares, and the guard that removes whatever
//! was created if anything later fails.
//!
//! Every fd is created `O_CLOEXEC` and kept as an `OwnedFd`; every named
//! object is created exclusively (`O_EXCL`, `IPC_EXCL`, `mkfifoat`, `bind`
//! on a fresh path) and then set to its exact mode through an fd or the
//! run directory fd, so the umask never matters. An object that already
//! exists is reported ([`LaunchError::Exists`]) and left alone: it is not
//! recorded, so rollback never removes it.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, listen, setsockopt,
    socket, sockopt,
};
use nix::sys::stat::{FchmodatFlags, Mode, fchmodat};

use super::error::LaunchError;
use super::objects::{Match, ObjectRecord};
use super::placeholder::Values;
use super::run_dir::RunDir;
use crate::child::ring::Header;
use crate::plan::{ChannelPlan, End, EndpointPlan, ObjectKind, SocketType};
use crate::sys::ipc::{self, SysvKind};

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

/// The objects and fds of a run, removed on drop unless [`Created::cleanup`]
/// ran first.
#[derive(Debug)]
pub(crate) struct Created {
    pub run_dir: Option<RunDir>,
    pub objects: Vec<ObjectRecord>,
    pub held: HashMap<(usize, Held), OwnedFd>,
    /// Ends kept for the whole run (a peer outside the topology uses them).
    pub pinned: HashSet<(usize, Held)>,
    pub connect: HashMap<usize, ConnectTarget>,
    pub notify: Option<OwnedFd>,
    /// The headers of ring segments, mapped to mark the end of the stream.
    pub rings: Vec<RingHeader>,
    /// Named objects journaled so far (fault injection counts them).
    intents: usize,
}

/// A ring segment's header page, mapped by the launcher: when every writer
/// of the channel has ended for good, "producers done" is set to
/// `producers` and the reader woken (`docs/shm-ring.md`).
#[derive(Debug)]
pub(crate) struct RingHeader {
    /// The channel's index in the plan.
    pub channel: usize,
    pub header: Header,
    pub producers: u32,
    /// The end has been marked.
    pub marked: bool,
}

/// What [`super::Launched::cleanup`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Objects removed (`kind name`).
    pub removed: Vec<String>,
    /// Objects already gone or no longer ours, left alone.
    pub skipped: Vec<String>,
    /// Objects whose removal failed, with the error.
    pub failed: Vec<String>,
    /// Unexpected files left in the run directory (then kept).
    pub leftovers: Vec<String>,
}

impl CleanupReport {
    /// Whether everything was removed.
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.leftovers.is_empty()
    }
}

impl Created {
    pub fn new(run_dir: RunDir) -> Created {
        Created {
            run_dir: Some(run_dir),
            objects: Vec::new(),
            held: HashMap::new(),
            pinned: HashSet::new(),
            connect: HashMap::new(),
            notify: None,
            rings: Vec::new(),
            intents: 0,
        }
    }

    pub fn dir(&self) -> &RunDir {
        self.run_dir
            .as_ref()
            .expect("run dir present until cleanup")
    }

    /// Journals `record` (before creating it).
    pub fn intend(&mut self, record: &ObjectRecord) -> Result<(), LaunchError> {
        self.intents += 1;
        inject_fault(self.intents)?;
        self.run_dir
            .as_mut()
            .expect("run dir present until cleanup")
            .journal(record)
    }

    /// Journals the key of a System V object (before creating it).
    pub fn intend_sysv(&mut self, record: &ObjectRecord) -> Result<(), LaunchError> {
        self.intents += 1;
        inject_fault(self.intents)?;
        self.run_dir
            .as_mut()
            .expect("run dir present until cleanup")
            .journal_intent(record)
    }

    /// Removes every object (newest first) and the run directory.
    pub fn cleanup(&mut self) -> CleanupReport {
        let mut report = CleanupReport::default();
        self.held.clear();
        self.notify = None;
        let Some(run_dir) = self.run_dir.take() else {
            return report;
        };
        for record in self.objects.drain(..).rev() {
            match record.remove(run_dir.fd(), Match::Creator) {
                Ok(true) => report.removed.push(record.to_string()),
                Ok(false) => report.skipped.push(record.to_string()),
                Err(errno) => report.failed.push(format!("{record}: {errno}")),
            }
        }
        report.leftovers = run_dir.remove();
        report
    }
}

/// Rollback tests only, compiled into debug builds alone: with
/// `IPC_RUN_FAULT_AT=k` in ipc-run's environment, journaling the `k`-th named
/// object of a run fails as if the system had run out of memory, so that
/// every prefix of a launch can be shown to roll back completely.
#[cfg(debug_assertions)]
fn inject_fault(count: usize) -> Result<(), LaunchError> {
    match std::env::var("IPC_RUN_FAULT_AT").map(|k| k.parse::<usize>()) {
        Ok(Ok(k)) if k == count => Err(LaunchError::sys(
            format!("injected fault at named object {k} (IPC_RUN_FAULT_AT)"),
            Errno::ENOMEM,
        )),
        _ => Ok(()),
    }
}

/// Release builds carry no fault injection.
#[cfg(not(debug_assertions))]
fn inject_fault(_count: usize) -> Result<(), LaunchError> {
    Ok(())
}

impl Drop for Created {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

/// One channel being created: where its fds and objects go, and the
/// placeholder values it fills in. A mechanism's `create` works on it.
pub(crate) struct ChannelBuild<'a> {
    /// The run's objects and fds.
    pub created: &'a mut Created,
    /// Placeholder values; kernel-chosen ports and System V ids are added.
    pub values: &'a mut Values,
    /// The channel's index in the plan.
    pub index: usize,
    /// The channel.
    pub channel: &'a ChannelPlan,
    /// A peer outside the topology uses it: its ends are kept for the run.
    external: bool,
}

impl ChannelBuild<'_> {
    /// The channel id.
    pub fn id(&self) -> &str {
        &self.channel.id
    }

    /// Keeps an fd of the channel until the processes that get it start.
    pub fn hold(&mut self, which: Held, fd: OwnedFd) {
        if self.external {
            self.created.pinned.insert((self.index, which));
        }
        self.created.held.insert((self.index, which), fd);
    }

    /// Where a client end connects.
    pub fn connect_to(&mut self, target: ConnectTarget) {
        self.created.connect.insert(self.index, target);
    }

    /// The error for a failed system call on one of the channel's resources.
    pub fn error(&self, kind: &'static str, name: &str) -> impl Fn(Errno) -> LaunchError + use<> {
        let (channel, name) = (self.channel.id.clone(), name.to_owned());
        move |errno: Errno| LaunchError::Resource {
            channel: channel.clone(),
            kind,
            name: name.clone(),
            errno,
        }
    }

    /// The permission bits of the channel's object of this kind.
    pub fn mode(&self, kind: ObjectKind) -> u32 {
        self.channel
            .objects
            .iter()
            .find(|o| o.kind == kind)
            .map_or(0o600, |o| o.mode & 0o777)
    }
}

/// Creates the resources of channel `index`.
pub(crate) fn create_channel(
    created: &mut Created,
    values: &mut Values,
    index: usize,
    channel: &ChannelPlan,
) -> Result<(), LaunchError> {
    let external = channel
        .from
        .iter()
        .chain(&channel.to)
        .any(|e| matches!(e, EndpointPlan::External));
    let mut build = ChannelBuild {
        created,
        values,
        index,
        channel,
        external,
    };
    crate::mechanism::create(&mut build)
}

pub(crate) fn exists(kind: &'static str, name: &str) -> LaunchError {
    LaunchError::Exists {
        kind,
        name: name.to_owned(),
    }
}

/// Creates a System V object with `make` under a random key journaled
/// first (see [`super::objects`]), then journals its id.
pub(crate) fn create_sysv(
    created: &mut Created,
    kind: SysvKind,
    mode: u32,
    error: impl FnOnce(Errno) -> LaunchError,
    make: impl Fn(libc::key_t) -> Result<i32, Errno>,
) -> Result<i32, LaunchError> {
    // A key already taken (by anyone) is EEXIST: another random one.
    for _ in 0..16 {
        let (key, intent) = super::run_dir::sysv_intent(kind, mode)?;
        created.intend_sysv(&intent)?;
        match make(key) {
            Ok(id) => {
                record_sysv(created, key, kind, id)?;
                return Ok(id);
            }
            Err(Errno::EEXIST) => continue,
            Err(errno) => return Err(error(errno)),
        }
    }
    Err(error(Errno::EEXIST))
}

/// Records a System V object the kernel just created under `key` (its id
/// unknown before), removing it when its identity cannot be read.
fn record_sysv(
    created: &mut Created,
    key: libc::key_t,
    kind: SysvKind,
    id: i32,
) -> Result<(), LaunchError> {
    let identity = match ipc::sysv_stat(kind, id) {
        Ok(identity) => identity,
        Err(errno) => {
            let _ = ipc::sysv_remove(kind, id);
            return Err(LaunchError::sys(
                format!("inspect the System V object {id}"),
                errno,
            ));
        }
    };
    let record = ObjectRecord::Sysv {
        kind,
        id,
        identity,
        key: Some(key),
    };
    created.objects.push(record.clone());
    created
        .run_dir
        .as_mut()
        .expect("run dir present until cleanup")
        .journal_created(&record)
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

pub(crate) fn file_in_run_dir(
    created: &Created,
    channel: &str,
    path: &str,
) -> Result<String, LaunchError> {
    created
        .dir()
        .file_name_in(path)
        .filter(|n| !n.contains(char::is_whitespace))
        .ok_or_else(|| LaunchError::BadValue {
            what: format!("path of channel {channel}"),
            value: path.to_owned(),
            reason: format!(
                "named files must be directly inside the run directory {}",
                created.dir().path.display()
            ),
        })
}

pub(crate) fn sock_type(socket: SocketType) -> SockType {
    match socket {
        SocketType::Stream => SockType::Stream,
        SocketType::Seqpacket => SockType::SeqPacket,
        SocketType::Dgram => SockType::Datagram,
    }
}

fn backlog(n: u32) -> Backlog {
    Backlog::new(n.min(4096) as i32).unwrap_or(Backlog::MAXCONN)
}

pub(crate) fn unix_bind(
    created: &mut Created,
    channel: &str,
    path: &str,
    socket: SocketType,
    n: u32,
    mode: u32,
) -> Result<OwnedFd, LaunchError> {
    let name = file_in_run_dir(created, channel, path)?;
    let res = |errno| LaunchError::Resource {
        channel: channel.to_owned(),
        kind: "unix socket",
        name: path.to_owned(),
        errno,
    };
    let addr = UnixAddr::new(path).map_err(res)?;
    let fd = socket_cloexec(sock_type(socket)).map_err(res)?;
    let record = ObjectRecord::UnixSocket(name.clone());
    created.intend(&record)?;
    match bind(fd.as_raw_fd(), &addr) {
        Ok(()) => created.objects.push(record),
        Err(Errno::EADDRINUSE) => return Err(exists("unix-socket", path)),
        Err(errno) => return Err(res(errno)),
    }
    // bind(2) honours the umask; the run directory is 0700 so nobody else
    // can reach the file meanwhile, and no one but us can replace it.
    fchmodat(
        created.dir().fd(),
        name.as_str(),
        Mode::from_bits_truncate(mode as libc::mode_t),
        FchmodatFlags::FollowSymlink,
    )
    .map_err(res)?;
    if socket != SocketType::Dgram {
        listen(&fd, backlog(n)).map_err(res)?;
    }
    Ok(fd)
}

fn socket_cloexec(ty: SockType) -> Result<OwnedFd, Errno> {
    socket(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None)
}

/// Creates the notify socket (`SOCK_DGRAM`, `SO_PASSCRED`) at `path`.
pub(crate) fn notify_socket(created: &mut Created, path: &str) -> Result<OwnedFd, LaunchError> {
    let fd = unix_bind(created, "notify", path, SocketType::Dgram, 0, 0o600)?;
    setsockopt(&fd, sockopt::PassCred, &true)
        .map_err(|e| LaunchError::sys("enable SO_PASSCRED", e))?;
    fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map_err(|e| LaunchError::sys("make the notify socket non-blocking", e))?;
    Ok(fd)
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

/// A fresh client socket connected to `target` (CLOEXEC).
pub(crate) fn connect_to(target: &ConnectTarget) -> Result<OwnedFd, Errno> {
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    match target {
        ConnectTarget::Unix { path, socket } => {
            let fd = socket_cloexec(sock_type(*socket))?;
            connect(fd.as_raw_fd(), &UnixAddr::new(path.as_str())?)?;
            Ok(fd)
        }
        ConnectTarget::Tcp(addr) => Ok(OwnedFd::from(TcpStream::connect(addr).map_err(errno)?)),
        ConnectTarget::Udp(addr) => {
            let local: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = UdpSocket::bind(local).map_err(errno)?;
            socket.connect(addr).map_err(errno)?;
            Ok(OwnedFd::from(socket))
        }
    }
}
