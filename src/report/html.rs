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

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::data::{run_or_error, ComponentGroup, LayerGroup, Reader};
use super::format::{
    component_colour, domain_colour, escape_html as esc, heat_colour, heat_text_light, mj, num,
    pct, phase_colour, px, text_width, ticks_from_zero, ticks_within, with_unit,
};
use crate::store::{
    PipelineSection, PowerRow, Row, Run, RunId, RunSummary, SpanRollup, Store, TokenRecord,
};
use crate::Result;

/// The width of every chart's `viewBox`.
const W: f64 = 960.0;

/// How many layers the sankey shows on their own; the others are grouped.
const SANKEY_TOP_LAYERS: usize = 8;

/// Renders the run as one self-contained HTML page (see the [module docs](self)).
///
/// Fails with [`Error::UnknownRun`](crate::Error::UnknownRun) when the run is not in the
/// store, and with the store's errors when it cannot be read.
pub fn render(store: &Store, run: RunId) -> Result<String> {
    let run_row = run_or_error(store, run)?;
    let summary = store
        .get_run_summary(run)?
        .ok_or_else(|| crate::Error::UnknownRun {
            path: store.path().to_path_buf(),
            run: run.to_string(),
        })?;
    let reader = Reader::open(store)?;
    let sections = store.get_pipeline_sections(run)?;
    let tokens = store.get_tokens(run)?;
    let power = store.get_power_timeline(run)?;
    let components = reader.component_groups(run)?;
    let layers = reader.layer_groups(run)?;
    let rollup = store.get_span_rollup(run)?;

    let starts = power
        .iter()
        .map(|p| p.start_ns)
        .chain(sections.iter().map(|s| s.record.measured.start_ns))
        .chain(tokens.iter().map(|t| t.record.measured.start_ns));
    let ends = power
        .iter()
        .map(|p| p.end_ns)
        .chain(sections.iter().map(|s| s.record.measured.end_ns))
        .chain(tokens.iter().map(|t| t.record.measured.end_ns));
    let t0 = starts.min().unwrap_or(0);
    let t_end = ends.max().unwrap_or(t0).max(t0);

    let page = Page {
        run: &run_row,
        summary: &summary,
        sections: &sections,
        tokens: &tokens,
        power: &power,
        components: &components,
        layers: &layers,
        rollup: &rollup,
        t0,
        t_end,
    };
    Ok(page.render())
}

struct Page<'a> {
    run: &'a Run,
    summary: &'a RunSummary,
    sections: &'a [Row<PipelineSection>],
    tokens: &'a [Row<TokenRecord>],
    power: &'a [PowerRow],
    components: &'a [ComponentGroup],
    layers: &'a [LayerGroup],
    rollup: &'a [SpanRollup],
    /// The timeline's origin (ns): the first sample's or section's start.
    t0: u64,
    t_end: u64,
}

