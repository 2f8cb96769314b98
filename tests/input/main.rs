//! Bad input (the reliability bar, B1–B7), through the real binary: every
//! case is refused by `ipc-run check` and by `ipc-run run` with exit 1, a
//! diagnostic with its stable code and a `file:line:col` on the right line,
//! no panic, and nothing created — the `--runtime-dir` is never made and
//! no new `ipc-run.` object appears in /dev/shm or /dev/mqueue.
//!
//! Corpus files (`tests/invalid/`) are reused where they hold the case.
//!
//! A binary of its own: "no new object appears" is checked on the whole
//! host, so no case that creates objects may run beside these (cargo test
//! runs one test binary at a time).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../support/mod.rs"]
mod support;

use support::{IPC_RUN, MANIFEST_DIR, Scratch};

/// A corpus file.
fn corpus(name: &str) -> PathBuf {
    Path::new(MANIFEST_DIR).join("tests/invalid").join(name)
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

fn ipc_run(args: &[&str], file: &Path, extra: &[&Path], env: &[(&str, &str)]) -> Outcome {
    let mut command = Command::new(IPC_RUN);
    command
        .args(["--color", "never"])
        .args(args)
        .arg(file)
        .args(extra)
        // Debug logs name the run directory and every object if one is
        // ever created.
        .env("IPC_RUN_LOG", "debug")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let started = Instant::now();
    let output = command.output().unwrap();
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// `ipc-run.` objects in /dev/shm and /dev/mqueue (POSIX names are
/// `/ipc-run.<run id>.<channel>`; semaphores show as `sem.ipc-run.…`).
fn ipc_run_objects() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for dir in ["/dev/shm", "/dev/mqueue"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("ipc-run.") || name.starts_with("sem.ipc-run.") {
                found.insert(format!("{dir}/{name}"));
            }
        }
    }
    found
}

/// New objects since `before` that stay: another test process on this
/// machine may own transient ones, which go away with their run.
fn new_objects_that_stay(before: &BTreeSet<String>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let new: Vec<String> = ipc_run_objects().difference(before).cloned().collect();
        if new.is_empty() || Instant::now() > deadline {
            return new;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a refusal must show.
struct Expect<'a> {
    /// The code, e.g. `E0201`.
    code: &'a str,
    /// Line of the primary label (`--> file:LINE:COL`); `None` for a
    /// diagnostic about the whole file.
    line: Option<usize>,
    /// Further lines the snippet must show (the other side of a conflict).
    also_lines: &'a [usize],
    /// Texts stderr must contain (names of both sides, limits, sources).
    mentions: &'a [&'a str],
}

impl<'a> Expect<'a> {
    /// `code` pointing at `line`, nothing more to show or mention.
    fn at(code: &'a str, line: usize) -> Expect<'a> {
        Expect {
            code,
            line: Some(line),
            also_lines: &[],
            mentions: &[],
        }
    }
}

/// Checks one refusal's output.
fn assert_refused(what: &str, file: &Path, out: &Outcome, expect: &Expect<'_>) {
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(1), "{what}: exit code\n{stderr}");
    assert!(!stderr.contains("panicked"), "{what}: panic\n{stderr}");
    assert!(
        stderr.contains(&format!("error[{}]", expect.code)),
        "{what}: no error[{}]\n{stderr}",
        expect.code
    );
    let shown = file.display().to_string();
    match expect.line {
        Some(line) => {
            let at = format!("--> {shown}:{line}:");
            let pos = stderr
                .find(&at)
                .unwrap_or_else(|| panic!("{what}: no `{at}COL`\n{stderr}"));
            let col = &stderr[pos + at.len()..];
            assert!(
                col.starts_with(|c: char| c.is_ascii_digit()),
                "{what}: no column after `{at}`\n{stderr}"
            );
        }
        None => assert!(
            stderr.contains(&format!("--> {shown}")),
            "{what}: the file is not named\n{stderr}"
        ),
    }
    for line in expect.line.iter().chain(expect.also_lines) {
        let gutter = format!("{line} |");
        assert!(
            stderr.lines().any(|l| l.trim_start().starts_with(&gutter)),
            "{what}: line {line} not shown\n{stderr}"
        );
    }
    for text in expect.mentions {
        assert!(
            stderr.contains(text),
            "{what}: `{text}` not mentioned\n{stderr}"
        );
    }
}

