//! The control protocol, version 1: one JSON object per line each way.
//!
//! A request names the protocol version and a command:
//! `{"v":1,"cmd":"status","procs":["web"]}`. Every request gets exactly one
//! response line, in order: `{"v":1,"ok":true,...}` with the command's
//! fields, or `{"v":1,"ok":false,"error":{"code":"...","message":"..."}}`.
//! Unknown fields are refused (`bad-request`), so a client learns at once
//! that it speaks a dialect the run does not. `docs/operate.md` is the
//! reference; the types here are what both ends serialise.

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Protocol version; only [`VERSION`] is accepted.
    pub v: u32,
    /// What to do.
    pub cmd: Command,
    /// The processes it applies to: instance names (`web#1`) or process
    /// names (every replica). `status` without any lists every process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub procs: Vec<String>,
    /// `restart`: also restart what depends on the named processes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub with_dependents: bool,
    /// `signal`: the signal, by name (`SIGHUP`, `HUP`) or number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// `logs`: after the records kept, send new ones as they come, until
    /// the client closes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub follow: bool,
    /// `logs`: only the last this many lines of each instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<usize>,
    /// `logs`: only records read at or after this time, in milliseconds
    /// since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// `reload`: the new plan, a JSON plan file the client wrote in the
    /// run's private directory (a plan may be larger than a request line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_file: Option<String>,
    /// `reload`: what the new plan was made from, remembered by the run for
    /// the next `reload` without a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RunSource>,
    /// `reload`: validate and answer the diff, change nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl Request {
    /// A request of `cmd` for `procs`.
    pub fn new(cmd: Command, procs: Vec<String>) -> Request {
        Request {
            v: VERSION,
            cmd,
            procs,
            with_dependents: false,
            signal: None,
            follow: false,
            lines: None,
            since_ms: None,
            plan_file: None,
            source: None,
            dry_run: false,
        }
    }
}

/// The commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    /// The run itself: name, id, pid, uptime, state (what `ps` lists).
    Info,
    /// Every process's and channel's state.
    Status,
    /// Start processes stopped with `stop`.
    Start,
    /// Stop processes and keep them stopped, their channels kept.
    Stop,
    /// Stop and start processes again, their channels kept.
    Restart,
    /// Send a signal to processes (their process groups).
    Signal,
    /// Stop the whole run gracefully, as SIGTERM does.
    Down,
    /// The records the run keeps of its processes' output; with `follow`,
    /// new ones as they come.
    Logs,
    /// A stream of lifecycle events, one line each, until the client
    /// closes.
    Events,
    /// What the run's plan was made from (the topology file and the
    /// planning options), for `reload` without a file.
    Source,
    /// Replace the run's plan with `plan_file`'s: the diff is applied live,
    /// or refused whole (`dry_run`: only answered).
    Reload,
}

/// What a run's plan was made from: `ipc-run reload` without a file plans
/// this file again with these options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSource {
    /// The topology file (absolute), or the JSON plan with `from_plan`.
    pub file: String,
    /// The file is a JSON plan (`run --plan`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_plan: bool,
    /// `--limits`: `host` or `default`.
    pub limits: String,
    /// `--profile`s (after `IPC_RUN_PROFILES`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// `--tap`s, as `EDGE=FILE`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taps: Vec<String>,
    /// `--runtime-dir`, which bounds socket paths in the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_dir: Option<String>,
}

/// A response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version of the answer.
    pub v: u32,
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// `info` (and `status`): the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
    /// `status`: the processes asked for, in plan order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<ProcessStatus>>,
    /// `status`: the channels (all of them when no process is named,
    /// else those the named processes use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<ChannelStatus>>,
    /// Actions: the instances acted on, in plan order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<Vec<String>>,
    /// `logs`: the instances whose records are sent, in plan order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<String>>,
    /// `logs`: records, oldest first (the first answer: those kept; then,
    /// with `follow`, each later line a batch of new ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<LogRecord>>,
    /// `logs` with `follow`: the instances some of whose records were no
    /// longer kept when this batch was made, so the follower never gets
    /// them (more output arrived between two passes of the run's event loop
    /// than it keeps per process, `run --log-memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<Vec<String>>,
    /// `events`: one event per line after the first answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
    /// `source`: what the run's plan was made from, when the run knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RunSource>,
    /// `reload`: what differs between the run's plan and the new one (also
    /// with a `refused` or `apply-failed` error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<crate::plan::diff::PlanDiff>,
    /// Not sent: the stream the connection carries from now on, for the
    /// server ([`super::server`]).
    #[serde(skip)]
    pub subscribe: Option<Subscription>,
}

