//! The child path: `clone(CLONE_VM | CLONE_VFORK)` and everything up to
//! `execve(2)`, without allocating or taking a lock.
//!
//! # Why `clone(CLONE_VM | CLONE_VFORK)`
//!
//! This is what glibc's `posix_spawn` does, and the reason it costs the same
//! from a small parent and from a 1 GiB one: no page tables are copied. std's
//! `Command` falls back to `fork` as soon as a `pre_exec` hook is set, and a
//! hook is needed (fd shuffle, `LISTEN_PID`, pdeathsig). So ipc-run makes the
//! same call itself and does its own child steps.
//!
//! The child shares the parent's memory until it execs (the calling parent
//! thread is suspended meanwhile; other threads keep running but never touch
//! what is prepared here). Hence the rules for [`child_main`]:
//! - everything it reads is prepared by [`spawn`] before the clone: C
//!   strings, `argv`/`envp` arrays, the fd moves, a scratch array;
//! - it only calls async-signal-safe libc wrappers that are plain syscalls;
//!   no allocation, no lock, no panic path (no indexing, no overflow);
//! - it writes to shared memory in exactly two places: the `LISTEN_PID`
//!   digits (a buffer reserved for it) and the failure report (two atomics);
//! - all signals are blocked in the parent thread across the clone, so no
//!   handler of the parent ever runs on the child's stack or memory; the
//!   child resets every disposition to default before unblocking.
//!
//! A failure in the child is reported through the shared [`ChildArgs`]
//! (step and errno) before `_exit(127)`. With `CLONE_VFORK` the parent
//! resumes only after the child has exec'd or exited, so the report is
//! complete when `clone` returns: no pipe, no blocking read, and no
//! dependency on other threads closing a CLOEXEC pipe they may have
//! inherited through a concurrent fork (the pipe scheme's known weakness).
//!
//! The fd shuffle handles collisions, swaps and self-maps in two phases:
//! every source is first duplicated (`F_DUPFD_CLOEXEC`) above the highest
//! target, then each temporary is `dup2`'d onto its target, which clears
//! `FD_CLOEXEC` (a `dup2(fd, fd)` self-map would not, which is why sources
//! never go straight to their targets). Then every other fd from 3 up is
//! closed with `close_range(2)` (a loop up to the fd limit on old kernels).

use std::cell::Cell;
use std::ffi::{CString, c_char, c_int, c_void};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::unistd::Pid;

/// A step of the child path, reported with the errno when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ChildStep {
    /// `setpgid(0, 0)`.
    Setpgid = 1,
    /// `prctl(PR_SET_PDEATHSIG)`.
    Pdeathsig = 2,
    /// The parent died before the child could arm pdeathsig.
    ParentGone = 3,
    /// `fcntl(F_DUPFD_CLOEXEC)` of a source fd.
    DupSource = 4,
    /// `dup2` onto a target fd.
    Dup2 = 5,
    /// Closing every other fd.
    CloseRange = 6,
    /// `setrlimit(RLIMIT_NOFILE)`.
    Rlimit = 7,
    /// `chdir` to the working directory.
    Chdir = 8,
    /// `execve`.
    Exec = 9,
    /// `setgroups` to the user's supplementary groups.
    Setgroups = 10,
    /// `setgid`.
    Setgid = 11,
    /// `setuid`.
    Setuid = 12,
}

impl ChildStep {
    fn from_raw(raw: i32) -> Option<ChildStep> {
        Some(match raw {
            1 => ChildStep::Setpgid,
            2 => ChildStep::Pdeathsig,
            3 => ChildStep::ParentGone,
            4 => ChildStep::DupSource,
            5 => ChildStep::Dup2,
            6 => ChildStep::CloseRange,
            7 => ChildStep::Rlimit,
            8 => ChildStep::Chdir,
            9 => ChildStep::Exec,
            10 => ChildStep::Setgroups,
            11 => ChildStep::Setgid,
            12 => ChildStep::Setuid,
            _ => return None,
        })
    }

