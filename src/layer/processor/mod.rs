//! The processor thread: takes the hot path's records ([`intake`]), finalizes each section
//! as soon as the power samples cover it, turns units into token rows ([`unit`]) and other
//! spans into instance rows ([`instances`]), and hands the rows to the store ([`rows`]).
//! It watches the power source ([`health`]) and ends the run, or rotates to the next
//! ([`ending`]).

mod cost;
mod deferred;
mod ending;
mod health;
mod instances;
mod intake;
mod rows;
mod unit;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::hot::{HotRecord, SectionRecord, Shared, SpanData, FLAG_IN_UNIT, FLAG_UNIT};
use super::{Role, RunReport};
use crate::attribution::{Attribution, EnergyStream};
use crate::metrics::LiveMetrics;
use crate::power::{SampleBuffer, Sampler, SamplerStatus, SourceId};
use crate::store::{NewRun, RunId, Store};
use crate::{clock, Error, Result};
use deferred::{Deferred, Energies, FitState};
use health::SourceHealth;
use instances::Instances;
use intake::{Intake, Queued};
use rows::Rows;
use unit::{InUnit, Node, Paths, Tree, Writer};

pub(crate) struct Setup {
    pub(crate) shared: Arc<Shared>,
    pub(crate) store: Arc<Store>,
    pub(crate) run_id: RunId,
    pub(crate) run: NewRun,
    pub(crate) buffer: Arc<SampleBuffer>,
    pub(crate) sampler: Option<Sampler>,
    pub(crate) start_ns: u64,
    pub(crate) interval: Duration,
    pub(crate) memory_budget: usize,
    pub(crate) rotate_every: Option<Duration>,
    pub(crate) finish_wait: Option<Duration>,
    /// Warnings known when the run starts (e.g. `auto` falling back to the estimate).
    pub(crate) notes: Vec<String>,
    /// The calibrated cost of one span enter + exit pair (ns), for the run's hot-path cost.
    pub(crate) hot_ns_per_pair: Option<f64>,
    /// How sections get their energy.
    pub(crate) attribution: Attribution,
    /// Live metrics to keep up to date, when they are served.
    pub(crate) metrics: Option<Arc<LiveMetrics>>,
}

/// How a run ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Normally.
    Complete,
    /// Stopped early on request; the text says by what.
    Interrupted(String),
    /// With an error; the text says why.
    Failed(String),
}

enum Control {
    Finish(Ending),
    Rotate(Box<NewRun>),
}

type Reply = Sender<Result<RunReport>>;

pub(crate) struct ProcessorHandle {
    control: Sender<(Control, Reply)>,
    thread: std::thread::JoinHandle<()>,
    current: Arc<AtomicI64>,
}

fn gone() -> Error {
    Error::WriterFailed("the energy processor thread stopped (it panicked)".into())
}

impl ProcessorHandle {
    pub(crate) fn finish(self, ending: Ending) -> Result<RunReport> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sent = self.control.send((Control::Finish(ending), tx)).is_ok();
        let reply = if sent { rx.recv().ok() } else { None };
        let joined = self.thread.join();
        match (reply, joined) {
            (Some(r), _) => r,
            _ => Err(gone()),
        }
    }

    pub(crate) fn rotate(&self, next: NewRun) -> Result<RunReport> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.control
            .send((Control::Rotate(Box::new(next)), tx))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }

    pub(crate) fn current_run(&self) -> RunId {
        self.current.load(Ordering::Acquire)
    }
}

/// How long the processor sleeps between rounds (records wait in the rings meanwhile, so
/// that each round handles a batch instead of waking for every record).
const IDLE: Duration = Duration::from_millis(10);
/// A round that moved at least this many records is followed at once by the next.
const BUSY_ROUND: usize = 1 << 13;
/// A record reaches its ring at most this long after its time stamp (the hot path reads
/// the clock, then pushes): the energy stream is not built closer to now than this.
const REORDER_MARGIN_NS: u64 = 50_000_000;
/// Rows are handed to the writer at least this often, or when this many wait.
const WRITE_EVERY: Duration = Duration::from_millis(250);
const WRITE_ROWS: usize = 20_000;
/// Records moved from the rings per round at most (keeps rounds short).
const DRAIN_PER_ROUND: usize = 1 << 18;

