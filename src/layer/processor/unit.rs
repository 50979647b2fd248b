//! Units: a token span (or a forward pass outside one) and everything inside it, rebuilt as
//! a tree from the thread's records and grouped into token, layer, component and operation
//! rows (see the [`crate::layer::Vocabulary`] for how candle's spans are read).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use super::instances::Instances;
use super::rows::{measured, Rows};
use crate::attribution::SectionEnergy;
use crate::layer::hot::{SectionRecord, SpanData};
use crate::layer::vocabulary::{matmul_name, rope_name};
use crate::layer::Role;
use crate::store::{ComponentRecord, LayerRecord, Measured, OperationRecord, TokenRecord};

/// One section of a unit's tree.
pub(crate) struct Node {
    pub(crate) data: Option<Arc<SpanData>>,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) thread: u32,
    pub(crate) energy: SectionEnergy,
    pub(crate) children: Vec<usize>,
}

impl Node {
    fn role(&self) -> Role {
        self.data.as_ref().map_or(Role::Generic, |d| d.role.clone())
    }
    fn name(&self) -> &'static str {
        self.data.as_ref().map_or("unknown", |d| d.name)
    }
    fn serial(&self) -> Option<u64> {
        self.data.as_ref().map(|d| d.serial)
    }
    /// The node's row figures: exclusive energy is inclusive less `children_mj`.
    fn measured(&self, children_mj: f64) -> Measured {
        measured(
            self.start,
            self.end,
            self.thread,
            &self.energy,
            self.energy.total_mj.map(|t| t - children_mj),
            self.serial(),
        )
    }
}

/// A record inside a unit, with its span's data (looked up when the record came).
pub(crate) type InUnit = (SectionRecord, Option<Arc<SpanData>>);

/// A unit's sections as a tree; the last node is the unit.
pub(crate) struct Tree {
    pub(crate) nodes: Vec<Node>,
}

impl Tree {
    /// Rebuilds the tree from the records inside the unit (in the order the thread ended
    /// them, children before parents) and the unit's own record, each made a node by
    /// `node`. A record whose parent is missing (exited out of order) becomes a child of
    /// the unit.
    pub(crate) fn build(
        inside: &[InUnit],
        unit: &InUnit,
        mut node: impl FnMut(&InUnit) -> Node,
    ) -> Tree {
        let unit_depth = unit.0.depth;
        let base = unit_depth as usize;
        let mut nodes = Vec::with_capacity(inside.len() + 1);
        // Finished nodes waiting for their parent, per depth below the unit.
        let mut waiting: Vec<Vec<usize>> = Vec::new();
        for r in inside {
            let level = (r.0.depth as usize).saturating_sub(base).max(1);
            if waiting.len() <= level + 1 {
                waiting.resize_with(level + 2, Vec::new);
            }
            let mut n = node(r);
            n.children = std::mem::take(&mut waiting[level + 1]);
            nodes.push(n);
            waiting[level].push(nodes.len() - 1);
        }
        let mut root = node(unit);
        root.children = waiting
            .iter_mut()
            .skip(1)
            .flat_map(std::mem::take)
            .collect();
        root.children.sort_by_key(|&c| nodes[c].start);
        nodes.push(root);
        Tree { nodes }
    }

    pub(crate) fn root(&self) -> usize {
        self.nodes.len() - 1
    }
}

/// Span paths of the rows a unit writes, made once each.
#[derive(Default)]
pub(crate) struct Paths {
    cache: HashMap<String, Arc<str>>,
    buf: String,
}

impl Paths {
    fn get(&mut self, parent: &str, leaf: &str) -> Arc<str> {
        self.buf.clear();
        let _ = write!(self.buf, "{parent};{leaf}");
        if let Some(p) = self.cache.get(self.buf.as_str()) {
            return Arc::clone(p);
        }
        let p: Arc<str> = Arc::from(self.buf.as_str());
        self.cache.insert(self.buf.clone(), Arc::clone(&p));
        p
    }
}

