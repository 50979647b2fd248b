//! The hot path: the layer's callbacks, a per-thread stack of entered spans, and the
//! per-thread ring that hands finished sections to the processor.
//!
//! `on_enter`/`on_exit` do no allocation, take no lock and make no system call: they read
//! the clock, touch this thread's state and push one fixed-size record into this thread's
//! single-producer ring. Only a thread's first span (ring allocation), a span seen for the
//! first time on a thread (a registry lookup) and a full ring (the [`Overflow`] policy)
//! leave that path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::span::{Attributes, Id, Record as SpanRecord};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::builder::Overflow;
use super::vocabulary::{Fields, Role, Vocabulary};
use super::{SyncFn, SyncPoint};
use crate::clock;

/// What a span is, kept in its extensions and in the layer's table until processed.
#[derive(Debug)]
pub(crate) struct SpanData {
    /// A process-unique id of this span instance (the rows' `span_id`).
    pub(crate) serial: u64,
    pub(crate) name: &'static str,
    pub(crate) role: Role,
    pub(crate) fields: Mutex<Fields>,
    /// Token spans, and phases that yield a token (an `index` field): one token row.
    pub(crate) token_unit: bool,
    /// Whether the span gets rows of its own in `pipeline_sections` (phases, generic spans).
    pub(crate) row: bool,
    /// The span's path: the enclosing rows' names and its own, joined by `;`.
    pub(crate) path: Arc<str>,
    /// The nearest enclosing span (at creation) that has rows; 0 for none.
    pub(crate) parent_row: u64,
    /// How many enclosing spans with rows it has.
    pub(crate) depth: u32,
}

impl SpanData {
    /// What a span created inside this one inherits: (nearest row span, its path, depth).
    fn scope(&self) -> (u64, Arc<str>, u32) {
        if self.row {
            (self.serial, Arc::clone(&self.path), self.depth + 1)
        } else {
            let parent: Arc<str> = match self.path.rfind(';') {
                Some(i) => Arc::from(&self.path[..i]),
                None => Arc::from(""),
            };
            (self.parent_row, parent, self.depth)
        }
    }
}

/// Role bits the hot path carries.
pub(crate) const CODE_TOKEN: u8 = 1;
pub(crate) const CODE_LAYER_END: u8 = 2;
pub(crate) const CODE_PHASE: u8 = 4;
pub(crate) const CODE_FORWARD: u8 = 8;

/// Record flags.
/// The section is inside a unit (a token span, or a forward pass outside one).
pub(crate) const FLAG_IN_UNIT: u8 = 1;
/// The section is a unit.
pub(crate) const FLAG_UNIT: u8 = 2;
/// The thread had no section open any more after this one ended.
pub(crate) const FLAG_IDLE: u8 = 4;

/// One event of a thread, in the order it happened on that thread. Fixed size, no heap.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HotRecord {
    /// The thread opened its first section: it is active from `at_raw`.
    Activate { at_raw: u64 },
    /// A section ended.
    Section(SectionRecord),
    /// A span closed (no more sections of it will come).
    Close { serial: u64, at_raw: u64 },
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
    /// Position on the thread's stack (0 at the top).
    pub(crate) depth: u16,
    pub(crate) flags: u8,
    pub(crate) start_raw: u64,
    pub(crate) end_raw: u64,
}

/// A thread's ring, as registered with the processor.
pub(crate) struct RingEnd {
    pub(crate) thread: u32,
    pub(crate) consumer: rtrb::Consumer<HotRecord>,
}

pub(crate) struct Shared {
    pub(crate) id: u64,
    /// Rings of threads that started tracing, for the processor to pick up.
    pub(crate) new_rings: Mutex<Vec<RingEnd>>,
    /// Records dropped by the hot path (ring full).
    pub(crate) dropped: AtomicU64,
    /// Of those, section records.
    pub(crate) dropped_sections: AtomicU64,
    close_epoch: AtomicU64,
    next_serial: AtomicU64,
    next_thread: AtomicU64,
    /// Serial -> span data, for the processor.
    pub(crate) spans: Mutex<HashMap<u64, Arc<SpanData>>>,
    vocabulary: Vocabulary,
    sync: Option<(SyncFn, SyncPoint)>,
    pub(crate) response: Mutex<Option<String>>,
    ring_records: usize,
    /// Bytes of the memory budget still free for rings.
    ring_bytes_left: AtomicI64,
    overflow: Overflow,
}

