//! What ipc-run can read of a channel's traffic without touching its data
//! path, for `ipc-run status` (`docs/operate.md`): a shared-memory ring's
//! `head` and `tail` from the header page the launcher keeps mapped, the
//! messages waiting in a POSIX queue (`mq_getattr` on a held descriptor,
//! or one opened by name for the question) or a System V queue
//! (`msgctl(IPC_STAT)`). Each is read when asked, with a load or a system
//! call or two; nothing is counted as data moves.

use std::ffi::CString;
use std::os::fd::AsFd;

use super::Launched;
use super::objects::ObjectRecord;
use super::resources::Held;
use crate::plan::Mechanism;

/// A channel's traffic as ipc-run sees it; a field is `None` where the
/// mechanism does not show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelTraffic {
    /// Bytes written since the start (a ring's `head`).
    pub bytes_written: Option<u64>,
    /// Bytes read since the start (a ring's `tail`).
    pub bytes_read: Option<u64>,
    /// Bytes written and not read yet.
    pub bytes_waiting: Option<u64>,
    /// Messages in a queue, not received yet.
    pub messages_waiting: Option<u64>,
}

impl Launched {
    /// The traffic of `channel`, where its mechanism shows it to ipc-run;
    /// `None` for the others (a pipe's fill is [`Launched::held_read_end`]'s).
    pub fn traffic(&self, channel: &str) -> Option<ChannelTraffic> {
        let &index = self.channel_index.get(channel)?;
        match &self.plan.channels[index].mechanism {
            Mechanism::PosixShm(shm) if shm.ring.is_some() => {
                let ring = self.created.rings.iter().find(|r| r.channel == index)?;
                let (head, tail) = crate::child::ring::positions(&ring.header);
                Some(ChannelTraffic {
                    bytes_written: Some(head),
                    bytes_read: Some(tail),
                    bytes_waiting: Some(head.saturating_sub(tail)),
                    ..ChannelTraffic::default()
                })
            }
            Mechanism::PosixMq { .. } => Some(ChannelTraffic {
                messages_waiting: Some(self.mq_waiting(index)?),
                ..ChannelTraffic::default()
            }),
            Mechanism::SysvMq { .. } => {
                let id = self.values.sysv_ids.get(channel).copied()?;
                let (messages, bytes) = crate::sys::ipc::msg_waiting(id).ok()?;
                Some(ChannelTraffic {
                    bytes_waiting: Some(bytes),
                    messages_waiting: Some(messages),
                    ..ChannelTraffic::default()
                })
            }
            _ => None,
        }
    }

    /// Messages waiting in the POSIX queue of channel `index`: through a
    /// descriptor ipc-run holds (which it still holds depends on who may
    /// be restarted), else through one opened by name for reading, which
    /// takes nothing from the queue.
    fn mq_waiting(&self, index: usize) -> Option<u64> {
        let held = [Held::MqBoth, Held::MqRead, Held::MqWrite]
            .iter()
            .find_map(|&which| self.created.held.get(&(index, which)));
        if let Some(fd) = held {
            return crate::sys::ipc::mq_waiting(fd.as_fd()).ok();
        }
        let name = self
            .created
            .by_channel
            .get(&index)?
            .iter()
            .find_map(|record| match record {
                ObjectRecord::PosixMq(name) => Some(name),
                _ => None,
            })?;
        let name = CString::new(name.as_str()).ok()?;
        let fd = crate::sys::ipc::mq_open_existing(&name, false).ok()?;
        crate::sys::ipc::mq_waiting(fd.as_fd()).ok()
    }
}
