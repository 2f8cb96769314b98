//! Composing a topology from more than one file's worth of intent, before
//! planning (`docs/topology.md`, "Composing a topology"): `include`d files
//! merged in, `${VAR}` interpolation ([`super::interpolate`]), processes
//! left out by their `profiles`, and each `env_file` found and checked.
//!
//! Every file's spans are moved to where its text is in the joined text
//! ([`Topology::source`], with [`Topology::files`] saying which file starts
//! where), so the planner's diagnostics point into the right file and line
//! without knowing there were several.
//!
//! A file that uses none of this (no `include`, `profiles`, `env_file`,
//! `$$` or `${` anywhere in its text, and no `--profile`) never comes here:
//! it is parsed as before, in pieces when it is large (`chunks`). One that
//! does is parsed whole.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::{
    Spanned, Topology, TopologyError, TopologyFile, chunks, classify, env_file, interpolate,
    syntax_diagnostic, too_large,
};
use crate::diagnostic::{Diagnostic, Label, SourceFile, Sources};

/// How a topology is composed: which profiles are active and where
/// `${VAR}` is looked up.
#[derive(Debug, Clone, Default)]
pub struct ComposeOptions {
    /// The active profiles (`--profile`, or `IPC_RUN_PROFILES`).
    pub profiles: Vec<String>,
    /// The variables `${VAR}` reads; `None` reads ipc-run's own environment.
    pub vars: Option<BTreeMap<String, String>>,
}

/// What the profiles did to a topology.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profiles {
    /// The active profiles, as given.
    pub active: Vec<String>,
    /// Processes left out: none of their profiles is active.
    pub left_out: Vec<String>,
    /// Edges dropped because they touch a process left out, as `from -> to`.
    pub dropped_edges: Vec<String>,
}

/// Whether `source` needs composing (the module's comment).
pub(super) fn needed(source: &str, options: &ComposeOptions) -> bool {
    !options.profiles.is_empty()
        || ["${", "$$", "include", "profiles", "env_file"]
            .iter()
            .any(|word| source.contains(word))
}

/// Composes the topology whose root file `path` holds `source`.
pub(super) fn load(
    path: &Path,
    source: String,
    cap: u64,
    options: &ComposeOptions,
) -> Result<Topology, TopologyError> {
    let environment = |name: &str| match &options.vars {
        Some(vars) => vars.get(name).cloned(),
        None => std::env::var(name).ok(),
    };
    let mut loader = Loader {
        root: path.to_owned(),
        cap,
        lookup: &environment,
        text: String::new(),
        files: Vec::new(),
        dirs: Vec::new(),
        stack: Vec::new(),
        seen: BTreeSet::new(),
        merged: TopologyFile {
            name: None,
            process: BTreeMap::new(),
            edge: Vec::new(),
            pipeline: Vec::new(),
            exit_code_from: None,
            include: Vec::new(),
        },
    };
    if let Ok(canonical) = std::fs::canonicalize(path) {
        loader.stack.push(canonical.clone());
        loader.seen.insert(canonical);
    }
    loader.file(path, &source, None)?;
    let mut file = std::mem::replace(&mut loader.merged, empty_file());
    let profiles = loader.profiles(&mut file, &options.profiles)?;
    loader.env_files(&mut file)?;
    file.edge.shrink_to_fit();
    Ok(Topology {
        path: path.to_owned(),
        source: loader.text,
        files: loader.files,
        profiles,
        file,
    })
}

fn empty_file() -> TopologyFile {
    TopologyFile {
        name: None,
        process: BTreeMap::new(),
        edge: Vec::new(),
        pipeline: Vec::new(),
        exit_code_from: None,
        include: Vec::new(),
    }
}

struct Loader<'a> {
    root: PathBuf,
    cap: u64,
    lookup: interpolate::Lookup<'a>,
    /// The files' texts joined, in the order they were read (root first).
    text: String,
    files: Vec<SourceFile>,
    /// The directory of each file, which its relative paths are against.
    dirs: Vec<PathBuf>,
    /// The files being read, outermost first (canonical), for cycles.
    stack: Vec<PathBuf>,
    /// Every file read: one included twice is read once.
    seen: BTreeSet<PathBuf>,
    merged: TopologyFile,
}

