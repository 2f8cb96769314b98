//! `posix-shm`: a POSIX shared memory object (`shm_open`) sized at launch,
//! with a lock and a ready semaphore, no synchronisation, or formatted as
//! a ring of records (`docs/shm-ring.md`).

use super::edge::{EdgeContext, Shape};
use super::{BASE, EdgeOption, Profile, Ring};
use crate::diagnostic::{Diagnostic, Label};
use crate::plan::{Mechanism, ObjectKind, RingPlan};
use crate::topology::{SyncKind, Traffic};

/// The mechanism's name.
pub const NAME: &str = "posix-shm";

/// Shared data, or messages through a ring.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Shared],
    ring: Ring::Holds,
    options: &[EdgeOption::Size, EdgeOption::Sync],
    ..BASE
};

// ---- plan ----

/// The object `/ipc-run.{run_id}.ID`, its size checked against `/dev/shm`,
/// and with `sync = "semaphores"` (the default) the semaphores `NAME.lock`
/// and `NAME.ready`.
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let limits = cx.limits;
    let size = cx.shared_size("E0609", &limits.posix_shm_max, "/dev/shm")?;
    let sync = sync_of(cx);
    let ring = if sync == SyncKind::Ring {
        Some(ring_plan(cx, size)?)
    } else {
        None
    };
    let name = cx.posix_name();
    cx.object(ObjectKind::PosixShm, name.clone());
    let mut semaphores = Vec::new();
    if sync == SyncKind::Semaphores {
        semaphores = vec![format!("{name}.lock"), format!("{name}.ready")];
        for sem in &semaphores {
            cx.object(ObjectKind::PosixSem, sem.clone());
        }
    }
    Some(Shape::unbounded(Mechanism::PosixShm {
        name,
        size,
        semaphores,
        ring,
    }))
}

/// The edge's `sync`, semaphores unless written.
pub(crate) fn sync_of(cx: &EdgeContext<'_>) -> SyncKind {
    cx.spec
        .and_then(|s| s.sync.as_ref())
        .map(|s| *s.get_ref())
        .unwrap_or(SyncKind::Semaphores)
}

/// The ring a segment of `size` bytes holds, checked against the largest
/// record the edge declares.
fn ring_plan(cx: &mut EdgeContext<'_>, size: u64) -> Option<RingPlan> {
    let id = cx.id;
    let blame = cx.span_of(|s| s.size.as_ref().map(|v| v.span()));
    let Some(capacity) = crate::child::ring::capacity_for(size) else {
        cx.report(
            Diagnostic::error(
                "E0612",
                format!("edge `{id}` is a ring of {size} bytes; a ring needs at least 4160 (a 4096-byte header and 64 bytes of data)"),
            )
            .with_label(Label::primary(blame, "too small for a ring"))
            .with_help("make `size` at least the header (4 KiB) plus room for a few records"),
        );
        return None;
    };
    if let Some(largest) = cx.traits.message_size
        && largest > capacity - 8
    {
        let span = cx
            .spec
            .and_then(|s| s.message_size.as_ref().map(|v| v.span()))
            .unwrap_or(blame);
        let least = (largest + 8).div_ceil(64) * 64 + crate::child::ring::HEADER_SIZE;
        cx.report(
            Diagnostic::error(
                "E0612",
                format!("edge `{id}` sends records of {largest} bytes; its ring of {size} bytes takes records of at most {} (capacity {capacity} less 8)", capacity - 8),
            )
            .with_label(Label::primary(span, "does not fit the ring"))
            .with_help(format!("make `size` at least {least}")),
        );
        return None;
    }
    Some(RingPlan {
        capacity,
        producers: u32::try_from(cx.traits.writers).unwrap_or(u32::MAX),
    })
}
