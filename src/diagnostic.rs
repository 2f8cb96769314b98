//! Diagnostics that point into the topology file, rendered like rustc's:
//! a headline with a stable code, `--> file:line:col`, the source line and a
//! caret under the offending text, secondary labels for the other side of a
//! conflict, then notes and a hint.
//!
//! Both `topology` (syntax, types, unknown keys) and `plan` (semantic rules)
//! produce this one shape, so every mistake in a file looks the same.

use std::fmt::Write as _;
use std::ops::Range;

use anstyle::{AnsiColor, Style};
use serde::Serialize;

/// Source lines longer than this many characters are shown as a window
/// around the label.
const MAX_SHOWN_LINE: usize = 120;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The plan is still valid; `--deny warnings` turns these into failures.
    Warning,
    /// The topology is invalid.
    Error,
}

/// A span in the source with a short message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    /// Byte range in the source text.
    pub span: Range<usize>,
    /// What this place is, a lowercase fragment.
    pub message: String,
    /// The primary label is the place the headline is about.
    pub primary: bool,
}

impl Label {
    /// The place the diagnostic is about.
    pub fn primary(span: Range<usize>, message: impl Into<String>) -> Self {
        Label {
            span,
            message: message.into(),
            primary: true,
        }
    }

    /// Another place involved, e.g. the other side of a conflict.
    pub fn secondary(span: Range<usize>, message: impl Into<String>) -> Self {
        Label {
            span,
            message: message.into(),
            primary: false,
        }
    }
}

/// One finding about a topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable code such as `E0101` or `W0201`, listed in `docs/topology.md`.
    pub code: &'static str,
    /// The headline, a lowercase sentence fragment.
    pub message: String,
    /// Places in the file; the first primary one gives the `-->` location.
    pub labels: Vec<Label>,
    /// Facts that explain the finding (limits, numbers, paths).
    pub notes: Vec<String>,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A new error with no labels yet.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            labels: Vec::new(),
            notes: Vec::new(),
            help: None,
        }
    }

    /// A new warning with no labels yet.
    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    /// Adds a label.
    pub fn with_label(mut self, label: Label) -> Self {
        self.labels.push(label);
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Sets the hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic against `source`, read from `path`.
    pub fn render(&self, path: &str, source: &str, color: bool) -> String {
        let labels: Vec<&Label> = self.labels.iter().collect();
        self.render_groups(&[(path, source, labels, 0)], color)
    }

    /// Renders the diagnostic against a topology joined from several files
    /// ([`Sources`]): the labels are shown under the file each falls in,
    /// the primary label's file first (`-->`), each other file after it
    /// (`:::`), as rustc shows a span in another file.
    pub fn render_in(&self, sources: Sources<'_>, color: bool) -> String {
        if sources.files.len() <= 1 {
            let path = sources.files.first().map_or("", |f| f.path.as_str());
            return self.render(path, sources.text, color);
        }
        let mut order: Vec<usize> = Vec::new();
        let mut sorted: Vec<&Label> = self.labels.iter().collect();
        sorted.sort_by_key(|label| (!label.primary, label.span.start));
        for label in &sorted {
            let file = sources.file_of(label.span.start);
            if !order.contains(&file) {
                order.push(file);
            }
        }
        if order.is_empty() {
            order.push(0);
        }
        let groups: Vec<_> = order
            .iter()
            .map(|&file| {
                let range = sources.range(file);
                let labels = sorted
                    .iter()
                    .copied()
                    .filter(|label| sources.file_of(label.span.start) == file)
                    .collect();
                (
                    sources.files[file].path.as_str(),
                    &sources.text[range.clone()],
                    labels,
                    range.start,
                )
            })
            .collect();
        self.render_groups(&groups, color)
    }

    /// The headline, one snippet per file (its labels' spans less the
    /// file's `base` offset), then the notes.
    fn render_groups(&self, groups: &[(&str, &str, Vec<&Label>, usize)], color: bool) -> String {
        let (level, level_name) = match self.severity {
            Severity::Error => (AnsiColor::Red.on_default().bold(), "error"),
            Severity::Warning => (AnsiColor::Yellow.on_default().bold(), "warning"),
        };
        let p = Paint {
            color,
            blue: AnsiColor::Blue.on_default().bold(),
            bold: Style::new().bold(),
            level,
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}{}",
            p.paint(level, &format!("{level_name}[{}]", self.code)),
            p.paint(p.bold, &format!(": {}", printable(&self.message)))
        );
        let shifted: Vec<(&str, &str, Vec<Label>)> = groups
            .iter()
            .map(|(path, source, labels, base)| {
                let labels = labels
                    .iter()
                    .map(|label| Label {
                        span: label.span.start.saturating_sub(*base)
                            ..label.span.end.saturating_sub(*base),
                        ..(*label).clone()
                    })
                    .collect();
                (*path, *source, labels)
            })
            .collect();
        let located: Vec<_> = shifted
            .iter()
            .map(|(_, source, labels)| located(labels, source))
            .collect();
        let gutter = located
            .iter()
            .flatten()
            .map(|(line, _, _)| line.to_string().len())
            .max()
            .unwrap_or(1);
        for (i, ((path, source, _), located)) in shifted.iter().zip(located).enumerate() {
            let arrow = if i == 0 { "-->" } else { ":::" };
            write_snippet(&mut out, &p, gutter, (arrow, path, source), located);
        }
        self.write_notes(&mut out, &p, &" ".repeat(gutter));
        out
    }

    /// The notes, then the hint, under the snippet.
    fn write_notes(&self, out: &mut String, p: &Paint, pad: &str) {
        let notes = self.notes.iter().map(|note| format!("note: {note}"));
        for line in notes.chain(self.help.iter().map(|help| format!("help: {help}"))) {
            let _ = writeln!(
                out,
                "{pad} {} {}",
                p.paint(p.blue, "="),
                p.paint(p.bold, &printable(&line))
            );
        }
    }

    /// `file:line:col` of the primary label, for one-line summaries.
    pub fn location(&self, path: &str, source: &str) -> String {
        match self
            .labels
            .iter()
            .find(|label| label.primary)
            .or(self.labels.first())
        {
            Some(label) => {
                let (line, col) = line_col(source, label.span.start);
                format!("{path}:{line}:{col}")
            }
            None => path.to_owned(),
        }
    }
}

