//! The plan: every decision the launcher needs, and nothing it must guess.
//!
//! A plan is the contract between `plan` and `launch`, and a product of its
//! own: `ipc-run plan` prints it as text or as versioned JSON (schema in
//! `schemas/plan.schema.json`). Values that only exist at run time (the run id
//! and directory, a child's pid, a kernel-chosen TCP port, a System V id) are
//! written as `{placeholders}` that the launcher substitutes; everything else
//! is fixed here, deterministically.

use std::borrow::Cow;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::env::{
    Env, EnvInPlan, EnvIter, EnvValue, EnvVar, PortRef, PortRefError, RenderedVar, port_value,
};
use super::limits::Limits;
use crate::diagnostic::Diagnostic;
use crate::mechanism::Kind;
pub use crate::mechanism::fifo::Deliver;
pub use crate::mechanism::inherit::OwnStream;
pub use crate::mechanism::rpc::Transport;
use crate::topology;

/// Version of the JSON plan format; bumped on incompatible changes.
pub const PLAN_FORMAT_VERSION: u32 = 1;

// Placeholders the launcher substitutes, the complete list:
//
// | placeholder              | value                                              |
// |--------------------------|----------------------------------------------------|
// | `{run_id}`               | the run id, 16 lowercase hex digits                |
// | `{run_dir}`              | the private run directory                          |
// | `{run_dir_pct}`          | the run directory percent-encoded for a URL        |
// | `{pid}`                  | the child's own pid (only in `LISTEN_PID`)         |
// | `{pid:<instance>}`       | the current pid of another instance                |
// | `{port:<channel>}`       | the TCP/UDP port the kernel chose for a channel    |
// | `{sysv_id:<channel>}`    | the System V id (shm, msg or sem) of a channel     |
// | `{sysv_sem_id:<channel>}`| the semaphore set paired with a System V segment   |

/// A byte range in the topology file.
pub(crate) type Span = std::ops::Range<usize>;

/// Placeholder for the run id (16 lowercase hex digits, 64 random bits).
pub const RUN_ID: &str = "{run_id}";
/// Placeholder for the private run directory.
pub const RUN_DIR: &str = "{run_dir}";
/// Placeholder for the run directory percent-encoded as one URL component
/// (every byte but `A-Z a-z 0-9 - . _ ~` as `%XX`, so `/` is `%2F`), for
/// `http+unix://` URLs whose host is the socket path.
pub const RUN_DIR_PCT: &str = "{run_dir_pct}";

/// Appends `text` percent-encoded as one URL component: every byte but the
/// unreserved `A-Z a-z 0-9 - . _ ~` becomes `%XX`.
pub fn percent_encode_into(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
}

/// A complete, validated plan.
// Written (`Serialize`) and compared (`PartialEq`) by hand, below: its
// instances' port variables are rendered against its channels.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// [`PLAN_FORMAT_VERSION`].
    pub format_version: u32,
    /// The topology's name (the file stem when it has none).
    pub name: String,
    /// Every process instance, in declaration order (replicas expanded).
    pub processes: Vec<ProcessPlan>,
    /// Every channel, one per edge, in declaration order.
    pub channels: Vec<ChannelPlan>,
    /// Instances in the order they start.
    pub start_order: Vec<Arc<str>>,
    /// Instances in the order they are stopped (reverse start order).
    pub stop_order: Vec<Arc<str>>,
    /// Data cycles found in the graph and how they were judged.
    pub cycles: Vec<DataCycle>,
    /// Process whose exit status ipc-run follows, if any.
    pub exit_code_from: Option<String>,
    /// Warnings, in the order found.
    pub warnings: Vec<PlanWarning>,
    /// The limits the plan was validated against.
    pub limits: Limits,
    /// The profiles that were active (`--profile`) and what they left out;
    /// absent when the topology has no `profiles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<ProfilesPlan>,
    /// The host groups the processes are split into (`host = "…"` keys or
    /// `--hosts N`); absent for a plan of one implicit group, `local`
    /// ([`Plan::host_groups`] gives the groups of any plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementPlan>,
}

// Field by field, in the order and with the omissions of the derived
// form it replaces, the instances with the plan's channels.
impl Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let optional = [self.profiles.is_some(), self.placement.is_some()];
        let len = 10 + optional.iter().filter(|&&set| set).count();
        let mut out = serializer.serialize_struct("Plan", len)?;
        out.serialize_field("format_version", &self.format_version)?;
        out.serialize_field("name", &self.name)?;
        out.serialize_field(
            "processes",
            &ProcessesInPlan {
                processes: &self.processes,
                channels: &self.channels,
            },
        )?;
        out.serialize_field("channels", &self.channels)?;
        out.serialize_field("start_order", &self.start_order)?;
        out.serialize_field("stop_order", &self.stop_order)?;
        out.serialize_field("cycles", &self.cycles)?;
        out.serialize_field("exit_code_from", &self.exit_code_from)?;
        out.serialize_field("warnings", &self.warnings)?;
        out.serialize_field("limits", &self.limits)?;
        if let Some(profiles) = &self.profiles {
            out.serialize_field("profiles", profiles)?;
        }
        if let Some(placement) = &self.placement {
            out.serialize_field("placement", placement)?;
        }
        out.end()
    }
}

/// A plan's instances, written with its channels.
struct ProcessesInPlan<'a> {
    processes: &'a [ProcessPlan],
    channels: &'a [ChannelPlan],
}

impl Serialize for ProcessesInPlan<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.processes.iter().map(|p| p.in_plan(self.channels)))
    }
}

// Equal when every part is, the instances' environments by the lists they
// read as, each rendered against its own plan's channels: a plan and its
// JSON round trip are equal.
impl PartialEq for Plan {
    fn eq(&self, other: &Plan) -> bool {
        let Plan {
            format_version,
            name,
            processes,
            channels,
            start_order,
            stop_order,
            cycles,
            exit_code_from,
            warnings,
            limits,
            profiles,
            placement,
        } = self;
        *format_version == other.format_version
            && *name == other.name
            && processes.len() == other.processes.len()
            && processes
                .iter()
                .zip(&other.processes)
                .all(|(a, b)| a.same_as(channels, b, &other.channels))
            && *channels == other.channels
            && *start_order == other.start_order
            && *stop_order == other.stop_order
            && *cycles == other.cycles
            && *exit_code_from == other.exit_code_from
            && *warnings == other.warnings
            && *limits == other.limits
            && *profiles == other.profiles
            && *placement == other.placement
    }
}

impl Plan {
    /// Turns every instance's port references into text
    /// ([`Env::render_ports`]).
    pub fn render_ports(&mut self) -> Result<(), PortRefError> {
        for process in &mut self.processes {
            process.env.render_ports(&self.channels)?;
        }
        Ok(())
    }
}

/// The name of the one implicit group of a plan without placement.
pub const LOCAL_GROUP: &str = "local";

/// How a plan's processes are split into host groups
/// (`docs/distributed.md`, "Placement").
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementPlan {
    /// How the groups were made: declared `host = "…"` keys, or `--hosts N`.
    pub source: PlacementSource,
    /// Every group, in order of first appearance in the file.
    pub groups: Vec<HostGroupPlan>,
    /// Every channel whose ends are in more than one group.
    pub cross_edges: Vec<CrossEdgePlan>,
}

/// Where a plan's groups come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PlacementSource {
    /// The processes' `host = "…"` keys.
    Declared,
    /// The planner partitioned the topology (`--hosts N`).
    Partitioned {
        /// The number of groups asked for; the plan may have fewer.
        hosts: u32,
    },
}

/// One host group: the processes one ipc-run runs on one host.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostGroupPlan {
    /// The group's name (`ProcessPlan.host` of its processes).
    pub name: Arc<str>,
    /// Instance names (replicas expanded), in declaration order.
    pub processes: Vec<Arc<str>>,
    /// Why these stay together, in words (the host-local edges that bind
    /// them, or the declaration).
    pub reason: String,
    /// Sum of the declared `cpus` of its processes, when any declared them.
    pub cpus: Option<f64>,
    /// Sum of the declared `memory` (bytes), when any declared it.
    pub memory: Option<u64>,
    /// Bytes of shared memory (POSIX/SysV shm, rings) its channels create:
    /// sizes /dev/shm.
    pub shm_bytes: u64,
}

