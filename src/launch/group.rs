//! One host group of a placed plan: what `ipc-run run --host G` runs
//! (`docs/distributed.md`, "Running one group").
//!
//! [`restrict`] turns a plan and the group's command-line view of the
//! other hosts ([`GroupSpec`]: `--peer GROUP=HOST`, `--bind-address`)
//! into the plan of the group alone ([`GroupRun`]), before anything is
//! created. It is a pure function; the run then goes on exactly as a
//! local one, with two additions the launcher and the supervisor are told
//! about:
//!
//! - a cross edge whose listener is in this group binds
//!   `BIND_ADDRESS:PORT` (the port fixed in the plan) instead of the
//!   plan's wildcard address, and its server's `IPC_PORT_*` says so;
//! - a cross edge whose listener is in another group is not created here
//!   at all: its clients' `IPC_PORT_*` (address and URL) name `HOST:PORT`
//!   of the listener's group, a client handed a connected socket gets a
//!   connection to that address, and each client waits for the remote
//!   listener to accept a connection before it starts ([`RemoteWait`]),
//!   as a local client finds its listener bound before anything starts.
//!
//! An `after` naming a process of another group becomes a wait for a
//! listener of that process to accept, as nothing else of a remote
//! process can be seen from here; processes, channels, start and stop
//! order keep only what is in this group.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use crate::mechanism::model::{
    CrossEdgePlan, EndpointPlan, LOCAL_GROUP, Mechanism, Plan, PortRefError, ProcessPlan,
    Transport, port_env_name,
};
use crate::topology::Condition;
use ipc_run_child::description::{Description, Params};

/// Which group to run, and how it reaches the others.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// The group (`--host G`).
    pub name: String,
    /// The host of each other group it connects to (`--peer GROUP=HOST`).
    pub peers: Vec<(String, String)>,
    /// The address its cross-edge listeners bind (`--bind-address`).
    pub bind_address: IpAddr,
}

/// A listener in another group that this group's processes reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteListener {
    /// The cross edge's channel id.
    pub channel: Arc<str>,
    /// The listener's group.
    pub group: Arc<str>,
    /// The host that group runs on (`--peer`), as given.
    pub host: String,
    /// The port fixed in the plan.
    pub port: u16,
    /// The instance that serves it, over there.
    pub server: Arc<str>,
    /// How long a client here waits for it to accept: the server's
    /// `ready_timeout`.
    pub timeout_ms: u64,
}

impl RemoteListener {
    /// `HOST:PORT`, an IPv6 literal in brackets.
    pub fn address(&self) -> String {
        host_port(&self.host, self.port)
    }
}

/// An instance of this group that may start only once a remote listener
/// accepts connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWait {
    /// The waiting instance.
    pub instance: Arc<str>,
    /// Index into [`GroupRun::remote`].
    pub listener: usize,
    /// Why it waits, in words (`after = ["x"]`, or a client of the edge).
    pub why: String,
}

/// The plan of one group, and what it needs of the other hosts.
#[derive(Debug, Clone)]
pub struct GroupRun {
    /// The group's name.
    pub name: String,
    /// The group's processes, its channels, their order.
    pub plan: Plan,
    /// The listeners of other groups that its processes reach.
    pub remote: Vec<RemoteListener>,
    /// Which instances wait for which of them.
    pub waits: Vec<RemoteWait>,
}

impl GroupRun {
    /// The channels whose listener is in this group and whose clients are
    /// (also) in others.
    pub fn cross_listeners(&self) -> std::collections::HashSet<String> {
        let Some(placement) = &self.plan.placement else {
            return std::collections::HashSet::new();
        };
        placement
            .cross_edges
            .iter()
            .filter(|e| *e.listener_group == *self.name)
            .map(|e| e.channel.to_string())
            .collect()
    }

