//! Relaying the unwired stdout and stderr of processes, line by line.
//!
//! Every record goes out as `name | bytes\n`, the name padded to the width of
//! the longest instance name. Bytes are passed through untouched (no UTF-8
//! decoding: lines are split with memchr). A line longer than [`CHUNK`] is cut
//! into records of `CHUNK` bytes; records that continue a line are marked
//! `name + bytes\n` instead of `name | `, so the original line is the
//! concatenation of its `|` record and the `+` records after it. A last line
//! without a newline is flushed at EOF with a newline added.
//!
//! Output never blocks the event loop. Records are queued per output stream
//! and written in batches of whole records of at most `PIPE_BUF` bytes, each
//! with one `write(2)`, as far as the output takes them before ipc-run waits
//! again: a batch on a pipe is atomic, so records never interleave with each
//! other or with the writes of a process wired to the same stream, and a
//! chatty process costs one system call per batch rather than per line. A
//! record longer than a batch is written on its own. The supervisor writes
//! to a pipe or terminal through an open file description of its own, made
//! non-blocking (processes wired to the same stream keep theirs blocking),
//! and to a socket with `send(MSG_DONTWAIT)`, which does not block without
//! touching the O_NONBLOCK flag the socket's other holders share;
//! it waits for POLLOUT in its poll set while a queue is not empty, and
//! stops reading the processes' pipes while a queue holds more than
//! [`HIGH_WATER`] bytes, so a stalled reader holds the processes back
//! (losslessly) instead of ipc-run. Write errors (`/dev/full`, a closed
//! pipe: SIGPIPE is ignored in ipc-run) are counted and the record is
//! dropped; the run goes on.
//!
//! With a log directory (`ipc-run run --log-dir DIR`), each instance's
//! streams are also appended, unprefixed and byte-exact, to
//! `DIR/<instance>.stdout.log` and `DIR/<instance>.stderr.log` (created 0600,
//! never through a symlink; a restarted process appends to the same files).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anstyle::{AnsiColor, Style};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

/// Longest record; a longer line is cut into records of this size.
pub const CHUNK: usize = 64 * 1024;

/// Largest batch of records written at once: `PIPE_BUF`, so that a batch
/// written to a pipe arrives whole.
const BATCH: usize = 4096;

/// Bytes queued for one of ipc-run's outputs above which the supervisor
/// stops reading the processes' pipes that feed it.
pub const HIGH_WATER: usize = 256 * 1024;

/// One record cut from a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The bytes, without the newline.
    pub bytes: &'a [u8],
    /// False when the record continues a line cut at [`CHUNK`].
    pub starts_line: bool,
}

/// Collects a stream's bytes and cuts them into records. Holds at most
/// [`CHUNK`] bytes between calls.
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
    continuing: bool,
}

impl LineBuffer {
    /// Adds `data` and hands every complete record to `emit`.
    pub fn push(&mut self, data: &[u8], emit: &mut dyn FnMut(Record<'_>)) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(offset) = memchr::memchr(b'\n', &self.pending[start..]) {
            let end = start + offset;
            self.emit_pieces(start, end, emit);
            self.continuing = false;
            start = end + 1;
        }
        // No newline in the rest: flush whole chunks of an overlong line.
        while self.pending.len() - start >= CHUNK {
            emit(Record {
                bytes: &self.pending[start..start + CHUNK],
                starts_line: !self.continuing,
            });
            self.continuing = true;
            start += CHUNK;
        }
        self.pending.drain(..start);
    }

    /// Emits a complete line `pending[start..end]`, cut at `CHUNK`.
    fn emit_pieces(&mut self, mut start: usize, end: usize, emit: &mut dyn FnMut(Record<'_>)) {
        loop {
            let piece_end = end.min(start + CHUNK);
            emit(Record {
                bytes: &self.pending[start..piece_end],
                starts_line: !self.continuing,
            });
            self.continuing = true;
            start = piece_end;
            if start >= end {
                return;
            }
        }
    }

    /// At EOF: emits a trailing partial line, if any.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Record<'_>)) {
        if !self.pending.is_empty() {
            emit(Record {
                bytes: &self.pending,
                starts_line: !self.continuing,
            });
        }
        self.pending.clear();
        self.continuing = false;
    }

    /// Bytes held, waiting for a newline.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.pending.len()
    }
}

/// Which of ipc-run's streams a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// ipc-run's stdout.
    Stdout,
    /// ipc-run's stderr.
    Stderr,
}

const PALETTE: [AnsiColor; 6] = [
    AnsiColor::Cyan,
    AnsiColor::Yellow,
    AnsiColor::Green,
    AnsiColor::Magenta,
    AnsiColor::Blue,
    AnsiColor::BrightRed,
];

