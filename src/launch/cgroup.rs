//! A run's own cgroup, where a cgroup v2 hierarchy lets us make one: every
//! child is created in `<ipc-run's cgroup>/ipc-run-<run id>` (or moves
//! itself there as it starts), so that whatever it starts, in whatever
//! process group or session, can be killed at once (`cgroup.kill`) if
//! ipc-run is SIGKILLed.
//!
//! The cgroup is journaled (`cgroup PATH`) before it is made; `ipc-run
//! clean` and the next run kill a dead run's cgroup whole, wait until it is
//! empty (`cgroup.events`), and remove it. At a normal end the run removes
//! its cgroup when it is empty; processes that outlived the run by leaving
//! their process group (daemons) are left running, as without a cgroup, and
//! so is their cgroup.
//!
//! On a cgroup v1 (or hybrid) system the v2 hierarchy is found through
//! `/proc/self/mountinfo` (e.g. `/sys/fs/cgroup/unified`).
//!
//! Where no cgroup can be made (no cgroup v2 mount, not delegated to us,
//! read-only), runs go without: the journaled process groups
//! ([`super::objects::ObjectRecord::ProcessGroup`]) are then what a dead
//! run's leftovers are found by.
//!
//! Each child is born in the cgroup: the run opens the cgroup's directory
//! once ([`open_dir`]) and every spawn passes it to
//! `clone3(CLONE_INTO_CGROUP)` ([`crate::sys::spawn::ChildSpec::cgroup_dir`]),
//! so nothing the child starts can be outside, and no task is migrated. A
//! migration (a write to `cgroup.procs`) waits for an RCU grace period in
//! the kernel, 10-12 ms after a quiet moment, and the spawning thread waited
//! for it. Where `clone3` cannot do that (before Linux 5.7, seccomp, a
//! cgroup that refuses), each child moves itself into the cgroup right after
//! `clone`, once it has its own fd table, by writing `0` to `cgroup.procs`
//! ([`crate::sys::spawn::ChildSpec::cgroup_procs`]); measured in
//! `docs/performance.md`, "Spawning from a small file table".

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// The cgroup v2 mount points, from `/proc/self/mountinfo`.
fn cgroup2_mounts() -> Vec<(PathBuf, String)> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            if fs.split(' ').next()? != "cgroup2" {
                return None;
            }
            let fields: Vec<&str> = mount.split(' ').collect();
            let root = unescape(fields.get(3)?);
            let point = unescape(fields.get(4)?);
            Some((PathBuf::from(point), root))
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(digits)) = (bytes[i], octal) {
            let code = digits.iter().fold(0u32, |n, d| n * 8 + u32::from(d - b'0'));
            out.push(code as u8);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// ipc-run's own cgroup v2 directory, if there is one.
fn own_cgroup() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let (point, root) = cgroup2_mounts().into_iter().next()?;
    let relative = path.strip_prefix(root.as_str()).unwrap_or(path);
    Some(point.join(relative.trim_start_matches('/')))
}

/// Whether cgroups are to be tried: always, except in debug builds with
/// `IPC_RUN_CGROUP=off` (tests of the path without a cgroup).
fn wanted() -> bool {
    #[cfg(debug_assertions)]
    if std::env::var_os("IPC_RUN_CGROUP").is_some_and(|v| v == "off") {
        return false;
    }
    true
}

/// Where the cgroup of run `run_id` would go, when cgroups are to be
/// tried and the path can be journaled (no whitespace).
pub(crate) fn path_for(run_id: &str) -> Option<PathBuf> {
    if !wanted() {
        return None;
    }
    let path = own_cgroup()?.join(format!("ipc-run-{run_id}"));
    let text = path.to_str()?;
    (!text.chars().any(char::is_whitespace)).then_some(path)
}

/// Makes the cgroup at `path` (already journaled); `false` where that is
/// not allowed (the run goes without).
pub(crate) fn create(path: &Path) -> bool {
    match nix::unistd::mkdir(path, nix::sys::stat::Mode::from_bits_truncate(0o755)) {
        Ok(()) => {
            tracing::debug!(cgroup = %path.display(), "run cgroup created");
            true
        }
        Err(errno) => {
            tracing::debug!(cgroup = %path.display(), "no run cgroup: {errno}");
            false
        }
    }
}

/// The cgroup directory at `path`, opened to create children in
/// (`O_PATH`: no permission needed beyond reaching it); `None` where it
/// cannot be opened (children then move themselves in).
pub(crate) fn open_dir(path: &Path) -> Option<std::os::fd::OwnedFd> {
    let flags = nix::fcntl::OFlag::O_PATH
        | nix::fcntl::OFlag::O_DIRECTORY
        | nix::fcntl::OFlag::O_CLOEXEC
        | nix::fcntl::OFlag::O_NOFOLLOW;
    nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty())
        .inspect_err(|errno| {
            tracing::debug!(cgroup = %path.display(), "cannot open the run cgroup: {errno}");
        })
        .ok()
}

/// Removes the cgroup at `path` if it is empty (a run's own end).
pub(crate) fn remove_if_empty(path: &Path) {
    if let Err(errno) = rmdir(path) {
        tracing::debug!(cgroup = %path.display(), "run cgroup kept: {errno}");
    }
}

/// Whether `path` can be the cgroup of run `run_id`: absolute, plain
/// components, inside a cgroup v2 mount, named `ipc-run-<run_id>`.
pub(crate) fn is_plausibly_of(path: &Path, run_id: &str) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && path
            .file_name()
            .is_some_and(|n| *n == *format!("ipc-run-{run_id}"))
        && cgroup2_mounts()
            .iter()
            .any(|(point, _)| path.starts_with(point) && path != point)
}

