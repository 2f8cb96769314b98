//! Signal edges and pid reuse: a sender learns its receiver's pid once, at
//! spawn, from `IPC_PORT_<PORT>` (`pid=…`), and may `kill` it at any time.
//!
//! Two rules keep such a pid from ever naming another process:
//!
//! 1. **A receiver's pid stays reserved while a sender knows it.** A pid is
//!    free for reuse only once its zombie is reaped, so ipc-run observes a
//!    receiver's exit without reaping it (`waitid(WNOWAIT)`) and reaps it
//!    only when no running sender was given that pid. Until then a late
//!    signal reaches a zombie and does nothing.
//! 2. **Senders follow their receiver across restarts.** When a receiver is
//!    started again, each running sender that knows an older pid is stopped
//!    (its stop signal, then SIGKILL after its grace) and started again, so
//!    it gets the new pid; a sender whose own restart comes while one of its
//!    receivers is down waits until that receiver runs again.
//!
//! This module keeps the bookkeeping (who signals whom, which pid each
//! running sender was given, which zombies are held); the supervisor does
//! the waiting and reaping.

use std::collections::{HashMap, HashSet};

use nix::unistd::Pid;

use crate::plan::{EndpointPlan, Mechanism, Plan};

/// Who signals whom, and which pids are reserved for whom.
#[derive(Debug, Default)]
pub struct SignalEdges {
    /// For each instance, the instances it sends signals to.
    receivers_of: Vec<Vec<usize>>,
    /// For each instance, the instances that send it signals.
    senders_of: Vec<Vec<usize>>,
    /// Running sender pid -> the receiver pids it was given at spawn.
    given: HashMap<Pid, Vec<Pid>>,
    /// Receivers that exited and are not reaped yet, because a running
    /// sender still knows their pid.
    held: Vec<Pid>,
}

impl SignalEdges {
    /// The signal edges of a reloaded `plan` (`src/supervise/reload.rs`),
    /// without its removed channels. The pids given to running senders and
    /// the zombies held for them are kept: a sender whose edge a reload
    /// removed still knows its old receiver's pid until it is restarted
    /// (both ends of an added or removed edge are changed, so restarted).
    pub fn rewire(&mut self, plan: &Plan, removed_channels: &HashSet<usize>) {
        let edges = SignalEdges::of(plan, removed_channels);
        self.receivers_of = edges.receivers_of;
        self.senders_of = edges.senders_of;
    }

    /// The signal edges of `plan`, by instance index (plan order).
    pub fn new(plan: &Plan) -> SignalEdges {
        SignalEdges::of(plan, &HashSet::new())
    }

