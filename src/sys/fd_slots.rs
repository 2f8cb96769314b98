//! Low fd numbers reserved early so that a spawn copies a small fd table.
//!
//! A `clone` without `CLONE_FILES` copies the parent's whole fd table
//! (every slot up to the highest open fd, a reference taken on each file),
//! and ipc-run's table grows with the topology: two relay pipes per child
//! plus every held channel end. With [`reserve`] called before any channel
//! exists, a handful of placeholders on `/dev/null` sit at low numbers. A
//! spawn then shares the table (`CLONE_FILES`); the child `dup3`s its
//! sources onto the placeholders' numbers, and `close_range(end, ~0U,
//! CLOSE_RANGE_UNSHARE)` gives it a private table that the kernel copies
//! only below `end` (a range that reaches the top limits the copy, see
//! `close_range(2)`). The parent puts the placeholders back once the child
//! has exec'd or exited ([`Slots::restore`]).
//!
//! One spawn uses the slots at a time: [`lock`] hands out a guard the
//! spawning thread holds across the clone (the child never touches it).
//! Other threads sharing the table cannot disturb the slots: an occupied
//! number is never handed out by `open`, and `dup3` replaces atomically.
//! What a slot holds while a child uses it is CLOEXEC, like every fd of
//! ipc-run, so a fork elsewhere meanwhile does not leak it past exec.
//!
//! Without slots (never reserved, more fds than slots, or a kernel without
//! `CLOSE_RANGE_UNSHARE`, before 5.9: [`disable`]) a spawn copies the whole
//! table as before.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// How many fds one child can get through the slots; a child with more is
/// spawned the old way. Fds 0-2 plus a dozen ports covers every topology in
/// `topologies/`.
pub const SLOT_COUNT: usize = 16;

/// The placeholders and the `/dev/null` they are restored from.
#[derive(Debug)]
pub struct Slots {
    placeholders: Vec<OwnedFd>,
    devnull: OwnedFd,
    end: i32,
}

static SLOTS: OnceLock<Option<Mutex<Slots>>> = OnceLock::new();
static DISABLED: AtomicBool = AtomicBool::new(false);

/// Reserves the slots, once per process; later calls do nothing. Call it
/// before the fd table grows: the lower the slots, the less a spawn copies.
/// Where `/dev/null` cannot be opened, spawns go without slots.
pub fn reserve() {
    SLOTS.get_or_init(|| Slots::open().map(Mutex::new));
}

/// The slots for one spawn, when reserved and usable.
pub(super) fn lock() -> Option<MutexGuard<'static, Slots>> {
    if DISABLED.load(Ordering::Relaxed) {
        return None;
    }
    let slots = SLOTS.get()?.as_ref()?;
    // A panic while the guard was held left nothing half done that a
    // restore would not repair: use the slots anyway.
    Some(
        slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    )
}

/// Stops using the slots for the rest of the process (the kernel refused
/// `CLOSE_RANGE_UNSHARE`).
pub(super) fn disable() {
    DISABLED.store(true, Ordering::Relaxed);
}

impl Slots {
    fn open() -> Option<Slots> {
        let open = || {
            nix::fcntl::open(
                "/dev/null",
                OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
                Mode::empty(),
            )
            .ok()
        };
        let devnull = open()?;
        let placeholders = (0..SLOT_COUNT)
            .map(|_| open())
            .collect::<Option<Vec<_>>>()?;
        let end = placeholders
            .iter()
            .chain([&devnull])
            .map(|fd| fd.as_raw_fd())
            .max()?
            + 1;
        Some(Slots {
            placeholders,
            devnull,
            end,
        })
    }

    /// The slots' fd numbers.
    pub(super) fn numbers(&self) -> impl Iterator<Item = i32> + '_ {
        self.placeholders.iter().map(AsRawFd::as_raw_fd)
    }

    /// How many there are.
    pub(super) fn len(&self) -> usize {
        self.placeholders.len()
    }

    /// One above the highest slot: the child keeps the fds below it when
    /// it unshares the table.
    pub(super) fn end(&self) -> i32 {
        self.end
    }

    /// Puts `/dev/null` back into the first `used` slots, dropping the
    /// references a child left there.
    pub(super) fn restore(&self, used: usize) {
        for slot in self.placeholders.iter().take(used) {
            // SAFETY: both are fds this struct owns; dup3 onto an open
            // number only replaces what it refers to (it cannot run out of
            // fds), and the number stays owned by `slot`.
            unsafe { libc::dup3(self.devnull.as_raw_fd(), slot.as_raw_fd(), libc::O_CLOEXEC) };
        }
    }
}

/// Calls `f` with the slots' fd numbers while no spawn can use them, so a
/// test can check that every placeholder is back on `/dev/null`; `None`
/// when no slots are in use.
#[doc(hidden)]
pub fn inspect<R>(f: impl FnOnce(&[i32]) -> R) -> Option<R> {
    let slots = lock()?;
    let numbers: Vec<i32> = slots.numbers().collect();
    Some(f(&numbers))
}
