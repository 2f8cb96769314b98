//! MPI worlds: the processes an `mpi` edge joins become the ranks of one
//! MPMD job, and a managed launcher (`mpirun`) replaces their launch.
//!
//! Two steps, around the passes that need the ranks as processes:
//! [`assign_ranks`] after `edges` puts each world's ranks in order
//! (declaration order, replicas consecutive) and refuses what a rank cannot
//! have (an fd from ipc-run: mpirun's daemons close what they inherit; a
//! readiness protocol; a second world); [`launch_worlds`] after `order`
//! swaps the ranks' instances for the launcher's, whose argv holds each
//! rank's command, environment and directory (`mechanism::mpi::command`).

use std::collections::HashSet;
use std::sync::Arc;

use super::Sink;
use super::edges::{ChannelDecl, PortEnd};
use super::processes::ProcessDecl;
use crate::diagnostic::{Diagnostic, Label};
use crate::mechanism::model::{
    ChannelPlan, EndpointPlan, EnvVar, FdRole, Managed, ManagedRole, Mechanism, MpiParams, PortFd,
    PortRefError, ProcessPlan, Readiness, RenderedVar,
};
use crate::mechanism::mpi;

/// Fills each world's rank map and checks its ranks.
pub(super) fn assign_ranks(
    processes: &[ProcessDecl],
    channels: &mut [ChannelDecl],
    sink: &mut Sink,
) {
    let mut world_of: Vec<Option<usize>> = vec![None; processes.len()];
    for (index, channel) in channels.iter_mut().enumerate() {
        let Mechanism::Mpi(mpi) = &mut channel.plan.mechanism else {
            continue;
        };
        let MpiParams { launcher, ranks } = &mut **mpi;
        if let Some(p) = processes.iter().find(|p| *p.name == **launcher) {
            sink.push(
                Diagnostic::error(
                    "E0341",
                    format!(
                        "process `{launcher}` has the name of the launcher of mpi edge `{}`",
                        channel.plan.id
                    ),
                )
                .with_label(Label::primary(p.span.clone(), "declared here"))
                .with_help("rename the process or the edge"),
            );
        }
        let mut members: Vec<usize> = channel.ports.iter().map(|p| p.process()).collect();
        members.sort_unstable();
        members.dedup();
        for &member in &members {
            match world_of[member] {
                Some(other) if other != index => sink.push(
                    Diagnostic::error(
                        "E0342",
                        format!("process `{}` is in two MPI worlds", processes[member].name),
                    )
                    .with_label(Label::primary(
                        processes[member].span.clone(),
                        "a process is a rank of one world",
                    ))
                    .with_help("join every rank of a world with one mpi edge"),
                ),
                _ => world_of[member] = Some(index),
            }
            if !matches!(processes[member].ready, Readiness::Started) {
                sink.push(
                    Diagnostic::error(
                        "E0344",
                        format!(
                            "rank `{}` of an MPI world cannot report readiness",
                            processes[member].name
                        ),
                    )
                    .with_label(Label::primary(processes[member].span.clone(), "a rank"))
                    .with_help("drop `ready`: the world is ready once mpirun has started"),
                );
            }
        }
        *ranks = members
            .iter()
            .flat_map(|&m| processes[m].instances.iter().map(|i| i.to_string()))
            .collect();
    }
    check_other_edges(processes, channels, &world_of, sink);
}

/// A rank's edges to others must reach it by name: mpirun closes every
/// inherited fd beyond stdio, and a rank's pid is not ipc-run's to hand out.
fn check_other_edges(
    processes: &[ProcessDecl],
    channels: &[ChannelDecl],
    world_of: &[Option<usize>],
    sink: &mut Sink,
) {
    for channel in channels {
        let mechanism = &channel.plan.mechanism;
        if matches!(mechanism, Mechanism::Mpi { .. }) {
            continue;
        }
        for port in &channel.ports {
            let Some(world) = world_of[port.process()] else {
                continue;
            };
            let port_name: &str = channel.port(port);
            let rank = rank_of(processes, &channels[world], port);
            if mpi::forwarded(mechanism, port_name, port.is_reader, rank) {
                continue;
            }
            let why = if port.needs_fd && port_name == "stdin" {
                "mpirun forwards its stdin to rank 0 only (Open MPI's default), and this is another rank"
            } else if port.needs_fd {
                "it would be an fd, and mpirun closes the fds its ranks inherit"
            } else if matches!(mechanism, Mechanism::Signal { .. }) {
                "a signal needs the rank's pid, which mpirun chooses"
            } else {
                continue;
            };
            sink.push(
                Diagnostic::error(
                    "E0343",
                    format!(
                        "rank `{}` cannot have port `{port_name}` of edge `{}` ({})",
                        processes[port.process()].name,
                        channel.plan.id,
                        mechanism.name()
                    ),
                )
                .with_label(Label::primary(port.span.clone(), why))
                .with_help(
                    "reach a rank by name: a fifo with deliver = \"path\", a posix-mq, posix-shm or posix-sem",
                ),
            );
        }
    }
}

