//! A run as a Chrome trace (the JSON trace event format), for Perfetto, `chrome://tracing`
//! and speedscope.
//!
//! The trace is the object form: `{"displayTimeUnit": "ms", "metadata": {...},
//! "traceEvents": [...]}`.
//!
//! - Complete events (`"ph": "X"`, `pid` 1, `tid` the row's thread) for pipeline sections
//!   (category `phase` or `section`), tokens (`token 3 (decode)`, category `token`), layers
//!   (`layer 12`), components (`attention`, `mlp`, `norm`, `output`, ...) and operations
//!   (`q_proj`, ...), down to the [`Detail`] the run was read at (see
//!   [`RunData::detail`]). `ts` and `dur` are microseconds (floats) since the run's first
//!   sample, section or token ([`RunData::origin_ns`]). `args` hold `energy_mj`,
//!   `exclusive_energy_mj`, the per-domain energies (`cpu_energy_mj`, ...),
//!   `energy_uncertainty_mj`, `energy_method`, `sample_windows` and `duration_ms`, plus what
//!   identifies the row (`token_index`, `layer_index`, the span's `span` name, ...); unknown
//!   values are left out.
//! - Counter events (`"ph": "C"`) at each power sample's start and one at the last sample's
//!   end (repeating the last values): `power (mW)` with one argument per measured domain
//!   (`cpu`, `gpu`, `ane`, `dram`), and `total power (mW)` with `total`. The total has its
//!   own counter because `chrome://tracing` stacks a counter's arguments: the domains stack
//!   up to the total, the total stacked on them would count everything twice.
//! - Metadata events (`"ph": "M"`): the process name and a `thread_name` for every thread
//!   that has a complete event.
//!
//! Events are in time order; at equal times the enclosing event comes first.
//!
//! **Nesting survives floating point.** A viewer finds an event's end as `ts + dur`
//! evaluated in `f64`, some after subtracting the first `ts` of the thread (speedscope).
//! Times are written on a grid of 1/1024 µs, which `f64` adds and subtracts exactly, so
//! `ts + dur` is exactly the event's end either way, and an event inside another in
//! nanoseconds is inside it for the viewer too, never a rounding error past its end (which
//! makes speedscope nest every later event one level deeper).
//!
//! `metadata` holds the run's fields (model, prompt, power source, `estimated`, energy
//! totals, ...), `detail` (the level's name, [`Detail::name`]) and `time_origin_ns`, the
//! run timeline's nanosecond that `ts` 0 stands for.
//!
//! [`write_chrome_trace`] streams the trace into any writer (a file, a gzip encoder) without
//! holding it in memory; [`chrome_trace_of`] gives it as a [`serde_json::Value`].

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Write};

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};

use super::run_data::{Detail, RunData, RunRows};
use crate::store::{
    ComponentRecord, LayerRecord, Measured, OperationRecord, PowerRow, RunId, SectionRecord, Store,
    TokenRecord,
};
use crate::Result;
use nesting::{duration_micros, micros};

mod nesting;

/// The process id of every event.
const PID: u64 = 1;

/// The run as a Chrome trace object (see the [module docs](self)) with every row:
/// [`RunData::load`] at [`Detail::Operations`], then [`chrome_trace_of`]. Fails with
/// [`Error::UnknownRun`](crate::Error::UnknownRun) when the run is not in the store.
pub fn chrome_trace(store: &Store, run: RunId) -> Result<Value> {
    Ok(chrome_trace_of(&RunData::load(
        store,
        run,
        Detail::Operations,
    )?))
}

/// [`chrome_trace`] serialized to a JSON string (streamed, as [`write_chrome_trace`]
/// writes it).
pub fn chrome_trace_string(store: &Store, run: RunId) -> Result<String> {
    let data = RunData::load(store, run, Detail::Operations)?;
    Ok(serde_json::to_string(&Trace::new(&data)).expect("a trace serializes to JSON"))
}

/// The Chrome trace object of a run already read (see the [module docs](self)); `ts` 0 is
/// [`RunData::origin_ns`]. It holds what the run was read at ([`RunData::detail`]): at
/// [`Detail::Report`] the sections, tokens and power only, as at [`Detail::Tokens`].
///
/// For a large run prefer [`write_chrome_trace`], which does not build the whole document
/// in memory.
pub fn chrome_trace_of(data: &RunData) -> Value {
    serde_json::to_value(Trace::new(data)).expect("a trace serializes to a JSON value")
}

