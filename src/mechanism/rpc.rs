//! `rpc`: a listener (Unix socket in the run directory, or TCP when an
//! address is written) plus a protocol label both ends agree on; clients
//! get the address in the form their framework expects.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, setsockopt, socket, sockopt,
};

use ipc_run_child::description::{self as child, Params};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PortSide;
use super::dbus;
use super::edge::{EdgeContext, LISTEN_BACKLOG, Shape, address_with_port};
use super::{BASE, EdgeOption, Peers, Profile};
use crate::diagnostic::{Diagnostic, Label};
use crate::mechanism::build::{Build, Handover, Held, Named, bind_error, parse_addr};
use crate::mechanism::error::LaunchError;
use crate::mechanism::limits::Limits;
use crate::mechanism::model::SocketType;
use crate::mechanism::model::{
    End, Mechanism, ObjectKind, RUN_DIR, RUN_DIR_PCT, RpcParams, percent_encode_into,
};
use crate::topology::{EndpointShape, ProbeKind, Traffic};

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
        EdgeOption::MaxConnections,
        EdgeOption::Probe,
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
    /// `per-connection`: how many instances run at once; further
    /// connections wait in the listen backlog (systemd's `MaxConnections`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// How a `server-bound` server is known to serve its endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
}

/// Instances of a per-connection server at once, unless the edge says
/// (systemd's `MaxConnections` default).
pub const MAX_CONNECTIONS: u32 = 64;

/// The readiness probe of a `server-bound` endpoint: the server is ready
/// once one attempt succeeds; attempts repeat every `interval_ms` until
/// the process's `ready_timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// `connect` or `grpc-health`.
    pub kind: ProbeKind,
    /// Why this probe, in words.
    pub reason: Cow<'static, str>,
    /// Time between two attempts, in ms.
    pub interval_ms: u64,
}

/// Time between two probe attempts: short against a server's start-up
/// (a grpcio server binds in tens of ms), long enough that a slow server
/// costs a few dozen cheap connects a second, never a busy loop.
pub const PROBE_INTERVAL_MS: u64 = 50;

// ---- plan ----

/// The protocol label, checked, and the transport: TCP at the written
/// address, a Unix socket at `{run_dir}/ID.sock` otherwise.
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let protocol = protocol_label(cx)?;
    let mut endpoint = endpoint_shape(cx, &protocol);
    let (transport, address) = if cx.spec.and_then(|s| s.address.as_ref()).is_some() {
        (Transport::Tcp, cx.ip_address()?)
    } else {
        let path = cx.socket_path()?;
        // A server-bound server makes the socket file itself.
        if endpoint.shape != EndpointShape::ServerBound {
            cx.object(ObjectKind::UnixSocket, path.clone());
        }
        (Transport::Unix, path)
    };
    endpoint.probe = probe(cx, &protocol, endpoint.shape);
    Some(Shape::unbounded(Mechanism::Rpc(Box::new(RpcParams {
        protocol,
        transport,
        address,
        backlog: LISTEN_BACKLOG,
        endpoint,
    }))))
}

/// The shape written as `endpoint`, else the one the protocol's servers
/// expect. A `broker` edge was checked and given its broker (a `dbus`
/// edge's dbus-daemon) before the passes, by `plan::managed`.
fn endpoint_shape(cx: &mut EdgeContext<'_>, protocol: &str) -> Endpoint {
    let max_connections = max_connections(cx);
    // No protocol defaults to per-connection: a process per connection
    // costs a fork and exec per client and keeps no state between calls,
    // which only suits small inetd-style services; it is asked for by name.
    let (shape, reason) = if let Some(written) = cx.spec.and_then(|s| s.endpoint.as_ref()) {
        let shape = *written.get_ref();
        let reason = match shape {
            EndpointShape::PerConnection => {
                "`endpoint` named in the file: ipc-run accepts, one instance per connection on fds 0 and 1 (inetd nowait, systemd Accept=yes)"
            }
            EndpointShape::Broker => dbus::BROKER_REASON,
            _ => "`endpoint` named in the file",
        };
        (shape, reason)
    } else if protocol == "grpc" {
        (
            EndpointShape::ServerBound,
            "grpcio and the other common gRPC servers bind their own address (add_insecure_port) and cannot adopt an inherited listener; over Unix grpcio unlinks a socket file at its path",
        )
    } else if protocol == "http" {
        (
            EndpointShape::Handover,
            "HTTP servers adopt an inherited listener (gunicorn reads LISTEN_FDS itself, as under systemd socket activation)",
        )
    } else if protocol == "onc-rpc" {
        (
            EndpointShape::Handover,
            "the server adopts the listener ipc-run binds: an rpcgen server finds it on fd 0 (inetd style, `fd = 0` on its port), others through LISTEN_FDS",
        )
    } else if protocol == dbus::PROTOCOL {
        (
            EndpointShape::Handover,
            "the dbus-daemon named in `to` adopts the listener ipc-run binds (`<listen>systemd:</listen>`, LISTEN_FDS)",
        )
    } else {
        (
            EndpointShape::Handover,
            "the server adopts the listener ipc-run binds (LISTEN_FDS, as under systemd socket activation)",
        )
    };
    let max_connections =
        (shape == EndpointShape::PerConnection).then(|| max_connections.unwrap_or(MAX_CONNECTIONS));
    Endpoint {
        shape,
        reason: Cow::Borrowed(reason),
        max_connections,
        probe: None,
    }
}

