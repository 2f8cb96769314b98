//! The only place with `unsafe`: thin wrappers over system calls that nix
//! does not offer safely, and the code that runs between `clone` and
//! `execve`. Every block says why it is sound.
//!
//! - [`ipc`]: POSIX named semaphores and message queues, System V shared
//!   memory, message queues and semaphore sets (`sem_overview(7)`,
//!   `mq_overview(7)`, `sysvipc(7)`).
//! - [`bench`]: message queue send/receive and `sigtimedwait` for
//!   `ipc-run bench`.
//! - [`clone3`]: `clone3(2)` with `CLONE_INTO_CGROUP` in `asm!` (x86_64),
//!   so a child is born in the run's cgroup.
//! - [`fd`]: `flock(2)`, `getrandom(2)`, `fcntl(2)` helpers, `TCP_DEFER_ACCEPT`.
//! - [`fd_slots`]: low fd numbers reserved so a spawn copies a small table.
//! - [`pidfd`]: `pidfd_open(2)`, for exits in the order they happened.
//! - [`pipe`]: how full a pipe is (`FIONREAD`, `F_GETPIPE_SZ`).
//! - [`spawn`]: the allocation-free child path (`clone(2)` with
//!   `CLONE_VM | CLONE_VFORK`, or `clone3` into the cgroup, fd shuffle,
//!   signal reset, `execve(2)`).

#![expect(
    unsafe_code,
    reason = "this module wraps the system calls nix leaves unsafe"
)]

pub mod bench;
mod clone3;
pub mod fd;
pub mod fd_slots;
pub mod ipc;
pub mod pidfd;
pub mod pipe;
pub mod signals;
pub mod spawn;

/// Clock ticks per second (`_SC_CLK_TCK`): the unit of process start times
/// in `/proc/PID/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}
