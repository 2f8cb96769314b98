//! `udp`: a UDP socket bound for the receiver; senders get a socket
//! connected to it.

use super::PortSide;
use super::edge::address_with_port;
use super::edge::{EdgeContext, Shape};
use super::{BASE, EdgeOption, Peers, Profile};
use crate::launch::LaunchError;
use crate::launch::resources::{
    ChannelBuild, ConnectTarget, Handover, Held, bind_error, parse_addr,
};
use crate::plan::{End, Mechanism};
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
    Some(Shape::unbounded(Mechanism::Udp { bind }))
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
pub(crate) fn create(b: &mut ChannelBuild<'_>, bind: &str) -> Result<(), LaunchError> {
    let id = b.channel.id.as_str();
    let want = parse_addr(id, bind)?;
    let socket = UdpSocket::bind(want).map_err(|e| bind_error(id, bind, e))?;
    let addr = socket.local_addr().map_err(|e| bind_error(id, bind, e))?;
    b.values.ports.insert(id.to_owned(), addr.port());
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