/// Writes one unit's rows.
pub(crate) struct Writer<'a> {
    pub(crate) tree: &'a Tree,
    pub(crate) token: u64,
    pub(crate) rows: &'a mut Rows,
    pub(crate) instances: &'a mut Instances,
    pub(crate) paths: &'a mut Paths,
    /// The energy of a stretch of a thread (a grouped layer is no span).
    pub(crate) energy: &'a dyn Fn(u32, u64, u64) -> SectionEnergy,
}

fn component_kind(role: &Role, name: &str) -> String {
    match role {
        Role::Component(k) => k.clone(),
        Role::Norm => "norm".into(),
        Role::Op(o) => o.clone(),
        _ => name.to_string(),
    }
}

fn incl(e: &SectionEnergy) -> f64 {
    e.total_mj.unwrap_or(0.0)
}

impl Writer<'_> {
    /// Writes the token row and everything under it; returns the unit's inclusive energy.
    pub(crate) fn token(&mut self, phase: String) -> SectionEnergy {
        let tree = self.tree;
        let root = tree.root();
        let n = &tree.nodes[root];
        let fields = n.data.as_ref().map(|d| d.fields.lock());
        let get = |k: &str| fields.as_ref().and_then(|f| f.get(k).cloned());
        let n_tokens = get("prompt_tokens")
            .or_else(|| get("n_tokens"))
            .and_then(|v| v.as_u64())
            .unwrap_or(1) as u32;
        let text = get("text").map(|v| v.as_text());
        let token_id = get("token_id")
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok());
        drop(fields);
        let unit_path: Arc<str> = n
            .data
            .as_ref()
            .map_or_else(|| Arc::from("unit"), |d| Arc::clone(&d.path));
        // A forward pass is not a row of its own: its layers and model-level components are
        // the token's children, and its own glue (embedding, masks) stays in the token's
        // exclusive energy. All are grouped together, so layers count up across the token.
        let tops: Vec<usize> = if matches!(n.role(), Role::Forward) {
            vec![root]
        } else {
            n.children.clone()
        };
        let mut level = Vec::new();
        for c in tops {
            if matches!(tree.nodes[c].role(), Role::Forward) {
                level.extend(tree.nodes[c].children.iter().copied());
            } else {
                level.push(c);
            }
        }
        let child_incl = self.layers(&level, &unit_path);
        let m = n.measured(child_incl);
        self.rows.count(&unit_path, &m, m.duration_ms());
        self.rows.tokens.push(TokenRecord {
            token_index: self.token,
            phase,
            n_tokens,
            token_id,
            text,
            measured: m,
        });
        // A token-yielding phase (`prefill`) also gets its phase row, whose energy is all
        // in its token row (exclusive 0).
        if let Some(d) = n.data.as_ref().filter(|d| d.row) {
            self.instances
                .add_poll(d, n.thread, n.start, n.end, &n.energy, Some(0.0), true);
        }
        n.energy
    }

    /// Groups a token's layer-level sections into layers and writes them; anything else
    /// becomes a model-level component or a generic section. Returns the inclusive energy
    /// written.
    fn layers(&mut self, children: &[usize], unit: &Arc<str>) -> f64 {
        let tree = self.tree;
        let mut sorted = children.to_vec();
        sorted.sort_by_key(|&c| tree.nodes[c].start);
        let roles: Vec<Role> = sorted.iter().map(|&c| tree.nodes[c].role()).collect();
        let is_attention = |r: &Role| matches!(r, Role::Component(k) if k == "attention");
        let is_mlp = |r: &Role| matches!(r, Role::Component(k) if k == "mlp");
        let (mut total, mut next_layer, mut model_level) = (0.0, 0u32, 1000u32);
        let mut current: Vec<(usize, String)> = Vec::new();
        for (i, &c) in sorted.iter().enumerate() {
            let role = &roles[i];
            let node = &tree.nodes[c];
            let starts_layer = (matches!(role, Role::Norm)
                && roles.get(i + 1).is_some_and(is_attention))
                || (is_attention(role) && current.is_empty());
            match role {
                Role::Layer(idx) => {
                    let layer = idx.unwrap_or(next_layer);
                    next_layer = layer + 1;
                    let comps = node
                        .children
                        .iter()
                        .map(|&k| {
                            let kn = &tree.nodes[k];
                            (k, component_kind(&kn.role(), kn.name()))
                        })
                        .collect();
                    total += self.layer(layer, Some(c), comps, unit);
                }
                _ if starts_layer
                    || (!current.is_empty() && (is_attention(role) || is_mlp(role))) =>
                {
                    current.push((c, component_kind(role, node.name())));
                    if is_mlp(role) {
                        let layer = next_layer;
                        next_layer += 1;
                        total += self.layer(layer, None, std::mem::take(&mut current), unit);
                    }
                }
                Role::Norm | Role::Component(_) | Role::Matmul | Role::Op(_) | Role::Rope => {
                    // A model-level component: the final norm, the output head, ...
                    let kind = match role {
                        Role::Norm => "final_norm".to_string(),
                        _ => component_kind(role, node.name()),
                    };
                    let path = self.paths.get(unit, &kind);
                    total += self.component(None, model_level, c, &kind, &path);
                    model_level += 1;
                }
                _ => total += self.generic(c),
            }
        }
        // An unfinished layer (no mlp seen): still written.
        if !current.is_empty() {
            total += self.layer(next_layer, None, current, unit);
        }
        total
    }

    /// Writes a layer: a `layer`/`block` span (`span`), or components grouped by position.
    fn layer(
        &mut self,
        layer: u32,
        span: Option<usize>,
        comps: Vec<(usize, String)>,
        unit: &Arc<str>,
    ) -> f64 {
        let tree = self.tree;
        let (s, e, thread, energy, span_id) = match span {
            Some(c) => {
                let n = &tree.nodes[c];
                (n.start, n.end, n.thread, n.energy, n.serial())
            }
            None => {
                let first = &tree.nodes[comps[0].0];
                let last = &tree.nodes[comps.last().expect("non-empty").0];
                let en = (self.energy)(first.thread, first.start, last.end);
                (first.start, last.end, first.thread, en, None)
            }
        };
        let layer_path = self.paths.get(unit, "layer");
        let mut children = 0.0;
        for (i, (c, kind)) in comps.iter().enumerate() {
            let path = self.paths.get(&layer_path, kind);
            children += self.component(Some(layer), i as u32, *c, kind, &path);
        }
        let m = measured(
            s,
            e,
            thread,
            &energy,
            energy.total_mj.map(|t| t - children),
            span_id,
        );
        self.rows.count(&layer_path, &m, m.duration_ms());
        self.rows.layers.push(LayerRecord {
            token_index: self.token,
            layer_index: layer,
            measured: m,
        });
        incl(&energy)
    }

    fn component(
        &mut self,
        layer: Option<u32>,
        index: u32,
        c: usize,
        kind: &str,
        path: &Arc<str>,
    ) -> f64 {
        let tree = self.tree;
        let n = &tree.nodes[c];
        let mut sorted = n.children.clone();
        sorted.sort_by_key(|&k| tree.nodes[k].start);
        let (mut matmuls, mut ropes) = (0usize, 0usize);
        let mut children = 0.0;
        for (i, &k) in sorted.iter().enumerate() {
            let cn = &tree.nodes[k];
            let operation = match cn.role() {
                Role::Matmul => {
                    matmuls += 1;
                    matmul_name(kind, matmuls - 1)
                        .map_or_else(|| format!("matmul{}", matmuls - 1), str::to_string)
                }
                Role::Rope => {
                    ropes += 1;
                    rope_name(ropes - 1).to_string()
                }
                Role::Norm => if kind == "mlp" { "ffn_norm" } else { "norm" }.to_string(),
                Role::Op(name) => name,
                _ => cn.name().to_string(),
            };
            // Spans nested inside an operation are kept as generic sections.
            let nested: f64 = cn.children.iter().map(|&g| self.generic(g)).sum();
            let m = cn.measured(nested);
            let op_path = self.paths.get(path, &operation);
            self.rows.count(&op_path, &m, m.duration_ms());
            self.rows.ops.push(OperationRecord {
                token_index: self.token,
                layer_index: layer,
                component_index: index,
                op_index: i as u32,
                operation,
                name: cn.name().to_string(),
                measured: m,
            });
            children += incl(&cn.energy);
        }
        let m = n.measured(children);
        self.rows.count(path, &m, m.duration_ms());
        self.rows.components.push(ComponentRecord {
            token_index: self.token,
            layer_index: layer,
            component_index: index,
            component: kind.to_string(),
            name: n.name().to_string(),
            measured: m,
        });
        incl(&n.energy)
    }

    /// A section inside a unit that is no token part: a poll of its span instance, with its
    /// subtree. Returns its inclusive energy.
    fn generic(&mut self, c: usize) -> f64 {
        let tree = self.tree;
        let n = &tree.nodes[c];
        let children: f64 = n.children.iter().map(|&k| self.generic(k)).sum();
        if let Some(d) = &n.data {
            let exclusive = n.energy.total_mj.map(|t| t - children);
            self.instances
                .add_poll(d, n.thread, n.start, n.end, &n.energy, exclusive, false);
        }
        incl(&n.energy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(serial: u64, depth: u16, start: u64, end: u64) -> InUnit {
        let r = SectionRecord {
            serial,
            parent: 0,
            phase: 0,
            thread: 0,
            depth,
            flags: 0,
            start_raw: start,
            end_raw: end,
        };
        (r, None)
    }

    fn node((r, _): &InUnit) -> Node {
        Node {
            data: None,
            start: r.start_raw,
            end: r.end_raw,
            thread: 0,
            energy: SectionEnergy::default(),
            children: Vec::new(),
        }
    }

    #[test]
    fn rebuilds_nesting_from_exit_order() {
        // unit(1) at depth 2 holds a(2) [holds x(4), y(5)] and b(3).
        let inside = [
            rec(4, 4, 11, 12),
            rec(5, 4, 13, 14),
            rec(2, 3, 10, 15),
            rec(3, 3, 16, 20),
        ];
        let tree = Tree::build(&inside, &rec(1, 2, 9, 21), node);
        let root = &tree.nodes[tree.root()];
        let starts: Vec<u64> = root.children.iter().map(|&c| tree.nodes[c].start).collect();
        assert_eq!(starts, [10, 16]);
        let a = &tree.nodes[root.children[0]];
        let a_kids: Vec<u64> = a.children.iter().map(|&c| tree.nodes[c].start).collect();
        assert_eq!(a_kids, [11, 13]);
        assert!(tree.nodes[root.children[1]].children.is_empty());
    }

    #[test]
    fn a_span_entered_twice_keeps_each_enter_apart() {
        // The same span (serial 7) entered twice under one parent: two children.
        let inside = [rec(7, 1, 1, 2), rec(7, 1, 3, 4)];
        let tree = Tree::build(&inside, &rec(1, 0, 0, 5), node);
        assert_eq!(tree.nodes[tree.root()].children.len(), 2);
    }

    #[test]
    fn orphans_deeper_down_become_children_of_the_unit() {
        // A record two levels down whose parent never ended (exited out of order).
        let inside = [rec(9, 3, 2, 3)];
        let tree = Tree::build(&inside, &rec(1, 1, 0, 5), node);
        assert_eq!(tree.nodes[tree.root()].children, vec![0]);
    }

    #[test]
    fn paths_are_made_once() {
        let mut p = Paths::default();
        let a = p.get("decode;token", "layer");
        let b = p.get("decode;token", "layer");
        assert_eq!(&*a, "decode;token;layer");
        assert!(Arc::ptr_eq(&a, &b));
    }
}