    /// The address each remote listener's channel connects to, resolved
    /// now (a name: its first IPv4 address, else its first, [`choose`]),
    /// so a name that does not resolve fails before anything is created.
    pub fn resolve(&self) -> Result<HashMap<String, SocketAddr>, GroupError> {
        let mut out = HashMap::new();
        for remote in &self.remote {
            let addr = (remote.host.as_str(), remote.port)
                .to_socket_addrs()
                .map_err(|e| e.to_string())
                .and_then(|addrs| choose(addrs).ok_or_else(|| "no address".to_owned()))
                .map_err(|why| GroupError::Unresolved {
                    group: remote.group.to_string(),
                    host: remote.host.clone(),
                    why,
                })?;
            out.insert(remote.channel.to_string(), addr);
        }
        Ok(out)
    }
}

/// The address to reach a listener at among those its host's name
/// resolves to: the first IPv4 one when there is one, else the first.
/// A listener binds `--bind-address`, `0.0.0.0` unless told otherwise,
/// which IPv6 does not reach, while a dual-stack resolver usually lists a
/// name's IPv6 address first; a listener bound to `[::]` takes IPv4 too,
/// and one bound to an IPv6 address alone is named by that address.
fn choose(addrs: impl Iterator<Item = SocketAddr>) -> Option<SocketAddr> {
    let mut first = None;
    for addr in addrs {
        if addr.is_ipv4() {
            return Some(addr);
        }
        first.get_or_insert(addr);
    }
    first
}

/// Why a group cannot be run from this plan and command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// `--host` names no group of the plan.
    #[error("the plan has no host group `{name}`; its groups: {}", .groups.join(", "))]
    UnknownGroup {
        /// The name asked for.
        name: String,
        /// The plan's groups.
        groups: Vec<String>,
    },
    /// A group this one connects to has no `--peer`.
    #[error(
        "group `{group}` connects to group(s) {} but no --peer says where: add {}",
        .missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
        .missing.iter().map(|m| format!("--peer {m}=HOST")).collect::<Vec<_>>().join(" ")
    )]
    MissingPeer {
        /// The group being run.
        group: String,
        /// The groups without a peer, in plan order.
        missing: Vec<String>,
    },
    /// `--peer` names a group twice, or with no host.
    #[error("--peer {given}: {why}")]
    BadPeer {
        /// The option's value.
        given: String,
        /// What is wrong with it.
        why: String,
    },
    /// An `after` on a process of another group that no one here can see.
    #[error("`{instance}` waits for `{dependency}` ({condition}) in group `{group}`: {why}")]
    RemoteWait {
        /// The waiting instance.
        instance: String,
        /// The instance waited for.
        dependency: String,
        /// The condition asked for.
        condition: &'static str,
        /// Its group.
        group: String,
        /// Why this cannot be waited for across hosts.
        why: &'static str,
    },
    /// A port variable of the plan names a channel end it does not have.
    #[error("the plan contradicts itself: {0}")]
    Inconsistent(#[from] PortRefError),
    /// A `--peer` host that does not resolve.
    #[error("host `{host}` of group `{group}` does not resolve: {why}")]
    Unresolved {
        /// The group.
        group: String,
        /// The host given.
        host: String,
        /// The resolver's answer.
        why: String,
    },
}

impl GroupError {
    /// Its code (`docs/topology.md`).
    pub fn code(&self) -> &'static str {
        match self {
            GroupError::UnknownGroup { .. } => "E0510",
            GroupError::MissingPeer { .. } => "E0511",
            GroupError::BadPeer { .. } => "E0512",
            GroupError::RemoteWait { .. } => "E0513",
            GroupError::Unresolved { .. } => "E0514",
            GroupError::Inconsistent(_) => "E0803",
        }
    }

    /// The exit code: 2 for what the command line got wrong, 1 for a plan
    /// this group cannot run, 3 for a host that does not resolve (the run
    /// could not be prepared).
    pub fn exit_code(&self) -> i32 {
        use crate::exit::ExitCode;
        match self {
            GroupError::UnknownGroup { .. }
            | GroupError::MissingPeer { .. }
            | GroupError::BadPeer { .. } => ExitCode::Usage.code(),
            GroupError::RemoteWait { .. } | GroupError::Inconsistent(_) => ExitCode::Invalid.code(),
            GroupError::Unresolved { .. } => ExitCode::Launch.code(),
        }
    }
}