/// The rank of the instance at `port` in `world` (its rank map is filled).
fn rank_of(processes: &[ProcessDecl], world: &ChannelDecl, port: &PortEnd) -> usize {
    let instance = &processes[port.process()].instances[port.replica()];
    match &world.plan.mechanism {
        Mechanism::Mpi(mpi) => mpi
            .ranks
            .iter()
            .position(|r| **r == **instance)
            .unwrap_or(usize::MAX),
        _ => usize::MAX,
    }
}

/// The parts of a plan a world's launcher changes.
pub(super) struct Launch<'a> {
    pub instances: &'a mut Vec<ProcessPlan>,
    pub start_order: &'a mut Vec<Arc<str>>,
    pub stop_order: &'a mut Vec<Arc<str>>,
    pub exit_code_from: &'a mut Option<String>,
}

/// Replaces each world's ranks by its launcher; E0346 when the launcher
/// has no place in the start order (a rank waits for a process that waits
/// for another rank).
pub(super) fn launch_worlds(channels: &mut [ChannelPlan], plan: Launch<'_>, sink: &mut Sink) {
    let worlds: Vec<(Arc<str>, String, Vec<String>)> = channels
        .iter()
        .filter_map(|c| match &c.mechanism {
            Mechanism::Mpi(mpi) => Some((c.id.clone(), mpi.launcher.clone(), mpi.ranks.clone())),
            _ => None,
        })
        .collect();
    for (id, launcher, ranks) in &worlds {
        forward_stdio(channels, launcher, ranks);
        let members: HashSet<&str> = ranks.iter().map(String::as_str).collect();
        let Some(first) = plan
            .instances
            .iter()
            .position(|p| members.contains(&*p.name))
        else {
            continue;
        };
        let name: Arc<str> = launcher.as_str().into();
        let rank_plans: Vec<&ProcessPlan> = ranks
            .iter()
            .filter_map(|r| plan.instances.iter().find(|p| *p.name == **r))
            .collect();
        let managed = match launcher_plan(&name, id, (&rank_plans, channels), &members) {
            Ok(managed) => managed,
            Err(error) => {
                sink.push(Diagnostic::error(
                    "E0803",
                    format!("the plan contradicts itself: {error}"),
                ));
                continue;
            }
        };
        let rank_processes: HashSet<Arc<str>> =
            rank_plans.iter().map(|p| p.process.clone()).collect();
        plan.instances.retain(|p| !members.contains(&*p.name));
        plan.instances.insert(first, managed);
        for process in plan.instances.iter_mut() {
            replace_in(&mut process.after, &members, &name);
        }
        if let Err(diagnostic) =
            place_in_start_order(plan.start_order, plan.instances, &members, &name)
        {
            sink.push(diagnostic);
            continue;
        }
        // Stopped in reverse start order, as every plan is.
        plan.stop_order.clone_from(plan.start_order);
        plan.stop_order.reverse();
        if let Some(followed) = plan.exit_code_from.as_mut() {
            if rank_processes.contains(followed.as_str()) {
                *followed = launcher.clone();
            }
        }
    }
}

/// The pipes a world's ranks have (`mpi::forwarded`): a rank's stdout or
/// stderr keeps its end in the plan without an fd (ipc-run relays the
/// rank's lines, `mpi::relays`); rank 0's stdin becomes the launcher's,
/// which mpirun forwards to rank 0. Each channel's reason says so.
fn forward_stdio(channels: &mut [ChannelPlan], launcher: &str, ranks: &[String]) {
    for channel in channels.iter_mut() {
        if !matches!(channel.mechanism, Mechanism::Pipe { .. }) {
            continue;
        }
        let mut relayed = Vec::new();
        let (from, to) = channel.ends_mut();
        for end in from.iter_mut() {
            if let EndpointPlan::Port {
                process, port, fd, ..
            } = end
                && let Some(rank) = ranks.iter().position(|r| **r == **process)
                && matches!(&**port, "stdout" | "stderr")
            {
                *fd = PortFd::NONE;
                relayed.push((format!("{process}.{port}"), rank));
            }
        }
        let mut why = String::new();
        if !relayed.is_empty() {
            why.push_str(&mpi::relay_reason(&relayed, launcher));
        }
        for end in to.iter_mut() {
            if let EndpointPlan::Port { process, port, .. } = end
                && ranks.first().is_some_and(|r| **r == **process)
                && &**port == "stdin"
            {
                why.push_str(&mpi::stdin_reason(process, launcher));
                *process = launcher.into();
            }
        }
        if !why.is_empty() {
            channel.reason = format!("{}{why}", channel.reason).into();
        }
    }
}