/// A channel whose ends are in more than one group: a TCP (or rpc over
/// TCP) listener in one group, clients in the others.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrossEdgePlan {
    /// The channel id ([`ChannelPlan::id`]).
    pub channel: Arc<str>,
    /// The group whose process binds the listener (server/reader side).
    pub listener_group: Arc<str>,
    /// The groups whose processes connect.
    pub client_groups: Vec<Arc<str>>,
    /// The TCP port the listener binds on its group's host address: fixed
    /// in the plan (the edge's declared port, else assigned by the planner
    /// from `--base-port`, default 47000, in channel order) so engines can
    /// publish it (Services, socket units) before anything runs.
    pub port: u16,
    /// How a client group learns the listener group's host, in words.
    pub discovery: String,
}

/// One group of a plan as engines see it: [`Plan::host_groups`].
#[derive(Debug, Clone, PartialEq)]
pub struct HostGroupView<'a> {
    /// The group's name (`local` for a plan without placement).
    pub name: &'a str,
    /// Indexes into [`Plan::processes`] of its instances, in plan order.
    pub processes: Vec<usize>,
    /// The group's entry in the placement, when the plan has one.
    pub group: Option<&'a HostGroupPlan>,
    /// The cross edges whose listener is in this group.
    pub listens: Vec<&'a CrossEdgePlan>,
    /// The cross edges this group connects to as a client.
    pub connects: Vec<&'a CrossEdgePlan>,
}

impl Plan {
    /// The host groups of any plan, in order: the placement's groups, or
    /// one implicit group named [`LOCAL_GROUP`] holding every process.
    /// Each process is in the group its `host` names.
    pub fn host_groups(&self) -> Vec<HostGroupView<'_>> {
        let Some(placement) = &self.placement else {
            return vec![HostGroupView {
                name: LOCAL_GROUP,
                processes: (0..self.processes.len()).collect(),
                group: None,
                listens: Vec::new(),
                connects: Vec::new(),
            }];
        };
        let index: std::collections::HashMap<&str, usize> = placement
            .groups
            .iter()
            .enumerate()
            .map(|(g, group)| (group.name.as_ref(), g))
            .collect();
        let mut views: Vec<HostGroupView<'_>> = placement
            .groups
            .iter()
            .map(|group| HostGroupView {
                name: &group.name,
                processes: Vec::new(),
                group: Some(group),
                listens: Vec::new(),
                connects: Vec::new(),
            })
            .collect();
        for (i, process) in self.processes.iter().enumerate() {
            if let Some(&g) = index.get(process.host.as_ref()) {
                views[g].processes.push(i);
            }
        }
        for edge in &placement.cross_edges {
            if let Some(&g) = index.get(edge.listener_group.as_ref()) {
                views[g].listens.push(edge);
            }
            for client in &edge.client_groups {
                if let Some(&g) = index.get(client.as_ref()) {
                    views[g].connects.push(edge);
                }
            }
        }
        views
    }

    /// The group named `name`, if the plan has it.
    pub fn host_group(&self, name: &str) -> Option<HostGroupView<'_>> {
        self.host_groups().into_iter().find(|g| g.name == name)
    }
}

/// The profiles a plan was made with (`docs/topology.md`, "Profiles").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilesPlan {
    /// The active profiles, as given.
    pub active: Vec<String>,
    /// Processes left out because none of their profiles is active.
    pub left_out: Vec<String>,
    /// Edges dropped with them, as `from -> to`.
    pub dropped_edges: Vec<String>,
}

/// A warning as stored in the plan (without source spans).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanWarning {
    /// Stable code such as `W0301`.
    pub code: String,
    /// The headline.
    pub message: String,
    /// Supporting facts.
    pub notes: Vec<String>,
}

impl From<&Diagnostic> for PlanWarning {
    fn from(diagnostic: &Diagnostic) -> Self {
        PlanWarning {
            code: diagnostic.code.to_owned(),
            message: diagnostic.message.clone(),
            notes: diagnostic.notes.clone(),
        }
    }
}

/// One process instance.
///
/// The fields most instances leave unset (`user`, `group`, `env_files`,
/// `forward_signals`, `conditions`, `health`, `watchdog_ms`,
/// `restart_dependents`) live out of line in [`ProcessPlanRare`], made only
/// for an instance that sets one: `Deref` reads them as if they were fields
/// (`plan.user`), unset ones from a shared empty value, and `DerefMut`
/// gives the instance its own on a write. A plan of many instances is then
/// about half its inline size. JSON and schema show every field in place,
/// as before.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "ProcessPlanWire")]
pub struct ProcessPlan {
    // Names are shared (`Arc<str>`) with the instance's fds and the
    // channel ends that name it: a large plan holds each name once.
    /// Instance name: the process name, or `name#i` for replica `i`.
    pub name: Arc<str>,
    /// The process name as declared.
    pub process: Arc<str>,
    /// Replica index when the process has `replicas > 1`.
    pub replica: Option<u32>,
    /// The host group it runs in ([`HostGroupPlan::name`]); `local` when
    /// the plan has no placement.
    pub host: Arc<str>,
    /// The argv exec'd (for `shell`, `/bin/sh -c SCRIPT`).
    pub argv: Arc<[String]>,
    /// Whether the argv is a shell invocation the user asked for.
    pub shell: bool,
    /// Working directory, when set.
    pub cwd: Option<Box<str>>,
    /// Environment variables set by ipc-run, in order.
    pub env: Env,
    /// Variables passed through from ipc-run's own environment when set there.
    pub inherit_env: Arc<[Cow<'static, str>]>,
    /// Every fd the child gets beyond the ones it inherits, sorted by number.
    pub fds: Box<[FdSlot]>,
    /// Readiness protocol.
    pub ready: Readiness,
    /// How long `after` dependants wait for readiness, in ms.
    pub ready_timeout_ms: u64,
    /// Restart policy.
    pub restart: RestartPlan,
    /// Signal that asks it to stop.
    pub stop_signal: SignalRef,
    /// Grace period before SIGKILL, in ms.
    pub stop_timeout_ms: u64,
    /// Processes (instances) that must be ready first.
    pub after: Vec<Arc<str>>,
    /// Set when ipc-run adds the process on the topology's behalf (boxed:
    /// most instances are not).
    pub managed: Option<Box<Managed>>,
    /// The rarely set fields, read through `Deref` (`plan.health`).
    pub rare: RareFields,
}

/// The fields of a [`ProcessPlan`] most instances leave unset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessPlanRare {
    /// User to run as (name or uid), when set; resolved at launch.
    pub user: Option<String>,
    /// Primary group (name or gid), when set; resolved at launch.
    pub group: Option<String>,
    /// Env files read at each start, in order, before `env` (absolute
    /// paths; their values are never in the plan).
    pub env_files: Vec<String>,
    /// Signals ipc-run forwards to it.
    pub forward_signals: Vec<SignalRef>,
    /// The `after` entries that wait for something other than `ready`.
    pub conditions: Vec<AfterCondition>,
    /// Its health check, when it has one.
    pub health: Option<HealthPlan>,
    /// The sd_notify watchdog period in ms (`WATCHDOG_USEC`), when set.
    pub watchdog_ms: Option<u64>,
    /// `ipc-run restart` of it also restarts what waits for it (`after`).
    pub restart_dependents: bool,
}

/// The rare fields of an instance that sets none.
static NO_RARE_FIELDS: ProcessPlanRare = ProcessPlanRare {
    user: None,
    group: None,
    env_files: Vec::new(),
    forward_signals: Vec::new(),
    conditions: Vec::new(),
    health: None,
    watchdog_ms: None,
    restart_dependents: false,
};

/// A [`ProcessPlan`]'s [`ProcessPlanRare`], boxed when it has one. Equal
/// by what it reads as: an instance given an empty box equals one without.
#[derive(Debug, Clone, Default)]
pub struct RareFields(Option<Box<ProcessPlanRare>>);

impl RareFields {
    /// The fields, unset ones from the shared empty value.
    pub fn get(&self) -> &ProcessPlanRare {
        self.0.as_deref().unwrap_or(&NO_RARE_FIELDS)
    }

    /// Boxed only when one of them is set.
    pub fn new(fields: ProcessPlanRare) -> RareFields {
        RareFields((fields != NO_RARE_FIELDS).then(|| Box::new(fields)))
    }
}

