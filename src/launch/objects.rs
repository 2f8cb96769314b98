//! Named objects a run creates: their journal lines and their removal.
//!
//! The journal (`{run_dir}/journal`) has one line per object, written and
//! synced *before* the object is created. A System V object's id is picked
//! by the kernel, so it is created under a random key journaled first (the
//! `sysv-key` line, with the mode and the time of the intent), and its id is
//! journaled right after creation with that key: a crash between the two
//! leaves an object `ipc-run clean` finds by its key. Lines:
//!
//! ```text
//! fifo frames.fifo                       file in the run directory
//! unix-socket api.sock                   file in the run directory
//! posix-shm /ipc-run-0123456789abcdef-frames
//! posix-mq /ipc-run-0123456789abcdef-jobs
//! posix-sem /ipc-run-0123456789abcdef-frames-lock
//! sysv-key 0x5c1f00d3 of=sysv-shm mode=600 since=1764151234
//! sysv-shm 32769 cuid=0 mode=600 ctime=1764151234 cpid=4242 key=0x5c1f00d3
//! sysv-key 0x0be3a9c1 of=sysv-mq mode=600 since=1764151234
//! sysv-mq 3 cuid=0 mode=600 ctime=1764151234 key=0x0be3a9c1
//! sysv-key 0x7d2e4410 of=sysv-sem mode=600 since=1764151234
//! sysv-sem 5 cuid=0 mode=600 ctime=1764151234 key=0x7d2e4410
//! ```
//!
//! A run's children are journaled as they start, each the leader of its
//! process group (not synced: a process does not outlive a power loss):
//!
//! ```text
//! process-group 4242 start=987654       pid = pgid, start time in ticks
//! cgroup /sys/fs/cgroup/user.slice/ipc-run-0123456789abcdef
//! ```
//!
//! The `cgroup` line (the run's own cgroup, where one can be made: see
//! `launch/cgroup.rs`) is synced before the cgroup is made.
//!
//! A `sysv-key` line whose key an id line also carries is that object's; alone,
//! it is removed by key only while the object there has our uid as creator,
//! the journaled mode and a ctime not before the intent.
//!
//! Removal never follows a symlink: files are removed with `unlinkat` on the
//! run directory's fd (a name is one path component), POSIX objects by name
//! (their namespaces are flat), System V objects by id only while the
//! object still has the recorded creator (and, for `ipc-run clean`, the
//! recorded ctime and creator pid where the kernel keeps them).

use std::ffi::CString;
use std::fmt;
use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{SFlag, fstatat};
use nix::unistd::UnlinkatFlags;

use crate::mechanism::Kind;
use crate::sys::ipc::{self, SysvIdentity, SysvKind};

/// The journal's word for a socket file (not a mechanism: unix-listener
/// and rpc edges both make one).
const UNIX_SOCKET: &str = "unix-socket";
/// The journal's words for what is not a mechanism's object: the run's
/// cgroup, a child's process group, a System V key journaled before its
/// object.
const CGROUP: &str = "cgroup";
const PROCESS_GROUP: &str = "process-group";
const SYSV_KEY: &str = "sysv-key";
/// The journal's word for a regular file a run writes in its directory (a
/// managed broker's configuration).
const RUN_FILE: &str = "file";

/// A named object created by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectRecord {
    /// A FIFO: its file name in the run directory.
    Fifo(String),
    /// A socket file: its file name in the run directory.
    UnixSocket(String),
    /// A regular file: its file name in the run directory.
    File(String),
    /// A POSIX shared memory object.
    PosixShm(String),
    /// A POSIX message queue.
    PosixMq(String),
    /// A POSIX named semaphore.
    PosixSem(String),
    /// A System V object, by kind, id and identity at creation.
    Sysv {
        /// Which kind.
        kind: SysvKind,
        /// Its id.
        id: i32,
        /// Its identity when created.
        identity: SysvIdentity,
        /// The key it was created under (`None`: `IPC_PRIVATE`).
        key: Option<i32>,
    },
    /// A process group a run's child leads (its pid), with the leader's
    /// start time (`/proc/PID/stat`), so a reused pid is not taken for it.
    ProcessGroup {
        /// The group id (the child's pid).
        pgid: i32,
        /// The leader's start time, in clock ticks after boot.
        start: u64,
    },
    /// The run's cgroup (an absolute path in a cgroup v2 mount).
    Cgroup(String),
    /// A System V object about to be created under `key`.
    SysvKey {
        /// Which kind.
        kind: SysvKind,
        /// The key.
        key: i32,
        /// The mode it gets.
        mode: u32,
        /// When the intent was journaled (seconds since the epoch).
        since: i64,
    },
}

