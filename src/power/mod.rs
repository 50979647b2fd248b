//! Power sampling: the sample type, the [`PowerSource`] trait, the sampler thread and the
//! global sample buffer.
//!
//! A source measures (or, for [`EstimateSource`], estimates) the energy of consecutive
//! windows of time. A [`Sampler`] runs one source on its own thread and pushes every window
//! as a [`PowerSample`] into a [`SampleBuffer`], by default the process-wide
//! [`SampleBuffer::global`]. Everything that attributes energy to sections reads that buffer.
//!
//! ```no_run
//! use std::time::Duration;
//! use tracing_energy::power::{Sampler, SamplerConfig, SourceSpec};
//!
//! let source = SourceSpec::parse("estimate").unwrap().build().unwrap();
//! let sampler = Sampler::start(source, SamplerConfig::new(Duration::from_millis(100))).unwrap();
//! // ... the work to measure ...
//! let report = sampler.stop();
//! println!("{} samples from {}", report.samples, report.source);
//! ```

mod buffer;
mod chain;
pub mod estimate;
pub mod nvml;
pub mod plist_stream;
pub mod polled;
pub mod powermetrics;
pub mod powermetrics_tasks;
mod probe;
pub mod rapl;
pub mod replay;
mod sampler;
mod sampler_process;
mod spec;
pub mod tdp;

use std::sync::Arc;

use serde::Serialize;

pub use buffer::{SampleBuffer, SourceId};
pub use estimate::{EstimateParams, EstimateScope, EstimateSource};
pub use polled::{Meter, PolledSource};
pub use powermetrics::PowermetricsSource;
pub use probe::{probe, Probed, PROBE_INTERVAL, PROBE_TIMEOUT};
pub use replay::ReplaySource;
pub use sampler::{Sampler, SamplerConfig, SamplerReport, SamplerStatus, SourceContext, SourceEnd};
pub use sampler_process::{SamplerProcessTally, SamplerProcessTotals, SamplerProcessWindow};
pub use spec::{Chosen, SourceSpec};
pub use tdp::{CpuWatts, WattsOrigin};

use crate::Result;

/// A power domain: a part of the machine whose energy a source may measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// The CPU cores (on Apple Silicon: all CPU clusters).
    Cpu,
    /// The GPU.
    Gpu,
    /// Apple's Neural Engine.
    Ane,
    /// Memory (DRAM).
    Dram,
}

impl Domain {
    /// All domains, in a fixed order.
    pub const ALL: [Domain; 4] = [Domain::Cpu, Domain::Gpu, Domain::Ane, Domain::Dram];

