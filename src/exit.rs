//! The exit codes of `ipc-run`, in one place every stage can use without
//! the command line.
//!
//! The table is the README's ("Exit codes") and `docs/topology.md`'s
//! ("Command line and exit codes"):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | invalid or unreadable topology, warnings under `--deny warnings`; for `ipc-run port`, data that could not be moved |
//! | 2 | usage error |
//! | 3 | launch failure: a resource could not be created or a program not executed |
//! | other | a run's status (the processes' exit codes, 128+signal) |

/// One of the fixed exit codes; a run may also exit with its processes'
/// status, which is a plain `i32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything succeeded.
    Success = 0,
    /// An invalid or unreadable topology, denied warnings, or (for the
    /// port adapters) data that could not be moved.
    Invalid = 1,
    /// A command-line usage error.
    Usage = 2,
    /// The run could not be prepared or a process not started.
    Launch = 3,
}

impl ExitCode {
    /// The number the process exits with.
    pub const fn code(self) -> i32 {
        self as i32
    }
}

/// The status of a process killed by `signal`, as a shell reports it.
pub const fn signaled(signal: i32) -> i32 {
    128 + signal
}

#[cfg(test)]
mod tests {
    use super::ExitCode;

    #[test]
    fn codes_match_the_documented_table() {
        assert_eq!(ExitCode::Success.code(), 0);
        assert_eq!(ExitCode::Invalid.code(), 1);
        assert_eq!(ExitCode::Usage.code(), 2);
        assert_eq!(ExitCode::Launch.code(), 3);
    }
}
