//! `${VAR}` interpolation of a topology's values from ipc-run's environment
//! (`docs/topology.md`, "Composing a topology").
//!
//! It runs on the parsed document, before it is read into the typed model,
//! so a size, a duration or a number written as `"${SIZE:-4KiB}"` is read
//! as if the result had been written; every span still points at the
//! string as written.
//!
//! Values are interpolated, structure is not: no key (process, port and
//! variable names), and not the values that name parts of the topology
//! (`from`, `to`, an edge's `name`, `after`, `profiles`, `inherit_env`, the
//! top-level keys), so which processes exist and how they connect reads the
//! same in every environment. `shell` is not interpolated either: the shell
//! expands `${...}` itself, from the child's environment, and reading it
//! twice is the classic trap of compose files.

use std::borrow::Cow;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::Spanned;
use crate::diagnostic::{Diagnostic, Label};

/// Keys of a process whose values are never interpolated.
const PROCESS_KEYS_KEPT: &[&str] = &["shell", "after", "profiles", "inherit_env"];
/// Keys of an edge whose values are never interpolated.
const EDGE_KEYS_KEPT: &[&str] = &["from", "to", "name"];

/// Where `${NAME}` is looked up.
pub(super) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Interpolates every process's and edge's values in `root`, the parsed
/// `text`; the first mistake as a diagnostic with spans into `text`.
pub(super) fn document(
    root: &mut DeTable<'_>,
    text: &str,
    lookup: Lookup<'_>,
) -> Result<(), Diagnostic> {
    for (key, value) in root.iter_mut() {
        match (key.get_ref().as_ref(), value.get_mut()) {
            ("process", DeValue::Table(processes)) => {
                for (_, process) in processes.iter_mut() {
                    if let DeValue::Table(keys) = process.get_mut() {
                        table(keys, PROCESS_KEYS_KEPT, text, lookup)?;
                    }
                }
            }
            ("edge", DeValue::Array(edges)) => {
                for edge in edges.iter_mut() {
                    if let DeValue::Table(keys) = edge.get_mut() {
                        table(keys, EDGE_KEYS_KEPT, text, lookup)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn table(
    keys: &mut DeTable<'_>,
    kept: &[&str],
    text: &str,
    lookup: Lookup<'_>,
) -> Result<(), Diagnostic> {
    for (key, value) in keys.iter_mut() {
        if !kept.contains(&key.get_ref().as_ref()) {
            value_in(value, text, lookup)?;
        }
    }
    Ok(())
}

/// Every string in `value`, at any depth (array items, table values).
fn value_in(
    value: &mut Spanned<DeValue<'_>>,
    text: &str,
    lookup: Lookup<'_>,
) -> Result<(), Diagnostic> {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(string) if string.contains('$') => {
            let expanded = expand(string, lookup).map_err(|p| p.diagnostic(text, span))?;
            *string = Cow::Owned(expanded);
        }
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                value_in(item, text, lookup)?;
            }
        }
        DeValue::Table(entries) => {
            for (_, item) in entries.iter_mut() {
                value_in(item, text, lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Why a string could not be interpolated; `expr` is the `${...}` as it
/// reads in the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Problem {
    /// `${NAME}` of a variable that is not set.
    Unset { expr: String, name: String },
    /// `${NAME:?message}` or `${NAME?message}` of an unset (or empty) one.
    Required {
        expr: String,
        name: String,
        message: String,
    },
    /// Not one of the forms.
    Malformed { expr: String, reason: &'static str },
}

impl Problem {
    fn diagnostic(&self, text: &str, value: Range<usize>) -> Diagnostic {
        // The expression's own place when the value is written plainly
        // (no escapes before it), else the whole value.
        let place = |expr: &str| {
            text.get(value.clone())
                .and_then(|raw| raw.find(expr))
                .map_or(value.clone(), |at| {
                    value.start + at..value.start + at + expr.len()
                })
        };
        match self {
            Problem::Unset { expr, name } => Diagnostic::error(
                "E0013",
                format!("`{name}` is not set in ipc-run's environment"),
            )
            .with_label(Label::primary(place(expr), "interpolated here"))
            .with_help(format!(
                "set it, give a default with `${{{name}:-default}}` (`${{{name}:-}}` for empty), or write `$${{{name}}}` for a literal `${{{name}}}`"
            )),
            Problem::Required {
                expr,
                name,
                message,
            } => Diagnostic::error("E0013", format!("`{name}` is not set: {message}"))
                .with_label(Label::primary(place(expr), "required here")),
            Problem::Malformed { expr, reason } => {
                Diagnostic::error("E0014", format!("invalid interpolation `{expr}`: {reason}"))
                    .with_label(Label::primary(place(expr), "not an interpolation"))
                    .with_help(
                        "the forms are `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?message}` and `${NAME?message}`; `$$` is a literal `$`",
                    )
            }
        }
    }
}

/// `value` with `$$` made `$` and each `${...}` replaced; a `$` before
/// anything else is kept as written.
pub(super) fn expand(value: &str, lookup: Lookup<'_>) -> Result<String, Problem> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body) = tail.strip_prefix("${") {
            let Some(close) = body.find('}') else {
                return Err(Problem::Malformed {
                    expr: tail.to_owned(),
                    reason: "no closing `}`",
                });
            };
            let expr = &tail[..close + 3];
            out.push_str(&substitute(expr, &body[..close], lookup)?);
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of one `${body}`.
fn substitute(expr: &str, body: &str, lookup: Lookup<'_>) -> Result<String, Problem> {
    let name_end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, operator) = body.split_at(name_end);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(Problem::Malformed {
            expr: expr.to_owned(),
            reason: "a variable name is letters, digits and `_`, not starting with a digit",
        });
    }
    let value = lookup(name);
    let set_and_not_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let required = |message: &str| Problem::Required {
        expr: expr.to_owned(),
        name: name.to_owned(),
        message: if message.is_empty() {
            "required".to_owned()
        } else {
            message.to_owned()
        },
    };
    if operator.is_empty() {
        return value.ok_or_else(|| Problem::Unset {
            expr: expr.to_owned(),
            name: name.to_owned(),
        });
    }
    if let Some(default) = operator.strip_prefix(":-") {
        return Ok(value
            .filter(|_| set_and_not_empty)
            .unwrap_or_else(|| default.to_owned()));
    }
    if let Some(message) = operator.strip_prefix(":?") {
        return value
            .filter(|_| set_and_not_empty)
            .ok_or_else(|| required(message));
    }
    if let Some(default) = operator.strip_prefix('-') {
        return Ok(value.unwrap_or_else(|| default.to_owned()));
    }
    if let Some(message) = operator.strip_prefix('?') {
        return value.ok_or_else(|| required(message));
    }
    Err(Problem::Malformed {
        expr: expr.to_owned(),
        reason: "unknown form after the name",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn forms() {
        let cases = [
            ("${HOST}:5432", "db:5432"),
            ("${MISSING:-x}", "x"),
            ("${EMPTY:-x}", "x"),
            ("${EMPTY-x}", ""),
            ("${MISSING-x y}", "x y"),
            ("${EMPTY}", ""),
            ("$$HOST $${HOST} $HOST $", "$HOST ${HOST} $HOST $"),
            ("${HOST:?needed}", "db"),
            ("a${MISSING:-}b", "ab"),
        ];
        for (value, want) in cases {
            assert_eq!(expand(value, &vars).as_deref(), Ok(want), "{value}");
        }
    }

    #[test]
    fn mistakes() {
        let unset = expand("x${MISSING}", &vars).expect_err("unset");
        assert!(matches!(unset, Problem::Unset { ref name, .. } if name == "MISSING"));
        let required = expand("${EMPTY:?give a host}", &vars).expect_err("required");
        assert!(
            matches!(required, Problem::Required { ref message, .. } if message == "give a host")
        );
        for bad in ["${HOST", "${}", "${1X}", "${kv#path=}", "${HOST:+x}"] {
            assert!(
                matches!(expand(bad, &vars), Err(Problem::Malformed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn errors_point_at_the_expression() {
        let text = "cmd = [\"run\", \"--to=${MISSING}\"]\n";
        let start = text.find("\"--to").expect("present");
        let problem = expand("--to=${MISSING}", &vars).expect_err("unset");
        let diagnostic = problem.diagnostic(text, start..start + 17);
        assert_eq!(
            &text[diagnostic.labels[0].span.clone()],
            "${MISSING}",
            "{diagnostic:?}"
        );
    }
}
