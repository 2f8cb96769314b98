//! One direction or both of a mechanism, as each process holds it: the
//! [`Link`] a measurement sends and receives through, the parent's setup
//! (it creates every object, then hands the peer what it needs in an
//! [`Endpoint`]) and the peer's side of it.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::socket::{AddressFamily, Shutdown, SockFlag, SockType, setsockopt, sockopt};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use super::cleanup::{self, Guard, Object};
use super::mechanism::{HostLimits, Mechanism};
use crate::child::description::{Description, Params};
use crate::child::ring::{self, Consumer, Producer, Received};
use crate::child::{self};
use crate::sys::bench::SysvMessage;

/// What is measured: which way the data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Test {
    /// The peer sends for a while, the parent receives and times.
    Throughput,
    /// The parent sends one message, the peer sends it back.
    RoundTrip,
}

/// How a receive that timed out (UDP only) is told apart from an error.
pub fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A channel between the two processes, as one side holds it.
///
/// A receive of 0 bytes means the sender ended: EOF on streams, an empty
/// message on message mechanisms (the bench never sends an empty message
/// otherwise).
pub trait Link {
    /// Sends all of `msg` (one message where the mechanism keeps them).
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;
    /// Receives into `buf`: one message, or on a stream whatever is there.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Tells the receiver that nothing more follows.
    fn end(&mut self) -> io::Result<()>;
}

/// Anything read and written through an fd: pipes, FIFOs, sockets.
struct FdLink {
    tx: Option<File>,
    rx: Option<File>,
    /// A socket whose other side must see the end while this side still
    /// reads: `shutdown(SHUT_WR)` rather than close.
    shutdown: bool,
}

fn retry<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn no_end(what: &str) -> io::Error {
    io::Error::other(format!("this side does not {what}"))
}

impl Link for FdLink {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.tx
            .as_mut()
            .ok_or_else(|| no_end("send"))?
            .write_all(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rx = self.rx.as_mut().ok_or_else(|| no_end("receive"))?;
        retry(|| rx.read(buf))
    }

    fn end(&mut self) -> io::Result<()> {
        if let Some(tx) = self.tx.take() {
            if self.shutdown {
                nix::sys::socket::shutdown(tx.as_raw_fd(), Shutdown::Write)?;
            }
        }
        Ok(())
    }
}

struct UdpLink {
    socket: UdpSocket,
}

impl Link for UdpLink {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        loop {
            match self.socket.send(msg) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Loopback refuses while the peer's socket is not there
                // yet or gone; the datagram counts as lost.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(()),
                // A full send buffer: the datagram is dropped, counted as
                // lost by the receiver's tally.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(()),
                other => return other.map(drop),
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.socket.recv(buf) {
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionRefused =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }

    fn end(&mut self) -> io::Result<()> {
        // An empty datagram ends; sent a few times since one may be lost.
        for _ in 0..3 {
            self.send(&[])?;
        }
        Ok(())
    }
}

struct PosixMqLink {
    tx: Option<OwnedFd>,
    rx: Option<OwnedFd>,
}

impl Link for PosixMqLink {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let tx = self.tx.as_ref().ok_or_else(|| no_end("send"))?;
        Ok(crate::sys::bench::mq_send(tx.as_fd(), msg)?)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rx = self.rx.as_ref().ok_or_else(|| no_end("receive"))?;
        Ok(crate::sys::bench::mq_receive(rx.as_fd(), buf)?)
    }

    fn end(&mut self) -> io::Result<()> {
        self.send(&[])
    }
}

struct SysvLink {
    id: i32,
    tx_type: i64,
    rx_type: i64,
    msg: SysvMessage,
}

impl Link for SysvLink {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.msg.text_mut()[..msg.len()].copy_from_slice(msg);
        Ok(self.msg.send(self.id, self.tx_type, msg.len())?)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.msg.recv(self.id, self.rx_type)?;
        let n = n.min(buf.len());
        buf[..n].copy_from_slice(&self.msg.text()[..n]);
        Ok(n)
    }

    fn end(&mut self) -> io::Result<()> {
        Ok(self.msg.send(self.id, self.tx_type, 0)?)
    }
}

struct RingLink {
    tx: Option<Producer>,
    rx: Option<Consumer>,
}

