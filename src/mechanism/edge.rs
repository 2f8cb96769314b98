//! The plan side's view of one edge: what a mechanism's `plan` reads (the
//! edge as written, its traits, the host limits) and where it writes (named
//! objects, diagnostics). Pure: nothing here makes a system call.

use std::net::SocketAddr;

use ipc_run_child::description::Slot;

use crate::diagnostic::{Diagnostic, Label};
use crate::mechanism::limits::{Limit, Limits};
use crate::mechanism::model::{Mechanism, NamedObject, ObjectKind, RUN_DIR, RUN_ID, Span};
use crate::topology::{EdgeSpec, SocketType, Spanned, Traffic};

/// Listen backlog of every listener.
pub const LISTEN_BACKLOG: u32 = 128;

/// What the planner knows about an edge when it picks a mechanism.
#[derive(Debug, Clone, Default)]
pub struct Traits {
    /// Declared traffic.
    pub traffic: Traffic,
    /// Data flows both ways.
    pub duplex: bool,
    /// Number of writing endpoint instances (`@stdin` and `@external` count).
    pub writers: usize,
    /// Number of reading endpoint instances.
    pub readers: usize,
    /// Some endpoint is `@external`.
    pub external: bool,
    /// Some endpoint is `@stdin` or `@stdout`.
    pub own_stream: bool,
    /// Largest record written at once.
    pub message_size: Option<u64>,
    /// Declared queue depth.
    pub depth: Option<u64>,
    /// Declared shared size.
    pub size: Option<u64>,
    /// Declared RPC protocol.
    pub protocol: bool,
    /// Declared IP address.
    pub address: bool,
    /// Declared socket type.
    pub socket: Option<SocketType>,
    /// Payload-carrying options were given on a notify edge.
    pub payload: bool,
    /// `sync = "ring"`: the shared memory is a ring of records.
    pub ring: bool,
}

/// One edge being planned, once its mechanism is known.
pub(crate) struct EdgeContext<'a> {
    /// Channel id.
    pub id: &'a str,
    /// The edge as written (`None` for a pipeline stage pair).
    pub spec: Option<&'a EdgeSpec>,
    /// The whole edge.
    pub span: Span,
    /// The edge's name, when it has one.
    pub id_span: Option<Span>,
    /// What the planner knows about the edge.
    pub traits: &'a Traits,
    /// Host limits.
    pub limits: &'a Limits,
    /// Permission bits of the named objects.
    pub mode: u32,
    /// Whether ipc-run's own stdin is on the `from` side.
    pub from_own_stdin: bool,
    /// Diagnostics found, in order.
    pub diagnostics: Vec<Diagnostic>,
    /// Named objects decided so far.
    pub objects: Vec<NamedObject>,
    /// POSIX queues planned in the whole topology (checked against
    /// `queues_max` at the end).
    pub posix_queues: &'a mut u64,
}

/// What a mechanism's `plan` decides for an edge.
pub(crate) struct Shape {
    /// The mechanism with its parameters.
    pub mechanism: Mechanism,
    /// Whether a writer blocks when the channel is full.
    pub blocking: bool,
    /// Bytes the channel buffers, when bounded.
    pub capacity: Option<u64>,
}

impl Shape {
    /// A channel whose writers do not block on a bounded buffer we know of.
    pub fn unbounded(mechanism: Mechanism) -> Shape {
        Shape {
            mechanism,
            blocking: false,
            capacity: None,
        }
    }

    /// A channel whose writers block once `capacity` bytes are buffered.
    pub fn blocking(mechanism: Mechanism, capacity: Option<u64>) -> Shape {
        Shape {
            mechanism,
            blocking: true,
            capacity,
        }
    }
}

