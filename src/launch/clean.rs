//! `ipc-run clean`: remove what dead runs left behind, never touching a
//! live run.
//!
//! A dead run's journaled process groups (its children, and whatever they
//! started in their groups) are killed first, as every run also does for
//! the dead runs it finds when it starts ([`kill_leftovers`]), once per
//! dead run: a run start that did it journals `leftovers-killed`, and the
//! groups are not acted on again (their ids may since be reused). A group
//! whose leader is gone is killed only if all its members started within
//! the run ([`ProcessTable::kill_group`]).
//!
//! For each root (`$XDG_RUNTIME_DIR/ipc-run`, `/tmp/ipc-run-<uid>`) that is
//! ours and private, each entry named like a run id is opened without
//! following symlinks. A run whose `lock` is held (`flock`) is live and
//! skipped, unless the owner its lock names (pid and start time) is gone:
//! then a leftover child of the dead run holds the lock, and the run is
//! dead. For a dead run, every journal line is undone, newest first
//! (POSIX objects by name, System V objects by id only if creator, mode,
//! ctime and creator pid still match, or, when only the key of one was
//! journaled, by key only if creator, mode and a ctime after the intent
//! match, files with `unlinkat` on the run
//! directory fd), then an MPI world's session tree (`mpi.session`: Open
//! MPI's session directory and shared-memory backing files, which a killed
//! mpirun leaves, [`remove_mpi_session`]), the journal, the lock and the
//! directory go. A
//! record the run cannot have made is left alone: a POSIX name without the
//! run's `/ipc-run.<run id>.` prefix, a FIFO or socket name that is now a
//! symlink or another kind of file (the directory is then kept). A run
//! directory with no lock file is skipped: it is either being created right
//! now (a lock appears already locked, see [`super::run_dir`]) or not
//! ipc-run's.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::cgroup;
use super::objects::{Match, ObjectRecord};
use super::run_dir::{
    JOURNAL_FILE, LOCK_FILE, ProcessTable, check_private, is_run_id, list_dir, open_dir_nofollow,
    owner_alive, run_end_ticks, same_pid_namespace,
};
use crate::mechanism::mpi;
use crate::sys::fd::try_lock_exclusive;

/// What `clean` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanReport {
    /// Dead runs cleaned.
    pub cleaned: Vec<CleanedRun>,
    /// Live runs left alone.
    pub live: Vec<PathBuf>,
    /// Directories not touched, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// One dead run and what was removed for it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanedRun {
    /// Its run directory.
    pub path: PathBuf,
    /// Objects removed (`kind name`).
    pub removed: Vec<String>,
    /// Objects already gone or no longer the recorded ones.
    pub skipped: Vec<String>,
    /// Objects whose removal failed.
    pub failed: Vec<String>,
    /// Whether the run directory itself was removed.
    pub dir_removed: bool,
}

/// Cleans dead runs under `roots` (default: [`super::run_dir::all_roots`]).
pub fn clean(roots: Option<&[PathBuf]>) -> CleanReport {
    let roots = roots.map_or_else(super::run_dir::all_roots, <[PathBuf]>::to_vec);
    let mut report = CleanReport::default();
    for root in roots {
        clean_root(&root, &mut report);
    }
    report
}

fn clean_root(root: &Path, report: &mut CleanReport) {
    let root_fd = match open_dir_nofollow(None, root) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return,
        Err(errno) => {
            report
                .skipped
                .push((root.to_owned(), format!("cannot open it: {errno}")));
            return;
        }
    };
    if let Err(e) = check_private(&root_fd, root) {
        report.skipped.push((root.to_owned(), e.to_string()));
        return;
    }
    let mut names = list_dir(root);
    names.sort();
    for name in names.into_iter().filter(|n| is_run_id(n)) {
        let path = root.join(&name);
        match clean_run(&root_fd, &name, &path) {
            Ok(Some(run)) => report.cleaned.push(run),
            Ok(None) => report.live.push(path),
            Err(reason) => report.skipped.push((path, reason)),
        }
    }
}

/// The journal line a dead run gets once what it left running has been
/// killed: its process groups are then not acted on again (their ids may
/// since name someone else's groups).
const LEFTOVERS_KILLED: &str = "leftovers-killed";

/// How long one run start may wait, over all dead runs, for their cgroups
/// to empty: a dead run must not delay every later start. What is still
/// there is left to `clean`.
const LEFTOVERS_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// A dead run's journal: its text, and the end of the run as far as
/// process start times go ([`run_end_ticks`] of its last write).
struct Journal {
    text: String,
    end: Option<u64>,
}

