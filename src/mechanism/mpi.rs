//! `mpi`: the processes an edge joins run as the ranks of one MPI world,
//! one MPMD job of Open MPI's `mpirun` that ipc-run adds to the plan as a
//! managed launcher (`docs/mechanisms.md`, "MPI").
//!
//! The edge creates nothing: MPI's own transports (shared memory between
//! ranks on one host) carry the messages, and `mpirun` makes them. The
//! module decides the launcher's name and its command line; the planner's
//! world pass (`plan::world`) puts the ranks in order and replaces their
//! launch by the launcher's.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use ipc_run_child::description::{self as child, Params};

use super::edge::{EdgeContext, Shape};
use super::{BASE, Profile};
use crate::diagnostic::{Diagnostic, Label};
use crate::mechanism::model::{
    EndpointPlan, Mechanism, MpiParams, Plan, PortFd, RUN_DIR, RenderedVar,
};
use crate::topology::Traffic;

/// The mechanism's name.
pub const NAME: &str = child::Kind::Mpi.as_str();

/// MPI messages between the ranks of one world.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Messages],
    wrong_traffic: Some((
        "E0340",
        "an mpi edge carries MPI messages between ranks: write traffic = \"messages\"",
    )),
    // Ranks are started by mpirun: no peer outside the topology joins.
    named: false,
    ..BASE
};

/// The launcher program: Open MPI's.
pub const LAUNCHER: &str = "mpirun";

/// The Debian/Ubuntu package that provides [`LAUNCHER`].
pub const LAUNCHER_PACKAGE: &str = "openmpi-bin";

/// The directory in the run directory that holds the job's session
/// directory and its shared-memory backing files; cleanup and `clean`
/// remove it whole.
pub const SESSION_DIR: &str = "mpi.session";

/// Longest process name (`docs/topology.md`, names).
const MAX_NAME: usize = 48;

/// Why ipc-run adds the launcher, shown in the plan.
pub const LAUNCHER_REASON: &str = "the processes of an mpi edge are the ranks of one MPI world: \
     mpirun starts them as one MPMD job, in the order of the rank map";

// ---- plan ----

/// The world's launcher by name; its ranks are filled by the world pass.
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let launcher = launcher_name(cx.id);
    if launcher.len() > MAX_NAME {
        let span = cx.id_span.clone().unwrap_or(cx.span.clone());
        cx.report(
            Diagnostic::error(
                "E0341",
                format!("the launcher of mpi edge `{}` would be named `{launcher}`, longer than {MAX_NAME} characters", cx.id),
            )
            .with_label(Label::primary(span, "this edge's name"))
            .with_help(format!(
                "name the edge with at most {} characters",
                MAX_NAME - launcher_name("").len()
            )),
        );
        return None;
    }
    Some(Shape::unbounded(Mechanism::Mpi(Box::new(MpiParams {
        launcher,
        ranks: Vec::new(),
    }))))
}

/// The managed launcher's instance name for the world of edge `id`.
pub fn launcher_name(id: &str) -> String {
    format!("{LAUNCHER}-{id}")
}

/// What a rank's port of the world says: the world's size (the rank
/// itself comes from MPI, `MPI_Comm_rank`).
pub(crate) fn describe(ranks: &[String]) -> Params {
    Params::Mpi {
        size: u32::try_from(ranks.len()).unwrap_or(u32::MAX),
    }
}

/// One rank's part of the MPMD command line.
pub struct RankCommand<'a> {
    /// Its argv.
    pub argv: &'a [String],
    /// Its environment (ipc-run's variables and its own), as text.
    pub env: &'a [RenderedVar<'a>],
    /// Its working directory.
    pub cwd: Option<&'a str>,
}

