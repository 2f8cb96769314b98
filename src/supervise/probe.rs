//! Readiness probes of server-bound rpc endpoints: is the address served?
//!
//! A server that binds its own address (`endpoint = "server-bound"`) says
//! nothing when it serves, so ipc-run asks: `connect` succeeds once a
//! connection is accepted; `grpc-health` sends the one RPC
//! `grpc.health.v1.Health/Check` over cleartext HTTP/2 and succeeds on the
//! answer `SERVING`. An [`Attempt`] is one try on a non-blocking socket
//! that the supervisor's epoll set watches: each event moves it one step,
//! nothing here waits. The supervisor retries a failed attempt after the
//! probe's interval, and bounds each attempt by [`ATTEMPT_TIMEOUT`].
//!
//! The HTTP/2 client is the smallest that one unary call needs: the
//! client preface, an empty SETTINGS, a HEADERS frame whose fields are
//! literals or static-table entries (so no HPACK state is kept), one DATA
//! frame carrying the gRPC length prefix and an empty
//! `HealthCheckRequest` (service `""`: the server as a whole). Of the
//! answer it reads frame headers, the SETTINGS it must acknowledge, and
//! the first DATA on stream 1, whose message is a `HealthCheckResponse`
//! (field 1, varint: 1 = SERVING). Response headers are not decoded (that
//! needs HPACK's Huffman code and dynamic table); a stream that ends
//! without a message is reported as such, which is what a server without
//! the health service answers (`UNIMPLEMENTED` in its trailers).

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrLike, UnixAddr, connect,
    getsockopt, socket, sockopt,
};

use super::events::Token;
use super::timers::Deadline;
use super::{Runtime, State, Supervisor};
use crate::topology::ProbeKind;

/// How long one attempt may take from connect to answer before it counts
/// as failed and the next one starts.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// The most of an answer read: a health answer is a few dozen bytes.
const MAX_ANSWER: usize = 16 * 1024;

/// Where a server-bound endpoint is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A Unix stream socket at this path.
    Unix(String),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl Target {
    /// `address` (filled in) of the given transport.
    pub(crate) fn parse(unix: bool, address: &str) -> Option<Target> {
        if unix {
            return Some(Target::Unix(address.to_owned()));
        }
        address.parse().ok().map(Target::Tcp)
    }
}

/// What an attempt waits for, or how it ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Call again when the socket is writable (`true`) or readable.
    Wait { write: bool },
    /// The endpoint is served.
    Served,
    /// This attempt failed, for this reason.
    Failed(String),
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Connecting,
    Sending,
    Answering,
}

/// What an attempt asks once connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ask {
    /// Nothing: the connection is the answer.
    Connect,
    /// `grpc.health.v1.Health/Check`, `SERVING` wanted.
    GrpcHealth,
    /// `GET path` over HTTP/1.1, a 2xx status wanted (a health check).
    Http {
        /// The request target.
        path: String,
        /// The `Host` header.
        host: String,
    },
}

impl From<ProbeKind> for Ask {
    fn from(kind: ProbeKind) -> Ask {
        match kind {
            ProbeKind::Connect => Ask::Connect,
            ProbeKind::GrpcHealth => Ask::GrpcHealth,
        }
    }
}

/// One probe attempt on a non-blocking socket.
#[derive(Debug)]
pub(crate) struct Attempt {
    socket: OwnedFd,
    kind: Ask,
    phase: Phase,
    out: Vec<u8>,
    sent: usize,
    answer: Vec<u8>,
    /// The server's SETTINGS were acknowledged.
    acked: bool,
}

