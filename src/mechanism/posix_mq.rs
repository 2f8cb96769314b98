//! `posix-mq`: a POSIX message queue (`mq_open`); any number of senders
//! and receivers, each message whole.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::edge::{EdgeContext, Shape};
use super::host_limits;
use super::{BASE, EdgeOption, Profile};
use crate::diagnostic::{Diagnostic, Label};
use crate::mechanism::bench_cleanup::{self as cleanup, Guard, Object};
use crate::mechanism::bench_kinds::HostLimits;
use crate::mechanism::bench_link::{
    Link, PeerReady, PeerSetup, Pending, Place, Setup, c_name, name, no_end, ready,
};
use crate::mechanism::build::{Build, Handover, Held, Named, exists, posix_name};
use crate::mechanism::error::LaunchError;
use crate::mechanism::limits::{Limit, Limits};
use crate::mechanism::model::{End, Mechanism, ObjectKind, PosixMqParams, Span};
use crate::sys::ipc;
use crate::topology::{EdgeSpec, Traffic};
use ipc_run_child::description::Params;
use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit};
use std::ffi::CString;

/// The mechanism's name.
pub const NAME: &str = ipc_run_child::description::Kind::PosixMq.as_str();

/// One-way messages, with a name any process can open.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Messages],
    one_way: true,
    options: &[EdgeOption::Depth],
    ..BASE
};

// ---- plan ----

/// The queue `/ipc-run.{run_id}.ID`: message size and depth from the edge
/// or the host's defaults, checked against `msgsize_max` and `msg_max`.
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let (id, limits) = (cx.id, cx.limits);
    let message_size = cx
        .traits
        .message_size
        .unwrap_or(limits.mq_msgsize_default.value);
    let depth = cx.traits.depth.unwrap_or(limits.mq_msg_default.value);
    let (size_max, depth_max) = (&limits.mq_msgsize_max, &limits.mq_msg_max);
    if message_size > size_max.value || message_size == 0 {
        let message = size_text(id, message_size, size_max);
        let option = |s: &EdgeSpec| s.message_size.as_ref().map(|v| v.span());
        return cx.refuse_above("E0601", message, option, (size_max, "msgsize_max"));
    }
    if depth > depth_max.value {
        let message = depth_text(id, depth, depth_max);
        let option = |s: &EdgeSpec| s.depth.as_ref().map(|v| v.span());
        return cx.refuse_above("E0602", message, option, (depth_max, "msg_max"));
    }
    *cx.posix_queues += 1;
    let name = cx.posix_name();
    cx.object(ObjectKind::PosixMq, name.clone());
    let mechanism = Mechanism::PosixMq(Box::new(PosixMqParams {
        name,
        depth,
        message_size,
    }));
    Some(Shape::blocking(mechanism, Some(depth * message_size)))
}

/// The description its ports get (`IPC_PORT_*`).
pub(crate) fn describe(name: &str, depth: u64, message_size: u64) -> Params {
    Params::PosixMq {
        name: name.to_owned(),
        depth,
        message_size,
    }
}

/// The error when the topology plans more POSIX queues than the host's
/// `queues_max`, pointing at the first.
pub(crate) fn queue_count_error(
    queues: u64,
    limits: &Limits,
    first: Option<Span>,
) -> Option<Diagnostic> {
    let max = &limits.mq_queues_max;
    if queues <= max.value {
        return None;
    }
    let mut diagnostic = Diagnostic::error(
        "E0603",
        format!(
            "the topology creates {queues} POSIX message queues, the host allows {}",
            max.value
        ),
    )
    .with_note(format!("queues_max is {} ({})", max.value, max.source));
    if let Some(first) = first {
        diagnostic = diagnostic.with_label(Label::primary(first, "the first queue"));
    }
    Some(diagnostic)
}

/// Re-checks a plan read back against this host: message size and depth.
pub(crate) fn recheck(
    id: &str,
    depth: u64,
    message_size: u64,
    limits: &Limits,
    sink: &mut Vec<Diagnostic>,
) {
    let (size_max, depth_max) = (&limits.mq_msgsize_max, &limits.mq_msg_max);
    if message_size > size_max.value || message_size == 0 {
        let message = size_text(id, message_size, size_max);
        sink.push(host_limits::limit_error(
            "E0601",
            message,
            size_max,
            "msgsize_max",
        ));
    }
    if depth > depth_max.value || depth == 0 {
        let message = depth_text(id, depth, depth_max);
        sink.push(host_limits::limit_error(
            "E0602", message, depth_max, "msg_max",
        ));
    }
}

/// What E0601 says, when planning and when re-checking a plan.
fn size_text(id: &str, message_size: u64, max: &Limit) -> String {
    format!(
        "edge `{id}` sends messages of {message_size} bytes; a POSIX queue on this host takes at most {}",
        max.value
    )
}

