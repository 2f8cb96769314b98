//! The client side of the control socket: finds the live runs of this user
//! under the runtime directories and sends one request to a run.
//!
//! A run is live when its control socket answers `info`: the directory of
//! a run that was killed keeps a socket file nobody listens on
//! (`ECONNREFUSED`) until `ipc-run clean` removes it, and is not listed.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Command, ErrorBody, ErrorCode, Request, Response, RunInfo};
use super::{EXIT_REFUSED, EXIT_UNKNOWN_PROCESS, EXIT_UNKNOWN_RUN, SOCKET_FILE};
use crate::launch::run_dir;

/// How long a client waits for a run's answer: a run answers from its
/// event loop at once, so this only bounds a run that is stopped
/// (SIGSTOP) or wedged.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A run that answered.
#[derive(Debug, Clone)]
pub struct LiveRun {
    /// What it said of itself.
    pub info: RunInfo,
    /// Its control socket.
    pub socket: PathBuf,
}

/// Why a control command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No live run at all.
    #[error("no live run of this user{}", in_roots(.roots))]
    NoRun {
        /// Where runs were looked for.
        roots: Vec<PathBuf>,
    },
    /// None named and several live.
    #[error("{} live runs; name one: {}", .live.len(), .live.join(", "))]
    Ambiguous {
        /// The live runs, as `name (run id)`.
        live: Vec<String>,
    },
    /// The named run is not live (or the name fits several).
    #[error("{why} `{run}`; live runs: {}", list(.live))]
    UnknownRun {
        /// As named.
        run: String,
        /// `no live run` or `several live runs are named`.
        why: &'static str,
        /// The live runs.
        live: Vec<String>,
    },
    /// The run could not be reached or its answer read.
    #[error("failed to talk to run {run_id} at {}: {source}", .socket.display())]
    Io {
        /// The run.
        run_id: String,
        /// Its socket.
        socket: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The run answered with an error.
    #[error("run {run_id}: {}", .error.message)]
    Refused {
        /// The run.
        run_id: String,
        /// Its answer.
        error: ErrorBody,
    },
}

fn in_roots(roots: &[PathBuf]) -> String {
    let roots: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    format!(" (looked in {})", roots.join(", "))
}

fn list(live: &[String]) -> String {
    if live.is_empty() {
        "none".to_owned()
    } else {
        live.join(", ")
    }
}

impl ClientError {
    /// The documented exit code (`docs/operate.md`).
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::NoRun { .. }
            | ClientError::Ambiguous { .. }
            | ClientError::UnknownRun { .. }
            | ClientError::Io { .. } => EXIT_UNKNOWN_RUN,
            ClientError::Refused { error, .. } if error.code == ErrorCode::UnknownProcess => {
                EXIT_UNKNOWN_PROCESS
            }
            ClientError::Refused { .. } => EXIT_REFUSED,
        }
    }
}

/// The directories run directories are looked for in: `root` when given,
/// else every default one that is this user's own ([`own_root`]).
pub fn roots(root: Option<&Path>) -> Vec<PathBuf> {
    match root {
        Some(root) => vec![root.to_owned()],
        None => run_dir::all_roots()
            .into_iter()
            .filter(|root| own_root(root))
            .collect(),
    }
}

/// Whether the default root `root` may hold this user's runs: a directory
/// (not a link) owned by this user and writable by no one else, as a run
/// makes it. Another user could otherwise make `/tmp/ipc-run-<uid>` first
/// and plant runs in it that answer as ours: `reload` would plan the file
/// such a run names and hand the plan over into its directory, chowned to
/// its owner. One that is not is skipped, with a warning; a missing one
/// holds no runs either way.
fn own_root(root: &Path) -> bool {
    let why = match run_dir::open_dir_nofollow(None, root) {
        Ok(dir) => match run_dir::check_private(&dir, root) {
            Ok(()) => return true,
            Err(error) => error.to_string(),
        },
        Err(nix::errno::Errno::ENOENT) => return true,
        Err(errno) => format!("it cannot be opened as a directory: {errno}"),
    };
    eprintln!(
        "warning: ignoring runtime directory {}: {why}",
        root.display()
    );
    false
}

/// Every live run under `roots`, oldest first.
pub fn live_runs(roots: &[PathBuf]) -> Vec<LiveRun> {
    let mut runs = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().filter(|n| run_dir::is_run_id(n)) else {
                continue;
            };
            let socket = entry.path().join(SOCKET_FILE);
            // A stale directory (dead run) refuses or lacks the socket.
            if let Ok(response) = request(&socket, id, &Request::new(Command::Info, Vec::new()))
                && let Some(info) = response.run
            {
                runs.push(LiveRun { info, socket });
            }
        }
    }
    runs.sort_by(|a, b| {
        b.info
            .uptime_ms
            .cmp(&a.info.uptime_ms)
            .then_with(|| a.info.run_id.cmp(&b.info.run_id))
    });
    runs
}

