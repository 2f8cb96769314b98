//! The topology: what the user wrote, as typed values that remember where in
//! the TOML file they came from.
//!
//! This stage only parses. It rejects what serde can see (syntax, types,
//! unknown keys, bad units) and leaves every rule that needs the whole file
//! (dangling endpoints, fd collisions, mechanism fitness, cycles) to `plan`.
//! Every name and value a diagnostic may point at is a [`Spanned`] so the
//! planner can say `file:line:col` with a caret.

mod chunks;
mod classify;
mod compose;
mod endpoint;
pub mod env_file;
mod interpolate;
mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
pub use toml::Spanned;

use crate::diagnostic::{Diagnostic, Label, SourceFile, Sources};
pub use compose::{ComposeOptions, Profiles};
pub use endpoint::{Endpoint, EndpointRef, EndpointTarget, MAX_NAME_LEN, check_name};
pub use units::{ByteSize, Millis};

/// Files larger than this are refused before parsing, unless the CLI's
/// `--max-file-size` says otherwise ([`Topology::load_capped`]). A generated
/// topology of 100 000 processes with two edges each is about 15 MiB; the
/// default bounds the work an unexpected file can cause to a few seconds,
/// and a user who means to plan a bigger one raises it.
pub const MAX_SOURCE_BYTES: usize = 16 << 20;

/// A parsed topology file together with its source text, which diagnostics
/// need to show the offending line.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The path the file was read from, as given by the user.
    pub path: PathBuf,
    /// The whole text of the file; for a topology that includes others,
    /// every file's text, joined (spans index it; see [`Topology::files`]).
    pub source: String,
    /// Where each file's text starts in [`Topology::source`], the file
    /// given first; one entry unless the topology uses `include`.
    pub files: Vec<SourceFile>,
    /// The active profiles and what they left out.
    pub profiles: Profiles,
    /// The typed content.
    pub file: TopologyFile,
}

/// Why a topology could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The file could not be read at all.
    #[error("failed to read {path}: {source}")]
    Read {
        /// The path as given.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid topology document.
    #[error("failed to parse {}", .path.display())]
    Parse {
        /// The path as given.
        path: PathBuf,
        /// The source text, for rendering: of every file read so far when
        /// `files` has more than one.
        source_text: String,
        /// Where each file starts in `source_text`; empty or one entry for
        /// a single file.
        files: Vec<SourceFile>,
        /// What is wrong, with its location.
        diagnostic: Box<Diagnostic>,
    },
}

/// E0002 for a file of `size` bytes, or of unknown size (a FIFO, a device)
/// that gave more than `cap` bytes.
fn too_large(size: Option<u64>, cap: u64) -> Diagnostic {
    let message = match size {
        Some(size) => format!("the file is {size} bytes, more than the {cap} a topology may have"),
        None => format!("the file has more than the {cap} bytes a topology may have"),
    };
    Diagnostic::error("E0002", message)
        .with_help("`--max-file-size SIZE` raises the cap (e.g. `--max-file-size 1GiB`)")
}

impl Topology {
    /// Reads and parses the topology at `path`, refusing a file larger than
    /// [`MAX_SOURCE_BYTES`].
    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        Self::load_capped(path, MAX_SOURCE_BYTES as u64)
    }

    /// Reads and parses the topology at `path`, refusing a file larger than
    /// `max_bytes` (`--max-file-size`) without reading it whole.
    pub fn load_capped(path: &Path, max_bytes: u64) -> Result<Self, TopologyError> {
        Self::load_with(path, max_bytes, &ComposeOptions::default())
    }

    /// Reads the topology at `path` (at most `max_bytes`, counting every
    /// included file) and composes it with `options`: active profiles and
    /// the variables `${VAR}` reads.
    pub fn load_with(
        path: &Path,
        max_bytes: u64,
        options: &ComposeOptions,
    ) -> Result<Self, TopologyError> {
        use std::io::Read as _;
        let read_error = |source| TopologyError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        // The size a regular file says it has; FIFOs and devices have none.
        let size = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        // Read one byte past the cap so an oversized file is refused without
        // being read whole (or a FIFO/device read forever). A regular file is
        // read into a buffer of its size, not one grown by doubling.
        let expected = size.map_or(0, |s| s.min(max_bytes).saturating_add(1));
        let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > max_bytes {
            // The file may have grown since its size was read.
            let size = size.filter(|&s| s >= bytes.len() as u64);
            return Err(TopologyError::Parse {
                path: path.to_owned(),
                source_text: String::new(),
                files: Vec::new(),
                diagnostic: Box::new(too_large(size, max_bytes)),
            });
        }
        Self::from_bytes_capped(path, bytes, max_bytes, options)
    }

    /// Parses the contents `bytes` of the file `path`: UTF-8 is checked
    /// first, then [`Topology::parse`].
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, TopologyError> {
        Self::from_bytes_capped(
            path,
            bytes,
            MAX_SOURCE_BYTES as u64,
            &ComposeOptions::default(),
        )
    }

    fn from_bytes_capped(
        path: &Path,
        bytes: Vec<u8>,
        cap: u64,
        options: &ComposeOptions,
    ) -> Result<Self, TopologyError> {
        let source = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => {
                let valid = err.utf8_error().valid_up_to();
                let text = String::from_utf8_lossy(err.as_bytes()).into_owned();
                return Err(TopologyError::Parse {
                    path: path.to_owned(),
                    files: Vec::new(),
                    diagnostic: Box::new(
                        Diagnostic::error("E0001", "the file is not valid UTF-8")
                            // The lossy text holds U+FFFD (3 bytes) where the
                            // invalid byte was: point at all of it.
                            .with_label(Label::primary(
                                valid..valid + char::REPLACEMENT_CHARACTER.len_utf8(),
                                "invalid byte here",
                            )),
                    ),
                    source_text: text,
                });
            }
        };
        Self::parse_capped(path, source, cap, options)
    }

    /// Parses `source` as the topology file `path` (the path is only used in
    /// messages).
    pub fn parse(path: &Path, source: String) -> Result<Self, TopologyError> {
        Self::parse_with(path, source, &ComposeOptions::default())
    }

    /// [`Topology::parse`] composed with `options`; an `include` or
    /// `env_file` is found relative to `path`.
    pub fn parse_with(
        path: &Path,
        source: String,
        options: &ComposeOptions,
    ) -> Result<Self, TopologyError> {
        Self::parse_capped(path, source, MAX_SOURCE_BYTES as u64, options)
    }

    /// The joined text and where each file is in it, for rendering.
    pub fn sources(&self) -> Sources<'_> {
        Sources {
            text: &self.source,
            files: &self.files,
        }
    }

    fn parse_capped(
        path: &Path,
        source: String,
        cap: u64,
        options: &ComposeOptions,
    ) -> Result<Self, TopologyError> {
        let fail = |diagnostic: Diagnostic, source: String| TopologyError::Parse {
            path: path.to_owned(),
            source_text: source,
            files: Vec::new(),
            diagnostic: Box::new(diagnostic),
        };
        if source.len() as u64 > cap {
            return Err(fail(
                too_large(Some(source.len() as u64), cap),
                String::new(),
            ));
        }
        if compose::needed(&source, options) {
            return compose::load(path, source, cap, options);
        }
        let files = vec![SourceFile {
            path: path.display().to_string(),
            start: 0,
        }];
        // A large file is parsed in pieces when they mean the same as the
        // whole; otherwise (and for every error) it is parsed whole.
        if let Some(mut file) = chunks::parse(&source, chunks::CHUNK_BYTES) {
            file.edge.shrink_to_fit();
            return Ok(Topology {
                path: path.to_owned(),
                source,
                files,
                profiles: Profiles::default(),
                file,
            });
        }
        match classify::from_str::<TopologyFile>(&source) {
            Ok(mut file) => {
                file.fill_endpoint_spans();
                // Deserializing grows the edge list by doubling: give back
                // the unused half before the planner runs beside it.
                file.edge.shrink_to_fit();
                Ok(Topology {
                    path: path.to_owned(),
                    source,
                    files,
                    profiles: Profiles::default(),
                    file,
                })
            }
            Err(failure) => {
                let diagnostic = syntax_diagnostic(&failure, &source);
                Err(fail(diagnostic, source))
            }
        }
    }
}

