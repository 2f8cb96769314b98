//! D-Bus on an `rpc` edge: the private bus ipc-run starts when a `dbus`
//! edge names no server (`to` left out), and the bus addresses clients get.
//!
//! The broker is the distribution's `dbus-daemon`, run as a managed process
//! (`plan::managed`): `--nofork` so ipc-run supervises it, its listener
//! handed over by socket activation (`<listen>systemd:</listen>` reads
//! `LISTEN_FDS`), ready when it sends `READY=1` on `NOTIFY_SOCKET` (it does
//! so itself). Its configuration is written by the launcher into the run
//! directory ([`create_config`]), so the bus is private to the run: no
//! system includes, no service activation, only the run's uid over Unix.

use std::fmt::Write as _;

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fchmod};

use super::build::{Build, Named};
use super::error::LaunchError;
use super::model::Span;
use super::rpc::Transport;
use crate::topology::{EdgeSpec, EndpointShape, ProcessRare, ProcessSpec, Ready, Spanned};

/// The protocol label of a D-Bus edge.
pub const PROTOCOL: &str = "dbus";

/// The broker's program, and the Debian package that provides it.
pub const PROGRAM: &str = "dbus-daemon";
/// See [`PROGRAM`].
pub const PACKAGE: &str = "dbus-daemon";

/// Why a bus edge gets a broker, as the plan shows it.
pub const BROKER_REASON: &str = "no server named in `to`: ipc-run starts a private dbus-daemon on the edge's listener and every endpoint is a client of that bus";

/// Whether `edge` asks for a private bus: a `dbus` edge with no `to` whose
/// `endpoint`, if written, is `broker`.
pub(crate) fn wants_broker(edge: &EdgeSpec) -> bool {
    edge.to.get_ref().0.is_empty()
        && edge
            .protocol
            .as_ref()
            .is_some_and(|p| p.get_ref() == PROTOCOL)
        && edge
            .endpoint
            .as_ref()
            .is_none_or(|e| *e.get_ref() == EndpointShape::Broker)
}

/// The broker's process name: the edge's, with `-broker`.
pub(crate) fn broker_name(edge_id: &str) -> String {
    format!("{edge_id}-broker")
}

/// The configuration's file name in the run directory.
fn config_name(edge_id: &str) -> String {
    format!("{edge_id}.conf")
}

/// The broker as if written as a process: `dbus-daemon` in the run
/// directory (so the configuration's relative path finds it: an argv holds
/// no placeholder), ready on `READY=1`. Every value points at `span`, the
/// edge, so a diagnostic about it points there.
pub(crate) fn broker_spec(edge_id: &str, span: Span) -> ProcessSpec {
    let cmd = vec![
        PROGRAM.to_owned(),
        // Supervised by ipc-run: no fork, no pid file.
        "--nofork".to_owned(),
        "--nopidfile".to_owned(),
        // Its warnings go to its stderr, which ipc-run relays, not syslog.
        "--nosyslog".to_owned(),
        format!("--config-file={}", config_name(edge_id)),
    ];
    let rare = ProcessRare {
        cwd: Some(Spanned::new(span.clone(), "{run_dir}".to_owned())),
        ready: Some(Spanned::new(span.clone(), Ready::Notify)),
        ..ProcessRare::default()
    };
    ProcessSpec {
        cmd: Some(Spanned::new(span, cmd)),
        shell: None,
        env: Default::default(),
        after: Vec::new(),
        replicas: None,
        ports: Default::default(),
        rare: Some(Box::new(rare)),
    }
}

/// `tcp:host=H,port=P` for `H:P`, where `P` may be the `{port:ID}`
/// placeholder (which holds a `:` of its own) and `H` an IPv6 address in
/// brackets (D-Bus writes it bare, with `family=ipv6`).
pub(crate) fn push_tcp_address(out: &mut String, address: &str) -> std::fmt::Result {
    let (host, port) = match address.find(":{port:") {
        Some(at) => (&address[..at], &address[at + 1..]),
        None => address.rsplit_once(':').unwrap_or((address, "")),
    };
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => write!(out, "tcp:host={v6},port={port},family=ipv6"),
        None => write!(out, "tcp:host={host},port={port}"),
    }
}