impl Link for RingLink {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let tx = self.tx.as_mut().ok_or_else(|| no_end("send"))?;
        tx.send(msg, None).map_err(io::Error::other)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rx = self.rx.as_mut().ok_or_else(|| no_end("receive"))?;
        match rx.recv_into(buf, None).map_err(io::Error::other)? {
            Received::Record(n) => Ok(n),
            Received::End => Ok(0),
        }
    }

    fn end(&mut self) -> io::Result<()> {
        // An empty record, like the queues' end mark.
        self.send(&[])
    }
}

/// The segment size of a ring for messages of `size` bytes: the header
/// page and a data area of at least 1 MiB that holds 4 such records.
pub fn ring_bytes(size: usize) -> u64 {
    let record = 8 + size.div_ceil(8) * 8;
    let capacity = (4 * record).max(1 << 20).div_ceil(64) * 64;
    ring::HEADER_SIZE + capacity as u64
}

fn shm_ring(place: &Place, tag: &str, size: usize) -> io::Result<(OwnedFd, String, Guard)> {
    let name = format!("/ipc-run-bench.{}.{tag}", place.id);
    let cname = c_name(&name)?;
    let (fd, guard) = cleanup::create(|| {
        nix::sys::mman::shm_open(
            cname.as_c_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map(|fd| (fd, Object::PosixShm(cname.clone())))
    })?;
    crate::sys::ipc::fchmod_exact(&fd, 0o600)?;
    let bytes = ring_bytes(size);
    nix::unistd::ftruncate(&fd, bytes as i64)?;
    ring::format(fd.as_fd(), bytes, 1).map_err(io::Error::other)?;
    Ok((fd, name, guard))
}

fn open_shm(endpoint: &Endpoint, at: usize) -> io::Result<OwnedFd> {
    Ok(nix::sys::mman::shm_open(
        name(endpoint, at)?.as_c_str(),
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// What the peer needs to reach the objects the parent made, besides the
/// fds it inherits (those are described in its environment, as a child of
/// a topology gets them: see [`ParentSide::ports`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Endpoint {
    /// FIFO or socket paths.
    pub paths: Vec<PathBuf>,
    /// POSIX object names.
    pub names: Vec<String>,
    /// A System V id.
    pub sysv_id: Option<i32>,
    /// A loopback port.
    pub port: Option<u16>,
}

/// What the parent still has to do once the peer is ready.
enum Pending {
    Ready(Box<dyn Link>),
    /// FIFOs are opened after the peer, since each open waits for the
    /// other side: (path the parent writes, path the parent reads).
    Fifo(Option<PathBuf>, PathBuf),
    Unix(UnixListener),
    Tcp(TcpListener),
    Udp(UdpSocket),
    Signal,
}

/// The parent's half, made before the peer starts.
pub struct ParentSide {
    /// What the peer is told.
    pub endpoint: Endpoint,
    /// Non-close-on-exec duplicates the peer inherits; dropped once the
    /// peer runs.
    pub pass: Vec<OwnedFd>,
    /// The peer's environment variables describing them, in order:
    /// `IPC_PORT_BENCH_0`, `IPC_PORT_BENCH_1`, ... (`docs/child-protocol.md`).
    pub ports: Vec<(String, String)>,
    pending: Pending,
    guards: Vec<Guard>,
}

/// The parent's half once connected.
pub enum Connected {
    /// A link to send and receive through.
    Link(Box<dyn Link>),
    /// Signals: nothing to hold.
    Signal,
}

/// Where the bench keeps its named objects.
#[derive(Debug, Clone)]
pub struct Place {
    /// The private directory (0700).
    pub dir: PathBuf,
    /// The random id in every name.
    pub id: String,
    /// The host's limits.
    pub limits: HostLimits,
}

/// The name of the `at`-th fd port of the peer.
fn port_name(at: usize) -> String {
    format!("bench-{at}")
}

fn fd_link(tx: Option<OwnedFd>, rx: Option<OwnedFd>, shutdown: bool) -> Box<dyn Link> {
    Box::new(FdLink {
        tx: tx.map(File::from),
        rx: rx.map(File::from),
        shutdown,
    })
}

fn duplex(fd: OwnedFd) -> io::Result<Box<dyn Link>> {
    let other = fd.try_clone()?;
    Ok(fd_link(Some(fd), Some(other), true))
}

/// Lets a seqpacket socket send messages of `size` bytes: the message must
/// fit the send buffer (the kernel doubles what is asked, up to wmem_max).
fn fit_sndbuf(fd: &OwnedFd, size: usize) -> io::Result<()> {
    let have = nix::sys::socket::getsockopt(fd, sockopt::SndBuf)?;
    if size + 64 > have {
        setsockopt(fd, sockopt::SndBuf, &(size + 64))?;
    }
    Ok(())
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(io::Error::other)
}

fn mkfifo(place: &Place, name: &str) -> io::Result<(PathBuf, Guard)> {
    let path = place.dir.join(name);
    let (_, guard) = cleanup::create(|| {
        nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600))?;
        // mkfifo honours the umask; the directory is private anyway.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        Ok::<_, io::Error>(((), Object::File(path.clone())))
    })?;
    Ok((path, guard))
}

fn posix_mq(place: &Place, tag: &str, size: usize) -> io::Result<(OwnedFd, String, Guard)> {
    let name = format!("/ipc-run-bench.{}.{tag}", place.id);
    let depth = place.limits.mq_msg_max.unwrap_or(10).clamp(1, 64) as i64;
    let cname = c_name(&name)?;
    let (fd, guard) = cleanup::create(|| {
        crate::sys::ipc::mq_create(&cname, 0o600, depth, size as i64)
            .map(|fd| (fd, Object::PosixMq(cname.clone())))
    })?;
    Ok((fd, name, guard))
}

fn unlinked_path(place: &Place, name: &str) -> io::Result<(PathBuf, Guard)> {
    let path = place.dir.join(name);
    let (_, guard) = cleanup::create(|| Ok::<_, io::Error>(((), Object::File(path.clone()))))?;
    Ok((path, guard))
}

impl ParentSide {
    /// Creates the parent's objects for `test` over `mechanism` with
    /// messages of `size` bytes.
    pub fn new(place: &Place, mechanism: Mechanism, test: Test, size: usize) -> io::Result<Self> {
        let mut side = ParentSide {
            endpoint: Endpoint::default(),
            pass: Vec::new(),
            ports: Vec::new(),
            pending: Pending::Signal,
            guards: Vec::new(),
        };
        let round_trip = test == Test::RoundTrip;
        side.pending = match mechanism {
            Mechanism::Pipe => side.pipes(round_trip)?,
            Mechanism::Fifo => side.fifos(place, round_trip)?,
            Mechanism::SocketpairStream => side.socketpair(SockType::Stream, round_trip, size)?,
            Mechanism::SocketpairSeqpacket => {
                side.socketpair(SockType::SeqPacket, round_trip, size)?
            }
            Mechanism::UnixStream => {
                let (path, guard) = unlinked_path(place, "stream.sock")?;
                side.guards.push(guard);
                let listener = UnixListener::bind(&path)?;
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )?;
                side.endpoint.paths = vec![path];
                Pending::Unix(listener)
            }
            Mechanism::Tcp => {
                let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
                side.endpoint.port = Some(listener.local_addr()?.port());
                Pending::Tcp(listener)
            }
            Mechanism::Udp => {
                let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
                side.endpoint.port = Some(socket.local_addr()?.port());
                Pending::Udp(socket)
            }
            Mechanism::PosixMq => side.posix_queues(place, round_trip, size)?,
            Mechanism::SysvMq => side.sysv_queue(place, size)?,
            Mechanism::ShmRing => side.rings(place, round_trip, size)?,
            Mechanism::Signal => Pending::Signal,
        };
        Ok(side)
    }

    /// One pipe from the peer, and one to it for round trips.
    fn pipes(&mut self, round_trip: bool) -> io::Result<Pending> {
        let (from_peer_r, from_peer_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        if round_trip {
            let (to_peer_r, to_peer_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            self.give(&to_peer_r, child::End::Read, Params::Pipe)?;
            self.give(&from_peer_w, child::End::Write, Params::Pipe)?;
            Ok(Pending::Ready(fd_link(
                Some(to_peer_w),
                Some(from_peer_r),
                false,
            )))
        } else {
            self.give(&from_peer_w, child::End::Write, Params::Pipe)?;
            Ok(Pending::Ready(fd_link(None, Some(from_peer_r), false)))
        }
    }

    /// One FIFO from the peer, and one to it for round trips; both are
    /// opened once the peer runs.
    fn fifos(&mut self, place: &Place, round_trip: bool) -> io::Result<Pending> {
        let (from_peer, guard) = mkfifo(place, "from-peer.fifo")?;
        self.guards.push(guard);
        if round_trip {
            let (to_peer, guard) = mkfifo(place, "to-peer.fifo")?;
            self.guards.push(guard);
            self.endpoint.paths = vec![to_peer.clone(), from_peer.clone()];
            Ok(Pending::Fifo(Some(to_peer), from_peer))
        } else {
            self.endpoint.paths = vec![from_peer.clone()];
            Ok(Pending::Fifo(None, from_peer))
        }
    }

    /// A socketpair of type `ty`; the peer inherits one end.
    fn socketpair(&mut self, ty: SockType, round_trip: bool, size: usize) -> io::Result<Pending> {
        let (mine, theirs) =
            nix::sys::socket::socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC)?;
        if ty == SockType::SeqPacket {
            fit_sndbuf(&mine, size)?;
        }
        let socket = if ty == SockType::SeqPacket {
            child::SocketType::Seqpacket
        } else {
            child::SocketType::Stream
        };
        self.give(&theirs, child::End::Both, Params::Socketpair { socket })?;
        Ok(Pending::Ready(if round_trip {
            duplex(mine)?
        } else {
            fd_link(None, Some(mine), false)
        }))
    }

    /// One POSIX queue from the peer, and one to it for round trips.
    fn posix_queues(
        &mut self,
        place: &Place,
        round_trip: bool,
        size: usize,
    ) -> io::Result<Pending> {
        let (from_peer, name, guard) = posix_mq(place, "from-peer", size)?;
        self.guards.push(guard);
        let tx = if round_trip {
            let (to_peer, to_name, guard) = posix_mq(place, "to-peer", size)?;
            self.guards.push(guard);
            self.endpoint.names = vec![to_name, name];
            Some(to_peer)
        } else {
            self.endpoint.names = vec![name];
            None
        };
        Ok(Pending::Ready(Box::new(PosixMqLink {
            tx,
            rx: Some(from_peer),
        })))
    }

    /// One System V queue; the message type tells the directions apart.
    fn sysv_queue(&mut self, place: &Place, size: usize) -> io::Result<Pending> {
        let queue_bytes = place.limits.sysv_msgmnb.unwrap_or(16384);
        let (id, guard) = cleanup::create(|| {
            crate::sys::ipc::msg_create(queue_bytes, 0o600).map(|id| (id, Object::SysvMsg(id)))
        })?;
        self.guards.push(guard);
        self.endpoint.sysv_id = Some(id);
        Ok(Pending::Ready(Box::new(SysvLink {
            id,
            tx_type: TO_PEER,
            rx_type: FROM_PEER,
            msg: SysvMessage::new(size),
        })))
    }

    /// One shared-memory ring from the peer, and one to it for round trips.
    fn rings(&mut self, place: &Place, round_trip: bool, size: usize) -> io::Result<Pending> {
        let (from_peer, name, guard) = shm_ring(place, "from-peer", size)?;
        self.guards.push(guard);
        let rx = Some(Consumer::from_fd(from_peer).map_err(io::Error::other)?);
        let tx = if round_trip {
            let (to_peer, to_name, guard) = shm_ring(place, "to-peer", size)?;
            self.guards.push(guard);
            self.endpoint.names = vec![to_name, name];
            Some(Producer::from_fd(to_peer).map_err(io::Error::other)?)
        } else {
            self.endpoint.names = vec![name];
            None
        };
        Ok(Pending::Ready(Box::new(RingLink { tx, rx })))
    }

    /// Hands the peer a copy of `fd` as its next port, holding `end`.
    fn give(&mut self, fd: &OwnedFd, end: child::End, params: Params) -> io::Result<()> {
        // dup(2) leaves close-on-exec clear: the peer inherits exactly these.
        let dup = nix::unistd::dup(fd)?;
        let description = Description {
            channel: "bench".to_owned(),
            end,
            params,
            fd: Some(dup.as_raw_fd()),
        };
        let name = port_name(self.ports.len());
        self.ports
            .push((child::port_variable(&name), description.to_string()));
        self.pass.push(dup);
        Ok(())
    }

    /// Finishes the parent's half once the peer said it is ready
    /// (`peer_port`: the port a UDP peer bound). Returns the link and the
    /// guards of the objects, to be dropped after the peer is gone.
    pub fn connect(
        self,
        test: Test,
        size: usize,
        peer_port: Option<u16>,
    ) -> io::Result<(Connected, Vec<Guard>)> {
        let round_trip = test == Test::RoundTrip;
        let link: Box<dyn Link> = match self.pending {
            Pending::Ready(link) => link,
            Pending::Signal => return Ok((Connected::Signal, self.guards)),
            Pending::Fifo(to_peer, from_peer) => {
                // Same order as the peer: the FIFO to the peer first.
                let tx = match to_peer {
                    Some(path) => Some(open_fifo(&path, true)?),
                    None => None,
                };
                let rx = open_fifo(&from_peer, false)?;
                fd_link(tx, Some(rx), false)
            }
            Pending::Unix(listener) => {
                let (stream, _) = listener.accept()?;
                let fd = OwnedFd::from(stream);
                if round_trip {
                    duplex(fd)?
                } else {
                    fd_link(None, Some(fd), false)
                }
            }
            Pending::Tcp(listener) => {
                let (stream, _) = listener.accept()?;
                stream.set_nodelay(true)?;
                let fd = OwnedFd::from(stream);
                if round_trip {
                    duplex(fd)?
                } else {
                    fd_link(None, Some(fd), false)
                }
            }
            Pending::Udp(socket) => {
                let port =
                    peer_port.ok_or_else(|| io::Error::other("the UDP peer sent no port"))?;
                socket.connect((Ipv4Addr::LOCALHOST, port))?;
                // A throughput run ends on a quiet socket should the end
                // datagrams be lost; a lost round trip is retried.
                socket.set_read_timeout(Some(if round_trip {
                    Duration::from_millis(200)
                } else {
                    Duration::from_millis(300)
                }))?;
                grow_rcvbuf(&socket, size);
                Box::new(UdpLink { socket })
            }
        };
        Ok((Connected::Link(link), self.guards))
    }
}

/// Asks for a receive buffer of a few datagrams (up to rmem_max).
fn grow_rcvbuf(socket: &UdpSocket, size: usize) {
    let want = (size * 16).max(1 << 20);
    let _ = setsockopt(&socket.as_fd(), sockopt::RcvBuf, &want);
}

/// System V message type of messages to the peer.
const TO_PEER: i64 = 1;
/// System V message type of messages from the peer.
const FROM_PEER: i64 = 2;

fn open_fifo(path: &Path, write: bool) -> io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    Ok(OwnedFd::from(file))
}