impl PartialEq for RareFields {
    fn eq(&self, other: &RareFields) -> bool {
        self.get() == other.get()
    }
}

impl std::ops::Deref for ProcessPlan {
    type Target = ProcessPlanRare;
    fn deref(&self) -> &ProcessPlanRare {
        self.rare.get()
    }
}

impl std::ops::DerefMut for ProcessPlan {
    /// Writing a rare field gives the instance its own [`ProcessPlanRare`].
    fn deref_mut(&mut self) -> &mut ProcessPlanRare {
        self.rare.0.get_or_insert_with(Box::default)
    }
}

impl ProcessPlan {
    /// Whether two instances are the same, each in a plan with `channels`
    /// (its environment rendered against them, [`Env::same_as`]).
    pub fn same_as(
        &self,
        channels: &[ChannelPlan],
        other: &ProcessPlan,
        other_channels: &[ChannelPlan],
    ) -> bool {
        // Every field named, so a new one is compared too.
        let ProcessPlan {
            name,
            process,
            replica,
            host,
            argv,
            shell,
            cwd,
            env,
            inherit_env,
            fds,
            ready,
            ready_timeout_ms,
            restart,
            stop_signal,
            stop_timeout_ms,
            after,
            managed,
            rare,
        } = self;
        *name == other.name
            && *process == other.process
            && *replica == other.replica
            && *host == other.host
            && *argv == other.argv
            && *shell == other.shell
            && *cwd == other.cwd
            && env.same_as(channels, &other.env, other_channels)
            && *inherit_env == other.inherit_env
            && *fds == other.fds
            && *ready == other.ready
            && *ready_timeout_ms == other.ready_timeout_ms
            && *restart == other.restart
            && *stop_signal == other.stop_signal
            && *stop_timeout_ms == other.stop_timeout_ms
            && *after == other.after
            && *managed == other.managed
            && *rare == other.rare
    }

    /// The instance as its plan writes it, its port variables rendered
    /// against the plan's `channels`.
    pub fn in_plan<'a>(&'a self, channels: &'a [ChannelPlan]) -> ProcessInPlan<'a> {
        ProcessInPlan {
            process: self,
            channels,
        }
    }
}

/// An instance with its plan's channels ([`ProcessPlan::in_plan`]).
pub struct ProcessInPlan<'a> {
    process: &'a ProcessPlan,
    channels: &'a [ChannelPlan],
}

impl Serialize for ProcessInPlan<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.process.serialize_with(Some(self.channels), serializer)
    }
}

// Alone, an instance whose environment holds port references cannot be
// written (an error says so): its plan writes it ([`ProcessPlan::in_plan`]).
impl Serialize for ProcessPlan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.serialize_with(None, serializer)
    }
}

impl ProcessPlan {
    // Written field by field, in the order and with the omissions of the
    // wire shape, so the JSON is what it was when every field was inline.
    fn serialize_with<S: serde::Serializer>(
        &self,
        channels: Option<&[ChannelPlan]>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let rare = self.rare.get();
        let optional = [
            rare.user.is_some(),
            rare.group.is_some(),
            !rare.env_files.is_empty(),
            !rare.conditions.is_empty(),
            rare.health.is_some(),
            rare.watchdog_ms.is_some(),
            self.managed.is_some(),
            rare.restart_dependents,
        ];
        let len = 17 + optional.iter().filter(|&&set| set).count();
        let mut out = serializer.serialize_struct("ProcessPlan", len)?;
        out.serialize_field("name", &self.name)?;
        out.serialize_field("process", &self.process)?;
        out.serialize_field("replica", &self.replica)?;
        out.serialize_field("host", &self.host)?;
        out.serialize_field("argv", &self.argv)?;
        out.serialize_field("shell", &self.shell)?;
        out.serialize_field("cwd", &self.cwd)?;
        if let Some(user) = &rare.user {
            out.serialize_field("user", user)?;
        }
        if let Some(group) = &rare.group {
            out.serialize_field("group", group)?;
        }
        match channels {
            Some(channels) => out.serialize_field("env", &self.env.in_plan(channels))?,
            None => out.serialize_field("env", &self.env)?,
        }
        out.serialize_field("inherit_env", &self.inherit_env)?;
        if !rare.env_files.is_empty() {
            out.serialize_field("env_files", &rare.env_files)?;
        }
        out.serialize_field("fds", &self.fds)?;
        out.serialize_field("ready", &self.ready)?;
        out.serialize_field("ready_timeout_ms", &self.ready_timeout_ms)?;
        out.serialize_field("restart", &self.restart)?;
        out.serialize_field("stop_signal", &self.stop_signal)?;
        out.serialize_field("stop_timeout_ms", &self.stop_timeout_ms)?;
        out.serialize_field("after", &self.after)?;
        out.serialize_field("forward_signals", &rare.forward_signals)?;
        if !rare.conditions.is_empty() {
            out.serialize_field("conditions", &rare.conditions)?;
        }
        if let Some(health) = &rare.health {
            out.serialize_field("health", health)?;
        }
        if let Some(watchdog_ms) = &rare.watchdog_ms {
            out.serialize_field("watchdog_ms", watchdog_ms)?;
        }
        if let Some(managed) = &self.managed {
            out.serialize_field("managed", managed)?;
        }
        if rare.restart_dependents {
            out.serialize_field("restart_dependents", &true)?;
        }
        out.end()
    }
}

// The schema describes the plan as written: the wire shape, by its name.
schema_as!(ProcessPlan => ProcessPlanWire);

impl From<ProcessPlanWire> for ProcessPlan {
    fn from(wire: ProcessPlanWire) -> Self {
        let ProcessPlanWire {
            name,
            process,
            replica,
            host,
            argv,
            shell,
            cwd,
            user,
            group,
            env,
            inherit_env,
            env_files,
            fds,
            ready,
            ready_timeout_ms,
            restart,
            stop_signal,
            stop_timeout_ms,
            after,
            forward_signals,
            conditions,
            health,
            watchdog_ms,
            managed,
            restart_dependents,
        } = wire;
        ProcessPlan {
            name,
            process,
            replica,
            host,
            argv: argv.into(),
            shell,
            cwd: cwd.map(Into::into),
            env,
            inherit_env,
            fds: fds.into(),
            ready,
            ready_timeout_ms,
            restart,
            stop_signal,
            stop_timeout_ms,
            after,
            managed,
            rare: RareFields::new(ProcessPlanRare {
                user,
                group,
                env_files,
                forward_signals,
                conditions,
                health,
                watchdog_ms,
                restart_dependents,
            }),
        }
    }
}

// Every field of an instance in place: the shape serde reads and the
// schema shows (its doc line is the schema's description). It lives only
// while one instance is read; `ProcessPlan` keeps the instance compact.
/// One process instance.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename = "ProcessPlan")]
struct ProcessPlanWire {
    // Names are shared (`Arc<str>`) with the instance's fds and the
    // channel ends that name it: a large plan holds each name once.
    /// Instance name: the process name, or `name#i` for replica `i`.
    name: Arc<str>,
    /// The process name as declared.
    process: Arc<str>,
    /// Replica index when the process has `replicas > 1`.
    replica: Option<u32>,
    /// The host group it runs in ([`HostGroupPlan::name`]); `local` when
    /// the plan has no placement.
    host: Arc<str>,
    /// The argv exec'd (for `shell`, `/bin/sh -c SCRIPT`).
    argv: Vec<String>,
    /// Whether the argv is a shell invocation the user asked for.
    shell: bool,
    /// Working directory, when set.
    cwd: Option<String>,
    /// User to run as (name or uid), when set; resolved at launch.
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    /// Primary group (name or gid), when set; resolved at launch.
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    /// Environment variables set by ipc-run, in order.
    env: Env,
    /// Variables passed through from ipc-run's own environment when set there.
    inherit_env: Arc<[Cow<'static, str>]>,
    /// Env files read at each start, in order, before `env` (absolute
    /// paths; their values are never in the plan).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    env_files: Vec<String>,
    /// Every fd the child gets beyond the ones it inherits, sorted by number.
    fds: Vec<FdSlot>,
    /// Readiness protocol.
    ready: Readiness,
    /// How long `after` dependants wait for readiness, in ms.
    ready_timeout_ms: u64,
    /// Restart policy.
    restart: RestartPlan,
    /// Signal that asks it to stop.
    stop_signal: SignalRef,
    /// Grace period before SIGKILL, in ms.
    stop_timeout_ms: u64,
    /// Processes (instances) that must be ready first.
    after: Vec<Arc<str>>,
    /// Signals ipc-run forwards to it.
    forward_signals: Vec<SignalRef>,
    /// The `after` entries that wait for something other than `ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    conditions: Vec<AfterCondition>,
    /// Its health check, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    health: Option<HealthPlan>,
    /// The sd_notify watchdog period in ms (`WATCHDOG_USEC`), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    watchdog_ms: Option<u64>,
    /// Set when ipc-run adds the process on the topology's behalf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    managed: Option<Box<Managed>>,
    /// `ipc-run restart` of it also restarts what waits for it (`after`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    restart_dependents: bool,
}

/// One `after` entry with a condition other than `ready`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AfterCondition {
    /// The instance waited for (one of `after`).
    pub instance: Arc<str>,
    /// What is waited for.
    pub condition: crate::topology::Condition,
}

