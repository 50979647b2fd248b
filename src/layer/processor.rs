//! The processor thread: rebuilds section trees from hot-path records, attributes energy
//! once samples cover them, and hands rows to the store.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::vocabulary::{matmul_name, rope_name, Role};
use super::{HotRecord, RunReport, SectionRecord, Shared, SpanData, FLAG_IN_TOKEN};
use crate::attribution::{Activity, EnergyIntegral, SectionEnergy, METHOD};
use crate::power::{SampleBuffer, Sampler, SamplerStatus, SourceId};
use crate::store::{
    ComponentRecord, LayerRecord, Measured, OperationRecord, PipelineSection, RunEnd, RunId,
    RunStatus, Store, TokenRecord,
};
use crate::{clock, Error, Result};

pub(crate) struct Setup {
    pub(crate) shared: Arc<Shared>,
    pub(crate) store: Arc<Store>,
    pub(crate) run_id: RunId,
    pub(crate) buffer: Arc<SampleBuffer>,
    pub(crate) sampler: Option<Sampler>,
    pub(crate) start_ns: u64,
    pub(crate) interval: Duration,
}

pub(crate) struct ProcessorHandle {
    finish_tx: Sender<Option<String>>,
    thread: std::thread::JoinHandle<Result<RunReport>>,
}

impl ProcessorHandle {
    pub(crate) fn finish(self, failure: Option<String>) -> Result<RunReport> {
        let _ = self.finish_tx.send(failure);
        self.thread.join().unwrap_or_else(|_| {
            Err(Error::WriterFailed(
                "the energy processor thread panicked".into(),
            ))
        })
    }
}

/// Records kept before they are processed during a run (about 48 MB; some 2,500 tokens of
/// SmolLM2). Until then the processor only moves records out of the queue, so that building
/// section trees, attributing and writing do not take CPU from the profiled program; the
/// rest happens when the run finishes.
const DEFER_RECORDS: usize = 1 << 20;

/// How long the processor sleeps when there is nothing to do.
const IDLE: Duration = Duration::from_millis(5);
/// Records from other threads may reach the queue this much later than their time stamps.
const REORDER_MARGIN_NS: u64 = 20_000_000;

type NodeRef = Rc<RefCell<Node>>;

struct Node {
    data: Option<Arc<SpanData>>,
    phase: u64,
    start: u64,
    end: u64,
    thread: u32,
    children: Vec<NodeRef>,
    /// Set once the node's subtree has been written (a finished token): its inclusive energy.
    done: Option<SectionEnergy>,
}

impl Node {
    fn role(&self) -> Role {
        self.data.as_ref().map_or(Role::Generic, |d| d.role.clone())
    }
    fn name(&self) -> &'static str {
        self.data.as_ref().map_or("unknown", |d| d.name)
    }
    fn token_unit(&self) -> bool {
        self.data.as_ref().is_some_and(|d| d.token_unit)
    }
}

enum Job {
    Unit(NodeRef),
    Root(NodeRef),
}

impl Job {
    fn end(&self) -> u64 {
        match self {
            Job::Unit(n) | Job::Root(n) => n.borrow().end,
        }
    }
}

pub(crate) struct Processor {
    shared: Arc<Shared>,
    store: Arc<Store>,
    run_id: RunId,
    buffer: Arc<SampleBuffer>,
    sampler: Option<Sampler>,
    source: Option<SourceId>,
    start_ns: u64,
    interval: Duration,
    backlog: Vec<HotRecord>,
    pending: HashMap<(u32, u64), Vec<NodeRef>>,
    span_cache: HashMap<u64, Arc<SpanData>>,
    activity: Vec<Vec<Activity>>,
    jobs: VecDeque<Job>,
    next_token: u64,
    next_section: u64,
    samples_copied_to: u64,
    sections: u64,
    tokens: u64,
    attributed: f64,
    last_end: u64,
}

