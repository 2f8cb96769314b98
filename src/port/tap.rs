//! Taps: a copy of one edge's traffic in a file, without editing the
//! topology.
//!
//! `ipc-run run --tap EDGE=FILE` (also `plan`, `check`, `graph`) rewrites the
//! parsed topology before it is planned again: edge EDGE now ends at a new
//! process `tap-EDGE`, and a new edge `EDGE-tapped` (same options, same
//! mechanism as planned for EDGE) goes from `tap-EDGE` to EDGE's readers.
//! `tap-EDGE` runs this binary as `ipc-run port tap --in in --out out
//! --file FILE`, copying everything from `in` to `out` and appending it to
//! FILE. The rewrite happens at the topology level, so the planner checks
//! the result like any hand-written file, and `ipc-run plan --tap ...` shows
//! it.
//!
//! Supported: edges that end by themselves, so the tap process ends with
//! them: stream edges over a pipe, a FIFO or a stream socketpair, and
//! message edges over a seqpacket socketpair or a shared-memory ring. A queue (POSIX or System V) has no
//! end, so a tap would never exit: refused, as are duplex edges, sockets
//! with listeners, shared memory and notifications.
//!
//! FILE is created afresh (0600, `O_EXCL|O_NOFOLLOW`; an old copy is
//! replaced only when it is a regular file of ours, see
//! [`crate::safe_file`]) by `ipc-run run` before anything starts, then
//! appended to by the tap process, so a restarted tap continues the copy.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::plan::{Mechanism, Plan};
use crate::topology::{
    EdgeSpec, EndpointList, MechanismName, ProcessSpec, SocketType, Spanned, Topology, check_name,
};

use super::kinds::{self, Input, Output, Recv, Wait};
use super::{Framing, PortError, TapArgs};

/// Opens the tap file for adding to its end: a file of ours only (see
/// [`crate::safe_file`]), created 0600 if missing. Not `O_APPEND`
/// (`splice(2)` refuses such files): the tap is the file's only writer, so
/// a seek to the end does the same.
pub fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::io::Seek;
    let fd = crate::safe_file::open_path(path, crate::safe_file::Existing::Reuse)
        .map_err(std::io::Error::other)?;
    let mut file = std::fs::File::from(fd);
    file.seek(std::io::SeekFrom::End(0))?;
    Ok(file)
}

/// Creates the tap file afresh before a run: a file of ours is replaced,
/// anything else refused (see [`crate::safe_file`]).
pub fn truncate(path: &Path) -> Result<(), crate::safe_file::SafeFileError> {
    crate::safe_file::open_path(path, crate::safe_file::Existing::Replace).map(drop)
}

/// `port tap`: copies IN to OUT and to FILE until IN ends.
pub fn run(args: &TapArgs) -> Result<(), PortError> {
    let file: OwnedFd = open_append(&args.file)
        .map_err(|e| PortError::open(format!("tap file {}", args.file.display()), e))?
        .into();
    let mut input_port = super::open_port(&args.input)?;
    let mut output_port = super::open_port(&args.out)?;
    let input = kinds::open_input(&mut input_port, args.framing, None)?;
    let output = kinds::open_output(&mut output_port)?;
    let file_error = |e| PortError::io(format!("append to {}", args.file.display()), e);
    match (input, output) {
        (Input::Stream(from), Output::Stream(to)) => {
            if pipe_tee(from.as_fd(), to.fd.as_fd(), file.as_fd(), &args.out)? {
                to.finish();
                return Ok(());
            }
            let mut buf = vec![0u8; super::STREAM_BUFFER];
            loop {
                let n = super::read_some(from.as_fd(), &mut buf)
                    .map_err(|e| PortError::io("read the port", e))?;
                if n == 0 {
                    break;
                }
                if forward(to.fd.as_fd(), &buf[..n], &args.out)? {
                    break;
                }
                super::write_all(file.as_fd(), &buf[..n]).map_err(file_error)?;
            }
            to.finish();
            Ok(())
        }
        (Input::Messages(mut source), Output::Messages(mut sink)) => {
            let mut copy = Vec::with_capacity(super::STREAM_BUFFER);
            loop {
                let mut got = source.recv(Wait::Now)?;
                if matches!(got, Recv::Nothing) {
                    super::write_all(file.as_fd(), &copy).map_err(file_error)?;
                    copy.clear();
                    got = source.recv(Wait::For(None))?;
                }
                match got {
                    Recv::Message(message) => {
                        match sink.send(message) {
                            Ok(()) => {}
                            // The reader has gone: the tap ends like the
                            // edge would have, quietly.
                            Err(PortError::Io { .. }) => break,
                            Err(other) => return Err(other),
                        }
                        args.framing.encode(message, &mut copy)?;
                        if copy.len() >= super::STREAM_BUFFER {
                            super::write_all(file.as_fd(), &copy).map_err(file_error)?;
                            copy.clear();
                        }
                    }
                    Recv::Nothing | Recv::End => break,
                }
            }
            super::write_all(file.as_fd(), &copy).map_err(file_error)?;
            sink.finish();
            Ok(())
        }
        _ => Err(PortError::Usage(format!(
            "ports `{}` ({}) and `{}` ({}) are not the same kind of channel",
            args.input,
            input_port.kind(),
            args.out,
            output_port.kind()
        ))),
    }
}

