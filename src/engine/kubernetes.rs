//! `ipc-run export kubernetes`: the manifests that run a placed plan on
//! Kubernetes, one workload per host group (`docs/distributed.md`,
//! "Kubernetes").
//!
//! What is written, in this order: a ConfigMap holding the plan JSON; per
//! group that binds a cross edge's listener, a Service publishing its
//! ports; per group a Deployment (a group that serves until stopped) or a
//! Job (a group that ends on its own), whose one container runs the
//! group's ipc-run (`run --plan /etc/ipc-run/plan.json --host G --peer
//! L=SERVICE …`). Each group's processes keep their own restart policies,
//! readiness and health inside the pod, as on one host; the pod's probes
//! and restart policy are about ipc-run itself.
//!
//! The container is locked down to what ipc-run needs: it writes only the
//! run volume and `/dev/shm` (both `emptyDir`s), so the root file system
//! is read-only (with an `emptyDir` at `/tmp` for the programs' scratch
//! files); it never gains privileges by exec, so privilege escalation is
//! off; and it needs root only to start processes as another `user` or
//! `group`, so a group without those must run as non-root.

use super::export::{self, ExportError, GroupFacts, Lifetime};
use super::yaml::{Node, map, s, strs};
use crate::plan::model::Plan;

/// Where the ConfigMap with the plan is mounted.
const PLAN_DIR: &str = "/etc/ipc-run";
/// The plan's path in the container.
const PLAN_PATH: &str = "/etc/ipc-run/plan.json";
/// Where the in-memory run volume is mounted.
const RUN_VOLUME: &str = "/run/ipc-run";
/// ipc-run's `--runtime-dir`: a directory ipc-run creates 0700 inside the
/// volume, since it refuses a group- or world-writable root and an
/// `emptyDir` is mode 0777.
const RUNTIME_DIR: &str = "/run/ipc-run/runs";
/// Room in `/dev/shm` beyond what the plan's channels create: what the
/// processes make there themselves (as Docker's default `/dev/shm` of
/// 64 MiB allows).
const SHM_MARGIN: u64 = 64 * 1024 * 1024;
/// Where the programs' scratch `emptyDir` is mounted: the root file
/// system is read-only.
const TMP_DIR: &str = "/tmp";
/// The run directory holds sockets, FIFOs and a journal: small.
const RUN_VOLUME_SIZE: &str = "16Mi";
/// Time beyond the processes' own stop timeouts for ipc-run to clean up.
const STOP_MARGIN_S: u64 = 5;
/// `app.kubernetes.io` labels that select a group's pod.
const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The annotation that says why a group is a Job or a Deployment.
const WHY_ANNOTATION: &str = "ipc-run/workload";
/// The annotation that names the channels behind a Service's ports.
const CHANNELS_ANNOTATION: &str = "ipc-run/channels";

/// What `export kubernetes` is told besides the plan.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The container image: has `ipc-run`, `/bin/sh` and `grep` on `PATH`,
    /// and the topology's programs.
    pub image: String,
    /// The namespace of every object, when given (else the one `kubectl`
    /// applies to).
    pub namespace: Option<String>,
    /// The ipc-run the container and its probes run: `ipc-run` (found on
    /// the image's `PATH`) or an absolute path.
    pub ipc_run: String,
}

