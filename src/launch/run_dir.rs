//! The private run directory, its id, journal and lock.
//!
//! Layout: `$XDG_RUNTIME_DIR/ipc-run/<run-id>/` when `XDG_RUNTIME_DIR` is
//! set, else `/tmp/ipc-run-<uid>/<run-id>/`. The parent (`ipc-run` or
//! `ipc-run-<uid>`) is created 0700 when missing and refused when it is a
//! symlink, owned by another uid, or group/world writable. The run
//! directory is made with `mkdirat(…, 0700)` (EEXIST is an error: never
//! reused), then `fchmod` to exactly 0700 whatever the umask. Inside:
//!
//! - `lock`: made first, and *born locked*: an unnamed file (`O_TMPFILE`, or
//!   a temporary name where the file system has none) is `flock`ed
//!   (exclusive), given the owner line `owner pid=<pid> start=<starttime>`
//!   (`starttime` from `/proc/<pid>/stat`, so a reused pid is told apart;
//!   also `pidns=<inode>`, as pids mean nothing in another pid namespace),
//!   and only then linked as `lock`. So `ipc-run clean` never sees a `lock`
//!   that a live run has not locked yet, and tells a live run (lock held,
//!   owner alive) from a dead one (lock free, or held only by a leftover
//!   child of a dead owner, e.g. one between `clone` and `exec`);
//! - `journal`: append-only, one line per named object, synced before the
//!   object is created (a System V object: its key before, its id after;
//!   see [`super::objects`]).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fchmod, fstat, mkdirat};
use nix::unistd::{Uid, UnlinkatFlags, unlinkat};

use super::LaunchError;
use super::objects::ObjectRecord;
use crate::sys::fd::{fill_random, try_lock_exclusive};
use crate::sys::ipc::SysvKind;

/// Name of the lock file in a run directory.
pub const LOCK_FILE: &str = "lock";
/// Name of the journal in a run directory.
pub const JOURNAL_FILE: &str = "journal";

/// A fresh run id: 16 lowercase hex digits from 64 random bits.
pub fn new_run_id() -> Result<String, LaunchError> {
    let mut bytes = [0u8; 8];
    fill_random(&mut bytes).map_err(|e| LaunchError::sys("read random bytes for the run id", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `name` looks like a run id.
pub fn is_run_id(name: &str) -> bool {
    name.len() == 16
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The directory run directories go in, by default: `$XDG_RUNTIME_DIR/ipc-run`
/// or `/tmp/ipc-run-<uid>`.
pub fn default_root() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() && Path::new(&dir).is_absolute() => {
            Path::new(&dir).join("ipc-run")
        }
        _ => fallback_root(),
    }
}

/// `/tmp/ipc-run-<uid>`.
pub fn fallback_root() -> PathBuf {
    PathBuf::from(format!("/tmp/ipc-run-{}", Uid::effective()))
}

/// Every root `ipc-run clean` looks in: the XDG one (if set) and the
/// fallback.
pub fn all_roots() -> Vec<PathBuf> {
    let mut roots = vec![default_root()];
    let fallback = fallback_root();
    if !roots.contains(&fallback) {
        roots.push(fallback);
    }
    roots
}

fn run_dir_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(Errno) -> LaunchError + 'a {
    move |errno| LaunchError::RunDir {
        action,
        path: path.to_owned(),
        errno,
    }
}

/// Opens a directory without following a symlink at its last component.
pub(crate) fn open_dir_nofollow(at: Option<BorrowedFd<'_>>, path: &Path) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match at {
        Some(dir) => openat(dir, path, flags, Mode::empty()),
        None => nix::fcntl::open(path, flags, Mode::empty()),
    }
}

/// Checks that an open directory is ours and not writable by others.
pub(crate) fn check_private(dir: &OwnedFd, path: &Path) -> Result<(), LaunchError> {
    let st = fstat(dir).map_err(run_dir_error("inspect", path))?;
    let unsafe_dir = |reason: String| LaunchError::UnsafeDirectory {
        path: path.to_owned(),
        reason,
    };
    if st.st_uid != Uid::effective().as_raw() {
        return Err(unsafe_dir(format!(
            "it is owned by uid {}, not {}",
            st.st_uid,
            Uid::effective()
        )));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "it is group or world writable (mode {:o})",
            st.st_mode & 0o7777
        )));
    }
    Ok(())
}