/// The launcher's argv: `mpirun OPTIONS -np 1 env VARS… ARGV : …`, one
/// app context per rank in rank order.
///
/// - `--tag-output`: every line a rank writes comes out of mpirun's
///   stdout or stderr as `[JOB,RANK]<stdout>:LINE`; the relay turns the
///   tag into the rank's own prefix (`name[rank]`).
/// - `--oversubscribe`: a world may have more ranks than the host has
///   cores; the plan is the same on every host.
/// - `--allow-run-as-root`: mpirun refuses root otherwise; the topology's
///   `user` decides who runs, as for every other process.
/// - `--mca orte_tmpdir_base`, `--mca btl_vader_backing_directory`: the
///   session directory and the shared-memory backing files go under
///   [`SESSION_DIR`] in the private run directory, which cleanup and
///   `ipc-run clean` remove whole, instead of `/tmp` and `/dev/shm`.
///
/// Each rank's environment goes through `env NAME=VALUE`: mpirun hands
/// every rank its own environment, so variables that differ between ranks
/// (the instance name, the ports) are set per app context. Placeholders in
/// a managed launcher's argv are filled at launch.
pub fn command(ranks: &[RankCommand<'_>]) -> Vec<String> {
    let session = format!("{RUN_DIR}/{SESSION_DIR}");
    let mut argv: Vec<String> = [
        LAUNCHER,
        "--tag-output",
        "--oversubscribe",
        "--allow-run-as-root",
        "--mca",
        "orte_tmpdir_base",
        &session,
        "--mca",
        "btl_vader_backing_directory",
        &session,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for (i, rank) in ranks.iter().enumerate() {
        if i > 0 {
            argv.push(":".into());
        }
        argv.extend(["-np".into(), "1".into()]);
        if let Some(cwd) = rank.cwd {
            argv.extend(["-wdir".into(), cwd.to_owned()]);
        }
        argv.push("env".into());
        argv.extend(rank.env.iter().map(|v| format!("{}={}", v.name, v.value)));
        argv.extend(rank.argv.iter().cloned());
    }
    argv
}

/// An error (E0345) for each MPI world whose launcher is not found on
/// `path` (a `PATH` value), naming the package that provides it: `check`
/// and `run` report it before anything is created.
pub fn missing_launchers(plan: &Plan, path: Option<&OsStr>) -> Vec<Diagnostic> {
    let found = |program: &str| {
        let path = path.map_or(b"/usr/local/bin:/usr/bin:/bin".as_slice(), OsStr::as_bytes);
        path.split(|b| *b == b':').any(|dir| {
            let dir = if dir.is_empty() { b".".as_slice() } else { dir };
            let candidate = Path::new(OsStr::from_bytes(dir)).join(program);
            std::fs::metadata(&candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    };
    plan.channels
        .iter()
        .filter_map(|c| match &c.mechanism {
            Mechanism::Mpi(world) if !found(LAUNCHER) => Some(
                Diagnostic::error(
                    "E0345",
                    format!(
                        "`{LAUNCHER}`, the launcher of MPI world `{}` ({}), is not installed",
                        c.id, world.launcher
                    ),
                )
                .with_note(format!("not found on PATH: {}", path.map_or("(unset)".into(), |p| p.to_string_lossy())))
                .with_help(format!(
                    "install Open MPI: `apt install {LAUNCHER_PACKAGE}` (and libopenmpi-dev for mpicc)"
                )),
            ),
            _ => None,
        })
        .collect()
}

/// A rank's stdout or stderr on a pipe to a process outside the world.
///
/// mpirun forwards every rank's output to its own stdout and stderr,
/// tagged with the rank (`--tag-output`); ipc-run, which reads mpirun's
/// output anyway, writes the lines of this rank into the pipe (untagged)
/// instead of its log. The rank never holds the pipe: ipc-run holds its
/// write end for the launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankRelay {
    /// The world's launcher (an instance of the plan).
    pub launcher: Arc<str>,
    /// The rank whose lines go into the pipe.
    pub rank: usize,
    /// Its stderr (else its stdout).
    pub stderr: bool,
    /// The pipe.
    pub channel: Arc<str>,
}

/// Why a channel from ranks' stdout or stderr (`ends`: each as
/// `instance.port` with its rank) has no fd at the ranks, shown after the
/// channel's reason.
pub fn relay_reason(ends: &[(String, usize)], launcher: &str) -> String {
    let names: Vec<&str> = ends.iter().map(|(name, _)| name.as_str()).collect();
    let ranks: Vec<String> = ends.iter().map(|(_, rank)| rank.to_string()).collect();
    let (verb, rank) = if ends.len() == 1 {
        ("is", "rank")
    } else {
        ("are", "ranks")
    };
    format!(
        "; {} {verb} relayed from mpirun's tagged output of {rank} {}: `{launcher}` forwards \
         every rank's stdout and stderr tagged with its rank, and ipc-run, holding the pipe's \
         write end, writes those lines into it, untagged and whole (a rank keeps no fd from \
         ipc-run)",
        names.join(", "),
        ranks.join(", ")
    )
}

/// Why the launcher holds a channel's read end as its stdin, shown after
/// the channel's reason.
pub fn stdin_reason(instance: &str, launcher: &str) -> String {
    format!(
        "; `{launcher}` reads it as its stdin: mpirun forwards its stdin to rank 0 \
         (`{instance}`) only, Open MPI's default"
    )
}

/// Whether a channel of `mechanism` at a rank's `port` (on the `from` side
/// unless `reader`) can be relayed or forwarded by mpirun: a pipe at the
/// rank's stdout or stderr (any rank), or at rank 0's stdin.
pub fn forwarded(mechanism: &Mechanism, port: &str, reader: bool, rank: usize) -> bool {
    if !matches!(mechanism, Mechanism::Pipe { .. }) {
        return false;
    }
    match port {
        "stdout" | "stderr" => !reader,
        "stdin" => reader && rank == 0,
        _ => false,
    }
}

/// Every rank's stdout or stderr that the plan relays into a pipe: the
/// `from` ends of pipes at a rank's `stdout`/`stderr` port, which the rank
/// gets no fd for (`plan::world`).
pub fn relays(plan: &Plan) -> Vec<RankRelay> {
    let mut found = Vec::new();
    for world in &plan.channels {
        let Mechanism::Mpi(mpi) = &world.mechanism else {
            continue;
        };
        let MpiParams { launcher, ranks } = &**mpi;
        for channel in &plan.channels {
            if !matches!(channel.mechanism, Mechanism::Pipe { .. }) {
                continue;
            }
            for end in channel.from() {
                let EndpointPlan::Port {
                    process,
                    port,
                    fd: PortFd::NONE,
                    ..
                } = end
                else {
                    continue;
                };
                let Some(rank) = ranks.iter().position(|r| **r == **process) else {
                    continue;
                };
                if matches!(&**port, "stdout" | "stderr") {
                    found.push(RankRelay {
                        launcher: launcher.as_str().into(),
                        rank,
                        stderr: &**port == "stderr",
                        channel: channel.id.clone(),
                    });
                }
            }
        }
    }
    found
}

/// The prefix of a line mpirun relays for rank `rank` with `--tag-output`,
/// parsed: `[JOB,RANK]<stdout>:` or `<stderr>:`. Returns the rank and the
/// rest of the line.
pub fn parse_tag(line: &[u8]) -> Option<(usize, &[u8])> {
    let rest = line.strip_prefix(b"[")?;
    let close = rest.iter().position(|&b| b == b']')?;
    let (_, rank) = split_once(&rest[..close], b',')?;
    let rank: usize = std::str::from_utf8(rank).ok()?.parse().ok()?;
    let rest = &rest[close + 1..];
    let rest = rest
        .strip_prefix(b"<stdout>:")
        .or_else(|| rest.strip_prefix(b"<stderr>:"))
        .or_else(|| rest.strip_prefix(b"<stddiag>:"))?;
    Some((rank, rest))
}

fn split_once(bytes: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == sep)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_parsed_and_anything_else_is_not() {
        assert_eq!(
            parse_tag(b"[1,3]<stdout>:hello"),
            Some((3, b"hello".as_slice()))
        );
        assert_eq!(parse_tag(b"[1,0]<stderr>:"), Some((0, b"".as_slice())));
        assert_eq!(parse_tag(b"[1,x]<stdout>:a"), None);
        assert_eq!(parse_tag(b"plain line"), None);
        assert_eq!(parse_tag(b"[1,2]<other>:a"), None);
    }

    #[test]
    fn one_app_context_per_rank() {
        let name = "A".into();
        let env = [RenderedVar {
            name: &name,
            value: "{run_dir}/x".into(),
        }];
        let a = ["a".to_owned()];
        let b = ["b".to_owned(), "-v".to_owned()];
        let argv = command(&[
            RankCommand {
                argv: &a,
                env: &env,
                cwd: None,
            },
            RankCommand {
                argv: &b,
                env: &[],
                cwd: Some("/w"),
            },
        ]);
        let tail: Vec<&str> = argv.iter().skip(10).map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "-np",
                "1",
                "env",
                "A={run_dir}/x",
                "a",
                ":",
                "-np",
                "1",
                "-wdir",
                "/w",
                "env",
                "b",
                "-v"
            ]
        );
    }
}
