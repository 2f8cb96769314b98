//! From a [`ProcessPlan`] to a [`ChildSpec`] ([`child_spec`]): program
//! lookup, argv, working directory, identity and the exact environment, all
//! prepared in the parent so the child path ([`crate::sys::spawn`]) only
//! makes syscalls. Which fds the child gets is the launcher's business
//! (`launch/mod.rs`), not this module's.
//!
//! The environment is exactly, in this order (a later entry of the same
//! name replaces an earlier one in place):
//! 1. pass-through from ipc-run's own environment, when set there: the
//!    plan's `inherit_env` (the planner lists `PATH`, `HOME`, `USER`,
//!    `LOGNAME`, `LANG`, `LC_ALL`, `TERM`, `TZ`, `TMPDIR`,
//!    `XDG_RUNTIME_DIR` and the process's own `inherit_env`), plus every
//!    `LC_*` locale variable;
//! 2. the plan's `env_files`, read now (each start reads them again, as
//!    systemd's `EnvironmentFile=` does), so their values never reach a
//!    plan;
//! 3. the plan's `env`, placeholders filled. `LISTEN_PID = "{pid}"` is not
//!    filled here: the child writes its own pid (see [`crate::sys::spawn`]);
//! 4. `IPC_RUN_BIN`, this binary's path, for a `shell` script that uses
//!    `{ipc_run}` (see [`super::placeholder`]).
//!
//! Nothing else of ipc-run's environment reaches a child, so a `LISTEN_FDS`
//! or `NOTIFY_SOCKET` that ipc-run itself received never leaks.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;
use nix::unistd::AccessFlags;

use super::identity::Identity;
use super::placeholder::{IPC_RUN_BIN, Values};
use super::{LaunchError, SpawnError};
use crate::plan::{ChannelPlan, ProcessPlan};
use crate::sys::spawn::ChildSpec;

/// The variables by which a service manager speaks to ipc-run itself
/// (`supervise::sd_notify`): never passed through to a child.
const MANAGER_VARIABLES: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// PATH used for lookup when neither the child nor ipc-run has one.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What the child specs of one run share, besides each process's plan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpecContext<'a> {
    /// The plan's channels, which its port variables are rendered against.
    pub channels: &'a [ChannelPlan],
    /// What placeholders resolve to.
    pub values: &'a Values,
    /// The environment pass-through reads from.
    pub base_env: &'a [(OsString, OsString)],
    /// `RLIMIT_NOFILE` (soft, hard) for children, if set.
    pub nofile: Option<(u64, u64)>,
    /// See [`ChildSpec::fd_limit`].
    pub fd_limit: i32,
    /// See [`ChildSpec::reset_signals`].
    pub reset_signals: u64,
    /// See [`ChildSpec::cgroup_dir`]: the run's cgroup, if it has one.
    pub cgroup_dir: Option<&'a Arc<OwnedFd>>,
    /// See [`ChildSpec::cgroup_procs`]: the same cgroup's `cgroup.procs`.
    pub cgroup_procs: Option<&'a CString>,
}

/// The [`ChildSpec`] of `process`, running as `identity` when it has one.
pub(crate) fn child_spec(
    process: &ProcessPlan,
    identity: Option<&Identity>,
    context: &SpecContext<'_>,
) -> Result<ChildSpec, LaunchError> {
    let instance = process.name.as_ref();
    let (mut env, listen_pid) = environment(process, identity, context)?;
    let mut filled_argv = Vec::with_capacity(process.argv.len());
    for (i, arg) in process.argv.iter().enumerate() {
        // `/bin/sh -c SCRIPT`: the script reads the binary's path from the
        // environment, never as text it would parse.
        let script = process.shell && i == 2;
        match script.then(|| context.values.fill_shell(arg)).transpose()? {
            Some(Some(script)) => {
                env.set(IPC_RUN_BIN, context.values.ipc_run.as_str());
                filled_argv.push(script);
            }
            // A launcher ipc-run adds (mpirun) carries its ranks' commands,
            // environments and directories in its argv: it is filled whole.
            _ if process.managed.is_some() => filled_argv.push(context.values.fill(arg)?),
            _ => filled_argv.push(context.values.fill_argv(arg)?),
        }
    }
    let argv0 = filled_argv.first().cloned().unwrap_or_default();
    let program = resolve_program(instance, &argv0, search_path(&env, context))?;
    let argv = c_strings(&format!("argv of {instance}"), &filled_argv)?;
    Ok(ChildSpec {
        program,
        argv,
        env: env.into_c_strings(instance)?,
        listen_pid,
        cwd: cwd_of(process, context)?,
        nofile: context.nofile,
        fd_limit: context.fd_limit,
        credentials: identity.map(|i| i.credentials.clone()),
        reset_signals: Some(context.reset_signals),
        cgroup_dir: context.cgroup_dir.cloned(),
        cgroup_procs: context.cgroup_procs.cloned(),
    })
}