/// Writes the Chrome trace of a run already read (see the [module docs](self)) to `out`,
/// event by event, through a buffer: memory holds the rows and one sort key per event,
/// never the JSON text. Wrap `out` in a gzip encoder for a compact file (Perfetto opens a
/// `.json.gz`). Fails with `out`'s errors.
pub fn write_chrome_trace<W: Write>(data: &RunData, out: W) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    serde_json::to_writer(&mut out, &Trace::new(data))?;
    out.flush()
}

/// Where an event comes from: the index of its row in [`RunData`].
#[derive(Clone, Copy)]
enum Source {
    Section(usize),
    Token(usize),
    Layer(usize),
    Component(usize),
    Operation(usize),
    /// A power sample's counters (at its start, or the last sample's at its end).
    Power(usize),
}

/// One event to write, with its sort key: start and end (ns since the origin) and the
/// row's level (sections first), so that an enclosing event comes first.
#[derive(Clone, Copy)]
struct Keyed {
    start: u64,
    end: u64,
    rank: u8,
    source: Source,
}

/// The trace of one run, serialized as the document.
struct Trace<'a> {
    data: &'a RunData,
    events: Vec<Keyed>,
    tids: BTreeSet<u64>,
}

impl<'a> Trace<'a> {
    fn new(data: &'a RunData) -> Trace<'a> {
        let RunRows {
            layers,
            components,
            operations,
        } = data.rows_or_empty();
        let detail = data.detail;
        let t0 = data.origin_ns;
        let mut events = Vec::new();
        let mut tids = BTreeSet::new();
        let mut push = |m: &Measured, rank: u8, source: Source| {
            let tid = m.thread_id.unwrap_or(0);
            tids.insert(tid);
            let start = m.start_ns.saturating_sub(t0);
            let end = m.end_ns.saturating_sub(t0).max(start);
            events.push(Keyed {
                start,
                end,
                rank,
                source,
            });
        };
        for (i, s) in data.sections.iter().enumerate() {
            push(&s.record.measured, 0, Source::Section(i));
        }
        if detail.has_tokens() {
            for (i, t) in data.tokens.iter().enumerate() {
                push(&t.record.measured, 1, Source::Token(i));
            }
        }
        for (i, l) in layers.iter().enumerate() {
            push(&l.record.measured, 2, Source::Layer(i));
        }
        for (i, c) in components.iter().enumerate() {
            push(&c.record.measured, 3, Source::Component(i));
        }
        for (i, o) in operations.iter().enumerate() {
            push(&o.record.measured, 4, Source::Operation(i));
        }
        for (i, p) in data.power.iter().enumerate() {
            let at = p.start_ns.saturating_sub(t0);
            events.push(Keyed {
                start: at,
                end: at,
                rank: 5,
                source: Source::Power(i),
            });
        }
        if let Some(last) = data.power.len().checked_sub(1) {
            let at = data.power[last].end_ns.saturating_sub(t0);
            events.push(Keyed {
                start: at,
                end: at,
                rank: 5,
                source: Source::Power(last),
            });
        }
        // By time; at equal starts the longer (enclosing) event first, then by level. The
        // sort is stable: rows of one level keep the store's order.
        events.sort_by_key(|e| (e.start, Reverse(e.end), e.rank));
        Trace { data, events, tids }
    }

    fn process_name(&self) -> String {
        let run = self.data.run();
        match &run.model {
            Some(m) => format!("tracing-energy run {} ({m})", run.run_id),
            None => format!("tracing-energy run {}", run.run_id),
        }
    }

    fn metadata(&self) -> Value {
        let data = self.data;
        let mut metadata = match serde_json::to_value(data.run()) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        metadata.retain(|_, v| !v.is_null());
        metadata.insert("time_origin_ns".into(), json!(data.origin_ns));
        metadata.insert("detail".into(), json!(data.detail.name()));
        metadata.insert("energy_unit".into(), json!("mJ"));
        metadata.insert(
            "generator".into(),
            json!(format!("tracing-energy {}", env!("CARGO_PKG_VERSION"))),
        );
        Value::Object(metadata)
    }
}

impl Serialize for Trace<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut doc = s.serialize_map(Some(3))?;
        doc.serialize_entry("displayTimeUnit", "ms")?;
        doc.serialize_entry("metadata", &self.metadata())?;
        doc.serialize_entry("traceEvents", &Events(self))?;
        doc.end()
    }
}

/// The `traceEvents` array: the metadata events, then every event in time order.
struct Events<'a, 'b>(&'b Trace<'a>);