/// The peer's half before it says it is ready: connected where connecting
/// does not wait for the parent.
pub enum PeerPending {
    /// Ready to use.
    Ready(Box<dyn Link>),
    /// FIFOs to open after telling the parent: (path read, path written).
    Fifo(Option<PathBuf>, PathBuf),
    /// Signals only.
    Signal,
}

impl PeerPending {
    /// Opens whatever waits for the parent.
    pub fn open(self) -> io::Result<Option<Box<dyn Link>>> {
        match self {
            PeerPending::Ready(link) => Ok(Some(link)),
            PeerPending::Signal => Ok(None),
            PeerPending::Fifo(from_parent, to_parent) => {
                let rx = match from_parent {
                    Some(path) => Some(open_fifo(&path, false)?),
                    None => None,
                };
                let tx = open_fifo(&to_parent, true)?;
                Ok(Some(fd_link(Some(tx), rx, false)))
            }
        }
    }
}

/// The fd of the peer's `at`-th port, adopted through the child crate.
fn inherited(at: usize) -> io::Result<OwnedFd> {
    let name = port_name(at);
    child::port(&name)
        .map_err(io::Error::other)?
        .take_fd()
        .ok_or_else(|| io::Error::other(format!("port {name} has no fd to adopt")))
}

fn path(endpoint: &Endpoint, at: usize) -> io::Result<PathBuf> {
    endpoint
        .paths
        .get(at)
        .cloned()
        .ok_or_else(|| io::Error::other("a path is missing"))
}

