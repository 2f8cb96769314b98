//! Adaptive spinning: a side that finds the ring empty (or full) spins
//! only while the other side can move the counter soon, that is while it is
//! running on *another* CPU; otherwise it sleeps on the futex at once.
//!
//! A spin on the CPU the peer needs is pure loss: the peer cannot run until
//! the spinner is preempted or gives up, so a round trip with both ends on
//! one CPU used to cost two whole spins (3.8x a pipe). Each side therefore
//! publishes in the header (`docs/shm-ring.md`, "Presence words") whether
//! it is running or asleep in a futex wait, and the CPU it last ran on. The
//! words are advisory: the futex protocol alone keeps the ring correct, so
//! a stale word costs at most one bounded spin, and a peer that never
//! writes them (the C and Python implementations) reads as "unknown", for
//! which nobody spins.

use std::sync::atomic::Ordering;

use crate::sys::{Mapping, current_cpu, online_cpus};

/// The reader's presence word (its own cache line).
pub(super) const OFF_READER_STATE: usize = 256;
/// The writers' presence word: the producer that marked last.
pub(super) const OFF_WRITER_STATE: usize = 320;

/// Spin rounds at most before sleeping: a peer on another CPU usually
/// moves the counter within microseconds, sooner than a futex sleep and
/// wake-up. Bounded, so a ring that stays empty or full costs a few
/// microseconds of CPU per wait, then sleeps.
const SPIN: u32 = 1 << 8;
/// The peer's word is looked at again every this many rounds, so a spin
/// stops once the peer falls asleep or moves onto this CPU.
const RECHECK: u32 = 32;
/// Records between two refreshes of a side's own word (its CPU may change
/// while it never waits: a producer that always finds room).
const REFRESH: u32 = 64;

/// What a presence word says of one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Never marked, gone, or an implementation without presence words.
    Unknown = 0,
    /// On a CPU, or runnable: it may move its counter any moment.
    Running = 1,
    /// Asleep in a futex wait on the ring: only a wake-up moves it.
    Sleeping = 2,
}

/// A presence word: the state in bits 0-1, the CPU + 1 above (0: unknown).
pub(crate) fn encode(state: State, cpu: Option<u32>) -> u32 {
    let cpu = cpu.filter(|&c| c < (u32::MAX >> 2)).map_or(0, |c| c + 1);
    (cpu << 2) | state as u32
}

/// The state and CPU a presence word holds.
pub(crate) fn decode(word: u32) -> (State, Option<u32>) {
    let state = match word & 3 {
        1 => State::Running,
        2 => State::Sleeping,
        _ => State::Unknown,
    };
    (state, (word >> 2).checked_sub(1))
}

/// Whether a waiter on `own_cpu` should spin for a peer whose presence
/// word is `peer`, on a machine with `online` CPUs: only when the peer is
/// running on a different CPU (an unknown CPU of either side counts as
/// different: the peer said it runs, the machine has room for both).
pub(crate) fn worth_spinning(online: u32, own_cpu: Option<u32>, peer: u32) -> bool {
    if online <= 1 {
        return false;
    }
    match decode(peer) {
        (State::Running, peer_cpu) => match (own_cpu, peer_cpu) {
            (Some(own), Some(peer)) => own != peer,
            _ => true,
        },
        _ => false,
    }
}

/// One side's presence: the word it writes, the word it reads, and how
/// many CPUs the machine has (read once, when the side opens the ring).
#[derive(Debug)]
pub(super) struct Presence {
    own: usize,
    peer: usize,
    online: u32,
    records: u32,
    /// Rounds spun in all, for tests that check a side did not spin.
    pub(super) spun: u64,
}

impl Presence {
    /// The reader's presence, marked running.
    pub(super) fn reader(map: &Mapping) -> Presence {
        Presence::new(map, OFF_READER_STATE, OFF_WRITER_STATE)
    }

    /// A writer's presence, marked running.
    pub(super) fn writer(map: &Mapping) -> Presence {
        Presence::new(map, OFF_WRITER_STATE, OFF_READER_STATE)
    }

    fn new(map: &Mapping, own: usize, peer: usize) -> Presence {
        let presence = Presence {
            own,
            peer,
            online: online_cpus(),
            records: 0,
            spun: 0,
        };
        presence.mark(map, State::Running);
        presence
    }

    /// Publishes this side's state and current CPU; a store only when the
    /// word changes, so a side that stays put does not dirty the line.
    pub(super) fn mark(&self, map: &Mapping, state: State) {
        let cpu = if state == State::Unknown {
            None
        } else {
            current_cpu()
        };
        let word = encode(state, cpu);
        let slot = map.u32_at(self.own);
        if slot.load(Ordering::Relaxed) != word {
            slot.store(word, Ordering::SeqCst);
        }
    }

    /// Counts a record; every [`REFRESH`] records re-marks the CPU.
    pub(super) fn tick(&mut self, map: &Mapping) {
        self.records = self.records.wrapping_add(1);
        if self.records % REFRESH == 0 {
            self.mark(map, State::Running);
        }
    }

    /// Spins (with the CPU's spin-wait hint) until `moved`, for at most
    /// [`SPIN`] rounds and only while spinning can pay off; `false` means
    /// "sleep on the futex now".
    pub(super) fn spin_until(&mut self, map: &Mapping, mut moved: impl FnMut() -> bool) -> bool {
        let (online, peer) = (self.online, map.u32_at(self.peer));
        let worth = || worth_spinning(online, current_cpu(), peer.load(Ordering::Relaxed));
        if !worth() {
            return false;
        }
        for round in 1..=SPIN {
            if moved() {
                return true;
            }
            self.spun += 1;
            if round % RECHECK == 0 && !worth() {
                return false;
            }
            std::hint::spin_loop();
        }
        false
    }

    /// The word this side writes (for tests).
    #[cfg(test)]
    pub(super) fn own_word(&self, map: &Mapping) -> u32 {
        map.u32_at(self.own).load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for state in [State::Unknown, State::Running, State::Sleeping] {
            for cpu in [None, Some(0), Some(1), Some(4095)] {
                assert_eq!(decode(encode(state, cpu)), (state, cpu));
            }
        }
        // A zeroed header (a fresh ring, a C or Python peer) is "unknown".
        assert_eq!(decode(0), (State::Unknown, None));
        assert_eq!(decode(3).0, State::Unknown);
    }

    #[test]
    fn spins_only_for_a_running_peer_on_another_cpu() {
        let running_on = |cpu| encode(State::Running, Some(cpu));
        assert!(worth_spinning(2, Some(0), running_on(1)));
        // Same CPU: the peer cannot run while we spin.
        assert!(!worth_spinning(2, Some(1), running_on(1)));
        // One CPU online: never.
        assert!(!worth_spinning(1, Some(0), running_on(1)));
        // Asleep, or unknown (never marked, gone, another implementation).
        assert!(!worth_spinning(
            8,
            Some(0),
            encode(State::Sleeping, Some(1))
        ));
        assert!(!worth_spinning(8, Some(0), 0));
        // A running peer whose CPU one side cannot tell: the machine has room.
        assert!(worth_spinning(2, None, running_on(1)));
        assert!(worth_spinning(2, Some(0), encode(State::Running, None)));
    }
}