/// Creates (0700) or opens the root that holds run directories, refusing a
/// symlink, a foreign owner or group/world write permission.
pub(crate) fn ensure_root(root: &Path) -> Result<OwnedFd, LaunchError> {
    if let Some(parent) = root.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::create_dir_all(parent).map_err(|e| LaunchError::RunDir {
                action: "create",
                path: parent.to_owned(),
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        }
    }
    match nix::unistd::mkdir(root, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(errno) => return Err(run_dir_error("create", root)(errno)),
    }
    let dir = open_dir_nofollow(None, root).map_err(|errno| match errno {
        Errno::ELOOP | Errno::ENOTDIR => LaunchError::UnsafeDirectory {
            path: root.to_owned(),
            reason: "it is a symlink or not a directory".into(),
        },
        errno => run_dir_error("open", root)(errno),
    })?;
    check_private(&dir, root)?;
    Ok(dir)
}

/// A run directory owned by this process: removed by [`RunDir::remove`].
#[derive(Debug)]
pub struct RunDir {
    /// The run id.
    pub id: String,
    /// Its absolute path.
    pub path: PathBuf,
    root: OwnedFd,
    dir: OwnedFd,
    lock: OwnedFd,
    journal: File,
    /// The run's cgroup, when one could be made.
    cgroup: Option<PathBuf>,
    /// Its directory, opened once (`O_PATH`): children are created in it
    /// (`clone3(CLONE_INTO_CGROUP)`, see [`crate::sys::spawn`]).
    cgroup_dir: Option<std::sync::Arc<OwnedFd>>,
    /// Its `cgroup.procs`, for children to move themselves into where
    /// `clone3` cannot be used.
    cgroup_procs: Option<std::ffi::CString>,
    /// System V objects journaled so far (debug builds: crash injection).
    #[cfg(debug_assertions)]
    sysv_created: usize,
}