/// A process's health check ([`crate::topology::HealthSpec`], resolved).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthPlan {
    /// What is checked.
    pub check: HealthCheck,
    /// Time between the end of one check and the start of the next, in ms.
    pub interval_ms: u64,
    /// How long one check may take, in ms.
    pub timeout_ms: u64,
    /// Consecutive failures that make the process unhealthy.
    pub retries: u32,
    /// Failures within this time after a start do not count, in ms.
    pub start_period_ms: u64,
}

/// What a health check does.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum HealthCheck {
    /// Runs this argv as a child; exit 0 = healthy.
    Exec {
        /// The command.
        argv: Vec<String>,
    },
    /// Connects to the listener of one of its own ports.
    Connect {
        /// The port.
        port: String,
        /// The channel the port serves.
        channel: Arc<str>,
    },
    /// Connects to a TCP address.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// `GET path` over HTTP/1.1; a 2xx status = healthy.
    Http {
        /// The channel of its own port it is sent to, if not an address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<Arc<str>>,
        /// The TCP address it is sent to, if not a port's channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
        /// The request path.
        path: String,
    },
}

impl HealthCheck {
    /// A one-line description for text plans and messages.
    pub fn describe(&self) -> String {
        match self {
            HealthCheck::Exec { argv } => format!("exec {}", argv.join(" ")),
            HealthCheck::Connect { port, channel } => format!("connect {port} ({channel})"),
            HealthCheck::Tcp { address } => format!("tcp {address}"),
            HealthCheck::Http {
                channel,
                address,
                path,
            } => format!(
                "http GET {path} on {}",
                channel
                    .as_deref()
                    .or(address.as_deref())
                    .unwrap_or_default()
            ),
        }
    }
}

/// A process ipc-run adds to the plan on the topology's behalf: a broker
/// its clients meet at (a private `dbus-daemon`) or a launcher that starts
/// other processes itself (`mpirun`). It is supervised, logged and cleaned
/// up like a declared process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Managed {
    /// What it is.
    pub role: ManagedRole,
    /// The channel it serves.
    pub channel: Arc<str>,
    /// Why ipc-run starts it, in words.
    pub reason: Cow<'static, str>,
}

/// The kind of process ipc-run manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ManagedRole {
    /// A broker its clients connect to.
    Broker,
    /// A launcher that starts other processes of the topology.
    Launcher,
}

/// A signal by name and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SignalRef {
    /// Name such as `SIGTERM`.
    pub name: &'static str,
    /// Number on Linux x86_64/aarch64.
    pub number: i32,
}

/// A signal as read from a plan file, before its name is checked against
/// the signals ipc-run knows.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalFields {
    name: String,
    number: i32,
}

// The name is `&'static str`: a signal read back is one of the table's.
impl<'de> Deserialize<'de> for SignalRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = SignalFields::deserialize(deserializer)?;
        SignalRef::try_from(fields).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<SignalFields> for SignalRef {
    type Error = String;

    fn try_from(fields: SignalFields) -> Result<Self, String> {
        let known = super::signals::parse_signal(&fields.name)
            .ok()
            .filter(|signal| signal.name == fields.name);
        match known {
            Some(signal) if signal.number == fields.number => Ok(signal),
            Some(signal) => Err(format!(
                "{} is signal {}, not {}",
                signal.name, signal.number, fields.number
            )),
            None => Err(format!("unknown signal `{}`", fields.name)),
        }
    }
}

/// Readiness protocol of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Readiness {
    /// Ready once exec'd.
    Started,
    /// Ready on `READY=1` to `$NOTIFY_SOCKET`.
    Notify,
    /// Ready when a newline is written to this fd.
    Fd {
        /// The child's fd.
        fd: i32,
    },
}

/// Restart policy with its numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartPlan {
    /// never, on-failure or always.
    pub policy: RestartPolicy,
    /// Restarts allowed before the process is marked failed.
    pub limit: u32,
    /// First backoff in ms; doubles up to [`MAX_BACKOFF_MS`].
    pub backoff_ms: u64,
}

/// What happens when a process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart.
    Never,
    /// Restart after a non-zero exit or death by signal.
    OnFailure,
    /// Restart whenever it exits.
    Always,
}

/// Longest delay between restarts.
pub const MAX_BACKOFF_MS: u64 = 30_000;

/// One fd in a child's table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FdSlot {
    /// The fd number in the child.
    pub fd: i32,
    /// Port name (`stdin`, `stdout`, `stderr` or a named port).
    pub port: Arc<str>,
    /// What is behind the fd.
    pub role: FdRole,
}

/// What an fd in a child refers to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FdRole {
    /// One end of a channel.
    Channel {
        /// Channel id.
        channel: Arc<str>,
        /// Which end.
        end: End,
    },
    /// The write end of the readiness pipe.
    Ready,
}

/// The end of a channel an endpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum End {
    /// Writes (pipe write end, sender, client).
    Write,
    /// Reads (pipe read end, receiver).
    Read,
    /// Reads and writes (socketpair end, shared memory).
    Both,
    /// Accepts connections or receives datagrams on a bound socket.
    Listen,
    /// Connects to a listener or sends to a bound address.
    Connect,
    /// Sends signals or posts semaphores.
    Send,
    /// Receives signals or waits on semaphores.
    Receive,
}

/// A channel endpoint, resolved to an instance.
///
/// A port's `IPC_PORT_*` variable name follows from its port name
/// ([`port_env_name`], [`EndpointPlan::env_name`]): it is written in the
/// JSON (`env`) and shown in the schema as before, not held by every
/// endpoint of a large plan.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "EndpointPlanWire")]
pub enum EndpointPlan {
    /// A port of an instance.
    Port {
        /// Instance name.
        process: Arc<str>,
        /// Port name.
        port: Arc<str>,
        /// The end it holds.
        end: End,
        /// The fd it gets, when the mechanism is handed over as an fd.
        fd: PortFd,
    },
    /// ipc-run's own stdin or stdout.
    Own {
        /// `stdin` or `stdout`.
        stream: OwnStream,
    },
    /// A peer ipc-run does not launch; it reaches the channel by name.
    External,
}

/// The fd an endpoint gets, if any: an `Option<i32>` in five bytes
/// ([`PortFd::get`]), so that an endpoint, of which a plan holds about five
/// an instance, is 40 bytes instead of 48. Its fields are private and
/// `None` is always [`PortFd::NONE`], so it compares by what it reads as
/// and `NONE` is a pattern.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, packed)]
pub struct PortFd {
    /// The fd when `set`.
    fd: i32,
    /// Whether there is one.
    set: bool,
}

impl PortFd {
    /// No fd.
    pub const NONE: PortFd = PortFd { fd: 0, set: false };

    /// The fd, if any.
    pub fn get(self) -> Option<i32> {
        // Copied out: a packed struct's fields are read by value.
        let PortFd { fd, set } = self;
        set.then_some(fd)
    }
}

impl From<Option<i32>> for PortFd {
    fn from(fd: Option<i32>) -> Self {
        match fd {
            Some(fd) => PortFd { fd, set: true },
            None => PortFd::NONE,
        }
    }
}

