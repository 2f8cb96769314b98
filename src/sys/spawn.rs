//! The child path: `clone(CLONE_VM | CLONE_VFORK)` (or `clone3` into the
//! run's cgroup) and everything up to `execve(2)`, without allocating or
//! taking a lock.
//!
//! # Why `clone(CLONE_VM | CLONE_VFORK)`
//!
//! This is what glibc's `posix_spawn` does, and the reason it costs the same
//! from a small parent and from a 1 GiB one: no page tables are copied. std's
//! `Command` falls back to `fork` as soon as a `pre_exec` hook is set, and a
//! hook is needed (fd shuffle, `LISTEN_PID`, pdeathsig). So ipc-run makes the
//! same call itself and does its own child steps.
//!
//! # A small fd table
//!
//! A plain `clone` copies the parent's whole fd table, which grows with the
//! topology (relay pipes, held channel ends): at 3,000 children that copy
//! made each spawn about twice as dear as from a small table. So where it
//! can, [`spawn`] adds `CLONE_FILES` and the child builds a small private
//! table itself: its sources go into low slots reserved at start-up, then
//! `close_range(CLOSE_RANGE_UNSHARE)` copies only the fds below them
//! ([`super::fd_slots`], which also says when the whole table is copied
//! as before). Until that unshare the child shares the table with every
//! thread of the parent, so it touches nothing there but the reserved
//! slots, and opens nothing (the fallback's cgroup file is opened after).
//!
//! # Born in the run's cgroup
//!
//! Given the cgroup's directory ([`ChildSpec::cgroup_dir`]), the clone is
//! `clone3(CLONE_INTO_CGROUP)` with the same flags ([`super::clone3`]): the
//! child starts in the cgroup and migrates nothing. The migration it
//! replaces, a write of `0` to `cgroup.procs` by the child, waited for an
//! RCU grace period in the kernel (10-12 ms after a quiet moment) while the
//! parent waited for the child. That write stays as the fallback where
//! `clone3` refuses (then for the rest of the process) or on other
//! architectures than x86_64.
//!
//! The child shares the parent's memory until it execs (the calling parent
//! thread is suspended meanwhile; other threads keep running but never touch
//! what is prepared here). Hence the rules for `child_main` and the step
//! functions it calls:
//! - everything it reads is prepared by [`spawn`] before the clone
//!   (`Prepared`, seen through `ChildArgs`): C strings, `argv`/`envp`
//!   arrays, the fd moves, a scratch array;
//! - it only calls async-signal-safe libc wrappers that are plain syscalls;
//!   no allocation, no lock, no panic path (no indexing, no overflow);
//! - it writes to shared memory in exactly three places, each reserved for
//!   it: the scratch array of fd temporaries, the `LISTEN_PID` digits and
//!   the failure report (two atomics); and, with a shared fd table, only to
//!   the reserved slots of it, which the spawning thread holds locked;
//! - all signals are blocked in the parent thread across the clone, so no
//!   handler of the parent ever runs on the child's stack or memory; the
//!   child resets every disposition to default before unblocking.
//!
//! A failure in the child is reported through the shared `ChildArgs`
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
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::unistd::Pid;

use super::clone3;
use super::fd_slots::{self, Slots};

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
    /// `close_range(CLOSE_RANGE_UNSHARE)`: a private fd table.
    Unshare = 13,
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
            13 => ChildStep::Unshare,
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
            ChildStep::Unshare => "unshare the fd table for",
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
    /// The cgroup directory (opened once, `O_PATH` is enough) the child is
    /// created in with `clone3(CLONE_INTO_CGROUP)` ([`super::clone3`]), so
    /// that all it starts is in that cgroup.
    pub cgroup_dir: Option<Arc<OwnedFd>>,
    /// The same cgroup's `cgroup.procs`, for where `clone3` cannot be used
    /// (or no `cgroup_dir` is given): the child then moves itself there
    /// (writing `0`) before anything but its signal reset and fd table; a
    /// failure is ignored (the cgroup is a best effort).
    pub cgroup_procs: Option<CString>,
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
/// the pid digits, writes). The pointers refer to the spec and to a
/// [`Prepared`], both borrowed for `'a`.
struct ChildArgs<'a> {
    program: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    listen_pid_digits: *mut u8,
    cwd: *const c_char,
    cgroup_procs: *const c_char,
    /// `(source, slot)`: what goes into the reserved slots of the shared
    /// table before it is unshared; empty when the table is copied whole.
    to_slots: *const (c_int, c_int),
    to_slots_len: usize,
    /// The first fd the private table leaves out ([`Slots::end`]).
    unshare_from: c_int,
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
    _prepared: PhantomData<&'a mut Prepared>,
}