    /// What the step does, as a fragment ("failed to …").
    pub fn describe(self) -> &'static str {
        match self {
            ChildStep::Setpgid => "create a process group",
            ChildStep::Pdeathsig => "set the parent-death signal",
            ChildStep::ParentGone => "start before the parent exited",
            ChildStep::DupSource => "duplicate a source fd",
            ChildStep::Dup2 => "place an fd at its number",
            ChildStep::CloseRange => "close inherited fds",
            ChildStep::Rlimit => "restore RLIMIT_NOFILE",
            ChildStep::Chdir => "change to the working directory",
            ChildStep::Exec => "execute",
            ChildStep::Setgroups => "set the supplementary groups for",
            ChildStep::Setgid => "set the group id for",
            ChildStep::Setuid => "set the user id for",
        }
    }
}

/// Why [`spawn`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnFailure {
    /// The parent could not set up or clone (mmap, clone).
    Parent(Errno),
    /// The child failed at `step`; it exited 127 and has been reaped.
    Child {
        /// The failing step.
        step: ChildStep,
        /// Its errno.
        errno: Errno,
    },
}

/// Everything the child needs, owned by the caller until [`spawn`] returns.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Absolute or relative path passed to `execve` (PATH already searched).
    pub program: CString,
    /// `argv`, `argv[0]` included.
    pub argv: Vec<CString>,
    /// The complete environment, `NAME=value` each.
    pub env: Vec<CString>,
    /// Append `LISTEN_PID=<the child's pid>`, formatted in the child.
    pub listen_pid: bool,
    /// Working directory.
    pub cwd: Option<CString>,
    /// `RLIMIT_NOFILE` to set in the child (soft, hard).
    pub nofile: Option<(u64, u64)>,
    /// Highest fd number + 1 to close in the fallback loop when
    /// `close_range(2)` is unavailable.
    pub fd_limit: i32,
    /// Identity to switch to before exec.
    pub credentials: Option<Credentials>,
    /// Signals to set back to `SIG_DFL` in the child, as a mask (bit
    /// `n - 1` for signal `n`, see [`non_default_dispositions`]); `None`
    /// resets every signal. Only a signal the caller ignores or handles
    /// needs it: a default disposition is inherited as it is.
    pub reset_signals: Option<u64>,
}

/// The signals whose disposition in this process is not `SIG_DFL`
/// (ignored or handled), as a mask: bit `n - 1` for signal `n`, 1 to 64.
///
/// A caller that installs no handler while it spawns reads this once and
/// passes it as [`ChildSpec::reset_signals`], sparing each child one
/// `rt_sigaction` per signal while the parent waits for it.
pub fn non_default_dispositions() -> u64 {
    let mut mask = 0u64;
    for sig in 1..=64 {
        // A kernel `struct sigaction`; the handler is its first word on
        // the architectures Linux orders as sa_handler, sa_flags, ...
        let mut old = [0u64; 4];
        // SAFETY: a query (no new action); `old` is large enough for the
        // kernel's struct sigaction with an 8-byte sigset; sigsetsize 8.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig as libc::c_long,
                std::ptr::null::<c_void>(),
                old.as_mut_ptr(),
                8usize,
            )
        };
        // An error (signal out of range) counts as "reset it", the safe side.
        if rc != 0 || old[0] != libc::SIG_DFL as u64 {
            mask |= 1 << (sig - 1);
        }
    }
    mask
}

/// A user identity for the child: set in the order supplementary groups,
/// gid, uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User id (`setuid`); `None` keeps ipc-run's.
    pub uid: Option<u32>,
    /// Group id (`setgid`).
    pub gid: u32,
    /// Supplementary groups (`setgroups`); `None` leaves them as they are.
    pub groups: Option<Vec<u32>>,
}

