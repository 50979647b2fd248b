//! (e) The hottest (layer, component) pairs: horizontal bars of their energy, with their
//! share of the run's energy.
//!
//! Data: the run summary's hottest list
//! ([`RunSummary::hottest`](crate::store::RunSummary::hottest)).

use std::fmt::Write as _;

use super::{card_open, empty_note, svg_open, Page, W};
use crate::report::format::{
    component_colour, escape_html as esc, mj, num, pct, px, ticks_from_zero,
};

impl Page<'_> {
    pub(super) fn hottest_chart(&self, h: &mut String) {
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
}
