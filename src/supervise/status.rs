//! How instances ended and what ipc-run's own exit status is. Pure.
//!
//! The rule (also in `docs/supervision.md`):
//!
//! 1. With `exit_code_from = "p"`, ipc-run exits with `p`'s status: its exit
//!    code, 128+signal when a signal killed it, [`LAUNCH_FAILURE`] when it
//!    could not be started or never became ready. A launch failure of
//!    another process that stopped the run (and `p` with it) decides
//!    instead, by rule 2: the supervisor then passes no followed ending.
//! 2. Otherwise, the first failure in time decides: an exit code 1..=255 is
//!    passed on, death by signal `n` gives 128+n, a launch failure (spawn or
//!    exec error, readiness timeout, a dependency that ended before it was
//!    ready) gives [`LAUNCH_FAILURE`].
//! 3. Otherwise, when a stop signal sent to ipc-run (SIGINT, SIGTERM,
//!    SIGQUIT, SIGABRT, SIGPWR, SIGXCPU) stopped the run, 128+that signal
//!    (130, 143, …), as a shell reports an interrupted command.
//! 4. Otherwise 0.
//!
//! An instance that ends after ipc-run asked it to stop (shutdown, or the
//! `exit_code_from` process ended) is *stopped*, not failed, whatever its
//! status: the stop was ipc-run's doing.

use std::fmt;
use std::time::Duration;

/// Exit code of ipc-run when a process could not be launched.
pub const LAUNCH_FAILURE: i32 = crate::exit::ExitCode::Launch.code();

/// How one run of an instance ended, or why it never ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled {
        /// Signal number.
        signal: i32,
        /// Whether it dumped core.
        core_dumped: bool,
    },
    /// The spawn or exec failed; the text names program and errno.
    FailedToStart(String),
    /// It did not become ready in time (or at all); the text says why.
    NotReady(String),
    /// It was never started because the run ended first; the text says why.
    NotStarted(String),
}

impl Ending {
    /// Whether this ending counts as success on its own (exit 0).
    pub fn is_success(&self) -> bool {
        matches!(self, Ending::Exited(0))
    }

    /// The exit code ipc-run reports for this ending.
    pub fn code(&self) -> i32 {
        match self {
            Ending::Exited(code) => *code,
            Ending::Signaled { signal, .. } => 128 + signal,
            Ending::FailedToStart(_) | Ending::NotReady(_) | Ending::NotStarted(_) => {
                LAUNCH_FAILURE
            }
        }
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Exited(code) => write!(f, "exited {code}"),
            Ending::Signaled {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by {}", signal_name(*signal))?;
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
            Ending::FailedToStart(why) => write!(f, "failed to start: {why}"),
            Ending::NotReady(why) => write!(f, "not ready: {why}"),
            Ending::NotStarted(why) => write!(f, "not started: {why}"),
        }
    }
}

/// The name of a signal number, `SIG42` for ones without a name.
pub fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(sig) => sig.as_str().to_owned(),
        Err(_) => format!("SIG{signal}"),
    }
}

/// The final record of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSummary {
    /// Instance name.
    pub name: String,
    /// How its last run ended.
    pub ending: Ending,
    /// Whether it ended after ipc-run asked it to stop.
    pub stopped: bool,
    /// Whether it counts as failed (see the module docs).
    pub failed: bool,
    /// How many times it was restarted.
    pub restarts: u32,
    /// Total time it ran, over all its runs.
    pub runtime: Duration,
}

impl fmt::Display for InstanceSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.ending)?;
        if self.stopped {
            f.write_str(" (stopped)")?;
        }
        write!(
            f,
            ", restarts {}, runtime {:.2}s",
            self.restarts,
            self.runtime.as_secs_f64()
        )
    }
}

/// One failure, in the order failures happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Instance name.
    pub instance: String,
    /// The exit code it implies.
    pub code: i32,
    /// How it ended, as the summary says it (`exited 1`, `not ready: …`).
    pub what: String,
}

/// Everything the exit status depends on.
#[derive(Debug, Clone, Default)]
pub struct StatusInputs<'a> {
    /// Failures in the order they happened.
    pub failures: &'a [Failure],
    /// The final ending of the `exit_code_from` instance, when set.
    pub followed: Option<&'a Ending>,
    /// The signal that stopped the run, when SIGINT or SIGTERM did.
    pub interrupted_by: Option<i32>,
}

/// ipc-run's exit status, by the rule in the module docs.
pub fn exit_code(inputs: &StatusInputs<'_>) -> i32 {
    if let Some(ending) = inputs.followed {
        return ending.code();
    }
    if let Some(first) = inputs.failures.first() {
        return first.code;
    }
    if let Some(signal) = inputs.interrupted_by {
        return 128 + signal;
    }
    0
}

