//! The bench's `rpc` row: unary echo calls over an rpc edge's Unix
//! listener, to set beside the `unix-stream` row (the raw socket beneath
//! it) in the same run.
//!
//! The link is built the way a topology wires an rpc edge with the
//! `handover` shape: the bench (the client) binds the listener in its
//! private directory and hands it to the peer (the server) as a `listen`
//! port of kind `rpc` (`protocol=bench-echo transport=unix`); the peer
//! adopts it through the child crate and accepts; the bench connects by
//! the path, before the server accepts (the connection waits in the
//! backlog, as a topology's clients do).
//!
//! Each call is one framed message each way, in gRPC's length-prefixed
//! framing: a flag byte (0, not compressed), the length as a 32-bit
//! big-endian number, then the payload. A frame is written with one
//! `write`; frames are read through a buffer, so a frame that arrived
//! whole costs one `read`. What the row adds over `unix-stream` is that
//! framing: the header, the copy into one buffer, the parsing, and reading
//! through a buffer rather than straight into the message.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};

use ipc_run_child::description::{End as ChildEnd, Params, Transport};

use super::bench_link::{
    Link, PeerReady, PeerSetup, Pending, Setup, inherited, ready, unlinked_path,
};

/// The protocol label the bench's rpc port carries.
pub const PROTOCOL: &str = "bench-echo";

/// The frame header: flag byte and 32-bit big-endian length.
const HEADER: usize = 5;

/// One side of a connection carrying length-prefixed frames, each a
/// message.
struct FramedLink {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// The frame being written, header and payload together.
    out: Vec<u8>,
}

impl FramedLink {
    fn new(stream: UnixStream, size: usize) -> io::Result<FramedLink> {
        let writer = stream.try_clone()?;
        Ok(FramedLink {
            reader: BufReader::with_capacity((HEADER + size).max(8192), stream),
            writer,
            out: Vec::with_capacity(HEADER + size),
        })
    }
}

/// The header of a frame of `len` payload bytes.
fn header(len: usize) -> io::Result<[u8; HEADER]> {
    let len = u32::try_from(len).map_err(|_| io::Error::other("a frame over 4 GiB"))?;
    let mut h = [0u8; HEADER];
    h[1..].copy_from_slice(&len.to_be_bytes());
    Ok(h)
}

/// The payload length a header announces.
fn announced(h: &[u8; HEADER]) -> io::Result<usize> {
    if h[0] != 0 {
        return Err(io::Error::other("a compressed frame (flag set)"));
    }
    Ok(u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize)
}

impl Link for FramedLink {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.out.clear();
        self.out.extend_from_slice(&header(msg.len())?);
        self.out.extend_from_slice(msg);
        self.writer.write_all(&self.out)
    }

    /// One whole frame's payload; 0 at a clean end between frames.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reader.fill_buf()?.is_empty() {
            return Ok(0);
        }
        let mut h = [0u8; HEADER];
        self.reader.read_exact(&mut h)?;
        let len = announced(&h)?;
        let into = buf
            .get_mut(..len)
            .ok_or_else(|| io::Error::other(format!("a frame of {len} bytes, more than asked")))?;
        self.reader.read_exact(into)?;
        Ok(len)
    }

    fn end(&mut self) -> io::Result<()> {
        self.writer.shutdown(std::net::Shutdown::Write)
    }
}

/// The bench's side, the client: the listener bound and handed to the
/// peer as an rpc `listen` port, and a connection to it.
pub(crate) fn bench_parent(b: &mut Setup<'_>) -> io::Result<Pending> {
    let (path, guard) = unlinked_path(b.place, "rpc.sock")?;
    b.side.guards.push(guard);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let address = path.to_string_lossy().into_owned();
    let params = Params::Rpc {
        protocol: PROTOCOL.to_owned(),
        transport: Transport::Unix,
        url: format!("unix:{address}"),
        address,
    };
    b.side
        .give(&OwnedFd::from(listener), ChildEnd::Listen, params)?;
    b.side.endpoint.paths = vec![path.clone()];
    let stream = UnixStream::connect(&path)?;
    Ok(Pending::Ready(Box::new(FramedLink::new(stream, b.size)?)))
}

/// The peer's side, the server: the adopted listener's one connection.
pub(crate) fn bench_peer(p: &PeerSetup<'_>) -> io::Result<PeerReady> {
    if !p.round_trip {
        return Err(io::Error::other("rpc is measured by round trips only"));
    }
    let listener = UnixListener::from(inherited(0)?);
    let (stream, _) = listener.accept()?;
    ready(Box::new(FramedLink::new(stream, p.size)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_messages_whole_and_end_cleanly() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut client = FramedLink::new(a, 64).unwrap();
        let mut server = FramedLink::new(b, 64).unwrap();
        let mut buf = [0u8; 64];
        client.send(&[7u8; 64]).unwrap();
        client.send(b"").unwrap();
        assert_eq!(server.recv(&mut buf).unwrap(), 64);
        assert_eq!(buf, [7u8; 64]);
        // An empty frame reads as the end, as on every message mechanism
        // (the bench never sends one otherwise); so does EOF.
        assert_eq!(server.recv(&mut buf).unwrap(), 0);
        client.end().unwrap();
        assert_eq!(server.recv(&mut buf).unwrap(), 0);
        assert_eq!(header(300).unwrap(), [0, 0, 0, 1, 44]);
        assert!(announced(&[1, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn a_frame_longer_than_the_buffer_is_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut client = FramedLink::new(a, 8).unwrap();
        let mut server = FramedLink::new(b, 8).unwrap();
        client.send(&[1u8; 16]).unwrap();
        assert!(server.recv(&mut [0u8; 8]).is_err());
    }
}
