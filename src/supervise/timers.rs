//! Deadlines of the event loop, earliest first. Pure; the loop arms one
//! timerfd for the earliest.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a deadline is for. Instance deadlines carry the generation (spawn
/// count) they were armed for, so a stale one is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// The instance must be ready by now.
    ReadyTimeout {
        /// Instance index.
        instance: usize,
        /// Generation armed for.
        generation: u64,
    },
    /// Restart the instance now.
    Restart {
        /// Instance index.
        instance: usize,
    },
    /// The stop grace period is over: SIGKILL.
    StopGrace {
        /// Instance index.
        instance: usize,
        /// Generation armed for.
        generation: u64,
    },
    /// The instance, whose turn to be stopped came after it had closed
    /// every channel end it writes, did not end on its own in time: send
    /// its stop signal.
    Settle {
        /// Instance index.
        instance: usize,
        /// Generation armed for.
        generation: u64,
    },
    /// Start the next attempt of the instance's readiness probe, dropping
    /// the current one if it still runs ([`super::probe`]).
    Probe {
        /// Instance index.
        instance: usize,
        /// Generation armed for.
        generation: u64,
        /// The attempt armed for.
        attempt: u32,
    },
    /// The instance's next health check is due, or the one under way took
    /// too long ([`super::health`]).
    Health {
        /// Instance index.
        instance: usize,
        /// The check sequence number armed for.
        seq: u64,
    },
    /// The instance's watchdog period may be over ([`super::health`]).
    Watchdog {
        /// Instance index.
        instance: usize,
        /// Generation armed for.
        generation: u64,
    },
    /// Stop waiting for log pipes held open by stray descendants.
    Drain,
    /// Start the next connect to a listener on another host
    /// ([`super::remote`]), dropping the current one if it still runs.
    RemoteProbe {
        /// The listener's index.
        listener: usize,
        /// The attempt armed for.
        attempt: u32,
    },
    /// The wait for a listener on another host is over.
    RemoteGiveUp {
        /// The listener's index.
        listener: usize,
    },
    /// Ping the watchdog of the manager that started ipc-run
    /// ([`super::sd_notify`]).
    ManagerWatchdog,
    /// Look whether a data cycle that may deadlock is stuck
    /// ([`super::cycles`]).
    CycleCheck,
}

/// A set of deadlines.
#[derive(Debug, Default)]
pub struct Timers {
    queue: BTreeMap<(Instant, u64), Deadline>,
    seq: u64,
}

impl Timers {
    /// Adds `deadline` due at `at`.
    pub fn add(&mut self, at: Instant, deadline: Deadline) {
        self.seq += 1;
        self.queue.insert((at, self.seq), deadline);
    }

    /// How long until the earliest deadline, if any (zero when overdue).
    pub fn next_in(&self, now: Instant) -> Option<Duration> {
        self.queue
            .keys()
            .next()
            .map(|(at, _)| at.saturating_duration_since(now))
    }

    /// The earliest deadline, if any.
    pub fn earliest(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    /// Removes and returns the deadlines due at `now`, earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<Deadline> {
        let mut due = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_stable() {
        let mut timers = Timers::default();
        let now = Instant::now();
        timers.add(now + Duration::from_millis(20), Deadline::Drain);
        timers.add(now, Deadline::Restart { instance: 1 });
        timers.add(now, Deadline::Restart { instance: 2 });
        assert_eq!(timers.next_in(now), Some(Duration::ZERO));
        assert_eq!(
            timers.take_due(now),
            vec![
                Deadline::Restart { instance: 1 },
                Deadline::Restart { instance: 2 }
            ]
        );
        assert_eq!(timers.next_in(now), Some(Duration::from_millis(20)));
        assert!(timers.take_due(now).is_empty());
        assert_eq!(
            timers.take_due(now + Duration::from_secs(1)),
            vec![Deadline::Drain]
        );
        assert_eq!(timers.next_in(now), None);
    }
}
