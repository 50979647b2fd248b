//! The pages of a database browsed with `tracing-energy serve`, as pure functions: the
//! runs list ([`runs_page`]), two runs compared ([`compare_page`]) and a page that says what
//! went wrong ([`message_page`]). Each run's own page is the report ([`render_run`]).
//!
//! Like the report, every page is self-contained HTML with inline CSS: no JavaScript, no
//! fonts, images or style sheets fetched (a Content-Security-Policy, [`PAGE_CSP`], forbids
//! them; forms may only submit to the same server), and every text from the database is
//! escaped with [`escape_html`](super::escape_html). Unknown figures read `unknown`, never 0.
//! Links are absolute paths on the serving address: `/` (the runs list, with the filters
//! of `tracing-energy runs` as its query string, [`RunListQuery`]), `/runs/ID` (a run's
//! report) and `/compare?a=A&b=B`.
//!
//! [`render_run`]: super::render_run

use std::fmt::Write as _;

use super::format::escape_html as esc;

mod compare;
mod runs;

pub use compare::compare_page;
pub use runs::{runs_page, RunListQuery};

/// The Content-Security-Policy of these pages: nothing loaded but inline styles and
/// `data:` images, forms submitted only to the page's own server.
pub const PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'self'";

/// The navigation at the top of every page: back to the runs list, or to compare.
const NAV: &str = "<nav class=\"top\"><a href=\"/\">All runs</a><a href=\"/#compare-form\">Compare two runs</a></nav>\n";

/// The navigation's CSS.
const NAV_CSS: &str =
    "\nnav.top { font-size: 14px; margin: 0 0 14px; }\nnav.top a { margin-right: 14px; }\n";

/// The CSS these pages add to the report's (and the navigation's).
const EXTRA_CSS: &str = r#"
a { color: #1d4ed8; }
form.inline { display: flex; flex-wrap: wrap; gap: 10px 16px; align-items: end; }
form.inline label { display: flex; flex-direction: column; font-size: 13px; color: var(--muted); gap: 3px; }
form.inline input, form.inline select { font: inherit; padding: 4px 6px; border: 1px solid #cbd2dc; border-radius: 6px; background: #fff; min-width: 9em; }
form.inline button { font: inherit; padding: 5px 14px; border-radius: 6px; border: 1px solid #1d4ed8; background: #1d4ed8; color: #fff; cursor: pointer; }
td.wrap { max-width: 28em; overflow-wrap: break-word; }
td.nowrap, .tag { white-space: nowrap; }
.pager { margin-top: 10px; font-size: 14px; }
.pager a { margin-right: 16px; }
.delta-up { color: #9f1d1d; }
.delta-down { color: #176b32; }
"#;

/// The opening of a page: doctype, head (title, CSP, CSS), the navigation and `<main>`.
fn page_open(h: &mut String, title: &str) {
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{PAGE_CSP}\">\n\
         <meta name=\"generator\" content=\"tracing-energy {}\">\n\
         <title>{}</title>\n<style>{}{NAV_CSS}{EXTRA_CSS}</style>\n</head>\n<body>\n<main>\n{NAV}",
        env!("CARGO_PKG_VERSION"),
        esc(title),
        super::html::CSS
    );
}

/// A run's report ([`render_run`](super::render_run)'s page) as a page of the app: the
/// same page with the navigation (all runs, compare) at its top.
pub fn report_page(report: &str) -> String {
    report
        .replacen("</head>", &format!("<style>{NAV_CSS}</style>\n</head>"), 1)
        .replacen("<main>\n", &format!("<main>\n{NAV}"), 1)
}

/// The end of a page.
fn page_close(h: &mut String) {
    let _ = write!(
        h,
        "<footer>tracing-energy {}: read-only view of the database. No scripts, no \
         requests beyond this server.</footer>\n</main>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
}

/// A page that says what went wrong (`title`, e.g. "Run 7 not found") and what to do
/// (`fix`), with a link back to the runs list.
pub fn message_page(title: &str, problem: &str, fix: &str) -> String {
    let mut h = String::with_capacity(16 * 1024);
    page_open(&mut h, title);
    let _ = write!(
        h,
        "<header><h1>{}</h1></header>\n<section class=\"card\" id=\"message\">\n\
         <p>{}</p>\n<p><strong>Fix:</strong> {}</p>\n<p><a href=\"/\">Back to all runs</a></p>\n</section>\n",
        esc(title),
        esc(problem),
        esc(fix)
    );
    page_close(&mut h);
    h
}

/// `text` in the muted `unknown` style when it is `None`, else escaped.
fn or_unknown(text: Option<String>) -> String {
    match text {
        Some(t) => esc(&t),
        None => "<span class=\"unknown\">unknown</span>".into(),
    }
}

/// An energy in mJ with its unit, or `unknown`.
fn energy(v: Option<f64>) -> String {
    or_unknown(
        v.filter(|v| v.is_finite())
            .map(|v| super::format::mj(Some(v))),
    )
}

/// A duration in ms with its unit, or `unknown`.
fn duration(v: Option<f64>) -> String {
    or_unknown(
        v.filter(|v| v.is_finite())
            .map(|v| super::format::with_unit(Some(v), "ms")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_page_escapes_and_links_home() {
        let h = message_page("Run <7> not found", "no run \"7\"", "list the runs & retry");
        assert!(h.contains("<h1>Run &lt;7&gt; not found</h1>"), "{h}");
        assert!(h.contains("no run &quot;7&quot;"));
        assert!(h.contains("list the runs &amp; retry"));
        assert!(h.contains("href=\"/\""));
        assert!(h.contains(PAGE_CSP));
        assert!(!h.contains("<script"));
    }

    #[test]
    fn a_report_page_gets_the_navigation_once() {
        let report = "<html><head><title>r</title></head>\n<body>\n<main>\n<h1>x</h1><main>\n</main></body></html>";
        let page = report_page(report);
        assert_eq!(page.matches(NAV).count(), 1, "{page}");
        assert!(page.contains(&format!("<main>\n{NAV}<h1>x</h1>")), "{page}");
        assert!(
            page.contains(&format!("<style>{NAV_CSS}</style>\n</head>")),
            "{page}"
        );
    }

    #[test]
    fn unknown_figures_are_not_zero() {
        assert!(energy(None).contains("unknown"));
        assert!(energy(Some(f64::NAN)).contains("unknown"));
        assert_eq!(energy(Some(1234.0)), "1,234 mJ");
        assert!(duration(None).contains("unknown"));
        assert_eq!(duration(Some(2.5)), "2.50 ms");
    }
}