impl RunDir {
    /// Creates a fresh run directory under `root` (see the module docs).
    pub fn create(root: &Path) -> Result<RunDir, LaunchError> {
        let root_fd = ensure_root(root)?;
        super::clean::kill_leftovers(&root_fd, root);
        let id = new_run_id()?;
        let path = root.join(&id);
        match mkdirat(&root_fd, id.as_str(), Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                return Err(LaunchError::Exists {
                    kind: "run directory",
                    name: path.display().to_string(),
                });
            }
            Err(errno) => return Err(run_dir_error("create the run directory", &path)(errno)),
        }
        // From here on a failure removes what was made.
        let remove_dir = |root_fd: &OwnedFd| {
            let _ = unlinkat(root_fd, id.as_str(), UnlinkatFlags::RemoveDir);
        };
        let opened = (|| {
            let dir = open_dir_nofollow(Some(root_fd.as_fd()), Path::new(&id))
                .map_err(run_dir_error("open the run directory", &path))?;
            fchmod(&dir, Mode::from_bits_truncate(0o700))
                .map_err(run_dir_error("set the mode of", &path))?;
            let lock = create_locked(&dir, &path)?;
            let journal = create_file(&dir, JOURNAL_FILE, OFlag::O_WRONLY | OFlag::O_APPEND)
                .map_err(run_dir_error("create the journal in", &path))?;
            Ok((dir, lock, File::from(journal)))
        })();
        match opened {
            Ok((dir, lock, journal)) => {
                tracing::debug!(run_id = %id, run_dir = %path.display(), "run directory created");
                let mut run_dir = RunDir {
                    id,
                    path,
                    root: root_fd,
                    dir,
                    lock,
                    journal,
                    cgroup: None,
                    cgroup_dir: None,
                    cgroup_procs: None,
                    #[cfg(debug_assertions)]
                    sysv_created: 0,
                };
                run_dir.make_cgroup();
                Ok(run_dir)
            }
            Err(e) => {
                if let Ok(dir) = open_dir_nofollow(Some(root_fd.as_fd()), Path::new(&id)) {
                    for name in [JOURNAL_FILE, LOCK_FILE] {
                        let _ = unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir);
                    }
                }
                remove_dir(&root_fd);
                Err(e)
            }
        }
    }

    /// The run directory's fd (for `*at` calls).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// The lock's fd (held for the whole run).
    pub fn lock_fd(&self) -> BorrowedFd<'_> {
        self.lock.as_fd()
    }

    /// Appends `record` to the journal and syncs it.
    pub fn journal(&mut self, record: &ObjectRecord) -> Result<(), LaunchError> {
        tracing::debug!(run_id = %self.id, "journal: {}", record.journal_line());
        self.write_line(record)
    }

    /// Journals the intent `record` (a System V key, before the object
    /// exists) and syncs it.
    pub fn journal_intent(&mut self, record: &ObjectRecord) -> Result<(), LaunchError> {
        tracing::debug!(run_id = %self.id, "journal intent: {}", record.journal_line());
        self.write_line(record)
    }

    /// Journals a System V object just created under a journaled key.
    ///
    /// Debug builds only: with `IPC_RUN_CRASH_BEFORE_SYSV_ID=k` in the
    /// environment, ipc-run SIGKILLs itself before journaling the id of its
    /// `k`-th System V object, the window a crash would leak an object in
    /// if its key had not been journaled first.
    pub fn journal_created(&mut self, record: &ObjectRecord) -> Result<(), LaunchError> {
        #[cfg(debug_assertions)]
        {
            self.sysv_created += 1;
            if std::env::var("IPC_RUN_CRASH_BEFORE_SYSV_ID")
                .is_ok_and(|k| k.parse() == Ok(self.sysv_created))
            {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            }
        }
        self.journal(record)
    }

    fn write_line(&mut self, record: &ObjectRecord) -> Result<(), LaunchError> {
        let mut line = record.journal_line();
        line.push('\n');
        let result = self
            .journal
            .write_all(line.as_bytes())
            .and_then(|()| self.journal.sync_data());
        result.map_err(|e| LaunchError::RunDir {
            action: "write the journal in",
            path: self.path.clone(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })
    }

    /// Journals, then makes, the run's cgroup where one can be made (see
    /// [`super::cgroup`]); the run goes without otherwise.
    fn make_cgroup(&mut self) {
        let Some(path) = super::cgroup::path_for(&self.id) else {
            return;
        };
        let record = ObjectRecord::Cgroup(path.display().to_string());
        tracing::debug!(run_id = %self.id, "journal cgroup: {}", record.journal_line());
        if self.write_line(&record).is_ok() && super::cgroup::create(&path) {
            self.cgroup_dir = super::cgroup::open_dir(&path).map(std::sync::Arc::new);
            self.cgroup_procs =
                std::ffi::CString::new(path.join("cgroup.procs").as_os_str().as_bytes()).ok();
            self.cgroup = Some(path);
        }
    }

    /// The run cgroup's directory, if the run has a cgroup: each child is
    /// created there (see [`super::cgroup`]).
    pub(crate) fn cgroup_dir(&self) -> Option<&std::sync::Arc<OwnedFd>> {
        self.cgroup_dir.as_ref()
    }

    /// The run cgroup's `cgroup.procs`, if the run has a cgroup: where a
    /// child cannot be created in it, it moves itself there before it
    /// execs (see [`super::cgroup`]).
    pub(crate) fn cgroup_procs(&self) -> Option<&std::ffi::CString> {
        self.cgroup_procs.as_ref()
    }

    /// Tracks a child just spawned, the leader of process group `pid` (in
    /// the run's cgroup, if any, before exec): journals
    /// it with its start time, so that `clean` and the next run can kill what it leaves
    /// if ipc-run is SIGKILLed. The line is not synced (a power loss ends
    /// the processes too); a failure is logged, as the child already runs.
    pub fn track_process(&mut self, pid: nix::unistd::Pid) {
        // Until ipc-run reaps it the child is at least a zombie, whose
        // start time /proc still shows.
        let Some(start) = process_start_time(pid.as_raw()) else {
            return;
        };
        let record = ObjectRecord::ProcessGroup {
            pgid: pid.as_raw(),
            start,
        };
        let mut line = record.journal_line();
        line.push('\n');
        if let Err(e) = self.journal.write_all(line.as_bytes()) {
            tracing::warn!(run_id = %self.id, "cannot journal process {pid}: {e}");
        }
    }

    /// The file name of `path` when it is directly inside the run directory.
    pub fn file_name_in(&self, path: &str) -> Option<String> {
        let path = Path::new(path);
        let name = path.file_name()?;
        (path.parent() == Some(self.path.as_path()) && !name.as_bytes().contains(&b'\n'))
            .then(|| name.to_string_lossy().into_owned())
    }

    /// Removes the journal, the lock and the directory; returns the paths
    /// of anything left inside (the directory is then kept).
    pub fn remove(self) -> Vec<String> {
        if let Some(cgroup) = &self.cgroup {
            super::cgroup::remove_if_empty(cgroup);
        }
        if let Err(e) = super::clean::remove_mpi_session(&self.path) {
            tracing::warn!(run_id = %self.id, "cannot remove the mpi session directory: {e}");
        }
        for name in [JOURNAL_FILE, LOCK_FILE] {
            let _ = unlinkat(&self.dir, name, UnlinkatFlags::NoRemoveDir);
        }
        let leftovers = list_dir(&self.path);
        if leftovers.is_empty() {
            let _ = unlinkat(&self.root, self.id.as_str(), UnlinkatFlags::RemoveDir);
        }
        leftovers
    }
}