// Shown as the `Option<i32>` it stands for.
impl std::fmt::Debug for PortFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl EndpointPlan {
    /// The environment variable describing a port's end, `IPC_PORT_<PORT>`.
    pub fn env_name(&self) -> Option<String> {
        match self {
            EndpointPlan::Port { port, .. } => Some(port_env_name(port)),
            _ => None,
        }
    }
}

/// The environment variable that describes a port: `IPC_PORT_` and the
/// port name in upper case, `-` as `_`.
pub fn port_env_name(port: &str) -> String {
    let mut name = String::with_capacity("IPC_PORT_".len() + port.len());
    name.push_str("IPC_PORT_");
    name.extend(port.chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    name
}

// Written through the wire shape, with the variable name made from the port.
impl Serialize for EndpointPlan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            EndpointPlan::Port {
                process,
                port,
                end,
                fd,
            } => EndpointPlanOut::Port {
                process,
                port,
                end: *end,
                fd: fd.get(),
                env: port_env_name(port),
            },
            EndpointPlan::Own { stream } => EndpointPlanOut::Own { stream: *stream },
            EndpointPlan::External => EndpointPlanOut::External,
        }
        .serialize(serializer)
    }
}

// The schema describes the endpoint as written: the wire shape, by its name.
schema_as!(EndpointPlan => EndpointPlanWire);

// The variable name read back is not kept: it is the port's.
impl From<EndpointPlanWire> for EndpointPlan {
    fn from(wire: EndpointPlanWire) -> Self {
        match wire {
            EndpointPlanWire::Port {
                process,
                port,
                end,
                fd,
                env: _,
            } => EndpointPlan::Port {
                process,
                port,
                end,
                fd: fd.into(),
            },
            EndpointPlanWire::Own { stream } => EndpointPlan::Own { stream },
            EndpointPlanWire::External => EndpointPlan::External,
        }
    }
}

// Every field in place: the shape serde reads and the schema shows (its doc
// lines are the schema's descriptions).
/// A channel endpoint, resolved to an instance.
#[derive(Deserialize, JsonSchema)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    deny_unknown_fields,
    rename = "EndpointPlan"
)]
enum EndpointPlanWire {
    /// A port of an instance.
    Port {
        /// Instance name.
        process: Arc<str>,
        /// Port name.
        port: Arc<str>,
        /// The end it holds.
        end: End,
        /// The fd it gets, when the mechanism is handed over as an fd.
        fd: Option<i32>,
        /// The environment variable describing the port.
        // Read to check it is a string; the endpoint makes it from `port`.
        #[allow(dead_code)]
        env: Arc<str>,
    },
    /// ipc-run's own stdin or stdout.
    Own {
        /// `stdin` or `stdout`.
        stream: OwnStream,
    },
    /// A peer ipc-run does not launch; it reaches the channel by name.
    External,
}

// The wire shape as written, borrowing the endpoint's names.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum EndpointPlanOut<'a> {
    Port {
        process: &'a Arc<str>,
        port: &'a Arc<str>,
        end: End,
        fd: Option<i32>,
        env: String,
    },
    Own {
        stream: OwnStream,
    },
    External,
}

/// How a mechanism was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Choice {
    /// `mechanism = "auto"`: the planner chose.
    Auto,
    /// Named in the file and validated.
    Explicit,
}

/// One channel: an edge with its mechanism decided.
///
/// Compact, as a plan holds one per edge: both sides' endpoints are one
/// boxed slice, the `from` side first ([`ChannelPlan::from`],
/// [`ChannelPlan::to`]); the named objects and `in_flight`, which most
/// channels of a large plan lack, are boxed only when set
/// ([`ChannelPlan::objects`], [`ChannelPlan::in_flight`]); the capacity is
/// a number and a flag ([`ChannelPlan::capacity`]). JSON and schema show
/// every field in place, as before (`ChannelPlanWire` is the shape read).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "ChannelPlanWire")]
pub struct ChannelPlan {
    /// Channel id: the edge's name or `eN` (N its index in the file).
    pub id: Arc<str>,
    /// What the edge carries.
    pub traffic: Traffic,
    /// Chosen mechanism with its parameters.
    pub mechanism: Mechanism,
    /// Whether it was chosen or named.
    pub choice: Choice,
    // Fixed text stays borrowed: a large plan holds no copy per channel.
    /// Why this mechanism, in words.
    pub reason: Cow<'static, str>,
    /// The `from` side's endpoints, then the `to` side's.
    ends: Box<[EndpointPlan]>,
    /// How many of `ends` are the `from` side's.
    from_len: u32,
    /// The named objects and `in_flight`, when either is set.
    rare: Option<Box<ChannelRare>>,
    /// Whether a writer blocks when the channel is full.
    pub blocking: bool,
    /// Whether `capacity` holds the capacity.
    bounded: bool,
    /// The capacity when `bounded`, else 0.
    capacity: u64,
}

/// The fields of a [`ChannelPlan`] most channels leave empty.
#[derive(Debug, Clone, PartialEq)]
struct ChannelRare {
    /// [`ChannelPlan::objects`].
    objects: Box<[NamedObject]>,
    /// [`ChannelPlan::in_flight`].
    in_flight: Option<u64>,
}

/// A [`ChannelPlan`]'s fields but its endpoints, for [`ChannelPlan::new`].
#[derive(Debug, Clone)]
pub struct ChannelHead {
    /// [`ChannelPlan::id`].
    pub id: Arc<str>,
    /// [`ChannelPlan::traffic`].
    pub traffic: Traffic,
    /// [`ChannelPlan::mechanism`].
    pub mechanism: Mechanism,
    /// [`ChannelPlan::choice`].
    pub choice: Choice,
    /// [`ChannelPlan::reason`].
    pub reason: Cow<'static, str>,
    /// [`ChannelPlan::objects`].
    pub objects: Box<[NamedObject]>,
    /// [`ChannelPlan::blocking`].
    pub blocking: bool,
    /// [`ChannelPlan::capacity`].
    pub capacity: Option<u64>,
    /// [`ChannelPlan::in_flight`].
    pub in_flight: Option<u64>,
}

impl ChannelPlan {
    /// A channel whose first `from_len` of `ends` are its `from` side, the
    /// rest its `to` side.
    pub fn new(head: ChannelHead, ends: Vec<EndpointPlan>, from_len: usize) -> Self {
        let ChannelHead {
            id,
            traffic,
            mechanism,
            choice,
            reason,
            objects,
            blocking,
            capacity,
            in_flight,
        } = head;
        debug_assert!(from_len <= ends.len(), "a side within the ends");
        let rare = (!objects.is_empty() || in_flight.is_some())
            .then(|| Box::new(ChannelRare { objects, in_flight }));
        ChannelPlan {
            id,
            traffic,
            mechanism,
            choice,
            reason,
            ends: ends.into_boxed_slice(),
            // Bounded by the process cap: far below 2^32 endpoints.
            from_len: from_len as u32,
            rare,
            blocking,
            bounded: capacity.is_some(),
            capacity: capacity.unwrap_or(0),
        }
    }

    /// Named kernel or file-system objects it creates.
    pub fn objects(&self) -> &[NamedObject] {
        self.rare.as_ref().map_or(&[], |rare| &rare.objects)
    }

    /// Bytes the channel buffers before writers block, when bounded.
    pub fn capacity(&self) -> Option<u64> {
        self.bounded.then_some(self.capacity)
    }

    /// Bytes declared in flight (`in_flight`), for cycle analysis.
    pub fn in_flight(&self) -> Option<u64> {
        self.rare.as_ref().and_then(|rare| rare.in_flight)
    }

    /// Writers, senders, clients.
    pub fn from(&self) -> &[EndpointPlan] {
        &self.ends[..self.from_len as usize]
    }

    /// Readers, receivers, servers.
    pub fn to(&self) -> &[EndpointPlan] {
        &self.ends[self.from_len as usize..]
    }

    /// Both sides, `from` first.
    pub fn ends(&self) -> &[EndpointPlan] {
        &self.ends
    }

    /// The `from` side, writable.
    pub fn from_mut(&mut self) -> &mut [EndpointPlan] {
        self.ends_mut().0
    }

    /// The `to` side, writable.
    pub fn to_mut(&mut self) -> &mut [EndpointPlan] {
        self.ends_mut().1
    }

    /// Both sides, writable: (`from`, `to`).
    pub fn ends_mut(&mut self) -> (&mut [EndpointPlan], &mut [EndpointPlan]) {
        self.ends.split_at_mut(self.from_len as usize)
    }