impl Journal {
    /// Reads the journal of the run directory `dir` (`Ok(None)`: none).
    fn read(dir: &OwnedFd) -> Result<Option<Journal>, Errno> {
        let fd = match openat(
            dir,
            JOURNAL_FILE,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(errno) => return Err(errno),
        };
        let mut file = std::fs::File::from(fd);
        let end = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(run_end_ticks);
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        Ok(Some(Journal { text, end }))
    }

    /// Whether the run's leftovers were killed already.
    fn leftovers_killed(&self) -> bool {
        self.text.lines().any(|l| l == LEFTOVERS_KILLED)
    }
}

/// Kills what dead runs under `root` left running (their journaled process
/// groups, see [`ObjectRecord::ProcessGroup`], and their cgroups), leaving
/// their objects to `clean`: called by every run as it starts. Each dead
/// run is acted on once: its journal then gets a `leftovers-killed` line.
pub(crate) fn kill_leftovers(root_fd: &OwnedFd, root: &Path) {
    let deadline = std::time::Instant::now() + LEFTOVERS_BUDGET;
    let mut names = list_dir(root);
    names.retain(|n| is_run_id(n));
    let mut processes = None;
    for name in names {
        let Ok(dir) = open_dir_nofollow(Some(root_fd.as_fd()), Path::new(&name)) else {
            continue;
        };
        if check_private(&dir, &root.join(&name)).is_err() {
            continue;
        }
        let Ok(lock) = openat(
            &dir,
            LOCK_FILE,
            OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
            Mode::empty(),
        ) else {
            continue;
        };
        if try_lock_exclusive(lock.as_fd()) != Ok(true) {
            continue;
        }
        let same_ns = same_pid_namespace(&read_all(&lock));
        let Ok(Some(journal)) = Journal::read(&dir) else {
            continue;
        };
        if journal.leftovers_killed() {
            continue;
        }
        for record in journal.text.lines().rev().filter_map(ObjectRecord::parse) {
            let killed = match &record {
                ObjectRecord::ProcessGroup { .. } if !same_ns => continue,
                ObjectRecord::ProcessGroup { pgid, start } => processes
                    .get_or_insert_with(ProcessTable::snapshot)
                    .kill_group(*pgid, *start, journal.end),
                ObjectRecord::Cgroup(path) if record.is_plausibly_from(&name, dir.as_fd()) => {
                    cgroup::kill_and_remove_by(Path::new(path), deadline)
                }
                _ => continue,
            };
            if let Ok(true) = killed {
                tracing::info!("killed {record} left by dead run {name}");
            }
        }
        mark_leftovers_killed(&dir);
    }
}