/// How strictly a System V object must match its record before removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Same creator uid and mode (this run's own cleanup).
    Creator,
    /// Also the same ctime and creator pid where kept (`ipc-run clean`).
    Strict,
}

impl ObjectRecord {
    /// The kind as written in plans and the journal.
    pub fn kind(&self) -> &'static str {
        match self {
            ObjectRecord::Fifo(_) => Kind::Fifo.as_str(),
            ObjectRecord::UnixSocket(_) => UNIX_SOCKET,
            ObjectRecord::File(_) => RUN_FILE,
            ObjectRecord::PosixShm(_) => Kind::PosixShm.as_str(),
            ObjectRecord::PosixMq(_) => Kind::PosixMq.as_str(),
            ObjectRecord::PosixSem(_) => Kind::PosixSem.as_str(),
            ObjectRecord::Sysv { kind, .. } => sysv_kind_name(*kind),
            ObjectRecord::ProcessGroup { .. } => PROCESS_GROUP,
            ObjectRecord::Cgroup(_) => CGROUP,
            ObjectRecord::SysvKey { .. } => SYSV_KEY,
        }
    }

    /// Name, file name or id.
    pub fn name(&self) -> String {
        match self {
            ObjectRecord::Fifo(n)
            | ObjectRecord::UnixSocket(n)
            | ObjectRecord::File(n)
            | ObjectRecord::PosixShm(n)
            | ObjectRecord::PosixMq(n)
            | ObjectRecord::PosixSem(n)
            | ObjectRecord::Cgroup(n) => n.clone(),
            ObjectRecord::Sysv { id, .. } => id.to_string(),
            ObjectRecord::SysvKey { key, .. } => format_key(*key),
            ObjectRecord::ProcessGroup { pgid, .. } => pgid.to_string(),
        }
    }

    /// The journal line, without the newline.
    pub fn journal_line(&self) -> String {
        match self {
            ObjectRecord::Sysv { identity, key, .. } => {
                let mut line = format!(
                    "{} {} cuid={} mode={:o} ctime={}",
                    self.kind(),
                    self.name(),
                    identity.cuid,
                    identity.mode,
                    identity.ctime
                );
                if let Some(cpid) = identity.cpid {
                    line.push_str(&format!(" cpid={cpid}"));
                }
                if let Some(key) = key {
                    line.push_str(&format!(" key={}", format_key(*key)));
                }
                line
            }
            ObjectRecord::ProcessGroup { start, .. } => {
                format!("{} {} start={start}", self.kind(), self.name())
            }
            ObjectRecord::SysvKey {
                kind, mode, since, ..
            } => {
                format!(
                    "{} {} of={} mode={mode:o} since={since}",
                    self.kind(),
                    self.name(),
                    sysv_kind_name(*kind)
                )
            }
            _ => format!("{} {}", self.kind(), self.name()),
        }
    }

    /// Parses a journal line; `None` for anything unexpected (ignored, so a
    /// damaged journal never leads to removing something unintended).
    pub fn parse(line: &str) -> Option<ObjectRecord> {
        let mut words = line.split_ascii_whitespace();
        let kind = words.next()?;
        let name = words.next()?.to_owned();
        let file_name_ok = |n: &str| !n.contains('/') && n != "." && n != ".." && !n.is_empty();
        let posix_name_ok = |n: &str| n.starts_with('/') && file_name_ok(&n[1..]);
        match kind {
            UNIX_SOCKET => return file_name_ok(&name).then_some(ObjectRecord::UnixSocket(name)),
            RUN_FILE => return file_name_ok(&name).then_some(ObjectRecord::File(name)),
            CGROUP => return name.starts_with('/').then_some(ObjectRecord::Cgroup(name)),
            PROCESS_GROUP => {
                let pgid: i32 = name.parse().ok()?;
                let start = words.next()?.strip_prefix("start=")?.parse().ok()?;
                return (pgid > 1).then_some(ObjectRecord::ProcessGroup { pgid, start });
            }
            SYSV_KEY => return parse_sysv_key(&name, words),
            _ => {}
        }
        let sysv = |kind: SysvKind| -> Option<ObjectRecord> {
            let id = name.parse().ok()?;
            let (identity, key) = parse_identity(words)?;
            Some(ObjectRecord::Sysv {
                kind,
                id,
                identity,
                key,
            })
        };
        match Kind::from_name(kind)? {
            Kind::Fifo if file_name_ok(&name) => Some(ObjectRecord::Fifo(name)),
            Kind::PosixShm if posix_name_ok(&name) => Some(ObjectRecord::PosixShm(name)),
            Kind::PosixMq if posix_name_ok(&name) => Some(ObjectRecord::PosixMq(name)),
            Kind::PosixSem if posix_name_ok(&name) => Some(ObjectRecord::PosixSem(name)),
            Kind::SysvShm => sysv(SysvKind::Shm),
            Kind::SysvMq => sysv(SysvKind::Msg),
            Kind::SysvSem => sysv(SysvKind::Sem),
            _ => None,
        }
    }

    /// Whether the object could be one the run `run_id` created: a POSIX
    /// name carries `/ipc-run.<run_id>.`, and a FIFO or socket file is
    /// still a FIFO or a socket (not a symlink or a file planted under its
    /// name). A damaged or forged journal then never makes `ipc-run clean`
    /// remove something that run did not make. An object already gone
    /// passes (its removal reports it gone).
    pub fn is_plausibly_from(&self, run_id: &str, run_dir: BorrowedFd<'_>) -> bool {
        let posix_ok = |name: &str| {
            name.strip_prefix("/ipc-run.")
                .and_then(|rest| rest.strip_prefix(run_id))
                .is_some_and(|rest| rest.len() > 1 && rest.starts_with('.'))
        };
        let file_is =
            |name: &str, kind: SFlag| match fstatat(run_dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == kind,
                Err(_) => true,
            };
        match self {
            ObjectRecord::Fifo(name) => file_is(name, SFlag::S_IFIFO),
            ObjectRecord::UnixSocket(name) => file_is(name, SFlag::S_IFSOCK),
            ObjectRecord::File(name) => file_is(name, SFlag::S_IFREG),
            ObjectRecord::PosixShm(name)
            | ObjectRecord::PosixMq(name)
            | ObjectRecord::PosixSem(name) => posix_ok(name),
            ObjectRecord::Cgroup(path) => {
                super::cgroup::is_plausibly_of(std::path::Path::new(path), run_id)
            }
            ObjectRecord::Sysv { .. }
            | ObjectRecord::SysvKey { .. }
            | ObjectRecord::ProcessGroup { .. } => true,
        }
    }

    /// Removes the object. `Ok(false)` when it was already gone or is no
    /// longer the object recorded (left alone).
    pub fn remove(&self, run_dir: BorrowedFd<'_>, strictness: Match) -> Result<bool, Errno> {
        let gone = |r: Result<(), Errno>| match r {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) | Err(Errno::EINVAL) | Err(Errno::EIDRM) => Ok(false),
            Err(e) => Err(e),
        };
        match self {
            ObjectRecord::Fifo(name)
            | ObjectRecord::UnixSocket(name)
            | ObjectRecord::File(name) => gone(nix::unistd::unlinkat(
                run_dir,
                name.as_str(),
                UnlinkatFlags::NoRemoveDir,
            )),
            ObjectRecord::PosixShm(name) => gone(nix::sys::mman::shm_unlink(name.as_str())),
            ObjectRecord::PosixMq(name) => gone(ipc::mq_unlink(&c_name(name)?)),
            ObjectRecord::PosixSem(name) => gone(ipc::sem_unlink(&c_name(name)?)),
            // A run's own children are its supervisor's business; only
            // `clean` kills what a dead run left.
            ObjectRecord::ProcessGroup { .. } | ObjectRecord::Cgroup(_)
                if strictness == Match::Creator =>
            {
                Ok(false)
            }
            ObjectRecord::Cgroup(path) => {
                super::cgroup::kill_and_remove(std::path::Path::new(path))
            }
            ObjectRecord::ProcessGroup { pgid, start } => {
                super::run_dir::kill_process_group(*pgid, *start)
            }
            ObjectRecord::SysvKey {
                kind,
                key,
                mode,
                since,
            } => {
                let id = match ipc::sysv_find(*kind, *key) {
                    Ok(id) => id,
                    Err(Errno::ENOENT) | Err(Errno::EIDRM) => return Ok(false),
                    Err(e) => return Err(e),
                };
                let now = match ipc::sysv_stat(*kind, id) {
                    Ok(now) => now,
                    Err(Errno::EINVAL) | Err(Errno::EIDRM) => return Ok(false),
                    Err(e) => return Err(e),
                };
                if now.cuid != nix::unistd::Uid::effective().as_raw()
                    || now.mode != *mode
                    || now.ctime < *since
                {
                    return Ok(false);
                }
                gone(ipc::sysv_remove(*kind, id))
            }
            ObjectRecord::Sysv {
                kind, id, identity, ..
            } => {
                let now = match ipc::sysv_stat(*kind, *id) {
                    Ok(now) => now,
                    Err(Errno::EINVAL) | Err(Errno::EIDRM) => return Ok(false),
                    Err(e) => return Err(e),
                };
                let same = now.cuid == identity.cuid
                    && now.mode == identity.mode
                    && (strictness == Match::Creator
                        || (now.cpid == identity.cpid
                            && (*kind == SysvKind::Sem || now.ctime == identity.ctime)));
                if !same {
                    return Ok(false);
                }
                gone(ipc::sysv_remove(*kind, *id))
            }
        }
    }
}