/// `GROUP=HOST` of `--peer`.
pub fn parse_peer(given: &str) -> Result<(String, String), GroupError> {
    let bad = |why: &str| GroupError::BadPeer {
        given: given.to_owned(),
        why: why.to_owned(),
    };
    let (group, host) = given
        .split_once('=')
        .ok_or_else(|| bad("expected GROUP=HOST"))?;
    if group.is_empty() || host.is_empty() {
        return Err(bad("expected GROUP=HOST, both non-empty"));
    }
    Ok((group.to_owned(), host.to_owned()))
}

/// `HOST:PORT`, an IPv6 literal in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The plan of group `spec.name` alone (module docs).
pub fn restrict(plan: &Plan, spec: &GroupSpec) -> Result<GroupRun, GroupError> {
    let Some(view) = plan.host_group(&spec.name) else {
        return Err(GroupError::UnknownGroup {
            name: spec.name.clone(),
            groups: plan
                .host_groups()
                .iter()
                .map(|g| g.name.to_owned())
                .collect(),
        });
    };
    let peers = peer_table(spec)?;
    let missing: Vec<String> = distinct(view.connects.iter().map(|e| &*e.listener_group))
        .filter(|g| !peers.contains_key(*g))
        .map(str::to_owned)
        .collect();
    if !missing.is_empty() {
        return Err(GroupError::MissingPeer {
            group: spec.name.clone(),
            missing,
        });
    }
    let members: HashSet<&str> = view
        .processes
        .iter()
        .map(|&i| &*plan.processes[i].name)
        .collect();
    let remote = remote_listeners(plan, &view.connects, &peers);
    let mut group = GroupRun {
        name: spec.name.clone(),
        plan: Plan {
            format_version: plan.format_version,
            name: plan.name.clone(),
            processes: Vec::with_capacity(view.processes.len()),
            channels: Vec::new(),
            start_order: Vec::new(),
            stop_order: Vec::new(),
            cycles: Vec::new(),
            exit_code_from: plan.exit_code_from.clone(),
            warnings: plan.warnings.clone(),
            limits: plan.limits.clone(),
            profiles: plan.profiles.clone(),
            placement: plan.placement.clone(),
        },
        remote,
        waits: Vec::new(),
    };
    let listens: HashMap<&str, &CrossEdgePlan> =
        view.listens.iter().map(|e| (&*e.channel, *e)).collect();
    keep_channels(plan, &members, &listens, spec.bind_address, &mut group);
    let rewrites = cross_ports(&listens, &mut group);
    let host_of: HashMap<&str, &str> = plan
        .processes
        .iter()
        .map(|p| (&*p.name, &*p.host))
        .collect();
    for &i in &view.processes {
        let mut process = plan.processes[i].clone();
        // The group's plan keeps some of the channels, at other indices:
        // its port values are text before they move to it.
        process.env.render_ports(&plan.channels)?;
        // A group with no cross-edge port looks nothing up.
        let vars = if rewrites.is_empty() {
            &mut [][..]
        } else {
            process.env.as_mut_slice()
        };
        for var in vars {
            let key = (Arc::clone(&process.name), Arc::clone(&var.name));
            if let Some((address, channel)) = rewrites.get(&key)
                && let Some(text) = var.value.as_text()
                && let Some(value) = with_address(text, address, channel)
            {
                var.value = value.into();
            }
        }
        remote_afters(&host_of, &mut process, &members, &mut group)?;
        group.plan.processes.push(process);
    }
    // Each (instance, listener) once, the first reason kept.
    let mut seen = HashSet::new();
    group
        .waits
        .retain(|w| seen.insert((Arc::clone(&w.instance), w.listener)));
    let kept = |names: &[Arc<str>]| -> Vec<Arc<str>> {
        names
            .iter()
            .filter(|n| members.contains(&***n))
            .cloned()
            .collect()
    };
    group.plan.start_order = kept(&plan.start_order);
    group.plan.stop_order = kept(&plan.stop_order);
    // Followed over there, its status is that host's to report.
    let followed_here = plan.exit_code_from.as_deref().is_none_or(|p| {
        group
            .plan
            .processes
            .iter()
            .any(|instance| &*instance.process == p)
    });
    if !followed_here {
        group.plan.exit_code_from = None;
    }
    let channel_ids: HashSet<&str> = group.plan.channels.iter().map(|c| &*c.id).collect();
    group.plan.cycles = plan
        .cycles
        .iter()
        .filter(|c| {
            c.channels
                .iter()
                .all(|id| channel_ids.contains(id.as_str()))
        })
        .cloned()
        .collect();
    Ok(group)
}

