//! The top of the page: the title header (run, model, status), the banners (estimated
//! energy, unknown energy, a run that did not complete), the key-figure cards (total,
//! attributed and unattributed energy, duration, tokens, energy per generated token, mean
//! power) and the metadata table (model, prompt, response, tags, experiment, host, crate
//! version, times, power source, sample interval).
//!
//! Data: the [`Run`](crate::store::Run) row, its [`RunSummary`](crate::store::RunSummary)
//! and the token rows.

use std::fmt::Write as _;

use super::{sum_known, unknown_span, Page};
use crate::report::format::{escape_html as esc, mj, num, pct, with_unit};
use crate::store::{Row, TokenRecord, NO_BASELINE};

impl Page<'_> {
    pub(super) fn header(&self, h: &mut String) {
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

    pub(super) fn banners(&self, h: &mut String) {
        let run = self.run;
        if run.estimated {
            w!(
                h,
                "<div class=\"banner estimated\" role=\"note\" id=\"estimated-banner\">\
                 <strong class=\"head\">⚠ ESTIMATED ENERGY: NOT MEASURED</strong>\
                 Every energy and power figure on this page was <b>estimated</b> by the power \
                 source <b>{}</b>, not read from a power sensor. The CPU-time estimate follows \
                 CPU time: comparisons between sections of this run are meaningful, absolute \
                 millijoules can be off by a large factor.{}</div>\n",
                esc(run.power_source.as_deref().unwrap_or("unknown")),
                run.power_method
                    .as_deref()
                    .map(|m| format!(" Model: {}.", esc(m)))
                    .unwrap_or_default()
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

    pub(super) fn kpis(&self, h: &mut String) {
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
        // The figure above the idle baseline, for a card's note.
        let above_idle = |gross: Option<f64>, over_ms: f64| match (&run.baseline, gross) {
            (Some(b), Some(g)) => format!("; {} mJ above idle", num(b.dynamic_mj(g, over_ms))),
            (None, Some(_)) => format!("; {NO_BASELINE}"),
            _ => String::new(),
        };
        card(
            &format!("total energy{est}"),
            unknown_span(mj(total)),
            match total {
                Some(_) => format!(
                    "measured over the run's window{}",
                    match (&run.baseline, run.dynamic_total_energy_mj) {
                        (Some(_), Some(d)) => format!("; {} mJ above idle", num(d)),
                        _ => above_idle(None, 0.0),
                    }
                ),
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
                    "{} ms per token ({} tokens/s){}",
                    num(decode_ms / decode.len() as f64),
                    num(decode.len() as f64 / (decode_ms / 1000.0).max(1e-9)),
                    above_idle(
                        decode_energy.map(|e| e / decode.len() as f64),
                        decode_ms / decode.len() as f64
                    )
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
                    "{} prompt tokens in {} ms{}",
                    p.record.n_tokens,
                    num(p.duration_ms),
                    above_idle(
                        p.record
                            .measured
                            .energy_mj
                            .map(|e| e / p.record.n_tokens.max(1) as f64),
                        p.duration_ms / p.record.n_tokens.max(1) as f64
                    )
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
        if let Some(cost) = &run.profiler {
            card(
                "profiler's own cost",
                match (cost.share_of_process(), cost.total_ms()) {
                    (Some(share), _) => format!("{:.1} % of CPU", share * 100.0),
                    (None, Some(ms)) => format!("{} s CPU", num(ms / 1e3)),
                    (None, None) => unknown_span("unknown".into()),
                },
                "its threads' CPU time and the hot path's, of the process's".into(),
            );
        }
        h.push_str("</div>\n");
    }

    pub(super) fn metadata(&self, h: &mut String) {
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
        if let Some(method) = &run.power_method {
            // Where the numbers come from: the estimate's watts and their origin, or the
            // sensor's method.
            row("power method", esc(method));
        }
        row(
            "idle baseline",
            match (&run.baseline, &run.power_source) {
                (Some(b), _) => format!(
                    "{} · above idle (dynamic) total {}: gross less the idle power over the \
                     time; negative where a part drew less than idle",
                    esc(&b.describe()),
                    run.dynamic_total_energy_mj.map_or_else(
                        || "<span class=\"unknown\">unknown</span>".into(),
                        |d| format!("{} mJ", num(d))
                    )
                ),
                (None, Some(_)) => format!(
                    "<span class=\"unknown\">{}</span>: figures are gross",
                    crate::store::NO_BASELINE
                ),
                (None, None) => "<span class=\"unknown\">none</span>".into(),
            },
        );
        row(
            "profiler's own cost",
            match &run.profiler {
                Some(cost) => esc(&cost.describe()),
                None => "<span class=\"unknown\">not measured</span>".into(),
            },
        );
        if let Some(p) = run.profiler.as_ref().and_then(|c| c.sampler_process) {
            row(crate::store::SamplerProcessCost::LABEL, esc(&p.describe()));
        }
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
}
