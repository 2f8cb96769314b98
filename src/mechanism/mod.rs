//! The mechanisms: one module each, and this registry of them.
//!
//! Everything ipc-run knows about one mechanism lives in its module: its
//! name, the traffic and edge shapes it fits ([`Profile`]), the plan it
//! makes from an edge (parameters, capacity, blocking, named objects), how
//! the launcher creates its objects and fds, and how the bench judges it.
//! This file is the closed list ([`Kind`]) and the dispatch to the modules.
//!
//! # Why an enum and not a trait
//!
//! The set is closed and small, and a plan must be data: the plan model's
//! [`crate::plan::Mechanism`] is a serialisable enum whose variants carry
//! each mechanism's parameters. Dispatching with a `match` on [`Kind`] (or
//! on that enum) keeps the modules plain functions over plain data, needs no
//! trait objects or generic plumbing through the stages, and makes the
//! compiler list every place a new kind must be handled. A trait would add
//! an object per mechanism that carries nothing.
//!
//! # Layers
//!
//! A module has a plan part (pure: decides names, sizes and checks against
//! [`crate::plan::Limits`], never a system call) and a launch part (creates
//! the objects through the launcher's build context, the `build::Build`
//! trait, and the wrappers in `crate::sys`). They are separate functions,
//! `plan` and `create`, so the planner never reaches the launch part. The
//! launcher implements `Build` and dispatches to `create` here; nothing in
//! this module uses the launcher, so the dependency runs one way.
//!
//! # Adding a mechanism
//!
//! Write `src/mechanism/NAME.rs` with `NAME`, `PROFILE`, `plan` and
//! `create`; add its variant to [`Kind`] and to the plan's `Mechanism` and
//! its line to each `match` below; the compiler points at the rest.

use std::io;

use ipc_run_child::description::{self as child, Params};

use crate::mechanism::bench_link::{PeerReady, PeerSetup, Pending, Setup};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diagnostic::Diagnostic;
use crate::mechanism::build::{Build, Handover};
use crate::mechanism::error::LaunchError;
use crate::mechanism::limits::Limits;
use crate::mechanism::model::{ChannelPlan, End, EndpointPlan, Mechanism, SocketType};
use crate::topology::{MechanismName, Traffic};

/// Describes a plan type in the JSON schema as the type it is written and
/// read as (`schema_as!(ChannelPlan => ChannelPlanWire)`): compact types
/// keep their memory layout to themselves and show the plan's shape.
/// Defined before the modules so `model` and `env` can use it.
macro_rules! schema_as {
    ($type:ty => $shape:ty) => {
        impl schemars::JsonSchema for $type {
            fn inline_schema() -> bool {
                <$shape as schemars::JsonSchema>::inline_schema()
            }
            fn schema_name() -> std::borrow::Cow<'static, str> {
                <$shape as schemars::JsonSchema>::schema_name()
            }
            fn schema_id() -> std::borrow::Cow<'static, str> {
                <$shape as schemars::JsonSchema>::schema_id()
            }
            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                <$shape as schemars::JsonSchema>::json_schema(generator)
            }
        }
    };
}

pub(crate) mod activation;
pub(crate) mod bench_cleanup;
pub(crate) mod bench_kinds;
pub(crate) mod bench_link;
pub(crate) mod bench_rpc;
pub(crate) mod build;
pub(crate) mod dbus;
pub(crate) mod edge;
pub mod env;
pub(crate) mod error;
pub mod fifo;
pub(crate) mod host_limits;
pub mod inherit;
pub mod limits;
pub mod model;
pub mod mpi;
pub mod pipe;
pub mod posix_mq;
pub mod posix_sem;
pub mod posix_shm;
pub mod rpc;
pub mod signal;
pub mod signals;
pub mod socketpair;
pub mod sysv_mq;
pub mod sysv_sem;
pub mod sysv_shm;
pub mod tcp;
pub mod udp;
pub mod unix_listener;