impl Attempt {
    /// Starts connecting; the step says what to wait for.
    pub(crate) fn start(target: &Target, kind: Ask) -> Result<(Attempt, Step), String> {
        let family = match target {
            Target::Unix(_) => AddressFamily::Unix,
            Target::Tcp(SocketAddr::V4(_)) => AddressFamily::Inet,
            Target::Tcp(SocketAddr::V6(_)) => AddressFamily::Inet6,
        };
        let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
        let socket = socket(family, SockType::Stream, flags, None).map_err(|e| e.to_string())?;
        let result = match target {
            Target::Unix(path) => {
                UnixAddr::new(path.as_str()).and_then(|a| connect_to(&socket, &a))
            }
            Target::Tcp(SocketAddr::V4(a)) => connect_to(&socket, &SockaddrIn::from(*a)),
            Target::Tcp(SocketAddr::V6(a)) => connect_to(&socket, &SockaddrIn6::from(*a)),
        };
        let mut attempt = Attempt {
            socket,
            kind,
            phase: Phase::Connecting,
            out: Vec::new(),
            sent: 0,
            answer: Vec::new(),
            acked: false,
        };
        let step = match result {
            Ok(()) => attempt.connected(),
            // A TCP connect in progress. (A Unix connect never is: its
            // EAGAIN, a full backlog, is a failure to retry, not a wait.)
            Err(Errno::EINPROGRESS) => Step::Wait { write: true },
            Err(errno) => Step::Failed(connect_failure(errno)),
        };
        Ok((attempt, step))
    }

    /// The socket, to watch.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// The socket is ready for what the last step waited for.
    pub(crate) fn advance(&mut self) -> Step {
        match self.phase {
            Phase::Connecting => match getsockopt(&self.socket, sockopt::SocketError) {
                Ok(0) => self.connected(),
                Ok(errno) => Step::Failed(connect_failure(Errno::from_raw(errno))),
                Err(errno) => Step::Failed(connect_failure(errno)),
            },
            Phase::Sending => self.send(),
            Phase::Answering => self.read_answer(),
        }
    }

    fn connected(&mut self) -> Step {
        self.out = match &self.kind {
            Ask::Connect => return Step::Served,
            Ask::GrpcHealth => health_request(),
            Ask::Http { path, host } => format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ipc-run\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
        };
        self.phase = Phase::Sending;
        self.send()
    }

    fn send(&mut self) -> Step {
        while self.sent < self.out.len() {
            match nix::unistd::write(&self.socket, &self.out[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(Errno::EAGAIN) => return Step::Wait { write: true },
                Err(Errno::EINTR) => {}
                Err(errno) => {
                    return Step::Failed(format!("sending the health check: {}", errno.desc()));
                }
            }
        }
        self.phase = Phase::Answering;
        Step::Wait { write: false }
    }

    fn read_answer(&mut self) -> Step {
        let mut buf = [0u8; 4096];
        loop {
            match nix::unistd::read(&self.socket, &mut buf) {
                Ok(0) if matches!(self.kind, Ask::Http { .. }) => {
                    return http_status(&self.answer).unwrap_or_else(|| {
                        Step::Failed("the server closed the connection before answering".into())
                    });
                }
                Ok(0) => {
                    return match parse_answer(&self.answer) {
                        Answer::Pending => {
                            Step::Failed("the server closed the connection before answering".into())
                        }
                        done => done.step(),
                    };
                }
                Ok(n) => {
                    self.answer.extend_from_slice(&buf[..n]);
                    if self.answer.len() > MAX_ANSWER {
                        return Step::Failed("an answer too long for a health check".into());
                    }
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => {}
                Err(errno) => return Step::Failed(format!("reading the answer: {}", errno.desc())),
            }
        }
        if matches!(self.kind, Ask::Http { .. }) {
            return http_status(&self.answer).unwrap_or(Step::Wait { write: false });
        }
        if !self.acked && server_settings_seen(&self.answer) {
            // HTTP/2 asks for the acknowledgement; 9 bytes fit any socket
            // buffer, and a server that misses it still answers.
            self.acked = true;
            let _ = nix::unistd::write(&self.socket, &settings_ack());
        }
        parse_answer(&self.answer).step()
    }
}

/// The verdict of an HTTP answer once its status line is complete: a 2xx
/// status is served.
fn http_status(answer: &[u8]) -> Option<Step> {
    let end = memchr::memmem::find(answer, b"\r\n")?;
    let line = String::from_utf8_lossy(&answer[..end]);
    let mut words = line.split(' ');
    let code = match (words.next(), words.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => code.parse::<u16>().ok(),
        _ => None,
    };
    Some(match code {
        Some(200..=299) => Step::Served,
        Some(code) => Step::Failed(format!("HTTP status {code}")),
        None => Step::Failed(format!(
            "not an HTTP answer: {:?}",
            line.chars().take(40).collect::<String>()
        )),
    })
}

fn connect_to<A: SockaddrLike>(socket: &OwnedFd, addr: &A) -> Result<(), Errno> {
    connect(socket.as_raw_fd(), addr)
}

fn connect_failure(errno: Errno) -> String {
    match errno {
        Errno::ENOENT => "no socket file yet (connect: ENOENT)".to_owned(),
        Errno::ECONNREFUSED => "connection refused (ECONNREFUSED)".to_owned(),
        Errno::EAGAIN => "the server's listen backlog is full (connect: EAGAIN)".to_owned(),
        other => format!("connect: {}", other.desc()),
    }
}

/// What the answer read so far says.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Not enough yet.
    Pending,
    /// The health status (1 = SERVING).
    Status(u64),
    /// The exchange ended otherwise, for this reason.
    Ended(String),
}

impl Answer {
    fn step(self) -> Step {
        match self {
            Answer::Pending => Step::Wait { write: false },
            Answer::Status(1) => Step::Served,
            Answer::Status(status) => {
                Step::Failed(format!("health status {} ({status})", status_name(status)))
            }
            Answer::Ended(why) => Step::Failed(why),
        }
    }
}

fn status_name(status: u64) -> &'static str {
    match status {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "unexpected",
    }
}