/// Widens `span` to whole characters: the parser may point at a byte inside
/// a multi-byte character, and a label must cover whole ones.
fn on_char_boundaries(source: &str, span: std::ops::Range<usize>) -> std::ops::Range<usize> {
    let mut start = span.start.min(source.len());
    while !source.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = span.end.clamp(start, source.len());
    while !source.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

/// What a refused document is, by the stable code a diagnostic gets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mistake {
    /// E0003: a key the table does not have.
    UnknownKey {
        /// The key as written.
        key: String,
    },
    /// E0004: a required key is absent.
    MissingKey,
    /// E0005: a value of the wrong type, or a refused value.
    WrongValue,
    /// E0006: a key or table defined twice.
    Duplicate,
    /// E0007: not TOML at all, or a shape toml itself refuses.
    Syntax,
}

/// Classifies a failure by the step that raised it and, in the
/// deserialize step, by the serde error constructor that made it.
fn mistake_of(failure: &classify::Failure) -> Mistake {
    use classify::{Origin, Raised};
    match &failure.origin {
        Origin::Parse => parse_mistake(failure.error.message()),
        Origin::Deserialize(Some(raised)) => match raised {
            Raised::UnknownField { field } => Mistake::UnknownKey { key: field.clone() },
            Raised::MissingField => Mistake::MissingKey,
            // No topology type has a fixed length, so `InvalidLength` is
            // not raised today; a sequence of the wrong length is a value
            // of the wrong shape.
            Raised::InvalidType
            | Raised::InvalidValue
            | Raised::InvalidLength
            | Raised::UnknownVariant
            | Raised::Custom => Mistake::WrongValue,
            // toml's parser refuses a repeated key first, so serde never
            // sees one; should it, it is the same mistake.
            Raised::DuplicateField => Mistake::Duplicate,
        },
        // toml's deserializer raised it itself: an enum given as a number
        // or as a table without exactly one entry, an integer that
        // overflows. These are shapes toml refuses: E0007, as always.
        Origin::Deserialize(None) => Mistake::Syntax,
    }
}

/// Classifies a parse-step error.
///
/// The one explicit fallback on wording: toml's parser reports every error
/// through `toml_parser::ParseError`, which carries only a fixed description
/// (no kind), and toml's error keeps only that text. Two descriptions get a
/// code of their own, as they always did: `duplicate key` (E0006; toml's
/// document parser finds repeated keys and tables) and `invalid value` (E0005;
/// an escape such as `\uD800` that names no character). Every other parse
/// error is E0007.
fn parse_mistake(message: &str) -> Mistake {
    if message.starts_with("duplicate key") {
        Mistake::Duplicate
    } else if message.starts_with("invalid value") {
        Mistake::WrongValue
    } else {
        Mistake::Syntax
    }
}

/// Turns a refused document into a diagnostic with a stable code: unknown
/// key, missing key, wrong type/value, duplicate or syntax.
fn syntax_diagnostic(failure: &classify::Failure, source: &str) -> Diagnostic {
    let err = &failure.error;
    let message = err.message().trim();
    let mistake = mistake_of(failure);
    let span = err.span().unwrap_or(0..0);
    let span = if span.is_empty() && !source.is_empty() {
        let start = span.start.min(source.len().saturating_sub(1));
        start..start + 1
    } else {
        span
    };
    let span = on_char_boundaries(source, span);
    let first_line = message.lines().next().unwrap_or("");
    let (code, headline) = match &mistake {
        Mistake::UnknownKey { key } => {
            // serde says "unknown field `x`, expected one of `a`, `b`": the
            // headline names the key, a note lists the keys allowed.
            let mut diagnostic = Diagnostic::error("E0003", format!("unknown key `{key}`"))
                .with_label(Label::primary(span, "not a key of this table"));
            let tail = message.strip_prefix(&format!("unknown field `{key}`, "));
            if let Some(expected) = tail.filter(|t| t.starts_with("expected ")) {
                diagnostic = diagnostic.with_note(expected.to_owned());
            }
            return diagnostic;
        }
        Mistake::Duplicate => return duplicate_key_diagnostic(source, span),
        Mistake::MissingKey => ("E0004", "missing key"),
        Mistake::WrongValue => ("E0005", "wrong type or value"),
        Mistake::Syntax => ("E0007", "invalid TOML"),
    };
    Diagnostic::error(code, format!("{headline}: {first_line}"))
        .with_label(Label::primary(span, first_line.to_owned()))
}

