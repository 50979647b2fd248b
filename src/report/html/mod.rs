//! The HTML report: one self-contained page per run.
//!
//! The page is plain HTML with inline CSS and inline SVG: no JavaScript, no fonts, no images,
//! no style sheets or anything else fetched (a Content-Security-Policy of `default-src
//! 'none'` makes browsers refuse any fetch that slipped in). Charts scale with the window
//! (SVG `viewBox`), and every mark carries a `<title>` tooltip with its exact figures.
//!
//! What it shows:
//!
//! - the run's metadata (model, prompt, response, tags, experiment, host, crate version,
//!   status, start and end, power source, sample interval), under a banner when the energy
//!   is estimated and a note when it is unknown (no power source: energies read `unknown`,
//!   never 0);
//! - key figures (total, attributed and unattributed energy, duration, tokens, energy per
//!   generated token, mean power);
//! - (a) the power timeline per measured domain (cpu, gpu, ane, dram) and the total, with
//!   the phases shaded behind it;
//! - (b) the energy of every token row (prefill and decode in their own colours, with the
//!   attribution's uncertainty as whiskers);
//! - (c) a heatmap of the mean energy per token of every layer x component kind, one panel
//!   per phase (model-level components such as `output` and `final_norm` in a `model` row);
//! - (d) a sankey of the run's energy: run → phases → layers (the hottest, the rest grouped)
//!   → component kinds;
//! - (e) the ten hottest (layer, component) pairs;
//! - (f) a flame graph of the energy per span path (module `flame`), or a note saying why
//!   there is none;
//! - a table of the phases.
//!
//! One file per part of the page, each a set of `Page` methods writing one card:
//! `metadata` (header, banners, key figures, metadata table), `power` (a), `tokens` (b),
//! `heatmap` (c), `sankey` (d: the flows computed, then drawn), `hottest` (e),
//! `flame_graph` (f) and `phases` (the table). This file holds the entry points
//! ([`render`], [`render_run`]), the page skeleton and its CSS, and the helpers the charts
//! share (card and SVG openings, axes, sums of known energies).

use std::fmt::Write as _;

use super::format::{escape_html as esc, num, px, ticks_within};
use super::run_data::{ComponentGroup, Detail, LayerGroup, RunData};
use crate::store::{
    PowerRow, Row, Run, RunId, RunSummary, SectionRecord, SpanRollup, Store, TokenRecord,
};
use crate::Result;

/// The width of every chart's `viewBox`.
const W: f64 = 960.0;

mod flame_graph;
mod heatmap;
mod hottest;
mod metadata;
mod phases;
mod power;
mod sankey;
mod tokens;

/// Renders the run as one self-contained HTML page (see the [module docs](self)):
/// [`RunData::load`] at [`Detail::Report`], then [`render_run`].
///
/// Fails with [`Error::UnknownRun`](crate::Error::UnknownRun) when the run is not in the
/// store, and with the store's errors when it cannot be read.
pub fn render(store: &Store, run: RunId) -> Result<String> {
    Ok(render_run(&RunData::load(store, run, Detail::Report)?))
}

/// The HTML page of a run already read at [`Detail::Report`] (the layer, component and
/// operation rows are not used; the span roll-up and grouped sums it charts are read at
/// that level only, so a run read at an export level gives a page without them). Time 0 of
/// its charts is [`RunData::origin_ns`].
pub fn render_run(data: &RunData) -> String {
    let t0 = data.origin_ns;
    let t_end = data
        .power
        .iter()
        .map(|p| p.end_ns)
        .chain(data.sections.iter().map(|s| s.record.measured.end_ns))
        .chain(data.tokens.iter().map(|t| t.record.measured.end_ns))
        .max()
        .unwrap_or(t0)
        .max(t0);

    let page = Page {
        run: data.run(),
        summary: &data.summary,
        sections: &data.sections,
        tokens: &data.tokens,
        power: &data.power,
        components: &data.component_groups,
        layers: &data.layer_groups,
        rollup: &data.span_rollup,
        t0,
        t_end,
    };
    page.render()
}

struct Page<'a> {
    run: &'a Run,
    summary: &'a RunSummary,
    sections: &'a [Row<SectionRecord>],
    tokens: &'a [Row<TokenRecord>],
    power: &'a [PowerRow],
    components: &'a [ComponentGroup],
    layers: &'a [LayerGroup],
    rollup: &'a [SpanRollup],
    /// The timeline's origin (ns): [`RunData::origin_ns`].
    t0: u64,
    t_end: u64,
}

