//! (b) The energy of every token row: one bar per row, prefill and decode in their own
//! colours, with the attribution's uncertainty as whiskers and a break mark on bars taller
//! than the axis.
//!
//! Data: the run's token rows ([`TokenRecord`](crate::store::TokenRecord)s).

use std::fmt::Write as _;

use super::{card_open, empty_note, mean_mw, sum_known, svg_open, y_axis_title, Page, W};
use crate::report::format::{
    escape_html as esc, mj, num, phase_colour, px, ticks_from_zero, with_unit,
};
use crate::store::{Row, TokenRecord};

impl Page<'_> {
    pub(super) fn token_chart(&self, h: &mut String) {
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
                crate::report::format::nice_step(n as f64, 12).max(1.0) as usize
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
}