/// The labels with their line and column: primary first, so its location
/// heads the snippet; the rest by position.
fn located<'l>(labels: &'l [Label], source: &str) -> Vec<(usize, usize, &'l Label)> {
    let mut labels: Vec<&Label> = labels.iter().collect();
    labels.sort_by_key(|label| (!label.primary, label.span.start));
    labels
        .into_iter()
        .map(|label| {
            let (line, col) = line_col(source, label.span.start);
            (line, col, label)
        })
        .collect()
}

/// One file's part of a rendering: `--> path:line:col` (or `:::` for a
/// file after the first), then each labelled line with its markers.
fn write_snippet(
    out: &mut String,
    p: &Paint,
    gutter: usize,
    (arrow, path, source): (&str, &str, &str),
    located: Vec<(usize, usize, &Label)>,
) {
    let pad = " ".repeat(gutter);
    if let Some((line, col, _)) = located.first() {
        let _ = writeln!(out, "{pad}{} {path}:{line}:{col}", p.paint(p.blue, arrow));
    } else {
        let _ = writeln!(out, "{pad}{} {path}", p.paint(p.blue, arrow));
    }
    if !located.is_empty() {
        let _ = writeln!(out, "{pad} {}", p.paint(p.blue, "|"));
    }
    let mut by_line = located;
    by_line.sort_by_key(|(line, col, label)| (*line, *col, !label.primary));
    let mut last_line = None;
    let mut window = 0..0;
    for (line, col, label) in &by_line {
        let text = source.lines().nth(line - 1).unwrap_or("");
        let chars: Vec<char> = text.chars().collect();
        let start_col = (col - 1).min(chars.len());
        if last_line != Some(*line) {
            if let Some(previous) = last_line {
                if *line > previous + 1 {
                    let _ = writeln!(out, "{}", p.paint(p.blue, "..."));
                }
            }
            window = shown_window(chars.len(), start_col);
            let number = format!("{line:>gutter$}");
            let _ = writeln!(
                out,
                "{} {}",
                p.paint(p.blue, &format!("{number} |")),
                shown_line(&chars, &window)
            );
            last_line = Some(*line);
        }
        let shown = ShownLine {
            text,
            chars: &chars,
            start_col,
            window: window.clone(),
        };
        let markers = shown.markers(source, label, if label.primary { '^' } else { '-' });
        let style = if label.primary { p.level } else { p.blue };
        let _ = writeln!(
            out,
            "{pad} {} {}{} {}",
            p.paint(p.blue, "|"),
            shown.indent(),
            p.paint(style, &markers),
            p.paint(style, &printable(&label.message))
        );
    }
}