/// `check` and `run` both refuse `file` as `expect` says, fast, and `run`
/// creates nothing. Returns the two wall times.
fn refused(scratch: &Scratch, file: &Path, limits: &str, expect: &Expect<'_>) -> [Duration; 2] {
    refused_with(scratch, file, limits, &[], expect)
}

/// `toml`, written as a topology of `scratch`, is refused with `code` under
/// the documented limits, pointing at `line`.
fn topology_refused_at(scratch: &mut Scratch, toml: &str, code: &str, line: usize) {
    let file = scratch.topology(toml);
    refused(scratch, &file, "default", &Expect::at(code, line));
}

/// Each `(corpus file, code, line, mentions)` is refused with the
/// documented limits, pointing at that line.
fn refused_at_lines(scratch: &Scratch, cases: &[(&str, &str, usize, &[&str])]) {
    for &(file, code, line, mentions) in cases {
        refused(
            scratch,
            &corpus(file),
            "default",
            &Expect {
                code,
                line: Some(line),
                also_lines: &[],
                mentions,
            },
        );
    }
}

fn refused_with(
    scratch: &Scratch,
    file: &Path,
    limits: &str,
    env: &[(&str, &str)],
    expect: &Expect<'_>,
) -> [Duration; 2] {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let check = ipc_run(&["check", "--limits", limits], file, &[], env);
    assert_refused(&format!("check {name}"), file, &check, expect);
    assert_eq!(check.stdout, "", "check {name}: nothing on stdout");

    let before = ipc_run_objects();
    let runtime = scratch.runtime();
    let run = ipc_run(
        &["run", "--limits", limits, "--runtime-dir"],
        &runtime,
        &[file],
        env,
    );
    // `run --runtime-dir RT FILE`: the file comes last.
    assert_refused(&format!("run {name}"), file, &run, expect);
    assert_eq!(run.stdout, "", "run {name}: nothing ran");
    assert!(
        !run.stderr.contains("run directory created") && !run.stderr.contains("journal:"),
        "run {name}: something was created\n{}",
        run.stderr
    );
    assert!(
        !runtime.exists() || std::fs::read_dir(&runtime).unwrap().next().is_none(),
        "run {name}: the runtime directory is not empty"
    );
    let _ = std::fs::remove_dir(&runtime);
    let left = new_objects_that_stay(&before);
    assert!(left.is_empty(), "run {name}: objects appeared: {left:?}");
    // How fast a refusal is, is measured by bench/plan/run.sh (check of
    // 100k-process files, optimised build), not asserted here.
    for (command, out) in [("check", &check), ("run", &run)] {
        eprintln!("{name}: {command} refused in {:?}", out.elapsed);
    }
    [check.elapsed, run.elapsed]
}

// ----- B1: huge and deep input fails fast -----------------------------------

#[test]
fn b1_deep_nesting_huge_string_and_a_million_processes_fail_fast() {
    let mut scratch = Scratch::new("b1");
    // 100 000 nested arrays.
    let deep = scratch.topology(&format!(
        "[process.a]\ncmd = [\"true\"]\nenv = {{ X = {}{} }}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    ));
    refused(
        &scratch,
        &deep,
        "default",
        &Expect {
            code: "E0007",
            line: Some(3),
            also_lines: &[],
            mentions: &["recursion"],
        },
    );
    // A 10 MB string, as an environment value and as an argument.
    let ten_mb = "x".repeat(10_000_000);
    let big_env = scratch.topology(&format!(
        "[process.a]\ncmd = [\"true\"]\nenv = {{ X = \"{ten_mb}\" }}\n"
    ));
    refused(
        &scratch,
        &big_env,
        "default",
        &Expect {
            code: "E0608",
            line: Some(3),
            also_lines: &[],
            mentions: &["MAX_ARG_STRLEN"],
        },
    );
    let big_arg = scratch.topology(&format!("[process.a]\n\ncmd = [\"true\", \"{ten_mb}\"]\n"));
    refused(
        &scratch,
        &big_arg,
        "default",
        &Expect {
            code: "E0608",
            line: Some(3),
            also_lines: &[],
            mentions: &["10000000 bytes", "131072 (default)"],
        },
    );
    drop(ten_mb);
    // 10^6 processes as replicas: 1000 processes x 1024. `p97` takes the
    // count past 100 000; its `replicas` is on line 97 * 3 + 3.
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&format!(
            "[process.p{i}]\ncmd = [\"true\"]\nreplicas = 1024\n"
        ));
    }
    let replicas = scratch.topology(&text);
    refused(
        &scratch,
        &replicas,
        "default",
        &Expect {
            code: "E0610",
            line: Some(294),
            also_lines: &[],
            mentions: &["1024000 process instances", "`p97`"],
        },
    );
    // 10^6 processes as tables: over the 16 MiB cap, refused before parsing.
    let mut text = String::with_capacity(32 << 20);
    for i in 0..1_000_000 {
        text.push_str(&format!("[process.p{i}]\ncmd = [\"true\"]\n"));
    }
    assert!(text.len() > 16 << 20);
    let huge = scratch.topology(&text);
    drop(text);
    refused(
        &scratch,
        &huge,
        "default",
        &Expect {
            code: "E0002",
            line: None,
            also_lines: &[],
            mentions: &["16777216"],
        },
    );
    std::fs::remove_file(&huge).unwrap();
    // Many processes under the cap: 100 001 tables (3.2 MB), one past the
    // instance limit; `p100000` is declared on line 200 001.
    let mut text = String::new();
    for i in 0..100_001 {
        text.push_str(&format!("[process.p{i}]\ncmd = [\"true\"]\n"));
    }
    let many = scratch.topology(&text);
    refused(
        &scratch,
        &many,
        "default",
        &Expect {
            code: "E0610",
            line: Some(200_001),
            also_lines: &[],
            mentions: &["100001 process instances", "`p100000`"],
        },
    );
}