impl fmt::Display for ObjectRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.name())
    }
}

fn sysv_kind_name(kind: SysvKind) -> &'static str {
    match kind {
        SysvKind::Shm => Kind::SysvShm,
        SysvKind::Msg => Kind::SysvMq,
        SysvKind::Sem => Kind::SysvSem,
    }
    .as_str()
}

/// The identity words of a System V journal line (`cuid=` required).
/// `sysv-key KEY of=KIND mode=M since=T`, after the first two words.
fn parse_sysv_key<'a>(name: &str, words: impl Iterator<Item = &'a str>) -> Option<ObjectRecord> {
    let key = parse_key(name)?;
    let (mut kind, mut mode, mut since) = (None, None, None);
    for word in words {
        match word.split_once('=')? {
            ("of", value) => {
                kind = Some(match Kind::from_name(value)? {
                    Kind::SysvShm => SysvKind::Shm,
                    Kind::SysvMq => SysvKind::Msg,
                    Kind::SysvSem => SysvKind::Sem,
                    _ => return None,
                })
            }
            ("mode", value) => mode = Some(u32::from_str_radix(value, 8).ok()?),
            ("since", value) => since = Some(value.parse().ok()?),
            _ => {}
        }
    }
    Some(ObjectRecord::SysvKey {
        kind: kind?,
        key,
        mode: mode?,
        since: since?,
    })
}

