//! The text rendering of a plan, for people: each process with its fd table,
//! environment and readiness; then each channel with its mechanism, the
//! reason for it and the objects it creates; then order, cycles, warnings.
//! The output is deterministic, so it can be snapshot-tested.

use std::fmt::Write as _;

use super::model::{
    ChannelPlan, Choice, CycleVerdict, EndpointPlan, FdRole, ManagedRole, Mechanism, Plan,
    PortRefError, ProcessPlan, Readiness, RestartPolicy,
};
use crate::topology::Millis;

/// Renders the plan as text.
pub fn text(plan: &Plan) -> String {
    let mut out = Vec::new();
    write_text(plan, &mut out).expect("writing to memory does not fail");
    String::from_utf8(out).expect("the rendered plan is UTF-8")
}

/// Bytes rendered before they are handed to the writer: the text of a large
/// plan is written as it is made, never held whole.
const CHUNK: usize = 64 << 10;

/// Writes [`text`] to `out` piece by piece, with the same bytes.
pub fn write_text(plan: &Plan, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut buf = String::with_capacity(CHUNK * 2);
    let flush_if_full = |buf: &mut String, out: &mut dyn std::io::Write| {
        if buf.len() >= CHUNK {
            out.write_all(buf.as_bytes())?;
            buf.clear();
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = writeln!(buf, "plan `{}` (format {})", plan.name, plan.format_version);
    let _ = writeln!(
        buf,
        "{} process(es), {} channel(s)",
        plan.processes.len(),
        plan.channels.len()
    );
    if let Some(profiles) = &plan.profiles {
        render_profiles(&mut buf, profiles);
    }
    if let Some(placement) = &plan.placement {
        render_placement(&mut buf, placement, &mut |buf| flush_if_full(buf, out))?;
    }
    // Each fd names its channel's mechanism: looked up by id, not by a scan
    // of every channel for every fd.
    let mechanisms: Mechanisms<'_> = plan
        .channels
        .iter()
        .map(|c| {
            let name = if c.mechanism.per_connection() {
                PER_CONNECTION
            } else {
                c.mechanism.name()
            };
            (c.id.as_ref(), name)
        })
        .collect();
    for process in &plan.processes {
        buf.push('\n');
        render_process(&mut buf, (&mechanisms, &plan.channels), process)
            .map_err(std::io::Error::other)?;
        flush_if_full(&mut buf, out)?;
    }
    for channel in &plan.channels {
        buf.push('\n');
        render_channel(&mut buf, channel);
        flush_if_full(&mut buf, out)?;
    }
    buf.push('\n');
    render_order(&mut buf, plan);
    out.write_all(buf.as_bytes())
}

/// One side of a channel: `proc.port@fd, @stdin, …`.
fn render_side(ends: &[EndpointPlan]) -> String {
    ends.iter()
        .map(|e| match e {
            EndpointPlan::Port {
                process, port, fd, ..
            } => match fd.get() {
                Some(fd) => format!("{process}.{port}@{fd}"),
                None => format!("{process}.{port}"),
            },
            EndpointPlan::Own { stream } => format!("@{stream}"),
            EndpointPlan::External => "@external".into(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_channel(out: &mut String, channel: &ChannelPlan) {
    let _ = writeln!(
        out,
        "channel {}: {} -> {}",
        channel.id,
        render_side(channel.from()),
        render_side(channel.to())
    );
    let choice = match channel.choice {
        Choice::Auto => "auto",
        Choice::Explicit => "named",
    };
    let _ = writeln!(
        out,
        "  mechanism  {} ({choice})",
        channel.mechanism.summary()
    );
    let _ = writeln!(out, "  reason     {}", channel.reason);
    if let Mechanism::Rpc(rpc) = &channel.mechanism {
        let endpoint = &rpc.endpoint;
        let _ = writeln!(
            out,
            "  endpoint   {}: {}",
            endpoint.shape.as_str(),
            endpoint.reason
        );
        if let Some(max) = endpoint.max_connections {
            let _ = writeln!(
                out,
                "  instances  at most {max} at once; more connections wait in the backlog"
            );
        }
        if let Some(probe) = &endpoint.probe {
            let _ = writeln!(
                out,
                "  probe      {} every {}: {}",
                probe.kind.as_str(),
                Millis(probe.interval_ms),
                probe.reason
            );
        }
    }
    if let Mechanism::Mpi(mpi) = &channel.mechanism {
        render_rank_map(out, &mpi.ranks);
    }
    match (channel.blocking, channel.capacity()) {
        (true, Some(capacity)) => {
            let _ = writeln!(out, "  buffering  blocks when full, {capacity} bytes");
        }
        (true, None) => {
            let _ = writeln!(out, "  buffering  blocks when full");
        }
        (false, _) => {}
    }
    for object in channel.objects() {
        let _ = writeln!(
            out,
            "  creates    {} {} mode {:04o}",
            kind_name(object.kind),
            object.name,
            object.mode
        );
    }
}

/// An MPI world's rank map: rank `i` is instance `ranks[i]`.
fn render_rank_map(out: &mut String, ranks: &[String]) {
    for (rank, instance) in ranks.iter().enumerate() {
        let _ = writeln!(out, "  {:<10} {instance}", format!("rank {rank}"));
    }
}

/// Start and stop order, the followed exit status, cycles and warnings.
fn render_order(out: &mut String, plan: &Plan) {
    let _ = writeln!(
        out,
        "start order: {}",
        list_or_dash(&plan.start_order, " -> ")
    );
    let _ = writeln!(
        out,
        "stop order:  {}",
        list_or_dash(&plan.stop_order, " -> ")
    );
    if let Some(name) = &plan.exit_code_from {
        let _ = writeln!(out, "exit status: follows `{name}`");
    }
    for cycle in &plan.cycles {
        let verdict = match cycle.verdict {
            CycleVerdict::Harmless => "harmless (a channel with its own protocol)".to_owned(),
            CycleVerdict::BoundedFits => format!(
                "bounded: {} bytes in flight fit in {} bytes",
                cycle.in_flight.unwrap_or(0),
                cycle.capacity.unwrap_or(0)
            ),
            CycleVerdict::DeadlockRisk => format!(
                "deadlock risk: buffers {} bytes",
                cycle.capacity.unwrap_or(0)
            ),
        };
        let _ = writeln!(
            out,
            "data cycle: {} via {}: {verdict}",
            cycle.path.join(" -> "),
            cycle.channels.join(", ")
        );
    }
    for warning in &plan.warnings {
        let _ = writeln!(out, "warning[{}]: {}", warning.code, warning.message);
    }
}

/// Each channel's mechanism name by channel id.
type Mechanisms<'p> = std::collections::HashMap<&'p str, &'static str>;

/// What [`Mechanisms`] says for an rpc channel served per connection.
const PER_CONNECTION: &str = "rpc per-connection";

/// One instance; its port variables rendered against the plan's
/// `channels`.
fn render_process(
    out: &mut String,
    (mechanisms, channels): (&Mechanisms<'_>, &[ChannelPlan]),
    process: &ProcessPlan,
) -> Result<(), PortRefError> {
    let _ = writeln!(out, "process {}", process.name);
    let argv = if process.shell {
        format!(
            "sh -c {:?}",
            process.argv.last().map(String::as_str).unwrap_or("")
        )
    } else {
        shell_words(&process.argv)
    };
    let _ = writeln!(out, "  run        {argv}");
    if let Some(managed) = &process.managed {
        let role = match managed.role {
            ManagedRole::Broker => "broker",
            ManagedRole::Launcher => "launcher",
        };
        let _ = writeln!(
            out,
            "  managed    {role} of {}: {}",
            managed.channel, managed.reason
        );
    }
    if let Some(user) = &process.user {
        let _ = writeln!(out, "  user       {user}");
    }
    if let Some(group) = &process.group {
        let _ = writeln!(out, "  group      {group}");
    }
    if let Some(cwd) = &process.cwd {
        let _ = writeln!(out, "  cwd        {cwd}");
    }
    render_lifecycle(out, process);
    if !process.after.is_empty() {
        let after: Vec<String> = process
            .after
            .iter()
            .map(
                |name| match process.conditions.iter().find(|c| c.instance == *name) {
                    Some(c) => format!("{name} ({})", c.condition.as_str()),
                    None => name.to_string(),
                },
            )
            .collect();
        let _ = writeln!(out, "  after      {}", after.join(", "));
    }
    if let Some(health) = &process.health {
        let _ = writeln!(
            out,
            "  health     {}, every {}, timeout {}, unhealthy after {} failure(s), start period {}",
            health.check.describe(),
            Millis(health.interval_ms),
            Millis(health.timeout_ms),
            health.retries,
            Millis(health.start_period_ms)
        );
    }
    if let Some(ms) = process.watchdog_ms {
        let _ = writeln!(
            out,
            "  watchdog   {} (WATCHDOG=1 on NOTIFY_SOCKET, else SIGABRT)",
            Millis(ms)
        );
    }
    if !process.forward_signals.is_empty() {
        let names: Vec<&str> = process.forward_signals.iter().map(|s| s.name).collect();
        let _ = writeln!(out, "  forwards   {}", names.join(", "));
    }
    let _ = writeln!(out, "  fds");
    render_fds(out, mechanisms, process);
    for file in &process.env_files {
        let _ = writeln!(out, "  env_file   {file} (read at each start)");
    }
    let _ = writeln!(out, "  env");
    for var in process.env.vars(channels) {
        let var = var?;
        let _ = writeln!(out, "    {}={}", var.name, var.value);
    }
    let _ = writeln!(out, "  inherits   {}", process.inherit_env.join(" "));
    Ok(())
}

/// The host groups, each with its processes and why, and the edges
/// between them with their ports and how clients find the listener.
fn render_placement(
    out: &mut String,
    placement: &crate::mechanism::model::PlacementPlan,
    flush: &mut dyn FnMut(&mut String) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use crate::mechanism::model::PlacementSource;
    use crate::topology::ByteSize;
    let source = match placement.source {
        PlacementSource::Declared => "declared by `host` keys".to_owned(),
        PlacementSource::Partitioned { hosts } => format!("partitioned by --hosts {hosts}"),
    };
    let _ = writeln!(
        out,
        "placement  {source}: {} group(s), {} edge(s) between groups",
        placement.groups.len(),
        placement.cross_edges.len()
    );
    for group in &placement.groups {
        let mut needs = format!("{} process(es)", group.processes.len());
        if let Some(cpus) = group.cpus {
            let _ = write!(needs, ", cpus {cpus}");
        }
        if let Some(memory) = group.memory {
            let _ = write!(needs, ", memory {}", ByteSize(memory));
        }
        let _ = write!(needs, ", shm {}", ByteSize(group.shm_bytes));
        let _ = writeln!(out, "  group `{}`: {needs}", group.name);
        let _ = write!(out, "    processes ");
        for (k, name) in group.processes.iter().enumerate() {
            let _ = write!(out, "{}{name}", if k == 0 { " " } else { ", " });
            flush(out)?;
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "    reason     {}", group.reason);
    }
    for edge in &placement.cross_edges {
        let _ = writeln!(
            out,
            "  cross `{}`: listener in `{}` on port {}, clients in {}",
            edge.channel,
            edge.listener_group,
            edge.port,
            edge.client_groups
                .iter()
                .map(|g| format!("`{g}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(out, "    discovery  {}", edge.discovery);
    }
    Ok(())
}

/// The active profiles and what they left out.
fn render_profiles(out: &mut String, profiles: &crate::mechanism::model::ProfilesPlan) {
    let active = if profiles.active.is_empty() {
        "none".to_owned()
    } else {
        profiles.active.join(", ")
    };
    let _ = writeln!(out, "profiles   {active}");
    if !profiles.left_out.is_empty() {
        let _ = writeln!(out, "left out   {}", profiles.left_out.join(", "));
    }
    for edge in &profiles.dropped_edges {
        let _ = writeln!(out, "dropped    edge {edge}");
    }
}

/// Readiness, restart and stop.
fn render_lifecycle(out: &mut String, process: &ProcessPlan) {
    let ready = match process.ready {
        Readiness::Started => "started".to_owned(),
        Readiness::Notify => "notify (READY=1 on NOTIFY_SOCKET)".to_owned(),
        Readiness::Fd { fd } => format!("a newline on fd {fd}"),
    };
    let _ = writeln!(
        out,
        "  ready      {ready}, timeout {}",
        Millis(process.ready_timeout_ms)
    );
    let restart = match process.restart.policy {
        RestartPolicy::Never => "never".to_owned(),
        RestartPolicy::OnFailure | RestartPolicy::Always => format!(
            "{}, at most {} times, backoff from {}",
            if process.restart.policy == RestartPolicy::Always {
                "always"
            } else {
                "on-failure"
            },
            process.restart.limit,
            Millis(process.restart.backoff_ms)
        ),
    };
    let _ = writeln!(out, "  restart    {restart}");
    let _ = writeln!(
        out,
        "  stop       {}, SIGKILL after {}",
        process.stop_signal.name,
        Millis(process.stop_timeout_ms)
    );
}

/// The fd table, with what the standard streams get when not wired.
fn render_fds(out: &mut String, mechanisms: &Mechanisms<'_>, process: &ProcessPlan) {
    let mut rows: Vec<(i32, String, String)> = Vec::new();
    // A per-connection server gets its connection on fds 0 and 1.
    let connection = process.fds.iter().find_map(|slot| match &slot.role {
        FdRole::Channel { channel, .. }
            if slot.fd == 0 && mechanisms.get(channel.as_ref()) == Some(&PER_CONNECTION) =>
        {
            Some(channel)
        }
        _ => None,
    });
    if let Some(channel) = connection {
        rows.push((
            1,
            "stdout".to_owned(),
            format!("the same connection (rpc {channel})"),
        ));
    }
    for (fd, port, default) in [
        (0, "stdin", "/dev/null"),
        (
            1,
            "stdout",
            "relayed to ipc-run's stdout with a name prefix",
        ),
        (
            2,
            "stderr",
            "relayed to ipc-run's stderr with a name prefix",
        ),
    ] {
        let wired = process.fds.iter().any(|slot| slot.fd == fd);
        if !(wired || fd == 1 && connection.is_some()) {
            rows.push((fd, port.to_owned(), default.to_owned()));
        }
    }
    for slot in &process.fds {
        let what = match &slot.role {
            FdRole::Channel { channel, .. } if connection == Some(channel) => {
                format!("one accepted connection of rpc {channel}, an instance per connection")
            }
            FdRole::Channel { channel, end } => {
                let mechanism = mechanisms.get(channel.as_ref()).copied().unwrap_or("?");
                format!(
                    "{mechanism} {channel} ({})",
                    serde_json::to_value(end)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )
            }
            FdRole::Ready => "readiness pipe (write a newline when ready)".to_owned(),
        };
        rows.push((slot.fd, slot.port.to_string(), what));
    }
    rows.sort_by_key(|row| row.0);
    for (fd, port, what) in rows {
        let _ = writeln!(out, "    {fd:>3}  {port:<10} {what}");
    }
}

fn kind_name(kind: super::model::ObjectKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn list_or_dash<S: std::borrow::Borrow<str>>(items: &[S], separator: &str) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(separator)
    }
}

/// Quotes argv words that a shell would split, for display only.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|word| {
            if !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
