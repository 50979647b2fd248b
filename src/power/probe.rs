//! Trying a source for real: run it briefly and wait for its first sample.
//!
//! Finding an executable is not enough to know that a source works (powermetrics may be
//! there and refuse to run without root, or print something that is not a plist). `doctor`
//! and the `auto` choice run the source through a [`Sampler`] until it delivers one window,
//! fails, or a deadline passes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::{PowerSample, PowerSource, SampleBuffer, Sampler, SamplerConfig, SamplerStatus};
use crate::{Error, Result};

/// How long a probe waits for the first sample by default.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The window length a probe asks for.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// What a working source showed when it was tried.
#[derive(Debug, Clone)]
pub struct Probed {
    /// Its first sample.
    pub sample: PowerSample,
    /// Its counter's update period, measured as the sampler started it
    /// ([`PowerSource::counter_update_period`]).
    pub counter_update: Option<Duration>,
}

/// Runs `source` with windows of `interval` until its first sample, its failure, or
/// `timeout`, then stops it. Nothing reaches the global sample buffer.
///
/// # Errors
/// [`Error::SourceUnavailable`] when the source says it cannot run here,
/// [`Error::SourceFailed`] when it fails, ends, or stays silent until `timeout`.
pub fn probe(
    source: Box<dyn PowerSource>,
    interval: Duration,
    timeout: Duration,
) -> Result<Probed> {
    let name = source.name();
    let (tx, rx) = crossbeam_channel::bounded(4);
    let mut config = SamplerConfig::new(interval)
        .buffer(Arc::new(SampleBuffer::new()))
        .tap(tx);
    // The caller reports the failure; the sampler's own log line would repeat it.
    config.log_failure = false;
    let sampler = Sampler::start(source, config)?;
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(sample) => {
                let counter_update = sampler.counter_update();
                drop(sampler.stop());
                return Ok(Probed {
                    sample,
                    counter_update,
                });
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                let status = sampler.status();
                if status != SamplerStatus::Running || Instant::now() >= deadline {
                    let report = sampler.stop();
                    let reason = match report.status {
                        SamplerStatus::Failed(why) => {
                            let prefix = format!("power source `{name}` failed: ");
                            why.strip_prefix(&prefix)
                                .map_or(why.clone(), str::to_string)
                        }
                        SamplerStatus::Finished => "it ended before delivering a sample".into(),
                        _ => format!(
                            "it delivered no sample in {:.1} s",
                            started.elapsed().as_secs_f64()
                        ),
                    };
                    let rejected: Vec<String> = report
                        .rejected
                        .iter()
                        .map(|(kind, n)| format!("{n} unusable window(s): {kind}"))
                        .collect();
                    return Err(Error::SourceFailed {
                        source_name: name,
                        reason: if rejected.is_empty() {
                            reason
                        } else {
                            format!("{reason} ({})", rejected.join(", "))
                        },
                    });
                }
            }
        }
    }
}
