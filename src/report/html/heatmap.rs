//! (c) The heatmap of the mean energy per token of every layer x component kind, one
//! panel per token phase (model-level components such as `output` and `final_norm` in a
//! `model` row), each panel with its own colour scale.
//!
//! Data: the component rows summed per (phase, layer, component)
//! ([`ComponentGroup`](crate::report::run_data::ComponentGroup)).

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{card_open, empty_note, svg_open, Page, W};
use crate::report::format::{
    component_colour, escape_html as esc, heat_colour, heat_text_light, mj, num, phase_colour, px,
    text_width,
};
use crate::report::run_data::ComponentGroup;

impl Page<'_> {
    pub(super) fn heatmap(&self, h: &mut String) {
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
}