/// toml only says "duplicate key" and points at the second one: name the key
/// and find where it was first defined, so both sides are shown.
fn duplicate_key_diagnostic(source: &str, span: std::ops::Range<usize>) -> Diagnostic {
    let key = source.get(span.clone()).unwrap_or("").trim_matches('"');
    let line_start = source[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[span.start..]
        .find('\n')
        .map_or(source.len(), |i| span.start + i);
    let line = source[line_start..line_end].trim();
    let is_header = line.starts_with('[');
    // A repeated table header is found by its whole text; a repeated key by
    // `key =` at the start of a line, looking back only to the enclosing header.
    let mut first = None;
    let mut end = line_start.saturating_sub(1);
    // The duplicate is never on the first line, so there is a line before it.
    while line_start > 0 && first.is_none() {
        let start = source[..end].rfind('\n').map_or(0, |i| i + 1);
        let previous = source[start..end].trim_end_matches('\r');
        let trimmed = previous.trim_start();
        let at = start + (previous.len() - trimmed.len());
        if is_header {
            if previous.trim() == line {
                first = Some(at..at + trimmed.trim_end().len());
                break;
            }
        } else if trimmed.starts_with('[') {
            break;
        } else if let Some(rest) = trimmed.strip_prefix(key) {
            if !key.is_empty() && rest.trim_start().starts_with('=') {
                first = Some(at..at + key.len());
                break;
            }
        }
        if start == 0 {
            break;
        }
        end = start - 1;
    }
    let what = if is_header { "table" } else { "key" };
    let mut diagnostic = Diagnostic::error("E0006", format!("duplicate {what} `{key}`"))
        .with_label(Label::primary(span, "defined again here"))
        .with_help(format!(
            "a {what} may be defined once; merge the two or rename one"
        ));
    if let Some(first) = first {
        diagnostic = diagnostic.with_label(Label::secondary(first, "first defined here"));
    }
    diagnostic
}

/// The document: a name, processes, edges and optional pipeline sugar.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "ipc-run topology",
    description = "Processes and the IPC edges between them."
)]
pub struct TopologyFile {
    /// The topology's name; used in messages and in the run id.
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    /// Processes by name. Names are lowercase letters, digits, `-` and `_`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ProcessSpec>")]
    pub process: BTreeMap<Spanned<String>, ProcessSpec>,
    /// The IPC edges between processes.
    #[serde(default)]
    pub edge: Vec<EdgeSpec>,
    /// Shell-style sugar: each stage's stdout is piped into the next stage's
    /// stdin. `@stdin` may start it and `@stdout` end it.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub pipeline: Vec<Spanned<String>>,
    /// Follow this process's exit status instead of the first failure.
    #[schemars(with = "Option<String>")]
    pub exit_code_from: Option<Spanned<String>>,
    /// Files whose processes and edges join this topology, relative to this
    /// file (`docs/topology.md`, "Composing a topology").
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub include: Vec<Spanned<String>>,
}

impl TopologyFile {
    /// A scalar `from = "a.out"` has no element spans of its own: give it the
    /// span of the whole value.
    fn fill_endpoint_spans(&mut self) {
        for edge in &mut self.edge {
            for list in [&mut edge.from, &mut edge.to] {
                let outer = list.span();
                for item in list.get_mut().0.iter_mut() {
                    if item.span() == (0..0) {
                        // Moved, not copied: a large file has one per edge.
                        let value = std::mem::take(item.get_mut());
                        *item = Spanned::new(outer.clone(), value);
                    }
                }
            }
        }
    }
}

// Every key of a process as written: the shape serde reads and the schema
// shows (its doc line is the schema's description). It lives only while one
// `[process.NAME]` is read; `ProcessSpec` keeps the process compact.
/// One process (or a set of identical replicas).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename = "ProcessSpec")]
struct ProcessWire {
    /// The argv, exec'd directly; no shell is involved.
    #[schemars(with = "Option<Vec<String>>")]
    cmd: Option<Spanned<Vec<String>>>,
    /// A script run by `/bin/sh -c`, only when a shell is wanted.
    #[schemars(with = "Option<String>")]
    shell: Option<Spanned<String>>,
    /// Environment variables added to the child's environment.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Pass these variables of ipc-run's own environment through.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    inherit_env: Vec<Spanned<String>>,
    /// Working directory of the child.
    #[schemars(with = "Option<String>")]
    cwd: Option<Spanned<String>>,
    /// Run as this user (name or numeric uid): supplementary groups, gid
    /// and uid are switched before exec. ipc-run must be allowed to (root).
    #[schemars(with = "Option<String>")]
    user: Option<Spanned<String>>,
    /// Primary group (name or numeric gid) instead of the user's own.
    #[schemars(with = "Option<String>")]
    group: Option<Spanned<String>>,
    /// Processes this one waits for: a list (each must be ready) or a
    /// table of conditions, `{ db = "healthy", migrate = "completed" }`.
    #[serde(default)]
    #[schemars(with = "After")]
    after: After,
    /// A periodic health check; an unhealthy process is restarted per its
    /// `restart` policy.
    #[schemars(with = "Option<HealthSpec>")]
    health: Option<Spanned<HealthSpec>>,
    /// sd_notify watchdog period: `WATCHDOG=1` must come at least this often.
    #[schemars(with = "Option<Millis>")]
    watchdog: Option<Spanned<Millis>>,
    /// When the process counts as ready: `started`, `notify` or `{ fd = N }`.
    #[schemars(with = "Option<Ready>")]
    ready: Option<Spanned<Ready>>,
    /// How long to wait for readiness before failing the run.
    #[schemars(with = "Option<Millis>")]
    ready_timeout: Option<Spanned<Millis>>,
    /// `never` (default), `on-failure` or `always`.
    #[schemars(with = "Option<RestartPolicy>")]
    restart: Option<Spanned<RestartPolicy>>,
    /// How many restarts before the process is marked failed.
    #[schemars(with = "Option<u32>")]
    restart_limit: Option<Spanned<u32>>,
    /// First restart delay; doubled after each failure, up to 30 s.
    #[schemars(with = "Option<Millis>")]
    restart_backoff: Option<Spanned<Millis>>,
    /// Signal sent to stop the process (default `SIGTERM`).
    #[schemars(with = "Option<String>")]
    stop_signal: Option<Spanned<String>>,
    /// Grace period between the stop signal and SIGKILL (default 5 s).
    #[schemars(with = "Option<Millis>")]
    stop_timeout: Option<Spanned<Millis>>,
    /// Run this many identical instances (default 1).
    #[schemars(with = "Option<i64>")]
    replicas: Option<Spanned<i64>>,
    /// Named ports, optionally with a fixed fd number.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, PortSpec>")]
    ports: BTreeMap<Spanned<String>, PortSpec>,
    /// Signals ipc-run receives and forwards to this process (SIGHUP, SIGUSR1, SIGUSR2).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    forward_signals: Vec<Spanned<String>>,
    /// Files of `KEY=VALUE` lines (relative to this file) read into the
    /// environment each time the process starts; `env` wins over them.
    #[schemars(with = "Option<PathOrPaths>")]
    env_file: Option<Spanned<PathList>>,
    /// The profiles this process belongs to: it is in the topology only when
    /// one of them is active (`--profile`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    profiles: Vec<Spanned<String>>,
    /// `ipc-run restart` of this process also restarts the processes that
    /// wait for it (`after`), in dependency order (default false).
    #[schemars(with = "Option<bool>")]
    restart_dependents: Option<Spanned<bool>>,
    /// The host group this process runs in when the topology is split
    /// across hosts (`docs/distributed.md`, "Placement"); a name like a
    /// process's. A plain run runs every group on this host.
    #[schemars(with = "Option<String>")]
    host: Option<Spanned<String>>,
    /// CPUs the process needs (`2`, `0.5`), for packing with `--hosts N`
    /// and the engines' resource requests.
    #[schemars(with = "Option<f64>")]
    cpus: Option<Spanned<f64>>,
    /// Memory the process needs (`"512M"`), for packing with `--hosts N`
    /// and the engines' resource requests.
    #[schemars(with = "Option<ByteSize>")]
    memory: Option<Spanned<ByteSize>>,
}