/// The identity fields of a System V id line, and its `key=` if any.
fn parse_identity<'a>(words: impl Iterator<Item = &'a str>) -> Option<(SysvIdentity, Option<i32>)> {
    let mut identity = SysvIdentity {
        cuid: u32::MAX,
        mode: 0,
        ctime: 0,
        cpid: None,
    };
    let mut seen_cuid = false;
    let mut sysv_key = None;
    for word in words {
        let (key, value) = word.split_once('=')?;
        match key {
            "cuid" => {
                identity.cuid = value.parse().ok()?;
                seen_cuid = true;
            }
            "mode" => identity.mode = u32::from_str_radix(value, 8).ok()?,
            "ctime" => identity.ctime = value.parse().ok()?,
            "cpid" => identity.cpid = Some(value.parse().ok()?),
            "key" => sysv_key = Some(parse_key(value)?),
            _ => {}
        }
    }
    if !seen_cuid {
        return None;
    }
    Some((identity, sysv_key))
}

fn format_key(key: i32) -> String {
    format!("{:#010x}", key as u32)
}

fn parse_key(text: &str) -> Option<i32> {
    let hex = text.strip_prefix("0x")?;
    u32::from_str_radix(hex, 16).ok().map(|k| k as i32)
}

fn c_name(name: &str) -> Result<CString, Errno> {
    CString::new(name).map_err(|_| Errno::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_lines_round_trip() {
        let records = [
            ObjectRecord::Fifo("a.fifo".into()),
            ObjectRecord::PosixShm("/ipc-run-0011223344556677-x".into()),
            ObjectRecord::Sysv {
                kind: SysvKind::Shm,
                id: 32769,
                identity: SysvIdentity {
                    cuid: 0,
                    mode: 0o600,
                    ctime: 17,
                    cpid: Some(42),
                },
                key: Some(-7),
            },
            ObjectRecord::ProcessGroup {
                pgid: 4242,
                start: 987654,
            },
            ObjectRecord::SysvKey {
                kind: SysvKind::Sem,
                key: 0x5c1f00d3,
                mode: 0o640,
                since: 1764151234,
            },
        ];
        for record in records {
            assert_eq!(ObjectRecord::parse(&record.journal_line()), Some(record));
        }
    }

    #[test]
    fn journal_lines_that_could_escape_are_ignored() {
        for line in [
            "fifo ../x",
            "fifo /etc/passwd",
            "posix-shm /a/b",
            "unix-socket ..",
            "sysv-shm 3",
            "process-group 1 start=5",
            "process-group -7 start=5",
            "process-group 42",
        ] {
            assert_eq!(ObjectRecord::parse(line), None, "{line}");
        }
    }
}