const FRAME_DATA: u8 = 0;
const FRAME_HEADERS: u8 = 1;
const FRAME_RST_STREAM: u8 = 3;
const FRAME_SETTINGS: u8 = 4;
const FRAME_GOAWAY: u8 = 7;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const STREAM: u32 = 1;

/// The path of the one RPC the probe makes.
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK string literal, not Huffman-coded; lengths stay below 127.
fn literal(out: &mut Vec<u8>, text: &str) {
    out.push(text.len() as u8);
    out.extend_from_slice(text.as_bytes());
}

/// The request bytes: preface, SETTINGS, HEADERS, DATA.
fn health_request() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, FRAME_SETTINGS, 0, 0, &[]);
    let mut headers = vec![
        0x83, // :method POST (static index 3)
        0x86, // :scheme http (static index 6)
        0x04, // :path, literal value without indexing (name index 4)
    ];
    literal(&mut headers, HEALTH_CHECK);
    headers.push(0x01); // :authority (name index 1)
    literal(&mut headers, "localhost");
    headers.extend_from_slice(&[0x0f, 0x10]); // content-type (name index 31)
    literal(&mut headers, "application/grpc");
    headers.push(0x00); // te, a new name
    literal(&mut headers, "te");
    literal(&mut headers, "trailers");
    frame(&mut out, FRAME_HEADERS, FLAG_END_HEADERS, STREAM, &headers);
    // Not compressed, 0 bytes: an empty HealthCheckRequest (service "").
    frame(
        &mut out,
        FRAME_DATA,
        FLAG_END_STREAM,
        STREAM,
        &[0, 0, 0, 0, 0],
    );
    out
}

/// Reads the frames in `bytes`: the first gRPC message on stream 1, or
/// how the exchange ended without one.
fn parse_answer(bytes: &[u8]) -> Answer {
    let mut message = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let (kind, flags) = (rest[3], rest[4]);
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        if rest.len() < 9 + len {
            break;
        }
        let payload = &rest[9..9 + len];
        rest = &rest[9 + len..];
        match kind {
            FRAME_DATA if stream == STREAM => {
                let body = unpad(payload, flags);
                message.extend_from_slice(body);
                if let Some(status) = health_status(&message) {
                    return Answer::Status(status);
                }
            }
            FRAME_HEADERS if stream == STREAM && flags & FLAG_END_STREAM != 0 => {
                return Answer::Ended(
                    "the server ended the call without a health status (does it serve grpc.health.v1.Health? its grpc-status is in the trailers)"
                        .into(),
                );
            }
            FRAME_RST_STREAM if stream == STREAM => {
                let code = payload
                    .get(..4)
                    .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                return Answer::Ended(format!("the server reset the call (HTTP/2 error {code})"));
            }
            FRAME_GOAWAY => {
                let code = payload
                    .get(4..8)
                    .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                return Answer::Ended(format!(
                    "the server sent GOAWAY (HTTP/2 error {code}); is it an HTTP/2 (gRPC) server?"
                ));
            }
            _ => {}
        }
    }
    if bytes.len() >= 9 && bytes[3] > 9 {
        // Not a frame at all: something else answers at this address.
        return Answer::Ended("the answer is not HTTP/2; is the server a gRPC server?".into());
    }
    Answer::Pending
}

