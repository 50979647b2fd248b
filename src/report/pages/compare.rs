//! Two runs compared: their metadata side by side, then time and energy per phase, layer
//! and component kind with the deltas ([`Comparison`]).

use std::fmt::Write as _;

use super::{duration, energy, or_unknown, page_close, page_open};
use crate::report::compare::{CompareRow, Comparison};
use crate::report::format::{escape_html as esc, num};
use crate::store::Run;

/// The page of `cmp`: run A against run B, their metadata side by side, then time and energy
/// per phase, layer and component kind with the deltas (B - A). A figure one run
/// lacks reads `unknown`, and so does its delta.
pub fn compare_page(cmp: &Comparison) -> String {
    let (a, b) = (&cmp.a, &cmp.b);
    let mut h = String::with_capacity(32 * 1024);
    page_open(&mut h, &format!("Run {} vs run {}", a.run_id, b.run_id));
    let _ = writeln!(
        h,
        "<header><h1>Run {} vs run {}</h1><p class=\"sub\">A = <a id=\"report-a\" href=\"/runs/{}\">run {}</a>, \
         B = <a id=\"report-b\" href=\"/runs/{}\">run {}</a> · <a id=\"swap\" href=\"/compare?a={}&amp;b={}\">swap A and B</a>. \
         Deltas are B − A.</p></header>",
        a.run_id, b.run_id, a.run_id, a.run_id, b.run_id, b.run_id, b.run_id, a.run_id
    );
    let estimated: Vec<String> = [a, b]
        .iter()
        .filter(|r| r.estimated)
        .map(|r| format!("run {}", r.run_id))
        .collect();
    if !estimated.is_empty() {
        let _ = writeln!(
            h,
            "<div class=\"banner estimated\"><strong class=\"head\">ESTIMATED ENERGY</strong>\
             The energy of {} is estimated from CPU time, not measured: compare it with care.</div>",
            estimated.join(" and ")
        );
    }
    runs_table(&mut h, a, b);
    for (id, title, desc, rows) in [
        (
            "phases",
            "Phases",
            "Total time and energy of each phase.",
            &cmp.phases,
        ),
        (
            "layers",
            "Layers",
            "Mean time and energy per token row of each layer.",
            &cmp.layers,
        ),
        (
            "components",
            "Component kinds",
            "Mean time and energy per row of each component kind.",
            &cmp.components,
        ),
    ] {
        delta_table(&mut h, id, title, desc, rows);
    }
    page_close(&mut h);
    h
}

