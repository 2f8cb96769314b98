//! First pass: each declared process checked on its own and expanded into
//! its instances (one per replica).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::model::{Readiness, RestartPlan, RestartPolicy, SignalRef};
use super::signals::{FORWARDABLE, known, parse_signal};
use super::{Limits, Sink, Span};
use crate::diagnostic::{Diagnostic, Label};
use crate::topology::{ProcessRare, ProcessSpec, Ready, Spanned, Topology, check_name};

/// Most replicas of one process.
pub const MAX_REPLICAS: i64 = 1024;
/// Default grace period between the stop signal and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT_MS: u64 = 5_000;
/// Default time `after` dependants wait for readiness.
pub const DEFAULT_READY_TIMEOUT_MS: u64 = 30_000;
/// Default first restart delay.
pub const DEFAULT_BACKOFF_MS: u64 = 100;
/// Default number of restarts before a process is marked failed.
pub const DEFAULT_RESTART_LIMIT: u32 = 5;

/// Variables ipc-run sets itself; a topology may not set them.
pub const RESERVED_ENV_PREFIXES: &[&str] = &["IPC_RUN_", "IPC_PORT_", "LISTEN_"];
/// Single reserved variable names.
pub const RESERVED_ENV_NAMES: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];
/// Variables passed through from ipc-run's environment to every child when set.
pub const BASE_INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TERM",
    "TZ",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
];

/// A process as the later passes need it. It owns what they read, so the
/// typed file can be dropped before wiring ([`super::plan_releasing`]).
/// There is one per process, held beside the wired plan at its peak: what
/// most processes leave at its default is out of line.
#[derive(Debug, Clone)]
pub struct ProcessDecl {
    /// Declared name, shared by every instance's plan.
    pub name: Arc<str>,
    /// Span of the name (the table header key).
    pub span: Span,
    /// What the later passes read of the spec as written.
    pub spec: Written,
    /// Instance names, one per replica, shared with the plan's records
    /// that name the instance.
    pub instances: Instances,
    /// The argv to exec, shared by every instance's plan and by every
    /// process with the same command ([`Argvs`]).
    pub argv: Arc<[String]>,
    /// Readiness protocol.
    pub ready: Readiness,
    /// Whether `argv` is a shell the user asked for.
    pub shell: bool,
    /// Whether `replicas` was written (even `replicas = 1` numbers the
    /// instance `name#0`).
    pub replicas: bool,
    /// What few processes declare, out of line: most processes of a large
    /// topology declare none of it. `None` when there is none.
    rare: Option<Box<DeclaredRare>>,
}

/// The instance names of a process, read as a slice: a lone instance's
/// is the process's name, held without a list of one. The replicas' list
/// is behind one more box, which makes this 16 bytes, not 24.
#[derive(Debug, Clone)]
pub enum Instances {
    /// The lone instance, named as its process.
    One(Arc<str>),
    /// `name#i` for each replica `i`.
    Replicas(Box<Box<[Arc<str>]>>),
}

impl std::ops::Deref for Instances {
    type Target = [Arc<str>];
    fn deref(&self) -> &[Arc<str>] {
        match self {
            Instances::One(name) => std::slice::from_ref(name),
            Instances::Replicas(names) => names,
        }
    }
}

