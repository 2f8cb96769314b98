//! Snapshots of every example topology's plan (text and JSON) and of the
//! diagnostics of every file in the invalid corpus, all under the fixed
//! `Limits::default()` so they do not depend on the host.
//!
//! Adding a file to `topologies/` or `tests/invalid/` adds a case; accept new
//! snapshots with `INSTA_UPDATE=always cargo test` (or `cargo insta review`)
//! and read them before committing.

use std::path::{Path, PathBuf};

use ipc_run::plan::{self, Limits};
use ipc_run::topology::{Topology, TopologyError};

/// The path as the user would type it from the crate root, e.g.
/// `tests/invalid/x.toml`, so diagnostics show it relative.
fn relative(path: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

/// Limits for one corpus file: the defaults, changed by a `#:limits key=value`
/// line for the few rules that only a host with other limits can break.
fn limits_for(source: &str) -> Limits {
    let mut limits = Limits::default();
    for line in source.lines().take(5) {
        let Some(settings) = line.strip_prefix("#:limits ") else {
            continue;
        };
        for setting in settings.split_whitespace() {
            let (key, value) = setting.split_once('=').expect("key=value");
            let value: u64 = value.parse().expect("a number");
            match key {
                "run_dir_len" => limits.run_dir_len.value = value,
                "sysv_semmsl" => limits.sysv_semmsl.value = value,
                other => panic!("unknown limit `{other}` in a #:limits line"),
            }
        }
    }
    limits
}

/// Every diagnostic of a file, rendered without colour, and whether planning
/// produced a plan.
fn diagnose(path: &Path) -> (String, Vec<&'static str>, bool) {
    let shown = path.display().to_string();
    match Topology::load(path) {
        Err(TopologyError::Parse {
            source_text,
            diagnostic,
            ..
        }) => (
            diagnostic.render(&shown, &source_text, false),
            vec![diagnostic.code],
            false,
        ),
        Err(other) => panic!("{shown}: {other}"),
        Ok(topology) => {
            let limits = limits_for(&topology.source);
            let (diagnostics, planned) = match plan::plan(&topology, &limits) {
                Ok(planned) => (planned.warnings, true),
                Err(error) => (error.diagnostics, false),
            };
            let text = diagnostics
                .iter()
                .map(|d| d.render(&shown, &topology.source, false))
                .collect();
            (text, diagnostics.iter().map(|d| d.code).collect(), planned)
        }
    }
}

#[test]
fn example_topologies_plan() {
    insta::glob!("../../topologies", "*.toml", |path| {
        let path = relative(path);
        let topology = Topology::load(&path).expect("example topologies parse");
        let planned = match plan::plan(&topology, &Limits::default()) {
            Ok(planned) => planned,
            Err(error) => panic!("{} does not plan: {error:?}", path.display()),
        };
        let warnings: String = planned
            .warnings
            .iter()
            .map(|d| d.render(&path.display().to_string(), &topology.source, false))
            .collect();
        if !warnings.is_empty() {
            // Warnings in an example must be explained in its comment.
            for warning in &planned.warnings {
                assert!(
                    topology.source.contains(warning.code),
                    "{}: warning {} is not explained in the file's comment",
                    path.display(),
                    warning.code
                );
            }
        }
        let text = format!(
            "{warnings}{}{}",
            if warnings.is_empty() { "" } else { "\n" },
            plan::render::text(&planned.plan)
        );
        insta::assert_snapshot!("text", text);
        let json = serde_json::to_string_pretty(&planned.plan).expect("plans serialise");
        insta::assert_snapshot!("json", json);
    });
}

#[test]
fn example_topologies_start_with_the_schema_line() {
    insta::glob!("../../topologies", "*.toml", |path| {
        let source = std::fs::read_to_string(path).expect("readable");
        assert!(
            source.starts_with("#:schema ../schemas/topology.schema.json\n"),
            "{} must start with the #:schema line",
            path.display()
        );
    });
}

#[test]
fn invalid_corpus_diagnostics() {
    insta::glob!("../invalid", "*.toml", |path| {
        let path = relative(path);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let code = name.split('-').next().unwrap();
        let (rendered, codes, planned) = diagnose(&path);
        assert!(
            codes.contains(&code),
            "{name} should produce {code}, got {codes:?}:\n{rendered}"
        );
        if code.starts_with('E') {
            assert!(!planned, "{name} planned despite {code}");
        }
        assert!(
            !rendered.contains('\u{1b}'),
            "no colour in snapshots: {name}"
        );
        insta::assert_snapshot!(rendered);
    });
}

/// Every code the planner can emit, found in the sources, is broken by at
/// least one file of the corpus (or by a generated case below).
#[test]
fn invalid_corpus_covers_every_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut emitted = std::collections::BTreeSet::new();
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).expect("src is readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source is UTF-8");
            // Every quoted code literal, e.g. "E0306" in misfit("E0306", ...).
            for (i, _) in text.match_indices('"') {
                let Some(code) = text.get(i + 1..i + 6) else {
                    continue;
                };
                let well_formed = text.get(i + 6..i + 7) == Some("\"")
                    && code.starts_with(['E', 'W'])
                    && code[1..].chars().all(|c| c.is_ascii_digit());
                // E9999 only appears in the renderer's own unit tests.
                if well_formed && code != "E9999" {
                    emitted.insert(code.to_owned());
                }
            }
        }
    }
    assert!(emitted.len() > 40, "found only {emitted:?}");
    let mut covered: std::collections::BTreeSet<String> =
        std::fs::read_dir(root.join("tests/invalid"))
            .expect("corpus")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter_map(|name| name.split('-').next().map(str::to_owned))
            .collect();
    // Generated by `oversized_file_is_refused_before_parsing`.
    covered.insert("E0002".into());
    // A missing `mpirun` depends on PATH, not the file: broken by
    // `check_names_the_package_of_a_missing_mpirun` in tests/run/mpi.rs.
    covered.insert("E0345".into());
    // Plan-file codes (`run --plan`) are broken by tests/plan/roundtrip.rs.
    let plan_files = std::fs::read_to_string(root.join("tests/plan/roundtrip.rs"))
        .expect("tests/plan/roundtrip.rs");
    covered.extend(
        emitted
            .iter()
            .filter(|code| plan_files.contains(&format!("\"{code}\"")))
            .cloned(),
    );
    let missing: Vec<_> = emitted.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "no file in tests/invalid breaks {missing:?}"
    );
}

