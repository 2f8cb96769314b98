//! What the exports (`ipc-run export kubernetes|systemd`) share: the
//! facts about each host group an engine needs (its processes, the cross
//! edges it listens on, the groups it connects to, whether it ends on its
//! own), the `run --plan … --host G --peer …` line each group's ipc-run is
//! started with, the errors (E0520–E0529), and writing the files.
//!
//! The generators are pure (`Plan` in, text out), so their output is
//! snapshot-tested byte for byte; only [`write_files`] touches the disk.

use std::path::{Path, PathBuf};

use crate::plan::model::{CrossEdgePlan, Mechanism, Plan, ProcessPlan, RestartPolicy};

/// Why an export could not be made; each has a stable code
/// (`docs/distributed.md`, "Errors").
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    /// `--out` could not be created or a file in it written.
    #[error("failed to write `{path}`: {source}")]
    Write {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A group or topology name the engine cannot use as an object or
    /// unit name, or two that become the same name.
    #[error("{0}")]
    Name(String),
    /// The plan JSON is larger than a ConfigMap can hold.
    #[error(
        "the plan JSON is {bytes} bytes, more than a ConfigMap holds \
         ({CONFIG_MAP_MAX} bytes): split the topology, or ship the plan in the image"
    )]
    PlanTooLarge {
        /// Its size.
        bytes: usize,
    },
    /// The plan could not be written as JSON: a port variable names no
    /// port of the plan, which contradicts it (as `E0803` does when a plan
    /// is read).
    #[error("the plan contradicts itself and could not be written as JSON: {0}")]
    PlanJson(String),
}

impl ExportError {
    /// The stable code, as printed (`E0521`).
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ExportError::Write { .. } => "E0521",
            ExportError::Name(_) => "E0522",
            ExportError::PlanTooLarge { .. } => "E0523",
            ExportError::PlanJson(_) => "E0803",
        }
    }
}

/// The largest ConfigMap the API server stores (`data` and the rest of
/// the object: 1 MiB).
pub(crate) const CONFIG_MAP_MAX: usize = 1024 * 1024;

/// How a group's ipc-run ends, and why: what the engines map to a Job or
/// a Deployment, `Restart=no` or `Restart=on-failure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lifetime {
    /// Every process ends on its own, or the group holds the
    /// `exit_code_from` process: the group's ipc-run exits with a result.
    Completes(String),
    /// Something runs until stopped: a service.
    Serves(String),
}

/// The facts about one group an engine writes its units or objects from.
#[derive(Debug)]
pub(crate) struct GroupFacts<'p> {
    /// Its name.
    pub name: &'p str,
    /// Its instances, in plan order.
    pub instances: Vec<&'p ProcessPlan>,
    /// The cross edges whose listener it binds, in channel order.
    pub listens: Vec<&'p CrossEdgePlan>,
    /// The cross edges it connects to as a client, in channel order.
    pub connects: Vec<&'p CrossEdgePlan>,
    /// The groups it connects to (listener groups of its cross edges), in
    /// the plan's group order, each once.
    pub peers: Vec<&'p str>,
    /// Sum of declared `cpus`.
    pub cpus: Option<f64>,
    /// Sum of declared `memory`, in bytes.
    pub memory: Option<u64>,
    /// Bytes of shared memory its channels create.
    pub shm_bytes: u64,
    /// Whether it ends on its own.
    pub lifetime: Lifetime,
}

/// The groups of a plan with what engines need of each.
pub(crate) fn groups(plan: &Plan) -> Vec<GroupFacts<'_>> {
    let views = plan.host_groups();
    let order: Vec<&str> = views.iter().map(|v| v.name).collect();
    views
        .iter()
        .map(|view| {
            let instances: Vec<&ProcessPlan> =
                view.processes.iter().map(|&i| &plan.processes[i]).collect();
            let mut peers: Vec<&str> = view
                .connects
                .iter()
                .map(|edge| edge.listener_group.as_ref())
                .filter(|group| *group != view.name)
                .collect();
            peers.sort_by_key(|group| order.iter().position(|g| g == group));
            peers.dedup();
            let (cpus, memory, shm_bytes) = match view.group {
                Some(group) => (group.cpus, group.memory, group.shm_bytes),
                // The implicit group: every channel is in it.
                None => (None, None, plan.channels.iter().map(shm_size).sum()),
            };
            let lifetime = lifetime(plan, &instances);
            GroupFacts {
                name: view.name,
                instances,
                listens: view.listens.clone(),
                connects: view.connects.clone(),
                peers,
                cpus,
                memory,
                shm_bytes,
                lifetime,
            }
        })
        .collect()
}

