//! A power source whose truth is known, for scoring attribution methods.
//!
//! Power is a known function of what runs: `idle_mw`, plus `P_k` for every thread that has
//! a span of component kind `k` open (a span with a `component = "k"` field, the convention
//! the energy layer reads; open from its first enter to its close, the window the energy
//! layer gives the span's row; a thread counts for its innermost such span). An [`OracleLayer`] beside the energy layer records
//! every change of that function on the process clock; the [`OracleSource`] integrates it
//! exactly over each window. A change is stamped before it takes the oracle's lock (so a
//! sampler thread holding the lock cannot delay the stamp) and counted in flight until it
//! is recorded; a window ends only when no change is in flight, so it never misses one
//! stamped before its end.
//!
//! The truth per kind is `P_k` times the time the kind ran (summed over threads); the
//! background, `idle_mw` times the wall time, belongs to no component.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_energy::clock;
use tracing_energy::power::{
    Availability, DomainEnergy, PowerSample, PowerSource, SourceContext, SourceEnd,
};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The known powers and what has run so far.
#[derive(Clone)]
pub struct Oracle {
    state: Arc<Mutex<State>>,
    /// Changes stamped but not yet recorded.
    in_flight: Arc<AtomicUsize>,
}

/// A change of what a thread runs.
enum Change {
    Open(usize),
    Close(usize),
}

struct State {
    idle_mw: f64,
    kinds: Vec<(String, f64)>,
    /// Per thread: the kinds of the open component spans, innermost last.
    threads: HashMap<ThreadId, Vec<usize>>,
    /// Threads currently counted in each kind (a thread counts for its innermost kind).
    running: Vec<u32>,
    /// Up to when the books below are settled.
    settled_ns: u64,
    /// Time each kind ran, summed over threads (ns).
    ran_ns: Vec<f64>,
    /// Energy not yet handed to a window (mJ).
    unreported_mj: f64,
    /// Changes recorded but not yet applied (they may be stamped after `settled_ns`).
    changes: Vec<(u64, ThreadId, Change)>,
}

impl State {
    fn power_mw(&self) -> f64 {
        self.idle_mw
            + self
                .kinds
                .iter()
                .zip(&self.running)
                .map(|((_, p), n)| p * *n as f64)
                .sum::<f64>()
    }

    /// Brings the books up to `now` at the power that has held since the last change.
    fn settle(&mut self, now: u64) {
        let dt = now.saturating_sub(self.settled_ns) as f64;
        self.unreported_mj += self.power_mw() * dt / 1e9;
        for (ran, n) in self.ran_ns.iter_mut().zip(&self.running) {
            *ran += *n as f64 * dt;
        }
        self.settled_ns = self.settled_ns.max(now);
    }

    fn innermost(&self, thread: &ThreadId) -> Option<usize> {
        self.threads.get(thread).and_then(|s| s.last().copied())
    }

    /// Applies the changes stamped up to `end`, in time order, settling the books before
    /// each, then settles up to `end`.
    fn settle_to(&mut self, end: u64) {
        self.changes.sort_by_key(|c| c.0);
        let due = self.changes.partition_point(|c| c.0 <= end);
        let changes: Vec<_> = self.changes.drain(..due).collect();
        for (at, thread, change) in changes {
            self.settle(at);
            let before = self.innermost(&thread);
            let stack = self.threads.entry(thread).or_default();
            match change {
                Change::Open(k) => stack.push(k),
                Change::Close(k) => {
                    if let Some(pos) = stack.iter().rposition(|x| *x == k) {
                        stack.remove(pos);
                    }
                }
            }
            let after = self.innermost(&thread);
            if let Some(k) = before {
                self.running[k] -= 1;
            }
            if let Some(k) = after {
                self.running[k] += 1;
            }
        }
        self.settle(end);
    }
}

/// The truth for one kind over the oracle's life so far.
#[derive(Debug, Clone, PartialEq)]
pub struct KindTruth {
    pub kind: String,
    pub power_mw: f64,
    /// Time it ran, summed over threads (s).
    pub seconds: f64,
    /// `power_mw * seconds` (mJ).
    pub energy_mj: f64,
}