/// What E0602 says, when planning and when re-checking a plan.
fn depth_text(id: &str, depth: u64, max: &Limit) -> String {
    format!(
        "edge `{id}` asks for a queue of depth {depth}; a POSIX queue on this host holds at most {}",
        max.value
    )
}

// ---- launch ----

/// The queue, created exclusively with its mode and attributes, and opened
/// once more for each direction. `EMFILE` here is the user's
/// `RLIMIT_MSGQUEUE` (bytes of every queue), reported as such.
pub(crate) fn create(
    b: &mut dyn Build,
    name: &str,
    depth: u64,
    message_size: u64,
) -> Result<(), LaunchError> {
    let name = posix_name(&b.channel().id, &b.fill(name)?)?;
    let error = b.error(NAME, &name);
    let c = CString::new(name.clone()).map_err(|_| error(Errno::EINVAL))?;
    let record = Named::PosixMq(name.clone());
    b.intend(&record)?;
    let mode = b.mode(ObjectKind::PosixMq);
    let both = match ipc::mq_create(&c, mode, depth as i64, message_size as i64) {
        Ok(fd) => {
            b.record(record);
            fd
        }
        Err(Errno::EEXIST) => return Err(exists(NAME, &name)),
        Err(Errno::EMFILE) => {
            let limit = getrlimit(Resource::RLIMIT_MSGQUEUE)
                .map_or_else(|_| "unknown".to_owned(), |(soft, _)| soft.to_string());
            return Err(LaunchError::MqQuota {
                channel: b.channel().id.to_string(),
                name,
                bytes: depth.saturating_mul(message_size),
                limit,
            });
        }
        Err(errno) => return Err(error(errno)),
    };
    let read = ipc::mq_open_existing(&c, false).map_err(&error)?;
    let write = ipc::mq_open_existing(&c, true).map_err(&error)?;
    b.hold(Held::MqBoth, both);
    b.hold(Held::MqRead, read);
    b.hold(Held::MqWrite, write);
    Ok(())
}

// ---- bench ----

/// A message above the host's `msgsize_max` cannot be sent.
pub(crate) fn bench_refusal(limits: &HostLimits, size: u64) -> Option<String> {
    match limits.mq_msgsize_max {
        Some(max) if size > max => Some(format!(
            "exceeds the POSIX queue message size limit {max} B (/proc/sys/fs/mqueue/msgsize_max)"
        )),
        None => Some("/proc/sys/fs/mqueue/msgsize_max is unreadable".into()),
        _ => None,
    }
}

/// A queue descriptor opened for the end's direction.
pub(crate) fn handover(end: End) -> Handover {
    Handover::Held(match end {
        End::Read | End::Receive | End::Listen => Held::MqRead,
        End::Write | End::Send | End::Connect => Held::MqWrite,
        End::Both => Held::MqBoth,
    })
}

// ---- bench ----

/// POSIX queues, one per direction; an empty message ends.
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

/// A bench queue named after the place, for messages of `size` bytes.
fn bench_queue(place: &Place, tag: &str, size: usize) -> io::Result<(OwnedFd, String, Guard)> {
    let name = format!("/ipc-run-bench.{}.{tag}", place.id);
    let depth = place.limits.mq_msg_max.unwrap_or(10).clamp(1, 64) as i64;
    let cname = c_name(&name)?;
    let (fd, guard) = cleanup::create(|| {
        crate::sys::ipc::mq_create(&cname, 0o600, depth, size as i64)
            .map(|fd| (fd, Object::PosixMq(cname.clone())))
    })?;
    Ok((fd, name, guard))
}

/// One POSIX queue from the peer, and one to it for round trips.
pub(crate) fn bench_parent(b: &mut Setup<'_>) -> io::Result<Pending> {
    let (place, round_trip, size) = (b.place, b.round_trip, b.size);
    let (from_peer, name, guard) = bench_queue(place, "from-peer", size)?;
    b.side.guards.push(guard);
    let tx = if round_trip {
        let (to_peer, to_name, guard) = bench_queue(place, "to-peer", size)?;
        b.side.guards.push(guard);
        b.side.endpoint.names = vec![to_name, name];
        Some(to_peer)
    } else {
        b.side.endpoint.names = vec![name];
        None
    };
    Ok(Pending::Ready(Box::new(PosixMqLink {
        tx,
        rx: Some(from_peer),
    })))
}

/// The parent's POSIX queues, opened: to the parent, and from it for
/// round trips.
pub(crate) fn bench_peer(p: &PeerSetup<'_>) -> io::Result<PeerReady> {
    let (endpoint, round_trip) = (p.endpoint, p.round_trip);
    let open = |at, write| -> io::Result<OwnedFd> {
        Ok(crate::sys::ipc::mq_open_existing(
            &name(endpoint, at)?,
            write,
        )?)
    };
    ready(Box::new(if round_trip {
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