struct RunState {
    id: RunId,
    meta: NewRun,
    start_ns: u64,
    next_token: u64,
    sections: u64,
    peak_bytes: u64,
    /// The profiler's CPU clocks at the run's start.
    cpu: cost::CpuMark,
}

pub(crate) struct Processor {
    shared: Arc<Shared>,
    store: Arc<Store>,
    buffer: Arc<SampleBuffer>,
    sampler: Option<Sampler>,
    source: Option<SourceId>,
    budget: usize,
    rotate_every: Option<Duration>,
    current: Arc<AtomicI64>,
    run: RunState,
    intake: Intake,
    stream: EnergyStream,
    samples_fed_to: u64,
    samples_copied_to: u64,
    /// Records inside an open unit, per thread, with their span data.
    units: HashMap<u32, Vec<InUnit>>,
    /// Closes that came while their thread had a unit open (applied after it).
    unit_closes: HashMap<u32, Vec<(u64, u64)>>,
    /// Inclusive energy of the finished children of open sections: (thread, serial) -> mJ.
    children: HashMap<(u32, u64), f64>,
    instances: Instances,
    rows: Rows,
    paths: Paths,
    spans: HashMap<u64, Arc<SpanData>>,
    closed_spans: Vec<u64>,
    last_write: Instant,
    /// Set when the run ends for good (not a rotation): every sample left is copied.
    finishing: bool,
    /// How long the end of a run waits for the samples covering it.
    finish_wait: Option<Duration>,
    /// The requested window length, and the longest window the source delivered.
    interval: Duration,
    longest_window_ns: u64,
    /// Whether the source keeps delivering, and the run's warnings.
    health: SourceHealth,
    /// The sampler's CPU-time slots and its source's own process (kept after it stops),
    /// `None` without a source.
    sampler_tallies: Option<cost::SamplerTallies>,
    /// The calibrated cost of one span enter + exit pair (ns).
    hot_ns_per_pair: Option<f64>,
    /// How sections get their energy; under `regression`, the current run's kept records
    /// (see [`deferred`]) until it ends, then its fit while its rows are made.
    attribution: Attribution,
    deferred: Option<Deferred>,
    fit: Option<FitState>,
    /// Threads with a section open, since when (ns).
    open_activity: HashMap<u32, u64>,
    /// Live metrics to keep up to date, when they are served.
    metrics: Option<Arc<LiveMetrics>>,
}

impl Processor {
    pub(crate) fn spawn(setup: Setup) -> Result<ProcessorHandle> {
        let (control, rx) = crossbeam_channel::unbounded();
        let current = Arc::new(AtomicI64::new(setup.run_id));
        let shared_current = Arc::clone(&current);
        let thread = std::thread::Builder::new()
            .name("tracing-energy-processor".into())
            .spawn(move || {
                let source = setup.sampler.as_ref().map(|s| s.source_id());
                let source_name = setup.run.power_source.clone();
                let sampler_tallies = setup.sampler.as_ref().map(cost::SamplerTallies::of);
                let cpu = cost::CpuMark::now(sampler_tallies.as_ref(), &setup.store);
                let p = Processor {
                    shared: setup.shared,
                    store: setup.store,
                    buffer: setup.buffer,
                    sampler: setup.sampler,
                    source,
                    budget: setup.memory_budget,
                    rotate_every: setup.rotate_every,
                    current: shared_current,
                    run: RunState {
                        id: setup.run_id,
                        meta: setup.run,
                        start_ns: setup.start_ns,
                        next_token: 0,
                        sections: 0,
                        peak_bytes: 0,
                        cpu,
                    },
                    intake: Intake::default(),
                    stream: EnergyStream::new(setup.start_ns),
                    samples_fed_to: setup.start_ns,
                    samples_copied_to: setup.start_ns,
                    units: HashMap::new(),
                    unit_closes: HashMap::new(),
                    children: HashMap::new(),
                    instances: Instances::default(),
                    rows: Rows::default(),
                    paths: Paths::default(),
                    spans: HashMap::new(),
                    closed_spans: Vec::new(),
                    last_write: Instant::now(),
                    finishing: false,
                    finish_wait: setup.finish_wait,
                    interval: setup.interval,
                    longest_window_ns: 0,
                    health: SourceHealth::new(
                        source_name,
                        setup.interval,
                        setup.start_ns,
                        setup.notes,
                    ),
                    sampler_tallies,
                    hot_ns_per_pair: setup.hot_ns_per_pair,
                    attribution: setup.attribution,
                    deferred: (setup.attribution == Attribution::Regression)
                        .then(Deferred::default),
                    fit: None,
                    open_activity: HashMap::new(),
                    metrics: setup.metrics,
                };
                p.run(rx)
            })
            .map_err(Error::Thread)?;
        Ok(ProcessorHandle {
            control,
            thread,
            current,
        })
    }