/// Appends the `leftovers-killed` line to the journal of run directory `dir`.
fn mark_leftovers_killed(dir: &OwnedFd) {
    let Ok(fd) = openat(
        dir,
        JOURNAL_FILE,
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let _ = std::io::Write::write_all(
        &mut std::fs::File::from(fd),
        format!("{LEFTOVERS_KILLED}\n").as_bytes(),
    );
}

fn clean_run(root_fd: &OwnedFd, name: &str, path: &Path) -> Result<Option<CleanedRun>, String> {
    let dir = open_dir_nofollow(Some(root_fd.as_fd()), Path::new(name))
        .map_err(|errno| format!("cannot open it without following links: {errno}"))?;
    check_private(&dir, path).map_err(|e| e.to_string())?;
    let lock = openat(
        &dir,
        LOCK_FILE,
        OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )
    .map_err(|errno| format!("no usable lock file ({errno}): being created, or not a run"))?;
    let locked = try_lock_exclusive(lock.as_fd());
    let owner = read_all(&lock);
    match locked {
        Ok(true) => {}
        // Held: live, unless its owner is provably gone and a leftover of
        // it (a child between clone and exec) holds the lock.
        Ok(false) if owner_alive(&owner) => return Ok(None),
        Ok(false) => {}
        Err(errno) => return Err(format!("cannot test its lock: {errno}")),
    }
    // Pids journaled in another pid namespace name other processes here.
    let same_ns = same_pid_namespace(&owner);
    let mut run = CleanedRun {
        path: path.to_owned(),
        ..CleanedRun::default()
    };
    let journal = Journal::read(&dir)
        .map_err(|errno| format!("cannot read its journal: {errno}"))?
        .unwrap_or(Journal {
            text: String::new(),
            end: None,
        });
    // Groups already killed by a run start are not acted on again.
    let groups_done = journal.leftovers_killed();
    let records: Vec<ObjectRecord> = journal
        .text
        .lines()
        .filter_map(ObjectRecord::parse)
        .collect();
    // A key whose object's id was journaled too is undone by the id line.
    let keys_with_ids: Vec<i32> = records
        .iter()
        .filter_map(|r| match r {
            ObjectRecord::Sysv { key, .. } => *key,
            _ => None,
        })
        .collect();
    let mut processes = None;
    for record in records.into_iter().rev() {
        if matches!(&record, ObjectRecord::SysvKey { key, .. } if keys_with_ids.contains(key)) {
            continue;
        }
        if !record.is_plausibly_from(name, dir.as_fd()) {
            run.skipped.push(record.to_string());
            continue;
        }
        let group = matches!(
            record,
            ObjectRecord::ProcessGroup { .. } | ObjectRecord::Cgroup(_)
        );
        let result = match &record {
            ObjectRecord::ProcessGroup { .. } if !same_ns || groups_done => continue,
            // One /proc scan for all of a run's groups.
            ObjectRecord::ProcessGroup { pgid, start } => processes
                .get_or_insert_with(ProcessTable::snapshot)
                .kill_group(*pgid, *start, journal.end),
            _ => record.remove(dir.as_fd(), Match::Strict),
        };
        match result {
            Ok(true) if group => run.removed.push(format!("{record} (killed)")),
            Ok(true) => run.removed.push(record.to_string()),
            // A group that ended with its run is not worth a line.
            Ok(false) if group => {}
            Ok(false) => run.skipped.push(record.to_string()),
            Err(errno) => run.failed.push(format!("{record}: {errno}")),
        }
    }
    if run.failed.is_empty() {
        match remove_mpi_session(path) {
            Ok(true) => run
                .removed
                .push(format!("mpi session {}", mpi::SESSION_DIR)),
            Ok(false) => {}
            Err(e) => run
                .failed
                .push(format!("mpi session {}: {e}", mpi::SESSION_DIR)),
        }
        for file in [JOURNAL_FILE, LOCK_FILE] {
            let _ = unlinkat(&dir, file, UnlinkatFlags::NoRemoveDir);
        }
        run.dir_removed =
            list_dir(path).is_empty() && unlinkat(root_fd, name, UnlinkatFlags::RemoveDir).is_ok();
    }
    drop(lock);
    Ok(Some(run))
}

/// Removes the MPI session tree a run's worlds leave in its directory
/// (`mechanism::mpi::SESSION_DIR`: Open MPI's session directory and the
/// shared-memory backing files, which a killed mpirun leaves behind).
/// `Ok(false)` when there is none. The tree is the run's own, in its
/// private directory; `remove_dir_all` does not follow symlinks in it.
pub(crate) fn remove_mpi_session(run_dir: &Path) -> std::io::Result<bool> {
    let path = run_dir.join(mpi::SESSION_DIR);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path).map(|()| true),
        // Not what a world makes: left alone, and the directory is kept.
        Ok(_) => Ok(false),
    }
}

/// The text of the file `fd` refers to, read from its start (empty on error).
fn read_all(fd: &OwnedFd) -> String {
    let mut text = String::new();
    if let Ok(copy) = fd.try_clone() {
        let mut file = std::fs::File::from(copy);
        let _ = std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0));
        let _ = file.read_to_string(&mut text);
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::launch::run_dir::owner_line;
    use crate::launch::run_dir::tests::{group_leader, was_running};

    /// A private root holding one dead run (lock unlocked, owner line of
    /// this namespace) whose journal is `journal`.
    fn dead_run(tag: &str, journal: &str) -> (PathBuf, PathBuf) {
        let root = std::env::temp_dir().join(format!("ipc-run-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let run = root.join("0123456789abcdef");
        std::fs::create_dir_all(&run).unwrap();
        for dir in [&root, &run] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        std::fs::write(run.join(LOCK_FILE), owner_line()).unwrap();
        std::fs::write(run.join(JOURNAL_FILE), journal).unwrap();
        (root, run)
    }

    fn kill_leftovers_in(root: &Path) {
        let root_fd = open_dir_nofollow(None, root).unwrap();
        kill_leftovers(&root_fd, root);
    }

    #[test]
    fn a_dead_runs_process_groups_are_acted_on_once() {
        let (first, pgid, start) = group_leader();
        let (root, run) = dead_run(
            "leftovers-once",
            &format!("process-group {pgid} start={start}\n"),
        );
        kill_leftovers_in(&root);
        let first_killed = !was_running(first);
        let journal = std::fs::read_to_string(run.join(JOURNAL_FILE)).unwrap();
        // The same line, now naming a group of someone else's (as a reused
        // group id would, its leader's start time aside).
        let (second, pgid, start) = group_leader();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(run.join(JOURNAL_FILE))
            .unwrap();
        writeln!(file, "process-group {pgid} start={start}").unwrap();
        kill_leftovers_in(&root);
        let second_alive = was_running(second);
        let _ = std::fs::remove_dir_all(&root);
        assert!(first_killed, "the dead run's group survived");
        assert!(journal.ends_with("\nleftovers-killed\n"), "{journal}");
        assert!(second_alive, "a run's process groups were acted on twice");
    }
}
