//! The energy [`tracing_subscriber::Layer`]: spans become timed sections with attributed
//! energy, written to the [`crate::store`].
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//! use tracing_energy::EnergyLayer;
//!
//! let (layer, guard) = EnergyLayer::builder().db("profiles.db").model("my-model").build()?;
//! tracing_subscriber::registry().with(layer).init();
//! // ... traced work: every span is a section with its energy ...
//! let report = guard.finish()?; // or drop the guard
//! println!("run {} used {:?} mJ", report.run_id, report.total_energy_mj);
//! # Ok::<(), tracing_energy::Error>(())
//! ```
//!
//! # How it works
//!
//! - **Hot path.** `on_enter` and `on_exit` read the clock ([`crate::clock::raw`]) and push
//!   or pop a frame on a per-thread stack; `on_exit` appends one fixed-size record to a
//!   per-thread batch with room reserved in advance. A full batch (and the batch of a thread
//!   whose top-level section or token just ended) goes to the processor through a lock-free
//!   bounded queue, and an emptied batch comes back for reuse. No allocation, lock, system
//!   call or SQLite work happens per enter or exit (a span seen for the first time on a thread
//!   is looked up once in the registry). When the queue is full, the batch's records are
//!   counted as dropped and the count is stored on the run.
//! - **Processor thread.** Moves records out of the queue as they come, and keeps them (48
//!   bytes each) until the run finishes or a million have gathered: then it rebuilds the
//!   section trees, waits until power samples cover them (the buffer's watermark), attributes
//!   energy (see [`crate::attribution`] for the model, its conservation and its uncertainty),
//!   and hands rows to the store's writer in batches. Deferring that work keeps it from
//!   taking CPU from the profiled program while it runs. Power samples are written to the
//!   store as they come.
//! - **Spans.** The [`Vocabulary`] decides what a span is. candle creates its spans once,
//!   when a model is built, so install the subscriber *before* building the model, and do
//!   not filter `candle_transformers` below TRACE.
//! - **Guard.** Dropping or [`EnergyGuard::finish`]ing the guard waits for the samples that
//!   cover the last sections, stops the sampler, attributes and writes everything, and marks
//!   the run complete (or failed, when the thread is panicking).

mod processor;
mod vocabulary;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use parking_lot::Mutex;
use tracing::span::{Attributes, Id, Record as SpanRecord};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

pub use vocabulary::{FieldValue, Role, Vocabulary};

use crate::power::{PowerSource, SampleBuffer, Sampler, SamplerConfig, SourceSpec};
use crate::store::{NewRun, RunId, Store};
use crate::{clock, Result};
use vocabulary::Fields;

/// Where the synchronize hook is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPoint {
    /// Never.
    #[default]
    None,
    /// Before a token span (or a token-yielding phase) ends.
    PerToken,
    /// Before a layer ends (candle's `attn-mlp`, a `block`, or a `layer = I` span) and
    /// before a token ends.
    PerLayer,
}

/// A fence such as candle's `Device::synchronize`, called where [`SyncPoint`] says, so that
/// span times on a GPU include the GPU's work.
pub type SyncFn = Arc<dyn Fn() + Send + Sync>;

/// Builds an [`EnergyLayer`] and its [`EnergyGuard`].
pub struct EnergyLayerBuilder {
    db: Option<PathBuf>,
    store: Option<Arc<Store>>,
    source: Option<SourceSpec>,
    custom_source: Option<Box<dyn PowerSource>>,
    interval: Duration,
    buffer: Option<Arc<SampleBuffer>>,
    run: NewRun,
    sync: Option<(SyncFn, SyncPoint)>,
    vocabulary: Vocabulary,
    queue_capacity: usize,
}

impl EnergyLayerBuilder {
    /// Writes to the database at this path (default `profiles.db`).
    pub fn db(mut self, path: impl Into<PathBuf>) -> Self {
        self.db = Some(path.into());
        self
    }

