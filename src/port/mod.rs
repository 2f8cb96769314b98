//! Port adapters: `ipc-run port read|write|tap`, meant to be a process's
//! `cmd` inside a topology. They bridge any port kind that carries data to
//! stdin/stdout, so a plain filter (`grep`, `jq`, a shell loop) can sit on
//! a message queue, a socket or a FIFO without knowing how to open it.
//!
//! - [`framing`]: how messages map to bytes on stdin/stdout (`line`,
//!   `length`, `raw`).
//! - [`kinds`]: opening each port kind, as a byte stream or as a source or
//!   sink of messages.
//! - [`ring`]: the shared-memory ring (`child::ring`) as messages.
//! - [`tap`]: `port tap` and the `run --tap EDGE=FILE` topology rewrite.
//!
//! `docs/ports.md` is the user-facing description: kinds, framing, how
//! `read` ends, exit codes.

pub mod framing;
pub mod kinds;
pub mod ring;
pub mod tap;

use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use nix::errno::Errno;

pub use framing::Framing;
use kinds::{Input, Output, Recv, Wait};

use crate::exit::ExitCode;

/// Exit status when data could not be moved: a message larger than the
/// mechanism allows, malformed `--framing length` input, an I/O error.
pub const EXIT_DATA: i32 = ExitCode::Invalid.code();

/// Bytes moved per system call on stream paths (`cat` uses 128 KiB too).
pub const STREAM_BUFFER: usize = 128 << 10;

/// `ipc-run port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PortCommand,
}

/// The adapters.
#[derive(Debug, Subcommand)]
pub enum PortCommand {
    /// Copy what arrives on PORT (a port of the calling process, described
    /// by IPC_PORT_<PORT>) to stdout.
    Read(ReadArgs),
    /// Send stdin into PORT.
    Write(WriteArgs),
    /// Copy port IN to port OUT and everything that passes to FILE (the
    /// process `run --tap` inserts).
    Tap(TapArgs),
}

/// `port read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The port name (as in the topology: `jobs`, `raw-in`).
    pub port: String,
    /// How each message is written to stdout (stream kinds copy bytes).
    #[arg(long, value_enum, default_value_t = Framing::Line)]
    pub framing: Framing,
    /// Exit after N messages (message kinds) or N connections (listeners).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Exit when nothing arrives for this long (`500ms`, `2s`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Message kinds: a zero-length message is an end marker (not
    /// printed); exit after N of them, one per writer (`write --end-marker`).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub end_markers: u64,
}

/// `port write`.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// The port name.
    pub port: String,
    /// How stdin is cut into messages (stream kinds copy bytes).
    #[arg(long, value_enum, default_value_t = Framing::Line)]
    pub framing: Framing,
    /// Message kinds: send one zero-length message when stdin ends, so a
    /// `read --end-markers N` knows this writer is done.
    #[arg(long)]
    pub end_marker: bool,
}

/// `port tap`.
#[derive(Debug, Args)]
pub struct TapArgs {
    /// The port data comes from.
    #[arg(long = "in", value_name = "PORT")]
    pub input: String,
    /// The port data goes on to.
    #[arg(long, value_name = "PORT")]
    pub out: String,
    /// The copy: written at its end, opened with O_NOFOLLOW, created 0600.
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// How each message is written to FILE (stream edges copy bytes).
    #[arg(long, value_enum, default_value_t = Framing::Line)]
    pub framing: Framing,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::topology::Millis::parse(text).map(|m| m.duration())
}

/// Why an adapter stopped early; each maps to an exit status.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The command cannot work on this port (kind, end, option).
    #[error("{0}")]
    Usage(String),
    /// The port's object could not be opened or connected.
    #[error("cannot open {what}: {source}")]
    Open {
        /// What was being opened.
        what: String,
        /// Why not.
        source: std::io::Error,
    },
    /// A message does not fit the mechanism.
    #[error("a message of {size} bytes is larger than {limit}")]
    TooLarge {
        /// The message's size (a lower bound for an unfinished line).
        size: String,
        /// The limit, named: `message_size=256 of posix-mq port jobs`.
        limit: String,
    },
    /// Input that does not follow the framing.
    #[error("stdin is not valid `--framing {framing}` input: {why}")]
    Framing {
        /// The framing.
        framing: &'static str,
        /// What is wrong.
        why: String,
    },
    /// Moving data failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// A buffer sized by the port (its largest message or record) could
    /// not be allocated.
    #[error("cannot allocate {bytes} bytes for {what}")]
    Memory {
        /// The size asked for.
        bytes: usize,
        /// What the buffer is for.
        what: String,
    },
    /// Whoever reads our stdout went away: a normal end, like `head`.
    #[error("stdout was closed")]
    StdoutClosed,
}