/// One file of a topology joined from several (`include`): its path as
/// shown and where its text starts in the joined text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path as shown in `-->` lines.
    pub path: String,
    /// Byte offset of the file's first byte in the joined text.
    pub start: usize,
}

/// The joined text of a topology's files and where each file is in it:
/// every span of the topology indexes the joined text, and rendering finds
/// the file a span falls in.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// The files' texts, one after another.
    pub text: &'a str,
    /// The files by their start, the first at 0.
    pub files: &'a [SourceFile],
}

impl Sources<'_> {
    /// The index of the file that `offset` falls in.
    pub fn file_of(&self, offset: usize) -> usize {
        self.files
            .partition_point(|file| file.start <= offset)
            .saturating_sub(1)
    }

    /// The byte range of file `index` in the joined text.
    pub fn range(&self, index: usize) -> Range<usize> {
        let start = self
            .files
            .get(index)
            .map_or(0, |file| file.start.min(self.text.len()));
        let end = self
            .files
            .get(index + 1)
            .map_or(self.text.len(), |next| next.start.min(self.text.len()));
        start..end.max(start)
    }

    /// `file:line:col` of `offset`, in the file it falls in.
    pub fn location(&self, offset: usize) -> String {
        let file = self.file_of(offset);
        let range = self.range(file);
        let (line, col) = line_col(
            &self.text[range.clone()],
            offset.saturating_sub(range.start),
        );
        let path = self.files.get(file).map_or("", |f| f.path.as_str());
        format!("{path}:{line}:{col}")
    }
}

/// The styles of one rendering, applied only when colouring.
struct Paint {
    color: bool,
    blue: Style,
    bold: Style,
    /// The severity's style (primary markers).
    level: Style,
}

impl Paint {
    fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            format!("{}{}{}", style.render(), text, style.render_reset())
        } else {
            text.to_owned()
        }
    }
}

/// The characters of a source line that are shown: very long lines (a
/// 10 MB string) are shown as a window around the first label on them.
fn shown_window(len: usize, start_col: usize) -> std::ops::Range<usize> {
    if len <= MAX_SHOWN_LINE {
        0..len
    } else {
        let from = start_col.saturating_sub(MAX_SHOWN_LINE / 4);
        from..(from + MAX_SHOWN_LINE).min(len)
    }
}