/// The manifests, as (file name, YAML document) in output order. File
/// names start with the order too (`1-` the ConfigMap, `2-` Services, `3-`
/// workloads), since `kubectl apply -f DIR` applies a directory's files in
/// name order: a workload's plan and its peers' Service names exist before
/// its pod starts.
pub(crate) fn manifests(
    plan: &Plan,
    options: &Options,
) -> Result<Vec<(String, String)>, ExportError> {
    let base = dns_label(&plan.name).ok_or_else(|| {
        ExportError::Name(format!(
            "the topology name `{}` does not make a Kubernetes name: it needs a letter first and \
             letters, digits or `-` (set `name = \"…\"` in the topology)",
            plan.name
        ))
    })?;
    let groups = export::groups(plan);
    let names = object_names(&base, &groups)?;
    let plan_json = export::plan_json(plan)?;
    if plan_json.len() >= export::CONFIG_MAP_MAX {
        return Err(ExportError::PlanTooLarge {
            bytes: plan_json.len(),
        });
    }
    let context = Context {
        base: &base,
        names: &names,
        groups: &groups,
        options,
    };
    let mut files = vec![(
        format!("1-{base}-plan.configmap.yaml"),
        context.config_map(plan_json).document(),
    )];
    for (g, group) in groups.iter().enumerate() {
        if !group.listens.is_empty() {
            let file = format!("2-{}.service.yaml", names[g]);
            files.push((file, context.service(g).document()));
        }
    }
    for (g, group) in groups.iter().enumerate() {
        let kind = match group.lifetime {
            Lifetime::Completes(_) => "job",
            Lifetime::Serves(_) => "deployment",
        };
        let file = format!("3-{}.{kind}.yaml", names[g]);
        files.push((file, context.workload(plan, g).document()));
    }
    Ok(files)
}

/// The manifests as one multi-document YAML stream.
pub(crate) fn stream(files: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (_, doc)) in files.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(doc);
    }
    out
}

/// `--image`: a reference Kubernetes takes (`[registry/]path[:tag][@digest]`):
/// no whitespace or control characters, a lowercase repository path.
pub(crate) fn parse_image(text: &str) -> Result<String, String> {
    let fail = |why: &str| Err(format!("[E0520] `{text}` is not an image reference: {why}"));
    if text.is_empty() {
        return fail("it is empty");
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return fail("it contains whitespace");
    }
    let (name, digest) = match text.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (text, None),
    };
    if digest.is_some_and(|d| !d.contains(':') || d.ends_with(':')) {
        return fail("a digest is `algorithm:hex`");
    }
    // A tag follows the last `:` after the last `/` (a registry may have a port).
    let path_start = name.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match name[path_start..].rfind(':') {
        Some(i) => (&name[..path_start + i], Some(&name[path_start + i + 1..])),
        None => (name, None),
    };
    if tag.is_some_and(|t| {
        t.is_empty()
            || t.len() > 128
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    }) {
        return fail("a tag is 1 to 128 letters, digits, `_`, `.` or `-`");
    }
    let mut components = repository.split('/');
    let first = components.next().unwrap_or_default();
    // The first component is a registry host when it looks like one.
    let registry = repository.contains('/') && (first.contains(['.', ':']) || first == "localhost");
    let path: Vec<&str> = if registry {
        components.collect()
    } else {
        repository.split('/').collect()
    };
    let component_ok = |c: &&str| {
        !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
    };
    if path.is_empty() || !path.iter().all(component_ok) {
        return fail(
            "the repository path is lowercase letters, digits and `.`, `_`, `-` between `/`",
        );
    }
    Ok(text.to_owned())
}

/// `--ipc-run`: an absolute path, run as the container's command and by
/// its probes.
pub(crate) fn parse_ipc_run(text: &str) -> Result<String, String> {
    if !text.starts_with('/') || text.chars().any(char::is_control) {
        return Err(format!(
            "[E0520] `{text}` is not an absolute path: the container runs ipc-run by its full path"
        ));
    }
    Ok(text.to_owned())
}

/// `--namespace`: a DNS-1123 label.
pub(crate) fn parse_namespace(text: &str) -> Result<String, String> {
    match dns_label(text) {
        Some(label) if label == text => Ok(label),
        _ => Err(format!(
            "[E0520] `{text}` is not a namespace: 1 to 63 lowercase letters, digits or `-`, \
             starting with a letter"
        )),
    }
}

