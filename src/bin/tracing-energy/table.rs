//! Aligned text tables for the terminal.

/// A table: a header and rows of cells; numeric-looking cells are right-aligned.
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

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
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

/// Shortens text to `max` characters for a table cell (one line).
pub fn short(text: Option<&str>, max: usize) -> String {
    let t = text.unwrap_or("").replace(['\n', '\r', '\t'], " ");
    if t.chars().count() <= max {
        t
    } else {
        let cut: String = t.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
