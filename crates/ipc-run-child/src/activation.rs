//! Socket activation: systemd's `LISTEN_FDS` protocol
//! (`sd_listen_fds(3)`), which ipc-run follows for listeners it binds.

use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{ChildError, sys};

/// The first fd of the protocol (`SD_LISTEN_FDS_START`).
const FIRST: RawFd = 3;

/// Whether [`listen_fds`] ran already.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// One socket-activation fd.
#[derive(Debug)]
pub struct ListenFd {
    /// The name from `LISTEN_FDNAMES` (`unknown` when absent).
    pub name: String,
    /// The fd.
    pub fd: OwnedFd,
}

/// Takes the socket-activation fds: `LISTEN_FDS` fds from 3, named by
/// `LISTEN_FDNAMES`, only when `LISTEN_PID` is this process (none
/// otherwise). The fds are made close-on-exec. They are taken once: a
/// second call is [`ChildError::Taken`].
pub fn listen_fds() -> Result<Vec<ListenFd>, ChildError> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(ChildError::Taken("LISTEN_FDS".into()));
    }
    let Some(listen) = parse_listen_env(
        std::env::var("LISTEN_PID").ok().as_deref(),
        std::env::var("LISTEN_FDS").ok().as_deref(),
        std::env::var("LISTEN_FDNAMES").ok().as_deref(),
        std::process::id(),
    )?
    else {
        return Ok(Vec::new());
    };
    // Nothing is sized by the count up front: it comes from the
    // environment, and the fds themselves bound what is taken.
    let mut fds = Vec::new();
    for i in 0..listen.count {
        let number = FIRST + i as RawFd;
        let fd = sys::take_inherited(number).ok_or_else(|| ChildError::Malformed {
            var: "LISTEN_FDS".into(),
            why: format!("fd {number} is not open (or was taken already)"),
        })?;
        fds.push(ListenFd {
            name: listen.name(i).to_owned(),
            fd,
        });
    }
    Ok(fds)
}

/// What `LISTEN_FDS` and `LISTEN_FDNAMES` say.
#[derive(Debug, PartialEq, Eq)]
struct Listen {
    /// `LISTEN_FDS`: at most what fits above fd 3.
    count: usize,
    /// `LISTEN_FDNAMES`, one per fd, if set.
    names: Option<Vec<String>>,
}

impl Listen {
    /// The name of fd `FIRST + i`: `unknown` without `LISTEN_FDNAMES`.
    fn name(&self, i: usize) -> &str {
        self.names
            .as_ref()
            .and_then(|names| names.get(i))
            .map_or("unknown", String::as_str)
    }
}

/// The activation fds' count and names, or `None` when they are not for
/// this process (`LISTEN_PID` unset or another pid).
fn parse_listen_env(
    pid: Option<&str>,
    count: Option<&str>,
    names: Option<&str>,
    own_pid: u32,
) -> Result<Option<Listen>, ChildError> {
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
    if count > (RawFd::MAX - FIRST) as usize {
        return Err(ChildError::Malformed {
            var: "LISTEN_FDS".into(),
            why: format!("{count} fds is more than a process can have"),
        });
    }
    let names: Option<Vec<String>> = names.map(|n| n.split(':').map(str::to_owned).collect());
    if let Some(list) = &names
        && list.len() != count
    {
        return Err(ChildError::Malformed {
            var: "LISTEN_FDNAMES".into(),
            why: format!("{} names for {count} fds", list.len()),
        });
    }
    Ok(Some(Listen { count, names }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_env() {
        assert_eq!(parse_listen_env(None, Some("1"), None, 7).unwrap(), None);
        assert_eq!(
            parse_listen_env(Some("8"), Some("1"), None, 7).unwrap(),
            None
        );
        let named = parse_listen_env(Some("7"), Some("2"), Some("a:b"), 7)
            .unwrap()
            .unwrap();
        assert_eq!(named.count, 2);
        assert_eq!([named.name(0), named.name(1)], ["a", "b"]);
        let unnamed = parse_listen_env(Some("7"), Some("2"), None, 7)
            .unwrap()
            .unwrap();
        assert_eq!(unnamed.count, 2);
        assert_eq!([unnamed.name(0), unnamed.name(1)], ["unknown", "unknown"]);
        assert!(parse_listen_env(Some("7"), Some("2"), Some("a"), 7).is_err());
        assert!(parse_listen_env(Some("7"), Some("x"), None, 7).is_err());
    }

    #[test]
    fn a_huge_count_allocates_nothing_by_itself() {
        // Fails before: a name was made for each of the 2^31 - 4 fds up
        // front, and the allocation aborted the process.
        let most = (RawFd::MAX - FIRST).to_string();
        let listen = parse_listen_env(Some("7"), Some(&most), None, 7)
            .unwrap()
            .unwrap();
        assert_eq!(listen.count, (RawFd::MAX - FIRST) as usize);
        assert_eq!(listen.name(listen.count - 1), "unknown");
        let over = (RawFd::MAX - FIRST + 1).to_string();
        assert!(parse_listen_env(Some("7"), Some(&over), None, 7).is_err());
    }

    #[test]
    fn taken_once() {
        // Not run by ipc-run here: nothing to take, but taken all the same.
        let first = listen_fds();
        assert!(first.is_ok());
        assert!(matches!(listen_fds(), Err(ChildError::Taken(_))));
    }
}