/// One process (or a set of identical replicas): `[process.NAME]`, its keys
/// documented on the schema's `ProcessSpec`.
///
/// Most processes write a command and perhaps env, ports, `after` or
/// replicas; the other keys live out of line in [`ProcessRare`], allocated
/// only for a process that writes one, so a large topology's process map is
/// a third of its inline size. `Deref` reads them as if they were fields
/// (`spec.cwd`), unset ones from a shared empty [`ProcessRare`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "ProcessWire")]
pub struct ProcessSpec {
    /// `cmd` as written.
    pub cmd: Option<Spanned<Vec<String>>>,
    /// `shell` as written.
    pub shell: Option<Spanned<String>>,
    /// `env` as written.
    pub env: BTreeMap<Spanned<String>, Spanned<String>>,
    /// `after` as written.
    pub after: Vec<Spanned<String>>,
    /// `replicas` as written.
    pub replicas: Option<Spanned<i64>>,
    /// `ports` as written.
    pub ports: BTreeMap<Spanned<String>, PortSpec>,
    /// The rarely written keys; `None` when the process writes none of them.
    pub rare: Option<Box<ProcessRare>>,
}

/// The keys of a process that few processes write (see [`ProcessSpec`]).
#[derive(Debug, Clone, Default)]
pub struct ProcessRare {
    /// `inherit_env` as written.
    pub inherit_env: Vec<Spanned<String>>,
    /// `cwd` as written.
    pub cwd: Option<Spanned<String>>,
    /// `user` as written.
    pub user: Option<Spanned<String>>,
    /// `group` as written.
    pub group: Option<Spanned<String>>,
    /// `ready` as written.
    pub ready: Option<Spanned<Ready>>,
    /// `ready_timeout` as written.
    pub ready_timeout: Option<Spanned<Millis>>,
    /// `restart` as written.
    pub restart: Option<Spanned<RestartPolicy>>,
    /// `restart_limit` as written.
    pub restart_limit: Option<Spanned<u32>>,
    /// `restart_backoff` as written.
    pub restart_backoff: Option<Spanned<Millis>>,
    /// `stop_signal` as written.
    pub stop_signal: Option<Spanned<String>>,
    /// `stop_timeout` as written.
    pub stop_timeout: Option<Spanned<Millis>>,
    /// `forward_signals` as written.
    pub forward_signals: Vec<Spanned<String>>,
    /// `env_file` as written (one path or several); after composing, each
    /// path resolved against the directory of the file that names it.
    pub env_file: Vec<Spanned<String>>,
    /// `profiles` as written.
    pub profiles: Vec<Spanned<String>>,
    /// `restart_dependents` as written.
    pub restart_dependents: Option<Spanned<bool>>,
    /// The conditions of the table form of `after`, by process name; a
    /// process named in `after` but not here waits for `ready`.
    pub after_conditions: BTreeMap<String, Spanned<Condition>>,
    /// `health` as written.
    pub health: Option<Spanned<HealthSpec>>,
    /// `watchdog` as written.
    pub watchdog: Option<Spanned<Millis>>,
    /// `host` as written: the host group.
    pub host: Option<Spanned<String>>,
    /// `cpus` as written.
    pub cpus: Option<Spanned<f64>>,
    /// `memory` as written.
    pub memory: Option<Spanned<ByteSize>>,
}

/// The rare keys of a process that writes none.
static NO_RARE_PROCESS_KEYS: ProcessRare = ProcessRare {
    inherit_env: Vec::new(),
    cwd: None,
    user: None,
    group: None,
    ready: None,
    ready_timeout: None,
    restart: None,
    restart_limit: None,
    restart_backoff: None,
    stop_signal: None,
    stop_timeout: None,
    forward_signals: Vec::new(),
    env_file: Vec::new(),
    profiles: Vec::new(),
    restart_dependents: None,
    after_conditions: BTreeMap::new(),
    health: None,
    watchdog: None,
    host: None,
    cpus: None,
    memory: None,
};

impl ProcessRare {
    /// The value of a process that writes none of the rare keys.
    pub fn none() -> &'static ProcessRare {
        &NO_RARE_PROCESS_KEYS
    }
}

impl std::ops::Deref for ProcessSpec {
    type Target = ProcessRare;
    fn deref(&self) -> &ProcessRare {
        self.rare.as_deref().unwrap_or(&NO_RARE_PROCESS_KEYS)
    }
}

impl std::ops::DerefMut for ProcessSpec {
    /// Writing a rare key gives the process its own [`ProcessRare`].
    fn deref_mut(&mut self) -> &mut ProcessRare {
        self.rare.get_or_insert_with(Box::default)
    }
}

impl From<ProcessWire> for ProcessSpec {
    fn from(wire: ProcessWire) -> Self {
        let ProcessWire {
            cmd,
            shell,
            env,
            after,
            replicas,
            ports,
            inherit_env,
            cwd,
            user,
            group,
            ready,
            ready_timeout,
            restart,
            restart_limit,
            restart_backoff,
            stop_signal,
            stop_timeout,
            forward_signals,
            env_file,
            profiles,
            restart_dependents,
            health,
            watchdog,
            host,
            cpus,
            memory,
        } = wire;
        let env_file = env_file.map(PathList::into_items).unwrap_or_default();
        let (after, after_conditions) = after.split();
        let written = !inherit_env.is_empty()
            || cwd.is_some()
            || user.is_some()
            || group.is_some()
            || ready.is_some()
            || ready_timeout.is_some()
            || restart.is_some()
            || restart_limit.is_some()
            || restart_backoff.is_some()
            || stop_signal.is_some()
            || stop_timeout.is_some()
            || !forward_signals.is_empty()
            || !env_file.is_empty()
            || !profiles.is_empty()
            || restart_dependents.is_some()
            || !after_conditions.is_empty()
            || health.is_some()
            || watchdog.is_some()
            || host.is_some()
            || cpus.is_some()
            || memory.is_some();
        let rare = written.then(|| {
            Box::new(ProcessRare {
                inherit_env,
                cwd,
                user,
                group,
                ready,
                ready_timeout,
                restart,
                restart_limit,
                restart_backoff,
                stop_signal,
                stop_timeout,
                forward_signals,
                env_file,
                profiles,
                restart_dependents,
                after_conditions,
                health,
                watchdog,
                host,
                cpus,
                memory,
            })
        });
        ProcessSpec {
            cmd,
            shell,
            env,
            after,
            replicas,
            ports,
            rare,
        }
    }
}

// The schema describes the file as written: the wire shape, by its name.
impl JsonSchema for ProcessSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        ProcessWire::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        ProcessWire::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        ProcessWire::json_schema(generator)
    }
}

/// A named port of a process.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// The fd number the port gets in the child; allocated from 3 if absent.
    #[schemars(with = "Option<i64>")]
    pub fd: Option<Spanned<i64>>,
}

/// Readiness protocol of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Ready {
    /// Ready as soon as it has been exec'd.
    Started,
    /// Ready when it sends `READY=1` to `$NOTIFY_SOCKET` (sd_notify).
    Notify,
    /// Ready when it writes a newline to this fd.
    Fd {
        /// The fd number the child writes to.
        fd: i64,
    },
}