/// `--peer` as a table, each group once.
fn peer_table(spec: &GroupSpec) -> Result<HashMap<&str, &str>, GroupError> {
    let mut peers = HashMap::new();
    for (group, host) in &spec.peers {
        if peers.insert(group.as_str(), host.as_str()).is_some() {
            return Err(GroupError::BadPeer {
                given: format!("{group}={host}"),
                why: format!("group `{group}` is given twice"),
            });
        }
    }
    Ok(peers)
}

/// Each name once, in first-seen order.
fn distinct<'a>(names: impl Iterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
    let mut seen = HashSet::new();
    names.filter(move |n| seen.insert(*n))
}

/// The listeners of the cross edges this group connects to.
fn remote_listeners(
    plan: &Plan,
    connects: &[&CrossEdgePlan],
    peers: &HashMap<&str, &str>,
) -> Vec<RemoteListener> {
    let by_name: HashMap<&str, &ProcessPlan> =
        plan.processes.iter().map(|p| (&*p.name, p)).collect();
    connects
        .iter()
        .map(|edge| {
            let channel = plan.channels.iter().find(|c| c.id == edge.channel);
            let server = channel
                .and_then(|c| c.to().iter().find_map(port_process))
                .cloned()
                .unwrap_or_else(|| Arc::clone(&edge.channel));
            let timeout_ms = by_name
                .get(&*server)
                // The planner's default, should the plan not list it.
                .map_or(30_000, |p| p.ready_timeout_ms);
            RemoteListener {
                channel: Arc::clone(&edge.channel),
                group: Arc::clone(&edge.listener_group),
                host: peers
                    .get(&*edge.listener_group)
                    .map_or_else(String::new, |h| (*h).to_owned()),
                port: edge.port,
                server,
                timeout_ms,
            }
        })
        .collect()
}

/// The instance of a port endpoint.
fn port_process(end: &EndpointPlan) -> Option<&Arc<str>> {
    match end {
        EndpointPlan::Port { process, .. } => Some(process),
        EndpointPlan::Own { .. } | EndpointPlan::External => None,
    }
}

/// The channels with an end in this group, their other groups' ends
/// left out; a cross edge listened on here binds `bind_address`.
fn keep_channels(
    plan: &Plan,
    members: &HashSet<&str>,
    listens: &HashMap<&str, &CrossEdgePlan>,
    bind_address: IpAddr,
    group: &mut GroupRun,
) {
    let ours = |end: &EndpointPlan| port_process(end).is_none_or(|p| members.contains(&**p));
    for channel in &plan.channels {
        let has_member = channel
            .from()
            .iter()
            .chain(channel.to())
            .any(|e| port_process(e).is_some_and(|p| members.contains(&**p)));
        if !has_member {
            continue;
        }
        let mut channel = channel.clone();
        let from = channel.from().iter().filter(|e| ours(e)).cloned().collect();
        let to = channel.to().iter().filter(|e| ours(e)).cloned().collect();
        channel.set_ends(from, to);
        if let Some(edge) = listens.get(&*channel.id) {
            let bind = SocketAddr::new(bind_address, edge.port).to_string();
            match &mut channel.mechanism {
                Mechanism::Tcp(tcp) => tcp.bind = bind,
                Mechanism::Rpc(rpc) if rpc.transport == Transport::Tcp => rpc.address = bind,
                _ => {}
            }
        }
        group.plan.channels.push(channel);
    }
}