impl Serialize for Events<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let trace = self.0;
        let mut seq = s.serialize_seq(None)?;
        seq.serialize_element(&json!({
            "name": "process_name", "ph": "M", "pid": PID, "tid": 0,
            "args": {"name": trace.process_name()},
        }))?;
        for tid in &trace.tids {
            seq.serialize_element(&json!({
                "name": "thread_name", "ph": "M", "pid": PID, "tid": tid,
                "args": {"name": format!("thread {tid}")},
            }))?;
            seq.serialize_element(&json!({
                "name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid,
                "args": {"sort_index": tid},
            }))?;
        }
        let data = trace.data;
        let rows = data.rows_or_empty();
        for e in &trace.events {
            match e.source {
                Source::Section(i) => seq.serialize_element(&Complete::new(
                    e,
                    &data.sections[i].record.measured,
                    Row::Section(&data.sections[i].record),
                ))?,
                Source::Token(i) => seq.serialize_element(&Complete::new(
                    e,
                    &data.tokens[i].record.measured,
                    Row::Token(&data.tokens[i].record),
                ))?,
                Source::Layer(i) => seq.serialize_element(&Complete::new(
                    e,
                    &rows.layers[i].record.measured,
                    Row::Layer(&rows.layers[i].record),
                ))?,
                Source::Component(i) => seq.serialize_element(&Complete::new(
                    e,
                    &rows.components[i].record.measured,
                    Row::Component(&rows.components[i].record),
                ))?,
                Source::Operation(i) => seq.serialize_element(&Complete::new(
                    e,
                    &rows.operations[i].record.measured,
                    Row::Operation(&rows.operations[i].record),
                ))?,
                Source::Power(i) => {
                    let p = &data.power[i];
                    let ts = micros(e.start);
                    let domains = Domains(p);
                    if domains.count() > 0 {
                        seq.serialize_element(&Counter {
                            name: "power (mW)",
                            ts,
                            args: CounterArgs::Domains(domains),
                        })?;
                    }
                    // An unknown total gets no counter value (never 0).
                    if p.total_mw.is_finite() {
                        seq.serialize_element(&Counter {
                            name: "total power (mW)",
                            ts,
                            args: CounterArgs::Total(p.total_mw),
                        })?;
                    }
                }
            }
        }
        seq.end()
    }
}

/// A complete (`X`) event.
struct Complete<'a> {
    ts: f64,
    dur: f64,
    m: &'a Measured,
    row: Row<'a>,
}

impl<'a> Complete<'a> {
    fn new(e: &Keyed, m: &'a Measured, row: Row<'a>) -> Complete<'a> {
        Complete {
            ts: micros(e.start),
            dur: duration_micros(e.start, e.end),
            m,
            row,
        }
    }
}