fn rmdir(path: &Path) -> Result<(), Errno> {
    std::fs::remove_dir(path).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

fn populated(path: &Path) -> Result<bool, Errno> {
    let events = std::fs::read_to_string(path.join("cgroup.events"))
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok(events.lines().any(|l| l == "populated 1"))
}

/// How long `clean` waits for one dead run's cgroup to empty and go.
pub(crate) const CLEAN_BUDGET: Duration = Duration::from_secs(5);

/// Kills everything in a dead run's cgroup, waits (no longer than
/// [`CLEAN_BUDGET`]) for it to empty and removes it: see
/// [`kill_and_remove_by`].
pub(crate) fn kill_and_remove(path: &Path) -> Result<bool, Errno> {
    kill_and_remove_by(path, Instant::now() + CLEAN_BUDGET)
}

/// Kills everything in a dead run's cgroup and in the cgroups its
/// processes made below it (`cgroup.kill`; before Linux 5.14, which lacks
/// it, SIGKILL to every pid in each `cgroup.procs`), waits until it is
/// empty (`cgroup.events`) and removes it, child cgroups first. Gives up
/// with `EBUSY` at `deadline`, so that a dead run cannot hold up every
/// later run start. `Ok(true)` when something was running in it.
pub(crate) fn kill_and_remove_by(path: &Path, deadline: Instant) -> Result<bool, Errno> {
    kill_and_remove_with(path, deadline, true)
}

/// [`kill_and_remove_by`]; `kill_file`: whether to try `cgroup.kill`
/// (tests of the fallback turn it off).
fn kill_and_remove_with(path: &Path, deadline: Instant, kill_file: bool) -> Result<bool, Errno> {
    let was_populated = match populated(path) {
        Ok(p) => p,
        Err(Errno::ENOENT) => return Ok(false),
        Err(errno) => return Err(errno),
    };
    if was_populated {
        let use_kill_file = kill_file
            && match write_kill(path) {
                Ok(()) => true,
                // Before Linux 5.14.
                Err(Errno::ENOENT) => false,
                Err(errno) => return Err(errno),
            };
        // The kernel signals cgroup.events (POLLPRI) as the cgroup empties.
        while populated(path)? {
            if !use_kill_file {
                // Processes may fork between reading cgroup.procs and the
                // signal: kill again on every round.
                kill_each(path);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Errno::EBUSY);
            }
            let events = std::fs::File::open(path.join("cgroup.events")).map_err(errno_of)?;
            let mut fds = [PollFd::new(events.as_fd(), PollFlags::POLLPRI)];
            let wait = u16::try_from(left.as_millis().min(50)).unwrap_or(50);
            let _ = poll(&mut fds, PollTimeout::from(wait));
        }
    }
    remove_tree(path, deadline).map(|()| was_populated)
}

fn errno_of(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn write_kill(path: &Path) -> Result<(), Errno> {
    let mut kill = std::fs::OpenOptions::new()
        .write(true)
        .open(path.join("cgroup.kill"))
        .map_err(errno_of)?;
    kill.write_all(b"1").map_err(errno_of)
}

/// The cgroups directly below `path`.
fn children(path: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILLs every process in the cgroup at `path` and below it.
fn kill_each(path: &Path) {
    for child in children(path) {
        kill_each(&child);
    }
    let Ok(procs) = std::fs::read_to_string(path.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if pid > 1 {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }
}

/// Removes the (empty) cgroup at `path`, the cgroups below it first.
/// Tasks that have just exited may keep a cgroup busy a moment after it
/// reports itself empty: `EBUSY` is retried until `deadline`.
fn remove_tree(path: &Path, deadline: Instant) -> Result<(), Errno> {
    for child in children(path) {
        remove_tree(&child, deadline)?;
    }
    loop {
        match rmdir(path) {
            Ok(()) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EBUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(errno) => return Err(errno),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::run_dir::tests::was_running;

    /// A dead run's cgroup below ours with a child cgroup (as a child may
    /// make) holding a `sleep`; `None` where no cgroup can be made here.
    fn cgroup_with_a_child_cgroup(tag: &str) -> Option<(PathBuf, std::process::Child)> {
        let path = own_cgroup()?.join(format!("ipc-run-test-{tag}-{}", std::process::id()));
        if std::fs::create_dir(&path).is_err() {
            eprintln!("NOTE: no writable cgroup v2 here: {tag} not tested");
            return None;
        }
        let sub = path.join("made-by-a-child");
        std::fs::create_dir(&sub).unwrap();
        let child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        std::fs::write(sub.join("cgroup.procs"), child.id().to_string()).unwrap();
        Some((path, child))
    }

    fn check_killed_and_removed(tag: &str, kill_file: bool) {
        let Some((path, child)) = cgroup_with_a_child_cgroup(tag) else {
            return;
        };
        let deadline = Instant::now() + CLEAN_BUDGET;
        let result = kill_and_remove_with(&path, deadline, kill_file);
        let survived = was_running(child);
        let left = path.exists();
        if left {
            let _ = std::fs::remove_dir(path.join("made-by-a-child"));
            let _ = std::fs::remove_dir(&path);
        }
        assert_eq!(result, Ok(true));
        assert!(!survived, "the process in the child cgroup survived");
        assert!(!left, "the cgroup was left");
    }

    #[test]
    fn a_cgroup_with_child_cgroups_is_killed_and_removed_depth_first() {
        check_killed_and_removed("kill-file", true);
    }

    #[test]
    fn without_cgroup_kill_every_process_in_the_tree_is_sigkilled() {
        check_killed_and_removed("no-kill-file", false);
    }
}