/// Every mechanism a channel can use: the closed list.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// ipc-run's own stdin or stdout handed to a process.
    Inherit,
    /// Anonymous pipe.
    Pipe,
    /// Named FIFO in the run directory.
    Fifo,
    /// Unix socketpair.
    Socketpair,
    /// Unix socket listener bound before exec.
    UnixListener,
    /// TCP listener.
    Tcp,
    /// Bound UDP socket.
    Udp,
    /// POSIX shared memory (`shm_open`).
    PosixShm,
    /// System V shared memory (`shmget`).
    SysvShm,
    /// POSIX message queue (`mq_open`).
    PosixMq,
    /// System V message queue (`msgget`).
    SysvMq,
    /// POSIX named semaphore (`sem_open`).
    PosixSem,
    /// System V semaphore set (`semget`).
    SysvSem,
    /// A signal sent by one process to another.
    Signal,
    /// An RPC endpoint: a listener plus a protocol label.
    Rpc,
    /// An MPI world: its processes run as the ranks of one `mpirun` job.
    Mpi,
}

impl Kind {
    /// Every kind, in the order of the documentation.
    pub const ALL: [Kind; 16] = [
        Kind::Inherit,
        Kind::Pipe,
        Kind::Fifo,
        Kind::Socketpair,
        Kind::UnixListener,
        Kind::Tcp,
        Kind::Udp,
        Kind::PosixShm,
        Kind::SysvShm,
        Kind::PosixMq,
        Kind::SysvMq,
        Kind::PosixSem,
        Kind::SysvSem,
        Kind::Signal,
        Kind::Rpc,
        Kind::Mpi,
    ];

    /// The name written in topology files, plans and journals.
    pub fn as_str(self) -> &'static str {
        self.child().as_str()
    }

    /// The kind as the port description spells it (the one place the names
    /// are written).
    pub fn child(self) -> child::Kind {
        match self {
            Kind::Inherit => child::Kind::Inherit,
            Kind::Pipe => child::Kind::Pipe,
            Kind::Fifo => child::Kind::Fifo,
            Kind::Socketpair => child::Kind::Socketpair,
            Kind::UnixListener => child::Kind::UnixListener,
            Kind::Tcp => child::Kind::Tcp,
            Kind::Udp => child::Kind::Udp,
            Kind::PosixShm => child::Kind::PosixShm,
            Kind::SysvShm => child::Kind::SysvShm,
            Kind::PosixMq => child::Kind::PosixMq,
            Kind::SysvMq => child::Kind::SysvMq,
            Kind::PosixSem => child::Kind::PosixSem,
            Kind::SysvSem => child::Kind::SysvSem,
            Kind::Signal => child::Kind::Signal,
            Kind::Rpc => child::Kind::Rpc,
            Kind::Mpi => child::Kind::Mpi,
        }
    }

    /// The kind of this name, if it is one.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// What the mechanism can carry, and the edge shapes it accepts.
    pub fn profile(self) -> &'static Profile {
        match self {
            Kind::Inherit => &inherit::PROFILE,
            Kind::Pipe => &pipe::PROFILE,
            Kind::Fifo => &fifo::PROFILE,
            Kind::Socketpair => &socketpair::PROFILE,
            Kind::UnixListener => &unix_listener::PROFILE,
            Kind::Tcp => &tcp::PROFILE,
            Kind::Udp => &udp::PROFILE,
            Kind::PosixShm => &posix_shm::PROFILE,
            Kind::SysvShm => &sysv_shm::PROFILE,
            Kind::PosixMq => &posix_mq::PROFILE,
            Kind::SysvMq => &sysv_mq::PROFILE,
            Kind::PosixSem => &posix_sem::PROFILE,
            Kind::SysvSem => &sysv_sem::PROFILE,
            Kind::Signal => &signal::PROFILE,
            Kind::Rpc => &rpc::PROFILE,
            Kind::Mpi => &mpi::PROFILE,
        }
    }
}

impl Kind {
    /// Plans an edge with this mechanism (the plan part of its module).
    pub(crate) fn plan(self, cx: &mut edge::EdgeContext<'_>) -> Option<edge::Shape> {
        match self {
            Kind::Inherit => inherit::plan(cx),
            Kind::Pipe => pipe::plan(cx),
            Kind::Fifo => fifo::plan(cx),
            Kind::Socketpair => socketpair::plan(cx),
            Kind::UnixListener => unix_listener::plan(cx),
            Kind::Tcp => tcp::plan(cx),
            Kind::Udp => udp::plan(cx),
            Kind::PosixShm => posix_shm::plan(cx),
            Kind::SysvShm => sysv_shm::plan(cx),
            Kind::PosixMq => posix_mq::plan(cx),
            Kind::SysvMq => sysv_mq::plan(cx),
            Kind::PosixSem => posix_sem::plan(cx),
            Kind::SysvSem => sysv_sem::plan(cx),
            Kind::Signal => signal::plan(cx),
            Kind::Rpc => rpc::plan(cx),
            Kind::Mpi => mpi::plan(cx),
        }
    }
}

