//! `posix-sem`: a POSIX named semaphore (`sem_open`): senders post,
//! receivers wait.

use super::edge::{EdgeContext, Shape};
use super::{BASE, EdgeOption, Profile};
use crate::diagnostic::{Diagnostic, Label};
use crate::plan::{Mechanism, ObjectKind};
use crate::topology::Traffic;

/// The mechanism's name.
pub const NAME: &str = "posix-sem";

/// Events without data, with a name any process can open.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Notify],
    one_way: true,
    no_payload: true,
    options: &[EdgeOption::Initial],
    ..BASE
};

// ---- plan ----

/// The semaphore `/ipc-run.{run_id}.ID` with its initial value.
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let initial = initial_value(cx, NAME, cx.limits.sem_value_max.value)?;
    let name = cx.posix_name();
    cx.object(ObjectKind::PosixSem, name.clone());
    Some(Shape::unbounded(Mechanism::PosixSem { name, initial }))
}

/// The edge's `initial`, 0 unless written, checked to be within `0..=max`.
pub(crate) fn initial_value(cx: &mut EdgeContext<'_>, kind: &str, max: u64) -> Option<u32> {
    let Some(v) = cx.spec.and_then(|s| s.initial.as_ref()) else {
        return Some(0);
    };
    if (0..=max as i64).contains(v.get_ref()) {
        return Some(*v.get_ref() as u32);
    }
    cx.report(
        Diagnostic::error(
            "E0606",
            format!(
                "a `{kind}` starts between 0 and {max}, edge `{}` asks for {}",
                cx.id,
                v.get_ref()
            ),
        )
        .with_label(Label::primary(v.span(), "initial value out of range")),
    );
    None
}
