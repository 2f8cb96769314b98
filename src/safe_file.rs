//! Opening a file of ours in a directory someone else may also write to:
//! `--log-dir` logs and `--tap` copies.
//!
//! ipc-run often runs as root, so a name it writes to must not let anyone
//! else choose what is written: not a symlink planted at the name (written
//! through), not another user's file (appended to, then read by them), not
//! a FIFO (an `open()` that never returns). The rules, as sshd applies them
//! to its own files:
//!
//! - the directory is owned by us or root, and not group or world writable
//!   unless it is sticky (`/tmp`): nobody else can swap names inside it;
//! - a missing file is created with `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`,
//!   mode 0600 exactly, whatever the umask;
//! - an existing name is used only when it is a regular file owned by us
//!   with a single link; it is then replaced by a fresh file
//!   ([`Existing::Replace`]) or reopened for appending ([`Existing::Append`])
//!   with `O_NOFOLLOW|O_NONBLOCK`, and checked again on the open fd (same
//!   inode, regular, ours), so a swap between the check and the open is
//!   caught and a FIFO never blocks;
//! - anything else is refused with a [`SafeFileError`] saying why, and
//!   nothing is written.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, FcntlArg, OFlag, fcntl, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat};
use nix::unistd::{Uid, UnlinkatFlags, unlinkat};

/// What to do with a file that already exists (and passed the checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Remove it and create a fresh, empty one.
    Replace,
    /// Open it and write at its end (`O_APPEND`).
    Append,
    /// Open it for writing as it is, without `O_APPEND` (which `splice(2)`
    /// refuses): the caller seeks where it writes.
    Reuse,
}

/// A file or directory refused, or a system call that failed on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SafeFileError {
    /// The name or its directory is not safe to write to.
    #[error("refusing {path}: {reason}")]
    Unsafe {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A system call failed.
    #[error("{action} {path}: {errno}")]
    Sys {
        /// What was being done ("open", "create", ...).
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        errno: Errno,
    },
}

fn sys<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> SafeFileError + 'a {
    move |errno| SafeFileError::Sys {
        action,
        path: path.to_owned(),
        errno,
    }
}

fn refuse(path: &Path, reason: impl Into<String>) -> SafeFileError {
    SafeFileError::Unsafe {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Opens directory `path` (following links: the checks apply to what it
/// is) and checks it: owned by us or root, not group/world writable unless
/// sticky.
pub(crate) fn open_checked_dir(path: &Path) -> Result<OwnedFd, SafeFileError> {
    let dir = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open the directory", path))?;
    let st = fstat(&dir).map_err(sys("inspect", path))?;
    let me = Uid::effective().as_raw();
    if st.st_uid != me && st.st_uid != 0 {
        return Err(refuse(
            path,
            format!(
                "the directory is owned by uid {}, not {me} or root",
                st.st_uid
            ),
        ));
    }
    let sticky = st.st_mode & libc::S_ISVTX != 0;
    if st.st_mode & 0o022 != 0 && !sticky {
        return Err(refuse(
            path,
            format!(
                "the directory is group or world writable and not sticky (mode {:o})",
                st.st_mode & 0o7777
            ),
        ));
    }
    Ok(dir)
}

fn kind_name(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFLNK => "a symlink",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFCHR | SFlag::S_IFBLK => "a device",
        _ => "not a regular file",
    }
}

/// Why an existing file may not be used, if it may not.
fn why_not_ours(st: &FileStat) -> Option<String> {
    if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
        return Some(format!("it exists and is {}", kind_name(st)));
    }
    let me = Uid::effective().as_raw();
    if st.st_uid != me {
        return Some(format!(
            "it exists and is owned by uid {}, not {me}",
            st.st_uid
        ));
    }
    if st.st_nlink > 1 {
        return Some(format!("it exists with {} hard links", st.st_nlink));
    }
    None
}

/// Opens `name` in `dir` for writing under the rules of the module docs;
/// `path` names it in errors.
pub(crate) fn open_in(
    dir: BorrowedFd<'_>,
    name: &Path,
    path: &Path,
    existing: Existing,
) -> Result<OwnedFd, SafeFileError> {
    let append = match existing {
        Existing::Append => OFlag::O_APPEND,
        Existing::Replace | Existing::Reuse => OFlag::empty(),
    };
    // A name replaced between our check and our create makes the create
    // fail again with EEXIST: a few rounds, then give up.
    for _ in 0..4 {
        match openat(
            dir,
            name,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC
                | OFlag::O_NOCTTY
                | append,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => {
                fchmod(&fd, Mode::from_bits_truncate(0o600))
                    .map_err(sys("set the mode of", path))?;
                return Ok(fd);
            }
            Err(Errno::EEXIST) => {}
            Err(errno) => return Err(sys("create", path)(errno)),
        }
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(errno) => return Err(sys("inspect", path)(errno)),
        };
        if let Some(reason) = why_not_ours(&st) {
            return Err(refuse(path, reason));
        }
        match existing {
            Existing::Replace => match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => continue,
                Err(errno) => return Err(sys("remove", path)(errno)),
            },
            Existing::Append | Existing::Reuse => {
                return reopen(dir, name, path, &st, append);
            }
        }
    }
    Err(refuse(
        path,
        "its name keeps being replaced while we open it",
    ))
}

