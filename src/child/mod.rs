//! The child side: helpers for a Rust program that runs under ipc-run.
//!
//! ipc-run describes each named port in an environment variable
//! `IPC_PORT_<NAME>` (name upper-cased, `-` as `_`) holding space-separated
//! `key=value` pairs, e.g. `kind=pipe channel=frames end=write fd=3`. Ports
//! handed over as fds also have `fd=N`; named objects carry `path=` or
//! `name=`, sizes `size=`. Readiness is told with [`notify_ready`], socket
//! activation read with [`listen_fds`]. Inherited fds are adopted once each
//! (see `sys::inherited`), and made close-on-exec.
//!
//! ```no_run
//! let mut port = ipc_run::child::port("frames")?;
//! let fd = port.fd().expect("frames is handed over as an fd");
//! ipc_run::child::notify_ready()?;
//! # Ok::<(), ipc_run::child::ChildError>(())
//! ```

pub mod ring;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

/// Why a port or protocol variable could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// The variable is not set: the program is not run by ipc-run, or the
    /// port is not wired.
    #[error("{0} is not set (is this process run by ipc-run with that port wired?)")]
    Missing(String),
    /// The variable is malformed.
    #[error("{var} is malformed: {why}")]
    Malformed {
        /// The variable.
        var: String,
        /// What is wrong.
        why: String,
    },
    /// Telling readiness failed.
    #[error("failed to notify readiness: {0}")]
    Notify(#[source] std::io::Error),
}

/// One port, as described by its environment variable.
#[derive(Debug)]
pub struct Port {
    name: String,
    pairs: BTreeMap<String, String>,
    fd: Option<RawFd>,
}

/// The environment variable naming port `name`.
pub fn port_variable(name: &str) -> String {
    format!("IPC_PORT_{}", name.to_ascii_uppercase().replace('-', "_"))
}

/// Reads port `name` from the environment.
pub fn port(name: &str) -> Result<Port, ChildError> {
    let var = port_variable(name);
    let value = std::env::var(&var).map_err(|_| ChildError::Missing(var.clone()))?;
    Port::parse(name, &var, &value)
}

impl Port {
    /// Parses the value of a port variable (`var` is used in messages).
    pub fn parse(name: &str, var: &str, value: &str) -> Result<Port, ChildError> {
        let malformed = |why: String| ChildError::Malformed {
            var: var.to_owned(),
            why,
        };
        let mut pairs = BTreeMap::new();
        for item in value.split_ascii_whitespace() {
            let (key, val) = item
                .split_once('=')
                .ok_or_else(|| malformed(format!("`{item}` is not key=value")))?;
            if key.is_empty() {
                return Err(malformed(format!("`{item}` has an empty key")));
            }
            if pairs.insert(key.to_owned(), val.to_owned()).is_some() {
                return Err(malformed(format!("`{key}` appears twice")));
            }
        }
        if !pairs.contains_key("kind") {
            return Err(malformed("no `kind=`".into()));
        }
        let fd = match pairs.get("fd") {
            None => None,
            Some(text) => Some(
                text.parse::<RawFd>()
                    .ok()
                    .filter(|&fd| fd >= 0)
                    .ok_or_else(|| malformed(format!("fd `{text}` is not an fd number")))?,
            ),
        };
        Ok(Port {
            name: name.to_owned(),
            pairs,
            fd,
        })
    }

    /// The port's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mechanism: `pipe`, `fifo`, `socketpair`, `posix-mq`, ...
    pub fn kind(&self) -> &str {
        self.get("kind").unwrap_or_default()
    }

    /// Which end this process holds: `read`, `write`, `both`, `listen`, ...
    pub fn end(&self) -> Option<&str> {
        self.get("end")
    }

    /// Path of a FIFO or Unix socket.
    pub fn path(&self) -> Option<&str> {
        self.get("path")
    }

    /// Size in bytes (shared memory).
    pub fn size(&self) -> Option<u64> {
        self.get("size").and_then(|s| s.parse().ok())
    }

    /// Any other key (`name`, `address`, `signo`, `depth`, ...).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.get(key).map(String::as_str)
    }

    /// The fd number, if the port is handed over as an fd.
    pub fn fd_number(&self) -> Option<RawFd> {
        self.fd
    }

    /// Takes ownership of the port's fd; `None` if it has none, was taken
    /// already, or is not open in this process.
    pub fn fd(&mut self) -> Option<OwnedFd> {
        let fd = self.fd.take()?;
        take_fd(fd)
    }
}

/// Takes ownership of an inherited fd after checking that it is open.
/// Each fd number is adopted at most once per process, however many
/// `Port`s name it, so no fd gets two owners.
fn take_fd(fd: RawFd) -> Option<OwnedFd> {
    static TAKEN: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());
    let mut taken = TAKEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if taken.contains(&fd) {
        return None;
    }
    let owned = crate::sys::inherited::adopt_inherited_fd(fd)?;
    taken.insert(fd);
    Some(owned)
}

/// Tells ipc-run the process is ready: `READY=1` to `$NOTIFY_SOCKET` when
/// set, and a newline to `$IPC_RUN_READY_FD` when set. Does nothing when
/// neither is (the process is not run with a readiness protocol). The
/// readiness fd is written once and closed; later calls only use the socket.
pub fn notify_ready() -> Result<(), ChildError> {
    notify("READY=1")
}