    /// Replaces both sides.
    pub fn set_ends(&mut self, mut from: Vec<EndpointPlan>, to: Vec<EndpointPlan>) {
        // Bounded by the process cap (see `new`).
        self.from_len = from.len() as u32;
        from.reserve_exact(to.len());
        from.extend(to);
        self.ends = from.into_boxed_slice();
    }
}

// Written field by field in the order of the wire shape, `from` and `to`
// as two lists.
impl Serialize for ChannelPlan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("ChannelPlan", 11)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("traffic", &self.traffic)?;
        out.serialize_field("mechanism", &self.mechanism)?;
        out.serialize_field("choice", &self.choice)?;
        out.serialize_field("reason", &self.reason)?;
        out.serialize_field("from", self.from())?;
        out.serialize_field("to", self.to())?;
        out.serialize_field("objects", self.objects())?;
        out.serialize_field("blocking", &self.blocking)?;
        out.serialize_field("capacity", &self.capacity())?;
        out.serialize_field("in_flight", &self.in_flight())?;
        out.end()
    }
}

// The schema describes the channel as written: the wire shape, by its name.
schema_as!(ChannelPlan => ChannelPlanWire);

impl From<ChannelPlanWire> for ChannelPlan {
    fn from(wire: ChannelPlanWire) -> Self {
        let ChannelPlanWire {
            id,
            traffic,
            mechanism,
            choice,
            reason,
            from,
            to,
            objects,
            blocking,
            capacity,
            in_flight,
        } = wire;
        let head = ChannelHead {
            id,
            traffic,
            mechanism,
            choice,
            reason: reason.into(),
            objects: objects.into(),
            blocking,
            capacity,
            in_flight,
        };
        let from_len = from.len();
        let mut ends = from;
        ends.extend(to);
        ChannelPlan::new(head, ends, from_len)
    }
}

// Every field in place: the shape serde reads and the schema shows (its doc
// lines are the schema's descriptions). It lives only while one channel is
// read.
/// One channel: an edge with its mechanism decided.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename = "ChannelPlan")]
struct ChannelPlanWire {
    /// Channel id: the edge's name or `eN` (N its index in the file).
    id: Arc<str>,
    /// What the edge carries.
    traffic: Traffic,
    /// Chosen mechanism with its parameters.
    mechanism: Mechanism,
    /// Whether it was chosen or named.
    choice: Choice,
    /// Why this mechanism, in words.
    reason: String,
    /// Writers, senders, clients.
    from: Vec<EndpointPlan>,
    /// Readers, receivers, servers.
    to: Vec<EndpointPlan>,
    /// Named kernel or file-system objects it creates.
    objects: Vec<NamedObject>,
    /// Whether a writer blocks when the channel is full.
    blocking: bool,
    /// Bytes the channel buffers before writers block, when bounded.
    capacity: Option<u64>,
    /// Bytes declared in flight (`in_flight`), for cycle analysis.
    in_flight: Option<u64>,
}

/// What flows over an edge; the planner picks a mechanism from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Traffic {
    /// An unframed byte stream.
    Stream,
    /// Discrete messages whose boundaries matter.
    Messages,
    /// A region of memory both sides map.
    Shared,
    /// Requests and responses, server on the `to` side.
    Request,
    /// An event without payload.
    Notify,
}

/// A named object the launcher creates exclusively and removes at exit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedObject {
    /// Object kind.
    pub kind: ObjectKind,
    /// Name or path template (`{run_id}`, `{run_dir}` substituted at launch).
    pub name: String,
    /// Permission bits, applied whatever the umask.
    pub mode: u32,
}

/// Kinds of named objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectKind {
    /// A FIFO in the run directory.
    Fifo,
    /// A Unix socket file in the run directory.
    UnixSocket,
    /// A POSIX shared memory object under `/dev/shm`.
    PosixShm,
    /// A POSIX message queue.
    PosixMq,
    /// A POSIX named semaphore (`/dev/shm/sem.*`).
    PosixSem,
    /// A System V shared memory segment (IPC_PRIVATE, id handed over).
    SysvShm,
    /// A System V message queue (IPC_PRIVATE, id handed over).
    SysvMq,
    /// A System V semaphore set (IPC_PRIVATE, id handed over).
    SysvSem,
}

/// The ring a `sync = "ring"` segment holds (`docs/shm-ring.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RingPlan {
    /// Bytes of the data area: the segment size less the 4096-byte header,
    /// rounded down to a multiple of 64. The largest record is 8 less.
    pub capacity: u64,
    /// Writer instances the ring is formatted for: the end of the stream
    /// comes when this many are done.
    pub producers: u32,
}

// The plan's own copy of `topology::SocketType`, spelt the same way, so that
// the plan format does not follow the file format by accident. The doc line
// is the schema's description: keep it as the topology's.
/// Unix socket types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SocketType {
    /// SOCK_STREAM: a byte stream.
    Stream,
    /// SOCK_SEQPACKET: reliable, ordered, message boundaries kept.
    Seqpacket,
    /// SOCK_DGRAM: datagrams.
    Dgram,
}

impl SocketType {
    /// The spelling used in plans (the port description's).
    pub fn as_str(self) -> &'static str {
        crate::mechanism::child_socket(self).as_str()
    }
}

impl From<topology::SocketType> for SocketType {
    fn from(socket: topology::SocketType) -> Self {
        match socket {
            topology::SocketType::Stream => SocketType::Stream,
            topology::SocketType::Seqpacket => SocketType::Seqpacket,
            topology::SocketType::Dgram => SocketType::Dgram,
        }
    }
}

impl From<SocketType> for topology::SocketType {
    fn from(socket: SocketType) -> Self {
        match socket {
            SocketType::Stream => topology::SocketType::Stream,
            SocketType::Seqpacket => topology::SocketType::Seqpacket,
            SocketType::Dgram => topology::SocketType::Dgram,
        }
    }
}

/// The mechanism of a channel and every parameter the launcher needs.
///
/// The common mechanisms of a large plan (pipe, socketpair, inherit, a
/// System V semaphore set) keep their few bytes inline; the others, which
/// carry names, paths and addresses, keep their parameters in one box
/// each, so a channel's mechanism is 16 bytes. JSON and schema show the
/// parameters in place, as before (`MechanismWire` is the shape read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "MechanismWire")]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Mechanism {
    /// ipc-run's own stdin/stdout handed to the process; nothing copies.
    Inherit {
        /// `stdin` or `stdout`.
        stream: OwnStream,
    },
    /// An anonymous pipe.
    Pipe {
        /// Atomic write size (`PIPE_BUF`).
        atomic_write: u64,
    },
    /// A FIFO in the run directory.
    Fifo(Box<FifoParams>),
    /// A Unix socketpair.
    Socketpair {
        /// Socket type.
        socket: SocketType,
    },
    /// A Unix socket bound (and listening) before exec, passed by `LISTEN_FDS`.
    UnixListener(Box<UnixListenerParams>),
    /// A TCP listener.
    Tcp(Box<TcpParams>),
    /// A bound UDP socket.
    Udp(Box<UdpParams>),
    /// POSIX shared memory.
    PosixShm(Box<PosixShmParams>),
    /// System V shared memory.
    SysvShm(Box<SysvShmParams>),
    /// A POSIX message queue.
    PosixMq(Box<PosixMqParams>),
    /// A System V message queue.
    SysvMq(Box<SysvMqParams>),
    /// A POSIX named semaphore.
    PosixSem(Box<PosixSemParams>),
    /// A System V semaphore set.
    SysvSem {
        /// Semaphores in the set.
        count: u32,
        /// Initial value of each.
        initial: u32,
    },
    /// A signal from the `from` side to the `to` side.
    Signal(Box<SignalParams>),
    /// An RPC endpoint: a listener plus a protocol both ends agree on.
    Rpc(Box<RpcParams>),
    /// An MPI world: its processes run as the ranks of one MPMD job of the
    /// managed `launcher` (`docs/mechanisms.md`, "MPI").
    Mpi(Box<MpiParams>),
}

/// The parameters of [`Mechanism::Fifo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FifoParams {
    /// Path template.
    pub path: String,
    /// How processes receive it.
    pub deliver: Deliver,
}

