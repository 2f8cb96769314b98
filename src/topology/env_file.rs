//! The `env_file` format: `KEY=VALUE` lines, the subset of docker
//! compose's `.env` syntax that means the same in every reader.
//!
//! - Blank lines and lines whose first non-blank character is `#` are
//!   skipped; a leading `export ` is allowed (so the file can be sourced).
//! - `KEY` is a shell name: `[A-Za-z_][A-Za-z0-9_]*`.
//! - An unquoted value is the rest of the line, trimmed; ` #` (a blank then
//!   `#`) starts a comment.
//! - `'single quoted'` is literal; `"double quoted"` knows `\\`, `\"`,
//!   `\n`, `\r`, `\t` and `\$`. Either must close on its line; only a
//!   comment may follow.
//! - Values are never interpolated: what the file says is what the child
//!   gets, so a `$` in a password stays a `$`.
//!
//! The topology stage checks a file with [`parse`] when it plans (so a
//! missing file or a bad line is a diagnostic), and the launcher reads it
//! again with the same function each time it starts the process, so the
//! values never land in a plan.

/// A line that is not `KEY=VALUE`: its 1-based number and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, a lowercase fragment.
    pub reason: String,
}

/// The variables of an env file's `text`, in order (a later one of the same
/// name wins when they are applied), or its first bad line.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, BadLine> {
    let mut vars = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let bad = |reason: &str| BadLine {
            line: index + 1,
            reason: reason.to_owned(),
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, rest)) = line.split_once('=') else {
            return Err(bad("expected `KEY=VALUE`"));
        };
        let key = key.trim_end();
        if !is_name(key) {
            return Err(bad(
                "the name must be letters, digits and `_`, not starting with a digit",
            ));
        }
        if is_reserved(key) {
            return Err(bad(&format!("`{key}` is set by ipc-run itself")));
        }
        let value = value(rest.trim_start()).map_err(bad)?;
        if value.contains('\0') {
            return Err(bad("the value contains NUL"));
        }
        vars.push((key.to_owned(), value));
    }
    Ok(vars)
}

/// The variables ipc-run sets itself (the planner refuses them in `env`
/// with E0704 by the same list): an env file may not set them either.
fn is_reserved(key: &str) -> bool {
    [
        "NOTIFY_SOCKET",
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
    ]
    .contains(&key)
        || ["IPC_RUN_", "IPC_PORT_", "LISTEN_"]
            .iter()
            .any(|prefix| key.starts_with(prefix))
}

fn is_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The value after `=` (leading blanks removed).
fn value(rest: &str) -> Result<String, &'static str> {
    let (value, after) = if let Some(body) = rest.strip_prefix('\'') {
        let end = body.find('\'').ok_or("the single quote is not closed")?;
        (body[..end].to_owned(), &body[end + 1..])
    } else if let Some(body) = rest.strip_prefix('"') {
        double_quoted(body)?
    } else {
        let end = rest
            .char_indices()
            .find(|&(i, c)| c == '#' && rest[..i].ends_with([' ', '\t']))
            .map_or(rest.len(), |(i, _)| i);
        return Ok(rest[..end].trim_end().to_owned());
    };
    let after = after.trim_start();
    if after.is_empty() || after.starts_with('#') {
        Ok(value)
    } else {
        Err("only a comment may follow a quoted value")
    }
}

/// A double-quoted value's text and what follows its closing quote.
fn double_quoted(body: &str) -> Result<(String, &str), &'static str> {
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &body[i + 1..])),
            '\\' => match chars.next().map(|(_, e)| e) {
                Some('n') => value.push('\n'),
                Some('r') => value.push('\r'),
                Some('t') => value.push('\t'),
                Some(e @ ('\\' | '"' | '$')) => value.push(e),
                Some(_) => {
                    return Err("unknown escape (`\\\\`, `\\\"`, `\\n`, `\\r`, `\\t`, `\\$`)");
                }
                None => break,
            },
            c => value.push(c),
        }
    }
    Err("the double quote is not closed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_quotes() {
        let text = "# c\n\nA=1\nexport B = two words # note\nC='$x # y'\nD=\"a\\n\\\"b\\\"\" # z\nE=\nF=a#b\n";
        let vars = parse(text).expect("valid");
        let want = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "$x # y"),
            ("D", "a\n\"b\""),
            ("E", ""),
            ("F", "a#b"),
        ];
        let got: Vec<_> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn bad_lines_are_numbered() {
        for (text, line) in [
            ("A=1\nnothing\n", 2),
            ("1A=x\n", 1),
            ("A='open\n", 1),
            ("A=\"x\" y\n", 1),
            ("\n\nA=\"\\q\"\n", 3),
            ("A=\"x\0\"\n", 1),
            ("LISTEN_FDS=3\n", 1),
        ] {
            assert_eq!(parse(text).expect_err(text).line, line, "{text:?}");
        }
    }
}