/// Bytes of shared memory a channel creates.
fn shm_size(channel: &crate::plan::model::ChannelPlan) -> u64 {
    match &channel.mechanism {
        Mechanism::PosixShm(shm) => shm.size,
        Mechanism::SysvShm(shm) => shm.size,
        _ => 0,
    }
}

/// Whether a group's ipc-run ends on its own (`docs/distributed.md`,
/// "Kubernetes": Job or Deployment). A group run with `--host` ends when
/// every one of its processes has finished for good, or when its
/// `exit_code_from` process has; a process with `restart = "always"`, or
/// the server of a per-connection edge, never finishes on its own.
fn lifetime(plan: &Plan, instances: &[&ProcessPlan]) -> Lifetime {
    if let Some(result) = plan.exit_code_from.as_deref()
        && let Some(process) = instances.iter().find(|p| p.name.as_ref() == result)
    {
        return Lifetime::Completes(format!(
            "it runs `{}`, whose exit status is the topology's (exit_code_from): \
             the group ends with it",
            process.name
        ));
    }
    if let Some(process) = instances
        .iter()
        .find(|p| p.restart.policy == RestartPolicy::Always)
    {
        return Lifetime::Serves(format!(
            "`{}` has restart = \"always\": the group runs until it is stopped",
            process.name
        ));
    }
    if let Some(process) = instances.iter().find(|p| serves_per_connection(plan, p)) {
        return Lifetime::Serves(format!(
            "`{}` serves a per-connection endpoint: the group runs until it is stopped",
            process.process
        ));
    }
    Lifetime::Completes(
        "every process has restart = \"never\" or \"on-failure\": the group ends when they \
         have finished"
            .to_owned(),
    )
}

/// Whether an instance is the server of a per-connection rpc edge.
fn serves_per_connection(plan: &Plan, instance: &ProcessPlan) -> bool {
    use crate::plan::model::EndpointPlan;
    plan.channels.iter().any(|channel| {
        channel.mechanism.per_connection()
            && channel.to().iter().any(|end| {
                matches!(end, EndpointPlan::Port { process, .. } if process == &instance.name)
            })
    })
}

/// The arguments after the program of the command that runs group `group`
/// from the plan at `plan_path`, its peers' hosts named by `peer_host`
/// (`run --plan PLAN --host G [--runtime-dir DIR] --peer L=HOST …`).
pub(crate) fn run_args(
    plan_path: &str,
    group: &GroupFacts<'_>,
    runtime_dir: Option<&str>,
    peer_host: impl Fn(&str) -> String,
) -> Vec<String> {
    let mut args: Vec<String> = ["run", "--plan", plan_path, "--host", group.name]
        .map(str::to_owned)
        .into();
    if let Some(dir) = runtime_dir {
        args.extend(["--runtime-dir".to_owned(), dir.to_owned()]);
    }
    for peer in &group.peers {
        args.extend(["--peer".to_owned(), format!("{peer}={}", peer_host(peer))]);
    }
    args
}