/// `text` as a DNS-1035 label (what a Service name must be): lowercase,
/// each run of other characters as one `-`; `None` when that does not
/// start with a letter or is longer than 63.
fn dns_label(text: &str) -> Option<String> {
    let mut label = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            label.push(c.to_ascii_lowercase());
        } else if !label.ends_with('-') {
            label.push('-');
        }
    }
    let label = label.trim_matches('-').to_owned();
    let ok = label.starts_with(|c: char| c.is_ascii_lowercase()) && label.len() <= 63;
    ok.then_some(label)
}

/// Each group's object name, `BASE-GROUP`: a DNS-1035 label, one per group.
fn object_names(base: &str, groups: &[GroupFacts<'_>]) -> Result<Vec<String>, ExportError> {
    let mut names: Vec<String> = Vec::with_capacity(groups.len());
    for group in groups {
        let name = dns_label(&format!("{base}-{}", group.name)).ok_or_else(|| {
            ExportError::Name(format!(
                "`{base}-{}` is longer than a Kubernetes name (63 characters): \
                     shorten the topology's or the group's name",
                group.name
            ))
        })?;
        if let Some(other) = names.iter().position(|n| *n == name) {
            return Err(ExportError::Name(format!(
                "groups `{}` and `{}` would both be named `{name}` in Kubernetes \
                 (`_` becomes `-`): rename one",
                groups[other].name, group.name
            )));
        }
        names.push(name);
    }
    Ok(names)
}

/// What every object is made from.
struct Context<'a, 'p> {
    base: &'a str,
    names: &'a [String],
    groups: &'a [GroupFacts<'p>],
    options: &'a Options,
}

impl Context<'_, '_> {
    /// `metadata` of an object: its name, namespace, labels.
    fn metadata(&self, name: &str, component: Option<&str>) -> Node {
        let mut metadata = map([("name", s(name))]);
        if let Some(namespace) = &self.options.namespace {
            metadata.push("namespace", s(namespace.clone()));
        }
        metadata.push("labels", self.labels(component));
        metadata
    }

    /// The labels of the topology's objects; with a group's, they select
    /// its pod.
    fn labels(&self, component: Option<&str>) -> Node {
        let mut labels = map([(LABEL_PART_OF, s(self.base))]);
        if let Some(component) = component {
            labels.push(LABEL_COMPONENT, s(component));
        }
        labels.push(LABEL_MANAGED_BY, s("ipc-run"));
        labels
    }

    fn selector(&self, g: usize) -> Node {
        map([
            (LABEL_PART_OF, s(self.base)),
            (LABEL_COMPONENT, s(self.component(g))),
        ])
    }

    /// A group's `component` label: its object name without the topology's.
    fn component(&self, g: usize) -> String {
        self.names[g][self.base.len() + 1..].to_owned()
    }

    fn config_map(&self, plan_json: String) -> Node {
        map([
            ("apiVersion", s("v1")),
            ("kind", s("ConfigMap")),
            (
                "metadata",
                self.metadata(&format!("{}-plan", self.base), None),
            ),
            ("data", map([("plan.json", Node::Text(plan_json))])),
        ])
    }

    /// The Service of a group that binds cross-edge listeners: one port
    /// per edge. Its name is the host its clients' ipc-run is given
    /// (`--peer G=NAME`). Addresses are published before the pod is
    /// ready: clients wait for the listener themselves (`after` becomes a
    /// connect probe), and gating on the whole group's readiness could
    /// hold up two groups that each serve the other.
    fn service(&self, g: usize) -> Node {
        let group = &self.groups[g];
        let ports = group
            .listens
            .iter()
            .map(|edge| {
                map([
                    ("name", s(port_name(edge.port))),
                    ("port", Node::Int(i64::from(edge.port))),
                    ("targetPort", Node::Int(i64::from(edge.port))),
                    ("protocol", s("TCP")),
                ])
            })
            .collect();
        let channels: Vec<String> = group
            .listens
            .iter()
            .map(|edge| format!("{}: {}", edge.port, edge.channel))
            .collect();
        let mut metadata = self.metadata(&self.names[g], Some(&self.component(g)));
        metadata.push(
            "annotations",
            map([(CHANNELS_ANNOTATION, s(channels.join(", ")))]),
        );
        map([
            ("apiVersion", s("v1")),
            ("kind", s("Service")),
            ("metadata", metadata),
            (
                "spec",
                map([
                    ("selector", self.selector(g)),
                    ("ports", Node::Seq(ports)),
                    ("publishNotReadyAddresses", Node::Bool(true)),
                ]),
            ),
        ])
    }