impl<'de> Deserialize<'de> for Ready {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ReadyVisitor;
        impl<'de> Visitor<'de> for ReadyVisitor {
            type Value = Ready;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"started\", \"notify\" or { fd = N }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ready, E> {
                match v {
                    "started" => Ok(Ready::Started),
                    "notify" => Ok(Ready::Notify),
                    other => Err(E::unknown_variant(
                        other,
                        &["started", "notify", "{ fd = N }"],
                    )),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ready, A::Error> {
                let mut fd = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "fd" {
                        fd = Some(map.next_value::<i64>()?);
                    } else {
                        return Err(de::Error::unknown_field(&key, &["fd"]));
                    }
                }
                fd.map(|fd| Ready::Fd { fd })
                    .ok_or_else(|| de::Error::missing_field("fd"))
            }
        }
        deserializer.deserialize_any(ReadyVisitor)
    }
}

/// What happens when a process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart.
    #[default]
    Never,
    /// Restart after a non-zero exit or death by signal.
    OnFailure,
    /// Restart whenever it exits.
    Always,
}

// Every key of an edge as written: the shape serde reads and the schema
// shows (its doc line is the schema's description). It lives only while one
// `[[edge]]` is read; `EdgeSpec` keeps the edge compact.
/// One IPC edge between endpoints.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename = "EdgeSpec")]
struct EdgeWire {
    /// The writer(s) / sender(s) / client(s): `process`, `process.port`, `@stdin`, `@external`.
    #[schemars(with = "OneOrMany")]
    from: Spanned<EndpointList>,
    /// The reader(s) / receiver(s) / server(s): `process`, `process.port`, `@stdout`, `@external`.
    /// Left out only on a `dbus` edge whose endpoints are all clients of a
    /// private bus ipc-run starts.
    #[serde(default = "no_endpoints")]
    #[schemars(with = "OneOrMany")]
    to: Spanned<EndpointList>,
    /// A name for the edge, used in object names and the plan (default `eN`).
    #[schemars(with = "Option<String>")]
    name: Option<Spanned<String>>,
    /// What flows: `stream` (default), `messages`, `shared`, `request` or `notify`.
    #[schemars(with = "Option<Traffic>")]
    traffic: Option<Spanned<Traffic>>,
    /// `auto` (default) or the mechanism to use, validated against the traits.
    #[schemars(with = "Option<MechanismName>")]
    mechanism: Option<Spanned<MechanismName>>,
    /// Data flows both ways.
    #[schemars(with = "Option<bool>")]
    duplex: Option<Spanned<bool>>,
    /// Largest message or record a writer sends in one write.
    #[schemars(with = "Option<ByteSize>")]
    message_size: Option<Spanned<ByteSize>>,
    /// Messages a queue holds before senders block.
    #[schemars(with = "Option<i64>")]
    depth: Option<Spanned<i64>>,
    /// Size of a shared-memory region.
    #[schemars(with = "Option<ByteSize>")]
    size: Option<Spanned<ByteSize>>,
    /// Bytes a writer may have sent that the reader has not yet consumed;
    /// used to analyse deadlock risk in data cycles.
    #[schemars(with = "Option<ByteSize>")]
    in_flight: Option<Spanned<ByteSize>>,
    /// Signal carried by a `notify` edge over the `signal` mechanism.
    #[schemars(with = "Option<String>")]
    signal: Option<Spanned<String>>,
    /// Protocol label of a `request` edge (grpc, json-rpc, http, dbus, …).
    #[schemars(with = "Option<String>")]
    protocol: Option<Spanned<String>>,
    /// Socket type for Unix sockets: `stream`, `seqpacket` or `dgram`.
    #[schemars(with = "Option<SocketType>")]
    socket: Option<Spanned<SocketType>>,
    /// Synchronisation of a shared-memory edge: `semaphores` (default),
    /// `none`, or `ring` (a ring of records, also for `traffic = "messages"`).
    #[schemars(with = "Option<SyncKind>")]
    sync: Option<Spanned<SyncKind>>,
    /// Initial value of a semaphore edge (default 0; 1 makes a mutex).
    #[schemars(with = "Option<i64>")]
    initial: Option<Spanned<i64>>,
    /// Permission bits of named objects, at most `0600`-like owner-only
    /// unless `0660` is asked for explicitly.
    #[schemars(with = "Option<String>")]
    mode: Option<Spanned<String>>,
    /// Address for TCP/UDP/RPC over IP, `host:port`; default `127.0.0.1:0`.
    #[schemars(with = "Option<String>")]
    address: Option<Spanned<String>>,
    /// Opt in to binding beyond loopback.
    #[schemars(with = "Option<bool>")]
    allow_remote: Option<Spanned<bool>>,
    /// How a FIFO reaches the process: `fd` (opened by ipc-run) or `path`.
    #[schemars(with = "Option<Delivery>")]
    deliver: Option<Spanned<Delivery>>,
    /// How an rpc edge's server gets its endpoint: `handover`,
    /// `server-bound`, `broker` or `per-connection` (default: from `protocol`).
    #[schemars(with = "Option<EndpointShape>")]
    endpoint: Option<Spanned<EndpointShape>>,
    /// `endpoint = "per-connection"`: server instances at once (default 64);
    /// further connections wait in the listen backlog.
    #[schemars(with = "Option<u32>", range(min = 1))]
    max_connections: Option<Spanned<u32>>,
    /// How ipc-run knows a `server-bound` rpc server serves its endpoint:
    /// `connect` or `grpc-health` (default: from `protocol`).
    #[schemars(with = "Option<ProbeKind>")]
    probe: Option<Spanned<ProbeKind>>,
}

/// One IPC edge between endpoints (`[[edge]]`; its keys are documented on
/// the schema's `EdgeSpec`).
///
/// Most edges write only `from`, `to` and perhaps `name`, `traffic` or
/// `mechanism`: the other keys, each an `Option<Spanned<_>>` of 24 to 40
/// bytes, live out of line in [`EdgeRare`], allocated only for an edge that
/// writes one. This keeps a large topology's edge list at about a third of
/// its inline size. `Deref` reads the rare keys as if they were fields
/// (`edge.size`), unset ones from a shared empty [`EdgeRare`].
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "EdgeWire")]
pub struct EdgeSpec {
    /// The writer(s) / sender(s) / client(s).
    pub from: Spanned<EndpointList>,
    /// The reader(s) / receiver(s) / server(s).
    pub to: Spanned<EndpointList>,
    /// A name for the edge (default `eN`).
    pub name: Option<Spanned<String>>,
    /// What flows (default `stream`).
    pub traffic: Option<Spanned<Traffic>>,
    /// `auto` (default) or the mechanism to use.
    pub mechanism: Option<Spanned<MechanismName>>,
    /// The rarely written keys; `None` when the edge writes none of them.
    pub rare: Option<Box<EdgeRare>>,
}