static NEXT_LAYER: AtomicU64 = AtomicU64::new(1);

/// The smallest ring a thread gets once the ring budget is spent.
const MIN_RING: usize = 1024;

impl Shared {
    pub(crate) fn new(
        vocabulary: Vocabulary,
        sync: Option<(SyncFn, SyncPoint)>,
        ring_records: usize,
        ring_budget_bytes: usize,
        overflow: Overflow,
    ) -> Shared {
        Shared {
            id: NEXT_LAYER.fetch_add(1, Ordering::Relaxed),
            new_rings: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            dropped_sections: AtomicU64::new(0),
            close_epoch: AtomicU64::new(0),
            next_serial: AtomicU64::new(1),
            next_thread: AtomicU64::new(0),
            spans: Mutex::new(HashMap::new()),
            vocabulary,
            sync,
            response: Mutex::new(None),
            ring_records: ring_records.max(MIN_RING),
            ring_bytes_left: AtomicI64::new(ring_budget_bytes as i64),
            overflow,
        }
    }

    /// A ring for a thread starting to trace: the configured size while the rings' budget
    /// lasts, then what is left of it, at least [`MIN_RING`] records.
    fn new_ring(&self, thread: u32) -> rtrb::Producer<HotRecord> {
        let size = std::mem::size_of::<HotRecord>() as i64;
        let left = self.ring_bytes_left.load(Ordering::Relaxed).max(0);
        let records = (self.ring_records as i64)
            .min(left / size)
            .max(MIN_RING as i64);
        self.ring_bytes_left
            .fetch_sub(records * size, Ordering::Relaxed);
        let (producer, consumer) = rtrb::RingBuffer::new(records as usize);
        self.new_rings.lock().push(RingEnd { thread, consumer });
        producer
    }

