//! What the fuzz targets run, shared with `tests/fuzz_corpus.rs`, which
//! replays the committed corpus as a regular test.
//!
//! [`exercise`] loads and plans a source text and renders whatever comes out
//! (diagnostics, text plan, JSON, graphs), checking that every diagnostic
//! points inside the file. [`topology`] makes structured input: it turns
//! arbitrary bytes into a TOML
//! topology that is mostly well-formed, so the fuzzer spends its time in the
//! planner (selection, validation, fd allocation, cycles) rather than in the
//! TOML parser. Values are drawn from small menus that mix valid and invalid
//! choices (names, sizes, signals, fds at the edges of their ranges).

use std::path::Path;

use ipc_run::diagnostic::Diagnostic;
use ipc_run::plan::{self, Limits};
use ipc_run::topology::{Topology, TopologyError};

/// Loads and plans the file contents `bytes` with the default limits and
/// renders the result; panics if a diagnostic points outside the text or off
/// a char boundary.
pub fn exercise(bytes: Vec<u8>) {
    let path = Path::new("fuzz.toml");
    let topology = match Topology::from_bytes(path, bytes) {
        Ok(topology) => topology,
        Err(TopologyError::Parse {
            source_text,
            diagnostic,
            ..
        }) => {
            check_spans(&diagnostic, &source_text);
            let _ = diagnostic.render("fuzz.toml", &source_text, true);
            return;
        }
        Err(other) => panic!("parsing text gave a non-parse error: {other}"),
    };
    match plan::plan(&topology, &Limits::default()) {
        Ok(planned) => {
            for warning in &planned.warnings {
                check_spans(warning, &topology.source);
                let _ = warning.render("fuzz.toml", &topology.source, false);
            }
            let _ = plan::render::text(&planned.plan);
            let _ = plan::graph::dot(&planned.plan);
            let _ = plan::graph::mermaid(&planned.plan);
            serde_json::to_string(&planned.plan).expect("a plan serialises");
        }
        Err(error) => {
            assert!(error.error_count() > 0, "a failed plan has an error");
            for diagnostic in &error.diagnostics {
                check_spans(diagnostic, &topology.source);
                let _ = diagnostic.render("fuzz.toml", &topology.source, false);
            }
        }
    }
}

fn check_spans(diagnostic: &Diagnostic, source: &str) {
    let len = source.len();
    for label in &diagnostic.labels {
        let span = &label.span;
        assert!(
            span.start <= span.end && span.end <= len + 1,
            "{}: span {span:?} outside a source of {len} bytes",
            diagnostic.code
        );
        for at in [span.start, span.end] {
            assert!(
                at > len || source.is_char_boundary(at),
                "{}: span {span:?} not on a char boundary",
                diagnostic.code
            );
        }
    }
}

/// Reads choices from the input; once it runs out, every choice is 0.
pub struct Choices<'a> {
    data: &'a [u8],
}

impl<'a> Choices<'a> {
    /// Choices drawn from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Choices { data }
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    fn pick<'m>(&mut self, menu: &[&'m str]) -> &'m str {
        menu[self.below(menu.len())]
    }

    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }
}