/// Prepared raw state the child reads (and, for the two report fields and
/// the pid digits, writes).
struct ChildArgs {
    program: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    listen_pid_digits: *mut u8,
    cwd: *const c_char,
    moves: *const (c_int, c_int),
    moves_len: usize,
    temps: *mut c_int,
    gaps: *const (c_int, c_int),
    gaps_len: usize,
    min_temp: c_int,
    fd_limit: c_int,
    nofile: libc::rlimit,
    has_nofile: bool,
    has_credentials: bool,
    set_groups: bool,
    groups: *const libc::gid_t,
    groups_len: usize,
    gid: libc::gid_t,
    set_uid: bool,
    uid: libc::uid_t,
    parent: libc::pid_t,
    empty_mask: libc::sigset_t,
    /// A kernel `struct sigaction` for SIG_DFL: all zero whatever the
    /// architecture's layout (handler 0 = SIG_DFL, no flags, empty mask).
    default_action: [u64; 4],
    /// Bit `n - 1` set: signal `n` goes back to SIG_DFL.
    reset_signals: u64,
    failed_step: AtomicI32,
    failed_errno: AtomicI32,
}

const STACK_SIZE: usize = 256 * 1024;
const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";
const PID_DIGITS: usize = 20;

/// Spawns `spec` with `fds` placed at their targets: each `(source, target)`
/// makes `source` (any fd, CLOEXEC or not) appear at `target` without
/// CLOEXEC. Targets must be distinct and include 0, 1 and 2; every other fd
/// is closed in the child. The child gets an empty signal mask, default
/// dispositions, its own process group and SIGKILL as parent-death signal.
///
/// The parent-death signal fires when the *calling thread* exits
/// (`prctl(2)`), so call this from a thread that lives as long as the run.
pub fn spawn(spec: &ChildSpec, fds: &[(BorrowedFd<'_>, i32)]) -> Result<Pid, SpawnFailure> {
    // --- everything the child reads, prepared before the clone ---
    let mut argv: Vec<*const c_char> = spec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut listen_pid_entry: Vec<u8> = Vec::new();
    let mut envp: Vec<*const c_char> = spec.env.iter().map(|e| e.as_ptr()).collect();
    let mut listen_pid_digits = std::ptr::null_mut();
    if spec.listen_pid {
        listen_pid_entry.extend_from_slice(LISTEN_PID_PREFIX);
        listen_pid_entry.resize(LISTEN_PID_PREFIX.len() + PID_DIGITS + 1, 0);
        envp.push(listen_pid_entry.as_ptr().cast());
        // The digits are written into the spare zeros (always NUL-terminated).
        listen_pid_digits = listen_pid_entry[LISTEN_PID_PREFIX.len()..].as_mut_ptr();
    }
    envp.push(std::ptr::null());

    let moves: Vec<(c_int, c_int)> = fds.iter().map(|(s, t)| (s.as_raw_fd(), *t)).collect();
    let mut temps: Vec<c_int> = vec![-1; moves.len()];
    let mut targets: Vec<c_int> = moves.iter().map(|m| m.1).filter(|t| *t >= 3).collect();
    targets.sort_unstable();
    targets.dedup();
    let max_target = moves.iter().map(|m| m.1).max().unwrap_or(2).max(2);
    // Ranges [lo, hi] of fds >= 3 to close: the gaps between targets and
    // everything above the highest.
    let mut gaps: Vec<(c_int, c_int)> = Vec::with_capacity(targets.len() + 1);
    let mut lo = 3;
    for &t in &targets {
        if t > lo {
            gaps.push((lo, t - 1));
        }
        lo = t + 1;
    }
    gaps.push((lo, c_int::MAX));

    let (has_nofile, nofile) = match spec.nofile {
        Some((soft, hard)) => (
            true,
            libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            },
        ),
        None => (
            false,
            libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            },
        ),
    };

    let groups: Vec<libc::gid_t> = spec
        .credentials
        .as_ref()
        .and_then(|c| c.groups.clone())
        .unwrap_or_default();

    // SAFETY: sigset_t and sigaction are plain data; all-zero is valid and
    // is then initialised by sigemptyset.
    let mut empty_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer refers to a live, writable sigset_t.
    unsafe { libc::sigemptyset(&mut empty_mask) };

    let mut args = ChildArgs {
        program: spec.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        listen_pid_digits,
        cwd: spec.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        moves: moves.as_ptr(),
        moves_len: moves.len(),
        temps: temps.as_mut_ptr(),
        gaps: gaps.as_ptr(),
        gaps_len: gaps.len(),
        min_temp: max_target + 1,
        fd_limit: spec.fd_limit,
        nofile,
        has_nofile,
        has_credentials: spec.credentials.is_some(),
        set_groups: spec
            .credentials
            .as_ref()
            .is_some_and(|c| c.groups.is_some()),
        groups: groups.as_ptr(),
        groups_len: groups.len(),
        gid: spec.credentials.as_ref().map_or(0, |c| c.gid),
        set_uid: spec.credentials.as_ref().is_some_and(|c| c.uid.is_some()),
        uid: spec.credentials.as_ref().and_then(|c| c.uid).unwrap_or(0),
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        empty_mask,
        default_action: [0; 4],
        reset_signals: spec.reset_signals.unwrap_or(u64::MAX),
        failed_step: AtomicI32::new(0),
        failed_errno: AtomicI32::new(0),
    };

    // One stack per spawning thread, kept between spawns: the child is done
    // with it when clone returns, and a fresh mapping per spawn cost an
    // mmap, an mprotect, a munmap and page faults on every launch.
    let stack = match SPARE_STACK.with(Cell::take) {
        Some(stack) => stack,
        None => ChildStack::new().map_err(SpawnFailure::Parent)?,
    };

    // Block every signal in this thread so no handler can run in the child
    // while it shares our memory; the child inherits the mask and clears it
    // just before execve.
    // SAFETY: sigset_t is plain data; all-zero is valid and then filled.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    let mut saved: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: the pointers refer to live sigset_t values of this frame.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
    }
    // SAFETY: `child_main` only touches `args` and the arrays it points to,
    // all alive until clone returns (CLONE_VFORK suspends this thread until
    // the child has exec'd or exited); the stack is a private mapping of
    // STACK_SIZE bytes whose top is passed; no other flags share state.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut args as *mut ChildArgs).cast::<c_void>(),
        )
    };
    let clone_errno = Errno::last();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
    SPARE_STACK.with(|spare| spare.set(Some(stack)));
    if pid < 0 {
        return Err(SpawnFailure::Parent(clone_errno));
    }
    let pid = Pid::from_raw(pid);
    let step = args.failed_step.load(Ordering::Acquire);
    if step != 0 {
        let errno = Errno::from_raw(args.failed_errno.load(Ordering::Acquire));
        // The child has exited (127); reap it so no zombie remains.
        let _ = nix::sys::wait::waitpid(pid, None);
        let step = ChildStep::from_raw(step).unwrap_or(ChildStep::Exec);
        return Err(SpawnFailure::Child { step, errno });
    }
    // Keep the prepared memory alive until here (the child is done with it).
    drop((argv, envp, listen_pid_entry, moves, temps, gaps, groups));
    Ok(pid)
}

