//! A run as a Chrome trace (the JSON trace event format), for Perfetto and `chrome://tracing`.
//!
//! The trace is the object form: `{"traceEvents": [...], "displayTimeUnit": "ms",
//! "metadata": {...}}`.
//!
//! - Complete events (`"ph": "X"`, `pid` 1, `tid` the row's thread) for pipeline sections
//!   (category `phase` or `section`), tokens (`token 3 (decode)`, category `token`), layers
//!   (`layer 12`), components (`attention`, `mlp`, `norm`, `output`, ...) and operations
//!   (`q_proj`, ...). `ts` and `dur` are microseconds (floats) since the run's first sample,
//!   section or token ([`RunData::origin_ns`]). `args` hold `energy_mj`,
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
//! `metadata` holds the run's fields (model, prompt, power source, `estimated`, energy
//! totals, ...) and `time_origin_ns`, the run timeline's nanosecond that `ts` 0 stands for.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::run_data::{Detail, RunData, RunRows};
use crate::store::{Measured, PowerRow, RunId, Store};
use crate::Result;

/// The process id of every event.
const PID: u64 = 1;

/// The run as a Chrome trace object (see the [module docs](self)): [`RunData::load`] at
/// [`Detail::Rows`], then [`chrome_trace_of`]. Fails with
/// [`Error::UnknownRun`](crate::Error::UnknownRun) when the run is not in the store.
pub fn chrome_trace(store: &Store, run: RunId) -> Result<Value> {
    Ok(chrome_trace_of(&RunData::load(store, run, Detail::Rows)?))
}

/// [`chrome_trace`] serialized to a JSON string.
pub fn chrome_trace_string(store: &Store, run: RunId) -> Result<String> {
    let trace = chrome_trace(store, run)?;
    Ok(trace.to_string())
}

/// The Chrome trace object of a run already read (see the [module docs](self)); `ts` 0 is
/// [`RunData::origin_ns`]. A run read at [`Detail::Report`] gives a trace of its sections,
/// tokens and power only (no layer, component or operation events).
pub fn chrome_trace_of(data: &RunData) -> Value {
    let run_row = data.run();
    let (sections, tokens, power) = (&data.sections, &data.tokens, &data.power);
    let RunRows {
        layers,
        components,
        operations,
    } = data.rows_or_empty();
    let t0 = data.origin_ns;

    // (ts, dur, event), sorted on the numbers.
    let mut timed: Vec<(f64, f64, Value)> = Vec::with_capacity(
        sections.len() + tokens.len() + layers.len() + components.len() + operations.len(),
    );
    let mut tids = BTreeSet::new();
    let mut complete = |name: String, cat: &str, m: &Measured, mut args: Map<String, Value>| {
        let tid = m.thread_id.unwrap_or(0);
        tids.insert(tid);
        energy_args(m, &mut args);
        let ts = micros(m.start_ns, t0);
        let dur = m.end_ns.saturating_sub(m.start_ns) as f64 / 1000.0;
        timed.push((
            ts,
            dur,
            object([
                ("name", Value::from(name)),
                ("cat", Value::from(cat)),
                ("ph", Value::from("X")),
                ("ts", Value::from(ts)),
                ("dur", Value::from(dur)),
                ("pid", Value::from(PID)),
                ("tid", Value::from(tid)),
                ("args", Value::Object(args)),
            ]),
        ));
    };

    for s in sections {
        let r = &s.record;
        let mut args = Map::new();
        args.insert("section_index".into(), json!(r.section_index));
        put(&mut args, "parent_index", r.parent_index);
        put(&mut args, "phase", r.phase.as_deref());
        args.insert("depth".into(), json!(r.depth));
        if let Some(fields) = &r.fields {
            let v = serde_json::from_str::<Value>(fields).unwrap_or_else(|_| json!(fields));
            args.insert("fields".into(), v);
        }
        let cat = if r.kind == "phase" {
            "phase"
        } else {
            "section"
        };
        complete(r.name.clone(), cat, &r.measured, args);
    }
    for t in tokens {
        let r = &t.record;
        let mut args = Map::new();
        args.insert("token_index".into(), json!(r.token_index));
        args.insert("phase".into(), json!(r.phase));
        args.insert("n_tokens".into(), json!(r.n_tokens));
        put(&mut args, "token_id", r.token_id);
        put(&mut args, "text", r.text.as_deref());
        let name = format!("token {} ({})", r.token_index, r.phase);
        complete(name, "token", &r.measured, args);
    }
    for l in layers {
        let r = &l.record;
        let mut args = Map::new();
        args.insert("token_index".into(), json!(r.token_index));
        args.insert("layer_index".into(), json!(r.layer_index));
        complete(
            format!("layer {}", r.layer_index),
            "layer",
            &r.measured,
            args,
        );
    }
    for c in components {
        let r = &c.record;
        let mut args = Map::new();
        args.insert("token_index".into(), json!(r.token_index));
        put(&mut args, "layer_index", r.layer_index);
        args.insert("component_index".into(), json!(r.component_index));
        args.insert("span".into(), json!(r.name));
        complete(r.component.clone(), "component", &r.measured, args);
    }
    for o in operations {
        let r = &o.record;
        let mut args = Map::new();
        args.insert("token_index".into(), json!(r.token_index));
        put(&mut args, "layer_index", r.layer_index);
        args.insert("component_index".into(), json!(r.component_index));
        args.insert("op_index".into(), json!(r.op_index));
        args.insert("span".into(), json!(r.name));
        complete(r.operation.clone(), "operation", &r.measured, args);
    }

    counters(power, t0, &mut timed);

    // By time; at equal times the longer (enclosing) event first.
    timed.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));

    let process_name = match &run_row.model {
        Some(m) => format!("tracing-energy run {} ({m})", run_row.run_id),
        None => format!("tracing-energy run {}", run_row.run_id),
    };
    let mut events = Vec::with_capacity(timed.len() + tids.len() + 1);
    events.push(json!({
        "name": "process_name", "ph": "M", "pid": PID, "tid": 0,
        "args": {"name": process_name},
    }));
    for tid in &tids {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": PID, "tid": tid,
            "args": {"name": format!("thread {tid}")},
        }));
        events.push(json!({
            "name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid,
            "args": {"sort_index": tid},
        }));
    }
    events.extend(timed.into_iter().map(|(_, _, e)| e));

    let mut metadata = match serde_json::to_value(run_row) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    metadata.retain(|_, v| !v.is_null());
    metadata.insert("time_origin_ns".into(), json!(t0));
    metadata.insert("energy_unit".into(), json!("mJ"));
    metadata.insert(
        "generator".into(),
        json!(format!("tracing-energy {}", env!("CARGO_PKG_VERSION"))),
    );

    // Moved in, not through `json!` (which would serialize a copy of every event).
    let mut trace = Map::new();
    trace.insert("traceEvents".into(), Value::Array(events));
    trace.insert("displayTimeUnit".into(), json!("ms"));
    trace.insert("metadata".into(), Value::Object(metadata));
    Value::Object(trace)
}

