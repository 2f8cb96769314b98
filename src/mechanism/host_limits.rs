//! The host-limit checks a plan read back (`ipc-run run --plan`) goes
//! through again: the helpers the mechanisms' `recheck` functions share.
//!
//! The planner checks the same limits with spans into the topology; a plan
//! read back has no spans, so these say which edge in words. Codes and
//! wording are the planner's.

use crate::diagnostic::Diagnostic;
use crate::mechanism::limits::{Limit, Limits};
use crate::mechanism::model::RUN_DIR;

/// Bytes of a socket path once `{run_dir}` is this host's run directory.
pub(crate) fn socket_path_len(path: &str, limits: &Limits) -> u64 {
    let rest = path.strip_prefix(RUN_DIR).unwrap_or(path);
    limits.run_dir_len.value + rest.len() as u64
}

/// Where the run directory's length comes from, for a note.
pub(crate) fn run_dir_note(limits: &Limits) -> String {
    format!(
        "the run directory is {} bytes long ({})",
        limits.run_dir_len.value, limits.run_dir_len.source
    )
}

/// A socket file in the run directory fits `sun_path` on this host.
pub(crate) fn socket_path(id: &str, path: &str, limits: &Limits, sink: &mut Vec<Diagnostic>) {
    if !path.starts_with(RUN_DIR) {
        // A TCP address, or a path the planner did not make: nothing to fit.
        return;
    }
    let length = socket_path_len(path, limits);
    if length >= limits.sun_path_max.value {
        sink.push(
            Diagnostic::error("E0607", format!("the socket path of edge `{id}` would be {length} bytes; sun_path holds {} with its NUL", limits.sun_path_max.value))
                .with_note(run_dir_note(limits))
                .with_help("shorten the edge name, or set XDG_RUNTIME_DIR to a shorter directory"),
        );
    }
}

/// A shared-memory size above zero and within `max`.
pub(crate) fn size(
    code: &'static str,
    id: &str,
    size: u64,
    max: &Limit,
    what: &str,
    sink: &mut Vec<Diagnostic>,
) {
    if size == 0 {
        sink.push(Diagnostic::error(
            "E0310",
            format!("shared edge `{id}` needs a size above zero"),
        ));
    } else if size > max.value {
        sink.push(
            Diagnostic::error(
                code,
                format!(
                    "edge `{id}` asks for {size} bytes of shared memory; {what} allows {}",
                    max.value
                ),
            )
            .with_note(format!("{what} is {} ({})", max.value, max.source)),
        );
    }
}

/// A System V semaphore set of `count` fits `semmsl`.
pub(crate) fn sem_set(id: &str, count: u64, limits: &Limits, sink: &mut Vec<Diagnostic>) {
    let semmsl = &limits.sysv_semmsl;
    if count == 0 || count > semmsl.value {
        sink.push(
            limit_error("E0611", format!("edge `{id}` needs a System V semaphore set of {count}; a set on this host holds at most {}", semmsl.value), semmsl, "semmsl")
                .with_help("use posix-shm/posix-sem, or raise the first field of /proc/sys/kernel/sem"),
        );
    }
}

/// A semaphore's initial value within `max`.
pub(crate) fn initial(id: &str, name: &str, initial: u32, max: u64, sink: &mut Vec<Diagnostic>) {
    if u64::from(initial) > max {
        sink.push(Diagnostic::error(
            "E0606",
            format!("a `{name}` starts between 0 and {max}, edge `{id}` asks for {initial}"),
        ));
    }
}

/// An error above a host limit, with the limit and where it was read.
pub(crate) fn limit_error(
    code: &'static str,
    message: String,
    limit: &Limit,
    what: &str,
) -> Diagnostic {
    Diagnostic::error(code, message)
        .with_note(format!("{what} is {} ({})", limit.value, limit.source))
}