/// Why ipc-run exits with `code` (the result of [`exit_code`] for the same
/// inputs), for the last line of the summary: `exit 1: process `x` exited
/// 1 (first failure)`. A run's own failures are then told apart from
/// ipc-run's (1: invalid topology, 2: usage), which print no summary.
pub fn exit_cause(inputs: &StatusInputs<'_>, followed_name: Option<&str>, code: i32) -> String {
    let cause = if let (Some(ending), Some(name)) = (inputs.followed, followed_name) {
        format!("process `{name}` {ending} (exit_code_from)")
    } else if let Some(first) = inputs.failures.first() {
        let launch = if first.code == LAUNCH_FAILURE && !first.what.starts_with("exited") {
            "launch failure: "
        } else {
            ""
        };
        format!(
            "{launch}process `{}` {} (first failure)",
            first.instance, first.what
        )
    } else if let Some(signal) = inputs.interrupted_by {
        format!("stopped by {}", signal_name(signal))
    } else {
        "every process succeeded".to_owned()
    };
    format!("exit {code}: {cause}")
}

/// The summary as one JSON object (one line), for `ipc-run run
/// --summary-format json`: `exit_code`, `cause` (as [`exit_cause`]),
/// `log_write_errors`, and `processes`, one object per instance in plan
/// order with `name`, `ending` (`exited`, `killed`, `failed-to-start`,
/// `not-ready`, `not-started`), `code` (what the ending implies for the
/// exit status), `signal` and `core_dumped` when killed, `reason` for the
/// three that never ran, `text` (the ending as the text summary says it),
/// `stopped`, `failed`, `restarts` and `runtime_s`.
pub fn summary_json(
    summary: &[InstanceSummary],
    exit_code: i32,
    cause: &str,
    log_write_errors: u64,
) -> String {
    let processes: Vec<ProcessJson<'_>> = summary.iter().map(ProcessJson::of).collect();
    let summary = SummaryJson {
        exit_code,
        cause,
        log_write_errors,
        processes,
    };
    // Plain data of strings and numbers: serialising cannot fail.
    serde_json::to_string(&summary).unwrap_or_default()
}

/// The JSON summary's top level.
#[derive(serde::Serialize)]
struct SummaryJson<'a> {
    exit_code: i32,
    cause: &'a str,
    log_write_errors: u64,
    processes: Vec<ProcessJson<'a>>,
}

/// One instance in the JSON summary.
#[derive(serde::Serialize)]
struct ProcessJson<'a> {
    name: &'a str,
    ending: &'static str,
    code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    core_dumped: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    text: String,
    stopped: bool,
    failed: bool,
    restarts: u32,
    runtime_s: f64,
}

