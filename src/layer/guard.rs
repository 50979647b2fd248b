//! The guard: ends the run (or rotates to the next) and reports what it recorded.

use std::sync::Arc;

use super::hot::Shared;
use super::processor::{Ending, ProcessorHandle};
use super::RunReport;
use crate::metrics::MetricsServer;
use crate::store::{NewRun, RunId};
use crate::{Error, Result};

/// Finishes the run when dropped or [`EnergyGuard::finish`]ed.
pub struct EnergyGuard {
    processor: Option<ProcessorHandle>,
    shared: Arc<Shared>,
    run_id: RunId,
    /// The live metrics server, stopped after the last run is written.
    metrics: Option<MetricsServer>,
}

impl EnergyGuard {
    pub(crate) fn new(
        processor: ProcessorHandle,
        shared: Arc<Shared>,
        run_id: RunId,
        metrics: Option<MetricsServer>,
    ) -> Self {
        EnergyGuard {
            processor: Some(processor),
            shared,
            run_id,
            metrics,
        }
    }

    /// Where the live metrics are served
    /// ([`EnergyLayerBuilder::metrics_addr`](super::EnergyLayerBuilder::metrics_addr)),
    /// with the port chosen when 0 was asked for; `None` when they are not.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::addr)
    }

    /// The run being recorded.
    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    /// Stores the generated text on the run when it finishes.
    pub fn set_response(&self, response: impl Into<String>) {
        *self.shared.response.lock() = Some(response.into());
    }

    /// Closes the current run at this instant and starts a new one with `next`'s metadata
    /// (its power source and interval are the running ones'), without reinstalling the
    /// subscriber. Returns the closed run's report once the samples covering its end have
    /// arrived. A section is recorded in the run in which it ends; the part of it before
    /// that run's start is left in the previous run's unattributed energy, so no energy is
    /// counted twice and the runs' totals add up to the whole period's.
    pub fn rotate(&mut self, next: NewRun) -> Result<RunReport> {
        let processor = self.processor.as_ref().ok_or_else(already_finished)?;
        let report = processor.rotate(next)?;
        self.run_id = processor.current_run();
        Ok(report)
    }

    /// Waits for the samples that cover the last sections, stops the sampler, attributes
    /// and writes everything, and marks the run complete. Sections still open on the calling
    /// thread (a `main` span around the whole program) end here and are recorded; sections
    /// still open on other threads are not (their time counts as unattributed).
    pub fn finish(mut self) -> Result<RunReport> {
        self.finish_inner(Ending::Complete)
    }

    /// Like [`EnergyGuard::finish`], but marks the run failed with `reason` (what was
    /// recorded up to here is kept).
    pub fn fail(mut self, reason: impl Into<String>) -> Result<RunReport> {
        self.finish_inner(Ending::Failed(reason.into()))
    }

    /// Like [`EnergyGuard::finish`], but marks the run `interrupted` with `reason` (e.g.
    /// "interrupted by SIGINT"): the program stopped early on request, and everything
    /// recorded up to here is attributed and kept.
    pub fn interrupt(mut self, reason: impl Into<String>) -> Result<RunReport> {
        self.finish_inner(Ending::Interrupted(reason.into()))
    }

    fn finish_inner(&mut self, ending: Ending) -> Result<RunReport> {
        super::hot::end_open_sections(&self.shared);
        let report = match self.processor.take() {
            Some(p) => p.finish(ending),
            None => Err(already_finished()),
        };
        // The final figures were counted before the processor ended: a last scrape may
        // have read them; the server stops now.
        self.metrics = None;
        report
    }
}

fn already_finished() -> Error {
    Error::AlreadyFinished
}

impl Drop for EnergyGuard {
    fn drop(&mut self) {
        if self.processor.is_some() {
            let ending = if std::thread::panicking() {
                Ending::Failed("the profiled program panicked".into())
            } else {
                Ending::Complete
            };
            if let Err(e) = self.finish_inner(ending) {
                tracing::error!("finishing the energy profile failed: {e}");
            }
        }
    }
}
