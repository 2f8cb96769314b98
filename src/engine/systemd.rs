//! `ipc-run export systemd`: the units that run a placed plan on one
//! server under systemd, one `Type=notify` service per host group
//! (`docs/distributed.md`, "systemd").
//!
//! Each service runs its group's ipc-run (`run --plan PLAN --host G --peer
//! L=127.0.0.1 …`), which sends `READY=1` once every process of the group
//! is ready, so a unit that is `After=` it starts when its listeners
//! serve. Processes keep their own restart policies, readiness and health
//! inside ipc-run; the unit's settings are about ipc-run itself.
//!
//! A group that binds cross-edge listeners also gets a `.socket` unit
//! holding their ports: systemd binds them before the group's ipc-run
//! starts and hands them over with `LISTEN_FDS`, and ipc-run takes a
//! listener the plan binds from them instead of binding it again
//! (`mechanism::activation`). Clients connecting while the group starts or
//! restarts wait in the socket's backlog instead of being refused.
//! Listeners a server binds itself (server-bound rpc) cannot be handed
//! over and get none.

use super::export::{self, ExportError, GroupFacts, Lifetime};
use super::one_line;
use crate::plan::model::Plan;

/// Where the units expect the plan when they are printed instead of
/// written (`--out` not given): beside them, once copied into the
/// administrator's unit directory.
const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";
/// Time beyond the processes' own timeouts for ipc-run to start or clean up.
const MARGIN_S: u64 = 5;

/// What `export systemd` is told besides the plan.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Unit names are `PREFIX-GROUP.service`, the plan `PREFIX.plan.json`.
    pub prefix: String,
    /// The absolute path of the ipc-run the units start.
    pub ipc_run: String,
    /// The directory the units and the plan are written to; the units
    /// name the plan there.
    pub unit_dir: Option<String>,
}

/// The default `--prefix`: `ipc-run-` and the topology's name, with
/// characters a unit name cannot hold as `-`.
pub(crate) fn default_prefix(plan: &Plan) -> String {
    let name: String = plan
        .name
        .chars()
        .map(|c| if unit_char(c) { c } else { '-' })
        .collect();
    format!("ipc-run-{name}")
}

/// `--prefix`: characters of a unit name, not empty, leaving room for the
/// group and the suffix.
pub(crate) fn parse_prefix(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 128 || !text.chars().all(unit_char) || text.starts_with('.')
    {
        return Err(format!(
            "[E0524] `{text}` is not a unit name prefix: 1 to 128 letters, digits, `:`, `_`, `.` or `-`"
        ));
    }
    Ok(text.to_owned())
}

/// `--ipc-run`: an absolute path, as `ExecStart=` wants its program.
pub(crate) fn parse_ipc_run(text: &str) -> Result<String, String> {
    if !text.starts_with('/') || text.contains(['\n', '\r']) {
        return Err(format!(
            "[E0524] `{text}` is not an absolute path: ExecStart= runs ipc-run by its full path"
        ));
    }
    Ok(text.to_owned())
}

/// The characters of a unit name other than its `@` and suffix.
fn unit_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || ":_.-".contains(c)
}

/// The plan file's name beside the units.
pub(crate) fn plan_file(options: &Options) -> String {
    format!("{}.plan.json", options.prefix)
}

/// The plan's path the units name: beside them.
pub(crate) fn plan_path(options: &Options) -> String {
    let dir = options.unit_dir.as_deref().unwrap_or(DEFAULT_UNIT_DIR);
    format!("{}/{}", dir.trim_end_matches('/'), plan_file(options))
}

