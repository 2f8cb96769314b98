//! The difference between two plans of one run, as `ipc-run reload` shows
//! and applies it (`docs/operate.md`, "Reload"). Pure: two plans in, a
//! [`PlanDiff`] out.
//!
//! Processes (instances) and channels are matched by name. One present in
//! both plans whose plan differs is *changed*, with what changed in words
//! (`env FOO`, `fd 3`, `argv`); the rest are added or removed. A change the
//! running run cannot take without stopping (a segment's size, a channel's
//! mechanism, the run's name, ...) is a *refusal*, with its reason: a
//! reload with any refusal changes nothing.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ChannelPlan, Mechanism, Plan, PortRefError, ProcessPlan};

/// What a reload does: the changes, in plan order (those removed first),
/// and why it cannot be done live, if it cannot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDiff {
    /// Process instances added, removed or changed.
    pub processes: Vec<Change>,
    /// Channels added, removed or changed.
    pub channels: Vec<Change>,
    /// Why the new plan cannot be applied to the running run; empty when
    /// it can.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// One process or channel that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// `added`, `removed` or `changed`.
    pub change: ChangeKind,
    /// The instance or channel.
    pub name: String,
    /// For a changed one, what changed (`env FOO`, `fd 3`, `argv`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub what: Vec<String>,
}

/// How a process or channel differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// Only in the new plan.
    Added,
    /// Only in the old plan.
    Removed,
    /// In both, with a different plan.
    Changed,
}

impl PlanDiff {
    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty() && self.channels.is_empty()
    }

    /// The names of the processes changed in `kind`.
    pub fn processes_of(&self, kind: ChangeKind) -> impl Iterator<Item = &str> {
        self.processes
            .iter()
            .filter(move |c| c.change == kind)
            .map(|c| c.name.as_str())
    }

    /// The names of the channels changed in `kind`.
    pub fn channels_of(&self, kind: ChangeKind) -> impl Iterator<Item = &str> {
        self.channels
            .iter()
            .filter(move |c| c.change == kind)
            .map(|c| c.name.as_str())
    }

    /// The diff as text, one line per change (`+ process web`,
    /// `~ process reader: env LEVEL`), then the refusals.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.is_empty() {
            out.push_str("no change\n");
        }
        for (what, changes) in [("process", &self.processes), ("channel", &self.channels)] {
            for change in changes {
                let sign = match change.change {
                    ChangeKind::Added => '+',
                    ChangeKind::Removed => '-',
                    ChangeKind::Changed => '~',
                };
                out.push_str(&format!("{sign} {what} {}", change.name));
                if !change.what.is_empty() {
                    out.push_str(&format!(": {}", change.what.join(", ")));
                }
                out.push('\n');
            }
        }
        for reason in &self.refused {
            out.push_str(&format!("refused: {reason}\n"));
        }
        out
    }
}

/// The difference from `old`, the plan a run runs, to `new`, with the
/// reasons `new` cannot be applied to it live.
pub fn diff(old: &Plan, new: &Plan) -> PlanDiff {
    let mut out = PlanDiff {
        processes: changes(
            &old.processes,
            &new.processes,
            |p| &p.name,
            |was, now| process_changes((was, &old.channels), (now, &new.channels)),
        ),
        channels: changes(&old.channels, &new.channels, |c| &c.id, channel_changes),
        refused: Vec::new(),
    };
    out.refused = refusals(old, new, &out);
    out
}