/// The bus configuration for `transport`, for a daemon run by `uid`.
///
/// Over Unix, EXTERNAL authentication (the kernel's peer credentials) and
/// only `uid` may connect. TCP carries no credentials, so EXTERNAL cannot
/// work there: ANONYMOUS on a loopback listener, which any local user can
/// reach (documented in docs/mechanisms.md; Unix is the default for that
/// reason). Any connection may own any name: the bus exists for one run,
/// whose own processes are the only ones that can reach it over Unix.
pub(crate) fn config(transport: Transport, uid: u32) -> String {
    let auth = match transport {
        Transport::Unix => "  <auth>EXTERNAL</auth>\n".to_owned(),
        Transport::Tcp => "  <auth>ANONYMOUS</auth>\n  <allow_anonymous/>\n".to_owned(),
    };
    let mut out = String::with_capacity(1024);
    out.push_str(
        "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
         \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
         <!-- Written by ipc-run for one run: a private bus, removed with the run. -->\n\
         <busconfig>\n  <type>session</type>\n  <listen>systemd:</listen>\n",
    );
    out.push_str(&auth);
    let _ = write!(
        out,
        "  <policy context=\"default\">\n    <deny user=\"*\"/>\n    <allow user=\"{uid}\"/>\n    \
         <allow send_destination=\"*\" eavesdrop=\"true\"/>\n    <allow eavesdrop=\"true\"/>\n    \
         <allow own=\"*\"/>\n  </policy>\n</busconfig>\n"
    );
    out
}

/// Writes the broker's configuration into the run directory (journaled
/// first, created exclusively, 0600, not following links). Fails first,
/// creating nothing, when the broker is not installed.
pub(crate) fn create_config(b: &mut dyn Build, transport: Transport) -> Result<(), LaunchError> {
    if !on_path(PROGRAM) {
        return Err(LaunchError::MissingProgram {
            channel: b.id().to_owned(),
            role: "broker",
            program: PROGRAM,
            package: PACKAGE,
        });
    }
    let name = config_name(b.id());
    let text = config(transport, nix::unistd::geteuid().as_raw());
    let object = Named::File(name.clone());
    b.intend(&object)?;
    let error = b.error("file", &name);
    let fd = openat(
        b.run_dir_fd(),
        name.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(&error)?;
    b.record(object);
    fchmod(&fd, Mode::from_bits_truncate(0o600)).map_err(&error)?;
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(|e| error(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    Ok(())
}

/// Whether `program` is an executable file in a directory of ipc-run's
/// `PATH`, where the spawn looks for it.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(address: &str) -> String {
        let mut out = String::new();
        push_tcp_address(&mut out, address).unwrap();
        out
    }

    #[test]
    fn a_tcp_address_splits_before_the_port_placeholder() {
        assert_eq!(
            tcp("127.0.0.1:{port:bus}"),
            "tcp:host=127.0.0.1,port={port:bus}"
        );
        assert_eq!(tcp("127.0.0.1:4000"), "tcp:host=127.0.0.1,port=4000");
        assert_eq!(
            tcp("[::1]:{port:bus}"),
            "tcp:host=::1,port={port:bus},family=ipv6"
        );
    }

    #[test]
    fn the_config_is_private_to_the_run() {
        let unix = config(Transport::Unix, 1000);
        assert!(unix.contains("<listen>systemd:</listen>"));
        assert!(unix.contains("<auth>EXTERNAL</auth>"));
        assert!(unix.contains("<allow user=\"1000\"/>"));
        assert!(!unix.contains("ANONYMOUS"));
        assert!(!unix.contains("include"), "no system configuration");
        let tcp = config(Transport::Tcp, 1000);
        assert!(tcp.contains("<auth>ANONYMOUS</auth>") && tcp.contains("<allow_anonymous/>"));
    }
}
