//! POSIX named semaphores and message queues, and the three System V IPC
//! objects, created exclusively with exact modes.
//!
//! POSIX objects honour the umask at creation, so each is re-moded through
//! an fd afterwards (`fchmod`); System V objects ignore the umask and take
//! the mode given to `*get`. Nothing here adopts an existing object: every
//! creation passes `O_EXCL` / `IPC_EXCL`.

use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// Where glibc keeps POSIX named semaphores (`sem_overview(7)`).
pub const SEM_DIR: &str = "/dev/shm";

/// Creates the POSIX named semaphore `name` (`/x`) with `value`,
/// exclusively (`sem_open(3)`); follow with [`sem_set_mode`].
pub fn sem_create(name: &CStr, mode: u32, value: u32) -> Result<(), Errno> {
    // SAFETY: `name` is NUL-terminated; the variadic arguments are the
    // mode_t and unsigned int that O_CREAT requires.
    let sem = unsafe {
        libc::sem_open(
            name.as_ptr(),
            libc::O_CREAT | libc::O_EXCL,
            mode as libc::c_uint,
            value as libc::c_uint,
        )
    };
    if sem == libc::SEM_FAILED {
        return Err(Errno::last());
    }
    // SAFETY: `sem` was returned by a successful sem_open and is closed once.
    unsafe { libc::sem_close(sem) };
    Ok(())
}

/// Sets the mode of a POSIX named semaphore to exactly `mode`.
pub fn sem_set_mode(name: &CStr, mode: u32) -> Result<(), Errno> {
    // glibc creates /dev/shm/sem.NAME through a temporary file and link(2),
    // honouring the umask: fix the mode through an fd, never by path.
    let file = sem_file(name);
    let fd = nix::fcntl::open(
        file.as_c_str(),
        OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )?;
    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode as libc::mode_t))
}

/// The file behind a POSIX named semaphore.
pub fn sem_file(name: &CStr) -> CString {
    let bare = name
        .to_bytes()
        .strip_prefix(b"/")
        .unwrap_or(name.to_bytes());
    let mut path = format!("{SEM_DIR}/sem.").into_bytes();
    path.extend_from_slice(bare);
    CString::new(path).unwrap_or_default()
}

/// Removes a POSIX named semaphore (`sem_unlink(3)`).
pub fn sem_unlink(name: &CStr) -> Result<(), Errno> {
    // SAFETY: `name` is NUL-terminated.
    Errno::result(unsafe { libc::sem_unlink(name.as_ptr()) }).map(drop)
}

/// Creates the POSIX message queue `name` exclusively with explicit
/// attributes and returns a read-write descriptor with its mode set to
/// exactly `mode` (`mq_open(3)`; nix's `None` attributes give EINVAL).
pub fn mq_create(name: &CStr, mode: u32, maxmsg: i64, msgsize: i64) -> Result<OwnedFd, Errno> {
    // SAFETY: mq_attr is plain data; all-zero is a valid value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = maxmsg as _;
    attr.mq_msgsize = msgsize as _;
    // SAFETY: `name` is NUL-terminated, `attr` lives across the call, and
    // the variadic arguments are the mode_t and mq_attr* O_CREAT requires.
    let mqd = unsafe {
        libc::mq_open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            mode as libc::mode_t,
            &mut attr as *mut libc::mq_attr,
        )
    };
    if mqd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: on Linux an mqd_t is a file descriptor, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(mqd) };
    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode as libc::mode_t))?;
    Ok(fd)
}

/// Opens an existing POSIX message queue for reading or writing (`O_CLOEXEC`).
pub fn mq_open_existing(name: &CStr, write: bool) -> Result<OwnedFd, Errno> {
    let access = if write {
        libc::O_WRONLY
    } else {
        libc::O_RDONLY
    };
    // SAFETY: `name` is NUL-terminated; without O_CREAT no variadic
    // arguments are read.
    let mqd = unsafe { libc::mq_open(name.as_ptr(), access | libc::O_CLOEXEC) };
    if mqd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: on Linux an mqd_t is a file descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(mqd) })
}