// ----- B2: conflicts name both sides ----------------------------------------

#[test]
fn b2_duplicate_names_shared_ports_and_bad_fds_are_refused_naming_both_sides() {
    let mut scratch = Scratch::new("b2");
    // Duplicate process names.
    refused(
        &scratch,
        &corpus("E0006-duplicate-process.toml"),
        "default",
        &Expect {
            code: "E0006",
            line: Some(5),
            also_lines: &[2],
            mentions: &["`a`", "first defined here", "defined again here"],
        },
    );
    // Duplicate edge names.
    refused(
        &scratch,
        &corpus("E0105-duplicate-edge-name.toml"),
        "default",
        &Expect {
            code: "E0105",
            line: Some(15),
            also_lines: &[10],
            mentions: &["`data`"],
        },
    );
    // Two edges on one port.
    refused(
        &scratch,
        &corpus("E0201-port-on-two-edges.toml"),
        "default",
        &Expect {
            code: "E0201",
            line: Some(17),
            also_lines: &[12],
            mentions: &["`b.stdin`", "`first`", "`second`"],
        },
    );
    // Two edges whose ports ask for one fd.
    let one_fd = scratch.topology(
        r#"[process.a]
cmd = ["true"]
[process.a.ports.in]
fd = 3
[process.a.ports.out]
fd = 3
[process.b]
cmd = ["true"]
[[edge]]
name = "into-a"
from = "b.x"
to = "a.in"
[[edge]]
name = "out-of-a"
from = "a.out"
to = "b.y"
"#,
    );
    refused(
        &scratch,
        &one_fd,
        "default",
        &Expect {
            code: "E0202",
            line: Some(6),
            also_lines: &[4],
            mentions: &["`in`", "`out`", "fd 3"],
        },
    );
    // The readiness fd on a port's fd.
    refused(
        &scratch,
        &corpus("E0202-ready-fd-collision.toml"),
        "default",
        &Expect {
            code: "E0202",
            line: Some(4),
            also_lines: &[7],
            mentions: &["fd 4"],
        },
    );
    // An fd colliding with stdio, and a standard stream moved.
    refused(
        &scratch,
        &corpus("E0203-fd-is-stdio.toml"),
        "default",
        &Expect {
            code: "E0203",
            line: Some(6),
            also_lines: &[],
            mentions: &["`data`", "fd 1"],
        },
    );
    refused(
        &scratch,
        &corpus("E0203-stdio-port-moved.toml"),
        "default",
        &Expect::at("E0203", 6),
    );
    // An fd at the nofile limit (1024 with --limits default) and above it.
    for (fd, line) in [(1024, 7), (1_000_000, 7)] {
        let at_limit = scratch.topology(&format!(
            "[process.a]\ncmd = [\"true\"]\n[process.b]\ncmd = [\"true\"]\n\
             [process.a.ports.data]\n# the fd:\nfd = {fd}\n\
             [[edge]]\nfrom = \"a.data\"\nto = \"b.data\"\n"
        ));
        refused(
            &scratch,
            &at_limit,
            "default",
            &Expect {
                code: "E0204",
                line: Some(line),
                also_lines: &[],
                mentions: &[&format!("fd {fd}"), "RLIMIT_NOFILE is 1024 (default)"],
            },
        );
    }
    // Allocated fds reaching the limit: 1022 ports from fd 3 need fd 1024.
    let mut text = String::from("[process.a]\ncmd = [\"true\"]\n[process.b]\ncmd = [\"true\"]\n");
    for i in 0..1022 {
        text.push_str(&format!(
            "[[edge]]\nfrom = \"a.p{i}\"\nto = \"b.p{i}\"\nmechanism = \"pipe\"\n"
        ));
    }
    let many_fds = scratch.topology(&text);
    refused(
        &scratch,
        &many_fds,
        "default",
        &Expect {
            code: "E0204",
            line: Some(1),
            also_lines: &[],
            mentions: &[
                "`a` would need fd 1024",
                "`b` would need fd 1024",
                "1022 fds",
            ],
        },
    );
}