impl PortError {
    /// The documented exit status.
    pub fn exit_code(&self) -> i32 {
        match self {
            PortError::StdoutClosed => ExitCode::Success.code(),
            PortError::Usage(_) => ExitCode::Usage.code(),
            PortError::Open { .. } | PortError::Memory { .. } => ExitCode::Launch.code(),
            PortError::TooLarge { .. } | PortError::Framing { .. } | PortError::Io { .. } => {
                EXIT_DATA
            }
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: impl Into<std::io::Error>) -> PortError {
        PortError::Io {
            what: what.into(),
            source: source.into(),
        }
    }

    pub(crate) fn memory(bytes: usize, what: impl Into<String>) -> PortError {
        PortError::Memory {
            bytes,
            what: what.into(),
        }
    }

    pub(crate) fn open(what: impl Into<String>, source: impl Into<std::io::Error>) -> PortError {
        PortError::Open {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// Runs one adapter; prints its error, returns the exit status.
pub fn main(args: PortArgs) -> i32 {
    let outcome = match args.command {
        PortCommand::Read(args) => read(&args),
        PortCommand::Write(args) => write(&args),
        PortCommand::Tap(args) => tap::run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::Success.code(),
        Err(error) => {
            if !matches!(error, PortError::StdoutClosed) {
                let _ = writeln!(std::io::stderr(), "ipc-run port: error: {error}");
            }
            error.exit_code()
        }
    }
}

/// A zero-filled buffer of `len` bytes, allocated fallibly: `len` comes
/// from a port (its largest message or record), so it may be more than
/// this process can have.
pub(crate) fn zeroed(len: usize, what: &str) -> Result<Vec<u8>, PortError> {
    let mut buf = Vec::new();
    grow(&mut buf, len, what)?;
    Ok(buf)
}

/// Grows `buf` to `len` bytes (new bytes zero), failing instead of
/// aborting when the memory is not there.
pub(crate) fn grow(buf: &mut Vec<u8>, len: usize, what: &str) -> Result<(), PortError> {
    if len > buf.len() {
        buf.try_reserve_exact(len - buf.len())
            .map_err(|_| PortError::memory(len, what))?;
        buf.resize(len, 0);
    }
    Ok(())
}

/// The process's stdin or stdout, borrowed.
fn std_fd(fd: i32) -> Result<BorrowedFd<'static>, PortError> {
    crate::sys::fd::std_fd(fd).ok_or_else(|| {
        PortError::Usage(format!(
            "{} is closed",
            if fd == 0 { "stdin" } else { "stdout" }
        ))
    })
}

/// Writes all of `bytes` to `fd`, retrying on EINTR and short writes.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

/// Reads once into `buf`, retrying on EINTR; 0 is the end of the input.
pub(crate) fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(Errno::EINTR) => {}
            other => return other,
        }
    }
}

/// Waits until `fd` is readable (or hung up); false on timeout.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> Result<bool, Errno> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let left = match deadline {
            None => PollTimeout::NONE,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                // Round up, so a sub-millisecond rest does not spin.
                let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, left) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno),
        }
    }
}

/// Buffered stdout for messages: framed messages collect here and go out
/// in one write when the buffer fills or the source has nothing ready.
pub(crate) struct Stdout {
    fd: BorrowedFd<'static>,
    buf: Vec<u8>,
}

impl Stdout {
    fn new() -> Result<Stdout, PortError> {
        Ok(Stdout {
            fd: std_fd(1)?,
            buf: Vec::with_capacity(STREAM_BUFFER),
        })
    }