/// Which end the `from` and the `to` side hold.
pub(crate) fn ends(mechanism: &Mechanism, duplex: bool) -> (End, End) {
    match mechanism {
        Mechanism::Inherit { .. }
        | Mechanism::Pipe { .. }
        | Mechanism::Fifo { .. }
        | Mechanism::PosixMq { .. }
        | Mechanism::SysvMq { .. } => (End::Write, End::Read),
        Mechanism::Socketpair { .. } if duplex => (End::Both, End::Both),
        Mechanism::Socketpair { .. } => (End::Write, End::Read),
        Mechanism::UnixListener { .. }
        | Mechanism::Tcp { .. }
        | Mechanism::Udp { .. }
        | Mechanism::Rpc { .. } => (End::Connect, End::Listen),
        Mechanism::PosixShm(shm) if shm.ring.is_some() => (End::Write, End::Read),
        Mechanism::PosixShm { .. } | Mechanism::SysvShm { .. } | Mechanism::Mpi { .. } => {
            (End::Both, End::Both)
        }
        Mechanism::PosixSem { .. } | Mechanism::SysvSem { .. } | Mechanism::Signal { .. } => {
            (End::Send, End::Receive)
        }
    }
}

/// Whether an end is handed over as an fd, and whether that fd listens.
pub(crate) fn fd_need(mechanism: &Mechanism, end: End) -> (bool, bool) {
    match mechanism {
        Mechanism::Inherit { .. } | Mechanism::Pipe { .. } | Mechanism::Socketpair { .. } => {
            (true, false)
        }
        Mechanism::Fifo(params) => (params.deliver == fifo::Deliver::Fd, false),
        Mechanism::Rpc(rpc) => rpc::fd_need(&rpc.endpoint, end),
        Mechanism::UnixListener { .. } | Mechanism::Tcp { .. } | Mechanism::Udp { .. } => {
            let listening = end == End::Listen;
            (listening, listening)
        }
        _ => (false, false),
    }
}

/// One side of a channel as its ports see it, for their description.
pub(crate) struct PortSide<'a> {
    /// Channel id.
    pub id: &'a str,
    /// The end the side holds.
    pub end: End,
    /// The `to` side's endpoints: its instances are the receivers.
    pub receivers: &'a [EndpointPlan],
}

/// What a port of this side is (`IPC_PORT_*`, without channel, end and fd).
pub(crate) fn describe(mechanism: &Mechanism, port: &PortSide<'_>) -> Params {
    match mechanism {
        Mechanism::Inherit { .. } => inherit::describe(),
        Mechanism::Pipe { .. } => pipe::describe(),
        Mechanism::Fifo(fifo) => fifo::describe(&fifo.path),
        Mechanism::Socketpair { socket } => socketpair::describe(*socket),
        Mechanism::UnixListener(unix) => unix_listener::describe(unix.socket, &unix.path),
        Mechanism::Tcp(tcp) => tcp::describe(&tcp.bind, port),
        Mechanism::Udp(udp) => udp::describe(&udp.bind, port),
        Mechanism::PosixShm(shm) => {
            posix_shm::describe(&shm.name, shm.size, &shm.semaphores, shm.ring.as_ref())
        }
        Mechanism::SysvShm(shm) => sysv_shm::describe(shm.size, shm.semaphore_set, port),
        Mechanism::PosixMq(mq) => posix_mq::describe(&mq.name, mq.depth, mq.message_size),
        Mechanism::SysvMq(mq) => sysv_mq::describe(mq.queue_bytes, mq.message_size, port),
        Mechanism::PosixSem(sem) => posix_sem::describe(&sem.name, sem.initial),
        Mechanism::SysvSem { count, initial } => sysv_sem::describe(*count, *initial, port),
        Mechanism::Signal(signal) => signal::describe(&signal.signal, port),
        Mechanism::Rpc(rpc) => rpc::describe(&rpc.protocol, rpc.transport, &rpc.address, port),
        Mechanism::Mpi(mpi) => mpi::describe(&mpi.ranks),
    }
}