/// The shown part of a line, with `...` where it was cut. Control
/// characters (a raw ESC or NUL in a broken file) never reach the terminal;
/// one column each keeps carets aligned.
fn shown_line(chars: &[char], window: &std::ops::Range<usize>) -> String {
    let shown: String = chars[window.clone()]
        .iter()
        .map(|&c| {
            if c.is_control() && c != '\t' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect();
    let before = if window.start > 0 { "..." } else { "" };
    let after = if window.end < chars.len() { "..." } else { "" };
    format!("{before}{shown}{after}")
}

/// A source line as shown, for placing one label's markers under it.
struct ShownLine<'a> {
    text: &'a str,
    chars: &'a [char],
    /// The label's first column (0-based, in characters).
    start_col: usize,
    window: std::ops::Range<usize>,
}

impl ShownLine<'_> {
    /// The label's first column, within the window.
    fn at(&self) -> usize {
        self.start_col.clamp(self.window.start, self.window.end)
    }

    /// Blanks up to the label (tabs kept, so it lines up on a terminal).
    fn indent(&self) -> String {
        let lead = if self.window.start > 0 { 3 } else { 0 };
        std::iter::repeat_n(' ', lead)
            .chain(
                self.chars[self.window.start..self.at()]
                    .iter()
                    .map(|&c| if c == '\t' { '\t' } else { ' ' }),
            )
            .collect()
    }

    /// `mark` under each character of the label on this line (at least one,
    /// cut at the window).
    fn markers(&self, source: &str, label: &Label, mark: char) -> String {
        let text = self.text;
        let line_start = label.span.start.saturating_sub(
            text[..text
                .char_indices()
                .nth(self.start_col)
                .map_or(text.len(), |(i, _)| i)]
                .len(),
        );
        let line_end = line_start + text.len();
        let label_end = label.span.end.clamp(label.span.start, line_end);
        let label_chars = source
            .get(label.span.start.min(line_end)..label_end)
            .map_or(1, |s| s.chars().count())
            .max(1);
        let count = label_chars
            .min(self.window.end.saturating_sub(self.at()))
            .max(1);
        std::iter::repeat_n(mark, count).collect()
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = source[line_start..offset].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// `text` with control characters other than newlines escaped (`\0`,
/// `\u{1b}`): user text quoted in a message never drives the terminal.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    escape_controls(text, true)
}

/// `text` with its control characters written as escapes (`\n`, `\0`,
/// `\u{1b}`), newlines kept when `keep_newlines`: user text put into a
/// terminal, a generated file or a protocol line can neither drive the
/// terminal nor start a line of its own (a shell command in a batch
/// script, a directive in a unit, an assignment in an sd_notify message).
pub fn escape_controls(text: &str, keep_newlines: bool) -> std::borrow::Cow<'_, str> {
    let escaped = |c: char| c.is_control() && !(keep_newlines && c == '\n');
    if !text.chars().any(escaped) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_span_with_secondary_label() {
        let source = "[process.a]\ncmd = [\"x\"]\n\n[process.b]\ncmd = [\"y\"]\n";
        let diagnostic = Diagnostic::error("E9999", "something is wrong")
            .with_label(Label::primary(43..48, "here"))
            .with_label(Label::secondary(12..15, "and there"))
            .with_help("fix it");
        let text = diagnostic.render("t.toml", source, false);
        assert_eq!(
            text,
            "error[E9999]: something is wrong\n --> t.toml:5:7\n  |\n2 | cmd = [\"x\"]\n  | --- and there\n...\n5 | cmd = [\"y\"]\n  |       ^^^^^ here\n  = help: fix it\n"
        );
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let source = "a = \"x\u{1b}[2J\0\"\n";
        let diagnostic = Diagnostic::error("E9999", "bad `x\u{1b}[2J\0`")
            .with_label(Label::primary(4..10, "name `\0`"))
            .with_note("\u{7}")
            .with_help("\r");
        let text = diagnostic.render("t.toml", source, false);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("bad `x\\u{1b}[2J\\0`"), "{text}");
    }

    #[test]
    fn long_lines_are_shown_as_a_window_around_the_label() {
        let source = format!("cmd = [\"{}\"]\n", "a".repeat(5000));
        let diagnostic = Diagnostic::error("E9999", "too long")
            .with_label(Label::primary(6..source.len() - 1, "here"));
        let text = diagnostic.render("t.toml", &source, false);
        assert!(text.len() < 600, "{text}");
        assert!(text.contains("1 | cmd = [\"aaaa"), "{text}");
        assert!(text.contains("aaa..."), "{text}");
    }

    #[test]
    fn carets_count_characters_not_bytes() {
        let source = "name = \"é\" # x\nbad = 1\n";
        let at = source.find("# x").expect("present");
        let diagnostic =
            Diagnostic::error("E9999", "x").with_label(Label::primary(at..at + 3, "here"));
        let text = diagnostic.render("t.toml", source, false);
        assert!(text.contains("\n  |            ^^^ here\n"), "{text}");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("", 0), (1, 1));
    }
}