/// Takes the ranks out of the start order and puts the launcher right
/// after the last process it waits for, which must come before every
/// process that waits for it.
fn place_in_start_order(
    order: &mut Vec<Arc<str>>,
    instances: &[ProcessPlan],
    members: &HashSet<&str>,
    name: &Arc<str>,
) -> Result<(), Diagnostic> {
    order.retain(|n| !members.contains(&**n));
    let launcher = instances.iter().find(|p| p.name == *name);
    let waits_for = |p: &ProcessPlan| p.after.iter().any(|a| a == name);
    let position = |n: &Arc<str>| order.iter().position(|o| o == n);
    let last_dependency = launcher
        .into_iter()
        .flat_map(|l| l.after.iter())
        .filter_map(position)
        .max();
    let first_dependant = instances
        .iter()
        .filter(|p| waits_for(p))
        .filter_map(|p| position(&p.name))
        .min();
    let at = last_dependency.map_or(0, |i| i + 1);
    match first_dependant {
        Some(first) if first < at => Err(Diagnostic::error(
            "E0346",
            format!(
                "the ranks `{name}` runs wait for `{}`, which waits for one of them",
                order[first]
            ),
        )
        .with_note("the world's ranks start together, as one mpirun job")
        .with_help(
            "drop the `after` between the world and that process, or take it into the world",
        )),
        _ => {
            order.insert(at, name.clone());
            Ok(())
        }
    }
}

/// Replaces the first member in `list` by `name` and drops the others.
fn replace_in(list: &mut Vec<Arc<str>>, members: &HashSet<&str>, name: &Arc<str>) {
    let mut placed = list.iter().any(|n| n == name);
    list.retain_mut(|n| {
        if !members.contains(&**n) {
            return true;
        }
        if placed {
            return false;
        }
        placed = true;
        *n = name.clone();
        true
    });
}

/// The launcher's plan: the first rank's identity and policies, the argv
/// of the whole job (with the ranks' port variables rendered against the
/// plan's `channels`), the ranks' `after` outside the world.
fn launcher_plan(
    name: &Arc<str>,
    channel: &Arc<str>,
    (ranks, channels): (&[&ProcessPlan], &[ChannelPlan]),
    members: &HashSet<&str>,
) -> Result<ProcessPlan, PortRefError> {
    let base = ranks[0];
    // The run's own variables reach every rank through mpirun's
    // environment; the rest is set per rank.
    let shared: Vec<EnvVar> = base
        .env
        .iter()
        .filter(|v| matches!(&*v.name, "IPC_RUN_ID" | "IPC_RUN_DIR" | "IPC_RUN_TOPOLOGY"))
        .cloned()
        .collect();
    let is_shared = |v: &RenderedVar<'_>| {
        shared
            .iter()
            .any(|s| s.name == *v.name && s.value.as_text() == Some(&*v.value))
    };
    let own: Vec<Vec<RenderedVar<'_>>> = ranks
        .iter()
        .map(|r| {
            r.env
                .vars(channels)
                .filter(|v| !v.as_ref().is_ok_and(is_shared))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?;
    let commands: Vec<mpi::RankCommand<'_>> = ranks
        .iter()
        .zip(&own)
        .map(|(r, env)| mpi::RankCommand {
            argv: &r.argv,
            env,
            cwd: r.cwd.as_deref(),
        })
        .collect();
    let mut env = shared;
    if let Some(process) = base.env.iter().find(|v| &*v.name == "IPC_RUN_PROCESS") {
        env.push(EnvVar {
            name: process.name.clone(),
            value: name.clone().into(),
        });
    }
    let mut after: Vec<Arc<str>> = Vec::new();
    for rank in ranks {
        for a in &rank.after {
            if !members.contains(&**a) && !after.contains(a) {
                after.push(a.clone());
            }
        }
    }
    let mut inherit: Vec<_> = Vec::new();
    for rank in ranks {
        for name in rank.inherit_env.iter() {
            if !inherit.contains(name) {
                inherit.push(name.clone());
            }
        }
    }
    Ok(ProcessPlan {
        name: name.clone(),
        process: name.clone(),
        replica: None,
        argv: mpi::command(&commands).into(),
        shell: false,
        cwd: None,
        env: env.into(),
        inherit_env: inherit.into(),
        // Rank 0's stdin, when a pipe feeds it (`forward_stdio`).
        fds: base
            .fds
            .iter()
            .filter(|s| s.fd == 0 && matches!(s.role, FdRole::Channel { .. }))
            .cloned()
            .collect(),
        ready: Readiness::Started,
        stop_timeout_ms: ranks.iter().map(|r| r.stop_timeout_ms).max().unwrap_or(0),
        after,
        managed: Some(Box::new(Managed {
            role: ManagedRole::Launcher,
            channel: channel.clone(),
            reason: mpi::LAUNCHER_REASON.into(),
        })),
        ..base.clone()
    })
}