/// B1: a file above the size cap is refused before parsing, quickly.
#[test]
fn oversized_file_is_refused_before_parsing() {
    let dir = std::env::temp_dir().join(format!("ipc-run-oversized-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("huge.toml");
    let mut text = String::from("[process.a]\ncmd = [\"");
    text.push_str(&"x".repeat(ipc_run::topology::MAX_SOURCE_BYTES));
    text.push_str("\"]\n");
    std::fs::write(&path, &text).unwrap();
    let err = Topology::load(&path).expect_err("too large");
    let _ = std::fs::remove_dir_all(&dir);
    let TopologyError::Parse { diagnostic, .. } = err else {
        panic!("a parse error expected, got {err}")
    };
    assert_eq!(diagnostic.code, "E0002");
    // The size the file has, not the bytes read before refusing it.
    assert!(
        diagnostic
            .message
            .contains(&format!("the file is {} bytes", text.len())),
        "{}",
        diagnostic.message
    );
    insta::assert_snapshot!(diagnostic.render("huge.toml", "", false));
}

/// B1: a 10 MB string is parsed and refused with a clear error (it cannot
/// be exec'd) and without a panic. (How fast: bench/plan/run.sh.)
#[test]
fn ten_megabyte_argument_is_a_clear_error() {
    let mut text = String::from("[process.a]\ncmd = [\"echo\", \"");
    text.push_str(&"y".repeat(10_000_000));
    text.push_str("\"]\n");
    let topology = Topology::parse(Path::new("big.toml"), text).expect("valid TOML");
    let error = plan::plan(&topology, &Limits::default()).expect_err("argument too long");
    let codes: Vec<_> = error.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["E0608"]);
    let rendered = error.diagnostics[0].render("big.toml", &topology.source, false);
    assert!(
        rendered.len() < 2_000,
        "the source line is windowed: {rendered}"
    );
    insta::assert_snapshot!(rendered);
}

/// B6: a command is exec'd literally; shell metacharacters are just bytes of
/// one argument, shown as such in the plan.
#[test]
fn shell_metacharacters_in_cmd_are_literal() {
    let text = "[process.a]\ncmd = [\"a; rm -rf ~ $(id)\"]\n";
    let topology = Topology::parse(Path::new("literal.toml"), text.into()).expect("valid");
    let planned = plan::plan(&topology, &Limits::default()).expect("a literal argv is valid");
    let process = &planned.plan.processes[0];
    assert_eq!(process.argv, ["a; rm -rf ~ $(id)"]);
    assert!(!process.shell);
    let json = serde_json::to_value(&planned.plan).unwrap();
    assert_eq!(
        json["processes"][0]["argv"],
        serde_json::json!(["a; rm -rf ~ $(id)"])
    );
    insta::assert_snapshot!(plan::render::text(&planned.plan));
}

/// A topology without `name` is named after its file, in the plan and in
/// every child's IPC_RUN_TOPOLOGY alike.
#[test]
fn unnamed_topology_takes_the_file_stem_everywhere() {
    let text = "[process.a]\ncmd = [\"a\"]\n";
    let topology = Topology::parse(Path::new("dir/web-stack.toml"), text.into()).expect("valid");
    let planned = plan::plan(&topology, &Limits::default()).expect("valid");
    assert_eq!(planned.plan.name, "web-stack");
    let env = &planned.plan.processes[0].env;
    let topology_var = env
        .iter()
        .find(|v| &*v.name == "IPC_RUN_TOPOLOGY")
        .expect("IPC_RUN_TOPOLOGY is set");
    assert_eq!(&*topology_var.value, "web-stack");
}
