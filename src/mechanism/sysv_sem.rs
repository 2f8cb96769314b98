//! `sysv-sem`: a System V semaphore set (created under a journaled key, its id handed over).

use super::PortSide;
use super::edge::placeholder;
use super::edge::{EdgeContext, Shape};
use super::host_limits;
use super::{BASE, EdgeOption, Profile, posix_sem};
use crate::diagnostic::Diagnostic;
use crate::mechanism::build::Build;
use crate::mechanism::error::LaunchError;
use crate::mechanism::limits::Limits;
use crate::mechanism::model::{Mechanism, ObjectKind};
use crate::sys::ipc::{self, SysvKind};
use crate::topology::Traffic;
use ipc_run_child::description::Params;

/// The mechanism's name.
pub const NAME: &str = ipc_run_child::description::Kind::SysvSem.as_str();

/// Largest value of a System V semaphore (`SEMVMX`).
pub const SEMVMX: u64 = 32_767;

/// Events without data between launched processes.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Notify],
    one_way: true,
    no_payload: true,
    named: false,
    options: &[EdgeOption::Initial],
    ..BASE
};

// ---- plan ----

/// A set of one semaphore with its initial value (at most `SEMVMX`).
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let initial = posix_sem::initial_value(cx, NAME, SEMVMX)?;
    let count = 1;
    if !cx.sem_set_fits(u64::from(count)) {
        return None;
    }
    cx.object(ObjectKind::SysvSem, cx.sysv_id());
    Some(Shape::unbounded(Mechanism::SysvSem { count, initial }))
}

/// The description its ports get (`IPC_PORT_*`).
pub(crate) fn describe(count: u32, initial: u32, port: &PortSide<'_>) -> Params {
    Params::SysvSem {
        id: placeholder("sysv_id", port.id),
        count,
        initial,
    }
}

/// Re-checks a plan read back against this host: `SEMVMX` and `semmsl`.
pub(crate) fn recheck(
    id: &str,
    count: u32,
    initial: u32,
    limits: &Limits,
    sink: &mut Vec<Diagnostic>,
) {
    host_limits::initial(id, NAME, initial, SEMVMX, sink);
    host_limits::sem_set(id, u64::from(count), limits, sink);
}

// ---- launch ----

/// The set, every semaphore at `initial`; its id is recorded for the
/// placeholder.
pub(crate) fn create(b: &mut dyn Build, count: u32, initial: u32) -> Result<(), LaunchError> {
    let id = b.channel().id.clone();
    let mode = b.mode(ObjectKind::SysvSem);
    let initial = u16::try_from(initial).map_err(|_| LaunchError::BadValue {
        what: format!("initial semaphore value of channel {id}"),
        value: initial.to_string(),
        reason: "System V semaphores hold at most 32767".into(),
    })?;
    let values = vec![initial; count as usize];
    let error = b.error(NAME, &id);
    let semid = b.create_sysv(SysvKind::Sem, mode, &error, &|key| {
        ipc::sem_set_create_keyed(key, &values, mode)
    })?;
    b.set_sysv_id(semid);
    Ok(())
}