/// The units, as (file name, text) in group order; with `--out`, the plan
/// JSON is written beside them ([`plan_file`]).
pub(crate) fn units(plan: &Plan, options: &Options) -> Result<Vec<(String, String)>, ExportError> {
    let groups = export::groups(plan);
    let plan_path = plan_path(options);
    let name = |group: &str| format!("{}-{group}.service", options.prefix);
    if name("").len() + groups.iter().map(|g| g.name.len()).max().unwrap_or(0) > 255 {
        return Err(ExportError::Name(format!(
            "unit names `{}` are longer than 255 characters: choose a shorter --prefix",
            name("GROUP")
        )));
    }
    let mut units = Vec::new();
    for group in &groups {
        let listeners = handed_over(plan, group);
        let socket = (!listeners.is_empty()).then(|| socket_name(options, group.name));
        let text = service(plan, group, &plan_path, options, &name);
        let text = match &socket {
            // The service needs its ports bound first.
            Some(socket) => text.replacen(
                "\n[Service]\n",
                &format!("Requires={socket}\nAfter={socket}\n\n[Service]\n"),
                1,
            ),
            None => text,
        };
        units.push((name(group.name), text));
        if let Some(socket) = socket {
            units.push((
                socket,
                socket_unit(plan, group, &listeners, &name(group.name)),
            ));
        }
    }
    Ok(units)
}

/// `PREFIX-GROUP.socket`.
fn socket_name(options: &Options, group: &str) -> String {
    format!("{}-{group}.socket", options.prefix)
}

/// The cross edges a group binds that ipc-run can take from a socket
/// unit (a listener ipc-run binds: `tcp`, or an rpc endpoint over TCP it
/// hands over), with their backlogs.
fn handed_over(plan: &Plan, group: &GroupFacts<'_>) -> Vec<(u16, u32)> {
    use crate::plan::model::{Mechanism, Transport};
    use crate::topology::EndpointShape;
    group
        .listens
        .iter()
        .filter_map(|edge| {
            let channel = plan.channels.iter().find(|c| c.id == edge.channel)?;
            let backlog = match &channel.mechanism {
                Mechanism::Tcp(tcp) => tcp.backlog,
                Mechanism::Rpc(rpc)
                    if rpc.transport == Transport::Tcp
                        && rpc.endpoint.shape != EndpointShape::ServerBound =>
                {
                    rpc.backlog
                }
                _ => return None,
            };
            Some((edge.port, backlog))
        })
        .collect()
}

/// The socket unit of a group's cross-edge listeners: every address the
/// group's ipc-run would bind (`0.0.0.0:PORT`, `run --bind-address`'s
/// default), with the largest backlog its edges ask for.
fn socket_unit(
    plan: &Plan,
    group: &GroupFacts<'_>,
    listeners: &[(u16, u32)],
    service: &str,
) -> String {
    let mut text = format!(
        "# Written by `ipc-run export systemd` from topology `{}`: the cross-edge listeners \
         of group `{}`.\n[Unit]\nDescription=ipc-run {}: listeners of group {}\n\n[Socket]\n",
        one_line(&plan.name),
        one_line(group.name),
        description(&plan.name),
        description(group.name)
    );
    for (port, _) in listeners {
        text.push_str(&format!("ListenStream=0.0.0.0:{port}\n"));
    }
    let backlog = listeners.iter().map(|(_, b)| *b).max().unwrap_or(128);
    // As for the listeners ipc-run binds itself (`run --host`): a
    // connection is accepted once it brings data, so another group's wait
    // for the listener (a connection reset at once) neither starts the
    // service nor reaches the server.
    text.push_str(&format!(
        "Backlog={backlog}\nDeferAcceptSec=1s\nService={service}\n\n[Install]\nWantedBy=sockets.target\n"
    ));
    text
}