/// The copy without passing bytes through this process, when IN and OUT
/// are both pipes: `tee(2)` IN into OUT, then `splice(2)` the same bytes
/// from IN into the file. False when the kernel refuses (not two pipes) and
/// nothing was moved, so the caller copies by hand.
fn pipe_tee(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    port: &str,
) -> Result<bool, PortError> {
    use nix::errno::Errno;
    const CHUNK: usize = 1 << 20;
    let mut first = true;
    loop {
        let n = match crate::sys::fd::tee(from, to, CHUNK) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EINVAL) if first => return Ok(false),
            // The reader has gone: the tap ends like the edge would have.
            Err(Errno::EPIPE) => return Ok(true),
            Err(errno) => return Err(PortError::io(format!("tee into port `{port}`"), errno)),
        };
        first = false;
        let mut left = n;
        while left > 0 {
            match crate::sys::fd::splice(from, file, left) {
                Ok(0) => return Ok(true),
                Ok(m) => left -= m,
                Err(Errno::EINTR) => {}
                Err(errno) => return Err(PortError::io("splice into the tap file", errno)),
            }
        }
    }
}

/// Writes to OUT; true when its reader has gone (the tap then ends).
fn forward(to: BorrowedFd<'_>, bytes: &[u8], port: &str) -> Result<bool, PortError> {
    match super::write_all(to, bytes) {
        Ok(()) => Ok(false),
        Err(nix::errno::Errno::EPIPE | nix::errno::Errno::ECONNRESET) => Ok(true),
        Err(errno) => Err(PortError::io(format!("write to port `{port}`"), errno)),
    }
}

/// One `--tap EDGE=FILE`.
#[derive(Debug, Clone)]
pub struct TapSpec {
    /// The channel id: an edge's `name`, `eN`, or `pipelineN`.
    pub edge: String,
    /// The copy, absolute.
    pub file: PathBuf,
}

impl TapSpec {
    /// Parses `EDGE=FILE`; FILE is made absolute (the tap process may run
    /// elsewhere).
    pub fn parse(text: &str) -> Result<TapSpec, String> {
        let (edge, file) = text
            .split_once('=')
            .ok_or_else(|| format!("--tap `{text}`: expected EDGE=FILE"))?;
        if edge.is_empty() || file.is_empty() {
            return Err(format!("--tap `{text}`: expected EDGE=FILE"));
        }
        let file = std::path::absolute(file)
            .map_err(|e| format!("--tap `{text}`: cannot resolve {file}: {e}"))?;
        Ok(TapSpec {
            edge: edge.to_owned(),
            file,
        })
    }
}

/// The name of the process inserted for a tap on `edge`.
pub fn process_name(edge: &str) -> String {
    format!("tap-{edge}")
}

fn spanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