/// Removed (in `old`'s order), changed and added (in `new`'s order).
fn changes<T>(
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &str,
    what: impl Fn(&T, &T) -> Vec<String>,
) -> Vec<Change> {
    let new_by_name: HashMap<&str, &T> = new.iter().map(|t| (name(t), t)).collect();
    let old_by_name: HashMap<&str, &T> = old.iter().map(|t| (name(t), t)).collect();
    let mut out = Vec::new();
    for item in old {
        let change = match new_by_name.get(name(item)) {
            None => Change {
                change: ChangeKind::Removed,
                name: name(item).to_owned(),
                what: Vec::new(),
            },
            Some(now) => {
                let what = what(item, now);
                if what.is_empty() {
                    continue;
                }
                Change {
                    change: ChangeKind::Changed,
                    name: name(item).to_owned(),
                    what,
                }
            }
        };
        out.push(change);
    }
    for item in new {
        if !old_by_name.contains_key(name(item)) {
            out.push(Change {
                change: ChangeKind::Added,
                name: name(item).to_owned(),
                what: Vec::new(),
            });
        }
    }
    out
}

/// What differs between two plans of one instance, each with its plan's
/// channels (which its port variables are rendered against): each
/// top-level key, except `env` (each variable) and `fds` (each fd number).
fn process_changes(
    (old, old_channels): (&ProcessPlan, &[ChannelPlan]),
    (new, new_channels): (&ProcessPlan, &[ChannelPlan]),
) -> Vec<String> {
    if old.same_as(old_channels, new, new_channels) {
        return Vec::new();
    }
    let mut what = Vec::new();
    type Values = HashMap<String, Result<String, PortRefError>>;
    let env = |p: &ProcessPlan, channels: &[ChannelPlan]| -> Values {
        p.env
            .iter()
            .map(|v| {
                let value = v.value.text(&v.name, channels).map(Cow::into_owned);
                (v.name.to_string(), value)
            })
            .collect()
    };
    let (old_env, new_env) = (env(old, old_channels), env(new, new_channels));
    let names: BTreeSet<&str> = old_env
        .keys()
        .chain(new_env.keys())
        .map(String::as_str)
        .collect();
    for name in names {
        // A value that cannot be rendered differs from any other.
        let same = match (old_env.get(name), new_env.get(name)) {
            (Some(Ok(was)), Some(Ok(now))) => was == now,
            (None, None) => true,
            _ => false,
        };
        if !same {
            what.push(format!("env {name}"));
        }
    }
    let fds: BTreeSet<i32> = old.fds.iter().chain(&new.fds).map(|s| s.fd).collect();
    for fd in fds {
        let find = |p: &ProcessPlan| p.fds.iter().find(|s| s.fd == fd).cloned();
        if find(old) != find(new) {
            what.push(format!("fd {fd}"));
        }
    }
    what.extend(
        keys_that_differ(&old.in_plan(old_channels), &new.in_plan(new_channels))
            .into_iter()
            .filter(|key| key != "env" && key != "fds"),
    );
    what
}

/// What differs between two plans of one channel: its top-level keys.
fn channel_changes(old: &ChannelPlan, new: &ChannelPlan) -> Vec<String> {
    if old == new {
        return Vec::new();
    }
    keys_that_differ(old, new)
}