    /// A group's Deployment or Job.
    fn workload(&self, plan: &Plan, g: usize) -> Node {
        let group = &self.groups[g];
        let (why, completes) = match &group.lifetime {
            Lifetime::Completes(why) => (format!("Job: {why}"), true),
            Lifetime::Serves(why) => (format!("Deployment: {why}"), false),
        };
        let mut metadata = self.metadata(&self.names[g], Some(&self.component(g)));
        metadata.push("annotations", map([(WHY_ANNOTATION, s(why))]));
        let template = map([
            (
                "metadata",
                map([("labels", self.labels(Some(&self.component(g))))]),
            ),
            ("spec", self.pod_spec(plan, g, completes)),
        ]);
        let spec = if completes {
            map([
                ("backoffLimit", Node::Int(JOB_RETRIES)),
                ("podFailurePolicy", pod_failure_policy()),
                ("template", template),
            ])
        } else {
            // One ipc-run per group at a time: a second would bind the
            // same ports and be a second copy of every process.
            map([
                ("replicas", Node::Int(1)),
                ("strategy", map([("type", s("Recreate"))])),
                ("selector", map([("matchLabels", self.selector(g))])),
                ("template", template),
            ])
        };
        let (api, kind) = if completes {
            ("batch/v1", "Job")
        } else {
            ("apps/v1", "Deployment")
        };
        map([
            ("apiVersion", s(api)),
            ("kind", s(kind)),
            ("metadata", metadata),
            ("spec", spec),
        ])
    }

    fn pod_spec(&self, plan: &Plan, g: usize, completes: bool) -> Node {
        let group = &self.groups[g];
        let args = export::run_args(PLAN_PATH, group, Some(RUNTIME_DIR), |peer| {
            let p = self.groups.iter().position(|other| other.name == peer);
            p.map_or_else(|| peer.to_owned(), |p| self.names[p].clone())
        });
        let mut container = map([
            ("name", s("ipc-run")),
            ("image", s(self.options.image.clone())),
            ("command", strs([self.options.ipc_run.as_str()])),
            ("args", strs(args)),
        ]);
        if !group.listens.is_empty() {
            let ports = group
                .listens
                .iter()
                .map(|edge| {
                    map([
                        ("name", s(port_name(edge.port))),
                        ("containerPort", Node::Int(i64::from(edge.port))),
                        ("protocol", s("TCP")),
                    ])
                })
                .collect();
            container.push("ports", Node::Seq(ports));
        }
        if let Some(resources) = resources(group) {
            container.push("resources", resources);
        }
        let ipc_run = self.options.ipc_run.as_str();
        container.push("readinessProbe", readiness_probe(ipc_run));
        if let Some(probe) = liveness_probe(ipc_run, group) {
            container.push("livenessProbe", probe);
        }
        container.push("securityContext", security_context(group));
        container.push(
            "volumeMounts",
            Node::Seq(vec![
                map([
                    ("name", s("plan")),
                    ("mountPath", s(PLAN_DIR)),
                    ("readOnly", Node::Bool(true)),
                ]),
                map([("name", s("run")), ("mountPath", s(RUN_VOLUME))]),
                map([("name", s("shm")), ("mountPath", s("/dev/shm"))]),
                map([("name", s("tmp")), ("mountPath", s(TMP_DIR))]),
            ]),
        );
        let volumes = Node::Seq(vec![
            map([
                ("name", s("plan")),
                (
                    "configMap",
                    map([("name", s(format!("{}-plan", self.base)))]),
                ),
            ]),
            memory_volume("run", RUN_VOLUME_SIZE.to_owned()),
            memory_volume("shm", mebibytes(shm_volume_bytes(group))),
            map([("name", s("tmp")), ("emptyDir", map([]))]),
        ]);
        map([
            (
                "restartPolicy",
                s(if completes { "Never" } else { "Always" }),
            ),
            (
                "terminationGracePeriodSeconds",
                Node::Int(stop_grace_seconds(plan, group) as i64),
            ),
            ("containers", Node::Seq(vec![container])),
            ("volumes", volumes),
        ])
    }
}