/// The row a complete event shows.
enum Row<'a> {
    Section(&'a SectionRecord),
    Token(&'a TokenRecord),
    Layer(&'a LayerRecord),
    Component(&'a ComponentRecord),
    Operation(&'a OperationRecord),
}

/// A name written through [`fmt::Display`] (no `String` per event).
struct Shown<T: fmt::Display>(T);

impl<T: fmt::Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl Serialize for Complete<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut e = s.serialize_map(Some(8))?;
        let tid = self.m.thread_id.unwrap_or(0);
        match self.row {
            Row::Section(r) => {
                e.serialize_entry("name", &r.name)?;
                let cat = if r.kind == "phase" {
                    "phase"
                } else {
                    "section"
                };
                e.serialize_entry("cat", cat)?;
            }
            Row::Token(r) => {
                let name = format_args!("token {} ({})", r.token_index, r.phase);
                e.serialize_entry("name", &Shown(name))?;
                e.serialize_entry("cat", "token")?;
            }
            Row::Layer(r) => {
                e.serialize_entry("name", &Shown(format_args!("layer {}", r.layer_index)))?;
                e.serialize_entry("cat", "layer")?;
            }
            Row::Component(r) => {
                e.serialize_entry("name", &r.component)?;
                e.serialize_entry("cat", "component")?;
            }
            Row::Operation(r) => {
                e.serialize_entry("name", &r.operation)?;
                e.serialize_entry("cat", "operation")?;
            }
        }
        e.serialize_entry("ph", "X")?;
        e.serialize_entry("ts", &self.ts)?;
        e.serialize_entry("dur", &self.dur)?;
        e.serialize_entry("pid", &PID)?;
        e.serialize_entry("tid", &tid)?;
        e.serialize_entry("args", &Args(self))?;
        e.end()
    }
}

/// A complete event's `args`: what identifies the row, then its energy; unknown values
/// are left out.
struct Args<'a, 'b>(&'b Complete<'a>);

impl Serialize for Args<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut a = s.serialize_map(None)?;
        match self.0.row {
            Row::Section(r) => {
                a.serialize_entry("section_index", &r.section_index)?;
                put(&mut a, "parent_index", &r.parent_index)?;
                put(&mut a, "phase", &r.phase)?;
                a.serialize_entry("depth", &r.depth)?;
                if let Some(fields) = &r.fields {
                    let v = serde_json::from_str::<Value>(fields)
                        .unwrap_or_else(|_| Value::String(fields.clone()));
                    a.serialize_entry("fields", &v)?;
                }
            }
            Row::Token(r) => {
                a.serialize_entry("token_index", &r.token_index)?;
                a.serialize_entry("phase", &r.phase)?;
                a.serialize_entry("n_tokens", &r.n_tokens)?;
                put(&mut a, "token_id", &r.token_id)?;
                put(&mut a, "text", &r.text)?;
            }
            Row::Layer(r) => {
                a.serialize_entry("token_index", &r.token_index)?;
                a.serialize_entry("layer_index", &r.layer_index)?;
            }
            Row::Component(r) => {
                a.serialize_entry("token_index", &r.token_index)?;
                put(&mut a, "layer_index", &r.layer_index)?;
                a.serialize_entry("component_index", &r.component_index)?;
                a.serialize_entry("span", &r.name)?;
            }
            Row::Operation(r) => {
                a.serialize_entry("token_index", &r.token_index)?;
                put(&mut a, "layer_index", &r.layer_index)?;
                a.serialize_entry("component_index", &r.component_index)?;
                a.serialize_entry("op_index", &r.op_index)?;
                a.serialize_entry("span", &r.name)?;
            }
        }
        let m = self.0.m;
        put_f64(&mut a, "energy_mj", m.energy_mj)?;
        put_f64(&mut a, "exclusive_energy_mj", m.exclusive_energy_mj)?;
        put_f64(&mut a, "cpu_energy_mj", m.cpu_energy_mj)?;
        put_f64(&mut a, "gpu_energy_mj", m.gpu_energy_mj)?;
        put_f64(&mut a, "ane_energy_mj", m.ane_energy_mj)?;
        put_f64(&mut a, "dram_energy_mj", m.dram_energy_mj)?;
        put_f64(&mut a, "energy_uncertainty_mj", m.energy_uncertainty_mj)?;
        put(&mut a, "energy_method", &m.energy_method)?;
        put(&mut a, "sample_windows", &m.sample_windows)?;
        a.serialize_entry("duration_ms", &m.duration_ms())?;
        a.end()
    }
}

fn put<M: SerializeMap, T: Serialize>(
    map: &mut M,
    key: &str,
    v: &Option<T>,
) -> std::result::Result<(), M::Error> {
    match v {
        Some(v) => map.serialize_entry(key, v),
        None => Ok(()),
    }
}

fn put_f64<M: SerializeMap>(
    map: &mut M,
    key: &str,
    v: Option<f64>,
) -> std::result::Result<(), M::Error> {
    match v.filter(|v| v.is_finite()) {
        Some(v) => map.serialize_entry(key, &v),
        None => Ok(()),
    }
}

/// A power counter (`C`) event.
struct Counter<'a> {
    name: &'static str,
    ts: f64,
    args: CounterArgs<'a>,
}

enum CounterArgs<'a> {
    Domains(Domains<'a>),
    Total(f64),
}

impl Serialize for Counter<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut e = s.serialize_map(Some(6))?;
        e.serialize_entry("name", self.name)?;
        e.serialize_entry("cat", "power")?;
        e.serialize_entry("ph", "C")?;
        e.serialize_entry("ts", &self.ts)?;
        e.serialize_entry("pid", &PID)?;
        match &self.args {
            CounterArgs::Domains(d) => e.serialize_entry("args", d)?,
            CounterArgs::Total(t) => e.serialize_entry("args", &json!({ "total": t }))?,
        }
        e.end()
    }
}

/// A sample's measured domains (mW), the unmeasured left out.
struct Domains<'a>(&'a PowerRow);

impl Domains<'_> {
    fn values(&self) -> [(&'static str, Option<f64>); 4] {
        let p = self.0;
        [
            ("cpu", p.cpu_mw),
            ("gpu", p.gpu_mw),
            ("ane", p.ane_mw),
            ("dram", p.dram_mw),
        ]
        .map(|(k, v)| (k, v.filter(|v| v.is_finite())))
    }

    fn count(&self) -> usize {
        self.values().iter().filter(|(_, v)| v.is_some()).count()
    }
}

impl Serialize for Domains<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.values() {
            put_f64(&mut m, k, v)?;
        }
        m.end()
    }
}