const PROCESS_NAMES: &[&str] = &["a", "b", "c", "web", "db", "w-1", "x_2", "A", "1a", ""];
const PORTS: &[&str] = &[
    "in", "out", "stdin", "stdout", "stderr", "rpc", "q", "x.y", "",
];
pub const TRAFFIC: &[&str] = &["stream", "messages", "shared", "request", "notify", "bogus"];
const MECHANISMS: &[&str] = &[
    "auto",
    "pipe",
    "fifo",
    "socketpair",
    "unix-listener",
    "tcp",
    "udp",
    "posix-shm",
    "sysv-shm",
    "posix-mq",
    "sysv-mq",
    "posix-sem",
    "sysv-sem",
    "signal",
    "rpc",
    "carrier-pigeon",
];
/// The mechanism names a topology may use (every one of [`MECHANISMS`] but
/// the last, unknown one).
pub const KNOWN_MECHANISMS: &[&str] = match MECHANISMS.split_last() {
    Some((_, known)) => known,
    None => &[],
};
const SIZES: &[&str] = &[
    "\"64KiB\"",
    "\"1MiB\"",
    "\"0\"",
    "\"4096\"",
    "\"9999999999GiB\"",
    "\"-1\"",
    "\"lots\"",
    "128",
    "\"8KiB\"",
];
const SIGNALS: &[&str] = &[
    "\"SIGUSR1\"",
    "\"USR2\"",
    "\"9\"",
    "\"SIGKILL\"",
    "\"SIGRTMIN\"",
    "\"0\"",
    "\"hup\"",
];
const DURATIONS: &[&str] = &[
    "\"5s\"",
    "\"100ms\"",
    "\"0\"",
    "\"1h\"",
    "\"-3s\"",
    "\"soon\"",
];
const FDS: &[&str] = &["0", "2", "3", "4", "7", "1023", "1048576", "-1"];
const ENDPOINT_SPECIALS: &[&str] = &["@stdin", "@stdout", "@external", "@nowhere"];

fn endpoint(c: &mut Choices<'_>, processes: &[&str]) -> String {
    match c.below(8) {
        0 => c.pick(ENDPOINT_SPECIALS).to_owned(),
        1 => c.pick(PROCESS_NAMES).to_owned(),
        _ => {
            let process = if processes.is_empty() {
                c.pick(PROCESS_NAMES)
            } else {
                processes[c.below(processes.len())]
            };
            if c.below(3) == 0 {
                process.to_owned()
            } else {
                format!("{process}.{}", c.pick(PORTS))
            }
        }
    }
}

fn endpoints(c: &mut Choices<'_>, processes: &[&str]) -> String {
    let count = c.below(4);
    if count == 0 {
        return format!("\"{}\"", endpoint(c, processes));
    }
    let list: Vec<String> = (0..count)
        .map(|_| format!("\"{}\"", endpoint(c, processes)))
        .collect();
    format!("[{}]", list.join(", "))
}