/// Why a `--tap` cannot be done; the message names the edge.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The same edge appears in two `--tap`s.
    #[error("edge `{0}` is tapped twice")]
    TappedTwice(String),
    /// No channel of the plan has that id.
    #[error("--tap: no edge `{edge}` (edges: {known})")]
    UnknownEdge {
        /// The id asked for.
        edge: String,
        /// The plan's channel ids, comma-separated.
        known: String,
    },
    /// The edge's mechanism or shape cannot be tapped.
    #[error("--tap: edge `{edge}` ({mechanism}) cannot be tapped: {why}")]
    Refused {
        /// The edge.
        edge: String,
        /// The mechanism it was planned with.
        mechanism: &'static str,
        /// Why.
        why: &'static str,
    },
    /// The plan has the channel but the file has no such edge.
    #[error("--tap: edge `{0}` is not in the file")]
    NotInFile(String),
    /// The inserted process or edge would get an invalid name.
    #[error("--tap: {what} name `{name}`: {why}")]
    BadName {
        /// `process` or `edge`.
        what: &'static str,
        /// The name.
        name: String,
        /// Why it is invalid.
        why: String,
    },
    /// The process or edge a tap inserts exists already.
    #[error("--tap: {what} `{name}` exists already")]
    Exists {
        /// `a process` or `an edge`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The copy could not be created, or its name is not a file of ours
    /// (a launch failure, exit 3).
    #[error("--tap {edge}: cannot create {}: {source}", .file.display())]
    CreateFile {
        /// The edge.
        edge: String,
        /// The tap file.
        file: PathBuf,
        /// The error.
        source: crate::safe_file::SafeFileError,
    },
}

/// Rewrites `topology` so each tapped edge passes through a tap process;
/// `plan` is the plan of the topology as written (it tells which mechanism
/// each edge got). The error says which edge cannot be tapped and why.
pub fn apply(topology: &mut Topology, plan: &Plan, taps: &[TapSpec]) -> Result<(), TapError> {
    let mut seen = std::collections::BTreeSet::new();
    for tap in taps {
        if !seen.insert(tap.edge.as_str()) {
            return Err(TapError::TappedTwice(tap.edge.clone()));
        }
    }
    if taps.iter().any(|t| t.edge.starts_with("pipeline")) {
        expand_pipeline(topology);
    }
    for tap in taps {
        let channel = plan
            .channels
            .iter()
            .find(|c| *c.id == *tap.edge)
            .ok_or_else(|| {
                let known: Vec<&str> = plan.channels.iter().map(|c| c.id.as_ref()).collect();
                TapError::UnknownEdge {
                    edge: tap.edge.clone(),
                    known: known.join(", "),
                }
            })?;
        let refused = |why| TapError::Refused {
            edge: tap.edge.clone(),
            mechanism: channel.mechanism.name(),
            why,
        };
        let (mechanism, socket) = tap_mechanism(&channel.mechanism).map_err(refused)?;
        let index =
            find_edge(topology, &tap.edge).ok_or_else(|| TapError::NotInFile(tap.edge.clone()))?;
        let spec = &topology.file.edge[index];
        if spec.duplex.as_ref().is_some_and(|d| *d.get_ref()) {
            return Err(refused("it is duplex; a tap copies one direction"));
        }
        insert_tap(topology, index, tap, mechanism, socket)?;
    }
    Ok(())
}

/// The mechanism (and socket type) both halves of a tapped edge get, or
/// why the planned mechanism cannot be tapped.
fn tap_mechanism(planned: &Mechanism) -> Result<(MechanismName, Option<SocketType>), &'static str> {
    match planned {
        Mechanism::Pipe { .. } | Mechanism::Inherit { .. } => Ok((MechanismName::Pipe, None)),
        Mechanism::Fifo { .. } => Ok((MechanismName::Fifo, None)),
        Mechanism::Socketpair { socket } => match SocketType::from(*socket) {
            socket @ (SocketType::Stream | SocketType::Seqpacket) => {
                Ok((MechanismName::Socketpair, Some(socket)))
            }
            SocketType::Dgram => {
                Err("a datagram socketpair has no end of stream, so the tap would never exit")
            }
        },
        // A ring ends once every producer is done: the tap, its one
        // reader upstream and its one producer downstream, ends with it.
        Mechanism::PosixShm(shm) if shm.ring.is_some() => Ok((MechanismName::PosixShm, None)),
        Mechanism::PosixMq { .. } | Mechanism::SysvMq { .. } => Err(
            "a message queue has no end of stream, so the tap would never exit \
             (read a queue with `ipc-run port read` and `tee` instead)",
        ),
        _ => Err(
            "only pipes, FIFOs, stream or seqpacket socketpairs and shared-memory \
             rings (edges that end by themselves) can be tapped",
        ),
    }
}

