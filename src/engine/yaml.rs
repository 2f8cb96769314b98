//! A small YAML writer for the Kubernetes manifests `ipc-run export
//! kubernetes` prints: maps keep the order they were built in (so the
//! output reads `apiVersion`, `kind`, `metadata`, `spec` and is the same
//! bytes on every run), and every string that a YAML 1.1 reader could take
//! for something else (a number, a boolean, `null`, a key) is written
//! double-quoted with JSON's escapes, which YAML reads the same way.
//!
//! Written here rather than through a YAML crate: the manifests need a
//! few dozen lines of output rules, not a parser, and a serializer crate
//! would decide key order and quoting for us, changing the snapshots on
//! an upgrade.

use std::fmt::Write;

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// A map, in this order.
    Map(Vec<(String, Node)>),
    /// A sequence.
    Seq(Vec<Node>),
    /// A string, written plain when that is unambiguous.
    Str(String),
    /// A string of several lines, written as a literal block (`|`) when
    /// its lines allow it.
    Text(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

/// A map from `(key, value)` pairs.
pub(crate) fn map<const N: usize>(entries: [(&str, Node); N]) -> Node {
    Node::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// A string.
pub(crate) fn s(text: impl Into<String>) -> Node {
    Node::Str(text.into())
}

/// A sequence of strings.
pub(crate) fn strs<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Node {
    Node::Seq(items.into_iter().map(|i| Node::Str(i.into())).collect())
}

impl Node {
    /// Adds an entry to a map (nothing for other nodes).
    pub(crate) fn push(&mut self, key: &str, value: Node) {
        if let Node::Map(entries) = self {
            entries.push((key.to_owned(), value));
        }
    }

    /// The document: the node at the top level, ending in a newline.
    pub(crate) fn document(&self) -> String {
        let mut out = String::new();
        match self {
            Node::Map(entries) if !entries.is_empty() => write_map(&mut out, entries, 0),
            Node::Seq(items) if !items.is_empty() => write_seq(&mut out, items, 0),
            scalar => {
                write_scalar(&mut out, scalar, 0);
                out.push('\n');
            }
        }
        out
    }
}

fn indent(out: &mut String, level: usize) {
    out.extend(std::iter::repeat_n(' ', level));
}

/// Writes `key: value` lines at `level` spaces.
fn write_map(out: &mut String, entries: &[(String, Node)], level: usize) {
    for (key, value) in entries {
        indent(out, level);
        write_plain_or_quoted(out, key);
        out.push(':');
        write_value_after_key(out, value, level);
    }
}

/// Writes `- item` lines at `level` spaces.
fn write_seq(out: &mut String, items: &[Node], level: usize) {
    for item in items {
        indent(out, level);
        out.push_str("- ");
        match item {
            // The first entry follows the dash; the others line up with it.
            Node::Map(entries) if !entries.is_empty() => {
                let (key, value) = &entries[0];
                write_plain_or_quoted(out, key);
                out.push(':');
                write_value_after_key(out, value, level + 2);
                write_map(out, &entries[1..], level + 2);
            }
            Node::Seq(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, level + 2);
            }
            scalar => {
                write_scalar(out, scalar, level + 2);
                out.push('\n');
            }
        }
    }
}

/// What follows `key:` for a value of a map at `level`.
fn write_value_after_key(out: &mut String, value: &Node, level: usize) {
    match value {
        Node::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            write_map(out, entries, level + 2);
        }
        Node::Seq(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, level + 2);
        }
        scalar => {
            out.push(' ');
            write_scalar(out, scalar, level + 2);
            out.push('\n');
        }
    }
}