impl Loader<'_> {
    /// A refused topology: the diagnostic's spans index the joined text.
    fn fail(&self, diagnostic: Diagnostic) -> TopologyError {
        TopologyError::Parse {
            path: self.root.clone(),
            source_text: self.text.clone(),
            files: self.files.clone(),
            diagnostic: Box::new(diagnostic),
        }
    }

    /// Reads one file (`included_at`: the span of the `include` entry that
    /// names it): its includes first, then its own processes and edges.
    fn file(
        &mut self,
        path: &Path,
        text: &str,
        included_at: Option<Range<usize>>,
    ) -> Result<(), TopologyError> {
        let base = self.text.len();
        self.files.push(SourceFile {
            path: path.display().to_string(),
            start: base,
        });
        self.dirs
            .push(path.parent().map(Path::to_owned).unwrap_or_default());
        self.text.push_str(text);
        if self.text.len() as u64 > self.cap {
            let mut diagnostic = too_large(None, self.cap);
            if let Some(span) = included_at.clone() {
                diagnostic =
                    diagnostic.with_label(Label::primary(span, "the files included up to here"));
            }
            return Err(self.fail(diagnostic));
        }
        let typed = self.typed(text, base)?;
        let index = self.files.len() - 1;
        if included_at.is_some() {
            self.only_in_the_root(&typed)?;
        }
        for include in &typed.include {
            self.include(index, include)?;
        }
        self.merge(typed, included_at.is_none())
    }

    /// `text` parsed, interpolated and read into the typed model, its
    /// spans moved by `base`.
    fn typed(&self, text: &str, base: usize) -> Result<TopologyFile, TopologyError> {
        let moved = |diagnostic: Diagnostic| Diagnostic {
            labels: diagnostic
                .labels
                .into_iter()
                .map(|label| Label {
                    span: label.span.start + base..label.span.end + base,
                    ..label
                })
                .collect(),
            ..diagnostic
        };
        let mut document = match DeTable::parse(text) {
            Ok(document) => document,
            Err(_) => {
                // Parsed again the usual way, for the usual diagnostic.
                let diagnostic = match classify::from_str::<TopologyFile>(text) {
                    Err(failure) => syntax_diagnostic(&failure, text),
                    Ok(_) => Diagnostic::error("E0007", "invalid TOML"),
                };
                return Err(self.fail(moved(diagnostic)));
            }
        };
        interpolate::document(document.get_mut(), text, self.lookup)
            .map_err(|diagnostic| self.fail(moved(diagnostic)))?;
        let mut file = classify::from_document::<TopologyFile>(document)
            .map_err(|failure| self.fail(moved(syntax_diagnostic(&failure, text))))?;
        file.fill_endpoint_spans();
        if base > 0 {
            chunks::shift_file(&mut file, base);
        }
        Ok(file)
    }

    /// E0012: an included file sets what only the whole topology has.
    fn only_in_the_root(&self, file: &TopologyFile) -> Result<(), TopologyError> {
        let set = [
            ("name", file.name.as_ref().map(Spanned::span)),
            (
                "exit_code_from",
                file.exit_code_from.as_ref().map(Spanned::span),
            ),
            ("pipeline", file.pipeline.first().map(Spanned::span)),
        ];
        match set.into_iter().find_map(|(key, span)| Some((key, span?))) {
            None => Ok(()),
            Some((key, span)) => Err(self.fail(
                Diagnostic::error("E0012", format!("an included file sets `{key}`"))
                    .with_label(Label::primary(span, "set in an included file"))
                    .with_help(format!(
                        "`{key}` belongs to the whole topology: set it in the file given to ipc-run"
                    )),
            )),
        }
    }

    /// Reads the file that `include` (in file `from`) names.
    fn include(&mut self, from: usize, include: &Spanned<String>) -> Result<(), TopologyError> {
        let path = self.dirs[from].join(include.get_ref());
        let span = include.span();
        let unreadable = |why: String| {
            Diagnostic::error(
                "E0010",
                format!("cannot include `{}`: {why}", path.display()),
            )
            .with_label(Label::primary(span.clone(), "included here"))
            .with_help("an included path is relative to the file that includes it")
        };
        let metadata =
            std::fs::metadata(&path).map_err(|e| self.fail(unreadable(e.to_string())))?;
        if !metadata.is_file() {
            return Err(self.fail(unreadable("not a regular file".into())));
        }
        let canonical =
            std::fs::canonicalize(&path).map_err(|e| self.fail(unreadable(e.to_string())))?;
        if let Some(at) = self.stack.iter().position(|p| *p == canonical) {
            let chain: Vec<String> = self.stack[at..]
                .iter()
                .chain([&canonical])
                .map(|p| {
                    p.file_name()
                        .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
                })
                .collect();
            return Err(self.fail(
                Diagnostic::error("E0011", format!("`include` cycle: {}", chain.join(" -> ")))
                    .with_label(Label::primary(span, "included again here"))
                    .with_help("a file may not include itself, directly or through another"),
            ));
        }
        if !self.seen.insert(canonical.clone()) {
            // Included by two files: its processes are in once.
            return Ok(());
        }
        // One byte past what the cap leaves, so an oversized file is
        // refused (E0002, by `file`) without being read whole.
        let left = self.cap.saturating_sub(self.text.len() as u64);
        let bytes = read_at_most(&path, left).map_err(|e| self.fail(unreadable(e.to_string())))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| self.fail(unreadable("the file is not valid UTF-8".into())))?;
        self.stack.push(canonical);
        self.file(&path, &text, Some(span))?;
        self.stack.pop();
        Ok(())
    }

    /// Adds one file's processes and edges; a process name defined in two
    /// files is E0006, with both places.
    fn merge(&mut self, file: TopologyFile, root: bool) -> Result<(), TopologyError> {
        let TopologyFile {
            name,
            process,
            edge,
            pipeline,
            exit_code_from,
            include: _,
        } = file;
        if root {
            self.merged.name = name;
            self.merged.pipeline = pipeline;
            self.merged.exit_code_from = exit_code_from;
        }
        for (name, spec) in process {
            if let Some((first, _)) = self.merged.process.get_key_value(&name) {
                let diagnostic =
                    Diagnostic::error("E0006", format!("duplicate process `{}`", name.get_ref()))
                        .with_label(Label::primary(name.span(), "defined again here"))
                        .with_label(Label::secondary(first.span(), "first defined here"))
                        .with_help("a process may be defined once, in one file; rename one");
                return Err(self.fail(diagnostic));
            }
            self.merged.process.insert(name, spec);
        }
        self.merged.edge.extend(edge);
        Ok(())
    }
}