    fn message(&mut self, framing: Framing, message: &[u8]) -> Result<(), PortError> {
        if message.len() >= STREAM_BUFFER {
            // Large: straight out, not copied into the buffer first.
            self.flush()?;
            if let Some(header) = framing.header(message)? {
                stdout_write(self.fd, &header)?;
            }
            stdout_write(self.fd, message)?;
            return stdout_write(self.fd, framing.trailer(message));
        }
        framing.encode(message, &mut self.buf)?;
        if self.buf.len() >= STREAM_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<(), PortError> {
        if self.buf.is_empty() && bytes.len() >= STREAM_BUFFER / 2 {
            return stdout_write(self.fd, bytes);
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= STREAM_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), PortError> {
        if !self.buf.is_empty() {
            stdout_write(self.fd, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

fn stdout_write(fd: BorrowedFd<'_>, bytes: &[u8]) -> Result<(), PortError> {
    write_all(fd, bytes).map_err(|errno| match errno {
        Errno::EPIPE => PortError::StdoutClosed,
        errno => PortError::io("write to stdout", errno),
    })
}

/// `port read PORT`.
fn read(args: &ReadArgs) -> Result<(), PortError> {
    let mut port = open_port(&args.port)?;
    let input = kinds::open_input(&mut port, args.framing, args.count)?;
    match input {
        Input::Stream(fd) => {
            if args.count.is_some() || args.end_markers > 0 {
                return Err(PortError::Usage(format!(
                    "port `{}` is a {} byte stream: it ends at EOF, so --count and \
                     --end-markers do not apply",
                    args.port,
                    port.kind()
                )));
            }
            copy_stream_to_stdout(fd.as_fd(), args.idle_timeout)
        }
        Input::Messages(mut source) => {
            let stream_units = source.is_stream();
            if stream_units && args.end_markers > 0 {
                return Err(PortError::Usage(format!(
                    "port `{}` accepts byte-stream connections: they end at EOF, so \
                     --end-markers does not apply",
                    args.port
                )));
            }
            let count = if source.counts_connections() {
                None
            } else {
                args.count
            };
            let mut out = Stdout::new()?;
            let mut received = 0u64;
            let mut ends = 0u64;
            loop {
                if count.is_some_and(|n| received >= n) {
                    break;
                }
                let mut got = source.recv(Wait::Now)?;
                if matches!(got, Recv::Nothing) {
                    // Nothing ready: what was collected goes out before
                    // blocking, so a slow trickle is not held back.
                    out.flush()?;
                    got = source.recv(Wait::For(args.idle_timeout))?;
                }
                match got {
                    Recv::Message(message) => {
                        if stream_units {
                            out.bytes(message)?;
                        } else if message.is_empty() && args.end_markers > 0 {
                            ends += 1;
                            if ends >= args.end_markers {
                                break;
                            }
                        } else {
                            out.message(args.framing, message)?;
                            received += 1;
                        }
                    }
                    // Only after a wait: the idle timeout passed.
                    Recv::Nothing | Recv::End => break,
                }
            }
            out.flush()
        }
    }
}

/// Plain copy from a stream port to stdout.
fn copy_stream_to_stdout(from: BorrowedFd<'_>, idle: Option<Duration>) -> Result<(), PortError> {
    copy_stream(from, std_fd(1)?, idle).map_err(|failure| match failure {
        Copy::Write(Errno::EPIPE) => PortError::StdoutClosed,
        Copy::Write(errno) => PortError::io("write to stdout", errno),
        Copy::Read(errno) => PortError::io("read the port", errno),
        Copy::Poll(errno) => PortError::io("poll", errno),
    })
}

/// Which side of a copy failed.
#[derive(Debug)]
pub(crate) enum Copy {
    Read(Errno),
    Write(Errno),
    Poll(Errno),
}

/// Bytes asked of one `splice(2)`.
const SPLICE_CHUNK: usize = 1 << 20;

/// Copies `from` to `to` until EOF (or until nothing comes for `idle`).
/// With a pipe on either side, `splice(2)` moves the data without copying
/// it through this process; where the kernel refuses (`EINVAL`: a
/// terminal, a file opened for appending, no pipe at all), plain 128 KiB
/// reads and writes.
pub(crate) fn copy_stream(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    idle: Option<Duration>,
) -> Result<(), Copy> {
    let mut spliced = true;
    let mut buf = Vec::new();
    loop {
        if let Some(idle) = idle
            && !wait_readable(from, Some(idle)).map_err(Copy::Poll)?
        {
            return Ok(());
        }
        if spliced {
            match crate::sys::fd::splice(from, to, SPLICE_CHUNK) {
                Ok(0) => return Ok(()),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(Errno::EPIPE) => return Err(Copy::Write(Errno::EPIPE)),
                // Nothing was moved (EINVAL: no pipe, a terminal, an
                // appending file; or an error whose side splice does not
                // tell): plain reads and writes from here on, which report
                // a lasting error with its side.
                Err(_) => spliced = false,
            }
        }
        if buf.is_empty() {
            buf = vec![0u8; STREAM_BUFFER];
        }
        let n = read_some(from, &mut buf).map_err(Copy::Read)?;
        if n == 0 {
            return Ok(());
        }
        write_all(to, &buf[..n]).map_err(Copy::Write)?;
    }
}

/// `port write PORT`.
fn write(args: &WriteArgs) -> Result<(), PortError> {
    let mut port = open_port(&args.port)?;
    let output = kinds::open_output(&mut port)?;
    let stdin = std_fd(0)?;
    match output {
        Output::Stream(stream) => {
            if args.end_marker {
                return Err(PortError::Usage(format!(
                    "port `{}` is a {} byte stream: its reader sees EOF when this \
                     process ends, so --end-marker does not apply",
                    args.port,
                    port.kind()
                )));
            }
            copy_stream(stdin, stream.fd.as_fd(), None).map_err(|failure| match failure {
                Copy::Write(errno) => broken_port(&args.port, errno),
                Copy::Read(errno) => PortError::io("read stdin", errno),
                Copy::Poll(errno) => PortError::io("poll", errno),
            })?;
            stream.finish();
            Ok(())
        }
        Output::Messages(mut sink) => {
            let limit = sink.limit();
            let mut deframer = framing::Deframer::new(args.framing, limit.size, limit.name.clone());
            deframer.run(stdin, |message| sink.send(message))?;
            if args.end_marker {
                sink.send(&[])?;
            }
            sink.finish();
            Ok(())
        }
    }
}

fn broken_port(port: &str, errno: Errno) -> PortError {
    match errno {
        Errno::EPIPE | Errno::ECONNRESET => PortError::io(
            format!("write to port `{port}`"),
            std::io::Error::other("its reader has gone (EPIPE)"),
        ),
        errno => PortError::io(format!("write to port `{port}`"), errno),
    }
}

/// Reads `IPC_PORT_<NAME>`.
fn open_port(name: &str) -> Result<crate::child::Port, PortError> {
    crate::child::port(name).map_err(|e| PortError::Usage(e.to_string()))
}
