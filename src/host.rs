//! Reads the host's limits for the planner, which never reads them itself.
//!
//! Each value records where it came from (`/proc/sys/fs/mqueue/msgsize_max`,
//! `getrlimit(RLIMIT_NOFILE)`, …) so a plan-time error can quote it. A value
//! that cannot be read falls back to the documented default and says so.

use std::path::PathBuf;

use crate::plan::{Limit, Limits};

/// Length of a run id: 16 hex digits, 64 random bits.
pub const RUN_ID_LEN: usize = 16;

/// The directory under which run directories are created:
/// `$XDG_RUNTIME_DIR/ipc-run`, else `/tmp/ipc-run-<uid>`.
pub fn runtime_root() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() && PathBuf::from(&dir).is_absolute() => {
            PathBuf::from(dir).join("ipc-run")
        }
        _ => PathBuf::from(format!("/tmp/ipc-run-{}", nix::unistd::getuid())),
    }
}

fn proc_value(path: &str, field: usize, fallback: &Limit) -> Limit {
    let parsed = std::fs::read_to_string(path).ok().and_then(|text| {
        text.split_whitespace()
            .nth(field)
            .and_then(|v| v.parse::<u64>().ok())
    });
    match parsed {
        Some(value) => Limit {
            value,
            source: path.to_owned(),
        },
        None => Limit {
            value: fallback.value,
            source: format!("default; {path} unreadable"),
        },
    }
}

/// The limits of this host.
pub fn read_limits() -> Limits {
    let d = Limits::default();
    let nofile = match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => Limit {
            value: soft,
            source: "getrlimit(RLIMIT_NOFILE) soft limit".into(),
        },
        Err(_) => d.nofile_soft.clone(),
    };
    let shm = match nix::sys::statvfs::statvfs("/dev/shm") {
        Ok(stat) => Limit {
            value: stat.blocks() * stat.fragment_size(),
            source: "size of /dev/shm (statvfs)".into(),
        },
        Err(_) => Limit {
            value: d.posix_shm_max.value,
            source: "default; /dev/shm not mounted".into(),
        },
    };
    let run_dir_len = runtime_root().as_os_str().len() + 1 + RUN_ID_LEN;
    Limits {
        pipe_buf: Limit::fixed(4096, "PIPE_BUF (Linux)"),
        pipe_capacity: Limit::fixed(65536, "default pipe capacity (Linux)"),
        mq_msgsize_max: proc_value("/proc/sys/fs/mqueue/msgsize_max", 0, &d.mq_msgsize_max),
        mq_msg_max: proc_value("/proc/sys/fs/mqueue/msg_max", 0, &d.mq_msg_max),
        mq_msgsize_default: proc_value(
            "/proc/sys/fs/mqueue/msgsize_default",
            0,
            &d.mq_msgsize_default,
        ),
        mq_msg_default: proc_value("/proc/sys/fs/mqueue/msg_default", 0, &d.mq_msg_default),
        mq_queues_max: proc_value("/proc/sys/fs/mqueue/queues_max", 0, &d.mq_queues_max),
        sysv_shmmax: proc_value("/proc/sys/kernel/shmmax", 0, &d.sysv_shmmax),
        sysv_msgmax: proc_value("/proc/sys/kernel/msgmax", 0, &d.sysv_msgmax),
        sysv_msgmnb: proc_value("/proc/sys/kernel/msgmnb", 0, &d.sysv_msgmnb),
        sysv_semmsl: proc_value("/proc/sys/kernel/sem", 0, &d.sysv_semmsl),
        sem_value_max: Limit::fixed(d.sem_value_max.value, "SEM_VALUE_MAX (glibc)"),
        nofile_soft: nofile,
        sun_path_max: Limit::fixed(108, "sizeof(sun_path) (Linux)"),
        run_dir_len: Limit {
            value: run_dir_len as u64,
            source: format!("{}/<run id>", runtime_root().display()),
        },
        arg_strlen_max: Limit::fixed(131_072, "MAX_ARG_STRLEN (Linux)"),
        posix_shm_max: shm,
    }
}