/// `max_connections` as written: at least 1 (`E0333`), and only where
/// ipc-run accepts, with `endpoint = "per-connection"` (`E0332`).
fn max_connections(cx: &mut EdgeContext<'_>) -> Option<u32> {
    let spec = cx.spec?;
    let written = spec.max_connections.as_ref()?;
    let (value, span) = (*written.get_ref(), written.span());
    let per_connection = spec
        .endpoint
        .as_ref()
        .is_some_and(|e| *e.get_ref() == EndpointShape::PerConnection);
    if !per_connection {
        cx.report(
            Diagnostic::error(
                "E0332",
                "`max_connections` without `endpoint = \"per-connection\"`",
            )
            .with_label(Label::primary(
                span,
                "only ipc-run's own accepting is capped",
            ))
            .with_help("add `endpoint = \"per-connection\"`, or remove `max_connections`"),
        );
        return None;
    }
    if value == 0 {
        cx.report(
            Diagnostic::error(
                "E0333",
                "`max_connections` is 0: no connection would ever be served",
            )
            .with_label(Label::primary(span, "at least 1")),
        );
        return None;
    }
    Some(value)
}

/// The probe of a server-bound endpoint: the one written as `probe`, else
/// the gRPC health check for grpc and a connect for other protocols. Only
/// server-bound endpoints are probed (E0320); the health check speaks gRPC
/// (E0321).
fn probe(cx: &mut EdgeContext<'_>, protocol: &str, shape: EndpointShape) -> Option<Probe> {
    let written = cx.spec.and_then(|s| s.probe.as_ref());
    if shape != EndpointShape::ServerBound {
        if let Some(written) = written {
            cx.report(
                Diagnostic::error(
                    "E0320",
                    format!("`probe` needs a server-bound endpoint, not `{}`", shape.as_str()),
                )
                .with_label(Label::primary(written.span(), "probe of no server-bound endpoint"))
                .with_help("ipc-run probes only endpoints servers bind themselves; write `endpoint = \"server-bound\"` or drop `probe`"),
            );
        }
        return None;
    }
    let (kind, reason) = match (written, protocol) {
        (Some(w), _) => (*w.get_ref(), "`probe` named in the file"),
        (None, "grpc") => (
            ProbeKind::GrpcHealth,
            "the standard grpc.health.v1 check answers SERVING only once the server serves, and lets it say when it is not yet",
        ),
        (None, _) => (
            ProbeKind::Connect,
            "a connection is accepted once the server listens on the address",
        ),
    };
    if kind == ProbeKind::GrpcHealth && protocol != "grpc" {
        let span = cx.span_of(|s| s.probe.as_ref().map(|p| p.span()));
        cx.report(
            Diagnostic::error(
                "E0321",
                format!("`probe = \"grpc-health\"` needs `protocol = \"grpc\"`, not `{protocol}`"),
            )
            .with_label(Label::primary(span, "a gRPC health check"))
            .with_help("use `probe = \"connect\"` for other protocols"),
        );
        return None;
    }
    Some(Probe {
        kind,
        reason: Cow::Borrowed(reason),
        interval_ms: PROBE_INTERVAL_MS,
    })
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
    let (address, url) = address_and_url(protocol, transport, address, port.id);
    Params::Rpc {
        protocol: protocol.to_owned(),
        transport: transport.child(),
        address,
        url,
    }
}

