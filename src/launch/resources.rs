//! Channel resources: one creation routine per [`Mechanism`] family, and
//! the guard that removes whatever was created if anything later fails.
//!
//! Every fd is created `O_CLOEXEC` and kept as an `OwnedFd`; every named
//! object is created exclusively (`O_EXCL`, `IPC_EXCL`, `mkfifoat`, `bind`
//! on a fresh path) and then set to its exact mode through an fd or the
//! run directory fd, so the umask never matters. An object that already
//! exists is reported ([`LaunchError::Exists`]) and left alone: it is not
//! recorded, so rollback never removes it.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, openat};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, listen, setsockopt,
    socket, socketpair, sockopt,
};
use nix::sys::stat::{FchmodatFlags, Mode, fchmod, fchmodat};

use super::error::LaunchError;
use super::objects::{Match, ObjectRecord};
use super::placeholder::Values;
use super::run_dir::RunDir;
use crate::child::ring::RingError;
use crate::plan::{ChannelPlan, EndpointPlan, Mechanism, ObjectKind};
use crate::sys::fd::{dup_cloexec_at_least, std_fd};
use crate::sys::ipc::{self, SysvKind};
use crate::sys::ring::Mapping;
use crate::topology::SocketType;

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
    pub header: Mapping,
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

fn object_mode(channel: &ChannelPlan, kind: ObjectKind) -> u32 {
    channel
        .objects
        .iter()
        .find(|o| o.kind == kind)
        .map_or(0o600, |o| o.mode & 0o777)
}