/// (instance, variable) -> (the address its description must name, the
/// channel id).
type PortRewrites = HashMap<(Arc<str>, Arc<str>), (String, Arc<str>)>;

/// What each cross-edge port of this group must now say, by (instance,
/// variable): the address a client reaches, or the one a listener here
/// binds, with the channel id. Clients of remote listeners are recorded
/// as waiting for them.
fn cross_ports(listens: &HashMap<&str, &CrossEdgePlan>, group: &mut GroupRun) -> PortRewrites {
    let mut rewrites = HashMap::new();
    let remote: HashMap<&str, usize> = group
        .remote
        .iter()
        .enumerate()
        .map(|(r, l)| (&*l.channel, r))
        .collect();
    for channel in &group.plan.channels {
        let r = remote.get(&*channel.id).copied();
        let address = match (&channel.mechanism, r) {
            (_, Some(r)) => group.remote[r].address(),
            (Mechanism::Tcp(tcp), None) if listens.contains_key(&*channel.id) => tcp.bind.clone(),
            (Mechanism::Rpc(rpc), None)
                if rpc.transport == Transport::Tcp && listens.contains_key(&*channel.id) =>
            {
                rpc.address.clone()
            }
            _ => continue,
        };
        for end in channel.ends() {
            let EndpointPlan::Port { process, port, .. } = end else {
                continue;
            };
            rewrites.insert(
                (Arc::clone(process), port_env_name(port).into()),
                (address.clone(), Arc::clone(&channel.id)),
            );
            if let Some(listener) = r {
                group.waits.push(RemoteWait {
                    instance: Arc::clone(process),
                    listener,
                    why: format!("a client of `{}`", channel.id),
                });
            }
        }
    }
    rewrites
}

/// The port description `value` with its address (and URL) replaced.
fn with_address(value: &str, address: &str, channel: &str) -> Option<String> {
    let mut description: Description = value.parse().ok()?;
    match &mut description.params {
        Params::Tcp { address: a } => *a = address.to_owned(),
        Params::Rpc {
            protocol,
            address: a,
            url,
            ..
        } => {
            let (new_address, new_url) =
                crate::mechanism::rpc::address_and_url(protocol, Transport::Tcp, address, channel);
            *a = new_address;
            *url = new_url;
        }
        _ => return None,
    }
    Some(description.to_string())
}