/// The longest sum of `weight` along a chain of `after` within the group:
/// ipc-run stops a chain of dependants one after another (and starts one
/// after another), each within its own timeout, and independent ones
/// together, so this bounds a whole stop (with `stop_timeout_ms`) or start
/// (with `ready_timeout_ms`).
pub(crate) fn longest_chain_ms(
    plan: &Plan,
    group: &GroupFacts<'_>,
    weight: impl Fn(&ProcessPlan) -> u64,
) -> u64 {
    use std::collections::HashMap;
    let by_name: HashMap<&str, &ProcessPlan> = group
        .instances
        .iter()
        .map(|p| (p.name.as_ref(), *p))
        .collect();
    // In start order every `after` comes first, so one pass gives each
    // instance the longest chain that ends with it.
    let mut chain: HashMap<&str, u64> = HashMap::new();
    for name in &plan.start_order {
        let Some(process) = by_name.get(name.as_ref()) else {
            continue;
        };
        let before = process
            .after
            .iter()
            .filter_map(|a| chain.get(a.as_ref()))
            .max()
            .copied()
            .unwrap_or(0);
        chain.insert(name, before.saturating_add(weight(process)));
    }
    chain.values().max().copied().unwrap_or(0)
}

/// How long the group's ipc-run may wait for the listeners of other groups
/// before starting its clients: the longest `ready_timeout` of their
/// servers, which bounds that wait (`run --host`).
pub(crate) fn remote_wait_ms(plan: &Plan, group: &GroupFacts<'_>) -> u64 {
    use crate::plan::model::EndpointPlan;
    group
        .connects
        .iter()
        .filter_map(|edge| plan.channels.iter().find(|c| c.id == edge.channel))
        .flat_map(|channel| channel.to())
        .filter_map(|end| match end {
            EndpointPlan::Port { process, .. } => {
                plan.processes.iter().find(|p| &p.name == process)
            }
            _ => None,
        })
        .map(|server| server.ready_timeout_ms)
        .max()
        .unwrap_or(0)
}

/// The plan as `ipc-run plan --format json` prints it.
pub(crate) fn plan_json(plan: &Plan) -> Result<String, ExportError> {
    let mut text =
        serde_json::to_string_pretty(plan).map_err(|e| ExportError::PlanJson(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// Writes `files` (name, content) into `dir`, creating it when missing.
/// Each file is opened without following a symbolic link and must be, if
/// it exists, a regular file of ours with one link (`--out` may be a
/// directory others can write to: a link planted there must not make us
/// write, or truncate, the file it points at). Units are 0644, as systemd
/// wants them readable; everything else (the plan, which holds the
/// processes' environment, and the manifests holding it) 0600.
pub(crate) fn write_files(dir: &Path, files: &[(String, String)]) -> Result<(), ExportError> {
    std::fs::create_dir_all(dir).map_err(|source| ExportError::Write {
        path: dir.to_owned(),
        source,
    })?;
    for (name, content) in files {
        let path = dir.join(name);
        let unit = name.ends_with(".service") || name.ends_with(".socket");
        write_one(&path, content, if unit { 0o644 } else { 0o600 })
            .map_err(|source| ExportError::Write { path, source })?;
    }
    Ok(())
}

/// Writes `content` to `path` as [`write_files`] says, with `mode`.
fn write_one(path: &Path, content: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::other("it is a symbolic link; not followed"),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() || meta.nlink() != 1 {
        return Err(std::io::Error::other(
            "it exists and is not a regular file of ours with one link; not written",
        ));
    }
    // Truncated only now that it is known to be ours.
    file.set_len(0)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(content.as_bytes())?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mechanism::env::{EnvValue, EnvVar, PortRef};
    use crate::plan::Limits;
    use crate::topology::Topology;

    #[test]
    fn a_port_variable_naming_no_channel_is_an_error_not_a_panic() {
        let text = "name = \"t\"\n[process.a]\ncmd = [\"true\"]\n";
        let topology = Topology::parse(Path::new("t.toml"), text.to_owned()).unwrap();
        let mut plan = crate::plan::plan(&topology, &Limits::default())
            .unwrap()
            .plan;
        assert!(plan_json(&plan).is_ok());
        plan.processes[0].env.push(EnvVar {
            name: "IPC_PORT_GONE".into(),
            value: EnvValue::Port(PortRef::new(7, false, Some(3)).unwrap()),
        });
        let error = plan_json(&plan).unwrap_err();
        assert_eq!(error.code(), "E0803", "{error}");
    }
}