fn name(endpoint: &Endpoint, at: usize) -> io::Result<CString> {
    c_name(
        endpoint
            .names
            .get(at)
            .ok_or_else(|| io::Error::other("a name is missing"))?,
    )
}

/// The peer's half: the sender of a throughput test, the echo of a round
/// trip. Also returns the port a UDP peer bound, for the parent.
pub fn peer_side(
    mechanism: Mechanism,
    test: Test,
    size: usize,
    endpoint: &Endpoint,
) -> io::Result<(PeerPending, Option<u16>)> {
    let round_trip = test == Test::RoundTrip;
    let port = || {
        endpoint
            .port
            .ok_or_else(|| io::Error::other("no port given"))
    };
    let ready = |link: Box<dyn Link>| Ok((PeerPending::Ready(link), None));
    match mechanism {
        Mechanism::Pipe => {
            if round_trip {
                let rx = inherited(0)?;
                let tx = inherited(1)?;
                ready(fd_link(Some(tx), Some(rx), false))
            } else {
                ready(fd_link(Some(inherited(0)?), None, false))
            }
        }
        Mechanism::Fifo => Ok((
            if round_trip {
                PeerPending::Fifo(Some(path(endpoint, 0)?), path(endpoint, 1)?)
            } else {
                PeerPending::Fifo(None, path(endpoint, 0)?)
            },
            None,
        )),
        Mechanism::SocketpairStream | Mechanism::SocketpairSeqpacket => {
            let fd = inherited(0)?;
            if mechanism == Mechanism::SocketpairSeqpacket {
                fit_sndbuf(&fd, size)?;
            }
            ready(peer_stream(fd, round_trip)?)
        }
        Mechanism::UnixStream => {
            let fd = OwnedFd::from(UnixStream::connect(path(endpoint, 0)?)?);
            ready(peer_stream(fd, round_trip)?)
        }
        Mechanism::Tcp => {
            let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port()?))?;
            stream.set_nodelay(true)?;
            let fd = OwnedFd::from(stream);
            ready(peer_stream(fd, round_trip)?)
        }
        Mechanism::Udp => {
            let (link, mine) = peer_udp(port()?, round_trip, size)?;
            Ok((PeerPending::Ready(link), Some(mine)))
        }
        Mechanism::PosixMq => ready(peer_posix_mq(endpoint, round_trip)?),
        Mechanism::SysvMq => {
            let id = endpoint
                .sysv_id
                .ok_or_else(|| io::Error::other("no System V id given"))?;
            ready(Box::new(SysvLink {
                id,
                tx_type: FROM_PEER,
                rx_type: TO_PEER,
                msg: SysvMessage::new(size),
            }))
        }
        Mechanism::ShmRing => ready(peer_ring(endpoint, round_trip)?),
        Mechanism::Signal => Ok((PeerPending::Signal, None)),
    }
}