/// The `after` entries of `process` on other groups' instances, turned
/// into waits for a listener of theirs.
fn remote_afters(
    host_of: &HashMap<&str, &str>,
    process: &mut ProcessPlan,
    members: &HashSet<&str>,
    group: &mut GroupRun,
) -> Result<(), GroupError> {
    let foreign: Vec<Arc<str>> = process
        .after
        .iter()
        .filter(|d| !members.contains(&***d))
        .cloned()
        .collect();
    for dependency in &foreign {
        let condition = process
            .conditions
            .iter()
            .find(|c| c.instance == *dependency)
            .map_or(Condition::Ready, |c| c.condition);
        let their_group = host_of.get(&**dependency).copied().unwrap_or(LOCAL_GROUP);
        let error = |why| GroupError::RemoteWait {
            instance: process.name.to_string(),
            dependency: dependency.to_string(),
            condition: condition.as_str(),
            group: their_group.to_owned(),
            why,
        };
        if !matches!(condition, Condition::Started | Condition::Ready) {
            return Err(error(
                "only `started` and `ready` can be seen from another host, as its listener accepting",
            ));
        }
        let Some(r) = group.remote.iter().position(|r| r.server == *dependency) else {
            return Err(error(
                "it serves no cross edge this group connects to, so nothing of it can be seen from here",
            ));
        };
        // A client of the same listener already waits: deduplicated at
        // the end of `restrict`.
        group.waits.push(RemoteWait {
            instance: Arc::clone(&process.name),
            listener: r,
            why: format!("after `{dependency}`"),
        });
    }
    process.after.retain(|d| members.contains(&**d));
    process
        .conditions
        .retain(|c| members.contains(&*c.instance));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mechanism::model::{HostGroupPlan, PlacementPlan, PlacementSource};

    #[test]
    fn a_name_is_reached_at_its_ipv4_address_when_it_has_one() {
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        let both = [addr("[2001:db8::7]:47000"), addr("10.0.0.7:47000")];
        assert_eq!(choose(both.into_iter()), Some(addr("10.0.0.7:47000")));
        let v6 = [addr("[2001:db8::7]:47000"), addr("[2001:db8::8]:47000")];
        assert_eq!(choose(v6.into_iter()), Some(addr("[2001:db8::7]:47000")));
        assert_eq!(choose(std::iter::empty()), None);
    }

    /// `server` and `db` in group `a`, `client` in `b`: `link` (TCP) from
    /// `client` to `server` crosses; `local` (a pipe) stays in `a`.
    fn placed(client_after: &str) -> Plan {
        let text = format!(
            r#"
exit_code_from = "client"
[process.server]
cmd = ["s"]
[process.db]
cmd = ["d"]
[process.client]
cmd = ["c"]
{client_after}
[[edge]]
name = "link"
from = "client.out"
to = "server.in"
mechanism = "tcp"
address = "0.0.0.0:47000"
allow_remote = true
[[edge]]
name = "local"
from = "db"
to = "server"
"#
        );
        let topology =
            crate::topology::Topology::parse(std::path::Path::new("t.toml"), text).expect("valid");
        let mut plan = crate::plan::plan(&topology, &crate::plan::Limits::default())
            .expect("valid")
            .plan;
        for process in &mut plan.processes {
            process.host = if &*process.name == "client" { "b" } else { "a" }.into();
        }
        let group = |name: &str, processes: &[&str]| HostGroupPlan {
            name: name.into(),
            processes: processes.iter().map(|&p| p.into()).collect(),
            reason: "declared".into(),
            cpus: None,
            memory: None,
            shm_bytes: 0,
        };
        plan.placement = Some(PlacementPlan {
            source: PlacementSource::Declared,
            groups: vec![group("a", &["server", "db"]), group("b", &["client"])],
            cross_edges: vec![CrossEdgePlan {
                channel: "link".into(),
                listener_group: "a".into(),
                client_groups: vec!["b".into()],
                port: 47000,
                discovery: "--peer a=HOST".into(),
            }],
        });
        plan
    }

    fn spec(name: &str, peers: &[(&str, &str)]) -> GroupSpec {
        GroupSpec {
            name: name.into(),
            peers: peers
                .iter()
                .map(|(g, h)| ((*g).to_owned(), (*h).to_owned()))
                .collect(),
            bind_address: "10.0.0.1".parse().unwrap(),
        }
    }

    fn env<'a>(plan: &'a Plan, process: &str, var: &str) -> &'a str {
        let process = plan.processes.iter().find(|p| &*p.name == process).unwrap();
        process
            .env
            .iter()
            .find(|v| &*v.name == var)
            .unwrap()
            .value
            .as_text()
            .unwrap()
    }

    #[test]
    fn the_listener_group_binds_the_address_asked_and_keeps_its_own() {
        let group = restrict(&placed(""), &spec("a", &[])).unwrap();
        let names: Vec<&str> = group.plan.processes.iter().map(|p| &*p.name).collect();
        assert_eq!(names, ["server", "db"]);
        let link = group
            .plan
            .channels
            .iter()
            .find(|c| &*c.id == "link")
            .unwrap();
        assert!(matches!(&link.mechanism, Mechanism::Tcp(tcp) if tcp.bind == "10.0.0.1:47000"));
        assert!(
            link.from().is_empty(),
            "the client's end is the other host's"
        );
        assert_eq!(
            env(&group.plan, "server", "IPC_PORT_IN"),
            "kind=tcp channel=link end=listen address=10.0.0.1:47000 fd=3"
        );
        assert!(group.remote.is_empty() && group.waits.is_empty());
        assert_eq!(group.plan.exit_code_from, None, "followed in group b");
        assert!(group.plan.start_order.iter().all(|p| &**p != "client"));
    }

    #[test]
    fn a_client_group_reaches_its_peer_and_waits_for_it() {
        let group = restrict(&placed(""), &spec("b", &[("a", "fd00::7")])).unwrap();
        assert_eq!(group.plan.channels.len(), 1, "only `link` reaches b");
        assert_eq!(
            env(&group.plan, "client", "IPC_PORT_OUT"),
            "kind=tcp channel=link end=connect address=[fd00::7]:47000"
        );
        assert_eq!(group.remote.len(), 1);
        assert_eq!(group.remote[0].address(), "[fd00::7]:47000");
        assert_eq!(&*group.remote[0].server, "server");
        assert_eq!(group.waits.len(), 1);
        assert_eq!(&*group.waits[0].instance, "client");
        assert_eq!(group.plan.exit_code_from.as_deref(), Some("client"));
    }

    #[test]
    fn an_after_across_groups_waits_for_the_listener_and_leaves_the_plan() {
        let plan = placed(r#"after = ["server"]"#);
        let group = restrict(&plan, &spec("b", &[("a", "h")])).unwrap();
        let client = &group.plan.processes[0];
        assert!(client.after.is_empty() && client.conditions.is_empty());
        // One wait, whether it comes from the edge or from `after`.
        assert_eq!(group.waits.len(), 1);
    }

    #[test]
    fn what_cannot_be_seen_across_hosts_is_refused() {
        let plan = placed(r#"after = { db = "ready" }"#);
        let error = restrict(&plan, &spec("b", &[("a", "h")])).unwrap_err();
        assert_eq!(error.code(), "E0513");
        assert!(
            error.to_string().contains("serves no cross edge"),
            "{error}"
        );
        let plan = placed(r#"after = { server = "completed" }"#);
        let error = restrict(&plan, &spec("b", &[("a", "h")])).unwrap_err();
        assert!(
            error.to_string().contains("only `started` and `ready`"),
            "{error}"
        );
    }

    #[test]
    fn unknown_groups_and_missing_or_doubled_peers_are_errors() {
        let plan = placed("");
        let error = restrict(&plan, &spec("c", &[])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the plan has no host group `c`; its groups: a, b"
        );
        assert_eq!(error.exit_code(), 2);
        let error = restrict(&plan, &spec("b", &[])).unwrap_err();
        assert_eq!(error.code(), "E0511");
        let error = restrict(&plan, &spec("b", &[("a", "x"), ("a", "y")])).unwrap_err();
        assert_eq!(error.code(), "E0512");
        assert!(parse_peer("a").is_err() && parse_peer("=h").is_err());
        assert_eq!(parse_peer("a=h:1").unwrap(), ("a".into(), "h:1".into()));
    }

    #[test]
    fn a_plan_without_placement_is_one_group_named_local() {
        let mut plan = placed("");
        plan.placement = None;
        for process in &mut plan.processes {
            process.host = LOCAL_GROUP.into();
        }
        let group = restrict(&plan, &spec(LOCAL_GROUP, &[])).unwrap();
        assert_eq!(group.plan.processes.len(), 3);
        assert_eq!(group.plan.channels, plan.channels, "nothing crosses");
    }
}