/// Times a Job's pod is run again after a launch failure (exit status 3).
const JOB_RETRIES: i64 = 4;

/// Which failures of a Job's pod are retried. ipc-run exits 3 when the
/// group could not be launched and left nothing behind: a peer's Service
/// name not resolving yet, or a listener group still starting (pulling
/// its image) beyond a client's `ready_timeout`; those count towards
/// `backoffLimit` and are run again. Any other status is the group's
/// result (a process's exit status, or 128+signal) and fails the Job at
/// once, as a failed `ipc-run run` is not run again; a pod evicted by a
/// disruption (a node drain) is run again without counting.
fn pod_failure_policy() -> Node {
    let exit_codes = map([
        ("containerName", s("ipc-run")),
        ("operator", s("NotIn")),
        ("values", Node::Seq(vec![Node::Int(3)])),
    ]);
    let rules = vec![
        map([("action", s("FailJob")), ("onExitCodes", exit_codes)]),
        map([
            ("action", s("Ignore")),
            (
                "onPodConditions",
                Node::Seq(vec![map([
                    ("type", s("DisruptionTarget")),
                    ("status", s("True")),
                ])]),
            ),
        ]),
    ];
    map([("rules", Node::Seq(rules))])
}

/// A Service or container port's name (at most 15 characters).
fn port_name(port: u16) -> String {
    format!("tcp-{port}")
}

/// An in-memory `emptyDir` (tmpfs: its pages count as the pod's memory).
fn memory_volume(name: &str, size: String) -> Node {
    map([
        ("name", s(name)),
        (
            "emptyDir",
            map([("medium", s("Memory")), ("sizeLimit", s(size))]),
        ),
    ])
}

/// `/dev/shm`'s size: the plan's shared memory and a margin.
fn shm_volume_bytes(group: &GroupFacts<'_>) -> u64 {
    group.shm_bytes.saturating_add(SHM_MARGIN)
}

/// Bytes as a quantity in whole MiB, rounded up.
fn mebibytes(bytes: u64) -> String {
    format!("{}Mi", bytes.div_ceil(1024 * 1024))
}

/// Requests (and a memory limit) from the group's declared `cpus` and
/// `memory`. Shared memory is tmpfs, charged to the pod's memory: the
/// request adds what the channels create, and a declared limit adds the
/// whole `/dev/shm` volume, so filling it does not take the processes'
/// own memory.
fn resources(group: &GroupFacts<'_>) -> Option<Node> {
    let mut requests = map([]);
    if let Some(cpus) = group.cpus {
        let millis = (cpus * 1000.0).ceil().max(1.0) as u64;
        requests.push("cpu", s(format!("{millis}m")));
    }
    let requested = group.memory.unwrap_or(0).saturating_add(group.shm_bytes);
    if requested > 0 {
        requests.push("memory", s(mebibytes(requested)));
    }
    if requests == map([]) {
        return None;
    }
    let mut resources = map([("requests", requests)]);
    if let Some(memory) = group.memory {
        let limit = memory.saturating_add(shm_volume_bytes(group));
        resources.push("limits", map([("memory", s(mebibytes(limit)))]));
    }
    Some(resources)
}

