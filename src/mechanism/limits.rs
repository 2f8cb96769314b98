//! Host limits the planner validates against.
//!
//! The planner never reads the host: the CLI builds a [`Limits`] from `/proc`
//! and rlimits ([`crate::host`]), tests and `--limits default` use
//! [`Limits::default`], whose values are those of a stock Linux 6.x kernel
//! and are documented in `docs/topology.md`. Every value remembers where it
//! came from so an error can quote it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One limit: its value and where it was read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// The value.
    pub value: u64,
    /// Where it comes from, e.g. `/proc/sys/fs/mqueue/msgsize_max` or `default`.
    pub source: String,
}

impl Limit {
    /// A limit with the documented default value.
    pub fn fixed(value: u64, source: &str) -> Self {
        Limit {
            value,
            source: source.to_owned(),
        }
    }
}

/// The host limits that decide whether a plan can be launched.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest write that is atomic on a pipe or FIFO (`PIPE_BUF`).
    pub pipe_buf: Limit,
    /// Default capacity of a pipe in bytes.
    pub pipe_capacity: Limit,
    /// Largest message a POSIX queue may be created with (`msgsize_max`).
    pub mq_msgsize_max: Limit,
    /// Largest depth a POSIX queue may be created with (`msg_max`).
    pub mq_msg_max: Limit,
    /// Default message size when an edge declares none (`msgsize_default`).
    pub mq_msgsize_default: Limit,
    /// Default depth when an edge declares none (`msg_default`).
    pub mq_msg_default: Limit,
    /// Queues one user may have (`queues_max`).
    pub mq_queues_max: Limit,
    /// Largest System V shared memory segment (`shmmax`).
    pub sysv_shmmax: Limit,
    /// Largest System V message (`msgmax`).
    pub sysv_msgmax: Limit,
    /// Bytes a System V queue holds (`msgmnb`).
    pub sysv_msgmnb: Limit,
    /// Semaphores per System V set (`SEMMSL`, first field of `kernel/sem`).
    pub sysv_semmsl: Limit,
    /// Largest value of a semaphore (`SEM_VALUE_MAX`).
    pub sem_value_max: Limit,
    /// Soft `RLIMIT_NOFILE`: every fd number a child gets must be below it.
    pub nofile_soft: Limit,
    /// Bytes of `sun_path`, including the terminating NUL.
    pub sun_path_max: Limit,
    /// Length of the run directory path on this host, to check socket paths.
    pub run_dir_len: Limit,
    /// Largest single argument or environment string (`MAX_ARG_STRLEN`).
    pub arg_strlen_max: Limit,
    /// Size of `/dev/shm`, bounding POSIX shared memory.
    pub posix_shm_max: Limit,
}

/// The run directory on a default host: `/run/user/1000/ipc-run/` plus a
/// run id of 16 hex digits.
pub const DEFAULT_RUN_DIR_LEN: u64 = "/run/user/1000/ipc-run/0123456789abcdef".len() as u64;

impl Default for Limits {
    /// The values of a stock Linux 6.x host, fixed so plans are reproducible.
    fn default() -> Self {
        let d = "default";
        Limits {
            pipe_buf: Limit::fixed(4096, d),
            pipe_capacity: Limit::fixed(65536, d),
            mq_msgsize_max: Limit::fixed(8192, d),
            mq_msg_max: Limit::fixed(10, d),
            mq_msgsize_default: Limit::fixed(8192, d),
            mq_msg_default: Limit::fixed(10, d),
            mq_queues_max: Limit::fixed(256, d),
            sysv_shmmax: Limit::fixed(18_446_744_073_692_774_399, d),
            sysv_msgmax: Limit::fixed(8192, d),
            sysv_msgmnb: Limit::fixed(16384, d),
            sysv_semmsl: Limit::fixed(32000, d),
            sem_value_max: Limit::fixed(i32::MAX as u64, d),
            nofile_soft: Limit::fixed(1024, d),
            sun_path_max: Limit::fixed(108, d),
            run_dir_len: Limit::fixed(DEFAULT_RUN_DIR_LEN, d),
            arg_strlen_max: Limit::fixed(131_072, d),
            posix_shm_max: Limit::fixed(1 << 33, d),
        }
    }
}
