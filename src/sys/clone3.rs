//! `clone3(2)` with `CLONE_INTO_CGROUP`: the child is born in the run's
//! cgroup instead of moving itself there by writing `cgroup.procs`.
//!
//! That write migrates a running task, and the kernel's migration takes
//! `cgroup_threadgroup_rwsem` for writing, which waits for an RCU grace
//! period: after a quiet moment one write took 10-12 ms, and with
//! `CLONE_VFORK` the spawning thread waited for it, so one restart cost ten
//! times the spawn itself. A task created in its cgroup migrates nothing
//! (Linux >= 5.7).
//!
//! glibc exports no `clone3` wrapper, and a raw `syscall(SYS_clone3)` that
//! returns in a child on a new stack into compiled code is undefined (the
//! code after it may use the parent's stack frame). So the syscall is made
//! in `asm!` (x86_64 only), which in the child calls the entry function
//! straight away on the new stack and exits with what it returns, never
//! coming back into Rust code of the parent's frame. Elsewhere
//! [`clone_into_cgroup`] reports `ENOSYS` and the caller falls back.
//!
//! The fallback (`clone` plus the child's own `cgroup.procs` write) is
//! taken for good once `clone3` refuses ([`is_refusal`]): an old kernel,
//! seccomp, or a cgroup that cannot take a task this way (threaded,
//! domain-invalid, or a permission check on the way).

use std::ffi::{c_int, c_void};
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;

/// `CLONE_INTO_CGROUP` (`linux/sched.h`): not in every libc crate version.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The kernel's `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

static REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether to try `clone3`: until it refused once, and (debug builds) not
/// with `IPC_RUN_SPAWN_CLONE3=0`, which tests use to run the fallback.
pub(super) fn usable() -> bool {
    static WANTED: OnceLock<bool> = OnceLock::new();
    let wanted = *WANTED.get_or_init(|| {
        #[cfg(debug_assertions)]
        if std::env::var_os("IPC_RUN_SPAWN_CLONE3").is_some_and(|v| v == "0") {
            return false;
        }
        cfg!(target_arch = "x86_64")
    });
    wanted && !REFUSED.load(Ordering::Relaxed)
}

/// Whether `errno` from [`clone_into_cgroup`] means "not this way", so the
/// spawn is to be made again with `clone`, rather than a failure of the
/// spawn itself (`EAGAIN`, `ENOMEM`). `ENOSYS`, `E2BIG`: a kernel without
/// `clone3` or without its `cgroup` field; `EPERM`: seccomp; `EINVAL`,
/// `EOPNOTSUPP`, `EBUSY`, `EACCES`, `ENOENT`: a cgroup that will not take
/// a task like this (the fallback's write may still work, or the run goes
/// on without its cgroup as before).
pub(super) fn is_refusal(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::ENOSYS
            | Errno::E2BIG
            | Errno::EPERM
            | Errno::EINVAL
            | Errno::EOPNOTSUPP
            | Errno::EBUSY
            | Errno::EACCES
            | Errno::ENOENT
    )
}

/// Stops trying `clone3` for the rest of the process.
pub(super) fn disable(errno: Errno) {
    if !REFUSED.swap(true, Ordering::Relaxed) {
        tracing::debug!(
            "clone3(CLONE_INTO_CGROUP) refused ({errno}): children join the cgroup themselves"
        );
    }
}

/// Clones a child into the cgroup whose directory `cgroup` is open (any
/// mode, `O_PATH` is enough), with `flags` (no signal number in them: the
/// child's exit signal is SIGCHLD). The child starts on the stack
/// `[stack, stack + stack_size)` and runs `entry(arg)`; if that returns, the
/// child exits with its value. Returns the child's pid.
///
/// # Safety
/// As for `clone(2)` with the same flags: `entry` and everything it uses
/// through `arg` must stay valid while the child runs; with `CLONE_VM` it
/// must respect the rules of a child that shares the parent's memory (see
/// [`super::spawn`]), and `flags` should include `CLONE_VFORK` so the
/// caller's borrows outlive the child's use of them. The stack must be a
/// writable mapping used by nothing else while the child runs, its top
/// 16-byte aligned.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn clone_into_cgroup(
    flags: u64,
    cgroup: RawFd,
    stack: *mut c_void,
    stack_size: usize,
    entry: extern "C" fn(*mut c_void) -> c_int,
    arg: *mut c_void,
) -> Result<libc::pid_t, Errno> {
    let args = CloneArgs {
        flags: flags | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack as u64,
        stack_size: stack_size as u64,
        cgroup: cgroup as u64,
        ..CloneArgs::default()
    };
    let ret: i64;
    // SAFETY: the syscall reads `args` (a live local of the right layout
    // and size). In the parent the kernel returns the pid or -errno in rax
    // and, as for every syscall, changes only rax, rcx and r11 (declared)
    // and the flags (not declared preserved); the block touches no stack
    // (`nostack`). The child (rax == 0) starts here with every other
    // register as the parent had it and rsp at the top of the new stack:
    // it never returns into the parent's code. It clears rbp (the end of
    // the frame chain for a debugger), calls `entry(arg)` with rsp 16-byte
    // aligned before the call as the ABI wants (the caller guarantees the
    // top's alignment), and passes the result to exit_group; `ud2` stops
    // it if that ever returned. Whatever the call clobbers in the child is
    // invisible to the parent: each task has its own registers, and the
    // child's stack is not the parent's. Memory: the child writes through
    // `arg` (not `nomem`); with CLONE_VFORK the parent resumes only after
    // the child has exec'd or exited, so it sees those writes.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r8",
            "call rdx",
            "mov edi, eax",
            "mov eax, {exit_group}",
            "syscall",
            "ud2",
            "2:",
            exit_group = const libc::SYS_exit_group,
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &raw const args,
            in("rsi") size_of::<CloneArgs>(),
            in("rdx") entry,
            in("r8") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret < 0 {
        return Err(Errno::from_raw(-ret as i32));
    }
    Ok(ret as libc::pid_t)
}

/// Elsewhere than x86_64: not written (nor testable here), so every spawn
/// takes the fallback.
///
/// # Safety
/// None needed; the signature matches the x86_64 version.
#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn clone_into_cgroup(
    _flags: u64,
    _cgroup: RawFd,
    _stack: *mut c_void,
    _stack_size: usize,
    _entry: extern "C" fn(*mut c_void) -> c_int,
    _arg: *mut c_void,
) -> Result<libc::pid_t, Errno> {
    Err(Errno::ENOSYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_args_has_the_kernels_ver2_size() {
        assert_eq!(size_of::<CloneArgs>(), 88);
    }
}
