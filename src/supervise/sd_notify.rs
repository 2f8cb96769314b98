//! ipc-run's own `sd_notify`, sending side: what the service manager that
//! started ipc-run (systemd `Type=notify`, or any engine that binds a
//! datagram socket and sets `NOTIFY_SOCKET`) learns of the run.
//!
//! `READY=1` once every process of the run is ready (the same rule as
//! `run --detach`'s announcement), `STOPPING=1` when the run begins to
//! stop, `WATCHDOG=1` every half `WATCHDOG_USEC` while the event loop
//! turns (when `WATCHDOG_PID` is unset or names ipc-run), and `STATUS=`
//! lines for people. The variables are read from ipc-run's own
//! environment once, at start; no child ever sees them, as a child's
//! environment is built from the plan and a short pass-through list
//! (`launch::spawn`), which leaves these names out.
//!
//! Sending never blocks the loop (`MSG_DONTWAIT`) and never fails the run:
//! a manager that went away is not a reason to stop the processes.

use std::ffi::OsString;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The manager's socket, and what has been said on it.
#[derive(Debug, Default)]
pub struct ServiceNotify {
    socket: Option<(UnixDatagram, SocketAddr)>,
    /// Half the manager's watchdog period, when it asked for pings.
    watchdog: Option<Duration>,
    ready_sent: bool,
    stopping_sent: bool,
}

impl ServiceNotify {
    /// From ipc-run's own environment.
    pub fn from_env() -> ServiceNotify {
        ServiceNotify::from_vars(|name| std::env::var_os(name), std::process::id())
    }

    /// From the variables `get` returns, for the process `pid`. An address
    /// that cannot be used is reported once and leaves notification off.
    pub fn from_vars(get: impl Fn(&str) -> Option<OsString>, pid: u32) -> ServiceNotify {
        let Some(path) = get("NOTIFY_SOCKET").filter(|p| !p.is_empty()) else {
            return ServiceNotify::default();
        };
        let socket = match open(path.as_bytes()) {
            Ok(socket) => Some(socket),
            Err(e) => {
                tracing::warn!(
                    "NOTIFY_SOCKET={}: not used: {e}",
                    String::from_utf8_lossy(path.as_bytes())
                );
                None
            }
        };
        ServiceNotify {
            socket,
            watchdog: watchdog_half_period(&get, pid),
            ready_sent: false,
            stopping_sent: false,
        }
    }

    /// Whether a manager listens.
    pub fn active(&self) -> bool {
        self.socket.is_some()
    }

    /// How often to ping the manager's watchdog, if it asked.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.active())
    }

    /// Whether `READY=1` is still to be sent.
    pub fn waits_for_ready(&self) -> bool {
        self.active() && !self.ready_sent && !self.stopping_sent
    }

    /// `READY=1` with a status line, once.
    pub fn ready(&mut self, status: &str) {
        if self.waits_for_ready() {
            self.ready_sent = true;
            self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
        }
    }

    /// `STOPPING=1` with a status line, once.
    pub fn stopping(&mut self, status: &str) {
        if self.active() && !self.stopping_sent {
            self.stopping_sent = true;
            self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
        }
    }

    /// A `STATUS=` line alone.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// `WATCHDOG=1`.
    pub fn ping(&self) {
        self.send("WATCHDOG=1");
    }

    fn send(&self, message: &str) {
        let Some((socket, address)) = &self.socket else {
            return;
        };
        // Non-blocking: a manager whose queue is full loses a status line
        // rather than stalling the processes' supervision.
        if let Err(e) = socket.send_to_addr(message.as_bytes(), address) {
            tracing::debug!("sd_notify: {e}");
        }
    }
}

/// `status` as the one line a `STATUS=` is: a message is newline-separated
/// assignments, so a newline in a status (from a program's path in a
/// spawn error, say) would send the manager an assignment of its own
/// (`MAINPID=`, `READY=1`). Control characters are written as escapes.
fn one_line(status: &str) -> std::borrow::Cow<'_, str> {
    crate::diagnostic::escape_controls(status, false)
}

/// An unbound, non-blocking datagram socket and the manager's address (a
/// path, or an abstract name written `@name`).
fn open(path: &[u8]) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let address = match path.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(path))?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    Ok((socket, address))
}