const CSS: &str = r#"
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

    fn header(&self, h: &mut String) {
        let run = self.run;
        let status = run.status.as_str();
        w!(
            h,
            "<header>\n<h1>Energy profile · run {} · {}</h1>\n<p class=\"sub\">Started {} · \
             <span class=\"badge {status}\">{status}</span>",
            run.run_id,
            esc(run.model.as_deref().unwrap_or("unknown model")),
            esc(&run.started_at),
        );
        if let Some(src) = &run.power_source {
            w!(h, " · power source <b>{}</b>", esc(src));
            if run.estimated {
                h.push_str(" <span class=\"est\">ESTIMATED</span>");
            }
        }
        h.push_str("</p>\n</header>\n");
    }

    fn banners(&self, h: &mut String) {
        let run = self.run;
        if run.estimated {
            w!(
                h,
                "<div class=\"banner estimated\" role=\"note\" id=\"estimated-banner\">\
                 <strong class=\"head\">⚠ ESTIMATED ENERGY: NOT MEASURED</strong>\
                 Every energy and power figure on this page was <b>estimated</b> by the power \
                 source <b>{}</b>, not read from a power sensor. The CPU-time estimate follows \
                 CPU time: comparisons between sections of this run are meaningful, absolute \
                 millijoules can be off by a large factor.</div>\n",
                esc(run.power_source.as_deref().unwrap_or("unknown"))
            );
        }
        if !self.energy_known() {
            h.push_str(
                "<div class=\"banner unknown\" role=\"note\" id=\"unknown-banner\">\
                 <strong class=\"head\">ENERGY UNKNOWN</strong>",
            );
            match &run.power_source {
                None => h.push_str("This run was recorded without a power source, "),
                Some(s) => w!(
                    h,
                    "The power source <b>{}</b> delivered no usable samples for this run, ",
                    esc(s)
                ),
            }
            h.push_str(
                "so no energy is known: energies read <i>unknown</i> (never 0). Times and \
                 durations are exact.</div>\n",
            );
        }
        if let (Some(note), true) = (run.coverage_note(), self.energy_known()) {
            w!(
                h,
                "<div class=\"banner unknown\" role=\"note\" id=\"coverage-banner\">\
                 <strong class=\"head\">PARTLY MEASURED</strong>{}: the rest of the run \
                 is unmeasured, so its energy is missing from the totals, and every share on \
                 this page is a share of the measured part.</div>\n",
                esc(&note)
            );
        }
        if !run.warnings.is_empty() {
            h.push_str(
                "<div class=\"banner unknown\" role=\"note\" id=\"warnings-banner\">\
                 <strong class=\"head\">MEASUREMENT WARNINGS</strong><ul>",
            );
            for warning in &run.warnings {
                w!(h, "<li>{}</li>", esc(warning));
            }
            h.push_str("</ul></div>\n");
        }
        if run.status != crate::store::RunStatus::Complete {
            w!(
                h,
                "<div class=\"banner status\" role=\"note\"><strong class=\"head\">RUN {}</strong>{}</div>\n",
                esc(&run.status.as_str().to_uppercase()),
                match (&run.status, &run.error) {
                    (_, Some(e)) => format!("The run ended with an error: {}", esc(e)),
                    (crate::store::RunStatus::Running, None) =>
                        "The run is still being recorded; the figures are partial.".to_string(),
                    _ => "The recording process ended before finishing: the rows it committed \
                          are shown, energies may be missing."
                        .to_string(),
                }
            );
        }
    }

    fn kpis(&self, h: &mut String) {
        let run = self.run;
        let est = if run.estimated {
            " <span class=\"est\">EST.</span>"
        } else {
            ""
        };
        let total = run.total_energy_mj;
        let duration_ms = self.rel_ms(self.t_end);
        let prefill = self.tokens.iter().find(|t| t.record.phase == "prefill");
        let decode: Vec<&Row<TokenRecord>> = self
            .tokens
            .iter()
            .filter(|t| t.record.phase == "decode")
            .collect();
        let decode_energy: Option<f64> =
            sum_known(decode.iter().map(|t| t.record.measured.energy_mj));
        let decode_ms: f64 = decode.iter().map(|t| t.duration_ms).sum();
        h.push_str("<div class=\"kpis\">\n");
        let mut card = |label: &str, value: String, note: String| {
            w!(
                h,
                "<div class=\"kpi\"><div class=\"label\">{label}</div><div class=\"value\">{value}</div>\
                 <div class=\"note\">{note}</div></div>\n"
            );
        };
        card(
            &format!("total energy{est}"),
            unknown_span(mj(total)),
            match total {
                Some(_) => "measured over the run's window".into(),
                None => "no power source".into(),
            },
        );
        card(
            "attributed to sections",
            unknown_span(mj(run.attributed_energy_mj)),
            match (run.attributed_energy_mj, total) {
                (Some(a), Some(t)) if t > 0.0 => format!("{} of the run", pct(a / t)),
                _ => String::new(),
            },
        );
        card(
            "unattributed",
            unknown_span(mj(run.unattributed_energy_mj)),
            "no section open (loading, idle)".into(),
        );
        card(
            "mean power",
            unknown_span(with_unit(
                total
                    .filter(|_| duration_ms > 0.0)
                    .map(|t| t / duration_ms * 1000.0),
                "mW",
            )),
            format!("over {} ms", num(duration_ms)),
        );
        card(
            "tokens",
            format!(
                "{} + {}",
                prefill.map_or(0, |p| p.record.n_tokens as u64),
                decode.len()
            ),
            "prompt tokens + decode steps".into(),
        );
        card(
            "energy per generated token",
            unknown_span(mj(decode_energy.map(|e| e / decode.len().max(1) as f64))),
            if decode.is_empty() {
                "no decode step".into()
            } else {
                format!(
                    "{} ms per token ({} tokens/s)",
                    num(decode_ms / decode.len() as f64),
                    num(decode.len() as f64 / (decode_ms / 1000.0).max(1e-9))
                )
            },
        );
        card(
            "prefill energy per prompt token",
            unknown_span(mj(prefill.and_then(|p| {
                p.record
                    .measured
                    .energy_mj
                    .map(|e| e / p.record.n_tokens.max(1) as f64)
            }))),
            match prefill {
                Some(p) => format!(
                    "{} prompt tokens in {} ms",
                    p.record.n_tokens,
                    num(p.duration_ms)
                ),
                None => "no prefill".into(),
            },
        );
        card(
            "power samples",
            self.summary.power_samples.to_string(),
            match run.sample_interval_ms {
                Some(i) => format!("every {} ms requested", num(i)),
                None => String::new(),
            },
        );
        h.push_str("</div>\n");
    }

    fn metadata(&self, h: &mut String) {
        let run = self.run;
        h.push_str(
            "<section class=\"card\" id=\"metadata\">\n<h2>Run</h2>\n\
             <p class=\"desc\">What was profiled, where and how.</p>\n<table class=\"meta\">\n",
        );
        let opt = |v: Option<&str>| match v {
            Some(s) if !s.is_empty() => esc(s),
            _ => "<span class=\"unknown\">none</span>".into(),
        };
        let pre = |v: Option<&str>| match v {
            Some(s) => format!("<pre class=\"text\">{}</pre>", esc(s)),
            None => "<span class=\"unknown\">none</span>".into(),
        };
        let mut row =
            |k: &str, v: String| w!(h, "<tr><th scope=\"row\">{k}</th><td>{v}</td></tr>\n");
        row("model", opt(run.model.as_deref()));
        row("prompt", pre(run.prompt.as_deref()));
        row("response", pre(run.response.as_deref()));
        row(
            "tags",
            if run.tags.is_empty() {
                "<span class=\"unknown\">none</span>".into()
            } else {
                run.tags
                    .iter()
                    .map(|t| format!("<span class=\"tag\">{}</span>", esc(t)))
                    .collect::<Vec<_>>()
                    .join("")
            },
        );
        row("experiment", opt(run.experiment.as_deref()));
        let host = [&run.host.name, &run.host.os, &run.host.cpu]
            .iter()
            .filter_map(|v| v.as_deref())
            .map(esc)
            .collect::<Vec<_>>()
            .join(" · ");
        row(
            "host",
            if host.is_empty() {
                "<span class=\"unknown\">unknown</span>".into()
            } else {
                host
            },
        );
        row("tracing-energy version", esc(&run.crate_version));
        let mut status = format!(
            "<span class=\"badge {0}\">{0}</span>",
            esc(run.status.as_str())
        );
        if let Some(e) = &run.error {
            w!(status, " {}", esc(e));
        }
        if run.dropped_records > 0 {
            w!(
                status,
                " · {} records dropped while recording",
                run.dropped_records
            );
        }
        row("status", status);
        row("started", esc(&run.started_at));
        row(
            "ended",
            match run.ended_at_ms {
                Some(ms) => format!(
                    "{} ({} s after the start)",
                    esc(&crate::store::rfc3339(ms)),
                    num((ms - run.started_at_ms) as f64 / 1000.0)
                ),
                None => "<span class=\"unknown\">not recorded</span>".into(),
            },
        );
        row(
            "power source",
            match &run.power_source {
                Some(s) if run.estimated => {
                    format!("{} <span class=\"est\">ESTIMATED</span>", esc(s))
                }
                Some(s) => format!("{} (measured)", esc(s)),
                None => "<span class=\"unknown\">none: energy unknown</span>".into(),
            },
        );
        row(
            "sample interval",
            match run.sample_interval_ms {
                Some(i) => format!("{} ms", num(i)),
                None => "<span class=\"unknown\">unknown</span>".into(),
            },
        );
        row(
            "rows",
            format!(
                "{} power samples · {} sections · {} token rows · {} layers · {} component kinds",
                self.summary.power_samples,
                self.sections.len(),
                self.tokens.len(),
                self.summary.layers.len(),
                self.summary.components.len()
            ),
        );
        h.push_str("</table>\n</section>\n");
    }

    // ---------------------------------------------------------------- (a) power timeline

    fn power_chart(&self, h: &mut String) {
        let (top, bottom, left, right) = (46.0, 48.0, 76.0, 16.0);
        let height = 380.0;
        let (x0, x1, y0, y1) = (left, W - right, top, height - bottom);
        let span_ms = self.rel_ms(self.t_end).max(1e-6);
        let sx = |ms: f64| x0 + (ms / span_ms).clamp(0.0, 1.0) * (x1 - x0);

        type Get = fn(&PowerRow) -> Option<f64>;
        let all: [(&str, Get); 4] = [
            ("cpu", |p| p.cpu_mw),
            ("gpu", |p| p.gpu_mw),
            ("ane", |p| p.ane_mw),
            ("dram", |p| p.dram_mw),
        ];
        let mut series: Vec<(&str, Get)> = all
            .into_iter()
            .filter(|(_, get)| self.power.iter().any(|p| get(p).is_some()))
            .collect();
        if !self.power.is_empty() {
            series.push(("total", |p| Some(p.total_mw)));
        }
        let max_mw = self
            .power
            .iter()
            .flat_map(|p| series.iter().filter_map(move |(_, g)| g(p)))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let (yticks, ymax) = ticks_from_zero(max_mw * 1.04, 5);
        let sy = |mw: f64| y1 - (mw / ymax).clamp(0.0, 1.0) * (y1 - y0);

        let phases: Vec<&Row<PipelineSection>> = self
            .sections
            .iter()
            .filter(|s| s.record.kind == "phase")
            .collect();

        card_open(
            h,
            "power",
            "(a) Power over time",
            &format!(
                "Mean power of every sample window per measured domain{}, with the phases shaded \
                 behind it. Time runs from the first sample or section of the run.",
                if self.run.estimated {
                    " (estimated)"
                } else {
                    ""
                }
            ),
        );
        svg_open(h, height, "Power over time per domain, with the phases");

        // Phases: a shaded band over the plot and a labelled strip above it.
        for s in &phases {
            let m = &s.record.measured;
            let (a, b) = (sx(self.rel_ms(m.start_ns)), sx(self.rel_ms(m.end_ns)));
            let wdt = (b - a).max(1.0);
            let colour = phase_colour(&s.record.name);
            let tip = format!(
                "phase {}: {} to {} ms ({} ms), {}, mean {}",
                s.record.name,
                num(self.rel_ms(m.start_ns)),
                num(self.rel_ms(m.end_ns)),
                num(s.duration_ms),
                mj(m.energy_mj),
                with_unit(mean_mw(m.energy_mj, s.duration_ms), "mW")
            );
            w!(
                h,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{colour}\" fill-opacity=\"0.12\"><title>{}</title></rect>\n",
                px(a), px(y0), px(wdt), px(y1 - y0), esc(&tip)
            );
            w!(
                h,
                "<rect class=\"mark\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"16\" rx=\"2\" fill=\"{colour}\"><title>{}</title></rect>\n",
                px(a), px(y0 - 22.0), px(wdt), esc(&tip)
            );
            if text_width(&s.record.name, 11.0) + 6.0 <= wdt {
                w!(
                    h,
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" style=\"font-size:11px;fill:#fff;font-weight:600\">{}</text>\n",
                    px(a + wdt / 2.0), px(y0 - 10.0), esc(&s.record.name)
                );
            }
        }
        // Before the first phase (loading the model, typically): said, not shaded.
        if let Some(first) = phases.iter().map(|s| s.record.measured.start_ns).min() {
            let b = sx(self.rel_ms(first));
            let label = "before the first phase";
            if b - x0 >= text_width(label, 10.5) + 8.0 {
                w!(
                    h,
                    "<path d=\"M{},{}H{}\" stroke=\"#c4c9d1\" stroke-dasharray=\"3 3\"/><text class=\"small halo\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" style=\"fill:#6b7280\">{label}</text>\n",
                    px(x0), px(y0 - 14.0), px(b - 2.0), px((x0 + b) / 2.0), px(y0 - 10.0)
                );
            }
        }
        w!(
            h,
            "<text x=\"{}\" y=\"{}\" class=\"small\" text-anchor=\"end\">phases</text>\n",
            px(x0 - 6.0),
            px(y0 - 10.0)
        );

        // Axes and grid.
        for t in &yticks {
            let y = sy(*t);
            w!(
                h,
                "<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/><text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
                px(x0), px(x1), px(y), px(y), px(x0 - 6.0), px(y + 4.0), num(*t)
            );
        }
        x_axis(
            h,
            x0,
            x1,
            y1,
            span_ms,
            "time since the run's first sample or section (ms)",
        );
        y_axis_title(h, (y0 + y1) / 2.0, "power (mW)");

        if self.power.is_empty() {
            empty_note(
                h,
                (x0 + x1) / 2.0,
                (y0 + y1) / 2.0,
                "No power samples: power unknown.",
            );
        } else {
            // Step lines: power is constant within a window.
            for (name, get) in &series {
                let mut d = String::new();
                let mut prev_end: Option<u64> = None;
                for p in self.power {
                    let Some(v) = get(p).filter(|v| v.is_finite()) else {
                        prev_end = None;
                        continue;
                    };
                    let (a, b, y) = (
                        sx(self.rel_ms(p.start_ns)),
                        sx(self.rel_ms(p.end_ns)),
                        sy(v),
                    );
                    match prev_end {
                        Some(e) if p.start_ns.abs_diff(e) <= 1_000_000 => {
                            w!(d, "V{}H{}", px(y), px(b))
                        }
                        _ => w!(d, "M{},{}H{}", px(a), px(y), px(b)),
                    }
                    prev_end = Some(p.end_ns);
                }
                let dash = if *name == "total" {
                    " stroke-dasharray=\"6 4\" stroke-width=\"1.6\""
                } else {
                    " stroke-width=\"2.2\""
                };
                w!(
                    h,
                    "<path d=\"{d}\" fill=\"none\" stroke=\"{}\"{dash} stroke-linejoin=\"round\"><title>{} power (mW)</title></path>\n",
                    domain_colour(name),
                    name
                );
            }
            // One hover target per sample window with all its figures.
            for p in self.power {
                let (a, b) = (sx(self.rel_ms(p.start_ns)), sx(self.rel_ms(p.end_ns)));
                let mut tip = format!(
                    "{} to {} ms ({} ms window)",
                    num(self.rel_ms(p.start_ns)),
                    num(self.rel_ms(p.end_ns)),
                    num(p.duration_ms)
                );
                for (name, get) in &series {
                    w!(tip, "\n{name}: {}", with_unit(get(p), "mW"));
                }
                w!(tip, "\nenergy: {}", mj(Some(p.total_mj)));
                if p.estimated {
                    tip.push_str(" (estimated)");
                }
                w!(
                    h,
                    "<rect class=\"hover\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>\n",
                    px(a), px(y0), px((b - a).max(0.5)), px(y1 - y0), esc(&tip)
                );
            }
        }
        h.push_str("</svg>\n<ul class=\"legend\">");
        for (name, _) in &series {
            w!(
                h,
                "<li><span class=\"ln{}\" style=\"border-top-color:{}\"></span>{}</li>",
                if *name == "total" { " dashed" } else { "" },
                domain_colour(name),
                if *name == "total" {
                    "total (all measured domains)"
                } else {
                    name
                }
            );
        }
        let mut seen: Vec<&str> = Vec::new();
        for s in &phases {
            if seen.contains(&s.record.name.as_str()) {
                continue;
            }
            seen.push(&s.record.name);
            let ms: f64 = phases
                .iter()
                .filter(|p| p.record.name == s.record.name)
                .map(|p| p.duration_ms)
                .sum();
            w!(
                h,
                "<li><span class=\"sw shade\" style=\"background:{}\"></span>phase {} ({} ms)</li>",
                phase_colour(&s.record.name),
                esc(&s.record.name),
                num(ms)
            );
        }
        h.push_str("</ul>\n</figure>\n</section>\n");
    }

    // ---------------------------------------------------------------- (b) tokens

    fn token_chart(&self, h: &mut String) {
        let (top, bottom, left, right) = (34.0, 50.0, 76.0, 16.0);
        let height = 330.0;
        let (x0, x1, y0, y1) = (left, W - right, top, height - bottom);
        card_open(
            h,
            "tokens",
            "(b) Energy per token",
            "Energy of every token row: the prefill (one forward pass over the whole prompt) and \
             each decode step (one generated token). Whiskers show the attribution's \
             uncertainty; a bar cut by a break mark is taller than the axis.",
        );
        svg_open(h, height, "Energy per token, prefill and decode");
        let n = self.tokens.len();
        let values: Vec<Option<f64>> = self
            .tokens
            .iter()
            .map(|t| t.record.measured.energy_mj.filter(|v| v.is_finite()))
            .collect();
        let all_max = values.iter().flatten().fold(0.0f64, |a, b| a.max(*b));
        let rest_max = self
            .tokens
            .iter()
            .zip(&values)
            .filter(|(t, _)| t.record.phase != "prefill")
            .filter_map(|(_, v)| *v)
            .fold(0.0f64, f64::max);
        // A prefill much taller than every decode step is cut, so that the steps stay legible.
        let cut = rest_max > 0.0 && all_max > 2.5 * rest_max;
        let axis_target = if cut { rest_max * 1.25 } else { all_max * 1.05 };
        let (yticks, ymax) = ticks_from_zero(axis_target, 5);
        let sy = |v: f64| y1 - (v / ymax).clamp(0.0, 1.0) * (y1 - y0);
        for t in &yticks {
            let y = sy(*t);
            w!(
                h,
                "<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/><text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
                px(x0), px(x1), px(y), px(y), px(x0 - 6.0), px(y + 4.0), num(*t)
            );
        }
        y_axis_title(h, (y0 + y1) / 2.0, "energy (mJ)");
        w!(
            h,
            "<line class=\"axis\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>\n",
            px(x0),
            px(x1),
            px(y1),
            px(y1)
        );
        if n == 0 || values.iter().all(|v| v.is_none()) {
            let msg = if n == 0 {
                "No token rows in this run."
            } else {
                "Energy unknown: no power source, so no token has an energy."
            };
            empty_note(h, (x0 + x1) / 2.0, (y0 + y1) / 2.0, msg);
        } else {
            let band = (x1 - x0) / n as f64;
            let bar = (band * if n > 200 { 0.9 } else { 0.78 }).max(0.6);
            for (i, (t, v)) in self.tokens.iter().zip(&values).enumerate() {
                let r = &t.record;
                let xc = x0 + band * (i as f64 + 0.5);
                let colour = phase_colour(&r.phase);
                let mut tip = format!("token {} ({})", r.token_index, r.phase);
                if let Some(text) = &r.text {
                    w!(tip, ": {text:?}");
                }
                w!(tip, "\nenergy: {}", mj(*v));
                if let Some(u) = r.measured.energy_uncertainty_mj {
                    w!(tip, " ± {}", num(u));
                }
                w!(tip, "\nduration: {} ms", num(t.duration_ms));
                w!(
                    tip,
                    "\nmean power: {}",
                    with_unit(mean_mw(*v, t.duration_ms), "mW")
                );
                if r.n_tokens > 1 {
                    w!(
                        tip,
                        "\n{} tokens in one forward pass: {} per token",
                        r.n_tokens,
                        mj(v.map(|e| e / r.n_tokens as f64))
                    );
                }
                if let Some(sw) = r.measured.sample_windows {
                    w!(tip, "\nsample windows: {sw}");
                }
                let tip = esc(&tip);
                let Some(v) = v else {
                    // Unknown: a hollow marker on the axis, never a zero bar.
                    w!(
                        h,
                        "<rect class=\"mark\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"6\" fill=\"none\" stroke=\"#9ca3af\" stroke-dasharray=\"2 2\"><title>{tip}</title></rect>\n",
                        px(xc - bar / 2.0), px(y1 - 6.0), px(bar)
                    );
                    continue;
                };
                let y = sy(*v);
                w!(
                    h,
                    "<rect class=\"mark\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{colour}\"><title>{tip}</title></rect>\n",
                    px(xc - bar / 2.0), px(y), px(bar), px((y1 - y).max(0.5))
                );
                if *v > ymax {
                    // Break mark and the real value above the plot.
                    let ym = y0 + 10.0;
                    w!(
                        h,
                        "<path d=\"M{},{}l{},-5M{},{}l{},-5\" stroke=\"#fff\" stroke-width=\"2.5\"/>\n",
                        px(xc - bar / 2.0 - 1.0), px(ym + 3.0), px(bar + 2.0),
                        px(xc - bar / 2.0 - 1.0), px(ym + 8.0), px(bar + 2.0)
                    );
                    w!(
                        h,
                        "<text class=\"small halo\" x=\"{}\" y=\"{}\" text-anchor=\"{}\">{} ↑</text>\n",
                        px(xc), px(y0 - 6.0), if i == 0 { "start" } else { "middle" }, esc(&mj(Some(*v)))
                    );
                } else if let Some(u) = r
                    .measured
                    .energy_uncertainty_mj
                    .filter(|u| *u > 0.0 && band >= 5.0)
                {
                    // A whisker from v - u to v + u; a cap only where it ends inside the axis.
                    let (ya, yb) = (sy((v - u).max(0.0)), sy(v + u));
                    let (ca, cb) = (px(xc - bar / 5.0), px(xc + bar / 5.0));
                    let mut d = format!("M{},{}V{}", px(xc), px(ya), px(yb));
                    if v - u > 0.0 {
                        w!(d, "M{ca},{}H{cb}", px(ya));
                    }
                    if v + u <= ymax {
                        w!(d, "M{ca},{}H{cb}", px(yb));
                    }
                    w!(
                        h,
                        "<path d=\"{d}\" stroke=\"#374151\" stroke-width=\"1\" stroke-opacity=\"0.55\" fill=\"none\"><title>{tip}</title></path>\n"
                    );
                }
            }
            // Token index ticks.
            let step = if n <= 32 {
                1
            } else {
                super::format::nice_step(n as f64, 12).max(1.0) as usize
            };
            for i in (0..n).step_by(step) {
                let xc = x0 + band * (i as f64 + 0.5);
                w!(
                    h,
                    "<line class=\"axis\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/><text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                    px(xc), px(xc), px(y1), px(y1 + 4.0), px(xc), px(y1 + 17.0), self.tokens[i].record.token_index
                );
            }
        }
        w!(
            h,
            "<text class=\"axis-title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">token (0 = prefill, then one per generated token)</text>\n",
            px((x0 + x1) / 2.0),
            px(height - 10.0)
        );
        h.push_str("</svg>\n<ul class=\"legend\">");
        for phase in self.token_phases() {
            let rows: Vec<&Row<TokenRecord>> = self
                .tokens
                .iter()
                .filter(|t| t.record.phase == phase)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let energy = sum_known(rows.iter().map(|t| t.record.measured.energy_mj));
            w!(
                h,
                "<li><span class=\"sw\" style=\"background:{}\"></span>{} ({} row{}, {})</li>",
                phase_colour(&phase),
                esc(&phase),
                rows.len(),
                if rows.len() == 1 { "" } else { "s" },
                mj(energy)
            );
        }
        h.push_str("</ul>\n</figure>\n</section>\n");
    }

    // ---------------------------------------------------------------- (c) heatmap

    fn heatmap(&self, h: &mut String) {
        card_open(
            h,
            "heatmap",
            "(c) Energy per token by layer and component",
            "Mean energy per token of every component kind in every layer, one panel per phase: \
             for the prefill, its energy divided by the prompt tokens it processed; for decode, \
             per generated token. Model-level components (outside the layers) are in the row \
             \"model\". Each panel has its own colour scale; hover a cell for its figures.",
        );
        let phases: Vec<String> = self
            .token_phases()
            .into_iter()
            .filter(|p| self.components.iter().any(|g| &g.phase == p))
            .collect();
        let max_layer = self.components.iter().filter_map(|g| g.layer).max();
        let has_model = self.components.iter().any(|g| g.layer.is_none());
        let order = |k: &str| match k {
            "norm" => 0,
            "attention" => 1,
            "mlp" => 2,
            "final_norm" => 10,
            "output" => 11,
            _ => 5,
        };
        let mut kinds: Vec<(bool, String)> = Vec::new(); // (model-level only, kind)
        for g in self.components {
            let model_only = !self
                .components
                .iter()
                .any(|o| o.layer.is_some() && o.component == g.component);
            if !kinds.iter().any(|(_, k)| *k == g.component) {
                kinds.push((model_only, g.component.clone()));
            }
        }
        kinds.sort_by(|a, b| (a.0, order(&a.1), &a.1).cmp(&(b.0, order(&b.1), &b.1)));

        let n_rows = max_layer.map_or(0, |m| m as usize + 1) + usize::from(has_model);
        let row_h = if n_rows <= 40 {
            18.0
        } else {
            (720.0 / n_rows as f64).max(6.0)
        };
        let (left, right, gap) = (66.0, 8.0, 30.0);
        let p = phases.len().max(1) as f64;
        let panel_w = (W - left - right - gap * (p - 1.0)) / p;
        let ncols = kinds.len().max(1) as f64;
        let cell_w = panel_w / ncols;
        let rotate = kinds
            .iter()
            .any(|(_, k)| text_width(k, 11.0) + 4.0 > cell_w);
        let top = if rotate { 96.0 } else { 56.0 };
        let grid_h = n_rows as f64 * row_h;
        let height = top + grid_h + 64.0;
        svg_open(
            h,
            height,
            "Heatmap of the mean energy per token by layer and component",
        );
        if phases.is_empty() || n_rows == 0 {
            empty_note(h, W / 2.0, height / 2.0, "No component rows in this run.");
            h.push_str("</svg>\n</figure>\n</section>\n");
            return;
        }
        // Row labels.
        for r in 0..n_rows {
            let label = if has_model && r == n_rows - 1 {
                "model".to_string()
            } else {
                format!("layer {r}")
            };
            if row_h >= 10.0 || r % 5 == 0 || label == "model" {
                w!(
                    h,
                    "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
                    px(left - 6.0),
                    px(top + r as f64 * row_h + row_h / 2.0 + 4.0),
                    label
                );
            }
        }
        let cells: HashMap<(&str, Option<u32>, &str), &ComponentGroup> = self
            .components
            .iter()
            .map(|g| ((g.phase.as_str(), g.layer, g.component.as_str()), g))
            .collect();
        let per_token = |g: &ComponentGroup| g.energy_mj.map(|e| e / g.tokens.max(1) as f64);
        let any_energy = self.components.iter().any(|g| g.energy_mj.is_some());
        for (pi, phase) in phases.iter().enumerate() {
            let px0 = left + pi as f64 * (panel_w + gap);
            // The scale spans the layers' cells: a model-level component (the output head
            // is often far above any layer's) would wash them out; it saturates instead.
            let in_phase = || self.components.iter().filter(|g| &g.phase == phase);
            let layer_max = in_phase()
                .filter(|g| g.layer.is_some())
                .filter_map(per_token)
                .fold(0.0f64, f64::max);
            let all_max = in_phase().filter_map(per_token).fold(0.0f64, f64::max);
            let max = if layer_max > 0.0 { layer_max } else { all_max };
            let saturated = all_max > max * 1.000001;
            let (token_rows, tokens) = self
                .tokens
                .iter()
                .filter(|t| &t.record.phase == phase)
                .fold((0u64, 0u64), |(r, n), t| {
                    (r + 1, n + t.record.n_tokens as u64)
                });
            let title = match phase.as_str() {
                "prefill" => format!("prefill · per prompt token ({tokens} tokens)"),
                "decode" => format!("decode · per generated token ({token_rows} tokens)"),
                _ => format!("{phase} · per token ({tokens} tokens)"),
            };
            w!(
                h,
                "<text class=\"label\" x=\"{}\" y=\"16\" style=\"font-weight:600;fill:{}\">{}</text>\n",
                px(px0),
                phase_colour(phase),
                esc(&title)
            );
            for (ci, (_, kind)) in kinds.iter().enumerate() {
                let cx = px0 + ci as f64 * cell_w + cell_w / 2.0;
                let colour = component_colour(kind);
                w!(
                    h,
                    "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"3\" fill=\"{colour}\"/>\n",
                    px(px0 + ci as f64 * cell_w + 1.0),
                    px(top - 5.0),
                    px(cell_w - 2.0)
                );
                if rotate {
                    w!(
                        h,
                        "<text class=\"tick\" transform=\"translate({},{}) rotate(-40)\" text-anchor=\"start\">{}</text>\n",
                        px(cx - 2.0), px(top - 10.0), esc(kind)
                    );
                } else {
                    w!(
                        h,
                        "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                        px(cx),
                        px(top - 11.0),
                        esc(kind)
                    );
                }
                for r in 0..n_rows {
                    let layer = if has_model && r == n_rows - 1 {
                        None
                    } else {
                        Some(r as u32)
                    };
                    let (x, y) = (px0 + ci as f64 * cell_w, top + r as f64 * row_h);
                    let Some(g) = cells.get(&(phase.as_str(), layer, kind.as_str())) else {
                        w!(
                            h,
                            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#f3f4f6\"/>\n",
                            px(x + 0.5), px(y + 0.5), px(cell_w - 1.0), px(row_h - 1.0)
                        );
                        continue;
                    };
                    let v = per_token(g);
                    let t = v.map(|v| if max > 0.0 { v / max } else { 0.0 });
                    let fill = t.map_or_else(|| "#e5e7eb".to_string(), heat_colour);
                    let where_ = layer.map_or("model".to_string(), |l| format!("layer {l}"));
                    let above = if v.is_some_and(|v| v > max * 1.000001) {
                        "\n(above this panel's colour scale)"
                    } else {
                        ""
                    };
                    let tip = format!(
                        "{where_} · {kind} · {phase}\nmean energy per token: {}\n\
                         total: {} over {} token row{} ({} tokens)\nmean duration per row: {} ms{above}",
                        mj(v),
                        mj(g.energy_mj),
                        g.token_rows,
                        if g.token_rows == 1 { "" } else { "s" },
                        g.tokens,
                        num(g.duration_ms / g.token_rows.max(1) as f64)
                    );
                    w!(
                        h,
                        "<rect class=\"mark\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{fill}\"><title>{}</title></rect>\n",
                        px(x + 0.5), px(y + 0.5), px(cell_w - 1.0), px(row_h - 1.0), esc(&tip)
                    );
                    if let Some(v) = v {
                        if cell_w >= 38.0 && row_h >= 13.0 {
                            let light = t.is_some_and(heat_text_light);
                            w!(
                                h,
                                "<text class=\"small\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" style=\"fill:{};pointer-events:none\">{}</text>\n",
                                px(x + cell_w / 2.0),
                                px(y + row_h / 2.0 + 3.8),
                                if light { "#ffffff" } else { "#3b1d0e" },
                                num(v)
                            );
                        }
                    }
                }
            }
            // The panel's colour scale.
            let ly = top + grid_h + 14.0;
            let steps = 40;
            let lw = panel_w.min(320.0);
            for s in 0..steps {
                let t = (s as f64 + 0.5) / steps as f64;
                w!(
                    h,
                    "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"10\" fill=\"{}\"/>\n",
                    px(px0 + lw * s as f64 / steps as f64),
                    px(ly),
                    px(lw / steps as f64 + 0.4),
                    heat_colour(t)
                );
            }
            w!(
                h,
                "<text class=\"tick\" x=\"{}\" y=\"{}\">0</text><text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
                px(px0), px(ly + 24.0), px(px0 + lw), px(ly + 24.0),
                match (any_energy, saturated) {
                    (false, _) => "unknown".to_string(),
                    (true, false) => esc(&mj(Some(max))),
                    (true, true) => format!("≥ {}", esc(&mj(Some(max)))),
                }
            );
            w!(
                h,
                "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">mJ per token</text>\n",
                px(px0 + lw / 2.0),
                px(ly + 24.0)
            );
        }
        if !any_energy {
            empty_note(
                h,
                W / 2.0,
                top + grid_h / 2.0,
                "Energy unknown: no power source.",
            );
        }
        h.push_str("</svg>\n<ul class=\"legend\">");
        for (_, kind) in &kinds {
            w!(
                h,
                "<li><span class=\"sw\" style=\"background:{}\"></span>{}</li>",
                component_colour(kind),
                esc(kind)
            );
        }
        h.push_str(
            "<li><span class=\"sw\" style=\"background:#f3f4f6;border:1px solid #e5e7eb\"></span>no such component</li></ul>\n</figure>\n</section>\n",
        );
    }

    // ---------------------------------------------------------------- (d) sankey

    fn sankey(&self, h: &mut String) {
        card_open(
            h,
            "sankey",
            "(d) Where the energy went",
            &format!(
                "The run's energy flowing to its phases, from the phases to the layers (the {} \
                 hottest on their own, the others grouped) and from the layers to their \
                 components. Band widths are proportional to energy (mJ); hover a band or a node \
                 for its figures.",
                SANKEY_TOP_LAYERS
            ),
        );
        let mut flow = Flow::build(self);
        let height = flow.as_mut().map_or(160.0, Flow::layout);
        svg_open(h, height, "Sankey diagram: run, phases, layers, components");
        match flow {
            Some(f) => f.draw(h, height),
            None => empty_note(
                h,
                W / 2.0,
                height / 2.0,
                "Energy unknown: no power source, nothing to divide.",
            ),
        }
        h.push_str("</svg>\n</figure>\n</section>\n");
    }

    // ---------------------------------------------------------------- (e) hottest

    fn hottest_chart(&self, h: &mut String) {
        let hot = &self.summary.hottest;
        let (left, right, top, row_h) = (160.0, 150.0, 12.0, 28.0);
        let height = top + (hot.len().max(3) as f64) * row_h + 50.0;
        let (x0, x1, y1) = (left, W - right, top + hot.len().max(3) as f64 * row_h);
        card_open(
            h,
            "hottest",
            "(e) Hottest components",
            "The ten (layer, component) pairs that used the most energy over the whole run, \
             all tokens together.",
        );
        svg_open(h, height, "Bar chart of the hottest components");
        let max = hot.iter().map(|c| c.energy_mj).fold(0.0f64, f64::max);
        let (ticks, xmax) = ticks_from_zero(max * 1.02, 5);
        let sx = |v: f64| x0 + (v / xmax).clamp(0.0, 1.0) * (x1 - x0);
        for t in &ticks {
            let x = sx(*t);
            w!(
                h,
                "<line class=\"grid\" x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\"/><text class=\"tick\" x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                px(top), px(y1), px(y1 + 16.0), num(*t), x = px(x)
            );
        }
        w!(
            h,
            "<line class=\"axis\" x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\"/>\n",
            px(x0),
            px(top),
            px(y1)
        );
        w!(
            h,
            "<text class=\"axis-title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">energy over the run (mJ)</text>\n",
            px((x0 + x1) / 2.0),
            px(height - 8.0)
        );
        if hot.is_empty() {
            empty_note(
                h,
                (x0 + x1) / 2.0,
                (top + y1) / 2.0,
                if self.energy_known() {
                    "No component rows in this run."
                } else {
                    "Energy unknown: no power source."
                },
            );
        }
        for (i, c) in hot.iter().enumerate() {
            let y = top + i as f64 * row_h;
            let where_ = c
                .layer_index
                .map_or("model".to_string(), |l| format!("layer {l}"));
            let label = format!("{where_} · {}", c.component);
            let share = c.share_of_run.map(pct);
            let tip = format!(
                "{label}\nenergy: {} over {} token row{}\nmean per token row: {}\nduration: {} ms{}",
                mj(Some(c.energy_mj)),
                c.count,
                if c.count == 1 { "" } else { "s" },
                mj(Some(c.energy_mj / c.count.max(1) as f64)),
                num(c.duration_ms),
                share
                    .as_ref()
                    .map_or(String::new(), |s| format!("\nshare of the run: {s}"))
            );
            w!(
                h,
                "<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
                px(x0 - 8.0),
                px(y + row_h / 2.0 + 4.0),
                esc(&label)
            );
            let xe = sx(c.energy_mj.max(0.0));
            w!(
                h,
                "<rect class=\"mark\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"2\" fill=\"{}\"><title>{}</title></rect>\n",
                px(x0), px(y + 4.0), px((xe - x0).max(1.0)), px(row_h - 8.0),
                component_colour(&c.component), esc(&tip)
            );
            w!(
                h,
                "<text class=\"label\" x=\"{}\" y=\"{}\">{}{}</text>\n",
                px(xe + 6.0),
                px(y + row_h / 2.0 + 4.0),
                esc(&mj(Some(c.energy_mj))),
                share.map_or(String::new(), |s| format!(" · {s}"))
            );
        }
        h.push_str("</svg>\n</figure>\n</section>\n");
    }

    // ---------------------------------------------------------------- (f) flame graph

    fn flame_graph(&self, h: &mut String) {
        card_open(
            h,
            "flame-graph",
            "(f) Energy by span path",
            super::flame::DESCRIPTION,
        );
        super::flame::draw(h, self.rollup, self.run.total_energy_mj);
        h.push_str("</figure>\n</section>\n");
    }

    // ---------------------------------------------------------------- phases table

    fn phase_table(&self, h: &mut String) {
        h.push_str(
            "<section class=\"card\" id=\"phases\">\n<h2>Phases</h2>\n\
             <p class=\"desc\">Sections of kind <i>phase</i>, summed per phase; tokens and \
             energy per token from the token rows of that phase.</p>\n",
        );
        if self.summary.phases.is_empty() {
            h.push_str("<p class=\"unknown\">No phase sections in this run.</p>\n</section>\n");
            return;
        }
        h.push_str(
            "<table class=\"num\"><thead><tr><th>phase</th><th class=\"n\">sections</th>\
             <th class=\"n\">duration (ms)</th><th class=\"n\">energy (mJ)</th>\
             <th class=\"n\">mean power (mW)</th><th class=\"n\">share of the run</th>\
             <th class=\"n\">tokens</th><th class=\"n\">energy per token (mJ)</th></tr></thead>\n<tbody>\n",
        );
        let total = self.run.total_energy_mj.filter(|t| *t > 0.0);
        for p in &self.summary.phases {
            let toks: Vec<&Row<TokenRecord>> = self
                .tokens
                .iter()
                .filter(|t| t.record.phase == p.phase)
                .collect();
            let n_tokens: u64 = toks.iter().map(|t| t.record.n_tokens as u64).sum();
            let tok_energy = sum_known(toks.iter().map(|t| t.record.measured.energy_mj));
            let cell = |v: Option<f64>| match v {
                Some(v) if v.is_finite() => num(v),
                _ => "<span class=\"unknown\">unknown</span>".into(),
            };
            w!(
                h,
                "<tr><td><span class=\"legend\" style=\"display:inline\"><span class=\"sw\" style=\"background:{}\"></span></span>{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
                phase_colour(&p.phase),
                esc(&p.phase),
                p.sections,
                num(p.duration_ms),
                cell(p.energy_mj),
                cell(p.mean_power_mw),
                match (p.energy_mj, total) {
                    (Some(e), Some(t)) => pct(e / t),
                    _ => "<span class=\"unknown\">unknown</span>".into(),
                },
                if toks.is_empty() { "–".to_string() } else { n_tokens.to_string() },
                if toks.is_empty() {
                    "–".to_string()
                } else {
                    cell(tok_energy.map(|e| e / n_tokens.max(1) as f64))
                },
            );
        }
        w!(
            h,
            "</tbody><tfoot><tr><th>run</th><td></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td></td><td></td></tr></tfoot></table>\n</section>\n",
            num(self.rel_ms(self.t_end)),
            match self.run.total_energy_mj {
                Some(t) => num(t),
                None => "<span class=\"unknown\">unknown</span>".into(),
            },
            match self.run.total_energy_mj {
                Some(t) if self.t_end > self.t0 => num(t / self.rel_ms(self.t_end) * 1000.0),
                _ => "<span class=\"unknown\">unknown</span>".into(),
            },
            if total.is_some() { "100 %" } else { "" }
        );
    }
}

