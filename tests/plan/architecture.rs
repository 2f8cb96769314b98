//! Guard rails on the shape of the code (`docs/architecture.md`): no long
//! functions, each mechanism's name spelt in few places, and a child crate
//! that depends on `libc` alone. They read the sources; nothing is built.

use std::path::{Path, PathBuf};

use ipc_run::child::description::Kind;

/// The longest function body allowed, in lines (signature to closing brace).
const MAX_FUNCTION_LINES: usize = 120;

/// The marker that allows a longer function, on a line above its `fn`
/// (above its attributes and doc comment, if any), with a reason after it.
const LONG_FUNCTION_MARKER: &str = "// long-function:";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The source with comments, string and char literals blanked (each
/// character replaced by a space, newlines kept), so braces can be counted.
fn code_only(source: &str) -> Vec<char> {
    let text: Vec<char> = source.chars().collect();
    let mut out = text.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in &mut out[from..to.min(text.len())] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let start = i;
        if rest.starts_with(&['/', '/']) {
            while i < text.len() && text[i] != '\n' {
                i += 1;
            }
            blank(&mut out, start, i);
        } else if rest.starts_with(&['/', '*']) {
            let mut depth = 0;
            while i < text.len() {
                if text[i..].starts_with(&['/', '*']) {
                    depth += 1;
                    i += 2;
                } else if text[i..].starts_with(&['*', '/']) {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            blank(&mut out, start, i);
        } else if rest[0] == 'r'
            && (rest.get(1) == Some(&'#') || rest.get(1) == Some(&'"'))
            && (i == 0 || !is_ident(text[i - 1]))
        {
            // A raw string: r"..." or r#"..."#.
            let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
            if rest.get(1 + hashes) != Some(&'"') {
                i += 1;
                continue;
            }
            i += 2 + hashes;
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            while i < text.len() && !text[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
            blank(&mut out, start, i);
        } else if rest[0] == '"' {
            i += 1;
            while i < text.len() && text[i] != '"' {
                i += if text[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            blank(&mut out, start, i);
        } else if rest[0] == '\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a).
            if rest.get(1) == Some(&'\\') {
                i += 2;
                while i < text.len() && text[i] != '\'' {
                    i += 1;
                }
                i += 1;
                blank(&mut out, start, i);
            } else if rest.get(2) == Some(&'\'') {
                i += 3;
                blank(&mut out, start, i);
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether a code line starts a function item: `fn name`, after any of
/// `pub(...)`, `const`, `async`, `unsafe`, `extern "C"`.
fn fn_name(line: &str) -> Option<&str> {
    let mut words = line.trim_start();
    loop {
        let word_end = words
            .find(|c: char| !is_ident(c) && c != '(' && c != ')')
            .unwrap_or(words.len());
        let word = &words[..word_end];
        if word == "fn" {
            let name = words[2..].trim_start();
            let end = name.find(|c: char| !is_ident(c)).unwrap_or(name.len());
            return (end > 0).then(|| &name[..end]);
        }
        let known = word == "pub"
            || word.starts_with("pub(")
            || matches!(word, "const" | "async" | "unsafe" | "extern" | "default");
        if !known || word.is_empty() {
            return None;
        }
        words = words[word_end..].trim_start();
    }
}

/// Functions of `source` longer than the limit and not marked: (name,
/// first line, lines).
fn long_functions(source: &str) -> Vec<(String, usize, usize)> {
    let code: String = code_only(source).into_iter().collect();
    let code_lines: Vec<&str> = code.lines().collect();
    let source_lines: Vec<&str> = source.lines().collect();
    // Line index of each character offset's line start.
    let mut line_of = Vec::with_capacity(code.len());
    for (n, line) in code.split_inclusive('\n').enumerate() {
        line_of.extend(std::iter::repeat_n(n, line.len()));
    }
    let mut offsets = Vec::with_capacity(code_lines.len());
    let mut at = 0;
    for line in code.split_inclusive('\n') {
        offsets.push(at);
        at += line.len();
    }
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    for (n, line) in code_lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        // The body opens at the first `{` before any `;` (a declaration).
        let mut i = offsets[n];
        while i < bytes.len() && bytes[i] != b'{' && bytes[i] != b';' {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] == b';' {
            continue;
        }
        let mut depth = 0usize;
        while i < bytes.len() {
            match bytes[i] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let end = line_of.get(i).copied().unwrap_or(code_lines.len() - 1);
        let length = end - n + 1;
        if length > MAX_FUNCTION_LINES && !marked(&source_lines, n) {
            found.push((name.to_owned(), n + 1, length));
        }
    }
    found
}

/// Whether the lines above line `n` (its doc comment and attributes) carry
/// the long-function marker with a reason.
fn marked(lines: &[&str], n: usize) -> bool {
    lines[..n]
        .iter()
        .rev()
        .map(|l| l.trim())
        .take_while(|l| l.starts_with("//") || l.starts_with("#[") || l.starts_with("#!["))
        .any(|l| {
            l.strip_prefix(LONG_FUNCTION_MARKER)
                .is_some_and(|why| !why.trim().is_empty())
        })
}

#[test]
fn no_function_in_src_is_longer_than_the_limit() {
    let mut long = Vec::new();
    for file in rust_files(&root().join("src")) {
        for (name, line, length) in long_functions(&read(&file)) {
            let file = file
                .strip_prefix(root())
                .unwrap_or(&file)
                .display()
                .to_string();
            long.push(format!("{file}:{line}: fn {name} is {length} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "functions longer than {MAX_FUNCTION_LINES} lines (split them, or justify one with \
         `{LONG_FUNCTION_MARKER} <why>` above it):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_scanner_measures_functions() {
    let body = "    let _ = 1;\n".repeat(MAX_FUNCTION_LINES);
    let source = format!(
        "pub(crate) fn long<'a>(x: &'a str) -> char {{\n    let _ = \"}}\";\n    let _ = '}}';\n{body}}}\n\
         fn short() {{}}\n\
         // long-function: a test of the marker\n#[inline]\nfn excused() {{\n{body}}}\n"
    );
    let found = long_functions(&source);
    assert_eq!(found, vec![("long".to_owned(), 1, MAX_FUNCTION_LINES + 4)]);
}

/// The production code of a source file: a `tests.rs` file has none, and
/// the rest of a file from its `#[cfg(test)]` module on is tests.
fn production_code(path: &Path) -> String {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let source = read(path);
    match source.find("\n#[cfg(test)]") {
        Some(at) => source[..at].to_owned(),
        None => source,
    }
}

#[test]
fn each_mechanism_name_is_spelt_in_at_most_two_files() {
    let mut files = rust_files(&root().join("src"));
    files.extend(rust_files(&root().join("crates/ipc-run-child/src")));
    let sources: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|f| (f.clone(), production_code(&f)))
        .collect();
    let mut spread = Vec::new();
    for kind in Kind::ALL {
        let literal = format!("\"{}\"", kind.as_str());
        let places: Vec<String> = sources
            .iter()
            .filter(|(_, source)| source.contains(&literal))
            .map(|(f, _)| f.strip_prefix(root()).unwrap_or(f).display().to_string())
            .collect();
        if places.len() > 2 {
            spread.push(format!("{literal}: {}", places.join(", ")));
        }
    }
    assert!(
        spread.is_empty(),
        "mechanism names spelt as literals in more than two files (use the registry's \
         `Kind::as_str` or the module's `NAME`):\n{}",
        spread.join("\n")
    );
}

#[test]
fn the_child_crate_depends_on_libc_alone() {
    let manifest = read(&root().join("crates/ipc-run-child/Cargo.toml"));
    let mut in_dependencies = false;
    let mut dependencies = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            // A `[dependencies.NAME]` table is a dependency too.
            if let Some(name) = line.strip_prefix("[dependencies.") {
                dependencies.push(name.trim_end_matches(']').to_owned());
            }
            continue;
        }
        if in_dependencies && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap_or_default().trim();
            dependencies.push(name.to_owned());
        }
    }
    assert_eq!(
        dependencies,
        ["libc"],
        "crates/ipc-run-child depends on libc alone"
    );
}

/// Cycles between top-level modules that are known and being removed, each
/// as printed (`a -> b -> a`); the test fails when one disappears, so the
/// list only shrinks. None is left: keep it empty.
const KNOWN_CYCLES: &[&str] = &[];

/// The top-level module a source file under `src/` belongs to, or `None`
/// for the crate roots and the binaries (`lib.rs`, `main.rs`, `bin/`).
fn top_module(relative: &Path) -> Option<String> {
    let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
    let first = parts.next()?;
    let rest = parts.next();
    match (first.strip_suffix(".rs"), rest) {
        (Some("lib" | "main"), None) => None,
        (Some(name), None) => Some(name.to_owned()),
        (None, Some(_)) if first != "bin" => Some(first),
        _ => None,
    }
}

/// The first segment of each path a `PREFIX::` reference names: `a` in
/// `crate::a::b`, `a` and `b` in `crate::{a::x, b}`.
fn referenced_modules(code: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let tail = rest.trim_start();
        if let Some(group) = tail.strip_prefix('{') {
            // The group's top-level items, up to its closing brace.
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && is_ident(c) => {
                        item_start = false;
                        let word = &group[i..];
                        let end = word.find(|c: char| !is_ident(c)).unwrap_or(word.len());
                        found.push(word[..end].to_owned());
                    }
                    _ => {}
                }
            }
        } else {
            let end = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
            found.push(tail[..end].to_owned());
        }
    }
    found
}

/// The source of a file for the module graph: none for a `tests.rs`
/// file, the whole text otherwise (`#[cfg(test)]` items are cut out of the
/// code by [`without_test_items`], wherever they are in the file).
fn production_code_of(path: &Path) -> String {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    read(path)
}

/// Code (comments and literals blanked) without its `#[cfg(test)]` items:
/// each from the attribute to the end of its item (the matching `}`, or
/// the `;` of a `mod tests;` or `use`).
fn without_test_items(code: &[char]) -> String {
    let text: String = code.iter().collect();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let mut end = item.len();
        let mut depth = 0usize;
        for (i, c) in item.char_indices() {
            match c {
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Which top-level modules each one uses in production code, through
/// `crate::` paths anywhere and `super::` paths in a module's root file.
fn module_graph(
    src: &Path,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let files: Vec<(PathBuf, String)> = rust_files(src)
        .into_iter()
        .filter_map(|f| {
            let relative = f.strip_prefix(src).ok()?.to_path_buf();
            top_module(&relative).map(|top| (relative, top))
        })
        .collect();
    let tops: std::collections::BTreeSet<&str> = files.iter().map(|(_, t)| t.as_str()).collect();
    let mut graph = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for (relative, top) in &files {
        let code = without_test_items(&code_only(&production_code_of(&src.join(relative))));
        let mut used = referenced_modules(&code, "crate::");
        let root_file = relative.components().count() == 1 || relative.ends_with("mod.rs");
        if root_file {
            used.extend(referenced_modules(&code, "super::"));
        }
        let entry = graph.entry(top.clone()).or_default();
        for module in used {
            if module != *top && tops.contains(module.as_str()) {
                entry.insert(module);
            }
        }
    }
    graph
}

/// Every elementary cycle's shortest form through its smallest module,
/// printed `a -> b -> a`.
fn cycles(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Vec<String> {
    let mut found = std::collections::BTreeSet::new();
    for start in graph.keys() {
        // Breadth-first from `start` over modules not smaller than it, so
        // each cycle is reported once, from its smallest module.
        let mut previous = std::collections::BTreeMap::<&str, &str>::new();
        let mut queue = std::collections::VecDeque::from([start.as_str()]);
        while let Some(module) = queue.pop_front() {
            for next in graph.get(module).into_iter().flatten() {
                if next == start {
                    // Back from `module` to `start`, then around.
                    let mut path = vec![module];
                    let mut at = module;
                    while at != start {
                        at = previous[at];
                        path.push(at);
                    }
                    path.reverse();
                    path.push(start);
                    found.insert(path.join(" -> "));
                } else if next.as_str() > start.as_str() && !previous.contains_key(next.as_str()) {
                    previous.insert(next, module);
                    queue.push_back(next);
                }
            }
        }
    }
    found.into_iter().collect()
}

#[test]
fn the_top_level_modules_depend_on_each_other_one_way() {
    let graph = module_graph(&root().join("src"));
    let found = cycles(&graph);
    let new: Vec<&String> = found
        .iter()
        .filter(|c| !KNOWN_CYCLES.contains(&c.as_str()))
        .collect();
    let gone: Vec<&&str> = KNOWN_CYCLES
        .iter()
        .filter(|c| !found.iter().any(|f| f == *c))
        .collect();
    assert!(
        new.is_empty(),
        "cycles between the modules of src/ (the stages call the mechanism registry, \
         which uses only the layers below it; see docs/architecture.md):\n{}",
        new.iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        gone.is_empty(),
        "a known cycle is gone; remove it from KNOWN_CYCLES: {gone:?}"
    );
}

#[test]
fn the_module_scanner_finds_references_and_cycles() {
    let code = "use crate::{a::{x, y}, b};\nfn f() { crate::c::g(); super::d::h(); }";
    assert_eq!(referenced_modules(code, "crate::"), ["a", "b", "c"]);
    let source = "use crate::a;\n#[cfg(test)]\nmod t { use crate::b; }\n#[cfg(test)]\nuse crate::c;\nfn f() { crate::d::g(); }";
    let production = without_test_items(&code_only(source));
    assert_eq!(referenced_modules(&production, "crate::"), ["a", "d"]);
    assert_eq!(referenced_modules(code, "super::"), ["d"]);
    let edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "c")];
    let mut graph = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for (from, to) in edges {
        graph.entry(from.into()).or_default().insert(to.into());
    }
    assert_eq!(cycles(&graph), ["a -> b -> c -> a", "c -> d -> c"]);
}
