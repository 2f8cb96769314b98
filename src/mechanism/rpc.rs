//! `rpc`: a listener (Unix socket in the run directory, or TCP when an
//! address is written) plus a protocol label both ends agree on; clients
//! get the address in the form their framework expects.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use ipc_run_child::description::{self as child, Params};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PortSide;
use super::edge::{EdgeContext, LISTEN_BACKLOG, Shape, address_with_port};
use super::{BASE, EdgeOption, Peers, Profile};
use crate::diagnostic::{Diagnostic, Label};
use crate::mechanism::build::{Build, Handover};
use crate::mechanism::error::LaunchError;
use crate::mechanism::limits::Limits;
use crate::mechanism::model::SocketType;
use crate::mechanism::model::{
    End, Mechanism, ObjectKind, RUN_DIR, RUN_DIR_PCT, percent_encode_into,
};
use crate::topology::{EndpointShape, Traffic};

/// The mechanism's name.
pub const NAME: &str = child::Kind::Rpc.as_str();

/// Requests from clients to one server.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Request],
    peers: Peers::OneServer,
    needs_protocol: true,
    options: &[
        EdgeOption::Protocol,
        EdgeOption::Address,
        EdgeOption::Endpoint,
    ],
    ..BASE
};

/// How an RPC endpoint is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// A Unix stream socket in the run directory.
    Unix,
    /// TCP.
    Tcp,
}

impl Transport {
    /// As the port description spells it.
    pub fn child(self) -> child::Transport {
        match self {
            Transport::Unix => child::Transport::Unix,
            Transport::Tcp => child::Transport::Tcp,
        }
    }

    /// `unix` or `tcp`.
    pub fn as_str(self) -> &'static str {
        self.child().as_str()
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the server of an rpc edge gets its endpoint, and why: shown in
/// the plan like every other choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `handover`, `server-bound`, `broker` or `per-connection`.
    pub shape: EndpointShape,
    /// Why this shape, in words.
    pub reason: Cow<'static, str>,
}

// ---- plan ----

/// The protocol label, checked, and the transport: TCP at the written
/// address, a Unix socket at `{run_dir}/ID.sock` otherwise.
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let protocol = protocol_label(cx)?;
    let (transport, address) = if cx.spec.and_then(|s| s.address.as_ref()).is_some() {
        (Transport::Tcp, cx.ip_address()?)
    } else {
        let path = cx.socket_path()?;
        cx.object(ObjectKind::UnixSocket, path.clone());
        (Transport::Unix, path)
    };
    let endpoint = endpoint_shape(cx, &protocol);
    Some(Shape::unbounded(Mechanism::Rpc {
        protocol,
        transport,
        address,
        backlog: LISTEN_BACKLOG,
        endpoint,
    }))
}

/// The shape written as `endpoint`, else the one the protocol's servers
/// expect.
fn endpoint_shape(cx: &EdgeContext<'_>, protocol: &str) -> Endpoint {
    if let Some(written) = cx.spec.and_then(|s| s.endpoint.as_ref()) {
        return Endpoint {
            shape: *written.get_ref(),
            reason: Cow::Borrowed("`endpoint` named in the file"),
        };
    }
    if protocol == "http" {
        return Endpoint {
            shape: EndpointShape::Handover,
            reason: Cow::Borrowed(
                "HTTP servers adopt an inherited listener (gunicorn reads LISTEN_FDS itself, as under systemd socket activation)",
            ),
        };
    }
    Endpoint {
        shape: EndpointShape::Handover,
        reason: Cow::Borrowed(
            "the server adopts the listener ipc-run binds (LISTEN_FDS, as under systemd socket activation)",
        ),
    }
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

/// The description its ports get (`IPC_PORT_*`): the address, and the URL
/// in the form the protocol's frameworks expect.
pub(crate) fn describe(
    protocol: &str,
    transport: Transport,
    address: &str,
    port: &PortSide<'_>,
) -> Params {
    let address = match transport {
        Transport::Tcp => address_with_port(address, port.id),
        Transport::Unix => address.to_owned(),
    };
    let mut url = String::with_capacity(address.len() + 16);
    push_url(&mut url, protocol, transport, &address);
    Params::Rpc {
        protocol: protocol.to_owned(),
        transport: transport.child(),
        address,
        url,
    }
}

/// The address in the form each framework expects.
fn push_url(out: &mut String, protocol: &str, transport: Transport, address: &str) {
    let unix = transport == Transport::Unix;
    // Writing into a String cannot fail.
    let _ = match protocol {
        "grpc" if unix => write!(out, "unix:{address}"),
        "grpc" => write!(out, "{address}"),
        "http" if unix => {
            // The socket path is the URL's host, percent-encoded whole; the
            // run directory is encoded by the launcher when it fills it in.
            out.push_str("http+unix://");
            let rest = match address.strip_prefix(RUN_DIR) {
                Some(rest) => {
                    out.push_str(RUN_DIR_PCT);
                    rest
                }
                None => address,
            };
            percent_encode_into(out, rest);
            Ok(())
        }
        "http" => write!(out, "http://{address}"),
        "dbus" if unix => write!(out, "unix:path={address}"),
        "dbus" => {
            let (host, port) = address.rsplit_once(':').unwrap_or((address, ""));
            write!(out, "tcp:host={host},port={port}")
        }
        _ if unix => write!(out, "unix:{address}"),
        _ => write!(out, "tcp://{address}"),
    };
}

/// Re-checks a plan read back against this host: a Unix socket path fits.
pub(crate) fn recheck(
    id: &str,
    transport: Transport,
    address: &str,
    limits: &Limits,
    sink: &mut Vec<Diagnostic>,
) {
    if transport == Transport::Unix {
        super::host_limits::socket_path(id, address, limits, sink);
    }
}

// ---- launch ----

/// The server's listener: a Unix stream socket or a TCP listener.
pub(crate) fn create(
    b: &mut dyn Build,
    transport: Transport,
    address: &str,
    backlog: u32,
) -> Result<(), LaunchError> {
    match transport {
        Transport::Unix => super::unix_listener::create(b, SocketType::Stream, address, backlog),
        Transport::Tcp => super::tcp::create(b, address, backlog),
    }
}

/// The bound socket to the server side, a new connection to each client.
pub(crate) fn handover(end: End) -> Handover {
    Handover::listener(end)
}
