//! # tracing-energy
//!
//! Where does the energy of transformer inference go? `tracing-energy` is a
//! [`tracing_subscriber::Layer`]: add it to a traced program and every span becomes a timed
//! section with the energy it used, per phase (prefill, decode), per token, per layer and
//! per component (attention, MLP, norms, single matmuls), stored in one SQLite file.
//!
//! ## Quick start
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! // Before building any model: candle creates its spans when the model is built.
//! let (layer, guard) = tracing_energy::EnergyLayer::builder()
//!     .db("profiles.db")           // one SQLite file holds every run
//!     .model("SmolLM2-135M")       // powermetrics on a Mac, else a CPU-time estimate
//!     .build()?;
//! tracing_subscriber::registry().with(layer).init();
//! // ... run the model: candle-transformers' spans are understood as they are ...
//! let report = guard.finish()?;    // waits for the last samples, attributes, writes
//! println!("run {}: {:?} mJ", report.run_id, report.total_energy_mj);
//! # Ok::<(), tracing_energy::Error>(())
//! ```
//!
//! ## Parts
//!
//! - [`power`]: the sample type, power sources (Apple's `powermetrics`, a replayed capture,
//!   an honest CPU-time estimate labelled `estimated`), the sampler thread and the global
//!   sample buffer.
//! - [`layer`]: the [`EnergyLayer`], its builder and guard, and the span [`Vocabulary`].
//! - [`attribution`]: how sections and samples are joined, with exact conservation and an
//!   uncertainty that says what a given sample interval lets you conclude.
//! - [`store`]: the SQLite schema, the batched writer thread and the read queries.
//! - `candle` (feature `candle`, on by default): loading GGUF models, their tokenizer and a
//!   traced generation loop; `candle::profile::run` (typed options in, a summary out) is
//!   the main job behind `tracing-energy profile` and `cargo run --release --example profile`.
//! - [`clock`]: the process-wide monotonic timeline sections and samples share.

#![warn(missing_docs)]

pub mod attribution;
pub mod baseline;
#[cfg(feature = "candle")]
pub mod candle;
pub mod clock;
pub mod cpu_time;
mod error;
mod host;
pub mod layer;
pub mod metrics;
pub mod power;
pub mod report;
pub mod stats;
pub mod store;

pub use attribution::Attribution;
pub use error::{Error, Result};
pub use layer::{
    EnergyGuard, EnergyLayer, EnergyLayerBuilder, Overflow, RunReport, SyncPoint, Vocabulary,
};