/// What a connection that asked for a stream (`logs` with `follow`,
/// `events`) is sent, as the server keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// New log records of these instances (plan indices), numbered `next`
    /// and later.
    Logs {
        /// The instances followed.
        instances: Vec<usize>,
        /// The first record not sent yet.
        next: u64,
    },
    /// Lifecycle events.
    Events,
}

/// One record of a process's output, as the relay's `--log-format json`
/// writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// When ipc-run read it, RFC 3339 in UTC with milliseconds.
    pub time: String,
    /// The declared process.
    pub process: String,
    /// The instance (`web#1`, or the process's name).
    pub instance: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The record continues a line cut at the relay's chunk size.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continued: bool,
    /// The line without its newline: a string, or an array of its byte
    /// values when it is not UTF-8.
    pub line: serde_json::Value,
}

/// A lifecycle event of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened, RFC 3339 in UTC with milliseconds.
    pub time: String,
    /// `started`, `ready`, `exited`, `restarting` or `stopped`.
    pub event: String,
    /// The instance.
    pub process: String,
    /// Its pid (`started`, `ready`, `exited`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// `exited`: how (`exited 1`, `killed by SIGTERM`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `exited`: the exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// `restarting`: milliseconds until it starts again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

impl Response {
    /// A success with no fields yet.
    pub fn ok() -> Response {
        Response {
            v: VERSION,
            ok: true,
            ..Response::default()
        }
    }

    /// A failure.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response {
            v: VERSION,
            ok: false,
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
            ..Response::default()
        }
    }

    /// The response as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"v":1,"ok":false,"error":{"code":"internal","message":"unserialisable response"}}"#
                .to_vec()
        });
        line.push(b'\n');
        line
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable.
    pub code: ErrorCode,
    /// For people; a lowercase fragment.
    pub message: String,
}

impl ErrorBody {
    /// An error of `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}

impl From<ErrorBody> for Response {
    fn from(error: ErrorBody) -> Response {
        Response::error(error.code, error.message)
    }
}

/// The error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// Not a JSON request of this protocol (syntax, types, unknown fields).
    BadRequest,
    /// A `v` other than [`VERSION`].
    UnsupportedVersion,
    /// A request line longer than [`super::MAX_REQUEST`] bytes.
    TooLarge,
    /// A named process is not in the run.
    UnknownProcess,
    /// The run will not do it now (state, signal, shutdown under way).
    Refused,
    /// The peer's uid may not use this run ([`super::server`]).
    PermissionDenied,
    /// Too many clients: the one idle the longest is closed with this.
    Busy,
    /// A response could not be made.
    Internal,
    /// A stream's client did not read fast enough: it is dropped.
    TooSlow,
    /// A reload was validated and partly applied, then a step failed
    /// (`done` says what was applied).
    ApplyFailed,
}

impl ErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::UnsupportedVersion => "unsupported-version",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::UnknownProcess => "unknown-process",
            ErrorCode::Refused => "refused",
            ErrorCode::PermissionDenied => "permission-denied",
            ErrorCode::Busy => "busy",
            ErrorCode::Internal => "internal",
            ErrorCode::TooSlow => "too-slow",
            ErrorCode::ApplyFailed => "apply-failed",
        }
    }
}

/// A run as `info` and `ps` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The topology's name.
    pub name: String,
    /// The run id.
    pub run_id: String,
    /// ipc-run's pid.
    pub pid: u32,
    /// Milliseconds since supervision began.
    pub uptime_ms: u64,
    /// `starting` (not every process ready yet), `running`, or `stopping`.
    pub state: String,
    /// Number of process instances.
    pub processes: usize,
}

/// One instance in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// Instance name.
    pub name: String,
    /// `pending`, `starting`, `ready`, `stopping`, `stopped`, `backoff`,
    /// `exited` or `failed`.
    pub state: String,
    /// Its pid while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Restarts so far (automatic and requested).
    pub restarts: u32,
    /// Milliseconds its current run has lasted, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
    /// `backoff`: milliseconds until it is restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_in_ms: Option<u64>,
    /// How its last run ended (`exited 0`, `killed by SIGTERM`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// The exit code of its last run, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// With a health check or watchdog: `starting`, `healthy` or
    /// `unhealthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Why the last health check failed, while the last one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_failure: Option<String>,
    /// The last `STATUS=` text it sent on the notify socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_text: Option<String>,
    /// Lines ipc-run relayed from its stdout, over all its runs, once
    /// there were any; with `stdout_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_lines: Option<u64>,
    /// Bytes ipc-run relayed from its stdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_bytes: Option<u64>,
    /// As `stdout_lines`, for stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_lines: Option<u64>,
    /// As `stdout_bytes`, for stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_bytes: Option<u64>,
}