fn unpad(payload: &[u8], flags: u8) -> &[u8] {
    if flags & FLAG_PADDED == 0 {
        return payload;
    }
    let Some((&pad, body)) = payload.split_first() else {
        return &[];
    };
    &body[..body.len().saturating_sub(pad as usize)]
}

/// The status of a complete gRPC message holding a `HealthCheckResponse`
/// (field 1, varint), 0 when the field is absent (proto3's default).
fn health_status(message: &[u8]) -> Option<u64> {
    let len = u32::from_be_bytes(message.get(1..5)?.try_into().ok()?) as usize;
    let body = message.get(5..5 + len)?;
    let mut fields = body;
    while let Some((&tag, rest)) = fields.split_first() {
        let (value, rest) = varint(rest)?;
        if tag == 0x08 {
            return Some(value);
        }
        // Only varint fields are expected; anything else ends the scan.
        if tag & 0x7 != 0 {
            break;
        }
        fields = rest;
    }
    Some(0)
}

fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (k, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * k);
        if b & 0x80 == 0 {
            return Some((value, &bytes[k + 1..]));
        }
    }
    None
}

/// Whether the frames in `bytes` include the server's own SETTINGS.
fn server_settings_seen(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        if rest[3] == FRAME_SETTINGS && rest[4] & FLAG_ACK == 0 {
            return true;
        }
        rest = rest.get(9 + len..).unwrap_or(&[]);
    }
    false
}

