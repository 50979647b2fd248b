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
//! - **Hot path** (`layer/hot.rs`). `on_enter` and `on_exit` read the clock and push or pop a
//!   frame on a per-thread stack; `on_exit` pushes one fixed-size record into the thread's
//!   own single-producer ring (allocated once per thread). No allocation, lock, system
//!   call or SQLite work happens per enter or exit (a span is looked up in the registry the
//!   first time a thread enters it, and again after any span closes, since span ids are
//!   reused: every close makes each thread re-resolve its small cache). When a ring is full, the [`Overflow`]
//!   policy applies: wait briefly for the processor, then drop and count (the count is
//!   stored on the run).
//! - **Processor thread** (`layer/processor/`). Drains the rings every few milliseconds and
//!   finalizes each section as soon as the power samples cover it (the sample buffer's
//!   watermark): a streaming form of the attribution ([`crate::attribution::EnergyStream`])
//!   gives each section's energy in O(log n), and what lies behind the oldest open section
//!   is pruned, so cost per section and memory do not grow with the run.
//! - **Spans.** The [`Vocabulary`] decides what a span is. Token spans and forward passes
//!   become token, layer, component and operation rows (one per enter, as candle's
//!   long-lived spans are entered once per token); any other span becomes one row per span
//!   *instance* in `pipeline_sections`, its polls (enters) summed, written when it closes.
//!   candle creates its spans once, when a model is built, so install the subscriber
//!   *before* building the model, and do not filter `candle_transformers` below TRACE.
//! - **Guard** ([`EnergyGuard`]). Finishing it waits (a bounded time) for the samples that
//!   cover the last sections, stops the sampler, writes what is left and marks the run
//!   complete (or failed, when the thread is panicking). [`EnergyGuard::rotate`] (or
//!   [`EnergyLayerBuilder::rotate_every`]) closes the run and starts the next one without
//!   reinstalling the subscriber.

mod builder;
mod calibrate;
mod guard;
mod hot;
mod processor;
mod vocabulary;

use std::path::PathBuf;
use std::sync::Arc;

pub use builder::{EnergyLayerBuilder, Overflow};
pub use guard::EnergyGuard;
pub use hot::EnergyLayer;
pub use vocabulary::{FieldValue, Role, Vocabulary};

use crate::store::RunId;

/// Where the synchronize hook is called (a layer without a hook never synchronizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPoint {
    /// Before a token span (or a token-yielding phase) ends.
    PerToken,
    /// Before a layer ends (candle's `attn-mlp`, a `block`, or a `layer = I` span) and
    /// before a token ends.
    PerLayer,
}

/// A fence such as candle's `Device::synchronize`, called where [`SyncPoint`] says, so that
/// span times on a GPU include the GPU's work.
pub type SyncFn = Arc<dyn Fn() + Send + Sync>;

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
    /// Energy attributed to sections (mJ): the sum of every row's exclusive energy.
    pub attributed_energy_mj: Option<f64>,
    /// Energy not attributed (mJ): time with no section open, and the part before the
    /// run's end of sections still open then.
    pub unattributed_energy_mj: Option<f64>,
    /// Section records processed (one per span enter).
    pub sections: u64,
    /// Token rows written.
    pub tokens: u64,
    /// Records dropped (hot path overflow, or not writable).
    pub dropped_records: u64,
    /// Of those, section records the hot path dropped because its ring was full.
    pub dropped_sections: u64,
    /// The power source's failure, if it failed.
    pub source_error: Option<String>,
    /// The run's start and end on the process's monotonic timeline (ns).
    pub start_ns: u64,
    /// See `start_ns`.
    pub end_ns: u64,
    /// The most memory the processor held at once during the run (bytes, estimated from
    /// what it keeps: queued records, open trees, span instances, the energy function).
    pub peak_processor_bytes: u64,
    /// How the run ended: complete, interrupted or failed.
    pub status: crate::store::RunStatus,
    /// The run's length (ms).
    pub duration_ms: Option<f64>,
    /// How much of the run power samples covered (ms); `None` without a power source.
    pub measured_ms: Option<f64>,
    /// What went wrong with the measurement (also stored on the run).
    pub warnings: Vec<String>,
    /// The idle baseline measured before the run, `None` without one.
    pub baseline: Option<crate::store::Baseline>,
    /// `total_energy_mj` less the idle power over the measured time (mJ; may be
    /// negative); `None` without a baseline.
    pub dynamic_total_energy_mj: Option<f64>,
    /// What profiling cost the process during the run: the CPU time of the sampler,
    /// processor and writer threads, the hot path's estimated time, and the process's CPU
    /// time (also stored on the run).
    pub profiler: Option<crate::store::ProfilerCost>,
}
