//! The energy flame graph of the HTML report: the run's energy per span path
//! ([`SpanRollup`] rows) as an inline SVG.
//!
//! Two steps:
//!
//! - [`Flame::build`] (pure data) makes a tree of the paths, one node per path and per
//!   prefix of a path (a prefix without a row of its own, e.g. `request` above
//!   `request;compute`, is a node with no energy of its own). A node's value is its own
//!   exclusive energy plus its descendants'; the layout gives every node an interval of
//!   `0..1` (its share of the total, nested in its parent's, siblings in order of
//!   decreasing value) and a row per depth.
//! - [`draw`] writes the SVG: the root (all spans) at the bottom and every span's children
//!   standing on it, one rectangle per node with a `<title>` tooltip (path, inclusive and
//!   exclusive energy, share, calls, busy time), the span's name as a label where the frame
//!   is wide enough, warm colours picked by a hash of the name (they only tell frames
//!   apart). Every text is escaped.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::format::{escape_html as esc, hash, mj, num, pct, px, text_width};
use crate::store::SpanRollup;

/// The section's description under its title.
pub(super) const DESCRIPTION: &str =
    "Where the energy went by span path (span names from the outermost). Each frame is a \
     path; its width is the energy of that path and everything under it (inclusive), as a \
     share of the energy attributed to spans. The root is at the bottom and each span's \
     children stand on it, the biggest first; colours only tell frames apart. Hover a frame \
     for its inclusive and exclusive energy, share and calls.";

/// One node of the flame graph: a span path and its place in the layout.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Frame {
    /// The whole path (`a;b;c`).
    pub path: String,
    /// Its last span name (`c`).
    pub name: String,
    /// 0 for the outermost spans.
    pub depth: usize,
    /// Whether the path has a rollup row of its own (a prefix of other paths may not).
    pub has_row: bool,
    /// Its own exclusive energy (mJ) as recorded; `None` without a row or when unknown.
    pub exclusive_mj: Option<f64>,
    /// Its own exclusive energy (0 when unknown or negative) plus its descendants' (mJ).
    pub value_mj: f64,
    /// Span instances counted; `None` without a row.
    pub calls: Option<u64>,
    /// Time entered, summed (ms); `None` without a row.
    pub busy_ms: Option<f64>,
    /// Its interval on the horizontal axis, in `0..=1`.
    pub x0: f64,
    /// The interval's end.
    pub x1: f64,
}

/// The laid-out flame graph.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Flame {
    /// Parents before their children, siblings by decreasing value (depth-first).
    pub frames: Vec<Frame>,
    /// The sum of all the paths' exclusive energies (mJ): the root's width.
    pub total_mj: f64,
    /// Rows of frames (the deepest depth + 1; 0 when there are none).
    pub depths: usize,
    /// Whether any row has a known exclusive energy.
    pub energy_known: bool,
}

/// A tree node while building.
struct Node {
    path: String,
    name: String,
    depth: usize,
    parent: Option<usize>,
    children: Vec<usize>,
    row: Option<(Option<f64>, u64, f64)>,
    value: f64,
}

impl Flame {
    /// Builds the tree of `rows` and lays it out (see the [module docs](self)).
    pub fn build(rows: &[SpanRollup]) -> Flame {
        let mut nodes: Vec<Node> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut roots: Vec<usize> = Vec::new();
        for r in rows {
            let mut parent: Option<usize> = None;
            let mut end = 0;
            let names: Vec<&str> = r.path.split(';').collect();
            for (depth, name) in names.iter().enumerate() {
                end += name.len() + usize::from(depth > 0);
                let prefix = &r.path[..end];
                let i = match index.get(prefix) {
                    Some(&i) => i,
                    None => {
                        let i = nodes.len();
                        nodes.push(Node {
                            path: prefix.to_string(),
                            name: (*name).to_string(),
                            depth,
                            parent,
                            children: Vec::new(),
                            row: None,
                            value: 0.0,
                        });
                        index.insert(prefix.to_string(), i);
                        match parent {
                            Some(p) => nodes[p].children.push(i),
                            None => roots.push(i),
                        }
                        i
                    }
                };
                parent = Some(i);
            }
            let last = parent.expect("a path has at least one name");
            let (excl, calls, busy) = nodes[last].row.unwrap_or((None, 0, 0.0));
            let excl = match (excl, r.exclusive_energy_mj) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            nodes[last].row = Some((excl, calls + r.calls, busy + r.busy_ms));
        }
        // Children are created after their parents: add values up from the last node.
        for i in (0..nodes.len()).rev() {
            let own = nodes[i]
                .row
                .and_then(|r| r.0)
                .filter(|v| v.is_finite())
                .unwrap_or(0.0)
                .max(0.0);
            nodes[i].value += own;
            if let Some(p) = nodes[i].parent {
                let v = nodes[i].value;
                nodes[p].value += v;
            }
        }
        let total: f64 = roots.iter().map(|&i| nodes[i].value).sum();
        let mut frames = Vec::with_capacity(nodes.len());
        lay_out(&nodes, &roots, 0.0, total, &mut frames);
        Flame {
            depths: frames.iter().map(|f| f.depth + 1).max().unwrap_or(0),
            energy_known: rows.iter().any(|r| r.exclusive_energy_mj.is_some()),
            total_mj: total,
            frames,
        }
    }
}