/// The intent to create a System V object of `kind` with `mode`, under a
/// fresh random key (never `IPC_PRIVATE`), stamped with the time now: the
/// key and its record.
pub fn sysv_intent(kind: SysvKind, mode: u32) -> Result<(i32, ObjectRecord), LaunchError> {
    let key = loop {
        let mut bytes = [0u8; 4];
        fill_random(&mut bytes)
            .map_err(|e| LaunchError::sys("read random bytes for a System V key", e))?;
        let key = i32::from_ne_bytes(bytes);
        if key != libc::IPC_PRIVATE {
            break key;
        }
    };
    // The coarse clock: the kernel stamps an object's ctime with the
    // seconds of the same tick-updated time, which lags the precise clock
    // by up to a tick; read precisely, `since` could be a second ahead of
    // the ctime of an object created right after it, at a second's turn.
    let since = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME_COARSE)
        .map_or(0, |t| t.tv_sec());
    let record = ObjectRecord::SysvKey {
        kind,
        key,
        mode,
        since,
    };
    Ok((key, record))
}

/// The owner line of a lock file: this process and its start time.
pub(crate) fn owner_line() -> String {
    let pid = std::process::id();
    let start = process_start_time(pid as i32).unwrap_or(0);
    match own_pid_namespace() {
        Some(ns) => format!("owner pid={pid} start={start} pidns={ns}\n"),
        None => format!("owner pid={pid} start={start}\n"),
    }
}

/// The inode of this process's pid namespace (`/proc/self/ns/pid`): pids
/// and start times recorded in another namespace mean nothing here.
fn own_pid_namespace() -> Option<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    link.to_str()?
        .strip_prefix("pid:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// A numeric field `key=` of an owner line.
fn owner_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .next()?
        .strip_prefix("owner ")?
        .split(' ')
        .find_map(|kv| kv.strip_prefix(key))?
        .parse::<u64>()
        .ok()
}

/// Whether the owner line `text` was written in this pid namespace, so
/// that the pids the run journaled name the same processes here.
pub(crate) fn same_pid_namespace(text: &str) -> bool {
    own_pid_namespace().is_some_and(|ns| owner_field(text, "pidns=") == Some(ns))
}