impl<'a> IntoIterator for &'a Instances {
    type Item = &'a Arc<str>;
    type IntoIter = std::slice::Iter<'a, Arc<str>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The lists of a [`ProcessDecl`] that are usually empty, and its stop
/// signal and restart policy when they are not the defaults.
#[derive(Debug, Clone, Default)]
pub struct DeclaredRare {
    /// Declared ports: name -> (span of the name, fixed fd and its span).
    ports: BTreeMap<String, DeclaredPort>,
    /// Forwarded signals.
    forward_signals: Box<[SignalRef]>,
    /// Indices of the processes named in `after` that exist, in order.
    after: Box<[usize]>,
    /// The stop signal, when it is not SIGTERM.
    stop_signal: Option<SignalRef>,
    /// The restart policy, when it is not [`NO_RESTART`].
    restart: Option<RestartPlan>,
}

/// The ports of a process that declares none.
static NO_PORTS: BTreeMap<String, DeclaredPort> = BTreeMap::new();

/// The restart policy of a process that sets none of its keys.
const NO_RESTART: RestartPlan = RestartPlan {
    policy: RestartPolicy::Never,
    limit: DEFAULT_RESTART_LIMIT,
    backoff_ms: DEFAULT_BACKOFF_MS,
};

/// The stop signal of a process that names none.
const SIGTERM: SignalRef = SignalRef {
    name: "SIGTERM",
    number: libc::SIGTERM,
};

impl ProcessDecl {
    /// Declared ports: name -> (span of the name, fixed fd and its span).
    pub fn ports(&self) -> &BTreeMap<String, DeclaredPort> {
        self.rare.as_ref().map_or(&NO_PORTS, |rare| &rare.ports)
    }

    /// Forwarded signals.
    pub fn forward_signals(&self) -> &[SignalRef] {
        self.rare.as_ref().map_or(&[], |rare| &rare.forward_signals)
    }

    /// Indices of the processes named in `after` that exist, in order.
    pub fn after(&self) -> &[usize] {
        self.rare.as_ref().map_or(&[], |rare| &rare.after)
    }

    /// Restart policy.
    pub fn restart(&self) -> RestartPlan {
        self.rare
            .as_ref()
            .and_then(|rare| rare.restart)
            .unwrap_or(NO_RESTART)
    }

    /// Stop signal.
    pub fn stop_signal(&self) -> SignalRef {
        self.rare
            .as_ref()
            .and_then(|rare| rare.stop_signal)
            .unwrap_or(SIGTERM)
    }
}

/// Drops what only wiring reads of the processes (their forwarded signals),
/// so the passes after it run beside less.
pub fn wired(processes: &mut [ProcessDecl]) {
    for process in processes {
        if let Some(rare) = &mut process.rare {
            rare.forward_signals = Box::default();
        }
    }
}

/// The keys of a process as written that the passes after the first read:
/// a copy, at no cost for a process that writes none of them (no `env`, no
/// `after`, none of the rare keys), read like the spec (`spec.user`).
#[derive(Debug, Clone)]
pub struct Written(Option<Box<WrittenRare>>);

/// What a [`Written`] holds, out of line: most processes of a large
/// topology write none of it (`None` then).
#[derive(Debug, Clone)]
struct WrittenRare {
    /// `env` as written.
    env: Box<[(Spanned<String>, Spanned<String>)]>,
    /// Where each name in `after` is written.
    after: Box<[Span]>,
    /// The rarely written keys, copied from the spec's box when it has one.
    rare: Option<Box<ProcessRare>>,
}

impl Written {
    fn of(spec: &ProcessSpec) -> Written {
        let written = !spec.env.is_empty() || !spec.after.is_empty() || spec.rare.is_some();
        Written(written.then(|| {
            Box::new(WrittenRare {
                env: spec
                    .env
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
                after: spec.after.iter().map(Spanned::span).collect(),
                rare: spec.rare.clone(),
            })
        }))
    }

    /// `env` as written, in key order.
    pub fn env(&self) -> &[(Spanned<String>, Spanned<String>)] {
        self.0.as_ref().map_or(&[], |written| &written.env)
    }