/// One stream's log file; a line is ended when the next one starts (or at
/// close), so that a line cut into several records is rejoined exactly.
#[derive(Debug)]
struct LogFile {
    fd: OwnedFd,
    line_open: bool,
}

impl LogFile {
    /// Opens `name` in the log directory `dir` for appending, as a file
    /// of ours only (see [`crate::safe_file`]).
    fn open(
        dir: BorrowedFd<'_>,
        name: &Path,
        path: &Path,
    ) -> Result<LogFile, crate::safe_file::SafeFileError> {
        let fd = crate::safe_file::open_in(dir, name, path, crate::safe_file::Existing::Append)?;
        Ok(LogFile {
            fd,
            line_open: false,
        })
    }

    fn write(&mut self, record: Record<'_>, scratch: &mut Vec<u8>) -> Result<(), Errno> {
        scratch.clear();
        if record.starts_line && self.line_open {
            scratch.push(b'\n');
        }
        scratch.extend_from_slice(record.bytes);
        self.line_open = true;
        write_all(self.fd.as_fd(), scratch)
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        if self.line_open {
            let _ = write_all(self.fd.as_fd(), b"\n");
        }
    }
}

/// Writes records to ipc-run's stdout and stderr with name prefixes.
#[derive(Debug)]
pub struct LogWriter {
    out: [OwnedFd; 2],
    color: [bool; 2],
    /// Per instance: its stdout and stderr log files, with `--log-dir`.
    files: Vec<[Option<LogFile>; 2]>,
    /// Per instance: the padded name, plain and coloured.
    names: Vec<(String, String)>,
    scratch: Vec<u8>,
    /// Per output stream: whole records not written yet, from `sent` on.
    queue: [Vec<u8>; 2],
    sent: [usize; 2],
    /// Per output stream: it is a socket, written with `MSG_DONTWAIT`.
    socket: [bool; 2],
    /// Records that could not be written (EPIPE, ENOSPC, ...).
    pub write_errors: u64,
}