/// Re-checks a channel of a plan read back (`run --plan`) against this
/// host's limits (the recheck part of its module).
pub(crate) fn recheck(
    id: &str,
    mechanism: &Mechanism,
    limits: &Limits,
    sink: &mut Vec<Diagnostic>,
) {
    match mechanism {
        Mechanism::UnixListener(unix) => unix_listener::recheck(id, &unix.path, limits, sink),
        Mechanism::Rpc(rpc) => rpc::recheck(id, rpc.transport, &rpc.address, limits, sink),
        Mechanism::PosixShm(shm) => {
            posix_shm::recheck(id, shm.size, shm.ring.as_ref(), limits, sink);
        }
        Mechanism::SysvShm(shm) => {
            sysv_shm::recheck(id, shm.size, shm.semaphore_set, limits, sink);
        }
        Mechanism::PosixMq(mq) => posix_mq::recheck(id, mq.depth, mq.message_size, limits, sink),
        Mechanism::SysvMq(mq) => {
            sysv_mq::recheck(id, mq.queue_bytes, mq.message_size, limits, sink);
        }
        Mechanism::PosixSem(sem) => posix_sem::recheck(id, sem.initial, limits, sink),
        Mechanism::SysvSem { count, initial } => {
            sysv_sem::recheck(id, *count, *initial, limits, sink);
        }
        // Nothing on this host bounds them beyond what the plan checked.
        Mechanism::Inherit { .. }
        | Mechanism::Pipe { .. }
        | Mechanism::Fifo { .. }
        | Mechanism::Socketpair { .. }
        | Mechanism::Tcp { .. }
        | Mechanism::Udp { .. }
        | Mechanism::Signal { .. }
        | Mechanism::Mpi { .. } => {}
    }
}

/// A socket type as the port description spells it.
pub(crate) fn child_socket(socket: SocketType) -> child::SocketType {
    match socket {
        SocketType::Stream => child::SocketType::Stream,
        SocketType::Seqpacket => child::SocketType::Seqpacket,
        SocketType::Dgram => child::SocketType::Dgram,
    }
}

/// How the launcher hands `end` of a channel to a process
/// (`on_from_side`: the process is one of the channel's `from` side).
pub(crate) fn handover(mechanism: &Mechanism, end: End, on_from_side: bool) -> Handover {
    match mechanism {
        Mechanism::Inherit { .. } => inherit::handover(),
        Mechanism::Pipe { .. } => pipe::handover(end),
        Mechanism::Fifo { .. } => fifo::handover(end),
        Mechanism::Socketpair { .. } => socketpair::handover(on_from_side),
        Mechanism::UnixListener { .. } => unix_listener::handover(end),
        Mechanism::Tcp { .. } => tcp::handover(end),
        Mechanism::Udp { .. } => udp::handover(end),
        Mechanism::Rpc { .. } => rpc::handover(end),
        Mechanism::PosixShm { .. } => posix_shm::handover(),
        Mechanism::PosixMq { .. } => posix_mq::handover(end),
        Mechanism::SysvShm { .. }
        | Mechanism::SysvMq { .. }
        | Mechanism::PosixSem { .. }
        | Mechanism::SysvSem { .. }
        | Mechanism::Signal { .. }
        | Mechanism::Mpi { .. } => Handover::ByName,
    }
}