/// A scalar (or an empty collection) on the current line; a literal
/// block's lines are indented to `level`.
fn write_scalar(out: &mut String, node: &Node, level: usize) {
    match node {
        Node::Map(_) => out.push_str("{}"),
        Node::Seq(_) => out.push_str("[]"),
        Node::Str(text) => write_plain_or_quoted(out, text),
        Node::Text(text) if fits_literal_block(text) => {
            // `|` keeps one final newline, `|-` none.
            out.push_str(if text.ends_with('\n') { "|" } else { "|-" });
            for line in text.strip_suffix('\n').unwrap_or(text).split('\n') {
                out.push('\n');
                if !line.is_empty() {
                    indent(out, level);
                    out.push_str(line);
                }
            }
        }
        Node::Text(text) => write_quoted(out, text),
        Node::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
    }
}

/// Whether a literal block gives back exactly `text`: no carriage
/// returns, tabs or trailing spaces (which a block would not keep
/// faithfully or readably), no leading space on its first line (it would
/// set the block's indentation), and at most one final newline.
fn fits_literal_block(text: &str) -> bool {
    !text.is_empty()
        && !text.contains(['\r', '\t'])
        && !text.starts_with([' ', '\n'])
        && !text.ends_with("\n\n")
        && text.split('\n').all(|line| !line.ends_with(' '))
        && text.chars().all(|c| !c.is_control() || c == '\n')
}

fn write_plain_or_quoted(out: &mut String, text: &str) {
    if is_plain_safe(text) {
        out.push_str(text);
    } else {
        write_quoted(out, text);
    }
}

fn write_quoted(out: &mut String, text: &str) {
    // JSON's string escapes are a subset of YAML's double-quoted ones.
    out.push_str(&serde_json::to_string(text).expect("a string serialises"));
}

/// Whether `text` reads back as the same string when written plain: it
/// starts with a letter, `/` or a `-` word, holds only characters with no meaning in
/// YAML's flow or block syntax, does not end in `:`, and is not one of
/// YAML 1.1's boolean or null words.
fn is_plain_safe(text: &str) -> bool {
    let mut chars = text.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    // A leading `-` is plain before a letter or another `-` (`--plan`),
    // not before a space (a sequence entry) or a digit (a number).
    let dash_word =
        first == '-' && text[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '-');
    if !(first.is_ascii_alphabetic() || first == '/' || dash_word) {
        return false;
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || "_./:=@+-".contains(c)) || text.ends_with(':') {
        return false;
    }
    const WORDS: [&str; 11] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf",
    ];
    !WORDS.iter().any(|w| w.eq_ignore_ascii_case(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_sequences_and_scalars_nest_in_order() {
        let doc = map([
            ("kind", s("Pod")),
            (
                "spec",
                map([(
                    "containers",
                    Node::Seq(vec![map([
                        ("name", s("a")),
                        ("args", strs(["run", "--host", "g"])),
                        ("ports", Node::Seq(vec![])),
                    ])]),
                )]),
            ),
            ("replicas", Node::Int(1)),
            ("ok", Node::Bool(true)),
        ]);
        assert_eq!(
            doc.document(),
            "kind: Pod\nspec:\n  containers:\n    - name: a\n      args:\n        - run\n        - --host\n        - g\n      ports: []\nreplicas: 1\nok: true\n"
        );
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        for text in [
            "", "yes", "No", "1.0", "500m", "a: b", "-", "- x", "-1", "x:", "#c", "~", ".inf",
        ] {
            let out = s(text).document();
            assert!(out.starts_with('"'), "{text:?} written as {out:?}");
        }
        for text in [
            "ipc-run",
            "/etc/ipc-run/plan.json",
            "a=b",
            "img:1.2",
            "--plan",
            "-c",
        ] {
            assert_eq!(s(text).document(), format!("{text}\n"));
        }
    }

    #[test]
    fn text_is_a_literal_block_when_it_can_be() {
        let doc = map([(
            "data",
            map([("plan.json", Node::Text("{\n  \"a\": 1\n}\n".into()))]),
        )]);
        assert_eq!(
            doc.document(),
            "data:\n  plan.json: |\n    {\n      \"a\": 1\n    }\n"
        );
        let doc = map([("t", Node::Text(" lead\n".into()))]);
        assert_eq!(doc.document(), "t: \" lead\\n\"\n");
    }
}
