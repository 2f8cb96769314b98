//! Snapshots of every example topology's plan (text and JSON) and of the
//! diagnostics of every file in the invalid corpus, all under the fixed
//! `Limits::default()` so they do not depend on the host.
//!
//! Adding a file to `topologies/` or `tests/invalid/` adds a case; accept new
//! snapshots with `INSTA_UPDATE=always cargo test` (or `cargo insta review`)
//! and read them before committing.

use std::path::{Path, PathBuf};

use ipc_run::diagnostic::{SourceFile, Sources};
use ipc_run::plan::{self, Limits};
use ipc_run::topology::{ComposeOptions, Topology, TopologyError};

use crate::support::Scratch;

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

/// Placement options for one corpus file: `--hosts N` from a `#:hosts N`
/// line.
fn placement_for(source: &str) -> plan::PlacementOptions {
    let hosts = source
        .lines()
        .take(5)
        .find_map(|line| line.strip_prefix("#:hosts "))
        .map(|n| n.trim().parse().expect("#:hosts N"));
    plan::PlacementOptions {
        hosts,
        ..plan::PlacementOptions::default()
    }
}

/// The profiles a corpus file is planned with: its `#:profile NAME` lines.
fn options_for(path: &Path) -> ComposeOptions {
    let source = std::fs::read(path).unwrap_or_default();
    let profiles = String::from_utf8_lossy(&source)
        .lines()
        .take(5)
        .filter_map(|line| line.strip_prefix("#:profile "))
        .map(|name| name.trim().to_owned())
        .collect();
    ComposeOptions {
        profiles,
        vars: None,
    }
}

