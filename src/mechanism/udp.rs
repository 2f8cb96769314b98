//! `udp`: a UDP socket bound for the receiver; senders get a socket
//! connected to it.

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::PortSide;
use super::edge::address_with_port;
use super::edge::{EdgeContext, Shape};
use super::{BASE, EdgeOption, Peers, Profile};
use crate::mechanism::bench_link::{
    Link, PeerPending, PeerReady, PeerSetup, Pending, Setup, grow_rcvbuf,
};
use crate::mechanism::build::{Build, ConnectTarget, Handover, Held, bind_error, parse_addr};
use crate::mechanism::error::LaunchError;
use crate::mechanism::model::{End, Mechanism, UdpParams};
use crate::topology::Traffic;
use ipc_run_child::description::Params;
use std::net::UdpSocket;
use std::os::fd::OwnedFd;

/// The mechanism's name.
pub const NAME: &str = ipc_run_child::description::Kind::Udp.as_str();

/// One receiver, any number of senders.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Messages],
    peers: Peers::OneServer,
    options: &[EdgeOption::Address],
    ..BASE
};

// ---- plan ----

/// The bind address, checked.
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let bind = cx.ip_address()?;
    Some(Shape::unbounded(Mechanism::Udp(Box::new(UdpParams {
        bind,
    }))))
}

/// The description its ports get (`IPC_PORT_*`).
pub(crate) fn describe(bind: &str, port: &PortSide<'_>) -> Params {
    Params::Udp {
        address: address_with_port(bind, port.id),
    }
}

// ---- launch ----

/// The receiver's socket, bound; a kernel-chosen port is recorded for the
/// `{port:ID}` placeholder.
pub(crate) fn create(b: &mut dyn Build, bind: &str) -> Result<(), LaunchError> {
    let id = b.channel().id.as_ref();
    let want = parse_addr(id, bind)?;
    let socket = UdpSocket::bind(want).map_err(|e| bind_error(id, bind, e))?;
    let addr = socket.local_addr().map_err(|e| bind_error(id, bind, e))?;
    b.set_port(addr.port());
    b.hold(Held::Listen, OwnedFd::from(socket));
    b.connect_to(ConnectTarget::Udp(addr));
    Ok(())
}

// ---- bench ----

/// The largest UDP payload over IPv4: 65535 - 20 (IP) - 8 (UDP).
pub const UDP_MAX_PAYLOAD: usize = 65_507;

/// A datagram larger than an IPv4 UDP payload cannot be measured.
pub(crate) fn bench_refusal(size: u64) -> Option<String> {
    (size > UDP_MAX_PAYLOAD as u64)
        .then(|| format!("a UDP/IPv4 datagram carries at most {UDP_MAX_PAYLOAD} bytes"))
}

/// The bound socket to the server side, a new connection to each client.
pub(crate) fn handover(end: End) -> Handover {
    Handover::listener(end)
}

// ---- bench ----

/// A connected UDP socket; an empty datagram ends.
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

/// A socket bound on loopback; it connects once the peer said its port.
pub(crate) fn bench_parent(b: &mut Setup<'_>) -> io::Result<Pending> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    b.side.endpoint.port = Some(socket.local_addr()?.port());
    Ok(Pending::Udp(socket))
}

/// The parent's socket connected to the peer's `peer_port`.
pub(crate) fn bench_connect(
    socket: UdpSocket,
    round_trip: bool,
    size: usize,
    peer_port: Option<u16>,
) -> io::Result<Box<dyn Link>> {
    let port = peer_port.ok_or_else(|| io::Error::other("the UDP peer sent no port"))?;
    socket.connect((Ipv4Addr::LOCALHOST, port))?;
    // A throughput run ends on a quiet socket should the end
    // datagrams be lost; a lost round trip is retried.
    socket.set_read_timeout(Some(if round_trip {
        Duration::from_millis(200)
    } else {
        Duration::from_millis(300)
    }))?;
    grow_rcvbuf(&socket, size);
    Ok(Box::new(UdpLink { socket }))
}

/// A socket of the peer's own, connected to the parent's; its port goes
/// back to the parent.
pub(crate) fn bench_peer(p: &PeerSetup<'_>) -> io::Result<PeerReady> {
    let (link, mine) = peer_udp(p.port()?, p.round_trip, p.size)?;
    Ok((PeerPending::Ready(link), Some(mine)))
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