/// Creates a channel's objects and fds (the launch part of its module).
pub(crate) fn create(b: &mut dyn Build, channel: &ChannelPlan) -> Result<(), LaunchError> {
    match &channel.mechanism {
        Mechanism::Inherit { stream } => inherit::create(b, *stream),
        Mechanism::Pipe { .. } => pipe::create(b),
        Mechanism::Fifo(fifo) => fifo::create(b, &fifo.path, fifo.deliver),
        Mechanism::Socketpair { socket } => socketpair::create(b, *socket),
        Mechanism::UnixListener(unix) => {
            unix_listener::create(b, unix.socket, &unix.path, unix.backlog)
        }
        Mechanism::Tcp(tcp) => tcp::create(b, &tcp.bind, tcp.backlog),
        Mechanism::Udp(udp) => udp::create(b, &udp.bind),
        Mechanism::PosixShm(shm) => {
            posix_shm::create(b, &shm.name, shm.size, &shm.semaphores, shm.ring.as_ref())
        }
        Mechanism::SysvShm(shm) => sysv_shm::create(b, shm.size, shm.semaphore_set),
        Mechanism::PosixMq(mq) => posix_mq::create(b, &mq.name, mq.depth, mq.message_size),
        Mechanism::SysvMq(mq) => sysv_mq::create(b, mq.queue_bytes),
        Mechanism::PosixSem(sem) => posix_sem::create(b, &sem.name, sem.initial),
        Mechanism::SysvSem { count, initial } => sysv_sem::create(b, *count, *initial),
        // Nothing to create: the sender is handed the receivers' pids.
        Mechanism::Signal { .. } => Ok(()),
        // Nothing either: mpirun makes the world's session directory.
        Mechanism::Mpi { .. } => Ok(()),
        Mechanism::Rpc(rpc) => {
            rpc::create(b, rpc.transport, &rpc.address, rpc.backlog, &rpc.endpoint)
        }
    }
}

/// Builds the parent's side of a bench link (the bench part of its module).
pub(crate) fn bench_parent(b: &mut Setup<'_>) -> io::Result<Pending> {
    match b.mechanism.kind() {
        Kind::Pipe => pipe::bench_parent(b),
        Kind::Fifo => fifo::bench_parent(b),
        Kind::Socketpair => socketpair::bench_parent(b),
        Kind::UnixListener => unix_listener::bench_parent(b),
        Kind::Tcp => tcp::bench_parent(b),
        Kind::Udp => udp::bench_parent(b),
        Kind::PosixMq => posix_mq::bench_parent(b),
        Kind::SysvMq => sysv_mq::bench_parent(b),
        Kind::PosixShm => posix_shm::bench_parent(b),
        Kind::Signal => signal::bench_parent(b),
        Kind::Rpc => bench_rpc::bench_parent(b),
        kind @ (Kind::Inherit | Kind::SysvShm | Kind::PosixSem | Kind::SysvSem | Kind::Mpi) => {
            Err(not_benched(kind))
        }
    }
}

/// Builds the peer's side of a bench link (the bench part of its module).
pub(crate) fn bench_peer(p: &PeerSetup<'_>) -> io::Result<PeerReady> {
    match p.mechanism.kind() {
        Kind::Pipe => pipe::bench_peer(p),
        Kind::Fifo => fifo::bench_peer(p),
        Kind::Socketpair => socketpair::bench_peer(p),
        Kind::UnixListener => unix_listener::bench_peer(p),
        Kind::Tcp => tcp::bench_peer(p),
        Kind::Udp => udp::bench_peer(p),
        Kind::PosixMq => posix_mq::bench_peer(p),
        Kind::SysvMq => sysv_mq::bench_peer(p),
        Kind::PosixShm => posix_shm::bench_peer(p),
        Kind::Signal => signal::bench_peer(p),
        Kind::Rpc => bench_rpc::bench_peer(p),
        kind @ (Kind::Inherit | Kind::SysvShm | Kind::PosixSem | Kind::SysvSem | Kind::Mpi) => {
            Err(not_benched(kind))
        }
    }
}

fn not_benched(kind: Kind) -> io::Error {
    io::Error::other(format!("the bench does not measure {kind}"))
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The static facts about a mechanism that decide which edges it fits.
///
/// The planner's fitness check (`plan::select::check_fit`) reads these in a
/// fixed order, so that the first reason an edge does not fit is reported.
#[derive(Debug)]
pub struct Profile {
    /// The name written in topology files, plans and journals.
    pub name: &'static str,
    /// Traffic it carries.
    pub carries: &'static [Traffic],
    /// The code and help when the traffic does not fit, if not the usual.
    pub wrong_traffic: Option<(&'static str, &'static str)>,
    /// What it does with `sync = "ring"`.
    pub ring: Ring,
    /// Data flows one way only: no duplex edge.
    pub one_way: bool,
    /// It carries events without data.
    pub no_payload: bool,
    /// A byte pipe: no broadcast, and shared writes stay whole up to PIPE_BUF.
    pub byte_pipe: bool,
    /// ipc-run's own stdin/stdout may be one of its ends.
    pub own_stream: bool,
    /// A peer outside the topology can reach it by a name.
    pub named: bool,
    /// How many processes it joins.
    pub peers: Peers,
    /// Whether the edge's `socket` option selects its type.
    pub sockets: Sockets,
    /// The edge must carry a `protocol` label.
    pub needs_protocol: bool,
    /// Edge options that apply to it (others are rejected).
    pub options: &'static [EdgeOption],
}

/// What a mechanism does with `sync = "ring"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ring {
    /// It holds a ring of records (and then also carries messages).
    Holds,
    /// It cannot hold one, for this reason (error E0315).
    Refused(&'static str),
    /// `sync` does not apply to it (error E0313).
    NotApplicable,
}

/// How many processes a mechanism joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peers {
    /// Any number on each side, within the other rules.
    Any,
    /// Exactly one writer and one reader, both launched.
    Pair,
    /// Exactly one server or receiver on the `to` side.
    OneServer,
}