    /// Where each name in `after` is written, in order.
    pub fn after(&self) -> &[Span] {
        self.0.as_ref().map_or(&[], |written| &written.after)
    }
}

impl std::ops::Deref for Written {
    type Target = ProcessRare;
    fn deref(&self) -> &ProcessRare {
        self.0
            .as_ref()
            .and_then(|written| written.rare.as_deref())
            .unwrap_or(ProcessRare::none())
    }
}

/// A port named under `[process.x.ports.name]`.
#[derive(Debug, Clone)]
pub struct DeclaredPort {
    /// Span of the port name.
    pub span: Span,
    /// Fixed fd and the span of its value.
    pub fd: Option<(i32, Span)>,
}

/// Checks every process and returns them in declaration order; more than
/// `max_instances` instances in all is E0610.
pub fn resolve(
    topology: &Topology,
    limits: &Limits,
    max_instances: usize,
    sink: &mut Sink,
) -> Vec<ProcessDecl> {
    let mut declared: Vec<_> = topology.file.process.iter().collect();
    declared.sort_by_key(|(name, _)| name.span().start);
    let mut total_instances = 0usize;
    // The process whose replicas take the total past `max_instances`.
    let mut over_limit_at: Option<(String, Span)> = None;
    let mut out = Vec::with_capacity(declared.len());
    // The spec of each process in `out`, for its `after` names.
    let mut specs = Vec::with_capacity(declared.len());
    let mut argvs = Argvs::default();
    for (name, spec) in declared {
        let span = name.span();
        if let Err(why) = check_name(name.get_ref()) {
            sink.push(
                Diagnostic::error(
                    "E0101",
                    format!("invalid process name `{}`", name.get_ref().escape_debug()),
                )
                .with_label(Label::primary(span.clone(), why)),
            );
            continue;
        }
        let replicas = check_replicas(name.get_ref(), spec, sink);
        total_instances += replicas as usize;
        if total_instances > max_instances && over_limit_at.is_none() {
            let at = spec.replicas.as_ref().map_or(span.clone(), |r| r.span());
            over_limit_at = Some((name.get_ref().clone(), at));
        }
        out.push(resolve_process(
            name.get_ref(),
            (span, spec),
            replicas,
            (limits, &mut argvs),
            sink,
        ));
        specs.push(spec);
    }
    if let Some((name, at)) = over_limit_at {
        sink.push(
            Diagnostic::error("E0610", format!("the topology has {total_instances} process instances, more than the {max_instances} ipc-run supervises"))
                .with_label(Label::primary(at, format!("`{name}` takes the count past {max_instances}")))
                .with_help("use fewer replicas, split the topology, or raise the cap with `--max-processes N`"),
        );
    }
    if let Some(name) = &topology.file.name {
        check_topology_name(name.get_ref(), name.span(), limits, sink);
    }
    check_exit_code_from(topology, &out, sink);
    resolve_after(&mut out, &specs, sink);
    out
}

/// Each command once: the instances of a process, and processes run with
/// the same argv (the workers of a large topology), share one list, so a
/// plan holds no copy of it per instance.
#[derive(Default)]
struct Argvs {
    made: HashSet<Arc<[String]>>,
}

impl Argvs {
    /// The shared list with the words of `argv`.
    fn get(&mut self, argv: Vec<String>) -> Arc<[String]> {
        if let Some(shared) = self.made.get(argv.as_slice()) {
            return Arc::clone(shared);
        }
        let shared: Arc<[String]> = argv.into();
        self.made.insert(Arc::clone(&shared));
        shared
    }
}

/// `replicas`, or 1 after an error.
fn check_replicas(name: &str, spec: &ProcessSpec, sink: &mut Sink) -> u32 {
    match &spec.replicas {
        None => 1,
        Some(r) if (1..=MAX_REPLICAS).contains(r.get_ref()) => *r.get_ref() as u32,
        Some(r) => {
            sink.push(
                Diagnostic::error(
                    "E0705",
                    format!("`replicas` of `{name}` must be between 1 and {MAX_REPLICAS}"),
                )
                .with_label(Label::primary(
                    r.span(),
                    format!("{} replicas", r.get_ref()),
                )),
            );
            1
        }
    }
}

/// One process with a valid name, checked on its own (`after` is resolved
/// once every process is known).
fn resolve_process(
    name: &str,
    (span, spec): (Span, &ProcessSpec),
    replicas: u32,
    (limits, argvs): (&Limits, &mut Argvs),
    sink: &mut Sink,
) -> ProcessDecl {
    // A lone instance's name is the process's: one string for both.
    let shared: Arc<str> = name.into();
    let instances = if replicas == 1 && spec.replicas.is_none() {
        Instances::One(Arc::clone(&shared))
    } else {
        Instances::Replicas(Box::new(
            (0..replicas)
                .map(|i| format!("{name}#{i}").into())
                .collect(),
        ))
    };
    let (argv, shell) = check_command(name, &span, spec, limits, sink);
    check_env(spec, limits, sink);
    check_identity(name, spec, sink);
    let ports = check_ports(spec, limits, sink);
    let ready = check_ready(spec, &ports, limits, sink);
    let (stop_signal, forward_signals) = check_signals(spec, sink);
    let restart = restart_plan(spec);
    ProcessDecl {
        name: shared,
        span,
        spec: Written::of(spec),
        instances,
        argv: argvs.get(argv),
        ready,
        shell,
        replicas: spec.replicas.is_some(),
        rare: (!ports.is_empty()
            || !forward_signals.is_empty()
            || stop_signal != SIGTERM
            || restart != NO_RESTART)
            .then(|| {
                Box::new(DeclaredRare {
                    ports,
                    forward_signals: forward_signals.into(),
                    after: Box::default(),
                    stop_signal: (stop_signal != SIGTERM).then_some(stop_signal),
                    restart: (restart != NO_RESTART).then_some(restart),
                })
            }),
    }
}

/// `user`, `group` and `cwd`, which the launcher resolves.
fn check_identity(name: &str, spec: &ProcessSpec, sink: &mut Sink) {
    for (key, value) in [("user", &spec.user), ("group", &spec.group)] {
        if let Some(value) = value
            && let Err(why) = check_account_name(value.get_ref())
        {
            sink.push(
                Diagnostic::error("E0708", format!("invalid `{key}`"))
                    .with_label(Label::primary(value.span(), why))
                    .with_help("a name of 1 to 32 characters (letters, digits, `_`, `-`, `.`, not starting with `-`), or a number"),
            );
        }
    }
    if let Some(cwd) = &spec.cwd
        && cwd.get_ref().contains('\0')
    {
        sink.push(
            Diagnostic::error(
                "E0703",
                format!("the `cwd` of `{name}` contains a NUL byte"),
            )
            .with_label(Label::primary(cwd.span(), "no path contains a NUL byte")),
        );
    }
}

/// The stop signal (SIGTERM after an error) and the forwarded signals.
fn check_signals(spec: &ProcessSpec, sink: &mut Sink) -> (SignalRef, Vec<SignalRef>) {
    let stop_signal = match &spec.stop_signal {
        None => known("SIGTERM"),
        Some(text) => parse_signal(text.get_ref()).unwrap_or_else(|why| {
            sink.push(
                Diagnostic::error("E0706", "invalid `stop_signal`")
                    .with_label(Label::primary(text.span(), why)),
            );
            known("SIGTERM")
        }),
    };
    let mut forward_signals = Vec::new();
    for text in &spec.forward_signals {
        match parse_signal(text.get_ref()) {
            Ok(signal) if FORWARDABLE.contains(&signal.name) => forward_signals.push(signal),
            Ok(signal) => sink.push(
                Diagnostic::error("E0706", format!("{} cannot be forwarded", signal.name))
                    .with_label(Label::primary(text.span(), "not a forwardable signal"))
                    .with_help("ipc-run forwards SIGHUP, SIGUSR1, SIGUSR2 and SIGWINCH; SIGINT and SIGTERM stop the whole topology"),
            ),
            Err(why) => sink.push(Diagnostic::error("E0706", "invalid signal in `forward_signals`").with_label(Label::primary(text.span(), why))),
        }
    }
    (stop_signal, forward_signals)
}

fn restart_plan(spec: &ProcessSpec) -> RestartPlan {
    RestartPlan {
        policy: spec
            .restart
            .as_ref()
            .map(|r| RestartPolicy::from(*r.get_ref()))
            .unwrap_or(RestartPolicy::Never),
        limit: spec
            .restart_limit
            .as_ref()
            .map(|l| *l.get_ref())
            .unwrap_or(DEFAULT_RESTART_LIMIT),
        backoff_ms: spec
            .restart_backoff
            .as_ref()
            .map(|b| b.get_ref().0)
            .unwrap_or(DEFAULT_BACKOFF_MS),
    }
}

/// `exit_code_from` names one process without replicas.
fn check_exit_code_from(topology: &Topology, processes: &[ProcessDecl], sink: &mut Sink) {
    let key = "exit_code_from";
    let Some(text) = &topology.file.exit_code_from else {
        return;
    };
    match processes.iter().find(|p| *p.name == **text.get_ref()) {
        None => sink.push(
            Diagnostic::error(
                "E0104",
                format!(
                    "`{key}` names `{}`, which is not a process of this topology",
                    text.get_ref().escape_debug()
                ),
            )
            .with_label(Label::primary(text.span(), "no such process")),
        ),
        Some(process) if process.instances.len() > 1 => sink.push(
            Diagnostic::error(
                "E0104",
                format!(
                    "`{key}` names `{}`, which has {} replicas",
                    text.get_ref().escape_debug(),
                    process.instances.len()
                ),
            )
            .with_label(Label::primary(
                text.span(),
                "ambiguous: one exit status is needed",
            )),
        ),
        Some(_) => {}
    }
}

/// Resolves each process's `after` to indices; unknown names and a process
/// waiting for itself are errors.
fn resolve_after(processes: &mut [ProcessDecl], specs: &[&ProcessSpec], sink: &mut Sink) {
    let names: HashMap<&str, usize> = processes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_ref(), i))
        .collect();
    let mut resolved_after = Vec::with_capacity(processes.len());
    for (process, spec) in processes.iter().zip(specs) {
        let mut resolved = Vec::with_capacity(spec.after.len());
        for after in &spec.after {
            if let Some(&index) = names.get(after.get_ref().as_str()) {
                resolved.push(index);
            }
            if **after.get_ref() == *process.name {
                sink.push(
                    Diagnostic::error(
                        "E0402",
                        format!("`{}` is listed in its own `after`", process.name),
                    )
                    .with_label(Label::primary(
                        after.span(),
                        "a process cannot wait for itself",
                    )),
                );
            } else if !names.contains_key(after.get_ref().as_str()) {
                sink.push(
                    Diagnostic::error(
                        "E0104",
                        format!(
                            "`after` of `{}` names `{}`, which is not a process of this topology",
                            process.name,
                            after.get_ref().escape_debug()
                        ),
                    )
                    .with_label(Label::primary(after.span(), "no such process")),
                );
            }
        }
        resolved_after.push(resolved);
    }
    for (process, after) in processes.iter_mut().zip(resolved_after) {
        if !after.is_empty() {
            process.rare.get_or_insert_default().after = after.into();
        }
    }
}

