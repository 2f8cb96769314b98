//! `tcp`: a TCP listener bound before the server starts (loopback and a
//! kernel-chosen port unless an address is written).

use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;

use super::PortSide;
use super::edge::address_with_port;
use super::edge::{EdgeContext, LISTEN_BACKLOG, Shape};
use super::{BASE, EdgeOption, Peers, Profile};
use crate::mechanism::bench_link::{PeerReady, PeerSetup, Pending, Setup, peer_stream, ready};
use crate::mechanism::build::{Build, ConnectTarget, Handover, Held, tcp_bind};
use crate::mechanism::error::LaunchError;
use crate::mechanism::model::{End, Mechanism, TcpParams};
use crate::topology::Traffic;
use ipc_run_child::description::Params;

/// The mechanism's name.
pub const NAME: &str = ipc_run_child::description::Kind::Tcp.as_str();

/// One server, any number of clients.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Stream, Traffic::Request],
    peers: Peers::OneServer,
    options: &[EdgeOption::Address],
    ..BASE
};

// ---- plan ----

/// The bind address, checked.
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let bind = cx.ip_address()?;
    Some(Shape::unbounded(Mechanism::Tcp(Box::new(TcpParams {
        bind,
        backlog: LISTEN_BACKLOG,
    }))))
}

/// The description its ports get (`IPC_PORT_*`).
pub(crate) fn describe(bind: &str, port: &PortSide<'_>) -> Params {
    Params::Tcp {
        address: address_with_port(bind, port.id),
    }
}

// ---- launch ----

/// The listener, bound and listening; a kernel-chosen port is recorded for
/// the `{port:ID}` placeholder.
pub(crate) fn create(b: &mut dyn Build, bind: &str, backlog: u32) -> Result<(), LaunchError> {
    let (fd, addr) = tcp_bind(&b.channel().id, bind, backlog)?;
    b.set_port(addr.port());
    b.hold(Held::Listen, fd);
    b.connect_to(ConnectTarget::Tcp(addr));
    Ok(())
}

/// The bound socket to the server side, a new connection to each client.
pub(crate) fn handover(end: End) -> Handover {
    Handover::listener(end)
}

// ---- bench ----

/// A listener on loopback, on a port the kernel chooses.
pub(crate) fn bench_parent(b: &mut Setup<'_>) -> io::Result<Pending> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    b.side.endpoint.port = Some(listener.local_addr()?.port());
    Ok(Pending::Tcp(listener))
}

/// A connection to the parent's port, `TCP_NODELAY`.
pub(crate) fn bench_peer(p: &PeerSetup<'_>) -> io::Result<PeerReady> {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, p.port()?))?;
    stream.set_nodelay(true)?;
    ready(peer_stream(OwnedFd::from(stream), p.round_trip)?)
}