/// A JSON object from its members, moved in (`json!` would serialize a copy of each value).
fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn micros(ns: u64, t0: u64) -> f64 {
    ns.saturating_sub(t0) as f64 / 1000.0
}

fn put<T: serde::Serialize>(args: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        args.insert(key.into(), json!(v));
    }
}

fn put_f64(args: &mut Map<String, Value>, key: &str, v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite()) {
        args.insert(key.into(), json!(v));
    }
}

fn energy_args(m: &Measured, args: &mut Map<String, Value>) {
    put_f64(args, "energy_mj", m.energy_mj);
    put_f64(args, "exclusive_energy_mj", m.exclusive_energy_mj);
    put_f64(args, "cpu_energy_mj", m.cpu_energy_mj);
    put_f64(args, "gpu_energy_mj", m.gpu_energy_mj);
    put_f64(args, "ane_energy_mj", m.ane_energy_mj);
    put_f64(args, "dram_energy_mj", m.dram_energy_mj);
    put_f64(args, "energy_uncertainty_mj", m.energy_uncertainty_mj);
    put(args, "energy_method", m.energy_method.as_deref());
    put(args, "sample_windows", m.sample_windows);
    args.insert("duration_ms".into(), json!(m.duration_ms()));
}

/// Power counters at each sample's start, and the last values again at the last end.
fn counters(power: &[PowerRow], t0: u64, out: &mut Vec<(f64, f64, Value)>) {
    let domains = |p: &PowerRow| {
        let mut args = Map::new();
        put_f64(&mut args, "cpu", p.cpu_mw);
        put_f64(&mut args, "gpu", p.gpu_mw);
        put_f64(&mut args, "ane", p.ane_mw);
        put_f64(&mut args, "dram", p.dram_mw);
        args
    };
    let mut push = |ts: f64, p: &PowerRow| {
        let d = domains(p);
        if !d.is_empty() {
            out.push((
                ts,
                0.0,
                object([
                    ("name", Value::from("power (mW)")),
                    ("cat", Value::from("power")),
                    ("ph", Value::from("C")),
                    ("ts", Value::from(ts)),
                    ("pid", Value::from(PID)),
                    ("args", Value::Object(d)),
                ]),
            ));
        }
        let total = if p.total_mw.is_finite() {
            p.total_mw
        } else {
            0.0
        };
        out.push((
            ts,
            0.0,
            json!({
                "name": "total power (mW)", "cat": "power", "ph": "C", "ts": ts, "pid": PID,
                "args": {"total": total},
            }),
        ));
    };
    for p in power {
        push(micros(p.start_ns, t0), p);
    }
    if let Some(last) = power.last() {
        push(micros(last.end_ns, t0), last);
    }
}
