//! Aligned text tables for the terminal, and [`printable`]: user text is shown, never
//! obeyed, by the terminal.

use std::borrow::Cow;

/// A table: a header and rows of cells; numeric-looking cells are right-aligned. Every
/// cell goes through [`printable`].
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; control characters in its cells are shown escaped ([`printable`]).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| {
                    let c: String = c.into();
                    match printable(&c) {
                        Cow::Borrowed(_) => c,
                        Cow::Owned(escaped) => escaped,
                    }
                })
                .collect(),
        );
    }

    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let numeric = |s: &str| {
            !s.is_empty()
                && s.trim_start_matches(['-', '+'])
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == '%')
        };
        let mut out = String::new();
        let mut line = |cells: &[String], header: bool| {
            let parts: Vec<String> = cells
                .iter()
                .enumerate()
                .take(n)
                .map(|(i, c)| {
                    let pad = widths[i].saturating_sub(c.chars().count());
                    if !header && numeric(c) {
                        format!("{}{c}", " ".repeat(pad))
                    } else {
                        format!("{c}{}", " ".repeat(pad))
                    }
                })
                .collect();
            out.push_str(parts.join("  ").trim_end());
            out.push('\n');
        };
        line(&self.header, true);
        for r in &self.rows {
            line(r, false);
        }
        out
    }
}

/// A number with `digits` decimals, or `-` when unknown.
pub fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

/// Shortens text to `max` characters for a table cell (control characters, line breaks
/// included, are escaped by [`Table::row`]).
pub fn short(text: Option<&str>, max: usize) -> String {
    let t = text.unwrap_or("");
    if t.chars().count() <= max {
        t.to_string()
    } else {
        let cut: String = t.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// True for characters a terminal may obey rather than show: C0 controls (line breaks and
/// tabs included), DEL, C1 controls (U+0080 to U+009F) and the bidirectional overrides and
/// isolates (U+202A to U+202E, U+2066 to U+2069).
fn is_unsafe(c: char) -> bool {
    matches!(c, '\0'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// User text (prompts, tags, names, paths) made safe to print on a terminal: every
/// control character is replaced by a visible escape (`\x1b`, `\n`, `\t`, `\u{9b}`,
/// `\u{202e}`), so that an escape sequence stored in a database is shown, not run. Text
/// without such characters is returned as it is.
pub fn printable(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Like [`printable`], keeping line breaks and tabs: for messages of several lines.
pub fn printable_lines(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_lines: bool) -> Cow<'_, str> {
    let kept = |c: char| keep_lines && matches!(c, '\n' | '\t');
    if !s.chars().any(|c| is_unsafe(c) && !kept(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !is_unsafe(c) || kept(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0'..='\x1f' | '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            _ => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(
            printable("\x1b]0;pwned\x07\x1b[2J"),
            r"\x1b]0;pwned\x07\x1b[2J"
        );
        assert_eq!(printable("a\tb\nc\rd\x7f"), r"a\tb\nc\rd\x7f");
        assert_eq!(
            printable("\u{9b}31m \u{202e}x\u{2066}"),
            r"\u{9b}31m \u{202e}x\u{2066}"
        );
        assert_eq!(printable_lines("a\n\tb\x1b"), "a\n\tb\\x1b");
        assert!(matches!(printable("héllo — ünïcode ✓"), Cow::Borrowed(_)));
        assert!(matches!(printable(r"already \x1b"), Cow::Borrowed(_)));
    }

    #[test]
    fn table_cells_are_escaped_and_stay_on_one_line() {
        let mut t = Table::new(["a", "b"]);
        t.row(["x\ny", "\x1b[2J"]);
        let out = t.render();
        assert_eq!(out.lines().count(), 2);
        assert!(out.contains(r"x\ny") && out.contains(r"\x1b[2J"), "{out}");
        assert!(!out.contains('\x1b'));
    }
}
