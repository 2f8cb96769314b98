//! Restart decisions and backoff. Pure.
//!
//! `restart.limit` counts consecutive restarts: with a limit of 3 a process
//! that keeps failing runs at most four times. The delay before restart `n`
//! (0-based) of such a streak is `backoff_ms * 2^n`, capped at
//! [`MAX_BACKOFF_MS`]. A run that lasts [`STABLE_RUN`] ends the streak: the
//! next failure is restarted after `backoff_ms` again and counts from zero,
//! so a service that crashes once a day is not given up after a week.

use std::time::Duration;

use crate::plan::RestartPolicy;
use crate::plan::{MAX_BACKOFF_MS, RestartPlan};

use super::status::Ending;

/// A run at least this long resets the backoff and the restart count.
pub const STABLE_RUN: Duration = Duration::from_secs(10);

/// What to do after an instance's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this delay.
    Restart(Duration),
    /// It is finished for good; `exhausted` when the policy wanted another
    /// restart but the limit was reached.
    Finished {
        /// The restart limit was reached.
        exhausted: bool,
    },
}

/// Decides whether an instance whose run ended with `ending` is restarted.
/// `restarts` is how many restarts its current streak has had; `stopping` is true once
/// ipc-run asked it (or the whole run) to stop.
pub fn decide(plan: &RestartPlan, ending: &Ending, restarts: u32, stopping: bool) -> Decision {
    let wanted = !stopping
        && match plan.policy {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => !ending.is_success(),
            RestartPolicy::Always => true,
        };
    if !wanted {
        return Decision::Finished { exhausted: false };
    }
    if restarts >= plan.limit {
        return Decision::Finished { exhausted: true };
    }
    Decision::Restart(backoff(plan.backoff_ms, restarts))
}

/// The delay before restart number `restarts` (0 for the first).
pub fn backoff(first_ms: u64, restarts: u32) -> Duration {
    let factor = 1u64.checked_shl(restarts.min(63)).unwrap_or(u64::MAX);
    Duration::from_millis(first_ms.saturating_mul(factor).min(MAX_BACKOFF_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(policy: RestartPolicy, limit: u32) -> RestartPlan {
        RestartPlan {
            policy,
            limit,
            backoff_ms: 100,
        }
    }

    const FAIL: Ending = Ending::Exited(1);
    const OK: Ending = Ending::Exited(0);

    #[test]
    fn never_never_restarts() {
        let p = plan(RestartPolicy::Never, 5);
        assert_eq!(
            decide(&p, &FAIL, 0, false),
            Decision::Finished { exhausted: false }
        );
    }

    #[test]
    fn on_failure_restarts_only_failures() {
        let p = plan(RestartPolicy::OnFailure, 5);
        assert_eq!(
            decide(&p, &OK, 0, false),
            Decision::Finished { exhausted: false }
        );
        assert_eq!(
            decide(&p, &FAIL, 0, false),
            Decision::Restart(Duration::from_millis(100))
        );
        let killed = Ending::Signaled {
            signal: 9,
            core_dumped: false,
        };
        assert_eq!(
            decide(&p, &killed, 2, false),
            Decision::Restart(Duration::from_millis(400))
        );
    }

    #[test]
    fn always_restarts_until_the_limit() {
        let p = plan(RestartPolicy::Always, 2);
        assert!(matches!(decide(&p, &OK, 1, false), Decision::Restart(_)));
        assert_eq!(
            decide(&p, &OK, 2, false),
            Decision::Finished { exhausted: true }
        );
    }

    #[test]
    fn no_restart_while_stopping() {
        let p = plan(RestartPolicy::Always, 9);
        assert_eq!(
            decide(&p, &FAIL, 0, true),
            Decision::Finished { exhausted: false }
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(100, 0), Duration::from_millis(100));
        assert_eq!(backoff(100, 3), Duration::from_millis(800));
        assert_eq!(backoff(100, 20), Duration::from_millis(MAX_BACKOFF_MS));
        assert_eq!(backoff(100, 200), Duration::from_millis(MAX_BACKOFF_MS));
        assert_eq!(backoff(u64::MAX, 5), Duration::from_millis(MAX_BACKOFF_MS));
    }
}