// ----- B3: dangling endpoints and FIFO deadlocks, before launch -------------

#[test]
fn b3_dangling_endpoints_and_fifo_open_order_deadlocks_are_refused_before_launch() {
    let mut scratch = Scratch::new("b3");
    refused(
        &scratch,
        &corpus("E0102-dangling-endpoint.toml"),
        "default",
        &Expect {
            code: "E0102",
            line: Some(7),
            also_lines: &[],
            mentions: &["`ghost`", "the processes are: a"],
        },
    );
    // Dangling in a list, in a pipeline, and as a port endpoint.
    let in_list = scratch.topology(
        "[process.a]\ncmd = [\"true\"]\n[process.b]\ncmd = [\"true\"]\n\
         [[edge]]\nfrom = \"a.x\"\nto = [\"b.x\", \"c.x\"]\nmechanism = \"posix-mq\"\n\
         traffic = \"messages\"\n",
    );
    refused(
        &scratch,
        &in_list,
        "default",
        &Expect {
            code: "E0102",
            line: Some(7),
            also_lines: &[],
            mentions: &["`c`"],
        },
    );
    let in_pipeline = scratch
        .topology("pipeline = [\"a\", \"nobody\", \"@stdout\"]\n[process.a]\ncmd = [\"true\"]\n");
    refused(
        &scratch,
        &in_pipeline,
        "default",
        &Expect {
            code: "E0102",
            line: Some(1),
            also_lines: &[],
            mentions: &["`nobody`"],
        },
    );
    // A FIFO open-order deadlock: both crossing opens are shown.
    refused(
        &scratch,
        &corpus("E0501-fifo-open-order.toml"),
        "default",
        &Expect {
            code: "E0501",
            line: Some(24),
            also_lines: &[5, 11, 16],
            mentions: &["`a` opens `replies` first", "`b` opens `requests` first"],
        },
    );
}

// ----- B4: bad names, at plan time ------------------------------------------