/// The first `limit + 1` bytes of the file at `path` (or all, if fewer).
fn read_at_most(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The process an endpoint (`a.out`, `a`, `@stdin`) belongs to, if any.
fn process_of(endpoint: &str) -> Option<&str> {
    if endpoint.starts_with('@') {
        return None;
    }
    Some(endpoint.split(['.', '#']).next().unwrap_or(endpoint))
}

impl Loader<'_> {
    /// Leaves out the processes none of whose profiles is active, and the
    /// edges that touch them; anything else that names one is E0016.
    fn profiles(
        &self,
        file: &mut TopologyFile,
        active: &[String],
    ) -> Result<Profiles, TopologyError> {
        let declared: BTreeSet<&str> = file
            .process
            .values()
            .flat_map(|spec| spec.profiles.iter().map(|p| p.get_ref().as_str()))
            .collect();
        if let Some(unknown) = active.iter().find(|p| !declared.contains(p.as_str())) {
            let listed: Vec<String> = declared.iter().map(|p| format!("`{p}`")).collect();
            let note = if listed.is_empty() {
                "no process has `profiles`".to_owned()
            } else {
                format!("the profiles of this topology: {}", listed.join(", "))
            };
            return Err(self.fail(
                Diagnostic::error("E0015", format!("no process is in profile `{unknown}`"))
                    .with_note(note)
                    .with_help("check the spelling of `--profile` (or `IPC_RUN_PROFILES`)"),
            ));
        }
        let left_out: BTreeMap<String, (Range<usize>, Vec<String>)> = file
            .process
            .iter()
            .filter(|(_, spec)| {
                !spec.profiles.is_empty()
                    && !spec.profiles.iter().any(|p| active.contains(p.get_ref()))
            })
            .map(|(name, spec)| {
                let profiles = spec.profiles.iter().map(|p| p.get_ref().clone()).collect();
                (name.get_ref().clone(), (name.span(), profiles))
            })
            .collect();
        file.process
            .retain(|name, _| !left_out.contains_key(name.get_ref()));
        self.no_reference_to(file, &left_out)?;
        let mut dropped_edges = Vec::new();
        file.edge.retain(|edge| {
            let touches = [&edge.from, &edge.to].iter().any(|list| {
                list.get_ref()
                    .0
                    .iter()
                    .any(|e| process_of(e.get_ref()).is_some_and(|p| left_out.contains_key(p)))
            });
            if touches {
                let side = |list: &Spanned<super::EndpointList>| {
                    let names: Vec<&str> = list
                        .get_ref()
                        .0
                        .iter()
                        .map(|e| e.get_ref().as_str())
                        .collect();
                    names.join(", ")
                };
                dropped_edges.push(format!("{} -> {}", side(&edge.from), side(&edge.to)));
            }
            !touches
        });
        Ok(Profiles {
            active: active.to_vec(),
            left_out: left_out.into_keys().collect(),
            dropped_edges,
        })
    }

    /// E0016: `after`, `pipeline` or `exit_code_from` names a process that
    /// was left out. Only edges are dropped with it: an order or an exit
    /// status that depends on a process that does not run would be a
    /// different topology, not a smaller one.
    fn no_reference_to(
        &self,
        file: &TopologyFile,
        left_out: &BTreeMap<String, (Range<usize>, Vec<String>)>,
    ) -> Result<(), TopologyError> {
        let after = file
            .process
            .values()
            .flat_map(|spec| spec.after.iter().map(|a| ("`after`", a)));
        let pipeline = file.pipeline.iter().map(|stage| ("`pipeline`", stage));
        let exit = file.exit_code_from.iter().map(|e| ("`exit_code_from`", e));
        for (key, reference) in after.chain(pipeline).chain(exit) {
            let Some(name) = process_of(reference.get_ref()) else {
                continue;
            };
            let Some((declared, profiles)) = left_out.get(name) else {
                continue;
            };
            let listed: Vec<String> = profiles.iter().map(|p| format!("`{p}`")).collect();
            return Err(self.fail(
                Diagnostic::error(
                    "E0016",
                    format!("{key} names `{name}`, which no active profile starts"),
                )
                .with_label(Label::primary(reference.span(), "named here"))
                .with_label(Label::secondary(
                    declared.clone(),
                    format!("only in profile {}", listed.join(", ")),
                ))
                .with_help(format!(
                    "activate it (`--profile {}`), or give what names it the same profiles",
                    profiles.first().map_or("", String::as_str)
                )),
            ));
        }
        Ok(())
    }

    /// Resolves each `env_file` against the directory of the file that
    /// names it and checks it now (E0017, E0018), so `check` finds a
    /// missing file; its values are read again at each start, never here.
    fn env_files(&self, file: &mut TopologyFile) -> Result<(), TopologyError> {
        let sources = Sources {
            text: &self.text,
            files: &self.files,
        };
        for spec in file.process.values_mut() {
            if spec.env_file.is_empty() {
                continue;
            }
            let mut resolved = Vec::new();
            for entry in &spec.env_file {
                let span = entry.span();
                let dir = &self.dirs[sources.file_of(span.start)];
                let joined = dir.join(entry.get_ref());
                self.check_env_file(&joined, span.clone())?;
                // Absolute in the plan, so `run --plan` finds it from
                // anywhere; shown as written in diagnostics.
                let path = std::path::absolute(&joined).unwrap_or(joined);
                resolved.push(Spanned::new(span, path.display().to_string()));
            }
            spec.env_file = resolved;
        }
        Ok(())
    }

    fn check_env_file(&self, path: &Path, span: Range<usize>) -> Result<(), TopologyError> {
        let unreadable = |why: String| {
            Diagnostic::error(
                "E0017",
                format!("cannot read env file `{}`: {why}", path.display()),
            )
            .with_label(Label::primary(span.clone(), "named here"))
            .with_help("a relative `env_file` is relative to the file that names it")
        };
        let metadata = std::fs::metadata(path).map_err(|e| self.fail(unreadable(e.to_string())))?;
        if !metadata.is_file() {
            return Err(self.fail(unreadable("not a regular file".into())));
        }
        let cap = super::MAX_SOURCE_BYTES as u64;
        let bytes = read_at_most(path, cap).map_err(|e| self.fail(unreadable(e.to_string())))?;
        if bytes.len() as u64 > cap {
            return Err(self.fail(unreadable(format!("larger than {cap} bytes"))));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| self.fail(unreadable("the file is not valid UTF-8".into())))?;
        env_file::parse(&text).map_err(|bad| {
            self.fail(
                Diagnostic::error(
                    "E0018",
                    format!("env file `{}` has a bad line", path.display()),
                )
                .with_label(Label::primary(span.clone(), "named here"))
                .with_note(format!("{}:{}: {}", path.display(), bad.line, bad.reason))
                .with_help("each line is `KEY=VALUE`, a `# comment` or blank"),
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file without `include`, `profiles` or `env_file` means the same
    /// composed as parsed plainly: every shipped topology and every corpus
    /// file that parses.
    #[test]
    fn composing_a_plain_file_changes_nothing() {
        let mut compared = 0;
        for path in crate::topology::corpus_paths() {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            // What the uncomposed path reads (`${` in a `shell` script
            // included: it is composed now, and must read the same).
            let Ok(mut plain) = classify::from_str::<TopologyFile>(&text) else {
                continue;
            };
            plain.fill_endpoint_spans();
            if ["include", "profiles", "env_file"]
                .iter()
                .any(|word| text.contains(word))
            {
                continue;
            }
            let composed = match load(&path, text, u64::MAX, &ComposeOptions::default()) {
                Ok(composed) => composed,
                // The interpolation corpus: refused by design.
                Err(_) if path.to_string_lossy().contains("/E001") => continue,
                Err(error) => panic!("{}: {error:?}", path.display()),
            };
            assert_eq!(
                format!("{:?}", composed.file),
                format!("{plain:?}"),
                "{}",
                path.display()
            );
            compared += 1;
        }
        assert!(compared > 50, "only {compared} files compared");
    }

    /// `--max-file-size` bounds the included files together with the root.
    #[test]
    fn the_size_cap_counts_every_file() {
        let dir = std::env::temp_dir().join(format!("ipc-run-cap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("big.toml"), "# padding\n".repeat(100)).unwrap();
        let text = "include = [\"big.toml\"]\n".to_owned();
        let err = load(
            &dir.join("root.toml"),
            text,
            500,
            &ComposeOptions::default(),
        )
        .expect_err("over the cap");
        let _ = std::fs::remove_dir_all(&dir);
        let TopologyError::Parse { diagnostic, .. } = err else {
            panic!("a parse error expected")
        };
        assert_eq!(diagnostic.code, "E0002");
    }

    /// Endpoint spans of an included file point into its own text, moved
    /// to where it is in the joined text.
    #[test]
    fn included_spans_point_into_their_file() {
        let dir = std::env::temp_dir().join(format!("ipc-run-compose-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("inc.toml"),
            "[process.b]\ncmd = [\"y\"]\n[[edge]]\nfrom = \"a.out\"\nto = \"b.in\"\n",
        )
        .unwrap();
        let root = dir.join("root.toml");
        let text = "include = [\"inc.toml\"]\n[process.a]\ncmd = [\"x\"]\n".to_owned();
        let topology = load(&root, text, u64::MAX, &ComposeOptions::default()).expect("loads");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(topology.files.len(), 2);
        let to = &topology.file.edge[0].to.get_ref().0[0];
        assert_eq!(&topology.source[to.span()], "\"b.in\"");
        let sources = topology.sources();
        assert_eq!(sources.file_of(to.span().start), 1);
        assert!(sources.location(to.span().start).ends_with("inc.toml:5:6"));
    }
}