pub(super) const CSS: &str = r#"
:root { color-scheme: light; --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --bg: #f5f6f8; --card: #ffffff; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", "Liberation Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 28px 20px 40px; }
header h1 { font-size: 27px; line-height: 1.2; margin: 0 0 6px; }
header .sub { color: var(--muted); margin: 0; }
h2 { font-size: 19px; margin: 0 0 2px; }
.desc { color: var(--muted); margin: 0 0 12px; font-size: 14px; max-width: 70em; }
section.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 18px 22px 16px; margin: 18px 0; box-shadow: 0 1px 2px rgba(16, 24, 40, .04); }
.banner { border-radius: 10px; padding: 14px 18px; margin: 18px 0; font-size: 15px; }
.banner strong.head { display: block; font-size: 17px; letter-spacing: .06em; margin-bottom: 2px; }
.banner.estimated { background: #fff4d1; border: 2px solid #d99a00; color: #513b00; }
.banner.unknown { background: #eef1ff; border: 2px solid #5b6fd6; color: #222c6b; }
.banner.status { background: #fdecec; border: 2px solid #cf3f3f; color: #621010; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(175px, 1fr)); gap: 12px; margin: 18px 0; }
.kpi { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.kpi .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .05em; }
.kpi .value { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums; white-space: nowrap; }
.kpi .note { color: var(--muted); font-size: 12.5px; }
.est { display: inline-block; font-size: 11px; font-weight: 700; color: #6b4d00; background: #ffe8a3;
  border-radius: 4px; padding: 0 5px; margin-left: 4px; vertical-align: middle; letter-spacing: .04em; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { font-size: 13px; color: var(--muted); font-weight: 600; border-bottom: 2px solid var(--line); }
table.meta th { width: 190px; color: var(--muted); font-weight: 500; }
td.n, th.n { text-align: right; white-space: nowrap; }
pre.text { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; max-height: 18em; overflow: auto;
  font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace;
  background: #f8fafc; border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
.tag { display: inline-block; background: #eef2f7; border: 1px solid #d9e0ea; border-radius: 999px;
  padding: 0 9px; margin: 0 4px 3px 0; font-size: 13px; }
.unknown { color: var(--muted); font-style: italic; }
.badge { display: inline-block; border-radius: 999px; padding: 1px 10px; font-size: 13px; font-weight: 600; }
.badge.complete { background: #e3f5e8; color: #1d6b34; }
.badge.running, .badge.incomplete { background: #fff1d6; color: #7a4b00; }
.badge.failed { background: #fde4e4; color: #8a1c1c; }
figure { margin: 0; }
svg.chart { width: 100%; height: auto; display: block; overflow: visible; }
svg.chart text { font-family: inherit; font-size: 12px; fill: #374151; }
svg.chart .axis-title { font-size: 12.5px; font-weight: 600; fill: #4b5563; }
svg.chart .tick { font-size: 11.5px; fill: #6b7280; font-variant-numeric: tabular-nums; }
svg.chart .grid { stroke: #e8eaee; stroke-width: 1; }
svg.chart .axis { stroke: #9ca3af; stroke-width: 1; }
svg.chart .label { font-size: 12px; fill: #1f2937; }
svg.chart .halo { paint-order: stroke; stroke: #ffffff; stroke-width: 3.5px; stroke-linejoin: round; }
svg.chart .small { font-size: 10.5px; }
svg.chart .empty { font-size: 15px; fill: #6b7280; font-style: italic; }
svg.chart .hover { fill: transparent; }
svg.chart .hover:hover { fill: rgba(17, 24, 39, .07); }
svg.chart .mark:hover, svg.chart .frame:hover { opacity: .78; }
svg.chart .link { fill-opacity: .32; }
svg.chart .link:hover { fill-opacity: .55; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 18px; font-size: 13px; color: #374151; margin: 10px 0 0; padding: 0; list-style: none; }
.legend li { white-space: nowrap; }
.legend .sw { display: inline-block; width: 14px; height: 11px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.legend .ln { display: inline-block; width: 22px; height: 0; border-top-width: 3px; border-top-style: solid; margin-right: 6px; vertical-align: 3px; }
.legend .ln.dashed { border-top-style: dashed; }
.legend .shade { opacity: .45; }
footer { color: var(--muted); font-size: 13px; text-align: center; margin-top: 26px; }
@media print { body { background: #fff; } section.card { box-shadow: none; break-inside: avoid; } }
"#;

impl Page<'_> {
    fn energy_known(&self) -> bool {
        self.run.total_energy_mj.is_some()
            || self
                .tokens
                .iter()
                .any(|t| t.record.measured.energy_mj.is_some())
    }

    /// Milliseconds since the timeline's origin.
    fn rel_ms(&self, ns: u64) -> f64 {
        ns.saturating_sub(self.t0) as f64 / 1e6
    }

    /// Token phases in order of first appearance.
    fn token_phases(&self) -> Vec<String> {
        let mut phases: Vec<String> = Vec::new();
        for t in self.tokens {
            if !phases.contains(&t.record.phase) {
                phases.push(t.record.phase.clone());
            }
        }
        for g in self.components {
            if !phases.contains(&g.phase) {
                phases.push(g.phase.clone());
            }
        }
        phases
    }

    fn render(&self) -> String {
        let run = self.run;
        let mut h = String::with_capacity(256 * 1024);
        let model = run.model.as_deref().unwrap_or("unknown model");
        w!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta name=\"color-scheme\" content=\"light\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">\n\
             <meta name=\"generator\" content=\"tracing-energy {}\">\n\
             <title>Energy profile: run {} ({})</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
            env!("CARGO_PKG_VERSION"),
            run.run_id,
            esc(model)
        );
        self.header(&mut h);
        self.banners(&mut h);
        self.kpis(&mut h);
        self.metadata(&mut h);
        self.power_chart(&mut h);
        self.token_chart(&mut h);
        self.heatmap(&mut h);
        self.sankey(&mut h);
        self.hottest_chart(&mut h);
        self.flame_graph(&mut h);
        self.phase_table(&mut h);
        w!(
            h,
            "<footer>Written by tracing-energy {} from {}. This page is self-contained: \
             no scripts, no network.</footer>\n</main>\n</body>\n</html>\n",
            env!("CARGO_PKG_VERSION"),
            esc(&format!("run {}", run.run_id))
        );
        h
    }
}

// -------------------------------------------------------------------- helpers

fn card_open(h: &mut String, id: &str, title: &str, desc: &str) {
    w!(
        h,
        "<section class=\"card\" id=\"{id}\">\n<figure>\n<figcaption><h2>{}</h2>\n<p class=\"desc\">{}</p></figcaption>\n",
        esc(title),
        esc(desc)
    );
}

fn svg_open(h: &mut String, height: f64, label: &str) {
    w!(
        h,
        "<svg class=\"chart\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\" preserveAspectRatio=\"xMidYMin meet\">\n",
        px(W),
        px(height),
        esc(label)
    );
}

fn empty_note(h: &mut String, x: f64, y: f64, text: &str) {
    w!(
        h,
        "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
        px(x),
        px(y),
        esc(text)
    );
}

/// The time axis at the bottom of a plot, in ms from 0 to `span_ms`.
fn x_axis(h: &mut String, x0: f64, x1: f64, y: f64, span_ms: f64, title: &str) {
    w!(
        h,
        "<line class=\"axis\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>\n",
        px(x0),
        px(x1),
        px(y),
        px(y)
    );
    for t in ticks_within(span_ms, 8) {
        let x = x0 + t / span_ms * (x1 - x0);
        w!(
            h,
            "<line class=\"axis\" x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\"/><text class=\"tick\" x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            px(y), px(y + 4.0), px(y + 17.0), num(t), x = px(x)
        );
    }
    w!(
        h,
        "<text class=\"axis-title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
        px((x0 + x1) / 2.0),
        px(y + 38.0),
        esc(title)
    );
}

fn y_axis_title(h: &mut String, y: f64, title: &str) {
    w!(
        h,
        "<text class=\"axis-title\" transform=\"translate(16,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
        px(y),
        esc(title)
    );
}

/// The sum of the known values, `None` when none is known.
fn sum_known(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values
        .flatten()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
}

/// Mean power (mW) of `energy_mj` over `duration_ms`.
fn mean_mw(energy_mj: Option<f64>, duration_ms: f64) -> Option<f64> {
    energy_mj
        .filter(|_| duration_ms > 0.0)
        .map(|e| e / duration_ms * 1000.0)
}

/// `unknown` in the muted style, anything else as it is.
fn unknown_span(text: String) -> String {
    if text == "unknown" {
        "<span class=\"unknown\">unknown</span>".into()
    } else {
        esc(&text)
    }
}
