//! Health checks, the watchdog and the conditions of `after`, resolved
//! onto the wired instances. Pure.
//!
//! A condition other than `ready` is recorded per instance
//! ([`AfterCondition`]); the names stay in `after`, so the start order and
//! its cycle check are the same whatever the condition. Conditions that
//! can never be met are refused here: `healthy` of a process without a
//! health check (E0420), `completed` of a process restarted whatever its
//! exit (E0421). A health check names exactly one probe (E0422); a port it
//! probes is one the process serves on a listening edge (E0423); an
//! address is `host:port` (E0424); periods are not zero (E0425).

use std::collections::HashMap;
use std::sync::Arc;

use super::processes::ProcessDecl;
use super::{
    AfterCondition, ChannelPlan, EndpointPlan, HealthCheck, HealthPlan, Mechanism, ProcessPlan,
};
use super::{EnvVar, RestartPolicy, Sink};
use crate::diagnostic::{Diagnostic, Label};
use crate::topology::{Condition, HealthSpec, Spanned};

/// Default time between checks.
pub const DEFAULT_INTERVAL_MS: u64 = 10_000;
/// Default bound of one check.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Default consecutive failures before unhealthy.
pub const DEFAULT_RETRIES: u32 = 3;

/// Fills `conditions`, `health` and `watchdog_ms` of every instance.
/// `instances` are the wired instances, in the order of `processes` and
/// their replicas.
pub(super) fn resolve(
    processes: &[ProcessDecl],
    channels: &[ChannelPlan],
    instances: &mut [ProcessPlan],
    sink: &mut Sink,
) {
    // Most topologies have neither: no lookup table is made for them, as
    // it would be built beside the whole wired plan, at its peak.
    let by_name: HashMap<&str, usize> = if processes
        .iter()
        .any(|p| !p.spec.after_conditions.is_empty())
    {
        processes
            .iter()
            .enumerate()
            .map(|(i, p)| (&*p.name, i))
            .collect()
    } else {
        HashMap::new()
    };
    let listeners = if processes.iter().any(|p| p.spec.health.is_some()) {
        listeners(channels)
    } else {
        HashMap::new()
    };
    let mut next = 0;
    for process in processes {
        let conditions = conditions_of(process, processes, &by_name, sink);
        let health = process
            .spec
            .health
            .as_ref()
            .and_then(|h| health_of(process, h, &listeners, sink));
        let watchdog = process.spec.watchdog.as_ref().and_then(|w| {
            if w.get_ref().0 == 0 {
                sink.push(zero(w.span(), "watchdog"));
                None
            } else {
                Some(w.get_ref().0)
            }
        });
        let count = process.instances.len();
        let Some(mine) = instances.get_mut(next..next + count) else {
            break;
        };
        next += count;
        if conditions.is_empty() && health.is_none() && watchdog.is_none() {
            continue;
        }
        for instance in mine {
            apply(instance, processes, &conditions, &health, watchdog);
        }
    }
}

/// One instance's share of its process's conditions, health check and
/// watchdog.
fn apply(
    instance: &mut ProcessPlan,
    processes: &[ProcessDecl],
    conditions: &[(usize, Condition)],
    health: &Option<HealthPlan>,
    watchdog: Option<u64>,
) {
    instance.conditions = conditions
        .iter()
        .flat_map(|&(d, condition)| {
            processes[d]
                .instances
                .iter()
                .map(move |dep| AfterCondition {
                    instance: dep.clone(),
                    condition,
                })
        })
        .collect();
    instance.health.clone_from(health);
    instance.watchdog_ms = watchdog;
    if let Some(ms) = watchdog {
        add_watchdog_env(instance, ms);
    }
}

/// The notify socket (unless `ready = "notify"` gave it already) and
/// `WATCHDOG_USEC`. `WATCHDOG_PID` is not set: the pid is not known before
/// the fork, and sd_watchdog_enabled(3) takes an unset one as "this process".
fn add_watchdog_env(instance: &mut ProcessPlan, ms: u64) {
    if !instance.env.iter().any(|v| &*v.name == "NOTIFY_SOCKET") {
        instance.env.push(EnvVar {
            name: "NOTIFY_SOCKET".into(),
            value: super::wiring::NOTIFY_SOCKET_PATH.into(),
        });
    }
    instance.env.push(EnvVar {
        name: "WATCHDOG_USEC".into(),
        value: (ms.saturating_mul(1000)).to_string().into(),
    });
}

/// The non-`ready` conditions of `process`'s `after`, by process index;
/// E0420 and E0421 for those that can never be met.
fn conditions_of(
    process: &ProcessDecl,
    processes: &[ProcessDecl],
    by_name: &HashMap<&str, usize>,
    sink: &mut Sink,
) -> Vec<(usize, Condition)> {
    let mut out = Vec::new();
    for (name, condition) in &process.spec.after_conditions {
        let Some(&d) = by_name.get(name.as_str()) else {
            continue; // E0104, reported with the names
        };
        let dep = &processes[d];
        match condition.get_ref() {
            Condition::Ready => continue,
            Condition::Healthy if dep.spec.health.is_none() => sink.push(
                Diagnostic::error(
                    "E0420",
                    format!(
                        "`{}` waits for `{name}` to be healthy, but `{name}` has no health check",
                        process.name
                    ),
                )
                .with_label(Label::primary(condition.span(), "never met"))
                .with_help(format!(
                    "give `{name}` a `health = {{ … }}`, or wait for \"ready\""
                )),
            ),
            Condition::Completed if dep.restart().policy == RestartPolicy::Always => sink.push(
                Diagnostic::error(
                    "E0421",
                    format!(
                        "`{}` waits for `{name}` to complete, but `{name}` has restart = \"always\"",
                        process.name
                    ),
                )
                .with_label(Label::primary(condition.span(), "never met"))
                .with_note("a process restarted whatever its exit is never finished")
                .with_help(format!(
                    "give `{name}` restart = \"on-failure\" or \"never\", or wait for \"ready\""
                )),
            ),
            &other => out.push((d, other)),
        }
    }
    out
}