    fn run(mut self, control: Receiver<(Control, Reply)>) {
        clock::background_thread();
        loop {
            let moved = self.round(None);
            let wait = if moved >= BUSY_ROUND {
                Duration::ZERO
            } else {
                IDLE
            };
            match control.recv_timeout(wait) {
                Ok((Control::Finish(ending), reply)) => {
                    let _ = reply.send(self.finish(ending));
                    return;
                }
                Ok((Control::Rotate(next), reply)) => {
                    let _ = reply.send(self.rotate(clock::now_ns(), *next));
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    let _ = self.finish(Ending::Complete);
                    return;
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
            if let Some(period) = self.rotate_every {
                let at = self.run.start_ns + period.as_nanos() as u64;
                if clock::now_ns() >= at {
                    let next = self.run.meta.clone();
                    match self.rotate(at, next) {
                        Ok(r) => tracing::info!(
                            run = r.run_id,
                            energy_mj = r.total_energy_mj,
                            "energy profile run rotated"
                        ),
                        Err(e) => tracing::error!("rotating the energy profile run failed: {e}"),
                    }
                }
            }
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

    /// Memory held for records not yet finalized (bytes, estimated): what catching up
    /// frees, so what the budget holds back.
    fn queued_bytes(&self) -> usize {
        let records = self.intake.queued() + self.units.values().map(Vec::len).sum::<usize>();
        records * 96
    }

    /// All memory held now (bytes, estimated): also the open span instances (one per span
    /// the program holds open) and the energy function.
    fn memory(&self) -> usize {
        self.queued_bytes()
            + self.instances.len() * 320
            + self.stream.len() * 112
            + self.deferred.as_ref().map_or(0, Deferred::bytes)
    }

    /// One round: take records, extend the energy stream as far as samples and records
    /// allow (never past `cap`), finalize what it covers. Returns the records taken.
    fn round(&mut self, cap: Option<u64>) -> usize {
        let now = clock::now_ns();
        self.intake.adopt(&self.shared);
        let moved = if self.queued_bytes() < self.budget {
            self.intake.drain(&mut self.stream, DRAIN_PER_ROUND)
        } else {
            0
        };
        self.feed_samples();
        self.check_stall(now);
        let mut target = self.watermark().min(now.saturating_sub(REORDER_MARGIN_NS));
        if let Some(c) = cap {
            target = target.min(c);
        }
        self.advance(target);
        self.after_round(false);
        moved
    }

    fn advance(&mut self, to: u64) {
        if to > self.stream.frontier() {
            self.stream.advance(to);
        }
        let frontier = self.stream.frontier();
        let mut ready = Vec::new();
        self.intake
            .pop_ready(frontier, |thread, q| ready.push((thread, q)));
        for (thread, q) in ready {
            self.process(thread, q);
        }
        self.instances.emit_closed(&mut self.rows);
    }

    fn after_round(&mut self, force_write: bool) {
        // Kept records still need their spans' data, and the time shares behind them.
        let keeping = self.deferred.is_some();
        for serial in self.closed_spans.drain(..) {
            if !keeping {
                self.spans.remove(&serial);
            }
            self.shared.spans.lock().remove(&serial);
        }
        let horizon = self.intake.horizon();
        self.stream.prune(if keeping {
            horizon.min(self.run.start_ns)
        } else {
            horizon
        });
        let bytes = self.memory() as u64;
        self.run.peak_bytes = self.run.peak_bytes.max(bytes);
        if force_write || self.rows.len() >= WRITE_ROWS || self.last_write.elapsed() >= WRITE_EVERY
        {
            if let Some(m) = &self.metrics {
                self.rows.publish(m, self.run.meta.estimated);
                m.dropped_up_to(self.shared.dropped.load(Ordering::Relaxed));
            }
            self.rows.write(&self.store, self.run.id);
            self.copy_samples(force_write && self.finishing);
            self.last_write = Instant::now();
        }
    }

    /// This run's source's samples whose window ends after `after` and at or before `upto`.
    fn samples_ending(&self, after: u64, upto: u64) -> Vec<crate::power::PowerSample> {
        let Some(id) = self.source else {
            return Vec::new();
        };
        let mut new = self.buffer.overlapping_source(id, after, upto);
        new.retain(|s| s.end_ns > after && s.end_ns <= upto);
        new
    }

    /// Gives the stream the samples that arrived since the last call.
    fn feed_samples(&mut self) {
        let new = self.samples_ending(self.samples_fed_to, u64::MAX / 2);
        for s in &new {
            self.stream.push_sample(s);
            self.longest_window_ns = self.longest_window_ns.max(s.duration_ns());
        }
        if let Some(d) = &mut self.deferred {
            d.samples(&new);
        }
        if let Some(m) = &self.metrics {
            m.samples(&new);
        }
        if let Some(last) = new.last() {
            self.samples_fed_to = last.end_ns;
            self.health.arrived(clock::now_ns());
        }
    }

    /// Notices a source that stopped delivering (see [`SourceHealth`]).
    fn check_stall(&mut self, now: u64) {
        let Some(sampler) = &self.sampler else {
            return;
        };
        if let Some(silent_s) = self.health.check(now, self.run.start_ns) {
            let state = match sampler.status() {
                SamplerStatus::Failed(_) => "it failed",
                SamplerStatus::Finished => "its data ended",
                _ => "it is still running",
            };
            tracing::warn!(
                source = sampler.source_name(),
                "the power source delivered no sample for {silent_s:.1} s ({state}); the time without samples stays unmeasured",
            );
        }
    }

    /// Copies this run's new power samples into the store: those ending at or before the
    /// energy stream's frontier (a window belongs to the run in which it ends), or all.
    fn copy_samples(&mut self, all: bool) {
        let upto = if all {
            u64::MAX / 2
        } else {
            self.stream.frontier()
        };
        let new = self.samples_ending(self.samples_copied_to, upto);
        if let Some(last) = new.last() {
            self.samples_copied_to = last.end_ns;
            self.store.add_power_samples(self.run.id, new);
        }
    }

    fn span(&mut self, serial: u64) -> Option<Arc<SpanData>> {
        if let Some(d) = self.spans.get(&serial) {
            return Some(Arc::clone(d));
        }
        let d = self.shared.spans.lock().get(&serial).cloned()?;
        self.spans.insert(serial, Arc::clone(&d));
        Some(d)
    }

    /// Where section energies come from now.
    fn energies(&self) -> Energies<'_> {
        Energies {
            stream: &self.stream,
            fit: self.fit.as_ref(),
            run_start: self.run.start_ns,
        }
    }

    /// A record whose time the energy stream covers: turned into rows now, or kept for the
    /// run's end under `regression`.
    fn process(&mut self, thread: u32, q: Queued) {
        self.track_activity(thread, &q);
        if let HotRecord::Section(_) = q.record {
            self.run.sections += 1;
        }
        if self.deferred.is_some() {
            self.defer(thread, q);
        } else {
            self.apply(thread, q);
        }
    }

    /// Turns a record into rows (or holds it in its unit until the unit ends).
    fn apply(&mut self, thread: u32, q: Queued) {
        match q.record {
            HotRecord::Activate { .. } => {}
            HotRecord::Close { serial, .. } => {
                match self.units.get(&thread) {
                    Some(open) if !open.is_empty() => {
                        self.unit_closes
                            .entry(thread)
                            .or_default()
                            .push((serial, q.time));
                    }
                    _ => {
                        self.instances.close(serial, q.time);
                    }
                }
                self.closed_spans.push(serial);
            }
            HotRecord::Section(r) => {
                if r.flags & FLAG_IN_UNIT != 0 {
                    let data = self.span(r.serial);
                    self.units.entry(thread).or_default().push((r, data));
                } else if r.flags & FLAG_UNIT != 0 {
                    self.unit(thread, &r);
                } else {
                    self.generic(&r);
                }
            }
        }
    }

    fn add_to_parent(&mut self, r: &SectionRecord, inclusive: Option<f64>) {
        if r.parent != 0 {
            *self.children.entry((r.thread, r.parent)).or_default() += inclusive.unwrap_or(0.0);
        }
    }

    /// A section outside units: a poll of its span instance.
    fn generic(&mut self, r: &SectionRecord) {
        let (s, e) = times(r);
        let energy = self.energies().section(r.thread, s, e);
        let children = self.children.remove(&(r.thread, r.serial)).unwrap_or(0.0);
        let exclusive = energy.total_mj.map(|t| t - children);
        self.add_to_parent(r, energy.total_mj);
        if let Some(d) = self.span(r.serial) {
            self.instances
                .add_poll(&d, r.thread, s, e, &energy, exclusive, false);
        }
    }

    /// A unit ended: its tree becomes a token row and the rows under it.
    fn unit(&mut self, thread: u32, r: &SectionRecord) {
        let inside = self.units.remove(&thread).unwrap_or_default();
        let unit = (*r, self.span(r.serial));
        let phase = self.phase_name(unit.1.as_ref(), r.phase);
        let energies = Energies {
            stream: &self.stream,
            fit: self.fit.as_ref(),
            run_start: self.run.start_ns,
        };
        let tree = Tree::build(&inside, &unit, |(rec, data)| {
            let (s, e) = times(rec);
            Node {
                data: data.clone(),
                start: s,
                end: e,
                thread: rec.thread,
                energy: energies.section(rec.thread, s, e),
                children: Vec::new(),
            }
        });
        let token = self.run.next_token;
        self.run.next_token += 1;
        let energy_of = |t: u32, a: u64, b: u64| energies.section(t, a, b);
        let energy = Writer {
            tree: &tree,
            token,
            rows: &mut self.rows,
            instances: &mut self.instances,
            paths: &mut self.paths,
            energy: &energy_of,
        }
        .token(phase);
        self.add_to_parent(r, energy.total_mj);
        for (serial, at) in self.unit_closes.remove(&thread).unwrap_or_default() {
            self.instances.close(serial, at);
        }
    }

    fn phase_name(&mut self, unit: Option<&Arc<SpanData>>, phase: u64) -> String {
        if let Some(Role::Phase(p)) = unit.map(|d| &d.role) {
            return p.clone();
        }
        if phase != 0 {
            if let Some(d) = self.span(phase) {
                if let Role::Phase(p) = &d.role {
                    return p.clone();
                }
            }
        }
        "forward".into()
    }
}

fn times(r: &SectionRecord) -> (u64, u64) {
    let s = clock::raw_to_ns(r.start_raw);
    (s, clock::raw_to_ns(r.end_raw).max(s))
}