/// Makes `dir/lock`, locked before it has a name (module docs).
fn create_locked(dir: &OwnedFd, path: &Path) -> Result<OwnedFd, LaunchError> {
    let lock_it = |fd: &OwnedFd| -> Result<(), LaunchError> {
        fchmod(fd, Mode::from_bits_truncate(0o600))
            .map_err(run_dir_error("set the mode of the lock in", path))?;
        match try_lock_exclusive(fd.as_fd()) {
            Ok(true) => {}
            Ok(false) => return Err(run_dir_error("lock", path)(Errno::EWOULDBLOCK)),
            Err(errno) => return Err(run_dir_error("lock", path)(errno)),
        }
        let mut file = File::from(fd.try_clone().map_err(|e| io_error("lock", path, &e))?);
        file.write_all(owner_line().as_bytes())
            .map_err(|e| io_error("write the lock in", path, &e))
    };
    match openat(
        dir,
        ".",
        OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    ) {
        Ok(fd) => {
            lock_it(&fd)?;
            let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
            nix::unistd::linkat(
                dir,
                proc_path.as_str(),
                dir,
                LOCK_FILE,
                nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
            )
            .map_err(run_dir_error("create the lock in", path))?;
            Ok(fd)
        }
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL | Errno::ENOENT) => {
            // No O_TMPFILE here: a temporary name, locked, then linked.
            const TEMPORARY: &str = "lock.new";
            let fd = create_file(dir, TEMPORARY, OFlag::O_RDWR)
                .map_err(run_dir_error("create the lock in", path))?;
            let linked = lock_it(&fd).and_then(|()| {
                nix::unistd::linkat(dir, TEMPORARY, dir, LOCK_FILE, nix::fcntl::AtFlags::empty())
                    .map_err(run_dir_error("create the lock in", path))
            });
            let _ = unlinkat(dir, TEMPORARY, UnlinkatFlags::NoRemoveDir);
            linked.map(|()| fd)
        }
        Err(errno) => Err(run_dir_error("create the lock in", path)(errno)),
    }
}

fn io_error(action: &'static str, path: &Path, e: &std::io::Error) -> LaunchError {
    LaunchError::RunDir {
        action,
        path: path.to_owned(),
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// A process's start time (clock ticks after boot, field 22 of
/// `/proc/PID/stat`) and whether it is still running (not a zombie):
/// `None` when it is gone.
pub(crate) fn process_start(pid: i32) -> Option<(u64, bool)> {
    process_stat(pid).map(|p| (p.start, p.running))
}

/// A process's start time, whatever its state.
pub(crate) fn process_start_time(pid: i32) -> Option<u64> {
    process_start(pid).map(|(start, _)| start)
}

/// The processes of this pid namespace by process group, read once from
/// `/proc`, so that killing a dead run's many groups scans `/proc` once.
#[derive(Debug, Default)]
pub(crate) struct ProcessTable {
    groups: std::collections::HashMap<i32, Vec<(i32, ProcStat)>>,
}

impl ProcessTable {
    /// Reads every process's group, start time and state.
    pub(crate) fn snapshot() -> ProcessTable {
        let mut table = ProcessTable::default();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return table;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(stat) = process_stat(pid) {
                table.groups.entry(stat.pgrp).or_default().push((pid, stat));
            }
        }
        table
    }

    /// Kills (SIGKILL) the process group `pgid` a dead run's child led, if
    /// it is still that group. With its leader still there (even as a
    /// zombie): the leader has the recorded start time and no member
    /// started before it. With its leader gone (the usual case: children
    /// die with ipc-run, their own children stay): every member started
    /// within `start..=end`, the leader's start and the dead run's end
    /// ([`run_end_ticks`]); a group id reused later, whose new leader has
    /// exited leaving children, is someone else's. `end` `None`: a
    /// leaderless group is left alone. `Ok(true)` when a running member
    /// was signalled.
    pub(crate) fn kill_group(
        &self,
        pgid: i32,
        start: u64,
        end: Option<u64>,
    ) -> Result<bool, Errno> {
        let Some(members) = self.groups.get(&pgid) else {
            return Ok(false);
        };
        let ours = match members.iter().find(|(pid, _)| *pid == pgid) {
            Some((_, leader)) => {
                leader.start == start && members.iter().all(|(_, m)| m.start >= start)
            }
            None => end.is_some_and(|end| {
                members
                    .iter()
                    .all(|(_, m)| (start..=end).contains(&m.start))
            }),
        };
        if !ours || !members.iter().any(|(_, m)| m.running) {
            return Ok(false);
        }
        match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::SIGKILL)
        {
            Ok(()) => Ok(true),
            Err(Errno::ESRCH) => Ok(false),
            Err(errno) => Err(errno),
        }
    }

    /// A table of the given processes (`(pid, pgrp, start, running)`), for
    /// tests of [`Self::kill_group`] on a synthetic table.
    #[cfg(test)]
    pub(crate) fn from_processes(processes: &[(i32, i32, u64, bool)]) -> ProcessTable {
        let mut table = ProcessTable::default();
        for &(pid, pgrp, start, running) in processes {
            let stat = ProcStat {
                pgrp,
                start,
                running,
            };
            table.groups.entry(pgrp).or_default().push((pid, stat));
        }
        table
    }
}

