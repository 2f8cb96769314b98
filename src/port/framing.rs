//! Framing: how messages map to bytes on the adapters' stdin and stdout.
//!
//! | framing | stdout (`read`) | stdin (`write`) |
//! |---|---|---|
//! | `line` | each message, then `\n` unless it already ends with one | each line, without its `\n`, is a message; a last line without `\n` too |
//! | `length` | a 4-byte big-endian length, then the message | the same, parsed; binary safe |
//! | `raw` | the messages' bytes back to back | each `read(2)` of stdin (at most the largest message) is a message |
//!
//! Stream kinds carry no messages: every framing copies their bytes as
//! they are.

use std::os::fd::BorrowedFd;

use clap::ValueEnum;

use super::PortError;

/// `--framing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Framing {
    /// One line per message.
    Line,
    /// A 4-byte big-endian length prefix per message.
    Length,
    /// No framing: bytes as they come.
    Raw,
}

impl Framing {
    /// The name, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Line => "line",
            Framing::Length => "length",
            Framing::Raw => "raw",
        }
    }

    /// What goes before `message`: its 4-byte length (`length`), else
    /// nothing. A message the 4 bytes cannot count is an error, never a
    /// truncated length.
    pub fn header(self, message: &[u8]) -> Result<Option<[u8; 4]>, PortError> {
        match self {
            Framing::Length => u32::try_from(message.len())
                .map(|len| Some(len.to_be_bytes()))
                .map_err(|_| PortError::TooLarge {
                    size: message.len().to_string(),
                    limit: format!("what `--framing length` can count ({} bytes)", u32::MAX),
                }),
            Framing::Line | Framing::Raw => Ok(None),
        }
    }

    /// What goes after `message`: a newline (`line`, unless it ends with
    /// one), else nothing.
    pub fn trailer(self, message: &[u8]) -> &'static [u8] {
        match self {
            Framing::Line if message.last() != Some(&b'\n') => b"\n",
            _ => b"",
        }
    }

    /// Appends `message`, framed, to `out`; the memory for it may not be
    /// there (a message can be as large as a ring's largest record).
    pub fn encode(self, message: &[u8], out: &mut Vec<u8>) -> Result<(), PortError> {
        let header = self.header(message)?;
        let trailer = self.trailer(message);
        let need = message.len().saturating_add(4 + trailer.len());
        out.try_reserve(need)
            .map_err(|_| PortError::memory(out.len().saturating_add(need), "a framed message"))?;
        if let Some(header) = header {
            out.extend_from_slice(&header);
        }
        out.extend_from_slice(message);
        out.extend_from_slice(trailer);
        Ok(())
    }

    /// The length of the longest prefix of `bytes` made of whole units of
    /// a byte stream (lines, length frames; all of it for `raw`): the part
    /// that may go out without splitting a unit.
    pub fn whole_prefix(self, bytes: &[u8]) -> usize {
        match self {
            Framing::Raw => bytes.len(),
            Framing::Line => memchr::memrchr(b'\n', bytes).map_or(0, |i| i + 1),
            Framing::Length => {
                let mut at = 0;
                while let Some(header) = bytes.get(at..at + 4) {
                    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                    let end = (at + 4).saturating_add(len as usize);
                    if end > bytes.len() {
                        break;
                    }
                    at = end;
                }
                at
            }
        }
    }
}

/// The most a [`Deframer`] allocates before it has seen a message that
/// needs more: 1 MiB and the framing (a socket's message buffer).
pub const INITIAL_MOST: usize = (1 << 20) + 5;

/// Cuts a byte stream (stdin) into messages, reusing one buffer.
pub struct Deframer {
    framing: Framing,
    limit: usize,
    limit_name: String,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Deframer {
    /// A deframer for messages of at most `limit` bytes; `limit_name` says
    /// where the limit comes from, for the error. The buffer starts with
    /// room for the largest message with its framing, up to
    /// [`INITIAL_MOST`], and at least a large read so small messages are cut
    /// out of big reads; beyond that it grows only while a message does not
    /// fit: the limit comes from the port (a ring's capacity) and may be
    /// far more than any input holds, or than this process may allocate.
    pub fn new(framing: Framing, limit: usize, limit_name: String) -> Deframer {
        let size = limit
            .saturating_add(5)
            .clamp(super::STREAM_BUFFER, INITIAL_MOST);
        Deframer {
            framing,
            limit,
            limit_name,
            buf: vec![0; size],
            start: 0,
            end: 0,
        }
    }

    fn too_large(&self, size: String) -> PortError {
        PortError::TooLarge {
            size,
            limit: self.limit_name.clone(),
        }
    }

    /// The most the buffer ever needs: the largest message with its
    /// framing (a 4-byte length, or a newline) and one byte more, which
    /// tells a message one byte too large from a whole one.
    fn most(&self) -> usize {
        self.limit.saturating_add(5)
    }

    /// Doubles the buffer (to at most [`Deframer::most`]); false when it
    /// is that large already.
    fn grow(&mut self) -> Result<bool, PortError> {
        let most = self.most();
        if self.buf.len() >= most {
            return Ok(false);
        }
        let len = self.buf.len().saturating_mul(2).min(most);
        super::grow(
            &mut self.buf,
            len,
            &format!("a message up to {}", self.limit_name),
        )?;
        Ok(true)
    }

    /// Reads more input after the pending bytes, moving them to the front
    /// first and growing the buffer when they fill it; returns 0 at the end
    /// of the input.
    fn fill(&mut self, input: BorrowedFd<'_>) -> Result<usize, PortError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() && !self.grow()? {
            // The callers' limit checks keep this from happening: a full
            // buffer of the largest size holds a message over the limit.
            return Err(self.too_large(format!("at least {}", self.end)));
        }
        let n = super::read_some(input, &mut self.buf[self.end..])
            .map_err(|e| PortError::io("read stdin", e))?;
        self.end += n;
        Ok(n)
    }