/// The address clients reach (a kernel-chosen TCP port as `{port:ID}`)
/// and the URL its protocol's frameworks expect.
pub(crate) fn address_and_url(
    protocol: &str,
    transport: Transport,
    address: &str,
    id: &str,
) -> (String, String) {
    let address = match transport {
        Transport::Tcp => address_with_port(address, id),
        Transport::Unix => address.to_owned(),
    };
    let mut url = String::with_capacity(address.len() + 16);
    push_url(&mut url, protocol, transport, &address);
    (address, url)
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
        "dbus" => dbus::push_tcp_address(out, address),
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

/// The server's listener: a Unix stream socket or a TCP listener; for a
/// server-bound endpoint, only what keeps its address for the server; for a
/// broker edge, first the broker's configuration (which fails, before
/// anything of the channel exists, when the broker is not installed).
pub(crate) fn create(
    b: &mut dyn Build,
    transport: Transport,
    address: &str,
    backlog: u32,
    endpoint: &Endpoint,
) -> Result<(), LaunchError> {
    if endpoint.shape == EndpointShape::Broker {
        dbus::create_config(b, transport)?;
    }
    match (transport, endpoint.shape) {
        (Transport::Unix, EndpointShape::ServerBound) => claim_socket_file(b, address),
        (Transport::Tcp, EndpointShape::ServerBound) => hold_port(b, address),
        (Transport::Unix, _) => {
            super::unix_listener::create(b, SocketType::Stream, address, backlog)
        }
        (Transport::Tcp, _) => super::tcp::create(b, address, backlog),
    }
}

/// The socket file a server-bound server will bind in the run directory:
/// journaled and recorded as the run's, so cleanup and `clean` remove it
/// (and the run directory with it) whoever made it.
fn claim_socket_file(b: &mut dyn Build, path: &str) -> Result<(), LaunchError> {
    let template = path;
    let path = b.fill(template)?;
    let name = b.file_in_run_dir(&path)?;
    let object = Named::UnixSocket(name);
    b.intend(&object)?;
    b.record(object);
    Ok(())
}

/// Holds a server-bound server's TCP port for the whole run: a socket
/// bound to the address with `SO_REUSEPORT`, never listening. The server's
/// own bind with `SO_REUSEPORT` (grpcio's default on Linux) joins it, as
/// the kernel lets sockets of the same effective uid share a port when
/// all set the option; a socket of another uid, or one without the option,
/// gets `EADDRINUSE`, and the kernel hands the port to no `bind(…:0)` or
/// outgoing connection. Connections go only to the listening socket, so
/// the hold takes no traffic. A restarted server binds the same port.
fn hold_port(b: &mut dyn Build, address: &str) -> Result<(), LaunchError> {
    let channel = b.channel().id.to_string();
    let want = parse_addr(&channel, &b.fill(address)?)?;
    let (fd, port) = reuseport_bound(want).map_err(|errno| {
        bind_error(
            &channel,
            address,
            std::io::Error::from_raw_os_error(errno as i32),
        )
    })?;
    b.set_port(port);
    b.hold(Held::Listen, fd);
    Ok(())
}

/// A TCP socket bound to `addr` with `SO_REUSEPORT`, not listening, and
/// the port it got.
fn reuseport_bound(addr: SocketAddr) -> Result<(OwnedFd, u16), Errno> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    match addr {
        SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?,
    }
    // getsockname through std's view of the (not listening) socket.
    let socket = std::net::TcpListener::from(fd);
    let port = socket.local_addr().map_err(|_| Errno::EIO)?.port();
    Ok((OwnedFd::from(socket), port))
}

/// Whether an end gets an fd, and whether it listens: the server gets the
/// listener, except a server-bound one, which binds its own address.
pub(crate) fn fd_need(endpoint: &Endpoint, end: End) -> (bool, bool) {
    let listening = end == End::Listen && endpoint.shape != EndpointShape::ServerBound;
    (listening, listening)
}

/// The bound socket to the server side, a new connection to each client.
pub(crate) fn handover(end: End) -> Handover {
    Handover::listener(end)
}