// -------------------------------------------------------------------- the sankey

struct Node {
    col: usize,
    label: String,
    colour: &'static str,
    detail: String,
    /// Filled by `layout`.
    value: f64,
    y: f64,
    h: f64,
}

struct Link {
    from: usize,
    to: usize,
    value: f64,
    colour: &'static str,
}

struct Flow {
    nodes: Vec<Node>,
    links: Vec<Link>,
    /// The run's energy (100 %).
    base: f64,
    /// Pixels per mJ, from `layout`.
    k: f64,
}

/// The sankey's top margin (column headers above it).
const SANKEY_TOP: f64 = 28.0;
/// The space between two nodes of a column.
const SANKEY_GAP: f64 = 10.0;

impl Flow {
    fn build(page: &Page) -> Option<Flow> {
        let phases = page.token_phases();
        let mut phase_energy: Vec<(String, f64)> = Vec::new();
        for p in &phases {
            let e = sum_known(
                page.tokens
                    .iter()
                    .filter(|t| &t.record.phase == p)
                    .map(|t| t.record.measured.energy_mj),
            );
            if let Some(e) = e.filter(|e| *e > 0.0) {
                phase_energy.push((p.clone(), e));
            }
        }
        let in_tokens: f64 = phase_energy.iter().map(|(_, e)| e).sum();
        let base = page.run.total_energy_mj.unwrap_or(0.0).max(in_tokens);
        if base <= 0.0 {
            return None;
        }
        let mut f = Flow {
            nodes: Vec::new(),
            links: Vec::new(),
            base,
            k: 1.0,
        };
        let node = |f: &mut Flow, col: usize, label: String, colour: &'static str, detail: &str| {
            f.nodes.push(Node {
                col,
                label,
                colour,
                detail: detail.to_string(),
                value: 0.0,
                y: 0.0,
                h: 0.0,
            });
            f.nodes.len() - 1
        };
        let root = node(
            &mut f,
            0,
            "run".into(),
            "#4b5563",
            if page.run.estimated {
                "measured over the run's window (estimated)"
            } else {
                "measured over the run's window"
            },
        );
        f.nodes[root].value = base;