/// The parameters of [`Mechanism::UnixListener`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnixListenerParams {
    /// Socket type.
    pub socket: SocketType,
    /// Socket path template.
    pub path: String,
    /// Listen backlog (stream and seqpacket).
    pub backlog: u32,
}

/// The parameters of [`Mechanism::Tcp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpParams {
    /// Bind address, `host:port`; port 0 lets the kernel choose.
    pub bind: String,
    /// Listen backlog.
    pub backlog: u32,
}

/// The parameters of [`Mechanism::Udp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UdpParams {
    /// Bind address.
    pub bind: String,
}

/// The parameters of [`Mechanism::PosixShm`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PosixShmParams {
    /// `shm_open` name template.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Semaphores created with it (`lock` = 1, `ready` = 0), if any.
    pub semaphores: Vec<String>,
    /// With `sync = "ring"`: the ring the launcher formats in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring: Option<RingPlan>,
}

/// The parameters of [`Mechanism::SysvShm`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysvShmParams {
    /// Size in bytes.
    pub size: u64,
    /// Whether a System V set of two semaphores (lock = 1, ready = 0)
    /// is created with it.
    pub semaphore_set: bool,
}

/// The parameters of [`Mechanism::PosixMq`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PosixMqParams {
    /// `mq_open` name template.
    pub name: String,
    /// Queue depth (`mq_maxmsg`).
    pub depth: u64,
    /// Largest message (`mq_msgsize`).
    pub message_size: u64,
}

/// The parameters of [`Mechanism::SysvMq`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysvMqParams {
    /// Queue capacity in bytes (`msg_qbytes`).
    pub queue_bytes: u64,
    /// Largest message.
    pub message_size: u64,
}

/// The parameters of [`Mechanism::PosixSem`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PosixSemParams {
    /// `sem_open` name template.
    pub name: String,
    /// Initial value.
    pub initial: u32,
}

/// The parameters of [`Mechanism::Signal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignalParams {
    /// The signal.
    pub signal: SignalRef,
}

/// The parameters of [`Mechanism::Rpc`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RpcParams {
    /// Protocol label (grpc, json-rpc, http, dbus, …).
    pub protocol: String,
    /// `unix` or `tcp`.
    pub transport: Transport,
    /// Socket path (unix) or bind address (tcp) template.
    pub address: String,
    /// Listen backlog.
    pub backlog: u32,
    /// How the server gets its endpoint, and why.
    pub endpoint: super::rpc::Endpoint,
}

/// The parameters of [`Mechanism::Mpi`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MpiParams {
    /// The managed instance that runs the world (`mpirun`).
    pub launcher: String,
    /// The world's ranks in order: rank `i` is instance `ranks[i]`.
    pub ranks: Vec<String>,
}

// The schema describes the mechanism as written: the wire shape, by its name.
schema_as!(Mechanism => MechanismWire);

impl From<MechanismWire> for Mechanism {
    fn from(wire: MechanismWire) -> Self {
        use MechanismWire as W;
        match wire {
            W::Inherit { stream } => Mechanism::Inherit { stream },
            W::Pipe { atomic_write } => Mechanism::Pipe { atomic_write },
            W::Fifo { path, deliver } => Mechanism::Fifo(Box::new(FifoParams { path, deliver })),
            W::Socketpair { socket } => Mechanism::Socketpair { socket },
            W::UnixListener {
                socket,
                path,
                backlog,
            } => Mechanism::UnixListener(Box::new(UnixListenerParams {
                socket,
                path,
                backlog,
            })),
            W::Tcp { bind, backlog } => Mechanism::Tcp(Box::new(TcpParams { bind, backlog })),
            W::Udp { bind } => Mechanism::Udp(Box::new(UdpParams { bind })),
            W::PosixShm {
                name,
                size,
                semaphores,
                ring,
            } => Mechanism::PosixShm(Box::new(PosixShmParams {
                name,
                size,
                semaphores,
                ring,
            })),
            W::SysvShm {
                size,
                semaphore_set,
            } => Mechanism::SysvShm(Box::new(SysvShmParams {
                size,
                semaphore_set,
            })),
            W::PosixMq {
                name,
                depth,
                message_size,
            } => Mechanism::PosixMq(Box::new(PosixMqParams {
                name,
                depth,
                message_size,
            })),
            W::SysvMq {
                queue_bytes,
                message_size,
            } => Mechanism::SysvMq(Box::new(SysvMqParams {
                queue_bytes,
                message_size,
            })),
            W::PosixSem { name, initial } => {
                Mechanism::PosixSem(Box::new(PosixSemParams { name, initial }))
            }
            W::SysvSem { count, initial } => Mechanism::SysvSem { count, initial },
            W::Signal { signal } => Mechanism::Signal(Box::new(SignalParams { signal })),
            W::Rpc {
                protocol,
                transport,
                address,
                backlog,
                endpoint,
            } => Mechanism::Rpc(Box::new(RpcParams {
                protocol,
                transport,
                address,
                backlog,
                endpoint,
            })),
            W::Mpi { launcher, ranks } => Mechanism::Mpi(Box::new(MpiParams { launcher, ranks })),
        }
    }
}

// Every parameter in place: the shape serde reads and the schema shows (its
// doc lines are the schema's descriptions). It lives only while one
// mechanism is read.
/// The mechanism of a channel and every parameter the launcher needs.
#[derive(Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[serde(deny_unknown_fields, rename = "Mechanism")]
enum MechanismWire {
    /// ipc-run's own stdin/stdout handed to the process; nothing copies.
    Inherit {
        /// `stdin` or `stdout`.
        stream: OwnStream,
    },
    /// An anonymous pipe.
    Pipe {
        /// Atomic write size (`PIPE_BUF`).
        atomic_write: u64,
    },
    /// A FIFO in the run directory.
    Fifo {
        /// Path template.
        path: String,
        /// How processes receive it.
        deliver: Deliver,
    },
    /// A Unix socketpair.
    Socketpair {
        /// Socket type.
        socket: SocketType,
    },
    /// A Unix socket bound (and listening) before exec, passed by `LISTEN_FDS`.
    UnixListener {
        /// Socket type.
        socket: SocketType,
        /// Socket path template.
        path: String,
        /// Listen backlog (stream and seqpacket).
        backlog: u32,
    },
    /// A TCP listener.
    Tcp {
        /// Bind address, `host:port`; port 0 lets the kernel choose.
        bind: String,
        /// Listen backlog.
        backlog: u32,
    },
    /// A bound UDP socket.
    Udp {
        /// Bind address.
        bind: String,
    },
    /// POSIX shared memory.
    PosixShm {
        /// `shm_open` name template.
        name: String,
        /// Size in bytes.
        size: u64,
        /// Semaphores created with it (`lock` = 1, `ready` = 0), if any.
        semaphores: Vec<String>,
        /// With `sync = "ring"`: the ring the launcher formats in it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ring: Option<RingPlan>,
    },
    /// System V shared memory.
    SysvShm {
        /// Size in bytes.
        size: u64,
        /// Whether a System V set of two semaphores (lock = 1, ready = 0)
        /// is created with it.
        semaphore_set: bool,
    },
    /// A POSIX message queue.
    PosixMq {
        /// `mq_open` name template.
        name: String,
        /// Queue depth (`mq_maxmsg`).
        depth: u64,
        /// Largest message (`mq_msgsize`).
        message_size: u64,
    },
    /// A System V message queue.
    SysvMq {
        /// Queue capacity in bytes (`msg_qbytes`).
        queue_bytes: u64,
        /// Largest message.
        message_size: u64,
    },
    /// A POSIX named semaphore.
    PosixSem {
        /// `sem_open` name template.
        name: String,
        /// Initial value.
        initial: u32,
    },
    /// A System V semaphore set.
    SysvSem {
        /// Semaphores in the set.
        count: u32,
        /// Initial value of each.
        initial: u32,
    },
    /// A signal from the `from` side to the `to` side.
    Signal {
        /// The signal.
        signal: SignalRef,
    },
    /// An RPC endpoint: a listener plus a protocol both ends agree on.
    Rpc {
        /// Protocol label (grpc, json-rpc, http, dbus, …).
        protocol: String,
        /// `unix` or `tcp`.
        transport: Transport,
        /// Socket path (unix) or bind address (tcp) template.
        address: String,
        /// Listen backlog.
        backlog: u32,
        /// How the server gets its endpoint, and why.
        endpoint: super::rpc::Endpoint,
    },
    /// An MPI world: its processes run as the ranks of one MPMD job of the
    /// managed `launcher` (`docs/mechanisms.md`, "MPI").
    Mpi {
        /// The managed instance that runs the world (`mpirun`).
        launcher: String,
        /// The world's ranks in order: rank `i` is instance `ranks[i]`.
        ranks: Vec<String>,
    },
}