/// The health plan of `process`, or the diagnostics that say why not.
fn health_of(
    process: &ProcessDecl,
    spec: &Spanned<HealthSpec>,
    listeners: &Listeners<'_>,
    sink: &mut Sink,
) -> Option<HealthPlan> {
    let span = spec.span();
    let h = spec.get_ref();
    let written = [
        h.exec.is_some(),
        h.connect.is_some(),
        h.tcp.is_some(),
        h.http.is_some(),
    ];
    if written.iter().filter(|&&w| w).count() != 1 || h.exec.as_ref().is_some_and(Vec::is_empty) {
        sink.push(
            Diagnostic::error(
                "E0422",
                format!(
                    "the health check of `{}` must name exactly one of `exec` (a non-empty command), `connect`, `tcp`, `http`",
                    process.name
                ),
            )
            .with_label(Label::primary(span, "health check")),
        );
        return None;
    }
    let check = check_of(process, h, listeners).map_err(|(code, why)| {
        sink.push(
            Diagnostic::error(code, format!("health check of `{}`: {why}", process.name))
                .with_label(Label::primary(span.clone(), "health check")),
        );
    });
    let mut periods_ok = true;
    for (what, value) in [("interval", h.interval), ("timeout", h.timeout)] {
        if value.is_some_and(|v| v.0 == 0) {
            sink.push(zero(span.clone(), what));
            periods_ok = false;
        }
    }
    if h.retries == Some(0) {
        sink.push(zero(span.clone(), "retries"));
        periods_ok = false;
    }
    let check = check.ok()?;
    periods_ok.then(|| HealthPlan {
        check,
        interval_ms: h.interval.map_or(DEFAULT_INTERVAL_MS, |v| v.0),
        timeout_ms: h.timeout.map_or(DEFAULT_TIMEOUT_MS, |v| v.0),
        retries: h.retries.unwrap_or(DEFAULT_RETRIES),
        start_period_ms: h.start_period.map_or(0, |v| v.0),
    })
}

/// E0425: a period or count of zero.
fn zero(span: std::ops::Range<usize>, what: &str) -> Diagnostic {
    Diagnostic::error("E0425", format!("`{what}` must be greater than zero"))
        .with_label(Label::primary(span, "zero"))
}

type CheckError = (&'static str, String);

fn check_of(
    process: &ProcessDecl,
    h: &HealthSpec,
    listeners: &Listeners<'_>,
) -> Result<HealthCheck, CheckError> {
    if let Some(argv) = &h.exec {
        return Ok(HealthCheck::Exec { argv: argv.clone() });
    }
    if let Some(port) = &h.connect {
        let channel = served_channel(process, port, listeners)?;
        return Ok(HealthCheck::Connect {
            port: port.clone(),
            channel,
        });
    }
    if let Some(address) = &h.tcp {
        return Ok(HealthCheck::Tcp {
            address: tcp_address(address)?,
        });
    }
    let http = h.http.as_deref().unwrap_or_default();
    if let Some(rest) = http.strip_prefix("http://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        return Ok(HealthCheck::Http {
            channel: None,
            address: Some(tcp_address(authority)?),
            path: if path.is_empty() { "/" } else { path }.to_owned(),
        });
    }
    let (port, path) = http.split_at(http.find('/').unwrap_or(http.len()));
    Ok(HealthCheck::Http {
        channel: Some(served_channel(process, port, listeners)?),
        address: None,
        path: if path.is_empty() { "/" } else { path }.to_owned(),
    })
}

fn tcp_address(address: &str) -> Result<String, CheckError> {
    address
        .parse::<std::net::SocketAddr>()
        .map(|a| a.to_string())
        .map_err(|_| ("E0424", format!("`{address}` is not an `ip:port` address")))
}

/// The listening channels by the (instance, port) that serves them.
type Listeners<'c> = HashMap<(&'c str, &'c str), Arc<str>>;

/// Every listening channel (rpc, unix-listener, tcp; not per-connection)
/// by its server's (instance, port), once for the whole plan.
fn listeners(channels: &[ChannelPlan]) -> Listeners<'_> {
    let mut out = HashMap::new();
    for channel in channels {
        let mechanism = &channel.mechanism;
        let listening = matches!(
            mechanism,
            Mechanism::Rpc { .. } | Mechanism::UnixListener { .. } | Mechanism::Tcp { .. }
        ) && !mechanism.per_connection();
        if !listening {
            continue;
        }
        for end in channel.to() {
            if let EndpointPlan::Port { process, port, .. } = end {
                out.insert((&**process, &**port), channel.id.clone());
            }
        }
    }
    out
}

/// The listening channel whose server side is `process`'s `port`: E0423
/// when there is none.
fn served_channel(
    process: &ProcessDecl,
    port: &str,
    listeners: &Listeners<'_>,
) -> Result<Arc<str>, CheckError> {
    let first = process.instances.first().map(|i| &**i).unwrap_or_default();
    listeners.get(&(first, port)).cloned().ok_or_else(|| {
        (
            "E0423",
            format!(
                "`{port}` is not a port on which `{}` serves a listening edge (rpc, unix-listener, tcp)",
                process.name
            ),
        )
    })
}