fn check_command(
    name: &str,
    span: &Span,
    spec: &ProcessSpec,
    limits: &Limits,
    sink: &mut Sink,
) -> (Vec<String>, bool) {
    let Some((argv, shell, value_span)) = command_argv(name, span, spec, sink) else {
        return (Vec::new(), false);
    };
    if argv.first().is_none_or(|program| program.is_empty()) {
        sink.push(
            Diagnostic::error("E0702", format!("process `{name}` has an empty command"))
                .with_label(Label::primary(value_span.clone(), "no program to exec")),
        );
    }
    for arg in &argv {
        check_arg(name, arg, &value_span, limits, sink);
    }
    (argv, shell)
}

/// The argv from `cmd`, or `/bin/sh -c` and `shell`; with whether it is a
/// shell and the span of the value. None when there is not exactly one.
fn command_argv(
    name: &str,
    span: &Span,
    spec: &ProcessSpec,
    sink: &mut Sink,
) -> Option<(Vec<String>, bool, Span)> {
    match (&spec.cmd, &spec.shell) {
        (Some(cmd), Some(shell)) => {
            sink.push(
                Diagnostic::error(
                    "E0701",
                    format!("process `{name}` has both `cmd` and `shell`"),
                )
                .with_label(Label::primary(shell.span(), "a shell script"))
                .with_label(Label::secondary(cmd.span(), "and an argv"))
                .with_help(
                    "keep `cmd` to exec directly, or `shell` to run the script with /bin/sh -c",
                ),
            );
            None
        }
        (None, None) => {
            sink.push(
                Diagnostic::error(
                    "E0701",
                    format!("process `{name}` has neither `cmd` nor `shell`"),
                )
                .with_label(Label::primary(span.clone(), "nothing to run"))
                .with_help("add cmd = [\"program\", \"arg\"]"),
            );
            None
        }
        (Some(cmd), None) => Some((cmd.get_ref().clone(), false, cmd.span())),
        (None, Some(script)) => Some((
            vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                script.get_ref().clone(),
            ],
            true,
            script.span(),
        )),
    }
}