/// Lays out `siblings` from `x` on, biggest first, and their children inside them.
fn lay_out(nodes: &[Node], siblings: &[usize], mut x: f64, total: f64, out: &mut Vec<Frame>) {
    let mut order = siblings.to_vec();
    order.sort_by(|&a, &b| {
        nodes[b]
            .value
            .total_cmp(&nodes[a].value)
            .then_with(|| nodes[a].name.cmp(&nodes[b].name))
    });
    for i in order {
        let n = &nodes[i];
        let width = if total > 0.0 { n.value / total } else { 0.0 };
        out.push(Frame {
            path: n.path.clone(),
            name: n.name.clone(),
            depth: n.depth,
            has_row: n.row.is_some(),
            exclusive_mj: n.row.and_then(|r| r.0),
            value_mj: n.value,
            calls: n.row.map(|r| r.1),
            busy_ms: n.row.map(|r| r.2),
            x0: x,
            x1: x + width,
        });
        lay_out(nodes, &n.children, x, total, out);
        x += width;
    }
}

/// The width of the flame graph's `viewBox`.
const W: f64 = 960.0;
/// Left and right margin.
const MARGIN: f64 = 8.0;
/// The height of a row of frames.
const ROW: f64 = 21.0;
/// Frames narrower than this (px) are not drawn.
const MIN_WIDTH: f64 = 0.4;

/// Writes the flame graph of `rows` (an inline `<svg>`), or a short note saying why there
/// is none. `run_total_mj` is the run's measured energy, for shares of the run.
pub(super) fn draw(h: &mut String, rows: &[SpanRollup], run_total_mj: Option<f64>) {
    let flame = Flame::build(rows);
    let note = if rows.is_empty() {
        Some(
            "No span paths were recorded for this run (it had no spans, or it was recorded \
             by a version that did not keep span paths).",
        )
    } else if !flame.energy_known {
        Some(
            "Energy unknown: the run was recorded without a power source, so its span paths \
             have no energy to show. Profile with a power source (e.g. --power estimate) for \
             a flame graph.",
        )
    } else if flame.total_mj <= 0.0 {
        Some("The span paths of this run used no measurable energy.")
    } else {
        None
    };
    if let Some(note) = note {
        w!(
            h,
            "<p class=\"unknown\" id=\"flame-note\">{}</p>\n",
            esc(note)
        );
        return;
    }
    let run_total = run_total_mj.filter(|t| t.is_finite() && *t > 0.0);
    let top = 6.0;
    let root_y = top + flame.depths as f64 * ROW;
    let height = root_y + ROW + 6.0;
    let span = W - 2.0 * MARGIN;
    w!(
        h,
        "<svg class=\"chart flame\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\" preserveAspectRatio=\"xMidYMin meet\">\n",
        px(W),
        px(height),
        esc("Flame graph of the energy per span path")
    );
    // The root: all span paths together.
    let mut tip = format!(
        "all span paths\ninclusive: {} attributed to spans",
        mj(Some(flame.total_mj))
    );
    if let Some(t) = run_total {
        let _ = write!(
            tip,
            "\nshare: {} of the run's measured energy ({})",
            pct(flame.total_mj / t),
            mj(Some(t))
        );
    }
    frame_rect(h, MARGIN, root_y, span, "#c9ccd1", &tip);
    label(
        h,
        MARGIN,
        root_y,
        span,
        &format!("all spans · {}", mj(Some(flame.total_mj))),
    );
    let mut hidden = 0usize;
    for f in &flame.frames {
        let width = (f.x1 - f.x0) * span;
        if f.value_mj <= 0.0 {
            continue;
        }
        if width < MIN_WIDTH {
            hidden += 1;
            continue;
        }
        let x = MARGIN + f.x0 * span;
        let y = root_y - (f.depth as f64 + 1.0) * ROW;
        frame_rect(
            h,
            x,
            y,
            width,
            &colour(&f.name),
            &tooltip(f, &flame, run_total),
        );
        label(h, x, y, width, &f.name);
    }
    h.push_str("</svg>\n");
    if hidden > 0 {
        w!(
            h,
            "<p class=\"desc\">{hidden} path{} too narrow to draw (under {} of the span energy).</p>\n",
            if hidden == 1 { " is" } else { "s are" },
            pct(MIN_WIDTH / span)
        );
    }
}