    /// Writes to an open store.
    pub fn store(mut self, store: Arc<Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The power source (default [`SourceSpec::Auto`]: powermetrics where it works, else the
    /// CPU-time estimate). `None` records times only (energies stay unknown).
    pub fn power(mut self, source: Option<SourceSpec>) -> Self {
        self.source = source;
        self
    }

    /// Uses this power source (e.g. one of your own) instead of a named one.
    pub fn custom_source(mut self, source: Box<dyn PowerSource>) -> Self {
        self.custom_source = Some(source);
        self
    }

    /// The sample interval (default 100 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Samples into this buffer instead of the global one.
    pub fn buffer(mut self, buffer: Arc<SampleBuffer>) -> Self {
        self.buffer = Some(buffer);
        self
    }

    /// The model's name, stored on the run.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.run.model = Some(model.into());
        self
    }

    /// The prompt, stored on the run.
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.run.prompt = Some(prompt.into());
        self
    }

    /// Tags, stored on the run.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.run.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// The experiment's name, stored on the run.
    pub fn experiment(mut self, name: impl Into<String>) -> Self {
        self.run.experiment = Some(name.into());
        self
    }

    /// Calls `hook` at the chosen boundaries, before the span's end time is read.
    pub fn synchronize(mut self, hook: SyncFn, at: SyncPoint) -> Self {
        self.sync = Some((hook, at));
        self
    }

    /// The span vocabulary (default [`Vocabulary::new`]).
    pub fn vocabulary(mut self, vocabulary: Vocabulary) -> Self {
        self.vocabulary = vocabulary;
        self
    }

    /// Records the hot path may queue before dropping (default 262,144), in batches of
    /// [`BATCH`] records.
    pub fn queue_capacity(mut self, records: usize) -> Self {
        self.queue_capacity = records.max(BATCH);
        self
    }

    /// Opens the store, starts the sampler and the processor, and creates the run.
    pub fn build(self) -> Result<(EnergyLayer, EnergyGuard)> {
        clock::init();
        let store = match self.store {
            Some(s) => s,
            None => Arc::new(Store::open(
                self.db.unwrap_or_else(|| PathBuf::from("profiles.db")),
            )?),
        };
        let buffer = self.buffer.unwrap_or_else(SampleBuffer::global);
        let source = match (self.custom_source, &self.source) {
            (Some(custom), _) => Some(custom),
            (None, Some(spec)) => Some(spec.build_for_profile()?),
            (None, None) => None,
        };
        let sampler = match source {
            None => None,
            Some(source) => Some(Sampler::start(
                source,
                SamplerConfig::new(self.interval).buffer(Arc::clone(&buffer)),
            )?),
        };
        let mut run = self.run;
        if let Some(s) = &sampler {
            run.power_source = Some(s.source_name().to_string());
            run.estimated = s.estimated();
            run.sample_interval_ms = Some(self.interval.as_secs_f64() * 1000.0);
        }
        let run_id = store.create_run(&run)?;
        let shared = Arc::new(Shared {
            id: NEXT_LAYER.fetch_add(1, Ordering::Relaxed),
            batches: ArrayQueue::new((self.queue_capacity / BATCH).max(1)),
            free: ArrayQueue::new((self.queue_capacity / BATCH).max(1) + 64),
            activations: ArrayQueue::new(4096),
            dropped: AtomicU64::new(0),
            close_epoch: AtomicU64::new(0),
            next_serial: AtomicU64::new(1),
            next_thread: AtomicU64::new(0),
            spans: Mutex::new(std::collections::HashMap::new()),
            vocabulary: self.vocabulary,
            sync: self.sync,
            response: Mutex::new(None),
        });
        let start_ns = clock::now_ns();
        let processor = processor::Processor::spawn(processor::Setup {
            shared: Arc::clone(&shared),
            store: Arc::clone(&store),
            run_id,
            buffer,
            sampler,
            start_ns,
            interval: self.interval,
        })?;
        Ok((
            EnergyLayer {
                shared: Arc::clone(&shared),
            },
            EnergyGuard {
                processor: Some(processor),
                shared,
                run_id,
            },
        ))
    }
}

static NEXT_LAYER: AtomicU64 = AtomicU64::new(1);