/// The SETTINGS acknowledgement ipc-run owes a server that sent SETTINGS.
fn settings_ack() -> Vec<u8> {
    let mut out = Vec::new();
    frame(&mut out, FRAME_SETTINGS, FLAG_ACK, 0, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &[u8]) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn serving_is_read_from_the_first_data_frame() {
        let mut answer = Vec::new();
        frame(&mut answer, FRAME_SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        frame(
            &mut answer,
            FRAME_HEADERS,
            FLAG_END_HEADERS,
            STREAM,
            &[0x88],
        );
        assert_eq!(parse_answer(&answer), Answer::Pending);
        frame(&mut answer, FRAME_DATA, 0, STREAM, &message(&[0x08, 0x01]));
        assert_eq!(parse_answer(&answer), Answer::Status(1));
    }

    #[test]
    fn a_message_split_across_frames_and_padding_is_joined() {
        let m = message(&[0x08, 0x02]);
        let mut answer = Vec::new();
        frame(&mut answer, FRAME_DATA, 0, STREAM, &m[..3]);
        assert_eq!(parse_answer(&answer), Answer::Pending);
        let mut padded = vec![2];
        padded.extend_from_slice(&m[3..]);
        padded.extend_from_slice(&[0, 0]);
        frame(&mut answer, FRAME_DATA, FLAG_PADDED, STREAM, &padded);
        assert_eq!(parse_answer(&answer), Answer::Status(2));
        assert!(
            matches!(Answer::Status(2).step(), Step::Failed(why) if why.contains("NOT_SERVING"))
        );
    }

    #[test]
    fn an_empty_response_is_unknown_and_trailers_only_is_no_status() {
        let mut answer = Vec::new();
        frame(&mut answer, FRAME_DATA, 0, STREAM, &message(&[]));
        assert_eq!(parse_answer(&answer), Answer::Status(0));
        let mut trailers = Vec::new();
        frame(
            &mut trailers,
            FRAME_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            STREAM,
            &[0x88],
        );
        assert!(matches!(parse_answer(&trailers), Answer::Ended(_)));
    }

    #[test]
    fn an_http_answer_is_judged_by_its_status_line() {
        assert_eq!(http_status(b"HTTP/1.1 200 OK\r\n"), Some(Step::Served));
        assert_eq!(
            http_status(b"HTTP/1.0 204 No Content\r\nX: y"),
            Some(Step::Served)
        );
        assert_eq!(
            http_status(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(Step::Failed("HTTP status 503".into()))
        );
        assert_eq!(
            http_status(b"HTTP/1.1 200 O"),
            None,
            "line not complete yet"
        );
        assert!(matches!(http_status(b"SSH-2.0\r\n"), Some(Step::Failed(_))));
    }

    #[test]
    fn the_request_is_preface_settings_headers_and_data() {
        let request = health_request();
        assert!(request.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        let frames = &request[24..];
        assert_eq!(&frames[..9], &[0, 0, 0, FRAME_SETTINGS, 0, 0, 0, 0, 0]);
        assert!(
            request
                .windows(HEALTH_CHECK.len())
                .any(|w| w == HEALTH_CHECK.as_bytes())
        );
        assert!(request.ends_with(&[
            0,
            0,
            5,
            FRAME_DATA,
            FLAG_END_STREAM,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0
        ]));
        assert_eq!(
            settings_ack(),
            vec![0, 0, 0, FRAME_SETTINGS, FLAG_ACK, 0, 0, 0, 0]
        );
    }
}

// ---- the supervisor's side ----

/// A server-bound endpoint an instance serves, from the plan.
#[derive(Debug)]
pub(crate) struct Spec {
    channel: String,
    kind: ProbeKind,
    unix: bool,
    /// The address template (placeholders filled at the first attempt).
    address: String,
    interval: Duration,
}

/// Where an instance's probe is in its current run.
#[derive(Debug, Default)]
pub(crate) enum Run {
    /// Not probed in this run: ready as its `ready` says.
    #[default]
    Off,
    /// To be probed once its `ready` is told (at once for `started`).
    Due,
    /// Attempts under way; the current one, if connected or connecting.
    Trying { attempt: u32, conn: Option<Attempt> },
    /// The endpoint was served in this run.
    Passed,
}

/// The probes of a run: each instance's spec and state.
#[derive(Debug, Default)]
pub(crate) struct Probes {
    specs: Vec<Option<Spec>>,
    runs: Vec<Run>,
    /// The last failure of each instance's current run, for the timeout.
    last_failure: Vec<Option<String>>,
}

impl Probes {
    /// The probes of a reloaded `plan` (`src/supervise/reload.rs`): each
    /// instance's spec found again among the live channels (not in
    /// `removed_channels`), room for the added slots; the runs under way
    /// are kept (a changed instance is being stopped; its next run is
    /// probed as its new plan says).
    pub(crate) fn rewire(
        &mut self,
        plan: &crate::plan::Plan,
        removed_channels: &std::collections::HashSet<usize>,
    ) {
        let count = plan.processes.len();
        self.specs = specs_of(plan, removed_channels);
        self.runs.resize_with(count, || Run::Off);
        self.last_failure.resize(count, None);
    }

    /// The probe of each instance that serves a server-bound endpoint.
    pub(crate) fn new(plan: &crate::plan::Plan) -> Probes {
        let count = plan.processes.len();
        let specs = specs_of(plan, &std::collections::HashSet::new());
        Probes {
            specs,
            runs: (0..count).map(|_| Run::Off).collect(),
            last_failure: vec![None; count],
        }
    }

    /// A new run of `i` whose readiness is awaited (`probed`): its probe
    /// is due; otherwise it is not probed.
    pub(crate) fn spawned(&mut self, i: usize, probed: bool) {
        self.last_failure[i] = None;
        self.runs[i] = if probed && self.specs[i].is_some() {
            Run::Due
        } else {
            Run::Off
        };
    }

    /// The filled-in address of `i`'s endpoint.
    pub(crate) fn address_of(&self, i: usize, runtime: &dyn Fill) -> Option<String> {
        runtime.fill_template(&self.specs[i].as_ref()?.address)
    }

    /// Whether `i`'s readiness holds for what starts now: sticky without a
    /// probe; with one, only while the current run's endpoint has been
    /// served (a restarted server is probed again before its dependents
    /// that start after the restart).
    pub(crate) fn serving(&self, i: usize) -> bool {
        self.specs[i].is_none() || matches!(self.runs[i], Run::Passed)
    }

    /// Whether `i` has a probe at all.
    pub(crate) fn has(&self, i: usize) -> bool {
        self.specs[i].is_some()
    }

    /// Why `i` was not ready: the endpoint, its address and the last
    /// failure, when it was probed.
    pub(crate) fn why_not(
        &self,
        i: usize,
        address: Option<String>,
        within_ms: u64,
    ) -> Option<String> {
        let spec = self.specs[i].as_ref()?;
        if matches!(self.runs[i], Run::Off | Run::Passed) {
            return None;
        }
        let address = address.unwrap_or_else(|| spec.address.clone());
        let last = self.last_failure[i]
            .as_deref()
            .unwrap_or("no attempt finished");
        Some(format!(
            "endpoint `{}` at {address} not served within {within_ms}ms (probe {}); last attempt: {last}",
            spec.channel,
            spec.kind.as_str()
        ))
    }
}

/// The probe of each instance of `plan` that serves a server-bound
/// endpoint of a channel not in `removed_channels`. A name a reload left
/// behind in a tombstone slot and took again maps to its later, live slot.
fn specs_of(
    plan: &crate::plan::Plan,
    removed_channels: &std::collections::HashSet<usize>,
) -> Vec<Option<Spec>> {
    use crate::plan::{EndpointPlan, Mechanism, RpcParams, Transport};
    let count = plan.processes.len();
    let mut specs: Vec<Option<Spec>> = (0..count).map(|_| None).collect();
    let index: std::collections::HashMap<&str, usize> = plan
        .processes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_ref(), i))
        .collect();
    for (c, channel) in plan.channels.iter().enumerate() {
        let Mechanism::Rpc(rpc) = &channel.mechanism else {
            continue;
        };
        let RpcParams {
            transport,
            address,
            endpoint,
            ..
        } = &**rpc;
        let Some(probe) = &endpoint.probe else {
            continue;
        };
        if removed_channels.contains(&c) {
            continue;
        }
        let address = match transport {
            Transport::Tcp => crate::mechanism::edge::address_with_port(address, &channel.id),
            Transport::Unix => address.clone(),
        };
        for end in channel.to() {
            if let EndpointPlan::Port { process, .. } = end
                && let Some(&i) = index.get(&**process)
            {
                specs[i] = Some(Spec {
                    channel: channel.id.to_string(),
                    kind: probe.kind,
                    unix: *transport == Transport::Unix,
                    address: address.clone(),
                    interval: Duration::from_millis(probe.interval_ms),
                });
            }
        }
    }
    specs
}

impl<R: Runtime> Supervisor<'_, R> {
    /// Whether the probe still gates the readiness of `i`'s current run;
    /// starts it when it is due.
    pub(super) fn probe_gates(&mut self, i: usize) -> bool {
        match self.probes.runs[i] {
            Run::Off | Run::Passed => false,
            Run::Trying { .. } => true,
            Run::Due => {
                self.probes.runs[i] = Run::Trying {
                    attempt: 0,
                    conn: None,
                };
                self.probe_attempt(i);
                true
            }
        }
    }

    /// The filled-in address of `i`'s endpoint.
    fn probe_address(&self, i: usize) -> Option<String> {
        let spec = self.probes.specs[i].as_ref()?;
        self.runtime.fill(&spec.address)
    }
}