        // Column 1: the token phases, and what no token covers.
        let mut phase_node: HashMap<String, usize> = HashMap::new();
        for (p, e) in &phase_energy {
            let i = node(
                &mut f,
                1,
                p.clone(),
                phase_colour(p),
                "token rows of this phase",
            );
            phase_node.insert(p.clone(), i);
            f.link(root, i, *e, phase_colour(p));
        }
        if base - in_tokens > base * 1e-6 {
            let i = node(
                &mut f,
                1,
                "outside tokens".into(),
                phase_colour("other"),
                "tokenize, sampling between tokens, loading, unattributed",
            );
            f.link(root, i, base - in_tokens, phase_colour("other"));
        }

        // Column 2: layers (the hottest alone), model-level components, the rest of tokens.
        let mut layer_total: BTreeMap<u32, f64> = BTreeMap::new();
        for g in page.layers {
            if phase_node.contains_key(&g.phase) {
                *layer_total.entry(g.layer).or_default() += g.energy_mj.unwrap_or(0.0).max(0.0);
            }
        }
        let mut ranked: Vec<(u32, f64)> = layer_total.iter().map(|(l, e)| (*l, *e)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let top: Vec<u32> = ranked
            .iter()
            .take(SANKEY_TOP_LAYERS)
            .filter(|(_, e)| *e > 0.0)
            .map(|(l, _)| *l)
            .collect();
        let n_other = layer_total.len().saturating_sub(top.len());
        let mut layer_node: HashMap<u32, usize> = HashMap::new();
        for l in &top {
            let i = node(&mut f, 2, format!("layer {l}"), "#64748b", "all tokens");
            layer_node.insert(*l, i);
        }
        let others = (n_other > 0).then(|| {
            node(
                &mut f,
                2,
                format!(
                    "{n_other} other layer{}",
                    if n_other == 1 { "" } else { "s" }
                ),
                "#94a3b8",
                "the remaining layers, together",
            )
        });
        let model = page
            .components
            .iter()
            .any(|g| g.layer.is_none() && g.energy_mj.is_some())
            .then(|| {
                node(
                    &mut f,
                    2,
                    "model-level".into(),
                    "#7c6f9b",
                    "components outside the layers (final norm, output head)",
                )
            });
        let rest = node(
            &mut f,
            2,
            "rest of tokens".into(),
            "#b8bfc8",
            "inside the token spans but outside every layer and model-level component (embedding, sampling, ...)",
        );
        let layer_target = |l: u32| layer_node.get(&l).copied().or(others);
        for (p, e) in &phase_energy {
            let pi = phase_node[p];
            let mut used = 0.0;
            let mut per_target: BTreeMap<usize, f64> = BTreeMap::new();
            for g in page.layers.iter().filter(|g| &g.phase == p) {
                let v = g.energy_mj.unwrap_or(0.0).max(0.0);
                if let Some(t) = layer_target(g.layer) {
                    *per_target.entry(t).or_default() += v;
                    used += v;
                }
            }
            if let Some(m) = model {
                let v: f64 = page
                    .components
                    .iter()
                    .filter(|g| &g.phase == p && g.layer.is_none())
                    .filter_map(|g| g.energy_mj)
                    .map(|v| v.max(0.0))
                    .sum();
                *per_target.entry(m).or_default() += v;
                used += v;
            }
            for (t, v) in per_target {
                f.link(pi, t, v, phase_colour(p));
            }
            f.link(pi, rest, (e - used).max(0.0), phase_colour(p));
        }

        // Column 3: component kinds, and what the layers' components do not cover.
        let mut kind_energy: HashMap<(usize, String), f64> = HashMap::new();
        for g in page
            .components
            .iter()
            .filter(|g| phase_node.contains_key(&g.phase))
        {
            let src = match g.layer {
                Some(l) => layer_target(l),
                None => model,
            };
            if let (Some(src), Some(e)) = (src, g.energy_mj) {
                *kind_energy.entry((src, g.component.clone())).or_default() += e.max(0.0);
            }
        }
        let mut kind_total: HashMap<String, f64> = HashMap::new();
        for ((_, k), e) in &kind_energy {
            *kind_total.entry(k.clone()).or_default() += e;
        }
        let mut kinds: Vec<(String, f64)> = kind_total.into_iter().collect();
        kinds.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut kind_node: HashMap<String, usize> = HashMap::new();
        for (k, _) in &kinds {
            let i = node(
                &mut f,
                3,
                k.clone(),
                component_colour(k),
                "component kind, all layers",
            );
            kind_node.insert(k.clone(), i);
        }
        let rest_of_layer = node(
            &mut f,
            3,
            "rest of layer".into(),
            component_colour("rest"),
            "layer time outside its components (residual adds, ...)",
        );
        // Links in node order, so that bands stack in the order of their targets.
        let mut sources: Vec<usize> = top.iter().map(|l| layer_node[l]).collect();
        sources.extend(others);
        sources.extend(model);
        let incoming: Vec<f64> = (0..f.nodes.len())
            .map(|i| f.links.iter().filter(|l| l.to == i).map(|l| l.value).sum())
            .collect();
        for src in sources {
            let mut out = 0.0;
            for (k, _) in &kinds {
                if let Some(e) = kind_energy.get(&(src, k.clone())) {
                    f.link(src, kind_node[k], *e, component_colour(k));
                    out += e;
                }
            }
            if Some(src) != model {
                f.link(
                    src,
                    rest_of_layer,
                    (incoming[src] - out).max(0.0),
                    component_colour("rest"),
                );
            }
        }
        f.layout_values();
        Some(f)
    }