/// One group's service unit.
fn service(
    plan: &Plan,
    group: &GroupFacts<'_>,
    plan_path: &str,
    options: &Options,
    unit: &dyn Fn(&str) -> String,
) -> String {
    let mut text = format!(
        "# Written by `ipc-run export systemd` from topology `{}`: group `{}`.\n[Unit]\n\
         Description=ipc-run {}: group {}\nAfter=network.target\n",
        one_line(&plan.name),
        one_line(group.name),
        description(&plan.name),
        description(group.name)
    );
    // Its clients start after the groups they connect to have said READY=1.
    for peer in &group.peers {
        text.push_str(&format!("Wants={}\nAfter={}\n", unit(peer), unit(peer)));
    }
    text.push_str("\n[Service]\nType=notify\nNotifyAccess=main\n");
    let args = export::run_args(plan_path, group, None, |_| "127.0.0.1".to_owned());
    let mut exec = exec_word(&options.ipc_run);
    for arg in &args {
        exec.push(' ');
        exec.push_str(&exec_word(arg));
    }
    text.push_str(&format!("ExecStart={exec}\n"));
    match &group.lifetime {
        Lifetime::Completes(why) => {
            text.push_str(&format!("# Restart=no: {why}.\nRestart=no\n"));
        }
        Lifetime::Serves(why) => text.push_str(&format!(
            "# Restart=on-failure: {why}; ipc-run exits non-zero when a process failed for good.\n\
             Restart=on-failure\nRestartSec=1s\n"
        )),
    }
    // SIGTERM (systemctl stop) and SIGINT end a run with 143 and 130.
    text.push_str("SuccessExitStatus=130 143\n");
    // ipc-run stops its processes itself, in dependency order: only it
    // gets the stop signal, the rest SIGKILL after TimeoutStopSec.
    text.push_str("KillMode=mixed\n");
    // ipc-run makes a cgroup for its run inside its own.
    text.push_str("Delegate=yes\n");
    let start = export::remote_wait_ms(plan, group)
        + export::longest_chain_ms(plan, group, |p| p.ready_timeout_ms);
    let stop = export::longest_chain_ms(plan, group, |p| p.stop_timeout_ms);
    text.push_str(&format!(
        "TimeoutStartSec={}\nTimeoutStopSec={}\n",
        start.div_ceil(1000) + MARGIN_S,
        stop.div_ceil(1000) + MARGIN_S
    ));
    let watchdog = group.instances.iter().filter_map(|p| p.watchdog_ms).min();
    if let Some(ms) = watchdog {
        // The group asked for hang detection at this period: ipc-run's
        // own loop, which pings, is held to the same.
        text.push_str(&format!("WatchdogSec={}\n", timespan(ms)));
    }
    text.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    text
}

/// `text` in a `Description=`: on one line ([`one_line`]), and with `%`
/// doubled, as systemd expands specifiers there (`%n` is the unit's name).
fn description(text: &str) -> String {
    one_line(text).replace('%', "%%")
}

/// A systemd time span: whole seconds when it is, else milliseconds.
fn timespan(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// One word of a command line in `ExecStart=`: `%` and `$` escaped (unit
/// specifiers and variables), quoted when it holds a space, a quote, a
/// backslash or a control character, which is written as a C escape
/// (`\x0a`) so that it cannot end the line (a path from `--out`).
fn exec_word(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    let control = escaped.chars().any(char::is_control);
    if escaped.is_empty() || control || escaped.contains([' ', '\t', '"', '\'', '\\', ';']) {
        let mut inner = String::with_capacity(escaped.len() + 2);
        for c in escaped.chars() {
            match c {
                '\\' => inner.push_str("\\\\"),
                '"' => inner.push_str("\\\""),
                c if c.is_control() && u32::from(c) < 0x80 => {
                    inner.push_str(&format!("\\x{:02x}", u32::from(c)));
                }
                c if c.is_control() => inner.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => inner.push(c),
            }
        }
        format!("\"{inner}\"")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_words_are_escaped_and_quoted() {
        assert_eq!(exec_word("/usr/bin/ipc-run"), "/usr/bin/ipc-run");
        assert_eq!(exec_word("50%"), "50%%");
        assert_eq!(exec_word("$HOME"), "$$HOME");
        assert_eq!(
            exec_word("/srv/my units/p.json"),
            "\"/srv/my units/p.json\""
        );
        assert_eq!(exec_word("a\"b"), "\"a\\\"b\"");
        assert_eq!(exec_word(";"), "\";\"");
        assert_eq!(exec_word("/a\nb\t"), "\"/a\\x0ab\\x09\"");
    }

    #[test]
    fn time_spans() {
        assert_eq!(timespan(5000), "5s");
        assert_eq!(timespan(1500), "1500ms");
    }
}