/// How long after a dead run's last journal write (its last spawn) a
/// member of one of its process groups may have started and still be
/// taken for the run's: the time a just-spawned child takes to start its
/// own children. Later ones are reached through the run's cgroup only.
pub(crate) const RUN_END_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The end of a dead run whose journal was last written at `last_write`,
/// in clock ticks after boot (the unit of process start times): that
/// write plus [`RUN_END_GRACE`]. `None` when the clocks cannot say.
pub(crate) fn run_end_ticks(last_write: std::time::SystemTime) -> Option<u64> {
    use nix::time::{ClockId, clock_gettime};
    let since_boot = std::time::Duration::from(clock_gettime(ClockId::CLOCK_BOOTTIME).ok()?);
    let now = std::time::SystemTime::now();
    // How long ago the write was; a write "in the future" (clock stepped
    // back) counts as now.
    let ago = now.duration_since(last_write).unwrap_or_default();
    let at = since_boot.checked_sub(ago)? + RUN_END_GRACE;
    let hz = crate::sys::clock_ticks_per_second();
    u64::try_from(at.as_millis() * u128::from(hz) / 1000).ok()
}

/// [`ProcessTable::kill_group`] on a fresh snapshot, only while the
/// group's leader is there (the dead run's end is not known here).
pub(crate) fn kill_process_group(pgid: i32, start: u64) -> Result<bool, Errno> {
    ProcessTable::snapshot().kill_group(pgid, start, None)
}

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone, Copy)]
struct ProcStat {
    pgrp: i32,
    start: u64,
    running: bool,
}

