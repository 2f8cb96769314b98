//! Channel resources: the run's objects and fds, the launcher's side of a
//! mechanism's `create` (in `src/mechanism/`: [`ChannelBuild`] implements
//! the mechanism layer's `Build` trait), and the guard that removes whatever
//! was created if anything later fails.
//!
//! Every fd is created `O_CLOEXEC` and kept as an `OwnedFd`; every named
//! object is created exclusively (`O_EXCL`, `IPC_EXCL`, `mkfifoat`, `bind`
//! on a fresh path) and then set to its exact mode through an fd or the
//! run directory fd, so the umask never matters. An object that already
//! exists is reported ([`LaunchError::Exists`]) and left alone: it is not
//! recorded, so rollback never removes it.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, UnixAddr, bind, connect, listen, setsockopt, socket, sockopt,
};
use nix::sys::stat::{FchmodatFlags, Mode, fchmodat};

use super::LaunchError;
use super::objects::{Match, ObjectRecord};
use super::placeholder::Values;
use super::run_dir::RunDir;
use crate::child::ring::Header;
use crate::mechanism::build::{Build, Named, backlog, sock_type};
pub(crate) use crate::mechanism::build::{ConnectTarget, Handover, Held, writes};
use crate::plan::{ChannelPlan, EndpointPlan, SocketType};
use crate::sys::ipc::{self, SysvKind};

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
    /// The named objects of each channel (by plan index), so that a
    /// channel a reload removes can be removed alone.
    pub by_channel: HashMap<usize, Vec<ObjectRecord>>,
    /// The file (`st_dev`, `st_ino`) of each end held at creation, kept
    /// after the end is given up: an end a reload takes back from a
    /// process (`Launched::take_back_ends`) must be that file.
    pub ids: HashMap<(usize, Held), (libc::dev_t, libc::ino_t)>,
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
            by_channel: HashMap::new(),
            ids: HashMap::new(),
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
    created: &'a mut Created,
    /// Placeholder values; kernel-chosen ports and System V ids are added.
    values: &'a mut Values,
    /// The channel's index in the plan.
    index: usize,
    /// The channel.
    channel: &'a ChannelPlan,
    /// A peer outside the topology uses it: its ends are kept for the run.
    external: bool,
}

impl From<Named> for ObjectRecord {
    fn from(object: Named) -> ObjectRecord {
        match object {
            Named::Fifo(name) => ObjectRecord::Fifo(name),
            Named::File(name) => ObjectRecord::File(name),
            Named::PosixShm(name) => ObjectRecord::PosixShm(name),
            Named::PosixMq(name) => ObjectRecord::PosixMq(name),
            Named::PosixSem(name) => ObjectRecord::PosixSem(name),
            Named::UnixSocket(name) => ObjectRecord::UnixSocket(name),
        }
    }
}

impl Build for ChannelBuild<'_> {
    fn channel(&self) -> &ChannelPlan {
        self.channel
    }

    fn fill(&self, template: &str) -> Result<String, LaunchError> {
        self.values.fill(template)
    }

    fn file_in_run_dir(&self, path: &str) -> Result<String, LaunchError> {
        file_in_run_dir(self.created, &self.channel.id, path)
    }

    fn run_dir_fd(&self) -> BorrowedFd<'_> {
        self.created.dir().fd()
    }

    fn intend(&mut self, object: &Named) -> Result<(), LaunchError> {
        self.created.intend(&ObjectRecord::from(object.clone()))
    }

    fn record(&mut self, object: Named) {
        self.created.objects.push(object.into());
    }

    fn hold(&mut self, which: Held, fd: OwnedFd) {
        if self.external {
            self.created.pinned.insert((self.index, which));
        }
        if let Ok(stat) = nix::sys::stat::fstat(&fd) {
            let id = (stat.st_dev, stat.st_ino);
            self.created.ids.insert((self.index, which), id);
        }
        self.created.held.insert((self.index, which), fd);
    }

    fn connect_to(&mut self, target: ConnectTarget) {
        self.created.connect.insert(self.index, target);
    }

    fn keep_ring(&mut self, header: Header, producers: u32) {
        self.created.rings.push(RingHeader {
            channel: self.index,
            header,
            producers,
            marked: false,
        });
    }

    fn unix_bind(
        &mut self,
        path: &str,
        socket: SocketType,
        backlog: u32,
        mode: u32,
    ) -> Result<OwnedFd, LaunchError> {
        unix_bind(self.created, &self.channel.id, path, socket, backlog, mode)
    }

    fn create_sysv(
        &mut self,
        kind: SysvKind,
        mode: u32,
        error: &dyn Fn(Errno) -> LaunchError,
        make: &dyn Fn(libc::key_t) -> Result<i32, Errno>,
    ) -> Result<i32, LaunchError> {
        create_sysv(self.created, kind, mode, error, make)
    }

    fn set_port(&mut self, port: u16) {
        self.values.ports.insert(self.channel.id.to_string(), port);
    }

    fn set_sysv_id(&mut self, id: i32) {
        self.values.sysv_ids.insert(self.channel.id.to_string(), id);
    }

    fn set_sysv_sem_id(&mut self, id: i32) {
        self.values
            .sysv_sem_ids
            .insert(self.channel.id.to_string(), id);
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
        .from()
        .iter()
        .chain(channel.to())
        .any(|e| matches!(e, EndpointPlan::External));
    let before = created.objects.len();
    let mut build = ChannelBuild {
        created,
        values,
        index,
        channel,
        external,
    };
    let result = crate::mechanism::create(&mut build, channel);
    let made = created.objects.get(before..).unwrap_or_default().to_vec();
    if !made.is_empty() {
        created.by_channel.insert(index, made);
    }
    result
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
        Err(Errno::EADDRINUSE) => return Err(crate::mechanism::build::exists("unix-socket", path)),
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