/// The keys of an edge that few edges write (see [`EdgeSpec`]).
#[derive(Debug, Clone, Default)]
pub struct EdgeRare {
    /// `duplex` as written.
    pub duplex: Option<Spanned<bool>>,
    /// `message_size` as written.
    pub message_size: Option<Spanned<ByteSize>>,
    /// `depth` as written.
    pub depth: Option<Spanned<i64>>,
    /// `size` as written.
    pub size: Option<Spanned<ByteSize>>,
    /// `in_flight` as written.
    pub in_flight: Option<Spanned<ByteSize>>,
    /// `signal` as written.
    pub signal: Option<Spanned<String>>,
    /// `protocol` as written.
    pub protocol: Option<Spanned<String>>,
    /// `socket` as written.
    pub socket: Option<Spanned<SocketType>>,
    /// `sync` as written.
    pub sync: Option<Spanned<SyncKind>>,
    /// `initial` as written.
    pub initial: Option<Spanned<i64>>,
    /// `mode` as written.
    pub mode: Option<Spanned<String>>,
    /// `address` as written.
    pub address: Option<Spanned<String>>,
    /// `allow_remote` as written.
    pub allow_remote: Option<Spanned<bool>>,
    /// `deliver` as written.
    pub deliver: Option<Spanned<Delivery>>,
    /// `endpoint` as written.
    pub endpoint: Option<Spanned<EndpointShape>>,
    /// `max_connections` as written.
    pub max_connections: Option<Spanned<u32>>,
    /// `probe` as written.
    pub probe: Option<Spanned<ProbeKind>>,
}

/// The rare keys of an edge that writes none.
static NO_RARE_KEYS: EdgeRare = EdgeRare {
    duplex: None,
    message_size: None,
    depth: None,
    size: None,
    in_flight: None,
    signal: None,
    protocol: None,
    socket: None,
    sync: None,
    initial: None,
    mode: None,
    address: None,
    allow_remote: None,
    deliver: None,
    endpoint: None,
    max_connections: None,
    probe: None,
};

impl std::ops::Deref for EdgeSpec {
    type Target = EdgeRare;
    fn deref(&self) -> &EdgeRare {
        self.rare.as_deref().unwrap_or(&NO_RARE_KEYS)
    }
}

impl std::ops::DerefMut for EdgeSpec {
    /// Writing a rare key gives the edge its own [`EdgeRare`].
    fn deref_mut(&mut self) -> &mut EdgeRare {
        self.rare.get_or_insert_with(Box::default)
    }
}

impl EdgeSpec {
    /// An edge with only `from` and `to` written.
    pub fn new(from: Spanned<EndpointList>, to: Spanned<EndpointList>) -> Self {
        EdgeSpec {
            from,
            to,
            name: None,
            traffic: None,
            mechanism: None,
            rare: None,
        }
    }
}

impl From<EdgeWire> for EdgeSpec {
    fn from(wire: EdgeWire) -> Self {
        let EdgeWire {
            from,
            to,
            name,
            traffic,
            mechanism,
            duplex,
            message_size,
            depth,
            size,
            in_flight,
            signal,
            protocol,
            socket,
            sync,
            initial,
            mode,
            address,
            allow_remote,
            deliver,
            endpoint,
            max_connections,
            probe,
        } = wire;
        let rare = EdgeRare {
            duplex,
            message_size,
            depth,
            size,
            in_flight,
            signal,
            protocol,
            socket,
            sync,
            initial,
            mode,
            address,
            allow_remote,
            deliver,
            endpoint,
            max_connections,
            probe,
        };
        let written = rare.duplex.is_some()
            || rare.message_size.is_some()
            || rare.depth.is_some()
            || rare.size.is_some()
            || rare.in_flight.is_some()
            || rare.signal.is_some()
            || rare.protocol.is_some()
            || rare.socket.is_some()
            || rare.sync.is_some()
            || rare.initial.is_some()
            || rare.mode.is_some()
            || rare.address.is_some()
            || rare.allow_remote.is_some()
            || rare.deliver.is_some()
            || rare.endpoint.is_some()
            || rare.max_connections.is_some()
            || rare.probe.is_some();
        EdgeSpec {
            from,
            to,
            name,
            traffic,
            mechanism,
            rare: written.then(|| Box::new(rare)),
        }
    }
}

// The schema describes the file as written: the wire shape, by its name.
impl JsonSchema for EdgeSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        EdgeWire::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        EdgeWire::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        EdgeWire::json_schema(generator)
    }
}

/// An empty side: `to` left out (a bus edge), pointed at by no span.
fn no_endpoints() -> Spanned<EndpointList> {
    Spanned::new(0..0, EndpointList::default())
}

/// One path or a list of them, as written in `env_file`.
#[derive(Debug, Clone, Default)]
pub struct PathList(pub Vec<Spanned<String>>);

impl PathList {
    /// The paths, a scalar given the span of the whole value.
    fn into_items(list: Spanned<PathList>) -> Vec<Spanned<String>> {
        let outer = list.span();
        list.into_inner()
            .0
            .into_iter()
            .map(|item| {
                if item.span() == (0..0) {
                    Spanned::new(outer.clone(), item.into_inner())
                } else {
                    item
                }
            })
            .collect()
    }
}

/// Schema-only shape of [`PathList`]: one path or a list.
#[derive(JsonSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "only describes the JSON shape for the schema")]
enum PathOrPaths {
    /// One file.
    One(String),
    /// Several files, read in order (a later one wins).
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for PathList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        one_or_many(deserializer, "a path or a list of paths").map(PathList)
    }
}

/// One string or a list of them (`from`/`to`, `env_file`); a lone string
/// has no span of its own yet (`0..0`): its owner gives it the value's.
fn one_or_many<'de, D: Deserializer<'de>>(
    deserializer: D,
    expecting: &'static str,
) -> Result<Vec<Spanned<String>>, D::Error> {
    struct ListVisitor(&'static str);
    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<Spanned<String>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![Spanned::new(0..0, v.to_owned())])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<Spanned<String>>()? {
                items.push(item);
            }
            Ok(items)
        }
    }
    deserializer.deserialize_any(ListVisitor(expecting))
}

/// One endpoint or a list of them, as written in `from`/`to`.
#[derive(Debug, Clone, Default)]
pub struct EndpointList(pub Vec<Spanned<String>>);

/// Schema-only shape of [`EndpointList`]: one endpoint or a list.
#[derive(JsonSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "only describes the JSON shape for the schema")]
enum OneOrMany {
    /// One endpoint.
    One(String),
    /// Several endpoints (fan-in or fan-out).
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for EndpointList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        one_or_many(
            deserializer,
            "an endpoint such as \"proc.port\" or a list of them",
        )
        .map(EndpointList)
    }
}

/// What flows over an edge; the planner picks a mechanism from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Traffic {
    /// An unframed byte stream.
    #[default]
    Stream,
    /// Discrete messages whose boundaries matter.
    Messages,
    /// A region of memory both sides map.
    Shared,
    /// Requests and responses, server on the `to` side.
    Request,
    /// An event without payload.
    Notify,
}