/// The run `run` names (a run id, or a topology name that one live run
/// has), or the only live one when `run` is `None`.
pub fn resolve(run: Option<&str>, roots: &[PathBuf]) -> Result<LiveRun, ClientError> {
    let mut live = live_runs(roots);
    let labels = |runs: &[LiveRun]| -> Vec<String> {
        runs.iter()
            .map(|r| format!("{} ({})", r.info.name, r.info.run_id))
            .collect()
    };
    let Some(run) = run else {
        return match live.len() {
            0 => Err(ClientError::NoRun {
                roots: roots.to_vec(),
            }),
            1 => Ok(live.remove(0)),
            _ => Err(ClientError::Ambiguous {
                live: labels(&live),
            }),
        };
    };
    if let Some(k) = live.iter().position(|r| r.info.run_id == run) {
        return Ok(live.remove(k));
    }
    // A run id whose socket is there but did not answer `info`: say why
    // (another user's run, a run that is wedged).
    if run_dir::is_run_id(run)
        && let Some(socket) = roots
            .iter()
            .map(|root| root.join(run).join(SOCKET_FILE))
            .find(|socket| socket.exists())
    {
        request(&socket, run, &Request::new(Command::Info, Vec::new()))?;
    }
    let named: Vec<usize> = (0..live.len())
        .filter(|&k| live[k].info.name == run)
        .collect();
    match named[..] {
        [k] => Ok(live.remove(k)),
        [] => Err(ClientError::UnknownRun {
            run: run.to_owned(),
            why: "no live run",
            live: labels(&live),
        }),
        _ => Err(ClientError::UnknownRun {
            run: run.to_owned(),
            why: "several live runs are named",
            live: labels(&live),
        }),
    }
}

/// Sends a stream's `request` (`logs` with `follow`, `events`) and reads
/// its first answer; the stream's further lines are read from the reader
/// returned ([`next_line`]), with no time limit: a quiet run sends nothing.
pub fn subscribe(
    socket: &Path,
    run_id: &str,
    request: &Request,
) -> Result<(Response, BufReader<UnixStream>), ClientError> {
    let io = |source: std::io::Error| ClientError::Io {
        run_id: run_id.to_owned(),
        socket: socket.to_owned(),
        source,
    };
    let stream = UnixStream::connect(socket).map_err(io)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_vec(request).map_err(|e| io(std::io::Error::other(e)))?;
    line.push(b'\n');
    (&stream).write_all(&line).map_err(io)?;
    let mut reader = BufReader::new(stream);
    let live = LiveRun {
        info: RunInfo {
            name: String::new(),
            run_id: run_id.to_owned(),
            pid: 0,
            uptime_ms: 0,
            state: String::new(),
            processes: 0,
        },
        socket: socket.to_owned(),
    };
    let first = next_line(&mut reader, &live)?.ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the run closed the connection without an answer",
        ))
    })?;
    reader.get_ref().set_read_timeout(None).map_err(io)?;
    Ok((first, reader))
}

/// The next line of a stream from `live`: `None` once the run closed it
/// (the run ended); an error line (`too-slow`, ...) is [`ClientError::Refused`].
pub fn next_line(
    reader: &mut BufReader<UnixStream>,
    live: &LiveRun,
) -> Result<Option<Response>, ClientError> {
    let io = |source: std::io::Error| ClientError::Io {
        run_id: live.info.run_id.clone(),
        socket: live.socket.clone(),
        source,
    };
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
        return Ok(None);
    }
    let response: Response = serde_json::from_slice(&line)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    match response.error {
        Some(error) if !response.ok => Err(ClientError::Refused {
            run_id: live.info.run_id.clone(),
            error,
        }),
        _ => Ok(Some(response)),
    }
}

/// Sends `request` to the run listening on `socket` and reads its answer;
/// an answer with `ok: false` is [`ClientError::Refused`].
pub fn request(socket: &Path, run_id: &str, request: &Request) -> Result<Response, ClientError> {
    let response = exchange(socket, run_id, request)?;
    match response.error {
        Some(error) if !response.ok => Err(ClientError::Refused {
            run_id: run_id.to_owned(),
            error,
        }),
        _ => Ok(response),
    }
}

/// [`request`], with an answer that says `ok: false` returned as it is
/// (a refused `reload` still carries its diff).
pub fn exchange(socket: &Path, run_id: &str, request: &Request) -> Result<Response, ClientError> {
    let io = |source: std::io::Error| ClientError::Io {
        run_id: run_id.to_owned(),
        socket: socket.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(io)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_vec(request).map_err(|e| io(std::io::Error::other(e)))?;
    line.push(b'\n');
    // A run that refuses the peer answers at accept and closes: the write
    // may then fail, and the answer is still there to read.
    let written = stream.write_all(&line);
    let mut answer = Vec::new();
    let read = BufReader::new(&stream).read_until(b'\n', &mut answer);
    if answer.is_empty() {
        written.map_err(io)?;
        read.map_err(io)?;
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the run closed the connection without an answer",
        )));
    }
    serde_json::from_slice(&answer)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}