    /// Pushes a record; on a full ring applies the overflow policy.
    fn push(&self, ring: &mut rtrb::Producer<HotRecord>, r: HotRecord) {
        let Err(rtrb::PushError::Full(r)) = ring.push(r) else {
            return;
        };
        // Once the run has ended for good nobody empties the ring: drop at once.
        if let (Overflow::Wait(max), false) = (self.overflow, ring.is_abandoned()) {
            let deadline = Instant::now() + max;
            loop {
                std::thread::yield_now();
                match ring.push(r) {
                    Ok(()) => return,
                    Err(_) if Instant::now() >= deadline || ring.is_abandoned() => break,
                    Err(_) => {}
                }
            }
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if matches!(r, HotRecord::Section(_)) {
            self.dropped_sections.fetch_add(1, Ordering::Relaxed);
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
    in_unit: bool,
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

type IdMap = HashMap<u64, Cached, std::hash::BuildHasherDefault<IdHasher>>;

struct ThreadState {
    layer: u64,
    thread: u32,
    epoch: u64,
    stack: Vec<Frame>,
    cache: IdMap,
    ring: Option<rtrb::Producer<HotRecord>>,
}

impl ThreadState {
    /// Makes this thread's state belong to `shared`'s layer, with a ring of its own.
    fn bind(&mut self, shared: &Shared) -> &mut rtrb::Producer<HotRecord> {
        if self.layer != shared.id || self.ring.is_none() {
            self.layer = shared.id;
            self.thread = shared.next_thread.fetch_add(1, Ordering::Relaxed) as u32;
            self.stack.clear();
            self.cache.clear();
            self.ring = Some(shared.new_ring(self.thread));
        }
        self.ring.as_mut().expect("bound")
    }
}

impl ThreadState {
    /// The record of `frame` ending at `end`, after it was taken off the stack at `pos`.
    fn ended(&self, frame: &Frame, pos: usize, end: u64) -> HotRecord {
        let mut flags = 0;
        if frame.in_unit {
            flags |= FLAG_IN_UNIT;
        } else if frame.code & (CODE_TOKEN | CODE_FORWARD) != 0 {
            flags |= FLAG_UNIT;
        }
        if self.stack.is_empty() {
            flags |= FLAG_IDLE;
        }
        HotRecord::Section(SectionRecord {
            serial: frame.serial,
            parent: self.stack.get(pos.wrapping_sub(1)).map_or(0, |f| f.serial),
            phase: frame.phase,
            thread: self.thread,
            depth: pos as u16,
            flags,
            start_raw: frame.start_raw,
            end_raw: end,
        })
    }
}

thread_local! {
    static STATE: std::cell::RefCell<ThreadState> = std::cell::RefCell::new(ThreadState {
        layer: 0,
        thread: 0,
        epoch: u64::MAX,
        stack: Vec::with_capacity(256),
        cache: IdMap::with_capacity_and_hasher(1024, Default::default()),
        ring: None,
    });
}

/// The layer. Build it with [`EnergyLayer::builder`].
pub struct EnergyLayer {
    pub(crate) shared: Arc<Shared>,
}

fn code_of(data: &SpanData) -> u8 {
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
    if matches!(data.role, Role::Forward) {
        code |= CODE_FORWARD;
    }
    code
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
        let Some(span) = ctx.span(id) else { return };
        let (parent_row, scope_path, depth) = span
            .parent()
            .and_then(|p| p.extensions().get::<Arc<SpanData>>().map(|d| d.scope()))
            .unwrap_or((0, Arc::from(""), 0));
        let path: Arc<str> = if scope_path.is_empty() {
            Arc::from(meta.name())
        } else {
            Arc::from(format!("{scope_path};{}", meta.name()))
        };
        let row = matches!(role, Role::Phase(_) | Role::Generic);
        let data = Arc::new(SpanData {
            serial: self.shared.next_serial.fetch_add(1, Ordering::Relaxed),
            name: meta.name(),
            role,
            fields: Mutex::new(fields),
            token_unit,
            row,
            path,
            parent_row,
            depth,
        });
        self.shared
            .spans
            .lock()
            .insert(data.serial, Arc::clone(&data));
        span.extensions_mut().insert(data);
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
            let Ok(mut guard) = cell.try_borrow_mut() else {
                return;
            };
            let st = &mut *guard;
            st.bind(shared);
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
                        code: code_of(data),
                    };
                    st.cache.insert(key, c);
                    c
                }
            };
            let (phase, in_unit) = match st.stack.last() {
                Some(p) => (
                    p.phase,
                    p.in_unit || p.code & (CODE_TOKEN | CODE_FORWARD) != 0,
                ),
                None => {
                    let ring = st.ring.as_mut().expect("bound");
                    shared.push(ring, HotRecord::Activate { at_raw: now });
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
                in_unit,
            });
        });
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let shared = &*self.shared;
        STATE.with(|cell| {
            let Ok(mut guard) = cell.try_borrow_mut() else {
                return;
            };
            let st = &mut *guard;
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
            let record = st.ended(&frame, pos, end);
            let ring = st.ring.as_mut().expect("bound");
            shared.push(ring, record);
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let serial = ctx
            .span(&id)
            .and_then(|span| span.extensions().get::<Arc<SpanData>>().map(|d| d.serial));
        // Span ids may be reused after close: every thread re-resolves its cache.
        self.shared.close_epoch.fetch_add(1, Ordering::Relaxed);
        // The processor writes a closed span instance's row and forgets the span's data
        // once it has seen the span's last section.
        let Some(serial) = serial else { return };
        let shared = &*self.shared;
        let at_raw = clock::raw();
        STATE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut guard) => {
                let st = &mut *guard;
                let ring = st.bind(shared);
                shared.push(ring, HotRecord::Close { serial, at_raw });
            }
            Err(_) => {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// Ends, now, the sections still open on the calling thread (innermost first), as if their
/// spans were exited: the run is ending inside them (e.g. `guard.finish()` called inside a
/// `main` span). Their later exits are ignored.
pub(crate) fn end_open_sections(shared: &Shared) {
    STATE.with(|cell| {
        let Ok(mut guard) = cell.try_borrow_mut() else {
            return;
        };
        let st = &mut *guard;
        if st.layer != shared.id || st.stack.is_empty() {
            return;
        }
        let end = clock::raw();
        while let Some(frame) = st.stack.pop() {
            let record = st.ended(&frame, st.stack.len(), end);
            let ring = st.ring.as_mut().expect("bound");
            shared.push(ring, record);
        }
    });
}

/// How long a ring may stay full before the [`Overflow::Wait`] default drops.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_millis(200);