/// Removes a POSIX message queue (`mq_unlink(3)`).
pub fn mq_unlink(name: &CStr) -> Result<(), Errno> {
    // SAFETY: `name` is NUL-terminated.
    Errno::result(unsafe { libc::mq_unlink(name.as_ptr()) }).map(drop)
}

/// The three System V IPC object kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysvKind {
    /// `shmget(2)`.
    Shm,
    /// `msgget(2)`.
    Msg,
    /// `semget(2)`.
    Sem,
}

/// What identifies a System V object beyond its (reusable) id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysvIdentity {
    /// Creator's uid.
    pub cuid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Time of the last `IPC_SET`/`SETALL` or creation (seconds).
    pub ctime: i64,
    /// Creator pid (shared memory only).
    pub cpid: Option<i32>,
}

const IPC_MODE_MASK: libc::c_int = 0o777;

/// Creates a private System V shared memory segment of `size` bytes with
/// `mode` (`shmget(IPC_PRIVATE, …, IPC_CREAT|IPC_EXCL|mode)`).
pub fn shm_create(size: u64, mode: u32) -> Result<i32, Errno> {
    shm_create_keyed(libc::IPC_PRIVATE, size, mode)
}

/// [`shm_create`] under `key` (`EEXIST` when the key is taken), so that
/// the object can be found again by a key journaled before it existed.
pub fn shm_create_keyed(key: libc::key_t, size: u64, mode: u32) -> Result<i32, Errno> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode as libc::c_int & IPC_MODE_MASK);
    // SAFETY: shmget takes plain integers.
    Errno::result(unsafe { libc::shmget(key, size as libc::size_t, flags) })
}

/// The id of the existing System V object of `kind` under `key`
/// (`shmget`/`msgget`/`semget` without `IPC_CREAT`; `ENOENT` when none).
pub fn sysv_find(kind: SysvKind, key: libc::key_t) -> Result<i32, Errno> {
    // SAFETY: the *get calls take plain integers.
    let id = unsafe {
        match kind {
            SysvKind::Shm => libc::shmget(key, 0, 0),
            SysvKind::Msg => libc::msgget(key, 0),
            SysvKind::Sem => libc::semget(key, 0, 0),
        }
    };
    Errno::result(id)
}

/// Creates a private System V message queue holding `queue_bytes`
/// (`msgget` then `msgctl(IPC_SET)` of `msg_qbytes`).
pub fn msg_create(queue_bytes: u64, mode: u32) -> Result<i32, Errno> {
    msg_create_keyed(libc::IPC_PRIVATE, queue_bytes, mode)
}

/// [`msg_create`] under `key` (see [`shm_create_keyed`]).
pub fn msg_create_keyed(key: libc::key_t, queue_bytes: u64, mode: u32) -> Result<i32, Errno> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode as libc::c_int & IPC_MODE_MASK);
    // SAFETY: msgget takes plain integers.
    let id = Errno::result(unsafe { libc::msgget(key, flags) })?;
    let set = || -> Result<(), Errno> {
        let mut ds = msg_stat_raw(id)?;
        ds.msg_qbytes = queue_bytes as _;
        // SAFETY: `ds` is a valid msqid_ds filled by IPC_STAT.
        Errno::result(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) }).map(drop)
    };
    if let Err(errno) = set() {
        let _ = sysv_remove(SysvKind::Msg, id);
        return Err(errno);
    }
    Ok(id)
}

/// Creates a private System V semaphore set with one semaphore per entry of
/// `values`, set to those values (`semget` then `semctl(SETALL)`).
pub fn sem_set_create(values: &[u16], mode: u32) -> Result<i32, Errno> {
    sem_set_create_keyed(libc::IPC_PRIVATE, values, mode)
}

/// [`sem_set_create`] under `key` (see [`shm_create_keyed`]).
pub fn sem_set_create_keyed(key: libc::key_t, values: &[u16], mode: u32) -> Result<i32, Errno> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode as libc::c_int & IPC_MODE_MASK);
    let count = libc::c_int::try_from(values.len()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: semget takes plain integers.
    let id = Errno::result(unsafe { libc::semget(key, count, flags) })?;
    // SAFETY: SETALL reads one unsigned short per semaphore of the set
    // through the semun pointer, and `values` holds exactly that many.
    let rc = unsafe { libc::semctl(id, 0, libc::SETALL, values.as_ptr()) };
    if rc < 0 {
        let errno = Errno::last();
        let _ = sysv_remove(SysvKind::Sem, id);
        return Err(errno);
    }
    Ok(id)
}

