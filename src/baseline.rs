//! Measuring an idle baseline: a power source run through the real [`Sampler`] while
//! nothing is profiled, its windows averaged per domain.
//!
//! [`EnergyLayerBuilder::baseline`](crate::layer::EnergyLayerBuilder::baseline) uses
//! [`wait_for`] on the run's own sampler (the source is started once: its first seconds are
//! the baseline, the run starts after them); [`measure`] runs a source on its own, into a
//! private buffer, and stops it.
//!
//! The mean power of a domain is its energy summed over the windows divided by their
//! summed length, so windows of any length weigh by their time. A domain that any window
//! lacks is `None` (unknown, never 0).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::power::SamplerStatus;
use crate::power::{Domain, PowerSample, PowerSource, SampleBuffer, Sampler, SamplerConfig};
use crate::store::Baseline;
use crate::{clock, Error, Result};

/// The mean power per domain over `samples` (windows of one source), `None` when there are
/// none.
pub fn from_samples(samples: &[PowerSample]) -> Option<Baseline> {
    let ns: u64 = samples.iter().map(PowerSample::duration_ns).sum();
    if samples.is_empty() || ns == 0 {
        return None;
    }
    let mw = |mj: f64| mj * 1e9 / ns as f64;
    let domain = |d: Domain| -> Option<f64> {
        samples
            .iter()
            .map(|s| s.energy.get(d))
            .sum::<Option<f64>>()
            .map(mw)
    };
    Some(Baseline {
        duration_ms: ns as f64 / 1e6,
        cpu_mw: domain(Domain::Cpu),
        gpu_mw: domain(Domain::Gpu),
        ane_mw: domain(Domain::Ane),
        dram_mw: domain(Domain::Dram),
        total_mw: mw(samples.iter().map(|s| s.total_mj).sum()),
    })
}

/// Waits `duration` while `sampler` runs, then averages the windows it pushed that ended
/// after `since_ns` (on [`clock::now_ns`]'s timeline: take it before starting the sampler).
/// When no window has ended by then, it waits up to `grace` more for the first one (a
/// source whose windows are longer than `duration`, such as a capture recorded at 5 s).
///
/// # Errors
/// [`Error::SourceFailed`] when the source fails during the wait;
/// [`Error::NoBaseline`] when it delivered no window in `duration` + `grace`.
pub fn wait_for(
    sampler: &Sampler,
    since_ns: u64,
    duration: Duration,
    grace: Duration,
) -> Result<Baseline> {
    let started = Instant::now();
    let windows = || -> Vec<PowerSample> {
        sampler
            .buffer()
            .overlapping_source(sampler.source_id(), since_ns, clock::now_ns())
            .into_iter()
            .filter(|s| s.end_ns > since_ns)
            .collect()
    };
    loop {
        let waited = started.elapsed();
        match sampler.status() {
            SamplerStatus::Failed(why) => {
                return Err(Error::SourceFailed {
                    source_name: sampler.source_name().to_string(),
                    reason: format!("during the idle baseline: {why}"),
                })
            }
            SamplerStatus::Finished => break,
            _ if waited >= duration + grace => break,
            _ if waited >= duration && !windows().is_empty() => break,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    from_samples(&windows()).ok_or_else(|| Error::NoBaseline {
        source_name: sampler.source_name().to_string(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs `source` with windows of `interval` for `duration` while nothing is profiled, and
/// returns its mean power per domain. Nothing reaches the global sample buffer.
///
/// # Errors
/// As [`wait_for`], and [`Sampler::start`]'s.
pub fn measure(
    source: Box<dyn PowerSource>,
    interval: Duration,
    duration: Duration,
) -> Result<Baseline> {
    clock::init();
    let since = clock::now_ns();
    let mut config = SamplerConfig::new(interval).buffer(Arc::new(SampleBuffer::new()));
    config.log_failure = false;
    let sampler = Sampler::start(source, config)?;
    let baseline = wait_for(&sampler, since, duration, Duration::ZERO);
    drop(sampler.stop());
    baseline
}