impl Oracle {
    /// Background `idle_mw`, and each kind's added power (mW).
    pub fn new(idle_mw: f64, kinds: &[(&str, f64)]) -> Oracle {
        Oracle {
            state: Arc::new(Mutex::new(State {
                idle_mw,
                kinds: kinds.iter().map(|(k, p)| (k.to_string(), *p)).collect(),
                threads: HashMap::new(),
                running: vec![0; kinds.len()],
                settled_ns: clock::now_ns(),
                ran_ns: vec![0.0; kinds.len()],
                unreported_mj: 0.0,
                changes: Vec::new(),
            })),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The layer that tells the oracle what runs.
    pub fn layer(&self) -> OracleLayer {
        OracleLayer {
            oracle: self.clone(),
        }
    }

    /// The power source that reports the oracle's power, window by window.
    pub fn source(&self) -> OracleSource {
        OracleSource {
            oracle: self.clone(),
        }
    }

    /// Each kind's truth up to now.
    pub fn truth(&self) -> Vec<KindTruth> {
        let (st, _) = self.settled();
        st.kinds
            .iter()
            .zip(&st.ran_ns)
            .map(|((kind, p), ns)| KindTruth {
                kind: kind.clone(),
                power_mw: *p,
                seconds: ns / 1e9,
                energy_mj: p * ns / 1e9,
            })
            .collect()
    }

    /// Records a change of what `thread` runs, stamped now.
    fn change(&self, thread: ThreadId, change: Change) {
        self.in_flight.fetch_add(1, SeqCst);
        let at = clock::now_ns();
        self.state
            .lock()
            .unwrap()
            .changes
            .push((at, thread, change));
        self.in_flight.fetch_sub(1, SeqCst);
    }

    /// The books settled up to now, once no change is in flight; and that time.
    fn settled(&self) -> (std::sync::MutexGuard<'_, State>, u64) {
        let end = clock::now_ns();
        while self.in_flight.load(SeqCst) != 0 {
            std::thread::yield_now();
        }
        let mut st = self.state.lock().unwrap();
        st.settle_to(end);
        (st, end)
    }

    /// The energy since the last call (mJ) and the time it ends at.
    fn take(&self) -> (u64, f64) {
        let (mut st, end) = self.settled();
        (end, std::mem::take(&mut st.unreported_mj))
    }
}

/// Records the component spans' enter and exit for the [`Oracle`].
pub struct OracleLayer {
    oracle: Oracle,
}

/// The kind index of a span, kept in its extensions.
#[derive(Clone, Copy)]
struct KindOf(usize);

/// The thread that first entered the span.
#[derive(Clone, Copy)]
struct EnteredOn(ThreadId);

struct ComponentField(Option<String>);

impl Visit for ComponentField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "component" {
            self.0 = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "component" && self.0.is_none() {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_string());
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for OracleLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut v = ComponentField(None);
        attrs.record(&mut v);
        let Some(kind) = v.0 else { return };
        let index = {
            let st = self.oracle.state.lock().unwrap();
            st.kinds.iter().position(|(k, _)| *k == kind)
        };
        if let (Some(i), Some(span)) = (index, ctx.span(id)) {
            span.extensions_mut().insert(KindOf(i));
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        let Some(&mut KindOf(k)) = ext.get_mut::<KindOf>() else {
            return;
        };
        if ext.get_mut::<EnteredOn>().is_some() {
            return;
        }
        let thread = std::thread::current().id();
        ext.insert(EnteredOn(thread));
        self.oracle.change(thread, Change::Open(k));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let ext = span.extensions();
        let (Some(&KindOf(k)), Some(&EnteredOn(thread))) =
            (ext.get::<KindOf>(), ext.get::<EnteredOn>())
        else {
            return;
        };
        self.oracle.change(thread, Change::Close(k));
    }
}

/// Windows of the oracle's power, integrated exactly. Labelled estimated: it is a model,
/// never a measurement.
pub struct OracleSource {
    oracle: Oracle,
}

impl PowerSource for OracleSource {
    fn name(&self) -> String {
        "oracle".into()
    }

    fn estimated(&self) -> bool {
        true
    }

    fn is_available(&self) -> Availability {
        Availability::Available("a synthetic power with a known truth".into())
    }

    fn run(&mut self, ctx: &mut SourceContext) -> tracing_energy::Result<SourceEnd> {
        let name = ctx.source_name();
        let interval = ctx.interval();
        let (mut prev, _) = self.oracle.take();
        loop {
            if ctx.wait(interval) {
                return Ok(SourceEnd::Stopped);
            }
            let (now, mj) = self.oracle.take();
            let energy = DomainEnergy {
                cpu: Some(mj),
                ..Default::default()
            };
            if let Some(s) = PowerSample::new(prev, now, energy, Arc::clone(&name), true) {
                ctx.emit(s);
            }
            prev = now;
        }
    }
}