impl LogWriter {
    /// A writer for instances `names` (indexed as given), writing to
    /// `stdout`/`stderr`, colouring each as told.
    pub fn new(names: &[&str], stdout: OwnedFd, stderr: OwnedFd, color: [bool; 2]) -> Self {
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        let names = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let padded = format!("{name:<width$}");
                let style = Style::new().fg_color(Some(PALETTE[i % PALETTE.len()].into()));
                let coloured = format!("{style}{padded}{style:#}");
                (padded, coloured)
            })
            .collect();
        let socket = [is_socket(stdout.as_fd()), is_socket(stderr.as_fd())];
        LogWriter {
            socket,
            out: [stdout, stderr],
            color,
            files: Vec::new(),
            names,
            scratch: Vec::with_capacity(CHUNK + 128),
            queue: [Vec::with_capacity(BATCH), Vec::with_capacity(BATCH)],
            sent: [0, 0],
            write_errors: 0,
        }
    }

    /// Also appends every instance's records to `dir/<name>.stdout.log` and
    /// `dir/<name>.stderr.log`, creating `dir` (0700) if needed.
    pub fn with_log_dir(
        mut self,
        dir: &Path,
        names: &[&str],
    ) -> Result<Self, super::SuperviseError> {
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .recursive(true)
            .create(dir)
            .map_err(|source| super::SuperviseError::LogFile {
                action: "create log directory",
                path: dir.to_owned(),
                source,
            })?;
        let unsafe_file =
            |path: &Path, e: crate::safe_file::SafeFileError| super::SuperviseError::LogFile {
                action: "open log file",
                path: path.to_owned(),
                source: std::io::Error::other(e),
            };
        let dir_fd = crate::safe_file::open_checked_dir(dir).map_err(|e| unsafe_file(dir, e))?;
        for name in names {
            let mut pair = [None, None];
            for (slot, stream) in ["stdout", "stderr"].iter().enumerate() {
                let file_name = format!("{name}.{stream}.log");
                let path = dir.join(&file_name);
                let file = LogFile::open(dir_fd.as_fd(), Path::new(&file_name), &path)
                    .map_err(|e| unsafe_file(&path, e))?;
                pair[slot] = Some(file);
            }
            self.files.push(pair);
        }
        Ok(self)
    }

    /// Writes one record of `instance` to `stream`.
    pub fn write(&mut self, instance: usize, stream: Stream, record: Record<'_>) {
        let slot = stream as usize;
        if let Some(Some(file)) = self.files.get_mut(instance).map(|pair| &mut pair[slot])
            && file.write(record, &mut self.scratch).is_err()
        {
            self.write_errors += 1;
        }
        let marker: &[u8] = if record.starts_line { b" | " } else { b" + " };
        let (plain, coloured) = &self.names[instance];
        let name = if self.color[slot] {
            coloured.as_bytes()
        } else {
            plain.as_bytes()
        };
        let out = &mut self.queue[slot];
        out.extend_from_slice(name);
        out.extend_from_slice(marker);
        out.extend_from_slice(record.bytes);
        out.push(b'\n');
    }

    /// Bytes queued for output `stream`, not written yet.
    pub fn backlog(&self, stream: Stream) -> usize {
        let slot = stream as usize;
        self.queue[slot].len() - self.sent[slot]
    }

    /// Whether the queue of `stream` is over [`HIGH_WATER`]: the pipes that
    /// feed it are not read until it drains.
    pub fn stalled(&self, stream: Stream) -> bool {
        self.backlog(stream) > HIGH_WATER
    }

    /// The fd of output `stream`, to wait for POLLOUT on.
    pub fn output(&self, stream: Stream) -> BorrowedFd<'_> {
        self.out[stream as usize].as_fd()
    }

    /// Writes what the outputs take now, without blocking on a
    /// non-blocking output; call before waiting for more.
    pub fn flush(&mut self) {
        self.flush_stream(0);
        self.flush_stream(1);
    }

    fn flush_stream(&mut self, slot: usize) {
        loop {
            let rest = &self.queue[slot][self.sent[slot]..];
            if rest.is_empty() {
                self.queue[slot].clear();
                self.sent[slot] = 0;
                return;
            }
            // Whole records of at most a batch; a longer record alone.
            let window = &rest[..rest.len().min(BATCH)];
            let len = match memchr::memrchr(b'\n', window) {
                Some(end) => end + 1,
                None => memchr::memchr(b'\n', rest).map_or(rest.len(), |end| end + 1),
            };
            match write_out(self.out[slot].as_fd(), &rest[..len], self.socket[slot]) {
                Ok(0) => self.drop_queue(slot),
                Ok(n) => self.sent[slot] += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    // Compact once the written part dominates.
                    if self.sent[slot] > self.queue[slot].len() / 2 {
                        self.queue[slot].drain(..self.sent[slot]);
                        self.sent[slot] = 0;
                    }
                    return;
                }
                Err(_) => self.drop_queue(slot),
            }
        }
    }

    /// The output failed: the queued records are dropped and counted.
    fn drop_queue(&mut self, slot: usize) {
        let rest = &self.queue[slot][self.sent[slot]..];
        self.write_errors += memchr::memchr_iter(b'\n', rest).count() as u64;
        self.queue[slot].clear();
        self.sent[slot] = 0;
    }

    /// Writes what is queued, waiting for the outputs until `deadline`;
    /// what is left then is dropped and counted (a reader that stopped
    /// reading must not keep ipc-run from ending and cleaning up).
    pub fn finish(&mut self, deadline: std::time::Instant) {
        for slot in 0..2 {
            self.flush_stream(slot);
            while self.sent[slot] < self.queue[slot].len() {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
                if left.is_zero() {
                    break;
                }
                let mut fds = [PollFd::new(self.out[slot].as_fd(), PollFlags::POLLOUT)];
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(_) | Err(Errno::EINTR) => self.flush_stream(slot),
                    Err(_) => break,
                }
            }
            if self.sent[slot] < self.queue[slot].len() {
                self.drop_queue(slot);
            }
        }
    }

    /// Queues a line of ipc-run's own (a summary, a message) for stderr.
    pub fn message(&mut self, line: &str) {
        let out = &mut self.queue[1];
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        self.flush();
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.finish(std::time::Instant::now() + super::DRAIN_TIMEOUT);
    }
}

/// Whether `fd` is a socket.
fn is_socket(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::stat::SFlag;
    nix::sys::stat::fstat(fd).is_ok_and(|stat| {
        SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK
    })
}

/// One write of `buf` to an output; a socket is sent to without blocking,
/// whatever its (shared) O_NONBLOCK flag says, and without SIGPIPE.
fn write_out(fd: BorrowedFd<'_>, buf: &[u8], socket: bool) -> Result<usize, Errno> {
    use nix::sys::socket::{MsgFlags, send};
    use std::os::fd::AsRawFd;
    if socket {
        send(
            fd.as_raw_fd(),
            buf,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        )
    } else {
        nix::unistd::write(fd, buf)
    }
}