/// Half of `WATCHDOG_USEC`, when it is set, positive, and meant for `pid`
/// (`WATCHDOG_PID` unset or equal): systemd's advice is to ping at half
/// the period.
fn watchdog_half_period(get: &impl Fn(&str) -> Option<OsString>, pid: u32) -> Option<Duration> {
    let usec: u64 = get("WATCHDOG_USEC")?.to_str()?.parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(owner) = get("WATCHDOG_PID")
        && owner.to_str().and_then(|o| o.parse::<u32>().ok()) != Some(pid)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

impl<R: super::Runtime> super::Supervisor<'_, R> {
    /// The `STATUS=` of a run whose every process is ready.
    pub(super) fn ready_status(&self) -> String {
        let count = self.instances.len();
        match &self.group {
            Some(group) => format!("group {group}: {count} process(es) ready"),
            None => format!("{count} process(es) ready"),
        }
    }

    /// Starts the pings of the manager's watchdog, if it asked for them.
    pub(super) fn start_manager_watchdog(&mut self) {
        if let Some(every) = self.service.watchdog_interval() {
            self.timers.add(
                std::time::Instant::now() + every,
                super::timers::Deadline::ManagerWatchdog,
            );
        }
    }

    /// A ping is due: the loop is alive, so say so, and arm the next.
    pub(super) fn manager_watchdog_due(&mut self) {
        self.service.ping();
        self.start_manager_watchdog();
    }

    /// The run begins to stop: `STOPPING=1`, once.
    pub(super) fn tell_manager_stopping(&mut self) {
        if self.service.active() {
            let status = match &self.group {
                Some(group) => format!("group {group}: stopping"),
                None => "stopping".to_owned(),
            };
            self.service.stopping(&status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A socket path of its own for each test (no temp-dir crate here).
    fn socket_path(test: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("ipc-run-sd-{}-{test}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn messages_reach_the_socket_in_order_and_once() {
        let path = socket_path("order");
        let manager = UnixDatagram::bind(&path).unwrap();
        let text = path.to_str().unwrap();
        let mut notify = ServiceNotify::from_vars(vars(&[("NOTIFY_SOCKET", text)]), 1);
        assert!(notify.active() && notify.watchdog_interval().is_none());
        notify.ready("2 processes ready");
        notify.ready("again");
        notify.stopping("stopping");
        notify.ping();
        let mut buf = [0u8; 256];
        let mut next = || {
            let n = manager.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        assert_eq!(next(), "READY=1\nSTATUS=2 processes ready");
        assert_eq!(next(), "STOPPING=1\nSTATUS=stopping");
        assert_eq!(next(), "WATCHDOG=1");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_abstract_socket_is_written_with_an_at_sign() {
        let name = format!("ipc-run-sd-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let manager = UnixDatagram::bind_addr(&address).unwrap();
        let given = format!("@{name}");
        let mut notify = ServiceNotify::from_vars(vars(&[("NOTIFY_SOCKET", &given)]), 1);
        notify.ready("ready");
        let mut buf = [0u8; 64];
        let n = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ready");
    }

    #[test]
    fn no_ready_after_stopping() {
        let path = socket_path("stopping");
        let _manager = UnixDatagram::bind(&path).unwrap();
        let mut notify =
            ServiceNotify::from_vars(vars(&[("NOTIFY_SOCKET", path.to_str().unwrap())]), 1);
        notify.stopping("stopping");
        assert!(!notify.waits_for_ready());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_watchdog_is_half_the_period_and_only_for_this_pid() {
        let socket = ("NOTIFY_SOCKET", "@ipc-run-test-unused");
        let ours = ServiceNotify::from_vars(vars(&[socket, ("WATCHDOG_USEC", "4000000")]), 7);
        assert_eq!(ours.watchdog_interval(), Some(Duration::from_secs(2)));
        let named = [socket, ("WATCHDOG_USEC", "4000000"), ("WATCHDOG_PID", "7")];
        assert!(
            ServiceNotify::from_vars(vars(&named), 7)
                .watchdog_interval()
                .is_some()
        );
        assert!(
            ServiceNotify::from_vars(vars(&named), 8)
                .watchdog_interval()
                .is_none()
        );
        let zero = [socket, ("WATCHDOG_USEC", "0")];
        assert!(
            ServiceNotify::from_vars(vars(&zero), 7)
                .watchdog_interval()
                .is_none()
        );
    }

    #[test]
    fn without_a_socket_nothing_is_active() {
        let notify = ServiceNotify::from_vars(vars(&[("WATCHDOG_USEC", "1000")]), 1);
        assert!(!notify.active() && notify.watchdog_interval().is_none());
    }
}
