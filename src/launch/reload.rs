//! A running launch takes a new plan (`ipc-run reload`, `docs/operate.md`).
//!
//! Instances and channels keep their index for the whole run: the
//! supervisor's tables and the held ends are indexed by them. The new plan
//! ([`Launched::reload`]) is laid out on the old one's slots: a kept or
//! changed instance or channel keeps its index, an added one takes a new
//! slot at the end (never the slot a removed one left, whose pidfd, timers
//! and streams may still be registered under its index), and a removed
//! one stays as a tombstone nobody spawns. What is unchanged is not
//! touched: a kept channel keeps its objects and held ends, so a changed
//! reader restarted on it reads on where it stopped.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd};

use nix::fcntl::OFlag;
use nix::unistd::Pid;

use super::objects::Match;
use super::resources::{self, Held};
use super::{LaunchError, Launched, Source, identity};
use crate::plan::{Plan, Readiness};

/// Which slots of a reloaded plan changed ([`Launched::reload`]).
#[derive(Debug, Default, Clone)]
pub struct Slots {
    /// Instances whose plan is new: changed ones (restarted by the
    /// supervisor) and added ones.
    pub respecified: Vec<usize>,
    /// Of those, the added ones (not spawned yet).
    pub added: Vec<usize>,
    /// Instances removed: their process goes, their slot stays.
    pub removed: Vec<usize>,
    /// Channels to create.
    pub added_channels: Vec<usize>,
    /// Channels to remove with their objects.
    pub removed_channels: Vec<usize>,
}

impl Launched {
    /// Takes `plan`, laid out on the current plan's slots as [`Slots`]
    /// says. First what can fail (identities, the wiring of the
    /// respecified instances, the new channels' objects): on failure what
    /// was made is removed again and the run is as it was. Then the
    /// removed instances give up their held ends, the removed channels are
    /// removed, and the held ends of the respecified instances are counted
    /// for their new plan.
    pub fn reload(&mut self, plan: Plan, slots: &Slots) -> Result<(), LaunchError> {
        let mut identities = Vec::new();
        let mut resolver = identity::Resolver::default();
        // Those that now run as ipc-run's own user: an identity their old
        // plan had must not outlive it.
        let mut plain = Vec::new();
        for &i in &slots.respecified {
            let process = &plan.processes[i];
            if process.user.is_none() && process.group.is_none() {
                plain.push(process.name.to_string());
            } else {
                let resolved = resolver.resolve(
                    &process.name,
                    process.user.as_deref(),
                    process.group.as_deref(),
                )?;
                identities.push((process.name.to_string(), resolved));
            }
        }
        let old_plan = std::mem::replace(&mut self.plan, plan);
        let old_channels = self.channel_index.clone();
        // In slot order: an added channel named as a removed one is found
        // in its own slot.
        for (c, channel) in self.plan.channels.iter().enumerate() {
            self.channel_index.insert(channel.id.to_string(), c);
        }
        let made = self
            .needs_of(&slots.respecified)
            .and_then(|needs| self.make_notify_socket().map(|()| needs))
            .and_then(|needs| self.create_channels(&slots.added_channels).map(|()| needs));
        let needs = match made {
            Ok(needs) => needs,
            Err(error) => {
                self.plan = old_plan;
                self.channel_index = old_channels;
                return Err(error);
            }
        };
        for &i in &slots.removed {
            let name = self.plan.processes[i].name.to_string();
            self.release_ends_of(&name);
        }
        for &c in &slots.removed_channels {
            let id = self.plan.channels[c].id.to_string();
            self.remove_channel(c, &id);
        }
        for name in &plain {
            self.identities.remove(name);
        }
        self.identities.extend(identities);
        for (i, process) in self.plan.processes.iter().enumerate() {
            self.process_index.insert(process.name.to_string(), i);
        }
        self.count_again(needs, slots);
        Ok(())
    }

    /// Whether `plan`, laid out as `slots` say, can be wired before any
    /// of it is made: every held end a respecified instance is handed of
    /// a kept channel must still be held. ipc-run gives an end up once
    /// every process that uses it may not be restarted (`restart =
    /// "never"`) and has it; a process a reload adds to such a channel (a
    /// second writer into a pipe) could then only fail to start, after the
    /// rest of the reload was applied. Changes nothing.
    pub fn check_reload(&mut self, plan: &Plan, slots: &Slots) -> Result<(), LaunchError> {
        let old_plan = std::mem::replace(&mut self.plan, plan.clone());
        let old_channels = self.channel_index.clone();
        for (c, channel) in self.plan.channels.iter().enumerate() {
            self.channel_index.insert(channel.id.to_string(), c);
        }
        let result = self.unheld_ends(slots);
        self.plan = old_plan;
        self.channel_index = old_channels;
        result
    }