/// The error for an invalid name of an inserted process or edge.
fn bad_name<'a>(what: &'static str, name: &'a str) -> impl FnOnce(String) -> TapError + 'a {
    move |why| TapError::BadName {
        what,
        name: name.to_owned(),
        why,
    }
}

/// Splits edge `index` at a new tap process: writers -> tap.in keeps the
/// edge (and its id); tap.out -> readers is the new edge `EDGE-tapped`,
/// with the same options and mechanism.
fn insert_tap(
    topology: &mut Topology,
    index: usize,
    tap: &TapSpec,
    mechanism: MechanismName,
    socket: Option<SocketType>,
) -> Result<(), TapError> {
    let name = process_name(&tap.edge);
    check_name(&name).map_err(bad_name("process", &name))?;
    let downstream = format!("{}-tapped", tap.edge);
    check_name(&downstream).map_err(bad_name("edge", &downstream))?;
    if topology.file.process.keys().any(|k| k.get_ref() == &name) {
        return Err(TapError::Exists {
            what: "a process",
            name,
        });
    }
    if find_edge(topology, &downstream).is_some() {
        return Err(TapError::Exists {
            what: "an edge",
            name: downstream,
        });
    }
    let mut upstream = topology.file.edge[index].clone();
    let mut down = upstream.clone();
    down.from = spanned(EndpointList(vec![spanned(format!("{name}.out"))]));
    down.name = Some(spanned(downstream));
    upstream.to = spanned(EndpointList(vec![spanned(format!("{name}.in"))]));
    for edge in [&mut upstream, &mut down] {
        edge.mechanism = Some(spanned(mechanism));
        if socket.is_some() {
            edge.socket = socket.map(spanned);
        }
    }
    topology.file.edge[index] = upstream;
    topology.file.edge.push(down);
    // Streams are copied byte for byte; messages one per line.
    let framing = match (mechanism, socket) {
        (MechanismName::PosixShm, _) | (_, Some(SocketType::Seqpacket)) => Framing::Line,
        _ => Framing::Raw,
    };
    topology
        .file
        .process
        .insert(spanned(name), tap_process(&tap.file, framing));
    Ok(())
}

fn find_edge(topology: &Topology, id: &str) -> Option<usize> {
    topology
        .file
        .edge
        .iter()
        .enumerate()
        .position(|(i, e)| match &e.name {
            Some(name) => name.get_ref() == id,
            None => format!("e{i}") == id,
        })
}

/// Turns `pipeline = [...]` into the edges it stands for, with the ids the
/// planner gives them (`pipeline0`, ...), so one of them can be tapped.
fn expand_pipeline(topology: &mut Topology) {
    let stages = std::mem::take(&mut topology.file.pipeline);
    for (index, pair) in stages.windows(2).enumerate() {
        let endpoint = |stage: &Spanned<String>| {
            Spanned::new(
                stage.span(),
                EndpointList(vec![Spanned::new(stage.span(), stage.get_ref().clone())]),
            )
        };
        let name = format!("pipeline{index}");
        let edge = plain_edge(endpoint(&pair[0]), endpoint(&pair[1]), name);
        topology.file.edge.push(edge);
    }
}

/// An edge as `[[edge]]` with only `from`, `to` and `name` written: every
/// other key unset, so the planner applies its defaults.
fn plain_edge(from: Spanned<EndpointList>, to: Spanned<EndpointList>, name: String) -> EdgeSpec {
    EdgeSpec {
        name: Some(spanned(name)),
        ..EdgeSpec::new(from, to)
    }
}

/// The process a tap inserts: this binary, through the `{ipc_run}`
/// placeholder the launcher fills.
fn tap_process(file: &Path, framing: Framing) -> ProcessSpec {
    let cmd = vec![
        "{ipc_run}".to_owned(),
        "port".to_owned(),
        "tap".to_owned(),
        "--in".to_owned(),
        "in".to_owned(),
        "--out".to_owned(),
        "out".to_owned(),
        "--framing".to_owned(),
        framing.as_str().to_owned(),
        "--file".to_owned(),
        file.to_string_lossy().into_owned(),
    ];
    ProcessSpec {
        cmd: Some(spanned(cmd)),
        ..ProcessSpec::default()
    }
}