/// The memory [`child_main`] reads, built in the parent before the clone
/// (allocating is fine there) and kept alive until the child has exec'd or
/// exited. [`ChildArgs`] holds raw pointers into these buffers; moving a
/// `Prepared` does not move the heap buffers they point to.
struct Prepared {
    /// `argv` as a null-terminated array of C strings.
    argv: Vec<*const c_char>,
    /// The environment as a null-terminated array, `LISTEN_PID=` included.
    envp: Vec<*const c_char>,
    /// `LISTEN_PID=` followed by [`PID_DIGITS`] + 1 zero bytes, when asked.
    listen_pid_entry: Vec<u8>,
    /// `(source, slot)` for a spawn through the reserved slots, else empty.
    to_slots: Vec<(c_int, c_int)>,
    /// [`Slots::end`], or 0 without slots.
    unshare_from: c_int,
    /// `(source, target)` fd numbers; with slots, each source is the slot
    /// it was moved to.
    moves: Vec<(c_int, c_int)>,
    /// One slot per move, written by the child in the first shuffle phase.
    temps: Vec<c_int>,
    /// Ranges `[lo, hi]` of fds to close in the child.
    gaps: Vec<(c_int, c_int)>,
    /// Supplementary groups for `setgroups`.
    groups: Vec<libc::gid_t>,
    /// The digits of `listen_pid_entry`, or null without it.
    listen_pid_digits: *mut u8,
}

impl Prepared {
    fn new(spec: &ChildSpec, fds: &[(BorrowedFd<'_>, i32)], slots: Option<&Slots>) -> Prepared {
        let mut moves: Vec<(c_int, c_int)> = fds.iter().map(|(s, t)| (s.as_raw_fd(), *t)).collect();
        let mut to_slots = Vec::new();
        if let Some(slots) = slots {
            for (m, slot) in moves.iter_mut().zip(slots.numbers()) {
                to_slots.push((m.0, slot));
                m.0 = slot;
            }
        }
        let mut prepared = Prepared {
            to_slots,
            unshare_from: slots.map_or(0, Slots::end),
            argv: null_terminated(&spec.argv),
            envp: null_terminated(&spec.env),
            listen_pid_entry: Vec::new(),
            temps: vec![-1; moves.len()],
            gaps: close_gaps(&moves),
            moves,
            groups: spec
                .credentials
                .as_ref()
                .and_then(|c| c.groups.clone())
                .unwrap_or_default(),
            listen_pid_digits: std::ptr::null_mut(),
        };
        if spec.listen_pid {
            prepared.reserve_listen_pid();
        }
        prepared
    }

    /// Appends a `LISTEN_PID=` entry whose digits are still zeros: the child
    /// writes its own pid there (it is NUL-terminated whatever it writes).
    fn reserve_listen_pid(&mut self) {
        self.listen_pid_entry.extend_from_slice(LISTEN_PID_PREFIX);
        self.listen_pid_entry
            .resize(LISTEN_PID_PREFIX.len() + PID_DIGITS + 1, 0);
        // One pointer for both uses (Vec::as_mut_ptr makes no reference,
        // so neither use invalidates the other); the buffer is not resized
        // after this.
        let entry = self.listen_pid_entry.as_mut_ptr();
        let terminator = self.envp.pop();
        self.envp.push(entry.cast_const().cast());
        self.envp.extend(terminator);
        self.listen_pid_digits = entry.wrapping_add(LISTEN_PID_PREFIX.len());
    }

    /// The lowest fd number the first shuffle phase may use: above every
    /// target, so no temporary lands on a target not yet placed.
    fn min_temp(&self) -> c_int {
        self.moves.iter().map(|m| m.1).max().unwrap_or(2).max(2) + 1
    }
}

/// `strings` as a null-terminated array of pointers into them.
fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    let mut array: Vec<*const c_char> = Vec::with_capacity(strings.len() + 1);
    array.extend(strings.iter().map(|s| s.as_ptr()));
    array.push(std::ptr::null());
    array
}

/// Ranges `[lo, hi]` of fds >= 3 to close in the child: the gaps between
/// the targets of `moves` and everything above the highest.
fn close_gaps(moves: &[(c_int, c_int)]) -> Vec<(c_int, c_int)> {
    let mut targets: Vec<c_int> = moves.iter().map(|m| m.1).filter(|t| *t >= 3).collect();
    targets.sort_unstable();
    targets.dedup();
    let mut gaps: Vec<(c_int, c_int)> = Vec::with_capacity(targets.len() + 1);
    let mut lo = 3;
    for &t in &targets {
        if t > lo {
            gaps.push((lo, t - 1));
        }
        lo = t + 1;
    }
    gaps.push((lo, c_int::MAX));
    gaps
}

impl<'a> ChildArgs<'a> {
    /// The child's view of `spec` and `prepared`; the borrows keep every
    /// buffer the pointers refer to alive as long as this is.
    fn new(spec: &'a ChildSpec, prepared: &'a mut Prepared) -> ChildArgs<'a> {
        let credentials = spec.credentials.as_ref();
        let nofile = spec.nofile.map(|(soft, hard)| libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        });
        ChildArgs {
            program: spec.program.as_ptr(),
            argv: prepared.argv.as_ptr(),
            envp: prepared.envp.as_ptr(),
            listen_pid_digits: prepared.listen_pid_digits,
            cwd: spec.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            cgroup_procs: spec
                .cgroup_procs
                .as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr()),
            to_slots: prepared.to_slots.as_ptr(),
            to_slots_len: prepared.to_slots.len(),
            unshare_from: prepared.unshare_from,
            min_temp: prepared.min_temp(),
            moves: prepared.moves.as_ptr(),
            moves_len: prepared.moves.len(),
            temps: prepared.temps.as_mut_ptr(),
            gaps: prepared.gaps.as_ptr(),
            gaps_len: prepared.gaps.len(),
            fd_limit: spec.fd_limit,
            has_nofile: nofile.is_some(),
            nofile: nofile.unwrap_or(libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            }),
            has_credentials: credentials.is_some(),
            set_groups: credentials.is_some_and(|c| c.groups.is_some()),
            groups: prepared.groups.as_ptr(),
            groups_len: prepared.groups.len(),
            gid: credentials.map_or(0, |c| c.gid),
            set_uid: credentials.is_some_and(|c| c.uid.is_some()),
            uid: credentials.and_then(|c| c.uid).unwrap_or(0),
            // SAFETY: getpid has no preconditions.
            parent: unsafe { libc::getpid() },
            empty_mask: empty_sigset(),
            default_action: [0; 4],
            reset_signals: spec.reset_signals.unwrap_or(u64::MAX),
            failed_step: AtomicI32::new(0),
            failed_errno: AtomicI32::new(0),
            _prepared: PhantomData,
        }
    }

    /// The failure the child reported before exiting, if any.
    fn failure(&self) -> Option<(ChildStep, Errno)> {
        let step = self.failed_step.load(Ordering::Acquire);
        if step == 0 {
            return None;
        }
        let errno = Errno::from_raw(self.failed_errno.load(Ordering::Acquire));
        Some((ChildStep::from_raw(step).unwrap_or(ChildStep::Exec), errno))
    }
}