/// What a span is, kept in its extensions and in the layer's table until processed.
#[derive(Debug)]
pub(crate) struct SpanData {
    pub(crate) serial: u64,
    pub(crate) name: &'static str,
    pub(crate) role: Role,
    pub(crate) fields: Mutex<Fields>,
    pub(crate) closed: AtomicBool,
    /// Token spans, and phases that yield a token (an `index` field): one token row.
    pub(crate) token_unit: bool,
}

/// Role bits the hot path carries.
const CODE_TOKEN: u8 = 1;
const CODE_LAYER_END: u8 = 2;
const CODE_PHASE: u8 = 4;
/// Record flag: the section is inside a token unit.
pub(crate) const FLAG_IN_TOKEN: u8 = 1;

/// One finished section, as queued by the hot path. Fixed size, no heap data.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HotRecord {
    /// A thread opened its first section: it is active from `at`.
    Activate { thread: u32, at_raw: u64 },
    /// A section ended.
    Section(SectionRecord),
}

/// A finished section, as the hot path records it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SectionRecord {
    pub(crate) serial: u64,
    /// The serial of the enclosing section on this thread, 0 at the top.
    pub(crate) parent: u64,
    /// The nearest enclosing phase span (or this one), 0 for none.
    pub(crate) phase: u64,
    pub(crate) thread: u32,
    pub(crate) depth: u16,
    pub(crate) flags: u8,
    pub(crate) start_raw: u64,
    pub(crate) end_raw: u64,
}

pub(crate) struct Shared {
    id: u64,
    /// Full batches of records, for the processor.
    pub(crate) batches: ArrayQueue<Vec<HotRecord>>,
    /// Emptied batches, back for reuse by the hot path.
    pub(crate) free: ArrayQueue<Vec<HotRecord>>,
    /// Threads becoming active: sent at once, not batched, so that other threads' sections
    /// can be attributed while this one's are still open.
    pub(crate) activations: ArrayQueue<HotRecord>,
    pub(crate) dropped: AtomicU64,
    close_epoch: AtomicU64,
    next_serial: AtomicU64,
    next_thread: AtomicU64,
    /// Serial -> span data, for the processor.
    pub(crate) spans: Mutex<std::collections::HashMap<u64, Arc<SpanData>>>,
    vocabulary: Vocabulary,
    sync: Option<(SyncFn, SyncPoint)>,
    pub(crate) response: Mutex<Option<String>>,
}

/// Records per batch.
pub const BATCH: usize = 512;

impl Shared {
    fn activate(&self, r: HotRecord) {
        if self.activations.push(r).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands a batch to the processor and takes an empty one back (allocating only while
    /// the pool is still filling up).
    fn flush(&self, batch: &mut Vec<HotRecord>) {
        if batch.is_empty() {
            return;
        }
        let empty = self.free.pop().unwrap_or_else(|| Vec::with_capacity(BATCH));
        let full = std::mem::replace(batch, empty);
        if let Err(mut full) = self.batches.push(full) {
            self.dropped.fetch_add(full.len() as u64, Ordering::Relaxed);
            full.clear();
            let _ = self.free.push(full);
        }
    }
}

#[derive(Clone, Copy)]
struct Frame {
    id: u64,
    serial: u64,
    start_raw: u64,
    phase: u64,
    code: u8,
    in_token: bool,
}

#[derive(Clone, Copy)]
struct Cached {
    serial: u64,
    code: u8,
}

/// A multiplicative hash for span ids (already unique integers).
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x100000001b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9E3779B97F4A7C15);
    }
}

type IdMap = std::collections::HashMap<u64, Cached, std::hash::BuildHasherDefault<IdHasher>>;

struct ThreadState {
    layer: u64,
    thread: u32,
    epoch: u64,
    stack: Vec<Frame>,
    cache: IdMap,
    batch: Vec<HotRecord>,
}

thread_local! {
    static STATE: std::cell::RefCell<ThreadState> = std::cell::RefCell::new(ThreadState {
        layer: 0,
        thread: 0,
        epoch: u64::MAX,
        stack: Vec::with_capacity(256),
        cache: IdMap::with_capacity_and_hasher(1024, Default::default()),
        batch: Vec::new(),
    });
}