thread_local! {
    /// The calling thread's child stack between spawns.
    static SPARE_STACK: Cell<Option<ChildStack>> = const { Cell::new(None) };
}

/// A private stack for the child with a guard page below it.
struct ChildStack {
    base: *mut c_void,
}

impl ChildStack {
    fn new() -> Result<ChildStack, Errno> {
        // SAFETY: an anonymous private mapping; no existing memory involved.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        // Guard page at the low end (the stack grows down): an overflow
        // faults instead of scribbling on the heap.
        // SAFETY: the first page lies inside the mapping made above.
        unsafe { libc::mprotect(base, page_size(), libc::PROT_NONE) };
        Ok(ChildStack { base })
    }

    fn top(&self) -> *mut c_void {
        // SAFETY: one past the end of the mapping, which is page aligned and
        // so 16-byte aligned as the ABI wants.
        unsafe { self.base.cast::<u8>().add(STACK_SIZE).cast() }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, no longer used.
        unsafe { libc::munmap(self.base, STACK_SIZE) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as usize } else { 4096 }
}

/// Records a failure and exits: the parent reads the report after clone.
fn fail(args: &ChildArgs, step: ChildStep, code: c_int) -> ! {
    // SAFETY: __errno_location returns this thread's errno slot (shared
    // with the suspended parent thread, which does not read it meanwhile).
    let errno = unsafe { *libc::__errno_location() };
    args.failed_errno.store(errno, Ordering::Release);
    args.failed_step.store(step as i32, Ordering::Release);
    // SAFETY: _exit ends the child at once, running no atexit handlers.
    unsafe { libc::_exit(code) }
}

/// The child: raw syscalls only (see the module comment for the rules).
extern "C" fn child_main(raw: *mut c_void) -> c_int {
    // SAFETY: `raw` is the `&mut ChildArgs` that spawn passed to clone and
    // keeps alive until the child execs or exits.
    let args: &ChildArgs = unsafe { &*raw.cast::<ChildArgs>() };

    // Default dispositions for every signal the parent ignores or handles
    // (`reset_signals`; all of them unless told): ignored ones would
    // survive exec, handled ones must not run here. The raw syscall,
    // because glibc's sigaction refuses its reserved signals 32 and 33,
    // and an ignored 32 would otherwise be inherited.
    let mut sig: libc::c_long = 1;
    while sig < 65 {
        if sig != libc::SIGKILL as libc::c_long
            && sig != libc::SIGSTOP as libc::c_long
            && args.reset_signals & (1u64 << (sig - 1)) != 0
        {
            // SAFETY: default_action is a zeroed kernel sigaction (SIG_DFL)
            // of at least the size the kernel reads; sigsetsize is 8.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    args.default_action.as_ptr(),
                    std::ptr::null_mut::<c_void>(),
                    8usize,
                )
            };
        }
        sig += 1;
    }

    // SAFETY: plain syscall on the calling process.
    if unsafe { libc::setpgid(0, 0) } != 0 {
        fail(args, ChildStep::Setpgid, 127);
    }
    // SAFETY: plain syscall with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } != 0 {
        fail(args, ChildStep::Pdeathsig, 127);
    }
    // SAFETY: plain syscall.
    if unsafe { libc::getppid() } != args.parent {
        fail(args, ChildStep::ParentGone, 1);
    }

    // Phase 1: every source above the highest target, CLOEXEC.
    let mut i = 0;
    while i < args.moves_len {
        // SAFETY: i < moves_len, the length of the array `moves` points to.
        let (source, _) = unsafe { *args.moves.add(i) };
        // SAFETY: plain syscall on an fd number.
        let temp = unsafe { libc::fcntl(source, libc::F_DUPFD_CLOEXEC, args.min_temp) };
        if temp < 0 {
            fail(args, ChildStep::DupSource, 127);
        }
        // SAFETY: `temps` has moves_len elements, owned by spawn for the
        // child's use only.
        unsafe { *args.temps.add(i) = temp };
        i += 1;
    }
    // Phase 2: each temporary onto its target (dup2 clears FD_CLOEXEC).
    let mut i = 0;
    while i < args.moves_len {
        // SAFETY: as above, i < moves_len for both arrays.
        let ((_, target), temp) = unsafe { (*args.moves.add(i), *args.temps.add(i)) };
        // SAFETY: plain syscall on fd numbers; temp != target by construction.
        if unsafe { libc::dup2(temp, target) } < 0 {
            fail(args, ChildStep::Dup2, 127);
        }
        i += 1;
    }
    // Everything else from 3 up, temporaries included.
    let mut g = 0;
    while g < args.gaps_len {
        // SAFETY: g < gaps_len, the length of the array `gaps` points to.
        let (lo, hi) = unsafe { *args.gaps.add(g) };
        // SAFETY: close_range takes plain integers (flags 0: close).
        let rc = unsafe { libc::syscall(libc::SYS_close_range, lo as u32, hi as u32, 0u32) };
        if rc != 0 {
            // SAFETY: reads this thread's errno (see `fail`).
            let errno = unsafe { *libc::__errno_location() };
            if errno != libc::ENOSYS && errno != libc::EINVAL {
                fail(args, ChildStep::CloseRange, 127);
            }
            let end = if hi < args.fd_limit {
                hi
            } else {
                args.fd_limit - 1
            };
            let mut fd = lo;
            while fd <= end {
                // SAFETY: closing an fd number in the child's own table.
                unsafe { libc::close(fd) };
                fd += 1;
            }
        }
        g += 1;
    }

    if args.has_nofile {
        // SAFETY: `nofile` is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &args.nofile) } != 0 {
            fail(args, ChildStep::Rlimit, 127);
        }
    }
    if args.has_credentials {
        // Supplementary groups, gid, uid: each later step drops the
        // privilege the earlier ones need. Raw syscalls, not the libc
        // wrappers: glibc's set*id broadcast the change to every thread it
        // knows of, under a lock, and this child shares the parent's memory
        // (and so its thread list) until it execs. The raw calls change the
        // calling thread, the child's only one.
        if args.set_groups {
            // SAFETY: `groups` points to `groups_len` gids owned by spawn.
            if unsafe { libc::syscall(libc::SYS_setgroups, args.groups_len, args.groups) } != 0 {
                fail(args, ChildStep::Setgroups, 127);
            }
        }
        // SAFETY: plain syscall with an integer argument.
        if unsafe { libc::syscall(libc::SYS_setgid, args.gid) } != 0 {
            fail(args, ChildStep::Setgid, 127);
        }
        if args.set_uid {
            // SAFETY: plain syscall with an integer argument.
            if unsafe { libc::syscall(libc::SYS_setuid, args.uid) } != 0 {
                fail(args, ChildStep::Setuid, 127);
            }
        }
        // A credential change clears the parent-death signal: arm it again,
        // and check once more that the parent has not died meanwhile.
        // SAFETY: plain syscall with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } != 0 {
            fail(args, ChildStep::Pdeathsig, 127);
        }
        // SAFETY: plain syscall.
        if unsafe { libc::getppid() } != args.parent {
            fail(args, ChildStep::ParentGone, 1);
        }
    }
    if !args.cwd.is_null() {
        // SAFETY: `cwd` is a NUL-terminated string owned by spawn.
        if unsafe { libc::chdir(args.cwd) } != 0 {
            fail(args, ChildStep::Chdir, 127);
        }
    }
    if !args.listen_pid_digits.is_null() {
        // SAFETY: plain syscall.
        let pid = unsafe { libc::getpid() };
        // SAFETY: the buffer has PID_DIGITS + 1 zeroed bytes reserved for
        // this child alone; at most 10 digits are written, then a NUL.
        unsafe { write_decimal(args.listen_pid_digits, pid as u32) };
    }

    // SAFETY: restores an empty mask (prepared by sigemptyset).
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &args.empty_mask, std::ptr::null_mut()) };
    // SAFETY: program, argv and envp are NUL-terminated strings and
    // null-terminated arrays prepared by spawn.
    unsafe { libc::execve(args.program, args.argv, args.envp) };
    fail(args, ChildStep::Exec, 127)
}

