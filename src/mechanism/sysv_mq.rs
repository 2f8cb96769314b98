//! `sysv-mq`: a System V message queue (created under a journaled key, its id handed over).

use std::io;

use super::PortSide;
use super::edge::placeholder;
use super::edge::{EdgeContext, Shape};
use super::host_limits;
use super::{BASE, EdgeOption, Profile};
use crate::diagnostic::Diagnostic;
use crate::mechanism::bench_cleanup::{self as cleanup, Object};
use crate::mechanism::bench_kinds::HostLimits;
use crate::mechanism::bench_link::{Link, PeerReady, PeerSetup, Pending, Setup, ready};
use crate::mechanism::build::Build;
use crate::mechanism::error::LaunchError;
use crate::mechanism::limits::{Limit, Limits};
use crate::mechanism::model::{Mechanism, ObjectKind, SysvMqParams};
use crate::sys::bench::SysvMessage;
use crate::sys::ipc::{self, SysvKind};
use crate::topology::{EdgeSpec, Traffic};
use ipc_run_child::description::Params;

/// The mechanism's name.
pub const NAME: &str = ipc_run_child::description::Kind::SysvMq.as_str();

/// One-way messages between launched processes.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Messages],
    one_way: true,
    named: false,
    options: &[EdgeOption::Depth],
    ..BASE
};

// ---- plan ----

/// The queue: message size from the edge (at most 8 KiB by default),
/// capacity `depth x message_size` or the host's `msgmnb`.
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let (id, limits) = (cx.id, cx.limits);
    let message_size = cx
        .traits
        .message_size
        .unwrap_or(limits.sysv_msgmax.value.min(8192));
    let (msgmax, msgmnb) = (&limits.sysv_msgmax, &limits.sysv_msgmnb);
    if message_size > msgmax.value || message_size == 0 {
        let message = size_text(id, message_size, msgmax);
        let option = |s: &EdgeSpec| s.message_size.as_ref().map(|v| v.span());
        return cx.refuse_above("E0605", message, option, (msgmax, "msgmax"));
    }
    let queue_bytes = match cx.traits.depth {
        Some(depth) => depth.saturating_mul(message_size),
        None => msgmnb.value,
    };
    if queue_bytes > msgmnb.value {
        let message = queue_text(id, queue_bytes, msgmnb);
        let option = |s: &EdgeSpec| s.depth.as_ref().map(|v| v.span());
        return cx.refuse_above("E0605", message, option, (msgmnb, "msgmnb"));
    }
    cx.object(ObjectKind::SysvMq, cx.sysv_id());
    let mechanism = Mechanism::SysvMq(Box::new(SysvMqParams {
        queue_bytes,
        message_size,
    }));
    Some(Shape::blocking(mechanism, Some(queue_bytes)))
}

/// The description its ports get (`IPC_PORT_*`).
pub(crate) fn describe(queue_bytes: u64, message_size: u64, port: &PortSide<'_>) -> Params {
    Params::SysvMq {
        id: placeholder("sysv_id", port.id),
        queue_bytes,
        message_size,
    }
}

/// Re-checks a plan read back against this host: `msgmax` and `msgmnb`.
pub(crate) fn recheck(
    id: &str,
    queue_bytes: u64,
    message_size: u64,
    limits: &Limits,
    sink: &mut Vec<Diagnostic>,
) {
    let (msgmax, msgmnb) = (&limits.sysv_msgmax, &limits.sysv_msgmnb);
    if message_size > msgmax.value || message_size == 0 {
        let message = size_text(id, message_size, msgmax);
        sink.push(host_limits::limit_error("E0605", message, msgmax, "msgmax"));
    }
    if queue_bytes > msgmnb.value {
        let message = queue_text(id, queue_bytes, msgmnb);
        sink.push(host_limits::limit_error("E0605", message, msgmnb, "msgmnb"));
    }
}

/// What E0605 says of the message size, when planning and when re-checking
/// a plan.
fn size_text(id: &str, message_size: u64, max: &Limit) -> String {
    format!(
        "edge `{id}` sends messages of {message_size} bytes; a System V message on this host has at most {}",
        max.value
    )
}

/// What E0605 says of the queue's size, when planning and when re-checking
/// a plan.
fn queue_text(id: &str, queue_bytes: u64, max: &Limit) -> String {
    format!(
        "edge `{id}` needs a queue of {queue_bytes} bytes; a System V queue on this host holds at most {}",
        max.value
    )
}

// ---- launch ----

/// The queue with its capacity; its id is recorded for the placeholder.
pub(crate) fn create(b: &mut dyn Build, queue_bytes: u64) -> Result<(), LaunchError> {
    let id = b.channel().id.clone();
    let mode = b.mode(ObjectKind::SysvMq);
    let error = b.error(NAME, &id);
    let msqid = b.create_sysv(SysvKind::Msg, mode, &error, &|key| {
        ipc::msg_create_keyed(key, queue_bytes, mode)
    })?;
    b.set_sysv_id(msqid);
    Ok(())
}

// ---- bench ----

/// A message above the host's `msgmax` cannot be sent.
pub(crate) fn bench_refusal(limits: &HostLimits, size: u64) -> Option<String> {
    match limits.sysv_msgmax {
        Some(max) if size > max => Some(format!(
            "exceeds the System V message size limit {max} B (/proc/sys/kernel/msgmax)"
        )),
        None => Some("/proc/sys/kernel/msgmax is unreadable".into()),
        _ => None,
    }
}

// ---- bench ----

/// System V message type of messages to the peer.
const TO_PEER: i64 = 1;
/// System V message type of messages from the peer.
const FROM_PEER: i64 = 2;

/// One System V queue both ways, a message type per direction; an empty
/// message ends.
struct SysvLink {
    id: i32,
    tx_type: i64,
    rx_type: i64,
    msg: SysvMessage,
}

impl Link for SysvLink {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.msg.text_mut()[..msg.len()].copy_from_slice(msg);
        Ok(self.msg.send(self.id, self.tx_type, msg.len())?)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.msg.recv(self.id, self.rx_type)?;
        let n = n.min(buf.len());
        buf[..n].copy_from_slice(&self.msg.text()[..n]);
        Ok(n)
    }

    fn end(&mut self) -> io::Result<()> {
        Ok(self.msg.send(self.id, self.tx_type, 0)?)
    }
}

/// One System V queue; the message type tells the directions apart.
pub(crate) fn bench_parent(b: &mut Setup<'_>) -> io::Result<Pending> {
    let queue_bytes = b.place.limits.sysv_msgmnb.unwrap_or(16384);
    let (id, guard) = cleanup::create(|| {
        crate::sys::ipc::msg_create(queue_bytes, 0o600).map(|id| (id, Object::SysvMsg(id)))
    })?;
    b.side.guards.push(guard);
    b.side.endpoint.sysv_id = Some(id);
    Ok(Pending::Ready(Box::new(SysvLink {
        id,
        tx_type: TO_PEER,
        rx_type: FROM_PEER,
        msg: SysvMessage::new(b.size),
    })))
}

/// The parent's queue, with the directions swapped.
pub(crate) fn bench_peer(p: &PeerSetup<'_>) -> io::Result<PeerReady> {
    let id = p
        .endpoint
        .sysv_id
        .ok_or_else(|| io::Error::other("no System V id given"))?;
    ready(Box::new(SysvLink {
        id,
        tx_type: FROM_PEER,
        rx_type: TO_PEER,
        msg: SysvMessage::new(p.size),
    }))
}