#[test]
fn b4_bad_object_names_are_refused_at_plan_time() {
    let mut scratch = Scratch::new("b4");
    // Every place a name is written, with every bad form. TOML escapes:
    // `\u0000` is a NUL byte.
    let long = "a".repeat(256);
    let bad = [
        "/a/b",
        "..",
        ".",
        "",
        long.as_str(),
        "a\\u0000b",
        "../../etc/passwd",
        "a/../../x",
        "A",
        "a b",
        "a\\nb",
        "\\u001b[2J",
    ];
    for name in bad {
        // (topology, code, line of the name)
        let forms = [
            (
                format!("[process.\"{name}\"]\ncmd = [\"true\"]\n"),
                "E0101",
                1,
            ),
            (
                format!("[process.a]\ncmd = [\"true\"]\n[process.a.ports.\"{name}\"]\n"),
                "E0101",
                3,
            ),
            (
                format!(
                    "[process.a]\ncmd = [\"true\"]\n[process.b]\ncmd = [\"true\"]\n\
                     [[edge]]\nname = \"{name}\"\nfrom = \"a.x\"\nto = \"b.x\"\nmechanism = \"fifo\"\n"
                ),
                "E0101",
                6,
            ),
            (
                format!(
                    "[process.a]\ncmd = [\"true\"]\n[process.b]\ncmd = [\"true\"]\n\
                     [[edge]]\nfrom = \"a.{name}\"\nto = \"b.x\"\nmechanism = \"fifo\"\n"
                ),
                "E0103",
                6,
            ),
            (
                format!("[process.a]\ncmd = [\"true\"]\n[[edge]]\nfrom = \"a\"\nto = \"{name}\"\n"),
                "E0103",
                5,
            ),
            (
                format!("pipeline = [\"a\", \"{name}\"]\n[process.a]\ncmd = [\"true\"]\n"),
                "E0103",
                1,
            ),
            (
                format!("[process.a]\ncmd = [\"true\"]\nafter = [\"{name}\"]\n"),
                "E0104",
                3,
            ),
            (
                format!("exit_code_from = \"{name}\"\n[process.a]\ncmd = [\"true\"]\n"),
                "E0104",
                1,
            ),
        ];
        for (toml, code, line) in forms {
            let file = scratch.topology(&toml);
            let check = ipc_run(&["check", "--limits", "default"], &file, &[], &[]);
            let what = format!("name {name:?} in\n{toml}");
            assert_refused(&what, &file, &check, &Expect::at(code, line));
            // A NUL byte or an escape sequence never reaches the terminal.
            assert!(
                !check.stderr.chars().any(|c| c.is_control() && c != '\n'),
                "{what}: raw control character\n{}",
                check.stderr.escape_debug()
            );
        }
    }
    // `run` refuses them too and creates nothing (one form per kind).
    for (toml, code, line) in [
        ("[process.\"..\"]\ncmd = [\"true\"]\n", "E0101", 1),
        (
            "[process.a]\ncmd = [\"true\"]\n[process.b]\ncmd = [\"true\"]\n\
             [[edge]]\nname = \"../../x\"\nfrom = \"a.x\"\nto = \"b.x\"\nmechanism = \"fifo\"\n",
            "E0101",
            6,
        ),
        (
            "[process.a]\ncmd = [\"true\"]\n[process.b]\ncmd = [\"true\"]\n\
             [[edge]]\nname = \"a\\u0000b\"\nfrom = \"a.x\"\nto = \"b.x\"\n\
             traffic = \"shared\"\nsize = 4096\n",
            "E0101",
            6,
        ),
        (
            "[process.a]\ncmd = [\"true\"]\n[process.a.ports.\"/a/b\"]\n",
            "E0101",
            3,
        ),
    ] {
        topology_refused_at(&mut scratch, toml, code, line);
    }
    // Values that reach a child's environment or its cwd: a NUL byte is
    // refused when planning, not when exec fails.
    let nul_topology_name =
        scratch.topology("name = \"a\\u0000b\"\n[process.a]\ncmd = [\"true\"]\n");
    refused(
        &scratch,
        &nul_topology_name,
        "default",
        &Expect {
            code: "E0703",
            line: Some(1),
            also_lines: &[],
            mentions: &["IPC_RUN_TOPOLOGY"],
        },
    );
    let long_topology_name = scratch.topology(&format!(
        "name = \"{}\"\n[process.a]\ncmd = [\"true\"]\n",
        "n".repeat(200_000)
    ));
    refused(
        &scratch,
        &long_topology_name,
        "default",
        &Expect {
            code: "E0608",
            line: Some(1),
            also_lines: &[],
            mentions: &["IPC_RUN_TOPOLOGY", "131072 (default)"],
        },
    );
    let nul_cwd = scratch.topology("[process.a]\ncmd = [\"true\"]\ncwd = \"/tmp\\u0000/x\"\n");
    refused(
        &scratch,
        &nul_cwd,
        "default",
        &Expect {
            code: "E0703",
            line: Some(3),
            also_lines: &[],
            mentions: &["`cwd`"],
        },
    );
}