    fn link(&mut self, from: usize, to: usize, value: f64, colour: &'static str) {
        if value.is_finite() && value > 0.0 {
            self.links.push(Link {
                from,
                to,
                value,
                colour,
            });
        }
    }

    /// Node values from their links; nodes without any are dropped.
    fn layout_values(&mut self) {
        for i in 0..self.nodes.len() {
            let inflow: f64 = self
                .links
                .iter()
                .filter(|l| l.to == i)
                .map(|l| l.value)
                .sum();
            let outflow: f64 = self
                .links
                .iter()
                .filter(|l| l.from == i)
                .map(|l| l.value)
                .sum();
            self.nodes[i].value = self.nodes[i].value.max(inflow).max(outflow);
        }
        let keep: Vec<bool> = self.nodes.iter().map(|n| n.value > 0.0).collect();
        let mut new_index = vec![usize::MAX; self.nodes.len()];
        let mut next = 0;
        for (i, k) in keep.iter().enumerate() {
            if *k {
                new_index[i] = next;
                next += 1;
            }
        }
        let mut i = 0;
        self.nodes.retain(|_| {
            let k = keep[i];
            i += 1;
            k
        });
        for l in &mut self.links {
            l.from = new_index[l.from];
            l.to = new_index[l.to];
        }
    }