/// The [`ChildSpec`] of an `exec` health check of `process`: `argv` as
/// written (no placeholders filled, as the planner showed it), run where
/// the process runs: its environment, working directory and identity.
/// `LISTEN_PID` is left out: the check is not the process sockets are for.
pub(crate) fn check_spec(
    process: &ProcessPlan,
    identity: Option<&Identity>,
    context: &SpecContext<'_>,
    argv: &[String],
) -> Result<ChildSpec, LaunchError> {
    let instance = process.name.as_ref();
    let (env, _) = environment(process, identity, context)?;
    let argv0 = argv.first().map_or("", String::as_str);
    let program = resolve_program(instance, argv0, search_path(&env, context))?;
    Ok(ChildSpec {
        program,
        argv: c_strings(&format!("health check of {instance}"), argv)?,
        env: env.into_c_strings(instance)?,
        listen_pid: false,
        cwd: cwd_of(process, context)?,
        nofile: context.nofile,
        fd_limit: context.fd_limit,
        credentials: identity.map(|i| i.credentials.clone()),
        reset_signals: Some(context.reset_signals),
        cgroup_dir: context.cgroup_dir.cloned(),
        cgroup_procs: context.cgroup_procs.cloned(),
    })
}

/// The PATH a program is looked up in: the child's own decides, as it
/// would for execvp in the child; ipc-run's is the fallback.
fn search_path<'a>(env: &'a Env, context: &SpecContext<'a>) -> Option<&'a OsStr> {
    env.get("PATH").or_else(|| {
        context
            .base_env
            .iter()
            .find(|(n, _)| n == "PATH")
            .map(|(_, v)| v.as_os_str())
    })
}

/// The working directory of `process`, placeholders filled.
fn cwd_of(
    process: &ProcessPlan,
    context: &SpecContext<'_>,
) -> Result<Option<CString>, LaunchError> {
    let Some(cwd) = &process.cwd else {
        return Ok(None);
    };
    let what = format!("cwd of {}", process.name);
    Ok(Some(
        c_strings(&what, &[context.values.fill(cwd)?])?.remove(0),
    ))
}

/// The environment of `process` (module docs), and whether the child is to
/// write `LISTEN_PID` itself.
fn environment(
    process: &ProcessPlan,
    identity: Option<&Identity>,
    context: &SpecContext<'_>,
) -> Result<(Env, bool), LaunchError> {
    let mut env = Env::pass_through(context.base_env, process);
    if let Some((name, home)) = identity.and_then(|i| i.account.as_ref()) {
        // Who the process is, not who ipc-run is; `env` may still say
        // otherwise below.
        env.set("USER", name.as_str());
        env.set("LOGNAME", name.as_str());
        env.set("HOME", home.as_str());
    }
    for path in &process.env_files {
        for (name, value) in read_env_file(&process.name, path)? {
            env.set(name, value);
        }
    }
    let mut listen_pid = false;
    for var in process.env.vars(context.channels) {
        let var = var.map_err(|error| LaunchError::BadValue {
            what: format!("environment of {}", process.name),
            value: error.name.to_string(),
            reason: error.to_string(),
        })?;
        if &**var.name == "LISTEN_PID" && var.value == "{pid}" {
            listen_pid = true;
            continue;
        }
        env.set(var.name.as_ref(), context.values.fill(&var.value)?);
    }
    Ok((env, listen_pid))
}