/// The mechanisms a user can name; `auto` lets the planner choose.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Deserialize,
    Serialize,
    JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum MechanismName {
    /// Let the planner choose from the edge's traits.
    #[default]
    Auto,
    /// Anonymous pipe.
    Pipe,
    /// Named FIFO in the run directory.
    Fifo,
    /// Unix socketpair.
    Socketpair,
    /// Unix socket listener bound before exec.
    UnixListener,
    /// TCP listener on loopback.
    Tcp,
    /// UDP socket on loopback.
    Udp,
    /// POSIX shared memory (`shm_open`).
    PosixShm,
    /// System V shared memory (`shmget`).
    SysvShm,
    /// POSIX message queue (`mq_open`).
    PosixMq,
    /// System V message queue (`msgget`).
    SysvMq,
    /// POSIX named semaphore (`sem_open`).
    PosixSem,
    /// System V semaphore set (`semget`).
    SysvSem,
    /// A signal sent by one process to another.
    Signal,
    /// An RPC endpoint: a listener plus a protocol label.
    Rpc,
    /// The processes it joins run as one MPI world under `mpirun`.
    Mpi,
}

// `kind`, `as_str` and `Display` live with the registry, in
// `src/mechanism/mod.rs`: the names are spelt there.

/// How the server of an rpc edge gets its endpoint (`endpoint = …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointShape {
    /// ipc-run binds the listener and hands it over as an fd (`LISTEN_FDS`),
    /// as systemd socket activation does.
    Handover,
    /// ipc-run chooses the address; the server binds it itself and is ready
    /// once a probe reaches it.
    ServerBound,
    /// A broker ipc-run starts on the topology's behalf (a private
    /// `dbus-daemon`); every endpoint is one of its clients.
    Broker,
    /// ipc-run accepts, and starts one server instance per connection with
    /// the connection on stdin and stdout (inetd's `nowait`, systemd's
    /// `Accept=yes`).
    PerConnection,
}

impl EndpointShape {
    /// The spelling used in files and plans.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointShape::Handover => "handover",
            EndpointShape::ServerBound => "server-bound",
            EndpointShape::Broker => "broker",
            EndpointShape::PerConnection => "per-connection",
        }
    }
}

/// `after` as written: a list of names (each waited for until ready) or a
/// table of names to conditions.
#[derive(Debug, Clone, Default, JsonSchema)]
#[schemars(untagged)]
pub enum After {
    /// `after = ["db"]`.
    List(#[schemars(with = "Vec<String>")] Vec<Spanned<String>>),
    /// `after = { db = "healthy" }`.
    Table(
        #[schemars(with = "BTreeMap<String, Condition>")]
        Vec<(Spanned<String>, Spanned<Condition>)>,
    ),
    /// Not written.
    #[default]
    #[schemars(skip)]
    None,
}

impl After {
    /// The names in order, and the conditions of the table form by name.
    fn split(self) -> (Vec<Spanned<String>>, BTreeMap<String, Spanned<Condition>>) {
        match self {
            After::List(names) => (names, BTreeMap::new()),
            After::None => (Vec::new(), BTreeMap::new()),
            After::Table(pairs) => {
                let conditions = pairs
                    .iter()
                    .map(|(name, condition)| (name.get_ref().clone(), condition.clone()))
                    .collect();
                (
                    pairs.into_iter().map(|(name, _)| name).collect(),
                    conditions,
                )
            }
        }
    }
}

impl<'de> Deserialize<'de> for After {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AfterVisitor;
        impl<'de> Visitor<'de> for AfterVisitor {
            type Value = After;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of process names or a table of process = condition")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<After, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<Spanned<String>>()? {
                    names.push(name);
                }
                Ok(After::List(names))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<After, A::Error> {
                let mut pairs = Vec::new();
                while let Some(name) = map.next_key::<Spanned<String>>()? {
                    pairs.push((name, map.next_value::<Spanned<Condition>>()?));
                }
                Ok(After::Table(pairs))
            }
        }
        deserializer.deserialize_any(AfterVisitor)
    }
}

/// What a dependant waits for of a process it names in `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// It was started (exec'd).
    Started,
    /// It declared readiness (its `ready`); what the list form means.
    #[default]
    Ready,
    /// Its health check passed.
    Healthy,
    /// It exited 0.
    Completed,
}

impl Condition {
    /// The spelling used in files and plans.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "started",
            Condition::Ready => "ready",
            Condition::Healthy => "healthy",
            Condition::Completed => "completed",
        }
    }
}

/// `health = { … }`: exactly one of `exec`, `connect`, `tcp`, `http`, and
/// the timing of the checks.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// A command run as a child; exit 0 = healthy.
    pub exec: Option<Vec<String>>,
    /// A port of this process on a listening edge it serves: a connection
    /// accepted = healthy.
    pub connect: Option<String>,
    /// `host:port`: a TCP connection accepted = healthy.
    pub tcp: Option<String>,
    /// A port of this process on a listening edge it serves (a `GET /`),
    /// or an `http://host:port/path` URL: a 2xx answer = healthy.
    pub http: Option<String>,
    /// Time between the end of one check and the start of the next (default 10 s).
    #[schemars(with = "Option<Millis>")]
    pub interval: Option<Millis>,
    /// How long one check may take (default 5 s).
    #[schemars(with = "Option<Millis>")]
    pub timeout: Option<Millis>,
    /// Consecutive failures that make the process unhealthy (default 3).
    pub retries: Option<u32>,
    /// Failures during this time after a start do not count (default 0).
    #[schemars(with = "Option<Millis>")]
    pub start_period: Option<Millis>,
}

/// How ipc-run knows that a `server-bound` rpc server serves its endpoint
/// (`probe = …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    /// A connection to the address is accepted.
    Connect,
    /// `grpc.health.v1.Health/Check` over h2c answers `SERVING`.
    GrpcHealth,
}

impl ProbeKind {
    /// The spelling used in files and plans.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Connect => "connect",
            ProbeKind::GrpcHealth => "grpc-health",
        }
    }
}

/// Unix socket types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SocketType {
    /// SOCK_STREAM: a byte stream.
    Stream,
    /// SOCK_SEQPACKET: reliable, ordered, message boundaries kept.
    Seqpacket,
    /// SOCK_DGRAM: datagrams.
    Dgram,
}

impl SocketType {
    /// The spelling used in files and plans.
    pub fn as_str(self) -> &'static str {
        match self {
            SocketType::Stream => "stream",
            SocketType::Seqpacket => "seqpacket",
            SocketType::Dgram => "dgram",
        }
    }
}

/// Synchronisation paired with a shared-memory edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SyncKind {
    /// A pair of semaphores (`items`, `slots`) created with the segment.
    Semaphores,
    /// No synchronisation provided; the processes bring their own.
    None,
    /// The segment is formatted as a ring of records (`docs/shm-ring.md`):
    /// futex waits, no semaphores. POSIX shared memory only.
    Ring,
}

/// How a FIFO reaches a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// ipc-run opens the FIFO and hands the process an fd.
    Fd,
    /// The process gets the path and opens the FIFO itself.
    Path,
}

