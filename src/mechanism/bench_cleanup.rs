//! What the bench created, so that it is removed at the end, on Ctrl-C
//! (SIGINT, SIGTERM, SIGHUP) and when a peer hangs.
//!
//! Every named object is registered (under the registry's lock) as it is
//! created and deregistered as its guard removes it. A watcher thread waits
//! for the termination signals, which every thread keeps blocked, with
//! `sigtimedwait`; on one it kills the current peer, removes everything
//! still registered and tells the bench's main thread how it [`End`]ed. It
//! also enforces each measurement's deadline: past it the peer is killed,
//! and if the bench is still stuck a little later (a peer that died cannot
//! unblock a queue receive), it cleans up and reports that it gave up,
//! rather than hang.

use std::ffi::CString;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;

use crate::sys::ipc::SysvKind;

/// A named object the bench made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A POSIX message queue name.
    PosixMq(CString),
    /// A System V message queue id.
    SysvMsg(i32),
    /// A POSIX shared memory object name.
    PosixShm(CString),
    /// A FIFO or socket in the private directory.
    File(PathBuf),
    /// The private directory (removed with everything in it).
    Dir(PathBuf),
}

impl Object {
    fn remove(&self) {
        let result = match self {
            Object::PosixMq(name) => crate::sys::ipc::mq_unlink(name).map_err(|e| e.to_string()),
            Object::SysvMsg(id) => {
                crate::sys::ipc::sysv_remove(SysvKind::Msg, *id).map_err(|e| e.to_string())
            }
            Object::PosixShm(name) => {
                nix::sys::mman::shm_unlink(name.as_c_str()).map_err(|e| e.to_string())
            }
            Object::File(path) => match std::fs::remove_file(path) {
                // A socket path is registered before bind creates it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other.map_err(|e| e.to_string()),
            },
            Object::Dir(path) => std::fs::remove_dir_all(path).map_err(|e| e.to_string()),
        };
        if let Err(error) = result {
            tracing::warn!(target: LOG_TARGET, "could not remove {self}: {error}");
        } else {
            tracing::debug!(target: LOG_TARGET, "removed {self}");
        }
    }
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::PosixMq(name) => write!(f, "posix-mq {}", name.to_string_lossy()),
            Object::SysvMsg(id) => write!(f, "sysv-mq id={id}"),
            Object::PosixShm(name) => write!(f, "posix-shm {}", name.to_string_lossy()),
            Object::File(path) => write!(f, "file {}", path.display()),
            Object::Dir(path) => write!(f, "directory {}", path.display()),
        }
    }
}

#[derive(Debug, Default)]
struct Registry {
    objects: Vec<Object>,
    peer: Option<Pid>,
    /// When the current measurement must be over.
    deadline: Option<Instant>,
    /// When the peer was killed for missing the deadline.
    killed_at: Option<Instant>,
    what: String,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    objects: Vec::new(),
    peer: None,
    deadline: None,
    killed_at: None,
    what: String::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes its object when dropped.
#[derive(Debug)]
pub struct Guard(Object);

impl Drop for Guard {
    fn drop(&mut self) {
        let mut reg = registry();
        if let Some(at) = reg.objects.iter().position(|o| *o == self.0) {
            reg.objects.remove(at);
            self.0.remove();
        }
    }
}

/// Creates an object with `create` under the registry's lock, so that a
/// signal arriving meanwhile cannot miss it, and registers it.
pub fn create<T, E>(create: impl FnOnce() -> Result<(T, Object), E>) -> Result<(T, Guard), E> {
    let mut reg = registry();
    let (value, object) = create()?;
    tracing::debug!(target: LOG_TARGET, "created {object}");
    reg.objects.push(object.clone());
    Ok((value, Guard(object)))
}

/// Records the running peer and the deadline of the current measurement.
pub fn watch_peer(pid: Pid, deadline: Instant, what: &str) {
    let mut reg = registry();
    reg.peer = Some(pid);
    reg.deadline = Some(deadline);
    reg.killed_at = None;
    reg.what = what.to_owned();
}

/// The peer has been reaped: nothing to kill any more.
pub fn peer_gone() {
    let mut reg = registry();
    reg.peer = None;
    reg.deadline = None;
    reg.killed_at = None;
}

/// The signals that end the bench early.
pub fn termination_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set
}

/// The log target of the bench's objects, the module path they were
/// logged under before they moved here (`IPC_RUN_LOG=ipc_run::bench=debug`).
const LOG_TARGET: &str = "ipc_run::bench::cleanup";

/// How long after killing a late peer the bench gives up.
const GRACE: Duration = Duration::from_secs(3);

/// How the bench ended, as its main thread learns it; `E` is the bench's
/// error, which a finished run reports.
#[derive(Debug)]
pub enum End<E> {
    /// The measurements are done and the report written (or not).
    Finished(Result<(), E>),
    /// A termination signal came; every object was removed.
    Interrupted {
        /// The signal.
        signal: Signal,
        /// How many objects were removed.
        removed: usize,
    },
    /// A killed peer still left the bench stuck; every object was removed.
    GaveUp {
        /// The measurement that hung.
        what: String,
        /// How many objects were removed.
        removed: usize,
    },
}

/// Starts the watcher thread, which sends on `ends` when it ends the
/// bench. The termination signals must already be blocked in the calling
/// thread, so the watcher and every later thread inherit the mask.
pub fn start_watcher<E: Send + 'static>(ends: Sender<End<E>>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("bench-watch".into())
        .spawn(move || {
            let _ = ends.send(watch());
        })
        .map(drop)
}

/// Watches until the bench must end early; the registry stays locked from
/// then on, so nothing new is created.
fn watch<E>() -> End<E> {
    let set = termination_signals();
    loop {
        match crate::sys::bench::sigtimedwait(&set, Duration::from_millis(100)) {
            Ok(Some(signal)) => {
                let removed = clean_all();
                return End::Interrupted { signal, removed };
            }
            Ok(None) => {}
            Err(errno) => {
                tracing::warn!(target: LOG_TARGET, "sigtimedwait failed: {errno}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let mut reg = registry();
        let now = Instant::now();
        match (reg.deadline, reg.killed_at, reg.peer) {
            (Some(deadline), None, Some(pid)) if now > deadline => {
                tracing::warn!(target: LOG_TARGET, "the peer for {} is late; killing it", reg.what);
                let _ = kill(pid, Signal::SIGKILL);
                reg.killed_at = Some(now);
            }
            (_, Some(killed), _) if now > killed + GRACE => {
                let what = reg.what.clone();
                drop(reg);
                let removed = clean_all();
                return End::GaveUp { what, removed };
            }
            _ => {}
        }
    }
}

/// Kills the peer and removes every registered object; returns how many.
/// The lock stays held until the process exits, so nothing new is created.
fn clean_all() -> usize {
    let mut reg = registry();
    if let Some(pid) = reg.peer.take() {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let objects = std::mem::take(&mut reg.objects);
    // Innermost first: the directory goes last.
    for object in objects.iter().rev() {
        object.remove();
    }
    // Keep the lock until the process exits.
    std::mem::forget(reg);
    objects.len()
}