/// One argument is a string exec can pass.
fn check_arg(name: &str, arg: &str, value_span: &Span, limits: &Limits, sink: &mut Sink) {
    if arg.contains('\0') {
        sink.push(
            Diagnostic::error(
                "E0703",
                format!("an argument of `{name}` contains a NUL byte"),
            )
            .with_label(Label::primary(
                value_span.clone(),
                "exec cannot pass a NUL byte",
            )),
        );
    }
    if arg.len() as u64 >= limits.arg_strlen_max.value {
        sink.push(
            Diagnostic::error(
                "E0608",
                format!(
                    "an argument of `{name}` is {} bytes, the kernel accepts less than {}",
                    arg.len(),
                    limits.arg_strlen_max.value
                ),
            )
            .with_label(Label::primary(value_span.clone(), "too long for exec"))
            .with_note(format!(
                "the limit is {} ({})",
                limits.arg_strlen_max.value, limits.arg_strlen_max.source
            )),
        );
    }
}

/// The topology's `name` reaches every child as `IPC_RUN_TOPOLOGY`: it must
/// be a value exec can pass.
fn check_topology_name(name: &str, span: Span, limits: &Limits, sink: &mut Sink) {
    if name.contains('\0') {
        sink.push(
            Diagnostic::error("E0703", "the topology `name` contains a NUL byte")
                .with_label(Label::primary(span.clone(), "exec cannot pass a NUL byte"))
                .with_note("every child gets the name in IPC_RUN_TOPOLOGY"),
        );
    }
    let variable = "IPC_RUN_TOPOLOGY=".len() + name.len();
    if variable as u64 >= limits.arg_strlen_max.value {
        sink.push(
            Diagnostic::error(
                "E0608",
                format!(
                    "the topology `name` is {} bytes, too long for exec",
                    name.len()
                ),
            )
            .with_label(Label::primary(span, "longer than MAX_ARG_STRLEN"))
            .with_note(format!(
                "every child gets IPC_RUN_TOPOLOGY=<name>; the kernel accepts strings shorter than {} ({})",
                limits.arg_strlen_max.value, limits.arg_strlen_max.source
            )),
        );
    }
}