    /// The signal edges of the channels of `plan` not in `skip`. A name a
    /// reload left in a tombstone slot and took again maps to its later,
    /// live slot.
    fn of(plan: &Plan, skip: &HashSet<usize>) -> SignalEdges {
        let index: HashMap<&str, usize> = plan
            .processes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_ref(), i))
            .collect();
        let count = plan.processes.len();
        let mut edges = SignalEdges {
            receivers_of: vec![Vec::new(); count],
            senders_of: vec![Vec::new(); count],
            ..SignalEdges::default()
        };
        let instances = |endpoints: &[EndpointPlan]| -> Vec<usize> {
            endpoints
                .iter()
                .filter_map(|e| match e {
                    EndpointPlan::Port { process, .. } => index.get(process.as_ref()).copied(),
                    _ => None,
                })
                .collect()
        };
        for (c, channel) in plan.channels.iter().enumerate() {
            if skip.contains(&c) || !matches!(channel.mechanism, Mechanism::Signal { .. }) {
                continue;
            }
            for sender in instances(channel.from()) {
                for receiver in instances(channel.to()) {
                    if sender == receiver {
                        continue;
                    }
                    push_unique(&mut edges.receivers_of[sender], receiver);
                    push_unique(&mut edges.senders_of[receiver], sender);
                }
            }
        }
        edges
    }

    /// Whether the plan has any signal edge between two instances.
    pub fn any(&self) -> bool {
        self.receivers_of.iter().any(|r| !r.is_empty())
    }

    /// Instances `sender` signals.
    pub fn receivers_of(&self, sender: usize) -> &[usize] {
        self.receivers_of.get(sender).map_or(&[], Vec::as_slice)
    }

    /// Instances that signal `receiver`.
    pub fn senders_of(&self, receiver: usize) -> &[usize] {
        self.senders_of.get(receiver).map_or(&[], Vec::as_slice)
    }

    /// A sender was spawned as `sender_pid`, given `receiver_pids`.
    pub fn sender_started(&mut self, sender_pid: Pid, receiver_pids: Vec<Pid>) {
        if !receiver_pids.is_empty() {
            self.given.insert(sender_pid, receiver_pids);
        }
    }

    /// Whether the running sender `sender_pid` was given `receiver_pid`.
    pub fn knows(&self, sender_pid: Pid, receiver_pid: Pid) -> bool {
        self.given
            .get(&sender_pid)
            .is_some_and(|pids| pids.contains(&receiver_pid))
    }

    /// A process ended (reaped): it no longer knows any pid.
    pub fn process_reaped(&mut self, pid: Pid) {
        self.given.remove(&pid);
    }

    /// Whether some running sender still knows `pid`.
    pub fn is_reserved(&self, pid: Pid) -> bool {
        self.given.values().any(|pids| pids.contains(&pid))
    }

    /// Whether reaping must go child by child: some pid is reserved or held.
    pub fn careful_reaping(&self) -> bool {
        !self.held.is_empty() || !self.given.is_empty()
    }

    /// `pid` exited and is kept as a zombie.
    pub fn hold(&mut self, pid: Pid) {
        push_unique(&mut self.held, pid);
    }

    /// Whether `pid` is an observed, held zombie.
    pub fn is_held(&self, pid: Pid) -> bool {
        self.held.contains(&pid)
    }

    /// Held zombies no running sender knows any more: to be reaped now.
    pub fn take_releasable(&mut self) -> Vec<Pid> {
        let (release, keep): (Vec<Pid>, Vec<Pid>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|&pid| !self.given.values().any(|pids| pids.contains(&pid)));
        self.held = keep;
        release
    }
}

/// The children of this process (every thread's), from
/// `/proc/self/task/*/children`: orphans adopted as subreaper included. The
/// list can miss a child being reparented at that instant; it is read again
/// at the next SIGCHLD.
pub fn children_of_self() -> Vec<Pid> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        pids.extend(
            text.split_ascii_whitespace()
                .filter_map(|n| n.parse().ok())
                .map(Pid::from_raw),
        );
    }
    pids
}

fn push_unique<T: PartialEq>(items: &mut Vec<T>, item: T) {
    if !items.contains(&item) {
        items.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(n: i32) -> Pid {
        Pid::from_raw(n)
    }

    #[test]
    fn a_zombie_is_released_only_when_no_running_sender_knows_it() {
        let mut edges = SignalEdges::default();
        edges.sender_started(pid(10), vec![pid(20)]);
        edges.sender_started(pid(11), vec![pid(20), pid(21)]);
        assert!(edges.careful_reaping());
        assert!(edges.is_reserved(pid(20)));
        edges.hold(pid(20));
        assert!(edges.is_held(pid(20)));
        assert!(edges.take_releasable().is_empty());
        edges.process_reaped(pid(10));
        assert!(edges.take_releasable().is_empty(), "11 still knows 20");
        edges.process_reaped(pid(11));
        assert_eq!(edges.take_releasable(), vec![pid(20)]);
        assert!(!edges.careful_reaping());
    }

    #[test]
    fn senders_without_receiver_pids_reserve_nothing() {
        let mut edges = SignalEdges::default();
        edges.sender_started(pid(10), Vec::new());
        assert!(!edges.careful_reaping());
        assert!(!edges.knows(pid(10), pid(20)));
    }
}
