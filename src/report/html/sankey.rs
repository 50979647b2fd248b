//! (d) The sankey of the run's energy: run → phases → layers (the hottest
//! [`SANKEY_TOP_LAYERS`] on their own, the others grouped) → component kinds.
//!
//! Data: the token rows (energy per phase), the layer rows summed per (phase, layer)
//! ([`LayerGroup`](crate::report::run_data::LayerGroup)) and the component rows summed per
//! (phase, layer, component) ([`ComponentGroup`](crate::report::run_data::ComponentGroup)).
//!
//! Two steps: [`Flow::build`] computes the flows (nodes and links, in mJ) from the data, and
//! [`Flow::layout`] and [`Flow::draw`] place and draw them.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::{card_open, empty_note, sum_known, svg_open, Page, W};
use crate::report::format::{component_colour, escape_html as esc, mj, num, pct, phase_colour, px};

/// How many layers the sankey shows on their own; the others are grouped.
const SANKEY_TOP_LAYERS: usize = 8;

impl Page<'_> {
    pub(super) fn sankey(&self, h: &mut String) {
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
}

// -------------------------------------------------------------------- the flows (data)

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
    /// The data step: the flows of the run's energy (nodes and links, in mJ) from the
    /// page's token, layer and component rows; `None` when there is no energy to divide.
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

    // ---------------------------------------------------------------- drawing

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