fn runs_table(h: &mut String, a: &Run, b: &Run) {
    let text = |r: &Run, f: fn(&Run) -> Option<String>| or_unknown(f(r));
    let rows: [(&str, String, String); 9] = [
        (
            "model",
            text(a, |r| r.model.clone()),
            text(b, |r| r.model.clone()),
        ),
        ("started", esc(&a.started_at), esc(&b.started_at)),
        ("status", esc(a.status.as_str()), esc(b.status.as_str())),
        ("power source", text(a, source_label), text(b, source_label)),
        (
            "host",
            text(a, |r| r.host.name.clone()),
            text(b, |r| r.host.name.clone()),
        ),
        ("duration", duration(a.duration_ms), duration(b.duration_ms)),
        (
            "energy",
            energy(a.total_energy_mj),
            energy(b.total_energy_mj),
        ),
        (
            "dynamic energy",
            energy(a.dynamic_total_energy_mj),
            energy(b.dynamic_total_energy_mj),
        ),
        (
            "prompt",
            text(a, |r| r.prompt.clone()),
            text(b, |r| r.prompt.clone()),
        ),
    ];
    h.push_str(
        "<section class=\"card\" id=\"runs\">\n<h2>The two runs</h2>\n<table class=\"meta\">\n\
         <thead><tr><th></th><th>A</th><th>B</th></tr></thead>\n<tbody>\n",
    );
    for (what, x, y) in rows {
        let _ = writeln!(
            h,
            "<tr><th>{what}</th><td class=\"wrap\">{x}</td><td class=\"wrap\">{y}</td></tr>"
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

/// `estimate (estimated)` or the source's name; `None` without a source.
fn source_label(r: &Run) -> Option<String> {
    r.power_source.as_ref().map(|s| {
        if r.estimated {
            format!("{s} (estimated)")
        } else {
            s.clone()
        }
    })
}

/// A signed figure, `unknown` when it is.
fn signed(v: Option<f64>, unit: &str) -> String {
    match v.filter(|v| v.is_finite()) {
        Some(v) => {
            let class = if v > 0.0 {
                "delta-up"
            } else if v < 0.0 {
                "delta-down"
            } else {
                ""
            };
            let sign = if v > 0.0 { "+" } else { "" };
            format!("<span class=\"{class}\">{sign}{}{unit}</span>", num(v))
        }
        None => "<span class=\"unknown\">unknown</span>".into(),
    }
}

fn delta_table(h: &mut String, id: &str, title: &str, desc: &str, rows: &[CompareRow]) {
    let _ = writeln!(
        h,
        "<section class=\"card\" id=\"{id}\">\n<h2>{}</h2>\n<p class=\"desc\">{}</p>",
        esc(title),
        esc(desc)
    );
    if rows.is_empty() {
        h.push_str("<p class=\"unknown\">Neither run has any.</p>\n</section>\n");
        return;
    }
    h.push_str(
        "<table>\n<thead><tr><th></th><th class=\"n\">A time</th><th class=\"n\">B time</th>\
         <th class=\"n\">Δ time</th><th class=\"n\">A energy</th><th class=\"n\">B energy</th>\
         <th class=\"n\">Δ energy</th><th class=\"n\">Δ %</th></tr></thead>\n<tbody>\n",
    );
    for r in rows {
        let _ = writeln!(
            h,
            "<tr><th>{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&r.what),
            duration(r.a.duration_ms),
            duration(r.b.duration_ms),
            signed(r.delta_duration_ms, " ms"),
            energy(r.a.energy_mj),
            energy(r.b.energy_mj),
            signed(r.delta_energy_mj, " mJ"),
            signed(r.delta_energy_pct, " %"),
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::compare::Side;

    fn run(id: i64, estimated: bool) -> Run {
        Run {
            started_at: "2026-01-01T00:00:00.000Z".into(),
            model: Some(format!("<i>m{id}</i>")),
            power_source: Some("rapl".into()),
            estimated,
            total_energy_mj: Some(1500.0),
            ..crate::report::compare::tests::run(id)
        }
    }

    fn row(what: &str, a: Option<f64>, b: Option<f64>) -> CompareRow {
        let d = a.zip(b).map(|(a, b)| b - a);
        CompareRow {
            what: what.into(),
            a: Side {
                duration_ms: Some(1.0),
                energy_mj: a,
            },
            b: Side {
                duration_ms: Some(2.0),
                energy_mj: b,
            },
            delta_duration_ms: Some(1.0),
            delta_energy_mj: d,
            delta_energy_pct: a.zip(d).map(|(a, d)| d / a * 100.0),
        }
    }

    fn comparison(estimated: bool) -> Comparison {
        Comparison {
            a: run(4, false),
            b: run(9, estimated),
            phases: vec![row("<decode>", Some(10.0), Some(5.0))],
            layers: vec![row("layer 0", None, Some(3.0))],
            components: Vec::new(),
        }
    }

    #[test]
    fn links_both_reports_and_shows_signed_deltas() {
        let h = compare_page(&comparison(false));
        assert!(
            h.contains("href=\"/runs/4\"") && h.contains("href=\"/runs/9\""),
            "{h}"
        );
        assert!(h.contains("href=\"/compare?a=9&amp;b=4\""));
        assert!(h.contains("&lt;decode&gt;") && !h.contains("<decode>"));
        assert!(h.contains("&lt;i&gt;m4&lt;/i&gt;"));
        assert!(
            h.contains("<span class=\"delta-down\">-5.00 mJ</span>"),
            "{h}"
        );
        assert!(h.contains("<span class=\"delta-down\">-50.0 %</span>"));
        assert!(h.contains("<span class=\"delta-up\">+1.00 ms</span>"));
        assert!(h.contains("1,500 mJ"));
        assert!(!h.contains("ESTIMATED ENERGY"));
        assert!(h.contains("Neither run has any."));
    }

    #[test]
    fn a_missing_side_is_unknown_and_estimates_are_announced() {
        let h = compare_page(&comparison(true));
        let layers = &h[h.find("id=\"layers\"").unwrap()..];
        let layers = &layers[..layers.find("</section>").unwrap()];
        // A's energy, the delta and the percentage: unknown, never 0.
        assert_eq!(layers.matches(">unknown<").count(), 3, "{layers}");
        assert!(!layers.contains(">0 mJ"));
        assert!(h.contains("ESTIMATED ENERGY") && h.contains("run 9 is estimated"));
        assert!(h.contains("rapl (estimated)"));
    }
}