#[test]
fn b4_socket_paths_of_108_bytes_or_more_are_refused_at_plan_time() {
    let mut scratch = Scratch::new("b4-sun-path");
    // A runtime directory whose run directories are 81 + 1 + 16 = 98 bytes:
    // `<run dir>/api.sock` is 107 bytes (fits with its NUL), `apix.sock` 108.
    let base = scratch.dir.display().to_string();
    let long_root = format!("{base}/{}", "r".repeat(81 - base.len() - 1));
    assert_eq!(long_root.len(), 81);
    let socket = |edge: &str| {
        format!(
            "[process.a]\ncmd = [\"PROBE\", \"exit\", \"0\"]\n\
             [process.b]\ncmd = [\"PROBE\", \"exit\", \"0\"]\n\
             [[edge]]\nname = \"{edge}\"\nfrom = \"a.api\"\nto = \"b.api\"\ntraffic = \"request\"\n"
        )
    };
    let too_long = scratch.topology(&socket("apix"));
    let fits = scratch.topology(&socket("api"));
    let notify =
        scratch.topology("[process.a]\ncmd = [\"PROBE\", \"exit\", \"0\"]\nready = \"notify\"\n");
    for limits in ["host", "default"] {
        // `run --runtime-dir`: planned against that directory.
        for (file, line, mention) in [(&too_long, 6, "108 bytes"), (&notify, 1, "notify")] {
            let out = ipc_run(
                &["run", "--limits", limits, "--runtime-dir", &long_root],
                file,
                &[],
                &[],
            );
            assert_refused(
                &format!("run --limits {limits}"),
                file,
                &out,
                &Expect {
                    code: "E0607",
                    line: Some(line),
                    also_lines: &[],
                    mentions: &[mention, "--runtime-dir"],
                },
            );
            assert!(
                !Path::new(&long_root).exists(),
                "the runtime directory was created"
            );
        }
        // One byte shorter runs.
        let out = ipc_run(
            &["run", "-q", "--limits", limits, "--runtime-dir", &long_root],
            &fits,
            &[],
            &[],
        );
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert_eq!(std::fs::read_dir(&long_root).unwrap().count(), 0);
        std::fs::remove_dir(&long_root).unwrap();
    }
    // `check` with the host's limits uses $XDG_RUNTIME_DIR: the same rule.
    let xdg = format!(
        "{base}/{}",
        "x".repeat(81 - base.len() - 1 - "/ipc-run".len())
    );
    let out = ipc_run(
        &["check", "--limits", "host"],
        &too_long,
        &[],
        &[("XDG_RUNTIME_DIR", &xdg)],
    );
    assert_refused(
        "check with a long XDG_RUNTIME_DIR",
        &too_long,
        &out,
        &Expect {
            code: "E0607",
            line: Some(6),
            also_lines: &[],
            mentions: &["108 bytes"],
        },
    );
    assert!(!Path::new(&xdg).exists());
}

// ----- B5: host limits, quoted with their source ----------------------------

#[test]
fn b5_queue_and_shared_memory_sizes_above_host_limits_quote_the_limit_and_its_source() {
    let mut scratch = Scratch::new("b5");
    let cases: [(&str, &str, usize, &[&str]); 6] = [
        (
            "E0602-mq-too-deep.toml",
            "E0602",
            12,
            &["1000", "msg_max is 10 (default)"],
        ),
        (
            "E0601-mq-message-too-large.toml",
            "E0601",
            12,
            &["msgsize_max", "8192 (default)"],
        ),
        (
            "E0603-too-many-queues.toml",
            "E0603",
            9,
            &["257", "queues_max is 256 (default)"],
        ),
        (
            "E0604-sysv-shm-too-large.toml",
            "E0604",
            12,
            &["shmmax is 18446744073692774399 (default)"],
        ),
        (
            "E0605-sysv-queue-too-large.toml",
            "E0605",
            13,
            &["(default)"],
        ),
        (
            "E0609-posix-shm-too-large.toml",
            "E0609",
            11,
            &["(default)"],
        ),
    ];
    refused_at_lines(&scratch, &cases);
    // With the host's limits the source is the /proc file it was read
    // from. No kernel allows a million messages (HARD_MSGMAX is 65536).
    let deep = scratch.topology(
        "[process.a]\ncmd = [\"true\"]\n[process.b]\ncmd = [\"true\"]\n\
         [[edge]]\nfrom = \"a.q\"\nto = \"b.q\"\ntraffic = \"messages\"\n\
         mechanism = \"posix-mq\"\ndepth = 1000000\n",
    );
    let source = if std::fs::read_to_string("/proc/sys/fs/mqueue/msg_max").is_ok() {
        "(/proc/sys/fs/mqueue/msg_max)"
    } else {
        "(default; /proc/sys/fs/mqueue/msg_max unreadable)"
    };
    refused(
        &scratch,
        &deep,
        "host",
        &Expect {
            code: "E0602",
            line: Some(10),
            also_lines: &[],
            mentions: &[source],
        },
    );
}

// ----- B6: argv is exec'd literally -----------------------------------------

