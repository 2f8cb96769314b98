//! `posix-mq`: a POSIX message queue (`mq_open`); any number of senders
//! and receivers, each message whole.

use super::edge::{EdgeContext, Shape, limit_error};
use super::{BASE, EdgeOption, Profile};
use crate::plan::{Mechanism, ObjectKind};
use crate::topology::Traffic;

/// The mechanism's name.
pub const NAME: &str = "posix-mq";

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
    if message_size > limits.mq_msgsize_max.value || message_size == 0 {
        let message = format!(
            "edge `{id}` sends messages of {message_size} bytes; a POSIX queue on this host takes at most {}",
            limits.mq_msgsize_max.value
        );
        let span = cx.span_of(|s| s.message_size.as_ref().map(|v| v.span()));
        cx.report(limit_error(
            "E0601",
            message,
            span,
            &limits.mq_msgsize_max,
            "msgsize_max",
        ));
        return None;
    }
    if depth > limits.mq_msg_max.value {
        let message = format!(
            "edge `{id}` asks for a queue of depth {depth}; a POSIX queue on this host holds at most {}",
            limits.mq_msg_max.value
        );
        let span = cx.span_of(|s| s.depth.as_ref().map(|v| v.span()));
        cx.report(limit_error(
            "E0602",
            message,
            span,
            &limits.mq_msg_max,
            "msg_max",
        ));
        return None;
    }
    *cx.posix_queues += 1;
    let name = cx.posix_name();
    cx.object(ObjectKind::PosixMq, name.clone());
    let mechanism = Mechanism::PosixMq {
        name,
        depth,
        message_size,
    };
    Some(Shape::blocking(mechanism, Some(depth * message_size)))
}