/// Why `name` is not a valid environment variable name, if it is not.
fn env_name_error(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an environment variable needs a name".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(format!(
            "{bad:?} is not allowed in a variable name (use A-Z, a-z, 0-9 and _)"
        ));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("a variable name does not start with a digit".into());
    }
    Ok(())
}

/// Whether ipc-run sets `name` itself.
fn is_reserved_env(name: &str) -> bool {
    RESERVED_ENV_NAMES.contains(&name) || RESERVED_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
}

fn check_env(spec: &ProcessSpec, limits: &Limits, sink: &mut Sink) {
    for (key, value) in &spec.env {
        if let Err(why) = env_name_error(key.get_ref()) {
            sink.push(
                Diagnostic::error(
                    "E0704",
                    format!(
                        "invalid environment variable name `{}`",
                        key.get_ref().escape_debug()
                    ),
                )
                .with_label(Label::primary(key.span(), why)),
            );
        } else if is_reserved_env(key.get_ref()) {
            sink.push(
                Diagnostic::error(
                    "E0704",
                    format!("`{}` is set by ipc-run itself", key.get_ref()),
                )
                .with_label(Label::primary(key.span(), "reserved name"))
                .with_note(
                    "ipc-run sets IPC_RUN_*, IPC_PORT_*, LISTEN_* and NOTIFY_SOCKET from the plan",
                ),
            );
        }
        if value.get_ref().contains('\0') {
            sink.push(
                Diagnostic::error(
                    "E0703",
                    format!("the value of `{}` contains a NUL byte", key.get_ref()),
                )
                .with_label(Label::primary(value.span(), "exec cannot pass a NUL byte")),
            );
        }
        if (key.get_ref().len() + value.get_ref().len() + 1) as u64 >= limits.arg_strlen_max.value {
            sink.push(
                Diagnostic::error(
                    "E0608",
                    format!("the variable `{}` is too long for exec", key.get_ref()),
                )
                .with_label(Label::primary(value.span(), "longer than MAX_ARG_STRLEN")),
            );
        }
    }
    check_inherit_env(spec, sink);
}