/// Every diagnostic of a file, rendered without colour, and whether planning
/// produced a plan.
fn diagnose(path: &Path) -> (String, Vec<&'static str>, bool) {
    let shown = path.display().to_string();
    let options = options_for(path);
    match Topology::load_with(path, ipc_run::topology::MAX_SOURCE_BYTES as u64, &options) {
        Err(TopologyError::Parse {
            source_text,
            files,
            diagnostic,
            ..
        }) => {
            let single = [SourceFile {
                path: shown.clone(),
                start: 0,
            }];
            let files = if files.is_empty() {
                &single[..]
            } else {
                &files
            };
            let sources = Sources {
                text: &source_text,
                files,
            };
            (
                diagnostic.render_in(sources, false),
                vec![diagnostic.code],
                false,
            )
        }
        Err(other) => panic!("{shown}: {other}"),
        Ok(topology) => {
            let limits = limits_for(&topology.source);
            let placement = placement_for(&topology.source);
            let outcome = plan::plan_placed(&topology, &limits, plan::MAX_INSTANCES, &placement);
            let (diagnostics, planned) = match outcome {
                Ok(planned) => (planned.warnings, true),
                Err(error) => (error.diagnostics, false),
            };
            let text = diagnostics
                .iter()
                .map(|d| d.render_in(topology.sources(), false))
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
    // `run --host` codes come from the command line, not the file: broken
    // by tests/run/distributed.rs.
    let distributed = std::fs::read_to_string(root.join("tests/run/distributed.rs"))
        .expect("tests/run/distributed.rs");
    covered.extend(
        emitted
            .iter()
            .filter(|code| distributed.contains(&format!("error[{code}]")))
            .cloned(),
    );
    // Export codes (`ipc-run export`) are broken by tests/cli/export.rs.
    let exports =
        std::fs::read_to_string(root.join("tests/cli/export.rs")).expect("tests/cli/export.rs");
    covered.extend(
        emitted
            .iter()
            .filter(|code| exports.contains(&format!("[{code}]")))
            .cloned(),
    );
    // Slurm codes (`ipc-run slurm`) are broken by tests/run/slurm.rs.
    let slurm =
        std::fs::read_to_string(root.join("tests/run/slurm.rs")).expect("tests/run/slurm.rs");
    covered.extend(
        emitted
            .iter()
            .filter(|code| slurm.contains(&format!("error[{code}]")))
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
    let scratch = Scratch::new("oversized");
    let path = scratch.dir.join("huge.toml");
    let mut text = String::from("[process.a]\ncmd = [\"");
    text.push_str(&"x".repeat(ipc_run::topology::MAX_SOURCE_BYTES));
    text.push_str("\"]\n");
    std::fs::write(&path, &text).unwrap();
    let err = Topology::load(&path).expect_err("too large");
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
    assert_eq!(*process.argv, ["a; rm -rf ~ $(id)"]);
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
    assert_eq!(topology_var.value.as_text(), Some("web-stack"));
}

/// A topology composed from two files, the environment and a profile: the
/// plan shows the result, the included file's processes and edges merged,
/// `--profile debug` adding a process and its edge; the env file's values
/// stay out of the plan.
#[test]
fn composed_topology_plans() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = relative(&root.join("tests/plan/compose/app.toml"));
    let vars: std::collections::BTreeMap<String, String> =
        [("MODE", "prod"), ("DATA_DIR", "/srv/db")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    for profiles in [vec![], vec!["debug".to_owned()]] {
        let options = ComposeOptions {
            profiles: profiles.clone(),
            vars: Some(vars.clone()),
        };
        let topology =
            Topology::load_with(&path, ipc_run::topology::MAX_SOURCE_BYTES as u64, &options)
                .expect("the composed topology loads");
        let planned = plan::plan(&topology, &Limits::default()).expect("it plans");
        let json = serde_json::to_string_pretty(&planned.plan).expect("plans serialise");
        assert!(!json.contains("do-not-print-me"), "{json}");
        let text =
            plan::render::text(&planned.plan).replace(&format!("{}/", root.display()), "[root]/");
        let name = if profiles.is_empty() {
            "default"
        } else {
            "debug"
        };
        insta::assert_snapshot!(format!("composed_{name}"), text);
    }
}

/// `${VAR}` not set is refused, and the same file plans once it is set.
#[test]
fn an_unset_variable_is_refused_until_set() {
    let text = "[process.a]\ncmd = [\"echo\", \"${GREETING}\"]\n";
    let path = Path::new("vars.toml");
    let err = Topology::parse(path, text.into()).expect_err("GREETING is not set");
    let TopologyError::Parse { diagnostic, .. } = err else {
        panic!("a parse error expected, got {err}")
    };
    assert_eq!(diagnostic.code, "E0013");
    let options = ComposeOptions {
        profiles: Vec::new(),
        vars: Some([("GREETING".to_owned(), "hi".to_owned())].into()),
    };
    let topology = Topology::parse_with(path, text.into(), &options).expect("set");
    let planned = plan::plan(&topology, &Limits::default()).expect("plans");
    assert_eq!(*planned.plan.processes[0].argv, ["echo", "hi"]);
}

/// `plan_releasing` (what the CLI runs: the typed file dropped while
/// planning) gives what `plan` gives for every example and every file of
/// the invalid corpus, and leaves the path and source that diagnostics are
/// rendered against.
#[test]
fn planning_that_releases_the_file_plans_the_same() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["topologies", "tests/invalid"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("readable") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(relative(&path));
            }
        }
    }
    files.sort();
    assert!(files.len() > 20, "the corpus is there: {files:?}");
    let render = |diagnostics: &[ipc_run::diagnostic::Diagnostic], source: &str| -> String {
        diagnostics
            .iter()
            .map(|d| d.render("t.toml", source, false))
            .collect()
    };
    for path in files {
        let Ok(topology) = Topology::load(&path) else {
            continue;
        };
        let limits = limits_for(&topology.source);
        let kept = plan::plan(&topology, &limits);
        let mut released = topology.clone();
        let outcome = plan::plan_releasing(&mut released, &limits, plan::MAX_INSTANCES);
        assert_eq!(released.path, topology.path);
        assert_eq!(released.source, topology.source, "{}", path.display());
        assert!(released.file.process.is_empty() && released.file.edge.is_empty());
        match (kept, outcome) {
            (Ok(kept), Ok(released)) => {
                assert!(
                    kept.plan == released.plan,
                    "{}: plans differ",
                    path.display()
                );
                assert_eq!(
                    render(&kept.warnings, &topology.source),
                    render(&released.warnings, &topology.source),
                    "{}",
                    path.display()
                );
            }
            (Err(kept), Err(released)) => assert_eq!(
                render(&kept.diagnostics, &topology.source),
                render(&released.diagnostics, &topology.source),
                "{}",
                path.display()
            ),
            (kept, released) => panic!(
                "{}: plan gives {:?}, plan_releasing {:?}",
                path.display(),
                kept.is_ok(),
                released.is_ok()
            ),
        }
    }
}