/// The container's `securityContext`: what ipc-run needs and no more.
/// It writes only its `emptyDir`s (the run volume, `/dev/shm`; `/tmp` is
/// one for the programs), so the root file system is read-only. It never
/// gains privileges by exec (`no_new_privs`): switching a process to its
/// `user` or `group` is a call a root parent makes, not an exec. It needs
/// root only for those, so a group without them runs as non-root (the
/// image must then name a numeric non-root `USER`, or the cluster set
/// `runAsUser`), with no capabilities: a non-root process has no use for
/// them. Every group gets the runtime's default seccomp profile rather
/// than none: ipc-run's calls are ordinary ones (docs/distributed.md says
/// which one a default profile may refuse).
fn security_context(group: &GroupFacts<'_>) -> Node {
    let switches = group
        .instances
        .iter()
        .any(|p| p.user.is_some() || p.group.is_some());
    let mut context = map([]);
    if !switches {
        context.push("runAsNonRoot", Node::Bool(true));
        context.push(
            "capabilities",
            map([("drop", Node::Seq(vec![Node::Str("ALL".into())]))]),
        );
    }
    context.push("allowPrivilegeEscalation", Node::Bool(false));
    context.push("readOnlyRootFilesystem", Node::Bool(true));
    context.push(
        "seccompProfile",
        map([("type", Node::Str("RuntimeDefault".into()))]),
    );
    context
}

/// `text` as one word for `/bin/sh`: single-quoted unless it is made only
/// of characters the shell takes literally.
fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c))
    {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Ready once every process of the group is: `ipc-run ps` says the run
/// is `running` (not `starting` or `stopping`) only then; `ps` itself
/// exits 0 either way, hence the `grep`.
fn readiness_probe(ipc_run: &str) -> Node {
    let check = format!(
        "{} ps --runtime-dir {RUNTIME_DIR} --format json | grep -q '\"state\": \"running\"'",
        shell_word(ipc_run)
    );
    map([
        ("exec", map([("command", strs(["/bin/sh", "-c", &check]))])),
        ("periodSeconds", Node::Int(2)),
        ("timeoutSeconds", Node::Int(2)),
    ])
}

/// With health checks or watchdogs in the group, ipc-run restarts an
/// unhealthy process itself (channels kept); the pod's liveness probe
/// watches ipc-run: `ipc-run status` fails (exit 4) once its control
/// socket no longer answers. Its timing follows the checks' own: the
/// shortest interval, the longest timeout, the most retries, the longest
/// start period.
fn liveness_probe(ipc_run: &str, group: &GroupFacts<'_>) -> Option<Node> {
    let checks: Vec<_> = group
        .instances
        .iter()
        .filter_map(|p| p.health.as_ref())
        .collect();
    let watchdogs = group.instances.iter().filter_map(|p| p.watchdog_ms);
    let period_ms = checks
        .iter()
        .map(|h| h.interval_ms)
        .chain(watchdogs)
        .min()?;
    let seconds = |ms: u64| (ms.div_ceil(1000).max(1)) as i64;
    let timeout_ms = checks.iter().map(|h| h.timeout_ms).max().unwrap_or(1000);
    let retries = checks.iter().map(|h| h.retries).max().unwrap_or(3).max(1);
    let start_ms = checks.iter().map(|h| h.start_period_ms).max().unwrap_or(0);
    let command = strs([ipc_run, "status", "--runtime-dir", RUNTIME_DIR]);
    Some(map([
        ("exec", map([("command", command)])),
        (
            "initialDelaySeconds",
            Node::Int(start_ms.div_ceil(1000) as i64),
        ),
        ("periodSeconds", Node::Int(seconds(period_ms))),
        ("timeoutSeconds", Node::Int(seconds(timeout_ms))),
        ("failureThreshold", Node::Int(i64::from(retries))),
    ]))
}

/// Seconds the pod is given to stop: the group's longest chain of stop
/// timeouts ([`export::longest_chain_ms`]) and a margin for ipc-run's
/// cleanup.
fn stop_grace_seconds(plan: &Plan, group: &GroupFacts<'_>) -> u64 {
    export::longest_chain_ms(plan, group, |p| p.stop_timeout_ms).div_ceil(1000) + STOP_MARGIN_S
}