fn check_inherit_env(spec: &ProcessSpec, sink: &mut Sink) {
    for name in &spec.inherit_env {
        if let Err(why) = env_name_error(name.get_ref()) {
            sink.push(
                Diagnostic::error(
                    "E0704",
                    format!(
                        "invalid name `{}` in `inherit_env`",
                        name.get_ref().escape_debug()
                    ),
                )
                .with_label(Label::primary(name.span(), why)),
            );
        } else if is_reserved_env(name.get_ref()) {
            sink.push(
                Diagnostic::error(
                    "E0704",
                    format!(
                        "`{}` cannot be inherited: ipc-run sets it from the plan",
                        name.get_ref()
                    ),
                )
                .with_label(Label::primary(name.span(), "reserved name")),
            );
        }
    }
}

fn check_ports(
    spec: &ProcessSpec,
    limits: &Limits,
    sink: &mut Sink,
) -> BTreeMap<String, DeclaredPort> {
    let mut ports = BTreeMap::new();
    let mut by_fd: BTreeMap<i32, (String, Span)> = BTreeMap::new();
    for (name, port) in &spec.ports {
        if let Err(why) = check_name(name.get_ref()) {
            sink.push(
                Diagnostic::error(
                    "E0101",
                    format!("invalid port name `{}`", name.get_ref().escape_debug()),
                )
                .with_label(Label::primary(name.span(), why)),
            );
            continue;
        }
        let fd = port.fd.as_ref().and_then(|fd| {
            let value = match port_fd(name.get_ref(), *fd.get_ref(), fd.span(), limits) {
                Ok(value) => value?,
                Err(diagnostic) => {
                    sink.push(*diagnostic);
                    return None;
                }
            };
            if let Some((other, other_span)) = by_fd.get(&value) {
                sink.push(
                    Diagnostic::error(
                        "E0202",
                        format!(
                            "ports `{other}` and `{}` both ask for fd {value}",
                            name.get_ref()
                        ),
                    )
                    .with_label(Label::primary(
                        fd.span(),
                        format!("`{}` at fd {value}", name.get_ref()),
                    ))
                    .with_label(Label::secondary(
                        other_span.clone(),
                        format!("`{other}` already at fd {value}"),
                    )),
                );
            } else {
                by_fd.insert(value, (name.get_ref().clone(), fd.span()));
            }
            Some((value, fd.span()))
        });
        ports.insert(
            name.get_ref().clone(),
            DeclaredPort {
                span: name.span(),
                fd,
            },
        );
    }
    ports
}