#[test]
fn b6_shell_metacharacters_in_cmd_are_passed_literally() {
    let mut scratch = Scratch::new("b6");
    let work = scratch.dir.join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::create_dir(work.join("victim")).unwrap();
    std::fs::write(work.join("victim/keep"), b"keep").unwrap();
    // What a shell would do with it: remove `victim`, create `pwned*`.
    // (The bar's `rm -rf ~` is aimed at a directory of this test instead.)
    let nasty = "a; rm -rf victim $(id) `touch pwned1` $(touch pwned2) > pwned3 | touch pwned4 && touch pwned5 || touch pwned6 & touch pwned7; echo $HOME * ~ \"dq\" \\";
    let toml_string = |s: &str| format!("'{s}'");
    assert!(!nasty.contains('\''), "a TOML literal string holds it");
    let file = scratch.topology(&format!(
        "[process.printf]\ncmd = [\"printf\", \"%s\\n\", {arg}]\ncwd = \"{cwd}\"\n\
         [process.probe]\ncmd = [\"PROBE\", \"println\", {arg}]\ncwd = \"{cwd}\"\n\
         [process.asked]\nshell = \"echo $((6 * 7))\"\ncwd = \"{cwd}\"\n",
        arg = toml_string(nasty),
        cwd = work.display()
    ));
    let out = ipc_run(
        &["run", "--limits", "default", "--runtime-dir"],
        &scratch.runtime(),
        &[&file],
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let lines_of = |name: &str| -> Vec<&str> {
        out.stdout
            .lines()
            .filter_map(|line| {
                let (prefix, text) = line.split_once(" | ")?;
                (prefix.trim_end() == name).then_some(text)
            })
            .collect()
    };
    assert_eq!(lines_of("printf"), [nasty], "{}", out.stdout);
    assert_eq!(lines_of("probe"), [nasty], "{}", out.stdout);
    // A shell only when asked.
    assert_eq!(lines_of("asked"), ["42"], "{}", out.stdout);
    assert_eq!(
        std::fs::read(work.join("victim/keep")).unwrap(),
        b"keep",
        "the victim is intact"
    );
    let mut entries: Vec<String> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["victim"], "nothing was created by a shell");
    assert_eq!(std::fs::read_dir(scratch.runtime()).unwrap().count(), 0);
}

// ----- B7: unknown keys, wrong types, bad env names -------------------------

#[test]
fn b7_unknown_keys_wrong_types_and_bad_env_names_are_refused() {
    let mut scratch = Scratch::new("b7");
    let cases: [(&str, &str, usize, &[&str]); 13] = [
        ("E0003-unknown-key.toml", "E0003", 4, &[]),
        ("E0003-unknown-edge-key.toml", "E0003", 10, &[]),
        ("E0004-missing-key.toml", "E0004", 5, &[]),
        ("E0005-wrong-type.toml", "E0005", 4, &[]),
        ("E0005-unknown-traffic.toml", "E0005", 10, &[]),
        ("E0005-bad-size-unit.toml", "E0005", 11, &[]),
        ("E0006-duplicate-key.toml", "E0006", 4, &[]),
        ("E0001-not-utf8.toml", "E0001", 3, &[]),
        ("E0704-env-name-with-equals.toml", "E0704", 4, &[]),
        ("E0704-env-name-with-nul.toml", "E0704", 4, &["A\\0B"]),
        ("E0704-reserved-env.toml", "E0704", 4, &[]),
        ("E0703-nul-in-env-value.toml", "E0703", 4, &[]),
        ("E0703-nul-in-argument.toml", "E0703", 3, &[]),
    ];
    refused_at_lines(&scratch, &cases);
    // Unknown keys at every level list what the table accepts.
    for (toml, line) in [
        ("nmae = \"x\"\n[process.a]\ncmd = [\"true\"]\n", 1),
        (
            "[process.a]\ncmd = [\"true\"]\n[process.a.ports.p]\nfdd = 3\n",
            4,
        ),
        (
            "[process.a]\ncmd = [\"true\"]\nready = { fd = 3, timeout = 1 }\n",
            3,
        ),
    ] {
        topology_refused_at(&mut scratch, toml, "E0003", line);
    }
    // Wrong types.
    for (toml, line) in [
        ("[process.a]\ncmd = \"true\"\n", 2),
        ("[process.a]\ncmd = [\"true\", 1]\n", 2),
        ("[process.a]\ncmd = [\"true\"]\nreplicas = \"2\"\n", 3),
        ("[process.a]\ncmd = [\"true\"]\nenv = { X = 1 }\n", 3),
        (
            "[process.a]\ncmd = [\"true\"]\n[process.a.ports.p]\nfd = \"3\"\n",
            4,
        ),
        ("process = 1\n", 1),
    ] {
        topology_refused_at(&mut scratch, toml, "E0005", line);
    }
    // Environment names: `=`, NUL, empty, a leading digit, in `env` and in
    // `inherit_env`.
    for (toml, line) in [
        (
            "[process.a]\ncmd = [\"true\"]\nenv = { \"A=B\" = \"c\" }\n",
            3,
        ),
        ("[process.a]\ncmd = [\"true\"]\nenv = { \"\" = \"c\" }\n", 3),
        (
            "[process.a]\ncmd = [\"true\"]\nenv = { \"1A\" = \"c\" }\n",
            3,
        ),
        (
            "[process.a]\ncmd = [\"true\"]\ninherit_env = [\"A=B\"]\n",
            3,
        ),
        (
            "[process.a]\ncmd = [\"true\"]\ninherit_env = [\"A\\u0000B\"]\n",
            3,
        ),
        (
            "[process.a]\ncmd = [\"true\"]\ninherit_env = [\"LISTEN_FDS\"]\n",
            3,
        ),
    ] {
        topology_refused_at(&mut scratch, toml, "E0704", line);
    }
}