impl Processor {
    pub(crate) fn spawn(setup: Setup) -> Result<ProcessorHandle> {
        let (finish_tx, finish_rx) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("tracing-energy-processor".into())
            .spawn(move || {
                let source = setup.sampler.as_ref().map(|s| s.source_id());
                let p = Processor {
                    shared: setup.shared,
                    store: setup.store,
                    run_id: setup.run_id,
                    buffer: setup.buffer,
                    sampler: setup.sampler,
                    source,
                    start_ns: setup.start_ns,
                    interval: setup.interval,
                    backlog: Vec::new(),
                    pending: HashMap::new(),
                    span_cache: HashMap::new(),
                    activity: Vec::new(),
                    jobs: VecDeque::new(),
                    next_token: 0,
                    next_section: 0,
                    samples_copied_to: setup.start_ns,
                    sections: 0,
                    tokens: 0,
                    attributed: 0.0,
                    last_end: setup.start_ns,
                };
                p.run(finish_rx)
            })
            .map_err(Error::Thread)?;
        Ok(ProcessorHandle { finish_tx, thread })
    }

    fn run(mut self, finish: Receiver<Option<String>>) -> Result<RunReport> {
        clock::background_thread();
        loop {
            let drained = self.drain();
            if self.backlog.len() >= DEFER_RECORDS {
                self.process_backlog();
                self.finalize_ready(false);
            }
            self.copy_samples(false);
            match finish.recv_timeout(if drained { Duration::ZERO } else { IDLE }) {
                Ok(failure) => return self.finish(failure),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return self.finish(None),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Moves every queued record to the backlog (cheap: a copy of fixed-size records), and
    /// hands the emptied batches back to the hot path. Returns true when there were any.
    fn drain(&mut self) -> bool {
        let mut any = false;
        while let Some(r) = self.shared.activations.pop() {
            any = true;
            self.backlog.push(r);
        }
        while let Some(mut batch) = self.shared.batches.pop() {
            any = true;
            // Activations first: a batch may hold sections of a thread whose activation is
            // still in the other queue.
            while let Some(r) = self.shared.activations.pop() {
                self.backlog.push(r);
            }
            self.backlog.append(&mut batch);
            let _ = self.shared.free.push(batch);
        }
        any
    }

    /// Turns the backlog into section trees.
    fn process_backlog(&mut self) {
        if self.backlog.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.backlog);
        for r in &records {
            self.on_record(*r);
        }
        self.forget_closed_spans();
        self.backlog = records;
        self.backlog.clear();
    }

    fn on_record(&mut self, r: HotRecord) {
        {
            match r {
                HotRecord::Activate { thread, at_raw } => {
                    let t = clock::raw_to_ns(at_raw);
                    let acts = self.threads(thread);
                    if !acts.iter().any(|a| a.start_ns == t) {
                        acts.push(Activity {
                            start_ns: t,
                            end_ns: u64::MAX,
                        });
                    }
                }
                HotRecord::Section(r) => self.on_section(r),
            }
        }
    }

    fn threads(&mut self, thread: u32) -> &mut Vec<Activity> {
        let i = thread as usize;
        if self.activity.len() <= i {
            self.activity.resize_with(i + 1, Vec::new);
        }
        &mut self.activity[i]
    }

    fn on_section(&mut self, r: SectionRecord) {
        let SectionRecord {
            serial,
            parent,
            phase,
            thread,
            depth,
            flags,
            start_raw,
            end_raw,
        } = r;
        let start = clock::raw_to_ns(start_raw);
        let end = clock::raw_to_ns(end_raw).max(start);
        self.last_end = self.last_end.max(end);
        self.sections += 1;
        let data = match self.span_cache.get(&serial) {
            Some(d) => Some(Arc::clone(d)),
            None => {
                let d = self.shared.spans.lock().get(&serial).cloned();
                // Long-lived spans (a model's) are looked up once; token spans come and go.
                if let Some(d) = &d {
                    if !d.token_unit && !matches!(d.role, Role::Phase(_)) {
                        self.span_cache.insert(serial, Arc::clone(d));
                    }
                }
                d
            }
        };
        let children = self.pending.remove(&(thread, serial)).unwrap_or_default();
        let node = Rc::new(RefCell::new(Node {
            data,
            phase,
            start,
            end,
            thread,
            children,
            done: None,
        }));
        if depth == 0 {
            // The activation of this root has the same time stamp as its start (records of
            // the two queues may arrive in either order, so match by time, not by position).
            let acts = self.threads(thread);
            match acts
                .iter()
                .rposition(|a| a.end_ns == u64::MAX && a.start_ns == start)
            {
                Some(i) => acts[i].end_ns = end,
                // Its activation has not been seen yet: record the interval now; the late
                // activation is recognised by its start and ignored.
                None => acts.push(Activity {
                    start_ns: start,
                    end_ns: end,
                }),
            }
        }
        let unit = {
            let n = node.borrow();
            // A forward pass inside a token span is written with that token.
            n.token_unit() || (matches!(n.role(), Role::Forward) && flags & FLAG_IN_TOKEN == 0)
        };
        if unit {
            self.jobs.push_back(Job::Unit(Rc::clone(&node)));
        }
        if depth == 0 {
            self.jobs.push_back(Job::Root(node));
        } else {
            self.pending.entry((thread, parent)).or_default().push(node);
        }
    }

    fn forget_closed_spans(&mut self) {
        // Span data of closed spans is dropped once no node refers to it any more; the
        // table is cleaned in bulk to keep this cheap.
        let mut spans = self.shared.spans.lock();
        if spans.len() > 4096 {
            self.span_cache
                .retain(|_, d| !d.closed.load(Ordering::Acquire));
            spans.retain(|_, d| !d.closed.load(Ordering::Acquire) || Arc::strong_count(d) > 1);
        }
    }

    /// The time up to which power samples are complete (`u64::MAX` without a source, or
    /// when the source stopped: nothing more will come).
    fn watermark(&self) -> u64 {
        match (&self.sampler, self.source) {
            (Some(s), Some(id)) if s.status() == SamplerStatus::Running => {
                self.buffer.source_watermark_ns(id).unwrap_or(0)
            }
            _ => u64::MAX,
        }
    }

    /// Finalizes jobs whose samples are complete (all jobs when `all`).
    fn finalize_ready(&mut self, all: bool) {
        let mut rows = Rows::default();
        let wm = self.watermark();
        let safe = clock::now_ns().saturating_sub(REORDER_MARGIN_NS);
        while let Some(job) = self.jobs.front() {
            let end = job.end();
            if !all && (end > wm || end > safe) {
                break;
            }
            let job = self.jobs.pop_front().expect("front exists");
            match job {
                Job::Unit(n) => self.finalize_unit(&n, &mut rows),
                Job::Root(n) => self.finalize_root(&n, &mut rows),
            }
            if rows.len() >= 50_000 {
                self.write(std::mem::take(&mut rows));
            }
        }
        self.write(rows);
    }

    fn integral(&self, s: u64, e: u64) -> Option<EnergyIntegral> {
        let id = self.source?;
        let samples = self.buffer.overlapping_source(id, s, e);
        Some(EnergyIntegral::new(&samples, &self.activity, s, e))
    }

    fn energy(integral: &Option<EnergyIntegral>, s: u64, e: u64) -> SectionEnergy {
        match integral {
            Some(f) => f.section(s, e),
            None => SectionEnergy::default(),
        }
    }

    /// One token (a token span, a token-yielding phase, or a forward pass outside both):
    /// writes its token row, layers, components and operations.
    fn finalize_unit(&mut self, unit: &NodeRef, rows: &mut Rows) {
        if unit.borrow().done.is_some() {
            return;
        }
        let (s, e) = (unit.borrow().start, unit.borrow().end);
        let integral = self.integral(s, e);
        let token_index = self.next_token;
        self.next_token += 1;
        let n = unit.borrow();
        let incl = Self::energy(&integral, s, e);
        let phase_name = self.phase_name(&n);
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
        // A forward pass is not a row of its own: its layers and model-level components are
        // the token's children, and its own glue (embedding, masks) stays in the token's
        // exclusive energy. All of them are grouped together, so layers count up across the
        // whole token.
        let tops: Vec<NodeRef> = if matches!(n.role(), Role::Forward) {
            vec![Rc::clone(unit)]
        } else {
            n.children.clone()
        };
        drop(n);
        let mut level: Vec<NodeRef> = Vec::new();
        for c in tops {
            if matches!(c.borrow().role(), Role::Forward) {
                level.extend(c.borrow().children.iter().cloned());
            } else {
                level.push(c);
            }
        }
        let child_incl = self.emit_layers(&level, token_index, &integral, rows);
        let exclusive = incl.total_mj.map(|t| t - child_incl);
        rows.tokens.push(TokenRecord {
            token_index,
            phase: phase_name,
            n_tokens,
            token_id,
            text,
            measured: measured(s, e, unit.borrow().thread, &incl, exclusive),
        });
        self.tokens += 1;
        let mut n = unit.borrow_mut();
        n.done = Some(incl);
        n.children.clear();
    }

    fn phase_name(&self, n: &Node) -> String {
        if let Some(Role::Phase(p)) = n.data.as_ref().map(|d| d.role.clone()) {
            return p;
        }
        if n.phase != 0 {
            if let Some(d) = self.shared.spans.lock().get(&n.phase) {
                if let Role::Phase(p) = &d.role {
                    return p.clone();
                }
            }
        }
        "forward".into()
    }

    /// Groups a token's layer-level spans into layers (see the vocabulary) and writes them;
    /// anything else becomes a model-level component or a generic section. Returns the
    /// inclusive energy written.
    fn emit_layers(
        &mut self,
        children: &[NodeRef],
        token: u64,
        f: &Option<EnergyIntegral>,
        rows: &mut Rows,
    ) -> f64 {
        let mut next_layer = 0u32;
        let mut sorted: Vec<NodeRef> = children.to_vec();
        sorted.sort_by_key(|c| c.borrow().start);
        let roles: Vec<Role> = sorted.iter().map(|c| c.borrow().role()).collect();
        let mut total = 0.0;
        let mut current: Vec<(NodeRef, String)> = Vec::new();
        let mut model_level_index = 1000u32;
        let is_attention = |r: &Role| matches!(r, Role::Component(k) if k == "attention");
        let is_mlp = |r: &Role| matches!(r, Role::Component(k) if k == "mlp");
        for (i, child) in sorted.iter().enumerate() {
            let role = &roles[i];
            let starts_layer = (matches!(role, Role::Norm)
                && roles.get(i + 1).is_some_and(is_attention))
                || (is_attention(role) && current.is_empty());
            match role {
                Role::Layer(idx) => {
                    let layer = idx.unwrap_or(next_layer);
                    next_layer = layer + 1;
                    let comps: Vec<(NodeRef, String)> = child
                        .borrow()
                        .children
                        .iter()
                        .map(|c| {
                            let kind = component_kind(&c.borrow().role(), c.borrow().name());
                            (Rc::clone(c), kind)
                        })
                        .collect();
                    let (s, e) = (child.borrow().start, child.borrow().end);
                    total +=
                        self.write_layer(token, layer, s, e, child.borrow().thread, comps, f, rows);
                }
                _ if starts_layer
                    || (!current.is_empty() && (is_attention(role) || is_mlp(role))) =>
                {
                    let kind = component_kind(role, child.borrow().name());
                    current.push((Rc::clone(child), kind));
                    if is_mlp(role) {
                        let layer = next_layer;
                        next_layer += 1;
                        let s = current[0].0.borrow().start;
                        let e = child.borrow().end;
                        let thread = child.borrow().thread;
                        total += self.write_layer(
                            token,
                            layer,
                            s,
                            e,
                            thread,
                            std::mem::take(&mut current),
                            f,
                            rows,
                        );
                    }
                }
                Role::Norm | Role::Component(_) | Role::Matmul | Role::Op(_) | Role::Rope => {
                    // A model-level component: the final norm, the output head, ...
                    let kind = match role {
                        Role::Norm => "final_norm".to_string(),
                        _ => component_kind(role, child.borrow().name()),
                    };
                    total +=
                        self.write_component(token, None, model_level_index, child, &kind, f, rows);
                    model_level_index += 1;
                }
                _ => total += self.emit_generic(child, None, f, rows),
            }
        }
        // An unfinished layer (no mlp seen): still written.
        if !current.is_empty() {
            let s = current[0].0.borrow().start;
            let e = current.last().expect("non-empty").0.borrow().end;
            let thread = current[0].0.borrow().thread;
            total += self.write_layer(token, next_layer, s, e, thread, current, f, rows);
        }
        total
    }

    #[allow(clippy::too_many_arguments)]
    fn write_layer(
        &mut self,
        token: u64,
        layer: u32,
        s: u64,
        e: u64,
        thread: u32,
        comps: Vec<(NodeRef, String)>,
        f: &Option<EnergyIntegral>,
        rows: &mut Rows,
    ) -> f64 {
        let incl = Self::energy(f, s, e);
        let mut children = 0.0;
        for (i, (c, kind)) in comps.iter().enumerate() {
            children += self.write_component(token, Some(layer), i as u32, c, kind, f, rows);
        }
        rows.layers.push(LayerRecord {
            token_index: token,
            layer_index: layer,
            measured: measured(s, e, thread, &incl, incl.total_mj.map(|t| t - children)),
        });
        incl.total_mj.unwrap_or(0.0)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_component(
        &mut self,
        token: u64,
        layer: Option<u32>,
        index: u32,
        node: &NodeRef,
        kind: &str,
        f: &Option<EnergyIntegral>,
        rows: &mut Rows,
    ) -> f64 {
        let n = node.borrow();
        let incl = Self::energy(f, n.start, n.end);
        let mut sorted = n.children.clone();
        sorted.sort_by_key(|c| c.borrow().start);
        let (mut matmuls, mut ropes) = (0usize, 0usize);
        let mut children = 0.0;
        for (i, c) in sorted.iter().enumerate() {
            let cn = c.borrow();
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
            let oincl = Self::energy(f, cn.start, cn.end);
            // Spans nested inside an operation are kept as generic sections.
            let mut nested = 0.0;
            for g in cn.children.clone() {
                nested += self.emit_generic(&g, None, f, rows);
            }
            rows.ops.push(OperationRecord {
                token_index: token,
                layer_index: layer,
                component_index: index,
                op_index: i as u32,
                operation,
                name: cn.name().to_string(),
                measured: measured(
                    cn.start,
                    cn.end,
                    cn.thread,
                    &oincl,
                    oincl.total_mj.map(|t| t - nested),
                ),
            });
            children += oincl.total_mj.unwrap_or(0.0);
        }
        rows.components.push(ComponentRecord {
            token_index: token,
            layer_index: layer,
            component_index: index,
            component: kind.to_string(),
            name: n.name().to_string(),
            measured: measured(
                n.start,
                n.end,
                n.thread,
                &incl,
                incl.total_mj.map(|t| t - children),
            ),
        });
        incl.total_mj.unwrap_or(0.0)
    }

    /// Writes a section (a phase or any span) and its subtree; finished tokens inside count
    /// with their stored energy. Returns the section's inclusive energy.
    fn emit_generic(
        &mut self,
        node: &NodeRef,
        parent: Option<u64>,
        f: &Option<EnergyIntegral>,
        rows: &mut Rows,
    ) -> f64 {
        if let Some(done) = node.borrow().done {
            // A finished token. A token-yielding phase (`prefill`) also gets its phase row,
            // whose energy is all in its token row (exclusive 0).
            let n = node.borrow();
            if let Role::Phase(p) = n.role() {
                let index = self.next_section;
                self.next_section += 1;
                rows.sections.push(PipelineSection {
                    section_index: index,
                    parent_index: parent,
                    name: n.name().to_string(),
                    kind: "phase".into(),
                    phase: Some(p),
                    depth: parent.map_or(0, |_| 1),
                    fields: n.data.as_ref().and_then(|d| d.fields.lock().to_json()),
                    measured: measured(n.start, n.end, n.thread, &done, done.total_mj.map(|_| 0.0)),
                });
            }
            return done.total_mj.unwrap_or(0.0);
        }
        let index = self.next_section;
        self.next_section += 1;
        let n = node.borrow();
        let incl = Self::energy(f, n.start, n.end);
        let depth = parent.map_or(0, |_| 1);
        let mut children = 0.0;
        for c in n.children.clone() {
            children += self.emit_generic(&c, Some(index), f, rows);
        }
        let (kind, phase) = match n.role() {
            Role::Phase(p) => ("phase".to_string(), Some(p)),
            _ => ("section".to_string(), None),
        };
        rows.sections.push(PipelineSection {
            section_index: index,
            parent_index: parent,
            name: n.name().to_string(),
            kind,
            phase,
            depth,
            fields: n.data.as_ref().and_then(|d| d.fields.lock().to_json()),
            measured: measured(
                n.start,
                n.end,
                n.thread,
                &incl,
                incl.total_mj.map(|t| t - children),
            ),
        });
        incl.total_mj.unwrap_or(0.0)
    }

    /// A finished top-level section: writes what its tokens did not.
    fn finalize_root(&mut self, root: &NodeRef, rows: &mut Rows) {
        let (s, e) = (root.borrow().start, root.borrow().end);
        let integral = self.integral(s, e);
        let incl = self.emit_generic(root, None, &integral, rows);
        self.attributed += incl;
    }

    fn write(&mut self, rows: Rows) {
        let run = self.run_id;
        if !rows.tokens.is_empty() {
            self.store.add_tokens(run, rows.tokens);
        }
        if !rows.layers.is_empty() {
            self.store.add_layer_metrics(run, rows.layers);
        }
        if !rows.components.is_empty() {
            self.store.add_component_metrics(run, rows.components);
        }
        if !rows.ops.is_empty() {
            self.store.add_deep_operation_metrics(run, rows.ops);
        }
        if !rows.sections.is_empty() {
            self.store.add_pipeline_sections(run, rows.sections);
        }
    }

    /// Copies this run's new power samples into the store (all of them when `all`).
    fn copy_samples(&mut self, all: bool) {
        let Some(id) = self.source else { return };
        let wm = self.buffer.source_watermark_ns(id).unwrap_or(0);
        if !all && wm < self.samples_copied_to + 1_000_000_000 {
            return;
        }
        // A source's windows do not overlap: those ending after the last one copied are new.
        let new = self
            .buffer
            .overlapping_source(id, self.samples_copied_to, u64::MAX / 2);
        if let Some(last) = new.last() {
            self.samples_copied_to = last.end_ns;
            self.store.add_power_samples(self.run_id, new);
        }
    }

    fn finish(mut self, failure: Option<String>) -> Result<RunReport> {
        let end_ns = clock::now_ns();
        self.drain();
        self.process_backlog();
        // Wait for the samples that cover the last sections.
        let target = end_ns.max(self.last_end);
        if let (Some(s), Some(id)) = (&self.sampler, self.source) {
            // The window covering the last section ends at most one window after it: allow
            // three intervals, or twice the longest window this source delivered (a replayed
            // capture's windows can be seconds long).
            let longest = self
                .buffer
                .overlapping_source(id, self.start_ns, u64::MAX / 2)
                .iter()
                .map(|w| w.duration_ns())
                .max()
                .unwrap_or(0);
            let deadline = std::time::Instant::now()
                + (self.interval * 3)
                    .max(Duration::from_nanos(longest * 2))
                    .max(Duration::from_secs(2))
                + Duration::from_secs(1);
            while self.buffer.source_watermark_ns(id).unwrap_or(0) < target
                && s.status() == SamplerStatus::Running
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let report = self.sampler.take().map(|s| s.stop());
        self.drain();
        self.process_backlog();
        self.finalize_ready(true);
        // Sections whose top-level span never closed (still entered at finish).
        let orphans: Vec<NodeRef> = self.pending.drain().flat_map(|(_, v)| v).collect();
        let mut rows = Rows::default();
        for o in orphans {
            self.finalize_root(&o, &mut rows);
        }
        self.write(rows);
        self.copy_samples(true);

        let (total, attributed, unattributed) = match self.source {
            Some(id) => {
                let samples = self.buffer.overlapping_source(id, self.start_ns, end_ns);
                let f = EnergyIntegral::new(&samples, &self.activity, self.start_ns, end_ns);
                if f.has_samples() {
                    let measured = f.measured_mj();
                    (
                        Some(measured),
                        Some(self.attributed),
                        Some(measured - self.attributed),
                    )
                } else {
                    (None, None, None)
                }
            }
            None => (None, None, None),
        };
        let source_error = match report.as_ref().map(|r| &r.status) {
            Some(SamplerStatus::Failed(why)) => Some(why.clone()),
            _ => None,
        };
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        let error = failure.clone().or_else(|| {
            source_error
                .clone()
                .map(|e| format!("power source failed: {e}"))
        });
        let end = RunEnd {
            status: if failure.is_some() {
                RunStatus::Failed
            } else {
                RunStatus::Complete
            },
            response: self.shared.response.lock().take(),
            total_energy_mj: total,
            attributed_energy_mj: attributed,
            unattributed_energy_mj: unattributed,
            dropped_records: dropped,
            error,
        };
        self.store.finish_run(self.run_id, &end)?;
        // The writer adds the rows it dropped up to the end: read the total it stored.
        let dropped_records = self
            .store
            .get_run(self.run_id)?
            .map_or(dropped, |r| r.dropped_records);
        Ok(RunReport {
            run_id: self.run_id,
            db: self.store.path().to_path_buf(),
            power_source: report.as_ref().map(|r| r.source.clone()),
            estimated: report.as_ref().is_some_and(|r| r.estimated),
            total_energy_mj: total,
            attributed_energy_mj: attributed,
            unattributed_energy_mj: unattributed,
            sections: self.sections,
            tokens: self.tokens,
            dropped_records,
            dropped_sections: dropped,
            source_error,
        })
    }
}

fn component_kind(role: &Role, name: &str) -> String {
    match role {
        Role::Component(k) => k.clone(),
        Role::Norm => "norm".into(),
        Role::Op(o) => o.clone(),
        _ => name.to_string(),
    }
}

fn measured(s: u64, e: u64, thread: u32, en: &SectionEnergy, exclusive: Option<f64>) -> Measured {
    let known = en.total_mj.is_some();
    Measured {
        start_ns: s,
        end_ns: e,
        thread_id: Some(thread as u64),
        energy_mj: en.total_mj,
        exclusive_energy_mj: if known { exclusive } else { None },
        cpu_energy_mj: en.domains[0],
        gpu_energy_mj: en.domains[1],
        ane_energy_mj: en.domains[2],
        dram_energy_mj: en.domains[3],
        energy_method: known.then(|| METHOD.to_string()),
        energy_uncertainty_mj: en.uncertainty_mj,
        sample_windows: known.then_some(en.sample_windows),
    }
}

impl Rows {
    fn len(&self) -> usize {
        self.tokens.len()
            + self.layers.len()
            + self.components.len()
            + self.ops.len()
            + self.sections.len()
    }
}

#[derive(Default)]
struct Rows {
    tokens: Vec<TokenRecord>,
    layers: Vec<LayerRecord>,
    components: Vec<ComponentRecord>,
    ops: Vec<OperationRecord>,
    sections: Vec<PipelineSection>,
}