/// Creates the resources of channel `index`.
pub(crate) fn create_channel(
    created: &mut Created,
    values: &mut Values,
    index: usize,
    channel: &ChannelPlan,
) -> Result<(), LaunchError> {
    let id = channel.id.as_str();
    let res = |kind: &'static str, name: &str| {
        let (channel, name) = (id.to_owned(), name.to_owned());
        move |errno: Errno| LaunchError::Resource {
            channel,
            kind,
            name,
            errno,
        }
    };
    let external = channel
        .from
        .iter()
        .chain(&channel.to)
        .any(|e| matches!(e, EndpointPlan::External));
    let hold = |created: &mut Created, which: Held, fd: OwnedFd| {
        if external {
            created.pinned.insert((index, which));
        }
        created.held.insert((index, which), fd);
    };

    match &channel.mechanism {
        Mechanism::Inherit { stream } => {
            let stream_fd = stream.fd();
            let stream = stream.as_str();
            let fd = std_fd(stream_fd)
                .ok_or_else(|| res("inherited stream", stream)(Errno::EBADF))
                .and_then(|fd| {
                    dup_cloexec_at_least(fd, 3).map_err(res("inherited stream", stream))
                })?;
            hold(created, Held::Inherited, fd);
        }
        Mechanism::Pipe { .. } => {
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(res("pipe", id))?;
            hold(created, Held::Read, read);
            hold(created, Held::Write, write);
        }
        Mechanism::Fifo { path, deliver } => {
            let path = values.fill(path)?;
            let name = file_in_run_dir(created, id, &path)?;
            let record = ObjectRecord::Fifo(name.clone());
            created.intend(&record)?;
            let mode = object_mode(channel, ObjectKind::Fifo);
            match nix::unistd::mkfifoat(
                created.dir().fd(),
                name.as_str(),
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(()) => created.objects.push(record),
                Err(Errno::EEXIST) => return Err(exists("fifo", &path)),
                Err(errno) => return Err(res("fifo", &path)(errno)),
            }
            // Read end first, non-blocking, so neither open waits for the
            // other (the FIFO open-order deadlock); then the write end.
            let read = openat(
                created.dir().fd(),
                name.as_str(),
                OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(res("fifo", &path))?;
            fchmod(&read, Mode::from_bits_truncate(mode as libc::mode_t))
                .map_err(res("fifo", &path))?;
            if *deliver != crate::mechanism::fifo::Deliver::Path {
                let write = openat(
                    created.dir().fd(),
                    name.as_str(),
                    OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(res("fifo", &path))?;
                fcntl(&read, FcntlArg::F_SETFL(OFlag::empty())).map_err(res("fifo", &path))?;
                hold(created, Held::Read, read);
                hold(created, Held::Write, write);
            }
        }
        Mechanism::Socketpair { socket } => {
            let (a, b) = socketpair(
                AddressFamily::Unix,
                sock_type(*socket),
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(res("socketpair", id))?;
            hold(created, Held::PairFrom, a);
            hold(created, Held::PairTo, b);
        }
        Mechanism::UnixListener {
            socket,
            path,
            backlog,
        } => {
            let path = values.fill(path)?;
            let mode = object_mode(channel, ObjectKind::UnixSocket);
            let fd = unix_bind(created, id, &path, *socket, *backlog, mode)?;
            hold(created, Held::Listen, fd);
            created.connect.insert(
                index,
                ConnectTarget::Unix {
                    path,
                    socket: *socket,
                },
            );
        }
        Mechanism::Tcp { bind, backlog } => {
            let (fd, addr) = tcp_bind(id, bind, *backlog)?;
            values.ports.insert(id.to_owned(), addr.port());
            hold(created, Held::Listen, fd);
            created.connect.insert(index, ConnectTarget::Tcp(addr));
        }
        Mechanism::Udp { bind } => {
            let want = parse_addr(id, bind)?;
            let socket = UdpSocket::bind(want).map_err(|e| bind_error(id, bind, e))?;
            let addr = socket.local_addr().map_err(|e| bind_error(id, bind, e))?;
            values.ports.insert(id.to_owned(), addr.port());
            hold(created, Held::Listen, OwnedFd::from(socket));
            created.connect.insert(index, ConnectTarget::Udp(addr));
        }
        Mechanism::Rpc {
            transport,
            address,
            backlog,
            ..
        } => match transport.as_str() {
            "unix" => {
                let path = values.fill(address)?;
                let mode = object_mode(channel, ObjectKind::UnixSocket);
                let fd = unix_bind(created, id, &path, SocketType::Stream, *backlog, mode)?;
                hold(created, Held::Listen, fd);
                created.connect.insert(
                    index,
                    ConnectTarget::Unix {
                        path,
                        socket: SocketType::Stream,
                    },
                );
            }
            "tcp" => {
                let (fd, addr) = tcp_bind(id, address, *backlog)?;
                values.ports.insert(id.to_owned(), addr.port());
                hold(created, Held::Listen, fd);
                created.connect.insert(index, ConnectTarget::Tcp(addr));
            }
            other => {
                return Err(LaunchError::BadValue {
                    what: format!("rpc transport of channel {id}"),
                    value: other.to_owned(),
                    reason: "expected unix or tcp".into(),
                });
            }
        },
        Mechanism::PosixShm {
            name,
            size,
            semaphores,
            ring,
        } => {
            let name = posix_name(id, &values.fill(name)?)?;
            let record = ObjectRecord::PosixShm(name.clone());
            created.intend(&record)?;
            let mode = object_mode(channel, ObjectKind::PosixShm);
            let fd = match nix::sys::mman::shm_open(
                name.as_str(),
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(fd) => {
                    created.objects.push(record);
                    fd
                }
                Err(Errno::EEXIST) => return Err(exists("posix-shm", &name)),
                Err(errno) => return Err(res("posix-shm", &name)(errno)),
            };
            fchmod(&fd, Mode::from_bits_truncate(mode as libc::mode_t))
                .map_err(res("posix-shm", &name))?;
            nix::unistd::ftruncate(&fd, *size as libc::off_t).map_err(res("posix-shm", &name))?;
            if let Some(ring) = ring {
                // Formatted before any process starts: nobody sees a
                // half-made header.
                crate::child::ring::format(fd.as_fd(), *size, ring.producers).map_err(|error| {
                    match error {
                        RingError::Sys { errno, .. } => res("posix-shm", &name)(errno),
                        other => LaunchError::BadValue {
                            what: format!("ring of channel {id}"),
                            value: format!("{size} bytes"),
                            reason: other.to_string(),
                        },
                    }
                })?;
                let header = Mapping::new(fd.as_fd(), crate::child::ring::HEADER_SIZE as usize)
                    .map_err(res("posix-shm", &name))?;
                created.rings.push(RingHeader {
                    channel: index,
                    header,
                    producers: ring.producers,
                    marked: false,
                });
            }
            hold(created, Held::Shm, fd);
            // The first semaphore is the lock (1), the others signal (0).
            for (i, sem) in semaphores.iter().enumerate() {
                create_posix_sem(created, values, channel, sem, u32::from(i == 0))?;
            }
        }
        Mechanism::PosixSem { name, initial } => {
            create_posix_sem(created, values, channel, name, *initial)?;
        }
        Mechanism::PosixMq {
            name,
            depth,
            message_size,
        } => {
            let name = posix_name(id, &values.fill(name)?)?;
            let c =
                CString::new(name.clone()).map_err(|_| res("posix-mq", &name)(Errno::EINVAL))?;
            let record = ObjectRecord::PosixMq(name.clone());
            created.intend(&record)?;
            let mode = object_mode(channel, ObjectKind::PosixMq);
            let both = match ipc::mq_create(&c, mode, *depth as i64, *message_size as i64) {
                Ok(fd) => {
                    created.objects.push(record);
                    fd
                }
                Err(Errno::EEXIST) => return Err(exists("posix-mq", &name)),
                Err(Errno::EMFILE) => {
                    let limit = nix::sys::resource::getrlimit(
                        nix::sys::resource::Resource::RLIMIT_MSGQUEUE,
                    )
                    .map_or_else(|_| "unknown".to_owned(), |(soft, _)| soft.to_string());
                    return Err(LaunchError::MqQuota {
                        channel: id.to_owned(),
                        name,
                        bytes: depth.saturating_mul(*message_size),
                        limit,
                    });
                }
                Err(errno) => return Err(res("posix-mq", &name)(errno)),
            };
            let read = ipc::mq_open_existing(&c, false).map_err(res("posix-mq", &name))?;
            let write = ipc::mq_open_existing(&c, true).map_err(res("posix-mq", &name))?;
            hold(created, Held::MqBoth, both);
            hold(created, Held::MqRead, read);
            hold(created, Held::MqWrite, write);
        }
        Mechanism::SysvShm {
            size,
            semaphore_set,
        } => {
            let mode = object_mode(channel, ObjectKind::SysvShm);
            let shmid = ipc::shm_create(*size, mode).map_err(res("sysv-shm", id))?;
            record_sysv(created, id, SysvKind::Shm, shmid)?;
            values.sysv_ids.insert(id.to_owned(), shmid);
            if *semaphore_set {
                // lock = 1, ready = 0, as for POSIX shared memory.
                let mode = object_mode(channel, ObjectKind::SysvSem);
                let semid = ipc::sem_set_create(&[1, 0], mode).map_err(res("sysv-sem", id))?;
                record_sysv(created, id, SysvKind::Sem, semid)?;
                values.sysv_sem_ids.insert(id.to_owned(), semid);
            }
        }
        Mechanism::SysvMq { queue_bytes, .. } => {
            let mode = object_mode(channel, ObjectKind::SysvMq);
            let msqid = ipc::msg_create(*queue_bytes, mode).map_err(res("sysv-mq", id))?;
            record_sysv(created, id, SysvKind::Msg, msqid)?;
            values.sysv_ids.insert(id.to_owned(), msqid);
        }
        Mechanism::SysvSem { count, initial } => {
            let mode = object_mode(channel, ObjectKind::SysvSem);
            let initial = u16::try_from(*initial).map_err(|_| LaunchError::BadValue {
                what: format!("initial semaphore value of channel {id}"),
                value: initial.to_string(),
                reason: "System V semaphores hold at most 32767".into(),
            })?;
            let values_all = vec![initial; *count as usize];
            let semid = ipc::sem_set_create(&values_all, mode).map_err(res("sysv-sem", id))?;
            record_sysv(created, id, SysvKind::Sem, semid)?;
            values.sysv_ids.insert(id.to_owned(), semid);
        }
        Mechanism::Signal { .. } => {}
    }
    Ok(())
}

fn exists(kind: &'static str, name: &str) -> LaunchError {
    LaunchError::Exists {
        kind,
        name: name.to_owned(),
    }
}

fn record_sysv(
    created: &mut Created,
    channel: &str,
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
    let record = ObjectRecord::Sysv { kind, id, identity };
    created.objects.push(record.clone());
    let _ = channel;
    created.intend(&record)
}

fn create_posix_sem(
    created: &mut Created,
    values: &Values,
    channel: &ChannelPlan,
    name: &str,
    initial: u32,
) -> Result<(), LaunchError> {
    let name = posix_name(&channel.id, &values.fill(name)?)?;
    let c = CString::new(name.clone()).map_err(|_| LaunchError::BadValue {
        what: format!("semaphore name of channel {}", channel.id),
        value: name.clone(),
        reason: "contains NUL".into(),
    })?;
    let record = ObjectRecord::PosixSem(name.clone());
    created.intend(&record)?;
    let sem_error = |errno| LaunchError::Resource {
        channel: channel.id.clone(),
        kind: "posix-sem",
        name: name.clone(),
        errno,
    };
    match ipc::sem_create(&c, 0o600, initial) {
        Ok(()) => created.objects.push(record),
        Err(Errno::EEXIST) => return Err(exists("posix-sem", &name)),
        Err(errno) => return Err(sem_error(errno)),
    }
    ipc::sem_set_mode(&c, object_mode(channel, ObjectKind::PosixSem)).map_err(sem_error)
}

fn posix_name(channel: &str, name: &str) -> Result<String, LaunchError> {
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

fn file_in_run_dir(created: &Created, channel: &str, path: &str) -> Result<String, LaunchError> {
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

fn sock_type(socket: SocketType) -> SockType {
    match socket {
        SocketType::Stream => SockType::Stream,
        SocketType::Seqpacket => SockType::SeqPacket,
        SocketType::Dgram => SockType::Datagram,
    }
}

fn backlog(n: u32) -> Backlog {
    Backlog::new(n.min(4096) as i32).unwrap_or(Backlog::MAXCONN)
}

fn unix_bind(
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

fn parse_addr(channel: &str, bind: &str) -> Result<SocketAddr, LaunchError> {
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

fn bind_error(channel: &str, bind: &str, e: std::io::Error) -> LaunchError {
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

fn tcp_bind(channel: &str, bind: &str, n: u32) -> Result<(OwnedFd, SocketAddr), LaunchError> {
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