    /// The domain's lower-case name: `cpu`, `gpu`, `ane`, `dram`.
    pub fn name(self) -> &'static str {
        match self {
            Domain::Cpu => "cpu",
            Domain::Gpu => "gpu",
            Domain::Ane => "ane",
            Domain::Dram => "dram",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Energy per domain for one window, in millijoules. `None` means *not measured*, never 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DomainEnergy {
    /// CPU energy (mJ).
    pub cpu: Option<f64>,
    /// GPU energy (mJ).
    pub gpu: Option<f64>,
    /// Neural Engine energy (mJ).
    pub ane: Option<f64>,
    /// Memory energy (mJ).
    pub dram: Option<f64>,
}

impl DomainEnergy {
    /// The energy of one domain.
    pub fn get(&self, domain: Domain) -> Option<f64> {
        match domain {
            Domain::Cpu => self.cpu,
            Domain::Gpu => self.gpu,
            Domain::Ane => self.ane,
            Domain::Dram => self.dram,
        }
    }

    /// The sum of the measured domains, or `None` when no domain is measured.
    pub fn total(&self) -> Option<f64> {
        let known: Vec<f64> = Domain::ALL.iter().filter_map(|d| self.get(*d)).collect();
        if known.is_empty() {
            None
        } else {
            Some(known.iter().sum())
        }
    }

    /// True when any measured domain is NaN or infinite.
    pub fn has_non_finite(&self) -> bool {
        Domain::ALL
            .iter()
            .filter_map(|d| self.get(*d))
            .any(|v| !v.is_finite())
    }

    fn to_array(self) -> [f64; 4] {
        Domain::ALL.map(|d| self.get(d).unwrap_or(f64::NAN))
    }

    fn from_array(a: [f64; 4]) -> Self {
        let f = |v: f64| if v.is_nan() { None } else { Some(v) };
        DomainEnergy {
            cpu: f(a[Domain::Cpu.index()]),
            gpu: f(a[Domain::Gpu.index()]),
            ane: f(a[Domain::Ane.index()]),
            dram: f(a[Domain::Dram.index()]),
        }
    }
}

/// One measured window of power on the process's monotonic timeline.
///
/// `start_ns` and `end_ns` are nanoseconds since the process time origin
/// ([`crate::clock::now_ns`]). Energies are in millijoules for the whole window; mean
/// powers (milliwatts) are energy divided by the window's length. A domain the source does
/// not measure is `None`: unknown is never reported as 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PowerSample {
    /// Window start, ns since the process time origin.
    pub start_ns: u64,
    /// Window end (exclusive), ns since the process time origin. Always `> start_ns`.
    pub end_ns: u64,
    /// Energy per domain (mJ).
    pub energy: DomainEnergy,
    /// Energy of all measured domains together (mJ).
    pub total_mj: f64,
    /// The source's name: `powermetrics`, `estimate`, `replay:<file>`, ...
    pub source: Arc<str>,
    /// True when the values are estimated rather than measured by a sensor.
    pub estimated: bool,
}

/// A measured sample of the CPU alone, `cpu_mj` over `[start, end]`, from source `test`
/// (for unit tests).
#[cfg(test)]
pub(crate) fn cpu_sample(start: u64, end: u64, cpu_mj: f64) -> PowerSample {
    let energy = DomainEnergy {
        cpu: Some(cpu_mj),
        ..Default::default()
    };
    PowerSample::new(start, end, energy, std::sync::Arc::from("test"), false)
        .expect("a window with an end after its start")
}

impl PowerSample {
    /// Builds a sample. The total is the sum of the measured domains.
    ///
    /// Returns `None` when the window is empty (`end_ns <= start_ns`), no domain is
    /// measured, or a value is not finite: such a window cannot be used.
    pub fn new(
        start_ns: u64,
        end_ns: u64,
        energy: DomainEnergy,
        source: Arc<str>,
        estimated: bool,
    ) -> Option<PowerSample> {
        if end_ns <= start_ns || energy.has_non_finite() {
            return None;
        }
        let total_mj = energy.total()?;
        Some(PowerSample {
            start_ns,
            end_ns,
            energy,
            total_mj,
            source,
            estimated,
        })
    }

    /// The window's length in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }

    /// Mean power of one domain over the window (mW), `None` where not measured.
    pub fn power_mw(&self, domain: Domain) -> Option<f64> {
        self.energy.get(domain).map(|mj| self.mj_to_mw(mj))
    }

    /// Mean power of all measured domains (mW).
    pub fn total_mw(&self) -> f64 {
        self.mj_to_mw(self.total_mj)
    }

    fn mj_to_mw(&self, mj: f64) -> f64 {
        mj * 1e9 / self.duration_ns() as f64
    }
}

/// Whether a source can run on this machine, and if not, why and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Availability {
    /// The source can run here. The text says what it will use.
    Available(String),
    /// The source cannot run here.
    Unavailable {
        /// Why not.
        reason: String,
        /// What the user can do about it.
        fix: String,
    },
}

impl Availability {
    /// True for [`Availability::Available`].
    pub fn is_available(&self) -> bool {
        matches!(self, Availability::Available(_))
    }
}

/// A source of power samples.
///
/// [`Sampler::start`] runs [`PowerSource::run`] on a dedicated thread. The source pushes each
/// completed window through [`SourceContext::emit`] and returns when
/// [`SourceContext::stop_requested`] (or the stop channel) says so, when its data ends, or
/// with an error when it fails.
pub trait PowerSource: Send + 'static {
    /// The name samples carry, e.g. `powermetrics` or `replay:capture.plist`.
    fn name(&self) -> String;

    /// True when the source estimates rather than measures.
    fn estimated(&self) -> bool;

    /// Whether the source can run on this machine, with a reason a user can act on.
    fn is_available(&self) -> Availability;

    /// Runs the source until it is asked to stop, its data ends, or it fails.
    fn run(&mut self, ctx: &mut SourceContext) -> Result<SourceEnd>;

    /// How often the sensor's counter really changes, measured before the source runs
    /// (a short burst of reads; see [`polled::update_period`]); `None` where not known or
    /// not a counter. [`Sampler::start`] calls it once.
    fn counter_update_period(&mut self) -> Result<Option<std::time::Duration>> {
        Ok(None)
    }

    /// How the source measures, where it has a choice (e.g. `nvml: power x time` on a GPU
    /// without an energy counter), for the run's record.
    fn method(&self) -> Option<String> {
        None
    }
}