    /// Calls `send` with each message of `input` until it ends.
    pub fn run(
        &mut self,
        input: BorrowedFd<'_>,
        mut send: impl FnMut(&[u8]) -> Result<(), PortError>,
    ) -> Result<(), PortError> {
        match self.framing {
            Framing::Raw => loop {
                // Never read more than one message may hold; a read that
                // fills the buffer makes it larger for the next one, if
                // the memory is there (else reads stay this size).
                let most = self.limit.clamp(1, self.buf.len());
                let n = super::read_some(input, &mut self.buf[..most])
                    .map_err(|e| PortError::io("read stdin", e))?;
                if n == 0 {
                    return Ok(());
                }
                send(&self.buf[..n])?;
                if n == self.buf.len() && n < self.limit {
                    let _ = self.grow();
                }
            },
            Framing::Line => loop {
                let mut scan = self.start;
                while let Some(i) = memchr::memchr(b'\n', &self.buf[scan..self.end]) {
                    let newline = scan + i;
                    let line = &self.buf[self.start..newline];
                    if line.len() > self.limit {
                        return Err(self.too_large(line.len().to_string()));
                    }
                    send(line)?;
                    self.start = newline + 1;
                    scan = self.start;
                }
                let pending = self.end - self.start;
                if pending > self.limit {
                    return Err(self.too_large(format!("at least {pending}")));
                }
                if self.fill(input)? == 0 {
                    if self.end > self.start {
                        send(&self.buf[self.start..self.end])?;
                    }
                    return Ok(());
                }
            },
            Framing::Length => loop {
                while self.end - self.start >= 4 {
                    let h = &self.buf[self.start..self.start + 4];
                    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
                    if len > self.limit {
                        return Err(self.too_large(len.to_string()));
                    }
                    if self.end - self.start - 4 < len {
                        break;
                    }
                    let body = self.start + 4;
                    send(&self.buf[body..body + len])?;
                    self.start = body + len;
                }
                if self.fill(input)? == 0 {
                    if self.end > self.start {
                        return Err(PortError::Framing {
                            framing: "length",
                            why: format!(
                                "it ends inside a frame ({} byte(s) left over)",
                                self.end - self.start
                            ),
                        });
                    }
                    return Ok(());
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes() {
        let mut out = Vec::new();
        Framing::Line.encode(b"a", &mut out).unwrap();
        Framing::Line.encode(b"b\n", &mut out).unwrap();
        Framing::Line.encode(b"", &mut out).unwrap();
        assert_eq!(out, b"a\nb\n\n");
        out.clear();
        Framing::Length.encode(b"xyz", &mut out).unwrap();
        assert_eq!(out, b"\0\0\0\x03xyz");
    }

    #[test]
    fn whole_prefixes() {
        assert_eq!(Framing::Line.whole_prefix(b"a\nb\nc"), 4);
        assert_eq!(Framing::Line.whole_prefix(b"abc"), 0);
        assert_eq!(Framing::Raw.whole_prefix(b"abc"), 3);
        assert_eq!(Framing::Length.whole_prefix(b"\0\0\0\x01a\0\0\0\x02b"), 5);
        assert_eq!(Framing::Length.whole_prefix(b"\0\0"), 0);
    }

    fn deframe(framing: Framing, limit: usize, input: &[u8]) -> Result<Vec<Vec<u8>>, PortError> {
        let (read, write) = nix::unistd::pipe().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = super::super::write_all(std::os::fd::AsFd::as_fd(&write), &input);
        });
        let mut got = Vec::new();
        let outcome = Deframer::new(framing, limit, "the limit".into()).run(
            std::os::fd::AsFd::as_fd(&read),
            |m| {
                got.push(m.to_vec());
                Ok(())
            },
        );
        drop(read);
        writer.join().unwrap();
        outcome.map(|()| got)
    }

    #[test]
    fn deframes_lines_and_lengths() {
        assert_eq!(
            deframe(Framing::Line, 10, b"a\n\nbc\nd").unwrap(),
            [&b"a"[..], b"", b"bc", b"d"]
        );
        assert_eq!(
            deframe(Framing::Length, 10, b"\0\0\0\x02hi\0\0\0\0").unwrap(),
            [&b"hi"[..], b""]
        );
        assert!(matches!(
            deframe(Framing::Line, 3, b"abcd\n"),
            Err(PortError::TooLarge { .. })
        ));
        assert!(matches!(
            deframe(Framing::Length, 3, b"\0\0\0\x04abcd"),
            Err(PortError::TooLarge { .. })
        ));
        assert!(matches!(
            deframe(Framing::Length, 10, b"\0\0\0\x04ab"),
            Err(PortError::Framing { .. })
        ));
        let big = vec![b'x'; 300_000];
        let got = deframe(Framing::Raw, 1000, &big).unwrap();
        assert!(got.iter().all(|m| m.len() <= 1000));
        assert_eq!(got.concat().len(), 300_000);
    }
}
