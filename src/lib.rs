//! # tracing-energy
//!
//! Where does the energy of transformer inference go? `tracing-energy` measures power while
//! a traced Rust program runs and attributes the energy to its spans: joules per token, per
//! phase (prefill, decode), per layer and per component.
//!
//! This release provides the power-sampling core:
//!
//! - [`power::PowerSample`]: one measured window on the process's monotonic timeline
//!   ([`clock`]), with energy per domain (CPU, GPU, ANE, DRAM; `None` where not measured).
//! - [`power::PowerSource`] and its implementations: Apple's `powermetrics`
//!   ([`power::PowermetricsSource`]), a replay of a recorded capture
//!   ([`power::ReplaySource`]), and an estimate from CPU time for machines without a sensor
//!   ([`power::EstimateSource`], always labelled `estimated`).
//! - [`power::Sampler`]: runs a source on its own thread, feeding the global
//!   [`power::SampleBuffer`].
//!
//! ## Quick start
//!
//! ```no_run
//! use std::time::Duration;
//! use tracing_energy::power::{Domain, Sampler, SamplerConfig, SampleBuffer, SourceSpec};
//!
//! let source = SourceSpec::parse("auto")?.build()?; // powermetrics on a Mac, else an estimate
//! let sampler = Sampler::start(source, SamplerConfig::new(Duration::from_millis(100)))?;
//! let t0 = tracing_energy::clock::now_ns();
//! std::thread::sleep(Duration::from_millis(500)); // the work to measure
//! let t1 = tracing_energy::clock::now_ns();
//! let report = sampler.stop();
//! let mj: f64 = SampleBuffer::global().overlapping(t0, t1).iter().map(|s| s.total_mj).sum();
//! println!("{mj:.1} mJ from {} (estimated: {})", report.source, report.estimated);
//! # Ok::<(), tracing_energy::Error>(())
//! ```
//!
//! The command-line tool prints samples as they arrive and says which sources work here:
//!
//! ```text
//! tracing-energy sample --source estimate --count 5
//! tracing-energy doctor
//! ```

#![warn(missing_docs)]

pub mod attribution;
#[cfg(feature = "candle")]
pub mod candle;
pub mod clock;
mod error;
pub mod layer;
pub mod power;
pub mod store;

pub use error::{Error, Result};
pub use layer::{EnergyGuard, EnergyLayer, EnergyLayerBuilder, RunReport, SyncPoint, Vocabulary};