/// The layer. Build it with [`EnergyLayer::builder`].
pub struct EnergyLayer {
    shared: Arc<Shared>,
}

impl EnergyLayer {
    /// A builder with the defaults: `profiles.db`, source `auto`, 100 ms.
    pub fn builder() -> EnergyLayerBuilder {
        EnergyLayerBuilder {
            db: None,
            store: None,
            source: Some(SourceSpec::Auto),
            custom_source: None,
            interval: Duration::from_millis(100),
            buffer: None,
            run: NewRun::new(),
            sync: None,
            vocabulary: Vocabulary::new(),
            queue_capacity: 1 << 18,
        }
    }

    fn code_of(&self, data: &SpanData) -> u8 {
        let mut code = 0;
        if data.token_unit {
            code |= CODE_TOKEN;
        }
        if matches!(data.role, Role::Layer(_))
            || (matches!(&data.role, Role::Component(c) if c == "mlp") && data.name == "attn-mlp")
        {
            code |= CODE_LAYER_END;
        }
        if matches!(data.role, Role::Phase(_)) {
            code |= CODE_PHASE;
        }
        code
    }
}

impl<S> tracing_subscriber::Layer<S> for EnergyLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let meta = attrs.metadata();
        let role = self
            .shared
            .vocabulary
            .classify(meta.name(), meta.target(), &fields);
        let token_unit = matches!(role, Role::Token)
            || (matches!(role, Role::Phase(_)) && fields.get("index").is_some());
        let data = Arc::new(SpanData {
            serial: self.shared.next_serial.fetch_add(1, Ordering::Relaxed),
            name: meta.name(),
            role,
            fields: Mutex::new(fields),
            closed: AtomicBool::new(false),
            token_unit,
        });
        self.shared
            .spans
            .lock()
            .insert(data.serial, Arc::clone(&data));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(data);
        }
    }

    fn on_record(&self, id: &Id, values: &SpanRecord<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(data) = span.extensions().get::<Arc<SpanData>>() {
                values.record(&mut *data.fields.lock());
            }
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let now = clock::raw();
        let shared = &*self.shared;
        STATE.with(|cell| {
            let Ok(mut st) = cell.try_borrow_mut() else {
                return;
            };
            if st.layer != shared.id {
                st.layer = shared.id;
                st.thread = shared.next_thread.fetch_add(1, Ordering::Relaxed) as u32;
                st.stack.clear();
                st.cache.clear();
                st.batch = Vec::with_capacity(BATCH);
            }
            let epoch = shared.close_epoch.load(Ordering::Relaxed);
            if st.epoch != epoch {
                st.epoch = epoch;
                st.cache.clear();
            }
            let key = id.into_u64();
            let cached = match st.cache.get(&key) {
                Some(c) => *c,
                None => {
                    let Some(span) = ctx.span(id) else { return };
                    let ext = span.extensions();
                    let Some(data) = ext.get::<Arc<SpanData>>() else {
                        return;
                    };
                    let c = Cached {
                        serial: data.serial,
                        code: self.code_of(data),
                    };
                    st.cache.insert(key, c);
                    c
                }
            };
            let (phase, in_token) = match st.stack.last() {
                Some(p) => (p.phase, p.in_token || p.code & CODE_TOKEN != 0),
                None => {
                    let thread = st.thread;
                    shared.activate(HotRecord::Activate {
                        thread,
                        at_raw: now,
                    });
                    (0, false)
                }
            };
            st.stack.push(Frame {
                id: key,
                serial: cached.serial,
                start_raw: now,
                phase: if cached.code & CODE_PHASE != 0 {
                    cached.serial
                } else {
                    phase
                },
                code: cached.code,
                in_token,
            });
        });
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let shared = &*self.shared;
        STATE.with(|cell| {
            let Ok(mut st) = cell.try_borrow_mut() else {
                return;
            };
            if st.layer != shared.id {
                return;
            }
            let key = id.into_u64();
            let Some(pos) = st.stack.iter().rposition(|f| f.id == key) else {
                return;
            };
            if let Some((hook, at)) = &shared.sync {
                let code = st.stack[pos].code;
                let call = match at {
                    SyncPoint::None => false,
                    SyncPoint::PerToken => code & CODE_TOKEN != 0,
                    SyncPoint::PerLayer => code & (CODE_TOKEN | CODE_LAYER_END) != 0,
                };
                if call {
                    hook();
                }
            }
            let end = clock::raw();
            let frame = if pos + 1 == st.stack.len() {
                st.stack.pop().expect("non-empty")
            } else {
                // Spans exited out of order (async code): drop the frame where it is.
                st.stack.remove(pos)
            };
            let parent = st.stack.get(pos.wrapping_sub(1)).map_or(0, |f| f.serial);
            let record = HotRecord::Section(SectionRecord {
                serial: frame.serial,
                parent,
                phase: frame.phase,
                thread: st.thread,
                depth: pos as u16,
                flags: if frame.in_token { FLAG_IN_TOKEN } else { 0 },
                start_raw: frame.start_raw,
                end_raw: end,
            });
            st.batch.push(record);
            if st.batch.len() >= BATCH || st.stack.is_empty() || frame.code & CODE_TOKEN != 0 {
                shared.flush(&mut st.batch);
            }
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            if let Some(data) = span.extensions().get::<Arc<SpanData>>() {
                data.closed.store(true, Ordering::Release);
            }
        }
        // Span ids may be reused after close: every thread re-resolves its cache.
        self.shared.close_epoch.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a finished run recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    /// The run's id in the store.
    pub run_id: RunId,
    /// The database file.
    pub db: PathBuf,
    /// The power source, `None` without one.
    pub power_source: Option<String>,
    /// True when the energy is estimated.
    pub estimated: bool,
    /// Energy measured over the run (mJ).
    pub total_energy_mj: Option<f64>,
    /// Energy attributed to sections (mJ).
    pub attributed_energy_mj: Option<f64>,
    /// Energy not attributed (mJ).
    pub unattributed_energy_mj: Option<f64>,
    /// Sections recorded.
    pub sections: u64,
    /// Token rows written.
    pub tokens: u64,
    /// Records dropped (queue full or not writable).
    pub dropped_records: u64,
    /// Of those, section records the hot path dropped because the queue was full.
    pub dropped_sections: u64,
    /// The power source's failure, if it failed.
    pub source_error: Option<String>,
}

/// Finishes the run when dropped or [`EnergyGuard::finish`]ed.
pub struct EnergyGuard {
    processor: Option<processor::ProcessorHandle>,
    shared: Arc<Shared>,
    run_id: RunId,
}

impl EnergyGuard {
    /// The run being recorded.
    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    /// Stores the generated text on the run when it finishes.
    pub fn set_response(&self, response: impl Into<String>) {
        *self.shared.response.lock() = Some(response.into());
    }

    /// Waits for the samples that cover the last sections, stops the sampler, attributes
    /// and writes everything, and marks the run complete.
    pub fn finish(mut self) -> Result<RunReport> {
        self.finish_inner(None)
    }

    /// Like [`EnergyGuard::finish`], but marks the run failed with `reason` (what was
    /// recorded up to here is kept).
    pub fn fail(mut self, reason: impl Into<String>) -> Result<RunReport> {
        self.finish_inner(Some(reason.into()))
    }

    fn finish_inner(&mut self, failure: Option<String>) -> Result<RunReport> {
        match self.processor.take() {
            Some(p) => p.finish(failure),
            None => Err(crate::Error::WriterFailed(
                "the run was already finished".into(),
            )),
        }
    }
}

impl Drop for EnergyGuard {
    fn drop(&mut self) {
        if self.processor.is_some() {
            let failure =
                std::thread::panicking().then(|| "the profiled program panicked".to_string());
            if let Err(e) = self.finish_inner(failure) {
                tracing::error!("finishing the energy profile failed: {e}");
            }
        }
    }
}
