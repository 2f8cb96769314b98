//! `udp`: a UDP socket bound for the receiver; senders get a socket
//! connected to it.

use super::edge::{EdgeContext, Shape};
use super::{BASE, EdgeOption, Peers, Profile};
use crate::plan::Mechanism;
use crate::topology::Traffic;

/// The mechanism's name.
pub const NAME: &str = "udp";

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