/// The top-level keys whose JSON differs, in the new value's key order.
fn keys_that_differ<T: Serialize>(old: &T, new: &T) -> Vec<String> {
    let (Ok(Value::Object(old)), Ok(Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec!["(not comparable)".to_owned()];
    };
    let mut keys: Vec<String> = new
        .iter()
        .filter(|(key, value)| old.get(*key) != Some(value))
        .map(|(key, _)| key.clone())
        .collect();
    keys.extend(old.keys().filter(|key| !new.contains_key(*key)).cloned());
    keys
}

/// Why `new` cannot replace `old` in a running run, given their `diff`.
fn refusals(old: &Plan, new: &Plan, diff: &PlanDiff) -> Vec<String> {
    let mut refused = Vec::new();
    if old.name != new.name {
        refused.push(format!(
            "the run's name changes (`{}` -> `{}`): it names the run; start a new run",
            old.name, new.name
        ));
    }
    let limits = |plan: &Plan| serde_json::to_value(&plan.limits).ok();
    if limits(old).map(values_only) != limits(new).map(values_only) {
        refused.push(
            "the host limits the plan is checked against differ from the run's (plan with the run's --limits)"
                .to_owned(),
        );
    }
    if old.cycles != new.cycles {
        refused.push(
            "the data cycles and their verdicts change: the run watches the cycles it started with"
                .to_owned(),
        );
    }
    let old_channels: HashMap<&str, &ChannelPlan> =
        old.channels.iter().map(|c| (&*c.id, c)).collect();
    for change in diff
        .channels
        .iter()
        .filter(|c| c.change == ChangeKind::Changed)
    {
        let now = new.channels.iter().find(|c| *c.id == change.name);
        let (Some(was), Some(now)) = (old_channels.get(&*change.name), now) else {
            continue;
        };
        refused.extend(channel_refusal(was, now));
    }
    let old_processes: HashMap<&str, &ProcessPlan> =
        old.processes.iter().map(|p| (&*p.name, p)).collect();
    for process in &new.processes {
        let was = old_processes.get(&*process.name);
        if was.is_none_or(|was| !was.same_as(&old.channels, process, &new.channels)) {
            refused.extend(managed_refusal(was.copied(), process));
        }
    }
    for process in &old.processes {
        if process.managed.is_some() && !new.processes.iter().any(|p| p.name == process.name) {
            refused.push(format!(
                "process {}: ipc-run manages it for a channel; it goes with that channel's mechanism",
                process.name
            ));
        }
    }
    refused
}

/// The limits without where each value was read from.
fn values_only(mut limits: Value) -> Value {
    if let Value::Object(map) = &mut limits {
        for limit in map.values_mut() {
            if let Value::Object(limit) = limit {
                limit.remove("source");
            }
        }
    }
    limits
}

/// Why a channel kept under its name cannot take its new plan live: its
/// objects and both ends' fds stay, so what they are made of must too.
fn channel_refusal(old: &ChannelPlan, new: &ChannelPlan) -> Option<String> {
    let id = &new.id;
    if old.mechanism.kind() != new.mechanism.kind() {
        return Some(format!(
            "channel {id}: its mechanism changes ({} -> {}); it is made once per run",
            old.mechanism.name(),
            new.mechanism.name()
        ));
    }
    let size = |m: &Mechanism| match m {
        Mechanism::PosixShm(shm) => Some((shm.size, shm.ring.as_ref().map(|r| r.capacity))),
        Mechanism::SysvShm(shm) => Some((shm.size, None)),
        _ => None,
    };
    if let (Some((was, was_ring)), Some((now, now_ring))) =
        (size(&old.mechanism), size(&new.mechanism))
    {
        if was != now {
            return Some(format!(
                "channel {id}: its shared-memory size changes ({was} -> {now} bytes); the segment is mapped by its processes and cannot be resized"
            ));
        }
        if was_ring != now_ring {
            return Some(format!(
                "channel {id}: its ring size changes; the ring is mapped by its processes and cannot be resized"
            ));
        }
    }
    if old.mechanism != new.mechanism {
        return Some(format!(
            "channel {id}: its {} parameters change; it is made once per run",
            new.mechanism.name()
        ));
    }
    None
}

/// Why an instance cannot be added or restarted into its new plan: only
/// one ipc-run manages for a channel (a bus's daemon, an MPI launcher),
/// which comes and goes with that channel's mechanism. Health checks,
/// watchdogs, readiness, forwarded and edge signals, probes and accept
/// loops are the supervisor's per-instance tables, rebuilt by a reload.
fn managed_refusal(old: Option<&ProcessPlan>, new: &ProcessPlan) -> Option<String> {
    let name = &new.name;
    match old {
        Some(old) if old.managed.is_some() || new.managed.is_some() => Some(format!(
            "process {name}: ipc-run manages it for a channel; change the channel instead"
        )),
        None if new.managed.is_some() => Some(format!(
            "process {name}: ipc-run would manage it for a channel, which a running run cannot add"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