/// The TOML files of the shipped topologies and the invalid corpus, in a
/// stable order: what the parse paths' unit tests compare over.
#[cfg(test)]
pub(crate) fn corpus_paths() -> Vec<std::path::PathBuf> {
    let mut all = Vec::new();
    for dir in ["topologies", "tests/invalid"] {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .expect("corpus")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        all.extend(paths);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Topology, TopologyError> {
        Topology::parse(Path::new("t.toml"), text.to_owned())
    }

    #[test]
    fn endpoints_keep_their_spans_in_scalars_and_lists() {
        let text =
            "[process.a]\ncmd = [\"x\"]\n[[edge]]\nfrom = \"a.out\"\nto = [\"b.in\", \"c\"]\n";
        let topology = parse(text).expect("valid");
        let edge = &topology.file.edge[0];
        let from = &edge.from.get_ref().0[0];
        assert_eq!(&text[from.span()], "\"a.out\"");
        let second = &edge.to.get_ref().0[1];
        assert_eq!(&text[second.span()], "\"c\"");
        let (name, _) = topology.file.process.iter().next().expect("one process");
        assert_eq!(&text[name.span()], "a");
    }

    /// The rare keys of an edge or a process get their box only when one is
    /// written, and read the same either way.
    #[test]
    fn rare_keys_are_boxed_only_when_written() {
        let text = "[process.a]\ncmd = [\"x\"]\n[process.b]\ncmd = [\"y\"]\ncwd = \"/tmp\"\n\
                    [[edge]]\nfrom = \"a\"\nto = \"b\"\n\
                    [[edge]]\nfrom = \"a.x\"\nto = \"b.y\"\nsize = \"4KiB\"\n";
        let topology = parse(text).expect("valid");
        let mut processes = topology.file.process.values();
        let (a, b) = (processes.next().expect("a"), processes.next().expect("b"));
        assert!(a.rare.is_none() && a.cwd.is_none());
        let cwd = b.cwd.as_ref().expect("cwd");
        assert_eq!(&text[cwd.span()], "\"/tmp\"");
        let (plain, sized) = (&topology.file.edge[0], &topology.file.edge[1]);
        assert!(plain.rare.is_none() && plain.size.is_none());
        let size = sized.size.as_ref().expect("size");
        assert_eq!(&text[size.span()], "\"4KiB\"");
        let mut written = plain.clone();
        written.duplex = Some(Spanned::new(0..0, true));
        assert!(written.rare.is_some());
    }

    #[test]
    fn after_is_a_list_or_a_table_of_conditions() {
        let text = "[process.a]\ncmd = [\"x\"]\nafter = [\"b\"]\n\
                    [process.c]\ncmd = [\"x\"]\nafter = { b = \"healthy\", a = \"completed\" }\n";
        let topology = parse(text).expect("valid");
        let mut processes = topology.file.process.values();
        let (a, c) = (processes.next().expect("a"), processes.next().expect("c"));
        assert_eq!(a.after.len(), 1);
        assert!(a.after_conditions.is_empty() && a.rare.is_none());
        let names: Vec<&str> = c.after.iter().map(|n| n.get_ref().as_str()).collect();
        assert_eq!(names, ["a", "b"], "a table is read in name order");
        let healthy = &c.after_conditions["b"];
        assert_eq!(*healthy.get_ref(), Condition::Healthy);
        assert_eq!(&text[healthy.span()], "\"healthy\"");
        assert_eq!(*c.after_conditions["a"].get_ref(), Condition::Completed);
    }

    #[test]
    fn ready_accepts_words_and_fd_tables() {
        let text = "[process.a]\ncmd = [\"x\"]\nready = { fd = 5 }\n[process.b]\ncmd = [\"y\"]\nready = \"notify\"\n";
        let topology = parse(text).expect("valid");
        let ready: Vec<_> = topology
            .file
            .process
            .values()
            .map(|p| p.ready.as_ref().map(|r| r.get_ref().clone()))
            .collect();
        assert_eq!(ready, vec![Some(Ready::Fd { fd: 5 }), Some(Ready::Notify)]);
    }

    #[test]
    fn unknown_keys_are_reported_with_a_span() {
        let err = parse("[process.a]\ncmd = [\"x\"]\ncommand = 1\n").expect_err("unknown key");
        let TopologyError::Parse { diagnostic, .. } = err else {
            panic!("parse error expected")
        };
        assert_eq!(diagnostic.code, "E0003");
        assert!(
            diagnostic.message.contains("command"),
            "{}",
            diagnostic.message
        );
    }

    fn diagnostic_of(text: &str) -> Diagnostic {
        match parse(text) {
            Err(TopologyError::Parse { diagnostic, .. }) => *diagnostic,
            other => panic!("a parse error expected for {text:?}, got {other:?}"),
        }
    }

    /// Each step and serde constructor gets its code; the messages are
    /// toml's and serde's, unchanged.
    #[test]
    fn errors_are_classified_by_where_they_were_raised() {
        let edge = "[process.a]\ncmd = [\"x\"]\n[[edge]]\nfrom = \"a\"\nto = \"a\"\n";
        let cases = [
            // Parse step.
            (
                "[process.a\n".to_owned(),
                "E0007",
                "invalid TOML: unclosed table, expected `]`",
            ),
            (
                "[process.a]\n[process.a]\n".to_owned(),
                "E0006",
                "duplicate table `a`",
            ),
            (
                "name = \"\\uD800\"\n".to_owned(),
                "E0005",
                "wrong type or value: invalid value, expected unicode hexadecimal value",
            ),
            // Deserialize step, by serde constructor.
            (
                "name = 1\n".to_owned(),
                "E0005",
                "wrong type or value: invalid type: integer `1`, expected a string",
            ),
            (
                "[process.a]\nready = {}\n".to_owned(),
                "E0004",
                "missing key: missing field `fd`",
            ),
            (
                "[process.a]\nrestart_limit = -1\n".to_owned(),
                "E0005",
                "wrong type or value: invalid value: integer `-1`, expected u32",
            ),
            (
                format!("{edge}traffic = \"loud\"\n"),
                "E0005",
                "wrong type or value: unknown variant `loud`, expected one of `stream`, `messages`, `shared`, `request`, `notify`",
            ),
            (
                format!("{edge}size = -1\n"),
                "E0005",
                "wrong type or value: invalid size -1: must not be negative",
            ),
            (
                "[process.a]\nready = { fd = 3, x = 1 }\n".to_owned(),
                "E0003",
                "unknown key `x`",
            ),
            // Raised by toml's deserializer itself.
            (
                format!("{edge}traffic = 5\n"),
                "E0007",
                "invalid TOML: wanted string or table",
            ),
        ];
        for (text, code, message) in cases {
            let diagnostic = diagnostic_of(&text);
            assert_eq!(
                (diagnostic.code, diagnostic.message.as_str()),
                (code, message),
                "{text:?}"
            );
        }
    }

    /// The key of an unknown-key error comes from serde's call, not from
    /// cutting its message, so any key is named whole.
    #[test]
    fn an_unknown_key_is_named_whole_whatever_it_holds() {
        let diagnostic = diagnostic_of("[process.a]\n\"a, expected b\" = 1\n");
        assert_eq!(diagnostic.code, "E0003");
        assert_eq!(diagnostic.message, "unknown key `a, expected b`");
        assert!(
            diagnostic.notes[0].starts_with("expected one of `cmd`, `shell`"),
            "{:?}",
            diagnostic.notes
        );
    }
}