/// A topology document drawn from `data`.
pub fn topology(data: &[u8]) -> String {
    let mut c = Choices::new(data);
    let mut out = String::new();
    if c.flag() {
        out.push_str("name = \"fuzz\"\n");
    }
    let mut processes: Vec<&str> = Vec::new();
    for _ in 0..1 + c.below(6) {
        let name = c.pick(PROCESS_NAMES);
        if processes.contains(&name) {
            continue;
        }
        processes.push(name);
    }
    if c.below(4) == 0 {
        let stages: Vec<String> = (0..c.below(5))
            .map(|_| format!("\"{}\"", endpoint(&mut c, &processes)))
            .collect();
        out.push_str(&format!("pipeline = [{}]\n", stages.join(", ")));
    }
    if c.below(4) == 0 {
        out.push_str(&format!("exit_code_from = \"{}\"\n", c.pick(PROCESS_NAMES)));
    }
    for name in &processes {
        out.push_str(&format!("\n[process.\"{name}\"]\n"));
        match c.below(6) {
            0 => out.push_str("shell = \"true\"\n"),
            1 => out.push_str("cmd = []\n"),
            2 => out.push_str("cmd = [\"\"]\n"),
            _ => out.push_str("cmd = [\"true\", \"x\"]\n"),
        }
        if c.below(3) == 0 {
            out.push_str(&format!(
                "replicas = {}\n",
                c.pick(&["0", "1", "2", "3", "1025"])
            ));
        }
        if c.below(3) == 0 {
            let after: Vec<String> = (0..1 + c.below(2))
                .map(|_| format!("\"{}\"", c.pick(PROCESS_NAMES)))
                .collect();
            out.push_str(&format!("after = [{}]\n", after.join(", ")));
        }
        if c.below(4) == 0 {
            out.push_str(c.pick(&[
                "ready = \"notify\"\n",
                "ready = \"started\"\n",
                "ready = { fd = 3 }\n",
                "ready = { fd = 1 }\n",
                "ready = \"never\"\n",
            ]));
        }
        if c.below(4) == 0 {
            out.push_str(c.pick(&[
                "restart = \"always\"\n",
                "restart = \"on-failure\"\nrestart_limit = 2\n",
                "restart = \"sometimes\"\n",
            ]));
            out.push_str(&format!("restart_backoff = {}\n", c.pick(DURATIONS)));
        }
        if c.below(5) == 0 {
            out.push_str(&format!("stop_signal = {}\n", c.pick(SIGNALS)));
            out.push_str(&format!("stop_timeout = {}\n", c.pick(DURATIONS)));
        }
        if c.below(5) == 0 {
            out.push_str(&format!("forward_signals = [{}]\n", c.pick(SIGNALS)));
        }
        if c.below(5) == 0 {
            out.push_str(c.pick(&[
                "env = { A = \"1\" }\n",
                "env = { IPC_RUN_ID = \"x\" }\n",
                "env = { \"A=B\" = \"1\" }\n",
                "inherit_env = [\"LISTEN_FDS\"]\n",
            ]));
        }
        for _ in 0..c.below(3) {
            let port = c.pick(PORTS);
            out.push_str(&format!("[process.\"{name}\".ports.\"{port}\"]\n"));
            if c.flag() {
                out.push_str(&format!("fd = {}\n", c.pick(FDS)));
            }
        }
    }
    for _ in 0..c.below(6) {
        out.push_str("\n[[edge]]\n");
        if c.flag() {
            out.push_str(&format!(
                "name = \"{}\"\n",
                c.pick(&["e", "jobs", "q", "e0", "Bad Name"])
            ));
        }
        if c.below(8) != 0 {
            out.push_str(&format!("from = {}\n", endpoints(&mut c, &processes)));
        }
        if c.below(8) != 0 {
            out.push_str(&format!("to = {}\n", endpoints(&mut c, &processes)));
        }
        if c.flag() {
            out.push_str(&format!("traffic = \"{}\"\n", c.pick(TRAFFIC)));
        }
        if c.flag() {
            out.push_str(&format!("mechanism = \"{}\"\n", c.pick(MECHANISMS)));
        }
        let traits: &[&str] = &[
            "duplex",
            "message_size",
            "depth",
            "size",
            "in_flight",
            "signal",
            "protocol",
            "socket",
            "sync",
            "initial",
            "mode",
            "address",
            "allow_remote",
            "deliver",
        ];
        for _ in 0..c.below(4) {
            let line = match c.pick(traits) {
                "duplex" => format!("duplex = {}\n", c.flag()),
                "message_size" => format!("message_size = {}\n", c.pick(SIZES)),
                "depth" => format!("depth = {}\n", c.pick(&["0", "1", "10", "100000"])),
                "size" => format!("size = {}\n", c.pick(SIZES)),
                "in_flight" => format!("in_flight = {}\n", c.pick(SIZES)),
                "signal" => format!("signal = {}\n", c.pick(SIGNALS)),
                "protocol" => format!(
                    "protocol = \"{}\"\n",
                    c.pick(&["http", "json-rpc", "grpc", "bad proto"])
                ),
                "socket" => format!(
                    "socket = \"{}\"\n",
                    c.pick(&["stream", "seqpacket", "dgram", "raw"])
                ),
                "sync" => format!("sync = \"{}\"\n", c.pick(&["semaphores", "none", "magic"])),
                "initial" => format!("initial = {}\n", c.pick(&["0", "1", "32768", "-1"])),
                "mode" => format!(
                    "mode = \"{}\"\n",
                    c.pick(&["0600", "0660", "0666", "0700", "rw"])
                ),
                "address" => format!(
                    "address = \"{}\"\n",
                    c.pick(&[
                        "127.0.0.1:0",
                        "0.0.0.0:8080",
                        "[::1]:0",
                        "localhost",
                        "1.2.3.4:99999"
                    ])
                ),
                "allow_remote" => format!("allow_remote = {}\n", c.flag()),
                _ => format!("deliver = \"{}\"\n", c.pick(&["fd", "path", "carrier"])),
            };
            out.push_str(&line);
        }
    }
    out
}