impl<'a> ProcessJson<'a> {
    fn of(s: &'a InstanceSummary) -> Self {
        let (ending, signal, core_dumped, reason) = match &s.ending {
            Ending::Exited(_) => ("exited", None, None, None),
            Ending::Signaled {
                signal,
                core_dumped,
            } => (
                "killed",
                Some(signal_name(*signal)),
                Some(*core_dumped),
                None,
            ),
            Ending::FailedToStart(why) => ("failed-to-start", None, None, Some(why.as_str())),
            Ending::NotReady(why) => ("not-ready", None, None, Some(why.as_str())),
            Ending::NotStarted(why) => ("not-started", None, None, Some(why.as_str())),
        };
        ProcessJson {
            name: &s.name,
            ending,
            code: s.ending.code(),
            signal,
            core_dumped,
            reason,
            text: s.ending.to_string(),
            stopped: s.stopped,
            failed: s.failed,
            restarts: s.restarts,
            runtime_s: s.runtime.as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(name: &str, code: i32) -> Failure {
        Failure {
            instance: name.into(),
            code,
            what: format!("exited {code}"),
        }
    }

    #[test]
    fn the_cause_names_what_decided_the_exit_status() {
        let cause = |inputs: &StatusInputs<'_>, followed: Option<&str>| {
            exit_cause(inputs, followed, exit_code(inputs))
        };
        assert_eq!(
            cause(&StatusInputs::default(), None),
            "exit 0: every process succeeded"
        );
        let failures = [failure("x", 1), failure("y", 2)];
        let inputs = StatusInputs {
            failures: &failures,
            interrupted_by: Some(15),
            ..Default::default()
        };
        assert_eq!(
            cause(&inputs, None),
            "exit 1: process `x` exited 1 (first failure)"
        );
        let launch = [Failure {
            instance: "s".into(),
            code: LAUNCH_FAILURE,
            what: "not ready: no READY=1".into(),
        }];
        let inputs = StatusInputs {
            failures: &launch,
            ..Default::default()
        };
        assert_eq!(
            cause(&inputs, None),
            "exit 3: launch failure: process `s` not ready: no READY=1 (first failure)"
        );
        let inputs = StatusInputs {
            interrupted_by: Some(2),
            ..Default::default()
        };
        assert_eq!(cause(&inputs, None), "exit 130: stopped by SIGINT");
        let ending = Ending::Exited(4);
        let inputs = StatusInputs {
            failures: &failures,
            followed: Some(&ending),
            ..Default::default()
        };
        assert_eq!(
            cause(&inputs, Some("count")),
            "exit 4: process `count` exited 4 (exit_code_from)"
        );
    }

    #[test]
    fn all_succeeded_is_zero() {
        assert_eq!(exit_code(&StatusInputs::default()), 0);
    }

    #[test]
    fn first_failure_wins() {
        let failures = [failure("b", 7), failure("a", 1)];
        let inputs = StatusInputs {
            failures: &failures,
            ..Default::default()
        };
        assert_eq!(exit_code(&inputs), 7);
    }

    #[test]
    fn codes_of_endings() {
        for code in 0..=255 {
            assert_eq!(Ending::Exited(code).code(), code);
        }
        let killed = Ending::Signaled {
            signal: 9,
            core_dumped: false,
        };
        assert_eq!(killed.code(), 137);
        assert_eq!(Ending::FailedToStart("x".into()).code(), LAUNCH_FAILURE);
        assert_eq!(Ending::NotReady("x".into()).code(), LAUNCH_FAILURE);
    }

    #[test]
    fn followed_process_overrides_failures_and_interrupts() {
        let failures = [failure("a", 1)];
        let ending = Ending::Exited(0);
        let inputs = StatusInputs {
            failures: &failures,
            followed: Some(&ending),
            interrupted_by: Some(2),
        };
        assert_eq!(exit_code(&inputs), 0);
        let ending = Ending::Signaled {
            signal: 15,
            core_dumped: false,
        };
        let inputs = StatusInputs {
            followed: Some(&ending),
            ..Default::default()
        };
        assert_eq!(exit_code(&inputs), 143);
    }

    #[test]
    fn interrupt_without_failure() {
        let inputs = StatusInputs {
            interrupted_by: Some(2),
            ..Default::default()
        };
        assert_eq!(exit_code(&inputs), 130);
        let failures = [failure("a", 4)];
        let inputs = StatusInputs {
            failures: &failures,
            interrupted_by: Some(15),
            ..Default::default()
        };
        assert_eq!(exit_code(&inputs), 4);
    }

    #[test]
    fn summary_lines() {
        let summary = InstanceSummary {
            name: "gen".into(),
            ending: Ending::Signaled {
                signal: 15,
                core_dumped: false,
            },
            stopped: true,
            failed: false,
            restarts: 2,
            runtime: Duration::from_millis(1234),
        };
        assert_eq!(
            summary.to_string(),
            "gen: killed by SIGTERM (stopped), restarts 2, runtime 1.23s"
        );
        let summary = InstanceSummary {
            name: "x".into(),
            ending: Ending::FailedToStart("nope: No such file or directory (os error 2)".into()),
            stopped: false,
            failed: true,
            restarts: 0,
            runtime: Duration::ZERO,
        };
        assert_eq!(
            summary.to_string(),
            "x: failed to start: nope: No such file or directory (os error 2), restarts 0, runtime 0.00s"
        );
        assert_eq!(signal_name(99), "SIG99");
    }

    #[test]
    fn the_json_summary_is_one_object() {
        let summary = [InstanceSummary {
            name: "gen".into(),
            ending: Ending::Signaled {
                signal: 15,
                core_dumped: false,
            },
            stopped: true,
            failed: false,
            restarts: 2,
            runtime: Duration::from_millis(1500),
        }];
        let text = summary_json(&summary, 143, "exit 143: stopped by SIGTERM", 0);
        assert!(!text.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["exit_code"], 143);
        assert_eq!(value["cause"], "exit 143: stopped by SIGTERM");
        let first = &value["processes"][0];
        assert_eq!(first["name"], "gen");
        assert_eq!(first["ending"], "killed");
        assert_eq!(first["signal"], "SIGTERM");
        assert_eq!(first["code"], 143);
        assert_eq!(first["stopped"], true);
        assert_eq!(first["restarts"], 2);
        assert_eq!(first["runtime_s"], 1.5);
    }
}