    /// Places the nodes: the fullest column fills the plot's height, every node gets at
    /// least a label's height. Returns the chart's height.
    fn layout(&mut self) -> f64 {
        const PLOT_H: f64 = 400.0;
        let k = (0..4)
            .filter_map(|c| {
                let col: Vec<&Node> = self.nodes.iter().filter(|n| n.col == c).collect();
                let total: f64 = col.iter().map(|n| n.value).sum();
                (total > 0.0).then(|| {
                    (PLOT_H - SANKEY_GAP * (col.len() as f64 - 1.0)).max(PLOT_H * 0.3) / total
                })
            })
            .fold(f64::INFINITY, f64::min);
        self.k = if k.is_finite() { k } else { 1.0 };
        let mut bottom: f64 = 0.0;
        for c in 0..4 {
            let mut y = SANKEY_TOP;
            for n in self.nodes.iter_mut().filter(|n| n.col == c) {
                n.y = y;
                n.h = (n.value * self.k).max(1.5);
                bottom = bottom.max(y + n.h);
                y += (n.h + SANKEY_GAP).max(16.0);
            }
        }
        bottom + 14.0
    }

    fn draw(&self, h: &mut String, height: f64) {
        const NODE_W: f64 = 14.0;
        let cols = [24.0, 262.0, 500.0, 738.0];
        let k = self.k;
        let headers = ["run", "phases", "layers", "components"];
        for (c, head) in headers.iter().enumerate() {
            w!(
                h,
                "<text class=\"axis-title\" x=\"{}\" y=\"14\">{head}</text>\n",
                px(cols[c])
            );
        }
        // Bands: stacked in each node in the order of the other end's position.
        let mut out_off = vec![0.0; self.nodes.len()];
        let mut in_off = vec![0.0; self.nodes.len()];
        let mut order: Vec<usize> = (0..self.links.len()).collect();
        order.sort_by(|a, b| {
            let (la, lb) = (&self.links[*a], &self.links[*b]);
            la.from
                .cmp(&lb.from)
                .then(self.nodes[la.to].y.total_cmp(&self.nodes[lb.to].y))
        });
        let mut out_pos = vec![0.0; self.links.len()];
        for i in order {
            let l = &self.links[i];
            out_pos[i] = out_off[l.from];
            out_off[l.from] += l.value * k;
        }
        let mut order: Vec<usize> = (0..self.links.len()).collect();
        order.sort_by(|a, b| {
            let (la, lb) = (&self.links[*a], &self.links[*b]);
            la.to
                .cmp(&lb.to)
                .then(self.nodes[la.from].y.total_cmp(&self.nodes[lb.from].y))
        });
        let mut in_pos = vec![0.0; self.links.len()];
        for i in order {
            let l = &self.links[i];
            in_pos[i] = in_off[l.to];
            in_off[l.to] += l.value * k;
        }
        for (i, l) in self.links.iter().enumerate() {
            let (s, t) = (&self.nodes[l.from], &self.nodes[l.to]);
            let xs = cols[s.col] + NODE_W;
            let xt = cols[t.col];
            let th = (l.value * k).max(0.6);
            let ys = s.y + out_pos[i];
            let yt = t.y + in_pos[i];
            let xm = (xs + xt) / 2.0;
            let tip = format!(
                "{} → {}: {} ({} of the run)",
                s.label,
                t.label,
                mj(Some(l.value)),
                pct(l.value / self.base)
            );
            w!(
                h,
                "<path class=\"link\" fill=\"{}\" d=\"M{},{}C{},{} {},{} {},{}V{}C{},{} {},{} {},{}Z\"><title>{}</title></path>\n",
                l.colour,
                px(xs), px(ys), px(xm), px(ys), px(xm), px(yt), px(xt), px(yt),
                px(yt + th), px(xm), px(yt + th), px(xm), px(ys + th), px(xs), px(ys + th),
                esc(&tip)
            );
        }
        for n in &self.nodes {
            let x = cols[n.col];
            let tip = format!(
                "{}: {} ({} of the run)\n{}",
                n.label,
                mj(Some(n.value)),
                pct(n.value / self.base),
                n.detail
            );
            w!(
                h,
                "<rect class=\"mark\" x=\"{}\" y=\"{}\" width=\"{NODE_W}\" height=\"{}\" fill=\"{}\"><title>{}</title></rect>\n",
                px(x), px(n.y), px(n.h), n.colour, esc(&tip)
            );
            let ty = n.y + n.h / 2.0 + 4.0;
            w!(
                h,
                "<text class=\"label halo\" x=\"{}\" y=\"{}\"><tspan style=\"font-weight:600\">{}</tspan> {} mJ <tspan style=\"fill:#6b7280\">· {}</tspan></text>\n",
                px(x + NODE_W + 5.0),
                px(ty.min(height - 2.0)),
                esc(&n.label),
                num(n.value),
                pct(n.value / self.base)
            );
        }
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
