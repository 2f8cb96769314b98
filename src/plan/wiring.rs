//! Third pass: each instance's fd table and environment.
//!
//! Fd numbers are allocated deterministically, systemd-style: fixed fds
//! first, then listening sockets from fd 3 in edge order (so `LISTEN_FDS`
//! counts them from 3 without gaps when nothing is pinned), then every other
//! port that is handed over as an fd, in edge order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::edges::{ChannelDecl, PortEnd, port_env_name};
use super::model::{EndpointPlan, EnvVar, FdRole, FdSlot, ProcessPlan, RUN_DIR, RUN_ID, Readiness};
use super::processes::{
    BASE_INHERITED_ENV, DEFAULT_READY_TIMEOUT_MS, DEFAULT_STOP_TIMEOUT_MS, ProcessDecl,
};
use super::{Limits, Sink};
use crate::diagnostic::{Diagnostic, Label};
use crate::topology::Topology;

/// Path of the sd_notify socket, when some process uses `ready = "notify"`.
pub const NOTIFY_SOCKET_PATH: &str = "{run_dir}/notify.sock";

/// Builds every instance's plan and fills the fds into the channels.
pub fn wire(
    topology: &Topology,
    limits: &Limits,
    processes: &[ProcessDecl<'_>],
    channels: &mut [ChannelDecl],
    sink: &mut Sink,
) -> Vec<ProcessPlan> {
    let name = topology
        .file
        .name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    let notify_used = processes.iter().any(|p| p.ready == Readiness::Notify);
    if notify_used
        && limits.run_dir_len.value + "/notify.sock".len() as u64 >= limits.sun_path_max.value
    {
        let process = processes
            .iter()
            .find(|p| p.ready == Readiness::Notify)
            .expect("checked above");
        sink.push(
            Diagnostic::error("E0607", "the notify socket path would not fit in sun_path")
                .with_label(Label::primary(
                    process.span.clone(),
                    "uses ready = \"notify\"",
                ))
                .with_note(format!(
                    "the run directory is {} bytes long ({})",
                    limits.run_dir_len.value, limits.run_dir_len.source
                )),
        );
    }
    // Every instance's channel ends, found in one sweep (edge order kept).
    let mut ends_by_instance: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
    for (c, channel) in channels.iter().enumerate() {
        for (p, port) in channel.ports.iter().enumerate() {
            ends_by_instance
                .entry(port.instance.clone())
                .or_default()
                .push((c, p));
        }
    }
    let instances_by_name: HashMap<&str, &Vec<String>> = processes
        .iter()
        .map(|p| (p.name.as_str(), &p.instances))
        .collect();
    for process in processes {
        for (replica, instance) in process.instances.iter().enumerate() {
            let ends: Vec<(usize, usize)> = ends_by_instance.remove(instance).unwrap_or_default();
            let mut taken: BTreeSet<i32> = BTreeSet::new();
            let mut assigned: BTreeMap<(usize, usize), i32> = BTreeMap::new();
            if let Readiness::Fd { fd } = process.ready {
                taken.insert(fd);
            }
            // Pass 1: stdio and pinned fds.
            for &(c, p) in &ends {
                let end = &channels[c].ports[p];
                let fixed = match end.port.as_str() {
                    "stdin" => Some(0),
                    "stdout" => Some(1),
                    "stderr" => Some(2),
                    other => process
                        .ports
                        .get(other)
                        .and_then(|d| d.fd.as_ref().map(|(fd, _)| *fd)),
                };
                if let Some(fd) = fixed {
                    if end.needs_fd {
                        taken.insert(fd);
                        assigned.insert((c, p), fd);
                    } else if fd > 2 {
                        let span = process
                            .ports
                            .get(&end.port)
                            .and_then(|d| d.fd.as_ref().map(|(_, s)| s.clone()))
                            .unwrap_or(end.span.clone());
                        sink.push(
                            Diagnostic::error("E0206", format!("port `{}.{}` has a fixed fd, but a {} reaches the process by name, not by fd", process.name, end.port, channels[c].plan.mechanism.name()))
                                .with_label(Label::primary(span, "no fd is handed over"))
                                .with_label(Label::secondary(end.span.clone(), "the edge using the port")),
                        );
                    } else {
                        sink.push(
                            Diagnostic::error("E0205", format!("port `{}.{}` is a standard stream, but a {} reaches the process by name, not by fd", process.name, end.port, channels[c].plan.mechanism.name()))
                                .with_label(Label::primary(end.span.clone(), "name a port instead, e.g. `proc.data`")),
                        );
                    }
                }
            }
            // Pass 2: listeners from 3 up, then the other fd ports.
            for listeners in [true, false] {
                for &(c, p) in &ends {
                    let end: &PortEnd = &channels[c].ports[p];
                    if !end.needs_fd || end.listener != listeners || assigned.contains_key(&(c, p))
                    {
                        continue;
                    }
                    let fd = (3..)
                        .find(|fd| !taken.contains(fd))
                        .expect("fd numbers are unbounded");
                    taken.insert(fd);
                    assigned.insert((c, p), fd);
                }
            }
            if let Some(&highest) = taken.last() {
                if highest as u64 >= limits.nofile_soft.value {
                    sink.push(
                        Diagnostic::error("E0204", format!("`{instance}` would need fd {highest}, at or above the soft RLIMIT_NOFILE of {}", limits.nofile_soft.value))
                            .with_label(Label::primary(process.span.clone(), format!("{} fds handed over", taken.len())))
                            .with_note(format!("RLIMIT_NOFILE is {} ({})", limits.nofile_soft.value, limits.nofile_soft.source)),
                    );
                }
            }
            let mut fds = Vec::new();
            let mut port_vars = Vec::new();
            let mut listen_names = Vec::new();
            let mut ordered: Vec<_> = ends.clone();
            ordered.sort_by_key(|key| assigned.get(key).copied().unwrap_or(i32::MAX));
            for &(c, p) in &ordered {
                let channel = &mut channels[c];
                let end = channel.ports[p].clone();
                let fd = assigned.get(&(c, p)).copied();
                let side = if end.is_reader {
                    &mut channel.plan.to
                } else {
                    &mut channel.plan.from
                };
                for plan_end in side.iter_mut() {
                    if let EndpointPlan::Port {
                        process: inst,
                        port,
                        fd: slot,
                        ..
                    } = plan_end
                    {
                        if inst == instance && port == &end.port {
                            *slot = fd;
                        }
                    }
                }
                if let Some(fd) = fd {
                    fds.push(FdSlot {
                        fd,
                        port: end.port.clone(),
                        role: FdRole::Channel {
                            channel: channel.plan.id.clone(),
                            end: end.end,
                        },
                    });
                    if end.listener {
                        listen_names.push(end.port.clone());
                    }
                }
                if !matches!(end.port.as_str(), "stdin" | "stdout" | "stderr") {
                    let description = match fd {
                        Some(fd) => format!("{} fd={fd}", end.description),
                        None => end.description.clone(),
                    };
                    port_vars.push(EnvVar {
                        name: port_env_name(&end.port),
                        value: description,
                    });
                }
            }
            if let Readiness::Fd { fd } = process.ready {
                fds.push(FdSlot {
                    fd,
                    port: "ready".into(),
                    role: FdRole::Ready,
                });
            }
            fds.sort_by_key(|slot| slot.fd);
            let mut env = vec![
                EnvVar {
                    name: "IPC_RUN_ID".into(),
                    value: RUN_ID.into(),
                },
                EnvVar {
                    name: "IPC_RUN_DIR".into(),
                    value: RUN_DIR.into(),
                },
                EnvVar {
                    name: "IPC_RUN_TOPOLOGY".into(),
                    value: name.clone(),
                },
                EnvVar {
                    name: "IPC_RUN_PROCESS".into(),
                    value: instance.clone(),
                },
            ];
            if process.instances.len() > 1 || process.spec.replicas.is_some() {
                env.push(EnvVar {
                    name: "IPC_RUN_REPLICA".into(),
                    value: replica.to_string(),
                });
                env.push(EnvVar {
                    name: "IPC_RUN_REPLICAS".into(),
                    value: process.instances.len().to_string(),
                });
            }
            port_vars.sort_by(|a, b| a.name.cmp(&b.name));
            env.extend(port_vars);
            if !listen_names.is_empty() {
                // LISTEN_PID is the child's own pid, known only in the child.
                env.push(EnvVar {
                    name: "LISTEN_PID".into(),
                    value: "{pid}".into(),
                });
                env.push(EnvVar {
                    name: "LISTEN_FDS".into(),
                    value: listen_names.len().to_string(),
                });
                env.push(EnvVar {
                    name: "LISTEN_FDNAMES".into(),
                    value: listen_names.join(":"),
                });
            }
            match process.ready {
                Readiness::Notify => env.push(EnvVar {
                    name: "NOTIFY_SOCKET".into(),
                    value: NOTIFY_SOCKET_PATH.into(),
                }),
                Readiness::Fd { fd } => env.push(EnvVar {
                    name: "IPC_RUN_READY_FD".into(),
                    value: fd.to_string(),
                }),
                Readiness::Started => {}
            }
            for (key, value) in &process.spec.env {
                env.push(EnvVar {
                    name: key.get_ref().clone(),
                    value: value.get_ref().clone(),
                });
            }
            let mut inherit_env: Vec<String> =
                BASE_INHERITED_ENV.iter().map(|s| (*s).to_owned()).collect();
            for extra in &process.spec.inherit_env {
                if !inherit_env.contains(extra.get_ref()) {
                    inherit_env.push(extra.get_ref().clone());
                }
            }
            let after = process
                .spec
                .after
                .iter()
                .flat_map(|a| {
                    instances_by_name
                        .get(a.get_ref().as_str())
                        .map(|i| (*i).clone())
                        .unwrap_or_default()
                })
                .collect();
            out.push(ProcessPlan {
                name: instance.clone(),
                process: process.name.clone(),
                replica: (process.instances.len() > 1 || process.spec.replicas.is_some())
                    .then_some(replica as u32),
                host: "local".into(),
                argv: process.argv.clone(),
                shell: process.shell,
                cwd: process.spec.cwd.as_ref().map(|c| c.get_ref().clone()),
                user: process.spec.user.as_ref().map(|u| u.get_ref().clone()),
                group: process.spec.group.as_ref().map(|g| g.get_ref().clone()),
                env,
                inherit_env,
                fds,
                ready: process.ready,
                ready_timeout_ms: process
                    .spec
                    .ready_timeout
                    .as_ref()
                    .map_or(DEFAULT_READY_TIMEOUT_MS, |t| t.get_ref().0),
                restart: process.restart,
                stop_signal: process.stop_signal,
                stop_timeout_ms: process
                    .spec
                    .stop_timeout
                    .as_ref()
                    .map_or(DEFAULT_STOP_TIMEOUT_MS, |t| t.get_ref().0),
                after,
                forward_signals: process.forward_signals.clone(),
            });
        }
    }
    out
}