/// Writes all of `buf` to `fd`, blocking; waits for POLLOUT should the fd
/// be non-blocking (an inherited O_NONBLOCK pipe).
fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(err) => return Err(err),
                }
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut buffer = LineBuffer::default();
        let mut out = Vec::new();
        let mut emit = |r: Record<'_>| out.push((r.bytes.to_vec(), r.starts_line));
        for chunk in chunks {
            buffer.push(chunk, &mut emit);
            assert!(buffer.held() < CHUNK);
        }
        buffer.finish(&mut emit);
        out
    }

    #[test]
    fn splits_lines_across_reads() {
        let out = records(&[b"ab", b"c\nde\n\nf", b"g"]);
        assert_eq!(
            out,
            vec![
                (b"abc".to_vec(), true),
                (b"de".to_vec(), true),
                (b"".to_vec(), true),
                (b"fg".to_vec(), true),
            ]
        );
    }

    #[test]
    fn non_utf8_passes_through() {
        let out = records(&[b"\xff\xfe\x00x\n\xc3"]);
        assert_eq!(
            out,
            vec![(b"\xff\xfe\x00x".to_vec(), true), (b"\xc3".to_vec(), true)]
        );
    }

    #[test]
    fn long_lines_are_cut_and_rejoin_exactly() {
        let line: Vec<u8> = (0..(CHUNK * 3 + 17)).map(|i| (i % 251) as u8 | 1).collect();
        let line: Vec<u8> = line
            .into_iter()
            .map(|b| if b == b'\n' { b'x' } else { b })
            .collect();
        let mut input = line.clone();
        input.extend_from_slice(b"\nnext\n");
        for step in [1000, 4096, CHUNK, CHUNK + 1, input.len()] {
            let parts: Vec<&[u8]> = input.chunks(step).collect();
            let out = records(&parts);
            let first = &out[0];
            assert!(first.1);
            let mut joined = Vec::new();
            let mut n = 0;
            for (bytes, starts) in &out {
                if *starts && n > 0 {
                    break;
                }
                assert!(bytes.len() <= CHUNK);
                joined.extend_from_slice(bytes);
                n += 1;
            }
            assert_eq!(joined, line, "step {step}");
            assert_eq!(out[n], (b"next".to_vec(), true));
        }
    }

    #[test]
    fn writer_prefixes_and_pads() {
        let (r1, w1) = nix::unistd::pipe().unwrap();
        let (r2, w2) = nix::unistd::pipe().unwrap();
        let mut writer = LogWriter::new(&["a", "long"], w1, w2, [false, false]);
        writer.write(
            0,
            Stream::Stdout,
            Record {
                bytes: b"hi",
                starts_line: true,
            },
        );
        writer.write(
            1,
            Stream::Stderr,
            Record {
                bytes: b"\xff",
                starts_line: false,
            },
        );
        drop(writer);
        let read = |fd: OwnedFd| {
            let mut f = std::fs::File::from(fd);
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut v).unwrap();
            v
        };
        assert_eq!(read(r1), b"a    | hi\n");
        assert_eq!(read(r2), b"long + \xff\n");
    }

    #[test]
    fn log_files_hold_each_stream_byte_exact() {
        let dir = std::env::temp_dir().join(format!("ipc-run-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let null = || -> OwnedFd {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .unwrap()
                .into()
        };
        let mut writer = LogWriter::new(&["a"], null(), null(), [false, false])
            .with_log_dir(&dir, &["a"])
            .unwrap();
        let long: Vec<u8> = vec![b'x'; CHUNK * 2 + 3];
        let mut input = b"first\n\xff\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast");
        let mut buffer = LineBuffer::default();
        for part in input.chunks(1000) {
            buffer.push(part, &mut |r| writer.write(0, Stream::Stdout, r));
        }
        buffer.finish(&mut |r| writer.write(0, Stream::Stdout, r));
        writer.write(
            0,
            Stream::Stderr,
            Record {
                bytes: b"oops",
                starts_line: true,
            },
        );
        drop(writer);
        let mut expected = input.clone();
        expected.push(b'\n');
        assert_eq!(std::fs::read(dir.join("a.stdout.log")).unwrap(), expected);
        assert_eq!(std::fs::read(dir.join("a.stderr.log")).unwrap(), b"oops\n");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join("a.stdout.log"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_errors_are_counted() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let (_r, w) = nix::unistd::pipe().unwrap();
        let mut writer = LogWriter::new(&["a"], full.into(), w, [true, true]);
        writer.write(
            0,
            Stream::Stdout,
            Record {
                bytes: b"x",
                starts_line: true,
            },
        );
        writer.flush();
        assert_eq!(writer.write_errors, 1);
    }
}
