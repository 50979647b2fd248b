//! (a) The power timeline: the mean power of every measured domain (cpu, gpu, ane, dram)
//! and their total over the run, with the phases shaded behind the lines.
//!
//! Data: the run's power timeline ([`PowerRow`](crate::store::PowerRow)s, one per sample
//! and domain) and its pipeline sections of kind `phase`.

use std::fmt::Write as _;

use super::{card_open, empty_note, mean_mw, svg_open, x_axis, y_axis_title, Page, W};
use crate::report::format::{
    domain_colour, escape_html as esc, mj, num, phase_colour, px, text_width, ticks_from_zero,
    with_unit,
};
use crate::store::{PowerRow, Row, SectionRecord};

impl Page<'_> {
    pub(super) fn power_chart(&self, h: &mut String) {
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

        let phases: Vec<&Row<SectionRecord>> = self
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
}