    /// The first held end of a kept channel a respecified instance of
    /// the (new) plan needs and ipc-run no longer holds.
    fn unheld_ends(&self, slots: &Slots) -> Result<(), LaunchError> {
        let new: HashSet<usize> = slots.added_channels.iter().copied().collect();
        for &i in &slots.respecified {
            let process = &self.plan.processes[i];
            for slot in &process.fds {
                let Source::Held(channel, held) = self.source_of(process, slot)? else {
                    continue;
                };
                if !new.contains(&channel) && !self.created.held.contains_key(&(channel, held)) {
                    return Err(LaunchError::Wiring {
                        instance: process.name.to_string(),
                        fd: slot.fd,
                        reason: format!(
                            "ipc-run no longer holds this end of channel {}: every process that used it was started with restart = \"never\" and has it; restart the run to add users to it",
                            self.plan.channels[channel].id
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Takes back from `pid`, the running process of `instance`, the
    /// held ends it was handed and ipc-run gave up at its spawn (`restart =
    /// "never"`), so that a reload can restart it on the same channels: a
    /// reader's pipe keeps what its writer wrote. Each end is copied from
    /// the fd number it was handed at (`pidfd_getfd(2)`) and checked to
    /// still be that kind of end (a pipe's end of the right direction and
    /// pipe, a socket); a process that moved or closed it cannot be
    /// restarted, and nothing is taken. Then it is pending again, as if it
    /// were restartable.
    pub fn take_back_ends(&mut self, instance: &str, pid: Pid) -> Result<(), LaunchError> {
        let index = *self
            .process_index
            .get(instance)
            .ok_or_else(|| LaunchError::UnknownInstance(instance.to_owned()))?;
        let process = &self.plan.processes[index];
        let wiring = |fd: i32, reason: String| LaunchError::Wiring {
            instance: instance.to_owned(),
            fd,
            reason,
        };
        let pidfd = crate::sys::pidfd::pidfd_open(pid)
            .map_err(|e| LaunchError::sys(format!("pidfd_open of {instance}"), e))?;
        let mut taken = Vec::new();
        for slot in &process.fds {
            let Source::Held(channel, held) = self.source_of(process, slot)? else {
                continue;
            };
            if self.created.held.contains_key(&(channel, held)) {
                continue;
            }
            let fd = crate::sys::pidfd::pidfd_getfd(pidfd.as_fd(), slot.fd).map_err(|e| {
                wiring(
                    slot.fd,
                    format!("cannot take it back from the running process: {e}"),
                )
            })?;
            if let Some(why) = self.not_the_end(channel, held, fd.as_fd()) {
                return Err(wiring(
                    slot.fd,
                    format!("the running process no longer holds it there: {why}"),
                ));
            }
            taken.push(((channel, held), fd));
        }
        self.created.held.extend(taken);
        if self.pending.insert(instance.to_owned()) {
            for key in &self.held_needs[index] {
                *self.need_count.entry(*key).or_insert(0) += 1;
            }
        }
        Ok(())
    }

    /// Why `fd` is not end `held` of `channel`: the wrong kind of file, the
    /// wrong direction, or another file than the end made for the channel
    /// (another pipe or socket: a process that replaced its end, even
    /// when ipc-run holds no end of that channel to compare with).
    fn not_the_end(&self, channel: usize, held: Held, fd: BorrowedFd<'_>) -> Option<String> {
        use nix::sys::stat::{SFlag, fstat};
        let Ok(stat) = fstat(fd) else {
            return Some("it cannot be examined".to_owned());
        };
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        // The mode a read end is never opened with, and a write end.
        let (want, other, wrong) = match held {
            Held::Read => (SFlag::S_IFIFO, Some(Held::Write), OFlag::O_WRONLY),
            Held::Write => (SFlag::S_IFIFO, Some(Held::Read), OFlag::O_RDONLY),
            Held::PairFrom | Held::PairTo | Held::Listen => (SFlag::S_IFSOCK, None, OFlag::O_RDWR),
            _ => return None,
        };
        if kind != want {
            return Some("another kind of file".to_owned());
        }
        if let Ok(flags) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)
            && want == SFlag::S_IFIFO
            && OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE == wrong
        {
            return Some("opened the other way".to_owned());
        }
        if let Some(&(dev, ino)) = self.created.ids.get(&(channel, held))
            && (dev, ino) != (stat.st_dev, stat.st_ino)
        {
            return Some(if want == SFlag::S_IFIFO {
                "another pipe".to_owned()
            } else {
                "another socket".to_owned()
            });
        }
        let peer = other.and_then(|o| self.created.held.get(&(channel, o)));
        match peer.and_then(|p| fstat(p.as_fd()).ok()) {
            Some(peer) if (peer.st_dev, peer.st_ino) != (stat.st_dev, stat.st_ino) => {
                Some("another pipe".to_owned())
            }
            _ => None,
        }
    }

    /// The held ends each of `instances` uses in the plan, in order.
    fn needs_of(&self, instances: &[usize]) -> Result<Vec<Vec<(usize, Held)>>, LaunchError> {
        let mut all = Vec::with_capacity(instances.len());
        for &i in instances {
            let process = &self.plan.processes[i];
            let mut needs = Vec::new();
            for slot in &process.fds {
                if let Source::Held(channel, held) = self.source_of(process, slot)? {
                    needs.push((channel, held));
                }
            }
            all.push(needs);
        }
        Ok(all)
    }

    /// The notify socket, when the plan now has a process that needs one
    /// (`ready = "notify"` or a watchdog) and the run had none. Made before
    /// the channels: when one of those fails, the socket stays, unused,
    /// in the run directory until cleanup, as it would have been made at
    /// start had the run begun with such a process.
    fn make_notify_socket(&mut self) -> Result<(), LaunchError> {
        let needed = self
            .plan
            .processes
            .iter()
            .any(|p| p.ready == Readiness::Notify || p.watchdog_ms.is_some());
        if !needed || self.created.notify.is_some() {
            return Ok(());
        }
        let path = self.run_dir.join(super::NOTIFY_SOCKET_FILE);
        let fd = resources::notify_socket(&mut self.created, &path.to_string_lossy())?;
        self.created.notify = Some(fd);
        Ok(())
    }

    /// Makes the objects and ends of `channels`; on failure removes those
    /// made.
    fn create_channels(&mut self, channels: &[usize]) -> Result<(), LaunchError> {
        for (k, &c) in channels.iter().enumerate() {
            let channel = &self.plan.channels[c];
            let created =
                resources::create_channel(&mut self.created, &mut self.values, c, channel);
            if let Err(error) = created {
                for &made in &channels[..=k] {
                    let id = self.plan.channels[made].id.to_string();
                    self.remove_channel(made, &id);
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// The respecified instances' held ends counted for their new plan
    /// (`needs`, in `slots.respecified` order): the new needs first, then
    /// the old ones given up, so an end both need is never closed in
    /// between; then the new channels' ends nobody is wired to are closed.
    fn count_again(&mut self, needs: Vec<Vec<(usize, Held)>>, slots: &Slots) {
        let added: HashSet<usize> = slots.added.iter().copied().collect();
        for (&i, needs) in slots.respecified.iter().zip(needs) {
            for key in &needs {
                *self.need_count.entry(*key).or_insert(0) += 1;
            }
            if i >= self.held_needs.len() {
                self.held_needs.resize_with(i + 1, Vec::new);
            }
            let before = std::mem::replace(&mut self.held_needs[i], needs);
            let name = self.plan.processes[i].name.to_string();
            if added.contains(&i) {
                self.pending.insert(name);
                self.ended.remove(&*self.plan.processes[i].name);
            } else if self.pending.contains(&name) {
                // A changed instance still counted: its old needs go.
                for key in before {
                    self.give_up(key);
                }
            }
        }
        let new: HashSet<usize> = slots.added_channels.iter().copied().collect();
        let needed = &self.need_count;
        let pinned = &self.created.pinned;
        self.created.held.retain(|key, _| {
            !new.contains(&key.0) || needed.contains_key(key) || pinned.contains(key)
        });
    }

    /// One use of held end `key` less; closed when it was the last.
    fn give_up(&mut self, key: (usize, Held)) {
        let Some(count) = self.need_count.get_mut(&key) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.need_count.remove(&key);
            if !self.created.pinned.contains(&key) {
                self.created.held.remove(&key);
            }
        }
    }

    /// Removes channel `c` (`id`): its held ends, its objects, its values.
    fn remove_channel(&mut self, c: usize, id: &str) {
        self.created.held.retain(|key, _| key.0 != c);
        self.created.ids.retain(|key, _| key.0 != c);
        self.created.pinned.retain(|key| key.0 != c);
        self.need_count.retain(|key, _| key.0 != c);
        self.created.connect.remove(&c);
        self.created.rings.retain(|ring| ring.channel != c);
        let records = self.created.by_channel.remove(&c).unwrap_or_default();
        if let Some(run_dir) = self.created.run_dir.as_ref() {
            for record in records.iter().rev() {
                if let Err(errno) = record.remove(run_dir.fd(), Match::Creator) {
                    tracing::warn!("reload: could not remove {record}: {errno}");
                }
            }
        }
        self.created.objects.retain(|o| !records.contains(o));
        self.values.ports.remove(id);
        self.values.sysv_ids.remove(id);
        self.values.sysv_sem_ids.remove(id);
    }
}