/// Opens the existing file `st` describes for writing, without blocking
/// or following a link, and checks the fd is still that file.
fn reopen(
    dir: BorrowedFd<'_>,
    name: &Path,
    path: &Path,
    st: &FileStat,
    append: OFlag,
) -> Result<OwnedFd, SafeFileError> {
    let fd = openat(
        dir,
        name,
        OFlag::O_WRONLY
            | append
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY,
        Mode::empty(),
    )
    .map_err(|errno| match errno {
        Errno::ELOOP | Errno::ENXIO => refuse(path, "it was replaced by a symlink or a FIFO"),
        errno => sys("open", path)(errno),
    })?;
    let now = fstat(&fd).map_err(sys("inspect", path))?;
    if now.st_dev != st.st_dev || now.st_ino != st.st_ino {
        return Err(refuse(path, "it was replaced while we opened it"));
    }
    if let Some(reason) = why_not_ours(&now) {
        return Err(refuse(path, reason));
    }
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).map_err(sys("inspect", path))?;
    let flags = OFlag::from_bits_retain(flags) & !OFlag::O_NONBLOCK;
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags)).map_err(sys("set the flags of", path))?;
    Ok(fd)
}

/// Opens file `path` for writing: its directory is checked, then the file
/// is opened under the rules of the module docs.
pub(crate) fn open_path(path: &Path, existing: Existing) -> Result<OwnedFd, SafeFileError> {
    let Some(name) = path.file_name() else {
        return Err(refuse(path, "it does not name a file"));
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = open_checked_dir(parent)?;
    open_in(dir.as_fd(), Path::new(name), path, existing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn scratch(case: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ipc-run-safe-file-{case}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let mut perms = std::fs::metadata(&dir).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
        std::fs::set_permissions(&dir, perms).unwrap();
        dir
    }

    #[test]
    fn creates_0600_and_appends_or_replaces_our_own_file() {
        let dir = scratch("own");
        let path = dir.join("f");
        let mut f = std::fs::File::from(open_path(&path, Existing::Append).unwrap());
        f.write_all(b"one\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777,
            0o600
        );
        let mut f = std::fs::File::from(open_path(&path, Existing::Append).unwrap());
        f.write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        drop(open_path(&path, Existing::Replace).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_symlinks_fifos_and_hard_links() {
        let dir = scratch("refuse");
        let target = dir.join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("link")).unwrap();
        std::fs::hard_link(&target, dir.join("hard")).unwrap();
        nix::unistd::mkfifo(&dir.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        for name in ["link", "hard", "fifo"] {
            for existing in [Existing::Append, Existing::Replace] {
                let got = open_path(&dir.join(name), existing);
                assert!(
                    matches!(got, Err(SafeFileError::Unsafe { .. })),
                    "{name}: {got:?}"
                );
            }
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