/// Sends an sd_notify message (`READY=1`, `STATUS=...`) to
/// `$NOTIFY_SOCKET`; `READY=1` also writes the readiness-fd newline.
pub fn notify(message: &str) -> Result<(), ChildError> {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        let socket = UnixDatagram::unbound().map_err(ChildError::Notify)?;
        socket
            .send_to(message.as_bytes(), path)
            .map_err(ChildError::Notify)?;
    }
    if message.lines().any(|l| l == "READY=1")
        && let Ok(text) = std::env::var("IPC_RUN_READY_FD")
    {
        let fd: RawFd = text.parse().map_err(|_| ChildError::Malformed {
            var: "IPC_RUN_READY_FD".into(),
            why: format!("`{text}` is not an fd number"),
        })?;
        if let Some(owned) = take_fd(fd) {
            let mut file = std::fs::File::from(owned);
            file.write_all(b"\n").map_err(ChildError::Notify)?;
        }
    }
    Ok(())
}

/// Socket-activation fds (systemd's `LISTEN_FDS` protocol).
#[derive(Debug)]
pub struct ListenFd {
    /// The name from `LISTEN_FDNAMES` (`unknown` when absent).
    pub name: String,
    /// The fd.
    pub fd: OwnedFd,
}

/// Takes the socket-activation fds: `LISTEN_FDS` fds from 3, named by
/// `LISTEN_FDNAMES`, only when `LISTEN_PID` is this process. The fds are
/// made close-on-exec; a second call returns the fds no longer available
/// as an error.
pub fn listen_fds() -> Result<Vec<ListenFd>, ChildError> {
    let Some(names) = parse_listen_env(
        std::env::var("LISTEN_PID").ok().as_deref(),
        std::env::var("LISTEN_FDS").ok().as_deref(),
        std::env::var("LISTEN_FDNAMES").ok().as_deref(),
        std::process::id(),
    )?
    else {
        return Ok(Vec::new());
    };
    let mut fds = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let fd = 3 + i as RawFd;
        let fd = take_fd(fd).ok_or_else(|| ChildError::Malformed {
            var: "LISTEN_FDS".into(),
            why: format!("fd {fd} is not open"),
        })?;
        fds.push(ListenFd { name, fd });
    }
    Ok(fds)
}

/// The names of the activation fds, or `None` when they are not for this
/// process (`LISTEN_PID` unset or another pid).
fn parse_listen_env(
    pid: Option<&str>,
    count: Option<&str>,
    names: Option<&str>,
    own_pid: u32,
) -> Result<Option<Vec<String>>, ChildError> {
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(None);
    };
    if pid.parse::<u32>().ok() != Some(own_pid) {
        return Ok(None);
    }
    let count: usize = count.parse().map_err(|_| ChildError::Malformed {
        var: "LISTEN_FDS".into(),
        why: format!("`{count}` is not a number"),
    })?;
    let mut list: Vec<String> = names
        .map(|n| n.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    if names.is_some() && list.len() != count {
        return Err(ChildError::Malformed {
            var: "LISTEN_FDNAMES".into(),
            why: format!("{} names for {count} fds", list.len()),
        });
    }
    list.resize(count, "unknown".into());
    Ok(Some(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names() {
        assert_eq!(port_variable("frames"), "IPC_PORT_FRAMES");
        assert_eq!(port_variable("raw-in"), "IPC_PORT_RAW_IN");
    }

    #[test]
    fn parses_pairs() {
        let port = Port::parse(
            "frames",
            "IPC_PORT_FRAMES",
            "kind=posix-shm channel=e0 end=both name=/ipc-run-1-e0 size=1048576 fd=5",
        )
        .unwrap();
        assert_eq!(port.name(), "frames");
        assert_eq!(port.kind(), "posix-shm");
        assert_eq!(port.end(), Some("both"));
        assert_eq!(port.size(), Some(1 << 20));
        assert_eq!(port.get("name"), Some("/ipc-run-1-e0"));
        assert_eq!(port.fd_number(), Some(5));
        assert_eq!(port.path(), None);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "end=write",
            "kind=pipe fd=x",
            "kind=pipe fd=-1",
            "kind=pipe junk",
            "kind=pipe =x",
            "kind=pipe kind=fifo",
        ] {
            assert!(
                matches!(
                    Port::parse("p", "IPC_PORT_P", bad),
                    Err(ChildError::Malformed { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn listen_env() {
        assert_eq!(parse_listen_env(None, Some("1"), None, 7).unwrap(), None);
        assert_eq!(
            parse_listen_env(Some("8"), Some("1"), None, 7).unwrap(),
            None
        );
        assert_eq!(
            parse_listen_env(Some("7"), Some("2"), Some("a:b"), 7).unwrap(),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            parse_listen_env(Some("7"), Some("2"), None, 7).unwrap(),
            Some(vec!["unknown".to_owned(), "unknown".to_owned()])
        );
        assert!(parse_listen_env(Some("7"), Some("2"), Some("a"), 7).is_err());
        assert!(parse_listen_env(Some("7"), Some("x"), None, 7).is_err());
    }
}