/// Writes `value` in decimal at `out`, NUL-terminated, without allocating.
///
/// # Safety
/// `out` must be valid for 11 bytes of writes.
unsafe fn write_decimal(out: *mut u8, mut value: u32) {
    let mut digits = [0u8; 10];
    let mut n = 0;
    loop {
        // n < 10 always: a u32 has at most 10 decimal digits.
        if let Some(slot) = digits.get_mut(n) {
            *slot = b'0' + (value % 10) as u8;
        }
        n += 1;
        value /= 10;
        if value == 0 || n == digits.len() {
            break;
        }
    }
    let mut i = 0;
    while i < n {
        // SAFETY: i < n <= 10 and the caller guarantees 11 writable bytes.
        unsafe { *out.add(i) = digits.get(n - 1 - i).copied().unwrap_or(b'0') };
        i += 1;
    }
    // SAFETY: n <= 10 < 11.
    unsafe { *out.add(n) = 0 };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_is_written_without_allocation() {
        for value in [0u32, 7, 10, 12345, u32::MAX] {
            let mut buf = [0xffu8; 11];
            // SAFETY: the buffer has 11 bytes.
            unsafe { write_decimal(buf.as_mut_ptr(), value) };
            let end = buf.iter().position(|b| *b == 0).unwrap();
            assert_eq!(std::str::from_utf8(&buf[..end]).unwrap(), value.to_string());
        }
    }
}