/// A connected stream socket: the sending end, or both ways for round trips.
fn peer_stream(fd: OwnedFd, round_trip: bool) -> io::Result<Box<dyn Link>> {
    if round_trip {
        duplex(fd)
    } else {
        Ok(fd_link(Some(fd), None, true))
    }
}

/// A UDP socket connected to the parent's `port`; also the port it bound.
fn peer_udp(port: u16, round_trip: bool, size: usize) -> io::Result<(Box<dyn Link>, u16)> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let mine = socket.local_addr()?.port();
    socket.connect((Ipv4Addr::LOCALHOST, port))?;
    if round_trip {
        // Wakes now and then, so a lost end datagram does not leave the
        // echo waiting for ever (the parent kills it).
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        grow_rcvbuf(&socket, size);
    }
    Ok((Box::new(UdpLink { socket }), mine))
}

/// The parent's POSIX queues, opened: to the parent, and from it for
/// round trips.
fn peer_posix_mq(endpoint: &Endpoint, round_trip: bool) -> io::Result<Box<dyn Link>> {
    let open = |at, write| -> io::Result<OwnedFd> {
        Ok(crate::sys::ipc::mq_open_existing(
            &name(endpoint, at)?,
            write,
        )?)
    };
    Ok(Box::new(if round_trip {
        PosixMqLink {
            rx: Some(open(0, false)?),
            tx: Some(open(1, true)?),
        }
    } else {
        PosixMqLink {
            rx: None,
            tx: Some(open(0, true)?),
        }
    }))
}

/// The parent's rings, opened: producing into the parent's, and consuming
/// the other for round trips.
fn peer_ring(endpoint: &Endpoint, round_trip: bool) -> io::Result<Box<dyn Link>> {
    let producer = |at| Producer::from_fd(open_shm(endpoint, at)?).map_err(io::Error::other);
    Ok(Box::new(if round_trip {
        RingLink {
            rx: Some(Consumer::from_fd(open_shm(endpoint, 0)?).map_err(io::Error::other)?),
            tx: Some(producer(1)?),
        }
    } else {
        RingLink {
            rx: None,
            tx: Some(producer(0)?),
        }
    }))
}
