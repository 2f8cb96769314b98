//! `sysv-sem`: a System V semaphore set (`IPC_PRIVATE`, its id handed over).

use super::edge::{EdgeContext, Shape};
use super::{BASE, EdgeOption, Profile, posix_sem};
use crate::plan::{Mechanism, ObjectKind};
use crate::topology::Traffic;

/// The mechanism's name.
pub const NAME: &str = "sysv-sem";

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
