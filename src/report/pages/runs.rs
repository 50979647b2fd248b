//! The runs list: the filters of `tracing-energy runs` as a form, a form to compare two
//! runs, and one row per run with links to its report and to a comparison with the run
//! below it.

use std::fmt::Write as _;

use super::{duration, energy, or_unknown, page_close, page_open};
use crate::report::format::escape_html as esc;
use crate::store::Run;

/// The runs list's filters, as given in its query string (the options of
/// `tracing-energy runs`): `model`, `tag` (repeated: all must match), `experiment`,
/// `since`, `until` (dates, kept as given: the caller checks them), `limit` and `offset`.
/// An empty value is no filter, as an empty form field sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunListQuery {
    /// Only this model.
    pub model: Option<String>,
    /// Only runs with every one of these tags.
    pub tags: Vec<String>,
    /// Only this experiment.
    pub experiment: Option<String>,
    /// Runs started on or after this date (YYYY-MM-DD or RFC 3339), as given.
    pub since: Option<String>,
    /// Runs started before this date, as given.
    pub until: Option<String>,
    /// At most this many runs.
    pub limit: u64,
    /// Skip this many runs (newest first).
    pub offset: u64,
}

impl RunListQuery {
    /// The default number of runs per page, as `tracing-energy runs`.
    pub const DEFAULT_LIMIT: u64 = 50;
    /// The query keys understood.
    pub const KEYS: [&'static str; 7] = [
        "model",
        "tag",
        "experiment",
        "since",
        "until",
        "limit",
        "offset",
    ];

    /// Reads the filters from decoded `(key, value)` pairs of a query string. An unknown
    /// key, or a `limit` or `offset` that is not a whole number, is an error that says
    /// what is wrong and how to fix it.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<RunListQuery, String> {
        let mut q = RunListQuery::default();
        for (key, value) in pairs {
            let (key, value) = (key.as_ref(), value.as_ref().trim());
            let number = |what: &str| {
                value.parse::<u64>().map_err(|_| {
                    format!(
                        "`{what}={value}` is not a whole number. Fix: give {what} as 0 or more, e.g. {what}=50"
                    )
                })
            };
            let text = (!value.is_empty()).then(|| value.to_string());
            match key {
                "model" => q.model = text,
                "tag" => q.tags.extend(text),
                "experiment" => q.experiment = text,
                "since" => q.since = text,
                "until" => q.until = text,
                "limit" if !value.is_empty() => q.limit = number("limit")?,
                "offset" if !value.is_empty() => q.offset = number("offset")?,
                "limit" | "offset" => {}
                other => {
                    return Err(format!(
                        "unknown query parameter `{other}`. Fix: use only {}",
                        RunListQuery::KEYS.join(", ")
                    ))
                }
            }
        }
        Ok(q)
    }

    /// The query string (without `?`) that gives these filters back; defaults left out.
    pub fn query_string(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        let mut opt = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        };
        opt("model", &self.model);
        opt("experiment", &self.experiment);
        opt("since", &self.since);
        opt("until", &self.until);
        for t in &self.tags {
            s.append_pair("tag", t);
        }
        if self.limit != RunListQuery::DEFAULT_LIMIT {
            s.append_pair("limit", &self.limit.to_string());
        }
        if self.offset != 0 {
            s.append_pair("offset", &self.offset.to_string());
        }
        s.finish()
    }

    /// The runs list's path with these filters, at `offset`.
    fn href_at(&self, offset: u64) -> String {
        let q = RunListQuery {
            offset,
            ..self.clone()
        }
        .query_string();
        if q.is_empty() {
            "/".into()
        } else {
            format!("/?{q}")
        }
    }

    fn filtered(&self) -> bool {
        self.model.is_some()
            || !self.tags.is_empty()
            || self.experiment.is_some()
            || self.since.is_some()
            || self.until.is_some()
    }
}