/// The variables of one env file, read as the topology stage checked it.
fn read_env_file(instance: &str, path: &str) -> Result<Vec<(String, String)>, LaunchError> {
    let bad = |reason: String| LaunchError::BadValue {
        what: format!("env file of {instance}"),
        value: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    crate::topology::env_file::parse(&text)
        .map_err(|line| bad(format!("line {}: {}", line.line, line.reason)))
}

/// An ordered environment where a repeated name replaces in place.
#[derive(Debug, Default, Clone)]
pub(crate) struct Env {
    vars: Vec<(OsString, OsString)>,
}

impl Env {
    pub fn set(&mut self, name: impl Into<OsString>, value: impl Into<OsString>) {
        let (name, value) = (name.into(), value.into());
        match self.vars.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name, value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_os_str())
    }

    /// Pass-through of `inherit_env` and `LC_*` from `base`.
    pub fn pass_through(base: &[(OsString, OsString)], process: &ProcessPlan) -> Env {
        let mut env = Env::default();
        for (name, value) in base
            .iter()
            .filter(|(n, _)| n.as_bytes().starts_with(b"LC_"))
        {
            env.set(name.clone(), value.clone());
        }
        for inherit in process.inherit_env.iter() {
            // The manager that started ipc-run speaks to ipc-run, never to
            // its children, even when a process asks for the variables.
            if MANAGER_VARIABLES.contains(&inherit.as_ref()) {
                continue;
            }
            if let Some((name, value)) = base.iter().find(|(n, _)| n == inherit.as_ref()) {
                env.set(name.clone(), value.clone());
            }
        }
        env
    }

    pub fn into_c_strings(self, instance: &str) -> Result<Vec<CString>, LaunchError> {
        self.vars
            .into_iter()
            .map(|(name, value)| {
                let mut entry = name.into_vec();
                let bad = entry.is_empty() || entry.contains(&b'=');
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                let shown = String::from_utf8_lossy(&entry).into_owned();
                if bad {
                    return Err(bad_env(instance, shown, "the name is empty or contains ="));
                }
                CString::new(entry).map_err(|_| bad_env(instance, shown, "it contains NUL"))
            })
            .collect()
    }
}

fn bad_env(instance: &str, entry: String, reason: &str) -> LaunchError {
    LaunchError::BadValue {
        what: format!("environment variable of {instance}"),
        value: entry,
        reason: reason.into(),
    }
}

/// Turns strings into C strings, naming the offender.
pub(crate) fn c_strings(what: &str, items: &[String]) -> Result<Vec<CString>, LaunchError> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| LaunchError::BadValue {
                what: what.to_owned(),
                value: s.clone(),
                reason: "it contains NUL".into(),
            })
        })
        .collect()
}

/// Finds `program` the way `execvp` would, in the parent: a name with a
/// slash is used as is; otherwise the first executable regular file in
/// `path`. A file found but not executable gives EACCES, nothing ENOENT.
pub(crate) fn resolve_program(
    instance: &str,
    program: &str,
    path: Option<&OsStr>,
) -> Result<CString, SpawnError> {
    let fail = |errno| SpawnError {
        instance: instance.to_owned(),
        program: program.to_owned(),
        step: None,
        errno,
    };
    if program.is_empty() {
        return Err(fail(Errno::ENOENT));
    }
    if program.contains('/') {
        return CString::new(program).map_err(|_| fail(Errno::EINVAL));
    }
    let path = path.map_or_else(|| OsStr::new(DEFAULT_PATH).as_bytes(), OsStr::as_bytes);
    let mut denied = false;
    for dir in path.split(|b| *b == b':') {
        let dir = if dir.is_empty() { b".".as_slice() } else { dir };
        let candidate = Path::new(OsStr::from_bytes(dir)).join(program);
        match std::fs::metadata(&candidate) {
            Ok(meta) if meta.is_file() => {
                if nix::unistd::access(&candidate, AccessFlags::X_OK).is_ok() {
                    return CString::new(candidate.into_os_string().into_vec())
                        .map_err(|_| fail(Errno::EINVAL));
                }
                denied = true;
            }
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => denied = true,
            Err(_) => {}
        }
    }
    Err(fail(if denied { Errno::EACCES } else { Errno::ENOENT }))
}
