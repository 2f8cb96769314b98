//! `rpc`: a listener (Unix socket in the run directory, or TCP when an
//! address is written) plus a protocol label both ends agree on; clients
//! get the address in the form their framework expects.

use super::edge::{EdgeContext, LISTEN_BACKLOG, Shape};
use super::{BASE, EdgeOption, Peers, Profile};
use crate::diagnostic::{Diagnostic, Label};
use crate::launch::LaunchError;
use crate::launch::resources::ChannelBuild;
use crate::plan::{Mechanism, ObjectKind};
use crate::topology::SocketType;
use crate::topology::Traffic;

/// The mechanism's name.
pub const NAME: &str = "rpc";

/// Requests from clients to one server.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Request],
    peers: Peers::OneServer,
    needs_protocol: true,
    options: &[EdgeOption::Protocol, EdgeOption::Address],
    ..BASE
};

// ---- plan ----

/// The protocol label, checked, and the transport: TCP at the written
/// address, a Unix socket at `{run_dir}/ID.sock` otherwise.
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let protocol = protocol_label(cx)?;
    let (transport, address) = if cx.spec.and_then(|s| s.address.as_ref()).is_some() {
        ("tcp", cx.ip_address()?)
    } else {
        let path = cx.socket_path()?;
        cx.object(ObjectKind::UnixSocket, path.clone());
        ("unix", path)
    };
    Some(Shape::unbounded(Mechanism::Rpc {
        protocol,
        transport: transport.into(),
        address,
        backlog: LISTEN_BACKLOG,
    }))
}

/// A label such as `grpc` or `json-rpc`: letters, digits and `-_.+`.
fn protocol_label(cx: &mut EdgeContext<'_>) -> Option<String> {
    let protocol = cx
        .spec
        .and_then(|s| s.protocol.as_ref())
        .map(|p| p.get_ref().clone())
        .unwrap_or_default();
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+');
    if !protocol.is_empty() && protocol.chars().all(valid) {
        return Some(protocol);
    }
    let span = cx.span_of(|s| s.protocol.as_ref().map(|p| p.span()));
    cx.report(
        Diagnostic::error("E0311", "invalid protocol label").with_label(Label::primary(
            span,
            "a label such as grpc, json-rpc, http or dbus",
        )),
    );
    None
}

// ---- launch ----

/// The server's listener: a Unix stream socket or a TCP listener.
pub(crate) fn create(
    b: &mut ChannelBuild<'_>,
    transport: &str,
    address: &str,
    backlog: u32,
) -> Result<(), LaunchError> {
    match transport {
        "unix" => super::unix_listener::create(b, SocketType::Stream, address, backlog),
        "tcp" => super::tcp::create(b, address, backlog),
        other => Err(LaunchError::BadValue {
            what: format!("rpc transport of channel {}", b.channel.id),
            value: other.to_owned(),
            reason: "expected unix or tcp".into(),
        }),
    }
}