impl Default for RunListQuery {
    fn default() -> Self {
        RunListQuery {
            model: None,
            tags: Vec::new(),
            experiment: None,
            since: None,
            until: None,
            limit: RunListQuery::DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

/// The runs list page: `runs` (newest first, as the store lists them for `query`), with
/// the filter form filled in from `query`, a compare form over the listed runs, and pager
/// links. `database` names the file in the heading.
pub fn runs_page(runs: &[Run], query: &RunListQuery, database: &str) -> String {
    let mut h = String::with_capacity(32 * 1024 + runs.len() * 1024);
    page_open(&mut h, "Runs");
    let shown = match (runs.len(), query.offset) {
        (0, _) => "no runs match".to_string(),
        (n, 0) => format!(
            "{n} run{} shown, newest first",
            if n == 1 { "" } else { "s" }
        ),
        (n, o) => format!("runs {} to {} shown, newest first", o + 1, o + n as u64),
    };
    let _ = writeln!(
        h,
        "<header><h1>Runs</h1><p class=\"sub\">{} · {shown}</p></header>",
        esc(database)
    );
    filter_form(&mut h, query);
    compare_form(&mut h, runs);
    run_table(&mut h, runs, query);
    page_close(&mut h);
    h
}

fn filter_form(h: &mut String, q: &RunListQuery) {
    let field = |h: &mut String, name: &str, label: &str, value: Option<&str>, hint: &str| {
        let _ = writeln!(
            h,
            "<label>{label}<input type=\"text\" name=\"{name}\" value=\"{}\" placeholder=\"{}\"></label>",
            esc(value.unwrap_or("")),
            esc(hint)
        );
    };
    h.push_str(
        "<section class=\"card\" id=\"filters\">\n<h2>Filter</h2>\n\
         <form class=\"inline\" method=\"get\" action=\"/\">\n",
    );
    field(h, "model", "model", q.model.as_deref(), "any");
    for t in &q.tags {
        field(h, "tag", "tag", Some(t), "");
    }
    field(h, "tag", "tag", None, "any");
    field(
        h,
        "experiment",
        "experiment",
        q.experiment.as_deref(),
        "any",
    );
    field(h, "since", "since", q.since.as_deref(), "YYYY-MM-DD");
    field(h, "until", "until", q.until.as_deref(), "YYYY-MM-DD");
    let _ = write!(
        h,
        "<label>limit<input type=\"number\" min=\"0\" name=\"limit\" value=\"{}\"></label>\n\
         <button type=\"submit\">Filter</button>\n",
        q.limit
    );
    if q.filtered() || q.offset != 0 || q.limit != RunListQuery::DEFAULT_LIMIT {
        h.push_str("<a href=\"/\">clear</a>\n");
    }
    h.push_str("</form>\n</section>\n");
}

/// A short label for a run in a select: `7 · model · started`.
fn option_label(r: &Run) -> String {
    format!(
        "{} · {} · {}",
        r.run_id,
        r.model.as_deref().unwrap_or("unknown model"),
        r.started_at
    )
}

fn compare_form(h: &mut String, runs: &[Run]) {
    if runs.len() < 2 {
        return;
    }
    h.push_str(
        "<section class=\"card\" id=\"compare-form\">\n<h2>Compare two runs</h2>\n\
         <form class=\"inline\" method=\"get\" action=\"/compare\">\n",
    );
    // A is the older of the two newest runs, B the newest: "what changed since".
    for (name, chosen) in [("a", runs[1].run_id), ("b", runs[0].run_id)] {
        let _ = writeln!(
            h,
            "<label>run {}<select name=\"{name}\" id=\"compare-{name}\">",
            name.to_uppercase()
        );
        for r in runs {
            let _ = writeln!(
                h,
                "<option value=\"{}\"{}>{}</option>",
                r.run_id,
                if r.run_id == chosen { " selected" } else { "" },
                esc(&option_label(r))
            );
        }
        h.push_str("</select></label>\n");
    }
    h.push_str(
        "<button type=\"submit\" id=\"compare-submit\">Compare</button>\n</form>\n</section>\n",
    );
}

fn run_table(h: &mut String, runs: &[Run], q: &RunListQuery) {
    h.push_str(
        "<section class=\"card\" id=\"runs\">\n<table>\n<thead><tr><th>run</th><th>started</th>\
         <th>status</th><th>model</th><th>source</th><th class=\"n\">energy</th>\
         <th class=\"n\">dynamic</th><th class=\"n\">duration</th><th>tags</th><th>prompt</th>\
         <th>compare</th></tr></thead>\n<tbody>\n",
    );
    for (i, r) in runs.iter().enumerate() {
        let status = r.status.as_str();
        let source = match &r.power_source {
            Some(s) if r.estimated => format!("{}<span class=\"est\">EST</span>", esc(s)),
            Some(s) => esc(s),
            None => "<span class=\"unknown\">none</span>".into(),
        };
        let tags: String = r
            .tags
            .iter()
            .map(|t| format!("<span class=\"tag\">{}</span>", esc(t)))
            .collect();
        let prompt: Option<String> = r.prompt.as_ref().map(|p| {
            let short: String = p.chars().take(80).collect();
            if short.len() < p.len() {
                format!("{short}…")
            } else {
                short
            }
        });
        let compare = match runs.get(i + 1) {
            Some(older) => format!(
                "<a class=\"vs\" href=\"/compare?a={}&amp;b={}\">vs run {}</a>",
                older.run_id, r.run_id, older.run_id
            ),
            None => String::new(),
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"nowrap\"><a class=\"run\" href=\"/runs/{id}\">run {id}</a></td><td class=\"nowrap\">{}</td>\
             <td><span class=\"badge {status}\">{status}</span></td><td class=\"wrap\">{}</td>\
             <td>{source}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"wrap\">{tags}</td><td class=\"wrap\">{}</td><td>{compare}</td></tr>",
            esc(&r.started_at),
            or_unknown(r.model.clone()),
            energy(r.total_energy_mj),
            energy(r.dynamic_total_energy_mj),
            duration(r.duration_ms),
            or_unknown(prompt),
            id = r.run_id,
        );
    }
    h.push_str("</tbody>\n</table>\n");
    if runs.is_empty() {
        h.push_str(if q.filtered() || q.offset > 0 {
            "<p class=\"unknown\">No run matches these filters.</p>\n"
        } else {
            "<p class=\"unknown\">This database has no runs yet: record one with \
             <code>tracing-energy profile</code>.</p>\n"
        });
    }
    let newer = (q.offset > 0).then(|| q.href_at(q.offset.saturating_sub(q.limit)));
    let older =
        (q.limit > 0 && runs.len() as u64 >= q.limit).then(|| q.href_at(q.offset + q.limit));
    if newer.is_some() || older.is_some() {
        h.push_str("<p class=\"pager\">");
        if let Some(href) = newer {
            let _ = write!(h, "<a rel=\"prev\" href=\"{}\">← newer</a>", esc(&href));
        }
        if let Some(href) = older {
            let _ = write!(h, "<a rel=\"next\" href=\"{}\">older →</a>", esc(&href));
        }
        h.push_str("</p>\n");
    }
    h.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn run(id: i64) -> Run {
        Run {
            started_at_ms: id * 1000,
            started_at: format!("2026-01-0{id}T00:00:00.000Z"),
            model: Some("<b>model</b>".into()),
            prompt: Some("<script>alert(1)</script>".into()),
            tags: vec!["a&b".into()],
            power_source: Some("estimate".into()),
            estimated: true,
            duration_ms: Some(12.0),
            ..crate::report::compare::tests::run(id)
        }
    }

    #[test]
    fn query_round_trip_and_defaults() {
        let q = RunListQuery::from_pairs([
            ("model", "m 1"),
            ("tag", "x"),
            ("tag", ""),
            ("tag", "y&z"),
            ("since", "2026-01-01"),
            ("until", ""),
            ("limit", "10"),
            ("offset", ""),
        ])
        .unwrap();
        assert_eq!(q.model.as_deref(), Some("m 1"));
        assert_eq!(q.tags, ["x", "y&z"]);
        assert_eq!(q.until, None);
        assert_eq!((q.limit, q.offset), (10, 0));
        let s = q.query_string();
        assert_eq!(s, "model=m+1&since=2026-01-01&tag=x&tag=y%26z&limit=10");
        let back = RunListQuery::from_pairs(form_urlencoded::parse(s.as_bytes())).unwrap();
        assert_eq!(back, q);
        assert_eq!(RunListQuery::default().query_string(), "");
    }

    #[test]
    fn bad_query_values_are_refused_with_the_fix() {
        let e = RunListQuery::from_pairs([("limit", "ten")]).unwrap_err();
        assert!(e.contains("`limit=ten`") && e.contains("Fix:"), "{e}");
        let e = RunListQuery::from_pairs([("offset", "-1")]).unwrap_err();
        assert!(e.contains("offset"), "{e}");
        let e = RunListQuery::from_pairs([("colour", "red")]).unwrap_err();
        assert!(e.contains("`colour`") && e.contains("model, tag"), "{e}");
    }

    #[test]
    fn runs_link_to_reports_and_comparisons_and_escape_text() {
        let runs = [run(3), run(2), run(1)];
        let h = runs_page(&runs, &RunListQuery::default(), "/tmp/<p>.db");
        for id in 1..=3 {
            assert!(h.contains(&format!("href=\"/runs/{id}\"")), "{h}");
        }
        assert!(h.contains("href=\"/compare?a=2&amp;b=3\""));
        assert!(h.contains("href=\"/compare?a=1&amp;b=2\""));
        assert!(!h.contains("/compare?a=0"));
        assert!(h.contains("action=\"/compare\"") && h.contains("<select name=\"a\""));
        assert!(h.contains("<option value=\"2\" selected>"));
        assert!(!h.contains("<script") && !h.contains("<b>model"));
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(h.contains("/tmp/&lt;p&gt;.db"));
        assert!(h.contains("a&amp;b"));
        // Unknown energy reads unknown, never 0; an estimate is labelled.
        assert!(h.contains("<span class=\"unknown\">unknown</span>"));
        assert!(!h.contains("0 mJ"));
        assert!(h.contains("EST"));
        // Fewer runs than the limit: no pager.
        assert!(!h.contains("rel=\"next\""));
    }

    #[test]
    fn pager_keeps_the_filters() {
        let q = RunListQuery {
            tags: vec!["t".into()],
            limit: 2,
            offset: 2,
            ..RunListQuery::default()
        };
        let h = runs_page(&[run(2), run(1)], &q, "p.db");
        assert!(
            h.contains("rel=\"prev\" href=\"/?tag=t&amp;limit=2\""),
            "{h}"
        );
        assert!(h.contains("rel=\"next\" href=\"/?tag=t&amp;limit=2&amp;offset=4\""));
        assert!(h.contains("runs 3 to 4 shown"));
        // The filter form is filled in, with one more empty tag field.
        assert!(h.contains("name=\"tag\" value=\"t\""));
        assert!(h.contains("name=\"tag\" value=\"\""));
    }

    #[test]
    fn an_empty_list_says_so() {
        let h = runs_page(&[], &RunListQuery::default(), "p.db");
        assert!(h.contains("no runs yet"));
        assert!(!h.contains("id=\"compare-form\""));
        let q = RunListQuery {
            model: Some("m".into()),
            ..RunListQuery::default()
        };
        assert!(runs_page(&[], &q, "p.db").contains("No run matches"));
    }
}
