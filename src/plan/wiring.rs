//! Third pass: each instance's fd table and environment.
//!
//! Fd numbers are allocated deterministically, systemd-style: fixed fds
//! first, then listening sockets from fd 3 in edge order (so `LISTEN_FDS`
//! counts them from 3 without gaps when nothing is pinned), then every other
//! port that is handed over as an fd, in edge order.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::edges::ChannelDecl;
use super::model::{EnvVar, FdRole, FdSlot, ProcessPlan, RUN_DIR, RUN_ID, Readiness};
use super::processes::{
    BASE_INHERITED_ENV, DEFAULT_READY_TIMEOUT_MS, DEFAULT_STOP_TIMEOUT_MS, ProcessDecl,
};
use super::{Limits, Sink};
use crate::diagnostic::{Diagnostic, Label};

/// Path of the sd_notify socket, when some process uses `ready = "notify"`.
pub const NOTIFY_SOCKET_PATH: &str = "{run_dir}/notify.sock";

/// Builds every instance's plan and fills the fds into the channels.
/// `name` is the plan's name for the topology (`IPC_RUN_TOPOLOGY`).
pub fn wire(
    name: &str,
    limits: &Limits,
    processes: &[ProcessDecl<'_>],
    channels: &mut [ChannelDecl],
    sink: &mut Sink,
) -> Vec<ProcessPlan> {
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
    // Instances are numbered in declaration order: process p's first one is
    // first_instance[p].
    let mut first_instance = Vec::with_capacity(processes.len() + 1);
    let mut total = 0usize;
    for process in processes {
        first_instance.push(total);
        total += process.instances.len();
    }
    first_instance.push(total);
    // Every instance's channel ends, found in one sweep (edge order kept):
    // instance i's are ends[starts[i]..starts[i + 1]].
    let mut starts = vec![0usize; total + 1];
    for channel in channels.iter() {
        for port in &channel.ports {
            starts[first_instance[port.process] + port.replica + 1] += 1;
        }
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut ends = vec![(0usize, 0usize); starts[total]];
    let mut cursor = starts.clone();
    for (c, channel) in channels.iter().enumerate() {
        for (p, port) in channel.ports.iter().enumerate() {
            let slot = &mut cursor[first_instance[port.process] + port.replica];
            ends[*slot] = (c, p);
            *slot += 1;
        }
    }
    drop(cursor);
    let base_inherit_env: Vec<Cow<'static, str>> = BASE_INHERITED_ENV
        .iter()
        .map(|s| Cow::Borrowed(*s))
        .collect();
    let mut out = Vec::with_capacity(total);
    // Per-instance scratch space, reused.
    let mut taken: Vec<i32> = Vec::new();
    let mut assigned: Vec<Option<i32>> = Vec::new();
    let mut ordered: Vec<usize> = Vec::new();
    for (index, process) in processes.iter().enumerate() {
        let replicated = process.instances.len() > 1 || process.spec.replicas.is_some();
        for (replica, instance) in process.instances.iter().enumerate() {
            let global = first_instance[index] + replica;
            let ends = &ends[starts[global]..starts[global + 1]];
            taken.clear();
            assigned.clear();
            assigned.resize(ends.len(), None);
            if let Readiness::Fd { fd } = process.ready {
                take(&mut taken, fd);
            }
            // Pass 1: stdio and pinned fds.
            for (e, &(c, p)) in ends.iter().enumerate() {
                let channel = &channels[c];
                let end = &channel.ports[p];
                let (port, _) = channel.port(end);
                let fixed = match port {
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
                        take(&mut taken, fd);
                        assigned[e] = Some(fd);
                    } else if fd > 2 {
                        let span = process
                            .ports
                            .get(port)
                            .and_then(|d| d.fd.as_ref().map(|(_, s)| s.clone()))
                            .unwrap_or(end.span.clone());
                        sink.push(
                            Diagnostic::error("E0206", format!("port `{}.{port}` has a fixed fd, but a {} reaches the process by name, not by fd", process.name, channel.plan.mechanism.name()))
                                .with_label(Label::primary(span, "no fd is handed over"))
                                .with_label(Label::secondary(end.span.clone(), "the edge using the port")),
                        );
                    } else {
                        sink.push(
                            Diagnostic::error("E0205", format!("port `{}.{port}` is a standard stream, but a {} reaches the process by name, not by fd", process.name, channel.plan.mechanism.name()))
                                .with_label(Label::primary(end.span.clone(), "name a port instead, e.g. `proc.data`")),
                        );
                    }
                }
            }
            // Pass 2: listeners from 3 up, then the other fd ports. Fds are
            // handed out in increasing order, so the search resumes where
            // the last one was found.
            let mut next = 3;
            for listeners in [true, false] {
                for (e, &(c, p)) in ends.iter().enumerate() {
                    let end = &channels[c].ports[p];
                    if !end.needs_fd || end.listener != listeners || assigned[e].is_some() {
                        continue;
                    }
                    while taken.binary_search(&next).is_ok() {
                        next += 1;
                    }
                    take(&mut taken, next);
                    assigned[e] = Some(next);
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
            let mut fds = Vec::with_capacity(taken.len());
            let mut port_vars = Vec::new();
            let mut listen_count = 0usize;
            let mut listen_names = String::new();
            ordered.clear();
            ordered.extend(0..ends.len());
            ordered.sort_by_key(|&e| assigned[e].unwrap_or(i32::MAX));
            for &e in &ordered {
                let (c, p) = ends[e];
                let fd = assigned[e];
                let channel = &mut channels[c];
                let end = channel.ports[p].clone();
                channel.set_fd(&end, fd);
                let channel = &channels[c];
                let (port, env_name) = channel.port(&end);
                if let Some(fd) = fd {
                    fds.push(FdSlot {
                        fd,
                        port: port.to_owned(),
                        role: FdRole::Channel {
                            channel: channel.plan.id.clone(),
                            end: end.end,
                        },
                    });
                    if end.listener {
                        if listen_count > 0 {
                            listen_names.push(':');
                        }
                        listen_names.push_str(port);
                        listen_count += 1;
                    }
                }
                if !matches!(port, "stdin" | "stdout" | "stderr") {
                    let description = channel.description(&end);
                    let value = match fd {
                        Some(fd) => {
                            let mut value = String::with_capacity(description.len() + 8);
                            value.push_str(description);
                            let _ = write!(value, " fd={fd}");
                            value
                        }
                        None => description.to_owned(),
                    };
                    port_vars.push(EnvVar {
                        name: env_name.to_owned().into(),
                        value: value.into(),
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
            let mut env = Vec::with_capacity(9 + port_vars.len() + process.spec.env.len());
            env.extend([
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
                    value: name.to_owned().into(),
                },
                EnvVar {
                    name: "IPC_RUN_PROCESS".into(),
                    value: instance.clone().into(),
                },
            ]);
            if replicated {
                env.push(EnvVar {
                    name: "IPC_RUN_REPLICA".into(),
                    value: replica.to_string().into(),
                });
                env.push(EnvVar {
                    name: "IPC_RUN_REPLICAS".into(),
                    value: process.instances.len().to_string().into(),
                });
            }
            port_vars.sort_by(|a, b| a.name.cmp(&b.name));
            env.extend(port_vars);
            if listen_count > 0 {
                // LISTEN_PID is the child's own pid, known only in the child.
                env.push(EnvVar {
                    name: "LISTEN_PID".into(),
                    value: "{pid}".into(),
                });
                env.push(EnvVar {
                    name: "LISTEN_FDS".into(),
                    value: listen_count.to_string().into(),
                });
                env.push(EnvVar {
                    name: "LISTEN_FDNAMES".into(),
                    value: listen_names.into(),
                });
            }
            match process.ready {
                Readiness::Notify => env.push(EnvVar {
                    name: "NOTIFY_SOCKET".into(),
                    value: NOTIFY_SOCKET_PATH.into(),
                }),
                Readiness::Fd { fd } => env.push(EnvVar {
                    name: "IPC_RUN_READY_FD".into(),
                    value: fd.to_string().into(),
                }),
                Readiness::Started => {}
            }
            for (key, value) in &process.spec.env {
                env.push(EnvVar {
                    name: key.get_ref().clone().into(),
                    value: value.get_ref().clone().into(),
                });
            }
            let mut inherit_env = base_inherit_env.clone();
            for extra in &process.spec.inherit_env {
                if !inherit_env.iter().any(|name| name == extra.get_ref()) {
                    inherit_env.push(extra.get_ref().clone().into());
                }
            }
            let after = process
                .after
                .iter()
                .flat_map(|&a| processes[a].instances.iter().cloned())
                .collect();
            out.push(ProcessPlan {
                name: instance.clone(),
                process: process.name.clone(),
                replica: replicated.then_some(replica as u32),
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

/// Marks an fd as used, keeping `taken` sorted.
fn take(taken: &mut Vec<i32>, fd: i32) {
    if let Err(at) = taken.binary_search(&fd) {
        taken.insert(at, fd);
    }
}
