//! Ending a run: waiting (a bounded time) for the samples that cover its end, then
//! writing what is left and how it ended, or rotating to the next run.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Ending, Processor, RunState, IDLE, REORDER_MARGIN_NS};
use crate::layer::builder::MAX_DEFAULT_FINISH_WAIT;
use crate::layer::RunReport;
use crate::power::SamplerStatus;
use crate::store::{NewRun, RunEnd, RunStatus};
use crate::{clock, Result};

impl Processor {
    /// Waits (a bounded time) until the samples reach `t`, taking records meanwhile; then
    /// builds the energy stream up to exactly `t` (time without samples stays unmeasured).
    fn reach(&mut self, t: u64) {
        let wait = self.finish_wait.unwrap_or_else(|| {
            let window = self
                .interval
                .max(Duration::from_nanos(self.longest_window_ns));
            (window * 2 + Duration::from_secs(1)).min(MAX_DEFAULT_FINISH_WAIT)
        });
        let deadline = Instant::now() + wait;
        while self.stream.frontier() < t && Instant::now() < deadline {
            self.round(Some(t));
            if self.watermark() >= t && clock::now_ns() >= t + REORDER_MARGIN_NS {
                break;
            }
            std::thread::sleep(IDLE);
        }
        self.intake.drain(&mut self.stream, usize::MAX);
        self.feed_samples();
        self.advance(t);
        if self.sampler.is_some() && self.samples_fed_to < t && !self.health.stalled() {
            tracing::debug!(
                "the samples reach {:.3} s of the run, not its end at {:.3} s: the tail stays unmeasured",
                self.samples_fed_to.saturating_sub(self.run.start_ns) as f64 / 1e9,
                t.saturating_sub(self.run.start_ns) as f64 / 1e9
            );
        }
    }

    /// Ends the current run at `t` and starts the next with `next`'s metadata.
    pub(super) fn rotate(&mut self, t: u64, mut next: NewRun) -> Result<RunReport> {
        self.reach(t);
        let carried = self.settle(t);
        let report = self.close_run(t, Ending::Complete, None)?;
        self.fit = None;
        self.rows.method = crate::attribution::METHOD;
        if self.attribution == crate::Attribution::Regression {
            self.deferred = Some(super::Deferred::new(carried));
        }
        next.power_source = self.run.meta.power_source.clone();
        next.estimated = self.run.meta.estimated;
        next.sample_interval_ms = self.run.meta.sample_interval_ms;
        next.power_method = self.run.meta.power_method.clone();
        next.counter_update_ms = self.run.meta.counter_update_ms;
        let id = self.store.create_run(&next)?;
        self.current.store(id, Ordering::Release);
        self.run = RunState {
            id,
            meta: next,
            start_ns: t,
            next_token: 0,
            sections: 0,
            peak_bytes: 0,
            cpu: super::cost::CpuMark::now(self.sampler_tallies.as_ref(), &self.store),
        };
        self.health.rotate(t);
        Ok(report)
    }

    pub(super) fn finish(mut self, ending: Ending) -> Result<RunReport> {
        self.finishing = true;
        let end_ns = clock::now_ns();
        self.reach(end_ns);
        let status = self.sampler.take().map(|s| s.stop());
        self.feed_samples();
        self.intake.drain(&mut self.stream, usize::MAX);
        let end = end_ns.max(self.intake.latest);
        self.advance(end);
        self.settle(end);
        // Sections inside units that never ended: kept as sections of their own.
        let open: Vec<_> = self.units.drain().flat_map(|(_, v)| v).collect();
        for (r, _) in open {
            self.generic(&r);
        }
        self.close_run(end, ending, status)
    }

    /// Writes what the run has left, and its end.
    fn close_run(
        &mut self,
        end_ns: u64,
        ending: Ending,
        status: Option<crate::power::SamplerReport>,
    ) -> Result<RunReport> {
        for (serial, at) in self.unit_closes.drain().flat_map(|(_, v)| v) {
            self.instances.close(serial, at);
        }
        self.instances.emit_all(&mut self.rows);
        self.children.clear();
        self.after_round(true);
        // The writer publishes its CPU time after each batch: flushed, it covers the rows.
        let _ = self.store.flush();
        let cost = self.run_cost();
        let totals = self.stream.take_totals();
        let attributed = std::mem::take(&mut self.rows.attributed_mj);
        let measured = self.stream.has_samples().then_some(totals.measured[4]);
        let running = self.sampler.as_ref();
        let source_error = match status.as_ref().map(|r| &r.status) {
            Some(SamplerStatus::Failed(why)) => Some(why.clone()),
            _ => match running.map(|s| s.status()) {
                Some(SamplerStatus::Failed(why)) => Some(why),
                _ => None,
            },
        };
        let dropped = self.shared.dropped.swap(0, Ordering::Relaxed);
        let dropped_sections = self.shared.dropped_sections.swap(0, Ordering::Relaxed);
        let source_note = source_error
            .clone()
            .map(|e| format!("power source failed: {e}"));
        let (run_status, error) = match ending {
            Ending::Complete => (RunStatus::Complete, source_note),
            Ending::Interrupted(why) => (RunStatus::Interrupted, Some(why)),
            Ending::Failed(why) => (RunStatus::Failed, Some(why)),
        };
        let warnings = self.health.take_warnings(
            self.run.start_ns,
            end_ns,
            self.stream.has_samples(),
            status.as_ref(),
        );
        let measured_ms = self.source.map(|_| {
            totals
                .covered_ns
                .min(end_ns.saturating_sub(self.run.start_ns)) as f64
                / 1e6
        });
        let run_end = RunEnd {
            status: run_status,
            response: self.shared.response.lock().take(),
            total_energy_mj: measured,
            attributed_energy_mj: measured.map(|_| attributed),
            unattributed_energy_mj: measured.map(|m| m - attributed),
            dropped_records: dropped,
            error,
            duration_ms: Some(end_ns.saturating_sub(self.run.start_ns) as f64 / 1e6),
            measured_ms,
            warnings,
            profiler: Some(cost),
        };
        self.store.finish_run(self.run.id, &run_end)?;
        // The writer adds the rows it dropped up to the end: read the total it stored.
        let stored = self.store.get_run(self.run.id)?;
        let tokens = self.run.next_token;
        Ok(RunReport {
            run_id: self.run.id,
            db: self.store.path().to_path_buf(),
            power_source: self.run.meta.power_source.clone(),
            estimated: self.run.meta.estimated,
            total_energy_mj: run_end.total_energy_mj,
            attributed_energy_mj: run_end.attributed_energy_mj,
            unattributed_energy_mj: run_end.unattributed_energy_mj,
            sections: self.run.sections,
            tokens,
            dropped_records: stored.map_or(dropped, |r| r.dropped_records),
            dropped_sections,
            source_error,
            start_ns: self.run.start_ns,
            end_ns,
            peak_processor_bytes: self.run.peak_bytes,
            status: run_end.status,
            duration_ms: run_end.duration_ms,
            measured_ms: run_end.measured_ms,
            warnings: run_end.warnings,
            baseline: self.run.meta.baseline,
            dynamic_total_energy_mj: crate::store::dynamic_mj(
                self.run.meta.baseline.as_ref(),
                run_end.total_energy_mj,
                run_end.measured_ms.or(run_end.duration_ms).unwrap_or(0.0),
            ),
            profiler: run_end.profiler,
        })
    }
}