impl EdgeContext<'_> {
    /// Reports a diagnostic about the edge.
    pub fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// The span of an option, or of the whole edge when it is not written.
    pub fn span_of(&self, option: fn(&EdgeSpec) -> Option<Span>) -> Span {
        self.spec
            .and_then(option)
            .unwrap_or_else(|| self.span.clone())
    }

    /// Refuses the edge with `code`: `message`, about a value above the host
    /// limit `what`, pointed at the option that asks for it.
    pub fn refuse_above(
        &mut self,
        code: &'static str,
        message: String,
        option: fn(&EdgeSpec) -> Option<Span>,
        (limit, what): (&Limit, &str),
    ) -> Option<Shape> {
        let span = self.span_of(option);
        self.report(limit_error(code, message, span, limit, what));
        None
    }

    /// Records a named object of the channel.
    pub fn object(&mut self, kind: ObjectKind, name: String) {
        self.objects.push(NamedObject {
            kind,
            name,
            mode: self.mode,
        });
    }

    /// The name template of the channel's POSIX object.
    pub fn posix_name(&self) -> String {
        format!("/ipc-run.{RUN_ID}.{}", self.id)
    }

    /// The path template of a file of the channel in the run directory.
    pub fn run_path(&self, suffix: &str) -> String {
        format!("{RUN_DIR}/{}.{suffix}", self.id)
    }

    /// The placeholder of a System V id the launcher fills in.
    pub fn sysv_id(&self) -> String {
        format!("{{sysv_id:{}}}", self.id)
    }

    /// A socket file in the run directory, checked against `sun_path`;
    /// `None` (with an error) when the path would not fit.
    pub fn socket_path(&mut self) -> Option<String> {
        let path = self.run_path("sock");
        let limits = self.limits;
        let length = limits.run_dir_len.value + (path.len() - RUN_DIR.len()) as u64;
        if length < limits.sun_path_max.value {
            return Some(path);
        }
        let span = self.id_span.clone().unwrap_or(self.span.clone());
        self.report(
            Diagnostic::error(
                "E0607",
                format!(
                    "the socket path of edge `{}` would be {length} bytes; sun_path holds {} with its NUL",
                    self.id, limits.sun_path_max.value
                ),
            )
            .with_label(Label::primary(span, "this edge's socket"))
            .with_note(format!(
                "the run directory is {} bytes long ({})",
                limits.run_dir_len.value, limits.run_dir_len.source
            ))
            .with_help("shorten the edge name, or set XDG_RUNTIME_DIR to a shorter directory"),
        );
        None
    }

    /// Whether a System V semaphore set of `count` fits `SEMMSL` (an error
    /// when it does not).
    pub fn sem_set_fits(&mut self, count: u64) -> bool {
        let semmsl = &self.limits.sysv_semmsl;
        if count <= semmsl.value {
            return true;
        }
        let span = self.span_of(|s| s.mechanism.as_ref().map(|m| m.span()));
        let message = format!(
            "edge `{}` needs a System V semaphore set of {count}; a set on this host holds at most {}",
            self.id, semmsl.value
        );
        self.report(
            limit_error("E0611", message, span, semmsl, "semmsl").with_help(
                "use posix-shm/posix-sem, or raise the first field of /proc/sys/kernel/sem",
            ),
        );
        false
    }

    /// The edge's `size`, checked to be above zero and at most `max`.
    pub fn shared_size(&mut self, code: &'static str, max: &Limit, what: &str) -> Option<u64> {
        let size = self.traits.size.unwrap_or(0);
        if size != 0 && size <= max.value {
            return Some(size);
        }
        let spec = self.spec;
        let span = spec
            .and_then(|s| s.size.as_ref().map(|v| v.span()))
            .or_else(|| spec.map(|s| s.from.span()))
            .unwrap_or(0..0);
        let id = self.id;
        let diagnostic = if size == 0 {
            Diagnostic::error(
                "E0310",
                format!("shared edge `{id}` needs a size above zero"),
            )
            .with_label(Label::primary(span, "empty region"))
        } else {
            Diagnostic::error(
                code,
                format!(
                    "edge `{id}` asks for {size} bytes of shared memory; {what} allows {}",
                    max.value
                ),
            )
            .with_label(Label::primary(span, "too large for this host"))
            .with_note(format!("{what} is {} ({})", max.value, max.source))
        };
        self.report(diagnostic);
        None
    }

    /// The bind address of an IP edge (loopback, kernel-chosen port, when
    /// none is written); a warning when it reaches beyond this machine.
    pub fn ip_address(&mut self) -> Option<String> {
        let spec = self.spec;
        let Some(address) = spec.and_then(|s| s.address.as_ref()) else {
            return Some("127.0.0.1:0".into());
        };
        let allowed = spec
            .and_then(|s| s.allow_remote.as_ref())
            .is_some_and(|a| *a.get_ref());
        check_address(address, allowed, &mut self.diagnostics)
    }
}

fn check_address(
    address: &Spanned<String>,
    allowed: bool,
    sink: &mut Vec<Diagnostic>,
) -> Option<String> {
    let Ok(parsed) = address.get_ref().parse::<SocketAddr>() else {
        sink.push(
            Diagnostic::error("E0312", format!("invalid address `{}`", address.get_ref()))
                .with_label(Label::primary(
                    address.span(),
                    "expected an IP address and a port, e.g. 127.0.0.1:8080 or [::1]:0",
                )),
        );
        return None;
    };
    if !parsed.ip().is_loopback() && !allowed {
        sink.push(
            Diagnostic::warning(
                "W0202",
                format!("`{parsed}` is reachable beyond this machine"),
            )
            .with_label(Label::primary(address.span(), "not a loopback address"))
            .with_help("bind 127.0.0.1 or ::1, or set allow_remote = true to say this is intended"),
        );
    }
    Some(parsed.to_string())
}

/// A bind address as ports see it: a kernel-chosen port (`:0`) shows the
/// `{port:ID}` placeholder the launcher fills in.
pub(crate) fn address_with_port(bind: &str, id: &str) -> String {
    match bind.rsplit_once(':') {
        Some((host, "0")) => format!("{host}:{{port:{id}}}"),
        _ => bind.to_owned(),
    }
}

/// A number the launcher fills in, as a `{what:of}` placeholder.
pub(crate) fn placeholder<T>(what: &str, of: &str) -> Slot<T> {
    Slot::Placeholder(format!("{{{what}:{of}}}"))
}

/// An error about a value above a host limit.
pub(crate) fn limit_error(
    code: &'static str,
    message: String,
    span: Span,
    limit: &Limit,
    what: &str,
) -> Diagnostic {
    Diagnostic::error(code, message)
        .with_label(Label::primary(span, format!("above {what}")))
        .with_note(format!("{what} is {} ({})", limit.value, limit.source))
}
