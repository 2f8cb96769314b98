//! One direction or both of a mechanism, as each process holds it: the
//! [`Link`] a measurement sends and receives through, the parent's setup
//! (it creates every object, then hands the peer what it needs in an
//! [`Endpoint`] and, for fds, `IPC_PORT_*` descriptions) and the peer's
//! side of it.
//!
//! How each mechanism's link is built lives in its module
//! (`src/mechanism/NAME.rs`, its `bench_parent` and `bench_peer`),
//! dispatched by `crate::mechanism::bench_parent` and `bench_peer`; this
//! file holds what they share.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{Shutdown, setsockopt, sockopt};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use super::bench_cleanup::{self as cleanup, Guard, Object};
use super::bench_kinds::{HostLimits, Mechanism};
use crate::child;
use crate::child::description::{Description, Params};

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

pub(crate) fn retry<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

pub(crate) fn no_end(what: &str) -> io::Error {
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
pub(crate) enum Pending {
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
    /// Removes the named objects made for it.
    pub(crate) guards: Vec<Guard>,
}

/// What a mechanism's bench part gets to build the parent's side.
pub(crate) struct Setup<'a> {
    /// The side being built: hand the peer fds with [`ParentSide::give`],
    /// tell it names in its endpoint, keep guards.
    pub side: &'a mut ParentSide,
    /// Where named objects go.
    pub place: &'a Place,
    /// What is measured (some mechanisms are measured in variants).
    pub mechanism: Mechanism,
    /// A round trip (both directions) rather than throughput.
    pub round_trip: bool,
    /// Message size in bytes.
    pub size: usize,
}

/// What a mechanism's bench part gets to build the peer's side.
pub(crate) struct PeerSetup<'a> {
    /// What the parent told the peer.
    pub endpoint: &'a Endpoint,
    /// What is measured.
    pub mechanism: Mechanism,
    /// A round trip (the peer echoes) rather than throughput (it sends).
    pub round_trip: bool,
    /// Message size in bytes.
    pub size: usize,
}

impl PeerSetup<'_> {
    /// The loopback port the parent bound.
    pub(crate) fn port(&self) -> io::Result<u16> {
        self.endpoint
            .port
            .ok_or_else(|| io::Error::other("no port given"))
    }
}

/// The peer's side, ready, and the port it bound if the parent needs it.
pub(crate) type PeerReady = (PeerPending, Option<u16>);

/// A peer link ready to use.
pub(crate) fn ready(link: Box<dyn Link>) -> io::Result<PeerReady> {
    Ok((PeerPending::Ready(link), None))
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

pub(crate) fn fd_link(tx: Option<OwnedFd>, rx: Option<OwnedFd>, shutdown: bool) -> Box<dyn Link> {
    Box::new(FdLink {
        tx: tx.map(File::from),
        rx: rx.map(File::from),
        shutdown,
    })
}

pub(crate) fn duplex(fd: OwnedFd) -> io::Result<Box<dyn Link>> {
    let other = fd.try_clone()?;
    Ok(fd_link(Some(fd), Some(other), true))
}

/// Lets a seqpacket socket send messages of `size` bytes: the message must
/// fit the send buffer (the kernel doubles what is asked, up to wmem_max).
pub(crate) fn fit_sndbuf(fd: &OwnedFd, size: usize) -> io::Result<()> {
    let have = nix::sys::socket::getsockopt(fd, sockopt::SndBuf)?;
    if size + 64 > have {
        setsockopt(fd, sockopt::SndBuf, &(size + 64))?;
    }
    Ok(())
}

pub(crate) fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(io::Error::other)
}

pub(crate) fn mkfifo(place: &Place, name: &str) -> io::Result<(PathBuf, Guard)> {
    let path = place.dir.join(name);
    let (_, guard) = cleanup::create(|| {
        nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600))?;
        // mkfifo honours the umask; the directory is private anyway.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        Ok::<_, io::Error>(((), Object::File(path.clone())))
    })?;
    Ok((path, guard))
}

pub(crate) fn unlinked_path(place: &Place, name: &str) -> io::Result<(PathBuf, Guard)> {
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
        let mut setup = Setup {
            side: &mut side,
            place,
            mechanism,
            round_trip: test == Test::RoundTrip,
            size,
        };
        let pending = crate::mechanism::bench_parent(&mut setup)?;
        side.pending = pending;
        Ok(side)
    }

    /// Hands the peer a copy of `fd` as its next port, holding `end`.
    pub(crate) fn give(&mut self, fd: &OwnedFd, end: child::End, params: Params) -> io::Result<()> {
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
                crate::mechanism::udp::bench_connect(socket, round_trip, size, peer_port)?
            }
        };
        Ok((Connected::Link(link), self.guards))
    }
}

/// Asks for a receive buffer of a few datagrams (up to rmem_max).
pub(crate) fn grow_rcvbuf(socket: &UdpSocket, size: usize) {
    let want = (size * 16).max(1 << 20);
    let _ = setsockopt(&socket.as_fd(), sockopt::RcvBuf, &want);
}

pub(crate) fn open_fifo(path: &Path, write: bool) -> io::Result<OwnedFd> {
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
pub(crate) fn inherited(at: usize) -> io::Result<OwnedFd> {
    let name = port_name(at);
    child::port(&name)
        .map_err(io::Error::other)?
        .take_fd()
        .ok_or_else(|| io::Error::other(format!("port {name} has no fd to adopt")))
}

pub(crate) fn path(endpoint: &Endpoint, at: usize) -> io::Result<PathBuf> {
    endpoint
        .paths
        .get(at)
        .cloned()
        .ok_or_else(|| io::Error::other("a path is missing"))
}

pub(crate) fn name(endpoint: &Endpoint, at: usize) -> io::Result<CString> {
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
    let setup = PeerSetup {
        endpoint,
        mechanism,
        round_trip: test == Test::RoundTrip,
        size,
    };
    crate::mechanism::bench_peer(&setup)
}

/// A connected stream socket: the sending end, or both ways for round trips.
pub(crate) fn peer_stream(fd: OwnedFd, round_trip: bool) -> io::Result<Box<dyn Link>> {
    if round_trip {
        duplex(fd)
    } else {
        Ok(fd_link(Some(fd), None, true))
    }
}