fn msg_stat_raw(id: i32) -> Result<libc::msqid_ds, Errno> {
    let mut ds = MaybeUninit::<libc::msqid_ds>::zeroed();
    // SAFETY: IPC_STAT fills the msqid_ds the pointer refers to.
    Errno::result(unsafe { libc::msgctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zero-initialised and then filled by the kernel.
    Ok(unsafe { ds.assume_init() })
}

/// Messages and bytes waiting in the System V queue `id` (`IPC_STAT`'s
/// `msg_qnum` and `msg_cbytes`).
pub fn msg_waiting(id: i32) -> Result<(u64, u64), Errno> {
    let ds = msg_stat_raw(id)?;
    // Both are unsigned longs on 64-bit Linux, other widths elsewhere.
    #[allow(clippy::unnecessary_cast)]
    Ok((ds.msg_qnum as u64, ds.__msg_cbytes as u64))
}

/// Messages waiting in the POSIX queue behind the descriptor `fd`
/// (`mq_getattr(3)`'s `mq_curmsgs`).
pub fn mq_waiting(fd: std::os::fd::BorrowedFd<'_>) -> Result<u64, Errno> {
    // SAFETY: mq_attr is plain data; all-zero is a valid value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: on Linux an mqd_t is the descriptor itself, open while `fd`
    // is borrowed; `attr` lives across the call.
    Errno::result(unsafe { libc::mq_getattr(fd.as_raw_fd(), &mut attr) })?;
    Ok(u64::try_from(attr.mq_curmsgs).unwrap_or(0))
}

/// Reads the identity of a System V object (`IPC_STAT`).
pub fn sysv_stat(kind: SysvKind, id: i32) -> Result<SysvIdentity, Errno> {
    match kind {
        SysvKind::Shm => {
            let mut ds = MaybeUninit::<libc::shmid_ds>::zeroed();
            // SAFETY: IPC_STAT fills the shmid_ds the pointer refers to.
            Errno::result(unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
            // SAFETY: zero-initialised and then filled by the kernel.
            let ds = unsafe { ds.assume_init() };
            Ok(SysvIdentity {
                cuid: ds.shm_perm.cuid,
                mode: u32::from(ds.shm_perm.mode) & 0o777,
                ctime: ds.shm_ctime,
                cpid: Some(ds.shm_cpid),
            })
        }
        SysvKind::Msg => {
            let ds = msg_stat_raw(id)?;
            Ok(SysvIdentity {
                cuid: ds.msg_perm.cuid,
                mode: u32::from(ds.msg_perm.mode) & 0o777,
                ctime: ds.msg_ctime,
                cpid: None,
            })
        }
        SysvKind::Sem => {
            let mut ds = MaybeUninit::<libc::semid_ds>::zeroed();
            // SAFETY: IPC_STAT writes a semid_ds through the semun pointer.
            Errno::result(unsafe { libc::semctl(id, 0, libc::IPC_STAT, ds.as_mut_ptr()) })?;
            // SAFETY: zero-initialised and then filled by the kernel.
            let ds = unsafe { ds.assume_init() };
            Ok(SysvIdentity {
                cuid: ds.sem_perm.cuid,
                mode: u32::from(ds.sem_perm.mode) & 0o777,
                ctime: ds.sem_ctime,
                cpid: None,
            })
        }
    }
}

/// Removes a System V object (`IPC_RMID`).
pub fn sysv_remove(kind: SysvKind, id: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID ignores the buffer argument, passed as null.
    let rc = unsafe {
        match kind {
            SysvKind::Shm => libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            SysvKind::Msg => libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            SysvKind::Sem => libc::semctl(id, 0, libc::IPC_RMID),
        }
    };
    Errno::result(rc).map(drop)
}

/// Sets `fd`'s mode exactly (a thin `fchmod(2)` for any fd kind).
pub fn fchmod_exact(fd: &OwnedFd, mode: u32) -> Result<(), Errno> {
    // SAFETY: fchmod only reads the fd number; `fd` is open.
    Errno::result(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
}

/// Opens an existing POSIX message queue for the port adapters: read-only
/// or write-only, optionally `O_NONBLOCK` (the queue fd is pollable on
/// Linux, so a reader can wait with a timeout), `O_CLOEXEC`.
pub fn mq_open_port(name: &CStr, write: bool, nonblock: bool) -> Result<OwnedFd, Errno> {
    let mut flags = if write {
        libc::O_WRONLY
    } else {
        libc::O_RDONLY
    };
    if nonblock {
        flags |= libc::O_NONBLOCK;
    }
    // SAFETY: `name` is NUL-terminated; without O_CREAT no variadic
    // arguments are read.
    let mqd = unsafe { libc::mq_open(name.as_ptr(), flags | libc::O_CLOEXEC) };
    if mqd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: on Linux an mqd_t is a file descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(mqd) })
}

/// The largest message a POSIX queue holds (`mq_msgsize` of `mq_getattr`).
pub fn mq_message_size(fd: &OwnedFd) -> Result<usize, Errno> {
    // SAFETY: mq_attr is plain data; all-zero is a valid value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is an open queue descriptor and `attr` is writable.
    Errno::result(unsafe { libc::mq_getattr(fd.as_raw_fd(), &mut attr) })?;
    Ok(attr.mq_msgsize as usize)
}

/// Sends one message with priority 0 (`mq_send(3)`), retrying on `EINTR`.
pub fn mq_send(fd: &OwnedFd, message: &[u8]) -> Result<(), Errno> {
    loop {
        // SAFETY: pointer and length describe `message`, which outlives
        // the call.
        let rc =
            unsafe { libc::mq_send(fd.as_raw_fd(), message.as_ptr().cast(), message.len(), 0) };
        match Errno::result(rc) {
            Err(Errno::EINTR) => continue,
            other => return other.map(drop),
        }
    }
}

/// Receives one message into `buf` (whose length must be at least the
/// queue's message size) and returns its length (`mq_receive(3)`).
pub fn mq_receive(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: pointer and length describe the writable slice `buf`; a null
    // priority pointer is allowed.
    let n = unsafe {
        libc::mq_receive(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            std::ptr::null_mut(),
        )
    };
    Errno::result(n).map(|n| n as usize)
}

/// Bytes in front of a System V message's text: its `long mtype`.
pub const MSG_TYPE_LEN: usize = std::mem::size_of::<libc::c_long>();

/// Sends `frame` on System V queue `id` (`msgsnd(2)`): `frame` starts with
/// a native `long` message type (> 0) and the text follows it. Retries on
/// `EINTR`.
pub fn msg_send(id: i32, frame: &[u8]) -> Result<(), Errno> {
    if frame.len() < MSG_TYPE_LEN {
        return Err(Errno::EINVAL);
    }
    loop {
        // SAFETY: `frame` holds the mtype and `len - MSG_TYPE_LEN` bytes of
        // text, exactly what msgsnd reads; it is only read.
        let rc = unsafe { libc::msgsnd(id, frame.as_ptr().cast(), frame.len() - MSG_TYPE_LEN, 0) };
        match Errno::result(rc) {
            Err(Errno::EINTR) => continue,
            other => return other.map(drop),
        }
    }
}

/// Receives the first message of System V queue `id` into `frame` (the
/// mtype, then at most `frame.len() - MSG_TYPE_LEN` bytes of text) and
/// returns the text's length (`msgrcv(2)`, any type). `nowait` adds
/// `IPC_NOWAIT` (`ENOMSG` when empty); a longer message is `E2BIG`.
pub fn msg_receive(id: i32, frame: &mut [u8], nowait: bool) -> Result<usize, Errno> {
    if frame.len() < MSG_TYPE_LEN {
        return Err(Errno::EINVAL);
    }
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    // SAFETY: `frame` is writable for the mtype plus the text length passed.
    let n = unsafe {
        libc::msgrcv(
            id,
            frame.as_mut_ptr().cast(),
            frame.len() - MSG_TYPE_LEN,
            0,
            flags,
        )
    };
    Errno::result(n).map(|n| n as usize)
}