impl Mechanism {
    /// The mechanism's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Mechanism::Inherit { .. } => Kind::Inherit,
            Mechanism::Pipe { .. } => Kind::Pipe,
            Mechanism::Fifo { .. } => Kind::Fifo,
            Mechanism::Socketpair { .. } => Kind::Socketpair,
            Mechanism::UnixListener { .. } => Kind::UnixListener,
            Mechanism::Tcp { .. } => Kind::Tcp,
            Mechanism::Udp { .. } => Kind::Udp,
            Mechanism::PosixShm { .. } => Kind::PosixShm,
            Mechanism::SysvShm { .. } => Kind::SysvShm,
            Mechanism::PosixMq { .. } => Kind::PosixMq,
            Mechanism::SysvMq { .. } => Kind::SysvMq,
            Mechanism::PosixSem { .. } => Kind::PosixSem,
            Mechanism::SysvSem { .. } => Kind::SysvSem,
            Mechanism::Signal { .. } => Kind::Signal,
            Mechanism::Rpc { .. } => Kind::Rpc,
            Mechanism::Mpi { .. } => Kind::Mpi,
        }
    }

    /// Whether the server side is served one instance per accepted
    /// connection (an rpc edge with `endpoint = "per-connection"`).
    pub fn per_connection(&self) -> bool {
        matches!(self, Mechanism::Rpc(rpc) if rpc.endpoint.shape == crate::topology::EndpointShape::PerConnection)
    }

    /// The mechanism's name as written in topology files.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// A one-line summary with the parameters, for text plans and graphs.
    pub fn summary(&self) -> String {
        let details = self.details();
        if details.is_empty() {
            self.name().to_owned()
        } else {
            format!("{} {details}", self.name())
        }
    }

    /// The parameters in [`Mechanism::summary`], after the name.
    fn details(&self) -> String {
        use crate::topology::ByteSize;
        match self {
            Mechanism::Inherit { stream } => format!("ipc-run's {stream}"),
            Mechanism::Pipe { .. } => String::new(),
            Mechanism::Fifo(fifo) => format!("{} (deliver {})", fifo.path, fifo.deliver),
            Mechanism::Socketpair { socket } => socket.as_str().to_owned(),
            Mechanism::UnixListener(unix) => format!("{} {}", unix.socket.as_str(), unix.path),
            Mechanism::Tcp(tcp) => tcp.bind.clone(),
            Mechanism::Udp(udp) => udp.bind.clone(),
            Mechanism::PosixShm(shm) => match &shm.ring {
                Some(ring) => format!(
                    "{} {} ring: {} of records, {} producer(s)",
                    shm.name,
                    ByteSize(shm.size),
                    ByteSize(ring.capacity),
                    ring.producers
                ),
                None if shm.semaphores.is_empty() => format!("{} {}", shm.name, ByteSize(shm.size)),
                None => format!(
                    "{} {} + semaphores lock, ready",
                    shm.name,
                    ByteSize(shm.size)
                ),
            },
            Mechanism::SysvShm(shm) if shm.semaphore_set => {
                format!("{} + semaphore set lock, ready", ByteSize(shm.size))
            }
            Mechanism::SysvShm(shm) => ByteSize(shm.size).to_string(),
            Mechanism::PosixMq(mq) => format!(
                "{} depth {} x {}",
                mq.name,
                mq.depth,
                ByteSize(mq.message_size)
            ),
            Mechanism::SysvMq(mq) => format!(
                "{} x {}",
                ByteSize(mq.queue_bytes),
                ByteSize(mq.message_size)
            ),
            Mechanism::PosixSem(sem) => format!("{} initial {}", sem.name, sem.initial),
            Mechanism::SysvSem { count, initial } => format!("{count} x initial {initial}"),
            Mechanism::Signal(signal) => signal.signal.name.to_owned(),
            Mechanism::Rpc(rpc) => format!(
                "{} over {} {}, {}",
                rpc.protocol,
                rpc.transport,
                rpc.address,
                rpc.endpoint.shape.as_str()
            ),
            Mechanism::Mpi(mpi) => {
                format!(
                    "world of {} rank(s) run by {}",
                    mpi.ranks.len(),
                    mpi.launcher
                )
            }
        }
    }
}

/// A cycle in the data graph and its verdict.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataCycle {
    /// Processes (declared names, not instances: every replica of a process
    /// is on the same cycle) along the cycle; the first is repeated at the end.
    pub path: Vec<String>,
    /// Channel ids along the cycle.
    pub channels: Vec<String>,
    /// How the cycle was judged.
    pub verdict: CycleVerdict,
    /// Total bytes the cycle's blocking channels buffer.
    pub capacity: Option<u64>,
    /// Total bytes declared in flight, if every channel declares it.
    pub in_flight: Option<u64>,
}

/// The verdict on a data cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CycleVerdict {
    /// Every channel blocks when full and the declared bytes in flight fit.
    BoundedFits,
    /// Every channel blocks when full and the bytes in flight are unknown or
    /// exceed the capacity: a deadlock is possible (warning W0301).
    DeadlockRisk,
    /// At least one channel has its own protocol (socket, shm, signal): no warning.
    Harmless,
}

#[cfg(test)]
mod tests {
    use super::*;

    // A plan of many channels holds one of each per channel: a field that
    // grows them is a decision, taken here.
    #[test]
    fn channel_records_keep_their_size() {
        assert_eq!(std::mem::size_of::<Mechanism>(), 16);
        assert_eq!(std::mem::size_of::<ChannelPlan>(), 96);
        assert_eq!(std::mem::size_of::<EndpointPlan>(), 40);
    }

    fn head(capacity: Option<u64>, in_flight: Option<u64>) -> ChannelHead {
        ChannelHead {
            id: "e0".into(),
            traffic: Traffic::Stream,
            mechanism: Mechanism::Pipe { atomic_write: 4096 },
            choice: Choice::Auto,
            reason: "a pipe".into(),
            objects: Box::default(),
            blocking: true,
            capacity,
            in_flight,
        }
    }

    fn port(process: &str) -> EndpointPlan {
        EndpointPlan::Port {
            process: process.into(),
            port: "out".into(),
            end: End::Write,
            fd: Some(3).into(),
        }
    }

    // The compact fields read as what was given, a zero capacity and an
    // empty side included, and write and read back the same.
    #[test]
    fn a_compact_channel_reads_as_given() {
        let ends = vec![port("a"), port("b"), EndpointPlan::External];
        let channel = ChannelPlan::new(head(Some(0), None), ends, 2);
        assert_eq!(channel.from(), &[port("a"), port("b")]);
        assert!(matches!(&channel.from()[0], EndpointPlan::Port { fd, .. } if fd.get() == Some(3)));
        assert_eq!(format!("{:?}", PortFd::from(Some(3))), "Some(3)");
        assert_eq!(PortFd::from(None).get(), None);
        assert_eq!(channel.to(), &[EndpointPlan::External]);
        assert_eq!(channel.capacity(), Some(0));
        assert_eq!(channel.in_flight(), None);
        assert!(channel.objects().is_empty());
        let json = serde_json::to_value(&channel).unwrap();
        assert_eq!(json["capacity"], 0);
        assert_eq!(json["from"].as_array().map(Vec::len), Some(2));
        let back: ChannelPlan = serde_json::from_value(json).unwrap();
        assert_eq!(back, channel);

        let mut bounded_less = ChannelPlan::new(head(None, Some(0)), Vec::new(), 0);
        assert_eq!(bounded_less.capacity(), None);
        assert_eq!(bounded_less.in_flight(), Some(0));
        assert!(bounded_less.from().is_empty() && bounded_less.to().is_empty());
        bounded_less.set_ends(Vec::new(), vec![port("c")]);
        assert!(bounded_less.from().is_empty());
        assert_eq!(bounded_less.to(), &[port("c")]);
    }
}