/// Whether and how the edge's `socket` option selects a socket type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sockets {
    /// `socket` does not apply.
    No,
    /// Any type.
    Any,
    /// Any type but a datagram socket for stream traffic, and no duplex
    /// datagram socket (clients are not connected).
    Connected,
}

/// The edge options that apply to some mechanisms only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeOption {
    /// `size` (also allowed on any notify edge, where it is a payload misfit).
    Size,
    /// `sync`.
    Sync,
    /// `signal`.
    Signal,
    /// `initial`.
    Initial,
    /// `deliver`.
    Deliver,
    /// `protocol`.
    Protocol,
    /// `address`.
    Address,
    /// `depth`.
    Depth,
    /// `endpoint`.
    Endpoint,
    /// `max_connections`.
    MaxConnections,
    /// `probe`.
    Probe,
}

/// A default profile for the modules to start from.
pub(crate) const BASE: Profile = Profile {
    name: "",
    carries: &[],
    wrong_traffic: None,
    ring: Ring::NotApplicable,
    one_way: false,
    no_payload: false,
    byte_pipe: false,
    own_stream: false,
    named: true,
    peers: Peers::Any,
    sockets: Sockets::No,
    needs_protocol: false,
    options: &[],
};

impl MechanismName {
    /// The mechanism named, or `None` for `auto`.
    pub fn kind(self) -> Option<Kind> {
        Some(match self {
            MechanismName::Auto => return None,
            MechanismName::Pipe => Kind::Pipe,
            MechanismName::Fifo => Kind::Fifo,
            MechanismName::Socketpair => Kind::Socketpair,
            MechanismName::UnixListener => Kind::UnixListener,
            MechanismName::Tcp => Kind::Tcp,
            MechanismName::Udp => Kind::Udp,
            MechanismName::PosixShm => Kind::PosixShm,
            MechanismName::SysvShm => Kind::SysvShm,
            MechanismName::PosixMq => Kind::PosixMq,
            MechanismName::SysvMq => Kind::SysvMq,
            MechanismName::PosixSem => Kind::PosixSem,
            MechanismName::SysvSem => Kind::SysvSem,
            MechanismName::Signal => Kind::Signal,
            MechanismName::Rpc => Kind::Rpc,
            MechanismName::Mpi => Kind::Mpi,
        })
    }

    /// The spelling used in the TOML file.
    pub fn as_str(self) -> &'static str {
        self.kind().map_or("auto", Kind::as_str)
    }
}

impl std::fmt::Display for MechanismName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_spelt_once_and_read_back() {
        for kind in Kind::ALL {
            assert_eq!(kind.profile().name, kind.as_str());
            assert_eq!(Kind::from_name(kind.as_str()), Some(kind));
            // serde's kebab-case spelling of the variant is the same name.
            let json = serde_json::to_string(&kind).expect("a kind serialises");
            assert_eq!(json, format!("\"{kind}\""));
        }
        assert_eq!(Kind::from_name("auto"), None);
    }

    #[test]
    fn topology_names_are_the_registry_names() {
        for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Inherit) {
            let json = format!("\"{kind}\"");
            let named: MechanismName = serde_json::from_str(&json).expect("a named mechanism");
            assert_eq!(named.kind(), Some(kind));
            assert_eq!(named.as_str(), kind.as_str());
        }
        assert_eq!(MechanismName::Auto.as_str(), "auto");
    }
}