/// A runtime's placeholder filling, object-safe.
pub(crate) trait Fill {
    fn fill_template(&self, template: &str) -> Option<String>;
}

impl<R: Runtime> Fill for R {
    fn fill_template(&self, template: &str) -> Option<String> {
        self.fill(template)
    }
}

impl<R: Runtime> Supervisor<'_, R> {
    /// Starts the next attempt of `i`'s probe.
    fn probe_attempt(&mut self, i: usize) {
        let Some(spec) = self.probes.specs[i].as_ref() else {
            return;
        };
        let (kind, unix) = (spec.kind, spec.unix);
        let address = self.probe_address(i);
        let target = address.as_deref().and_then(|a| Target::parse(unix, a));
        let Some(target) = target else {
            self.probe_failed(i, "the address could not be resolved".into());
            return;
        };
        match Attempt::start(&target, kind.into()) {
            Ok((conn, step)) => {
                if let Run::Trying {
                    conn: slot,
                    attempt,
                } = &mut self.probes.runs[i]
                {
                    *attempt += 1;
                    let attempt = *attempt;
                    let generation = self.instances[i].generation;
                    *slot = Some(conn);
                    self.timers.add(
                        Instant::now() + ATTEMPT_TIMEOUT,
                        Deadline::Probe {
                            instance: i,
                            generation,
                            attempt,
                        },
                    );
                }
                self.probe_step(i, step, None);
            }
            Err(why) => self.probe_failed(i, why),
        }
    }

    /// Acts on what the attempt of `i` said; `watched` is the interest it
    /// is registered with, if any.
    fn probe_step(&mut self, i: usize, step: Step, watched: Option<bool>) {
        match step {
            Step::Wait { write } => {
                if watched == Some(write) {
                    return;
                }
                if let Run::Trying { conn: Some(c), .. } = &self.probes.runs[i] {
                    let token = Token::Probe(i, write);
                    if self.events.rewatch(c.fd(), token, write, watched).is_err() {
                        self.probe_failed(i, "the probe socket could not be watched".into());
                    }
                }
            }
            Step::Served => {
                self.drop_probe_conn(i, watched.is_some());
                self.probes.runs[i] = Run::Passed;
                self.mark_ready(i);
            }
            Step::Failed(why) => {
                self.drop_probe_conn(i, watched.is_some());
                self.probe_failed(i, why);
            }
        }
    }

    fn drop_probe_conn(&mut self, i: usize, watched: bool) {
        if let Run::Trying { conn, .. } = &mut self.probes.runs[i]
            && let Some(c) = conn.take()
            && watched
        {
            self.events.remove(c.fd());
        }
    }

    /// An attempt failed: remember why, and try again after the interval.
    fn probe_failed(&mut self, i: usize, why: String) {
        self.probes.last_failure[i] = Some(why);
        let (Run::Trying { attempt, .. }, Some(spec)) =
            (&self.probes.runs[i], self.probes.specs[i].as_ref())
        else {
            return;
        };
        self.timers.add(
            Instant::now() + spec.interval,
            Deadline::Probe {
                instance: i,
                generation: self.instances[i].generation,
                attempt: *attempt,
            },
        );
    }

    /// The probe socket of `i` is ready (`write`: for writing).
    pub(super) fn probe_event(&mut self, i: usize, write: bool) {
        let step = match &mut self.probes.runs[i] {
            Run::Trying { conn: Some(c), .. } => c.advance(),
            _ => return,
        };
        self.probe_step(i, step, Some(write));
    }

    /// A probe deadline of `i`: the attempt it was armed for took too long
    /// (it is dropped), or the wait after a failure is over; either way
    /// the next attempt starts. Stale deadlines do nothing.
    pub(super) fn probe_due(&mut self, i: usize, generation: u64, armed_for: u32) {
        let inst = &self.instances[i];
        let current = match &self.probes.runs[i] {
            Run::Trying { attempt, .. } => *attempt,
            _ => return,
        };
        if inst.generation != generation
            || current != armed_for
            || self.shutdown.is_some()
            || !matches!(inst.state, State::Running { .. })
        {
            return;
        }
        let in_flight = matches!(&self.probes.runs[i], Run::Trying { conn: Some(_), .. });
        if in_flight {
            self.drop_probe_conn(i, true);
            self.probes.last_failure[i] = Some(format!(
                "no answer within {}ms",
                ATTEMPT_TIMEOUT.as_millis()
            ));
        }
        self.probe_attempt(i);
    }

    /// `i`'s run ended: its probe stops, and its endpoint is no longer
    /// known to be served.
    pub(super) fn stop_probe(&mut self, i: usize) {
        self.drop_probe_conn(i, true);
        self.probes.runs[i] = Run::Off;
    }
}