/// A frame: `width` less a 1 px gap (where it is wider than 2 px) so that neighbours of the
/// same colour stay apart.
fn frame_rect(h: &mut String, x: f64, y: f64, width: f64, fill: &str, tip: &str) {
    let width = if width > 2.0 { width - 1.0 } else { width };
    w!(
        h,
        "<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"2\" fill=\"{fill}\"><title>{}</title></rect>\n",
        px(x),
        px(y),
        px(width),
        px(ROW - 1.5),
        esc(tip)
    );
}

/// The frame's name, shortened to fit, where at least three characters fit.
fn label(h: &mut String, x: f64, y: f64, width: f64, text: &str) {
    const SIZE: f64 = 12.0;
    let room = width - 8.0;
    let text = if text_width(text, SIZE) <= room {
        text.to_string()
    } else {
        let fit = (room / text_width("m", SIZE)).floor() as usize;
        if fit < 3 {
            return;
        }
        let cut: String = text.chars().take(fit - 1).collect();
        format!("{cut}…")
    };
    w!(
        h,
        "<text class=\"label\" x=\"{}\" y=\"{}\" pointer-events=\"none\">{}</text>\n",
        px(x + 4.0),
        px(y + ROW / 2.0 + 3.5),
        esc(&text)
    );
}

/// A frame's tooltip: path, inclusive and exclusive energy, share, calls and busy time.
fn tooltip(f: &Frame, flame: &Flame, run_total: Option<f64>) -> String {
    let exclusive = if f.has_row {
        mj(f.exclusive_mj)
    } else {
        "none (no span of its own: only spans under it)".into()
    };
    let share = match run_total {
        Some(t) => format!("{} of the run's measured energy", pct(f.value_mj / t)),
        None => format!(
            "{} of the energy attributed to spans",
            pct(f.value_mj / flame.total_mj)
        ),
    };
    let calls = match (f.calls, f.busy_ms) {
        (Some(c), Some(b)) => format!("calls: {c} · busy {} ms", num(b)),
        _ => "calls: none of its own".into(),
    };
    format!(
        "{}\ninclusive: {}\nexclusive: {exclusive}\nshare: {share}\n{calls}",
        f.path,
        mj(Some(f.value_mj))
    )
}

