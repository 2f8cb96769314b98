//! `sysv-shm`: a System V shared memory segment (created under a journaled key, its id
//! handed over), optionally with a set of two semaphores (lock, ready).

use super::PortSide;
use super::edge::placeholder;
use super::edge::{EdgeContext, Shape};
use super::host_limits;
use super::{BASE, EdgeOption, Profile, Ring, posix_shm};
use crate::diagnostic::Diagnostic;
use crate::mechanism::build::Build;
use crate::mechanism::error::LaunchError;
use crate::mechanism::limits::Limits;
use crate::mechanism::model::{Mechanism, ObjectKind, SysvShmParams};
use crate::sys::ipc::{self, SysvKind};
use crate::topology::{SyncKind, Traffic};
use ipc_run_child::description::Params;

/// The mechanism's name.
pub const NAME: &str = ipc_run_child::description::Kind::SysvShm.as_str();

/// Shared data between launched processes.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Shared],
    ring: Ring::Refused(
        "`sync = \"ring\"` needs POSIX shared memory: System V segments have no name or fd to map the ring from",
    ),
    named: false,
    options: &[EdgeOption::Size, EdgeOption::Sync],
    ..BASE
};

// ---- plan ----

/// The segment, its size checked against `shmmax`, and with semaphores a
/// set of two that must fit `SEMMSL`.
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let limits = cx.limits;
    let size = cx.shared_size("E0604", &limits.sysv_shmmax, "shmmax")?;
    let semaphore_set = posix_shm::sync_of(cx) == SyncKind::Semaphores;
    if semaphore_set && !cx.sem_set_fits(2) {
        return None;
    }
    cx.object(ObjectKind::SysvShm, cx.sysv_id());
    if semaphore_set {
        cx.object(ObjectKind::SysvSem, format!("{{sysv_sem_id:{}}}", cx.id));
    }
    Some(Shape::unbounded(Mechanism::SysvShm(Box::new(
        SysvShmParams {
            size,
            semaphore_set,
        },
    ))))
}

/// The description its ports get (`IPC_PORT_*`).
pub(crate) fn describe(size: u64, semaphore_set: bool, port: &PortSide<'_>) -> Params {
    Params::SysvShm {
        id: placeholder("sysv_id", port.id),
        size,
        sem_id: semaphore_set.then(|| placeholder("sysv_sem_id", port.id)),
    }
}

/// Re-checks a plan read back against this host: `shmmax`, and the
/// semaphore pair when there is one.
pub(crate) fn recheck(
    id: &str,
    size: u64,
    semaphore_set: bool,
    limits: &Limits,
    sink: &mut Vec<Diagnostic>,
) {
    host_limits::size("E0604", id, size, &limits.sysv_shmmax, "shmmax", sink);
    if semaphore_set {
        host_limits::sem_set(id, 2, limits, sink);
    }
}

// ---- launch ----

/// The segment, and with semaphores a set of two (lock = 1, ready = 0, as
/// for POSIX shared memory); their ids are recorded for the placeholders.
pub(crate) fn create(b: &mut dyn Build, size: u64, semaphore_set: bool) -> Result<(), LaunchError> {
    let id = b.channel().id.clone();
    let mode = b.mode(ObjectKind::SysvShm);
    let error = b.error(NAME, &id);
    let shmid = b.create_sysv(SysvKind::Shm, mode, &error, &|key| {
        ipc::shm_create_keyed(key, size, mode)
    })?;
    b.set_sysv_id(shmid);
    if semaphore_set {
        let mode = b.mode(ObjectKind::SysvSem);
        let error = b.error(super::sysv_sem::NAME, &id);
        let semid = b.create_sysv(SysvKind::Sem, mode, &error, &|key| {
            ipc::sem_set_create_keyed(key, &[1, 0], mode)
        })?;
        b.set_sysv_sem_id(semid);
    }
    Ok(())
}
