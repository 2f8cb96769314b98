//! Data cycles that deadlock at run time.
//!
//! The planner warns (W0301) about a cycle of blocking channels whose
//! bytes in flight may exceed what it buffers. At run time such a cycle is
//! stuck when every channel on it is full and every process on it sleeps:
//! each waits to write to the next, and none reads. How full a pipe is
//! (`FIONREAD`) is read on the read end ipc-run holds when it holds one
//! (a process with a restart policy), else on the reader's own end opened
//! again through `/proc/PID/fd` for the time of the call: neither touches
//! the traffic. A process's state is read from `/proc/PID/stat`. A cycle found stuck on two checks in a row, with
//! nothing moved in between, is reported once on stderr, worded as the
//! planner's W0301. Checks run every [`CHECK_INTERVAL`], and only while the
//! plan has such a cycle that is not reported yet: any other run stays
//! without timer wake-ups when idle.
//!
//! A cycle with a channel ipc-run cannot measure (a message queue, a ring)
//! is not watched.

use std::time::Duration;

use nix::unistd::Pid;

use crate::plan::{CycleVerdict, End, FdRole, Mechanism, Plan};

/// How often the cycles are checked while one may deadlock.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A pipe is full when less than this is free: a writer of at most
/// `PIPE_BUF` bytes blocks once the last page cannot take its write, and a
/// larger write fills the pipe completely before it blocks.
const PIPE_BUF: u64 = 4096;

/// The cycles of a plan that may deadlock, and what was seen of them.
#[derive(Debug, Default)]
pub(crate) struct CycleWatch {
    cycles: Vec<Watched>,
}

#[derive(Debug)]
struct Watched {
    /// Index in `plan.cycles`.
    cycle: usize,
    /// Every instance of every process on the cycle.
    instances: Vec<usize>,
    /// The fill of each channel at the last check, when the cycle looked
    /// stuck then.
    stuck_at: Option<Vec<u64>>,
    reported: bool,
}

impl CycleWatch {
    /// The deadlock-risk cycles of `plan` made of pipes and FIFOs only.
    pub fn new(plan: &Plan) -> CycleWatch {
        let cycles = plan
            .cycles
            .iter()
            .enumerate()
            .filter(|(_, cycle)| cycle.verdict == CycleVerdict::DeadlockRisk)
            .filter(|(_, cycle)| {
                cycle.channels.iter().all(|id| {
                    plan.channels.iter().any(|c| {
                        *c.id == **id
                            && matches!(
                                c.mechanism,
                                Mechanism::Pipe { .. } | Mechanism::Fifo { .. }
                            )
                    })
                })
            })
            .map(|(k, cycle)| Watched {
                cycle: k,
                instances: plan
                    .processes
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| cycle.path.iter().any(|n| **n == *p.process))
                    .map(|(i, _)| i)
                    .collect(),
                stuck_at: None,
                reported: false,
            })
            .collect();
        CycleWatch { cycles }
    }

    /// Whether some cycle is still to be checked.
    pub fn active(&self) -> bool {
        self.cycles.iter().any(|c| !c.reported)
    }

    /// Checks every cycle not reported yet: `pid_of` gives an instance's
    /// running pid, `held_fill` a channel's (bytes buffered, capacity) as
    /// read on an end the runtime holds.
    /// Returns the message for each cycle now found stuck twice in a row.
    pub fn check(
        &mut self,
        plan: &Plan,
        pid_of: impl Fn(usize) -> Option<Pid>,
        held_fill: impl Fn(&str) -> Option<(u64, u64)>,
    ) -> Vec<String> {
        let fill_of = |id: &str| held_fill(id).or_else(|| reader_fill(plan, id, &pid_of));
        let mut messages = Vec::new();
        for watched in self.cycles.iter_mut().filter(|c| !c.reported) {
            let cycle = &plan.cycles[watched.cycle];
            let all_sleep = watched
                .instances
                .iter()
                .all(|&i| pid_of(i).is_some_and(sleeps));
            let fills: Option<Vec<(u64, u64)>> =
                cycle.channels.iter().map(|id| fill_of(id)).collect();
            let full = fills.filter(|fills| {
                fills
                    .iter()
                    .all(|&(buffered, capacity)| buffered + PIPE_BUF > capacity)
            });
            let Some(fills) = full.filter(|_| all_sleep) else {
                watched.stuck_at = None;
                continue;
            };
            let buffered: Vec<u64> = fills.iter().map(|&(b, _)| b).collect();
            if watched.stuck_at.as_ref() == Some(&buffered) {
                watched.reported = true;
                messages.push(stuck_message(plan, watched.cycle, &fills));
            } else {
                watched.stuck_at = Some(buffered);
            }
        }
        messages
    }
}

/// The report of a stuck cycle, in the words of the planner's W0301.
fn stuck_message(plan: &Plan, cycle: usize, fills: &[(u64, u64)]) -> String {
    let cycle = &plan.cycles[cycle];
    let total: u64 = fills.iter().map(|&(_, capacity)| capacity).sum();
    let per_channel: Vec<String> = cycle
        .channels
        .iter()
        .zip(fills)
        .map(|(id, &(buffered, capacity))| {
            let mechanism = plan
                .channels
                .iter()
                .find(|c| *c.id == **id)
                .map_or("pipe", |c| c.mechanism.name());
            format!("{id} ({mechanism}) {capacity} bytes, {buffered} buffered")
        })
        .collect();
    format!(
        "deadlock: data cycle {} over blocking channels is stuck: every channel on it is full and every process on it waits; the cycle buffers {total} bytes: {} (W0301)",
        cycle.path.join(" -> "),
        per_channel.join(", ")
    )
}

/// How full pipe or FIFO `channel` is, read on the end one of its running
/// readers holds, opened again through `/proc` (non-blocking, so a FIFO
/// open never waits). `None` when no reader's end can be opened (it was
/// closed or moved, or belongs to a user ipc-run may not inspect).
fn reader_fill(
    plan: &Plan,
    channel: &str,
    pid_of: &impl Fn(usize) -> Option<Pid>,
) -> Option<(u64, u64)> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::{Mode, SFlag};
    use std::os::fd::AsFd;
    plan.processes.iter().enumerate().find_map(|(i, process)| {
        let pid = pid_of(i)?;
        process.fds.iter().find_map(|slot| match &slot.role {
            FdRole::Channel {
                channel: id,
                end: End::Read,
            } if **id == *channel => {
                let path = format!("/proc/{pid}/fd/{}", slot.fd);
                // What the process holds at that number now is checked
                // before it is opened (stat follows the link without
                // opening): opening a device the process put there could
                // have effects of its own. The opened fd is checked again,
                // against the same inode, for a swap in between.
                let is_fifo = |stat: &nix::sys::stat::FileStat| {
                    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO
                };
                let before = nix::sys::stat::stat(path.as_str()).ok()?;
                if !is_fifo(&before) {
                    return None;
                }
                let flags =
                    OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
                let fd = nix::fcntl::open(path.as_str(), flags, Mode::empty()).ok()?;
                let after = nix::sys::stat::fstat(fd.as_fd()).ok()?;
                if !is_fifo(&after)
                    || (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino)
                {
                    return None;
                }
                crate::sys::pipe::fill(fd.as_fd()).ok()
            }
            _ => None,
        })
    })
}

/// Whether process `pid` sleeps (`S`, or `D` uninterruptibly), as one
/// blocked writing to a full pipe does.
fn sleeps(pid: Pid) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which may hold any character.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_some_and(|state| state == 'S' || state == 'D')
}