/// A warm colour (red to yellow) picked by a hash of the span name.
fn colour(name: &str) -> String {
    let h = hash(name) as u32;
    let (a, b, c) = (h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff);
    let r = 215 + a * 40 / 255;
    let g = 95 + b * 125 / 255;
    let bl = 30 + c * 50 / 255;
    format!("#{r:02x}{g:02x}{bl:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, calls: u64, exclusive: Option<f64>) -> SpanRollup {
        SpanRollup {
            path: path.into(),
            calls,
            busy_ms: calls as f64,
            energy_mj: exclusive,
            exclusive_energy_mj: exclusive,
        }
    }

    fn frame<'a>(f: &'a Flame, path: &str) -> &'a Frame {
        f.frames
            .iter()
            .find(|x| x.path == path)
            .unwrap_or_else(|| panic!("no frame {path}"))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// `request` has no row of its own; `idle` has an unknown energy.
    fn sample() -> Vec<SpanRollup> {
        vec![
            row("request;handle;compute", 4, Some(60.0)),
            row("request;handle", 2, Some(10.0)),
            row("request;parse", 2, Some(20.0)),
            row("flush", 1, Some(10.0)),
            row("idle", 1, None),
        ]
    }

    #[test]
    fn values_add_up() {
        let f = Flame::build(&sample());
        assert_eq!(f.total_mj, 100.0);
        assert!(f.energy_known);
        assert_eq!(f.depths, 3);
        assert_eq!(frame(&f, "request").value_mj, 90.0);
        assert_eq!(frame(&f, "request;handle").value_mj, 70.0);
        assert_eq!(frame(&f, "request;handle;compute").value_mj, 60.0);
        assert_eq!(frame(&f, "idle").value_mj, 0.0);
        // A node's value is its own exclusive energy plus its children's values.
        for p in &f.frames {
            let children: f64 = f
                .frames
                .iter()
                .filter(|c| c.depth == p.depth + 1 && c.path.starts_with(&format!("{};", p.path)))
                .map(|c| c.value_mj)
                .sum();
            assert!(
                close(p.value_mj, p.exclusive_mj.unwrap_or(0.0) + children),
                "{}",
                p.path
            );
        }
        let roots: f64 = f
            .frames
            .iter()
            .filter(|x| x.depth == 0)
            .map(|x| x.value_mj)
            .sum();
        assert_eq!(roots, f.total_mj);
    }

    #[test]
    fn missing_prefixes_become_nodes() {
        let f = Flame::build(&sample());
        let request = frame(&f, "request");
        assert!(!request.has_row);
        assert_eq!((request.exclusive_mj, request.calls), (None, None));
        assert_eq!((request.name.as_str(), request.depth), ("request", 0));
        let handle = frame(&f, "request;handle");
        assert!(handle.has_row);
        assert_eq!((handle.calls, handle.exclusive_mj), (Some(2), Some(10.0)));
        let idle = frame(&f, "idle");
        assert!(idle.has_row && idle.exclusive_mj.is_none());
        assert_eq!(f.frames.len(), 6);
        // Deep paths with no row on the way: every prefix is there, once.
        let f = Flame::build(&[row("a;b;c;d", 1, Some(1.0)), row("a;b;x", 1, Some(1.0))]);
        let paths: Vec<&str> = f.frames.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(paths, ["a", "a;b", "a;b;c", "a;b;c;d", "a;b;x"]);
        assert_eq!(frame(&f, "a;b").value_mj, 2.0);
    }

    #[test]
    fn layout_is_proportional_nested_and_ordered() {
        let f = Flame::build(&sample());
        for x in &f.frames {
            assert!(close(x.x1 - x.x0, x.value_mj / f.total_mj), "{}", x.path);
        }
        // Roots from 0, biggest first, back to back up to 1.
        let roots: Vec<&Frame> = f.frames.iter().filter(|x| x.depth == 0).collect();
        let names: Vec<&str> = roots.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["request", "flush", "idle"]);
        assert_eq!(roots[0].x0, 0.0);
        assert!(close(roots[0].x1, 0.9) && close(roots[1].x0, 0.9));
        assert!(close(roots[2].x1, 1.0));
        // Children sit inside their parent, biggest first from its start.
        let handle = frame(&f, "request;handle");
        let parse = frame(&f, "request;parse");
        assert_eq!(handle.x0, 0.0);
        assert!(close(parse.x0, 0.7) && close(parse.x1, 0.9));
        let compute = frame(&f, "request;handle;compute");
        assert!(compute.x0 >= handle.x0 && compute.x1 <= handle.x1 + 1e-12);
    }

    #[test]
    fn negative_and_unknown_energy_count_as_nothing() {
        let f = Flame::build(&[row("a", 1, Some(-0.5)), row("a;b", 1, Some(2.0))]);
        assert_eq!(frame(&f, "a").value_mj, 2.0);
        assert_eq!(f.total_mj, 2.0);
        let f = Flame::build(&[row("a", 1, None), row("a;b", 1, None)]);
        assert!(!f.energy_known);
        assert_eq!(f.total_mj, 0.0);
        assert!(f.frames.iter().all(|x| x.x0 == 0.0 && x.x1 == 0.0));
        let f = Flame::build(&[]);
        assert_eq!((f.frames.len(), f.depths, f.total_mj), (0, 0, 0.0));
    }

    #[test]
    fn draws_escaped_frames_or_a_note() {
        let mut rows = sample();
        rows.push(row("request;<script>x</script>", 1, Some(5.0)));
        let mut h = String::new();
        draw(&mut h, &rows, Some(200.0));
        assert!(h.starts_with("<svg class=\"chart flame\""));
        // The root and one rect per frame with energy (idle has none: not drawn).
        assert_eq!(h.matches("<rect class=\"frame\"").count(), 1 + 6);
        assert_eq!(h.matches("<title>").count(), 7);
        assert!(h.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!h.contains("<script"));
        assert!(h.contains("request;handle;compute\ninclusive: 60.0 mJ\nexclusive: 60.0 mJ"));
        assert!(h.contains("share: 30 % of the run&#39;s measured energy"));
        assert!(h.contains("none (no span of its own"));
        assert!(h.contains(">compute</text>"));
        for (rows, needle) in [
            (vec![], "No span paths"),
            (vec![row("a", 1, None)], "--power estimate"),
            (vec![row("a", 1, Some(0.0))], "no measurable energy"),
        ] {
            let mut h = String::new();
            draw(&mut h, &rows, None);
            assert!(h.contains(needle) && !h.contains("<svg"), "{h}");
            assert!(!h.contains(" 0 mJ"));
        }
    }

    #[test]
    fn colours_are_warm_and_stable() {
        for name in ["a", "attention", "q_proj", ""] {
            let c = colour(name);
            assert_eq!(c, colour(name));
            assert_eq!(c.len(), 7);
            let r = u8::from_str_radix(&c[1..3], 16).unwrap();
            assert!(r >= 215, "{c}");
        }
    }
}