/// An initialised empty signal set.
fn empty_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; all-zero is valid and is then
    // initialised by sigemptyset.
    let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer refers to a live, writable sigset_t.
    unsafe { libc::sigemptyset(&mut mask) };
    mask
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
///
/// With the slots of [`fd_slots`] reserved and at most
/// [`fd_slots::SLOT_COUNT`] fds, the child shares the parent's fd table and
/// makes itself a small private one (see there); otherwise, or where the
/// kernel lacks `CLOSE_RANGE_UNSHARE` (then for good), the clone copies the
/// whole table.
pub fn spawn(spec: &ChildSpec, fds: &[(BorrowedFd<'_>, i32)]) -> Result<Pid, SpawnFailure> {
    let slots = fd_slots::lock().filter(|s| fds.len() <= s.len());
    let Some(slots) = slots else {
        return spawn_once(spec, fds, None);
    };
    match spawn_once(spec, fds, Some(&slots)) {
        Err(SpawnFailure::Child {
            step: ChildStep::Unshare,
            errno: Errno::EINVAL | Errno::ENOSYS,
        }) => {
            // A kernel before 5.9: no flags to close_range. Once is enough
            // to know; the child has been reaped and nothing else ran.
            fd_slots::disable();
            drop(slots);
            spawn_once(spec, fds, None)
        }
        result => result,
    }
}

/// One clone: through `slots` (held by the caller) when given.
fn spawn_once(
    spec: &ChildSpec,
    fds: &[(BorrowedFd<'_>, i32)],
    slots: Option<&Slots>,
) -> Result<Pid, SpawnFailure> {
    // Everything the child reads, prepared before the clone.
    let mut prepared = Prepared::new(spec, fds, slots);
    let mut args = ChildArgs::new(spec, &mut prepared);
    let cgroup_dir = spec.cgroup_dir.as_ref().map(|fd| fd.as_raw_fd());
    let cloned = clone_child(&mut args, slots.is_some(), cgroup_dir);
    if let Some(slots) = slots {
        // The child has exec'd or exited: its table is its own (or gone),
        // and the slots of ours still hold what it put there.
        slots.restore(fds.len());
    }
    let pid = cloned.map_err(SpawnFailure::Parent)?;
    if let Some((step, errno)) = args.failure() {
        // The child has exited (127); reap it so no zombie remains.
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(SpawnFailure::Child { step, errno });
    }
    // `prepared` lives until here, after the child is done with it.
    drop(prepared);
    Ok(pid)
}

/// Clones a child that runs [`child_main`] on `args` and returns once it has
/// exec'd or exited (`CLONE_VFORK`), with every signal blocked in this
/// thread meanwhile.
/// `share_table` adds `CLONE_FILES`: the child starts on this process's
/// fd table and unshares it itself. `cgroup_dir`: the cgroup to create the
/// child in ([`clone_in`]).
fn clone_child(
    args: &mut ChildArgs<'_>,
    share_table: bool,
    cgroup_dir: Option<RawFd>,
) -> Result<Pid, Errno> {
    // One stack per spawning thread, kept between spawns: the child is done
    // with it when clone returns, and a fresh mapping per spawn cost an
    // mmap, an mprotect, a munmap and page faults on every launch.
    let stack = match SPARE_STACK.with(Cell::take) {
        Some(stack) => stack,
        None => ChildStack::new()?,
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
    let cloned = clone_in(args, share_table, cgroup_dir, &stack);
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
    SPARE_STACK.with(|spare| spare.set(Some(stack)));
    cloned.map(Pid::from_raw)
}

/// The clone itself, signals blocked: into `cgroup_dir` with `clone3`
/// where it can ([`clone3::usable`]), the child then writing no
/// `cgroup.procs`; else, or once `clone3` refused (then for good), with
/// `clone`, the child moving itself into `args.cgroup_procs`.
fn clone_in(
    args: &mut ChildArgs<'_>,
    share_table: bool,
    cgroup_dir: Option<RawFd>,
    stack: &ChildStack,
) -> Result<libc::pid_t, Errno> {
    let flags =
        libc::CLONE_VM | libc::CLONE_VFORK | if share_table { libc::CLONE_FILES } else { 0 };
    if let Some(dir) = cgroup_dir.filter(|_| clone3::usable()) {
        // Born in the cgroup: the child must not migrate itself as well.
        let procs = std::mem::replace(&mut args.cgroup_procs, std::ptr::null());
        // SAFETY: as for `clone` below (same flags, entry, argument and
        // stack, given as its base and size); `dir` is an open fd the
        // spec's Arc keeps open for the whole spawn.
        let cloned = unsafe {
            clone3::clone_into_cgroup(
                flags as u64,
                dir,
                stack.base,
                STACK_SIZE,
                child_main,
                (args as *mut ChildArgs<'_>).cast::<c_void>(),
            )
        };
        match cloned {
            Err(errno) if clone3::is_refusal(errno) => {
                // No child was made: try again the old way.
                clone3::disable(errno);
                args.cgroup_procs = procs;
            }
            cloned => return cloned,
        }
    }
    // SAFETY: `child_main` only touches `args` and the buffers it points
    // to, which the borrow in `ChildArgs` keeps alive past this call (and
    // CLONE_VFORK suspends this thread until the child has exec'd or
    // exited); the stack is a private mapping of STACK_SIZE bytes whose top
    // is passed; CLONE_FILES shares the fd table, which the child only
    // changes in the reserved slots (held by our caller) before it
    // unshares it.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            flags | libc::SIGCHLD,
            (args as *mut ChildArgs<'_>).cast::<c_void>(),
        )
    };
    if pid < 0 {
        return Err(Errno::last());
    }
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
fn fail(args: &ChildArgs<'_>, step: ChildStep, code: c_int) -> ! {
    // SAFETY: __errno_location returns this thread's errno slot (shared
    // with the suspended parent thread, which does not read it meanwhile).
    let errno = unsafe { *libc::__errno_location() };
    args.failed_errno.store(errno, Ordering::Release);
    args.failed_step.store(step as i32, Ordering::Release);
    // SAFETY: _exit ends the child at once, running no atexit handlers.
    unsafe { libc::_exit(code) }
}

// The child path, split into one function per step. Each step follows the
// rules of the module comment: it reads only `ChildArgs` and what it
// points to, makes plain syscalls, and neither allocates nor locks. A call
// between them only uses the child's own stack (a private mapping), so the
// split changes nothing the rules care about; `#[inline]` leaves the
// compiler free to fold the steps back into `child_main`.

/// The child: raw syscalls only (see the module comment for the rules).
extern "C" fn child_main(raw: *mut c_void) -> c_int {
    // SAFETY: `raw` is the `&mut ChildArgs` that spawn passed to clone and
    // keeps alive until the child execs or exits.
    let args: &ChildArgs<'_> = unsafe { &*raw.cast::<ChildArgs<'_>>() };

    reset_dispositions(args);
    if args.to_slots_len > 0 {
        // First, so that nothing below opens an fd in the shared table.
        private_table(args);
    }
    if !args.cgroup_procs.is_null() {
        // SAFETY: `cgroup_procs` is a NUL-terminated string owned by spawn;
        // open, write and close are plain syscalls on our own buffers.
        unsafe {
            let fd = libc::open(args.cgroup_procs, libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
            }
        }
    }
    // SAFETY: plain syscall on the calling process.
    if unsafe { libc::setpgid(0, 0) } != 0 {
        fail(args, ChildStep::Setpgid, 127);
    }
    arm_parent_death(args);
    shuffle_fds(args);
    close_other_fds(args);
    if args.has_nofile {
        // SAFETY: `nofile` is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &args.nofile) } != 0 {
            fail(args, ChildStep::Rlimit, 127);
        }
    }
    if args.has_credentials {
        switch_identity(args);
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

/// Default dispositions for every signal the parent ignores or handles
/// (`reset_signals`; all of them unless told): ignored ones would survive
/// exec, handled ones must not run here. The raw syscall, because glibc's
/// sigaction refuses its reserved signals 32 and 33, and an ignored 32
/// would otherwise be inherited.
#[inline]
fn reset_dispositions(args: &ChildArgs<'_>) {
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
}

/// Moves every source into its reserved slot of the shared table (CLOEXEC,
/// like every fd of ipc-run), then unshares the table keeping only the fds
/// below [`Slots::end`]: the kernel copies those, not the whole table.
/// From here the child's fd changes are its own; the shuffle then places
/// the slots at their targets.
#[inline]
fn private_table(args: &ChildArgs<'_>) {
    let mut i = 0;
    while i < args.to_slots_len {
        // SAFETY: i < to_slots_len, the length of the array `to_slots`
        // points to.
        let (source, slot) = unsafe { *args.to_slots.add(i) };
        // SAFETY: plain syscall on fd numbers; the slot is reserved for
        // this spawn by the lock the parent holds.
        if unsafe { libc::dup3(source, slot, libc::O_CLOEXEC) } < 0 {
            fail(args, ChildStep::DupSource, 127);
        }
        i += 1;
    }
    // SAFETY: close_range takes plain integers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            args.unshare_from as u32,
            u32::MAX,
            libc::CLOSE_RANGE_UNSHARE,
        )
    };
    if rc != 0 {
        fail(args, ChildStep::Unshare, 127);
    }
}

/// Arms SIGKILL as the parent-death signal, then checks that the parent
/// has not already died (the signal would never come).
#[inline]
fn arm_parent_death(args: &ChildArgs<'_>) {
    // SAFETY: plain syscall with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } != 0 {
        fail(args, ChildStep::Pdeathsig, 127);
    }
    // SAFETY: plain syscall.
    if unsafe { libc::getppid() } != args.parent {
        fail(args, ChildStep::ParentGone, 1);
    }
}

/// Places every source at its target in two phases (module comment).
#[inline]
fn shuffle_fds(args: &ChildArgs<'_>) {
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
}

/// Closes everything from 3 up that is not a target, temporaries included:
/// `close_range(2)` per gap, a loop up to the fd limit where it is missing.
#[inline]
fn close_other_fds(args: &ChildArgs<'_>) {
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
}

/// Supplementary groups, gid, uid: each later step drops the privilege the
/// earlier ones need. Raw syscalls, not the libc wrappers: glibc's set*id
/// broadcast the change to every thread it knows of, under a lock, and this
/// child shares the parent's memory (and so its thread list) until it
/// execs. The raw calls change the calling thread, the child's only one.
#[inline]
fn switch_identity(args: &ChildArgs<'_>) {
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
    arm_parent_death(args);
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