fn process_stat(pid: i32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start after its last ')', at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    Some(ProcStat {
        running: !matches!(*fields.first()?, "Z" | "X" | "x"),
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Whether the owner line `text` names a process that is still running
/// (same pid, same start time, not a zombie). A missing or unreadable
/// owner line counts as alive: only a proven death makes a run dead.
pub(crate) fn owner_alive(text: &str) -> bool {
    // Another pid namespace's pid cannot be looked up here.
    if !same_pid_namespace(text) {
        return true;
    }
    let (Some(pid), Some(start)) = (owner_field(text, "pid="), owner_field(text, "start=")) else {
        return true;
    };
    let Ok(pid) = i32::try_from(pid) else {
        return true;
    };
    match process_start(pid) {
        Some((now, running)) => running && now == start,
        None => false,
    }
}

/// Creates a file exclusively, 0600 exactly, CLOEXEC, not following links.
pub(crate) fn create_file(dir: &OwnedFd, name: &str, access: OFlag) -> Result<OwnedFd, Errno> {
    let fd = openat(
        dir,
        name,
        access | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    fchmod(&fd, Mode::from_bits_truncate(0o600))?;
    Ok(fd)
}

pub(crate) fn list_dir(path: &Path) -> Vec<String> {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An object made right after its intent has a ctime no earlier than
    /// the intent's `since`, across second boundaries too (where a precise
    /// clock runs ahead of the kernel's tick-updated seconds).
    #[test]
    fn an_intents_time_is_never_after_the_objects_ctime() {
        use crate::sys::ipc;
        let first = std::time::SystemTime::now();
        // Until two second boundaries were crossed.
        while first.elapsed().unwrap_or_default() < std::time::Duration::from_secs(2) {
            let (_, record) = sysv_intent(SysvKind::Msg, 0o600).unwrap();
            let ObjectRecord::SysvKey { since, .. } = record else {
                unreachable!()
            };
            let id = ipc::msg_create(1024, 0o600).unwrap();
            let ctime = ipc::sysv_stat(SysvKind::Msg, id).map(|s| s.ctime);
            ipc::sysv_remove(SysvKind::Msg, id).unwrap();
            assert!(ctime.unwrap() >= since, "since {since}, ctime {ctime:?}");
        }
    }

    #[test]
    fn run_ids_are_16_hex_digits_and_differ() {
        let a = new_run_id().unwrap();
        let b = new_run_id().unwrap();
        assert!(is_run_id(&a) && is_run_id(&b), "{a} {b}");
        assert_ne!(a, b);
    }

    #[test]
    fn owner_lines_tell_a_running_owner_from_a_gone_one() {
        let me = std::process::id();
        let start = process_start_time(me as i32).unwrap();
        assert!(owner_alive(&format!("owner pid={me} start={start}\n")));
        assert!(
            owner_alive(&format!("owner pid={me} start={}\n", start + 1)),
            "no namespace: cannot tell, so alive"
        );
        assert!(owner_alive("garbage"), "unknown counts as alive");
        let ns = own_pid_namespace().unwrap();
        assert!(!owner_alive(&format!(
            "owner pid={me} start={} pidns={ns}\n",
            start + 1
        )));
        assert!(
            owner_alive(&format!(
                "owner pid={me} start={} pidns={}\n",
                start + 1,
                ns + 1
            )),
            "another namespace: cannot tell, so alive"
        );
        assert!(owner_line().starts_with(&format!("owner pid={me} start={start}")));
    }

    /// A `sleep` leading its own process group, and its start time.
    pub(crate) fn group_leader() -> (std::process::Child, i32, u64) {
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let start = process_start_time(pid).unwrap();
        (child, pid, start)
    }

    /// Ends `child` with SIGTERM and returns whether it was running until
    /// then: `false` when it had been SIGKILLed.
    pub(crate) fn was_running(mut child: std::process::Child) -> bool {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM);
        let status = child.wait().unwrap();
        std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGTERM)
    }

    #[test]
    fn a_leaderless_group_with_a_member_started_after_the_run_is_left_alone() {
        let (child, pgid, start) = group_leader();
        // The recorded leader is gone; the group now holds a process that
        // started after the dead run ended (a reused group id).
        let table = ProcessTable::from_processes(&[(pgid + 1, pgid, start + 50, true)]);
        let killed = table.kill_group(pgid, start - 10, Some(start + 20));
        assert!(
            was_running(child),
            "a group started after the run was killed"
        );
        assert_eq!(killed, Ok(false));
    }

    #[test]
    fn a_leaderless_group_is_left_alone_when_the_runs_end_is_unknown() {
        let (child, pgid, start) = group_leader();
        let table = ProcessTable::from_processes(&[(pgid + 1, pgid, start, true)]);
        let killed = table.kill_group(pgid, start, None);
        assert!(was_running(child));
        assert_eq!(killed, Ok(false));
    }

    #[test]
    fn a_leaderless_group_started_within_the_run_is_killed() {
        let (mut child, pgid, start) = group_leader();
        let table = ProcessTable::from_processes(&[
            (pgid + 1, pgid, start, true),
            (pgid + 2, pgid, start + 5, true),
        ]);
        assert_eq!(table.kill_group(pgid, start, Some(start + 5)), Ok(true));
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }

    #[test]
    fn a_group_whose_leader_is_there_is_killed_only_with_the_recorded_start() {
        let (mut child, pgid, start) = group_leader();
        let table = ProcessTable::snapshot();
        assert_eq!(table.kill_group(pgid, start + 1, None), Ok(false));
        assert_eq!(table.kill_group(pgid, start, None), Ok(true));
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }

    #[test]
    fn the_end_of_a_run_just_written_is_now_plus_the_grace_in_ticks() {
        let me = process_start_time(std::process::id() as i32).unwrap();
        let end = run_end_ticks(std::time::SystemTime::now()).unwrap();
        let hz = crate::sys::clock_ticks_per_second();
        assert!(end >= me + RUN_END_GRACE.as_secs() * hz, "{end} {me}");
    }
}