/// One channel in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    /// Channel (edge) name.
    pub name: String,
    /// The mechanism.
    pub mechanism: String,
    /// Writers, as `instance.port` (or `ipc-run`, `external`).
    pub from: Vec<String>,
    /// Readers.
    pub to: Vec<String>,
    /// Bytes waiting in the pipe or FIFO, read on ipc-run's held end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffered: Option<u64>,
    /// The pipe's capacity, with `buffered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    /// Bytes written into it since the start: a ring's `head`; what
    /// ipc-run relayed into an MPI rank's pipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_written: Option<u64>,
    /// Bytes read from it since the start: a ring's `tail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
    /// Bytes written and not read yet: a ring, a System V queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_waiting: Option<u64>,
    /// Messages waiting in a POSIX or System V queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_waiting: Option<u64>,
    /// Lines ipc-run relayed into an MPI rank's pipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines_written: Option<u64>,
    /// Lines waiting in ipc-run's queue for that pipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines_queued: Option<u64>,
    /// Lines that pipe did not take (its reader was gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines_lost: Option<u64>,
}

/// A request line as the server reads it: the request, or the error it
/// gets.
pub fn parse_request(line: &[u8]) -> Result<Request, ErrorBody> {
    let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
        ErrorBody::new(
            ErrorCode::BadRequest,
            format!("not a JSON request line: {e}"),
        )
    })?;
    // The version is read first, so a newer client gets "unsupported
    // version" rather than a complaint about a field it added.
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(ErrorBody::new(
                ErrorCode::UnsupportedVersion,
                format!("protocol version {v} is not supported; this run speaks {VERSION}"),
            ));
        }
        None => {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "a request needs \"v\": 1",
            ));
        }
    }
    serde_json::from_value(value)
        .map_err(|e| ErrorBody::new(ErrorCode::BadRequest, format!("bad request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(line: &str) -> ErrorCode {
        parse_request(line.as_bytes()).unwrap_err().code
    }

    #[test]
    fn requests_round_trip() {
        let mut request = Request::new(Command::Restart, vec!["web".into()]);
        request.with_dependents = true;
        let line = serde_json::to_string(&request).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"cmd":"restart","procs":["web"],"with_dependents":true}"#
        );
        assert_eq!(parse_request(line.as_bytes()).unwrap(), request);
    }

    #[test]
    fn stream_requests_round_trip() {
        let mut request = Request::new(Command::Logs, vec!["web".into()]);
        request.follow = true;
        request.lines = Some(10);
        request.since_ms = Some(1_700_000_000_000);
        let line = serde_json::to_string(&request).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"cmd":"logs","procs":["web"],"follow":true,"lines":10,"since_ms":1700000000000}"#
        );
        assert_eq!(parse_request(line.as_bytes()).unwrap(), request);
        let events = parse_request(br#"{"v":1,"cmd":"events"}"#).unwrap();
        assert_eq!(events.cmd, Command::Events);
    }

    #[test]
    fn reload_requests_round_trip() {
        let mut request = Request::new(Command::Reload, Vec::new());
        request.plan_file = Some("/run/user/1/ipc-run/x/reload.json".into());
        request.dry_run = true;
        let line = serde_json::to_string(&request).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"cmd":"reload","plan_file":"/run/user/1/ipc-run/x/reload.json","dry_run":true}"#
        );
        assert_eq!(parse_request(line.as_bytes()).unwrap(), request);
    }

    #[test]
    fn bad_requests_get_their_code() {
        assert_eq!(code_of("garbage"), ErrorCode::BadRequest);
        assert_eq!(code_of(r#"{"cmd":"status"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code_of(r#"{"v":2,"cmd":"status"}"#),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(code_of(r#"{"v":1,"cmd":"reboot"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code_of(r#"{"v":1,"cmd":"status","x":1}"#),
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn errors_serialise_as_documented() {
        let line = Response::error(ErrorCode::UnknownProcess, "no process `x`").to_line();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"unknown-process\",\"message\":\"no process `x`\"}}\n"
        );
    }
}
