//! `posix-sem`: a POSIX named semaphore (`sem_open`): senders post,
//! receivers wait.

use super::edge::{EdgeContext, Shape};
use super::host_limits;
use super::{BASE, EdgeOption, Profile};
use crate::diagnostic::{Diagnostic, Label};
use crate::mechanism::build::{Build, Named, exists, posix_name};
use crate::mechanism::error::LaunchError;
use crate::mechanism::limits::Limits;
use crate::mechanism::model::{Mechanism, ObjectKind, PosixSemParams};
use crate::sys::ipc;
use crate::topology::Traffic;
use ipc_run_child::description::Params;
use nix::errno::Errno;
use std::ffi::CString;

/// The mechanism's name.
pub const NAME: &str = ipc_run_child::description::Kind::PosixSem.as_str();

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
    Some(Shape::unbounded(Mechanism::PosixSem(Box::new(
        PosixSemParams { name, initial },
    ))))
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

/// The description its ports get (`IPC_PORT_*`).
pub(crate) fn describe(name: &str, initial: u32) -> Params {
    Params::PosixSem {
        name: name.to_owned(),
        initial,
    }
}

/// Re-checks a plan read back against this host: `SEM_VALUE_MAX`.
pub(crate) fn recheck(id: &str, initial: u32, limits: &Limits, sink: &mut Vec<Diagnostic>) {
    host_limits::initial(id, NAME, initial, limits.sem_value_max.value, sink);
}

// ---- launch ----

/// The semaphore, created exclusively and set to its mode.
pub(crate) fn create(b: &mut dyn Build, name: &str, initial: u32) -> Result<(), LaunchError> {
    let name = posix_name(&b.channel().id, &b.fill(name)?)?;
    let c = CString::new(name.clone()).map_err(|_| LaunchError::BadValue {
        what: format!("semaphore name of channel {}", b.channel().id),
        value: name.clone(),
        reason: "contains NUL".into(),
    })?;
    let record = Named::PosixSem(name.clone());
    b.intend(&record)?;
    let error = b.error(NAME, &name);
    match ipc::sem_create(&c, 0o600, initial) {
        Ok(()) => b.record(record),
        Err(Errno::EEXIST) => return Err(exists(NAME, &name)),
        Err(errno) => return Err(error(errno)),
    }
    ipc::sem_set_mode(&c, b.mode(ObjectKind::PosixSem)).map_err(error)
}