/// The fd port `name` asks for with `fd = value`: none for a standard
/// stream at its own fd, an error for any other stdio fd or one out of range.
fn port_fd(
    name: &str,
    value: i64,
    span: Span,
    limits: &Limits,
) -> Result<Option<i32>, Box<Diagnostic>> {
    let stdio = match name {
        "stdin" => Some(0),
        "stdout" => Some(1),
        "stderr" => Some(2),
        _ => None,
    };
    if let Some(expected) = stdio {
        if value != expected {
            return Err(Box::new(
                Diagnostic::error(
                    "E0203",
                    format!("port `{name}` is fd {expected} and cannot be moved"),
                )
                .with_label(Label::primary(span, format!("fd {value}"))),
            ));
        }
        return Ok(None);
    }
    // fd 0 may take a socket instead of stdin (inetd style); the wiring
    // pass checks that the end there is one.
    if value == 0 {
        return Ok(Some(0));
    }
    if (1..=2).contains(&value) {
        return Err(Box::new(
            Diagnostic::error(
                "E0203",
                format!("port `{name}` asks for fd {value}, which is a standard stream"),
            )
            .with_label(Label::primary(
                span,
                "fds 0, 1 and 2 are stdin, stdout and stderr",
            ))
            .with_help("use fd 3 or above, or the port names stdin/stdout/stderr; only fd 0 may take a socket instead (inetd style)"),
        ));
    }
    if value < 0 || value as u64 >= limits.nofile_soft.value {
        return Err(Box::new(
            Diagnostic::error(
                "E0204",
                format!(
                    "port `{name}` asks for fd {value}, outside 3..{}",
                    limits.nofile_soft.value
                ),
            )
            .with_label(Label::primary(span, "no such fd can exist in the child"))
            .with_note(format!(
                "the soft RLIMIT_NOFILE is {} ({})",
                limits.nofile_soft.value, limits.nofile_soft.source
            )),
        ));
    }
    Ok(Some(value as i32))
}

fn check_ready(
    spec: &ProcessSpec,
    ports: &BTreeMap<String, DeclaredPort>,
    limits: &Limits,
    sink: &mut Sink,
) -> Readiness {
    let Some(ready) = &spec.ready else {
        return Readiness::Started;
    };
    match ready.get_ref() {
        Ready::Started => Readiness::Started,
        Ready::Notify => Readiness::Notify,
        Ready::Fd { fd } => {
            let fd = *fd;
            if fd < 3 || fd as u64 >= limits.nofile_soft.value {
                sink.push(
                    Diagnostic::error(
                        "E0707",
                        format!(
                            "`ready = {{ fd = {fd} }}` must name an fd from 3 to {}",
                            limits.nofile_soft.value - 1
                        ),
                    )
                    .with_label(Label::primary(ready.span(), "unusable readiness fd")),
                );
                return Readiness::Started;
            }
            if let Some((port, declared)) = ports
                .iter()
                .find(|(_, p)| p.fd.as_ref().is_some_and(|(n, _)| i64::from(*n) == fd))
            {
                sink.push(
                    Diagnostic::error(
                        "E0202",
                        format!("the readiness fd {fd} is also port `{port}`"),
                    )
                    .with_label(Label::primary(
                        ready.span(),
                        format!("readiness at fd {fd}"),
                    ))
                    .with_label(Label::secondary(
                        declared
                            .fd
                            .as_ref()
                            .map_or(declared.span.clone(), |(_, s)| s.clone()),
                        format!("`{port}` at fd {fd}"),
                    )),
                );
            }
            Readiness::Fd { fd: fd as i32 }
        }
    }
}

/// A user or group as `user`/`group` may name it: a number, or a name as
/// `useradd` accepts one. Whether it exists is a launch-time question.
fn check_account_name(text: &str) -> Result<(), &'static str> {
    if text.is_empty() {
        return Err("empty");
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(id) if id != u32::MAX => Ok(()),
            _ => Err("not a valid numeric id"),
        };
    }
    if text.len() > 32 {
        return Err("longer than 32 characters");
    }
    if text.starts_with('-') {
        return Err("starts with `-`");
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err("only letters, digits, `_`, `-` and `.` are allowed");
    }
    Ok(())
}