// ----- B8: composed input (include, ${VAR}, profiles, env_file) ------------

/// Mistakes in a composed topology are refused by `check` and `run` alike
/// with exit 1, pointing at the file and line where they are written: the
/// including file, or the included file for what is written there.
#[test]
fn b8_composed_topologies_point_into_the_right_file() {
    let scratch = Scratch::new("input-b8");
    refused_at_lines(
        &scratch,
        &[
            (
                "E0006-duplicate-process-across-files.toml",
                "E0006",
                4,
                &["::: ", "include/common.toml:2:10"],
            ),
            ("E0013-unset-variable.toml", "E0013", 4, &["${"]),
            ("E0016-after-left-out-process.toml", "E0016", 8, &["`dev`"]),
            ("E0017-env-file-missing.toml", "E0017", 3, &["no-such.env"]),
            ("E0018-env-file-bad-line.toml", "E0018", 3, &["bad.env:2"]),
        ],
    );
    // The profile is asked for through the environment here (`--profile`
    // is the same list); no process has it.
    refused_with(
        &scratch,
        &corpus("E0015-unknown-profile.toml"),
        "default",
        &[("IPC_RUN_PROFILES", "debg")],
        &Expect {
            code: "E0015",
            line: None,
            also_lines: &[],
            mentions: &["`debug`"],
        },
    );
    for (file, code, at) in [
        (
            "E0007-invalid-toml-in-included-file.toml",
            "E0007",
            "include/broken.toml:2:",
        ),
        (
            "E0102-dangling-endpoint-in-included-file.toml",
            "E0102",
            "include/dangling.toml:3:",
        ),
        ("E0011-include-cycle.toml", "E0011", "include/cycle.toml:1:"),
        (
            "E0012-name-in-included-file.toml",
            "E0012",
            "include/named.toml:1:",
        ),
    ] {
        for command in ["check", "plan"] {
            let out = ipc_run(&[command, "--limits", "default"], &corpus(file), &[], &[]);
            let stderr = &out.stderr;
            assert_eq!(out.code, Some(1), "{command} {file}\n{stderr}");
            assert!(!stderr.contains("panicked"), "{command} {file}\n{stderr}");
            assert!(
                stderr.contains(&format!("error[{code}]")),
                "{file}\n{stderr}"
            );
            assert!(stderr.contains("--> "), "{file}\n{stderr}");
            assert!(
                stderr.contains(at),
                "{command} {file}: not at {at}\n{stderr}"
            );
            assert_eq!(out.stdout, "", "{command} {file}: no plan");
        }
    }
}

/// A JSON plan is already composed: `--profile` with `run --plan` is a
/// usage error (exit 2), as `--limits` is.
#[test]
fn b8_profile_with_a_plan_file_is_a_usage_error() {
    let out = ipc_run(
        &["run", "--profile", "debug", "--plan"],
        Path::new("plan.json"),
        &[],
        &[],
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--profile"), "{}", out.stderr);
}
